//! What the store keeps for governance: identity states and alerts. The rules that decide
//! them live in `kairos-governance`; this is only their persistence.

use async_trait::async_trait;
use kairos_domain::{AuditDraft, Grant, GrantEnd, IdentityName, Timestamp};
use kairos_governance::{Alert, AlertDraft, AlertKind, AlertState, IdentityState, IdentityStatus};

use crate::Result;

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// `None`: every state.
    pub state: Option<AlertState>,
    /// Open or acknowledged (overrides `state`).
    pub unresolved: bool,
    pub kind: Option<AlertKind>,
    pub identity: Option<IdentityName>,
    pub limit: Option<u32>,
}

/// What raising an alert did.
#[derive(Debug, Clone, PartialEq)]
pub enum Raised {
    /// A new alert was opened (and audited).
    Opened(Alert),
    /// An unresolved alert with the same dedupe key was there: one more occurrence.
    Repeated(Alert),
}

impl Raised {
    pub fn alert(&self) -> &Alert {
        match self {
            Self::Opened(a) | Self::Repeated(a) => a,
        }
    }
}

/// An alert raised in the same transaction as the event it reports, so that the two
/// commit together or not at all. Raised as [`GovernanceStore::raise_alert`] raises one:
/// opened with `id`, or one more occurrence of the unresolved alert with the same dedupe
/// key; `audit` is appended only when it opens.
#[derive(Debug, Clone)]
pub struct AlertWrite {
    pub id: String,
    pub draft: AlertDraft,
    pub at: Timestamp,
    pub audit: AuditDraft,
}

/// The alert of a state change, given the grants the change ended.
pub type StateAlert = Box<dyn FnOnce(&[Grant]) -> AlertWrite + Send + Sync>;

/// A change of an identity's state, made only if its current state is one of `from`
/// (an identity with no stored state is `active`), so that replicas acting on the same
/// finding change it once.
pub struct StateChange {
    pub to: IdentityStatus,
    pub from: Vec<IdentityState>,
    /// When set, every live grant of the identity ends with it, in the same transaction.
    pub end: Option<GrantEnd>,
    pub audit: Vec<AuditDraft>,
    /// Raised with the change, when it is made (a suspension's alert).
    pub alert: Option<StateAlert>,
}

impl std::fmt::Debug for StateChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateChange")
            .field("to", &self.to)
            .field("from", &self.from)
            .field("end", &self.end)
            .field("audit", &self.audit)
            .field("alert", &self.alert.is_some())
            .finish()
    }
}

/// The store's figures for the posture report over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostureFigures {
    /// Milliseconds of access each identity held within the window (grants that were
    /// active in it, clipped to it; aborted grants never were).
    pub grant_ms: std::collections::BTreeMap<String, i64>,
    /// The same access per UTC day (days since the epoch, as
    /// `kairos_governance::posture::day_of`), all identities together; days without
    /// access are absent.
    pub grant_ms_by_day: std::collections::BTreeMap<i64, i64>,
    /// Ends verified gone in the window.
    pub verified: u64,
    /// Sum of their end → verified milliseconds.
    pub verified_ms_total: i64,
    /// Their end → verified latencies, counted per bucket of
    /// `kairos_governance::posture::LATENCY_BUCKETS_MS` (plus one for longer).
    pub latency_counts: Vec<u64>,
    /// `residue_removed` audit records in the window.
    pub residue_removed: u64,
}

#[async_trait]
pub trait GovernanceStore: Send + Sync {
    /// Aggregates for the posture report over `[since, now)`; `since` is midnight UTC
    /// (`kairos_governance::posture::window_start`), since grants verified gone are
    /// kept folded per day (see [`GovernanceStore::fold_posture`]).
    async fn posture_figures(&self, since: Timestamp, now: Timestamp) -> Result<PostureFigures>;

    /// Folds the grants verified by the audit records after the fold's watermark (at
    /// most `span` sequence numbers) into the posture's per-day figures, dropping days
    /// before `keep_from` (midnight UTC). Safe on several replicas: each record is folded
    /// once. Answers how many grants it folded; the figures are the same before and
    /// after, only cheaper to read.
    async fn fold_posture(&self, keep_from: Timestamp, span: u64) -> Result<u64>;

    // ---- identity states ------------------------------------------------------------

    /// Every stored identity state (identities without one are active).
    async fn identity_states(&self) -> Result<Vec<IdentityStatus>>;

    async fn identity_state(&self, identity: &IdentityName) -> Result<Option<IdentityStatus>>;

    /// The stored states of these identities (those without one are active), by name: a
    /// page of identities reads its own and no other.
    async fn identity_states_of(&self, identities: &[IdentityName]) -> Result<Vec<IdentityStatus>>;

    /// Applies `change` if the identity's state is one of `change.from`: stores the new
    /// state, ends its live grants when asked (Active → Ending, a revocation job and an
    /// audit record each), and appends `change.audit`, in one transaction. `None` when
    /// the state was not one of `from` (nothing written).
    async fn change_identity_state(&self, change: StateChange) -> Result<Option<Vec<Grant>>>;

    // ---- alerts ---------------------------------------------------------------------

    /// Opens an alert with id `id`, unless an unresolved alert has the same dedupe key:
    /// then counts one more occurrence of that one. `audit` is appended only when a new
    /// alert opens.
    async fn raise_alert(
        &self,
        id: &str,
        draft: &AlertDraft,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<Raised>;

    async fn get_alert(&self, id: &str) -> Result<Option<Alert>>;

    /// Newest first.
    async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>>;

    /// Moves an alert to `to` (acknowledged or resolved), with who and why. `NotFound` for
    /// an unknown id, `Conflict` when the move is not allowed from its state.
    async fn update_alert(
        &self,
        id: &str,
        to: AlertState,
        by: &str,
        note: &str,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<Alert>;

    /// Resolves the unresolved alert with this dedupe key, if any (the condition is gone:
    /// an owner came back, a dormant identity asked again). Audited when it resolves one.
    async fn resolve_alert_by_key(
        &self,
        dedupe_key: &str,
        by: &str,
        note: &str,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<Option<Alert>>;

    /// Unresolved alerts by kind.
    async fn unresolved_alert_counts(&self) -> Result<Vec<(AlertKind, u64)>>;
}
