//! Owners are people: orphaned identities are found (at once when a person's tokens are
//! revoked, a person is added or a configuration is applied, and on every scheduler
//! pass), flagged, audited and alerted; after `[governance] orphan_grace` the
//! `orphan_action` applies (`suspend`: through the one suspension path, cause `orphaned`;
//! `flag`: it stays flagged). An owner who can act again clears the flag (audited); a
//! suspension stays until someone resumes it. The rules are
//! `kairos_governance::owners`; every write is conditional, so replicas doing the same
//! pass act once.

use std::collections::{BTreeMap, BTreeSet};

use kairos_config::{Catalog, OrphanAction};
use kairos_domain::{AuditDraft, AuditKind, IdentityName, Principal, TeamName, UserName};
use kairos_governance::owners::{self, OrphanFlag, OrphanStep, People, PersonFacts, TeamPeople};
use kairos_governance::{AlertDraft, AlertKind, IdentityState, SuspensionCause};
use kairos_store::{OrphanRecord, Role};

use super::alerts::alert_write;
use crate::{Broker, BrokerError, Result};

/// What one orphan pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanPass {
    /// Identities newly flagged orphaned.
    pub flagged: Vec<IdentityName>,
    /// Identities whose flag was cleared.
    pub cleared: Vec<IdentityName>,
    /// Identities suspended because their grace ran out (`orphan_action = "suspend"`).
    pub suspended: Vec<IdentityName>,
}

/// The dedupe key of an identity's `orphaned` alert.
fn alert_key(identity: &IdentityName) -> String {
    format!("orphaned:{identity}")
}

const GOVERNANCE: Principal = Principal::System("governance");

/// People as ownership sees them, from the store's users.
pub(crate) fn people_of(people: Vec<kairos_store::Person>) -> People {
    People::new(people.into_iter().map(|p| PersonFacts {
        person: p.role != Role::ResourceServer,
        can_act: p.can_act,
        name: p.name,
    }))
}

/// Each team's `owners`, by team.
fn owners_by_team(catalog: &Catalog) -> BTreeMap<&TeamName, &[UserName]> {
    catalog
        .teams()
        .map(|t| (&t.name, t.owners.as_slice()))
        .collect()
}

/// The apply report's warnings about the people `catalog`'s teams name.
pub(crate) fn people_warnings(catalog: &Catalog, people: &People) -> Vec<String> {
    let teams: Vec<TeamPeople<'_>> = catalog
        .teams()
        .map(|t| TeamPeople {
            team: &t.name,
            owners: &t.owners,
            approvers: &t.approvers,
        })
        .collect();
    owners::people_warnings(&teams, people)
}

impl Broker {
    /// The people the store knows, as ownership sees them.
    pub(crate) async fn people(&self) -> Result<People> {
        Ok(people_of(self.store.people().await?))
    }

    /// One orphan pass over the catalog's identities (idempotent; safe on several
    /// replicas at once): flags the newly orphaned (audit `identity_orphaned`, alert
    /// `orphaned`), clears flags whose identity has an active owner again, is retired or
    /// left the catalog (audit `orphan_cleared`, the alert resolved), and applies
    /// `orphan_action` to those whose grace is over.
    pub async fn orphan_pass(&self) -> Result<OrphanPass> {
        let catalog = self.catalog();
        let people = self.people().await?;
        let retired: BTreeSet<IdentityName> = self
            .store
            .identity_states()
            .await?
            .into_iter()
            .filter(|s| s.state == IdentityState::Retired)
            .map(|s| s.identity)
            .collect();
        let flags: BTreeMap<IdentityName, OrphanRecord> = self
            .store
            .orphans()
            .await?
            .into_iter()
            .map(|o| (o.identity.clone(), o))
            .collect();
        let owners = owners_by_team(&catalog);
        let orphaned = owners::orphaned(
            catalog.identities().map(|i| (&i.name, &i.owner)),
            &owners,
            &people,
        );
        let settings = catalog.governance();
        let grace = settings.orphan_grace.as_duration();
        let now = self.now();

        let mut to_flag = Vec::new();
        let mut to_clear = Vec::new();
        let mut grace_over = Vec::new();
        for identity in catalog.identities() {
            let flag = flags.get(&identity.name).map(|f| OrphanFlag {
                detected_at: f.detected_at,
                suspended_at: f.suspended_at,
            });
            let step = owners::orphan_step(
                now,
                orphaned.get(&identity.name),
                flag.as_ref(),
                retired.contains(&identity.name),
                grace,
            );
            match step {
                OrphanStep::Wait => {}
                OrphanStep::Flag(team) => to_flag.push((identity.name.clone(), team)),
                OrphanStep::Clear => {
                    let why = if retired.contains(&identity.name) {
                        "the identity is retired".to_owned()
                    } else {
                        format!("team {} has an active owner again", identity.owner)
                    };
                    to_clear.push((identity.name.clone(), why));
                }
                OrphanStep::GraceOver { detected_at } => {
                    grace_over.push((identity.name.clone(), detected_at));
                }
            }
        }
        for name in flags.keys() {
            if catalog.identity(name).is_none() {
                to_clear.push((
                    name.clone(),
                    "the identity was removed from the configuration".into(),
                ));
            }
        }

        let mut report = OrphanPass::default();
        if !to_flag.is_empty() {
            let grace_text = settings.orphan_grace.to_string();
            let action = match settings.orphan_action {
                OrphanAction::Suspend => "suspend",
                OrphanAction::Flag => "flag",
            };
            let mut alert_ids: BTreeMap<IdentityName, String> = BTreeMap::new();
            let drafts = to_flag
                .iter()
                .map(|(name, team)| {
                    let record = OrphanRecord {
                        identity: name.clone(),
                        team: team.clone(),
                        detected_at: now,
                        suspended_at: None,
                    };
                    let audit = AuditDraft::new(AuditKind::IdentityOrphaned, GOVERNANCE)
                        .identity(name)
                        .data(serde_json::json!({
                            "team": team,
                            "owners": owners.get(team).map_or(&[][..], |o| *o),
                            "grace": grace_text,
                            "grace_ends": owners::grace_ends(now, grace).to_rfc3339(),
                            "orphan_action": action,
                        }));
                    // The flag's alert, written with it (only if this pass flags it).
                    let then = match settings.orphan_action {
                        OrphanAction::Suspend => format!(
                            "it will be suspended at {} unless an owner can act again",
                            owners::grace_ends(now, grace).to_rfc3339()
                        ),
                        OrphanAction::Flag => {
                            "it stays flagged (orphan_action = \"flag\")".into()
                        }
                    };
                    let alert = alert_write(
                        AlertDraft::new(
                            AlertKind::Orphaned,
                            name.as_str(),
                            format!(
                                "identity {name} is orphaned: team {team} has no active owner (an owner who is a user with a live API token); {then}"
                            ),
                        )
                        .identity(name)
                        .dedupe_key(alert_key(name))
                        .detail(serde_json::json!({ "team": team })),
                        now,
                    );
                    alert_ids.insert(name.clone(), alert.id.clone());
                    (record, audit, Some(alert))
                })
                .collect();
            let teams: BTreeMap<&IdentityName, &TeamName> =
                to_flag.iter().map(|(n, t)| (n, t)).collect();
            report.flagged = self.store.flag_orphans(drafts, now).await?;
            for name in &report.flagged {
                let team = teams.get(name).map_or("?", |t| t.as_str());
                tracing::warn!(identity = %name, team, "identity orphaned: its team has no active owner");
                if let Some(id) = alert_ids.get(name) {
                    self.alert_committed(id).await;
                }
            }
        }
        if !to_clear.is_empty() {
            let why: BTreeMap<IdentityName, String> = to_clear.iter().cloned().collect();
            let drafts = to_clear
                .into_iter()
                .map(|(name, why)| {
                    let audit = AuditDraft::new(AuditKind::OrphanCleared, GOVERNANCE)
                        .identity(&name)
                        .data(serde_json::json!({ "because": why }));
                    (name, audit)
                })
                .collect();
            report.cleared = self.store.clear_orphans(drafts, now).await?;
            for name in &report.cleared {
                let because = why.get(name).map_or("", String::as_str);
                tracing::info!(identity = %name, because, "orphan flag cleared");
                self.resolve_alert_key(&alert_key(name), because).await?;
            }
        }
        if settings.orphan_action == OrphanAction::Suspend {
            for (name, detected_at) in grace_over {
                if self
                    .suspend_orphan(&name, detected_at, &settings.orphan_grace.to_string())
                    .await?
                {
                    report.suspended.push(name);
                }
            }
        }
        Ok(report)
    }

    /// Suspends an orphan whose grace is over (cause `orphaned`) and records that it did,
    /// once per flag. An identity already suspended or retired (by a person, or by
    /// another replica a moment ago) counts as done. True when this call suspended it.
    async fn suspend_orphan(
        &self,
        name: &IdentityName,
        detected_at: kairos_domain::Timestamp,
        grace: &str,
    ) -> Result<bool> {
        let reason = format!(
            "orphaned since {}: its team has had no active owner for longer than the orphan grace ({grace})",
            detected_at.to_rfc3339(),
        );
        let suspended = match self
            .suspend_identity(name, SuspensionCause::Orphaned, &reason, GOVERNANCE)
            .await
        {
            Ok(_) => true,
            Err(BrokerError::Conflict(_)) => false,
            Err(e) => return Err(e),
        };
        self.store
            .mark_orphan_suspended(name, detected_at, self.now())
            .await?;
        Ok(suspended)
    }

    /// An orphan pass right after something that can change who owns what (a person's
    /// tokens revoked, a person added, a configuration applied). Its failure is logged,
    /// not returned: the change itself is done, and the scheduler's pass tries again.
    pub(crate) async fn orphan_pass_now(&self, after: &str) {
        match self.orphan_pass().await {
            Ok(p) if p != OrphanPass::default() => tracing::info!(
                after,
                flagged = p.flagged.len(),
                cleared = p.cleared.len(),
                suspended = p.suspended.len(),
                "orphan pass"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(after, error = %e, "orphan pass failed; the next scheduled pass retries")
            }
        }
    }
}
