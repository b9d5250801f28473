//! Rego decision latency through `kairos-policy` directly: the 3-policy Cedar floor's
//! policies written in Rego, deciding the same request, beside Cedar's figure.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kairos_domain::{DecisionOutcome, EntitlementName, IdentityName};
use kairos_policy::{PolicyInput, PolicySet, PolicySource};

use crate::cedar::{CedarResult, input};
use crate::stats::Latencies;

/// `cedar::BASE` in Rego: the same three rules, the same outcomes.
pub const BASE: &str = r#"package kairos

allow["ci-read-auto"] := "CI jobs may read orders without approval" if {
    input.action == "request"
    input.resource.name == "orders-api/read"
    input.context.task_kind == "job"
}

allow["admin-two-approvals"] := {"approvals": 2} if {
    input.principal.owner == "payments"
    input.action == "request"
    input.resource.name == "orders-api/admin"
}

deny["no-deployer-reads"] := "" if {
    input.principal.name == "deployer"
    input.resource.name == "orders-api/read"
}
"#;

/// Compiles the Rego policies and times single decisions for `duration` (after a short
/// warm-up), one at a time on one thread. First checks that Rego and Cedar decide three
/// requests (grant, pending 2, deny) alike.
pub fn measure(duration: Duration) -> anyhow::Result<CedarResult> {
    let started = Instant::now();
    let set = PolicySet::compile(&[PolicySource {
        path: "policies/bench.rego".into(),
        text: BASE.to_owned(),
    }])
    .map_err(|e| anyhow::anyhow!("the Rego policies do not compile:\n{e}"))?;
    let compile = started.elapsed();
    let cedar = PolicySet::compile(&[PolicySource {
        path: "policies/bench.cedar".into(),
        text: crate::cedar::BASE.to_owned(),
    }])
    .map_err(|e| anyhow::anyhow!("the Cedar policies do not compile:\n{e}"))?;

    let input = input().context("building the policy input")?;
    let mut admin = input.clone();
    admin.entitlement.name = EntitlementName::parse("orders-api/admin")?;
    let mut deployer = input.clone();
    deployer.identity.name = IdentityName::parse("deployer")?;
    let same = |i: &PolicyInput, want: DecisionOutcome| -> anyhow::Result<()> {
        let r = set.decide(i)?;
        let c = cedar.decide(i)?;
        if r.outcome != want || c.outcome != want {
            bail!("Rego and Cedar should both decide {want:?}: Rego {r:?}, Cedar {c:?}");
        }
        Ok(())
    };
    same(&input, DecisionOutcome::Grant)?;
    same(&admin, DecisionOutcome::Pending { approvals: 2 })?;
    same(&deployer, DecisionOutcome::Deny)?;

    let warmup = Instant::now() + duration / 10;
    while Instant::now() < warmup {
        set.decide(&input)?;
    }
    let mut samples = Vec::with_capacity(1 << 16);
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let t = Instant::now();
        let d = set.decide(&input)?;
        samples.push(t.elapsed());
        std::hint::black_box(d);
    }
    Ok(CedarResult {
        policies: 3,
        compile,
        decisions: samples.len(),
        latencies: Latencies::new(samples),
    })
}
