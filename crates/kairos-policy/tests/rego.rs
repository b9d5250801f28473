//! Rego policies: the input document, the `deny` / `allow` contract, errors at load, and
//! Cedar and Rego together.
// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use kairos_domain::{
    Decision, DecisionOutcome, EntitlementName, IdentityName, Principal, Task, TaskKind, TaskRef,
    TeamName, Ttl, UserName,
};
use kairos_policy::{
    Circumstances, EntitlementFacts, IdentityFacts, MAX_REGO_NESTING, PolicyAction, PolicyInput,
    PolicyLanguage, PolicySet, PolicySource, Tier,
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
        circumstances: Circumstances::default(),
    }
}

fn with(f: impl FnOnce(&mut PolicyInput)) -> PolicyInput {
    let mut i = input();
    f(&mut i);
    i
}

fn sources(files: &[(&str, &str)]) -> Vec<PolicySource> {
    files
        .iter()
        .map(|(path, text)| PolicySource {
            path: (*path).into(),
            text: (*text).into(),
        })
        .collect()
}

fn compile(files: &[(&str, &str)]) -> PolicySet {
    PolicySet::compile(&sources(files)).unwrap_or_else(|e| panic!("policies do not compile:\n{e}"))
}

fn rego(text: &str) -> PolicySet {
    compile(&[("policies/base.rego", text)])
}

/// Decides `input` with `set` and checks the outcome and the determining rules.
fn check(
    set: &PolicySet,
    input: PolicyInput,
    expected: DecisionOutcome,
    rules: &[&str],
) -> Decision {
    let d = set.decide(&input).unwrap();
    assert_eq!(d.outcome, expected, "{d:?}");
    assert_eq!(d.policies, rules, "{d:?}");
    d
}

/// A high-tier request to `set` (whose `base.rego` fails on it) is denied, naming the
/// file and saying its evaluation failed.
fn high_tier_fails(set: &PolicySet) -> Decision {
    let d = check(
        set,
        with(|i| i.entitlement.tier = Tier::High),
        DecisionOutcome::Deny,
        &["base.rego"],
    );
    assert!(d.reason.contains("Rego evaluation failed"), "{}", d.reason);
    d
}

/// Compiles expecting failure; every expected substring must be in the errors.
fn check_error(files: &[(&str, &str)], expected: &[&str]) {
    let errors = match PolicySet::compile(&sources(files)) {
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

/// The issue's example: deny one task kind, one approval for a tier, grant otherwise.
const EXAMPLE: &str = r#"
package kairos

deny["no-incident-admin"] := "incident tasks may not use admin entitlements" if {
    input.context.task_kind == "incident"
    input.resource.role == "admin"
}

allow["high-needs-one"] := {"approvals": 1, "reason": "high-tier access needs one approver"} if {
    input.resource.tier == "high"
}

allow["ci-jobs"] := "CI jobs may have the rest" if input.principal.kind == "ci-job"
"#;

#[test]
fn deny_grant_and_pending_with_reasons_and_rule_names() {
    let set = rego(EXAMPLE);
    assert_eq!(set.languages(), [PolicyLanguage::Rego]);
    assert_eq!(set.policy_ids().collect::<Vec<_>>(), ["base.rego"]);

    let d = check(
        &set,
        input(),
        DecisionOutcome::Grant,
        &["base.rego:ci-jobs"],
    );
    assert_eq!(d.reason, "CI jobs may have the rest");

    let high = with(|i| i.entitlement.tier = Tier::High);
    let d = check(
        &set,
        high,
        DecisionOutcome::Pending { approvals: 1 },
        &["base.rego:ci-jobs", "base.rego:high-needs-one"],
    );
    assert_eq!(d.reason, "high-tier access needs one approver");

    let incident_admin = with(|i| {
        i.task.kind = TaskKind::Incident;
        i.entitlement.name = EntitlementName::parse("orders-api/admin").unwrap();
    });
    let d = check(
        &set,
        incident_admin,
        DecisionOutcome::Deny,
        &["base.rego:no-incident-admin"],
    );
    assert_eq!(d.reason, "incident tasks may not use admin entitlements");

    // Nothing allows: deny, as Cedar does.
    let service = with(|i| i.identity.kind = "service".into());
    let d = check(&set, service, DecisionOutcome::Deny, &[]);
    assert_eq!(
        d.reason,
        "no Rego rule allows nightly-backup to request orders-api/read"
    );
}

#[test]
fn the_input_document_holds_every_fact() {
    let set = rego(
        r#"
package kairos

allow["all-facts"] := "every fact is there" if {
    input.action == "request"
    input.principal.name == "nightly-backup"
    input.principal.kind == "ci-job"
    input.principal.owner == "payments"
    input.principal.issuer == "ci"
    input.resource.name == "orders-api/read"
    input.resource.target == "orders-api"
    input.resource.role == "read"
    input.resource.tier == "low"
    input.resource.max_ttl_secs == 3600
    input.context.ttl_secs == 900
    input.context.task_kind == "job"
    input.context.task_ref == "run/8812"
    input.context.reason == "nightly backup"
    input.context.requester == "workload:nightly-backup"
    input.context.requester_kind == "workload"
    input.context.renewal == false
    input.context.break_glass == true
    input.context.open_reviews == 2
    net.cidr_contains("10.0.0.0/8", input.context.source_ip)
}
"#,
    );
    let full = with(|i| {
        i.circumstances = Circumstances {
            source_ip: Some(std::net::IpAddr::from([10, 1, 2, 3])),
            break_glass: true,
            open_reviews: 2,
        }
    });
    check(&set, full, DecisionOutcome::Grant, &["base.rego:all-facts"]);
    // Without a source address the field is absent, so the rule does not apply.
    let no_ip = with(|i| {
        i.circumstances.break_glass = true;
        i.circumstances.open_reviews = 2;
    });
    check(&set, no_ip, DecisionOutcome::Deny, &[]);
}

#[test]
fn renewals_and_people_are_told_apart() {
    let set = rego(
        r#"
package kairos

allow["renew-short"] := "renewals up to an hour" if {
    input.action == "renew"
    input.context.renewal
    input.context.ttl_secs <= 3600
    input.context.requester == "user:alice"
    input.context.requester_kind == "user"
}
"#,
    );
    let renew = |ttl: &str| {
        with(|i| {
            i.action = PolicyAction::Renew;
            i.ttl = Ttl::parse(ttl).unwrap();
            i.requester = Principal::User(UserName::parse("alice").unwrap());
        })
    };
    check(
        &set,
        renew("1h"),
        DecisionOutcome::Grant,
        &["base.rego:renew-short"],
    );
    let d = check(&set, renew("2h"), DecisionOutcome::Deny, &[]);
    assert!(d.reason.contains("renew its grant"), "{}", d.reason);
    check(&set, input(), DecisionOutcome::Deny, &[]);
}

#[test]
fn largest_approvals_wins_and_deny_beats_allow() {
    let set = rego(
        r#"
package kairos

allow["a"] := {"approvals": 1}
allow["b"] := {"approvals": 3, "reason": "three for this"}
allow["c"] := "plain"
allow["zero"] := {"approvals": 0, "reason": "zero is a grant"}
"#,
    );
    let d = check(
        &set,
        input(),
        DecisionOutcome::Pending { approvals: 3 },
        &[
            "base.rego:a",
            "base.rego:b",
            "base.rego:c",
            "base.rego:zero",
        ],
    );
    assert_eq!(d.reason, "three for this");

    let set = rego(
        r#"
package kairos

allow["everything"] := "yes"
deny["no-ci"] := "" if input.principal.kind == "ci-job"
"#,
    );
    let d = check(&set, input(), DecisionOutcome::Deny, &["base.rego:no-ci"]);
    assert_eq!(d.reason, "denied by Rego rule base.rego:no-ci");

    let set = rego("package kairos\n\nallow[\"one\"] := {\"approvals\": 1}\n");
    let d = check(
        &set,
        input(),
        DecisionOutcome::Pending { approvals: 1 },
        &["base.rego:one"],
    );
    assert_eq!(
        d.reason,
        "allowed by Rego rule base.rego:one once 1 approver agrees"
    );
}

#[test]
fn a_wrong_value_at_request_time_denies_and_names_the_file() {
    // Fine on the sample request at load; wrong for a high-tier one.
    let set = rego(
        r#"
package kairos

allow["ok"] := "fine"
allow["bad"] := {"approvals": 11} if input.resource.tier == "high"
"#,
    );
    check(&set, input(), DecisionOutcome::Grant, &["base.rego:ok"]);
    let d = high_tier_fails(&set);
    assert!(d.reason.contains("from 0 to 10"), "{}", d.reason);

    // Two entries with one key and different values, only for some requests: a conflict.
    let set = rego(
        r#"
package kairos

allow["x"] := "a" if input.resource.tier == "high"
allow["x"] := "b" if input.resource.tier == "high"
allow["ok"] := "fine"
"#,
    );
    check(&set, input(), DecisionOutcome::Grant, &["base.rego:ok"]);
    let d = high_tier_fails(&set);
    assert!(
        d.reason.contains(
            "policies/base.rego:5:6: rule conflicts with the following rule: policies/base.rego:4:6"
        ),
        "{}",
        d.reason
    );
}

/// A rule that would loop for hours: 8,000,000,000 iterations of three nested ranges.
const ENDLESS: &str = "r := numbers.range(1, 2000)
    n := count([s | some x in r; some y in r; some z in r; s := x + y + z])
    n < 0";

#[test]
fn an_evaluation_past_the_time_limit_denies_and_says_so() {
    // Endless only for high-tier requests, so the sample evaluation at load passes.
    let set = rego(&format!(
        r#"
package kairos

allow["ok"] := "fine"
deny["endless"] := "never reached" if {{
    input.resource.tier == "high"
    {ENDLESS}
}}
"#
    ));
    check(&set, input(), DecisionOutcome::Grant, &["base.rego:ok"]);
    let d = high_tier_fails(&set);
    assert!(d.reason.contains("time limit"), "{}", d.reason);
    // The other requests are decided as before.
    check(&set, input(), DecisionOutcome::Grant, &["base.rego:ok"]);

    // Endless for every request: the sample evaluation fails the file at load.
    check_error(
        &[(
            "policies/endless.rego",
            &format!("package kairos\n\nallow[\"all\"] := \"all\" if {{\n    {ENDLESS}\n}}\n"),
        )],
        &["policies/endless.rego", "time limit"],
    );
}

#[test]
fn only_the_files_own_package_may_be_referred_to() {
    let set = rego(
        "package kairos.guard

ci if input.principal.kind == \"ci-job\"
allow[\"ci\"] := \"ci\" if data.kairos.guard.ci
",
    );
    check(&set, input(), DecisionOutcome::Grant, &["base.rego:ci"]);
    check_error(
        &[(
            "policies/lib.rego",
            "package kairos\nimport data.lib\n\nallow[\"x\"] := \"y\" if data.other.flag\n",
        )],
        &[
            "policies/lib.rego:2:8: policy lib.rego: data.lib: unknown reference",
            "policies/lib.rego:4:22: policy lib.rego: data.other.flag: unknown reference",
        ],
    );
}

#[test]
fn files_stand_alone_and_their_rules_add_up() {
    let set = compile(&[
        (
            "policies/reads.rego",
            "package kairos.reads\n\nallow[\"reads\"] := \"reads are fine\" if input.resource.role == \"read\"\n",
        ),
        (
            "policies/guard.rego",
            "package kairos\n\ndeny[\"no-bots\"] := \"no bots\" if input.principal.kind == \"bot\"\n",
        ),
    ]);
    assert_eq!(
        set.policy_ids().collect::<Vec<_>>(),
        ["guard.rego", "reads.rego"]
    );
    check(&set, input(), DecisionOutcome::Grant, &["reads.rego:reads"]);
    check(
        &set,
        with(|i| i.identity.kind = "bot".into()),
        DecisionOutcome::Deny,
        &["guard.rego:no-bots"],
    );
}

#[test]
fn cedar_and_rego_together_deny_wins() {
    let cedar = (
        "policies/base.cedar",
        r#"
@id("cedar-all") @reason("Cedar grants")
permit (principal, action, resource);

@id("cedar-admin-two") @approvals("2")
permit (principal, action, resource == Kairos::Entitlement::"orders-api/admin");
"#,
    );
    let rego = (
        "policies/guard.rego",
        r#"
package kairos

deny["no-writes"] := "Rego denies writes" if input.resource.role == "write"
allow["high-one"] := {"approvals": 1, "reason": "Rego wants one"} if input.resource.tier == "high"
allow["rest"] := "Rego grants" if input.resource.tier != "high"
"#,
    );
    let set = compile(&[cedar, rego]);
    assert_eq!(
        set.languages(),
        [PolicyLanguage::Cedar, PolicyLanguage::Rego]
    );

    let d = check(
        &set,
        input(),
        DecisionOutcome::Grant,
        &["cedar-all", "guard.rego:rest"],
    );
    assert_eq!(d.reason, "Cedar grants; Rego grants");

    // Cedar grants, Rego denies: denied.
    let d = check(
        &set,
        with(|i| i.entitlement.name = EntitlementName::parse("orders-api/write").unwrap()),
        DecisionOutcome::Deny,
        &["guard.rego:no-writes"],
    );
    assert_eq!(d.reason, "Rego denies writes");

    // Cedar asks for 2, Rego for 1: pending 2, with both reasons.
    let d = check(
        &set,
        with(|i| {
            i.entitlement.name = EntitlementName::parse("orders-api/admin").unwrap();
            i.entitlement.tier = Tier::High;
        }),
        DecisionOutcome::Pending { approvals: 2 },
        &["cedar-admin-two", "cedar-all", "guard.rego:high-one"],
    );
    assert_eq!(d.reason, "Cedar grants; Rego wants one");

    // Rego grants but no Cedar policy permits: Cedar's default deny holds.
    let only_some = compile(&[
        (
            "policies/base.cedar",
            "permit (principal, action, resource) when { principal.kind == \"service\" };",
        ),
        ("policies/guard.rego", rego.1),
    ]);
    let d = check(&only_some, input(), DecisionOutcome::Deny, &[]);
    assert_eq!(
        d.reason,
        "no policy permits nightly-backup to request orders-api/read"
    );
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    check_error(
        &[(
            "policies/bad.rego",
            "package kairos\n\nallow[\"x\"] := \"y\" if {\n    input.principal.kind ==\n}\n",
        )],
        &["policies/bad.rego:5:1"],
    );
    check_error(
        &[("policies/bad.rego", "allow[\"x\"] := \"y\"\n")],
        &["policies/bad.rego:1:1"],
    );
}

#[test]
fn deep_nesting_is_refused_before_parsing_and_names_the_place() {
    // At the limit: a rule body holding brackets nested to the limit compiles and decides.
    let inner = MAX_REGO_NESTING - 1;
    let at_limit = format!(
        "package kairos\n\nallow[\"deep\"] := \"nested\" if {{\n    x := {}1{}\n    x != []\n    input.principal.kind == \"ci-job\"\n}}\n",
        "[".repeat(inner),
        "]".repeat(inner)
    );
    let set = rego(&at_limit);
    check(&set, input(), DecisionOutcome::Grant, &["base.rego:deep"]);

    // One level deeper is refused at the bracket that goes too deep, valid or not. Parsed,
    // each level would double regorus's time (the fuzzer's input below took over 10 s).
    let over = at_limit.replacen("1", "[1]", 1);
    check_error(
        &[("policies/deep.rego", &over)],
        &[
            &format!("policies/deep.rego:4:{}", 10 + inner),
            &format!("more than {MAX_REGO_NESTING} deep"),
            "move the inner part into a rule of its own",
        ],
    );
    let fuzzed = format!(
        "package kairos\n\ndeny[\"x\"] := \"y\" if {{\n   {} input.context.task_kind == \"incident\"\n}}\n",
        "{".repeat(56)
    );
    check_error(
        &[("policies/fuzzed.rego", &fuzzed)],
        &[&format!(
            "policies/fuzzed.rego:4:{}",
            4 + MAX_REGO_NESTING - 1
        )],
    );
}

#[test]
fn unsafe_variables_and_unknown_functions_are_refused() {
    check_error(
        &[(
            "policies/unsafe.rego",
            "package kairos\n\nallow[\"x\"] := \"y\" if {\n    x == input.principal.kind\n}\n",
        )],
        &["policies/unsafe.rego:4:"],
    );
    check_error(
        &[(
            "policies/unknown.rego",
            "package kairos\n\nallow[\"x\"] := \"y\" if {\n    no_such_function(input.principal.kind)\n}\n",
        )],
        &["policies/unknown.rego:4:"],
    );
}

#[test]
fn unknown_input_fields_are_refused_with_what_exists() {
    check_error(
        &[(
            "policies/typo.rego",
            "package kairos\n\nallow[\"x\"] := \"y\" if {\n    # input.comments.are_fine\n    input.context.tsk_kind == \"job\"\n}\n",
        )],
        &[
            "policies/typo.rego:5:5",
            "input.context has no field \"tsk_kind\"",
            "task_kind",
        ],
    );
    check_error(
        &[(
            "policies/typo.rego",
            "package kairos\n\nallow[\"x\"] := \"y\" if input.identity.kind == \"ci-job\"\n",
        )],
        &["policies/typo.rego:3:22", "principal, resource, context"],
    );
}

#[test]
fn deny_and_allow_must_be_partial_objects() {
    check_error(
        &[(
            "policies/shape.rego",
            "package kairos\n\nallow if input.principal.kind == \"ci-job\"\n",
        )],
        &[
            "policies/shape.rego:3:1",
            "`allow` must be a partial object rule",
        ],
    );
    check_error(
        &[(
            "policies/shape.rego",
            "package kairos\n\ndeny contains \"no\" if input.principal.kind == \"bot\"\n",
        )],
        &[
            "policies/shape.rego:3:1",
            "`deny` must be a partial object rule",
        ],
    );
    // Wrong values every request would have fail at load.
    check_error(
        &[(
            "policies/value.rego",
            "package kairos\n\nallow[\"x\"] := 42\n",
        )],
        &[
            "policies/value.rego",
            "allow entry value.rego:x must be a reason string",
        ],
    );
}

#[test]
fn a_file_name_is_an_id_and_must_be_unique() {
    check_error(
        &[
            ("a/base.rego", "package kairos\n"),
            ("b/base.rego", "package kairos\n"),
        ],
        &["\"base.rego\" is already used"],
    );
}

#[test]
fn errors_from_both_languages_are_reported_together() {
    check_error(
        &[
            (
                "policies/a.cedar",
                "permit (principal, action, resource) when { resource.teir == \"low\" };",
            ),
            (
                "policies/b.rego",
                "package kairos\n\nallow[\"x\"] := \"y\" if input.resource.teir == \"low\"\n",
            ),
        ],
        &["policies/a.cedar:1:", "policies/b.rego:3:"],
    );
}

#[test]
fn open_reviews_in_rego_text_count() {
    let set = rego("package kairos\n\nallow[\"x\"] := \"y\" if input.context.open_reviews == 0\n");
    assert!(set.reads_open_reviews());
    assert!(!rego(EXAMPLE).reads_open_reviews());
}
