use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kairos_broker::NewRequest;
use kairos_domain::{RequestId, RequestState};
use kairos_store::RequestFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth, ClientCertThumbprint, ClientSource, DpopHeader};
use crate::inputs::{check_create_request, check_reason, parse_identity, parse_ttl};
use crate::views::{CreateRequestBody, ReasonBody, RequestList, RequestResponse, RequestView};

pub(crate) fn parse_request_id(id: &str) -> ApiResult<RequestId> {
    RequestId::parse(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "{:?} is not a request id (they look like req_0192…)",
            id.chars().take(64).collect::<String>()
        ))
    })
}

/// Ask for an entitlement for a task. Policy decides at once: 201 with the grant and its
/// credential, 202 pending approvals, or 403 denied (with the determining policies).
///
/// Who may call: a workload (Bearer platform JWT) for itself; an operator on behalf of an
/// identity. With a `DPoP` header (RFC 9449) whose proof is for `POST` at this URL, the
/// token is bound to the proof's key (`cnf.jkt`, `token_type: "DPoP"`); a refused proof is
/// 400 `invalid_dpop_proof` (the message says which check failed) and changes nothing,
/// and with `[dpop] nonce = true` a proof without the current nonce is 400
/// `use_dpop_nonce` with the nonce in the `DPoP-Nonce` header. An entitlement with
/// `require_binding = "dpop"` refuses a request without a proof (400
/// `dpop_proof_required`).
///
/// A workload may also authenticate over mutual TLS with an X.509-SVID and no
/// `Authorization` header (or with both, naming the same identity). A request over mTLS
/// (an SVID or any verified client certificate) gets a token bound to that certificate
/// (RFC 8705 `cnf.x5t#S256`). `require_binding = "mtls"` (on the entitlement or its tier)
/// refuses a request not made over mTLS (400 `mtls_required`), `"any"` one with neither
/// a DPoP proof nor mTLS (400 `binding_required`).
#[utoipa::path(post, path = "/v1/requests", tag = "requests",
    request_body = CreateRequestBody,
    params(("DPoP" = Option<String>, Header,
        description = "A DPoP proof (RFC 9449) for `POST` at this URL: binds the token to its key")),
    responses(
        (status = 201, description = "granted", body = RequestResponse),
        (status = 202, description = "pending approvals", body = RequestResponse),
        (status = 400, description = "bad input; `invalid_dpop_proof`, `use_dpop_nonce` (with a `DPoP-Nonce` header) or `dpop_proof_required` for DPoP", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "denied by policy", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the configuration changed under the request", body = ErrorBody),
        (status = 502, description = "the target failed to create the account", body = ErrorBody),
        (status = 503, description = "the target is unavailable; nothing was created", body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ClientSource(source): ClientSource,
    ClientCertThumbprint(client_cert): ClientCertThumbprint,
    dpop: Result<DpopHeader, ApiError>,
    ApiJson(body): ApiJson<CreateRequestBody>,
) -> Response {
    let created = async {
        let DpopHeader(proof) = dpop?;
        let checked = check_create_request(&body)?;
        let proof = proof
            .map(|p| s.broker.check_dpop_proof(&p, "POST", "/v1/requests"))
            .transpose()?;
        let input = NewRequest {
            identity: checked.identity,
            entitlement: checked.entitlement,
            ttl: checked.ttl,
            task: checked.task,
            source,
            proof,
            client_cert,
            public_key: checked.public_key,
        };
        let outcome = s.broker.request(&caller, input).await?;
        let status = if outcome.grant.is_some() {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        Ok::<_, ApiError>((status, Json(RequestResponse::from(outcome))))
    }
    .await;
    match created {
        Ok(answer) => answer.into_response(),
        Err(e) => with_dpop_nonce(&s, e),
    }
}

/// A `use_dpop_nonce` refusal carries the nonce to retry with (RFC 9449 §8).
pub(crate) fn with_dpop_nonce(s: &AppState, e: ApiError) -> Response {
    let nonce = (e.code == kairos_broker::dpop::USE_DPOP_NONCE).then(|| s.broker.dpop_nonce());
    let mut response = e.into_response();
    if let Some(value) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert("dpop-nonce", value);
    }
    response
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `pending`, `granted`, `denied`, `expired`.
    state: Option<String>,
    identity: Option<String>,
    /// At most this many, newest first.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    limit: Option<u32>,
}

/// List requests (people with a reading role).
#[utoipa::path(get, path = "/v1/requests", tag = "requests", operation_id = "list_requests", params(ListQuery),
    responses((status = 200, body = RequestList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<RequestList>> {
    let state = q
        .state
        .as_deref()
        .map(|st| {
            RequestState::parse(st).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_state",
                    "state must be pending, granted, denied or expired",
                )
            })
        })
        .transpose()?;
    let filter = RequestFilter {
        state,
        identity: q.identity.as_deref().map(parse_identity).transpose()?,
        limit: q.limit,
    };
    let requests = s.broker.list_requests(&caller, &filter).await?;
    Ok(Json(RequestList {
        requests: requests.iter().map(RequestView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Long-poll: wait up to this long (e.g. `30s`, at most 60s) while the request is pending.
    wait: Option<String>,
}

/// Read a request; its workload gets the credential once granted. `?wait=30s` long-polls.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests", operation_id = "get_request", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = RequestResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<RequestResponse>> {
    let id = parse_request_id(&id)?;
    let wait = q
        .wait
        .as_deref()
        .map(|w| parse_ttl(w).map(|t| Duration::from_secs(t.as_secs())))
        .transpose()?;
    Ok(Json(s.broker.get_request(&caller, &id, wait).await?.into()))
}

/// Approve a pending request (approvers of the approving team; never the requester).
#[utoipa::path(post, path = "/v1/requests/{id}/approve", tag = "requests", params(("id" = String, Path)),
    request_body = ReasonBody,
    responses((status = 200, body = RequestResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 502, description = "the target failed to create the account", body = ErrorBody),
        (status = 503, description = "the target is unavailable; nothing was created", body = ErrorBody)))]
pub async fn approve(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> ApiResult<Json<RequestResponse>> {
    let id = parse_request_id(&id)?;
    let reason = check_reason(body.reason)?;
    Ok(Json(s.broker.approve(&caller, &id, reason).await?.into()))
}

/// Deny a pending request.
#[utoipa::path(post, path = "/v1/requests/{id}/deny", tag = "requests", params(("id" = String, Path)),
    request_body = ReasonBody,
    responses((status = 200, body = RequestView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn deny(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> ApiResult<Json<RequestView>> {
    let id = parse_request_id(&id)?;
    let reason = check_reason(body.reason)?;
    Ok(Json(RequestView::from(
        &s.broker.deny(&caller, &id, reason).await?,
    )))
}
