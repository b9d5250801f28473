//! The tools: their catalog (names, descriptions, JSON Schema inputs, hints), a
//! `tools/call`'s arguments parsed into a [`ToolCall`], and tool results.
//!
//! No tool takes an identity: every call acts as the workload that authenticated the
//! transport. An argument that names one is refused before anything runs.

use serde_json::{Map, Value, json};

/// The longest a tool waits for a pending request's decision (the broker's long poll caps
/// a wait at the same).
pub const MAX_WAIT_SECONDS: u64 = 60;

/// What `request_access` waits for a decision when the call does not say.
pub const DEFAULT_REQUEST_WAIT_SECONDS: u64 = 30;

/// A parsed `tools/call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCall {
    ListEntitlements,
    RequestAccess(AccessRequest),
    GetRequest {
        request_id: String,
        wait_seconds: u64,
    },
    ListGrants {
        state: Option<String>,
    },
    Release {
        grant_id: String,
    },
}

impl ToolCall {
    pub fn name(&self) -> &'static str {
        match self {
            Self::ListEntitlements => "list_entitlements",
            Self::RequestAccess(_) => "request_access",
            Self::GetRequest { .. } => "get_request",
            Self::ListGrants { .. } => "list_grants",
            Self::Release { .. } => "release",
        }
    }
}

/// `request_access`'s arguments, as strings still: the API's input checks parse them into
/// domain types (the same checks `POST /v1/requests` makes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub entitlement: String,
    pub task_kind: String,
    pub task_ref: String,
    pub reason: String,
    pub ttl: Option<String>,
    pub wait_seconds: u64,
}

/// Why a `tools/call` could not become a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The `params` are not `{name, arguments}`, or the tool does not exist: a JSON-RPC
    /// error (-32602), as the MCP specification says for an unknown tool.
    Protocol(String),
    /// The arguments are wrong: a tool result with `isError`, so that the agent reads
    /// what to fix.
    Arguments(String),
}

const TASK_KINDS: [&str; 4] = ["change", "incident", "maintenance", "job"];
const GRANT_STATES: [&str; 4] = ["provisioning", "active", "revoking", "ended"];
/// Argument names an agent might use to act as someone else.
const IDENTITY_ARGUMENTS: [&str; 6] = [
    "identity",
    "on_behalf_of",
    "workload",
    "subject",
    "principal",
    "user",
];

struct Tool {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    read_only: bool,
    destructive: bool,
    properties: Value,
    required: &'static [&'static str],
}

fn wait_schema(default: u64, what: &str) -> Value {
    json!({
        "type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": default,
        "description": format!("While the request is pending, wait up to this many seconds for its decision ({what}).")
    })
}

fn tools() -> Vec<Tool> {
    vec![
        Tool {
            name: "list_entitlements",
            title: "List entitlements",
            description: "The entitlements this workload may ask for: name, target, risk tier, longest TTL, privileges, and the team that approves it for this workload. Policy decides each request, so a listed entitlement may still be denied.",
            read_only: true,
            destructive: false,
            properties: json!({}),
            required: &[],
        },
        Tool {
            name: "request_access",
            title: "Request access",
            description: "Ask for an entitlement for a named task, as this workload. Policy decides at once: granted (the result carries the credential: a short-lived token or database account; use it only for this task and call `release` when done), pending approval by people (the call waits up to `wait_seconds`; if still pending, call `get_request` with the request id to keep waiting), or denied (an error naming the policies).",
            read_only: false,
            destructive: false,
            properties: json!({
                "entitlement": {"type": "string", "description": "The entitlement, `target/role` (see list_entitlements)."},
                "task_kind": {"type": "string", "enum": TASK_KINDS, "description": "What kind of task needs the access."},
                "task_ref": {"type": "string", "description": "The task's reference: ticket, change, pipeline run or incident id."},
                "reason": {"type": "string", "description": "Why the task needs this access, for the approvers and the audit trail."},
                "ttl": {"type": "string", "description": "How long, e.g. `15m` or `1h`; default 15m, capped by the entitlement."},
                "wait_seconds": wait_schema(DEFAULT_REQUEST_WAIT_SECONDS, "default 30, at most 60"),
            }),
            required: &["entitlement", "task_kind", "task_ref", "reason"],
        },
        Tool {
            name: "get_request",
            title: "Get a request",
            description: "One of this workload's access requests: its state and decision, and once granted the grant and its credential. With `wait_seconds`, waits while it is pending.",
            read_only: true,
            destructive: false,
            properties: json!({
                "request_id": {"type": "string", "description": "The request id (req_…) that request_access returned."},
                "wait_seconds": wait_schema(0, "default 0, at most 60"),
            }),
            required: &["request_id"],
        },
        Tool {
            name: "list_grants",
            title: "List my grants",
            description: "This workload's grants, newest first, with their state, expiry and end-of-access receipt.",
            read_only: true,
            destructive: false,
            properties: json!({
                "state": {"type": "string", "enum": GRANT_STATES, "description": "Only grants in this state (default: all)."},
            }),
            required: &[],
        },
        Tool {
            name: "release",
            title: "Release a grant",
            description: "The task is done: end one of this workload's grants now. Its token stops being accepted and its account is removed and verified gone.",
            read_only: false,
            destructive: true,
            properties: json!({
                "grant_id": {"type": "string", "description": "The grant id (grt_…)."},
            }),
            required: &["grant_id"],
        },
    ]
}

/// The result of `tools/list`.
pub fn catalog() -> Value {
    let tools: Vec<Value> = tools()
        .into_iter()
        .map(|t| {
            json!({
                "name": t.name,
                "title": t.title,
                "description": t.description,
                "inputSchema": {
                    "type": "object",
                    "properties": t.properties,
                    "required": t.required,
                    "additionalProperties": false,
                },
                "annotations": {
                    "title": t.title,
                    "readOnlyHint": t.read_only,
                    "destructiveHint": t.destructive,
                    "idempotentHint": t.read_only,
                    "openWorldHint": false,
                },
            })
        })
        .collect();
    json!({ "tools": tools })
}

/// Parses a `tools/call`'s params.
pub fn parse_call(params: Option<&Value>) -> Result<ToolCall, CallError> {
    let params = params
        .and_then(Value::as_object)
        .ok_or_else(|| CallError::Protocol("tools/call needs params {name, arguments}".into()))?;
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CallError::Protocol("tools/call needs the tool's `name`".into()))?;
    let Some(tool) = tools().into_iter().find(|t| t.name == name) else {
        return Err(CallError::Protocol(format!(
            "unknown tool {:?}; tools/list names the tools",
            name.chars().take(64).collect::<String>()
        )));
    };
    let empty = Map::new();
    let args = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(CallError::Arguments("`arguments` must be an object".into()));
        }
    };
    let args = Args::check(&tool, args)?;
    Ok(match tool.name {
        "request_access" => ToolCall::RequestAccess(AccessRequest {
            entitlement: args.string("entitlement")?.unwrap_or_default(),
            task_kind: args.string("task_kind")?.unwrap_or_default(),
            task_ref: args.string("task_ref")?.unwrap_or_default(),
            reason: args.string("reason")?.unwrap_or_default(),
            ttl: args.string("ttl")?,
            wait_seconds: args.wait(DEFAULT_REQUEST_WAIT_SECONDS)?,
        }),
        "get_request" => ToolCall::GetRequest {
            request_id: args.string("request_id")?.unwrap_or_default(),
            wait_seconds: args.wait(0)?,
        },
        "list_grants" => ToolCall::ListGrants {
            state: args.string("state")?,
        },
        "release" => ToolCall::Release {
            grant_id: args.string("grant_id")?.unwrap_or_default(),
        },
        _ => ToolCall::ListEntitlements,
    })
}

/// A tool's arguments, checked against its schema's names and required list.
struct Args<'a>(&'a Map<String, Value>);

impl<'a> Args<'a> {
    fn check(tool: &Tool, args: &'a Map<String, Value>) -> Result<Self, CallError> {
        let known = tool.properties.as_object();
        for key in args.keys() {
            if IDENTITY_ARGUMENTS.contains(&key.to_ascii_lowercase().as_str()) {
                return Err(CallError::Arguments(format!(
                    "`{}` is not an argument of {}: every Kairos tool acts as the workload identity that authenticated this connection, and no other; remove it",
                    clip(key),
                    tool.name
                )));
            }
            if !known.is_some_and(|k| k.contains_key(key)) {
                let names: Vec<&str> = known
                    .map(|k| k.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(CallError::Arguments(format!(
                    "`{}` is not an argument of {}; it takes {}",
                    clip(key),
                    tool.name,
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
        }
        for required in tool.required {
            if args.get(*required).is_none_or(Value::is_null) {
                return Err(CallError::Arguments(format!(
                    "{} needs `{required}`",
                    tool.name
                )));
            }
        }
        for (key, value) in args {
            let enumerated = known
                .and_then(|k| k.get(key))
                .and_then(|s| s.get("enum"))
                .and_then(Value::as_array);
            if let (Some(allowed), Some(v)) = (enumerated, value.as_str())
                && !allowed.iter().any(|a| a == v)
            {
                let allowed: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                return Err(CallError::Arguments(format!(
                    "`{key}` must be one of {}, not {:?}",
                    allowed.join(", "),
                    clip(v)
                )));
            }
        }
        Ok(Self(args))
    }

    fn string(&self, key: &str) -> Result<Option<String>, CallError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(CallError::Arguments(format!("`{key}` must be a string"))),
        }
    }

    fn wait(&self, default: u64) -> Result<u64, CallError> {
        match self.0.get("wait_seconds") {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|s| *s <= MAX_WAIT_SECONDS)
                .ok_or_else(|| {
                    CallError::Arguments(format!(
                        "`wait_seconds` must be a whole number from 0 to {MAX_WAIT_SECONDS}"
                    ))
                }),
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// What a tool did, for its result.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    /// Done: one line for the agent, and the data (also the result's `structuredContent`).
    Done { summary: String, data: Value },
    /// Refused or failed: a code and a message saying what to do; nothing changed unless
    /// the message says so. `details` joins the structured error (e.g. `policies`).
    Refused {
        code: String,
        message: String,
        details: Option<Value>,
    },
}

impl ToolOutcome {
    pub fn refused(code: &str, message: impl Into<String>) -> Self {
        Self::Refused {
            code: code.to_owned(),
            message: message.into(),
            details: None,
        }
    }
}

/// The `tools/call` result for an outcome: text content for any client (the summary, then
/// the data as JSON text) and `structuredContent`; `isError` for a refusal.
pub fn call_result(outcome: ToolOutcome) -> Value {
    match outcome {
        ToolOutcome::Done { summary, data } => json!({
            "content": [
                {"type": "text", "text": summary},
                {"type": "text", "text": data.to_string()},
            ],
            "structuredContent": data,
            "isError": false,
        }),
        ToolOutcome::Refused {
            code,
            message,
            details,
        } => {
            let mut error = json!({"code": code, "message": message});
            if let (Some(Value::Object(extra)), Some(e)) = (details, error.as_object_mut()) {
                e.extend(extra);
            }
            json!({
                "content": [{"type": "text", "text": format!("{code}: {message}")}],
                "structuredContent": {"error": error},
                "isError": true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: Value) -> Result<ToolCall, CallError> {
        parse_call(Some(&json!({"name": name, "arguments": arguments})))
    }

    fn refused(name: &str, arguments: Value, needle: &str) {
        match call(name, arguments.clone()) {
            Err(CallError::Arguments(m)) => assert!(m.contains(needle), "{name} {arguments}: {m}"),
            other => panic!("{name} {arguments}: {other:?}"),
        }
    }

    #[test]
    fn catalog_lists_every_tool_with_a_closed_object_schema() {
        let c = catalog();
        let names: Vec<&str> = c["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "list_entitlements",
                "request_access",
                "get_request",
                "list_grants",
                "release"
            ]
        );
        for t in c["tools"].as_array().unwrap() {
            assert_eq!(t["inputSchema"]["type"], "object");
            assert_eq!(t["inputSchema"]["additionalProperties"], false);
            for r in t["inputSchema"]["required"].as_array().unwrap() {
                assert!(
                    t["inputSchema"]["properties"]
                        .get(r.as_str().unwrap())
                        .is_some()
                );
            }
        }
    }

    #[test]
    fn calls_parse() {
        assert_eq!(
            call("list_entitlements", json!({})),
            Ok(ToolCall::ListEntitlements)
        );
        assert_eq!(
            parse_call(Some(&json!({"name": "list_grants"}))),
            Ok(ToolCall::ListGrants { state: None })
        );
        assert_eq!(
            call(
                "request_access",
                json!({"entitlement": "db/ro", "task_kind": "job", "task_ref": "run-1", "reason": "backup"})
            ),
            Ok(ToolCall::RequestAccess(AccessRequest {
                entitlement: "db/ro".into(),
                task_kind: "job".into(),
                task_ref: "run-1".into(),
                reason: "backup".into(),
                ttl: None,
                wait_seconds: DEFAULT_REQUEST_WAIT_SECONDS,
            }))
        );
        assert_eq!(
            call(
                "get_request",
                json!({"request_id": "req_1", "wait_seconds": 60})
            ),
            Ok(ToolCall::GetRequest {
                request_id: "req_1".into(),
                wait_seconds: 60
            })
        );
        assert_eq!(
            call("release", json!({"grant_id": "grt_1"})),
            Ok(ToolCall::Release {
                grant_id: "grt_1".into()
            })
        );
    }

    #[test]
    fn bad_arguments_say_what_to_fix() {
        refused("release", json!({}), "needs `grant_id`");
        refused("release", json!({"grant_id": 7}), "must be a string");
        refused(
            "release",
            json!({"grant_id": "g", "force": true}),
            "takes grant_id",
        );
        refused("list_entitlements", json!({"x": 1}), "takes none");
        refused("list_grants", json!({"state": "gone"}), "must be one of");
        refused(
            "get_request",
            json!({"request_id": "r", "wait_seconds": 61}),
            "from 0 to 60",
        );
        refused(
            "get_request",
            json!({"request_id": "r", "wait_seconds": -1}),
            "from 0 to 60",
        );
        assert!(matches!(
            parse_call(Some(&json!({"name": "release", "arguments": [1]}))),
            Err(CallError::Arguments(_))
        ));
    }

    #[test]
    fn no_tool_takes_another_identity() {
        for (name, mut args) in [
            ("list_grants", json!({})),
            ("release", json!({"grant_id": "grt_1"})),
            (
                "request_access",
                json!({"entitlement": "db/ro", "task_kind": "job", "task_ref": "r", "reason": "x"}),
            ),
        ] {
            for key in ["identity", "on_behalf_of", "Identity"] {
                args[key] = json!("someone-else");
                refused(name, args.clone(), "acts as the workload identity");
                args.as_object_mut().unwrap().remove(key);
            }
        }
    }

    #[test]
    fn unknown_tools_are_protocol_errors() {
        assert!(matches!(
            call("drop_tables", json!({})),
            Err(CallError::Protocol(_))
        ));
        assert!(matches!(parse_call(None), Err(CallError::Protocol(_))));
        assert!(matches!(
            parse_call(Some(&json!({"arguments": {}}))),
            Err(CallError::Protocol(_))
        ));
    }

    #[test]
    fn results() {
        let ok = call_result(ToolOutcome::Done {
            summary: "granted".into(),
            data: json!({"a": 1}),
        });
        assert_eq!(ok["isError"], false);
        assert_eq!(ok["structuredContent"], json!({"a": 1}));
        assert_eq!(ok["content"][1]["text"], r#"{"a":1}"#);
        let err = call_result(ToolOutcome::Refused {
            code: "denied".into(),
            message: "no".into(),
            details: Some(json!({"policies": ["p"]})),
        });
        assert_eq!(err["isError"], true);
        assert_eq!(
            err["structuredContent"],
            json!({"error": {"code": "denied", "message": "no", "policies": ["p"]}})
        );
        assert_eq!(err["content"][0]["text"], "denied: no");
    }
}
