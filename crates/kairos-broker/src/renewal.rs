//! Renewal: extending an active grant is a new policy decision.
//!
//! Cedar decides it as action `Kairos::Action::"renew"` with `context.ttl_secs` the
//! grant's whole lifetime after the renewal (from its issue time) and `context.renewal`
//! true (see `kairos_policy`). The decision, or the rule below, may make it wait for
//! approvals: it is then a pending request that names the grant it renews
//! (`Request::renews`), approved or denied like any request, and it extends the grant
//! only when its last approval lands. If the grant ends first, the renewal lapses.
//!
//! A grant whose request needed N approvals was approved for that request's TTL; a
//! renewal that makes its lifetime longer than what people approved needs N approvals
//! again (at least), whatever the renewal policies say.
//!
//! Who may renew: the grant's own workload (a workload asking about another identity's
//! grant is told it does not exist) and operators; both only as policy decides.

use std::time::Duration;

use kairos_domain::{
    Approval, ApprovalProgress, AuditDraft, AuditKind, Decision, DecisionOutcome, Grant, GrantId,
    GrantState, Principal, Request, RequestId, RequestState, Timestamp, Ttl,
};
use kairos_policy::{PolicyAction, PolicyInput};
use kairos_store::{GrantChange, RequestChange, Role};

use crate::{Broker, BrokerError, Caller, IssuedCredential, RequestOutcome, Result};

/// What a renewal came to.
#[derive(Debug, Clone)]
pub enum Renewal {
    /// Policy granted it: the grant is extended, with a fresh credential.
    Renewed {
        grant: Grant,
        credential: IssuedCredential,
    },
    /// It waits for approvals as this request; the grant is unchanged until then.
    Pending { grant: Grant, request: Box<Request> },
}

/// The whole lifetime of a grant issued at `issued_at` that ends at `end`, in whole
/// seconds rounded up (what policy sees as `context.ttl_secs`).
fn lifetime(issued_at: Timestamp, end: Timestamp) -> Result<Ttl> {
    let ms = end.since(issued_at).as_millis();
    let secs = u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1);
    Ttl::from_secs(secs).map_err(|e| BrokerError::invalid("bad_ttl", e.to_string()))
}

fn renewal_audit(kind: AuditKind, by: &Principal, grant: &Grant) -> AuditDraft {
    AuditDraft::new(kind, by)
        .identity(&grant.identity)
        .request(&grant.request_id)
        .grant(&grant.id)
        .task_ref(&grant.task.reference)
}

fn renewed_audit(
    by: &Principal,
    g: &Grant,
    old: Timestamp,
    renewal: Option<&RequestId>,
) -> AuditDraft {
    let mut a = renewal_audit(AuditKind::Renewed, by, g);
    if let Some(r) = renewal {
        a = a.request(r);
    }
    a.data(serde_json::json!({
        "old_expires_at": old.to_rfc3339(),
        "new_expires_at": g.expires_at.to_rfc3339(),
        "lifetime": lifetime(g.issued_at, g.expires_at).map(|t| t.to_string()).unwrap_or_default(),
    }))
}

impl Broker {
    /// Asks to extend a grant to `ttl` from now (never past its maximum). Policy decides:
    /// denied (403 with the policies), renewed at once, or pending approvals.
    pub async fn renew(&self, caller: &Caller, id: &GrantId, ttl: Ttl) -> Result<Renewal> {
        let not_found = || BrokerError::NotFound(format!("grant {id} not found"));
        let grant = self.store.get_grant(id).await?.ok_or_else(not_found)?;
        match caller {
            // Another identity's grant: the same answer as for no grant, so a workload
            // learns nothing about grants that are not its own.
            Caller::Workload { identity } if *identity != grant.identity => {
                return Err(not_found());
            }
            Caller::Workload { .. } => {}
            Caller::User(_) => {
                caller.require_role(&[Role::Operator], "renew a grant")?;
            }
        }
        self.refuse_if_inactive(&grant.identity)?;
        match &grant.state {
            GrantState::Active => {}
            GrantState::Provisioning => {
                return Err(BrokerError::Conflict(format!(
                    "grant {id} is still being provisioned; renew it once it is active"
                )));
            }
            GrantState::Ending { end, .. } | GrantState::Ended { end, .. } => {
                return Err(BrokerError::Conflict(format!(
                    "grant {id} already ended ({} at {}); request a new grant instead",
                    end.reason, end.at
                )));
            }
        }
        // A signed certificate's valid_before cannot move: the grant would outlive the
        // certificate (or a second certificate would stand beside the first).
        if self.is_ssh_grant(&grant) {
            return Err(BrokerError::Conflict(format!(
                "grant {id} is an SSH certificate, whose valid_before cannot be moved; request a new grant (with a new certificate) instead"
            )));
        }
        let now = self.now();
        let new_end = now.plus(ttl.as_duration());
        if new_end > grant.max_expires_at {
            return Err(BrokerError::invalid(
                "ttl_over_cap",
                format!(
                    "renewing by {ttl} would end at {new_end}, past the grant's maximum {} (its entitlement's cap); ask for less or request a new grant",
                    grant.max_expires_at
                ),
            ));
        }
        let total = lifetime(grant.issued_at, new_end)?;
        let requester = caller.principal();
        let (decision, catalog_version) = self.decide_renewal(&grant, total, &requester).await?;

        let asked =
            renewal_audit(AuditKind::RenewRequested, &requester, &grant).data(serde_json::json!({
                "ttl": ttl.to_string(),
                "lifetime": total.to_string(),
                "old_expires_at": grant.expires_at.to_rfc3339(),
                "new_expires_at": new_end.to_rfc3339(),
            }));
        let decided =
            renewal_audit(AuditKind::Decided, &requester, &grant).data(serde_json::json!({
                "decision": decision, "renewal": true, "catalog_version": catalog_version,
            }));
        match decision.outcome {
            DecisionOutcome::Deny => {
                self.store.append_audit(vec![asked, decided]).await?;
                let mut decision = decision;
                decision.reason = format!("{} (renewal of grant {id})", decision.reason);
                Err(BrokerError::Denied(decision))
            }
            DecisionOutcome::Pending { .. } => {
                let request = Request {
                    id: RequestId::generate(),
                    identity: grant.identity.clone(),
                    entitlement: grant.entitlement.clone(),
                    ttl: total,
                    task: grant.task.clone(),
                    requester: requester.clone(),
                    decision,
                    state: RequestState::Pending,
                    approvals: Vec::new(),
                    denial: None,
                    created_at: now,
                    // It dies with the grant: once the grant's current end passes, there
                    // is nothing left to extend.
                    pending_until: Some(
                        now.plus(self.settings.pending_timeout)
                            .min(grant.expires_at),
                    ),
                    grant_id: None,
                    renews: Some(grant.id.clone()),
                    source_ip: None,
                };
                let audit = vec![asked.request(&request.id), decided.request(&request.id)];
                self.store.insert_request(&request, None, audit).await?;
                self.metrics.pending_requests.inc();
                self.notify_requests();
                Ok(Renewal::Pending {
                    grant,
                    request: Box::new(request),
                })
            }
            DecisionOutcome::Grant => {
                self.move_native_expiry(&grant, new_end).await?;
                let by = requester.clone();
                let updated = self
                    .store
                    .update_grant(
                        id,
                        Box::new(move |g: &mut Grant| {
                            let old = g.expires_at;
                            g.renew(new_end, now)?;
                            Ok(vec![asked, decided, renewed_audit(&by, g, old, None)])
                        }),
                    )
                    .await?;
                let credential = self.mint(&updated, self.confirmation_of(&updated).await?)?;
                Ok(Renewal::Renewed {
                    grant: updated,
                    credential,
                })
            }
        }
    }

    /// Cedar's decision on renewing `grant` to a whole lifetime of `total`, raised to the
    /// approvals its request needed when the renewal goes past what people approved.
    async fn decide_renewal(
        &self,
        grant: &Grant,
        total: Ttl,
        requester: &Principal,
    ) -> Result<(Decision, i64)> {
        let (catalog, catalog_version) = self.decision_catalog().await?;
        let identity = catalog.identity(&grant.identity).ok_or_else(|| {
            BrokerError::Conflict(format!(
                "identity {} was removed from the configuration; its grants cannot be renewed",
                grant.identity
            ))
        })?;
        let entitlement = catalog.entitlement(&grant.entitlement).ok_or_else(|| {
            BrokerError::Conflict(format!(
                "entitlement {} was removed from the configuration; its grants cannot be renewed",
                grant.entitlement
            ))
        })?;
        // A break-glass grant's own review is among them while it is open.
        let open_reviews = self
            .open_reviews_for_policy(&catalog, &grant.identity)
            .await?;
        let mut decision = catalog
            .policies()
            .decide(&PolicyInput {
                action: PolicyAction::Renew,
                identity: catalog.identity_facts(identity),
                entitlement: catalog.entitlement_facts(entitlement),
                ttl: total,
                task: grant.task.clone(),
                requester: requester.clone(),
                circumstances: kairos_policy::Circumstances {
                    break_glass: entitlement.break_glass,
                    open_reviews,
                    ..Default::default()
                },
            })
            .map_err(BrokerError::internal)?;
        if decision.outcome == DecisionOutcome::Deny {
            return Ok((decision, catalog_version));
        }
        // What people approved: the request's TTL, or the lifetime an approved renewal
        // gave the grant since (a renewal that goes past it is approved or does not land).
        let request = self.store.get_request(&grant.request_id).await?;
        let approvals = request.as_ref().map_or(0, Request::approvals_needed);
        let approved = request
            .as_ref()
            .map_or(Duration::ZERO, |r| r.ttl.as_duration());
        let approved = approved.max(grant.expires_at.since(grant.issued_at));
        let decided = match decision.outcome {
            DecisionOutcome::Pending { approvals } => approvals,
            _ => 0,
        };
        if approvals > decided && total.as_duration() > approved {
            decision.outcome = DecisionOutcome::Pending { approvals };
            decision.reason = format!(
                "{}; grant {} was approved by {approvals} approver{} for {}, so a renewal to {total} needs {approvals} approval{} again",
                decision.reason,
                grant.id,
                if approvals == 1 { "" } else { "s" },
                lifetime(grant.issued_at, grant.issued_at.plus(approved))?,
                if approvals == 1 { "" } else { "s" },
            );
        }
        Ok((decision, catalog_version))
    }

    /// An account's native expiry moves first: if the target cannot, the grant stays as
    /// it was.
    async fn move_native_expiry(&self, grant: &Grant, new_end: Timestamp) -> Result<()> {
        let Some(account) = &grant.account else {
            return Ok(());
        };
        let targets = self.targets();
        let connector = targets
            .get(&grant.target)
            .ok_or_else(|| BrokerError::Target {
                unavailable: true,
                message: format!("target {} is not configured", grant.target),
            })?;
        let name = kairos_connectors::AccountName::parse(account.clone())
            .map_err(|e| BrokerError::Internal(e.to_string().into()))?;
        connector
            .renew(&name, new_end)
            .await
            .map_err(crate::accounts::target_error)
    }

    /// An approval of a pending renewal (`current.renews` is its grant). The last one
    /// extends the grant in the same transaction; if the grant ended first, the renewal
    /// lapses (409).
    pub(crate) async fn approve_renewal(
        &self,
        caller: &Caller,
        current: Request,
        grant_id: GrantId,
        approver: kairos_domain::UserName,
        reason: String,
    ) -> Result<RequestOutcome> {
        let id = current.id.clone();
        let now = self.now();
        let by = caller.principal();
        let grant =
            self.store.get_grant(&grant_id).await?.ok_or_else(|| {
                BrokerError::Conflict(format!("grant {grant_id} no longer exists"))
            })?;
        if let Some(end) = grant.state.end().cloned() {
            let lapsed_by = by.clone();
            self.store
                .update_request(
                    &id,
                    Box::new(move |req: &mut Request| {
                        req.lapse()?;
                        Ok(RequestChange {
                            audit: vec![
                                AuditDraft::new(AuditKind::RequestExpired, &lapsed_by)
                                    .identity(&req.identity)
                                    .request(&req.id)
                                    .grant(&grant_id)
                                    .task_ref(&req.task.reference)
                                    .data(serde_json::json!({
                                        "reason": format!("grant {grant_id} ended ({}) before the renewal was approved", end.reason),
                                    })),
                            ],
                            ..RequestChange::default()
                        })
                    }),
                )
                .await?;
            self.metrics.pending_requests.dec();
            self.notify_requests();
            return Err(BrokerError::Conflict(format!(
                "grant {} ended ({}) before this renewal was approved; the renewal lapsed",
                grant.id,
                grant.state.end().map_or("ended", |e| e.reason.as_str())
            )));
        }
        let new_end = grant.issued_at.plus(current.ttl.as_duration());
        let completes = u32::try_from(current.approvals.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
            >= current.approvals_needed();
        if completes {
            // Moving a native expiry further than the grant ends is harmless: the grant's
            // end revokes the account whatever the target's own timer says.
            self.move_native_expiry(&grant, new_end).await?;
        }
        let updated = self
            .store
            .update_request(
                &id,
                Box::new(move |req: &mut Request| {
                    let progress = req.approve(Approval {
                        approver,
                        at: now,
                        reason: reason.clone(),
                    })?;
                    let need = req.approvals_needed();
                    let have = match progress {
                        ApprovalProgress::NeedMore { have, .. } => have,
                        ApprovalProgress::Complete => need,
                    };
                    let mut change = RequestChange::default();
                    change.audit.push(
                        AuditDraft::new(AuditKind::Approved, &by)
                            .identity(&req.identity)
                            .request(&req.id)
                            .grant(&grant_id)
                            .task_ref(&req.task.reference)
                            .data(serde_json::json!({
                                "reason": reason, "approvals": have, "needed": need,
                                "renewal": true,
                            })),
                    );
                    if progress == ApprovalProgress::Complete {
                        req.mark_granted(grant_id.clone())?;
                        let renewal = req.id.clone();
                        change.renewal = Some(GrantChange {
                            grant: grant_id,
                            update: Box::new(move |g: &mut Grant| {
                                let old = g.expires_at;
                                g.renew(new_end, now)?;
                                Ok(vec![renewed_audit(&by, g, old, Some(&renewal))])
                            }),
                        });
                    }
                    Ok(change)
                }),
            )
            .await?;
        let grant = match &updated.grant_id {
            Some(gid) => {
                self.metrics.pending_requests.dec();
                self.store.get_grant(gid).await?
            }
            None => None,
        };
        self.notify_requests();
        Ok(RequestOutcome {
            request: updated,
            grant,
            credential: None,
            ttl_capped: false,
            review: None,
        })
    }
}
