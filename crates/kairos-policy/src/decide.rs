//! From request facts to a Kairos decision, through one Cedar authorization.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use kairos_domain::{Decision, DecisionOutcome, Principal};

use crate::error::{PolicyError, PolicyErrorKind};
use crate::{CompiledPolicy, PolicyInput, PolicySet};

pub(crate) fn decide(set: &PolicySet, input: &PolicyInput) -> Result<Decision, PolicyError> {
    let (request, entities) = to_cedar(input)
        .map_err(|message| PolicyError::nowhere(PolicyErrorKind::Request(message)))?;
    let response = set
        .authorizer
        .is_authorized(&request, &set.cedar, &entities);

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
            reason: with_errors(format!(
                "no policy permits {} to request {}",
                input.identity.name, input.entitlement.name
            )),
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

fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let type_name = EntityTypeName::from_str(type_name).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

fn to_cedar(input: &PolicyInput) -> Result<(Request, Entities), String> {
    let identity = &input.identity;
    let entitlement = &input.entitlement;

    let team = uid("Kairos::Team", identity.owner.as_str())?;
    let principal = uid("Kairos::Identity", identity.name.as_str())?;
    let target = uid("Kairos::Target", entitlement.name.target())?;
    let resource = uid("Kairos::Entitlement", entitlement.name.as_str())?;
    let action = uid("Kairos::Action", "request")?;

    let principal_entity = Entity::new(
        principal.clone(),
        HashMap::from([
            ("kind".to_owned(), string(&identity.kind)),
            ("owner".to_owned(), string(identity.owner.as_str())),
            ("issuer".to_owned(), string(&identity.issuer)),
        ]),
        HashSet::from([team.clone()]),
    )
    .map_err(|e| e.to_string())?;
    let resource_entity = Entity::new(
        resource.clone(),
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
    let entities = Entities::from_entities(
        [
            principal_entity,
            Entity::new_no_attrs(team, HashSet::new()),
            resource_entity,
            Entity::new_no_attrs(target, HashSet::new()),
        ],
        None,
    )
    .map_err(|e| e.to_string())?;

    let requester_kind = match &input.requester {
        Principal::Workload(_) => "workload",
        Principal::User(_) => "user",
        Principal::System(_) => "system",
    };
    let context = Context::from_pairs([
        ("ttl_secs".to_owned(), long(input.ttl.as_secs())),
        ("task_kind".to_owned(), string(input.task.kind.as_str())),
        ("task_ref".to_owned(), string(input.task.reference.as_str())),
        ("reason".to_owned(), string(&input.task.reason)),
        ("requester".to_owned(), string(&input.requester.to_string())),
        ("requester_kind".to_owned(), string(requester_kind)),
    ])
    .map_err(|e| e.to_string())?;

    let request =
        Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?;
    Ok((request, entities))
}
