//! Alerts: findings of the governance rules that need a person.
//!
//! Who may call: admins, operators and auditors read every alert; an approver reads the
//! alerts of identities their teams own (others answer 404, as an unknown id does).
//! Admins and operators acknowledge and resolve any alert, an approver those of their
//! teams' identities; auditors, resource servers and workloads get 403.

use axum::Json;
use axum::extract::{Path, State};
use kairos_broker::AlertQuery;
use kairos_governance::{Alert, AlertKind, AlertState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::inputs::parse_identity;

/// An alert as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    /// `orphaned`, `recert_overdue`, `break_glass`, `review_overdue`,
    /// `exception_rotation_overdue`, `exception_expired`, `use_after_end`,
    /// `unexpected_source`, `shared_identity`, `dormant_identity`, `held_past_use`,
    /// `identity_suspended`.
    pub kind: String,
    /// What it is about: an identity, an exception, a grant.
    pub subject: String,
    pub identity: Option<String>,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub opened_at: String,
    pub last_seen_at: String,
    /// How often it was seen while unresolved.
    pub occurrences: u64,
    pub updated_at: String,
    pub updated_by: Option<String>,
    pub note: Option<String>,
    /// The OWASP Non-Human Identities Top 10 (2025) risk it speaks to, e.g. `NHI1`.
    pub owasp_nhi: String,
    pub owasp_nhi_title: String,
    /// The NIST CSF 2.0 subcategories it speaks to, e.g. `PR.AA-01`.
    pub nist_csf: Vec<String>,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        let mapping = a.kind.mapping();
        Self {
            id: a.id.clone(),
            kind: a.kind.as_str().into(),
            subject: a.subject.clone(),
            identity: a.identity.as_ref().map(ToString::to_string),
            state: a.state.as_str().into(),
            message: a.message.clone(),
            detail: a.detail.clone(),
            opened_at: a.opened_at.to_rfc3339(),
            last_seen_at: a.last_seen_at.to_rfc3339(),
            occurrences: a.occurrences,
            updated_at: a.updated_at.to_rfc3339(),
            updated_by: a.updated_by.clone(),
            note: a.note.clone(),
            owasp_nhi: mapping.nhi.id().into(),
            owasp_nhi_title: mapping.nhi.title().into(),
            nist_csf: mapping.csf.iter().map(|c| c.id().to_owned()).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertListQuery {
    /// `open`, `acknowledged`, `resolved`, or `unresolved` (open or acknowledged).
    state: Option<String>,
    /// An alert kind, e.g. `use_after_end`.
    kind: Option<String>,
    identity: Option<String>,
    /// At most this many, newest first.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertNoteBody {
    /// What was done about it; kept in the audit log.
    pub note: String,
}

/// List alerts, newest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "governance", operation_id = "list_alerts", params(AlertListQuery),
    responses((status = 200, body = AlertList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<AlertListQuery>,
) -> ApiResult<Json<AlertList>> {
    let (state, unresolved) = match q.state.as_deref() {
        None => (None, false),
        Some("unresolved") => (None, true),
        Some(s) => match AlertState::parse(s) {
            Some(st) => (Some(st), false),
            None => {
                return Err(ApiError::bad_request(
                    "bad_state",
                    "state must be open, acknowledged, resolved or unresolved",
                ));
            }
        },
    };
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(AlertKind::parse(k).ok_or_else(|| {
            ApiError::bad_request(
                "bad_kind",
                format!(
                    "kind must be one of: {}",
                    AlertKind::ALL.map(AlertKind::as_str).join(", ")
                ),
            )
        })?),
    };
    let query = AlertQuery {
        state,
        unresolved,
        kind,
        identity: q.identity.as_deref().map(parse_identity).transpose()?,
        limit: q.limit,
    };
    let alerts = s.broker.alerts(&caller, &query).await?;
    Ok(Json(AlertList {
        alerts: alerts.iter().map(AlertView::from).collect(),
    }))
}

fn check_alert_id(id: &str) -> ApiResult<&str> {
    let ok = id.len() <= 64
        && id.starts_with("alr_")
        && id[4..].chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(id)
    } else {
        Err(ApiError::not_found(format!(
            "{:?} is not an alert id (they look like alr_0192…)",
            id.chars().take(64).collect::<String>()
        )))
    }
}

/// One alert.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "governance", operation_id = "get_alert",
    params(("id" = String, Path, description = "alert id")),
    responses((status = 200, body = AlertView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertView>> {
    let id = check_alert_id(&id)?;
    let alert = s.broker.alert(&caller, id).await?;
    Ok(Json(AlertView::from(&alert)))
}

/// Acknowledge an alert: someone is on it (it stays unresolved).
#[utoipa::path(post, path = "/v1/alerts/{id}/acknowledge", tag = "governance", operation_id = "acknowledge_alert",
    params(("id" = String, Path, description = "alert id")), request_body = AlertNoteBody,
    responses((status = 200, body = AlertView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn acknowledge(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AlertNoteBody>,
) -> ApiResult<Json<AlertView>> {
    let id = check_alert_id(&id)?;
    let alert = s
        .broker
        .update_alert(&caller, id, AlertState::Acknowledged, &body.note)
        .await?;
    Ok(Json(AlertView::from(&alert)))
}

/// Resolve an alert, saying what was done.
#[utoipa::path(post, path = "/v1/alerts/{id}/resolve", tag = "governance", operation_id = "resolve_alert",
    params(("id" = String, Path, description = "alert id")), request_body = AlertNoteBody,
    responses((status = 200, body = AlertView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resolve(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AlertNoteBody>,
) -> ApiResult<Json<AlertView>> {
    let id = check_alert_id(&id)?;
    let alert = s
        .broker
        .update_alert(&caller, id, AlertState::Resolved, &body.note)
        .await?;
    Ok(Json(AlertView::from(&alert)))
}
