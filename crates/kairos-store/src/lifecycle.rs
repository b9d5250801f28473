//! The identity lifecycle's part of the store: the facts a policy change re-decides live
//! grants on, which people can act (and so count as owners), and which identities are
//! flagged orphaned.

use async_trait::async_trait;
use kairos_domain::{
    AuditDraft, EntitlementName, GrantId, IdentityName, Principal, TargetName, Task, TeamName,
    Timestamp, Ttl, UserName,
};

use crate::{Result, Role};

/// A live (active or provisioning) grant with what its request was decided on: what an
/// applied configuration's policies re-decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGrant {
    pub grant: GrantId,
    pub identity: IdentityName,
    pub entitlement: EntitlementName,
    pub target: TargetName,
    pub task: Task,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// Who asked for it: the workload, or a person on its behalf.
    pub requester: Principal,
    /// The TTL its request was granted with (after any cap).
    pub request_ttl: Ttl,
    /// The address its request came from, when known.
    pub source_ip: Option<std::net::IpAddr>,
    /// Its own after-action review (a break-glass grant's) is open.
    pub own_review_open: bool,
}

/// A user and whether they can act now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: UserName,
    pub role: Role,
    /// Not disabled, and holding at least one API token that is not revoked.
    pub can_act: bool,
}

/// An identity flagged orphaned: its owner team had no active owner at `detected_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanRecord {
    pub identity: IdentityName,
    /// The owner team it was orphaned under.
    pub team: TeamName,
    pub detected_at: Timestamp,
    /// When `orphan_action = "suspend"` suspended it, after the grace; None while it is
    /// only flagged.
    pub suspended_at: Option<Timestamp>,
}

/// The identity lifecycle's store operations. Every write is one transaction with its
/// audit records, and conditional, so that replicas doing the same pass act once.
#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Active and provisioning grants with their request's requester and TTL, ordered by
    /// grant id; only those issued at or after `issued_from` when it is given.
    async fn live_grant_facts(&self, issued_from: Option<Timestamp>) -> Result<Vec<LiveGrant>>;

    /// Every user, by name, with whether they can act now.
    async fn people(&self) -> Result<Vec<Person>>;

    /// The identities flagged orphaned, by name.
    async fn orphans(&self) -> Result<Vec<OrphanRecord>>;

    /// The orphan flags of these identities, by name.
    async fn orphans_of(&self, identities: &[IdentityName]) -> Result<Vec<OrphanRecord>>;

    /// Flags identities orphaned: each one not flagged already is, with its audit record
    /// and its alert in the same transaction. Returns those it flagged (a concurrent pass
    /// that flagged one first keeps it, and its record and alert are not written twice).
    async fn flag_orphans(
        &self,
        orphans: Vec<(OrphanRecord, AuditDraft, Option<crate::AlertWrite>)>,
        at: Timestamp,
    ) -> Result<Vec<IdentityName>>;

    /// Clears orphan flags (an owner is back, or the identity left the catalog), each
    /// one still flagged with its audit record. Returns those it cleared.
    async fn clear_orphans(
        &self,
        cleared: Vec<(IdentityName, AuditDraft)>,
        at: Timestamp,
    ) -> Result<Vec<IdentityName>>;

    /// Records that the orphan action suspended `identity`, flagged since `detected_at`:
    /// true for the one caller that records it; false when it was recorded already, or
    /// the flag is gone or is a newer one.
    async fn mark_orphan_suspended(
        &self,
        identity: &IdentityName,
        detected_at: Timestamp,
        at: Timestamp,
    ) -> Result<bool>;
}
