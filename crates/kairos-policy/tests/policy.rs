// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use kairos_domain::{
    Decision, DecisionOutcome, EntitlementName, IdentityName, Principal, Task, TaskKind, TaskRef,
    TeamName, Ttl, UserName,
};
use kairos_policy::{
    EntitlementFacts, IdentityFacts, PolicyAction, PolicyInput, PolicySet, PolicySource, SCHEMA,
    Tier,
};

fn input() -> PolicyInput {
    PolicyInput {
        action: PolicyAction::Request,
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

fn with(f: impl FnOnce(&mut PolicyInput)) -> PolicyInput {
    let mut i = input();
    f(&mut i);
    i
}

fn compile(policy_text: &str) -> PolicySet {
    PolicySet::compile(&[PolicySource {
        path: "policies/main.cedar".into(),
        text: policy_text.into(),
    }])
    .unwrap_or_else(|e| panic!("policies do not compile:\n{e}"))
}

fn check(policy_text: &str, input: PolicyInput, expected: DecisionOutcome) -> Decision {
    let decision = compile(policy_text).decide(&input).unwrap();
    assert_eq!(decision.outcome, expected, "{decision:?}");
    decision
}

/// Compiles `files` expecting failure; every expected substring must be in the errors.
fn check_error(files: &[(&str, &str)], expected: &[&str]) {
    let sources: Vec<PolicySource> = files
        .iter()
        .map(|(path, text)| PolicySource {
            path: (*path).into(),
            text: (*text).into(),
        })
        .collect();
    let errors = match PolicySet::compile(&sources) {
        Ok(set) => panic!(
            "expected errors, compiled {:?}",
            set.policy_ids().collect::<Vec<_>>()
        ),
        Err(e) => e.to_string(),
    };
    for want in expected {
        assert!(errors.contains(want), "errors lack {want:?}:\n{errors}");
    }
}

const ALLOW_ALL: &str = "permit (principal, action, resource);";

#[test]
fn permit_grants_at_once() {
    let d = check(ALLOW_ALL, input(), DecisionOutcome::Grant);
    assert_eq!(d.policies, ["main:0"]);
    assert_eq!(d.reason, "permitted by policy main:0");
}

#[test]
fn approvals_annotation_makes_it_pending() {
    let d = check(
        r#"@id("two-eyes") @approvals("2") permit (principal, action, resource);"#,
        input(),
        DecisionOutcome::Pending { approvals: 2 },
    );
    assert_eq!(d.policies, ["two-eyes"]);
    assert!(d.reason.contains("2 approvers"), "{}", d.reason);
}

#[test]
fn largest_approvals_wins_and_reason_comes_from_it() {
    let d = check(
        r#"
        @id("a") @approvals("1") permit (principal, action, resource);
        @id("b") @approvals("3") @reason("writes to prod need three approvers")
        permit (principal, action, resource);
        @id("c") permit (principal, action, resource);
        "#,
        input(),
        DecisionOutcome::Pending { approvals: 3 },
    );
    assert_eq!(d.policies, ["a", "b", "c"]);
    assert_eq!(d.reason, "writes to prod need three approvers");
}

#[test]
fn zero_approvals_is_a_grant() {
    check(
        r#"@approvals("0") permit (principal, action, resource);"#,
        input(),
        DecisionOutcome::Grant,
    );
}

#[test]
fn forbid_overrides_permit() {
    let d = check(
        r#"
        @id("allow") permit (principal, action, resource);
        @id("no-ci") @reason("CI jobs never get this")
        forbid (principal, action, resource) when { principal.kind == "ci-job" };
        "#,
        input(),
        DecisionOutcome::Deny,
    );
    assert_eq!(d.policies, ["no-ci"]);
    assert_eq!(d.reason, "CI jobs never get this");
}

#[test]
fn nothing_permits_means_deny() {
    let d = check(
        r#"permit (principal, action, resource) when { principal.kind == "service" };"#,
        input(),
        DecisionOutcome::Deny,
    );
    assert!(d.policies.is_empty());
    assert_eq!(
        d.reason,
        "no policy permits nightly-backup to request orders-api/read"
    );
    let d = PolicySet::empty().decide(&input()).unwrap();
    assert_eq!(d.outcome, DecisionOutcome::Deny);
}

#[test]
fn when_clauses_see_the_entity_model() {
    let short_ttl = r#"permit (principal, action, resource) when { context.ttl_secs <= 1800 };"#;
    check(short_ttl, input(), DecisionOutcome::Grant);
    check(
        short_ttl,
        with(|i| i.ttl = Ttl::parse("1h").unwrap()),
        DecisionOutcome::Deny,
    );

    let low_tier = r#"permit (principal, action, resource) when { resource.tier == "low" };"#;
    check(low_tier, input(), DecisionOutcome::Grant);
    check(
        low_tier,
        with(|i| i.entitlement.tier = Tier::High),
        DecisionOutcome::Deny,
    );

    let team = r#"permit (principal in Kairos::Team::"payments", action == Kairos::Action::"request", resource in Kairos::Target::"orders-api");"#;
    check(team, input(), DecisionOutcome::Grant);
    check(
        team,
        with(|i| i.identity.owner = TeamName::parse("search").unwrap()),
        DecisionOutcome::Deny,
    );
    check(
        team,
        with(|i| i.entitlement.name = EntitlementName::parse("orders-db/read").unwrap()),
        DecisionOutcome::Deny,
    );

    let incident =
        r#"permit (principal, action, resource) when { context.task_kind == "incident" };"#;
    check(
        incident,
        with(|i| i.task.kind = TaskKind::Incident),
        DecisionOutcome::Grant,
    );
    check(incident, input(), DecisionOutcome::Deny);

    let attributes = r#"permit (principal == Kairos::Identity::"nightly-backup", action, resource == Kairos::Entitlement::"orders-api/read")
        when { principal.owner == "payments" && principal.issuer == "ci" && resource.target == "orders-api"
               && resource.role == "read" && resource.max_ttl_secs == 3600 && context.task_ref == "run/8812"
               && context.reason like "*backup*" };"#;
    check(attributes, input(), DecisionOutcome::Grant);

    let people = r#"permit (principal, action, resource) when { context.requester_kind == "user" && context.requester == "user:alice" };"#;
    check(people, input(), DecisionOutcome::Deny);
    check(
        people,
        with(|i| i.requester = Principal::User(UserName::parse("alice").unwrap())),
        DecisionOutcome::Grant,
    );
}

#[test]
fn failing_policy_is_skipped_and_named() {
    // Validation rejects most runtime errors; overflow still gets through.
    let d = check(
        r#"
        @id("ok") permit (principal, action, resource);
        @id("overflow") forbid (principal, action, resource) when { context.ttl_secs * 9223372036854775807 > 0 };
        "#,
        input(),
        DecisionOutcome::Grant,
    );
    assert!(d.reason.contains("overflow"), "{}", d.reason);
    let d = check(
        r#"@id("overflow") permit (principal, action, resource) when { context.ttl_secs * 9223372036854775807 > 0 };"#,
        input(),
        DecisionOutcome::Deny,
    );
    assert!(d.reason.starts_with("no policy permits"), "{}", d.reason);
    assert!(d.reason.contains("overflow"), "{}", d.reason);
}

#[test]
fn ids_default_to_file_stem_and_index() {
    let set = PolicySet::compile(&[
        PolicySource {
            path: "policies/base.cedar".into(),
            text: format!("{ALLOW_ALL}\n@id(\"named\") {ALLOW_ALL}\n{ALLOW_ALL}"),
        },
        PolicySource {
            path: "extra.cedar".into(),
            text: ALLOW_ALL.into(),
        },
    ])
    .unwrap();
    assert_eq!(
        set.policy_ids().collect::<Vec<_>>(),
        ["base:0", "base:2", "extra:0", "named"]
    );
    assert_eq!(set.len(), 4);
    let named = set.get("named").unwrap();
    assert_eq!(
        (named.location.file.as_str(), named.location.line),
        ("policies/base.cedar", 2)
    );
    assert_eq!(named.text, format!("@id(\"named\") {ALLOW_ALL}"));
}

#[test]
fn syntax_error_names_file_line_and_column() {
    check_error(
        &[
            ("policies/ok.cedar", ALLOW_ALL),
            (
                "policies/bad.cedar",
                "// comment\npermit (principal, action, resource);\n\npermit (principal, action resource);\n",
            ),
        ],
        &["policies/bad.cedar:4:"],
    );
    check_error(
        &[(
            "p.cedar",
            "permit (principal, action, resource)\n  when { context.ttl_secs < };",
        )],
        &["p.cedar:2:"],
    );
}

#[test]
fn entity_model_typos_are_errors() {
    check_error(
        &[(
            "p.cedar",
            "permit (principal, action, resource)\n  when { resource.teir == \"low\" };",
        )],
        &["p.cedar:2:", "teir"],
    );
    check_error(
        &[(
            "p.cedar",
            "permit (principal, action, resource) when { context.ttl_secs == \"1h\" };",
        )],
        &["p.cedar:1:"],
    );
    check_error(
        &[(
            "p.cedar",
            "permit (principal, action == Kairos::Action::\"approve\", resource);",
        )],
        &["p.cedar:1:", "approve"],
    );
}

#[test]
fn duplicate_ids_name_both_files() {
    check_error(
        &[
            (
                "a.cedar",
                "@id(\"same\") permit (principal, action, resource);",
            ),
            (
                "b.cedar",
                "\n\n@id(\"same\") permit (principal, action, resource);",
            ),
        ],
        &["b.cedar:3:1: policy id \"same\" is already used by the policy at a.cedar:1:1"],
    );
}

#[test]
fn bad_annotations_are_errors() {
    check_error(
        &[(
            "p.cedar",
            "\n@approvals(\"11\") permit (principal, action, resource);",
        )],
        &["p.cedar:2:1: policy p:0: @approvals(\"11\") must be a whole number from 0 to 10"],
    );
    check_error(
        &[(
            "p.cedar",
            "@approvals(\"-1\") permit (principal, action, resource);",
        )],
        &["@approvals(\"-1\")"],
    );
    check_error(
        &[(
            "p.cedar",
            "@approvals(\"two\") permit (principal, action, resource);",
        )],
        &["@approvals(\"two\")"],
    );
    check_error(
        &[(
            "p.cedar",
            "@approvals(\"1\") forbid (principal, action, resource);",
        )],
        &["@approvals on a forbid policy"],
    );
    check_error(
        &[(
            "p.cedar",
            "@id(\"x\") @approval(\"2\") permit (principal, action, resource);",
        )],
        &["policy x: unknown annotation @approval"],
    );
    check_error(
        &[(
            "p.cedar",
            "@reason(\"\") permit (principal, action, resource);",
        )],
        &["@reason"],
    );
    check_error(
        &[("p.cedar", "@id(\"\") permit (principal, action, resource);")],
        &["@id"],
    );
    check_error(
        &[(
            "p.cedar",
            "permit (principal == ?principal, action, resource);",
        )],
        &["p.cedar:1:1: policy p:0 is a template"],
    );
}

#[test]
fn all_errors_are_reported_together() {
    check_error(
        &[
            ("a.cedar", "permit (principal, action resource);"),
            (
                "b.cedar",
                "@approvals(\"99\") permit (principal, action, resource);",
            ),
            (
                "c.cedar",
                "permit (principal, action, resource) when { resource.nope };",
            ),
        ],
        &["a.cedar:1:", "b.cedar:1:1", "c.cedar:1:"],
    );
}

#[test]
fn no_files_is_an_empty_set_and_the_schema_parses() {
    let set = PolicySet::compile(&[]).unwrap();
    assert!(set.is_empty());
    assert!(SCHEMA.contains("namespace Kairos"));
}

fn renewal(ttl: &str) -> PolicyInput {
    with(|i| {
        i.action = PolicyAction::Renew;
        i.ttl = Ttl::parse(ttl).unwrap();
    })
}

#[test]
fn renewals_are_decided_as_their_own_action() {
    // A policy for requests says nothing about renewals: they are denied.
    let request_only = r#"@id("short") permit (principal, action == Kairos::Action::"request", resource)
        when { context.ttl_secs <= 300 };"#;
    check(
        request_only,
        with(|i| i.ttl = Ttl::parse("5m").unwrap()),
        DecisionOutcome::Grant,
    );
    let d = check(request_only, renewal("5m"), DecisionOutcome::Deny);
    assert!(d.reason.contains("renew"), "{}", d.reason);

    // A policy with an unconstrained action bounds the renewed grant's whole lifetime.
    let any_action = r#"@id("short") permit (principal, action, resource)
        when { context.ttl_secs <= 300 };"#;
    check(any_action, renewal("5m"), DecisionOutcome::Grant);
    check(any_action, renewal("55m"), DecisionOutcome::Deny);

    // Policies may name the renewal action and read `context.renewal`.
    let renew_rules = r#"
        @id("renew-approved") @approvals("1")
        permit (principal, action == Kairos::Action::"renew", resource)
        when { context.renewal && context.ttl_secs <= 3600 };
        @id("no-renewal-by-people") forbid (principal, action, resource)
        when { context.renewal && context.requester_kind == "user" };
    "#;
    check(
        renew_rules,
        renewal("55m"),
        DecisionOutcome::Pending { approvals: 1 },
    );
    check(renew_rules, input(), DecisionOutcome::Deny);
    check(
        renew_rules,
        with(|i| {
            i.action = PolicyAction::Renew;
            i.requester = Principal::User(UserName::parse("olga").unwrap());
        }),
        DecisionOutcome::Deny,
    );
}

#[test]
fn policies_see_the_source_address_as_an_ip() {
    let policy = r#"
        @id("read") permit (principal, action, resource);
        @id("inside-only") forbid (principal, action, resource)
        unless { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };
    "#;
    let from =
        |ip: Option<[u8; 4]>| with(|i| i.circumstances.source_ip = ip.map(std::net::IpAddr::from));
    check(policy, from(Some([10, 2, 3, 4])), DecisionOutcome::Grant);
    let d = check(policy, from(Some([192, 168, 1, 7])), DecisionOutcome::Deny);
    assert_eq!(d.policies, ["inside-only"]);
    // Unknown address: `context has source_ip` is false, so the forbid applies.
    check(policy, from(None), DecisionOutcome::Deny);
    // IPv6 too.
    let v6 = with(|i| i.circumstances.source_ip = Some("2001:db8::1".parse().unwrap()));
    check(
        r#"permit (principal, action, resource) when { context has source_ip && context.source_ip.isInRange(ip("2001:db8::/32")) };"#,
        v6,
        DecisionOutcome::Grant,
    );
}

#[test]
fn source_ip_without_has_is_a_compile_error() {
    // Strict validation: the attribute is optional, so policies must test for it.
    check_error(
        &[(
            "p.cedar",
            r#"permit (principal, action, resource) when { context.source_ip.isLoopback() };"#,
        )],
        &["source_ip"],
    );
}

#[test]
fn governance_context_reaches_policies() {
    let policy = r#"
        @id("office-only")
        permit (principal, action, resource)
        when { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };
        @id("break-glass-once")
        forbid (principal, action, resource)
        when { context.break_glass && context.open_reviews > 0 };
    "#;
    let from = |ip: Option<&str>, break_glass: bool, open_reviews: u32| {
        with(|i| {
            i.circumstances.source_ip = ip.map(|s| s.parse().unwrap());
            i.circumstances.break_glass = break_glass;
            i.circumstances.open_reviews = open_reviews;
        })
    };
    check(
        policy,
        from(Some("10.1.2.3"), false, 0),
        DecisionOutcome::Grant,
    );
    check(
        policy,
        from(Some("192.168.1.1"), false, 0),
        DecisionOutcome::Deny,
    );
    // Unknown source: the `has` guard keeps the permit from applying.
    check(policy, from(None, false, 0), DecisionOutcome::Deny);
    check(
        policy,
        from(Some("10.1.2.3"), true, 0),
        DecisionOutcome::Grant,
    );
    let d = check(
        policy,
        from(Some("10.1.2.3"), true, 1),
        DecisionOutcome::Deny,
    );
    assert!(d.reason.contains("break-glass-once"), "{}", d.reason);
    // IPv6 sources are ip values too.
    check(policy, from(Some("::1"), false, 0), DecisionOutcome::Deny);
}

#[test]
fn a_set_knows_whether_it_reads_open_reviews() {
    assert!(
        !compile(r#"permit (principal, action, resource) when { context.break_glass };"#)
            .reads_open_reviews()
    );
    assert!(
        compile(r#"permit (principal, action, resource) when { context.open_reviews == 0 };"#)
            .reads_open_reviews()
    );
    assert!(!PolicySet::empty().reads_open_reviews());
}

#[test]
fn source_ip_ranges_decide_each_address_on_its_own() {
    // The `ip` values are cached per address: the same address asked again, an address
    // outside the range, and one inside it again must each be judged as themselves.
    let set = compile(
        "permit (principal, action, resource) when { context has source_ip && context.source_ip.isInRange(ip(\"10.0.0.0/8\")) };",
    );
    let from = |addr: &str| with(|i| i.circumstances.source_ip = Some(addr.parse().unwrap()));
    for (addr, expected) in [
        ("10.1.2.3", DecisionOutcome::Grant),
        ("10.1.2.3", DecisionOutcome::Grant),
        ("192.168.1.9", DecisionOutcome::Deny),
        ("10.9.9.9", DecisionOutcome::Grant),
        ("192.168.1.9", DecisionOutcome::Deny),
        ("fd00::1", DecisionOutcome::Deny),
    ] {
        let decision = set.decide(&from(addr)).unwrap();
        assert_eq!(decision.outcome, expected, "{addr}: {decision:?}");
    }
    // No address: `context has source_ip` is false.
    assert_eq!(set.decide(&input()).unwrap().outcome, DecisionOutcome::Deny);
}
