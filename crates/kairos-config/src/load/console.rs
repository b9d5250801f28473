//! `[console]`: how people sign in to the web console. Single sign-on is OpenID Connect's
//! authorization code flow with PKCE against one identity provider (`oidc_issuer`,
//! `client_id`, and the client secret as a reference only: `client_secret_env` or
//! `client_secret_file`); `api_token_sign_in` keeps or removes the API-token form.
//!
//! The IdP names a person; it never makes one. `user_claim` names the Kairos user, who must
//! already exist. With `groups_claim`, the IdP can only narrow what the person acts with:
//! a session keeps those of the user's Kairos teams the IdP also asserts (through
//! `[console.team_groups]`, Kairos team = IdP group; a team not listed there is matched
//! by its own name).

use std::collections::{BTreeMap, BTreeSet};

use kairos_domain::TeamName;

use super::{Cx, Either, Invalid, Node, Table, Value, env_name, file_path, https_url, one_of};
use crate::catalog::{ConsoleSettings, OidcSettings, SecretRef};

const CONSOLE_KEYS: [&str; 10] = [
    "oidc_issuer",
    "oidc_name",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "scopes",
    "user_claim",
    "groups_claim",
    "team_groups",
    "api_token_sign_in",
];

/// The keys that only make sense with `oidc_issuer`.
const OIDC_ONLY: [&str; 8] = [
    "oidc_name",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "scopes",
    "user_claim",
    "groups_claim",
    "team_groups",
];

fn oidc_issuer(s: &str) -> Result<String, String> {
    let url = https_url("oidc_issuer", s)?;
    if url.contains(['?', '#']) {
        return Err(format!(
            "oidc_issuer {s:?} must be the issuer identifier exactly as the IdP's discovery document gives it, without query or fragment"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn client_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("client_id must be 1-255 characters without spaces: the id the IdP gave this Kairos client".into())
    } else {
        Ok(s.to_owned())
    }
}

fn scope(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "scope {:?} is not an OAuth scope (printable ASCII without spaces, quotes or backslashes)",
            s.chars().take(64).collect::<String>()
        ))
    }
}

fn claim(what: &'static str) -> impl Fn(&str) -> Result<String, String> {
    move |s: &str| {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c));
        if ok {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "{what} {:?} must be a claim name (letters, digits, _ - . : /)",
                s.chars().take(64).collect::<String>()
            ))
        }
    }
}

fn display_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() || s.chars().count() > 60 || s.chars().any(char::is_control) {
        Err("oidc_name must be 1-60 printable characters: it is shown on the sign-in button".into())
    } else {
        Ok(s.trim().to_owned())
    }
}

/// Reads `[console]`; `teams` are the declared `[[team]]` names.
pub(super) fn read(
    cx: &mut Cx<'_>,
    node: &Node,
    teams: &BTreeSet<String>,
) -> Option<ConsoleSettings> {
    let mut t = Table::of(cx, "console".into(), node)?;
    let issuer = t.opt(cx, "oidc_issuer", oidc_issuer);
    let name = t.opt(cx, "oidc_name", display_name);
    let client = t.opt(cx, "client_id", client_id);
    let secret_env = t.opt(cx, "client_secret_env", env_name);
    let secret_file = t.opt(cx, "client_secret_file", file_path);
    let scopes = t.list(cx, "scopes", scope);
    let user_claim = t.opt(cx, "user_claim", claim("user_claim"));
    let groups_claim = t.opt(cx, "groups_claim", claim("groups_claim"));
    let team_groups = read_team_groups(cx, &mut t, teams);
    let token_sign_in = t.flag(cx, "api_token_sign_in");
    t.finish(cx, &CONSOLE_KEYS);

    let secret = one_of(
        cx,
        &t,
        ("client_secret_env", secret_env),
        ("client_secret_file", secret_file),
    );
    let (
        Ok(issuer),
        Ok(name),
        Ok(client),
        Ok(secret),
        Ok(scopes),
        Ok(user_claim),
        Ok(groups_claim),
        Ok(team_groups),
        Ok(token_sign_in),
    ) = (
        issuer,
        name,
        client,
        secret,
        scopes,
        user_claim,
        groups_claim,
        team_groups,
        token_sign_in,
    )
    else {
        return None;
    };
    let api_token_sign_in = token_sign_in.unwrap_or(true);

    let Some(issuer) = issuer else {
        // Without an IdP, none of its keys belong here, and someone must be able to sign in.
        let stray = OIDC_ONLY
            .iter()
            .find(|k| t.entries.iter().any(|e| e.key == **k));
        if let Some(key) = stray {
            let span = t.span_of(key);
            cx.error(
                &span,
                &t.key(key),
                format!("`{key}` configures single sign-on, which needs `oidc_issuer` (the IdP's issuer URL) in [console]"),
            );
            return None;
        }
        if !api_token_sign_in {
            let span = t.span_of("api_token_sign_in");
            cx.error(
                &span,
                &t.key("api_token_sign_in"),
                "with api_token_sign_in = false and no `oidc_issuer`, nobody could sign in to the console: configure single sign-on or keep token sign-in",
            );
            return None;
        }
        return Some(ConsoleSettings {
            oidc: None,
            api_token_sign_in,
        });
    };

    let Some(client) = client else {
        t.missing(cx, "client_id");
        return None;
    };
    let Some(secret) = secret else {
        cx.error(
            &t.span.clone(),
            &t.key("client_secret_env"),
            "single sign-on needs the client secret the IdP issued, by reference: `client_secret_env = \"ENV_VAR\"` or `client_secret_file = \"/path\"` (never the secret itself)",
        );
        return None;
    };
    let scopes = match scopes {
        None => vec![
            "openid".to_owned(),
            "profile".to_owned(),
            "email".to_owned(),
        ],
        Some(list) => {
            let list: Vec<String> = list.into_iter().map(|s| s.value).collect();
            if !list.iter().any(|s| s == "openid") {
                let span = t.span_of("scopes");
                cx.error(
                    &span,
                    &t.key("scopes"),
                    "scopes must include \"openid\": without it the IdP does not answer with an ID token",
                );
                return None;
            }
            let mut seen = BTreeSet::new();
            list.into_iter()
                .filter(|s| seen.insert(s.clone()))
                .collect()
        }
    };
    if groups_claim.is_none() && !team_groups.is_empty() {
        let span = t.span_of("team_groups");
        cx.error(
            &span,
            &t.key("team_groups"),
            "team_groups maps Kairos teams to IdP groups, which are read from `groups_claim`: set groups_claim (e.g. \"groups\") too",
        );
        return None;
    }
    Some(ConsoleSettings {
        oidc: Some(OidcSettings {
            issuer: issuer.value,
            name: name.map_or_else(|| "single sign-on".to_owned(), |n| n.value),
            client_id: client.value,
            client_secret: match secret {
                Either::First(env) => SecretRef::Env(env),
                Either::Second(file) => SecretRef::File(file),
            },
            scopes,
            user_claim: user_claim.map_or_else(|| "preferred_username".to_owned(), |c| c.value),
            groups_claim: groups_claim.map(|c| c.value),
            team_groups,
        }),
        api_token_sign_in,
    })
}

/// `[console.team_groups]`: Kairos team = IdP group.
fn read_team_groups(
    cx: &mut Cx<'_>,
    t: &mut Table<'_>,
    teams: &BTreeSet<String>,
) -> Result<BTreeMap<TeamName, String>, Invalid> {
    let Some(node) = t.node("team_groups") else {
        return Ok(BTreeMap::new());
    };
    let path = t.key("team_groups");
    let Value::Table(entries) = &node.value else {
        cx.error(
            &node.span,
            &path,
            format!(
                "expected a table of Kairos team = \"IdP group\", found {}",
                node.value.type_name()
            ),
        );
        return Err(Invalid);
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for entry in entries {
        let key = format!("{path}.{}", entry.key);
        let team = match TeamName::parse(entry.key.clone()) {
            Ok(team) if teams.contains(team.as_str()) => team,
            Ok(team) => {
                let known: Vec<&str> = teams.iter().map(String::as_str).collect();
                cx.error(
                    &entry.node.span,
                    &key,
                    format!(
                        "team {:?} is not defined; defined teams: {}",
                        team.as_str(),
                        known.join(", ")
                    ),
                );
                ok = false;
                continue;
            }
            Err(e) => {
                cx.error(&entry.node.span, &key, e.to_string());
                ok = false;
                continue;
            }
        };
        match &entry.node.value {
            Value::String(group)
                if !group.is_empty()
                    && group.len() <= 256
                    && !group.chars().any(char::is_control) =>
            {
                out.insert(team, group.clone());
            }
            Value::String(_) => {
                cx.error(
                    &entry.node.span,
                    &key,
                    "the IdP group must be 1-256 printable characters",
                );
                ok = false;
            }
            other => {
                cx.error(
                    &entry.node.span,
                    &key,
                    format!(
                        "expected the IdP group's name as a string, found {}",
                        other.type_name()
                    ),
                );
                ok = false;
            }
        }
    }
    if ok { Ok(out) } else { Err(Invalid) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::collections::BTreeMap;

    use crate::{Catalog, ConfigBundle, SecretRef};

    /// Three lines: `[console]` starts on line 4, its first key on line 5.
    const PRE: &str = "[[team]]\nname = \"payments\"\nowners = [\"carol\"]\n";

    fn bundle(rest: &str) -> ConfigBundle {
        ConfigBundle {
            main_path: "kairos.toml".into(),
            files: BTreeMap::from([("kairos.toml".into(), format!("{PRE}{rest}"))]),
        }
    }

    /// The catalog refuses `console` and the message holds each of `expected`.
    fn refused(console: &str, expected: &[&str]) {
        let text = format!("[console]\n{console}\n");
        match Catalog::from_bundle(&bundle(&text)) {
            Ok(_) => panic!("accepted:\n{console}"),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    !e.contains("team[0]"),
                    "only the console is wrong here: {e}"
                );
                for want in expected {
                    assert!(e.contains(want), "{console}\n---\n{e}\n--- lacks {want:?}");
                }
            }
        }
    }

    const GOOD: &str = "oidc_issuer = \"https://idp.example.com\"\nclient_id = \"kairos\"\nclient_secret_env = \"KAIROS_OIDC_SECRET\"\n";

    #[test]
    fn defaults_and_values_are_read() {
        let c = Catalog::from_bundle(&bundle(&format!("[console]\n{GOOD}"))).unwrap();
        let console = c.console();
        assert!(console.api_token_sign_in);
        let oidc = console.oidc.as_ref().unwrap();
        assert_eq!(oidc.issuer, "https://idp.example.com");
        assert_eq!(oidc.scopes, ["openid", "profile", "email"]);
        assert_eq!(oidc.user_claim, "preferred_username");
        assert_eq!(oidc.groups_claim, None);
        assert_eq!(
            oidc.client_secret,
            SecretRef::Env("KAIROS_OIDC_SECRET".into())
        );

        let c = Catalog::from_bundle(&bundle(&format!(
            "[console]\n{GOOD}api_token_sign_in = false\ngroups_claim = \"groups\"\nuser_claim = \"email\"\n\n[console.team_groups]\npayments = \"idp-payments\"\n"
        )))
        .unwrap();
        let console = c.console();
        assert!(!console.api_token_sign_in);
        let oidc = console.oidc.as_ref().unwrap();
        assert_eq!(oidc.groups_claim.as_deref(), Some("groups"));
        assert_eq!(oidc.user_claim, "email");
        assert_eq!(oidc.team_groups.len(), 1);

        // No [console]: token sign-in only.
        let c = Catalog::from_bundle(&bundle("")).unwrap();
        assert!(c.console().oidc.is_none() && c.console().api_token_sign_in);
        // Loopback issuers may be plain http (development IdPs).
        let local = GOOD.replace("https://idp.example.com", "http://127.0.0.1:8080/");
        let c = Catalog::from_bundle(&bundle(&format!("[console]\n{local}"))).unwrap();
        assert_eq!(
            c.console().oidc.as_ref().unwrap().issuer,
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn apply_shows_a_changed_console_section() {
        let load = |text: &str| Catalog::from_bundle(&bundle(text)).unwrap();
        let none = load("");
        let sso = load(&format!("[console]\n{GOOD}"));
        let narrowed = load(&format!("[console]\n{GOOD}groups_claim = \"groups\"\n"));
        let changed = |a: &Catalog, b: &Catalog| Catalog::diff(a, b).changed;
        assert_eq!(changed(&none, &sso), ["console settings"]);
        assert_eq!(changed(&sso, &narrowed), ["console settings"]);
        assert_eq!(changed(&sso, &none), ["console settings"]);
        assert!(Catalog::diff(&sso, &sso).is_empty());
    }

    #[test]
    fn inline_client_secret_is_refused_without_echoing_it() {
        let console = format!("{GOOD}client_secret = \"hunter2-very-secret\"");
        refused(
            &console,
            &[
                "kairos.toml:8",
                "console.client_secret",
                "client_secret_env",
            ],
        );
        match Catalog::from_bundle(&bundle(&format!("[console]\n{console}\n"))) {
            Err(e) => assert!(!e.to_string().contains("hunter2")),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn each_refusal_names_line_and_key() {
        refused(
            "oidc_issuer = \"http://idp.example.com\"\nclient_id = \"k\"\nclient_secret_env = \"S\"",
            &[
                "kairos.toml:5",
                "console.oidc_issuer",
                "https://",
                "localhost",
            ],
        );
        refused(
            "oidc_issuer = \"https://idp.example.com\"\nclient_secret_env = \"S\"",
            &["console.client_id", "missing"],
        );
        refused(
            "oidc_issuer = \"https://idp.example.com\"\nclient_id = \"k\"",
            &["console.client_secret_env", "never the secret itself"],
        );
        refused(
            &format!("{GOOD}client_secret_file = \"/run/s\""),
            &["kairos.toml:8", "console.client_secret_file", "not both"],
        );
        refused(
            &format!("{GOOD}scopes = [\"profile\"]"),
            &["kairos.toml:8", "console.scopes", "openid"],
        );
        refused(
            &format!("{GOOD}scopes = [\"open id\"]"),
            &["console.scopes[0]", "OAuth scope"],
        );
        refused(
            &format!("{GOOD}user_claim = \"\""),
            &["kairos.toml:8", "console.user_claim"],
        );
        refused(
            &format!("{GOOD}\n[console.team_groups]\npayments = \"g\""),
            &["console.team_groups", "groups_claim"],
        );
        refused(
            &format!("{GOOD}groups_claim = \"groups\"\n\n[console.team_groups]\npaymnts = \"g\""),
            &[
                "kairos.toml:11",
                "console.team_groups.paymnts",
                "not defined",
                "payments",
            ],
        );
        refused(
            &format!("{GOOD}groups_claim = \"groups\"\n\n[console.team_groups]\npayments = 3"),
            &["console.team_groups.payments", "string"],
        );
        refused(
            "api_token_sign_in = false",
            &[
                "kairos.toml:5",
                "console.api_token_sign_in",
                "nobody could sign in",
            ],
        );
        refused(
            "client_id = \"k\"",
            &["kairos.toml:5", "console.client_id", "oidc_issuer"],
        );
        refused(
            &format!("{GOOD}api_token_sign_in = \"no\""),
            &["console.api_token_sign_in", "true or false"],
        );
        refused(
            &format!("{GOOD}colour = \"blue\""),
            &["console.colour", "unknown key"],
        );
    }
}
