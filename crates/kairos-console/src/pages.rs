//! The console's pages and forms. Each handler calls the same `Broker` methods the API
//! handlers call, as the signed-in person, so the same rules hold (roles, the approving
//! team's approvers only, never self-approval) and every action is audited as them.
//! Forms post, then redirect to a page that shows the result (POST-redirect-GET).

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use kairos_broker::api_token_id;
use kairos_broker::ending::{RevokeReason, RevokeScope};
use kairos_broker::governance::lifecycle::IdentitySelection;
use kairos_domain::{
    AuditDraft, AuditKind, GrantId, IdentityName, Principal, RequestId, RequestState, TargetName,
    TaskRef, TeamName, Timestamp,
};
use kairos_store::{
    AuditFilter, ConsoleSession, GrantFilter, GrantStateFilter, RequestFilter, Role,
};
use serde::Deserialize;

use crate::auth::{ConsoleState, Signed, console_person, same_origin, session_id};
use crate::error::PageError;
use crate::session;
use crate::views::{AuditRow, GrantRow, Me, RequestRow};

pub(crate) type PageResult = Result<Response, PageError>;

pub(crate) fn render(page: &impl Template) -> PageResult {
    let html = page
        .render()
        .map_err(|e| PageError::Broker(kairos_broker::BrokerError::internal(e)))?;
    Ok(Html(html).into_response())
}

pub(crate) fn me(s: &Signed) -> Me {
    Me {
        user: s.user.name.to_string(),
        role: s.user.role.as_str().into(),
        csrf: s.session.csrf_secret.clone(),
        reads_estate: s.has_role(&[Role::Operator, Role::Auditor]),
    }
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, PageError> {
    q.map(|Query(v)| v).map_err(|e| {
        PageError::BadInput(format!(
            "the page's query string is not valid: {}",
            e.body_text()
        ))
    })
}

pub(crate) fn form<T>(f: Result<Form<T>, FormRejection>) -> Result<T, PageError> {
    f.map(|Form(v)| v)
        .map_err(|e| PageError::BadInput(format!("the form is not valid: {}", e.body_text())))
}

/// An optional filter from a GET form: empty means none.
pub(crate) fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub(crate) fn parse_opt<T, E: std::fmt::Display>(
    what: &str,
    v: &Option<String>,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> Result<Option<T>, PageError> {
    given(v)
        .map(|s| parse(s.to_owned()).map_err(|e| PageError::BadInput(format!("{what}: {e}"))))
        .transpose()
}

fn request_id(id: &str) -> Result<RequestId, PageError> {
    RequestId::parse(id).ok_or_else(|| {
        PageError::NotFound(format!(
            "{:?} is not a request id (they look like req_0192…)",
            id.chars().take(64).collect::<String>()
        ))
    })
}

fn grant_id(id: &str) -> Result<GrantId, PageError> {
    GrantId::parse(id).ok_or_else(|| {
        PageError::NotFound(format!(
            "{:?} is not a grant id (they look like grt_0192…)",
            id.chars().take(64).collect::<String>()
        ))
    })
}

pub(crate) fn check_reason(reason: Option<String>) -> Result<String, PageError> {
    let reason = reason.unwrap_or_default();
    if reason.trim().is_empty() || reason.chars().count() > 1000 {
        return Err(PageError::BadInput(
            "a reason of 1 to 1000 characters is needed: say why".into(),
        ));
    }
    Ok(reason)
}

// ---- sign-in and sign-out --------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    title: &'static str,
    me: Option<Me>,
    problem: String,
    /// The IdP's name for the "Sign in with …" button, when single sign-on is configured.
    sso: Option<String>,
    /// Whether the API-token form is offered (`[console] api_token_sign_in`).
    token_form: bool,
}

/// The sign-in page as `[console]` has it, with a problem to show (or none) and a status.
pub(crate) fn sign_in_page(s: &ConsoleState, problem: String, status: StatusCode) -> Response {
    let catalog = s.broker.catalog();
    let console = catalog.console();
    let page = LoginPage {
        title: "Sign in",
        me: None,
        problem,
        sso: console.oidc.as_ref().map(|o| o.name.clone()),
        token_form: console.api_token_sign_in,
    };
    match render(&page) {
        Ok(mut r) => {
            *r.status_mut() = status;
            r
        }
        Err(e) => e.into_response(),
    }
}

pub async fn login_form(State(s): State<ConsoleState>) -> Response {
    sign_in_page(&s, String::new(), StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: Option<String>,
}

pub async fn login(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    f: Result<Form<LoginForm>, FormRejection>,
) -> PageResult {
    same_origin(&headers)?;
    if !s.broker.catalog().console().api_token_sign_in {
        return Ok(sign_in_page(
            &s,
            "Signing in with an API token is turned off on this server ([console] api_token_sign_in = false): use single sign-on.".into(),
            StatusCode::FORBIDDEN,
        ));
    }
    let token = form(f)?.token.unwrap_or_default();
    let caller = match s.broker.authenticate(&token).await {
        Ok(c) => c,
        Err(kairos_broker::BrokerError::Unauthenticated(problem)) => {
            return Ok(sign_in_page(&s, problem, StatusCode::UNAUTHORIZED));
        }
        Err(e) => return Err(e.into()),
    };
    let user = console_person(&caller)?.clone();
    let now = s.broker.now();
    let id = session::new_secret();
    let stored = ConsoleSession {
        id_hash: session::hash_id(&id),
        user: user.name.clone(),
        token_id: api_token_id(&token),
        csrf_secret: session::new_secret(),
        created_at: now,
        expires_at: now.plus(s.settings.limits.absolute),
        last_seen_at: now,
    };
    let audit = AuditDraft::new(
        AuditKind::ConsoleSignedIn,
        Principal::User(user.name.clone()),
    )
    .data(serde_json::json!({ "method": "api_token", "token_id": stored.token_id }));
    s.broker
        .store()
        .insert_session(&stored, vec![audit])
        .await?;
    Ok((
        [(
            header::SET_COOKIE,
            session::set_cookie(&id, s.settings.limits.absolute, s.settings.transport),
        )],
        Redirect::to("/ui/inbox"),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

pub async fn logout(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult {
    same_origin(&headers)?;
    signed.check_csrf(form(f)?.csrf.as_deref())?;
    if let Some(id) = session_id(&headers) {
        let audit = AuditDraft::new(AuditKind::ConsoleSignedOut, signed.caller.principal());
        s.broker
            .store()
            .delete_session(&session::hash_id(id), vec![audit])
            .await?;
    }
    Ok((
        [(
            header::SET_COOKIE,
            session::clear_cookie(s.settings.transport),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response())
}

pub async fn home() -> Redirect {
    Redirect::to("/ui/inbox")
}

// ---- inbox and requests ----------------------------------------------------------------

struct InboxEntry {
    request: RequestRow,
    history: Vec<RequestRow>,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    title: &'static str,
    me: Option<Me>,
    csrf: String,
    entries: Vec<InboxEntry>,
}

/// How many of an identity's other requests the inbox shows beside a pending one.
const HISTORY: u32 = 5;
/// The most pending requests the inbox looks through.
const INBOX_SCAN: u32 = 500;

pub async fn inbox(State(s): State<ConsoleState>, signed: Signed) -> PageResult {
    let pending = s
        .broker
        .list_requests(
            &signed.caller,
            &RequestFilter {
                state: Some(RequestState::Pending),
                identity: None,
                limit: Some(INBOX_SCAN),
            },
        )
        .await?;
    let catalog = s.broker.catalog();
    let mut entries = Vec::new();
    for r in pending
        .iter()
        .filter(|r| signed.awaits_decision(&s.broker, r))
    {
        let history = s
            .broker
            .list_requests(
                &signed.caller,
                &RequestFilter {
                    state: None,
                    identity: Some(r.identity.clone()),
                    limit: Some(HISTORY + 1),
                },
            )
            .await?
            .iter()
            .filter(|h| h.id != r.id)
            .take(HISTORY as usize)
            .map(|h| RequestRow::new(h, &catalog))
            .collect();
        entries.push(InboxEntry {
            request: RequestRow::new(r, &catalog),
            history,
        });
    }
    render(&InboxPage {
        title: "Inbox",
        csrf: signed.session.csrf_secret.clone(),
        me: Some(me(&signed)),
        entries,
    })
}

#[derive(Deserialize)]
pub struct RequestQuery {
    state: Option<String>,
    identity: Option<String>,
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    title: &'static str,
    me: Option<Me>,
    state: String,
    identity: String,
    requests: Vec<RequestRow>,
}

pub async fn requests(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<RequestQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    let state = given(&q.state)
        .map(|st| {
            RequestState::parse(st).ok_or_else(|| {
                PageError::BadInput("state must be pending, granted, denied or expired".into())
            })
        })
        .transpose()?;
    let identity = parse_opt("identity", &q.identity, IdentityName::parse)?;
    let list = s
        .broker
        .list_requests(
            &signed.caller,
            &RequestFilter {
                state,
                identity,
                limit: Some(200),
            },
        )
        .await?;
    let catalog = s.broker.catalog();
    render(&RequestsPage {
        title: "Requests",
        me: Some(me(&signed)),
        state: given(&q.state).unwrap_or_default().to_owned(),
        identity: given(&q.identity).unwrap_or_default().to_owned(),
        requests: list.iter().map(|r| RequestRow::new(r, &catalog)).collect(),
    })
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    title: String,
    me: Option<Me>,
    csrf: String,
    request: RequestRow,
    can_decide: bool,
    history: Vec<RequestRow>,
}

pub async fn request(
    State(s): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = request_id(&id)?;
    let outcome = s.broker.get_request(&signed.caller, &id, None).await?;
    let r = outcome.request;
    let catalog = s.broker.catalog();
    let can_decide = signed.awaits_decision(&s.broker, &r);
    let history = match s
        .broker
        .list_requests(
            &signed.caller,
            &RequestFilter {
                state: None,
                identity: Some(r.identity.clone()),
                limit: Some(HISTORY + 1),
            },
        )
        .await
    {
        Ok(list) => list
            .iter()
            .filter(|h| h.id != r.id)
            .take(HISTORY as usize)
            .map(|h| RequestRow::new(h, &catalog))
            .collect(),
        // Its requester may read one request without a reading role.
        Err(_) => Vec::new(),
    };
    render(&RequestPage {
        title: format!("Request {}", r.id),
        csrf: signed.session.csrf_secret.clone(),
        me: Some(me(&signed)),
        request: RequestRow::new(&r, &catalog),
        can_decide,
        history,
    })
}

#[derive(Deserialize)]
pub struct DecisionForm {
    csrf: Option<String>,
    reason: Option<String>,
}

/// Which way a person decides.
#[derive(Clone, Copy)]
enum Decide {
    Approve,
    Deny,
}

async fn decide(
    s: ConsoleState,
    signed: Signed,
    headers: HeaderMap,
    id: String,
    f: Result<Form<DecisionForm>, FormRejection>,
    way: Decide,
) -> PageResult {
    same_origin(&headers)?;
    let f = form(f)?;
    signed.check_csrf(f.csrf.as_deref())?;
    let id = request_id(&id)?;
    let reason = check_reason(f.reason)?;
    signed.check_may_decide(&s.broker, &id).await?;
    match way {
        Decide::Approve => {
            s.broker.approve(&signed.caller, &id, reason).await?;
        }
        Decide::Deny => {
            s.broker.deny(&signed.caller, &id, reason).await?;
        }
    }
    Ok(Redirect::to(&format!("/ui/requests/{id}")).into_response())
}

pub async fn approve(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    f: Result<Form<DecisionForm>, FormRejection>,
) -> PageResult {
    decide(s, signed, headers, id, f, Decide::Approve).await
}

pub async fn deny(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    f: Result<Form<DecisionForm>, FormRejection>,
) -> PageResult {
    decide(s, signed, headers, id, f, Decide::Deny).await
}

// ---- grants ----------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct GrantQuery {
    state: Option<String>,
    identity: Option<String>,
    target: Option<String>,
    task_ref: Option<String>,
}

#[derive(Template)]
#[template(path = "grants.html")]
struct GrantsPage {
    title: &'static str,
    me: Option<Me>,
    state: String,
    identity: String,
    target: String,
    task_ref: String,
    grants: Vec<GrantRow>,
    /// Operators and admins revoke live grants from the list, with a reason.
    can_revoke: bool,
    csrf: String,
}

pub async fn grants(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<GrantQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    let state_text = given(&q.state).unwrap_or("active").to_owned();
    let state = match state_text.as_str() {
        "all" => None,
        "provisioning" => Some(GrantStateFilter::Provisioning),
        "active" => Some(GrantStateFilter::Active),
        "revoking" => Some(GrantStateFilter::Revoking),
        "ended" => Some(GrantStateFilter::Ended),
        _ => {
            return Err(PageError::BadInput(
                "state must be active, provisioning, revoking, ended or all".into(),
            ));
        }
    };
    let filter = GrantFilter {
        state,
        identity: parse_opt("identity", &q.identity, IdentityName::parse)?,
        target: parse_opt("target", &q.target, TargetName::parse)?,
        task_ref: parse_opt("task reference", &q.task_ref, TaskRef::parse)?,
        limit: Some(200),
        ..GrantFilter::default()
    };
    let list = s.broker.list_grants(&signed.caller, filter).await?;
    render(&GrantsPage {
        title: "Grants",
        me: Some(me(&signed)),
        state: state_text,
        identity: given(&q.identity).unwrap_or_default().to_owned(),
        target: given(&q.target).unwrap_or_default().to_owned(),
        task_ref: given(&q.task_ref).unwrap_or_default().to_owned(),
        grants: list.iter().map(GrantRow::new).collect(),
        can_revoke: signed.has_role(&[Role::Operator]),
        csrf: signed.session.csrf_secret.clone(),
    })
}

#[derive(Template)]
#[template(path = "grant.html")]
struct GrantPage {
    title: String,
    me: Option<Me>,
    csrf: String,
    grant: GrantRow,
    can_revoke: bool,
    timeline: Vec<AuditRow>,
    /// The timeline is the audit log's; people without an audit-reading role see none.
    timeline_hidden: String,
}

/// The most audit records a grant's timeline shows.
const TIMELINE: u32 = 500;

pub async fn grant(
    State(s): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = grant_id(&id)?;
    let g = s.broker.get_grant(&signed.caller, &id).await?;
    let (timeline, timeline_hidden) = match s
        .broker
        .audit(
            &signed.caller,
            &AuditFilter {
                grant_id: Some(id.to_string()),
                limit: Some(TIMELINE),
                ..AuditFilter::default()
            },
        )
        .await
    {
        // Oldest first: the grant's story in order.
        Ok(records) => (records.iter().map(AuditRow::new).collect(), String::new()),
        Err(kairos_broker::BrokerError::Forbidden(m)) => (Vec::new(), m),
        Err(e) => return Err(e.into()),
    };
    let grant = GrantRow::new(&g);
    render(&GrantPage {
        title: format!("Grant {}", g.id),
        csrf: signed.session.csrf_secret.clone(),
        can_revoke: grant.live && signed.has_role(&[Role::Operator]),
        me: Some(me(&signed)),
        grant,
        timeline,
        timeline_hidden,
    })
}

pub async fn revoke(
    State(s): State<ConsoleState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    f: Result<Form<DecisionForm>, FormRejection>,
) -> PageResult {
    same_origin(&headers)?;
    let f = form(f)?;
    signed.check_csrf(f.csrf.as_deref())?;
    let id = grant_id(&id)?;
    let reason = RevokeReason::parse(check_reason(f.reason)?).map_err(PageError::BadInput)?;
    s.broker
        .revoke(
            &signed.caller,
            RevokeScope::Grant(id.clone()),
            Some(&reason),
        )
        .await?;
    Ok(Redirect::to(&format!("/ui/grants/{id}")).into_response())
}

// ---- audit -----------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct AuditQuery {
    identity: Option<String>,
    grant: Option<String>,
    request: Option<String>,
    task_ref: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Keyset pagination: records with a smaller `seq` than this.
    before: Option<String>,
    /// Export: `jsonl` or `csv`.
    format: Option<String>,
}

fn time(what: &str, v: &Option<String>) -> Result<Option<Timestamp>, PageError> {
    given(v)
        .map(|t| {
            Timestamp::parse_rfc3339(t).ok_or_else(|| {
                PageError::BadInput(format!(
                    "{what} must be an RFC 3339 time such as 2026-11-26T10:00:00Z"
                ))
            })
        })
        .transpose()
}

impl AuditQuery {
    fn filter(&self, limit: u32) -> Result<AuditFilter, PageError> {
        Ok(AuditFilter {
            identity: given(&self.identity).map(str::to_owned),
            grant_id: given(&self.grant).map(str::to_owned),
            request_id: given(&self.request).map(str::to_owned),
            task_ref: given(&self.task_ref).map(str::to_owned),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            before_seq: given(&self.before)
                .map(|b| {
                    b.parse::<i64>().map_err(|_| {
                        PageError::BadInput("before must be an audit sequence number".into())
                    })
                })
                .transpose()?,
            limit: Some(limit),
        })
    }

    /// The query string of these filters (without `before` and `format`).
    fn filters_query(&self) -> String {
        let mut pairs = Vec::new();
        for (key, value) in [
            ("identity", &self.identity),
            ("grant", &self.grant),
            ("request", &self.request),
            ("task_ref", &self.task_ref),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = given(value) {
                pairs.push(format!("{key}={}", encode(v)));
            }
        }
        pairs.join("&")
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(crate) fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Records on one page of the audit search.
const AUDIT_PAGE: u32 = 50;
/// The most records one export holds (narrow the filters, or page with `before`).
const EXPORT_MAX: u32 = 10_000;

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    title: &'static str,
    me: Option<Me>,
    q: AuditFields,
    records: Vec<AuditRow>,
    next: Option<String>,
    export_query: String,
}

/// The search form's values, as typed.
struct AuditFields {
    identity: String,
    grant: String,
    request: String,
    task_ref: String,
    since: String,
    until: String,
}

pub async fn audit(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    // The broker tells the newest page oldest first; the search shows newest first.
    let mut records = s
        .broker
        .audit(&signed.caller, &q.filter(AUDIT_PAGE)?)
        .await?;
    records.reverse();
    let filters = q.filters_query();
    let next = (records.len() == AUDIT_PAGE as usize)
        .then(|| records.last().map(|r| r.seq))
        .flatten()
        .map(|seq| {
            if filters.is_empty() {
                format!("before={seq}")
            } else {
                format!("{filters}&before={seq}")
            }
        });
    let text = |v: &Option<String>| given(v).unwrap_or_default().to_owned();
    render(&AuditPage {
        title: "Audit",
        me: Some(me(&signed)),
        q: AuditFields {
            identity: text(&q.identity),
            grant: text(&q.grant),
            request: text(&q.request),
            task_ref: text(&q.task_ref),
            since: text(&q.since),
            until: text(&q.until),
        },
        records: records.iter().map(AuditRow::new).collect(),
        next,
        export_query: filters,
    })
}

/// A CSV cell: quoted, quotes doubled, and a leading `=`, `+`, `-`, `@` (which
/// spreadsheets would run as a formula) prefixed with `'`.
fn csv_cell(v: &str) -> String {
    let guarded = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

pub async fn audit_export(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    let format = given(&q.format).unwrap_or("jsonl").to_owned();
    if format != "jsonl" && format != "csv" {
        return Err(PageError::BadInput("format must be jsonl or csv".into()));
    }
    let records = s
        .broker
        .audit(&signed.caller, &q.filter(EXPORT_MAX)?)
        .await?;
    let mut out = String::new();
    if format == "csv" {
        out.push_str("seq,at,kind,actor,identity,request_id,grant_id,task_ref,data,hash\n");
        for r in &records {
            let cells = [
                r.seq.to_string(),
                r.at.to_rfc3339(),
                r.kind.as_str().to_owned(),
                r.actor.clone(),
                r.identity.clone().unwrap_or_default(),
                r.request_id.clone().unwrap_or_default(),
                r.grant_id.clone().unwrap_or_default(),
                r.task_ref.clone().unwrap_or_default(),
                r.data.clone(),
                r.hash.clone(),
            ];
            out.push_str(
                &cells
                    .iter()
                    .map(|c| csv_cell(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
    } else {
        for r in &records {
            let line = serde_json::json!({
                "seq": r.seq,
                "at": r.at.to_rfc3339(),
                "kind": r.kind.as_str(),
                "actor": r.actor,
                "identity": r.identity,
                "request_id": r.request_id,
                "grant_id": r.grant_id,
                "task_ref": r.task_ref,
                "data": serde_json::from_str::<serde_json::Value>(&r.data)
                    .unwrap_or_else(|_| serde_json::Value::String(r.data.clone())),
                "hash": r.hash,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    let (content_type, name) = if format == "csv" {
        ("text/csv; charset=utf-8", "kairos-audit.csv")
    } else {
        ("application/x-ndjson", "kairos-audit.jsonl")
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        out,
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage {
    title: &'static str,
    me: Option<Me>,
    /// A walk of the whole chain, on request (else the running status).
    full: bool,
    ok: bool,
    /// Full walk: records checked. Status: verified through this record.
    records: String,
    caught_up: bool,
    checked_at: String,
    published: String,
    broken_at: String,
    problem: String,
}

#[derive(Deserialize)]
pub struct VerifyQuery {
    /// `1`: walk the whole chain now (slow on a long chain).
    full: Option<String>,
}

/// The chain's status as this server has verified it while following the chain; with
/// `?full=1`, a walk of the whole chain now.
pub async fn audit_verify(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<VerifyQuery>, QueryRejection>,
) -> PageResult {
    let full = query(q)?.full.as_deref() == Some("1");
    let (ok, records, caught_up, checked_at, published, broken) = if full {
        let report = s.broker.verify_audit(&signed.caller).await?;
        (
            report.broken.is_none(),
            report.records.to_string(),
            true,
            s.broker.now().to_rfc3339(),
            String::new(),
            report.broken,
        )
    } else {
        let status = s.broker.chain_status(&signed.caller).await?;
        (
            status.broken.is_none(),
            status.verified_through.to_string(),
            status.caught_up,
            status
                .checked_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            if status.published > 0 {
                status.published.to_string()
            } else {
                String::new()
            },
            status.broken,
        )
    };
    render(&VerifyPage {
        title: "Audit chain",
        me: Some(me(&signed)),
        full,
        ok,
        records,
        caught_up,
        checked_at,
        published,
        broken_at: broken
            .as_ref()
            .map(|b| b.seq.to_string())
            .unwrap_or_default(),
        problem: broken
            .map(|b| crate::text::clean(&b.problem))
            .unwrap_or_default(),
    })
}

// ---- identities and owners -------------------------------------------------------------

struct IdentityRow {
    name: String,
    kind: String,
    team: String,
    state: String,
    owners: String,
    active_owners: String,
    orphaned: bool,
    approvers: String,
}

#[derive(Template)]
#[template(path = "identities.html")]
struct IdentitiesPage {
    title: &'static str,
    me: Option<Me>,
    /// The name filter as given.
    name: String,
    team: String,
    identities: Vec<IdentityRow>,
    /// How many identities match the filters.
    matched: usize,
    /// The link to the next page, when there is one.
    next: String,
}

/// Identities a page shows.
const IDENTITIES_PAGE: usize = 100;

#[derive(Deserialize)]
pub struct IdentityQuery {
    /// Part of the name (any case).
    name: Option<String>,
    team: Option<String>,
    /// Keyset pagination: names after this one.
    after: Option<String>,
}

pub async fn identities(
    State(s): State<ConsoleState>,
    signed: Signed,
    q: Result<Query<IdentityQuery>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    let team = given(&q.team).unwrap_or_default();
    let selection = IdentitySelection {
        name: given(&q.name).map(str::to_owned),
        team: if team.is_empty() {
            None
        } else {
            Some(TeamName::parse(team).map_err(|e| {
                PageError::BadInput(format!("team: {e}; leave it empty for every team"))
            })?)
        },
        after: given(&q.after).map(str::to_owned),
        limit: IDENTITIES_PAGE,
    };
    let found = s.broker.identity_page(&signed.caller, &selection).await?;
    let catalog = s.broker.catalog();
    let join = |names: &[kairos_domain::UserName]| {
        names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let matched = found.matched;
    let page = found.identities;
    let next = match page.last() {
        Some(last) if found.more => format!(
            "/ui/identities?name={}&team={}&after={}",
            encode(given(&q.name).unwrap_or_default()),
            encode(team),
            encode(last.name.as_str())
        ),
        _ => String::new(),
    };
    let identities = page
        .into_iter()
        .map(|v| IdentityRow {
            approvers: catalog
                .team(&v.team)
                .map(|t| join(&t.approvers))
                .unwrap_or_default(),
            name: v.name.to_string(),
            kind: crate::text::clean(&v.kind),
            team: v.team.to_string(),
            state: v.status.state.as_str().into(),
            owners: join(&v.owners),
            active_owners: join(&v.active_owners),
            orphaned: v.orphan.is_some(),
        })
        .collect();
    render(&IdentitiesPage {
        title: "Identities and owners",
        me: Some(me(&signed)),
        name: given(&q.name).unwrap_or_default().to_owned(),
        team: team.to_owned(),
        identities,
        matched,
        next,
    })
}

pub async fn not_found() -> PageError {
    PageError::NotFound("There is no such console page.".into())
}
