//! The sliced decision must equal the plain one (Cedar's authorizer over the whole set)
//! for every request: same outcome, same determining policies, same reason, same
//! evaluation errors in the same order. Policy sets are generated from every scope form
//! (including unconstrained scopes, `in` hierarchies, `is`, impossible scopes), with
//! `when`/`unless` conditions, annotations and policies that fail to evaluate.

// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;

use kairos_domain::{
    EntitlementName, IdentityName, Principal, Task, TaskKind, TaskRef, TeamName, Ttl, UserName,
};

use super::{Need, RequestIds, Slice};
use crate::decide::{Model, Path, decide_in};
use crate::{EntitlementFacts, IdentityFacts, PolicyInput, PolicySet, PolicySource, Tier};

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

// The vocabulary requests are drawn from (all but the last of each). Policies also name
// the `ghost*` ids, which no request has. Some ids are shared between types (`search`
// is an identity, a team and a target), so a constraint of the wrong type with the
// right id must still not match.
const IDENTITIES: [&str; 5] = [
    "nightly-backup",
    "deployer",
    "oncall-1",
    "search",
    "ghost-id",
];
const TEAMS: [&str; 3] = ["payments", "search", "ghost-team"];
const ENTITLEMENTS: [&str; 6] = [
    "orders-api/read",
    "orders-api/write",
    "orders-db/admin",
    "search/read",
    "payments/read",
    "ghost/read",
];
const TARGETS: [&str; 5] = ["orders-api", "orders-db", "search", "ghost", "payments"];

fn principal_scope(rng: &mut Rng) -> String {
    let id = rng.pick(&IDENTITIES);
    let team = rng.pick(&TEAMS);
    let target = rng.pick(&TARGETS);
    match rng.below(14) {
        0..=2 => "principal".to_owned(),
        3 | 4 => format!("principal == Kairos::Identity::\"{id}\""),
        5 => format!("principal in Kairos::Identity::\"{id}\""),
        6 | 7 => format!("principal in Kairos::Team::\"{team}\""),
        8 => "principal is Kairos::Identity".to_owned(),
        9 => format!("principal is Kairos::Identity in Kairos::Team::\"{team}\""),
        10 => format!("principal is Kairos::Identity in Kairos::Identity::\"{id}\""),
        // Scopes no request satisfies (the validator only warns about these).
        11 => format!("principal == Kairos::Team::\"{team}\""),
        12 => format!("principal in Kairos::Target::\"{target}\""),
        _ => match rng.below(3) {
            0 => "principal is Kairos::Team".to_owned(),
            1 => format!("principal is Kairos::Team in Kairos::Team::\"{team}\""),
            _ => format!(
                "principal in Kairos::Entitlement::\"{}\"",
                rng.pick(&ENTITLEMENTS)
            ),
        },
    }
}

fn action_scope(rng: &mut Rng) -> &'static str {
    match rng.below(4) {
        0 | 1 => "action",
        2 => "action == Kairos::Action::\"request\"",
        _ => "action in [Kairos::Action::\"request\"]",
    }
}

fn resource_scope(rng: &mut Rng) -> String {
    let entitlement = rng.pick(&ENTITLEMENTS);
    let target = rng.pick(&TARGETS);
    let team = rng.pick(&TEAMS);
    match rng.below(14) {
        0..=2 => "resource".to_owned(),
        3 | 4 => format!("resource == Kairos::Entitlement::\"{entitlement}\""),
        5 => format!("resource in Kairos::Entitlement::\"{entitlement}\""),
        6 | 7 => format!("resource in Kairos::Target::\"{target}\""),
        8 => "resource is Kairos::Entitlement".to_owned(),
        9 => format!("resource is Kairos::Entitlement in Kairos::Target::\"{target}\""),
        10 => format!("resource is Kairos::Entitlement in Kairos::Entitlement::\"{entitlement}\""),
        11 => format!("resource == Kairos::Target::\"{target}\""),
        12 => format!("resource in Kairos::Team::\"{team}\""),
        _ => match rng.below(3) {
            0 => "resource is Kairos::Target".to_owned(),
            1 => format!("resource is Kairos::Target in Kairos::Target::\"{target}\""),
            _ => format!(
                "resource in Kairos::Identity::\"{}\"",
                rng.pick(&IDENTITIES)
            ),
        },
    }
}

fn condition(rng: &mut Rng) -> String {
    let team = rng.pick(&TEAMS);
    let target = rng.pick(&TARGETS);
    let clause = match rng.below(12) {
        0 => "resource.tier == \"low\"".to_owned(),
        1 => "principal.kind == \"bot\"".to_owned(),
        2 => "context.ttl_secs > 1800".to_owned(),
        3 => format!("principal in Kairos::Team::\"{team}\""),
        4 => format!("resource in Kairos::Target::\"{target}\""),
        5 => "context.task_kind == \"incident\" && context.task_ref like \"INC-*\"".to_owned(),
        6 => format!("principal.owner == \"{team}\" && resource.role == \"write\""),
        7 => "context.requester_kind == \"user\"".to_owned(),
        8 => "resource.max_ttl_secs >= context.ttl_secs".to_owned(),
        9 => format!("resource.target == \"{target}\" || principal.issuer == \"ci\""),
        // Fails to evaluate (overflow), which validation cannot see.
        _ => "context.ttl_secs * 9223372036854775807 > 0".to_owned(),
    };
    match rng.below(4) {
        0 => String::new(),
        1 => format!("\nunless {{ {clause} }}"),
        _ => format!("\nwhen {{ {clause} }}"),
    }
}

fn policy(rng: &mut Rng, n: usize) -> String {
    let mut text = String::new();
    let forbid = rng.chance(30);
    if rng.chance(60) {
        writeln!(text, "@id(\"p{n}\")").unwrap();
    }
    if !forbid && rng.chance(40) {
        writeln!(text, "@approvals(\"{}\")", rng.below(4)).unwrap();
    }
    if rng.chance(30) {
        writeln!(text, "@reason(\"reason of p{n}\")").unwrap();
    }
    write!(
        text,
        "{} ({}, {}, {}){};",
        if forbid { "forbid" } else { "permit" },
        principal_scope(rng),
        action_scope(rng),
        resource_scope(rng),
        condition(rng)
    )
    .unwrap();
    text
}

/// Two files (so default ids from both stems occur), `count` policies in all.
fn policy_files(rng: &mut Rng, count: usize) -> Vec<PolicySource> {
    let mut files = vec![String::new(), String::new()];
    for n in 0..count {
        let file = &mut files[rng.below(2)];
        file.push_str(&policy(rng, n));
        file.push_str("\n\n");
    }
    files
        .into_iter()
        .enumerate()
        .map(|(i, text)| PolicySource {
            path: format!("policies/file{i}.cedar"),
            text,
        })
        .collect()
}

fn request(rng: &mut Rng) -> PolicyInput {
    let identity = rng.pick(&IDENTITIES[..4]);
    PolicyInput {
        action: crate::PolicyAction::Request,
        identity: IdentityFacts {
            name: IdentityName::parse(identity).unwrap(),
            kind: rng.pick(&["ci-job", "bot", "service"]).to_owned(),
            owner: TeamName::parse(rng.pick(&TEAMS[..2])).unwrap(),
            issuer: rng.pick(&["ci", "k8s"]).to_owned(),
        },
        entitlement: EntitlementFacts {
            name: EntitlementName::parse(rng.pick(&ENTITLEMENTS[..5])).unwrap(),
            tier: Tier::ALL[rng.below(4)],
            max_ttl: Ttl::parse(rng.pick(&["15m", "1h", "8h"])).unwrap(),
        },
        ttl: Ttl::parse(rng.pick(&["5m", "30m", "2h"])).unwrap(),
        task: Task::new(
            [TaskKind::Job, TaskKind::Incident, TaskKind::Change][rng.below(3)],
            TaskRef::parse(rng.pick(&["INC-42", "run/8812", "CHG-7"])).unwrap(),
            "generated".into(),
        )
        .unwrap(),
        requester: if rng.chance(50) {
            Principal::Workload(IdentityName::parse(identity).unwrap())
        } else {
            Principal::User(UserName::parse("alice").unwrap())
        },
        circumstances: crate::Circumstances {
            source_ip: if rng.chance(50) {
                Some(std::net::IpAddr::from([10, 1, 2, 3]))
            } else {
                None
            },
            ..Default::default()
        },
    }
}

fn assert_same(set: &PolicySet, input: &PolicyInput, context: &dyn Fn() -> String) {
    let sliced = decide_in(set, input, Path::Fast);
    let whole = decide_in(set, input, Path::Plain);
    assert_eq!(sliced, whole, "{}", context());
}

fn compile(files: &[PolicySource]) -> PolicySet {
    PolicySet::compile(files).unwrap_or_else(|e| {
        let text: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
        panic!(
            "generated policies do not compile:\n{e}\n{}",
            text.join("\n")
        )
    })
}

#[test]
fn sliced_decisions_equal_whole_set_decisions() {
    let mut rng = Rng(0x6b61_6972_6f73);
    let mut outcomes = [0usize; 3];
    let mut with_errors = 0;
    for round in 0..400 {
        let count = 1 + rng.below(if round % 4 == 0 { 60 } else { 12 });
        let files = policy_files(&mut rng, count);
        let set = compile(&files);
        for _ in 0..25 {
            let input = request(&mut rng);
            let context = || {
                format!(
                    "round {round}, request {input:?}, policies:\n{}\n{}",
                    files[0].text, files[1].text
                )
            };
            assert_same(&set, &input, &context);
            let decision = set.decide(&input).unwrap();
            outcomes[match decision.outcome {
                kairos_domain::DecisionOutcome::Deny => 0,
                kairos_domain::DecisionOutcome::Grant => 1,
                kairos_domain::DecisionOutcome::Pending { .. } => 2,
            }] += 1;
            if decision.reason.contains("failed to evaluate") {
                with_errors += 1;
            }
        }
    }
    // The generator must exercise every kind of answer, or the comparison proves little.
    assert!(outcomes.iter().all(|n| *n > 500), "{outcomes:?}");
    assert!(with_errors > 200, "{with_errors}");
}

#[test]
fn several_failing_policies_keep_their_order() {
    // Errors are listed in the order Cedar evaluates policies; the slice must keep it.
    let overflow = "when { context.ttl_secs * 9223372036854775807 > 0 }";
    let text = format!(
        "@id(\"z\") forbid (principal, action, resource in Kairos::Target::\"orders-api\") {overflow};
         @id(\"a\") permit (principal in Kairos::Team::\"payments\", action, resource) {overflow};
         @id(\"m\") permit (principal, action, resource == Kairos::Entitlement::\"orders-api/read\") {overflow};
         @id(\"ok\") permit (principal == Kairos::Identity::\"nightly-backup\", action, resource);
         @id(\"b\") forbid (principal, action, resource) {overflow};"
    );
    let set = compile(&[PolicySource {
        path: "p.cedar".into(),
        text,
    }]);
    let mut rng = Rng(7);
    for _ in 0..50 {
        let input = request(&mut rng);
        assert_same(&set, &input, &|| format!("{input:?}"));
    }
    let d = decide_in(&set, &bench_request(), Path::Fast).unwrap();
    let at = |id: &str| d.reason.find(&format!("policy `{id}`")).unwrap();
    let (z, a, m, b) = (at("z"), at("a"), at("m"), at("b"));
    assert!(z < a && a < m && m < b, "{}", d.reason);
}

fn bench_request() -> PolicyInput {
    PolicyInput {
        action: crate::PolicyAction::Request,
        identity: IdentityFacts {
            name: IdentityName::parse("nightly-backup").unwrap(),
            kind: "ci-job".into(),
            owner: TeamName::parse("payments").unwrap(),
            issuer: "ci".into(),
        },
        entitlement: EntitlementFacts {
            name: EntitlementName::parse("orders-api/read").unwrap(),
            tier: Tier::Low,
            max_ttl: Ttl::parse("1h").unwrap(),
        },
        ttl: Ttl::parse("15m").unwrap(),
        task: Task::new(
            TaskKind::Job,
            TaskRef::parse("run/8812").unwrap(),
            "nightly backup".into(),
        )
        .unwrap(),
        requester: Principal::Workload(IdentityName::parse("nightly-backup").unwrap()),
        circumstances: Default::default(),
    }
}

/// The shape of a large estate: per-team reads, per-target writes and forbids, and
/// per-person on-call permits (as in kairos-bench).
fn estate(count: usize) -> String {
    let mut text = String::from(
        r#"
@id("ci-read-auto")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/read")
when { context.task_kind == "job" };
@id("admin-two-approvals")
@approvals("2")
permit (principal in Kairos::Team::"payments", action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/admin");
@id("no-deployer-reads")
forbid (principal == Kairos::Identity::"deployer", action, resource == Kairos::Entitlement::"orders-api/read");
"#,
    );
    for i in 0..count.saturating_sub(3) {
        let rule = match i % 4 {
            0 => format!(
                "@id(\"svc-{i}-read\") permit (principal in Kairos::Team::\"team-{i}\", action, resource == Kairos::Entitlement::\"svc-{i}/read\") when {{ resource.tier == \"low\" }};\n"
            ),
            1 => format!(
                "@id(\"svc-{i}-write\") @approvals(\"1\") permit (principal, action, resource in Kairos::Target::\"svc-{i}\") when {{ principal.owner == \"team-{i}\" }};\n"
            ),
            2 => format!(
                "@id(\"svc-{i}-no-bots\") forbid (principal, action, resource in Kairos::Target::\"svc-{i}\") when {{ principal.kind == \"bot\" }};\n"
            ),
            _ => format!(
                "@id(\"svc-{i}-oncall\") permit (principal == Kairos::Identity::\"oncall-{i}\", action, resource) when {{ context.task_kind == \"incident\" }};\n"
            ),
        };
        text.push_str(&rule);
    }
    text
}

#[test]
fn a_large_estate_slices_to_the_policies_that_name_the_request() {
    let set = compile(&[PolicySource {
        path: "policies/estate.cedar".into(),
        text: estate(1000),
    }]);
    assert_eq!(set.len(), 1000);
    let slice_ids = |input: &PolicyInput| {
        let ids = RequestIds {
            identity: input.identity.name.as_str(),
            team: input.identity.owner.as_str(),
            entitlement: input.entitlement.name.as_str(),
            target: input.entitlement.name.target(),
        };
        match set.slicer.slice(&ids, &set.cedar) {
            Slice::Empty => Vec::new(),
            Slice::Some(policies) => policies.policies().map(|p| p.id().to_string()).collect(),
            Slice::Whole(_) => panic!("slicing is off"),
        }
    };

    let input = bench_request();
    assert_eq!(slice_ids(&input), ["ci-read-auto"]);
    assert_same(&set, &input, &|| "bench request".to_owned());

    let mut oncall = bench_request();
    oncall.identity.name = IdentityName::parse("oncall-7").unwrap();
    oncall.identity.owner = TeamName::parse("team-4").unwrap();
    oncall.entitlement.name = EntitlementName::parse("svc-5/write").unwrap();
    oncall.task = Task::new(
        TaskKind::Incident,
        TaskRef::parse("INC-1").unwrap(),
        "page".into(),
    )
    .unwrap();
    // Not `svc-4-read`: it names `svc-4/read`, though the team matches.
    assert_eq!(slice_ids(&oncall), ["svc-5-write", "svc-7-oncall"]);
    assert_same(&set, &oncall, &|| "on-call request".to_owned());

    let mut nobody = bench_request();
    nobody.entitlement.name = EntitlementName::parse("elsewhere/read").unwrap();
    assert!(slice_ids(&nobody).is_empty());
    assert_same(&set, &nobody, &|| "request no policy names".to_owned());

    // Requests across the estate, including ones that each kind of policy names.
    let mut rng = Rng(99);
    for _ in 0..300 {
        let i = rng.below(1000);
        let mut input = request(&mut rng);
        if rng.chance(50) {
            input.identity.name = IdentityName::parse(format!("oncall-{i}")).unwrap();
        }
        if rng.chance(50) {
            input.identity.owner = TeamName::parse(format!("team-{i}")).unwrap();
        }
        if rng.chance(70) {
            let role = rng.pick(&["read", "write"]);
            input.entitlement.name = EntitlementName::parse(format!("svc-{i}/{role}")).unwrap();
        }
        assert_same(&set, &input, &|| format!("{input:?}"));
    }
}

#[test]
fn scope_constraints_are_classified_by_the_model() {
    let model = Model::get().unwrap();
    let types = model.types();
    let needs = |scope: &str| {
        let text = format!("permit ({scope});");
        let set = compile(&[PolicySource {
            path: "p.cedar".into(),
            text,
        }]);
        let policy = set.cedar.policies().next().unwrap().clone();
        (
            Need::of(
                policy.principal_constraint().into(),
                types.identity,
                types.team,
            ),
            Need::of(
                policy.resource_constraint().into(),
                types.entitlement,
                types.target,
            ),
        )
    };
    let own = |s: &str| Need::Own(s.to_owned());
    let parent = |s: &str| Need::Parent(s.to_owned());
    let cases = [
        ("principal, action, resource", (Need::Any, Need::Any)),
        (
            "principal == Kairos::Identity::\"x\", action, resource == Kairos::Entitlement::\"t/r\"",
            (own("x"), own("t/r")),
        ),
        (
            "principal in Kairos::Identity::\"x\", action, resource in Kairos::Entitlement::\"t/r\"",
            (own("x"), own("t/r")),
        ),
        (
            "principal in Kairos::Team::\"x\", action, resource in Kairos::Target::\"t\"",
            (parent("x"), parent("t")),
        ),
        (
            "principal is Kairos::Identity, action, resource is Kairos::Entitlement",
            (Need::Any, Need::Any),
        ),
        (
            "principal is Kairos::Identity in Kairos::Team::\"x\", action, resource is Kairos::Entitlement in Kairos::Target::\"t\"",
            (parent("x"), parent("t")),
        ),
        (
            "principal == Kairos::Team::\"x\", action, resource == Kairos::Target::\"t\"",
            (Need::Never, Need::Never),
        ),
        (
            "principal is Kairos::Team, action, resource is Kairos::Target in Kairos::Target::\"t\"",
            (Need::Never, Need::Never),
        ),
        (
            "principal in Kairos::Target::\"x\", action, resource in Kairos::Team::\"t\"",
            (Need::Never, Need::Never),
        ),
    ];
    for (scope, expected) in cases {
        assert_eq!(needs(scope), expected, "{scope}");
    }
}

#[test]
fn empty_set_decides_like_cedar() {
    let set = PolicySet::empty();
    let input = bench_request();
    assert_same(&set, &input, &|| "empty".to_owned());
    let none = compile(&[]);
    assert_same(&none, &input, &|| "no files".to_owned());
}

#[test]
fn policy_sets_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<PolicySet>();
}
