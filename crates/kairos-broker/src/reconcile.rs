//! The reconciler: compares what exists downstream with what should, and removes residue.
//!
//! For each database target, every account carrying the managed prefix must back an active
//! (or just-provisioning) grant. Anything else — left by a crash, a failed revocation, or
//! made by hand with the prefix — is revoked, verified and audited as `residue_removed`.
//! An active grant whose account is missing is flagged (`account_missing`): only one
//! active both before and after the accounts are listed, so that a grant activating
//! while the pass runs is never reported. A grant stuck
//! in `provisioning` (its issuer crashed mid-way) is aborted through the end path.

use std::collections::BTreeSet;
use std::sync::Arc;

use kairos_connectors::{AccountName, Connector};
use kairos_domain::{
    AuditDraft, AuditKind, EndReason, GrantEnd, GrantState, Principal, TargetName,
};
use kairos_store::{EndSelector, GrantFilter, GrantStateFilter};

use crate::{Broker, Result};

/// What one pass over one target found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub accounts_seen: usize,
    /// Live sessions of accounts that back active grants (recorded as their use).
    pub sessions_seen: usize,
    pub residue_removed: Vec<String>,
    pub missing_accounts: Vec<String>,
    pub provisioning_aborted: usize,
    /// Why residue was not removed on this target this pass (its server could not be
    /// identified, or another target on its server has an overlapping managed prefix).
    pub removal_blocked: Option<String>,
    /// Listed accounts left alone because a live grant of another target names them.
    pub other_targets_accounts: Vec<String>,
}

impl Broker {
    /// One reconcile pass over every database target.
    pub async fn reconcile_all(&self) -> Vec<(TargetName, Result<ReconcileReport>)> {
        let targets = self.targets();
        let mut out = Vec::new();
        for (name, connector) in targets.iter() {
            out.push((
                name.clone(),
                self.reconcile(name, Arc::clone(connector)).await,
            ));
        }
        out
    }

    /// One reconcile pass over one target.
    pub async fn reconcile(
        &self,
        target: &TargetName,
        connector: Arc<dyn Connector>,
    ) -> Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        let now = self.now();

        // Interrupted provisioning: abort it; the revocation removes whatever exists.
        let stuck = self
            .store
            .list_grants(&GrantFilter {
                state: Some(GrantStateFilter::Provisioning),
                target: Some(target.clone()),
                issued_before: Some(kairos_domain::Timestamp::from_millis(
                    now.as_millis()
                        - i64::try_from(self.settings.provisioning_grace.as_millis()).unwrap_or(0),
                )),
                ..GrantFilter::default()
            })
            .await?;
        for g in stuck {
            let end = GrantEnd {
                reason: EndReason::Aborted,
                by: Principal::System("reconciler"),
                at: now,
            };
            let ended = self
                .store
                .end_grants(&EndSelector::One(g.id.clone()), &end)
                .await?
                .len();
            for _ in 0..ended {
                self.metrics.revoking_grants.inc();
                self.metrics.ended(EndReason::Aborted.as_str());
            }
            report.provisioning_aborted += ended;
        }
        if report.provisioning_aborted > 0 {
            self.revoke_work.notify_one();
        }

        // The active grants before the listing: only these are judged for a missing
        // account. A grant activates after its account exists, so one active before the
        // listing has an account the listing must show; one that activates between the
        // listing and the read below made its account after the listing looked.
        let active_before: BTreeSet<kairos_domain::GrantId> = self
            .active_grants(target)
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect();
        let existing = connector
            .list_managed()
            .await
            .map_err(crate::accounts::target_error)?;
        report.accounts_seen = existing.len();
        let existing_names: BTreeSet<String> = existing.iter().map(ToString::to_string).collect();

        // Only when no other target on this server could own these accounts.
        if let Err(reason) = self.targets().removal_allowed(target).await {
            tracing::error!(target = %target, reason = %reason, "the reconciler removes nothing on this target");
            report.removal_blocked = Some(reason);
        }

        let removal_on = report.removal_blocked.is_none();
        for account in existing.iter().filter(|_| removal_on) {
            // Every target's grants: accounts are server-wide, and a live grant of any
            // target (another target on this server, or this one under its former name)
            // backs the account, whatever the configuration check concluded.
            let grants = self
                .store
                .list_grants(&GrantFilter {
                    account: Some(account.to_string()),
                    ..GrantFilter::default()
                })
                .await?;
            // Backed: an active grant, one still provisioning, or one whose revocation is
            // queued (the revocation worker owns it).
            let backing = grants.iter().find(|g| {
                matches!(
                    g.state,
                    GrantState::Active | GrantState::Provisioning | GrantState::Ending { .. }
                )
            });
            if let Some(g) = backing {
                if &g.target != target {
                    tracing::warn!(target = %target, account = %account, grant = %g.id, owner = %g.target,
                        "a listed account backs a live grant of another target; left alone");
                    report.other_targets_accounts.push(account.to_string());
                }
                continue;
            }
            let own = grants.iter().find(|g| &g.target == target);
            if self
                .remove_residue(target, &*connector, account, own)
                .await?
            {
                report.residue_removed.push(account.to_string());
            }
        }

        // Grants active before and after the listing whose account is missing downstream
        // (still active: one that ended meanwhile had its account dropped by its end).
        let active = self.active_grants(target).await?;
        for g in active.into_iter().filter(|g| active_before.contains(&g.id)) {
            let Some(account) = &g.account else { continue };
            if existing_names.contains(account) {
                continue;
            }
            tracing::error!(grant = %g.id, target = %target, account, "active grant's account is missing downstream");
            report.missing_accounts.push(account.clone());
            // Audited once per grant, not on every pass.
            let already = self
                .store
                .list_audit(&kairos_store::AuditFilter {
                    grant_id: Some(g.id.to_string()),
                    ..kairos_store::AuditFilter::default()
                })
                .await?
                .iter()
                .any(|r| r.kind == AuditKind::AccountMissing);
            if already {
                continue;
            }
            self.store
                .append_audit(vec![
                    AuditDraft::new(AuditKind::AccountMissing, Principal::System("reconciler"))
                        .identity(&g.identity)
                        .grant(&g.id)
                        .task_ref(&g.task.reference)
                        .data(serde_json::json!({ "target": target, "account": account })),
                ])
                .await?;
        }
        self.metrics
            .accounts_missing
            .set(i64::try_from(report.missing_accounts.len()).unwrap_or(i64::MAX));
        // Live sessions are uses of the grants their accounts back (usage monitoring),
        // listed last: a look downstream between the account listing and the active-grant
        // read above would widen the window in which a grant that turns active in between
        // looks like its account is missing. A target that cannot list sessions still got
        // its residue removed.
        match self.record_sessions(target, &connector).await {
            Ok(n) => report.sessions_seen = n,
            Err(e) => {
                tracing::warn!(target = %target, error = %crate::ending::ErrorChain(&e), "listing sessions failed; usage not recorded this pass")
            }
        }
        Ok(report)
    }

    async fn active_grants(&self, target: &TargetName) -> Result<Vec<kairos_domain::Grant>> {
        Ok(self
            .store
            .list_grants(&GrantFilter {
                state: Some(GrantStateFilter::Active),
                target: Some(target.clone()),
                ..GrantFilter::default()
            })
            .await?)
    }

    /// Revokes, verifies and audits a residual account; false when it was already gone.
    async fn remove_residue(
        &self,
        target: &TargetName,
        connector: &dyn Connector,
        account: &AccountName,
        grant: Option<&kairos_domain::Grant>,
    ) -> Result<bool> {
        let found = match grant {
            None => "listed downstream with the managed prefix; no grant ever named it (a crash before the grant was recorded, or made by hand)".to_owned(),
            Some(g) => format!("listed downstream although grant {} is {}", g.id, g.state.name()),
        };
        tracing::warn!(target = %target, account = %account, "removing residual account");
        let revoked = connector
            .revoke(account)
            .await
            .map_err(crate::accounts::target_error)?;
        if !revoked.account_existed {
            // Gone since it was listed: its grant's revocation (or a person) got there
            // first, between the listing and this look. Nothing remained to remove.
            tracing::debug!(target = %target, account = %account, "listed account already gone");
            return Ok(false);
        }
        let verification = connector
            .verify_gone(account, grant.and_then(|g| self.unseal_secret(g)).as_ref())
            .await
            .map_err(crate::accounts::target_error)?;
        self.metrics.residue_removed.inc();
        let mut draft = AuditDraft::new(AuditKind::ResidueRemoved, Principal::System("reconciler"))
            .data(serde_json::json!({
                "target": target,
                "account": account.as_str(),
                "found": found,
                "sessions_killed": revoked.sessions_killed,
                "verified_at": self.now().to_rfc3339(),
                "method": verification.method,
                "evidence": verification.evidence,
            }));
        if let Some(g) = grant {
            draft = draft
                .identity(&g.identity)
                .grant(&g.id)
                .task_ref(&g.task.reference);
        }
        self.store.append_audit(vec![draft]).await?;
        Ok(true)
    }
}
