//! Usage monitoring's part of the store: how grants and identities are used, and which
//! subjects a usage detector has already flagged.
//!
//! Usage is observation, not a state change: it is written in batches (the broker
//! aggregates in memory and flushes about once a second), merged across replicas (first
//! use the earliest, last use the latest, uses summed), and not audited record by record
//! — what the detectors conclude from it is (their alerts).

use std::net::IpAddr;

use async_trait::async_trait;
use kairos_domain::{GrantId, IdentityName, TaskRef, Timestamp};

use crate::Result;

/// Uses of one grant since the last flush (or, read back, since it was issued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantUse {
    pub grant: GrantId,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    /// At least 1.
    pub uses: u64,
    /// The address of the last use, when known.
    pub last_source: Option<IpAddr>,
    /// Who used it last: the resource server (`user:<name>`) or caller that introspected
    /// its token, or `session@<target>` for a session of its account seen at reconcile.
    pub last_client: Option<String>,
}

/// Requests of one identity since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRequests {
    pub identity: IdentityName,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    pub last_source: Option<IpAddr>,
}

/// One address an identity was seen at since the last flush (a request or a session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySource {
    pub identity: IdentityName,
    pub source: IpAddr,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
}

/// One flush: everything aggregated since the previous one, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    pub grants: Vec<GrantUse>,
    pub requests: Vec<IdentityRequests>,
    pub sources: Vec<IdentitySource>,
}

impl UsageBatch {
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty() && self.requests.is_empty() && self.sources.is_empty()
    }
}

/// What the store knows of an identity's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityActivity {
    pub identity: IdentityName,
    /// Its first request, or when a usage pass first saw it configured.
    pub first_seen_at: Timestamp,
    pub last_request_at: Option<Timestamp>,
    pub last_source: Option<IpAddr>,
}

/// An active grant and when it was last used (None: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldGrant {
    pub grant: GrantId,
    pub identity: IdentityName,
    pub task_ref: TaskRef,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A usage detector's flag on a subject (a grant id or an identity name), set once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageFlag {
    pub kind: String,
    pub subject: String,
    pub flagged_at: Timestamp,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Merges one flush into the usage tables, in one transaction.
    async fn record_usage(&self, batch: UsageBatch) -> Result<()>;

    /// How a grant has been used; None when it never was (as far as flushed).
    async fn grant_usage(&self, grant: &GrantId) -> Result<Option<GrantUse>>;

    /// Records `identities` as first seen at `now` unless already known. Returns how many
    /// were new.
    async fn note_identities(&self, identities: &[IdentityName], now: Timestamp) -> Result<u64>;

    /// Every identity's request activity.
    async fn identity_activity(&self) -> Result<Vec<IdentityActivity>>;

    /// Per identity, how many distinct addresses it was seen at since `since`; only
    /// identities with more than `over`.
    async fn identity_source_counts(
        &self,
        since: Timestamp,
        over: u64,
    ) -> Result<Vec<(IdentityName, u64)>>;

    /// Per identity, how many distinct task references its live (active or
    /// provisioning) grants carry; only identities with more than `over`.
    async fn live_task_counts(&self, over: u64) -> Result<Vec<(IdentityName, u64)>>;

    /// Active grants not yet flagged `held_past_use` whose time since their last use (or
    /// their issue, when never used) is at least `share_permille`/1000 of their TTL at
    /// `now`, at most `limit`.
    async fn held_candidates(
        &self,
        now: Timestamp,
        share_permille: u32,
        limit: u32,
    ) -> Result<Vec<HeldGrant>>;

    /// Flags `subject` for `kind` at `at` unless already flagged: true for the one caller
    /// (on any replica) that set it.
    async fn flag_once(&self, kind: &str, subject: &str, at: Timestamp) -> Result<bool>;

    /// Removes a flag: true for the one caller that removed it.
    async fn unflag(&self, kind: &str, subject: &str) -> Result<bool>;

    /// The flags of `kind`.
    async fn flags(&self, kind: &str) -> Result<Vec<UsageFlag>>;

    /// Forgets addresses not seen since `before`. Returns how many.
    async fn prune_identity_sources(&self, before: Timestamp) -> Result<u64>;
}
