//! The Model Context Protocol (MCP) for Kairos, as pure code: no IO, no broker, no HTTP
//! types.
//!
//! An agent runtime speaks MCP to `POST /v1/mcp` (streamable HTTP; the transport and the
//! tools' work against the broker are in `kairos-api`) or to `kairos mcp` (stdio, a bridge
//! in `kairos-cli` that forwards each message to that endpoint). This crate is what both
//! share: [`jsonrpc`] messages, the handshake and method routing ([`step`]), the
//! [`tools`] catalog and argument parsing, and the streamable HTTP header rules
//! ([`transport`]).
//!
//! Invariant: a tool call never names an identity; the transport's authenticated
//! workload is the only one a call acts as.

pub mod jsonrpc;
pub mod tools;
pub mod transport;

use serde_json::{Value, json};

use crate::jsonrpc::Incoming;
use crate::tools::{CallError, ToolCall, ToolOutcome};

/// The protocol revisions Kairos speaks, newest first. A client asking for another gets
/// the newest (and may disconnect if it cannot speak it).
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

/// What the server says about itself at `initialize`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
    /// Guidance for the agent (MCP `instructions`).
    pub instructions: String,
}

/// The instructions Kairos gives agents at `initialize`.
pub const INSTRUCTIONS: &str = "Kairos grants just-in-time access for one task at a time. Call list_entitlements to see what you may ask for; request_access with the task's kind, reference and reason (and the shortest TTL that fits); use the credential only for that task; call release with the grant id as soon as the task is done. Requests that need approval come back pending: wait with get_request. Every call acts as this workload and is decided by policy and audited.";

/// The version to answer a client's `initialize` with: its own when Kairos speaks it, else
/// Kairos's newest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    PROTOCOL_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(PROTOCOL_VERSIONS[0])
}

/// What to do with one incoming message.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this response.
    Reply(Value),
    /// Run this tool as the caller, then answer `id` with [`tools::call_result`].
    Call { id: Value, call: ToolCall },
    /// A notification or a response: nothing to send.
    Nothing,
}

/// Routes one message. Stateless: any message may come on any connection (the
/// transport authenticates each one), so a `tools/call` before `initialize` is answered
/// too.
pub fn step(message: Incoming, info: &ServerInfo) -> Step {
    let (id, method, params) = match message {
        Incoming::Request { id, method, params } => (id, method, params),
        Incoming::Notification { .. } | Incoming::Response => return Step::Nothing,
    };
    match method.as_str() {
        "initialize" => {
            let requested = params
                .as_ref()
                .and_then(|p| p.get("protocolVersion"))
                .and_then(Value::as_str);
            Step::Reply(jsonrpc::result(
                id,
                json!({
                    "protocolVersion": negotiate(requested),
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": info.name, "title": "Kairos", "version": info.version},
                    "instructions": info.instructions,
                }),
            ))
        }
        "ping" => Step::Reply(jsonrpc::result(id, json!({}))),
        "tools/list" => Step::Reply(jsonrpc::result(id, tools::catalog())),
        "tools/call" => match tools::parse_call(params.as_ref()) {
            Ok(call) => Step::Call { id, call },
            Err(CallError::Protocol(m)) => {
                Step::Reply(jsonrpc::error(id, jsonrpc::INVALID_PARAMS, m))
            }
            Err(CallError::Arguments(m)) => Step::Reply(jsonrpc::result(
                id,
                tools::call_result(ToolOutcome::refused("bad_arguments", m)),
            )),
        },
        other => Step::Reply(jsonrpc::error(
            id,
            jsonrpc::METHOD_NOT_FOUND,
            format!(
                "Kairos does not serve {:?}; it serves initialize, ping, tools/list and tools/call",
                other.chars().take(64).collect::<String>()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ServerInfo {
        ServerInfo {
            name: "kairos".into(),
            version: "0.1.0".into(),
            instructions: INSTRUCTIONS.into(),
        }
    }

    fn request(method: &str, params: Value) -> Incoming {
        Incoming::Request {
            id: json!(1),
            method: method.into(),
            params: Some(params),
        }
    }

    fn reply(message: Incoming) -> Value {
        match step(message, &info()) {
            Step::Reply(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn initialize_negotiates_the_version() {
        let r = reply(request(
            "initialize",
            json!({"protocolVersion": "2025-03-26", "capabilities": {}}),
        ));
        assert_eq!(r["result"]["protocolVersion"], "2025-03-26");
        assert_eq!(r["result"]["capabilities"]["tools"]["listChanged"], false);
        assert_eq!(r["result"]["serverInfo"]["name"], "kairos");
        let r = reply(request(
            "initialize",
            json!({"protocolVersion": "2099-01-01"}),
        ));
        assert_eq!(r["result"]["protocolVersion"], PROTOCOL_VERSIONS[0]);
    }

    #[test]
    fn methods() {
        assert_eq!(reply(request("ping", json!({})))["result"], json!({}));
        assert_eq!(
            reply(request("tools/list", json!({})))["result"]["tools"]
                .as_array()
                .map(Vec::len),
            Some(5)
        );
        assert_eq!(
            reply(request("resources/list", json!({})))["error"]["code"],
            jsonrpc::METHOD_NOT_FOUND
        );
        assert_eq!(
            reply(request("tools/call", json!({"name": "nope"})))["error"]["code"],
            jsonrpc::INVALID_PARAMS
        );
        let bad = reply(request(
            "tools/call",
            json!({"name": "release", "arguments": {}}),
        ));
        assert_eq!(bad["result"]["isError"], true);
        assert_eq!(
            step(
                Incoming::Notification {
                    method: "notifications/initialized".into(),
                    params: None
                },
                &info()
            ),
            Step::Nothing
        );
        assert_eq!(
            step(
                request("tools/call", json!({"name": "list_grants"})),
                &info()
            ),
            Step::Call {
                id: json!(1),
                call: ToolCall::ListGrants { state: None }
            }
        );
    }
}
