//! Security Event Tokens for resource servers that verify Kairos tokens offline
//! (README "Revocation pushed to resource servers (SETs)").
//!
//! | endpoint | who may call |
//! |---|---|
//! | `POST /v1/ssf/poll/{receiver}` | the resource server named by that `[[set_receiver]]` (delivery `poll`), with HTTP Basic (`client_id` = its user name, `client_secret` = its API token) or a Bearer API token |
//! | `GET /v1/ssf/receivers` | admins, operators, auditors |
//!
//! A poll by anyone else is 403 with the same message whether or not the receiver exists
//! (nothing about any SET is revealed); without credentials, 401 `invalid_client`. The
//! receivers' list (names, audiences, backlogs) is refused to everyone else with 403.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use kairos_broker::sets::{POLL_MAX_EVENTS, SetPoll};
use kairos_store::PollAcks;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Auth, json_from_bytes};
use crate::oauth::OAuthClient;

/// A receiver's error about one SET (RFC 8936 §2.4.3).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SetErrBody {
    /// The error code, e.g. `invalid_audience`.
    pub err: String,
    pub description: Option<String>,
}

/// An RFC 8936 poll request. Every member is optional; an empty body is `{}`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PollBody {
    /// `jti`s of SETs received and processed.
    pub ack: Vec<String>,
    /// `jti` → error, for SETs received that the receiver could not process (they are not
    /// sent again; the grant's receipt names the error).
    #[serde(rename = "setErrs")]
    pub set_errs: BTreeMap<String, SetErrBody>,
    /// At most this many SETs in the answer (0: only acknowledge; at most 100).
    #[serde(rename = "maxEvents")]
    pub max_events: Option<u32>,
    /// Answer at once when nothing is waiting (default false: wait up to 20 s for one).
    #[serde(rename = "returnImmediately")]
    pub return_immediately: bool,
}

/// An RFC 8936 poll answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PollView {
    /// `jti` → the SET (a compact JWS, `typ` `secevent+jwt`).
    pub sets: BTreeMap<String, String>,
    /// More SETs are waiting than this answer holds.
    #[serde(rename = "moreAvailable")]
    pub more_available: bool,
}

/// The longest `jti` accepted in an ack.
const MAX_JTI: usize = 256;
/// The most acks and errors one poll may carry.
const MAX_ANSWERS: usize = 1000;

fn check_jti(jti: &str, member: &str) -> Result<(), ApiError> {
    if jti.is_empty() || jti.chars().count() > MAX_JTI || jti.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "each `{member}` entry must be the `jti` of a SET you were given (1-{MAX_JTI} characters); nothing was recorded"
            ),
        ));
    }
    Ok(())
}

/// Parses and checks a poll body.
fn poll_request(body: &[u8]) -> Result<SetPoll, ApiError> {
    let body: PollBody = if body.iter().all(u8::is_ascii_whitespace) {
        PollBody::default()
    } else {
        json_from_bytes(body)?
    };
    if body.ack.len() + body.set_errs.len() > MAX_ANSWERS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "acknowledge at most {MAX_ANSWERS} SETs per poll (ack and setErrs together); nothing was recorded"
            ),
        ));
    }
    for jti in &body.ack {
        check_jti(jti, "ack")?;
    }
    let mut errors = Vec::with_capacity(body.set_errs.len());
    for (jti, e) in body.set_errs {
        check_jti(&jti, "setErrs")?;
        if body.ack.contains(&jti) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "SET {jti:?} is both acknowledged and in error; list it in one of `ack` or `setErrs`; nothing was recorded"
                ),
            ));
        }
        let text: String = format!(
            "{}: {}",
            e.err,
            e.description.as_deref().unwrap_or("no description")
        )
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
        errors.push((jti, text));
    }
    if body.max_events.is_some_and(|m| m > POLL_MAX_EVENTS) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("maxEvents is at most {POLL_MAX_EVENTS}"),
        ));
    }
    Ok(SetPoll {
        acks: PollAcks {
            acks: body.ack,
            errors,
        },
        max_events: body.max_events,
        return_immediately: body.return_immediately,
    })
}

/// RFC 8936 poll: acknowledge SETs (and report errors), and get the receiver's waiting
/// SETs. Only the resource server named by the `[[set_receiver]]` (delivery `poll`) may
/// call it; acks are all or nothing (a `jti` that is not one of this receiver's SETs is
/// 400 and nothing is recorded).
#[utoipa::path(post, path = "/v1/ssf/poll/{receiver}", tag = "ssf",
    operation_id = "ssf_poll",
    params(("receiver" = String, Path, description = "the `[[set_receiver]]` name")),
    security(("basic" = []), ("bearer" = [])),
    request_body(content = PollBody, content_type = "application/json"),
    responses((status = 200, body = PollView),
        (status = 400, description = "the body is not a poll request, or acknowledges a SET this receiver was not given", body = ErrorBody),
        (status = 401, description = "no or wrong client credentials (`invalid_client`)"),
        (status = 403, description = "the caller is not this receiver's resource server", body = ErrorBody)))]
pub async fn poll(
    State(s): State<AppState>,
    client: Result<OAuthClient, Response>,
    Path(receiver): Path<String>,
    body: Bytes,
) -> Response {
    let caller = match client {
        Ok(OAuthClient(c)) => c,
        Err(r) => return r,
    };
    let request = match poll_request(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match s.broker.poll_sets(&caller, &receiver, request).await {
        Ok(batch) => Json(PollView {
            sets: batch.sets.into_iter().collect(),
            more_available: batch.more,
        })
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A SET receiver with its backlog.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiverView {
    pub name: String,
    /// `push` or `poll`.
    pub delivery: String,
    pub resource_server: String,
    pub audience: String,
    /// SETs not yet acknowledged.
    pub pending: u64,
    pub acked: u64,
    /// Refused by the receiver (400 with an RFC 8935 error, or `setErrs`).
    pub failed: u64,
    /// Push SETs given up after a day undelivered.
    pub dead: u64,
    pub last_acked_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiverList {
    pub receivers: Vec<ReceiverView>,
}

/// The `[[set_receiver]]`s with their backlogs (admins, operators, auditors).
#[utoipa::path(get, path = "/v1/ssf/receivers", tag = "ssf",
    responses((status = 200, body = ReceiverList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn receivers(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<ReceiverList>> {
    let list = s.broker.set_receivers(&caller).await?;
    Ok(Json(ReceiverList {
        receivers: list
            .into_iter()
            .map(|r| ReceiverView {
                name: r.name,
                delivery: r.delivery.into(),
                resource_server: r.resource_server,
                audience: r.audience,
                pending: r.backlog.pending,
                acked: r.backlog.acked,
                failed: r.backlog.failed,
                dead: r.backlog.dead,
                last_acked_at: r.backlog.last_acked_at.map(|t| t.to_rfc3339()),
            })
            .collect(),
    }))
}
