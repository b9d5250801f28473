//! Policy load (`kairos_policy::PolicySet::compile`, what the config loader calls) on
//! arbitrary Rego text, then one request and one renewal decided with fixed facts when it
//! compiles. Must never panic; every error's location lies inside its file; every
//! decision names only rules of the set's files (`<file>` or `<file>:<rule id>`) and
//! asks for at most `MAX_APPROVALS` approvals.
//!
//! The input is split at NUL bytes into up to two files (`a.rego`, `b.rego`), and a
//! third, fixed Cedar file can be mixed in by a leading `C`, so that both engines
//! deciding together are reached too.
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
    let (with_cedar, text) = match text.strip_prefix('C') {
        Some(rest) => (true, rest),
        None => (false, text.as_ref()),
    };
    let mut files: Vec<PolicySource> = text
        .splitn(2, '\0')
        .zip(["a.rego", "b.rego"])
        .map(|(text, path)| PolicySource {
            path: path.to_owned(),
            text: text.to_owned(),
        })
        .collect();
    if with_cedar {
        files.push(PolicySource {
            path: "c.cedar".to_owned(),
            text: "@id(\"all\") permit (principal, action, resource);".to_owned(),
        });
    }
    match PolicySet::compile(&files) {
        Ok(set) => {
            for action in [PolicyAction::Request, PolicyAction::Renew] {
                let Some(input) = input(action) else {
                    panic!("fuzz setup: the fixed policy input does not parse");
                };
                if let Ok(decision) = set.decide(&input) {
                    for id in &decision.policies {
                        let file = id.split_once(".rego:").map_or(id.clone(), |(f, _)| format!("{f}.rego"));
                        assert!(
                            set.get(id).is_some() || set.get(&file).is_some(),
                            "decision names unknown rule {id:?}"
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
