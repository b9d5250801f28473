//! Break-glass: emergency access that is immediate, short and loud, and an after-action
//! review that stays open until an owner files it.
//!
//! The rules, each a function of plain data:
//! - [`check_request`]: a break-glass request must be for an `incident` and say why.
//! - [`due_at`]: a review opened at `t` is due at `t + review_due`.
//! - [`status`] / [`escalation`]: a review is open, overdue (past due, unfiled), escalated
//!   (overdue and already escalated) or filed; an overdue review escalates exactly once.
//! - [`filing_authority`]: only an owner of the identity's team may file its review.

use std::time::Duration;

use kairos_domain::{Review, ReviewState, Task, TaskKind, Timestamp, UserName};

/// How long a review may stay open before it is overdue, unless `[governance]
/// review_due` says otherwise: 72 hours.
pub const DEFAULT_REVIEW_DUE: Duration = Duration::from_secs(72 * 3600);

/// Why a request for a break-glass entitlement is refused before policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{entitlement} is break-glass (emergency) access: ask for it for an incident (task kind `incident`, not `{kind}`) with the incident's reference and a reason; for planned work use an entitlement that is not break-glass"
    )]
    NotAnIncident { entitlement: String, kind: TaskKind },
    #[error(
        "{entitlement} is break-glass (emergency) access: say why it is needed (a non-empty task reason); the reason goes to the alert and the after-action review"
    )]
    NoReason { entitlement: String },
}

/// Checks a request for break-glass entitlement `entitlement`: task kind `incident` and a
/// reason that is not blank.
pub fn check_request(entitlement: &str, task: &Task) -> Result<(), Refusal> {
    if task.kind != TaskKind::Incident {
        return Err(Refusal::NotAnIncident {
            entitlement: entitlement.to_owned(),
            kind: task.kind,
        });
    }
    if task.reason.trim().is_empty() {
        return Err(Refusal::NoReason {
            entitlement: entitlement.to_owned(),
        });
    }
    Ok(())
}

/// When a review opened at `opened_at` becomes overdue.
pub fn due_at(opened_at: Timestamp, review_due: Duration) -> Timestamp {
    opened_at.plus(review_due)
}

/// Where a review stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewStatus {
    /// Not filed, not yet due.
    Open,
    /// Not filed, past due, not escalated yet.
    Overdue,
    /// Not filed, past due, escalated.
    Escalated,
    Filed,
}

impl ReviewStatus {
    /// `open`, `overdue`, `escalated` or `filed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Overdue => "overdue",
            Self::Escalated => "escalated",
            Self::Filed => "filed",
        }
    }

    /// Overdue, escalated or not: what a security team chases.
    pub fn is_overdue(self) -> bool {
        matches!(self, Self::Overdue | Self::Escalated)
    }
}

/// A review is overdue from its due time on (`now >= due_at`), until it is filed.
pub fn status(review: &Review, now: Timestamp) -> ReviewStatus {
    match (&review.state, review.escalated_at) {
        (ReviewState::Filed(_), _) => ReviewStatus::Filed,
        (ReviewState::Open, Some(_)) => ReviewStatus::Escalated,
        (ReviewState::Open, None) if now >= review.due_at => ReviewStatus::Overdue,
        (ReviewState::Open, None) => ReviewStatus::Open,
    }
}

/// What the review pass does with a review at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// Filed, not due, or escalated already: nothing.
    Nothing,
    /// Overdue and never escalated: escalate it now (once).
    Escalate,
}

pub fn escalation(review: &Review, now: Timestamp) -> Escalation {
    match status(review, now) {
        ReviewStatus::Overdue => Escalation::Escalate,
        ReviewStatus::Open | ReviewStatus::Escalated | ReviewStatus::Filed => Escalation::Nothing,
    }
}

/// Whether `filer` may file a review of an identity whose team has `owners`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilingAuthority {
    /// An owner of the identity's team. `self_review` when the owner is also who used the
    /// break-glass access (allowed: the owner is accountable either way; the audit record
    /// says so).
    Owner { self_review: bool },
    /// Not an owner of the team, whatever their role (admins included): refused.
    NotOwner,
}

/// Only the team's `owners` may file: the people accountable for the identity. An admin or
/// operator who is not listed is refused like anyone else, as an approver who is not on a
/// team does not count for its approvals. `requester` is who used the break-glass access.
pub fn filing_authority(
    owners: &[UserName],
    filer: &UserName,
    requester: &kairos_domain::Principal,
) -> FilingAuthority {
    if !owners.contains(filer) {
        return FilingAuthority::NotOwner;
    }
    let self_review = matches!(requester, kairos_domain::Principal::User(u) if u == filer);
    FilingAuthority::Owner { self_review }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use kairos_domain::{
        EntitlementName, Filing, GrantId, IdentityName, Principal, RequestId, ReviewId, TaskRef,
    };

    use super::*;

    fn task(kind: TaskKind, reason: &str) -> Task {
        Task {
            kind,
            reference: TaskRef::parse("INC-1").unwrap(),
            reason: reason.into(),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    fn review(due: i64, escalated: Option<i64>, filed: bool) -> Review {
        Review {
            id: ReviewId::generate(),
            grant_id: GrantId::generate(),
            request_id: RequestId::generate(),
            identity: IdentityName::parse("job").unwrap(),
            entitlement: EntitlementName::parse("db/admin").unwrap(),
            requester: Principal::Workload(IdentityName::parse("job").unwrap()),
            task_ref: TaskRef::parse("INC-1").unwrap(),
            opened_at: at(0),
            due_at: at(due),
            escalated_at: escalated.map(at),
            state: if filed {
                ReviewState::Filed(Filing {
                    by: UserName::parse("carol").unwrap(),
                    at: at(1),
                    summary: "done".into(),
                })
            } else {
                ReviewState::Open
            },
        }
    }

    #[test]
    fn only_incidents_with_a_reason_may_break_glass() {
        assert_eq!(
            check_request("db/admin", &task(TaskKind::Incident, "db down")),
            Ok(())
        );
        for kind in [TaskKind::Change, TaskKind::Maintenance, TaskKind::Job] {
            let refused = check_request("db/admin", &task(kind, "db down")).unwrap_err();
            assert_eq!(
                refused,
                Refusal::NotAnIncident {
                    entitlement: "db/admin".into(),
                    kind
                }
            );
            let message = refused.to_string();
            assert!(message.contains("task kind `incident`"), "{message}");
            assert!(message.contains(&format!("not `{kind}`")), "{message}");
        }
        // `Task::new` refuses a blank reason; a task built otherwise is still checked.
        assert_eq!(
            check_request("db/admin", &task(TaskKind::Incident, "  ")),
            Err(Refusal::NoReason {
                entitlement: "db/admin".into()
            })
        );
    }

    #[test]
    fn due_is_opened_plus_review_due() {
        assert_eq!(due_at(at(10), Duration::from_secs(5)), at(15));
        assert_eq!(DEFAULT_REVIEW_DUE, Duration::from_secs(259_200));
    }

    /// (due, escalated, filed, now) → status and what the pass does.
    #[test]
    fn status_and_escalation() {
        let check = |r: Review, now: i64, want: ReviewStatus, pass: Escalation| {
            assert_eq!(status(&r, at(now)), want, "{r:?} at {now}");
            assert_eq!(escalation(&r, at(now)), pass, "{r:?} at {now}");
        };
        check(
            review(100, None, false),
            99,
            ReviewStatus::Open,
            Escalation::Nothing,
        );
        check(
            review(100, None, false),
            100,
            ReviewStatus::Overdue,
            Escalation::Escalate,
        );
        check(
            review(100, None, false),
            500,
            ReviewStatus::Overdue,
            Escalation::Escalate,
        );
        check(
            review(100, Some(101), false),
            500,
            ReviewStatus::Escalated,
            Escalation::Nothing,
        );
        check(
            review(100, None, true),
            500,
            ReviewStatus::Filed,
            Escalation::Nothing,
        );
        check(
            review(100, Some(101), true),
            500,
            ReviewStatus::Filed,
            Escalation::Nothing,
        );
        assert!(ReviewStatus::Overdue.is_overdue() && ReviewStatus::Escalated.is_overdue());
        assert!(!ReviewStatus::Open.is_overdue() && !ReviewStatus::Filed.is_overdue());
    }

    #[test]
    fn only_owners_file() {
        let carol = UserName::parse("carol").unwrap();
        let dave = UserName::parse("dave").unwrap();
        let owners = [carol.clone()];
        let workload = Principal::Workload(IdentityName::parse("job").unwrap());
        assert_eq!(
            filing_authority(&owners, &carol, &workload),
            FilingAuthority::Owner { self_review: false }
        );
        assert_eq!(
            filing_authority(&owners, &carol, &Principal::User(carol.clone())),
            FilingAuthority::Owner { self_review: true }
        );
        // The person who used break-glass, not an owner: refused.
        assert_eq!(
            filing_authority(&owners, &dave, &Principal::User(dave.clone())),
            FilingAuthority::NotOwner
        );
        assert_eq!(
            filing_authority(&[], &carol, &workload),
            FilingAuthority::NotOwner
        );
    }
}
