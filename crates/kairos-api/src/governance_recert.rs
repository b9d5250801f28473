//! Recertification and standing exceptions over HTTP.
//!
//! | endpoint | who may call it |
//! |---|---|
//! | `GET /v1/recertifications?state=due\|overdue` | admin, operator, approver, auditor |
//! | `POST /v1/recertifications/{kind}/{name}/attest` | an owner of the subject's team (`[[team]] owners`), whatever their role |
//! | `POST /v1/recertifications/identity/{name}/retire` | an owner of the identity's team, whatever their role |
//! | `GET /v1/exceptions` | admin, operator, approver, auditor |
//! | `POST /v1/exceptions/{name}/rotated` | an owner of the exception's team, an operator, an admin |
//!
//! Workloads and resource servers get 403 everywhere here.

use axum::Json;
use axum::extract::{Path, State};
use kairos_broker::{ExceptionEntry, RecertEntry, RecertFilter};
use kairos_store::SubjectKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecertQuery {
    /// `due` (the owners' review is open) or `overdue` (past the due date); all when absent.
    state: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecertList {
    pub recertifications: Vec<RecertView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecertView {
    /// `identity` or `exception`.
    pub kind: String,
    /// The identity's or exception's name.
    pub subject: String,
    /// The team whose owners attest it.
    pub team: String,
    /// The interval that applies (the subject's own, its team's, or the default), e.g. `90d`.
    pub recertify_every: String,
    /// When Kairos first saw it (null until the recertification pass has, seconds after an
    /// apply: it counts from now until then).
    pub first_seen_at: Option<String>,
    pub last_attested_at: Option<String>,
    /// Who attested last, e.g. `user:carol`.
    pub attested_by: Option<String>,
    /// Why, in the owner's words.
    pub reason: Option<String>,
    /// The end of the current cycle (RFC 3339).
    pub due_at: String,
    /// When the owners' review opens (or opened).
    pub review_opens_at: String,
    /// `ok`, `due` (review open) or `overdue` (past `due_at`; an identity is suspended).
    pub status: String,
}

impl From<&RecertEntry> for RecertView {
    fn from(e: &RecertEntry) -> Self {
        Self {
            kind: e.kind.as_str().into(),
            subject: e.subject.clone(),
            team: e.team.to_string(),
            recertify_every: e.interval.to_string(),
            first_seen_at: e.first_seen_at.map(|t| t.to_rfc3339()),
            last_attested_at: e.last_attested_at.map(|t| t.to_rfc3339()),
            attested_by: e.attested_by.clone(),
            reason: e.reason.clone(),
            due_at: e.due_at.to_rfc3339(),
            review_opens_at: e.review_opens_at.to_rfc3339(),
            status: e.status.as_str().into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestBody {
    /// Why the subject should keep existing, in a sentence (1-1000 characters).
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotatedBody {
    /// How or where it was rotated (a ticket, a change), 1-1000 characters.
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExceptionList {
    pub exceptions: Vec<ExceptionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExceptionView {
    pub name: String,
    /// The identity that uses the static secret.
    pub identity: String,
    /// The team accountable for it.
    pub owner: String,
    /// The system that accepts the secret.
    pub system: String,
    /// Where the secret lives (a reference, never the secret), e.g. `vault:kv/legacy/billing`.
    pub secret_ref: String,
    pub reason: String,
    /// How often the secret must be rotated, e.g. `30d`.
    pub rotate_every: String,
    /// When the exception ends (RFC 3339).
    pub ends: String,
    /// Compensating control: the networks the secret may be used from.
    pub allowed_sources: Vec<String>,
    /// Compensating control: how its scope is restricted.
    pub scope_note: Option<String>,
    pub last_rotated_at: Option<String>,
    /// Who recorded the last rotation, e.g. `user:carol`.
    pub rotated_by: Option<String>,
    pub rotation_note: Option<String>,
    /// When the next rotation is due (RFC 3339).
    pub rotation_due_at: String,
    /// What is wrong now: `rotation_overdue`, `expired`.
    pub findings: Vec<FindingView>,
    /// Its recertification (exceptions are recertified like identities).
    pub recertification: RecertView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FindingView {
    /// `rotation_overdue` or `expired`.
    pub finding: String,
    /// Since when (the rotation's due date, or the end date).
    pub since: String,
}

impl From<&ExceptionEntry> for ExceptionView {
    fn from(x: &ExceptionEntry) -> Self {
        let e = &x.exception;
        Self {
            name: e.name.to_string(),
            identity: e.identity.to_string(),
            owner: e.owner.to_string(),
            system: e.system.clone(),
            secret_ref: e.secret_ref.clone(),
            reason: e.reason.clone(),
            rotate_every: e.rotate_every.to_string(),
            ends: e.ends.to_rfc3339(),
            allowed_sources: e.allowed_sources.clone(),
            scope_note: e.scope_note.clone(),
            last_rotated_at: x
                .last_rotation
                .as_ref()
                .map(|r| r.last_rotated_at.to_rfc3339()),
            rotated_by: x.last_rotation.as_ref().map(|r| r.rotated_by.clone()),
            rotation_note: x.last_rotation.as_ref().and_then(|r| r.note.clone()),
            rotation_due_at: x.rotation_due_at.to_rfc3339(),
            findings: x
                .findings
                .iter()
                .map(|f| FindingView {
                    finding: f.as_str().into(),
                    since: f.cycle().to_rfc3339(),
                })
                .collect(),
            recertification: RecertView::from(&x.recert),
        }
    }
}

fn subject_kind(kind: &str) -> ApiResult<SubjectKind> {
    SubjectKind::parse(kind).ok_or_else(|| {
        ApiError::not_found(format!(
            "{:?} is not a kind of recertified subject; use identity or exception",
            kind.chars().take(32).collect::<String>()
        ))
    })
}

/// The recertifications of the catalog's identities and standing exceptions, due soonest
/// first. Admin, operator, approver, auditor.
#[utoipa::path(get, path = "/v1/recertifications", tag = "governance", params(RecertQuery),
    responses((status = 200, body = RecertList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<RecertQuery>,
) -> ApiResult<Json<RecertList>> {
    let filter = match q.state.as_deref() {
        None => RecertFilter::All,
        Some("due") => RecertFilter::Due,
        Some("overdue") => RecertFilter::Overdue,
        Some(_) => {
            return Err(ApiError::bad_request(
                "bad_state",
                "state must be due (the owners' review is open) or overdue (past the due date); leave it out for all",
            ));
        }
    };
    let entries = s.broker.recertifications(&caller, filter).await?;
    Ok(Json(RecertList {
        recertifications: entries.iter().map(RecertView::from).collect(),
    }))
}

/// An owner re-attests an identity or a standing exception: its next cycle starts now.
/// Only a user listed in the `owners` of the subject's team may, whatever their role.
#[utoipa::path(post, path = "/v1/recertifications/{kind}/{name}/attest", tag = "governance",
    params(("kind" = String, Path, description = "`identity` or `exception`"), ("name" = String, Path)),
    request_body = AttestBody,
    responses((status = 200, body = RecertView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn attest(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path((kind, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<AttestBody>,
) -> ApiResult<Json<RecertView>> {
    let kind = subject_kind(&kind)?;
    let entry = s.broker.attest(&caller, kind, &name, &body.reason).await?;
    Ok(Json(RecertView::from(&entry)))
}

/// The standing exceptions: static secrets that cannot be removed yet, with their
/// rotation, findings and recertification. Admin, operator, approver, auditor.
#[utoipa::path(get, path = "/v1/exceptions", tag = "governance",
    responses((status = 200, body = ExceptionList), (status = 403, body = ErrorBody)))]
pub async fn exceptions(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<ExceptionList>> {
    let entries = s.broker.exceptions(&caller).await?;
    Ok(Json(ExceptionList {
        exceptions: entries.iter().map(ExceptionView::from).collect(),
    }))
}

/// Records that an exception's secret was rotated now. An owner of the exception's team,
/// an operator or an admin.
#[utoipa::path(post, path = "/v1/exceptions/{name}/rotated", tag = "governance",
    params(("name" = String, Path)),
    request_body = RotatedBody,
    responses((status = 200, body = ExceptionView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotated(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RotatedBody>,
) -> ApiResult<Json<ExceptionView>> {
    let entry = s
        .broker
        .exception_rotated(&caller, &name, body.note.as_deref())
        .await?;
    Ok(Json(ExceptionView::from(&entry)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetiredView {
    pub identity: String,
    /// `retired`.
    pub state: String,
    /// The live grants it ended (each revoked and verified gone by the revocation worker).
    pub grants_ended: usize,
}

/// Instead of attesting, an owner retires an identity for good: its grants end, its
/// requests are refused. Only a user listed in the `owners` of its team may.
#[utoipa::path(post, path = "/v1/recertifications/identity/{name}/retire", tag = "governance",
    params(("name" = String, Path)),
    request_body = AttestBody,
    responses((status = 200, body = RetiredView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retire(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<AttestBody>,
) -> ApiResult<Json<RetiredView>> {
    let outcome = s
        .broker
        .retire_as_owner(&caller, &name, &body.reason)
        .await?;
    Ok(Json(RetiredView {
        identity: outcome.status.identity.to_string(),
        state: outcome.status.state.as_str().into(),
        grants_ended: outcome.ended.len(),
    }))
}
