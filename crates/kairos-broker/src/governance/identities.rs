//! Identity states: suspend, resume, retire, and the refusal of requests.

use kairos_domain::{AuditDraft, AuditKind, EndReason, Grant, GrantEnd, IdentityName, Principal};
use kairos_governance::{AlertDraft, AlertKind, IdentityState, IdentityStatus, SuspensionCause};
use std::sync::{Arc, Mutex};

use kairos_store::{StateAlert, StateChange};

use super::alerts::alert_write;
use crate::{Broker, BrokerError, Result};

/// What a state change did.
#[derive(Debug, Clone)]
pub struct StateOutcome {
    pub status: IdentityStatus,
    /// The grants it ended (each now revoking, to be verified gone).
    pub ended: Vec<Grant>,
}

impl Broker {
    /// The identity's state: stored, or active when nothing is stored. `NotFound` when
    /// the catalog does not know the identity.
    pub async fn identity_status(&self, name: &IdentityName) -> Result<IdentityStatus> {
        self.known_identity(name)?;
        Ok(match self.store.identity_state(name).await? {
            Some(s) => s,
            None => IdentityStatus {
                identity: name.clone(),
                state: IdentityState::Active,
                cause: None,
                reason: String::new(),
                by: String::new(),
                since: kairos_domain::Timestamp::from_millis(0),
            },
        })
    }

    fn known_identity(&self, name: &IdentityName) -> Result<()> {
        if self.catalog().identity(name).is_none() {
            return Err(BrokerError::NotFound(format!(
                "identity {name} is not registered; `kairos config show` lists the identities"
            )));
        }
        Ok(())
    }

    /// Refuses a request of an identity that is not active, naming why (from the
    /// in-memory view; see `GovernanceState::inactive`).
    pub(crate) fn refuse_if_inactive(&self, name: &IdentityName) -> Result<()> {
        match self.governance.inactive().get(name) {
            Some(status) => Err(BrokerError::Forbidden(status.refusal())),
            None => Ok(()),
        }
    }

    /// Suspends an active identity: every live grant ends through the one end path
    /// (reason `suspended`), and its requests are refused until it is resumed. `reason`
    /// is mandatory. `Conflict` if it is already suspended or retired.
    pub async fn suspend_identity(
        &self,
        name: &IdentityName,
        cause: SuspensionCause,
        reason: &str,
        by: Principal,
    ) -> Result<StateOutcome> {
        self.leave_active(name, IdentityState::Suspended, cause, reason, by)
            .await
    }

    /// Retires an identity for good (from active or suspended): grants end (reason
    /// `retired`), requests are refused, and it is never resumed.
    pub async fn retire_identity(
        &self,
        name: &IdentityName,
        reason: &str,
        by: Principal,
    ) -> Result<StateOutcome> {
        self.leave_active(
            name,
            IdentityState::Retired,
            SuspensionCause::Manual,
            reason,
            by,
        )
        .await
    }

    async fn leave_active(
        &self,
        name: &IdentityName,
        to: IdentityState,
        cause: SuspensionCause,
        reason: &str,
        by: Principal,
    ) -> Result<StateOutcome> {
        self.known_identity(name)?;
        let reason = required_reason(reason)?;
        let now = self.now();
        let (from, end_reason, kind) = match to {
            IdentityState::Retired => (
                vec![IdentityState::Active, IdentityState::Suspended],
                EndReason::Retired,
                AuditKind::IdentityRetired,
            ),
            _ => (
                vec![IdentityState::Active],
                EndReason::Suspended,
                AuditKind::IdentitySuspended,
            ),
        };
        let status = IdentityStatus {
            identity: name.clone(),
            state: to,
            cause: Some(cause),
            reason: reason.to_owned(),
            by: by.to_string(),
            since: now,
        };
        let audit = AuditDraft::new(kind, &by)
            .identity(name)
            .data(serde_json::json!({
                "state": to.as_str(),
                "cause": cause.as_str(),
                "reason": reason,
            }));
        // The alert is raised in the change's transaction, knowing what it ended.
        let alert_id: Arc<Mutex<Option<String>>> = Arc::default();
        let written = Arc::clone(&alert_id);
        let (alerted, reason_text) = (name.clone(), reason.to_owned());
        let alert: StateAlert = Box::new(move |ended: &[Grant]| {
            let message = format!(
                "identity {alerted} is {to} ({cause}): {reason_text}; {} live grant(s) ended",
                ended.len()
            );
            let draft = AlertDraft::new(AlertKind::IdentitySuspended, alerted.as_str(), message)
                .identity(&alerted)
                .dedupe_key(format!("identity_suspended:{alerted}:{}", now.as_millis()))
                .detail(serde_json::json!({
                    "state": to.as_str(),
                    "cause": cause.as_str(),
                    "grants_ended": ended.len(),
                }));
            let w = alert_write(draft, now);
            if let Ok(mut id) = written.lock() {
                *id = Some(w.id.clone());
            }
            w
        });
        let change = StateChange {
            to: status.clone(),
            from,
            end: Some(GrantEnd {
                reason: end_reason,
                by,
                at: now,
            }),
            audit: vec![audit],
            alert: Some(alert),
        };
        let Some(ended) = self.store.change_identity_state(change).await? else {
            let current = self.identity_status(name).await?;
            return Err(BrokerError::Conflict(format!(
                "identity {name} is {}{}; nothing changed",
                current.state,
                current.cause.map_or(String::new(), |c| format!(" ({c})"))
            )));
        };
        self.note_ended(&ended, end_reason);
        self.refresh_identity_states().await?;
        tracing::warn!(identity = %name, state = %to, cause = %cause, ended = ended.len(),
            "identity left active; its grants are being revoked");
        let written = alert_id.lock().map(|id| id.clone()).unwrap_or_default();
        if let Some(id) = written {
            self.alert_committed(&id).await;
        }
        Ok(StateOutcome { status, ended })
    }

    /// Resumes a suspended identity. A suspension for an overdue recertification is
    /// lifted only by an attestation (`attested = true`, the recertification's own path);
    /// a retired identity is never resumed.
    pub async fn resume_identity(
        &self,
        name: &IdentityName,
        reason: &str,
        by: Principal,
        attested: bool,
    ) -> Result<StateOutcome> {
        self.known_identity(name)?;
        let reason = required_reason(reason)?;
        let current = self.identity_status(name).await?;
        match (current.state, current.cause) {
            (IdentityState::Active, _) => {
                return Err(BrokerError::Conflict(format!(
                    "identity {name} is active; there is nothing to resume"
                )));
            }
            (IdentityState::Retired, _) => {
                return Err(BrokerError::Conflict(format!(
                    "identity {name} is retired and cannot be resumed; register a new identity instead"
                )));
            }
            (IdentityState::Suspended, Some(cause)) if !cause.resumable() && !attested => {
                return Err(BrokerError::Conflict(format!(
                    "identity {name} is suspended because its recertification is overdue; an owner of its team lifts that by attesting (`kairos recert attest {name} --reason …`)"
                )));
            }
            (IdentityState::Suspended, _) => {}
        }
        let now = self.now();
        let status = IdentityStatus {
            identity: name.clone(),
            state: IdentityState::Active,
            cause: None,
            reason: reason.to_owned(),
            by: by.to_string(),
            since: now,
        };
        let audit = AuditDraft::new(AuditKind::IdentityResumed, &by)
            .identity(name)
            .data(serde_json::json!({
                "reason": reason,
                "was": current.cause.map(SuspensionCause::as_str),
            }));
        let change = StateChange {
            to: status.clone(),
            from: vec![IdentityState::Suspended],
            end: None,
            audit: vec![audit],
            alert: None,
        };
        if self.store.change_identity_state(change).await?.is_none() {
            return Err(BrokerError::Conflict(format!(
                "identity {name} changed state meanwhile; nothing changed, look again"
            )));
        }
        self.refresh_identity_states().await?;
        Ok(StateOutcome {
            status,
            ended: Vec::new(),
        })
    }

    /// Re-reads the identities that are not active (after a change here, and on every
    /// scheduler pass for changes made by other replicas).
    pub async fn refresh_identity_states(&self) -> Result<()> {
        let states = self.store.identity_states().await?;
        self.governance.set_inactive(states);
        Ok(())
    }

    /// One pass: re-reads the states, and ends any live grant of an identity that is not
    /// active (one issued by another replica before it learnt of the suspension).
    /// Returns how many grants it ended.
    pub async fn enforce_identity_states(&self) -> Result<usize> {
        self.refresh_identity_states().await?;
        let inactive = self.governance.inactive();
        let mut total = 0;
        for status in inactive.values() {
            let reason = match status.state {
                IdentityState::Retired => EndReason::Retired,
                _ => EndReason::Suspended,
            };
            let ended = self
                .end(
                    kairos_store::EndSelector::Identity(status.identity.clone()),
                    reason,
                    Principal::System("governance"),
                )
                .await?;
            total += ended.len();
        }
        Ok(total)
    }
}

/// A state change needs a reason people can read later.
fn required_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(BrokerError::invalid(
            "missing_reason",
            "a reason is required: say why (`--reason \"…\"`); it is kept in the audit log",
        ));
    }
    if reason.chars().count() > 1000 {
        return Err(BrokerError::invalid(
            "reason_too_long",
            "the reason is longer than 1000 characters; shorten it",
        ));
    }
    Ok(reason)
}
