//! From request facts to a Kairos decision, through one Cedar authorization.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, Response,
    RestrictedExpression,
};
use kairos_domain::{Decision, DecisionOutcome, Principal};

use crate::error::{PolicyError, PolicyErrorKind};
use crate::slice::{ModelTypes, RequestIds, Slice};
use crate::{CompiledPolicy, PolicyAction, PolicyInput, PolicySet};

/// The Kairos entity types and the two actions, parsed once per process rather than
/// for every request.
pub(crate) struct Model {
    identity: EntityTypeName,
    team: EntityTypeName,
    target: EntityTypeName,
    entitlement: EntityTypeName,
    request: EntityUid,
    renew: EntityUid,
    /// `ip("…")` values by address: Cedar parses the extension's name anew for every
    /// value it builds (a parser and its lexer's regex cache each time, about a tenth of
    /// a token grant's CPU in a profile), and workloads ask from a handful of addresses.
    source_ips: Mutex<HashMap<std::net::IpAddr, RestrictedExpression>>,
}

impl Model {
    fn parse() -> Result<Self, String> {
        let name = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        Ok(Self {
            identity: name("Kairos::Identity")?,
            team: name("Kairos::Team")?,
            target: name("Kairos::Target")?,
            entitlement: name("Kairos::Entitlement")?,
            request: EntityUid::from_type_name_and_id(
                name("Kairos::Action")?,
                EntityId::new(PolicyAction::Request.as_str()),
            ),
            renew: EntityUid::from_type_name_and_id(
                name("Kairos::Action")?,
                EntityId::new(PolicyAction::Renew.as_str()),
            ),
            source_ips: Mutex::new(HashMap::new()),
        })
    }

    /// Addresses whose `ip` value is kept at most.
    const SOURCE_IPS: usize = 1024;

    /// The Cedar `ip` value of `ip`, built once per address (while the cache has room).
    fn source_ip(&self, ip: std::net::IpAddr) -> RestrictedExpression {
        // A poisoned lock only means a decision panicked while holding it; the map is
        // still a valid cache.
        let mut cache = self
            .source_ips
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = cache.get(&ip) {
            return value.clone();
        }
        let value = RestrictedExpression::new_ip(ip.to_string());
        if cache.len() >= Self::SOURCE_IPS {
            // Make room by dropping whichever entry the map yields first.
            if let Some(old) = cache.keys().next().copied() {
                cache.remove(&old);
            }
        }
        cache.insert(ip, value.clone());
        value
    }

    fn action(&self, action: PolicyAction) -> &EntityUid {
        match action {
            PolicyAction::Request => &self.request,
            PolicyAction::Renew => &self.renew,
        }
    }

    /// The model's entity types, or why they could not be built (a bug, never seen).
    pub(crate) fn get() -> Result<&'static Model, PolicyError> {
        static MODEL: LazyLock<Result<Model, String>> = LazyLock::new(Model::parse);
        MODEL
            .as_ref()
            .map_err(|message| PolicyError::nowhere(PolicyErrorKind::Request(message.clone())))
    }

    pub(crate) fn types(&self) -> ModelTypes<'_> {
        ModelTypes {
            identity: &self.identity,
            team: &self.team,
            entitlement: &self.entitlement,
            target: &self.target,
        }
    }
}

/// How a decision is computed. Both give the same decision for every request; the
/// plain path is kept to prove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// Only the policies whose scope can match the request (see `slice`), with the
    /// request's entities from the set's [`EntityCache`].
    Fast,
    /// Every policy of the set, with entities built afresh: the plain path.
    #[cfg_attr(not(test), allow(dead_code))]
    Plain,
}

pub(crate) fn decide(set: &PolicySet, input: &PolicyInput) -> Result<Decision, PolicyError> {
    decide_in(set, input, Path::Fast)
}

pub(crate) fn decide_in(
    set: &PolicySet,
    input: &PolicyInput,
    path: Path,
) -> Result<Decision, PolicyError> {
    let model = Model::get()?;
    let request_error = |message| PolicyError::nowhere(PolicyErrorKind::Request(message));
    let (entities, request) = match path {
        Path::Fast => (
            set.entities
                .get_or_build(input, || to_entities(model, input))
                .map_err(request_error)?,
            to_request(model, input).map_err(request_error)?,
        ),
        Path::Plain => (
            Arc::new(to_entities(model, input).map_err(request_error)?),
            to_request(model, input).map_err(request_error)?,
        ),
    };
    let authorize = |policies: &cedar_policy::PolicySet| {
        set.authorizer.is_authorized(&request, policies, &entities)
    };
    let response = match path {
        Path::Plain => authorize(&set.cedar),
        Path::Fast => {
            let ids = RequestIds {
                identity: input.identity.name.as_str(),
                team: input.identity.owner.as_str(),
                entitlement: input.entitlement.name.as_str(),
                target: input.entitlement.name.target(),
            };
            match set.slicer.slice(&ids, &set.cedar) {
                // What Cedar answers for a set in which nothing applies.
                Slice::Empty => {
                    Response::new(cedar_policy::Decision::Deny, HashSet::new(), Vec::new())
                }
                Slice::Some(policies) => authorize(&policies),
                Slice::Whole(policies) => authorize(policies),
            }
        }
    };

    let mut determining: Vec<&CompiledPolicy> = response
        .diagnostics()
        .reason()
        .filter_map(|id| set.policies.get(&id.to_string()))
        .collect();
    determining.sort_by(|a, b| a.id.cmp(&b.id));
    let policies: Vec<String> = determining.iter().map(|p| p.id.clone()).collect();

    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(ToString::to_string)
        .collect();
    let with_errors = |reason: String| {
        if errors.is_empty() {
            reason
        } else {
            format!(
                "{reason} (policies skipped because they failed to evaluate: {})",
                errors.join("; ")
            )
        }
    };

    let decision = match response.decision() {
        cedar_policy::Decision::Deny if determining.is_empty() => Decision {
            outcome: DecisionOutcome::Deny,
            policies,
            reason: with_errors(match input.action {
                PolicyAction::Request => format!(
                    "no policy permits {} to request {}",
                    input.identity.name, input.entitlement.name
                ),
                PolicyAction::Renew => format!(
                    "no policy permits {} to renew its grant of {} to a lifetime of {} \
                     (policies decide renewals as action Kairos::Action::\"renew\")",
                    input.identity.name, input.entitlement.name, input.ttl
                ),
            }),
        },
        cedar_policy::Decision::Deny => {
            let reason = annotated_reason(&determining)
                .unwrap_or_else(|| format!("forbidden by {}", list("policy", &policies)));
            Decision {
                outcome: DecisionOutcome::Deny,
                policies,
                reason: with_errors(reason),
            }
        }
        cedar_policy::Decision::Allow => {
            let approvals = determining.iter().map(|p| p.approvals).max().unwrap_or(0);
            // The reason of a policy that asked for the most approvals explains best.
            let mut by_weight = determining.clone();
            by_weight.sort_by(|a, b| b.approvals.cmp(&a.approvals).then(a.id.cmp(&b.id)));
            let (outcome, generated) = match approvals {
                0 => (
                    DecisionOutcome::Grant,
                    format!("permitted by {}", list("policy", &policies)),
                ),
                n => (
                    DecisionOutcome::Pending { approvals: n },
                    format!(
                        "permitted by {} once {n} approver{} agree{}",
                        list("policy", &policies),
                        if n == 1 { "" } else { "s" },
                        if n == 1 { "s" } else { "" },
                    ),
                ),
            };
            Decision {
                outcome,
                policies,
                reason: with_errors(annotated_reason(&by_weight).unwrap_or(generated)),
            }
        }
    };
    Ok(decision)
}

fn annotated_reason(policies: &[&CompiledPolicy]) -> Option<String> {
    policies.iter().find_map(|p| p.reason.clone())
}

fn list(noun: &str, ids: &[String]) -> String {
    match ids {
        [one] => format!("{noun} {one}"),
        many => format!("{noun} {}", many.join(", ")).replacen(noun, &plural(noun), 1),
    }
}

fn plural(noun: &str) -> String {
    match noun.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{noun}s"),
    }
}

fn uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The request's entities: the principal (its only parent is its team), the team, the
/// resource (its only parent is its target) and the target. `slice` relies on this
/// shape. They depend only on the identity and entitlement facts, which
/// [`EntityCache::key`] must therefore cover.
fn to_entities(model: &Model, input: &PolicyInput) -> Result<Entities, String> {
    let identity = &input.identity;
    let entitlement = &input.entitlement;

    let team = uid(&model.team, identity.owner.as_str());
    let principal = uid(&model.identity, identity.name.as_str());
    let target = uid(&model.target, entitlement.name.target());
    let resource = uid(&model.entitlement, entitlement.name.as_str());

    let principal_entity = Entity::new(
        principal,
        HashMap::from([
            ("kind".to_owned(), string(&identity.kind)),
            ("owner".to_owned(), string(identity.owner.as_str())),
            ("issuer".to_owned(), string(&identity.issuer)),
        ]),
        HashSet::from([team.clone()]),
    )
    .map_err(|e| e.to_string())?;
    let resource_entity = Entity::new(
        resource,
        HashMap::from([
            ("target".to_owned(), string(entitlement.name.target())),
            ("role".to_owned(), string(entitlement.name.role())),
            ("tier".to_owned(), string(entitlement.tier.as_str())),
            (
                "max_ttl_secs".to_owned(),
                long(entitlement.max_ttl.as_secs()),
            ),
        ]),
        HashSet::from([target.clone()]),
    )
    .map_err(|e| e.to_string())?;
    Entities::from_entities(
        [
            principal_entity,
            Entity::new_no_attrs(team, HashSet::new()),
            resource_entity,
            Entity::new_no_attrs(target, HashSet::new()),
        ],
        None,
    )
    .map_err(|e| e.to_string())
}

fn to_request(model: &Model, input: &PolicyInput) -> Result<Request, String> {
    let requester_kind = match &input.requester {
        Principal::Workload(_) => "workload",
        Principal::User(_) => "user",
        Principal::System(_) => "system",
    };
    let context = Context::from_pairs(
        [
            ("ttl_secs".to_owned(), long(input.ttl.as_secs())),
            ("task_kind".to_owned(), string(input.task.kind.as_str())),
            ("task_ref".to_owned(), string(input.task.reference.as_str())),
            ("reason".to_owned(), string(&input.task.reason)),
            ("requester".to_owned(), string(&input.requester.to_string())),
            ("requester_kind".to_owned(), string(requester_kind)),
            (
                "renewal".to_owned(),
                RestrictedExpression::new_bool(input.action == PolicyAction::Renew),
            ),
            (
                "break_glass".to_owned(),
                RestrictedExpression::new_bool(input.circumstances.break_glass),
            ),
            (
                "open_reviews".to_owned(),
                long(u64::from(input.circumstances.open_reviews)),
            ),
        ]
        .into_iter()
        .chain(
            input
                .circumstances
                .source_ip
                .map(|ip| ("source_ip".to_owned(), model.source_ip(ip))),
        ),
    )
    .map_err(|e| e.to_string())?;

    Request::new(
        uid(&model.identity, input.identity.name.as_str()),
        model.action(input.action).clone(),
        uid(&model.entitlement, input.entitlement.name.as_str()),
        context,
        None,
    )
    .map_err(|e| e.to_string())
}

/// Entities of recently decided (identity, entitlement) pairs, so that a pair asked
/// about again does not pay again for Cedar checking the entity hierarchy (computing
/// its transitive closure), the largest cost of a decision once it is sliced. The key
/// holds every fact the entities are built from, so a hit is exactly what would have
/// been built. Bounded: when full, an arbitrary entry makes room for the new one.
#[derive(Default)]
pub(crate) struct EntityCache {
    map: Mutex<HashMap<String, Arc<Entities>>>,
}

impl std::fmt::Debug for EntityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.map.lock().map_or(0, |map| map.len());
        f.debug_struct("EntityCache").field("pairs", &len).finish()
    }
}

impl EntityCache {
    /// Pairs kept at most (a few KiB each).
    const CAPACITY: usize = 1024;

    /// Every fact `to_entities` reads, each prefixed with its length so that no two
    /// different inputs give the same key.
    fn key(input: &PolicyInput) -> String {
        let identity = &input.identity;
        let entitlement = &input.entitlement;
        let mut key = String::with_capacity(96);
        for field in [
            identity.name.as_str(),
            identity.kind.as_str(),
            identity.owner.as_str(),
            identity.issuer.as_str(),
            entitlement.name.as_str(),
            entitlement.tier.as_str(),
        ] {
            let _ = write!(key, "{}:{field}", field.len());
        }
        let _ = write!(key, "{}", entitlement.max_ttl.as_secs());
        key
    }

    fn get_or_build(
        &self,
        input: &PolicyInput,
        build: impl FnOnce() -> Result<Entities, String>,
    ) -> Result<Arc<Entities>, String> {
        let key = Self::key(input);
        // A poisoned lock only means another decision panicked while holding it; the
        // map is still a valid cache, so keep using it.
        let cached = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(entities) = cached {
            return Ok(entities);
        }
        let entities = Arc::new(build()?);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::CAPACITY {
            // Make room by dropping one entry, whichever the map yields first: cheap,
            // and no request pays for emptying the whole cache.
            if let Some(old) = map.keys().next().cloned() {
                map.remove(&old);
            }
        }
        map.insert(key, Arc::clone(&entities));
        Ok(entities)
    }
}
