//! The governance pages: alerts, after-action reviews, recertifications, standing
//! exceptions, the posture report (with its charts) and the notification outbox.
//!
//! As everywhere in the console, each page and form calls the same `Broker` method as the
//! matching API handler, as the signed-in person, so who may see and do what is the
//! broker's decision; a form is shown only to those the broker would let post it, and a
//! post from anyone else is refused by the broker all the same (403, nothing changes).
//! Forms carry the session's CSRF token and redirect to the page that shows the result.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use kairos_broker::{
    AlertQuery, ExceptionEntry, RecertCursor, RecertEntry, RecertFilter, ReviewNow,
};
use kairos_domain::{ReviewId, ReviewState, Timestamp};
use kairos_governance::{Alert, AlertKind, AlertState};
use kairos_store::{
    Notification, NotificationFilter, NotificationState, ReviewFilter, ReviewStateFilter, Role,
    SubjectKind,
};
use serde::Deserialize;

use crate::auth::{ConsoleState, Signed, same_origin};
use crate::charts::{Chart, bar_chart};
use crate::error::PageError;
use crate::pages::{PageResult, check_reason, encode, form, given, me, parse_opt, query, render};
use crate::text::clean;
use crate::views::Me;

/// The most rows a governance list shows.
const LIST_MAX: u32 = 200;

fn time(t: Timestamp) -> String {
    t.to_rfc3339()
}

fn opt_time(t: Option<Timestamp>) -> String {
    t.map(time).unwrap_or_default()
}

/// One `<option>` of a filter.
struct Opt {
    value: &'static str,
    selected: bool,
}

fn options(values: &[&'static str], chosen: &str) -> Vec<Opt> {
    values
        .iter()
        .map(|v| Opt {
            value: v,
            selected: *v == chosen,
        })
        .collect()
}

/// Is the signed-in person listed among the owners of `team` (`[[team]] owners`)?
fn owns(s: &ConsoleState, signed: &Signed, team: &kairos_domain::TeamName) -> bool {
    s.broker
        .catalog()
        .team(team)
        .is_some_and(|t| t.owners.contains(&signed.user.name))
}

/// A note or reason from a form: required, 1 to 1000 characters.
fn note(v: Option<String>) -> Result<String, PageError> {
    check_reason(v)
}

#[derive(Deserialize)]
pub struct NoteForm {
    csrf: Option<String>,
    note: Option<String>,
}

#[derive(Deserialize)]
pub struct ReasonForm {
    csrf: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
pub struct SummaryForm {
    csrf: Option<String>,
    summary: Option<String>,
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: Option<String>,
}

// ---- alerts ----------------------------------------------------------------------------

struct AlertRow {
    id: String,
    kind: String,
    subject: String,
    identity: String,
    state: String,
    message: String,
    detail: String,
    opened_at: String,
    last_seen_at: String,
    occurrences: u64,
    updated_at: String,
    updated_by: String,
    note: String,
    owasp_nhi: String,
    owasp_nhi_title: String,
    nist_csf: String,
}

impl AlertRow {
    fn new(a: &Alert) -> Self {
        let mapping = a.kind.mapping();
        Self {
            id: a.id.clone(),
            kind: a.kind.as_str().into(),
            subject: clean(&a.subject),
            identity: a
                .identity
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            state: a.state.as_str().into(),
            message: clean(&a.message),
            detail: clean(&a.detail.to_string()),
            opened_at: time(a.opened_at),
            last_seen_at: time(a.last_seen_at),
            occurrences: a.occurrences,
            updated_at: time(a.updated_at),
            updated_by: clean(a.updated_by.as_deref().unwrap_or_default()),
            note: clean(a.note.as_deref().unwrap_or_default()),
            owasp_nhi: mapping.nhi.id().into(),
            owasp_nhi_title: mapping.nhi.title().into(),
            nist_csf: mapping
                .csf
                .iter()
                .map(|c| c.id())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[derive(Deserialize)]
pub struct AlertsQuery {
    state: Option<String>,
    kind: Option<String>,
    identity: Option<String>,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    title: &'static str,
    me: Option<Me>,
    states: Vec<Opt>,
    any_kind: bool,
    kinds: Vec<Opt>,
    identity: String,
    alerts: Vec<AlertRow>,
    limit: u32,
}

pub async fn alerts(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<AlertsQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    // Unresolved ones by default: what needs someone.
    let state_text = given(&q.state).unwrap_or("unresolved").to_owned();
    let (state, unresolved) = match state_text.as_str() {
        "all" => (None, false),
        "unresolved" => (None, true),
        other => match AlertState::parse(other) {
            Some(st) => (Some(st), false),
            None => {
                return Err(PageError::BadInput(
                    "state must be unresolved, open, acknowledged, resolved or all".into(),
                ));
            }
        },
    };
    let kind = given(&q.kind)
        .map(|k| {
            AlertKind::parse(k).ok_or_else(|| {
                PageError::BadInput(format!(
                    "kind must be one of: {}",
                    AlertKind::ALL.map(AlertKind::as_str).join(", ")
                ))
            })
        })
        .transpose()?;
    let identity = parse_opt("identity", &q.identity, kairos_domain::IdentityName::parse)?;
    let list = s
        .broker
        .alerts(
            &signed.caller,
            &AlertQuery {
                state,
                unresolved,
                kind,
                identity,
                limit: Some(LIST_MAX),
            },
        )
        .await?;
    render(&AlertsPage {
        title: "Alerts",
        me: Some(me(&signed)),
        states: options(
            &["unresolved", "open", "acknowledged", "resolved", "all"],
            &state_text,
        ),
        any_kind: given(&q.kind).is_none(),
        kinds: options(
            &AlertKind::ALL.map(AlertKind::as_str),
            given(&q.kind).unwrap_or_default(),
        ),
        identity: given(&q.identity).unwrap_or_default().to_owned(),
        alerts: list.iter().map(AlertRow::new).collect(),
        limit: LIST_MAX,
    })
}

/// An alert id as the API accepts it (`alr_` and letters or digits); anything else is the
/// same 404 as an unknown id.
fn alert_id(id: &str) -> Result<&str, PageError> {
    let ok = id.len() <= 64
        && id.starts_with("alr_")
        && id[4..].chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(id)
    } else {
        Err(PageError::NotFound(format!(
            "{:?} is not an alert id (they look like alr_0192…)",
            id.chars().take(64).collect::<String>()
        )))
    }
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    title: String,
    me: Option<Me>,
    csrf: String,
    alert: AlertRow,
    can_handle: bool,
    acknowledged: bool,
}

pub async fn alert(
    State(s): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = alert_id(&id)?;
    let a = s.broker.alert(&signed.caller, id).await?;
    render(&AlertPage {
        title: format!("Alert {}", a.id),
        csrf: signed.session.csrf_secret.clone(),
        me: Some(me(&signed)),
        can_handle: a.state != AlertState::Resolved
            && signed.has_role(&[Role::Operator, Role::Approver]),
        acknowledged: a.state == AlertState::Acknowledged,
        alert: AlertRow::new(&a),
    })
}

async fn update_alert(
    s: ConsoleState,
    signed: Signed,
    headers: HeaderMap,
    id: String,
    f: Result<Form<NoteForm>, FormRejection>,
    to: AlertState,
) -> PageResult {
    same_origin(&headers)?;
    let f = form(f)?;
    signed.check_csrf(f.csrf.as_deref())?;
    let id = alert_id(&id)?;
    let note = note(f.note)?;
    s.broker.update_alert(&signed.caller, id, to, &note).await?;
    Ok(Redirect::to(&format!("/ui/alerts/{id}")).into_response())
}

pub async fn acknowledge_alert(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    f: Result<Form<NoteForm>, FormRejection>,
) -> PageResult {
    update_alert(s, signed, headers, id, f, AlertState::Acknowledged).await
}

pub async fn resolve_alert(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    f: Result<Form<NoteForm>, FormRejection>,
) -> PageResult {
    update_alert(s, signed, headers, id, f, AlertState::Resolved).await
}

// ---- after-action reviews --------------------------------------------------------------

struct ReviewRow {
    id: String,
    grant_id: String,
    request_id: String,
    identity: String,
    entitlement: String,
    requester: String,
    task_ref: String,
    opened_at: String,
    due_at: String,
    status: String,
    overdue: bool,
    escalated_at: String,
    filed: bool,
    filed_by: String,
    filed_at: String,
    summary: String,
}

impl ReviewRow {
    fn new(now: &ReviewNow) -> Self {
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
            task_ref: clean(r.task_ref.as_str()),
            opened_at: time(r.opened_at),
            due_at: time(r.due_at),
            status: now.status.as_str().into(),
            overdue: now.status.is_overdue(),
            escalated_at: opt_time(r.escalated_at),
            filed: filing.is_some(),
            filed_by: filing.map(|f| f.by.to_string()).unwrap_or_default(),
            filed_at: filing.map(|f| time(f.at)).unwrap_or_default(),
            summary: filing.map(|f| clean(&f.summary)).unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
pub struct ReviewsQuery {
    state: Option<String>,
    identity: Option<String>,
}

#[derive(Template)]
#[template(path = "reviews.html")]
struct ReviewsPage {
    title: &'static str,
    me: Option<Me>,
    states: Vec<Opt>,
    identity: String,
    reviews: Vec<ReviewRow>,
    limit: u32,
}

pub async fn reviews(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<ReviewsQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    let state_text = given(&q.state).unwrap_or("all").to_owned();
    let state = match state_text.as_str() {
        "all" => None,
        "open" => Some(ReviewStateFilter::Open),
        "overdue" => Some(ReviewStateFilter::Overdue {
            now: s.broker.now(),
        }),
        "filed" => Some(ReviewStateFilter::Filed),
        _ => {
            return Err(PageError::BadInput(
                "state must be open (not filed yet), overdue (not filed and past due), filed or all"
                    .into(),
            ));
        }
    };
    let filter = ReviewFilter {
        state,
        identity: parse_opt("identity", &q.identity, kairos_domain::IdentityName::parse)?,
        limit: Some(LIST_MAX),
    };
    let list = s.broker.list_reviews(&signed.caller, &filter).await?;
    render(&ReviewsPage {
        title: "After-action reviews",
        me: Some(me(&signed)),
        states: options(&["all", "open", "overdue", "filed"], &state_text),
        identity: given(&q.identity).unwrap_or_default().to_owned(),
        reviews: list.iter().map(ReviewRow::new).collect(),
        limit: LIST_MAX,
    })
}

fn review_id(id: &str) -> Result<ReviewId, PageError> {
    ReviewId::parse(id).ok_or_else(|| {
        PageError::NotFound(format!(
            "{:?} is not a review id (they look like rev_0192…)",
            id.chars().take(64).collect::<String>()
        ))
    })
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    title: String,
    me: Option<Me>,
    csrf: String,
    review: ReviewRow,
    can_file: bool,
    max_summary: usize,
}

pub async fn review(
    State(s): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = review_id(&id)?;
    let r = s.broker.get_review(&signed.caller, &id).await?;
    // As the broker decides: an owner of the identity's team; an admin when nobody owns
    // it any more (the identity or its team is no longer configured).
    let catalog = s.broker.catalog();
    let team = catalog
        .identity(&r.review.identity)
        .map(|i| i.owner.clone());
    let may_file = match team.as_ref().and_then(|t| catalog.team(t)) {
        Some(t) => t.owners.contains(&signed.user.name),
        None => signed.user.role == Role::Admin,
    };
    let review = ReviewRow::new(&r);
    render(&ReviewPage {
        title: format!("Review {}", r.review.id),
        csrf: signed.session.csrf_secret.clone(),
        me: Some(me(&signed)),
        can_file: may_file && !review.filed,
        review,
        max_summary: kairos_domain::Review::MAX_SUMMARY_CHARS,
    })
}

pub async fn file_review(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    f: Result<Form<SummaryForm>, FormRejection>,
) -> PageResult {
    same_origin(&headers)?;
    let f = form(f)?;
    signed.check_csrf(f.csrf.as_deref())?;
    let id = review_id(&id)?;
    // The broker checks the summary (blank, too long, control characters) and says why.
    let summary = f.summary.unwrap_or_default();
    s.broker.file_review(&signed.caller, &id, &summary).await?;
    Ok(Redirect::to(&format!("/ui/reviews/{id}")).into_response())
}

// ---- recertifications ------------------------------------------------------------------

struct RecertRow {
    kind: String,
    subject: String,
    team: String,
    interval: String,
    last_attested_at: String,
    attested_by: String,
    reason: String,
    due_at: String,
    review_opens_at: String,
    status: String,
    /// The signed-in person owns its team: they may attest (and retire an identity).
    can_attest: bool,
    can_retire: bool,
}

impl RecertRow {
    fn new(e: &RecertEntry, owner: bool) -> Self {
        Self {
            kind: e.kind.as_str().into(),
            subject: e.subject.clone(),
            team: e.team.to_string(),
            interval: e.interval.to_string(),
            last_attested_at: opt_time(e.last_attested_at),
            attested_by: clean(e.attested_by.as_deref().unwrap_or_default()),
            reason: clean(e.reason.as_deref().unwrap_or_default()),
            due_at: time(e.due_at),
            review_opens_at: time(e.review_opens_at),
            status: e.status.as_str().into(),
            can_attest: owner,
            can_retire: owner && e.kind == SubjectKind::Identity,
        }
    }
}

#[derive(Deserialize)]
pub struct RecertQuery {
    state: Option<String>,
    /// Keyset pagination: the page after this one (`RecertCursor`'s text).
    after: Option<String>,
}

/// Recertifications a page shows.
const RECERT_PAGE: u32 = 100;

#[derive(Template)]
#[template(path = "recertifications.html")]
struct RecertPage {
    title: &'static str,
    me: Option<Me>,
    csrf: String,
    states: Vec<Opt>,
    entries: Vec<RecertRow>,
    /// The link to the next page, when there is one.
    next: String,
}

pub async fn recertifications(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<RecertQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    let state_text = given(&q.state).unwrap_or("all").to_owned();
    let filter = match state_text.as_str() {
        "all" => RecertFilter::All,
        "due" => RecertFilter::Due,
        "overdue" => RecertFilter::Overdue,
        _ => {
            return Err(PageError::BadInput(
                "state must be due (the owners' review is open), overdue (past the due date) or all"
                    .into(),
            ));
        }
    };
    let after = match given(&q.after) {
        None => None,
        Some(text) => Some(RecertCursor::parse(text).ok_or_else(|| {
            PageError::BadInput(
                "after is where a page of recertifications ends; follow the page's own Next link"
                    .into(),
            )
        })?),
    };
    let page = s
        .broker
        .recertification_page(&signed.caller, filter, after, RECERT_PAGE)
        .await?;
    let next = page.next.map_or_else(String::new, |c| {
        format!(
            "/ui/recertifications?state={}&after={}",
            encode(&state_text),
            encode(&c.to_string())
        )
    });
    let entries = page
        .entries
        .iter()
        .map(|e| RecertRow::new(e, owns(&s, &signed, &e.team)))
        .collect();
    render(&RecertPage {
        title: "Recertifications",
        csrf: signed.session.csrf_secret.clone(),
        me: Some(me(&signed)),
        states: options(&["all", "due", "overdue"], &state_text),
        entries,
        next,
    })
}

pub async fn attest_identity(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(name): Path<String>,
    f: Result<Form<ReasonForm>, FormRejection>,
) -> PageResult {
    attest(s, signed, headers, SubjectKind::Identity, name, f).await
}

pub async fn attest_exception(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(name): Path<String>,
    f: Result<Form<ReasonForm>, FormRejection>,
) -> PageResult {
    attest(s, signed, headers, SubjectKind::Exception, name, f).await
}

async fn attest(
    s: ConsoleState,
    signed: Signed,
    headers: HeaderMap,
    kind: SubjectKind,
    name: String,
    f: Result<Form<ReasonForm>, FormRejection>,
) -> PageResult {
    same_origin(&headers)?;
    let f = form(f)?;
    signed.check_csrf(f.csrf.as_deref())?;
    let reason = check_reason(f.reason)?;
    s.broker
        .attest(&signed.caller, kind, &name, &reason)
        .await?;
    Ok(Redirect::to("/ui/recertifications").into_response())
}

pub async fn retire(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(name): Path<String>,
    f: Result<Form<ReasonForm>, FormRejection>,
) -> PageResult {
    same_origin(&headers)?;
    let f = form(f)?;
    signed.check_csrf(f.csrf.as_deref())?;
    let reason = check_reason(f.reason)?;
    s.broker
        .retire_as_owner(&signed.caller, &name, &reason)
        .await?;
    Ok(Redirect::to("/ui/recertifications").into_response())
}

// ---- standing exceptions ---------------------------------------------------------------

struct ExceptionRow {
    name: String,
    identity: String,
    owner: String,
    system: String,
    secret_ref: String,
    reason: String,
    rotate_every: String,
    ends: String,
    allowed_sources: String,
    scope_note: String,
    last_rotated_at: String,
    rotated_by: String,
    rotation_note: String,
    rotation_due_at: String,
    findings: Vec<(String, String)>,
    recert_status: String,
    recert_due_at: String,
    can_rotate: bool,
}

impl ExceptionRow {
    fn new(x: &ExceptionEntry, can_rotate: bool) -> Self {
        let e = &x.exception;
        Self {
            name: e.name.to_string(),
            identity: e.identity.to_string(),
            owner: e.owner.to_string(),
            system: clean(&e.system),
            secret_ref: clean(&e.secret_ref),
            reason: clean(&e.reason),
            rotate_every: e.rotate_every.to_string(),
            ends: time(e.ends),
            allowed_sources: e.allowed_sources.join(", "),
            scope_note: clean(e.scope_note.as_deref().unwrap_or_default()),
            last_rotated_at: x
                .last_rotation
                .as_ref()
                .map(|r| time(r.last_rotated_at))
                .unwrap_or_default(),
            rotated_by: x
                .last_rotation
                .as_ref()
                .map(|r| clean(&r.rotated_by))
                .unwrap_or_default(),
            rotation_note: x
                .last_rotation
                .as_ref()
                .and_then(|r| r.note.as_deref())
                .map(clean)
                .unwrap_or_default(),
            rotation_due_at: time(x.rotation_due_at),
            findings: x
                .findings
                .iter()
                .map(|f| (f.as_str().replace('_', " "), time(f.cycle())))
                .collect(),
            recert_status: x.recert.status.as_str().into(),
            recert_due_at: time(x.recert.due_at),
            can_rotate,
        }
    }
}

#[derive(Template)]
#[template(path = "exceptions.html")]
struct ExceptionsPage {
    title: &'static str,
    me: Option<Me>,
    csrf: String,
    exceptions: Vec<ExceptionRow>,
}

pub async fn exceptions(State(s): State<ConsoleState>, signed: Signed) -> PageResult {
    let list = s.broker.exceptions(&signed.caller).await?;
    let operator = signed.has_role(&[Role::Operator]);
    let exceptions = list
        .iter()
        .map(|x| ExceptionRow::new(x, operator || owns(&s, &signed, &x.exception.owner)))
        .collect();
    render(&ExceptionsPage {
        title: "Standing exceptions",
        csrf: signed.session.csrf_secret.clone(),
        me: Some(me(&signed)),
        exceptions,
    })
}

#[derive(Deserialize)]
pub struct RotatedForm {
    csrf: Option<String>,
    note: Option<String>,
}

pub async fn exception_rotated(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(name): Path<String>,
    f: Result<Form<RotatedForm>, FormRejection>,
) -> PageResult {
    same_origin(&headers)?;
    let f = form(f)?;
    signed.check_csrf(f.csrf.as_deref())?;
    // The note is optional, as in the API; when given, 1 to 1000 characters.
    let note = given(&f.note).map(str::to_owned);
    if let Some(n) = &note {
        check_reason(Some(n.clone()))?;
    }
    s.broker
        .exception_rotated(&signed.caller, &name, note.as_deref())
        .await?;
    Ok(Redirect::to("/ui/exceptions").into_response())
}

// ---- posture ---------------------------------------------------------------------------

struct FindingRow {
    id: String,
    title: String,
    severity: String,
    count: u64,
    subjects: String,
    owasp_nhi: String,
    owasp_nhi_title: String,
    nist_csf: String,
    why: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "posture.html")]
struct PosturePage {
    title: &'static str,
    me: Option<Me>,
    at: String,
    since: String,
    window_days: u32,
    identities_total: u64,
    identities_active: u64,
    identities_suspended: u64,
    identities_retired: u64,
    by_owner: Vec<(String, u64)>,
    total_grant_hours: f64,
    standing: Vec<(String, f64)>,
    findings: Vec<FindingRow>,
    hours_chart: Chart,
    latency_chart: Chart,
}

/// A latency bucket's label: `≤ 250 ms`, `≤ 2 s`, `≤ 1 h`, `> 1 h`.
fn bucket_label(at_most_ms: Option<i64>, previous: Option<i64>) -> String {
    let human = |ms: i64| {
        if ms < 1_000 {
            format!("{ms} ms")
        } else if ms < 60_000 {
            format!("{} s", ms / 1_000)
        } else if ms < 3_600_000 {
            format!("{} min", ms / 60_000)
        } else {
            format!("{} h", ms / 3_600_000)
        }
    };
    match (at_most_ms, previous) {
        (Some(ms), _) => format!("≤ {}", human(ms)),
        (None, Some(prev)) => format!("> {}", human(prev)),
        (None, None) => "longer".into(),
    }
}

#[derive(Deserialize)]
pub struct PostureQuery {
    /// `1`: compute the report now instead of showing the one kept.
    fresh: Option<String>,
}

pub async fn posture(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<PostureQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    // The report kept for the console (its time is on the page; the scheduler keeps it
    // recent while people look), not one computed per view; `?fresh=1` computes it now.
    let report = match given(&q.fresh) {
        None => s.broker.posture_kept(&signed.caller).await?,
        Some("1") => std::sync::Arc::new(s.broker.posture(&signed.caller).await?),
        Some(_) => {
            return Err(PageError::BadInput(
                "fresh=1 computes the report now; leave it out for the one kept".into(),
            ));
        }
    };
    let p = &report.posture;
    let days: Vec<(String, f64)> = p
        .grant_hours_by_day
        .iter()
        .map(|d| (d.day.to_rfc3339().chars().take(10).collect(), d.grant_hours))
        .collect();
    let hours_chart = bar_chart(
        "chart-hours",
        "Grant-hours per UTC day",
        &format!(
            "Access held per day over the last {} days, {} grant-hours in all; the busiest day had {} grant-hours.",
            report.window_days,
            p.total_grant_hours,
            days.iter().map(|d| d.1).fold(0.0, f64::max)
        ),
        "Day (UTC)",
        "Grant-hours",
        &days,
    );
    let mut previous = None;
    let buckets: Vec<(String, f64)> = p
        .revocation_latency
        .iter()
        .map(|b| {
            let label = bucket_label(b.at_most_ms, previous);
            previous = b.at_most_ms.or(previous);
            (label, b.count as f64)
        })
        .collect();
    let verified: u64 = p.revocation_latency.iter().map(|b| b.count).sum();
    let latency_chart = bar_chart(
        "chart-latency",
        "Time from a grant's end to its access verified gone",
        &format!(
            "{verified} ends verified gone over the last {} days, counted by how long verification took.",
            report.window_days
        ),
        "Latency (at most)",
        "Ends verified",
        &buckets,
    );
    let findings = p
        .findings
        .iter()
        .map(|f| FindingRow {
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
            subjects: clean(&f.subjects.join(", ")),
            owasp_nhi: f.owasp_nhi.into(),
            owasp_nhi_title: f.owasp_nhi_title.into(),
            nist_csf: f.nist_csf.join(", "),
            why: f.why.into(),
            detail: clean(f.detail.as_deref().unwrap_or_default()),
        })
        .collect();
    render(&PosturePage {
        title: "Posture",
        me: Some(me(&signed)),
        at: time(report.at),
        since: time(report.since),
        window_days: report.window_days,
        identities_total: p.identities.total,
        identities_active: p.identities.active,
        identities_suspended: p.identities.suspended,
        identities_retired: p.identities.retired,
        by_owner: p
            .identities
            .by_owner
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        total_grant_hours: p.total_grant_hours,
        standing: p.standing_privilege.clone(),
        findings,
        hours_chart,
        latency_chart,
    })
}

// ---- notifications ---------------------------------------------------------------------

struct NotificationRow {
    id: String,
    channel: String,
    event: String,
    audit_seq: i64,
    state: String,
    dead: bool,
    attempts: u32,
    created_at: String,
    next_at: String,
    delivered_at: String,
    last_error: String,
}

impl NotificationRow {
    fn new(n: &Notification) -> Self {
        Self {
            id: n.id.clone(),
            channel: n.channel.clone(),
            event: n.event.clone(),
            audit_seq: n.audit_seq,
            state: n.state.as_str().into(),
            dead: n.state == NotificationState::Dead,
            attempts: n.attempts,
            created_at: time(n.created_at),
            next_at: if n.state == NotificationState::Pending {
                time(n.next_at)
            } else {
                String::new()
            },
            delivered_at: opt_time(n.delivered_at),
            last_error: clean(n.last_error.as_deref().unwrap_or_default()),
        }
    }
}

#[derive(Deserialize)]
pub struct NotificationsQuery {
    state: Option<String>,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    title: &'static str,
    me: Option<Me>,
    csrf: String,
    states: Vec<Opt>,
    can_retry: bool,
    notifications: Vec<NotificationRow>,
    limit: u32,
}

pub async fn notifications(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<NotificationsQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    let state_text = given(&q.state).unwrap_or("all").to_owned();
    let list = match state_text.as_str() {
        // Dead letters first (they need someone), then the rest, newest first.
        "all" => {
            let mut dead = s
                .broker
                .notifications(
                    &signed.caller,
                    &NotificationFilter {
                        state: Some(NotificationState::Dead),
                        channel: None,
                        limit: LIST_MAX,
                    },
                )
                .await?;
            let rest = s
                .broker
                .notifications(
                    &signed.caller,
                    &NotificationFilter {
                        state: None,
                        channel: None,
                        limit: LIST_MAX,
                    },
                )
                .await?;
            dead.extend(
                rest.into_iter()
                    .filter(|n| n.state != NotificationState::Dead),
            );
            dead.truncate(LIST_MAX as usize);
            dead
        }
        other => {
            let state = NotificationState::parse(other).ok_or_else(|| {
                PageError::BadInput("state must be pending, delivered, dead or all".into())
            })?;
            s.broker
                .notifications(
                    &signed.caller,
                    &NotificationFilter {
                        state: Some(state),
                        channel: None,
                        limit: LIST_MAX,
                    },
                )
                .await?
        }
    };
    render(&NotificationsPage {
        title: "Notifications",
        csrf: signed.session.csrf_secret.clone(),
        can_retry: signed.has_role(&[Role::Operator]),
        me: Some(me(&signed)),
        states: options(&["all", "dead", "pending", "delivered"], &state_text),
        notifications: list.iter().map(NotificationRow::new).collect(),
        limit: LIST_MAX,
    })
}

pub async fn retry_notification(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    f: Result<Form<CsrfOnly>, FormRejection>,
) -> PageResult {
    same_origin(&headers)?;
    signed.check_csrf(form(f)?.csrf.as_deref())?;
    let ok = id.len() <= 100
        && id.starts_with("kairos-")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(PageError::NotFound(format!(
            "{:?} is not a notification id (they look like kairos-42-ops)",
            id.chars().take(100).collect::<String>()
        )));
    }
    s.broker.retry_notification(&signed.caller, &id).await?;
    Ok(Redirect::to("/ui/notifications").into_response())
}
