//! After-action reviews of break-glass grants: the part of the store that owns them.

use async_trait::async_trait;
use kairos_domain::{
    AuditDraft, Grant, GrantId, IdentityName, Request, Review, ReviewError, ReviewId, Timestamp,
};

use crate::Result;

/// Which reviews to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewStateFilter {
    /// Not filed yet (overdue ones included).
    Open,
    /// Not filed and due at or before `now`.
    Overdue {
        now: Timestamp,
    },
    Filed,
}

#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub state: Option<ReviewStateFilter>,
    pub identity: Option<IdentityName>,
    /// At most this many, newest first (`opened_at`).
    pub limit: Option<u32>,
}

/// A change to one review decided while the store holds its row locked (filing). `Err`
/// writes nothing.
pub type ReviewUpdate = Box<dyn FnOnce(&mut Review) -> Result<Vec<AuditDraft>, ReviewError> + Send>;

/// The audit record of one review escalating, built by the caller for each review the
/// store escalates.
pub type EscalationAudit = Box<dyn Fn(&Review) -> AuditDraft + Send + Sync>;

/// The alert of one review escalating, raised in the escalation's transaction.
pub type EscalationAlert = Box<dyn Fn(&Review) -> crate::AlertWrite + Send + Sync>;

/// Persistence of after-action reviews. Every method is one transaction, its audit records
/// sealed onto the chain inside it.
#[async_trait]
pub trait ReviewStore: Send + Sync {
    /// Records a break-glass request granted at once, its grant and the grant's review,
    /// with `audit` and its `alert`, all in one transaction: a grant is never recorded
    /// without its review, nor without its alert when one is given.
    async fn insert_request_with_review(
        &self,
        request: &Request,
        grant: &Grant,
        review: &Review,
        audit: Vec<AuditDraft>,
        alert: Option<crate::AlertWrite>,
    ) -> Result<()>;

    async fn get_review(&self, id: &ReviewId) -> Result<Option<Review>>;

    /// The review a break-glass grant opened, if it is one.
    async fn review_of_grant(&self, grant: &GrantId) -> Result<Option<Review>>;

    /// Newest first (`opened_at`); every match when `filter.limit` is None.
    async fn list_reviews(&self, filter: &ReviewFilter) -> Result<Vec<Review>>;

    /// How many reviews of `identity` are open (overdue ones included).
    async fn count_open_reviews(&self, identity: &IdentityName) -> Result<u64>;

    /// Read-modify-write of one review under a row lock (filing); `NotFound` if there is
    /// none with that id. The update's error becomes [`crate::StoreError::Review`].
    async fn update_review(&self, id: &ReviewId, update: ReviewUpdate) -> Result<Review>;

    /// Escalates open reviews due at or before `now` that have not escalated yet, oldest
    /// due first, at most `limit`: sets `escalated_at = now`, appends `audit(review)` and
    /// raises `alert(review)` for each, in one transaction. Each review escalates once: of several replicas
    /// running this at once, each review is escalated by exactly one (rows are claimed
    /// with `FOR UPDATE SKIP LOCKED` on PostgreSQL, and the update is conditional).
    /// Returns the reviews it escalated, as they are now.
    async fn escalate_overdue_reviews(
        &self,
        now: Timestamp,
        limit: u32,
        audit: EscalationAudit,
        alert: Option<EscalationAlert>,
    ) -> Result<Vec<Review>>;
}
