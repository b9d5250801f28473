//! How grants end: every end — expiry, release, revoke — goes through one path:
//! **mark ended** (one transaction: Active → Ending, a revocation job, an audit record)
//! → **propagate** (the connector's `revoke`) → **verify** (the connector's
//! `verify_gone`) → **receipt** (Ending → Ended, audited). Failures retry forever with
//! capped exponential backoff; nothing is ever marked irrevocable.

use std::sync::Arc;
use std::time::Duration;

use kairos_crypto::issuer::AccessClaims;
use kairos_domain::{
    AuditDraft, AuditKind, EndReason, Grant, GrantEnd, GrantId, GrantState, Principal, Receipt,
    TaskRef, Ttl,
};
use kairos_store::{EndSelector, GrantFilter, Role};

use crate::connector::{Connector, TokenConnector};
use crate::{Broker, BrokerError, Caller, IssuedCredential, Result};

/// Which grants an operator revokes.
#[derive(Debug, Clone)]
pub enum RevokeScope {
    Grant(GrantId),
    Identity(kairos_domain::IdentityName),
    TaskRef(TaskRef),
}

/// The RFC 7662 view of a token.
#[derive(Debug, Clone)]
pub struct Introspection {
    pub active: bool,
    /// Present only when active.
    pub claims: Option<AccessClaims>,
}

/// Backoff before retry `attempts` (1-based): 1 s, 2 s, 4 s … capped at 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    Duration::from_secs((1u64 << exp).min(300))
}

impl Broker {
    /// Propagates a grant's end to its consumers and verifies that access is gone: for a
    /// token, introspection; for an account, the target's connector (revoke, then verify
    /// with the sealed password that a login is refused). Returns when it revoked and how
    /// it verified.
    async fn propagate_and_verify(
        &self,
        grant: &Grant,
    ) -> std::result::Result<(kairos_domain::Timestamp, String, String), String> {
        let Some(account) = &grant.account else {
            let tokens = TokenConnector::new(Arc::clone(&self.store), Arc::clone(&self.clock));
            let revoked_at = self.now();
            tokens.revoke(grant).await.map_err(|e| e.to_string())?;
            let v = tokens.verify_gone(grant).await.map_err(|e| e.to_string())?;
            return Ok((revoked_at, v.method, v.evidence));
        };
        let targets = self.targets();
        let connector = targets.get(&grant.target).ok_or_else(|| {
            format!(
                "target {} is no longer configured; restore it so account {account} can be removed",
                grant.target
            )
        })?;
        let name =
            kairos_connectors::AccountName::parse(account.clone()).map_err(|e| e.to_string())?;
        let revoked = connector.revoke(&name).await.map_err(|e| e.to_string())?;
        let revoked_at = self.now();
        self.crash_point(crate::CrashPoint::AfterRevoke);
        let v = connector
            .verify_gone(&name, self.unseal_secret(grant).as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let sessions = if revoked.account_existed {
            format!("{} live session(s) terminated", revoked.sessions_killed)
        } else {
            // An earlier, interrupted attempt (or the target's native expiry) removed it:
            // revoked_at is this retry, so the receipt errs on the long side.
            "account already absent when this attempt ran (removed by an earlier interrupted attempt or by the target's native expiry)".to_owned()
        };
        Ok((revoked_at, v.method, format!("{}; {sessions}", v.evidence)))
    }

    pub async fn get_grant(&self, caller: &Caller, id: &GrantId) -> Result<Grant> {
        let grant = self
            .store
            .get_grant(id)
            .await?
            .ok_or_else(|| BrokerError::NotFound(format!("grant {id} not found")))?;
        match caller {
            Caller::Workload { identity } if *identity == grant.identity => Ok(grant),
            Caller::Workload { identity } => Err(BrokerError::Forbidden(format!(
                "workload {identity} cannot read a grant of identity {}",
                grant.identity
            ))),
            Caller::User(_) => {
                caller.require_role(
                    &[Role::Operator, Role::Approver, Role::Auditor],
                    "read grants",
                )?;
                Ok(grant)
            }
        }
    }

    pub async fn list_grants(
        &self,
        caller: &Caller,
        mut filter: GrantFilter,
    ) -> Result<Vec<Grant>> {
        match caller {
            // A workload sees only its own grants.
            Caller::Workload { identity } => filter.identity = Some(identity.clone()),
            Caller::User(_) => {
                caller.require_role(
                    &[Role::Operator, Role::Approver, Role::Auditor],
                    "list grants",
                )?;
            }
        }
        Ok(self.store.list_grants(&filter).await?)
    }

    async fn end(
        &self,
        selector: EndSelector,
        reason: EndReason,
        by: Principal,
    ) -> Result<Vec<Grant>> {
        let end = GrantEnd {
            reason,
            by,
            at: self.now(),
        };
        let ended = self.store.end_grants(&selector, &end).await?;
        if !ended.is_empty() {
            let n = i64::try_from(ended.len()).unwrap_or(i64::MAX);
            self.metrics.active_grants.dec_by(n);
            self.metrics.revoking_grants.inc_by(n);
            for _ in &ended {
                self.metrics.ended(reason.as_str());
            }
            self.revoke_work.notify_one();
            self.changed.notify_waiters();
        }
        Ok(ended)
    }

    /// The workload says its task is done.
    pub async fn release(&self, caller: &Caller, id: &GrantId) -> Result<Grant> {
        let grant = self.get_grant(caller, id).await?;
        if !matches!(caller, Caller::Workload { .. }) {
            caller.require_role(&[Role::Operator], "release a grant")?;
        }
        self.end_one(grant, EndReason::Released, caller.principal())
            .await
    }

    async fn end_one(&self, grant: Grant, reason: EndReason, by: Principal) -> Result<Grant> {
        if let Some(end) = grant.state.end() {
            return Err(BrokerError::Conflict(format!(
                "grant {} already ended ({} at {})",
                grant.id, end.reason, end.at
            )));
        }
        let mut ended = self
            .end(EndSelector::One(grant.id.clone()), reason, by)
            .await?;
        match ended.pop() {
            Some(g) => Ok(g),
            None => Err(BrokerError::Conflict(format!(
                "grant {} ended concurrently",
                grant.id
            ))),
        }
    }

    /// An operator revokes one grant, all grants of an identity, or of a task reference.
    pub async fn revoke(&self, caller: &Caller, scope: RevokeScope) -> Result<Vec<Grant>> {
        caller.require_role(&[Role::Operator], "revoke grants")?;
        let selector = match scope {
            RevokeScope::Grant(id) => {
                let grant = self.get_grant(caller, &id).await?;
                return Ok(vec![
                    self.end_one(grant, EndReason::Revoked, caller.principal())
                        .await?,
                ]);
            }
            RevokeScope::Identity(i) => EndSelector::Identity(i),
            RevokeScope::TaskRef(t) => EndSelector::TaskRef(t),
        };
        self.end(selector, EndReason::Revoked, caller.principal())
            .await
    }

    /// Extends a grant by `ttl` from now, never past its maximum; returns a fresh token.
    pub async fn renew(
        &self,
        caller: &Caller,
        id: &GrantId,
        ttl: Ttl,
    ) -> Result<(Grant, IssuedCredential)> {
        let grant = self.get_grant(caller, id).await?;
        if !matches!(caller, Caller::Workload { .. }) {
            caller.require_role(&[Role::Operator], "renew a grant")?;
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
        // An account's native expiry moves first: if the target cannot, the grant stays as it was.
        if let Some(account) = &grant.account {
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
                .map_err(crate::accounts::target_error)?;
        }
        let by = caller.principal();
        let updated = self
            .store
            .update_grant(
                id,
                Box::new(move |g: &mut Grant| {
                    let old = g.expires_at;
                    g.renew(new_end, now)?;
                    Ok(vec![
                        AuditDraft::new(AuditKind::Renewed, &by)
                            .identity(&g.identity)
                            .request(&g.request_id)
                            .grant(&g.id)
                            .task_ref(&g.task.reference)
                            .data(serde_json::json!({
                                "old_expires_at": old.to_rfc3339(),
                                "new_expires_at": g.expires_at.to_rfc3339(),
                            })),
                    ])
                }),
            )
            .await?;
        let credential = self.mint(&updated)?;
        Ok((updated, credential))
    }

    /// RFC 7662: is this token honoured right now? Inactive the moment its grant ends.
    pub async fn introspect(&self, token: &str) -> Result<Introspection> {
        let now = self.now();
        let inactive = Introspection {
            active: false,
            claims: None,
        };
        let Ok(claims) = self.key_ring().verify(token, now.as_secs()) else {
            return Ok(inactive);
        };
        let Some(id) = GrantId::parse(&claims.jti) else {
            return Ok(inactive);
        };
        match self.store.get_grant(&id).await? {
            Some(g) if g.is_active_at(now) => Ok(Introspection {
                active: true,
                claims: Some(AccessClaims {
                    exp: claims.exp.min(g.expires_at.as_secs()),
                    ..claims
                }),
            }),
            _ => Ok(inactive),
        }
    }

    /// RFC 7009: the holder (or an operator) revokes a token. Unknown or inactive tokens
    /// are not an error.
    pub async fn revoke_token(&self, caller: &Caller, token: &str) -> Result<()> {
        let Ok(claims) = self.key_ring().verify(token, self.now().as_secs()) else {
            return Ok(());
        };
        let Some(id) = GrantId::parse(&claims.jti) else {
            return Ok(());
        };
        let Some(grant) = self.store.get_grant(&id).await? else {
            return Ok(());
        };
        match caller {
            Caller::Workload { identity } if *identity == grant.identity => {}
            Caller::Workload { identity } => {
                return Err(BrokerError::Forbidden(format!(
                    "workload {identity} cannot revoke a token of identity {}",
                    grant.identity
                )));
            }
            Caller::User(_) => {
                caller.require_role(&[Role::Operator], "revoke tokens")?;
            }
        }
        if matches!(grant.state, GrantState::Active) {
            self.end(EndSelector::One(id), EndReason::Revoked, caller.principal())
                .await?;
        }
        Ok(())
    }

    /// Ends every active grant due at the clock's now (one batch). Returns how many.
    pub async fn expire_due(&self) -> Result<usize> {
        let now = self.now();
        let ended = self
            .end(
                EndSelector::ExpiredBy { now, limit: 500 },
                EndReason::Expired,
                Principal::System("expirer"),
            )
            .await?;
        if let Some(oldest) = ended.iter().map(|g| g.expires_at).min() {
            self.metrics
                .expirer_lag_seconds
                .set(now.since(oldest).as_secs_f64());
        }
        Ok(ended.len())
    }

    /// Claims due revocation jobs and runs propagate → verify → receipt on each.
    /// Returns (verified, failed).
    pub async fn revoke_due(self: &Arc<Self>) -> Result<(usize, usize)> {
        /// Jobs propagated at once: downstream round trips overlap, and each job is
        /// independent (its own grant, its own account).
        const CONCURRENCY: usize = 16;
        let now = self.now();
        let lease = i64::try_from(self.settings.revocation_lease.as_millis()).unwrap_or(30_000);
        let jobs = self.store.claim_revocations(now, 200, lease).await?;
        let (mut verified, mut failed) = (0, 0);
        let mut running = tokio::task::JoinSet::new();
        let mut first_error = None;
        for grant in jobs {
            if running.len() >= CONCURRENCY
                && let Some(done) = running.join_next().await
            {
                tally(done, &mut verified, &mut failed, &mut first_error);
            }
            let b = Arc::clone(self);
            running.spawn(async move { b.revoke_one(grant).await });
        }
        while let Some(done) = running.join_next().await {
            tally(done, &mut verified, &mut failed, &mut first_error);
        }
        if verified > 0 {
            self.changed.notify_waiters();
        }
        match first_error {
            // A store failure: the jobs it touched stay claimed and are retried after the lease.
            Some(e) => Err(e),
            None => Ok((verified, failed)),
        }
    }

    /// Propagate → verify → receipt for one claimed job. `Ok(true)` when verified,
    /// `Ok(false)` when the attempt failed and was recorded for a retry.
    async fn revoke_one(&self, grant: Grant) -> Result<bool> {
        match self.propagate_and_verify(&grant).await {
            Ok((revoked_at, method, evidence)) => {
                let receipt = Receipt {
                    revoked_at,
                    verified_at: self.now(),
                    method,
                    evidence,
                };
                self.store.complete_revocation(&grant.id, &receipt).await?;
                self.metrics.revoking_grants.dec();
                self.metrics.revocations_verified.inc();
                Ok(true)
            }
            Err(error) => {
                let attempts = match &grant.state {
                    GrantState::Ending { attempts, .. } => attempts.saturating_add(1),
                    _ => 1,
                };
                let retry_at = self.now().plus(backoff(attempts));
                self.store
                    .fail_revocation(&grant.id, &error, retry_at)
                    .await?;
                self.metrics.revocation_failures.inc();
                if attempts == self.settings.revocation_alarm_after {
                    self.metrics.revocations_alarming.inc();
                    tracing::error!(grant = %grant.id, attempts, %error,
                        "revocation keeps failing; access may persist until it succeeds");
                } else {
                    tracing::warn!(grant = %grant.id, attempts, %error, "revocation failed; will retry");
                }
                Ok(false)
            }
        }
    }

    /// Runs the background loops until `shutdown` resolves: the expirer (driven by the
    /// store's expiry index), the revocation worker, pending-request expiry, key reload.
    pub async fn run_background(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let expirer = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = b.expire_due().await {
                        tracing::error!(error = %ErrorChain(&e), "expirer pass failed");
                    }
                    let sleep = match b.store.next_expiry().await {
                        Ok(Some(next)) => next.since(b.now()).min(Duration::from_secs(1)),
                        Ok(None) => Duration::from_secs(1),
                        Err(_) => Duration::from_secs(1),
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(sleep.max(Duration::from_millis(5))) => {}
                        _ = b.changed.notified() => {}
                        _ = shutdown.changed() => return,
                    }
                }
            })
        };
        let revoker = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    match b.revoke_due().await {
                        Ok((v, f)) if v + f > 0 => continue,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %ErrorChain(&e), "revocation pass failed")
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = b.revoke_work.notified() => {}
                        _ = shutdown.changed() => return,
                    }
                }
            })
        };
        let shutdown_reconciler = shutdown.clone();
        let housekeeping = {
            let b = Arc::clone(&self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut n: u64 = 0;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    n = n.wrapping_add(1);
                    if let Err(e) = b.expire_pending().await {
                        tracing::error!(error = %ErrorChain(&e), "pending-request expiry failed");
                    }
                    if n.is_multiple_of(30) {
                        if let Err(e) = b.reload_keys().await {
                            tracing::error!(error = %ErrorChain(&e), "key reload failed");
                        }
                        if let Err(e) = b.refresh_gauges().await {
                            tracing::error!(error = %ErrorChain(&e), "gauge refresh failed");
                        }
                    }
                }
            })
        };
        let reconciler = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown_reconciler;
            tokio::spawn(async move {
                let mut last: std::collections::BTreeMap<
                    kairos_domain::TargetName,
                    tokio::time::Instant,
                > = std::collections::BTreeMap::new();
                loop {
                    let catalog = b.catalog();
                    for (name, connector) in b.targets().iter() {
                        let every = catalog
                            .target(name)
                            .and_then(|t| t.kind.db())
                            .map_or(Duration::from_secs(30), |d| {
                                d.reconcile_interval.as_duration()
                            });
                        if last.get(name).is_some_and(|t| t.elapsed() < every) {
                            continue;
                        }
                        last.insert(name.clone(), tokio::time::Instant::now());
                        match b.reconcile(name, Arc::clone(connector)).await {
                            Ok(r)
                                if !r.residue_removed.is_empty() || r.provisioning_aborted > 0 =>
                            {
                                tracing::warn!(target = %name, residue = ?r.residue_removed, aborted = r.provisioning_aborted, "reconciler removed residue");
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(target = %name, error = %ErrorChain(&e), "reconcile pass failed; will retry")
                            }
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            })
        };
        let _ = tokio::join!(expirer, revoker, housekeeping, reconciler);
    }
}

fn tally(
    done: std::result::Result<Result<bool>, tokio::task::JoinError>,
    verified: &mut usize,
    failed: &mut usize,
    first_error: &mut Option<BrokerError>,
) {
    match done {
        Ok(Ok(true)) => *verified += 1,
        Ok(Ok(false)) => *failed += 1,
        Ok(Err(e)) => {
            first_error.get_or_insert(e);
        }
        Err(join) => {
            first_error.get_or_insert(BrokerError::internal(join));
        }
    }
}

/// Displays an error with its whole cause chain, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
