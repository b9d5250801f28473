//! The posture report.
//!
//! Who may call: admins, operators and auditors; approvers, resource servers and
//! workloads get 403 (the report spans every team's identities).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;

#[derive(Debug, Serialize, ToSchema)]
pub struct PostureView {
    /// When it was computed.
    pub at: String,
    /// The window of the figures over time (standing privilege, revocation latency), in
    /// calendar days (UTC), today included.
    pub window_days: u32,
    /// The window's start (RFC 3339): midnight UTC, `window_days - 1` days before today.
    pub since: String,
    pub identities: PostureIdentitiesView,
    /// Grant-hours per identity over the window, most first (at most 20).
    pub standing_privilege: Vec<PostureGrantHoursView>,
    pub total_grant_hours: f64,
    /// Grant-hours per UTC day, every day of the window oldest first (0 for a day without
    /// access); they add up to `total_grant_hours` (up to rounding).
    pub grant_hours_by_day: Vec<PostureDayView>,
    /// End → verified-gone latencies over the window, per bucket: each bucket counts the
    /// ends verified in more than the previous bucket's `at_most_ms` and at most its own.
    pub revocation_latency: Vec<PostureLatencyBucketView>,
    pub findings: Vec<PostureFindingView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostureDayView {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    pub grant_hours: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostureLatencyBucketView {
    /// The bucket's upper bound in milliseconds; null for the last bucket (longer than
    /// every bound).
    pub at_most_ms: Option<i64>,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostureIdentitiesView {
    pub total: u64,
    pub active: u64,
    pub suspended: u64,
    pub retired: u64,
    /// Identities per owner team.
    pub by_owner: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostureGrantHoursView {
    pub identity: String,
    pub grant_hours: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostureFindingView {
    /// Stable id, e.g. `orphaned_identities`, `recert_overdue`, `standing_privilege`.
    pub id: String,
    pub title: String,
    /// `info`, `low`, `medium` or `high`.
    pub severity: String,
    pub count: u64,
    /// Up to 20 of the subjects concerned.
    pub subjects: Vec<String>,
    /// The OWASP Non-Human Identities Top 10 (2025) risk, `NHI1` … `NHI10`.
    pub owasp_nhi: String,
    pub owasp_nhi_title: String,
    /// NIST CSF 2.0 subcategories, e.g. `PR.AA-05`.
    pub nist_csf: Vec<String>,
    pub why: String,
    pub detail: Option<String>,
}

/// The governance posture: identities by state and owner, orphans, recertifications,
/// after-action reviews, exceptions, dormant identities, open alerts, standing privilege
/// and revocation figures, each finding mapped to OWASP NHI Top 10 and NIST CSF 2.0.
#[utoipa::path(get, path = "/v1/posture", tag = "governance", operation_id = "posture",
    responses((status = 200, body = PostureView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn posture(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<PostureView>> {
    let report = s.broker.posture(&caller).await?;
    let p = report.posture;
    Ok(Json(PostureView {
        at: report.at.to_rfc3339(),
        window_days: report.window_days,
        since: report.since.to_rfc3339(),
        identities: PostureIdentitiesView {
            total: p.identities.total,
            active: p.identities.active,
            suspended: p.identities.suspended,
            retired: p.identities.retired,
            by_owner: p.identities.by_owner,
        },
        standing_privilege: p
            .standing_privilege
            .into_iter()
            .map(|(identity, grant_hours)| PostureGrantHoursView {
                identity,
                grant_hours,
            })
            .collect(),
        total_grant_hours: p.total_grant_hours,
        grant_hours_by_day: p
            .grant_hours_by_day
            .iter()
            .map(|d| PostureDayView {
                day: d.day.to_rfc3339().chars().take(10).collect(),
                grant_hours: d.grant_hours,
            })
            .collect(),
        revocation_latency: p
            .revocation_latency
            .iter()
            .map(|b| PostureLatencyBucketView {
                at_most_ms: b.at_most_ms,
                count: b.count,
            })
            .collect(),
        findings: p
            .findings
            .into_iter()
            .map(|f| PostureFindingView {
                id: f.id.into(),
                title: f.title.into(),
                severity: match f.severity {
                    kairos_governance::posture::Severity::Info => "info",
                    kairos_governance::posture::Severity::Low => "low",
                    kairos_governance::posture::Severity::Medium => "medium",
                    kairos_governance::posture::Severity::High => "high",
                }
                .into(),
                count: f.count,
                subjects: f.subjects,
                owasp_nhi: f.owasp_nhi.into(),
                owasp_nhi_title: f.owasp_nhi_title.into(),
                nist_csf: f.nist_csf.into_iter().map(Into::into).collect(),
                why: f.why.into(),
                detail: f.detail,
            })
            .collect(),
    }))
}
