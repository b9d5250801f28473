//! `/v1/identities`: registered identities with their lifecycle state, owners and orphan
//! flag; suspend, resume and retire.
//!
//! Who may: `GET` — admin, operator, approver, auditor; `POST …/suspend|resume|retire` —
//! admin, operator, and the identity's owners (approvers whom its team lists in
//! `owners`). Others get 403 that does not say whether the identity exists.

use axum::Json;
use axum::extract::{Path, State};
use kairos_broker::StateOutcome;
use kairos_broker::governance::lifecycle::{IdentityView, StateRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Auth};
use crate::inputs::parse_identity;
use crate::views::GrantView;

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityStatusView {
    /// `active`, `suspended` or `retired`.
    pub state: String,
    /// Why it left `active`: `manual`, `orphaned` or `recert_overdue`.
    pub cause: Option<String>,
    /// The reason given for its last change of state (empty if it never changed).
    pub reason: String,
    /// Who changed it last: `user:alice`, `system:governance` (empty if never).
    pub by: String,
    /// Since when (RFC 3339), when its state ever changed.
    pub since: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrphanView {
    /// When it was found orphaned (RFC 3339).
    pub since: String,
    /// The owner team it was orphaned under.
    pub team: String,
    /// When `orphan_action = "suspend"` applies to it, while that has not happened yet.
    pub grace_ends: Option<String>,
    /// When the orphan action suspended it.
    pub suspended_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityItem {
    pub name: String,
    pub kind: String,
    /// The owning team.
    pub team: String,
    /// The platform-token issuer and subject (empty when it authenticates by SPIFFE ID only).
    pub issuer: String,
    pub subject: String,
    /// Its SPIFFE ID, when it authenticates with SPIFFE SVIDs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    pub status: IdentityStatusView,
    /// The team's `owners`, as configured.
    pub owners: Vec<String>,
    /// Those owners who can act now (users with a live API token).
    pub active_owners: Vec<String>,
    /// True while it is flagged orphaned (its team has no active owner).
    pub orphaned: bool,
    pub orphan: Option<OrphanView>,
}

impl From<IdentityView> for IdentityItem {
    fn from(v: IdentityView) -> Self {
        let changed = !v.status.by.is_empty();
        Self {
            name: v.name.to_string(),
            kind: v.kind,
            team: v.team.to_string(),
            issuer: v.issuer,
            subject: v.subject,
            spiffe_id: v.spiffe_id,
            status: IdentityStatusView {
                state: v.status.state.as_str().into(),
                cause: v.status.cause.map(|c| c.as_str().into()),
                reason: v.status.reason,
                by: v.status.by,
                since: changed.then(|| v.status.since.to_rfc3339()),
            },
            owners: v.owners.iter().map(ToString::to_string).collect(),
            active_owners: v.active_owners.iter().map(ToString::to_string).collect(),
            orphaned: v.orphan.is_some(),
            orphan: v.orphan.map(|o| OrphanView {
                since: o.detected_at.to_rfc3339(),
                team: o.team.to_string(),
                grace_ends: v.orphan_grace_ends.map(|t| t.to_rfc3339()),
                suspended_at: o.suspended_at.map(|t| t.to_rfc3339()),
            }),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityList {
    pub identities: Vec<IdentityItem>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityStateBody {
    /// Why (mandatory, kept in the audit log).
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StateChangeView {
    pub identity: String,
    pub status: IdentityStatusView,
    /// The live grants it ended (each revoking, to be verified gone).
    pub grants_ended: Vec<GrantView>,
}

impl StateChangeView {
    fn from(o: StateOutcome) -> Self {
        Self {
            identity: o.status.identity.to_string(),
            status: IdentityStatusView {
                state: o.status.state.as_str().into(),
                cause: o.status.cause.map(|c| c.as_str().into()),
                reason: o.status.reason,
                by: o.status.by,
                since: Some(o.status.since.to_rfc3339()),
            },
            grants_ended: o.ended.iter().map(GrantView::from).collect(),
        }
    }
}

/// The registered identities with their state, owners and orphan flag (admin, operator,
/// approver, auditor).
#[utoipa::path(get, path = "/v1/identities", tag = "governance", operation_id = "list_identities",
    responses((status = 200, body = IdentityList), (status = 403, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<Json<IdentityList>> {
    let views = s.broker.identities_for(&caller).await?;
    Ok(Json(IdentityList {
        identities: views.into_iter().map(IdentityItem::from).collect(),
    }))
}

/// One identity with its state, owners and orphan flag (admin, operator, approver,
/// auditor).
#[utoipa::path(get, path = "/v1/identities/{name}", tag = "governance", operation_id = "get_identity",
    params(("name" = String, Path)),
    responses((status = 200, body = IdentityItem), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<IdentityItem>> {
    let name = parse_identity(&name)?;
    Ok(Json(IdentityItem::from(
        s.broker.identity_for(&caller, &name).await?,
    )))
}

async fn change(
    s: &AppState,
    caller: &kairos_broker::Caller,
    name: &str,
    what: StateRequest,
    body: IdentityStateBody,
) -> ApiResult<Json<StateChangeView>> {
    let name = parse_identity(name)?;
    let outcome = s
        .broker
        .change_identity_state_as(caller, &name, what, &body.reason)
        .await?;
    Ok(Json(StateChangeView::from(outcome)))
}

/// Suspend an identity: every live grant ends (revoked and verified gone) and its
/// requests are refused with 403 until it is resumed. A reason is mandatory. Admins,
/// operators, and owners of its team.
#[utoipa::path(post, path = "/v1/identities/{name}/suspend", tag = "governance", operation_id = "suspend_identity",
    params(("name" = String, Path)), request_body = IdentityStateBody,
    responses((status = 200, body = StateChangeView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "already suspended or retired", body = ErrorBody)))]
pub async fn suspend(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<IdentityStateBody>,
) -> ApiResult<Json<StateChangeView>> {
    change(&s, &caller, &name, StateRequest::Suspend, body).await
}

/// Resume a suspended identity. A suspension for an overdue recertification is lifted
/// only by an owner's attestation (`kairos recert attest`), and a retired identity never
/// (409 each). A reason is mandatory. Admins, operators, and owners of its team.
#[utoipa::path(post, path = "/v1/identities/{name}/resume", tag = "governance", operation_id = "resume_identity",
    params(("name" = String, Path)), request_body = IdentityStateBody,
    responses((status = 200, body = StateChangeView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "active already, retired, or suspended until an owner attests", body = ErrorBody)))]
pub async fn resume(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<IdentityStateBody>,
) -> ApiResult<Json<StateChangeView>> {
    change(&s, &caller, &name, StateRequest::Resume, body).await
}

/// Retire an identity for good: every live grant ends and it is never resumed. A reason
/// is mandatory. Admins, operators, and owners of its team.
#[utoipa::path(post, path = "/v1/identities/{name}/retire", tag = "governance", operation_id = "retire_identity",
    params(("name" = String, Path)), request_body = IdentityStateBody,
    responses((status = 200, body = StateChangeView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "already retired", body = ErrorBody)))]
pub async fn retire(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<IdentityStateBody>,
) -> ApiResult<Json<StateChangeView>> {
    change(&s, &caller, &name, StateRequest::Retire, body).await
}
