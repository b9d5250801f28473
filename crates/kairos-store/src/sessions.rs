//! Web console sessions: the part of the store that owns them.
//!
//! The console keeps one row per signed-in person and browser. The cookie carries a random
//! session id; the store holds only its SHA-256, so nothing read from the store can be
//! replayed as a cookie.

use async_trait::async_trait;
use kairos_domain::{AuditDraft, Timestamp, UserName};

use crate::Result;

/// One console session as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Hex SHA-256 of the session id the cookie carries.
    pub id_hash: String,
    pub user: UserName,
    /// The API token the person signed in with; None after single sign-on. Revoking the
    /// token ends the session.
    pub token_id: Option<String>,
    /// The secret every state-changing form of this session must echo.
    pub csrf_secret: String,
    pub created_at: Timestamp,
    /// The absolute end of the session, whatever its use.
    pub expires_at: Timestamp,
    pub last_seen_at: Timestamp,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("user", &self.user)
            .field("token_id", &self.token_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .finish_non_exhaustive()
    }
}

/// Persistence of console sessions. Every method is one transaction; audit records given
/// are sealed onto the chain inside it.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Records a new session with its audit records (the sign-in).
    async fn insert_session(&self, session: &ConsoleSession, audit: Vec<AuditDraft>) -> Result<()>;

    /// The session whose id hashes to `id_hash`, if there is one (ended or not: the
    /// console decides whether it is still good).
    async fn get_session(&self, id_hash: &str) -> Result<Option<ConsoleSession>>;

    /// Moves `last_seen_at` forward to `at` (never back).
    async fn touch_session(&self, id_hash: &str, at: Timestamp) -> Result<()>;

    /// Deletes one session with its audit records (the sign-out); false when there was
    /// none (then nothing is written).
    async fn delete_session(&self, id_hash: &str, audit: Vec<AuditDraft>) -> Result<bool>;

    /// Deletes sessions past their absolute end at `now` or last seen before
    /// `idle_before`; returns how many.
    async fn delete_ended_sessions(&self, now: Timestamp, idle_before: Timestamp) -> Result<u64>;
}
