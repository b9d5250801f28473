//! Policy changes reach live grants: when an applied configuration can change what policy
//! decides, every live grant it may concern is decided again under the new catalog, and
//! those now denied end as `policy_changed` in the transaction that saves it.
//!
//! How a grant is decided again: as Cedar action `request` with its identity and
//! entitlement as the new catalog has them, its task, its request's requester, and
//! `context.ttl_secs` **the TTL its request was granted with** (what people and policy
//! agreed to, as a new request for the same task would ask). A grant that renewals have
//! made live longer than that is also decided as action `renew` with its **whole lifetime**
//! (issue to current end), as a renewal is. Only a `deny` ends it: a grant the new
//! policies would send to approvals was granted or approved under the old ones, and
//! approval requirements are not retroactive.
//!
//! The context is the one the grant was decided with, as far as it is known: `break_glass`
//! from the entitlement, `source_ip` the address its request came from, and
//! `open_reviews` the identity's open after-action reviews as they are now, **less the
//! grant's own**: its request was decided before its review existed, so counting it would
//! end every live break-glass grant under a policy that allows one open review at a time.
//!
//! Cost: nothing is read unless the new catalog can change a decision (its policies or
//! tier caps differ, or an identity's or entitlement's facts that policy sees); then the
//! live grants are read once, with their request's facts in the same query, and only those
//! of changed identities or entitlements are decided when the policies are the same.

use std::collections::{BTreeMap, BTreeSet};

use kairos_config::Catalog;
use kairos_domain::{
    Decision, DecisionOutcome, EndReason, EntitlementName, IdentityName, Timestamp, Ttl,
};
use kairos_policy::{Circumstances, PolicyAction, PolicyInput};
use kairos_store::LiveGrant;

use crate::apply::EndingGrant;
use crate::{Broker, BrokerError, Result};

/// Which live grants a new catalog may decide differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redecide {
    /// None: nothing policy sees changed.
    Nothing,
    /// Every one: the policies or the tier caps changed.
    All,
    /// Those of these identities or entitlements, whose facts changed.
    Some {
        identities: BTreeSet<IdentityName>,
        entitlements: BTreeSet<EntitlementName>,
    },
}

impl Redecide {
    fn covers(&self, g: &LiveGrant) -> bool {
        match self {
            Self::Nothing => false,
            Self::All => true,
            Self::Some {
                identities,
                entitlements,
            } => identities.contains(&g.identity) || entitlements.contains(&g.entitlement),
        }
    }
}

/// What `new` may decide differently from `old`. Removed identities and entitlements are
/// not here: their grants end as removed (see `apply::orphaned_by`).
pub fn redecide(old: &Catalog, new: &Catalog) -> Redecide {
    let texts = |c: &Catalog| -> Vec<(String, String)> {
        c.policies()
            .policies()
            .map(|p| (p.id.clone(), p.text.clone()))
            .collect()
    };
    if texts(old) != texts(new) || old.tier_caps() != new.tier_caps() {
        return Redecide::All;
    }
    let identities: BTreeSet<IdentityName> = old
        .identities()
        .filter_map(|before| {
            let after = new.identity(&before.name)?;
            (old.identity_facts(before) != new.identity_facts(after)).then(|| before.name.clone())
        })
        .collect();
    let entitlements: BTreeSet<EntitlementName> = old
        .entitlements()
        .filter_map(|before| {
            let after = new.entitlement(&before.name)?;
            (old.entitlement_facts(before) != new.entitlement_facts(after))
                .then(|| before.name.clone())
        })
        .collect();
    if identities.is_empty() && entitlements.is_empty() {
        Redecide::Nothing
    } else {
        Redecide::Some {
            identities,
            entitlements,
        }
    }
}

/// A grant's whole lifetime in whole seconds, rounded up (as renewal counts it).
fn lifetime(issued_at: Timestamp, expires_at: Timestamp) -> Option<Ttl> {
    let ms = expires_at.since(issued_at).as_millis();
    let secs = u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1);
    Ttl::from_secs(secs).ok()
}

/// Why the new catalog's policies deny `g`, or None when they do not (or when the grant
/// no longer stands on the catalog at all: it ends as removed). `open_reviews` is the
/// identity's open after-action reviews now, the grant's own included when it is open
/// (it is left out here).
pub fn denied(new: &Catalog, g: &LiveGrant, open_reviews: u32) -> Result<Option<String>> {
    let (Some(identity), Some(entitlement)) =
        (new.identity(&g.identity), new.entitlement(&g.entitlement))
    else {
        return Ok(None);
    };
    if entitlement.target != g.target {
        return Ok(None);
    }
    let circumstances = Circumstances {
        source_ip: g.source_ip,
        break_glass: entitlement.break_glass,
        open_reviews: open_reviews.saturating_sub(u32::from(g.own_review_open)),
    };
    let decide = |action: PolicyAction, ttl: Ttl| -> Result<Decision> {
        new.policies()
            .decide(&PolicyInput {
                action,
                identity: new.identity_facts(identity),
                entitlement: new.entitlement_facts(entitlement),
                ttl,
                task: g.task.clone(),
                requester: g.requester.clone(),
                circumstances: circumstances.clone(),
            })
            .map_err(BrokerError::internal)
    };
    let why = |what: String, d: &Decision| {
        let policies = if d.policies.is_empty() {
            String::new()
        } else {
            format!(" (policies: {})", d.policies.join(", "))
        };
        format!("the policies now deny {what}: {}{policies}", d.reason)
    };
    let asked = decide(PolicyAction::Request, g.request_ttl)?;
    if asked.outcome == DecisionOutcome::Deny {
        return Ok(Some(why(
            format!("its request ({} for {})", g.request_ttl, g.entitlement),
            &asked,
        )));
    }
    if let Some(whole) = lifetime(g.issued_at, g.expires_at)
        && whole > g.request_ttl
    {
        let renewed = decide(PolicyAction::Renew, whole)?;
        if renewed.outcome == DecisionOutcome::Deny {
            return Ok(Some(why(
                format!("its renewal to a lifetime of {whole}"),
                &renewed,
            )));
        }
    }
    Ok(None)
}

impl Broker {
    /// The live grants (all, or those issued since `issued_from`) that `new`'s policies
    /// deny, as `policy_changed`; nothing is read when `new` cannot change a decision.
    pub(crate) async fn policy_denied(
        &self,
        old: &Catalog,
        new: &Catalog,
        issued_from: Option<Timestamp>,
    ) -> Result<Vec<EndingGrant>> {
        let scope = redecide(old, new);
        if scope == Redecide::Nothing {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let live = self.store.live_grant_facts(issued_from).await?;
        let read = started.elapsed();
        let mut out = Vec::new();
        let mut decided = 0_usize;
        // Each identity's open reviews, read once, and only when the policies look.
        let mut reviews: BTreeMap<IdentityName, u32> = BTreeMap::new();
        for g in live.into_iter().filter(|g| scope.covers(g)) {
            decided += 1;
            let open_reviews = match reviews.get(&g.identity) {
                Some(n) => *n,
                None => {
                    let n = self.open_reviews_for_policy(new, &g.identity).await?;
                    reviews.insert(g.identity.clone(), n);
                    n
                }
            };
            if let Some(because) = denied(new, &g, open_reviews)? {
                out.push(EndingGrant {
                    grant: g.grant,
                    identity: g.identity,
                    entitlement: g.entitlement,
                    target: g.target,
                    reason: EndReason::PolicyChanged,
                    because,
                });
            }
        }
        tracing::info!(
            decided,
            denied = out.len(),
            read_ms = read.as_millis(),
            total_ms = started.elapsed().as_millis(),
            "live grants decided again under the new policies"
        );
        Ok(out)
    }
}
