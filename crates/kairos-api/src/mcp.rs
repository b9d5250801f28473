//! `/v1/mcp`: the Model Context Protocol over streamable HTTP, for AI agents acting as
//! their workload identity. `kairos-mcp` holds the protocol (messages, handshake, tool
//! catalog, argument parsing, header rules); this module applies the HTTP rules and runs
//! each tool against the broker exactly as the REST handlers do, as the authenticated
//! caller.
//!
//! Who may call: a workload, with `Authorization: Bearer <platform JWT>` on every POST
//! (no token or a refused one: 401 with `WWW-Authenticate: Bearer`). People's API tokens
//! are refused (403 `workload_only`): an agent acts as its own workload identity, and
//! people use the API, the CLI or the console. A request with an `Origin` header other
//! than the broker's own public URL (its issuer URL) is refused (403 `origin_refused`)
//! before anything else is read (DNS rebinding). The endpoint keeps no session: it
//! assigns no `Mcp-Session-Id`; GET (no server-initiated stream) and DELETE (no session
//! to end) are 405.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kairos_broker::{Caller, NewRequest};
use kairos_mcp::jsonrpc::{self, Body};
use kairos_mcp::tools::{AccessRequest, ToolCall, ToolOutcome, call_result};
use kairos_mcp::transport::{self, ReplyFormat};
use kairos_mcp::{ServerInfo, Step};
use kairos_store::{GrantFilter, GrantStateFilter};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ClientSource, bearer_header, body_error, json_content_type};
use crate::grants::parse_grant_id;
use crate::inputs::check_create_request;
use crate::requests::parse_request_id;
use crate::views::{CreateRequestBody, GrantView, RequestResponse, TaskBody};

fn server_info() -> ServerInfo {
    ServerInfo {
        name: "kairos".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        instructions: kairos_mcp::INSTRUCTIONS.into(),
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A transport-level refusal of the message itself: 400 with a JSON-RPC error (no id).
fn rpc_refusal(status: StatusCode, code: i64, message: String) -> Response {
    (
        status,
        axum::Json(jsonrpc::error(Value::Null, code, message)),
    )
        .into_response()
}

/// `POST /v1/mcp`: one JSON-RPC message (or a batch) per request.
pub async fn post(
    State(s): State<AppState>,
    ClientSource(source): ClientSource,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !transport::origin_allowed(header(&headers, "origin"), &s.broker.settings().issuer_url) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_refused",
            "requests from web pages are refused here: the MCP endpoint serves agent runtimes, which send no Origin header (only Kairos's own public URL is accepted as an Origin)",
        )
        .into_response();
    }
    let caller = match authenticate(&s, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(format) = transport::reply_format(header(&headers, "accept")) else {
        return ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "send `Accept: application/json, text/event-stream`: the MCP endpoint answers in one of those",
        )
        .into_response();
    };
    if !json_content_type(&headers) {
        return body_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, String::new()).into_response();
    }
    let bytes = match body {
        Ok(b) => b,
        Err(rejection) => {
            return body_error(rejection.status(), rejection.body_text()).into_response();
        }
    };
    let body = match jsonrpc::parse_body(&bytes) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, axum::Json(e)).into_response(),
    };
    // The client sends the negotiated revision on every request after `initialize`.
    if !is_initialize(&body)
        && let Err(m) = transport::check_protocol_version(header(&headers, "mcp-protocol-version"))
    {
        return rpc_refusal(StatusCode::BAD_REQUEST, jsonrpc::INVALID_REQUEST, m);
    }

    let info = server_info();
    let (messages, batch) = match body {
        Body::One(v) => (vec![v], false),
        Body::Batch(items) => (items, true),
    };
    let mut replies = Vec::new();
    for message in messages {
        let incoming = match jsonrpc::parse_message(message) {
            Ok(m) => m,
            Err(e) if !batch => return (StatusCode::BAD_REQUEST, axum::Json(e)).into_response(),
            Err(e) => {
                replies.push(e);
                continue;
            }
        };
        match kairos_mcp::step(incoming, &info) {
            Step::Reply(r) => replies.push(r),
            Step::Call { id, call } => {
                let outcome = run(&s, &caller, source, call).await;
                replies.push(jsonrpc::result(id, call_result(outcome)));
            }
            Step::Nothing => {}
        }
    }
    if replies.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let mut response = match format {
        ReplyFormat::Json if batch => axum::Json(Value::Array(replies)).into_response(),
        ReplyFormat::Json => axum::Json(replies.pop().unwrap_or(Value::Null)).into_response(),
        ReplyFormat::EventStream => {
            let events: String = replies.iter().map(transport::sse_event).collect();
            ([(header::CONTENT_TYPE, "text/event-stream")], events).into_response()
        }
    };
    // Tool results may carry credentials.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn is_initialize(body: &Body) -> bool {
    let init = |v: &Value| v.get("method").and_then(Value::as_str) == Some("initialize");
    match body {
        Body::One(v) => init(v),
        Body::Batch(items) => items.iter().any(init),
    }
}

async fn authenticate(s: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer_header(headers)?;
    match s.broker.authenticate(token).await? {
        caller @ Caller::Workload { .. } => Ok(caller),
        Caller::User(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "workload_only",
            "the MCP endpoint is for workloads: authenticate with the workload's platform JWT. People use the API, the CLI or the console",
        )),
    }
}

/// `GET` and `DELETE /v1/mcp`: no server-initiated stream, no session.
pub async fn not_offered() -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Kairos's MCP endpoint takes POST only: it opens no server-initiated stream and keeps no session to delete",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// Runs one tool as `caller` (a workload). Refusals and failures become tool errors that
/// the agent reads; nothing is logged of the arguments or the result (a result may carry
/// a credential).
async fn run(
    s: &AppState,
    caller: &Caller,
    source: Option<std::net::IpAddr>,
    call: ToolCall,
) -> ToolOutcome {
    let tool = call.name();
    let outcome = match call {
        ToolCall::ListEntitlements => list_entitlements(s, caller),
        ToolCall::RequestAccess(r) => request_access(s, caller, source, r).await,
        ToolCall::GetRequest {
            request_id,
            wait_seconds,
        } => get_request(s, caller, &request_id, wait_seconds).await,
        ToolCall::ListGrants { state } => list_grants(s, caller, state.as_deref()).await,
        ToolCall::Release { grant_id } => release(s, caller, &grant_id).await,
    }
    .unwrap_or_else(|e| ToolOutcome::Refused {
        code: e.code,
        message: e.message,
        details: e.policies.map(|p| json!({ "policies": p })),
    });
    let identity = match caller {
        Caller::Workload { identity } => identity.to_string(),
        Caller::User(u) => u.name.to_string(),
    };
    let result = match &outcome {
        ToolOutcome::Done { .. } => "done",
        ToolOutcome::Refused { code, .. } => code.as_str(),
    };
    tracing::info!(tool, identity = %identity, result, "mcp tool call");
    outcome
}

fn to_value(v: impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::from(kairos_broker::BrokerError::internal(e)))
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Another identity's request or grant, and one that does not exist, get the same answer:
/// the caller learns nothing about who else holds what.
fn not_yours(e: ApiError, what: &str, id: &str) -> ApiError {
    if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::FORBIDDEN {
        ApiError::not_found(format!(
            "this workload has no {what} {:?}; list_grants shows its grants, and request_access returns its request ids",
            clip(id)
        ))
    } else {
        e
    }
}

fn list_entitlements(s: &AppState, caller: &Caller) -> Result<ToolOutcome, ApiError> {
    let (catalog, identity) = s.broker.entitlements_for(caller)?;
    let entitlements: Vec<_> = catalog
        .entitlements()
        .map(|e| crate::admin::entitlement_view(&catalog, e, identity.as_ref()))
        .collect();
    let names: Vec<&str> = entitlements.iter().map(|e| e.name.as_str()).collect();
    let summary = format!(
        "{} entitlements this workload may ask for (policy decides each request): {}",
        names.len(),
        names.join(", ")
    );
    Ok(ToolOutcome::Done {
        summary,
        data: json!({
            "identity": identity.map(|i| i.to_string()),
            "entitlements": to_value(&entitlements)?,
        }),
    })
}

async fn request_access(
    s: &AppState,
    caller: &Caller,
    source: Option<std::net::IpAddr>,
    r: AccessRequest,
) -> Result<ToolOutcome, ApiError> {
    let checked = check_create_request(&CreateRequestBody {
        entitlement: r.entitlement,
        ttl: r.ttl,
        task: TaskBody {
            kind: r.task_kind,
            reference: r.task_ref,
            reason: r.reason,
        },
        identity: None,
        // MCP's tools take no SSH key: an ssh entitlement answers the broker's clear 400.
        public_key: None,
    })?;
    let mut outcome = s
        .broker
        .request(
            caller,
            NewRequest {
                identity: None,
                entitlement: checked.entitlement,
                ttl: checked.ttl,
                task: checked.task,
                source,
                proof: None,
                // Tokens asked for through MCP are bearer tokens: a tool call carries no DPoP
                // proof, and this endpoint authenticates by the bearer alone (an entitlement
                // that requires a binding refuses it with the broker's clear 400).
                client_cert: None,
                public_key: None,
            },
        )
        .await?;
    if outcome.grant.is_none() && r.wait_seconds > 0 {
        let capped = outcome.ttl_capped;
        outcome = s
            .broker
            .get_request(
                caller,
                &outcome.request.id,
                Some(Duration::from_secs(r.wait_seconds)),
            )
            .await?;
        outcome.ttl_capped = capped;
    }
    request_outcome(RequestResponse::from(outcome))
}

async fn get_request(
    s: &AppState,
    caller: &Caller,
    id: &str,
    wait_seconds: u64,
) -> Result<ToolOutcome, ApiError> {
    let parsed = parse_request_id(id).map_err(|e| not_yours(e, "request", id))?;
    let wait = (wait_seconds > 0).then(|| Duration::from_secs(wait_seconds));
    let outcome = s
        .broker
        .get_request(caller, &parsed, wait)
        .await
        .map_err(|e| not_yours(ApiError::from(e), "request", id))?;
    request_outcome(RequestResponse::from(outcome))
}

fn request_outcome(view: RequestResponse) -> Result<ToolOutcome, ApiError> {
    let request = &view.request;
    let summary = match (&view.grant, request.state.as_str()) {
        (Some(g), _) => format!(
            "granted: grant {} of {} until {}{}; the credential is in `credential` (use it only for task {}, and call release with grant_id {} when the task is done)",
            g.id,
            g.entitlement,
            g.expires_at,
            if view.ttl_capped {
                " (the TTL was lowered to the entitlement's cap)"
            } else {
                ""
            },
            g.task.reference,
            g.id
        ),
        (None, "pending") => format!(
            "pending: request {} waits for {} approval(s) by people{}; call get_request with request_id {} and wait_seconds to wait for the decision",
            request.id,
            request.decision.approvals_required,
            request
                .pending_until
                .as_ref()
                .map(|u| format!(" (until {u})"))
                .unwrap_or_default(),
            request.id
        ),
        (None, state) => format!(
            "request {} is {state}{}",
            request.id,
            request
                .denial
                .as_ref()
                .map(|d| format!(" by {}: {}", d.approver, d.reason))
                .unwrap_or_default()
        ),
    };
    Ok(ToolOutcome::Done {
        summary,
        data: to_value(&view)?,
    })
}

async fn list_grants(
    s: &AppState,
    caller: &Caller,
    state: Option<&str>,
) -> Result<ToolOutcome, ApiError> {
    let state = match state {
        None => None,
        Some("provisioning") => Some(GrantStateFilter::Provisioning),
        Some("active") => Some(GrantStateFilter::Active),
        Some("revoking") => Some(GrantStateFilter::Revoking),
        Some("ended") => Some(GrantStateFilter::Ended),
        Some(_) => {
            return Err(ApiError::bad_request(
                "bad_state",
                "state must be provisioning, active, revoking or ended",
            ));
        }
    };
    // The broker narrows a workload's list to its own identity.
    let grants = s
        .broker
        .list_grants(
            caller,
            GrantFilter {
                state,
                limit: Some(100),
                ..GrantFilter::default()
            },
        )
        .await?;
    let views: Vec<GrantView> = grants.iter().map(GrantView::from).collect();
    let lines: Vec<String> = views
        .iter()
        .map(|g| {
            format!(
                "{} {} {} until {}",
                g.id, g.entitlement, g.state, g.expires_at
            )
        })
        .collect();
    Ok(ToolOutcome::Done {
        summary: format!(
            "{} grants of this workload (newest first, at most 100){}{}",
            views.len(),
            if lines.is_empty() { "" } else { ": " },
            lines.join("; ")
        ),
        data: json!({ "grants": to_value(&views)? }),
    })
}

async fn release(s: &AppState, caller: &Caller, id: &str) -> Result<ToolOutcome, ApiError> {
    let parsed = parse_grant_id(id).map_err(|e| not_yours(e, "grant", id))?;
    let grant = s
        .broker
        .release(caller, &parsed)
        .await
        .map_err(|e| not_yours(ApiError::from(e), "grant", id))?;
    let view = GrantView::from(&grant);
    Ok(ToolOutcome::Done {
        summary: format!(
            "released grant {}: it is {} now; its token is no longer accepted, and any account is removed and verified gone",
            view.id, view.state
        ),
        data: to_value(&view)?,
    })
}
