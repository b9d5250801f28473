//! Notifications: the outbox as people see it (what was sent, what waits, what is dead).
//!
//! | endpoint | who may call |
//! |---|---|
//! | `GET /v1/notifications` | admins, operators, auditors |
//! | `POST /v1/notifications/{id}/retry` | admins, operators (a dead notification only) |
//!
//! Everyone else (approvers, resource servers, workloads) gets 403 and learns nothing of
//! the outbox. Bodies are shown: they hold only what audit records hold, never a secret.

use axum::Json;
use axum::extract::{Path, State};
use kairos_store::{Notification, NotificationFilter, NotificationState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Auth};

/// One notification in the outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    /// The idempotency key (`webhook-id`): `kairos-<audit seq>-<channel>`.
    pub id: String,
    pub channel: String,
    /// The event, e.g. `request_pending`.
    pub event: String,
    /// The audit record it tells of.
    pub audit_seq: i64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Failed attempts so far.
    pub attempts: u32,
    pub created_at: String,
    /// Pending: when the next attempt is due.
    pub next_at: Option<String>,
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
    /// What the channel receives.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

impl From<&Notification> for NotificationView {
    fn from(n: &Notification) -> Self {
        Self {
            id: n.id.clone(),
            channel: n.channel.clone(),
            event: n.event.clone(),
            audit_seq: n.audit_seq,
            state: n.state.as_str().into(),
            attempts: n.attempts,
            created_at: n.created_at.to_rfc3339(),
            next_at: (n.state == NotificationState::Pending).then(|| n.next_at.to_rfc3339()),
            delivered_at: n.delivered_at.map(|t| t.to_rfc3339()),
            last_error: n.last_error.clone(),
            body: serde_json::from_str(&n.body).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<NotificationView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// `pending`, `delivered` or `dead`; every state when absent.
    state: Option<String>,
    /// Only this channel's (its `name` in `[[notify]]`).
    channel: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 1000)]
    limit: Option<u32>,
}

/// List notifications, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", operation_id = "list_notifications", params(NotificationQuery),
    responses((status = 200, body = NotificationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> ApiResult<Json<NotificationList>> {
    let state = match q.state.as_deref() {
        None => None,
        Some(st) => Some(NotificationState::parse(st).ok_or_else(|| {
            ApiError::bad_request("bad_state", "state must be pending, delivered or dead")
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if limit > 1000 {
        return Err(ApiError::bad_request(
            "bad_limit",
            "limit must be at most 1000",
        ));
    }
    if let Some(c) = &q.channel {
        let ok = !c.is_empty()
            && c.len() <= 64
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !ok {
            return Err(ApiError::bad_request(
                "bad_channel",
                "channel must be a channel's name from [[notify]]: 1-64 letters, digits, '-' or '_'",
            ));
        }
    }
    let filter = NotificationFilter {
        state,
        channel: q.channel,
        limit,
    };
    let list = s.broker.notifications(&caller, &filter).await?;
    Ok(Json(NotificationList {
        notifications: list.iter().map(NotificationView::from).collect(),
    }))
}

/// Send a dead notification again (it is pending at once, with a fresh `dead_after`).
#[utoipa::path(post, path = "/v1/notifications/{id}/retry", tag = "notifications", operation_id = "retry_notification",
    params(("id" = String, Path, description = "notification id, kairos-<seq>-<channel>")),
    responses((status = 200, body = NotificationView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry(
    State(s): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<NotificationView>> {
    let ok = id.len() <= 100
        && id.starts_with("kairos-")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(ApiError::not_found(format!(
            "{:?} is not a notification id (they look like kairos-42-ops)",
            id.chars().take(100).collect::<String>()
        )));
    }
    let n = s.broker.retry_notification(&caller, &id).await?;
    Ok(Json(NotificationView::from(&n)))
}
