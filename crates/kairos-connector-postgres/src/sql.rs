//! The SQL text the connector sends: identifiers quoted, privilege templates rendered.
//! Pure functions; nothing here talks to a server.

use kairos_connectors::{ConnectorError, Privileges};

/// The placeholder privilege templates carry where the account goes.
pub(crate) const ROLE_PLACEHOLDER: &str = "{{role}}";

/// A PostgreSQL quoted identifier: double quotes around it, embedded `"` doubled.
/// (Account names are `[a-z0-9_]` already; the quoting is the second lock on the door.)
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal for DDL, which takes no bind parameters. Only used for values the
/// connector produced itself (a SCRAM verifier, an RFC 3339 timestamp); quotes are doubled
/// all the same.
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The privilege statements for `role` (already quoted), one per template, or
/// `BadPrivileges` if a template lacks `{{role}}` or the privileges are not SQL.
pub(crate) fn render_privileges(
    privileges: &Privileges,
    quoted_role: &str,
) -> Result<Vec<String>, ConnectorError> {
    let templates = match privileges {
        Privileges::Sql(templates) => templates,
        Privileges::RedisAcl(_) | Privileges::RabbitMq(_) => {
            return Err(ConnectorError::BadPrivileges(
                "a PostgreSQL target takes SQL privilege templates, not Redis ACL rules or RabbitMQ permissions".into(),
            ));
        }
    };
    templates
        .iter()
        .enumerate()
        .map(|(i, template)| {
            if template.contains(ROLE_PLACEHOLDER) {
                Ok(template.replace(ROLE_PLACEHOLDER, quoted_role))
            } else {
                Err(ConnectorError::BadPrivileges(format!(
                    "privilege template #{} `{}` has no {ROLE_PLACEHOLDER} placeholder for the account",
                    i + 1,
                    template.trim()
                )))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("kairos_01ab"), r#""kairos_01ab""#);
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    fn check(privileges: Privileges, expected: Result<Vec<&str>, &str>) {
        let got = render_privileges(&privileges, r#""kairos_x""#).map_err(|e| e.to_string());
        match expected {
            Ok(statements) => assert_eq!(got.unwrap(), statements),
            Err(fragment) => {
                let e = got.unwrap_err();
                assert!(e.contains(fragment), "{e}");
            }
        }
    }

    #[test]
    fn templates() {
        check(Privileges::Sql(vec![]), Ok(vec![]));
        check(
            Privileges::Sql(vec![
                "GRANT SELECT ON t TO {{role}}".into(),
                "GRANT USAGE ON SCHEMA s TO {{role}}".into(),
            ]),
            Ok(vec![
                r#"GRANT SELECT ON t TO "kairos_x""#,
                r#"GRANT USAGE ON SCHEMA s TO "kairos_x""#,
            ]),
        );
        check(
            Privileges::Sql(vec![
                "GRANT SELECT ON t TO {{role}}".into(),
                "GRANT SELECT ON t TO PUBLIC".into(),
            ]),
            Err("template #2 `GRANT SELECT ON t TO PUBLIC` has no {{role}}"),
        );
        check(
            Privileges::RedisAcl(vec!["+get".into()]),
            Err("not Redis ACL rules"),
        );
    }
}
