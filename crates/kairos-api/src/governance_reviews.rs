//! After-action reviews of break-glass grants: list, read, file.
//!
//! Who may call: every person (admin, operator, approver, auditor) reads reviews; only an
//! owner of the identity's team (`[[team]] owners`) files one, whatever their role (an
//! admin who is not an owner gets 403; admins file the reviews of identities that are no
//! longer configured). Workloads and resource servers get 403 everywhere here.

use axum::Json;
use axum::extract::{Path, State};
use kairos_broker::ReviewNow;
use kairos_domain::{ReviewId, ReviewState};
use kairos_store::{ReviewFilter, ReviewStateFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};
use crate::inputs::parse_identity;

/// The after-action review of one break-glass grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    pub id: String,
    /// The break-glass grant it reviews.
    pub grant_id: String,
    pub request_id: String,
    pub identity: String,
    pub entitlement: String,
    /// Who used the break-glass access: `workload:<name>` or `user:<name>`.
    pub requester: String,
    /// The incident reference.
    pub task_ref: String,
    pub opened_at: String,
    /// Overdue from this time on while not filed.
    pub due_at: String,
    /// `open` or `filed`.
    pub state: String,
    /// Where it stands now: `open`, `overdue`, `escalated` (overdue, and escalated once)
    /// or `filed`.
    pub status: String,
    /// Not filed and past `due_at`.
    pub overdue: bool,
    pub escalated_at: Option<String>,
    pub filed_by: Option<String>,
    pub filed_at: Option<String>,
    /// What the owner found, as they wrote it.
    pub summary: Option<String>,
}

impl From<&ReviewNow> for ReviewView {
    fn from(now: &ReviewNow) -> Self {
        let r = &now.review;
        let filing = match &r.state {
            ReviewState::Open => None,
            ReviewState::Filed(f) => Some(f),
        };
        Self {
            id: r.id.to_string(),
            grant_id: r.grant_id.to_string(),
            request_id: r.request_id.to_string(),
            identity: r.identity.to_string(),
            entitlement: r.entitlement.to_string(),
            requester: r.requester.to_string(),
            task_ref: r.task_ref.to_string(),
            opened_at: r.opened_at.to_rfc3339(),
            due_at: r.due_at.to_rfc3339(),
            state: r.state.as_str().into(),
            status: now.status.as_str().into(),
            overdue: now.status.is_overdue(),
            escalated_at: r.escalated_at.map(|t| t.to_rfc3339()),
            filed_by: filing.map(|f| f.by.to_string()),
            filed_at: filing.map(|f| f.at.to_rfc3339()),
            summary: filing.map(|f| f.summary.clone()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewList {
    pub reviews: Vec<ReviewView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileReviewBody {
    /// What happened, what the access was used for, what follows (1-4000 characters).
    pub summary: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// `open` (not filed, overdue ones included), `overdue` (not filed and past due) or
    /// `filed`; all when absent.
    state: Option<String>,
    /// Only reviews of this identity.
    identity: Option<String>,
    /// At most this many, newest first.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    limit: Option<u32>,
}

fn parse_review_id(id: &str) -> ApiResult<ReviewId> {
    ReviewId::parse(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "{:?} is not a review id (they look like rev_0192…)",
            id.chars().take(64).collect::<String>()
        ))
    })
}

/// List after-action reviews of break-glass grants, newest first (every person).
#[utoipa::path(get, path = "/v1/reviews", tag = "governance", operation_id = "list_reviews",
    params(ReviewQuery),
    responses((status = 200, body = ReviewList), (status = 400, body = ErrorBody),
        (status = 403, description = "a workload or a resource server", body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<ReviewQuery>,
) -> ApiResult<Json<ReviewList>> {
    let state = match q.state.as_deref() {
        None => None,
        Some("open") => Some(ReviewStateFilter::Open),
        Some("overdue") => Some(ReviewStateFilter::Overdue {
            now: s.broker.now(),
        }),
        Some("filed") => Some(ReviewStateFilter::Filed),
        Some(_) => {
            return Err(ApiError::bad_request(
                "bad_state",
                "state must be open (not filed yet), overdue (not filed and past due) or filed",
            ));
        }
    };
    let filter = ReviewFilter {
        state,
        identity: q.identity.as_deref().map(parse_identity).transpose()?,
        limit: q.limit,
    };
    let reviews = s.broker.list_reviews(&caller, &filter).await?;
    Ok(Json(ReviewList {
        reviews: reviews.iter().map(ReviewView::from).collect(),
    }))
}

/// Read one after-action review (every person).
#[utoipa::path(get, path = "/v1/reviews/{id}", tag = "governance", operation_id = "get_review",
    params(("id" = String, Path, description = "the review id, rev_…")),
    responses((status = 200, body = ReviewView),
        (status = 403, description = "a workload or a resource server", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ReviewView>> {
    let id = parse_review_id(&id)?;
    let review = s.broker.get_review(&caller, &id).await?;
    Ok(Json(ReviewView::from(&review)))
}

/// File an after-action review: only an owner of the identity's team (`[[team]] owners`),
/// whatever their role. A filed review is final.
#[utoipa::path(post, path = "/v1/reviews/{id}/file", tag = "governance", operation_id = "file_review",
    params(("id" = String, Path, description = "the review id, rev_…")),
    request_body = FileReviewBody,
    responses((status = 200, description = "filed", body = ReviewView),
        (status = 400, description = "the summary is empty or too long", body = ErrorBody),
        (status = 403, description = "not an owner of the identity's team", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "already filed", body = ErrorBody)))]
pub async fn file(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FileReviewBody>,
) -> ApiResult<Json<ReviewView>> {
    let id = parse_review_id(&id)?;
    let filed = s.broker.file_review(&caller, &id, &body.summary).await?;
    Ok(Json(ReviewView::from(&filed)))
}
