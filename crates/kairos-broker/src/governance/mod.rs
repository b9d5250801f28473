//! Governance, orchestrated: identity states and alerts (the foundation the lifecycle,
//! recertification, break-glass, exception and usage work builds on).
//!
//! The rules live in `kairos-governance` (pure), the tables in the store
//! (`GovernanceStore`); this module only gathers facts, asks the rules, writes through the
//! store and drives ends through the one end path.

mod alerts;
mod identities;
pub mod lifecycle;
pub mod orphans;
pub mod policy_change;
mod posture;
pub mod recert;
pub mod recorder;
pub mod reviews;
pub mod usage;

pub use alerts::AlertQuery;
pub use identities::StateOutcome;
pub use posture::{POSTURE_WINDOW_DAYS, PostureReport};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kairos_domain::IdentityName;
use kairos_governance::IdentityStatus;

/// What the broker keeps in memory for governance.
#[derive(Debug, Default)]
pub(crate) struct GovernanceState {
    /// Identities that are not active, as last read from the store (refreshed on every
    /// local change and by the scheduler's pass), so a request is refused without a store
    /// read of its own. Another replica's suspension reaches this one within a pass; the
    /// pass also ends any grant such a replica issued in between.
    inactive: RwLock<Arc<HashMap<IdentityName, IdentityStatus>>>,
    /// Governance passes run so far (some work runs every n-th pass).
    passes: std::sync::atomic::AtomicU64,
    /// The posture report the console shows (see [`crate::Broker::posture_kept`]).
    pub(crate) posture: posture::KeptPosture,
}

impl GovernanceState {
    pub(crate) fn inactive(&self) -> Arc<HashMap<IdentityName, IdentityStatus>> {
        match self.inactive.read() {
            Ok(m) => Arc::clone(&m),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set_inactive(&self, states: Vec<IdentityStatus>) {
        let map: HashMap<_, _> = states
            .into_iter()
            .filter(IdentityStatus::refuses_requests)
            .map(|s| (s.identity.clone(), s))
            .collect();
        match self.inactive.write() {
            Ok(mut m) => *m = Arc::new(map),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(map),
        }
    }
}

impl crate::Broker {
    /// One governance pass (every second, from the scheduler): identity states are
    /// re-read and enforced; every 30th pass also refreshes the alert gauges. Each rule's
    /// own pass is called from here.
    pub async fn governance_pass(&self) -> crate::Result<()> {
        let ended = self.enforce_identity_states().await?;
        if ended > 0 {
            tracing::warn!(ended, "grants of identities that are not active were ended");
        }
        // Owners are people: orphans flagged, cleared, or (after their grace) acted on.
        self.orphan_pass().await?;
        let pass = self
            .governance
            .passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if pass.is_multiple_of(30) {
            self.refresh_alert_gauges().await?;
        }
        // Recertification and standing exceptions: every `recert_pass_interval` (in
        // whole passes of a second; at least every pass).
        let every = self.settings.recert_pass_interval.as_secs().max(1);
        if pass.is_multiple_of(every) {
            let report = self.recert_pass().await?;
            if report != recert::RecertPassReport::default() {
                tracing::debug!(?report, "recertification pass");
            }
        }
        // Overdue after-action reviews escalate (a read unless one is due).
        self.review_pass().await?;
        // Grants verified gone since the last pass, folded into the posture's days.
        self.fold_posture().await?;
        Ok(())
    }
}
