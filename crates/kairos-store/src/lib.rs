//! Persistence for Kairos.
//!
//! [`Store`] is the one interface the broker uses; [`SqlStore`] implements it on SQLite
//! (embedded, the default) and PostgreSQL (for several replicas). Every method is one
//! transaction: state changes and the audit records that describe them commit together
//! or not at all.
//!
//! Invariant: this is the only crate that contains SQL.

pub mod backup;
mod dpop;
mod error;
mod governance;
mod lifecycle;
mod notify;
mod recert;
mod records;
mod reviews;
mod sessions;
mod sets;
mod sql;
mod ssh;
mod usage;

pub use dpop::DpopStore;
pub use error::StoreError;
pub use governance::{
    AlertFilter, AlertWrite, GovernanceStore, PostureFigures, Raised, StateAlert, StateChange,
};
pub use lifecycle::{LifecycleStore, LiveGrant, OrphanRecord, Person};
pub use notify::{
    AttemptOutcome, NewNotification, Notification, NotificationFilter, NotificationState,
    NotifyStore,
};
pub use recert::{
    Attestation, ExceptionRotation, NewRecertification, NoticeClaim, RecertNotice, RecertPageQuery,
    RecertStore, Recertification, SubjectKind,
};
pub use records::*;
pub use reviews::{
    EscalationAlert, EscalationAudit, ReviewFilter, ReviewStateFilter, ReviewStore, ReviewUpdate,
};
pub use sessions::{ConsoleSession, SessionStore};
pub use sets::{
    NewSet, PollAcks, PollBatch, SetBacklog, SetDeliveryMode, SetOutcome, SetRecord, SetState,
    SetStore,
};
pub use sql::SqlStore;
pub use ssh::{RevokedSerial, SshCert, SshStore, StoredSshCa};
pub use usage::{
    GrantUse, HeldGrant, IdentityActivity, IdentityRequests, IdentitySource, UsageBatch, UsageFlag,
    UsageStore,
};

use async_trait::async_trait;
use kairos_domain::{
    AuditDraft, AuditRecord, EndReason, Grant, GrantEnd, GrantId, Principal, Receipt, Request,
    RequestId, TargetName, Timestamp, TransitionError,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A change to a request decided by domain code while the store holds the row locked.
/// Returning `Err` writes nothing.
pub type RequestUpdate =
    Box<dyn FnOnce(&mut Request) -> Result<RequestChange, TransitionError> + Send>;

/// What else to write along with an updated request.
#[derive(Debug, Default)]
pub struct RequestChange {
    /// A grant issued because of this change (the last approval landed).
    pub grant: Option<Grant>,
    /// An existing grant changed because of this change (the last approval of a
    /// renewal landed), in the same transaction, under the grant's row lock.
    pub renewal: Option<GrantChange>,
    /// The after-action review `grant` opens (a break-glass grant), written after it.
    pub review: Option<kairos_domain::Review>,
    pub audit: Vec<AuditDraft>,
    /// Raised in the same transaction (a break-glass grant's alert).
    pub alert: Option<AlertWrite>,
}

/// A read-modify-write of one existing grant, as part of another write.
pub struct GrantChange {
    pub grant: GrantId,
    pub update: GrantUpdate,
}

impl std::fmt::Debug for GrantChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantChange")
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

/// A change to one grant decided while the store holds the row locked.
pub type GrantUpdate =
    Box<dyn FnOnce(&mut Grant) -> Result<Vec<AuditDraft>, TransitionError> + Send>;

/// Which active grants to end.
#[derive(Debug, Clone)]
pub enum EndSelector {
    One(GrantId),
    Identity(kairos_domain::IdentityName),
    TaskRef(kairos_domain::TaskRef),
    /// Active grants whose `expires_at <= now`, oldest first, at most `limit`.
    ExpiredBy {
        now: Timestamp,
        limit: u32,
    },
    /// These grants, those of them still active or provisioning (an applied configuration
    /// removed what they stand on).
    Ids(Vec<GrantId>),
}

/// Everything the broker persists. `Debug` so that holders of an `Arc<dyn Store>` can
/// derive it. Each capability's own part is a supertrait.
#[async_trait]
pub trait Store:
    DpopStore
    + GovernanceStore
    + LifecycleStore
    + NotifyStore
    + RecertStore
    + ReviewStore
    + SessionStore
    + SetStore
    + SshStore
    + UsageStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// Which backend this is (`sqlite`, `postgres`), for logs and health.
    fn backend(&self) -> &'static str;

    // ---- requests and grants -------------------------------------------------------

    /// Records a new request; with `grant` when policy granted it at once.
    async fn insert_request(
        &self,
        request: &Request,
        grant: Option<&Grant>,
        audit: Vec<AuditDraft>,
    ) -> Result<()>;

    async fn get_request(&self, id: &RequestId) -> Result<Option<Request>>;

    /// Newest first: by `created_at` for one identity, else by id (ids are UUIDv7, in the
    /// order they were made); every match when `filter.limit` is None.
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>>;

    /// Read-modify-write of one request under a row lock (approve, deny); with the
    /// change's renewal, also of the grant it extends (its row locked after the request's).
    async fn update_request(&self, id: &RequestId, update: RequestUpdate) -> Result<Request>;

    /// Expires pending requests whose `pending_until <= now`; one `request_expired` audit
    /// record each. Returns the expired requests.
    async fn expire_pending_requests(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>>;

    async fn get_grant(&self, id: &GrantId) -> Result<Option<Grant>>;

    /// Newest first (`issued_at`); every match when `filter.limit` is None.
    async fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>>;

    /// Read-modify-write of one grant under a row lock (renew).
    async fn update_grant(&self, id: &GrantId, update: GrantUpdate) -> Result<Grant>;

    /// Marks a database grant's password as shown to its workload, at `at`, with `audit`
    /// — unless it was shown already. True for the one caller that may show it: of any
    /// number of concurrent claims (on one replica or several) exactly one wins.
    async fn claim_delivery(&self, id: &GrantId, at: Timestamp, audit: AuditDraft) -> Result<bool>;

    /// Ends every active grant the selector matches: Active → Ending, a revocation job
    /// queued for each, and one audit record each (kind from the end reason). Atomic.
    /// A grant that is missing or no longer active is not matched, so ending the same
    /// grant twice (a race, or RFC 7009 revoking twice) returns nothing the second time.
    async fn end_grants(&self, selector: &EndSelector, end: &GrantEnd) -> Result<Vec<Grant>>;

    /// As [`Store::end_grants`], keeping `note` (the words of the person who ended them,
    /// e.g. why they revoked) in each end's audit record (`data.note`).
    async fn end_grants_noted(
        &self,
        selector: &EndSelector,
        end: &GrantEnd,
        note: &str,
    ) -> Result<Vec<Grant>>;

    /// As [`Store::end_grants`], except that the revocation jobs of the ended token grants
    /// (those with no downstream account) are queued already claimed until `claimed_until`
    /// (their `attempts` counting that claim): the caller verifies them at once, with no
    /// claim of its own to write, and a worker takes them only if that lease lapses.
    /// Account grants' jobs are queued unclaimed, for the worker's per-target batches.
    async fn end_grants_claiming_tokens(
        &self,
        selector: &EndSelector,
        end: &GrantEnd,
        claimed_until: Timestamp,
    ) -> Result<Vec<Grant>>;

    /// The earliest `expires_at` among active grants (drives the expirer's sleep).
    async fn next_expiry(&self) -> Result<Option<Timestamp>>;

    /// Claims up to `limit` due revocation jobs for `lease_ms` (SKIP LOCKED on PostgreSQL),
    /// returning the grants to revoke. A job whose lease lapsed (crashed worker) is due again.
    async fn claim_revocations(
        &self,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<Grant>> {
        self.claim_revocations_except(now, limit, lease_ms, &[])
            .await
    }

    /// As [`Self::claim_revocations`], leaving the jobs of grants on `busy` targets
    /// unclaimed: a worker whose batch for a slow target is still running does not pile a
    /// second batch onto it (nor let the first one's lease lapse under a second claim).
    async fn claim_revocations_except(
        &self,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
        busy: &[TargetName],
    ) -> Result<Vec<Grant>>;

    /// Keeps the named revocation jobs claimed until `until`: a worker whose batch outlasts
    /// its lease (a slow target) renews it, so no other worker takes the jobs in hand and
    /// revokes them a second time. Only jobs still claimed move, and never earlier; a job
    /// completed (removed) or failed (waiting for its retry, unclaimed) is left as it is.
    /// Returns how many jobs it kept.
    async fn extend_revocation_claims(&self, ids: &[GrantId], until: Timestamp) -> Result<u64>;

    /// Ending → Ended with the receipt; removes the job; audits `verified`.
    async fn complete_revocation(&self, id: &GrantId, receipt: &Receipt) -> Result<Grant>;

    /// [`Self::complete_revocation`] for many grants in one write (revocations verified
    /// together): one result per grant, in order. A grant that cannot take its receipt
    /// (not ending, missing) gets its error and is left as it was; the others complete.
    async fn complete_revocations(
        &self,
        done: Vec<(GrantId, Receipt)>,
    ) -> Result<Vec<Result<Grant>>>;

    /// Records a failed attempt; the job is due again at `retry_at`; audits `revocation_failed`.
    async fn fail_revocation(
        &self,
        id: &GrantId,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<Grant>;

    async fn counts(&self) -> Result<Counts>;

    /// How many grants are revoking with at least `min_attempts` failed attempts (what the
    /// alarm counts; derived from the store, so it survives restarts and clears itself).
    async fn failing_revocations(&self, min_attempts: u32) -> Result<u64>;

    /// The targets with revoking grants that failed at least `min_attempts` times, each
    /// with the most attempts any of its grants has failed (from the revocation queue,
    /// which holds only what is still revoking, so this stays cheap).
    async fn failing_targets(&self, min_attempts: u32) -> Result<Vec<(TargetName, u32)>>;

    /// Makes every revocation job of `target` that waits for a later retry (and is not
    /// held by a worker right now) due at `now`: the target answers again, so its backlog
    /// is retried without waiting out the backoff. Returns how many jobs it moved.
    async fn retry_target_now(&self, target: &TargetName, now: Timestamp) -> Result<u64>;

    // ---- audit ----------------------------------------------------------------------

    async fn append_audit(&self, audit: Vec<AuditDraft>) -> Result<()>;

    /// Newest first (`seq` descending); every match when `filter.limit` is None.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;

    /// Records with `seq > after_seq` in order, at most `limit` — for walking the chain.
    async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>>;

    /// The `seq` of the chain's last record (0 for an empty chain), from the head row: one
    /// read, whatever the chain's length.
    async fn audit_last_seq(&self) -> Result<i64>;

    /// Checks the chain's end against the head row the store keeps, after a walk of
    /// [`Self::audit_page`] that ended at `last_seq` (0 for an empty chain). Returns what
    /// is wrong, e.g. records deleted from the end, which no walk can see by itself.
    /// Records appended since the walk are not a mismatch.
    async fn audit_head_mismatch(&self, last_seq: i64) -> Result<Option<String>>;

    // ---- signing keys ---------------------------------------------------------------

    /// The current key first, then retired keys newest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>>;

    /// Inserts the first key if there is none. Returns false when another replica won.
    async fn insert_first_key(&self, key: &StoredKey) -> Result<bool>;

    /// Current key → retired until `retire_until`; `key` becomes current. Atomic, audited.
    async fn rotate_key(
        &self,
        key: &StoredKey,
        retire_until: Timestamp,
        audit: AuditDraft,
    ) -> Result<()>;

    /// Deletes retired keys whose `retire_until <= now`.
    async fn prune_keys(&self, now: Timestamp) -> Result<u64>;

    // ---- people and their API tokens ------------------------------------------------

    /// Creates a user with its first token. Conflict if the name exists.
    async fn create_user(&self, user: &User, token: &StoredToken, audit: AuditDraft) -> Result<()>;

    /// Installs the bootstrap admin token, but only while no enabled admin has a live
    /// token (an empty store, or every admin revoked) and never a secret that was revoked
    /// before: creates `user` (or makes the
    /// existing one an admin again) and stores `token` under its id, replacing an earlier
    /// token with that id and un-revoking it. Audited when installed. Otherwise nothing
    /// changes and the outcome says why.
    async fn put_bootstrap_token(
        &self,
        user: &User,
        token: &StoredToken,
        audit: AuditDraft,
    ) -> Result<BootstrapOutcome>;

    async fn get_user(&self, name: &kairos_domain::UserName) -> Result<Option<User>>;

    /// True when some enabled admin has a live (unrevoked) API token.
    async fn has_live_admin(&self) -> Result<bool>;

    async fn list_users(&self) -> Result<Vec<User>>;

    /// The token with this id, revoked or not (the caller checks `revoked_at`), and its
    /// user; None if either is missing or the user is disabled.
    async fn find_token(&self, token_id: &str) -> Result<Option<(StoredToken, User)>>;

    /// Revokes every token of a user. Returns how many were revoked; `NotFound` if there
    /// is no such user.
    async fn revoke_user_tokens(
        &self,
        name: &kairos_domain::UserName,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<u64>;

    // ---- declarative configuration ----------------------------------------------------

    async fn current_config(&self) -> Result<Option<StoredConfig>>;

    /// The latest configuration version and the signing keys' count and newest creation
    /// time, in one cheap read: replicas poll it to pick up each other's applies and key
    /// rotations.
    async fn catalog_stamp(&self) -> Result<CatalogStamp>;

    /// Reaches the store (one short read) and lists the migrations this binary knows that
    /// it has not applied. An error means the store is unreachable.
    async fn readiness(&self) -> Result<StoreReadiness>;

    /// Saves a new config version (the serialized bundle) with its audit record.
    async fn save_config(
        &self,
        bundle_json: &str,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<i64>;

    /// Saves a new config version and, in the same transaction, ends the grants it
    /// ends (those of `ending` still active or provisioning, each with its own reason:
    /// what the configuration removed, or `policy_changed`) through the end path, by
    /// `by` at `now`: Ending, a revocation job and an audit record each. Returns the
    /// version and the grants it ended.
    async fn save_config_ending(
        &self,
        bundle_json: &str,
        now: Timestamp,
        audit: AuditDraft,
        ending: &[(GrantId, EndReason)],
        by: &Principal,
    ) -> Result<(i64, Vec<Grant>)>;
}
