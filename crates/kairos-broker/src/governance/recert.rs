//! Recertification with consequences, and standing exceptions.
//!
//! Thin by design: load the catalog and the store's records, ask the pure rules of
//! [`kairos_governance`] where each subject stands, write what follows through the store.
//!
//! - [`Broker::recert_pass`] (one pass, idempotent, safe on several replicas at once):
//!   records subjects seen for the first time, keeps due dates in step with the catalog,
//!   opens the owners' review task of each due subject (`recert_due`, once per cycle), and
//!   acts on what is overdue; flags exceptions whose rotation is overdue or whose end date
//!   passed. Each notice is acted on once per cycle: the store's claim decides which
//!   replica does it, and the audit record commits with the claim.
//! - [`Broker::attest`]: an owner of the subject's team re-attests it (a new cycle).
//! - [`Broker::exception_rotated`]: an exception's secret was rotated.
//!
//! Who may attest: only a user listed in the `owners` of the subject's team, whatever
//! their role (an admin who is not an owner is refused, as for approvals; a
//! resource-server never). Who may record a rotation: an owner of the exception's team, an
//! operator or an admin.

use std::collections::BTreeMap;

use kairos_config::{Catalog, Exception, Team};
use kairos_domain::{
    AuditDraft, AuditKind, ExceptionName, IdentityName, Period, Principal, TeamName, Timestamp,
};
use kairos_governance::exceptions::{self as rules, ExceptionFinding, RotationFacts};
use kairos_governance::recert::{self, Attestations, Cadence, RecertStatus};
use kairos_governance::{AlertDraft, AlertKind, IdentityState, SuspensionCause};
use kairos_store::{
    Attestation, ExceptionRotation, NewRecertification, NoticeClaim, RecertNotice, RecertPageQuery,
    Recertification, Role, SubjectKind,
};

use super::alerts::alert_write;
use crate::{Broker, BrokerError, Caller, Result};

/// The actor of what the recertification pass does.
const ACTOR: Principal = Principal::System("recert");

/// Which recertifications to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecertFilter {
    #[default]
    All,
    /// Their owners' review task is open and the due date has not passed.
    Due,
    /// Past their due date, unattested.
    Overdue,
}

impl RecertFilter {
    fn admits(self, status: RecertStatus) -> bool {
        match self {
            Self::All => true,
            Self::Due => status == RecertStatus::Due,
            Self::Overdue => status == RecertStatus::Overdue,
        }
    }
}

/// Where a page of recertifications ends: the last record read (due date, kind,
/// subject); as text `<due millis>.<kind>.<subject>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecertCursor {
    pub due_at: Timestamp,
    pub kind: SubjectKind,
    pub subject: String,
}

impl RecertCursor {
    /// Reads the text form; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (due, rest) = s.split_once('.')?;
        let (kind, subject) = rest.split_once('.')?;
        Some(Self {
            due_at: Timestamp::from_millis(due.parse().ok()?),
            kind: SubjectKind::parse(kind)?,
            subject: subject.to_owned(),
        })
    }
}

impl std::fmt::Display for RecertCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.due_at.as_millis(),
            self.kind.as_str(),
            self.subject
        )
    }
}

/// A page of recertifications and where the next one starts, if there is one.
#[derive(Debug, Clone)]
pub struct RecertPage {
    pub entries: Vec<RecertEntry>,
    pub next: Option<RecertCursor>,
}

/// One identity's or exception's recertification as of now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecertEntry {
    pub kind: SubjectKind,
    pub subject: String,
    /// The team whose owners attest it.
    pub team: TeamName,
    /// `recertify_every` as it applies (own, else the team's, else the default).
    pub interval: Period,
    /// When Kairos first saw it; `None` until the recertification pass has (within
    /// seconds of an apply), in which case it counts from now.
    pub first_seen_at: Option<Timestamp>,
    pub last_attested_at: Option<Timestamp>,
    pub attested_by: Option<String>,
    pub reason: Option<String>,
    pub due_at: Timestamp,
    /// When the owners' review task opens (or opened).
    pub review_opens_at: Timestamp,
    pub status: RecertStatus,
}

/// One standing exception with its rotation and recertification state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionEntry {
    pub exception: Exception,
    pub last_rotation: Option<ExceptionRotation>,
    pub rotation_due_at: Timestamp,
    /// Rotation overdue, past its end date: what is wrong now.
    pub findings: Vec<ExceptionFinding>,
    pub recert: RecertEntry,
}

/// What one recertification pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecertPassReport {
    /// Subjects seen for the first time.
    pub added: u64,
    /// Due dates moved because an interval in the catalog changed.
    pub moved: u64,
    /// Review tasks opened (`recert_due`).
    pub reviews_opened: u64,
    /// Cycles newly found overdue (`recert_overdue`), identities and exceptions.
    pub overdue: u64,
    /// Exceptions newly flagged for an overdue rotation.
    pub rotations_overdue: u64,
    /// Exceptions newly flagged as past their end date.
    pub expired: u64,
    /// Identities suspended because their recertification is overdue.
    pub suspended: u64,
}

/// A subject of the catalog and how it is recertified.
struct Subject {
    kind: SubjectKind,
    name: String,
    team: TeamName,
    interval: Period,
    /// The identity it concerns (itself, or the exception's), for the audit record.
    identity: IdentityName,
}

fn subjects(catalog: &Catalog) -> Vec<Subject> {
    let identities = catalog.identities().map(|i| Subject {
        kind: SubjectKind::Identity,
        name: i.name.to_string(),
        team: i.owner.clone(),
        interval: catalog.identity_recert_interval(i),
        identity: i.name.clone(),
    });
    let exceptions = catalog.exceptions().map(|e| Subject {
        kind: SubjectKind::Exception,
        name: e.name.to_string(),
        team: e.owner.clone(),
        interval: catalog.exception_recert_interval(e),
        identity: e.identity.clone(),
    });
    identities.chain(exceptions).collect()
}

type Records = BTreeMap<(SubjectKind, String), Recertification>;

fn entry(
    subject: &Subject,
    record: Option<&Recertification>,
    notice: Period,
    now: Timestamp,
) -> RecertEntry {
    let facts = Attestations {
        first_seen_at: record.map_or(now, |r| r.first_seen_at),
        last_attested_at: record.and_then(|r| r.last_attested_at),
    };
    let a = recert::assess(
        facts,
        Cadence {
            every: subject.interval,
            notice,
        },
        now,
    );
    RecertEntry {
        kind: subject.kind,
        subject: subject.name.clone(),
        team: subject.team.clone(),
        interval: subject.interval,
        first_seen_at: record.map(|r| r.first_seen_at),
        last_attested_at: facts.last_attested_at,
        attested_by: record.and_then(|r| r.attested_by.clone()),
        reason: record.and_then(|r| r.reason.clone()),
        due_at: a.due_at,
        review_opens_at: a.opens_at,
        status: a.status,
    }
}

/// A reason or note as people write them: 1-1000 characters, no control characters
/// (line breaks and tabs aside). `what` names the field in the message.
fn free_text(what: &'static str, s: &str) -> Result<String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(BrokerError::invalid(
            "missing_reason",
            format!(
                "{what} is required: say why, in a sentence (e.g. --{what} \"still runs the nightly backup; reviewed its grants\")"
            ),
        ));
    }
    if t.chars().count() > 1000 {
        return Err(BrokerError::invalid(
            "bad_reason",
            format!("{what} is longer than 1000 characters; summarise it and link the rest"),
        ));
    }
    if t.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(BrokerError::invalid(
            "bad_reason",
            format!("{what} must not contain control characters"),
        ));
    }
    Ok(t.to_owned())
}

/// The team's owners rule, as said to someone it refuses. Names the rule and the team,
/// not who the owners are.
fn not_an_owner(action: &str, kind: SubjectKind, name: &str, team: &TeamName) -> BrokerError {
    BrokerError::Forbidden(format!(
        "only an owner of team {team} (a user listed in its [[team]] owners) may {action} {} {name}; you are not one (admins and operators included)",
        kind.as_str()
    ))
}

fn is_owner(team: Option<&Team>, caller: &Caller) -> bool {
    match caller {
        Caller::User(u) if u.role != Role::ResourceServer => {
            team.is_some_and(|t| t.owners.contains(&u.name))
        }
        _ => false,
    }
}

impl Broker {
    /// The recertifications of the catalog's identities and exceptions as of now, due
    /// soonest first. People only (admin, operator, approver, auditor).
    pub async fn recertifications(
        &self,
        caller: &Caller,
        filter: RecertFilter,
    ) -> Result<Vec<RecertEntry>> {
        caller.require_role(
            &[Role::Operator, Role::Approver, Role::Auditor],
            "list recertifications",
        )?;
        let records = self.recert_records().await?;
        Ok(self.recert_entries(&records, filter))
    }

    /// A page of recertifications, due soonest first, read a page at a time from the
    /// store's records (a subject appears once the recertification pass has recorded it,
    /// within a pass of an apply); records of subjects the catalog no longer has are left
    /// out. People only, as for [`Self::recertifications`].
    pub async fn recertification_page(
        &self,
        caller: &Caller,
        filter: RecertFilter,
        after: Option<RecertCursor>,
        limit: u32,
    ) -> Result<RecertPage> {
        caller.require_role(
            &[Role::Operator, Role::Approver, Role::Auditor],
            "list recertifications",
        )?;
        let catalog = self.catalog();
        let now = self.now();
        let notice = catalog.recert_settings().recert_notice;
        let by_key: std::collections::HashMap<(SubjectKind, String), Subject> = subjects(&catalog)
            .into_iter()
            .map(|s| ((s.kind, s.name.clone()), s))
            .collect();
        // The stored due dates bound each filter's rows exactly (the pass keeps them in
        // step with the catalog); each entry is still assessed, and kept only if its
        // status is the one asked for.
        let (due_after, due_until) = match filter {
            RecertFilter::All => (None, None),
            RecertFilter::Due => (Some(now), Some(now.plus(notice.as_duration()))),
            RecertFilter::Overdue => (None, Some(now)),
        };
        let want = limit as usize;
        let mut entries = Vec::with_capacity(want);
        let mut cursor = after.map(|c| (c.due_at, c.kind, c.subject));
        let mut more = false;
        'pages: loop {
            let rows = self
                .store
                .recertification_page(&RecertPageQuery {
                    kind: None,
                    due_after,
                    due_until,
                    after: cursor.clone(),
                    limit: Some(limit.saturating_add(1)),
                })
                .await?;
            let last_page = rows.len() <= want;
            for record in rows {
                if entries.len() == want {
                    more = true;
                    break 'pages;
                }
                cursor = Some((record.due_at, record.kind, record.subject.clone()));
                let Some(subject) = by_key.get(&(record.kind, record.subject.clone())) else {
                    continue;
                };
                let e = entry(subject, Some(&record), notice, now);
                if filter.admits(e.status) {
                    entries.push(e);
                }
            }
            if last_page {
                break;
            }
        }
        let next = match (more, cursor) {
            (true, Some((due_at, kind, subject))) => Some(RecertCursor {
                due_at,
                kind,
                subject,
            }),
            _ => None,
        };
        Ok(RecertPage { entries, next })
    }

    /// Every recertification and every standing exception as the rules see them now,
    /// from one read of the records (the posture report needs both; its caller's role
    /// is checked there).
    pub(crate) async fn recerts_and_exceptions(
        &self,
    ) -> Result<(Vec<RecertEntry>, Vec<ExceptionEntry>)> {
        let records = self.recert_records().await?;
        let recerts = self.recert_entries(&records, RecertFilter::All);
        let exceptions = self.exception_entries(&records).await?;
        Ok((recerts, exceptions))
    }

    fn recert_entries(&self, records: &Records, filter: RecertFilter) -> Vec<RecertEntry> {
        let catalog = self.catalog();
        let now = self.now();
        let notice = catalog.recert_settings().recert_notice;
        let mut out: Vec<RecertEntry> = subjects(&catalog)
            .iter()
            .map(|s| entry(s, records.get(&(s.kind, s.name.clone())), notice, now))
            .filter(|e| filter.admits(e.status))
            .collect();
        out.sort_by(|a, b| (a.due_at, a.kind, &a.subject).cmp(&(b.due_at, b.kind, &b.subject)));
        out
    }

    async fn recert_records(&self) -> Result<Records> {
        Ok(self
            .store
            .list_recertifications()
            .await?
            .into_iter()
            .map(|r| ((r.kind, r.subject.clone()), r))
            .collect())
    }

    /// An owner re-attests an identity or an exception: a new cycle starts now. Only a
    /// user listed in the owners of the subject's team may (see the module's rules).
    pub async fn attest(
        &self,
        caller: &Caller,
        kind: SubjectKind,
        name: &str,
        reason: &str,
    ) -> Result<RecertEntry> {
        let by = match caller {
            Caller::User(u) if u.role != Role::ResourceServer => Principal::User(u.name.clone()),
            Caller::User(u) => {
                return Err(BrokerError::Forbidden(format!(
                    "user {} is a resource-server; only an owner of the subject's team may attest",
                    u.name
                )));
            }
            Caller::Workload { identity } => {
                return Err(BrokerError::Forbidden(format!(
                    "workload {identity} cannot attest; an owner of its team attests with their API token"
                )));
            }
        };
        let reason = free_text("reason", reason)?;
        let catalog = self.catalog();
        let subject = subjects(&catalog)
            .into_iter()
            .find(|s| s.kind == kind && s.name == name)
            .ok_or_else(|| unknown(kind, name))?;
        if !is_owner(catalog.team(&subject.team), caller) {
            return Err(not_an_owner("attest", kind, name, &subject.team));
        }
        let suspended = match kind {
            SubjectKind::Identity => {
                let status = self.identity_status(&subject.identity).await?;
                if status.state == IdentityState::Retired {
                    return Err(BrokerError::Conflict(format!(
                        "identity {name} is retired; there is nothing to recertify"
                    )));
                }
                status.state == IdentityState::Suspended
                    && status.cause == Some(SuspensionCause::RecertOverdue)
            }
            SubjectKind::Exception => false,
        };
        let previous = self.store.get_recertification(kind, name).await?;
        let now = self.now();
        let due_at = recert::due_at(now, subject.interval);
        let audit = AuditDraft::new(AuditKind::RecertAttested, &by)
            .identity(&subject.identity)
            .data(serde_json::json!({
                "subject_kind": kind.as_str(),
                "subject": name,
                "team": subject.team,
                "reason": reason,
                "due_at": due_at.to_rfc3339(),
            }));
        let record = self
            .store
            .attest(
                &Attestation {
                    kind,
                    subject: name.to_owned(),
                    at: now,
                    by: by.to_string(),
                    reason,
                    due_at,
                },
                audit,
            )
            .await?;
        tracing::info!(kind = kind.as_str(), subject = name, by = %by, due = %due_at, "recertified");
        if let Some(previous) = previous {
            self.resolve_alert_key(
                &overdue_key(kind, name, previous.due_at),
                &format!("recertified by {by}"),
            )
            .await?;
        }
        if suspended {
            // The attestation lifts the suspension its overdue recertification caused.
            self.resume_identity(
                &subject.identity,
                &format!(
                    "recertified: {}",
                    record.reason.as_deref().unwrap_or_default()
                ),
                by.clone(),
                true,
            )
            .await?;
        }
        Ok(entry(
            &subject,
            Some(&record),
            catalog.recert_settings().recert_notice,
            now,
        ))
    }

    /// Instead of attesting, an owner retires the identity for good (the foundation's
    /// `retire_identity`: its grants end, its requests are refused). Only a user listed
    /// in the owners of its team may, as for attesting.
    pub async fn retire_as_owner(
        &self,
        caller: &Caller,
        name: &str,
        reason: &str,
    ) -> Result<crate::StateOutcome> {
        let by = match caller {
            Caller::User(u) if u.role != Role::ResourceServer => Principal::User(u.name.clone()),
            _ => {
                return Err(BrokerError::Forbidden(
                    "only an owner of the identity's team retires it, with their API token".into(),
                ));
            }
        };
        let reason = free_text("reason", reason)?;
        let catalog = self.catalog();
        let identity = IdentityName::parse(name)
            .ok()
            .and_then(|n| catalog.identity(&n).cloned())
            .ok_or_else(|| unknown(SubjectKind::Identity, name))?;
        if !is_owner(catalog.team(&identity.owner), caller) {
            return Err(not_an_owner(
                "retire",
                SubjectKind::Identity,
                name,
                &identity.owner,
            ));
        }
        self.retire_identity(&identity.name, &format!("retired at review: {reason}"), by)
            .await
    }

    /// The catalog's standing exceptions with their rotation, findings and
    /// recertification. People only (admin, operator, approver, auditor).
    pub async fn exceptions(&self, caller: &Caller) -> Result<Vec<ExceptionEntry>> {
        caller.require_role(
            &[Role::Operator, Role::Approver, Role::Auditor],
            "list standing exceptions",
        )?;
        // Only the exceptions' records: the identities' (one per identity) are not read.
        let records = self
            .store
            .recertification_page(&RecertPageQuery {
                kind: Some(SubjectKind::Exception),
                ..RecertPageQuery::default()
            })
            .await?
            .into_iter()
            .map(|r| ((r.kind, r.subject.clone()), r))
            .collect();
        self.exception_entries(&records).await
    }

    async fn exception_entries(&self, records: &Records) -> Result<Vec<ExceptionEntry>> {
        let catalog = self.catalog();
        let rotations = self.rotations().await?;
        let now = self.now();
        Ok(catalog
            .exceptions()
            .map(|e| exception_entry(&catalog, e, records, &rotations, now))
            .collect())
    }

    async fn rotations(&self) -> Result<BTreeMap<ExceptionName, ExceptionRotation>> {
        Ok(self
            .store
            .exception_rotations()
            .await?
            .into_iter()
            .map(|r| (r.exception.clone(), r))
            .collect())
    }

    /// Records that an exception's secret was rotated now. An owner of the exception's
    /// team, an operator or an admin may.
    pub async fn exception_rotated(
        &self,
        caller: &Caller,
        name: &str,
        note: Option<&str>,
    ) -> Result<ExceptionEntry> {
        let user = match caller {
            Caller::User(u) if u.role != Role::ResourceServer => u,
            Caller::User(u) => {
                return Err(BrokerError::Forbidden(format!(
                    "user {} is a resource-server; an owner of the exception's team, an operator or an admin records rotations",
                    u.name
                )));
            }
            Caller::Workload { identity } => {
                return Err(BrokerError::Forbidden(format!(
                    "workload {identity} cannot record a rotation; a person does, with their API token"
                )));
            }
        };
        let note = note.map(|n| free_text("note", n)).transpose()?;
        let catalog = self.catalog();
        let exception = ExceptionName::parse(name)
            .ok()
            .and_then(|n| catalog.exception(&n))
            .ok_or_else(|| unknown(SubjectKind::Exception, name))?;
        let owner = is_owner(catalog.team(&exception.owner), caller);
        if !owner && !matches!(user.role, Role::Admin | Role::Operator) {
            return Err(BrokerError::Forbidden(format!(
                "only an owner of team {} (a user listed in its [[team]] owners), an operator or an admin may record a rotation of exception {name}",
                exception.owner
            )));
        }
        let now = self.now();
        let by = caller.principal();
        let rotation = ExceptionRotation {
            exception: exception.name.clone(),
            last_rotated_at: now,
            rotated_by: by.to_string(),
            note,
        };
        let audit = AuditDraft::new(AuditKind::ExceptionRotated, &by)
            .identity(&exception.identity)
            .data(serde_json::json!({
                "exception": exception.name,
                "note": rotation.note,
                "rotation_due_at": now.plus(exception.rotate_every.as_duration()).to_rfc3339(),
            }));
        let before = exception_entry(
            &catalog,
            exception,
            &self.recert_records().await?,
            &self.rotations().await?,
            now,
        );
        self.store.record_rotation(&rotation, audit).await?;
        self.resolve_alert_key(
            &format!(
                "exception_rotation_overdue:{}:{}",
                exception.name,
                before.rotation_due_at.as_millis()
            ),
            &format!("rotated, recorded by {by}"),
        )
        .await?;
        tracing::info!(exception = name, by = %by, "exception secret rotated");
        let records = self.recert_records().await?;
        let mut rotations = self.rotations().await?;
        rotations.insert(exception.name.clone(), rotation);
        Ok(exception_entry(
            &catalog, exception, &records, &rotations, now,
        ))
    }

    /// One recertification pass (see the module's documentation). Idempotent, and safe
    /// when several replicas run it at once.
    pub async fn recert_pass(&self) -> Result<RecertPassReport> {
        let catalog = self.catalog();
        let now = self.now();
        let notice = catalog.recert_settings().recert_notice;
        let subjects = subjects(&catalog);
        let mut report = RecertPassReport::default();

        let mut records = self.recert_records().await?;
        let missing: Vec<NewRecertification> = subjects
            .iter()
            .filter(|s| !records.contains_key(&(s.kind, s.name.clone())))
            .map(|s| NewRecertification {
                kind: s.kind,
                subject: s.name.clone(),
                due_at: recert::due_at(now, s.interval),
            })
            .collect();
        if !missing.is_empty() {
            report.added = self.store.add_recertifications(&missing, now).await?;
            records = self.recert_records().await?;
        }

        let entries: Vec<(&Subject, RecertEntry)> = subjects
            .iter()
            .map(|s| {
                (
                    s,
                    entry(s, records.get(&(s.kind, s.name.clone())), notice, now),
                )
            })
            .collect();
        let moved: Vec<(SubjectKind, String, Timestamp)> = entries
            .iter()
            .filter(|(s, e)| {
                records
                    .get(&(s.kind, s.name.clone()))
                    .is_some_and(|r| r.due_at != e.due_at)
            })
            .map(|(s, e)| (s.kind, s.name.clone(), e.due_at))
            .collect();
        report.moved = self.store.move_recert_due(&moved).await?;

        let inactive = self.governance.inactive();
        for (subject, e) in &entries {
            let status = inactive
                .get(&subject.identity)
                .filter(|_| subject.kind == SubjectKind::Identity);
            let held_for_recert = status.is_some_and(|s| {
                s.state == IdentityState::Suspended
                    && s.cause == Some(SuspensionCause::RecertOverdue)
            });
            if e.status != RecertStatus::Overdue && held_for_recert {
                // Attested (perhaps on another replica, or before a crash) but still held:
                // the attestation lifts it.
                self.resume_identity(
                    &subject.identity,
                    "recertified: the attestation lifts the overdue suspension",
                    ACTOR,
                    true,
                )
                .await?;
            }
            if e.status == RecertStatus::Overdue
                && subject.kind == SubjectKind::Identity
                && status.is_none()
            {
                let reason = format!(
                    "recertification overdue since {}; an owner of team {} attests with `{}`",
                    e.due_at,
                    subject.team,
                    attest_command(subject)
                );
                match self
                    .suspend_identity(
                        &subject.identity,
                        SuspensionCause::RecertOverdue,
                        &reason,
                        ACTOR,
                    )
                    .await
                {
                    Ok(outcome) => {
                        report.suspended += 1;
                        tracing::warn!(identity = %subject.identity, ended = outcome.ended.len(), "suspended: recertification overdue");
                    }
                    // Another replica suspended it first.
                    Err(BrokerError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if e.status == RecertStatus::Ok {
                continue;
            }
            if self.open_recert_review(subject, e, now).await? {
                report.reviews_opened += 1;
            }
            if e.status == RecertStatus::Overdue && self.recert_overdue(subject, e, now).await? {
                report.overdue += 1;
            }
        }

        let rotations = self.rotations().await?;
        for exception in catalog.exceptions() {
            let entry = exception_entry(&catalog, exception, &records, &rotations, now);
            for finding in &entry.findings {
                if self.flag_exception(exception, finding, now).await? {
                    match finding {
                        ExceptionFinding::RotationOverdue { .. } => report.rotations_overdue += 1,
                        ExceptionFinding::Expired { .. } => report.expired += 1,
                    }
                }
            }
        }
        Ok(report)
    }

    /// Opens the owners' review task of a due (or overdue) subject, once per cycle.
    async fn open_recert_review(
        &self,
        s: &Subject,
        e: &RecertEntry,
        now: Timestamp,
    ) -> Result<bool> {
        let claim = NoticeClaim {
            kind: s.kind,
            subject: s.name.clone(),
            notice: RecertNotice::RecertDue,
            cycle_at: e.due_at,
        };
        let audit = AuditDraft::new(AuditKind::RecertDue, ACTOR)
            .identity(&s.identity)
            .data(serde_json::json!({
                "subject_kind": s.kind.as_str(),
                "subject": s.name,
                "team": s.team,
                "due_at": e.due_at.to_rfc3339(),
                "attest_with": attest_command(s),
            }));
        let opened = self
            .store
            .claim_recert_notice(&claim, now, vec![audit], None)
            .await?;
        if opened {
            tracing::info!(kind = s.kind.as_str(), subject = %s.name, team = %s.team, due = %e.due_at, "recertification due: the owners' review is open");
        }
        Ok(opened)
    }

    /// A subject past its due date: audited once per cycle (`recert_overdue`).
    async fn recert_overdue(&self, s: &Subject, e: &RecertEntry, now: Timestamp) -> Result<bool> {
        let claim = NoticeClaim {
            kind: s.kind,
            subject: s.name.clone(),
            notice: RecertNotice::RecertOverdue,
            cycle_at: e.due_at,
        };
        let audit = AuditDraft::new(AuditKind::RecertOverdue, ACTOR)
            .identity(&s.identity)
            .data(serde_json::json!({
                "subject_kind": s.kind.as_str(),
                "subject": s.name,
                "team": s.team,
                "due_at": e.due_at.to_rfc3339(),
                "attest_with": attest_command(s),
            }));
        let consequence = match s.kind {
            SubjectKind::Identity => "it is suspended until an owner attests",
            SubjectKind::Exception => "flagged until an owner attests",
        };
        let alert = alert_write(
            AlertDraft::new(
                AlertKind::RecertOverdue,
                format!("{} {}", s.kind.as_str(), s.name),
                format!(
                    "the recertification of {} {} (team {}) was due at {}; {consequence}: `{}`",
                    s.kind.as_str(),
                    s.name,
                    s.team,
                    e.due_at,
                    attest_command(s)
                ),
            )
            .identity(&s.identity)
            .dedupe_key(overdue_key(s.kind, &s.name, e.due_at))
            .detail(serde_json::json!({
                "subject_kind": s.kind.as_str(),
                "subject": s.name,
                "team": s.team,
                "due_at": e.due_at.to_rfc3339(),
            })),
            now,
        );
        let alert_id = alert.id.clone();
        // The notice and its alert commit together.
        let claimed = self
            .store
            .claim_recert_notice(&claim, now, vec![audit], Some(alert))
            .await?;
        if claimed {
            tracing::warn!(kind = s.kind.as_str(), subject = %s.name, team = %s.team, due = %e.due_at, "recertification overdue");
            self.alert_committed(&alert_id).await;
        }
        Ok(claimed)
    }

    /// An exception's finding, flagged once per rotation cycle or end date.
    async fn flag_exception(
        &self,
        exception: &Exception,
        finding: &ExceptionFinding,
        now: Timestamp,
    ) -> Result<bool> {
        let (notice, kind) = match finding {
            ExceptionFinding::RotationOverdue { .. } => (
                RecertNotice::RotationOverdue,
                AuditKind::ExceptionRotationOverdue,
            ),
            ExceptionFinding::Expired { .. } => {
                (RecertNotice::Expired, AuditKind::ExceptionExpired)
            }
        };
        let claim = NoticeClaim {
            kind: SubjectKind::Exception,
            subject: exception.name.to_string(),
            notice,
            cycle_at: finding.cycle(),
        };
        let audit = AuditDraft::new(kind, ACTOR)
            .identity(&exception.identity)
            .data(serde_json::json!({
                "exception": exception.name,
                "team": exception.owner,
                "system": exception.system,
                "finding": finding.as_str(),
                "since": finding.cycle().to_rfc3339(),
            }));
        let (alert_kind, message) = match finding {
            ExceptionFinding::RotationOverdue { due_at } => (
                AlertKind::ExceptionRotationOverdue,
                format!(
                    "the static secret of exception {} ({}) was due for rotation at {due_at}; rotate it and record it with `kairos exception rotated {}`",
                    exception.name, exception.system, exception.name
                ),
            ),
            ExceptionFinding::Expired { ended_at } => (
                AlertKind::ExceptionExpired,
                format!(
                    "exception {} ({}) ended at {ended_at}: the static secret should be gone; remove it and the exception, or extend `ends` with a reason",
                    exception.name, exception.system
                ),
            ),
        };
        let alert = alert_write(
            AlertDraft::new(alert_kind, format!("exception {}", exception.name), message)
                .identity(&exception.identity)
                .dedupe_key(format!(
                    "{}:{}:{}",
                    alert_kind.as_str(),
                    exception.name,
                    finding.cycle().as_millis()
                ))
                .detail(serde_json::json!({
                    "exception": exception.name,
                    "team": exception.owner,
                    "system": exception.system,
                    "since": finding.cycle().to_rfc3339(),
                })),
            now,
        );
        let alert_id = alert.id.clone();
        // The flag and its alert commit together.
        let flagged = self
            .store
            .claim_recert_notice(&claim, now, vec![audit], Some(alert))
            .await?;
        if flagged {
            tracing::warn!(exception = %exception.name, team = %exception.owner, finding = finding.as_str(), since = %finding.cycle(), "standing exception flagged");
            self.alert_committed(&alert_id).await;
        }
        Ok(flagged)
    }
}

fn attest_command(s: &Subject) -> String {
    match s.kind {
        SubjectKind::Identity => format!("kairos recert attest {} --reason ...", s.name),
        SubjectKind::Exception => {
            format!("kairos recert attest --exception {} --reason ...", s.name)
        }
    }
}

/// The dedupe key of a subject's `recert_overdue` alert for the cycle that ended at `due`.
fn overdue_key(kind: SubjectKind, name: &str, due: Timestamp) -> String {
    format!(
        "recert_overdue:{}:{name}:{}",
        kind.as_str(),
        due.as_millis()
    )
}

fn unknown(kind: SubjectKind, name: &str) -> BrokerError {
    let shown: String = name.chars().take(128).collect();
    match kind {
        SubjectKind::Identity => BrokerError::NotFound(format!(
            "identity {shown:?} is not in the configuration; `kairos recert list` shows what is recertified"
        )),
        SubjectKind::Exception => BrokerError::NotFound(format!(
            "exception {shown:?} is not in the configuration; `kairos exception list` shows the standing exceptions"
        )),
    }
}

fn exception_entry(
    catalog: &Catalog,
    exception: &Exception,
    records: &Records,
    rotations: &BTreeMap<ExceptionName, ExceptionRotation>,
    now: Timestamp,
) -> ExceptionEntry {
    let record = records.get(&(SubjectKind::Exception, exception.name.to_string()));
    let last_rotation = rotations.get(&exception.name).cloned();
    let facts = RotationFacts {
        first_seen_at: record.map_or(now, |r| r.first_seen_at),
        last_rotated_at: last_rotation.as_ref().map(|r| r.last_rotated_at),
        rotate_every: exception.rotate_every,
        ends_at: exception.ends,
    };
    let a = rules::assess(&facts, now);
    let subject = Subject {
        kind: SubjectKind::Exception,
        name: exception.name.to_string(),
        team: exception.owner.clone(),
        interval: catalog.exception_recert_interval(exception),
        identity: exception.identity.clone(),
    };
    ExceptionEntry {
        exception: exception.clone(),
        last_rotation,
        rotation_due_at: a.rotation_due_at,
        findings: a.findings,
        recert: entry(
            &subject,
            record,
            catalog.recert_settings().recert_notice,
            now,
        ),
    }
}
