//! How grants end: every end — expiry, release, revoke — goes through one path:
//! **mark ended** (one transaction: Active → Ending, a revocation job, an audit record)
//! → **propagate** (the connector's `revoke`) → **verify** (the connector's
//! `verify_gone`) → **receipt** (Ending → Ended, audited). Failures retry forever with
//! capped exponential backoff; nothing is ever marked irrevocable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_connectors::AccountName;
use kairos_crypto::issuer::AccessClaims;
use kairos_domain::{
    EndReason, Grant, GrantEnd, GrantId, GrantState, Principal, Receipt, TargetName, TaskRef,
};
use kairos_store::{EndSelector, GrantFilter, Role};

use crate::connector::{Connector, TokenConnector};
use crate::sets::SetStage;
use crate::{Broker, BrokerError, Caller, Result};

/// Which grants an operator revokes.
#[derive(Debug, Clone)]
pub enum RevokeScope {
    Grant(GrantId),
    Identity(kairos_domain::IdentityName),
    TaskRef(TaskRef),
}

/// Why a person revokes: 1 to 1000 characters, not only whitespace. Kept in the audit
/// record of each grant it ends; never a secret (people write it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeReason(String);

impl RevokeReason {
    /// The most characters a reason may have.
    pub const MAX_CHARS: usize = 1000;

    pub fn parse(reason: impl Into<String>) -> std::result::Result<Self, String> {
        let reason = reason.into();
        if reason.trim().is_empty() {
            return Err("the reason is empty: say why the access is revoked".into());
        }
        if reason.chars().count() > Self::MAX_CHARS {
            return Err(format!(
                "the reason is longer than {} characters: shorten it",
                Self::MAX_CHARS
            ));
        }
        Ok(Self(reason))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    backoff_from(Duration::from_secs(1), attempts)
}

/// Backoff before retry `attempts` (1-based) when the first wait is `unit`: `unit`,
/// twice it, four times … capped at 5 minutes.
pub fn backoff_from(unit: Duration, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    unit.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
}

/// The longest wait between two attempts of one revocation (while its target answers;
/// an unreachable target is probed every `outage_probe_interval` instead).
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// After a target with failing revocations answers a probe again, this many answering
/// probes in a row each retry its backlog at once: a batch that was already under way
/// when the target came back may still fail after the first.
const RECOVERY_PROBES: u32 = 3;

impl Broker {
    /// Propagates a token grant's end and verifies it: after it, introspection answers
    /// inactive. Returns when it revoked and how it verified.
    async fn propagate_token(&self, grant: &Grant) -> Outcome {
        let tokens = TokenConnector::new(Arc::clone(&self.store), Arc::clone(&self.clock));
        let revoked_at = self.now();
        tokens.revoke(grant).await.map_err(|e| e.to_string())?;
        let v = tokens.verify_gone(grant).await.map_err(|e| e.to_string())?;
        Ok((revoked_at, v.method, v.evidence))
    }

    /// Propagates the end of several account grants on one target together: the
    /// connector revokes them in one batch (sessions killed, accounts removed), then
    /// verifies them in one batch (with the sealed passwords, so it can try to log in).
    /// One outcome per grant, in order.
    async fn propagate_accounts(&self, target: &TargetName, grants: &[Grant]) -> Vec<Outcome> {
        let targets = self.targets();
        let Some(connector) = targets.get(target) else {
            let why = format!(
                "target {target} is no longer configured; restore it so its accounts can be removed"
            );
            return grants.iter().map(|_| Err(why.clone())).collect();
        };
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(grants.len());
        let mut names = Vec::with_capacity(grants.len());
        let mut slots = Vec::with_capacity(grants.len());
        for grant in grants {
            let parsed = grant
                .account
                .clone()
                .ok_or_else(|| format!("grant {} has no account", grant.id))
                .and_then(|a| AccountName::parse(a).map_err(|e| e.to_string()));
            match parsed {
                Ok(name) => {
                    slots.push(outcomes.len());
                    names.push(name);
                    outcomes.push(Err(String::new()));
                }
                Err(e) => outcomes.push(Err(e)),
            }
        }
        let revoked = connector.revoke_many(&names).await;
        let revoked_at = self.now();
        self.crash_point(crate::CrashPoint::AfterRevoke);
        let mut to_verify = Vec::new();
        let mut verify_slots = Vec::new();
        let mut notes = Vec::new();
        for ((slot, name), result) in slots.iter().zip(names).zip(revoked) {
            match result {
                Ok(r) => {
                    notes.push(if r.account_existed {
                        format!("{} live session(s) terminated", r.sessions_killed)
                    } else {
                        // An earlier, interrupted attempt (or the target's native expiry)
                        // removed it: revoked_at is this retry, so the receipt errs long.
                        "account already absent when this attempt ran (removed by an earlier interrupted attempt or by the target's native expiry)".to_owned()
                    });
                    to_verify.push((name, self.unseal_secret(&grants[*slot])));
                    verify_slots.push(*slot);
                }
                Err(e) => outcomes[*slot] = Err(e.to_string()),
            }
        }
        let verified = connector.verify_gone_many(&to_verify).await;
        for ((slot, note), result) in verify_slots.into_iter().zip(notes).zip(verified) {
            outcomes[slot] = result
                .map(|v| (revoked_at, v.method, format!("{}; {note}", v.evidence)))
                .map_err(|e| e.to_string());
        }
        outcomes
    }

    pub async fn get_grant(&self, caller: &Caller, id: &GrantId) -> Result<Grant> {
        let grant = self
            .store
            .get_grant(id)
            .await?
            .ok_or_else(|| BrokerError::NotFound(format!("grant {id} not found")))?;
        match caller {
            Caller::Workload { identity } if *identity == grant.identity => Ok(grant),
            // Another identity's grant is answered as an unknown one: the caller learns
            // neither that it exists nor whose it is.
            Caller::Workload { .. } => Err(BrokerError::NotFound(format!("grant {id} not found"))),
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

    pub(crate) async fn end(
        &self,
        selector: EndSelector,
        reason: EndReason,
        by: Principal,
    ) -> Result<Vec<Grant>> {
        self.end_noted(selector, reason, by, None).await
    }

    /// Ends the grants `selector` matches; `note`, a person's reason, goes into each
    /// end's audit record.
    async fn end_noted(
        &self,
        selector: EndSelector,
        reason: EndReason,
        by: Principal,
        note: Option<&str>,
    ) -> Result<Vec<Grant>> {
        let end = GrantEnd {
            reason,
            by,
            at: self.now(),
        };
        let ended = match note {
            Some(note) => self.store.end_grants_noted(&selector, &end, note).await?,
            None => self.store.end_grants(&selector, &end).await?,
        };
        self.note_ended(&ended, reason);
        Ok(ended)
    }

    /// Counts grants that just ended and wakes the revocation worker.
    pub(crate) fn note_ended(&self, ended: &[Grant], reason: EndReason) {
        self.count_ended(ended, reason);
        if !ended.is_empty() {
            self.revoke_work.notify_one();
        }
    }

    fn count_ended(&self, ended: &[Grant], reason: EndReason) {
        if !ended.is_empty() {
            let n = i64::try_from(ended.len()).unwrap_or(i64::MAX);
            self.metrics.active_grants.dec_by(n);
            self.metrics.revoking_grants.inc_by(n);
            for _ in ended {
                self.metrics.ended(reason.as_str());
            }
        }
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
        self.end_one_noted(grant, reason, by, None).await
    }

    async fn end_one_noted(
        &self,
        grant: Grant,
        reason: EndReason,
        by: Principal,
        note: Option<&str>,
    ) -> Result<Grant> {
        if let Some(end) = grant.state.end() {
            return Err(BrokerError::Conflict(format!(
                "grant {} already ended ({} at {})",
                grant.id, end.reason, end.at
            )));
        }
        let mut ended = self
            .end_noted(EndSelector::One(grant.id.clone()), reason, by, note)
            .await?;
        match ended.pop() {
            Some(g) => Ok(g),
            None => Err(BrokerError::Conflict(format!(
                "grant {} ended concurrently",
                grant.id
            ))),
        }
    }

    /// An operator revokes one grant, all grants of an identity, or of a task reference,
    /// optionally saying why: the reason is kept in each end's audit record (`note`).
    pub async fn revoke(
        &self,
        caller: &Caller,
        scope: RevokeScope,
        reason: Option<&RevokeReason>,
    ) -> Result<Vec<Grant>> {
        caller.require_role(&[Role::Operator], "revoke grants")?;
        let note = reason.map(RevokeReason::as_str);
        let selector = match scope {
            RevokeScope::Grant(id) => {
                let grant = self.get_grant(caller, &id).await?;
                return Ok(vec![
                    self.end_one_noted(grant, EndReason::Revoked, caller.principal(), note)
                        .await?,
                ]);
            }
            RevokeScope::Identity(i) => EndSelector::Identity(i),
            RevokeScope::TaskRef(t) => EndSelector::TaskRef(t),
        };
        self.end_noted(selector, EndReason::Revoked, caller.principal(), note)
            .await
    }

    /// RFC 7662: is this token honoured right now? Inactive the moment its grant ends.
    /// This is the truth for any token, whoever asks; callers over the API go through
    /// [`Broker::introspect_from`].
    pub async fn introspect(&self, token: &str) -> Result<Introspection> {
        Ok(self.introspect_grant(token).await?.0)
    }

    /// [`Broker::introspect_from`] without a source address.
    pub async fn introspect_as(&self, caller: &Caller, token: &str) -> Result<Introspection> {
        self.introspect_from(caller, token, None).await
    }

    /// RFC 7662 for `caller`, whose request came from `source`: active only for a token it
    /// may learn about (see [`may_see_token`]); any other token answers exactly as an
    /// unknown one. An active answer is recorded as a use of the grant (usage monitoring);
    /// a token of a grant that has ended, is ending or has expired is a use after end
    /// (counted, and alerted once per grant), whoever presents it.
    pub async fn introspect_from(
        &self,
        caller: &Caller,
        token: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<Introspection> {
        self.introspect_presented(caller, token, source, None).await
    }

    /// [`Broker::introspect_from`] for a resource server that says how the token was
    /// presented to it (`presented`): then a token bound to a DPoP key (`cnf.jkt`) is
    /// active only with a proof for that request (method, URL, `ath` of the token) signed
    /// by that key and never seen before, and a token bound to a client certificate
    /// (`cnf.x5t#S256`) only when the thumbprint of the certificate the resource server
    /// saw is that one; otherwise it answers as an unknown token. A Bearer token is not
    /// affected.
    pub async fn introspect_presented(
        &self,
        caller: &Caller,
        token: &str,
        source: Option<std::net::IpAddr>,
        presented: Option<Presentation<'_>>,
    ) -> Result<Introspection> {
        let now = self.now();
        let inactive = Introspection {
            active: false,
            claims: None,
        };
        match self.lookup_token(token, now).await? {
            Some((claims, grant, true)) if grant.is_active_at(now) => {
                if !may_see_token(caller, &grant) {
                    return Ok(inactive);
                }
                if let (Some(p), Some(cnf)) = (&presented, &claims.cnf)
                    && cnf.x5t_s256.is_some()
                    && !p.client_cert.is_some_and(|t| cnf.certificate_matches(t))
                {
                    tracing::debug!(grant = %grant.id, "a certificate-bound token was presented without its certificate");
                    return Ok(inactive);
                }
                if let (Some(p), Some(cnf)) = (&presented, &claims.cnf)
                    && cnf.jkt.is_some()
                {
                    let (Some((method, url)), Some(proof)) = (p.request, p.proof) else {
                        tracing::debug!(grant = %grant.id, "a DPoP-bound token was presented without a proof");
                        return Ok(inactive);
                    };
                    if let Err(e) = self
                        .check_presented_proof(proof, method, url, token, cnf)
                        .await
                    {
                        if let BrokerError::Invalid { message, .. } = &e {
                            tracing::debug!(grant = %grant.id, reason = %message, "a DPoP-bound token was presented with a proof that fails");
                            return Ok(inactive);
                        }
                        return Err(e);
                    }
                }
                self.note_use(&grant.id, now, source, caller);
                Ok(active_view(claims, &grant))
            }
            Some((_, grant, _)) => {
                self.note_use_after_end(&grant, now, source, caller).await;
                Ok(inactive)
            }
            None => Ok(inactive),
        }
    }

    /// The introspection of `token`, with its grant when active.
    async fn introspect_grant(&self, token: &str) -> Result<(Introspection, Option<Grant>)> {
        let now = self.now();
        match self.lookup_token(token, now).await? {
            Some((claims, g, true)) if g.is_active_at(now) => {
                Ok((active_view(claims, &g), Some(g)))
            }
            _ => Ok((
                Introspection {
                    active: false,
                    claims: None,
                },
                None,
            )),
        }
    }

    /// The claims and grant of a token this broker signed, and whether its `exp`/`nbf`
    /// hold at `now`; None for a token it did not sign (or whose grant it does not know).
    /// An expired token's claims are read only to tell a use after end.
    async fn lookup_token(
        &self,
        token: &str,
        now: kairos_domain::Timestamp,
    ) -> Result<Option<(AccessClaims, Grant, bool)>> {
        let ring = self.key_ring();
        let (claims, in_time) = match ring.verify(token, now.as_secs()) {
            Ok(claims) => (claims, true),
            Err(kairos_crypto::issuer::TokenError::Expired { .. }) => {
                match ring.verify_ignoring_time(token) {
                    Ok(claims) => (claims, false),
                    Err(_) => return Ok(None),
                }
            }
            Err(_) => return Ok(None),
        };
        let Some(id) = GrantId::parse(&claims.jti) else {
            return Ok(None);
        };
        Ok(self
            .store
            .get_grant(&id)
            .await?
            .map(|grant| (claims, grant, in_time)))
    }

    /// RFC 7009: revokes a token if `caller` may (see [`may_revoke_token`]). Unknown,
    /// inactive and other callers' tokens are not an error and change nothing, so the
    /// answer is the same for all of them.
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
        if !may_revoke_token(caller, &grant) {
            tracing::debug!(caller = %caller.principal(), grant = %grant.id,
                "RFC 7009 revocation by a caller who may not revoke this token: nothing done");
            return Ok(());
        }
        if matches!(grant.state, GrantState::Active) {
            match self
                .end(EndSelector::One(id), EndReason::Revoked, caller.principal())
                .await
            {
                // Ended concurrently: as for an inactive token, nothing to do.
                Ok(_) | Err(BrokerError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Ends every active grant due at the clock's now (one batch of at most 500), and
    /// verifies the token grants among them at once: the end's own write queues their
    /// revocation jobs claimed by this call, so no claim waits for the revocation worker's
    /// next pass; they are checked and their receipts written before this returns.
    /// Account grants' jobs are left to the worker's per-target batches. Returns how many
    /// ended.
    pub async fn expire_due(self: &Arc<Self>) -> Result<usize> {
        self.expire_pass(None).await
    }

    /// As [`Broker::expire_due`], but the token receipts' write goes into `writes` instead
    /// of being waited for, so the next pass ends what falls due meanwhile. Their jobs stay
    /// claimed, under the lease, until then.
    pub(crate) async fn expire_due_pipelined(
        self: &Arc<Self>,
        writes: &mut RecordWrites,
    ) -> Result<usize> {
        self.expire_pass(Some(writes)).await
    }

    async fn expire_pass(self: &Arc<Self>, later: Option<&mut RecordWrites>) -> Result<usize> {
        let now = self.now();
        let end = GrantEnd {
            reason: EndReason::Expired,
            by: Principal::System("expirer"),
            at: now,
        };
        let claimed_until = now.plus(self.settings.revocation_lease);
        let ended = self
            .store
            .end_grants_claiming_tokens(
                &EndSelector::ExpiredBy { now, limit: 500 },
                &end,
                claimed_until,
            )
            .await?;
        self.count_ended(&ended, EndReason::Expired);
        // The worker has work only if an account grant ended: token grants are claimed.
        if ended.iter().any(|g| g.account.is_some()) {
            self.revoke_work.notify_one();
        }
        if let Some(oldest) = ended.iter().map(|g| g.expires_at).min() {
            self.metrics
                .expirer_lag_seconds
                .set(now.since(oldest).as_secs_f64());
        }
        let count = ended.len();
        // The store claimed exactly the ended grants that have no account. An ssh grant's
        // end takes writes of its own (its serial marked revoked, perhaps the KRL file), so
        // a pipelined pass hands those to a task and goes on.
        let (ssh, tokens): (Vec<Grant>, Vec<Grant>) = ended
            .into_iter()
            .filter(|g| g.account.is_none())
            .partition(|g| self.is_ssh_grant(g));
        match later {
            Some(writes) => {
                if !tokens.is_empty() {
                    let outcomes = self.check_tokens(tokens).await;
                    let b = Arc::clone(self);
                    writes.spawn(async move { b.record_all(outcomes).await });
                }
                if !ssh.is_empty() {
                    let b = Arc::clone(self);
                    writes.spawn(async move {
                        let outcomes = b.check_tokens(ssh).await;
                        b.record_all(outcomes).await
                    });
                }
            }
            None => {
                for claimed in [tokens, ssh] {
                    if !claimed.is_empty() {
                        let outcomes = self.check_tokens(claimed).await;
                        self.record_all(outcomes).await?;
                    }
                }
            }
        }
        Ok(count)
    }

    /// Claims due revocation jobs and runs propagate → verify → receipt on each: token
    /// grants checked one by one with their receipts written together, account grants
    /// batched per target (ends that fell due together are revoked together). Returns
    /// (verified, failed) once their receipts and failures are written.
    pub async fn revoke_due(self: &Arc<Self>) -> Result<(usize, usize)> {
        self.revoke_pass(None).await
    }

    /// The revocation worker's pass: as [`Broker::revoke_due`], but the receipts' writes
    /// go into `writes` instead of being waited for, so the next pass claims and
    /// propagates while they are written (and a target takes its next batch while the
    /// last one's receipts are written). Their jobs stay claimed, under the lease, until
    /// then. Returns (jobs verified or in hand, failed) as far as this pass knows.
    pub(crate) async fn revoke_due_pipelined(
        self: &Arc<Self>,
        writes: &mut RecordWrites,
    ) -> Result<(usize, usize)> {
        self.revoke_pass(Some(writes)).await
    }

    async fn revoke_pass(
        self: &Arc<Self>,
        mut later: Option<&mut RecordWrites>,
    ) -> Result<(usize, usize)> {
        let now = self.now();
        let lease = i64::try_from(self.settings.revocation_lease.as_millis()).unwrap_or(30_000);
        let busy = self.revoking_targets.list();
        let jobs = self
            .store
            .claim_revocations_except(now, REVOCATIONS_PER_PASS, lease, &busy)
            .await?;
        let mut by_target: BTreeMap<TargetName, Vec<Grant>> = BTreeMap::new();
        let mut tokens = Vec::new();
        for grant in jobs {
            if grant.account.is_some() {
                by_target
                    .entry(grant.target.clone())
                    .or_default()
                    .push(grant);
            } else {
                tokens.push(grant);
            }
        }
        let mut batches = Vec::new();
        let (mut verified, mut failed) = (0, 0);
        for (target, grants) in by_target {
            let b = Arc::clone(self);
            let running = self.revoking_targets.start(&target);
            let hand_off = later.is_some();
            if hand_off {
                verified += grants.len();
            }
            let batch = tokio::spawn(async move {
                // A slow target may take longer than the lease: the jobs stay claimed
                // until the batch's last receipt is written.
                let _keeper = b.keep_claimed(grants.iter().map(|g| g.id.clone()).collect());
                // Chunk by chunk, each chunk's receipts written while the target revokes
                // the next chunk.
                let mut records = tokio::task::JoinSet::new();
                let mut down: Option<String> = None;
                for chunk in grants.chunks(ACCOUNT_CHUNK) {
                    let outcomes = match &down {
                        // A chunk that failed whole (the target down or refusing Kairos):
                        // the rest wait for their retry rather than for a timeout each.
                        Some(why) => chunk
                            .iter()
                            .map(|_| Err(format!("not attempted in this pass: {why}")))
                            .collect(),
                        None => b.propagate_accounts(&target, chunk).await,
                    };
                    if down.is_none() && outcomes.iter().all(Result::is_err) {
                        down = outcomes.iter().find_map(|o| o.as_ref().err().cloned());
                    }
                    let pairs: Vec<(Grant, Outcome)> =
                        chunk.iter().cloned().zip(outcomes).collect();
                    let r = Arc::clone(&b);
                    records.spawn(async move { r.record_all(pairs).await });
                }
                let running = if hand_off {
                    // The target may take its next batch while these receipts are written.
                    drop(running);
                    b.revoke_work.notify_one();
                    None
                } else {
                    Some(running)
                };
                let (mut verified, mut failed, mut first_error) = (0, 0, None);
                while let Some(done) = records.join_next().await {
                    tally(done, &mut verified, &mut failed, &mut first_error);
                }
                drop(running);
                match first_error {
                    Some(e) => Err(e),
                    None => Ok((verified, failed)),
                }
            });
            match later.as_deref_mut() {
                Some(writes) => {
                    writes.spawn(async move { batch.await.map_err(BrokerError::internal)? });
                }
                None => batches.push(batch),
            }
        }
        let mut first_error = None;
        if !tokens.is_empty() {
            let outcomes = self.check_tokens(tokens).await;
            match later {
                Some(writes) => {
                    let ok = outcomes.iter().filter(|(_, o)| o.is_ok()).count();
                    verified += ok;
                    failed += outcomes.len() - ok;
                    let b = Arc::clone(self);
                    writes.spawn(async move { b.record_all(outcomes).await });
                }
                None => tally(
                    Ok(self.record_all(outcomes).await),
                    &mut verified,
                    &mut failed,
                    &mut first_error,
                ),
            }
        }
        // A slow or unreachable target must not hold back the next pass over the others:
        // past the deadline its batch goes on by itself and records its own outcomes (its
        // jobs stay claimed, under the lease, until then).
        let deadline = tokio::time::Instant::now() + TARGET_BATCH_WAIT;
        for batch in batches {
            match tokio::time::timeout_at(deadline, batch).await {
                Ok(done) => tally(done, &mut verified, &mut failed, &mut first_error),
                Err(_) => tracing::debug!(
                    "a target's revocation batch is still running; the next pass goes on without it"
                ),
            }
        }
        match first_error {
            // A store failure: the jobs it touched stay claimed and are retried after the lease.
            Some(e) => Err(e),
            None => Ok((verified, failed)),
        }
    }

    /// Propagates and verifies the end of claimed grants that have no account (tokens,
    /// ssh certificates): each token's check is one store read. One outcome per grant
    /// whose receipt can be written now, in order; a grant whose SETs still await their
    /// receivers' answers is left out (its job stays claimed until the lease lapses).
    async fn check_tokens(&self, tokens: Vec<Grant>) -> Vec<(Grant, Outcome)> {
        let mut outcomes = Vec::with_capacity(tokens.len());
        for grant in tokens {
            if self.is_ssh_grant(&grant) {
                let outcome = self.propagate_ssh(&grant).await;
                outcomes.push((grant, outcome));
                continue;
            }
            let outcome = match self.propagate_token(&grant).await {
                // Verified inactive at Kairos; resource servers that verify offline are
                // told by SETs, and the receipt waits for their answers.
                Ok((revoked_at, method, evidence)) => match self.set_stage(&grant).await {
                    Ok(SetStage::NoReceivers) => Ok((revoked_at, method, evidence)),
                    Ok(SetStage::Deferred) => continue,
                    Ok(SetStage::Done {
                        all_acknowledged,
                        evidence: told,
                    }) => Ok((
                        revoked_at,
                        if all_acknowledged {
                            format!("{method}+set")
                        } else {
                            format!("{method}+set(incomplete)")
                        },
                        format!("{evidence}; {told}"),
                    )),
                    Err(e) => Err(format!("its SETs could not be written: {e}")),
                },
                Err(e) => Err(e),
            };
            outcomes.push((grant, outcome));
        }
        outcomes
    }

    /// Writes every outcome: the receipts in one store write, the failures beside it
    /// (the store commits them together). Returns (verified, failed), or the first store
    /// error.
    async fn record_all(
        self: &Arc<Self>,
        outcomes: Vec<(Grant, Outcome)>,
    ) -> Result<(usize, usize)> {
        let mut writes = tokio::task::JoinSet::new();
        let (mut receipts, mut verified_grants) = (Vec::new(), Vec::new());
        for (grant, outcome) in outcomes {
            match outcome {
                Ok((revoked_at, method, evidence)) => {
                    receipts.push((
                        grant.id.clone(),
                        Receipt {
                            revoked_at,
                            verified_at: self.now(),
                            method,
                            evidence,
                        },
                    ));
                    verified_grants.push(grant);
                }
                Err(error) => {
                    let b = Arc::clone(self);
                    writes.spawn(
                        async move { b.record_failure(grant, error).await.map(|()| (0, 1)) },
                    );
                }
            }
        }
        if !receipts.is_empty() {
            let b = Arc::clone(self);
            writes.spawn(async move {
                b.record_receipts(verified_grants, receipts)
                    .await
                    .map(|n| (n, 0))
            });
        }
        let (mut verified, mut failed) = (0, 0);
        let mut first_error = None;
        while let Some(done) = writes.join_next().await {
            match done {
                Ok(Ok((v, f))) => {
                    verified += v;
                    failed += f;
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(join) => {
                    first_error.get_or_insert(BrokerError::internal(join));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((verified, failed)),
        }
    }

    /// Ending → Ended for each verified grant, in one store write. Returns how many.
    async fn record_receipts(
        &self,
        claimed: Vec<Grant>,
        receipts: Vec<(GrantId, Receipt)>,
    ) -> Result<usize> {
        let alarming: std::collections::HashSet<GrantId> = claimed
            .iter()
            .filter(|g| {
                matches!(&g.state, GrantState::Ending { attempts, .. }
                    if *attempts >= self.settings.revocation_alarm_after)
            })
            .map(|g| g.id.clone())
            .collect();
        let results = self.store.complete_revocations(receipts).await?;
        let mut verified = 0;
        for result in results {
            match result {
                Ok(g) => {
                    self.metrics.revoking_grants.dec();
                    self.metrics.revocations_verified.inc();
                    if let GrantState::Ended { end, receipt } = &g.state {
                        self.metrics
                            .grant_verified_gone_seconds
                            .observe(receipt.verified_at.since(end.at).as_secs_f64());
                    }
                    if alarming.contains(&g.id) {
                        // It alarmed and is now verified: the alarm clears.
                        self.metrics.revocations_alarming.dec();
                    }
                    verified += 1;
                }
                // Another worker completed it (an expired lease re-claimed): nothing lost.
                Err(e) => tracing::warn!(error = %e, "a verified revocation could not be recorded"),
            }
        }
        Ok(verified)
    }

    /// A failed attempt: recorded with its error, retried after a capped backoff; the alarm
    /// is raised when it keeps failing.
    async fn record_failure(&self, grant: Grant, error: String) -> Result<()> {
        let attempts = match &grant.state {
            GrantState::Ending { attempts, .. } => attempts.saturating_add(1),
            _ => 1,
        };
        let retry_at = self.now().plus(backoff_from(
            self.settings.revocation_backoff_unit,
            attempts,
        ));
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
        Ok(())
    }

    /// One look of the outage prober: reads which targets have failing revocations (and
    /// which of them alarm, for `/v1/health`), probes each with a cheap `list_managed`,
    /// and when one answers after it did not (or for the first time since its
    /// revocations started failing), makes its whole backlog due now and wakes the
    /// revocation worker. `answering` keeps, per failing target, how many probes in a row
    /// it answered.
    pub(crate) async fn probe_failing_targets(
        self: &Arc<Self>,
        answering: &mut BTreeMap<TargetName, u32>,
    ) -> Result<()> {
        let failing = self.store.failing_targets(1).await?;
        self.set_degraded(
            failing
                .iter()
                .filter(|(_, attempts)| *attempts >= self.settings.revocation_alarm_after)
                .map(|(t, _)| t.clone())
                .collect(),
        );
        answering.retain(|t, _| failing.iter().any(|(f, _)| f == t));
        let targets = self.targets();
        let wait = self
            .settings
            .outage_probe_interval
            .max(Duration::from_secs(1));
        let mut probes = tokio::task::JoinSet::new();
        for (name, _) in failing {
            let Some(connector) = targets.get(&name).cloned() else {
                continue;
            };
            probes.spawn(async move {
                let answered = matches!(
                    tokio::time::timeout(wait, connector.list_managed()).await,
                    Ok(Ok(_))
                );
                (name, answered)
            });
        }
        while let Some(done) = probes.join_next().await {
            let Ok((name, answered)) = done else { continue };
            let streak = answering.entry(name.clone()).or_insert(0);
            if !answered {
                *streak = 0;
                continue;
            }
            *streak = streak.saturating_add(1);
            if *streak <= RECOVERY_PROBES {
                let moved = self.store.retry_target_now(&name, self.now()).await?;
                if moved > 0 {
                    tracing::info!(target = %name, jobs = moved,
                        "target answers again: retrying its failed revocations now");
                    self.revoke_work.notify_one();
                }
            }
        }
        Ok(())
    }
}

/// How long a revocation pass waits for each target's batch before it lets the batch
/// finish on its own.
const TARGET_BATCH_WAIT: Duration = Duration::from_secs(1);

/// The targets with a revocation batch running on this replica. A batch that outlives
/// [`TARGET_BATCH_WAIT`] goes on by itself; without this, each later pass would claim
/// another batch for the same slow target and run it beside the first, loading the
/// target further until the first batch's lease lapsed and its jobs were claimed twice.
#[derive(Debug, Default)]
pub(crate) struct BusyTargets(Arc<std::sync::Mutex<std::collections::HashSet<TargetName>>>);

impl BusyTargets {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<TargetName>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The targets whose batch is running now.
    pub(crate) fn list(&self) -> Vec<TargetName> {
        self.lock().iter().cloned().collect()
    }

    /// Marks `target` busy until the returned guard is dropped (the batch's end, however
    /// it ends).
    pub(crate) fn start(&self, target: &TargetName) -> BusyGuard {
        self.lock().insert(target.clone());
        BusyGuard {
            set: Arc::clone(&self.0),
            target: target.clone(),
        }
    }
}

/// See [`BusyTargets::start`].
pub(crate) struct BusyGuard {
    set: Arc<std::sync::Mutex<std::collections::HashSet<TargetName>>>,
    target: TargetName,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.target);
    }
}

impl Broker {
    /// Renews the claim on `ids` every third of the revocation lease until the returned
    /// guard is dropped, so that no worker (of this replica or another) takes jobs that are
    /// still in hand once their first lease lapses. A renewal that fails is logged and
    /// tried again at the next tick; were they all to fail, the jobs would be claimed again
    /// after the lease, as after a crash (a second revocation of an account is harmless).
    fn keep_claimed(self: &Arc<Self>, ids: Vec<GrantId>) -> ClaimKeeper {
        let lease = self.settings.revocation_lease;
        let every = lease / 3;
        let b = Arc::clone(self);
        let task = tokio::spawn(async move {
            if every.is_zero() {
                return;
            }
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let until = b.now().plus(lease);
                if let Err(e) = b.store.extend_revocation_claims(&ids, until).await {
                    tracing::warn!(error = %e, jobs = ids.len(),
                        "the claim on revocation jobs in hand could not be renewed");
                }
            }
        });
        ClaimKeeper(task)
    }
}

/// Stops renewing a batch's claims when dropped (see [`Broker::keep_claimed`]).
struct ClaimKeeper(tokio::task::JoinHandle<()>);

impl Drop for ClaimKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The receipts' and failures' writes of pipelined revocation passes, each answering
/// (verified, failed) or the store's error.
pub(crate) type RecordWrites = tokio::task::JoinSet<Result<(usize, usize)>>;

/// When a grant's access was revoked, and the method and evidence of its verification;
/// or why the attempt failed.
type Outcome = std::result::Result<(kairos_domain::Timestamp, String, String), String>;

fn tally(
    done: std::result::Result<Result<(usize, usize)>, tokio::task::JoinError>,
    verified: &mut usize,
    failed: &mut usize,
    first_error: &mut Option<BrokerError>,
) {
    match done {
        Ok(Ok((v, f))) => {
            *verified += v;
            *failed += f;
        }
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

/// Revocation jobs one pass claims. Each pass pays fixed costs (the claim, per target a
/// PostgreSQL transaction, a catalog check and two login probes, the receipts' write)
/// whatever its size, and passes run one after another, so larger passes revoke more per
/// second when thousands of grants end at once; the store writes 250 grants a statement.
const REVOCATIONS_PER_PASS: u32 = 5_000;

/// Account grants a target revokes in one go within a pass's batch: one chunk's receipts
/// are written (by the store's writer) while the target revokes the next, so neither
/// waits for the other; each chunk costs the connector its fixed statements and two login
/// probes.
const ACCOUNT_CHUNK: usize = 1_000;

/// How a resource server received a token: the request's method and URL, the DPoP proof
/// that came with it, and the client certificate it came over (each if any).
#[derive(Debug, Clone, Copy, Default)]
pub struct Presentation<'a> {
    /// The method and URL of the resource server's request (to check a DPoP proof).
    pub request: Option<(&'a str, &'a str)>,
    pub proof: Option<&'a str>,
    /// RFC 8705 `x5t#S256` of the client certificate the resource server saw; None when
    /// the client showed none.
    pub client_cert: Option<&'a str>,
}

/// The RFC 7662 view of an active grant's token (`exp` no later than the grant's end).
fn active_view(claims: AccessClaims, grant: &Grant) -> Introspection {
    Introspection {
        active: true,
        claims: Some(AccessClaims {
            exp: claims.exp.min(grant.expires_at.as_secs()),
            ..claims
        }),
    }
}

/// Who may learn about a token by introspection: people (admin, operator, approver and
/// auditor, who may read every grant anyway, and whom `kairos introspect` serves), a
/// resource server for the tokens of its targets, a workload for its own tokens.
pub fn may_see_token(caller: &Caller, grant: &Grant) -> bool {
    match caller {
        Caller::Workload { identity } => *identity == grant.identity,
        Caller::User(u) => match u.role {
            Role::ResourceServer => u.targets.contains(&grant.target),
            Role::Admin | Role::Operator | Role::Approver | Role::Auditor => true,
        },
    }
}

/// Who may revoke a token (RFC 7009): its own workload, admins and operators, and the
/// resource server of its target.
pub fn may_revoke_token(caller: &Caller, grant: &Grant) -> bool {
    match caller {
        Caller::Workload { identity } => *identity == grant.identity,
        Caller::User(u) => match u.role {
            Role::Admin | Role::Operator => true,
            Role::ResourceServer => u.targets.contains(&grant.target),
            Role::Approver | Role::Auditor => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_busy_while_its_batch_guard_lives() {
        let busy = BusyTargets::default();
        let mq = TargetName::parse("queues").unwrap_or_else(|e| panic!("{e}"));
        let db = TargetName::parse("orders-db").unwrap_or_else(|e| panic!("{e}"));
        let first = busy.start(&mq);
        {
            let _other = busy.start(&db);
            let mut now = busy.list();
            now.sort();
            assert_eq!(now, vec![db.clone(), mq.clone()]);
        }
        assert_eq!(busy.list(), vec![mq]);
        drop(first);
        assert!(busy.list().is_empty());
    }
}
