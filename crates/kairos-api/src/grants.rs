use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kairos_broker::Renewal;
use kairos_broker::ending::{RevokeReason, RevokeScope};
use kairos_domain::GrantId;
use kairos_store::{GrantFilter, GrantStateFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth, OptionalApiJson};
use crate::inputs::{
    CheckedScope, check_revoke_scope, parse_entitlement, parse_identity, parse_task_ref, parse_ttl,
};
use crate::views::{
    BulkRevokeBody, CredentialView, GrantList, GrantView, RenewBody, RequestView, RevokeBody,
    SetReceiptView, UsageView,
};

/// A revocation's optional reason, checked.
fn revoke_reason(reason: Option<String>) -> ApiResult<Option<RevokeReason>> {
    reason
        .map(|r| RevokeReason::parse(r).map_err(|m| ApiError::bad_request("bad_reason", m)))
        .transpose()
}

pub(crate) fn parse_grant_id(id: &str) -> ApiResult<GrantId> {
    GrantId::parse(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "{:?} is not a grant id (they look like grt_0192…)",
            id.chars().take(64).collect::<String>()
        ))
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    /// `provisioning`, `active`, `revoking` or `ended`.
    state: Option<String>,
    identity: Option<String>,
    entitlement: Option<String>,
    task_ref: Option<String>,
    /// At most this many, newest first.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    limit: Option<u32>,
}

/// List grants (a workload sees its own).
#[utoipa::path(get, path = "/v1/grants", tag = "grants", operation_id = "list_grants", params(GrantQuery),
    responses((status = 200, body = GrantList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<GrantQuery>,
) -> ApiResult<Json<GrantList>> {
    let state = match q.state.as_deref() {
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
    let filter = GrantFilter {
        state,
        identity: q.identity.as_deref().map(parse_identity).transpose()?,
        entitlement: q
            .entitlement
            .as_deref()
            .map(parse_entitlement)
            .transpose()?,
        task_ref: q.task_ref.map(parse_task_ref).transpose()?,
        limit: q.limit,
        ..GrantFilter::default()
    };
    let grants = s.broker.list_grants(&caller, filter).await?;
    Ok(Json(GrantList {
        grants: grants.iter().map(GrantView::from).collect(),
    }))
}

/// One grant with its receipt.
#[utoipa::path(get, path = "/v1/grants/{id}", tag = "grants", operation_id = "get_grant", params(("id" = String, Path)),
    responses((status = 200, body = GrantView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<GrantView>> {
    let id = parse_grant_id(&id)?;
    let mut view = GrantView::from(&s.broker.get_grant(&caller, &id).await?);
    let sets = s.broker.grant_sets(&caller, &id).await?;
    if let Some(receipt) = view.receipt.as_mut()
        && !sets.is_empty()
    {
        receipt.set_receivers = Some(
            sets.iter()
                .map(|r| SetReceiptView {
                    receiver: r.receiver.clone(),
                    delivery: r.delivery.as_str().into(),
                    jti: r.jti.clone(),
                    state: r.state.as_str().into(),
                    acknowledged_at: r.acked_at.map(|t| t.to_rfc3339()),
                    wait_until: r.wait_until.to_rfc3339(),
                    attempts: r.attempts,
                    last_error: r.last_error.clone(),
                })
                .collect(),
        );
    }
    let usage = s.broker.grant_usage(&caller, &id).await?;
    view.usage = Some(usage.map(|u| UsageView {
        first_used_at: u.first_at.to_rfc3339(),
        last_used_at: u.last_at.to_rfc3339(),
        uses: u.uses,
        last_source: u.last_source.map(|ip| ip.to_string()),
        last_client: u.last_client,
    }));
    Ok(Json(view))
}

/// The workload's task is done: end the grant now.
#[utoipa::path(post, path = "/v1/grants/{id}/release", tag = "grants", params(("id" = String, Path)),
    responses((status = 200, body = GrantView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn release(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<GrantView>> {
    let id = parse_grant_id(&id)?;
    Ok(Json(GrantView::from(
        &s.broker.release(&caller, &id).await?,
    )))
}

/// An operator revokes one grant, optionally saying why (the body may be empty).
#[utoipa::path(post, path = "/v1/grants/{id}/revoke", tag = "grants", params(("id" = String, Path)),
    request_body = Option<RevokeBody>,
    responses((status = 200, body = GrantList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn revoke_one(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    OptionalApiJson(body): OptionalApiJson<RevokeBody>,
) -> ApiResult<Json<GrantList>> {
    let id = parse_grant_id(&id)?;
    let reason = revoke_reason(body.and_then(|b| b.reason))?;
    let ended = s
        .broker
        .revoke(&caller, RevokeScope::Grant(id), reason.as_ref())
        .await?;
    Ok(Json(GrantList {
        grants: ended.iter().map(GrantView::from).collect(),
    }))
}

/// An operator revokes all active grants of an identity or of a task reference.
#[utoipa::path(post, path = "/v1/grants/revoke", tag = "grants", request_body = BulkRevokeBody,
    responses((status = 200, body = GrantList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_bulk(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<BulkRevokeBody>,
) -> ApiResult<Json<GrantList>> {
    let reason = revoke_reason(body.reason.clone())?;
    let scope = match check_revoke_scope(body)? {
        CheckedScope::Identity(identity) => RevokeScope::Identity(identity),
        CheckedScope::TaskRef(task_ref) => RevokeScope::TaskRef(task_ref),
    };
    let ended = s.broker.revoke(&caller, scope, reason.as_ref()).await?;
    Ok(Json(GrantList {
        grants: ended.iter().map(GrantView::from).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RenewResponse {
    pub grant: GrantView,
    /// A fresh credential when the grant was renewed at once; null while pending.
    pub credential: Option<CredentialView>,
    /// The renewal request when it waits for approvals (202); it names the grant in
    /// `renews`, and extends it once approved. Null when renewed at once.
    pub request: Option<RequestView>,
}

/// Ask to extend an active grant (to now + ttl, never past its maximum). Policy decides it
/// as action `Kairos::Action::"renew"` with `context.ttl_secs` the grant's whole lifetime
/// after the renewal: 200 renewed with a fresh credential, 202 pending approvals (a
/// request that names the grant in `renews`), or 403 denied. A workload renews only its
/// own grants (another identity's grant is 404); people need the operator role.
#[utoipa::path(post, path = "/v1/grants/{id}/renew", tag = "grants", params(("id" = String, Path)),
    request_body = RenewBody,
    responses((status = 200, description = "renewed", body = RenewResponse),
        (status = 202, description = "pending approvals", body = RenewResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "denied by policy, or the caller may not renew", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 502, description = "the target failed to move the account's expiry", body = ErrorBody),
        (status = 503, description = "the target is unavailable", body = ErrorBody)))]
pub async fn renew(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenewBody>,
) -> ApiResult<(StatusCode, Json<RenewResponse>)> {
    let id = parse_grant_id(&id)?;
    let ttl = parse_ttl(&body.ttl)?;
    Ok(match s.broker.renew(&caller, &id, ttl).await? {
        Renewal::Renewed { grant, credential } => (
            StatusCode::OK,
            Json(RenewResponse {
                grant: GrantView::from(&grant),
                credential: Some(CredentialView::from(credential)),
                request: None,
            }),
        ),
        Renewal::Pending { grant, request } => (
            StatusCode::ACCEPTED,
            Json(RenewResponse {
                grant: GrantView::from(&grant),
                credential: None,
                request: Some(RequestView::from(&*request)),
            }),
        ),
    })
}
