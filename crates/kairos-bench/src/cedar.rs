//! Cedar decision latency through `kairos-policy` directly: a realistic 1,000-policy set
//! beside the 3-policy floor, both deciding the same auto-granted request.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kairos_domain::{
    DecisionOutcome, EntitlementName, IdentityName, Principal, Task, TaskKind, TaskRef, TeamName,
    Ttl,
};
use kairos_policy::{EntitlementFacts, IdentityFacts, PolicyInput, PolicySet, PolicySource, Tier};

use crate::stats::Latencies;

/// One policy set's measurement.
#[derive(Debug, Clone)]
pub struct CedarResult {
    pub policies: usize,
    pub compile: Duration,
    pub decisions: usize,
    pub latencies: Latencies,
}

/// The three policies every set starts with (as in the integration tests).
pub(crate) const BASE: &str = r#"
@id("ci-read-auto")
@reason("CI jobs may read orders without approval")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/read")
when { context.task_kind == "job" };

@id("admin-two-approvals")
@approvals("2")
permit (principal in Kairos::Team::"payments", action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/admin");

@id("no-deployer-reads")
forbid (principal == Kairos::Identity::"deployer", action, resource == Kairos::Entitlement::"orders-api/read");
"#;

/// `count` policies: the three base ones plus a mix of scoped permits, approval policies
/// and conditional forbids over other teams and targets, the shape a large estate has.
pub fn policy_text(count: usize) -> String {
    let mut text = BASE.to_owned();
    for i in 0..count.saturating_sub(3) {
        let rule = match i % 4 {
            0 => format!(
                "@id(\"svc-{i}-read\")\npermit (principal in Kairos::Team::\"team-{i}\", action == Kairos::Action::\"request\", resource == Kairos::Entitlement::\"svc-{i}/read\")\nwhen {{ context.ttl_secs <= 3600 && resource.tier == \"low\" }};\n"
            ),
            1 => format!(
                "@id(\"svc-{i}-write\")\n@approvals(\"1\")\npermit (principal, action == Kairos::Action::\"request\", resource in Kairos::Target::\"svc-{i}\")\nwhen {{ principal.owner == \"team-{i}\" && resource.role == \"write\" }};\n"
            ),
            2 => format!(
                "@id(\"svc-{i}-no-bots\")\nforbid (principal, action, resource in Kairos::Target::\"svc-{i}\")\nwhen {{ principal.kind == \"bot\" && resource.tier == \"critical\" }};\n"
            ),
            _ => format!(
                "@id(\"svc-{i}-oncall\")\npermit (principal == Kairos::Identity::\"oncall-{i}\", action, resource)\nwhen {{ context.task_kind == \"incident\" && context.task_ref like \"INC-*\" }};\n"
            ),
        };
        text.push('\n');
        text.push_str(&rule);
    }
    text
}

pub(crate) fn input() -> anyhow::Result<PolicyInput> {
    Ok(PolicyInput {
        action: kairos_policy::PolicyAction::Request,
        identity: IdentityFacts {
            name: IdentityName::parse("nightly-backup")?,
            kind: "ci-job".into(),
            owner: TeamName::parse("payments")?,
            issuer: "ci".into(),
        },
        entitlement: EntitlementFacts {
            name: EntitlementName::parse("orders-api/read")?,
            tier: Tier::Low,
            max_ttl: Ttl::parse("1h")?,
        },
        ttl: Ttl::parse("15m")?,
        task: Task::new(
            TaskKind::Job,
            TaskRef::parse("run/8812")?,
            "nightly backup".into(),
        )?,
        requester: Principal::Workload(IdentityName::parse("nightly-backup")?),
        circumstances: kairos_policy::Circumstances {
            source_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
            ..Default::default()
        },
    })
}

/// Compiles `count` policies and times single decisions for `duration` (after a short
/// warm-up), one at a time on one thread.
pub fn measure(count: usize, duration: Duration) -> anyhow::Result<CedarResult> {
    let text = policy_text(count);
    let started = Instant::now();
    let set = PolicySet::compile(&[PolicySource {
        path: "policies/bench.cedar".into(),
        text,
    }])
    .map_err(|e| anyhow::anyhow!("the generated policies do not compile:\n{e}"))?;
    let compile = started.elapsed();
    if set.len() != count {
        bail!("compiled {} policies, expected {count}", set.len());
    }
    let input = input().context("building the policy input")?;
    let decision = set.decide(&input)?;
    if decision.outcome != DecisionOutcome::Grant {
        bail!("the benchmark request should be granted, got {decision:?}");
    }
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
        policies: count,
        compile,
        decisions: samples.len(),
        latencies: Latencies::new(samples),
    })
}
