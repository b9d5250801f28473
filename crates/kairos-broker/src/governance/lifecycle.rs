//! Identity states for people: list and show identities with their state, owners and
//! orphan flag; suspend, resume and retire them, each with a reason.
//!
//! Who may: reading, any person who reads grants (admin, operator, approver, auditor);
//! changing a state, admins, operators, and the identity's owners (users with role
//! `approver` whom the identity's team lists in `owners`). Anyone else gets 403 without
//! learning whether the identity exists; for an approver, an identity they do not own and
//! an unknown one get the same 403.

use kairos_domain::{IdentityName, TeamName, Timestamp, UserName};
use kairos_governance::{IdentityState, IdentityStatus, SuspensionCause};
use kairos_store::{OrphanRecord, Role};

use crate::governance::StateOutcome;
use crate::{Broker, BrokerError, Caller, Result};

/// An identity as people see it: the catalog's facts, its state, its owners.
#[derive(Debug, Clone)]
pub struct IdentityView {
    pub name: IdentityName,
    pub kind: String,
    pub team: TeamName,
    /// Its platform-token mapping (empty strings when it has none).
    pub issuer: String,
    pub subject: String,
    /// Its SPIFFE ID, when it has one.
    pub spiffe_id: Option<String>,
    pub status: IdentityStatus,
    /// The team's `owners`, as configured.
    pub owners: Vec<UserName>,
    /// Those of them who count as active owners (users with a live API token).
    pub active_owners: Vec<UserName>,
    /// Set while it is flagged orphaned.
    pub orphan: Option<OrphanRecord>,
    /// When `orphan_action` applies to it, while flagged and not yet acted on.
    pub orphan_grace_ends: Option<Timestamp>,
}

/// What a person asks of an identity's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRequest {
    Suspend,
    Resume,
    Retire,
}

impl StateRequest {
    fn verb(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Retire => "retire",
        }
    }
}

/// Which identities a page of them shows: names containing `name` (any case), of
/// `team`, after `after` in name order, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct IdentitySelection {
    pub name: Option<String>,
    pub team: Option<TeamName>,
    pub after: Option<String>,
    pub limit: usize,
}

/// A page of identities, by name.
#[derive(Debug, Clone)]
pub struct IdentityPage {
    pub identities: Vec<IdentityView>,
    /// How many identities the filters match, on every page.
    pub matched: usize,
    /// More match after the last one shown.
    pub more: bool,
}

/// Whose views to build.
enum Which<'a> {
    All,
    Named(&'a [IdentityName]),
}

impl Broker {
    /// Every identity of the catalog with its state and owners, by name.
    pub async fn identities_for(&self, caller: &Caller) -> Result<Vec<IdentityView>> {
        caller.require_role(
            &[Role::Operator, Role::Approver, Role::Auditor],
            "list identities",
        )?;
        self.identity_views(Which::All).await
    }

    /// A page of identities: the catalog is filtered and paged in memory, and only the
    /// page's states and orphan flags are read, so a page costs the same with ten
    /// identities or ten thousand.
    pub async fn identity_page(
        &self,
        caller: &Caller,
        selection: &IdentitySelection,
    ) -> Result<IdentityPage> {
        caller.require_role(
            &[Role::Operator, Role::Approver, Role::Auditor],
            "list identities",
        )?;
        let catalog = self.catalog();
        let needle = selection.name.as_deref().unwrap_or_default().to_lowercase();
        let mut matching: Vec<&IdentityName> = catalog
            .identities()
            .filter(|i| selection.team.as_ref().is_none_or(|t| i.owner == *t))
            .filter(|i| needle.is_empty() || i.name.as_str().to_lowercase().contains(&needle))
            .map(|i| &i.name)
            .collect();
        matching.sort_unstable();
        let matched = matching.len();
        let after = selection.after.as_deref().unwrap_or_default();
        let mut names: Vec<IdentityName> = matching
            .into_iter()
            .filter(|n| n.as_str() > after)
            .take(selection.limit.saturating_add(1))
            .cloned()
            .collect();
        let more = names.len() > selection.limit;
        names.truncate(selection.limit);
        let identities = self.identity_views(Which::Named(&names)).await?;
        Ok(IdentityPage {
            identities,
            matched,
            more,
        })
    }

    /// One identity with its state and owners; `NotFound` when the catalog does not know
    /// it.
    pub async fn identity_for(&self, caller: &Caller, name: &IdentityName) -> Result<IdentityView> {
        caller.require_role(
            &[Role::Operator, Role::Approver, Role::Auditor],
            "read identities",
        )?;
        let mut views = self
            .identity_views(Which::Named(std::slice::from_ref(name)))
            .await?;
        views.pop().ok_or_else(|| {
            BrokerError::NotFound(format!(
                "identity {name} is not registered; `kairos identity list` lists the identities"
            ))
        })
    }

    /// The views of `which` identities of the catalog (names it does not know are left
    /// out), in name order for `All` and in the given order for `Named`.
    async fn identity_views(&self, which: Which<'_>) -> Result<Vec<IdentityView>> {
        let catalog = self.catalog();
        let people = self.people().await?;
        let (states, flags, identities) = match which {
            Which::All => (
                self.store.identity_states().await?,
                self.store.orphans().await?,
                catalog.identities().collect::<Vec<_>>(),
            ),
            Which::Named(names) => (
                self.store.identity_states_of(names).await?,
                self.store.orphans_of(names).await?,
                names.iter().filter_map(|n| catalog.identity(n)).collect(),
            ),
        };
        let states: std::collections::HashMap<IdentityName, IdentityStatus> = states
            .into_iter()
            .map(|s| (s.identity.clone(), s))
            .collect();
        let mut flags: std::collections::HashMap<IdentityName, OrphanRecord> =
            flags.into_iter().map(|o| (o.identity.clone(), o)).collect();
        let grace = catalog.governance().orphan_grace.as_duration();
        let acts = catalog.governance().orphan_action == kairos_config::OrphanAction::Suspend;
        let mut out = Vec::with_capacity(identities.len());
        for identity in identities {
            let owners = catalog
                .team(&identity.owner)
                .map(|t| t.owners.clone())
                .unwrap_or_default();
            let active_owners = owners
                .iter()
                .filter(|o| people.is_active(o))
                .cloned()
                .collect();
            let status = states
                .get(&identity.name)
                .cloned()
                .unwrap_or_else(|| IdentityStatus {
                    identity: identity.name.clone(),
                    state: IdentityState::Active,
                    cause: None,
                    reason: String::new(),
                    by: String::new(),
                    since: Timestamp::from_millis(0),
                });
            let orphan = flags.remove(&identity.name);
            let orphan_grace_ends = orphan
                .as_ref()
                .filter(|o| acts && o.suspended_at.is_none())
                .map(|o| kairos_governance::owners::grace_ends(o.detected_at, grace));
            out.push(IdentityView {
                name: identity.name.clone(),
                kind: identity.kind.clone(),
                team: identity.owner.clone(),
                issuer: identity
                    .issuer
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                subject: identity.subject.clone().unwrap_or_default(),
                spiffe_id: identity.spiffe_id.clone(),
                status,
                owners,
                active_owners,
                orphan,
                orphan_grace_ends,
            });
        }
        Ok(out)
    }

    /// A person suspends, resumes or retires an identity, with a reason (see the module
    /// docs for who may). Suspending and retiring end its live grants through the one
    /// end path; a suspension for an overdue recertification is lifted only by an
    /// owner's attestation, and a retired identity is never resumed (409 each).
    pub async fn change_identity_state_as(
        &self,
        caller: &Caller,
        name: &IdentityName,
        what: StateRequest,
        reason: &str,
    ) -> Result<StateOutcome> {
        self.check_may_change_state(caller, name, what)?;
        let by = caller.principal();
        match what {
            StateRequest::Suspend => {
                self.suspend_identity(name, SuspensionCause::Manual, reason, by)
                    .await
            }
            StateRequest::Resume => self.resume_identity(name, reason, by, false).await,
            StateRequest::Retire => self.retire_identity(name, reason, by).await,
        }
    }

    /// Admins and operators may change any identity's state (an unknown one is then a
    /// 404); an approver only that of identities whose team lists them in `owners`, and
    /// learns nothing about others (unknown or not theirs: the same 403).
    fn check_may_change_state(
        &self,
        caller: &Caller,
        name: &IdentityName,
        what: StateRequest,
    ) -> Result<()> {
        let action = format!("{} identities", what.verb());
        let user = caller.require_role(&[Role::Operator, Role::Approver], &action)?;
        if user.role != Role::Approver {
            return Ok(());
        }
        let catalog = self.catalog();
        let owns = catalog
            .identity(name)
            .and_then(|i| catalog.team(&i.owner))
            .is_some_and(|t| t.owners.contains(&user.name));
        if owns {
            return Ok(());
        }
        Err(BrokerError::Forbidden(format!(
            "user {} may {} only identities whose team lists them in `owners` (or ask an operator)",
            user.name,
            what.verb()
        )))
    }
}
