//! The event model: which audit records people are told about, and what such an event
//! says (what happened, who did it, why, which team it concerns, and where to look).
//!
//! The audit record is the durable event: every change Kairos makes writes its record in
//! the transaction that makes it, so a notification derived from the record is as durable
//! as the change. [`candidate`] looks at a record alone; the broker then gathers the
//! catalog [`Facts`] the event needs and [`Event::build`] decides (a grant issued on a low
//! tier, or a revocation that never alarmed, is no event).

use kairos_domain::{AuditKind, AuditRecord, Timestamp};
use serde_json::Value;

/// What people can be notified about, as named in `[[notify]] events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A request waits for approval (to the approving team).
    RequestPending,
    /// A pending request got its last approval.
    RequestApproved,
    RequestDenied,
    /// A pending request lapsed without its approvals.
    RequestExpired,
    /// A grant of a high or critical tier entitlement was issued.
    GrantIssued,
    /// Break-glass access was used.
    BreakGlass,
    /// A revocation has failed often enough to raise the alarm.
    RevocationAlarming,
    /// A revocation that had raised the alarm was verified gone at last.
    RevocationRecovered,
    /// The reconciler removed an account no grant explains.
    ResidueRemoved,
    /// An active grant's account is missing downstream.
    AccountMissing,
    /// An identity's owner team has no active owner.
    Orphaned,
    RecertDue,
    RecertOverdue,
    /// A break-glass after-action review passed its due time unfiled.
    ReviewOverdue,
    /// A standing exception's secret was not rotated in time, or the exception expired.
    ExceptionOverdue,
    UseAfterEnd,
    UnexpectedSource,
    SharedIdentity,
    DormantIdentity,
    HeldPastUse,
}

impl EventKind {
    pub const ALL: [EventKind; 20] = [
        Self::RequestPending,
        Self::RequestApproved,
        Self::RequestDenied,
        Self::RequestExpired,
        Self::GrantIssued,
        Self::BreakGlass,
        Self::RevocationAlarming,
        Self::RevocationRecovered,
        Self::ResidueRemoved,
        Self::AccountMissing,
        Self::Orphaned,
        Self::RecertDue,
        Self::RecertOverdue,
        Self::ReviewOverdue,
        Self::ExceptionOverdue,
        Self::UseAfterEnd,
        Self::UnexpectedSource,
        Self::SharedIdentity,
        Self::DormantIdentity,
        Self::HeldPastUse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestPending => "request_pending",
            Self::RequestApproved => "request_approved",
            Self::RequestDenied => "request_denied",
            Self::RequestExpired => "request_expired",
            Self::GrantIssued => "grant_issued",
            Self::BreakGlass => "break_glass",
            Self::RevocationAlarming => "revocation_alarming",
            Self::RevocationRecovered => "revocation_recovered",
            Self::ResidueRemoved => "residue_removed",
            Self::AccountMissing => "account_missing",
            Self::Orphaned => "orphaned",
            Self::RecertDue => "recert_due",
            Self::RecertOverdue => "recert_overdue",
            Self::ReviewOverdue => "review_overdue",
            Self::ExceptionOverdue => "exception_overdue",
            Self::UseAfterEnd => "use_after_end",
            Self::UnexpectedSource => "unexpected_source",
            Self::SharedIdentity => "shared_identity",
            Self::DormantIdentity => "dormant_identity",
            Self::HeldPastUse => "held_past_use",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Every name, comma-separated (for error messages).
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// What happened, as a headline.
    fn headline(self) -> &'static str {
        match self {
            Self::RequestPending => "Access request waits for approval",
            Self::RequestApproved => "Access request approved",
            Self::RequestDenied => "Access request denied",
            Self::RequestExpired => "Access request expired unapproved",
            Self::GrantIssued => "High-risk access granted",
            Self::BreakGlass => "Break-glass access used",
            Self::RevocationAlarming => "Revocation keeps failing",
            Self::RevocationRecovered => "Failing revocation verified gone",
            Self::ResidueRemoved => "Residual account removed",
            Self::AccountMissing => "Account of an active grant is missing",
            Self::Orphaned => "Identity has no active owner",
            Self::RecertDue => "Recertification due",
            Self::RecertOverdue => "Recertification overdue",
            Self::ReviewOverdue => "After-action review overdue",
            Self::ExceptionOverdue => "Standing exception overdue",
            Self::UseAfterEnd => "Credential used after its grant ended",
            Self::UnexpectedSource => "Identity used from an unexpected source",
            Self::SharedIdentity => "Identity shared by many workloads",
            Self::DormantIdentity => "Identity dormant",
            Self::HeldPastUse => "Access held past its use",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn data_of(record: &AuditRecord) -> Value {
    serde_json::from_str(&record.data).unwrap_or(Value::Null)
}

fn text_at(data: &Value, key: &str) -> Option<String> {
    match data.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The event a record may be, judged from the record alone; `None` for records nobody is
/// notified about. `alarm_after` is the failed attempts at which a revocation alarms.
/// [`EventKind::GrantIssued`] and [`EventKind::RevocationRecovered`] are only candidates:
/// [`Event::build`] decides with the [`Facts`].
pub fn candidate(record: &AuditRecord, alarm_after: u32) -> Option<EventKind> {
    let data = || data_of(record);
    Some(match record.kind {
        AuditKind::Decided => {
            let d = data();
            let outcome = d.get("decision").and_then(|x| x.get("outcome"));
            if outcome.and_then(Value::as_str) == Some("pending") {
                EventKind::RequestPending
            } else {
                return None;
            }
        }
        AuditKind::Approved => {
            // One record per approval; the request is approved by the last one.
            let d = data();
            let have = d.get("approvals").and_then(Value::as_u64);
            let need = d.get("needed").and_then(Value::as_u64);
            match (have, need) {
                (Some(h), Some(n)) if h >= n => EventKind::RequestApproved,
                _ => return None,
            }
        }
        AuditKind::Denied => EventKind::RequestDenied,
        AuditKind::RequestExpired => EventKind::RequestExpired,
        AuditKind::Issued => EventKind::GrantIssued,
        AuditKind::RevocationFailed => {
            let attempts = data().get("attempts").and_then(Value::as_u64);
            if attempts == Some(u64::from(alarm_after)) {
                EventKind::RevocationAlarming
            } else {
                return None;
            }
        }
        AuditKind::Verified => EventKind::RevocationRecovered,
        AuditKind::ResidueRemoved => EventKind::ResidueRemoved,
        AuditKind::AccountMissing => EventKind::AccountMissing,
        AuditKind::IdentityOrphaned => EventKind::Orphaned,
        AuditKind::RecertDue => EventKind::RecertDue,
        AuditKind::RecertOverdue => EventKind::RecertOverdue,
        AuditKind::ReviewEscalated => EventKind::ReviewOverdue,
        AuditKind::ExceptionRotationOverdue | AuditKind::ExceptionExpired => {
            EventKind::ExceptionOverdue
        }
        AuditKind::AlertRaised => {
            // Governance alerts that have a record of their own (orphaned, recertification,
            // reviews, exceptions) are told from that record; these have only the alert.
            match data().get("kind").and_then(Value::as_str)? {
                "break_glass" => EventKind::BreakGlass,
                "use_after_end" => EventKind::UseAfterEnd,
                "unexpected_source" => EventKind::UnexpectedSource,
                "shared_identity" => EventKind::SharedIdentity,
                "dormant_identity" => EventKind::DormantIdentity,
                "held_past_use" => EventKind::HeldPastUse,
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// What the catalog and the store know about an event's subject, gathered by the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The entitlement asked for or granted.
    pub entitlement: Option<String>,
    /// Its risk tier (`low` … `critical`).
    pub tier: Option<String>,
    /// The team that approves the request (for a pending request).
    pub approval_team: Option<String>,
    /// The team that owns the identity (or the exception, or the target).
    pub owner_team: Option<String>,
    /// Why: the task's reason, or the request's.
    pub reason: Option<String>,
    /// For a verified revocation: it had failed `alarm_after` times or more.
    pub had_alarmed: bool,
}

/// One thing to tell people about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The audit record it comes from.
    pub seq: i64,
    pub at: Timestamp,
    /// The team it concerns, for routing: the approving team of a pending request, the
    /// owner team otherwise; `None` when no team is known (say, residue on a target
    /// without an owner).
    pub team: Option<String>,
    /// What happened.
    pub title: String,
    /// Who did it (`user:alice`, `workload:ci-deployer`, `system:reconciler`).
    pub actor: String,
    /// Why, when known.
    pub reason: Option<String>,
    /// Further facts, label and value, in order.
    pub fields: Vec<(String, String)>,
    /// The console page about it, when there is one.
    pub link: Option<String>,
}

impl Event {
    /// The event `record` is as `kind` (from [`candidate`]), with its facts; `base_url` is
    /// the broker's public base URL, for the console link. `None` when the facts say it
    /// is no event after all.
    pub fn build(
        record: &AuditRecord,
        kind: EventKind,
        facts: &Facts,
        base_url: &str,
    ) -> Option<Event> {
        let data = data_of(record);
        match kind {
            EventKind::GrantIssued
                if !matches!(facts.tier.as_deref(), Some("high" | "critical")) =>
            {
                return None;
            }
            EventKind::RevocationRecovered if !facts.had_alarmed => return None,
            _ => {}
        }
        let base = base_url.trim_end_matches('/');
        let page = |section: &str, id: &str| format!("{base}/ui/{section}/{id}");
        let link = match kind {
            EventKind::RequestPending
            | EventKind::RequestApproved
            | EventKind::RequestDenied
            | EventKind::RequestExpired => {
                record.request_id.as_deref().map(|r| page("requests", r))
            }
            EventKind::ReviewOverdue => text_at(&data, "review").map(|r| page("reviews", &r)),
            EventKind::BreakGlass
            | EventKind::UseAfterEnd
            | EventKind::UnexpectedSource
            | EventKind::SharedIdentity
            | EventKind::DormantIdentity
            | EventKind::HeldPastUse => text_at(&data, "alert").map(|a| page("alerts", &a)),
            _ => record
                .grant_id
                .as_deref()
                .map(|g| page("grants", g))
                .or_else(|| record.request_id.as_deref().map(|r| page("requests", r))),
        };
        let team = match kind {
            EventKind::RequestPending => facts
                .approval_team
                .clone()
                .or_else(|| facts.owner_team.clone()),
            _ => facts.owner_team.clone().or_else(|| text_at(&data, "team")),
        };
        let mut fields = Vec::new();
        let mut field = |label: &str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                fields.push((label.to_owned(), v));
            }
        };
        field("Identity", record.identity.clone());
        field("Entitlement", facts.entitlement.clone());
        field("Tier", facts.tier.clone());
        field("Task", record.task_ref.clone());
        field("Team", team.clone());
        match kind {
            EventKind::RequestApproved => field("Approvals", text_at(&data, "approvals")),
            EventKind::GrantIssued => field("Expires", text_at(&data, "expires_at")),
            EventKind::RevocationAlarming => {
                field("Attempts", text_at(&data, "attempts"));
                field("Last error", text_at(&data, "error"));
            }
            EventKind::RevocationRecovered => field("Verified", text_at(&data, "verified_at")),
            EventKind::ResidueRemoved | EventKind::AccountMissing => {
                field("Target", text_at(&data, "target"));
                field("Account", text_at(&data, "account"));
            }
            EventKind::RecertDue | EventKind::RecertOverdue => {
                field("Subject", text_at(&data, "subject"));
                field("Due", text_at(&data, "due_at"));
            }
            EventKind::ReviewOverdue => field("Due", text_at(&data, "due_at")),
            EventKind::ExceptionOverdue => {
                field("Exception", text_at(&data, "exception"));
                field("Finding", text_at(&data, "finding"));
            }
            _ => {}
        }
        let reason = match kind {
            EventKind::RequestDenied | EventKind::RequestApproved => {
                text_at(&data, "reason").or_else(|| facts.reason.clone())
            }
            EventKind::BreakGlass
            | EventKind::UseAfterEnd
            | EventKind::UnexpectedSource
            | EventKind::SharedIdentity
            | EventKind::DormantIdentity
            | EventKind::HeldPastUse => text_at(&data, "message").or_else(|| facts.reason.clone()),
            EventKind::RecertDue | EventKind::RecertOverdue => text_at(&data, "attest_with")
                .map(|c| format!("attest with `{c}`"))
                .or_else(|| facts.reason.clone()),
            _ => facts.reason.clone(),
        };
        Some(Event {
            kind,
            seq: record.seq,
            at: record.at,
            team,
            title: kind.headline().to_owned(),
            actor: record.actor.clone(),
            reason,
            fields,
            link,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(kind: AuditKind, data: Value) -> AuditRecord {
        AuditRecord {
            seq: 7,
            at: Timestamp::from_millis(1_700_000_000_000),
            kind,
            actor: "workload:ci-deployer".into(),
            identity: Some("ci-deployer".into()),
            request_id: Some("req_1".into()),
            grant_id: None,
            task_ref: Some("CHG-1".into()),
            data: data.to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn check(kind: AuditKind, data: Value, expected: Option<EventKind>) {
        assert_eq!(candidate(&record(kind, data), 5), expected);
    }

    #[test]
    fn candidates() {
        use serde_json::json;
        check(
            AuditKind::Decided,
            json!({"decision": {"outcome": "pending", "approvals": 1}}),
            Some(EventKind::RequestPending),
        );
        check(
            AuditKind::Decided,
            json!({"decision": {"outcome": "grant"}}),
            None,
        );
        check(
            AuditKind::Approved,
            json!({"approvals": 1, "needed": 2}),
            None,
        );
        check(
            AuditKind::Approved,
            json!({"approvals": 2, "needed": 2}),
            Some(EventKind::RequestApproved),
        );
        check(AuditKind::RevocationFailed, json!({"attempts": 4}), None);
        check(
            AuditKind::RevocationFailed,
            json!({"attempts": 5}),
            Some(EventKind::RevocationAlarming),
        );
        check(AuditKind::RevocationFailed, json!({"attempts": 6}), None);
        check(
            AuditKind::AlertRaised,
            json!({"kind": "break_glass"}),
            Some(EventKind::BreakGlass),
        );
        // Told from its own record (`identity_orphaned`), not twice.
        check(AuditKind::AlertRaised, json!({"kind": "orphaned"}), None);
        check(
            AuditKind::ExceptionExpired,
            json!({}),
            Some(EventKind::ExceptionOverdue),
        );
        check(AuditKind::Released, json!({}), None);
        check(AuditKind::CredentialDelivered, json!({}), None);
    }

    #[test]
    fn names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("grant_released"), None);
    }

    #[test]
    fn pending_goes_to_the_approving_team_and_links_the_request() {
        let r = record(
            AuditKind::Decided,
            serde_json::json!({"decision": {"outcome": "pending"}}),
        );
        let facts = Facts {
            entitlement: Some("payments-db/read".into()),
            tier: Some("medium".into()),
            approval_team: Some("dba".into()),
            owner_team: Some("payments".into()),
            reason: Some("deploy the fix".into()),
            had_alarmed: false,
        };
        let e = Event::build(
            &r,
            EventKind::RequestPending,
            &facts,
            "https://kairos.example/",
        )
        .unwrap();
        assert_eq!(e.team.as_deref(), Some("dba"));
        assert_eq!(
            e.link.as_deref(),
            Some("https://kairos.example/ui/requests/req_1")
        );
        assert_eq!(e.reason.as_deref(), Some("deploy the fix"));
        assert!(
            e.fields
                .contains(&("Entitlement".into(), "payments-db/read".into()))
        );
    }

    #[test]
    fn issued_is_an_event_on_high_tiers_only() {
        let r = record(AuditKind::Issued, serde_json::json!({}));
        let at = |tier: &str| Facts {
            tier: Some(tier.into()),
            ..Facts::default()
        };
        for (tier, event) in [
            ("low", false),
            ("medium", false),
            ("high", true),
            ("critical", true),
        ] {
            assert_eq!(
                Event::build(&r, EventKind::GrantIssued, &at(tier), "http://k").is_some(),
                event,
                "{tier}"
            );
        }
    }

    #[test]
    fn recovered_only_after_an_alarm() {
        let r = record(AuditKind::Verified, serde_json::json!({}));
        let mut facts = Facts::default();
        assert!(Event::build(&r, EventKind::RevocationRecovered, &facts, "http://k").is_none());
        facts.had_alarmed = true;
        assert!(Event::build(&r, EventKind::RevocationRecovered, &facts, "http://k").is_some());
    }
}
