//! `[[notify]]`: notification channels. A channel is a Slack-compatible incoming webhook or
//! a generic webhook signed per Standard Webhooks; it names the events it takes and,
//! optionally, the teams whose events it takes. Its address may be a secret (a Slack
//! webhook URL is one), so `url_env`/`url_file` are offered beside `url`; the signing
//! secret is only ever a reference (`secret_env`/`secret_file`).

use std::collections::BTreeSet;

use kairos_notify::{ChannelKind, EventKind, Route};

use super::{
    Cx, Either, Invalid, Item, Node, Table, env_name, file_path, item, one_of, reference, unique,
};
use crate::catalog::{NotifyChannel, SecretRef, UrlRef};

const NOTIFY_KEYS: [&str; 9] = [
    "name",
    "kind",
    "url",
    "url_env",
    "url_file",
    "secret_env",
    "secret_file",
    "events",
    "teams",
];

/// Reads every `[[notify]]`, checks names are unique and teams are declared.
pub(super) fn read_all(
    cx: &mut Cx<'_>,
    items: &[(String, &Node)],
    teams: &BTreeSet<String>,
) -> Vec<NotifyChannel> {
    let read: Vec<Item<NotifyChannel>> = items
        .iter()
        .filter_map(|(path, node)| read_channel(cx, path, node))
        .collect();
    let read = unique(cx, "notify channel", read, |c| c.route.channel.clone());
    for item in &read {
        for team in &item.value.route.teams {
            reference(cx, item, "teams", "team", team, teams);
        }
    }
    read.into_iter().map(|i| i.value).collect()
}

fn channel_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "channel name {:?} must be 1-64 letters, digits, '-' or '_' (it is part of every message id)",
            s.chars().take(64).collect::<String>()
        ))
    }
}

fn channel_kind(s: &str) -> Result<ChannelKind, String> {
    ChannelKind::parse(s).ok_or_else(|| {
        format!(
            "kind {:?} is unknown; use \"slack\" (an incoming webhook) or \"webhook\" (signed per Standard Webhooks)",
            s.chars().take(40).collect::<String>()
        )
    })
}

fn event_kind(s: &str) -> Result<EventKind, String> {
    EventKind::parse(s).ok_or_else(|| {
        format!(
            "event {:?} is unknown; use one of: {}",
            s.chars().take(40).collect::<String>(),
            EventKind::names()
        )
    })
}

/// An `http://` or `https://` URL (checked again, with its real value, when a `url_env` or
/// `url_file` is read at delivery).
pub fn check_url(s: &str) -> Result<String, String> {
    let t = s.trim();
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !t.chars().any(char::is_whitespace) => Ok(t.to_owned()),
        _ => Err("the channel URL must be an http:// or https:// URL".into()),
    }
}

fn read_channel(cx: &mut Cx<'_>, path: &str, node: &Node) -> Option<Item<NotifyChannel>> {
    let mut t = Table::of(cx, path.into(), node)?;
    let name = t.req(cx, "name", channel_name);
    let kind = t.req(cx, "kind", channel_kind);
    let url = t.opt(cx, "url", check_url);
    let url_env = t.opt(cx, "url_env", env_name);
    let url_file = t.opt(cx, "url_file", file_path);
    let secret_env = t.opt(cx, "secret_env", env_name);
    let secret_file = t.opt(cx, "secret_file", file_path);
    let events = t.list(cx, "events", event_kind);
    let teams = t.list(cx, "teams", kairos_domain::TeamName::parse);
    t.finish(cx, &NOTIFY_KEYS);

    let url_span = |t: &mut Table<'_>, key: &str| {
        t.node(key)
            .map(|n| n.span.clone())
            .unwrap_or(t.span.clone())
    };
    // One of url, url_env, url_file.
    let where_ = match (url, url_env, url_file) {
        (Ok(u), Ok(e), Ok(f)) => {
            let given = [u.is_some(), e.is_some(), f.is_some()]
                .iter()
                .filter(|g| **g)
                .count();
            if given != 1 {
                let span = t.span.clone();
                cx.error(
                    &span,
                    &t.path,
                    "give the channel's address as exactly one of `url`, `url_env` (an environment variable holding it) or `url_file`",
                );
                Err(Invalid)
            } else if let Some(u) = u {
                Ok((UrlRef::Url(u.value), true))
            } else if let Some(e) = e {
                Ok((UrlRef::Env(e.value), false))
            } else if let Some(f) = f {
                Ok((UrlRef::File(f.value), false))
            } else {
                Err(Invalid)
            }
        }
        _ => Err(Invalid),
    };
    let secret = one_of(
        cx,
        &t,
        ("secret_env", secret_env),
        ("secret_file", secret_file),
    )
    .map(|s| {
        s.map(|s| match s {
            Either::First(env) => SecretRef::Env(env),
            Either::Second(file) => SecretRef::File(file),
        })
    });
    let events = match events {
        Ok(Some(e)) if !e.is_empty() => Ok(e.into_iter().map(|e| e.value).collect::<BTreeSet<_>>()),
        Ok(_) => {
            let span = url_span(&mut t, "events");
            cx.error(
                &span,
                &t.key("events"),
                format!(
                    "a channel needs `events`, the events it takes, e.g. [\"request_pending\"]; known: {}",
                    EventKind::names()
                ),
            );
            Err(Invalid)
        }
        Err(e) => Err(e),
    };
    let (Ok(name), Ok(kind), Ok((url, inline)), Ok(secret), Ok(events), Ok(teams)) =
        (name, kind, where_, secret, events, teams)
    else {
        return None;
    };
    match (kind.value, &secret) {
        (ChannelKind::Slack, _) if inline => {
            let span = url_span(&mut t, "url");
            cx.error(
                &span,
                &t.key("url"),
                "a Slack incoming-webhook URL is a secret (anyone holding it can post): give it as `url_env` or `url_file`, not in the catalog",
            );
            return None;
        }
        (ChannelKind::Slack, Some(_)) => {
            let span = url_span(&mut t, "secret_env");
            cx.error(
                &span,
                &t.key("secret_env"),
                "a Slack channel is not signed; `secret_env`/`secret_file` belong to kind = \"webhook\"",
            );
            return None;
        }
        (ChannelKind::Webhook, None) => {
            let span = kind.span.clone();
            cx.error(
                &span,
                &t.key("secret_env"),
                "a webhook channel is signed per Standard Webhooks: give `secret_env` or `secret_file` naming where its secret (whsec_ and base64) is",
            );
            return None;
        }
        _ => {}
    }
    Some(item(
        &t,
        &NOTIFY_KEYS,
        NotifyChannel {
            route: Route {
                channel: name.value,
                kind: kind.value,
                events,
                teams: teams
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| t.value.to_string())
                    .collect(),
            },
            url,
            secret,
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::collections::BTreeMap;

    use crate::{Catalog, ConfigBundle};

    /// Five lines declaring team `payments`; a case's first `[[notify]]` starts on line 6.
    const PRE: &str =
        "[[team]]\nname = \"payments\"\nowners = [\"carol\"]\napprovers = [\"alice\"]\n\n";

    fn load(rest: &str) -> Result<Catalog, String> {
        assert_eq!(PRE.lines().count(), 5);
        let bundle = ConfigBundle {
            main_path: "kairos.toml".into(),
            files: BTreeMap::from([("kairos.toml".into(), format!("{PRE}{rest}"))]),
        };
        Catalog::from_bundle(&bundle).map_err(|e| e.to_string())
    }

    /// `rest` is refused with exactly one error, `expected` (file:line: key: start of the
    /// message).
    fn refused(rest: &str, expected: &str) -> String {
        refused_with(rest, &[expected])
    }

    /// `rest` is refused with exactly these errors, in file order.
    fn refused_with(rest: &str, expected: &[&str]) -> String {
        let errors = match load(rest) {
            Ok(_) => panic!("accepted:\n{rest}"),
            Err(e) => e,
        };
        let lines: Vec<&str> = errors
            .lines()
            .filter(|l| l.starts_with("kairos.toml:"))
            .collect();
        assert_eq!(
            lines.len(),
            expected.len(),
            "{expected:?} expected:\n{errors}"
        );
        for (line, expected) in lines.iter().zip(expected) {
            assert!(
                line.starts_with(expected),
                "expected {expected:?}, got:\n{errors}"
            );
        }
        errors
    }

    const HOOK: &str = "[[notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"https://hooks.example.com/k\"\nsecret_env = \"HOOK_SECRET\"\nevents = [\"request_pending\"]\n";

    #[test]
    fn a_good_channel_loads() {
        let catalog = load(&format!(
            "{HOOK}teams = [\"payments\"]\n\n[[notify]]\nname = \"chat\"\nkind = \"slack\"\nurl_file = \"/run/secrets/slack-url\"\nevents = [\"break_glass\", \"request_pending\"]\n"
        ))
        .unwrap();
        let names: Vec<&str> = catalog
            .notify_channels()
            .iter()
            .map(|c| c.route.channel.as_str())
            .collect();
        assert_eq!(names, ["ops", "chat"]);
    }

    #[test]
    fn unknown_keys_and_inline_secrets_are_refused_without_their_value() {
        refused(
            &format!("{HOOK}channel = \"#ops\"\n"),
            "kairos.toml:12: notify[0].channel: unknown key `channel`",
        );
        // Written inline, the secret is refused, and the webhook still lacks its reference.
        let errors = refused_with(
            &HOOK.replace(
                "secret_env = \"HOOK_SECRET\"",
                "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
            ),
            &[
                "kairos.toml:8: notify[0].secret_env: a webhook channel is signed per Standard Webhooks",
                "kairos.toml:10: notify[0].secret: looks like a secret written into the catalog",
            ],
        );
        assert!(errors.contains("`secret_env"), "{errors}");
        assert!(!errors.contains("MfKQ9r8"), "the value is echoed: {errors}");
    }

    #[test]
    fn names_and_kinds() {
        refused(
            &HOOK.replace("name = \"ops\"", "name = \"ops channel\""),
            "kairos.toml:7: notify[0].name: channel name \"ops channel\" must be 1-64 letters",
        );
        refused(
            &HOOK.replace("kind = \"webhook\"", "kind = \"teams\""),
            "kairos.toml:8: notify[0].kind: kind \"teams\" is unknown; use \"slack\"",
        );
        refused(
            &HOOK.replace("name = \"ops\"\n", ""),
            "kairos.toml:6: notify[0].name: ",
        );
        let errors = refused(
            &format!(
                "{HOOK}\n{}",
                HOOK.replace("hooks.example.com", "other.example.com")
            ),
            "kairos.toml:14: notify[1].name: notify channel \"ops\" is already defined at line 7",
        );
        assert!(!errors.contains("notify[0]"), "{errors}");
    }

    #[test]
    fn addresses() {
        let errors = refused(
            &HOOK.replace("https://hooks.example.com/k", "ftp://hooks.example.com/k"),
            "kairos.toml:9: notify[0].url: the channel URL must be an http:// or https:// URL",
        );
        assert!(!errors.contains("ftp://"), "{errors}");
        refused(
            &HOOK.replace("https://hooks.example.com/k", "https://"),
            "kairos.toml:9: notify[0].url: the channel URL must be",
        );
        // None, or two, of url / url_env / url_file.
        refused(
            &HOOK.replace("url = \"https://hooks.example.com/k\"\n", ""),
            "kairos.toml:6: notify[0]: give the channel's address as exactly one of `url`, `url_env`",
        );
        refused(
            &HOOK.replace(
                "url = \"https://hooks.example.com/k\"",
                "url = \"https://hooks.example.com/k\"\nurl_env = \"HOOK_URL\"",
            ),
            "kairos.toml:6: notify[0]: give the channel's address as exactly one of",
        );
        refused(
            &HOOK.replace(
                "url = \"https://hooks.example.com/k\"",
                "url_env = \"HOOK URL\"",
            ),
            "kairos.toml:9: notify[0].url_env: \"HOOK URL\" is not an environment variable name",
        );
    }

    #[test]
    fn slack_urls_are_secrets_and_slack_is_not_signed() {
        let slack = "[[notify]]\nname = \"chat\"\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\nevents = [\"break_glass\"]\n";
        load(slack).unwrap();
        let errors = refused(
            &slack.replace(
                "url_env = \"SLACK_URL\"",
                "url = \"https://hooks.slack.com/services/T0/B0/XXXXXXXX\"",
            ),
            "kairos.toml:9: notify[0].url: a Slack incoming-webhook URL is a secret",
        );
        assert!(!errors.contains("XXXXXXXX"), "{errors}");
        refused(
            &format!("{slack}secret_env = \"HOOK_SECRET\"\n"),
            "kairos.toml:11: notify[0].secret_env: a Slack channel is not signed",
        );
    }

    #[test]
    fn a_webhook_needs_exactly_one_secret_reference() {
        refused(
            &HOOK.replace("secret_env = \"HOOK_SECRET\"\n", ""),
            "kairos.toml:8: notify[0].secret_env: a webhook channel is signed per Standard Webhooks",
        );
        refused(
            &HOOK.replace(
                "secret_env = \"HOOK_SECRET\"",
                "secret_env = \"HOOK_SECRET\"\nsecret_file = \"/run/secrets/hook\"",
            ),
            "kairos.toml:11: notify[0].secret_file: set either `secret_env` or `secret_file`, not both",
        );
    }

    #[test]
    fn events_and_teams() {
        refused(
            &HOOK.replace(
                "[\"request_pending\"]",
                "[\"request_pending\", \"grant_made\"]",
            ),
            "kairos.toml:11: notify[0].events",
        );
        let errors = load(&HOOK.replace("[\"request_pending\"]", "[\"grant_made\"]")).unwrap_err();
        assert!(
            errors.contains("event \"grant_made\" is unknown; use one of: ")
                && errors.contains("request_pending"),
            "{errors}"
        );
        refused(
            &HOOK.replace("events = [\"request_pending\"]\n", ""),
            "kairos.toml:6: notify[0].events: a channel needs `events`",
        );
        refused(
            &HOOK.replace("[\"request_pending\"]", "[]"),
            "kairos.toml:11: notify[0].events: a channel needs `events`",
        );
        refused(
            &format!("{HOOK}teams = [\"security\"]\n"),
            "kairos.toml:12: notify[0].teams: team \"security\" is not defined; defined teams: payments",
        );
    }
}
