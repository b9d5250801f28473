//! The streamable HTTP transport's rules (MCP 2025-06-18 "Transports"), as functions over
//! header values; the handler that applies them is in `kairos-api`.
//!
//! Kairos's endpoint is stateless: it assigns no `Mcp-Session-Id` (every POST carries
//! the workload's bearer token and is authenticated on its own), offers no GET stream
//! and no session to DELETE.

use serde_json::Value;

/// How the answer to a POST that held requests is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyFormat {
    /// `Content-Type: application/json`: the response object (an array for a batch).
    Json,
    /// `Content-Type: text/event-stream`: one SSE `message` event per response, then the
    /// stream closes.
    EventStream,
}

/// Picks the reply format from the `Accept` header. Clients should accept both; Kairos
/// answers JSON whenever it is acceptable. None when the client accepts neither.
pub fn reply_format(accept: Option<&str>) -> Option<ReplyFormat> {
    let Some(accept) = accept else {
        return Some(ReplyFormat::Json);
    };
    let media: Vec<(String, bool)> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let kind = pieces.next()?.trim().to_ascii_lowercase();
            // `q=0` means "not acceptable".
            let refused = pieces.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (!kind.is_empty()).then_some((kind, !refused))
        })
        .collect();
    let accepts = |wanted: &str| {
        let family = wanted.split('/').next().unwrap_or_default();
        media.iter().any(|(m, ok)| {
            *ok && (m == wanted || m == "*/*" || m.strip_suffix("/*") == Some(family))
        })
    };
    if accepts("application/json") {
        Some(ReplyFormat::Json)
    } else if accepts("text/event-stream") {
        Some(ReplyFormat::EventStream)
    } else {
        None
    }
}

/// One server-sent event carrying a JSON-RPC message.
pub fn sse_event(message: &Value) -> String {
    // serde_json writes no raw newlines (they are escaped inside strings), so one
    // `data:` line carries the whole message.
    format!("event: message\ndata: {message}\n\n")
}

/// Whether a request with this `Origin` may be served (DNS rebinding protection). Agent
/// runtimes send none; a browser always does, and only the broker's own public origin
/// (from its issuer URL, e.g. `https://kairos.example.com`) is accepted.
pub fn origin_allowed(origin: Option<&str>, issuer_url: &str) -> bool {
    match origin {
        None => true,
        Some(origin) => {
            let own = origin_of(issuer_url);
            !own.is_empty()
                && origin
                    .trim()
                    .trim_end_matches('/')
                    .eq_ignore_ascii_case(own)
        }
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    let Some(scheme_end) = url.find("://") else {
        return "";
    };
    let after = scheme_end + 3;
    let end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after + i);
    &url[..end]
}

/// Checks an `MCP-Protocol-Version` header. Absent is taken as 2025-03-26, as the
/// specification says; a revision Kairos does not speak is refused (400) with a message.
pub fn check_protocol_version(header: Option<&str>) -> Result<(), String> {
    match header {
        None => Ok(()),
        Some(v) if crate::PROTOCOL_VERSIONS.contains(&v.trim()) => Ok(()),
        Some(v) => Err(format!(
            "MCP-Protocol-Version {:?} is not one Kairos speaks; it speaks {}",
            v.chars().take(32).collect::<String>(),
            crate::PROTOCOL_VERSIONS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accept() {
        let check = |accept: Option<&str>, want: Option<ReplyFormat>| {
            assert_eq!(reply_format(accept), want, "{accept:?}");
        };
        check(None, Some(ReplyFormat::Json));
        check(
            Some("application/json, text/event-stream"),
            Some(ReplyFormat::Json),
        );
        check(Some("text/event-stream"), Some(ReplyFormat::EventStream));
        check(
            Some("application/json;q=0, text/event-stream"),
            Some(ReplyFormat::EventStream),
        );
        check(Some("*/*"), Some(ReplyFormat::Json));
        check(Some("application/*"), Some(ReplyFormat::Json));
        check(Some("text/html"), None);
        check(Some("text/*"), Some(ReplyFormat::EventStream));
    }

    #[test]
    fn origins() {
        let own = "https://kairos.example.com/";
        assert!(origin_allowed(None, own));
        assert!(origin_allowed(Some("https://kairos.example.com"), own));
        assert!(origin_allowed(Some("https://KAIROS.example.com"), own));
        assert!(!origin_allowed(Some("https://evil.example"), own));
        assert!(!origin_allowed(Some("http://kairos.example.com"), own));
        assert!(!origin_allowed(Some("null"), own));
        assert!(origin_allowed(
            Some("http://127.0.0.1:8740"),
            "http://127.0.0.1:8740"
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:8741"),
            "http://127.0.0.1:8740/x"
        ));
        assert!(!origin_allowed(Some("x"), "not a url"));
    }

    #[test]
    fn versions() {
        assert!(check_protocol_version(None).is_ok());
        assert!(check_protocol_version(Some("2025-06-18")).is_ok());
        assert!(check_protocol_version(Some("2025-03-26")).is_ok());
        assert!(check_protocol_version(Some("1999-01-01")).is_err());
    }

    #[test]
    fn events() {
        assert_eq!(
            sse_event(&json!({"a": "x\ny"})),
            "event: message\ndata: {\"a\":\"x\\ny\"}\n\n"
        );
    }
}
