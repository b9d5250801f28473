//! Policy load (`kairos_policy::PolicySet::compile`, what the config loader calls) on
//! arbitrary Cedar text, then one decision with fixed facts when it compiles. Must never
//! panic; every error's location lies inside its file; every decision names only
//! policies of the set and asks for at most `MAX_APPROVALS` approvals.
//!
//! The input is split at NUL bytes into up to three files (`a.cedar`, `b.cedar`,
//! `c.cedar`), so that duplicate ids across files are reachable too.
#![no_main]

use kairos_domain::{
    DecisionOutcome, EntitlementName, IdentityName, Principal, Task, TaskKind, TaskRef, TeamName,
    Ttl,
};
use kairos_policy::{
    EntitlementFacts, IdentityFacts, MAX_APPROVALS, PolicyAction, PolicyInput, PolicySet,
    PolicySource, Tier,
};
use libfuzzer_sys::fuzz_target;

fn input(action: PolicyAction) -> Option<PolicyInput> {
    let identity = IdentityName::parse("nightly-backup").ok()?;
    Some(PolicyInput {
        action,
        identity: IdentityFacts {
            name: identity.clone(),
            kind: "ci-job".to_owned(),
            owner: TeamName::parse("payments").ok()?,
            issuer: "ci".to_owned(),
        },
        entitlement: EntitlementFacts {
            name: EntitlementName::parse("orders-api/read").ok()?,
            tier: Tier::Low,
            max_ttl: Ttl::parse("1h").ok()?,
        },
        ttl: Ttl::parse("15m").ok()?,
        task: Task::new(
            TaskKind::Job,
            TaskRef::parse("run-1").ok()?,
            "nightly".to_owned(),
        )
        .ok()?,
        requester: Principal::Workload(identity),
        circumstances: Default::default(),
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let files: Vec<PolicySource> = text
        .splitn(3, '\0')
        .zip(["a.cedar", "b.cedar", "c.cedar"])
        .map(|(text, path)| PolicySource {
            path: path.to_owned(),
            text: text.to_owned(),
        })
        .collect();
    match PolicySet::compile(&files) {
        Ok(set) => {
            // A request and a renewal: both decisions obey the same rules.
            for action in [PolicyAction::Request, PolicyAction::Renew] {
                let Some(input) = input(action) else {
                    panic!("fuzz setup: the fixed policy input does not parse");
                };
                if let Ok(decision) = set.decide(&input) {
                    for id in &decision.policies {
                        assert!(
                            set.get(id).is_some(),
                            "decision names unknown policy {id:?}"
                        );
                    }
                    if let DecisionOutcome::Pending { approvals } = decision.outcome {
                        assert!(approvals > 0 && approvals <= MAX_APPROVALS, "{approvals}");
                    }
                }
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for error in errors.iter() {
                let _ = error.to_string();
                let Some(location) = &error.location else {
                    continue;
                };
                let Some(file) = files.iter().find(|f| f.path == location.file) else {
                    panic!("error in a file that was not given: {error}");
                };
                let lines = file.text.split('\n').count();
                assert!(
                    location.line >= 1 && usize::try_from(location.line).is_ok_and(|l| l <= lines),
                    "line {} of {lines}: {error}",
                    location.line
                );
                assert!(location.column >= 1, "{error}");
            }
        }
    }
});
