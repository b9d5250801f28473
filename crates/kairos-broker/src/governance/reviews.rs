//! Break-glass and its after-action reviews, on the broker's side: the request path asks
//! here whether a break-glass request may go on and what its grant's review is; people
//! read and file reviews; the review pass escalates the overdue ones, once each.
//!
//! The rules are `kairos_governance::breakglass`; the rows are the store's
//! ([`kairos_store::ReviewStore`]). This file loads, calls the rule, writes, and tells.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairos_config::{Catalog, Entitlement};
use kairos_domain::{
    AuditDraft, AuditKind, Filing, Grant, IdentityName, Principal, Request, Review, ReviewId,
    ReviewState, Task, Timestamp, UserName,
};
pub use kairos_governance::breakglass::ReviewStatus;
use kairos_governance::breakglass::{self, FilingAuthority};
use kairos_governance::{AlertDraft, AlertKind};
use kairos_store::{AlertWrite, ReviewFilter, Role};

use super::alerts::alert_write;
use crate::{Broker, BrokerError, Caller, Result};

/// Reviews escalated by one pass at most; a larger backlog takes several passes.
const ESCALATIONS_PER_PASS: u32 = 500;

/// What one review pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewPass {
    /// The reviews this pass escalated (each escalates once, on one replica).
    pub escalated: Vec<Review>,
}

/// A review and where it stands at the moment it was read (open, overdue, escalated,
/// filed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewNow {
    pub review: Review,
    pub status: ReviewStatus,
}

/// The people's roles that may read reviews: every person; not workloads or resource
/// servers.
const READERS: [Role; 3] = [Role::Operator, Role::Approver, Role::Auditor];

impl Broker {
    /// How long a review may stay open before it is overdue (`[governance] review_due`).
    pub(crate) fn review_due(&self, catalog: &Catalog) -> Duration {
        catalog.governance().review_due.as_duration()
    }

    /// Refuses (400) a request for a break-glass entitlement that is not for an incident
    /// or gives no reason. Other entitlements pass.
    pub(crate) fn check_break_glass(&self, entitlement: &Entitlement, task: &Task) -> Result<()> {
        if !entitlement.break_glass {
            return Ok(());
        }
        breakglass::check_request(entitlement.name.as_str(), task).map_err(|refusal| {
            BrokerError::invalid("break_glass_incident_only", refusal.to_string())
        })
    }

    /// `context.open_reviews` for a decision about `identity`: counted only when some
    /// policy reads it (a store read most requests skip).
    pub(crate) async fn open_reviews_for_policy(
        &self,
        catalog: &Catalog,
        identity: &IdentityName,
    ) -> Result<u32> {
        if !catalog.policies().reads_open_reviews() {
            return Ok(0);
        }
        let n = self.store.count_open_reviews(identity).await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The after-action review a break-glass grant opens, and its `review_opened` audit
    /// record; written with the grant, in its transaction.
    pub(crate) fn open_review(
        &self,
        catalog: &Catalog,
        request: &Request,
        grant: &Grant,
        by: &Principal,
    ) -> (Review, AuditDraft) {
        let opened_at = grant.issued_at;
        let review = Review {
            id: ReviewId::generate(),
            grant_id: grant.id.clone(),
            request_id: request.id.clone(),
            identity: request.identity.clone(),
            entitlement: request.entitlement.clone(),
            requester: request.requester.clone(),
            task_ref: request.task.reference.clone(),
            opened_at,
            due_at: breakglass::due_at(opened_at, self.review_due(catalog)),
            escalated_at: None,
            state: ReviewState::Open,
        };
        let audit = AuditDraft::new(AuditKind::ReviewOpened, by)
            .identity(&request.identity)
            .request(&request.id)
            .grant(&grant.id)
            .task_ref(&request.task.reference)
            .data(serde_json::json!({
                "review": review.id,
                "entitlement": request.entitlement,
                "requester": request.requester,
                "reason": request.task.reason,
                "due_at": review.due_at.to_rfc3339(),
            }));
        (review, audit)
    }

    /// Says out loud that break-glass access was granted: the `break_glass` alert with
    /// id `alert` was written with the grant and its review (see [`break_glass_alert`]);
    /// it is logged and counted, with a warning.
    pub(crate) async fn break_glass_granted(&self, review: &Review, grant: &Grant, alert: &str) {
        self.alert_committed(alert).await;
        tracing::warn!(
            review = %review.id,
            grant = %grant.id,
            identity = %review.identity,
            entitlement = %review.entitlement,
            requester = %review.requester,
            incident = %review.task_ref,
            due_at = %review.due_at,
            "break-glass access granted; its after-action review is open"
        );
    }

    /// The review a break-glass grant opened, for the answers that show a grant.
    pub(crate) async fn review_id_of(
        &self,
        catalog: &Catalog,
        request: &Request,
    ) -> Result<Option<ReviewId>> {
        let break_glass = catalog
            .entitlement(&request.entitlement)
            .is_some_and(|e| e.break_glass);
        match (&request.grant_id, break_glass) {
            (Some(grant), true) => Ok(self.store.review_of_grant(grant).await?.map(|r| r.id)),
            _ => Ok(None),
        }
    }

    /// Lists reviews (every person may; workloads and resource servers may not).
    pub async fn list_reviews(
        &self,
        caller: &Caller,
        filter: &ReviewFilter,
    ) -> Result<Vec<ReviewNow>> {
        caller.require_role(&READERS, "read after-action reviews")?;
        let reviews = self.store.list_reviews(filter).await?;
        Ok(self.with_status(reviews))
    }

    pub(crate) fn with_status(&self, reviews: Vec<Review>) -> Vec<ReviewNow> {
        let now = self.now();
        reviews
            .into_iter()
            .map(|review| ReviewNow {
                status: breakglass::status(&review, now),
                review,
            })
            .collect()
    }

    /// Reads one review (every person may).
    pub async fn get_review(&self, caller: &Caller, id: &ReviewId) -> Result<ReviewNow> {
        caller.require_role(&READERS, "read after-action reviews")?;
        let review = self
            .store
            .get_review(id)
            .await?
            .ok_or_else(|| BrokerError::NotFound(format!("review {id} not found")))?;
        Ok(ReviewNow {
            status: breakglass::status(&review, self.now()),
            review,
        })
    }

    /// Files a review: only an owner of the identity's team (`[[team]] owners`) may,
    /// whatever their role; admins who are not owners get 403 like anyone else. When the
    /// identity or its team is no longer configured (nobody owns it any more), admins may
    /// file it. A filed review is final (409).
    pub async fn file_review(
        &self,
        caller: &Caller,
        id: &ReviewId,
        summary: &str,
    ) -> Result<ReviewNow> {
        let user = match caller {
            Caller::User(u) if u.role != Role::ResourceServer => u,
            Caller::User(u) => {
                return Err(BrokerError::Forbidden(format!(
                    "{} is a resource server; only an owner of the identity's team files its after-action review",
                    u.name
                )));
            }
            Caller::Workload { identity } => {
                return Err(BrokerError::Forbidden(format!(
                    "workload {identity} cannot file after-action reviews; an owner of the identity's team files them with their API token"
                )));
            }
        };
        let summary = Review::check_summary(summary)?;
        let review = self
            .store
            .get_review(id)
            .await?
            .ok_or_else(|| BrokerError::NotFound(format!("review {id} not found")))?;
        let catalog = self.catalog();
        let owners = self.owners_of(&catalog, &review.identity);
        let authority = match &owners {
            Some(owners) => breakglass::filing_authority(owners, &user.name, &review.requester),
            // Nobody owns the identity any more: admins close what is left.
            None if user.role == Role::Admin => FilingAuthority::Owner { self_review: false },
            None => FilingAuthority::NotOwner,
        };
        let self_review = match authority {
            FilingAuthority::Owner { self_review } => self_review,
            FilingAuthority::NotOwner => {
                return Err(BrokerError::Forbidden(match &owners {
                    Some(_) => format!(
                        "{} is not an owner of the team that owns identity {}; only its owners (`[[team]] owners` in the configuration) file its after-action reviews",
                        user.name, review.identity
                    ),
                    None => format!(
                        "identity {} is no longer configured, so it has no owners; an admin files its after-action reviews",
                        review.identity
                    ),
                }));
            }
        };
        let by = caller.principal();
        let filer = user.name.clone();
        let now = self.now();
        let filed = self
            .store
            .update_review(
                id,
                Box::new(move |r: &mut Review| {
                    let overdue = breakglass::status(r, now).is_overdue();
                    r.file(Filing {
                        by: filer,
                        at: now,
                        summary,
                    })?;
                    let summary = match &r.state {
                        ReviewState::Filed(f) => f.summary.clone(),
                        ReviewState::Open => String::new(),
                    };
                    Ok(vec![
                        AuditDraft::new(AuditKind::ReviewFiled, &by)
                            .identity(&r.identity)
                            .request(&r.request_id)
                            .grant(&r.grant_id)
                            .task_ref(&r.task_ref)
                            .data(serde_json::json!({
                                "review": r.id,
                                "summary": summary,
                                "overdue": overdue,
                                "self_review": self_review,
                            })),
                    ])
                }),
            )
            .await?;
        // An overdue alert about it is settled by the filing.
        let key = format!("{}:{}", AlertKind::ReviewOverdue.as_str(), filed.id);
        self.resolve_alert_key(&key, "the after-action review was filed")
            .await?;
        Ok(ReviewNow {
            status: breakglass::status(&filed, now),
            review: filed,
        })
    }

    /// The owners of `identity`'s team, or None when the identity or its team is gone.
    fn owners_of(&self, catalog: &Catalog, identity: &IdentityName) -> Option<Vec<UserName>> {
        let identity = catalog.identity(identity)?;
        let team = catalog.team(&identity.owner)?;
        Some(team.owners.clone())
    }

    /// One pass of the review escalation: every open review past its due time that has
    /// not escalated escalates now (`review_escalated`, audited in the same write), once,
    /// whichever replica gets to it. Idempotent: a second pass finds nothing to do.
    pub async fn review_pass(&self) -> Result<ReviewPass> {
        let now = self.now();
        let audit = Box::new(move |r: &Review| {
            AuditDraft::new(AuditKind::ReviewEscalated, Principal::System("reviews"))
                .identity(&r.identity)
                .request(&r.request_id)
                .grant(&r.grant_id)
                .task_ref(&r.task_ref)
                .data(serde_json::json!({
                    "review": r.id,
                    "due_at": r.due_at.to_rfc3339(),
                    "overdue_by_secs": now.since(r.due_at).as_secs(),
                }))
        });
        // The alert ids the escalation wrote, by review, to count those that opened.
        let ids: Arc<Mutex<BTreeMap<ReviewId, String>>> = Arc::default();
        let written = Arc::clone(&ids);
        let alert = Box::new(move |review: &Review| {
            let draft = AlertDraft::new(
                AlertKind::ReviewOverdue,
                review.id.to_string(),
                format!(
                    "the after-action review {} of break-glass access to {} by {} (incident {}) was due at {} and is not filed; an owner of its team files it with `kairos review file {} --summary …`",
                    review.id,
                    review.entitlement,
                    review.identity,
                    review.task_ref,
                    review.due_at.to_rfc3339(),
                    review.id
                ),
            )
            .identity(&review.identity)
            .detail(serde_json::json!({
                "review": review.id,
                "grant": review.grant_id.to_string(),
                "due_at": review.due_at.to_rfc3339(),
            }));
            let w = alert_write(draft, now);
            if let Ok(mut ids) = written.lock() {
                ids.insert(review.id.clone(), w.id.clone());
            }
            w
        });
        let escalated = self
            .store
            .escalate_overdue_reviews(now, ESCALATIONS_PER_PASS, audit, Some(alert))
            .await?;
        let ids = ids.lock().map(|ids| ids.clone()).unwrap_or_default();
        for review in &escalated {
            if let Some(id) = ids.get(&review.id) {
                self.alert_committed(id).await;
            }
            tracing::warn!(
                review = %review.id,
                identity = %review.identity,
                entitlement = %review.entitlement,
                due_at = %review.due_at,
                "after-action review overdue: escalated"
            );
        }
        Ok(ReviewPass { escalated })
    }
}

/// The `break_glass` alert of a break-glass grant and its review, raised at `now` in the
/// transaction that writes them: an incident's access and its alarm commit together.
pub(crate) fn break_glass_alert(review: &Review, grant: &Grant, now: Timestamp) -> AlertWrite {
    let draft = AlertDraft::new(
        AlertKind::BreakGlass,
        grant.id.to_string(),
        format!(
            "break-glass access to {} was granted to {} (requested by {}) for incident {}; after-action review {} is open until an owner of its team files it (`kairos review file {}`)",
            review.entitlement,
            review.identity,
            review.requester,
            review.task_ref,
            review.id,
            review.id
        ),
    )
    .identity(&review.identity)
    .detail(serde_json::json!({
        "review": review.id,
        "grant": grant.id.to_string(),
        "request": review.request_id.to_string(),
        "entitlement": review.entitlement,
        "requester": review.requester,
        "incident": review.task_ref,
        "expires_at": grant.expires_at.to_rfc3339(),
        "review_due_at": review.due_at.to_rfc3339(),
    }));
    alert_write(draft, now)
}
