//! Applying a configuration: what it changes, which live grants it orphans, and ending
//! those through the one end path (`config_removed`) while the removed targets keep their
//! connectors until every grant on them is verified gone.

use std::collections::BTreeMap;
use std::sync::Arc;

use kairos_config::{Catalog, ConfigBundle, ConfigDiff};
use kairos_domain::{
    AuditDraft, AuditKind, EndReason, EntitlementName, Grant, GrantEnd, GrantId, IdentityName,
    Principal, TargetName,
};
use kairos_store::{EndSelector, GrantFilter, GrantStateFilter};

use crate::targets::Targets;
use crate::{Broker, BrokerError, Result};

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

/// A live grant the new catalog orphans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanedGrant {
    pub grant: GrantId,
    pub identity: IdentityName,
    pub entitlement: EntitlementName,
    pub target: TargetName,
    /// What the catalog removed, e.g. `target orders-db removed`.
    pub because: String,
}

/// What an apply changed (or, on a dry run, would change).
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub diff: ConfigDiff,
    /// The grants it ended (or would end) as `config_removed`.
    pub ending: Vec<OrphanedGrant>,
    pub mode: ApplyMode,
    /// What an operator should know, one sentence each naming its target: e.g. MariaDB's
    /// event scheduler is off (no native expiry), or a target's server could not be asked
    /// which server it is.
    pub warnings: Vec<String>,
}

/// Why `grant` cannot stand under `new` (`old` names the team of a removed identity), or
/// `None` when everything it stands on is still there.
pub fn orphaned_by(old: &Catalog, new: &Catalog, grant: &Grant) -> Option<String> {
    if new.identity(&grant.identity).is_none() {
        let team = old
            .identity(&grant.identity)
            .map(|i| &i.owner)
            .filter(|team| new.team(team).is_none());
        return Some(match team {
            Some(team) => format!("team {team} (and its identity {}) removed", grant.identity),
            None => format!("identity {} removed", grant.identity),
        });
    }
    if new.target(&grant.target).is_none() {
        return Some(format!("target {} removed", grant.target));
    }
    match new.entitlement(&grant.entitlement) {
        None => Some(format!("entitlement {} removed", grant.entitlement)),
        Some(e) if e.target != grant.target => Some(format!(
            "entitlement {} moved from target {} to {}",
            grant.entitlement, grant.target, e.target
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
        let warnings = check.warnings;
        let old = self.catalog();
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
        let ending = self.orphans(&old, &catalog).await?;
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
            "grants_ended": ending.iter().map(|o| o.grant.as_str()).collect::<Vec<_>>(),
        }));
        let end = GrantEnd {
            reason: EndReason::ConfigRemoved,
            by: by.clone(),
            at: self.now(),
        };
        let mut ended = Vec::new();
        if !diff.is_empty() || self.store.current_config().await?.is_none() {
            let ids: Vec<GrantId> = ending.iter().map(|o| o.grant.clone()).collect();
            let (_, done) = self
                .store
                .save_config_ending(&json, end.at, audit, &ids, &end)
                .await?;
            ended = done;
        }
        let ended_ids: std::collections::BTreeSet<&GrantId> = ended.iter().map(|g| &g.id).collect();
        let ending: Vec<OrphanedGrant> = ending
            .into_iter()
            .filter(|o| ended_ids.contains(&o.grant))
            .collect();
        self.note_ended(&ended, EndReason::ConfigRemoved);
        let targets = self.keep_removed_targets(&catalog, live_targets).await?;
        self.swap_catalog(catalog, verifier, targets);
        // A request decided under the old catalog may have committed a grant between the
        // look above and the swap: end those too, so none outlives what it stands on.
        let late = self.orphans(&old, &self.catalog()).await?;
        if !late.is_empty() {
            let ids = late.iter().map(|o| o.grant.clone()).collect();
            let done = self.store.end_grants(&EndSelector::Ids(ids), &end).await?;
            self.note_ended(&done, EndReason::ConfigRemoved);
        }
        Ok(ApplyReport {
            diff,
            ending,
            mode: ApplyMode::Apply,
            warnings,
        })
    }

    /// The live (active or provisioning) grants that `new` orphans.
    async fn orphans(&self, old: &Catalog, new: &Catalog) -> Result<Vec<OrphanedGrant>> {
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
                if let Some(because) = orphaned_by(old, new, &g) {
                    out.push(OrphanedGrant {
                        grant: g.id,
                        identity: g.identity,
                        entitlement: g.entitlement,
                        target: g.target,
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
    async fn keep_removed_targets(&self, new: &Catalog, live: Targets) -> Result<Targets> {
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
