//! What a channel receives: a Slack Block Kit message, or a generic JSON payload signed per
//! the Standard Webhooks specification. Built from an [`Event`] only, so nothing but what
//! an audit record may hold (never a secret) can reach a message.

use kairos_crypto::webhook::WebhookSecret;
use serde_json::{Value, json};

use crate::event::Event;
use crate::route::ChannelKind;

/// A message ready to send: its body is fixed when the event is dispatched, so every retry
/// sends the same bytes under the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub body: String,
}

/// Slack's `mrkdwn` treats `&`, `<` and `>` as control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Section text is limited to 3000 characters, a field to 2000, a header to 150.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A Slack-compatible incoming-webhook message (Block Kit): a header saying what happened,
/// who and why, the facts as fields, and a button to the console page.
pub fn slack_body(event: &Event) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&event.title, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&format!(
            "*Who:* `{}`\n*Why:* {}",
            escape(&event.actor),
            event.reason.as_deref().map_or_else(|| "—".to_owned(), escape),
        ), 3000)}}),
    ];
    if !event.fields.is_empty() {
        // At most ten fields a section.
        let fields: Vec<Value> = event
            .fields
            .iter()
            .take(10)
            .map(|(label, value)| {
                json!({"type": "mrkdwn", "text": clip(&format!("*{}*\n{}", escape(label), escape(value)), 2000)})
            })
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if let Some(link) = &event.link {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open in Kairos"},
            "url": link,
        }]}));
    }
    blocks.push(json!({"type": "context", "elements": [{
        "type": "mrkdwn",
        "text": format!("`{}` · audit #{} · {}", event.kind, event.seq, event.at.to_rfc3339()),
    }]}));
    let mut text = format!("{}: {}", event.title, event.actor);
    if let Some(link) = &event.link {
        text.push_str(&format!(" <{link}|open>"));
    }
    json!({"text": text, "blocks": blocks})
}

/// The generic webhook payload: `{type, timestamp, data}` as Standard Webhooks suggests,
/// `type` being `kairos.<event>`.
pub fn webhook_body(event: &Event) -> Value {
    let fields: serde_json::Map<String, Value> = event
        .fields
        .iter()
        .map(|(k, v)| (k.to_lowercase().replace(' ', "_"), Value::String(v.clone())))
        .collect();
    json!({
        "type": format!("kairos.{}", event.kind),
        "timestamp": event.at.to_rfc3339(),
        "data": {
            "event": event.kind.as_str(),
            "audit_seq": event.seq,
            "title": event.title,
            "actor": event.actor,
            "reason": event.reason,
            "team": event.team,
            "link": event.link,
            "fields": fields,
        },
    })
}

/// The body a channel of `kind` receives for `event`.
pub fn body_for(kind: ChannelKind, event: &Event) -> String {
    match kind {
        ChannelKind::Slack => slack_body(event),
        ChannelKind::Webhook => webhook_body(event),
    }
    .to_string()
}

/// The Standard Webhooks headers of one delivery attempt at `timestamp` (Unix seconds):
/// `webhook-id` (the idempotency key, the same on every retry), `webhook-timestamp` and,
/// with a secret, `webhook-signature`.
pub fn webhook_headers(
    message: &Message,
    timestamp: i64,
    secret: Option<&WebhookSecret>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("webhook-id", message.id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
    ];
    if let Some(secret) = secret {
        headers.push((
            "webhook-signature",
            secret.sign(&message.id, timestamp, message.body.as_bytes()),
        ));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use kairos_domain::Timestamp;

    fn event() -> Event {
        Event {
            kind: EventKind::RequestPending,
            seq: 12,
            at: Timestamp::from_millis(1_700_000_000_000),
            team: Some("dba".into()),
            title: "Access request waits for approval".into(),
            actor: "workload:ci<deployer>".into(),
            reason: Some("fix & deploy".into()),
            fields: vec![("Entitlement".into(), "payments-db/read".into())],
            link: Some("http://k/ui/requests/req_1".into()),
        }
    }

    #[test]
    fn slack_message_has_what_who_why_and_the_link() {
        let body = slack_body(&event());
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(
            blocks[0]["text"]["text"],
            "Access request waits for approval"
        );
        let who_why = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(who_why.contains("workload:ci&lt;deployer&gt;"), "{who_why}");
        assert!(who_why.contains("fix &amp; deploy"), "{who_why}");
        assert_eq!(
            blocks[2]["fields"][0]["text"],
            "*Entitlement*\npayments-db/read"
        );
        assert_eq!(
            blocks[3]["elements"][0]["url"],
            "http://k/ui/requests/req_1"
        );
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .contains("http://k/ui/requests/req_1")
        );
    }

    #[test]
    fn webhook_payload_is_typed() {
        let body = webhook_body(&event());
        assert_eq!(body["type"], "kairos.request_pending");
        assert_eq!(body["data"]["fields"]["entitlement"], "payments-db/read");
        assert_eq!(body["data"]["audit_seq"], 12);
    }

    #[test]
    fn headers_sign_the_exact_body() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let m = Message {
            id: "kairos-1-ops".into(),
            body: "{}".into(),
        };
        let h = webhook_headers(&m, 1_700_000_000, Some(&secret));
        assert_eq!(h[0], ("webhook-id", "kairos-1-ops".to_owned()));
        assert_eq!(h[1], ("webhook-timestamp", "1700000000".to_owned()));
        assert_eq!(h[2].1, secret.sign("kairos-1-ops", 1_700_000_000, b"{}"));
        assert_eq!(webhook_headers(&m, 1, None).len(), 2);
    }
}
