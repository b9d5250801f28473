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
