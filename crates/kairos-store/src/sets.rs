//! Security Event Tokens for resource servers (the `set_outbox` table): one signed SET per
//! ended token grant and receiver, delivered by push (RFC 8935) or fetched by poll
//! (RFC 8936), and what each receiver answered.

use async_trait::async_trait;
use kairos_domain::{GrantId, Timestamp};

use crate::Result;

/// How a receiver gets its SETs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetDeliveryMode {
    /// Kairos POSTs each SET to the receiver's endpoint (RFC 8935).
    Push,
    /// The receiver fetches them (RFC 8936).
    Poll,
}

impl SetDeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Poll => "poll",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "push" => Some(Self::Push),
            "poll" => Some(Self::Poll),
            _ => None,
        }
    }
}

/// Where a SET is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetState {
    /// Not acknowledged yet (push: waiting for (another) attempt; poll: not yet fetched
    /// and acknowledged).
    Pending,
    /// The receiver acknowledged it (push: 202; poll: listed in `ack`).
    Acked,
    /// The receiver refused it with an error (push: 400 with an RFC 8935 error; poll:
    /// `setErrs`). Not sent again.
    Failed,
    /// Undelivered for longer than the give-up age.
    Dead,
}

impl SetState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Acked => "acked",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "acked" => Some(Self::Acked),
            "failed" => Some(Self::Failed),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// A SET to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSet {
    /// The SET's `jti`.
    pub jti: String,
    pub grant: GrantId,
    pub receiver: String,
    pub delivery: SetDeliveryMode,
    /// The signed SET (compact JWS), sent as is by every attempt.
    pub body: String,
    /// Until when the grant's receipt waits for this receiver's acknowledgement.
    pub wait_until: Timestamp,
}

/// A SET in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRecord {
    pub jti: String,
    pub grant: GrantId,
    pub receiver: String,
    pub delivery: SetDeliveryMode,
    pub body: String,
    pub state: SetState,
    /// Failed push attempts so far.
    pub attempts: u32,
    pub created_at: Timestamp,
    pub wait_until: Timestamp,
    pub next_at: Timestamp,
    /// When the receiver acknowledged it (state `acked`), or answered with an error
    /// (state `failed`).
    pub acked_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// What became of one push attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    /// 202 Accepted.
    Acked,
    /// The receiver refused this SET (400 with an RFC 8935 error): permanent.
    Refused { error: String },
    /// Failed; try again at `retry_at`.
    Retry { error: String, retry_at: Timestamp },
    /// Failed, and older than the give-up age.
    Dead { error: String },
}

/// A poll receiver's answer about SETs it was given (RFC 8936 `ack` and `setErrs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollAcks {
    /// `jti`s acknowledged.
    pub acks: Vec<String>,
    /// `jti` → the receiver's error (`err: description`).
    pub errors: Vec<(String, String)>,
}

/// What a poll returns: SETs `(jti, body)` oldest first, and whether more are waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollBatch {
    pub sets: Vec<(String, String)>,
    pub more: bool,
}

/// One receiver's backlog, for operators and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetBacklog {
    pub receiver: String,
    pub pending: u64,
    pub acked: u64,
    pub failed: u64,
    pub dead: u64,
    pub last_acked_at: Option<Timestamp>,
}

/// Persistence of SETs. Every method is one transaction.
#[async_trait]
pub trait SetStore: Send + Sync {
    /// Writes `rows`, skipping any whose (grant, receiver) already has one (so a retried
    /// revocation job never makes a second SET, and the first body stays fixed).
    async fn enqueue_sets(&self, rows: Vec<NewSet>, now: Timestamp) -> Result<()>;

    /// The SETs of one grant, by receiver name.
    async fn grant_sets(&self, grant: &GrantId) -> Result<Vec<SetRecord>>;

    /// Makes the revocation job of an ending grant due at `due_at` again without counting
    /// a failed attempt (it waits for receivers' acknowledgements). Nothing when the grant
    /// has no job (it ended meanwhile).
    async fn defer_revocation(&self, grant: &GrantId, due_at: Timestamp) -> Result<()>;

    /// Claims up to `limit` pending push SETs due at `now` for `lease_ms` under `claim`
    /// (SKIP LOCKED on PostgreSQL). Oldest due first.
    async fn claim_push_sets(
        &self,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
        claim: &str,
    ) -> Result<Vec<SetRecord>>;

    /// Records the push attempt made under `claim`; an acknowledgement or a refusal also
    /// makes the grant's revocation job due now, so its receipt is written without waiting.
    /// False (nothing written) when the row is no longer held by that claim.
    async fn finish_set(
        &self,
        jti: &str,
        claim: &str,
        outcome: &SetOutcome,
        now: Timestamp,
    ) -> Result<bool>;

    /// For poll receiver `receiver`: records `acks` (all or nothing: `Conflict` naming the
    /// first `jti` that is not a SET of this receiver, and nothing written), makes the
    /// revocation jobs of the grants concerned due now, then returns up to `max` of its
    /// pending SETs, oldest first. A `jti` acknowledged before is acknowledged again
    /// harmlessly.
    async fn poll_sets(
        &self,
        receiver: &str,
        acks: &PollAcks,
        max: u32,
        now: Timestamp,
    ) -> Result<PollBatch>;

    /// Per receiver: how many SETs are pending, acked, failed and dead, and the last ack.
    async fn set_backlog(&self) -> Result<Vec<SetBacklog>>;
}
