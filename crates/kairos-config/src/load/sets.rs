//! `[[set_receiver]]`: resource servers told of every end of a token grant on their
//! targets by a signed Security Event Token (RFC 8417), pushed to them (RFC 8935) or
//! fetched by them (RFC 8936). A push receiver's `Authorization` header may be a secret, so
//! it is only ever a reference (`auth_header_env` / `auth_header_file`).

use kairos_domain::{Ttl, UserName};

use super::{Cx, Either, Item, Node, Table, env_name, file_path, item, one_of, text, unique};
use crate::catalog::{SecretRef, SetDelivery, SetReceiver, const_ttl};

const KEYS: [&str; 8] = [
    "name",
    "delivery",
    "endpoint_url",
    "auth_header_env",
    "auth_header_file",
    "resource_server",
    "audience",
    "ack_timeout",
];

/// The longest `ack_timeout`: a grant's receipt waits no longer than a day.
const MAX_ACK_TIMEOUT_SECS: u64 = 86_400;

/// Reads every `[[set_receiver]]` and checks names are unique.
pub(super) fn read_all(cx: &mut Cx<'_>, items: &[(String, &Node)]) -> Vec<SetReceiver> {
    let read: Vec<Item<SetReceiver>> = items
        .iter()
        .filter_map(|(path, node)| read_receiver(cx, path, node))
        .collect();
    unique(cx, "set receiver", read, |r| r.name.clone())
        .into_iter()
        .map(|i| i.value)
        .collect()
}

fn receiver_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "receiver name {:?} must be 1-64 letters, digits, '-' or '_' (it is part of the poll URL)",
            s.chars().take(64).collect::<String>()
        ))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Push,
    Poll,
}

fn mode(s: &str) -> Result<Mode, String> {
    match s {
        "push" => Ok(Mode::Push),
        "poll" => Ok(Mode::Poll),
        _ => Err(format!(
            "delivery {:?} is unknown; use \"push\" (Kairos POSTs each SET to endpoint_url, RFC 8935) or \"poll\" (the receiver fetches them, RFC 8936)",
            s.chars().take(40).collect::<String>()
        )),
    }
}

fn endpoint(s: &str) -> Result<String, String> {
    super::check_channel_url(s)
        .map_err(|_| "endpoint_url must be an http:// or https:// URL".to_owned())
}

fn ack_timeout(s: &str) -> Result<Ttl, String> {
    let ttl = Ttl::parse(s).map_err(|e| e.to_string())?;
    if ttl.as_secs() > MAX_ACK_TIMEOUT_SECS {
        return Err(format!(
            "ack_timeout {ttl} is too long: a grant's receipt waits at most 24h for a receiver (the default is 5m)"
        ));
    }
    Ok(ttl)
}

fn read_receiver(cx: &mut Cx<'_>, path: &str, node: &Node) -> Option<Item<SetReceiver>> {
    let mut t = Table::of(cx, path.into(), node)?;
    let name = t.req(cx, "name", receiver_name);
    let delivery = t.req(cx, "delivery", mode);
    let endpoint_url = t.opt(cx, "endpoint_url", endpoint);
    let auth_env = t.opt(cx, "auth_header_env", env_name);
    let auth_file = t.opt(cx, "auth_header_file", file_path);
    let resource_server = t.req(cx, "resource_server", |s| {
        UserName::parse(s).map_err(|e| e.to_string())
    });
    let audience = t.req(cx, "audience", text("audience", 512));
    let timeout = t.opt(cx, "ack_timeout", ack_timeout);
    t.finish(cx, &KEYS);
    let auth = one_of(
        cx,
        &t,
        ("auth_header_env", auth_env),
        ("auth_header_file", auth_file),
    )
    .map(|a| {
        a.map(|a| match a {
            Either::First(env) => SecretRef::Env(env),
            Either::Second(file) => SecretRef::File(file),
        })
    });
    let (Ok(name), Ok(delivery), Ok(endpoint_url), Ok(auth), Ok(rs), Ok(audience), Ok(timeout)) = (
        name,
        delivery,
        endpoint_url,
        auth,
        resource_server,
        audience,
        timeout,
    ) else {
        return None;
    };
    let delivery = match (delivery.value, endpoint_url, auth) {
        (Mode::Push, Some(url), auth) => SetDelivery::Push {
            endpoint_url: url.value,
            auth_header: auth,
        },
        (Mode::Push, None, _) => {
            let span = delivery.span.clone();
            cx.error(
                &span,
                &t.key("endpoint_url"),
                "a push receiver needs `endpoint_url`, where Kairos POSTs its SETs",
            );
            return None;
        }
        (Mode::Poll, Some(url), _) => {
            cx.error(
                &url.span,
                &t.key("endpoint_url"),
                "a poll receiver fetches its SETs from Kairos (POST /v1/ssf/poll/<name>); `endpoint_url` belongs to delivery = \"push\"",
            );
            return None;
        }
        (Mode::Poll, None, Some(_)) => {
            let span = delivery.span.clone();
            cx.error(
                &span,
                &t.key("auth_header_env"),
                "a poll receiver authenticates to Kairos as its resource server; `auth_header_env`/`auth_header_file` belong to delivery = \"push\"",
            );
            return None;
        }
        (Mode::Poll, None, None) => SetDelivery::Poll,
    };
    Some(item(
        &t,
        &KEYS,
        SetReceiver {
            name: name.value,
            delivery,
            resource_server: rs.value,
            audience: audience.value,
            ack_timeout: timeout.map_or_else(|| const_ttl(300), |t| t.value),
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::collections::BTreeMap;

    use crate::{Catalog, ConfigBundle, SetDelivery};

    fn load(text: &str) -> Result<Catalog, String> {
        let bundle = ConfigBundle {
            main_path: "kairos.toml".into(),
            files: BTreeMap::from([("kairos.toml".into(), text.to_owned())]),
        };
        Catalog::from_bundle(&bundle).map_err(|e| e.to_string())
    }

    /// `text` is refused with exactly one error line starting with `expected`.
    fn refused(text: &str, expected: &str) {
        let errors = match load(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        let lines: Vec<&str> = errors
            .lines()
            .filter(|l| l.starts_with("kairos.toml:"))
            .collect();
        assert_eq!(lines.len(), 1, "{expected:?} expected:\n{errors}");
        assert!(
            lines[0].starts_with(expected),
            "expected {expected:?}, got:\n{errors}"
        );
    }

    const PUSH: &str = "[[set_receiver]]\nname = \"orders\"\ndelivery = \"push\"\nendpoint_url = \"https://orders.example/ssf\"\nauth_header_env = \"ORDERS_SET_AUTH\"\nresource_server = \"orders-rs\"\naudience = \"https://orders.example\"\n";
    const POLL: &str = "[[set_receiver]]\nname = \"billing\"\ndelivery = \"poll\"\nresource_server = \"billing-rs\"\naudience = \"billing\"\nack_timeout = \"30s\"\n";

    #[test]
    fn receivers_load() {
        let c = load(&format!("{PUSH}\n{POLL}")).unwrap();
        let r = c.set_receivers();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].ack_timeout.as_secs(), 300);
        assert!(matches!(
            &r[0].delivery,
            SetDelivery::Push {
                auth_header: Some(_),
                ..
            }
        ));
        assert_eq!(r[1].delivery, SetDelivery::Poll);
        assert_eq!(r[1].ack_timeout.as_secs(), 30);
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        refused(
            &PUSH.replace("\"push\"", "\"pull\""),
            "kairos.toml:3: set_receiver[0].delivery: delivery \"pull\" is unknown",
        );
        refused(
            &PUSH.replace("endpoint_url = \"https://orders.example/ssf\"\n", ""),
            "kairos.toml:3: set_receiver[0].endpoint_url: a push receiver needs `endpoint_url`",
        );
        refused(
            &format!("{POLL}endpoint_url = \"https://x.example\"\n"),
            "kairos.toml:7: set_receiver[0].endpoint_url: a poll receiver fetches",
        );
        refused(
            &PUSH.replace("https://orders.example/ssf", "ftp://x"),
            "kairos.toml:4: set_receiver[0].endpoint_url: endpoint_url must be",
        );
        refused(
            &POLL.replace("30s", "2d"),
            "kairos.toml:6: set_receiver[0].ack_timeout: ack_timeout 2d is too long",
        );
        refused(
            &format!("{PUSH}auth_header = \"Bearer abc\"\n"),
            "kairos.toml:8: set_receiver[0].auth_header: ",
        );
        refused(
            &PUSH.replace("audience = \"https://orders.example\"\n", ""),
            "kairos.toml:1: set_receiver[0].audience: required key `audience` is missing",
        );
        refused(
            &format!("{POLL}\n{POLL}"),
            "kairos.toml:9: set_receiver[1].name: set receiver \"billing\" is already defined at line 2",
        );
    }
}
