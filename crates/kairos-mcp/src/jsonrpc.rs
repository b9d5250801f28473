//! JSON-RPC 2.0 as MCP uses it: requests (with an `id` that is a string or an integer,
//! never null), notifications (no `id`), and responses.

use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Implementation-defined server error (JSON-RPC reserves -32000 to -32099): the stdio
/// bridge answers with it when the broker refused or could not be reached.
pub const SERVER_ERROR: i64 = -32000;

/// One message from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response to a request of the server's. Kairos sends none, so these are dropped.
    Response,
}

impl Incoming {
    /// The id to answer, for a request.
    pub fn id(&self) -> Option<&Value> {
        match self {
            Self::Request { id, .. } => Some(id),
            Self::Notification { .. } | Self::Response => None,
        }
    }
}

/// What one transport message held: a single JSON-RPC message, or a batch (an array, which
/// MCP 2025-03-26 allows; later revisions send single messages only).
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    One(Value),
    Batch(Vec<Value>),
}

/// The most messages one batch may hold: each may be a tool call that waits up to a
/// minute for a decision, and a batch is answered as a whole.
pub const MAX_BATCH: usize = 16;

/// Reads one transport message. The error is the JSON-RPC error response to send back.
pub fn parse_body(bytes: &[u8]) -> Result<Body, Value> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        error(
            Value::Null,
            PARSE_ERROR,
            format!("the message is not valid JSON: {e}"),
        )
    })?;
    match value {
        Value::Array(items) if items.is_empty() => Err(error(
            Value::Null,
            INVALID_REQUEST,
            "an empty batch: send a JSON-RPC request object",
        )),
        Value::Array(items) if items.len() > MAX_BATCH => Err(error(
            Value::Null,
            INVALID_REQUEST,
            format!(
                "a batch of {} messages; send at most {MAX_BATCH} in one, or one at a time",
                items.len()
            ),
        )),
        Value::Array(items) => Ok(Body::Batch(items)),
        other => Ok(Body::One(other)),
    }
}

/// Classifies one JSON-RPC message. The error is the error response to send back (with
/// the message's id when it had a usable one).
pub fn parse_message(value: Value) -> Result<Incoming, Value> {
    let Value::Object(mut object) = value else {
        return Err(error(
            Value::Null,
            INVALID_REQUEST,
            "a JSON-RPC message must be an object",
        ));
    };
    let id = object.remove("id");
    let answer_id = id.clone().filter(valid_id).unwrap_or(Value::Null);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(error(
            answer_id,
            INVALID_REQUEST,
            "`jsonrpc` must be \"2.0\"",
        ));
    }
    let params = object.remove("params");
    if let Some(p) = &params
        && !p.is_object()
        && !p.is_array()
    {
        return Err(error(
            answer_id,
            INVALID_REQUEST,
            "`params` must be an object when present",
        ));
    }
    match (object.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) if valid_id(&id) => {
            Ok(Incoming::Request { id, method, params })
        }
        (Some(Value::String(_)), Some(_)) => Err(error(
            Value::Null,
            INVALID_REQUEST,
            "`id` must be a string or an integer (MCP does not allow null)",
        )),
        (Some(Value::String(method)), None) => Ok(Incoming::Notification { method, params }),
        (Some(_), _) => Err(error(
            answer_id,
            INVALID_REQUEST,
            "`method` must be a string",
        )),
        (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
            Ok(Incoming::Response)
        }
        (None, _) => Err(error(
            answer_id,
            INVALID_REQUEST,
            "a JSON-RPC message needs a `method` (request or notification) or a `result`/`error` (response)",
        )),
    }
}

fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

/// A success response.
pub fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response.
pub fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// The ids of the requests in a transport message (for answering them all with one error
/// when the message cannot be delivered). Notifications and malformed messages have none.
pub fn request_ids(body: &Body) -> Vec<Value> {
    let one = |v: &Value| {
        v.get("method")
            .and(v.get("id"))
            .filter(|id| valid_id(id))
            .cloned()
    };
    match body {
        Body::One(v) => one(v).into_iter().collect(),
        Body::Batch(items) => items.iter().filter_map(one).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Incoming, i64>) {
        let parsed = parse_body(input.as_bytes()).and_then(|b| match b {
            Body::One(v) => parse_message(v),
            Body::Batch(_) => Err(json!({"error": {"code": 0}})),
        });
        match (parsed, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
            (Err(got), Err(code)) => assert_eq!(got["error"]["code"], code, "{input}: {got}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn messages() {
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            Ok(Incoming::Request {
                id: json!(1),
                method: "ping".into(),
                params: None,
            }),
        );
        check(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{}}"#,
            Ok(Incoming::Request {
                id: json!("a"),
                method: "tools/list".into(),
                params: Some(json!({})),
            }),
        );
        check(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            Ok(Incoming::Notification {
                method: "notifications/initialized".into(),
                params: None,
            }),
        );
        check(
            r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
            Ok(Incoming::Response),
        );
        check("{nope", Err(PARSE_ERROR));
        check("[]", Err(INVALID_REQUEST));
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let batch = |n: usize| format!("[{}]", vec![ping; n].join(","));
        assert!(matches!(
            parse_body(batch(MAX_BATCH).as_bytes()),
            Ok(Body::Batch(b)) if b.len() == MAX_BATCH
        ));
        check(&batch(MAX_BATCH + 1), Err(INVALID_REQUEST));
        check("7", Err(INVALID_REQUEST));
        check(r#"{"id":1,"method":"ping"}"#, Err(INVALID_REQUEST));
        check(
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            Err(INVALID_REQUEST),
        );
        check(
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            Err(INVALID_REQUEST),
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            Err(INVALID_REQUEST),
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
            Err(INVALID_REQUEST),
        );
        check(r#"{"jsonrpc":"2.0","id":1}"#, Err(INVALID_REQUEST));
    }

    #[test]
    fn an_error_keeps_a_usable_id() {
        let e = parse_message(json!({"jsonrpc": "1.0", "id": 9, "method": "ping"})).unwrap_err();
        assert_eq!(e["id"], 9);
        assert_eq!(e["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn ids_of_a_batch() {
        let body = parse_body(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":"x","method":"ping"}]"#,
        )
        .unwrap();
        assert_eq!(request_ids(&body), vec![json!(1), json!("x")]);
    }
}
