use std::fmt;

use crate::request::RequestState;
use crate::{EntitlementName, IdentityName, Principal, RequestId, TargetName, Task, Timestamp};

/// Identifier of a grant: `grt_` + a time-ordered UUID. Also the `jti` of its token.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct GrantId(String);

impl GrantId {
    pub fn generate() -> Self {
        Self(format!("grt_{}", uuid::Uuid::now_v7().simple()))
    }
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("grt_")?;
        (rest.len() == 32 && rest.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Its TTL ran out.
    Expired,
    /// The workload said its task is done.
    Released,
    /// An operator (or the token's holder, via RFC 7009) revoked it.
    Revoked,
    /// It never became active: provisioning its account failed or was interrupted.
    Aborted,
    /// An applied configuration removed its identity (or the identity's team), its
    /// target or its entitlement (the reason before the removal was named precisely;
    /// kept for grants that ended so).
    ConfigRemoved,
    /// Its identity was suspended (by a person, or because it was orphaned or its
    /// recertification was overdue).
    Suspended,
    /// Its identity was retired.
    Retired,
    /// An applied configuration removed its identity.
    IdentityRemoved,
    /// An applied configuration removed its identity's owner team.
    TeamRemoved,
    /// An applied configuration removed its target.
    TargetRemoved,
    /// An applied configuration removed its entitlement.
    EntitlementRemoved,
    /// An applied configuration's policies no longer permit it.
    PolicyChanged,
}

impl EndReason {
    pub const ALL: [EndReason; 12] = [
        Self::Expired,
        Self::Released,
        Self::Revoked,
        Self::Aborted,
        Self::ConfigRemoved,
        Self::Suspended,
        Self::Retired,
        Self::IdentityRemoved,
        Self::TeamRemoved,
        Self::TargetRemoved,
        Self::EntitlementRemoved,
        Self::PolicyChanged,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Released => "released",
            Self::Revoked => "revoked",
            Self::Aborted => "aborted",
            Self::ConfigRemoved => "config_removed",
            Self::Suspended => "suspended",
            Self::Retired => "retired",
            Self::IdentityRemoved => "identity_removed",
            Self::TeamRemoved => "team_removed",
            Self::TargetRemoved => "target_removed",
            Self::EntitlementRemoved => "entitlement_removed",
            Self::PolicyChanged => "policy_changed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How and when a grant ended (the first half of its receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEnd {
    pub reason: EndReason,
    pub by: Principal,
    pub at: Timestamp,
}

/// Proof that access actually disappeared (the second half of the receipt).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// When the consumers were told (token marked inactive, account dropped).
    pub revoked_at: Timestamp,
    /// When Kairos checked that access was gone.
    pub verified_at: Timestamp,
    /// How it checked, e.g. `introspection`, `pg_roles+login`.
    pub method: String,
    /// What it saw.
    pub evidence: String,
}

/// The grant lifecycle: (provisioning →) active → ending → ended (verified).
///
/// Each state holds only its own data: an active grant has no end, an ending grant has
/// an end but no receipt, an ended grant has both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantState {
    /// Recorded before its downstream account is created (intent before action); not
    /// yet usable. Becomes active once the account exists, or ends as `aborted`.
    Provisioning,
    Active,
    /// Ended in the store; propagation and verification are in progress (or retrying).
    Ending {
        end: GrantEnd,
        attempts: u32,
        last_error: Option<String>,
    },
    /// Propagated and verified gone.
    Ended {
        end: GrantEnd,
        receipt: Receipt,
    },
}

impl GrantState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Ending { .. } => "revoking",
            Self::Ended { .. } => "ended",
        }
    }
    pub fn end(&self) -> Option<&GrantEnd> {
        match self {
            Self::Provisioning | Self::Active => None,
            Self::Ending { end, .. } | Self::Ended { end, .. } => Some(end),
        }
    }
}

/// A transition the state machines refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the grant has already ended ({0})")]
    AlreadyEnded(EndReason),
    #[error("the grant is still active; it must end before it can be verified")]
    NotEnding,
    #[error("renewal would pass the grant's maximum end {max}; ask for a new grant instead")]
    RenewPastMax { max: Timestamp },
    #[error("the grant's end must be after now")]
    RenewInPast,
    #[error("the request is {}, not pending", .0.as_str())]
    RequestNotPending(RequestState),
    #[error("the request's approval window has passed")]
    RequestExpired,
    #[error("the requester cannot approve its own request")]
    SelfApproval,
    #[error("{0} has already approved this request")]
    AlreadyApproved(crate::UserName),
    #[error("not due yet")]
    NotDue,
    #[error("verification cannot predate the end of the grant")]
    VerifiedBeforeEnd,
    #[error("the grant is not being provisioned")]
    NotProvisioning,
}

/// An issued grant: what was granted, to whom, for which task, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: GrantId,
    pub request_id: RequestId,
    pub identity: IdentityName,
    pub entitlement: EntitlementName,
    pub target: TargetName,
    /// The `aud` of its token (token targets) or the target name.
    pub audience: String,
    pub scopes: Vec<String>,
    pub task: Task,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// Renewal never moves `expires_at` past this (issued_at + max TTL).
    pub max_expires_at: Timestamp,
    /// The downstream account that backs this grant (database targets); None for tokens.
    pub account: Option<String>,
    /// The account's password sealed with the master key (never plain), kept only to
    /// verify after revocation that a login with it is refused; erased once verified.
    pub sealed_secret: Option<String>,
    pub state: GrantState,
}

impl Grant {
    /// True if the credential may be honoured at `now`.
    pub fn is_active_at(&self, now: Timestamp) -> bool {
        matches!(self.state, GrantState::Active) && now < self.expires_at
    }

    /// Provisioning → Active, once the downstream account exists.
    pub fn activate(&mut self) -> Result<(), TransitionError> {
        match &self.state {
            GrantState::Provisioning => {
                self.state = GrantState::Active;
                Ok(())
            }
            GrantState::Active => Err(TransitionError::NotProvisioning),
            GrantState::Ending { end, .. } | GrantState::Ended { end, .. } => {
                Err(TransitionError::AlreadyEnded(end.reason))
            }
        }
    }

    /// Moves `expires_at`, never past `max_expires_at`.
    pub fn renew(
        &mut self,
        new_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), TransitionError> {
        if let Some(end) = self.state.end() {
            return Err(TransitionError::AlreadyEnded(end.reason));
        }
        if self.state == GrantState::Provisioning {
            return Err(TransitionError::NotProvisioning);
        }
        if new_expires_at <= now {
            return Err(TransitionError::RenewInPast);
        }
        if new_expires_at > self.max_expires_at {
            return Err(TransitionError::RenewPastMax {
                max: self.max_expires_at,
            });
        }
        self.expires_at = new_expires_at;
        Ok(())
    }

    /// Active → Ending. The single entry to the end path, whatever the reason.
    pub fn end(&mut self, end: GrantEnd) -> Result<(), TransitionError> {
        if let Some(existing) = self.state.end() {
            return Err(TransitionError::AlreadyEnded(existing.reason));
        }
        self.state = GrantState::Ending {
            end,
            attempts: 0,
            last_error: None,
        };
        Ok(())
    }

    /// Ending → Ending with one more failed attempt recorded.
    pub fn revocation_failed(&mut self, error: String) -> Result<(), TransitionError> {
        match &mut self.state {
            GrantState::Ending {
                attempts,
                last_error,
                ..
            } => {
                *attempts = attempts.saturating_add(1);
                *last_error = Some(error);
                Ok(())
            }
            GrantState::Provisioning | GrantState::Active => Err(TransitionError::NotEnding),
            GrantState::Ended { end, .. } => Err(TransitionError::AlreadyEnded(end.reason)),
        }
    }

    /// Ending → Ended with its receipt. The sealed secret is no longer needed: erased.
    pub fn verified(&mut self, receipt: Receipt) -> Result<(), TransitionError> {
        match &self.state {
            GrantState::Ending { end, .. } => {
                if receipt.verified_at < end.at || receipt.revoked_at > receipt.verified_at {
                    return Err(TransitionError::VerifiedBeforeEnd);
                }
                self.state = GrantState::Ended {
                    end: end.clone(),
                    receipt,
                };
                self.sealed_secret = None;
                Ok(())
            }
            GrantState::Provisioning | GrantState::Active => Err(TransitionError::NotEnding),
            GrantState::Ended { end, .. } => Err(TransitionError::AlreadyEnded(end.reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TaskKind, TaskRef, UserName};
    use proptest::prelude::*;

    fn grant(now: i64) -> Grant {
        Grant {
            id: GrantId::generate(),
            request_id: RequestId::generate(),
            identity: IdentityName::parse("job").unwrap(),
            entitlement: EntitlementName::parse("api/read").unwrap(),
            target: TargetName::parse("api").unwrap(),
            audience: "https://api".into(),
            scopes: vec!["read".into()],
            task: Task::new(
                TaskKind::Job,
                TaskRef::parse("run-1").unwrap(),
                "nightly".into(),
            )
            .unwrap(),
            issued_at: Timestamp::from_millis(now),
            expires_at: Timestamp::from_millis(now + 60_000),
            max_expires_at: Timestamp::from_millis(now + 600_000),
            account: Some("kairos_x".into()),
            sealed_secret: Some("v1.sealed".into()),
            state: GrantState::Provisioning,
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Tick(i64),
        Renew(i64),
        End(u8),
        Fail,
        Verify(i64),
        Activate,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..120_000).prop_map(Op::Tick),
            (-10_000i64..900_000).prop_map(Op::Renew),
            (0u8..3).prop_map(Op::End),
            Just(Op::Fail),
            (-5_000i64..5_000).prop_map(Op::Verify),
            Just(Op::Activate),
        ]
    }

    proptest! {
        /// Random operations never break the grant's invariants.
        #[test]
        fn grant_state_machine_invariants(ops in proptest::collection::vec(op(), 1..60)) {
            let start = 1_000_000;
            let mut g = grant(start);
            let mut now = start;
            let mut ended_at: Option<Timestamp> = None;
            for op in ops {
                let before = g.clone();
                match op {
                    Op::Tick(d) => now += d,
                    Op::Renew(d) => {
                        let r = g.renew(Timestamp::from_millis(now + d), Timestamp::from_millis(now));
                        if r.is_err() { prop_assert_eq!(&g, &before); }
                    }
                    Op::End(r) => {
                        let reason = EndReason::ALL[usize::from(r) % EndReason::ALL.len()];
                        let by = Principal::User(UserName::parse("op").unwrap());
                        let at = Timestamp::from_millis(now);
                        match g.end(GrantEnd { reason, by, at }) {
                            Ok(()) => { prop_assert!(ended_at.is_none()); ended_at = Some(at); }
                            Err(_) => { prop_assert!(ended_at.is_some()); prop_assert_eq!(&g, &before); }
                        }
                    }
                    Op::Activate => {
                        let was_provisioning = before.state == GrantState::Provisioning;
                        match g.activate() {
                            Ok(()) => prop_assert!(was_provisioning),
                            Err(_) => { prop_assert!(!was_provisioning); prop_assert_eq!(&g, &before); }
                        }
                    }
                    Op::Fail => {
                        if g.revocation_failed("down".into()).is_err() { prop_assert_eq!(&g, &before); }
                    }
                    Op::Verify(d) => {
                        let at = Timestamp::from_millis(now + d);
                        let r = g.verified(Receipt { revoked_at: at, verified_at: at, method: "t".into(), evidence: "t".into() });
                        if r.is_err() { prop_assert_eq!(&g, &before); }
                    }
                }
                // Invariants after every step.
                prop_assert!(g.expires_at <= g.max_expires_at);
                prop_assert!(g.expires_at > g.issued_at);
                match &g.state {
                    GrantState::Provisioning | GrantState::Active => prop_assert!(ended_at.is_none()),
                    GrantState::Ending { end, .. } => prop_assert_eq!(Some(end.at), ended_at),
                    GrantState::Ended { end, receipt } => {
                        prop_assert_eq!(Some(end.at), ended_at);
                        prop_assert!(receipt.verified_at >= end.at);
                        // Nothing secret outlives verification.
                        prop_assert!(g.sealed_secret.is_none());
                    }
                }
                if !matches!(g.state, GrantState::Active) {
                    prop_assert!(!g.is_active_at(Timestamp::from_millis(now)));
                }
                if now >= g.expires_at.as_millis() {
                    prop_assert!(!g.is_active_at(Timestamp::from_millis(now)));
                }
                // Once ended, never active again; a provisioning grant is never usable.
                if matches!(before.state, GrantState::Ending { .. } | GrantState::Ended { .. }) {
                    prop_assert!(!matches!(g.state, GrantState::Active | GrantState::Provisioning));
                }
                if g.state == GrantState::Provisioning {
                    prop_assert!(!g.is_active_at(Timestamp::from_millis(now)));
                }
            }
        }
    }
}

/// The audit records of the end path, defined once so every backend writes the same.
pub mod audit_of {
    use super::{Grant, GrantEnd, Receipt};
    use crate::{AuditDraft, AuditKind, EndReason};

    fn base(kind: AuditKind, actor: String, g: &Grant) -> AuditDraft {
        AuditDraft::new(kind, actor)
            .identity(&g.identity)
            .request(&g.request_id)
            .grant(&g.id)
            .task_ref(&g.task.reference)
    }

    /// `released` / `revoked` / `expired`: the grant ended in the store.
    pub fn end(g: &Grant, end: &GrantEnd) -> AuditDraft {
        let kind = match end.reason {
            EndReason::Expired => AuditKind::Expired,
            EndReason::Released => AuditKind::Released,
            EndReason::Revoked => AuditKind::Revoked,
            EndReason::Aborted => AuditKind::Aborted,
            EndReason::ConfigRemoved
            | EndReason::IdentityRemoved
            | EndReason::TeamRemoved
            | EndReason::TargetRemoved
            | EndReason::EntitlementRemoved => AuditKind::ConfigRemoved,
            EndReason::Suspended | EndReason::Retired => AuditKind::Revoked,
            EndReason::PolicyChanged => AuditKind::PolicyChanged,
        };
        base(kind, end.by.to_string(), g).data(serde_json::json!({
            "entitlement": g.entitlement,
            "reason": end.reason.as_str(),
            "ended_at": end.at.to_rfc3339(),
            "expires_at": g.expires_at.to_rfc3339(),
        }))
    }

    /// `verified`: the receipt that access is gone.
    pub fn verified(g: &Grant, end: &GrantEnd, r: &Receipt) -> AuditDraft {
        base(AuditKind::Verified, "system:revoker".into(), g).data(serde_json::json!({
            "reason": end.reason.as_str(),
            "ended_by": end.by.to_string(),
            "ended_at": end.at.to_rfc3339(),
            "revoked_at": r.revoked_at.to_rfc3339(),
            "verified_at": r.verified_at.to_rfc3339(),
            "method": r.method,
            "evidence": r.evidence,
        }))
    }

    /// `revocation_failed`: one failed attempt; it will be retried.
    pub fn revocation_failed(g: &Grant, attempts: u32, error: &str) -> AuditDraft {
        base(AuditKind::RevocationFailed, "system:revoker".into(), g).data(serde_json::json!({
            "attempts": attempts,
            "error": error,
        }))
    }
}
