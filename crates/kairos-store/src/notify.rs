//! The notification outbox: the part of the store that owns it.

use async_trait::async_trait;
use kairos_domain::Timestamp;

use crate::Result;

/// Where a notification is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationState {
    /// Waiting for (another) delivery attempt.
    Pending,
    Delivered,
    /// Given up after `dead_after`; an operator may send it again.
    Dead,
}

impl NotificationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// The idempotency key: `kairos-<audit seq>-<channel>`.
    pub id: String,
    pub channel: String,
    pub event: String,
    pub audit_seq: i64,
    /// The exact body every attempt sends (no secret ever: built from audit records).
    pub body: String,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub channel: String,
    pub event: String,
    pub audit_seq: i64,
    pub body: String,
    pub state: NotificationState,
    /// Failed attempts so far.
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Which notifications a listing returns: newest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Every state when None.
    pub state: Option<NotificationState>,
    /// Every channel when None.
    pub channel: Option<String>,
    pub limit: u32,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; try again at `retry_at`.
    Retry {
        error: String,
        retry_at: Timestamp,
    },
    /// Failed, and it is older than `dead_after`: give up until someone retries it.
    Dead {
        error: String,
    },
}

/// Persistence of the outbox. Every method is one transaction.
#[async_trait]
pub trait NotifyStore: Send + Sync {
    /// The audit `seq` up to which events have been dispatched.
    async fn notify_watermark(&self) -> Result<i64>;

    /// Writes `rows` and moves the watermark from `from` to `to`, in one transaction — but
    /// only if the watermark is still `from` (compare-and-set). False, and nothing written,
    /// when another dispatcher moved it first. A row whose id exists already is skipped.
    async fn dispatch_notifications(
        &self,
        from: i64,
        to: i64,
        rows: Vec<NewNotification>,
        now: Timestamp,
    ) -> Result<bool>;

    /// Claims up to `limit` pending notifications due at `now` for `lease_ms` under
    /// `claim` (SKIP LOCKED on PostgreSQL): each is due again when the lease ends, so a
    /// crashed deliverer's rows are taken over. Oldest due first.
    async fn claim_notifications(
        &self,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
        claim: &str,
    ) -> Result<Vec<Notification>>;

    /// Records the attempt made under `claim`. False (nothing written) when the row is
    /// no longer held by that claim (its lease ended and another took it over).
    async fn finish_notification(
        &self,
        id: &str,
        claim: &str,
        outcome: &AttemptOutcome,
        now: Timestamp,
    ) -> Result<bool>;

    /// Newest first, as `filter` says.
    async fn list_notifications(&self, filter: &NotificationFilter) -> Result<Vec<Notification>>;

    async fn get_notification(&self, id: &str) -> Result<Option<Notification>>;

    /// A dead notification is pending again, due at `now` (its creation time restarts the
    /// `dead_after` clock). `NotFound` for no such id, `Conflict` when it is not dead.
    async fn retry_notification(&self, id: &str, now: Timestamp) -> Result<Notification>;

    /// How many are pending and how many dead.
    async fn notification_backlog(&self) -> Result<(u64, u64)>;
}
