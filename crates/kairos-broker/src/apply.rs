//! Applying a configuration: what it changes, which live grants it ends, and ending those
//! through the one end path while the removed targets keep their connectors until every
//! grant on them is verified gone. A grant ends because the configuration removed what it
//! stands on (`identity_removed`, `team_removed`, `target_removed`,
//! `entitlement_removed`), or because the new policies deny it (`policy_changed`, see
//! [`crate::governance::policy_change`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use kairos_config::{Catalog, ConfigBundle, ConfigDiff};
use kairos_domain::{
    AuditDraft, AuditKind, EndReason, EntitlementName, Grant, GrantEnd, GrantId, IdentityName,
    Principal, TargetName, Timestamp,
};
use kairos_store::{EndSelector, GrantFilter, GrantStateFilter};

use crate::targets::Targets;
use crate::{Broker, BrokerError, Result};

/// How far before an apply's first look at the live grants its second look (after the
/// new catalog is in force) starts: a request decided under the old catalog takes its
/// issue time before it commits (a group commit, at most seconds), so a grant committed
/// after the first look may carry an earlier time. The second look reads only grants
/// issued since, so at a hundred thousand live grants it reads the last minute's.
const LATE_GRANT_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The ending grants grouped by reason (for one end per reason), in a stable order.
fn by_reason(ending: &[EndingGrant]) -> Vec<(EndReason, Vec<GrantId>)> {
    let mut out: Vec<(EndReason, Vec<GrantId>)> = Vec::new();
    for e in ending {
        match out.iter_mut().find(|(r, _)| *r == e.reason) {
            Some((_, ids)) => ids.push(e.grant.clone()),
            None => out.push((e.reason, vec![e.grant.clone()])),
        }
    }
    out.sort_by_key(|(r, _)| r.as_str());
    out
}

/// Whether an apply changes anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ApplyMode {
    /// Validate, save and switch to the new catalog, ending the grants it orphans.
    #[default]
    Apply,
    /// Validate and report what would change and which grants would end; change nothing.
    DryRun,
}

/// What to do with a bundle that removes every identity or every target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemoveAll {
    /// Refuse it (an empty or truncated file is far likelier than an intended wipe).
    #[default]
    Refuse,
    /// The operator said so explicitly (`--allow-remove-all`).
    DangerAllow,
}

/// How to apply a configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    pub mode: ApplyMode,
    pub remove_all: RemoveAll,
}

/// A live grant the new catalog ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndingGrant {
    pub grant: GrantId,
    pub identity: IdentityName,
    pub entitlement: EntitlementName,
    pub target: TargetName,
    /// `identity_removed`, `team_removed`, `target_removed`, `entitlement_removed` or
    /// `policy_changed`.
    pub reason: EndReason,
    /// Why, in a sentence: e.g. `target orders-db removed`, or the decision that denies it.
    pub because: String,
}

/// What an apply changed (or, on a dry run, would change).
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub diff: ConfigDiff,
    /// The grants it ended (or would end), each with its reason.
    pub ending: Vec<EndingGrant>,
    pub mode: ApplyMode,
    /// What an operator should know, one sentence each naming its target: e.g. MariaDB's
    /// event scheduler is off (no native expiry), or a target's server could not be asked
    /// which server it is.
    pub warnings: Vec<String>,
}

/// Why `grant` cannot stand under `new` (`old` names the team of a removed identity): the
/// end reason naming what was removed and a sentence, or `None` when everything it stands
/// on is still there.
pub fn orphaned_by(old: &Catalog, new: &Catalog, grant: &Grant) -> Option<(EndReason, String)> {
    if new.identity(&grant.identity).is_none() {
        let team = old
            .identity(&grant.identity)
            .map(|i| &i.owner)
            .filter(|team| new.team(team).is_none());
        return Some(match team {
            Some(team) => (
                EndReason::TeamRemoved,
                format!("team {team} (and its identity {}) removed", grant.identity),
            ),
            None => (
                EndReason::IdentityRemoved,
                format!("identity {} removed", grant.identity),
            ),
        });
    }
    if new.target(&grant.target).is_none() {
        return Some((
            EndReason::TargetRemoved,
            format!("target {} removed", grant.target),
        ));
    }
    match new.entitlement(&grant.entitlement) {
        None => Some((
            EndReason::EntitlementRemoved,
            format!("entitlement {} removed", grant.entitlement),
        )),
        Some(e) if e.target != grant.target => Some((
            EndReason::EntitlementRemoved,
            format!(
                "entitlement {} moved from target {} to {}",
                grant.entitlement, grant.target, e.target
            ),
        )),
        Some(_) => None,
    }
}

/// Whether `new` can orphan any grant of `old`: it drops an identity, a target or an
/// entitlement, or moves an entitlement to another target (a removed team takes its
/// identities with it). When it cannot, no grant needs reading: a restart that applies the
/// same configuration over a million live grants must not scan them.
pub fn may_orphan(old: &Catalog, new: &Catalog) -> bool {
    old.identities().any(|i| new.identity(&i.name).is_none())
        || old.targets().any(|t| new.target(&t.name).is_none())
        || old.entitlements().any(|e| {
            new.entitlement(&e.name)
                .is_none_or(|n| n.target != e.target)
        })
}

/// A bundle that removes every identity or every target of a non-empty catalog: refused
/// unless the operator allows it, with what it would remove.
fn removes_everything(old: &Catalog, new: &Catalog) -> Option<String> {
    let identities = old.identities().count();
    let targets = old.targets().count();
    if identities > 0 && new.identities().next().is_none() {
        return Some(format!("all {identities} identities"));
    }
    if targets > 0 && new.targets().next().is_none() {
        return Some(format!("all {targets} targets"));
    }
    None
}

impl Broker {
    /// Validates a configuration bundle and, unless this is a dry run, applies it; all or
    /// nothing. The grants it orphans end in the transaction that saves it.
    pub async fn apply_config_with(
        &self,
        by: &Principal,
        bundle: ConfigBundle,
        options: ApplyOptions,
    ) -> Result<ApplyReport> {
        let catalog = Catalog::from_bundle(&bundle)
            .map_err(|errors| BrokerError::invalid("invalid_config", errors.to_string()))?;
        // A standing exception is a migration state with a deadline: one already past it
        // is refused here (at load the catalog has no clock), naming file, line and key.
        catalog
            .exceptions_ended_by(self.now())
            .map_err(|errors| BrokerError::invalid("invalid_config", errors.to_string()))?;
        let verifier = Self::verifier_for(&catalog)?;
        let live_targets = Targets::from_catalog(&catalog)?;
        // Every database target's server is asked which server it is: two targets of one
        // kind on one server with overlapping managed prefixes are refused, both named.
        let check = live_targets.check_servers().await;
        if !check.overlaps.is_empty() {
            let all: Vec<String> = check.overlaps.iter().map(ToString::to_string).collect();
            return Err(BrokerError::invalid("invalid_config", all.join("; ")));
        }
        let mut warnings = check.warnings;
        // Owners and approvers are people: names that are not (yet) users able to act
        // are warnings, so a configuration can be applied before its people are added.
        warnings.extend(crate::governance::orphans::people_warnings(
            &catalog,
            &self.people().await?,
        ));
        // From here to the swap, no replica sync swaps in another catalog underneath.
        let sync_guard = self.sync.lock().await;
        let (old, old_version) = self.versioned_catalog();
        let diff = Catalog::diff(&old, &catalog);
        if let Some(what) = removes_everything(&old, &catalog)
            && options.remove_all == RemoveAll::Refuse
        {
            return Err(BrokerError::invalid(
                "removes_everything",
                format!(
                    "{} would remove {what}; if that is meant, apply again with --allow-remove-all (API: allow_remove_all=true); see what it changes with --dry-run",
                    bundle.main_path
                ),
            ));
        }
        // Read before the first look: a grant issued from here on may have been decided
        // under the old policies after the look, and is looked at again after the swap.
        let looked_from = self.now();
        let ending = self.ending_under(&old, &catalog, None).await?;
        if options.mode == ApplyMode::DryRun {
            return Ok(ApplyReport {
                diff,
                ending,
                mode: ApplyMode::DryRun,
                warnings,
            });
        }
        for warning in &warnings {
            tracing::warn!(warning = %warning, "configuration applied with a warning");
        }
        let json = serde_json::to_string(&bundle).map_err(BrokerError::internal)?;
        let audit = AuditDraft::new(AuditKind::ConfigApplied, by).data(serde_json::json!({
            "file": bundle.main_path,
            "created": diff.created,
            "changed": diff.changed,
            "removed": diff.removed,
            "grants_ended": ending.iter().map(|o| serde_json::json!({
                "grant": o.grant, "reason": o.reason, "because": o.because,
            })).collect::<Vec<_>>(),
        }));
        let mut ended = Vec::new();
        let mut version = old_version;
        if !diff.is_empty() || self.store.current_config().await?.is_none() {
            let ids: Vec<(GrantId, EndReason)> =
                ending.iter().map(|o| (o.grant.clone(), o.reason)).collect();
            let (saved, done) = self
                .store
                .save_config_ending(&json, self.now(), audit, &ids, by)
                .await?;
            ended = done;
            version = saved;
        }
        let ended_ids: std::collections::BTreeSet<&GrantId> = ended.iter().map(|g| &g.id).collect();
        let ending: Vec<EndingGrant> = ending
            .into_iter()
            .filter(|o| ended_ids.contains(&o.grant))
            .collect();
        self.note_ended_each(&ended);
        let targets = self.keep_removed_targets(&catalog, live_targets).await?;
        self.swap_catalog(catalog, version, verifier, targets);
        drop(sync_guard);
        if let Err(e) = self.prepare_ssh_targets().await {
            tracing::error!(error = %e, "an ssh target's CA key cannot be made or its krl_file written; sshd refuses every key while it cannot read its RevokedKeys file");
        }
        // A request decided under the old catalog may have committed a grant between the
        // look above and the swap: end those too, so none outlives what it stands on or
        // stands against the policies in force.
        self.end_late_grants(&old, looked_from, by).await?;
        // Who owns what may have changed: flag or clear orphans at once.
        self.orphan_pass_now("configuration applied").await;
        Ok(ApplyReport {
            diff,
            ending,
            mode: ApplyMode::Apply,
            warnings,
        })
    }

    /// Ends the live grants issued since `looked_from` (less a margin) that the catalog now
    /// in force orphans or denies, where `old` is the catalog they were decided under.
    pub(crate) async fn end_late_grants(
        &self,
        old: &Catalog,
        looked_from: Timestamp,
        by: &Principal,
    ) -> Result<usize> {
        let margin = i64::try_from(LATE_GRANT_MARGIN.as_millis()).unwrap_or(i64::MAX);
        let late_from = Timestamp::from_millis(looked_from.as_millis().saturating_sub(margin));
        let late = self
            .ending_under(old, &self.catalog(), Some(late_from))
            .await?;
        let mut n = 0;
        for (reason, ids) in by_reason(&late) {
            let end = GrantEnd {
                reason,
                by: by.clone(),
                at: self.now(),
            };
            let done = self.store.end_grants(&EndSelector::Ids(ids), &end).await?;
            n += done.len();
            self.note_ended(&done, reason);
        }
        Ok(n)
    }

    /// The live grants `new` ends: those it orphans (all of them, or with `issued_from`
    /// those issued since) and, of the others, those its policies deny. By grant id.
    async fn ending_under(
        &self,
        old: &Catalog,
        new: &Catalog,
        issued_from: Option<Timestamp>,
    ) -> Result<Vec<EndingGrant>> {
        let mut out = self.orphans(old, new, issued_from).await?;
        let orphaned: std::collections::BTreeSet<GrantId> =
            out.iter().map(|o| o.grant.clone()).collect();
        let denied = self.policy_denied(old, new, issued_from).await?;
        out.extend(denied.into_iter().filter(|d| !orphaned.contains(&d.grant)));
        out.sort_by(|a, b| a.grant.cmp(&b.grant));
        Ok(out)
    }

    /// Counts grants that just ended, each under its own reason, and wakes the worker.
    fn note_ended_each(&self, ended: &[Grant]) {
        let mut reasons: Vec<EndReason> = ended
            .iter()
            .filter_map(|g| g.state.end().map(|e| e.reason))
            .collect();
        reasons.sort_by_key(|r| r.as_str());
        reasons.dedup();
        for reason in reasons {
            let these: Vec<Grant> = ended
                .iter()
                .filter(|g| g.state.end().is_some_and(|e| e.reason == reason))
                .cloned()
                .collect();
            self.note_ended(&these, reason);
        }
    }

    /// The live (active or provisioning) grants that `new` orphans; with `issued_from`,
    /// only those issued since.
    async fn orphans(
        &self,
        old: &Catalog,
        new: &Catalog,
        issued_from: Option<Timestamp>,
    ) -> Result<Vec<EndingGrant>> {
        let mut out = Vec::new();
        if !may_orphan(old, new) {
            return Ok(out);
        }
        for state in [GrantStateFilter::Active, GrantStateFilter::Provisioning] {
            let grants = self
                .store
                .list_grants(&GrantFilter {
                    state: Some(state),
                    ..GrantFilter::default()
                })
                .await?;
            for g in grants {
                if issued_from.is_some_and(|from| g.issued_at < from) {
                    continue;
                }
                if let Some((reason, because)) = orphaned_by(old, new, &g) {
                    out.push(EndingGrant {
                        grant: g.id,
                        identity: g.identity,
                        entitlement: g.entitlement,
                        target: g.target,
                        reason,
                        because,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.grant.cmp(&b.grant));
        Ok(out)
    }

    /// The new catalog's connectors, plus those of removed targets that still have grants
    /// not verified gone: the revocation worker needs them; the reconciler does not see them.
    pub(crate) async fn keep_removed_targets(
        &self,
        new: &Catalog,
        live: Targets,
    ) -> Result<Targets> {
        let current = self.targets();
        let mut retired = BTreeMap::new();
        for (name, connector) in current.all() {
            if new.target(name).is_some() || !self.has_unfinished_grants(name).await? {
                continue;
            }
            retired.insert(name.clone(), Arc::clone(connector));
        }
        Ok(live.with_retired(retired))
    }

    async fn has_unfinished_grants(&self, target: &TargetName) -> Result<bool> {
        for state in [
            GrantStateFilter::Revoking,
            GrantStateFilter::Active,
            GrantStateFilter::Provisioning,
        ] {
            let some = self
                .store
                .list_grants(&GrantFilter {
                    state: Some(state),
                    target: Some(target.clone()),
                    limit: Some(1),
                    ..GrantFilter::default()
                })
                .await?;
            if !some.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Drops the connectors of removed targets once every grant on them is verified gone.
    /// Returns the targets dropped.
    pub async fn prune_removed_targets(&self) -> Result<Vec<TargetName>> {
        let current = self.targets();
        let mut done = Vec::new();
        for name in current.retired_names() {
            if !self.has_unfinished_grants(name).await? {
                done.push(name.clone());
            }
        }
        if !done.is_empty() {
            self.drop_retired(&done);
        }
        Ok(done)
    }
}

impl Broker {
    /// The catalog in force, for people who operate or audit Kairos (admins, operators,
    /// auditors). It holds no secrets: admin URLs are `*_env` / `*_file` references.
    pub async fn config_for(
        &self,
        caller: &crate::Caller,
    ) -> Result<(Arc<Catalog>, Option<kairos_store::StoredConfig>)> {
        caller.require_role(
            &[kairos_store::Role::Operator, kairos_store::Role::Auditor],
            "read the configuration",
        )?;
        Ok((self.catalog(), self.store.current_config().await?))
    }

    /// The catalog's entitlements, for any authenticated caller; a workload also learns
    /// which team would approve each for its identity. Policy decides each request (its
    /// task and TTL count), so being listed promises nothing.
    pub fn entitlements_for(
        &self,
        caller: &crate::Caller,
    ) -> Result<(Arc<Catalog>, Option<IdentityName>)> {
        match caller {
            crate::Caller::Workload { identity } => Ok((self.catalog(), Some(identity.clone()))),
            crate::Caller::User(_) => Ok((self.catalog(), None)),
        }
    }
}
