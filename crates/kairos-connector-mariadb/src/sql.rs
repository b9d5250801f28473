//! The SQL text this connector builds: quoting, the account's password hash, privilege
//! templates, the expiry event. Pure functions, no IO.

use kairos_connectors::{AccountName, ConnectorError, Privileges};
use kairos_domain::Timestamp;
use secrecy::{ExposeSecret, SecretString};

/// The placeholder privilege templates carry where the account goes.
pub(crate) const ROLE_PLACEHOLDER: &str = "{{role}}";

/// MariaDB's limit for event (and schema) identifiers.
const MAX_IDENTIFIER_LEN: usize = 64;

/// A single-quoted string literal. Quotes are doubled, which is correct whatever the
/// session's `sql_mode`; backslashes and NULs are refused rather than escaped, because
/// their meaning depends on `NO_BACKSLASH_ESCAPES`. Account names (`[a-z0-9_]`) and the
/// validated account host never contain them.
pub(crate) fn quote_literal(s: &str) -> Option<String> {
    if s.contains(['\\', '\0']) {
        return None;
    }
    Some(format!("'{}'", s.replace('\'', "''")))
}

/// A backquoted identifier (backquotes doubled).
pub(crate) fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// The account as MariaDB names it: `'name'@'host'`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct QuotedAccount(String);

impl QuotedAccount {
    /// None if the host holds a backslash or NUL (see [`quote_literal`]).
    pub(crate) fn new(account: &AccountName, host: &str) -> Option<Self> {
        let user = quote_literal(account.as_str())?;
        let host = quote_literal(host)?;
        Some(Self(format!("{user}@{host}")))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `mysql_native_password` hash of a password: `*` and the upper-case hex of
/// SHA1(SHA1(password)), exactly what `PASSWORD('…')` returns on the server. Sending the
/// hash (`IDENTIFIED BY PASSWORD '*…'`) keeps the plaintext out of every statement, the
/// server's general and slow logs, and the processlist.
pub(crate) fn native_password_hash(password: &SecretString) -> String {
    use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
    let stage1 = digest(
        &SHA1_FOR_LEGACY_USE_ONLY,
        password.expose_secret().as_bytes(),
    );
    let stage2 = digest(&SHA1_FOR_LEGACY_USE_ONLY, stage1.as_ref());
    let mut out = String::with_capacity(41);
    out.push('*');
    out.push_str(&hex_upper(stage2.as_ref()));
    out
}

fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
        .map(char::from)
        .collect()
}

/// The privilege statements for the account, one statement per template, `{{role}}`
/// replaced by the quoted account. Rejects what cannot be right before anything runs:
/// Redis ACL rules, a template without `{{role}}` (it would not grant anything to the
/// account, or would grant to someone else).
pub(crate) fn render_privileges(
    privileges: &Privileges,
    account: &QuotedAccount,
) -> Result<Vec<String>, ConnectorError> {
    let templates = match privileges {
        Privileges::Sql(templates) => templates,
        Privileges::RedisAcl(_) | Privileges::RabbitMq(_) => {
            return Err(ConnectorError::BadPrivileges(
                "a MariaDB entitlement needs SQL privilege statements, not Redis ACL rules or RabbitMQ permissions".into(),
            ));
        }
    };
    templates
        .iter()
        .enumerate()
        .map(|(i, template)| {
            let template = template.trim();
            if template.is_empty() {
                return Err(ConnectorError::BadPrivileges(format!(
                    "privilege statement {} is empty",
                    i + 1
                )));
            }
            if !template.contains(ROLE_PLACEHOLDER) {
                return Err(ConnectorError::BadPrivileges(format!(
                    "privilege statement {} ({template:?}) does not contain {ROLE_PLACEHOLDER}, \
                     where the account goes",
                    i + 1
                )));
            }
            Ok(template.replace(ROLE_PLACEHOLDER, account.as_str()))
        })
        .collect()
}

/// The name of the account's expiry event: `<account>_exp`, or, when that would pass
/// MariaDB's 64-character limit, the account's first 47 characters, `_`, 12 hex digits of
/// SHA-1 of the whole name and `_exp` (still unique per account, still deterministic so a
/// retry or a revoke finds it).
pub(crate) fn event_name(account: &AccountName) -> String {
    let name = account.as_str();
    let plain = format!("{name}_exp");
    if plain.len() <= MAX_IDENTIFIER_LEN {
        return plain;
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, name.as_bytes());
    let hex = hex_upper(digest.as_ref()).to_ascii_lowercase();
    let head = name.get(..47).unwrap_or(name);
    let tail = hex.get(..12).unwrap_or(&hex);
    format!("{head}_{tail}_exp")
}

/// `valid_until` as a `'YYYY-MM-DD HH:MM:SS'` UTC literal, rounded *up* to the second so
/// the event never fires before the grant's end. Only meaningful on a session whose
/// `time_zone` is `+00:00` (the connector forces it on every connection).
pub(crate) fn utc_datetime_literal(valid_until: Timestamp) -> String {
    let ms = valid_until.as_millis();
    let ceil = ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0);
    // `to_rfc3339` is `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    let rfc = Timestamp::from_millis(ceil.saturating_mul(1000)).to_rfc3339();
    let date = rfc.get(..10).unwrap_or("1970-01-01");
    let time = rfc.get(11..19).unwrap_or("00:00:00");
    format!("'{date} {time}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(s: &str) -> AccountName {
        AccountName::parse(s).unwrap()
    }

    #[test]
    fn native_hash_matches_the_server() {
        // SELECT PASSWORD('secret') on MariaDB 10.11.
        let pw = SecretString::from("secret");
        assert_eq!(
            native_password_hash(&pw),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_literal("a'b").as_deref(), Some("'a''b'"));
        assert_eq!(quote_literal("a\\b"), None);
        assert_eq!(quote_ident("a`b"), "`a``b`");
        let q = QuotedAccount::new(&acct("kairos_x"), "%").unwrap();
        assert_eq!(q.as_str(), "'kairos_x'@'%'");
    }

    fn check_render(templates: &[&str], expected: Result<&[&str], &str>) {
        let q = QuotedAccount::new(&acct("kairos_x"), "%").unwrap();
        let got = render_privileges(
            &Privileges::Sql(templates.iter().map(|s| s.to_string()).collect()),
            &q,
        );
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(ConnectorError::BadPrivileges(msg)), Err(want)) => {
                assert!(msg.contains(want), "{msg}")
            }
            (got, want) => panic!("got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn privileges() {
        check_render(
            &["GRANT SELECT ON db.t TO {{role}}"],
            Ok(&["GRANT SELECT ON db.t TO 'kairos_x'@'%'"]),
        );
        check_render(
            &["GRANT SELECT ON db.t TO bob"],
            Err("does not contain {{role}}"),
        );
        check_render(&["  "], Err("is empty"));
        check_render(&[], Ok(&[]));
        let q = QuotedAccount::new(&acct("kairos_x"), "%").unwrap();
        assert!(matches!(
            render_privileges(&Privileges::RedisAcl(vec!["+get".into()]), &q),
            Err(ConnectorError::BadPrivileges(_))
        ));
    }

    #[test]
    fn event_names_fit() {
        assert_eq!(event_name(&acct("kairos_abc")), "kairos_abc_exp");
        let long = acct(&"k".repeat(63));
        let other = acct(&format!("{}j", "k".repeat(62)));
        assert_eq!(event_name(&long).len(), 64);
        assert_ne!(event_name(&long), event_name(&other));
        assert_eq!(event_name(&acct(&"k".repeat(60))).len(), 64);
    }

    #[test]
    fn datetime_literals_are_utc_and_round_up() {
        let t = Timestamp::from_millis(1_790_000_000_000);
        assert_eq!(utc_datetime_literal(t), "'2026-09-21 14:13:20'");
        let t = Timestamp::from_millis(1_790_000_000_001);
        assert_eq!(utc_datetime_literal(t), "'2026-09-21 14:13:21'");
    }
}
