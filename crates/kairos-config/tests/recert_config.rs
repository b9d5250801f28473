//! The recertification keys (`recertify_every` on teams and identities, `[governance]`)
//! and standing exceptions (`[[exception]]`): what loads, and what is refused with file,
//! line and key.

// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use kairos_config::{Catalog, ConfigBundle};
use kairos_domain::{ExceptionName, IdentityName, Period, Timestamp};

const JWKS: &str = include_str!("fixtures/ci-jwks.json");

fn bundle(toml: &str) -> ConfigBundle {
    ConfigBundle {
        main_path: "kairos.toml".into(),
        files: BTreeMap::from([
            ("kairos.toml".into(), toml.into()),
            ("ci-jwks.json".into(), JWKS.into()),
        ]),
    }
}

fn days(n: u64) -> Period {
    Period::from_secs(n * 86_400).unwrap()
}

fn load(toml: &str) -> Catalog {
    Catalog::from_bundle(&bundle(toml)).unwrap_or_else(|e| panic!("catalog refused:\n{e}"))
}

/// Expects the catalog to be refused with every `expected` line among the errors.
fn check(toml: &str, expected: &[&str]) {
    let errors = match Catalog::from_bundle(&bundle(toml)) {
        Ok(_) => panic!("catalog accepted, expected {expected:?}"),
        Err(e) => e.to_string(),
    };
    for want in expected {
        assert!(errors.contains(want), "errors lack {want:?}:\n{errors}");
    }
}

/// Fifteen lines (the last one blank): issuer `ci`, team `payments` (30-day
/// recertification), identity `billing-sync`. What tests append starts on line 16.
const PRE: &str = r#"[[issuer]]
name = "ci"
issuer = "https://ci.example.com"
audience = "kairos"
jwks_file = "ci-jwks.json"
[[team]]
name = "payments"
owners = ["carol"]
recertify_every = "30d"
[[identity]]
name = "billing-sync"
owner = "payments"
kind = "service"
issuer = "ci"
subject = "svc:billing"
"#;

fn pre(rest: &str) -> String {
    assert_eq!(PRE.lines().count(), 15);
    format!("{PRE}\n{rest}")
}

fn exception(extra: &str) -> String {
    format!(
        r#"[[exception]]
name = "legacy-billing"
identity = "billing-sync"
owner = "payments"
system = "billing-db (legacy)"
secret_ref = "vault:kv/legacy/billing"
reason = "the vendor client cannot take short-lived accounts"
rotate_every = "30d"
ends = "2031-06-30"
{extra}"#
    )
}

#[test]
fn intervals_resolve_identity_then_team_then_default() {
    let c = load(&pre(r#"[[team]]
name = "ops"
owners = ["olga"]
[[identity]]
name = "deploy"
owner = "ops"
kind = "ci-job"
issuer = "ci"
subject = "repo:deploy"
[[identity]]
name = "agent"
owner = "payments"
kind = "agent"
issuer = "ci"
subject = "agent-1"
recertify_every = "1w"
"#));
    let interval = |name: &str| {
        c.identity_recert_interval(c.identity(&IdentityName::parse(name).unwrap()).unwrap())
    };
    assert_eq!(interval("agent"), days(7));
    assert_eq!(interval("billing-sync"), days(30));
    assert_eq!(interval("deploy"), days(90), "the default");
    assert_eq!(c.recert_settings().recert_notice, days(14));

    let c = load(&pre(
        "[governance]\nrecertify_every = \"180d\"\nrecert_notice = \"3w\"\n",
    ));
    assert_eq!(c.recert_settings().recertify_every, days(180));
    assert_eq!(c.recert_settings().recert_notice, days(21));
}

#[test]
fn bad_intervals_are_refused_with_their_place() {
    check(
        &pre("[governance]\nrecertify_every = \"90\"\nrecert_notice = \"2y\"\nfoo = 1\n"),
        &[
            "kairos.toml:18: governance.recertify_every: \"90\" is not a period",
            "kairos.toml:19: governance.recert_notice: \"2y\" is not a period",
            "kairos.toml:20: governance.foo: unknown key `foo` in governance; known keys here: orphan_action, orphan_grace, recertify_every, recert_notice",
        ],
    );
    check(
        &format!(
            "{}\n[[identity]]\nname = \"x\"\nowner = \"payments\"\nkind = \"bot\"\nissuer = \"ci\"\nsubject = \"x\"\nrecertify_every = \"0d\"\n",
            PRE
        ),
        &["kairos.toml:23: identity[1].recertify_every: the period is zero"],
    );
}

#[test]
fn an_exception_loads_with_its_controls() {
    let c = load(&pre(&exception(
        "allowed_sources = [\"10.20.0.0/16\", \"192.0.2.7\"]\nscope_note = \"invoices schema, read only\"\nrecertify_every = \"60d\"\n",
    )));
    let e = c
        .exception(&ExceptionName::parse("legacy-billing").unwrap())
        .unwrap();
    assert_eq!(e.identity.as_str(), "billing-sync");
    assert_eq!(e.owner.as_str(), "payments");
    assert_eq!(e.secret_ref, "vault:kv/legacy/billing");
    assert_eq!(e.rotate_every, days(30));
    assert_eq!(
        e.ends,
        Timestamp::parse_rfc3339("2031-06-30T00:00:00Z").unwrap()
    );
    assert_eq!(e.allowed_sources, vec!["10.20.0.0/16", "192.0.2.7/32"]);
    assert_eq!(e.scope_note.as_deref(), Some("invoices schema, read only"));
    assert_eq!(c.exception_recert_interval(e), days(60));
    // Without its own interval, the owner team's applies.
    let c = load(&pre(&exception("")));
    let e = c.exceptions().next().unwrap();
    assert_eq!(c.exception_recert_interval(e), days(30));
    // The end date is checked against a clock at apply, not at load.
    assert!(
        c.exceptions_ended_by(Timestamp::parse_rfc3339("2031-06-29T23:59:59Z").unwrap())
            .is_ok()
    );
    let errors = c
        .exceptions_ended_by(Timestamp::parse_rfc3339("2031-06-30T00:00:00Z").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("kairos.toml:25: exception[0].ends: exception legacy-billing ended at 2031-06-30T00:00:00.000Z"),
        "{errors}"
    );
}

#[test]
fn an_exception_s_problems_are_each_reported_with_their_place() {
    check(
        &pre(r#"[[exception]]
name = "Legacy"
identity = "nobody"
owner = "paymnts"
system = ""
secret_ref = "hunter2-AbC9xYz8QwE7rTy6UiO5"
reason = "x"
rotate_every = "30"
ends = "next year"
allowed_sources = ["10.20.0.1/16", "nowhere"]
password = "s3cret"
"#),
        &[
            "kairos.toml:18: exception[0].name: exception name \"Legacy\" contains 'L'",
            "kairos.toml:21: exception[0].system: system must not be empty",
            "kairos.toml:22: exception[0].secret_ref: secret_ref must say where the secret lives, never hold it",
            "kairos.toml:24: exception[0].rotate_every: \"30\" is not a period",
            "kairos.toml:25: exception[0].ends: ends \"next year\" is not a date",
            "kairos.toml:26: exception[0].allowed_sources[0]: allowed source \"10.20.0.1/16\" has host bits set after /16; did you mean \"10.20.0.0/16\"?",
            "kairos.toml:26: exception[0].allowed_sources[1]: allowed source \"nowhere\" is not a CIDR",
            "kairos.toml:27: exception[0].password: looks like a secret written into the catalog",
        ],
    );
    // The secret value is never repeated.
    let errors = Catalog::from_bundle(&bundle(&pre(&exception("").replace(
        "vault:kv/legacy/billing",
        "vault:Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRg",
    ))))
    .unwrap_err()
    .to_string();
    assert!(!errors.contains("Zm9v"), "{errors}");
    // Dangling references are named with what is defined; a missing end date is required.
    check(
        &pre(&exception("")
            .replace("identity = \"billing-sync\"", "identity = \"nobody\"")
            .replace("owner = \"payments\"", "owner = \"paymnts\"")),
        &[
            "kairos.toml:19: exception[0].identity: identity \"nobody\" is not defined; defined identities: billing-sync",
            "kairos.toml:20: exception[0].owner: team \"paymnts\" is not defined; defined teams: payments",
        ],
    );
    check(
        &pre(&exception("").replace("ends = \"2031-06-30\"\n", "")),
        &["kairos.toml:17: exception[0].ends: required key `ends` is missing in exception[0]"],
    );
    // Names are unique.
    check(
        &pre(&format!("{}\n{}", exception(""), exception(""))),
        &["exception[1].name: exception \"legacy-billing\" is already defined at line 18"],
    );
}

#[test]
fn exceptions_and_intervals_are_part_of_the_diff() {
    let before = load(&pre(&exception("")));
    let after = load(&pre(&exception("").replace("30d\"\nends", "14d\"\nends")));
    let diff = Catalog::diff(&before, &after);
    assert_eq!(diff.changed, vec!["exception legacy-billing"]);
    let longer = load(&pre("[governance]\nrecertify_every = \"60d\"\n"));
    let diff = Catalog::diff(&load(&pre("")), &longer);
    assert_eq!(diff.changed, vec!["recertification settings"]);
}
