//! Decision slicing: which policies can possibly apply to a request, found without
//! evaluating any of them.
//!
//! Cedar evaluates a policy as `scope && when && !unless`, and the scope part is
//! evaluated first and short-circuits. A policy whose scope cannot match a request
//! therefore contributes nothing to that request's answer: it is not satisfied, it is
//! not determining and it cannot fail to evaluate. Leaving such policies out of the set
//! handed to the authorizer changes nothing, as long as every policy whose scope *might*
//! match stays in.
//!
//! Every Kairos request has the same shape (see `decide::to_cedar`): the principal is
//! `Kairos::Identity::"<name>"` whose only ancestor is `Kairos::Team::"<owner>"`, and the
//! resource is `Kairos::Entitlement::"<target>/<role>"` whose only ancestor is
//! `Kairos::Target::"<target>"`. So a principal (or resource) scope constraint can only
//! be satisfied in one of four ways, decided once per policy when the set is compiled:
//!
//! | constraint | satisfied by a request iff |
//! |---|---|
//! | none, `is <own type>` | always |
//! | `== <own type>::"x"`, `in <own type>::"x"`, `is <own type> in <own type>::"x"` | its own id is `x` |
//! | `in <parent type>::"x"`, `is <own type> in <parent type>::"x"` | its parent's id is `x` |
//! | anything else (`== <parent type>::"x"`, another type, `is <other type>`) | never |
//!
//! The action constraint is not used for slicing (the model has one action), so a
//! policy is kept when its action constraint might not match: that errs on the side
//! of evaluating too much, never too little.
//!
//! Each policy is filed under one key (its resource constraint's id if it has one, else
//! its principal constraint's id, else "unscoped"). A request looks up its four ids and
//! the unscoped list, keeps the policies whose principal and resource constraints both
//! match by the table above, and restores their order in the whole set, so that the
//! authorizer sees them in the same order (and reports evaluation errors in the same
//! order) as it would over the whole set.

use std::collections::HashMap;

use cedar_policy::{EntityTypeName, EntityUid, PrincipalConstraint, ResourceConstraint};

/// Entity types of the Kairos model that a scope constraint can be checked against.
pub(crate) struct ModelTypes<'a> {
    pub identity: &'a EntityTypeName,
    pub team: &'a EntityTypeName,
    pub entitlement: &'a EntityTypeName,
    pub target: &'a EntityTypeName,
}

/// The ids a request's principal and resource constraints are checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestIds<'a> {
    /// The principal's id (the identity name).
    pub identity: &'a str,
    /// The principal's parent's id (the owning team).
    pub team: &'a str,
    /// The resource's id (the entitlement name).
    pub entitlement: &'a str,
    /// The resource's parent's id (the target).
    pub target: &'a str,
}

/// What one scope constraint (on the principal or on the resource) asks of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    /// Satisfied by every request.
    Any,
    /// Satisfied iff the principal's (resource's) own id is this.
    Own(String),
    /// Satisfied iff the principal's (resource's) parent's id is this.
    Parent(String),
    /// Satisfied by no request.
    Never,
}

impl Need {
    /// `own`/`parent`: the entity type the request's principal (resource) always has,
    /// and the type of its only ancestor.
    fn of(constraint: Constraint, own: &EntityTypeName, parent: &EntityTypeName) -> Self {
        // `x in u` holds iff `x == u` or `u` is an ancestor of `x`.
        let within = |uid: &EntityUid| {
            let id = uid.id().unescaped().to_owned();
            if uid.type_name() == own {
                Need::Own(id)
            } else if uid.type_name() == parent {
                Need::Parent(id)
            } else {
                Need::Never
            }
        };
        match constraint {
            Constraint::Any => Need::Any,
            Constraint::Eq(uid) if uid.type_name() == own => {
                Need::Own(uid.id().unescaped().to_owned())
            }
            Constraint::Eq(_) => Need::Never,
            Constraint::In(uid) => within(&uid),
            Constraint::Is(ty) if &ty == own => Need::Any,
            Constraint::Is(_) => Need::Never,
            Constraint::IsIn(ty, uid) if &ty == own => within(&uid),
            Constraint::IsIn(_, _) => Need::Never,
        }
    }

    fn admits(&self, own: &str, parent: &str) -> bool {
        match self {
            Need::Any => true,
            Need::Own(id) => id == own,
            Need::Parent(id) => id == parent,
            Need::Never => false,
        }
    }
}

/// Principal and resource constraints have the same forms; one type for both.
enum Constraint {
    Any,
    In(EntityUid),
    Eq(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

impl From<PrincipalConstraint> for Constraint {
    fn from(c: PrincipalConstraint) -> Self {
        match c {
            PrincipalConstraint::Any => Self::Any,
            PrincipalConstraint::In(u) => Self::In(u),
            PrincipalConstraint::Eq(u) => Self::Eq(u),
            PrincipalConstraint::Is(t) => Self::Is(t),
            PrincipalConstraint::IsIn(t, u) => Self::IsIn(t, u),
        }
    }
}

impl From<ResourceConstraint> for Constraint {
    fn from(c: ResourceConstraint) -> Self {
        match c {
            ResourceConstraint::Any => Self::Any,
            ResourceConstraint::In(u) => Self::In(u),
            ResourceConstraint::Eq(u) => Self::Eq(u),
            ResourceConstraint::Is(t) => Self::Is(t),
            ResourceConstraint::IsIn(t, u) => Self::IsIn(t, u),
        }
    }
}

/// One policy of the whole set, with what its scope needs.
#[derive(Debug, Clone)]
struct Scoped {
    policy: cedar_policy::Policy,
    principal: Need,
    resource: Need,
}

impl Scoped {
    fn admits(&self, ids: &RequestIds<'_>) -> bool {
        self.principal.admits(ids.identity, ids.team)
            && self.resource.admits(ids.entitlement, ids.target)
    }
}

/// The policies a request needs evaluated.
// Lives on the stack for one decision; boxing the set would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Slice<'a> {
    /// No policy can apply: the answer is a deny with no determining policies.
    Empty,
    /// These policies, in the whole set's order.
    Some(cedar_policy::PolicySet),
    /// Slicing is not available; use the whole set.
    Whole(&'a cedar_policy::PolicySet),
}

/// The whole set's policies filed by the ids their scope constraints name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slicer {
    /// Every policy that can match some request, in the whole set's order.
    policies: Vec<Scoped>,
    /// Indexes into `policies` by resource constraint: own id (entitlement name) ...
    by_entitlement: HashMap<String, Vec<usize>>,
    /// ... or parent id (target name).
    by_target: HashMap<String, Vec<usize>>,
    /// Policies without a resource id, by principal constraint: own id (identity) ...
    by_identity: HashMap<String, Vec<usize>>,
    /// ... or parent id (team).
    by_team: HashMap<String, Vec<usize>>,
    /// Policies that name no id in their principal or resource constraints.
    unscoped: Vec<usize>,
    /// False when the model's entity types are not available; every request then uses
    /// the whole set.
    enabled: bool,
}

impl Slicer {
    /// Files every policy of `whole` (in its order). `types` is `None` when the Kairos
    /// entity types could not be built; slicing is then off.
    pub(crate) fn new(whole: &cedar_policy::PolicySet, types: Option<&ModelTypes<'_>>) -> Self {
        let Some(types) = types else {
            return Self::default();
        };
        let mut slicer = Self {
            enabled: true,
            ..Self::default()
        };
        for policy in whole.policies() {
            let principal = Need::of(
                policy.principal_constraint().into(),
                types.identity,
                types.team,
            );
            let resource = Need::of(
                policy.resource_constraint().into(),
                types.entitlement,
                types.target,
            );
            if principal == Need::Never || resource == Need::Never {
                continue;
            }
            let index = slicer.policies.len();
            let bucket = match (&resource, &principal) {
                (Need::Own(id), _) => slicer.by_entitlement.entry(id.clone()).or_default(),
                (Need::Parent(id), _) => slicer.by_target.entry(id.clone()).or_default(),
                (_, Need::Own(id)) => slicer.by_identity.entry(id.clone()).or_default(),
                (_, Need::Parent(id)) => slicer.by_team.entry(id.clone()).or_default(),
                _ => &mut slicer.unscoped,
            };
            bucket.push(index);
            slicer.policies.push(Scoped {
                policy: policy.clone(),
                principal,
                resource,
            });
        }
        slicer
    }

    /// The policies of the whole set whose scope can match a request with `ids`.
    pub(crate) fn slice<'a>(
        &self,
        ids: &RequestIds<'_>,
        whole: &'a cedar_policy::PolicySet,
    ) -> Slice<'a> {
        if !self.enabled {
            return Slice::Whole(whole);
        }
        let mut picked: Vec<usize> = Vec::new();
        let buckets = [
            self.by_entitlement.get(ids.entitlement),
            self.by_target.get(ids.target),
            self.by_identity.get(ids.identity),
            self.by_team.get(ids.team),
            Some(&self.unscoped),
        ];
        for bucket in buckets.into_iter().flatten() {
            picked.extend(
                bucket
                    .iter()
                    .copied()
                    .filter(|&i| self.policies.get(i).is_some_and(|p| p.admits(ids))),
            );
        }
        if picked.is_empty() {
            return Slice::Empty;
        }
        // Each policy is filed once, so there are no duplicates to remove.
        picked.sort_unstable();
        let policies = picked
            .into_iter()
            .filter_map(|i| self.policies.get(i))
            .map(|p| p.policy.clone());
        match cedar_policy::PolicySet::from_policies(policies) {
            Ok(set) => Slice::Some(set),
            // Cannot happen (the ids were unique in the whole set); the whole set is
            // always a correct answer.
            Err(_) => Slice::Whole(whole),
        }
    }
}

#[cfg(test)]
mod tests;
