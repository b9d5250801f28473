// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use kairos_config::{
    Catalog, ClientCertificates, ConfigBundle, ConfigDiff, IssuerName, JwksRef, OverCap,
    Privileges, SecretRef, StoreLocation, TargetKind, Tier,
};
use kairos_domain::{
    DecisionOutcome, EntitlementName, IdentityName, Principal, TargetName, Task, TaskKind, TaskRef,
    TeamName, Ttl,
};
use kairos_policy::PolicyInput;

/// A JWKS with one usable RSA-2048 key (the loader refuses a JWKS the verifier could not use).
const JWKS: &str = include_str!("fixtures/ci-jwks.json");
const POLICY: &str = "@id(\"allow-all\")\npermit (principal, action, resource);\n";

/// A bundle whose main file is `toml`, with a JWKS file and one policy file beside it.
fn bundle(toml: &str) -> ConfigBundle {
    bundle_with(
        toml,
        &[("ci-jwks.json", JWKS), ("policies/base.cedar", POLICY)],
    )
}

fn bundle_with(toml: &str, files: &[(&str, &str)]) -> ConfigBundle {
    let mut map: BTreeMap<String, String> = files
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert("kairos.toml".into(), toml.into());
    ConfigBundle {
        main_path: "kairos.toml".into(),
        files: map,
    }
}

fn load(toml: &str) -> Catalog {
    Catalog::from_bundle(&bundle(toml)).unwrap_or_else(|e| panic!("catalog refused:\n{e}"))
}

/// Expects the catalog to be refused with every `expected` line among the errors.
fn check(toml: &str, expected: &[&str]) {
    check_bundle(&bundle(toml), expected);
}

fn check_bundle(bundle: &ConfigBundle, expected: &[&str]) {
    let errors = match Catalog::from_bundle(bundle) {
        Ok(_) => panic!("catalog accepted, expected {expected:?}"),
        Err(e) => e.to_string(),
    };
    for want in expected {
        assert!(errors.contains(want), "errors lack {want:?}:\n{errors}");
    }
}

/// Fifteen lines (the last one blank) that define issuer `ci`, team `payments` and
/// target `orders-api`. What tests append starts on line 16.
const PRE: &str = r#"[[issuer]]
name = "ci"
issuer = "https://ci.example.com"
audience = "kairos"
jwks_file = "ci-jwks.json"

[[team]]
name = "payments"
owners = ["carol"]

[[target]]
name = "orders-api"
kind = "token"
audience = "https://orders.internal"

"#;

fn pre(rest: &str) -> String {
    assert_eq!(PRE.lines().count(), 15);
    format!("{PRE}{rest}")
}

const IDENTITY: &str = r#"[[identity]]
name = "nightly-backup"
owner = "payments"
kind = "ci-job"
issuer = "ci"
subject = "repo:acme/backup"
"#;

fn fixture_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn task(kind: TaskKind) -> Task {
    Task::new(kind, TaskRef::parse("CHG-1").unwrap(), "because".into()).unwrap()
}

#[test]
fn the_sample_catalog_loads() {
    let bundle = ConfigBundle::read_from_disk(fixture_dir().join("kairos.toml")).unwrap();
    assert_eq!(bundle.main_path, "kairos.toml");
    assert_eq!(
        bundle.files.keys().collect::<Vec<_>>(),
        [
            "ci-jwks.json",
            "kairos.toml",
            "policies/base.cedar",
            "policies/payments.cedar"
        ]
    );
    let catalog = Catalog::from_bundle(&bundle).unwrap_or_else(|e| panic!("{e}"));

    let server = catalog.server().unwrap();
    assert_eq!(server.listen.to_string(), "127.0.0.1:8740");
    assert_eq!(
        server.store,
        StoreLocation::Url("sqlite://.kairos/kairos.db".into())
    );
    assert_eq!(server.pending_timeout, Ttl::parse("1h").unwrap());
    assert_eq!(
        server.master_key,
        Some(SecretRef::File("/etc/kairos/master.key".into()))
    );

    let ci = catalog.issuer(&IssuerName::parse("ci").unwrap()).unwrap();
    assert!(
        matches!(&ci.jwks, JwksRef::Inline { file, jwks } if file == "ci-jwks.json" && jwks["keys"][0]["kid"] == "ci-2026-01")
    );
    assert_eq!(
        catalog
            .issuer_by_url("https://kubernetes.default.svc")
            .unwrap()
            .name
            .as_str(),
        "k8s-prod"
    );

    let worker = catalog
        .identity_by_subject(
            &IssuerName::parse("k8s-prod").unwrap(),
            "system:serviceaccount:orders:worker",
        )
        .unwrap();
    assert_eq!(worker.name.as_str(), "orders-worker");
    assert!(
        catalog
            .identity_by_subject(
                &IssuerName::parse("ci").unwrap(),
                "system:serviceaccount:orders:worker"
            )
            .is_none()
    );

    let read = catalog
        .entitlement(&EntitlementName::parse("orders-api/read").unwrap())
        .unwrap();
    assert_eq!(
        read.target.as_str(),
        "orders-api",
        "target defaults to the name's"
    );
    assert_eq!(read.over_cap, OverCap::Refuse);
    assert_eq!(catalog.effective_cap(read), Ttl::parse("1h").unwrap());
    let refund = catalog
        .entitlement(&EntitlementName::parse("orders-api/refund").unwrap())
        .unwrap();
    assert_eq!(
        catalog.tier_caps().cap(Tier::High),
        Ttl::parse("30m").unwrap()
    );
    assert_eq!(
        catalog.tier_caps().cap(Tier::Low),
        Ttl::parse("8h").unwrap()
    );

    let backup = catalog
        .identity(&IdentityName::parse("nightly-backup").unwrap())
        .unwrap();
    assert_eq!(catalog.approval_team(refund, backup).as_str(), "platform");
    assert_eq!(catalog.approval_team(read, backup).as_str(), "payments");
    assert_eq!(catalog.teams().count(), 2);
    assert_eq!(catalog.targets().count(), 1);

    assert_eq!(
        catalog.policies().policy_ids().collect::<Vec<_>>(),
        [
            "ci-read-low",
            "no-critical-for-bots",
            "payments-refund",
            "payments:1"
        ]
    );
    let decide = |entitlement, kind| {
        let input = PolicyInput {
            action: kairos_policy::PolicyAction::Request,
            identity: catalog.identity_facts(backup),
            entitlement: catalog.entitlement_facts(entitlement),
            ttl: Ttl::parse("10m").unwrap(),
            task: task(kind),
            requester: Principal::Workload(backup.name.clone()),
            circumstances: Default::default(),
        };
        catalog.policies().decide(&input).unwrap().outcome
    };
    assert_eq!(decide(read, TaskKind::Job), DecisionOutcome::Grant);
    assert_eq!(
        decide(refund, TaskKind::Incident),
        DecisionOutcome::Pending { approvals: 2 }
    );
}

#[test]
fn a_minimal_catalog_loads_and_defaults_apply() {
    let catalog = load(&pre(IDENTITY));
    assert!(catalog.server().is_none());
    assert_eq!(
        catalog.tier_caps().cap(Tier::Critical),
        Ttl::parse("15m").unwrap()
    );
    assert!(catalog.policies().is_empty());
    assert_eq!(
        catalog
            .identity(&IdentityName::parse("nightly-backup").unwrap())
            .unwrap()
            .owner,
        TeamName::parse("payments").unwrap()
    );
}

#[test]
fn the_empty_catalog_denies_everything() {
    let catalog = Catalog::empty();
    assert_eq!(catalog.identities().count(), 0);
    assert!(catalog.policies().is_empty());
    let diff = Catalog::diff(&Catalog::empty(), &catalog);
    assert!(diff.is_empty(), "{diff}");
}

#[test]
fn toml_syntax_errors_have_a_line() {
    check(
        "[[team]]\nname = \"payments\"\nowners = [\"carol\"\n",
        &["kairos.toml:3: TOML syntax error"],
    );
    check("a = 1\nb = \n", &["kairos.toml:2: TOML syntax error"]);
}

#[test]
fn unknown_keys_are_reported_at_their_line() {
    check(
        &pre(
            "[[identity]]\nname = \"x\"\nowner = \"payments\"\nkind = \"ci-job\"\nissuer = \"ci\"\nsubjct = \"s\"\n",
        ),
        &[
            "kairos.toml:21: identity[0].subjct: unknown key `subjct` in identity[0]; known keys here: name, owner, kind, issuer, subject",
            "kairos.toml:16: identity[0].subject: required key `subject` is missing in identity[0]",
        ],
    );
    check(
        &pre("[polcy]\nfiles = []\n"),
        &["kairos.toml:16: polcy: unknown key `polcy`"],
    );
    check(
        &pre("[[identities]]\nname = \"x\"\n"),
        &["kairos.toml:16: identities: unknown key"],
    );
    check(
        &pre("[tiers]\nlow = \"1h\"\nhuge = \"2h\"\n"),
        &["kairos.toml:18: tiers.huge: unknown key `huge`"],
    );
}

#[test]
fn wrong_types_and_shapes() {
    check(
        &pre("[[team]]\nname = \"search\"\nowners = \"carol\"\n"),
        &["kairos.toml:18: team[1].owners: expected an array of strings, found a string"],
    );
    check(
        &pre("[[team]]\nname = \"search\"\nowners = [\"carol\", 7]\n"),
        &["kairos.toml:18: team[1].owners[1]: expected a string, found an integer"],
    );
    check(
        &pre("[identity]\nname = \"x\"\n"),
        &[
            "kairos.toml:16: identity: expected an array of tables (write each one under `[[identity]]`)",
        ],
    );
    check(
        &pre("[[team]]\nname = 2026-01-01\nowners = []\n"),
        &["team[1].name: expected a string, found a date-time"],
    );
    check(
        &pre("[[team]]\nname = \"search\"\nowners = []\n"),
        &["kairos.toml:18: team[1].owners: a team needs at least one owner"],
    );
}

#[test]
fn invalid_names_and_ttls_use_the_domain_messages() {
    check(
        &pre(&IDENTITY.replace("\"nightly-backup\"", "\"Nightly Backup\"")),
        &["kairos.toml:17: identity[0].name: identity name \"Nightly Backup\" contains 'N'"],
    );
    check(
        &pre(
            "[[entitlement]]\nname = \"orders-api/read\"\ntier = \"low\"\nmax_ttl = \"10y\"\nscopes = [\"r\"]\n",
        ),
        &["kairos.toml:19: entitlement[0].max_ttl: TTL \"10y\" uses unit \"y\""],
    );
    check(
        &pre(
            "[[entitlement]]\nname = \"orders-api\"\ntier = \"low\"\nmax_ttl = \"1h\"\nscopes = [\"r\"]\n",
        ),
        &["kairos.toml:17: entitlement[0].name: entitlement name \"orders-api\""],
    );
    check(
        &pre(
            "[[entitlement]]\nname = \"orders-api/read\"\ntier = \"extreme\"\nmax_ttl = \"1h\"\nover_cap = \"shrug\"\nscopes = [\"r\"]\n",
        ),
        &[
            "kairos.toml:18: entitlement[0].tier: tier \"extreme\" is unknown",
            "kairos.toml:20: entitlement[0].over_cap: over_cap \"shrug\" is unknown",
        ],
    );
    check(
        "[server]\nlisten = \"localhost\"\npending_timeout = \"0m\"\n",
        &[
            "kairos.toml:2: server.listen: listen \"localhost\" is not an address",
            "kairos.toml:3: server.pending_timeout: TTL \"0m\" is zero",
        ],
    );
    check(
        "[tiers]\nhigh = \"2h\"\n",
        &[
            "kairos.toml:2: tiers.high: the high tier allows 2h but the less risky medium tier only 1h",
        ],
    );
}

#[test]
fn duplicate_names_are_errors() {
    check(
        &pre("[[team]]\nname = \"payments\"\nowners = [\"dave\"]\n"),
        &["kairos.toml:17: team[1].name: team \"payments\" is already defined at line 8"],
    );
    check(
        &pre(&format!(
            "{IDENTITY}\n{}",
            IDENTITY.replace("repo:acme/backup", "other")
        )),
        &[
            "kairos.toml:24: identity[1].name: identity \"nightly-backup\" is already defined at line 17",
        ],
    );
}

#[test]
fn dangling_references_name_what_is_defined() {
    check(
        &pre(&IDENTITY.replace("owner = \"payments\"", "owner = \"paymnts\"")),
        &[
            "kairos.toml:18: identity[0].owner: team \"paymnts\" is not defined; defined teams: payments",
        ],
    );
    check(
        &pre(&IDENTITY.replace("issuer = \"ci\"", "issuer = \"gha\"")),
        &["kairos.toml:20: identity[0].issuer: issuer \"gha\" is not defined; defined issuers: ci"],
    );
    check(
        &pre(
            "[[entitlement]]\nname = \"orders-db/read\"\ntier = \"low\"\nmax_ttl = \"1h\"\napproval_team = \"nobody\"\n",
        ),
        &[
            "kairos.toml:17: entitlement[0].target: target \"orders-db\" is not defined; defined targets: orders-api",
            "kairos.toml:20: entitlement[0].approval_team: team \"nobody\" is not defined",
        ],
    );
    check(
        &pre(
            "[[entitlement]]\nname = \"orders-db/read\"\ntarget = \"orders-api\"\ntier = \"low\"\nmax_ttl = \"1h\"\nscopes = [\"r\"]\n",
        ),
        &[
            "kairos.toml:18: entitlement[0].target: entitlement orders-db/read belongs to target \"orders-db\"",
        ],
    );
    check(
        &pre(
            "[[target]]\nname = \"orders-db\"\nkind = \"token\"\naudience = \"x\"\nowner = \"dba\"\n",
        ),
        &["kairos.toml:20: target[1].owner: team \"dba\" is not defined"],
    );
    check(
        IDENTITY,
        &[
            "kairos.toml:3: identity[0].owner: team \"payments\" is not defined; no teams are defined",
        ],
    );
}

#[test]
fn a_broken_definition_does_not_cascade_into_references() {
    // The team is declared (with a bad owner list), so the identity's owner resolves.
    let toml = pre(&format!(
        "[[team]]\nname = \"search\"\nowners = [\"Bad Name\"]\n\n{}",
        IDENTITY.replace("\"payments\"", "\"search\"")
    ));
    let errors = Catalog::from_bundle(&bundle(&toml)).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert!(errors.to_string().contains("team[1].owners[0]"), "{errors}");
}

#[test]
fn max_ttl_above_the_tier_cap_says_both() {
    check(
        &pre(
            "[[entitlement]]\nname = \"orders-api/admin\"\ntier = \"critical\"\nmax_ttl = \"1h\"\nscopes = [\"admin\"]\n",
        ),
        &[
            "kairos.toml:19: entitlement[0].max_ttl: max_ttl 1h is longer than the critical tier allows (15m)",
        ],
    );
    // Raising the tier cap fixes it.
    load(&pre(
        "[tiers]\ncritical = \"30m\"\nhigh = \"1h\"\n\n[[entitlement]]\nname = \"orders-api/admin\"\ntier = \"critical\"\nmax_ttl = \"30m\"\nscopes = [\"admin\"]\n",
    ));
}

#[test]
fn one_token_subject_maps_to_one_identity() {
    check(
        &pre(&format!(
            "{IDENTITY}\n{}",
            IDENTITY.replace("nightly-backup", "weekly-backup")
        )),
        &[
            "kairos.toml:28: identity[1].subject: identity weekly-backup has the same issuer (ci) and subject \"repo:acme/backup\" as identity nightly-backup (line 21)",
        ],
    );
    check(
        &pre(
            "[[issuer]]\nname = \"ci2\"\nissuer = \"https://ci.example.com\"\naudience = \"k\"\njwks_url = \"https://x\"\n",
        ),
        &[
            "kairos.toml:18: issuer[1].issuer: issuer URL \"https://ci.example.com\" is already used by issuer ci (line 3)",
        ],
    );
}

#[test]
fn issuers_need_exactly_one_valid_key_source() {
    let issuer = |keys: &str| {
        format!(
            "[[issuer]]\nname = \"ci\"\nissuer = \"https://ci.example.com\"\naudience = \"kairos\"\n{keys}"
        )
    };
    check(&issuer(""), &["kairos.toml:1: issuer[0]: set `jwks_file`"]);
    check(
        &issuer("jwks_file = \"ci-jwks.json\"\njwks_url = \"https://ci.example.com/jwks\"\n"),
        &["kairos.toml:6: issuer[0].jwks_url: set either `jwks_file` or `jwks_url`, not both"],
    );
    check(
        &issuer("jwks_url = \"http://ci.example.com/jwks\"\n"),
        &[
            "kairos.toml:5: issuer[0].jwks_url: jwks_url \"http://ci.example.com/jwks\" must be an https:// URL",
        ],
    );
    // Found by the config fuzzer: an https:// prefix alone is not a URL the verifier can use.
    check(
        &issuer("jwks_url = \"https://k8s.exampl\u{FFFD}\u{FFFD}e.com/jwks\"\n"),
        &[
            "kairos.toml:5: issuer[0].jwks_url: jwks_url \"https://k8s.exampl\u{FFFD}\u{FFFD}e.com/jwks\" cannot be used to fetch keys: not a valid URL",
        ],
    );
    check(
        &issuer("jwks_file = \"missing.json\"\n"),
        &["kairos.toml:5: issuer[0].jwks_file: \"missing.json\" is not in the bundle"],
    );
    let with_jwks = |jwks: &str, expected: &str| {
        check_bundle(
            &bundle_with(
                &issuer("jwks_file = \"ci-jwks.json\"\n"),
                &[("ci-jwks.json", jwks)],
            ),
            &[expected],
        );
    };
    with_jwks(
        "{not json",
        "kairos.toml:5: issuer[0].jwks_file: \"ci-jwks.json\" is not JSON",
    );
    with_jwks(r#"{"kty":"RSA"}"#, "\"ci-jwks.json\" is not a JWKS");
    with_jwks(r#"{"keys":[]}"#, "is a JWKS with no keys");
    with_jwks(r#"{"keys":[{"n":"x"}]}"#, "key 0 has no \"kty\"");
    with_jwks(
        r#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB","d":"private"}]}"#,
        "key 0 holds private key material (\"d\")",
    );
    // Found by fuzzing (fuzz/ config_toml): a JWKS whose keys the workload verifier cannot
    // use passed the loader, and then failed `kairos server --config` without a file or
    // line. It is refused here, saying why for each key.
    with_jwks(
        r#"{"keys":[{"kty":"RSA","kid":"k1","n":"sXch","e":"AQAB"}]}"#,
        "kairos.toml:5: issuer[0].jwks_file: \"ci-jwks.json\" is unusable: JWKS has no usable signing key (1 keys, none RSA >= 2048 bits, P-256 or Ed25519 for signatures): key 0 (\"k1\"): RSA modulus is shorter than 2048 bits",
    );
    with_jwks(
        &JWKS.replace("\"sig\"", "\"enc\""),
        "key 0 (\"ci-2026-01\"): `use` is \"enc\", not \"sig\"",
    );
    with_jwks(
        &JWKS.replace("sXchDaQ", "sXch/aQ"),
        "key 0 (\"ci-2026-01\"): `n` is not unpadded base64url",
    );
    with_jwks(
        r#"{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"},{"kty":"oct","k2":"x"}]}"#,
        "key 0: EC key is not on curve P-256; key 1: unsupported `kty` \"oct\"",
    );
    check(
        "[[issuer]]\nname = \"ci\"\nissuer = \"http://ci.example.com\"\naudience = \"kairos\"\njwks_url = \"http://localhost:8080/jwks\"\n",
        &[
            "kairos.toml:3: issuer[0].issuer: issuer \"http://ci.example.com\" must be an https:// URL",
        ],
    );
}

#[test]
fn token_targets_need_scopes_and_an_audience() {
    check(
        &pre("[[entitlement]]\nname = \"orders-api/read\"\ntier = \"low\"\nmax_ttl = \"1h\"\n"),
        &[
            "kairos.toml:17: entitlement[0].scopes: scopes are required: target orders-api issues tokens",
        ],
    );
    check(
        &pre(
            "[[entitlement]]\nname = \"orders-api/read\"\ntier = \"low\"\nmax_ttl = \"1h\"\nscopes = []\n",
        ),
        &["kairos.toml:20: entitlement[0].scopes: scopes are required"],
    );
    check(
        &pre("[[target]]\nname = \"orders-db\"\nkind = \"mysql\"\n"),
        &[
            "kairos.toml:18: target[1].kind: target kind \"mysql\" is unknown; supported: postgres, mariadb, redis, rabbitmq, ssh, token",
        ],
    );
    check(
        &pre("[[target]]\nname = \"orders-db\"\nkind = \"token\"\n"),
        &["kairos.toml:16: target[1].audience: required key `audience` is missing"],
    );
}

#[test]
fn secrets_written_inline_are_refused_without_echoing_them() {
    let secret = "hunter2-very-secret";
    let toml = format!(
        "[server]\nmaster_key = \"{secret}\"\nstore = \"postgres://kairos:{secret}@db/kairos\"\n\n[[target]]\nname = \"orders-db\"\nkind = \"token\"\naudience = \"a\"\nadmin_url = \"postgres://admin:{secret}@db\"\nclient_secret = \"{secret}\"\napi_token = \"{secret}\"\n"
    );
    let errors = Catalog::from_bundle(&bundle(&toml))
        .unwrap_err()
        .to_string();
    for want in [
        "kairos.toml:2: server.master_key: looks like a secret written into the catalog",
        "use `master_key_env = \"ENV_VAR\"` or `master_key_file = \"/path/to/file\"`",
        "kairos.toml:3: server.store: this store URL carries a password",
        "kairos.toml:9: target[0].admin_url: looks like a secret",
        "kairos.toml:10: target[0].client_secret: looks like a secret",
        "kairos.toml:11: target[0].api_token: looks like a secret",
    ] {
        assert!(errors.contains(want), "errors lack {want:?}:\n{errors}");
    }
    assert!(!errors.contains(secret), "a secret was echoed:\n{errors}");
    // Pointing at a secret is fine.
    load("[server]\nmaster_key_env = \"KAIROS_MASTER_KEY\"\nstore_env = \"KAIROS_STORE_URL\"\n");
    check(
        "[server]\nmaster_key_env = \"KAIROS_MASTER_KEY\"\nmaster_key_file = \"/k\"\n",
        &[
            "kairos.toml:3: server.master_key_file: set either `master_key_file` or `master_key_env`, not both",
        ],
    );
}

#[test]
fn cedar_errors_point_into_the_policy_file() {
    let toml = pre("[policy]\nfiles = [\"policies/*.cedar\"]\n");
    check_bundle(
        &bundle_with(
            &toml,
            &[
                ("ci-jwks.json", JWKS),
                (
                    "policies/a.cedar",
                    "permit (principal, action, resource);\n",
                ),
                (
                    "policies/b.cedar",
                    "// two\npermit (principal, action resource);\n",
                ),
                (
                    "policies/c.cedar",
                    "@approvals(\"12\")\npermit (principal, action, resource);\n",
                ),
            ],
        ),
        &[
            "policies/b.cedar:2:",
            "policies/c.cedar:1:1: policy c:0: @approvals(\"12\")",
        ],
    );
    check_bundle(
        &bundle_with(
            &toml,
            &[
                ("ci-jwks.json", JWKS),
                (
                    "policies/a.cedar",
                    "@id(\"x\") permit (principal, action, resource);\n",
                ),
                (
                    "policies/b.cedar",
                    "@id(\"x\") permit (principal, action, resource);\n",
                ),
            ],
        ),
        &[
            "policies/b.cedar:1:1: policy id \"x\" is already used by the policy at policies/a.cedar:1:1",
        ],
    );
    check(
        &pre("[policy]\nfiles = [\"policies/*.cedar\", \"rules/*.cedar\"]\n"),
        &["kairos.toml:17: policy.files[1]: glob \"rules/*.cedar\" matches no file"],
    );
}

#[test]
fn rego_files_load_beside_cedar_and_their_errors_point_into_them() {
    let toml = pre("[policy]\nfiles = [\"policies/*.cedar\", \"policies/*.rego\"]\n");
    let good = "package kairos\n\nallow[\"all\"] := \"fine\"\n";
    let catalog = Catalog::from_bundle(&bundle_with(
        &toml,
        &[
            ("ci-jwks.json", JWKS),
            (
                "policies/a.cedar",
                "@id(\"a\") permit (principal, action, resource);\n",
            ),
            ("policies/guard.rego", good),
        ],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        catalog.policies().policy_ids().collect::<Vec<_>>(),
        ["a", "guard.rego"]
    );
    check_bundle(
        &bundle_with(
            &toml,
            &[
                ("ci-jwks.json", JWKS),
                (
                    "policies/a.cedar",
                    "@id(\"a\") permit (principal, action, resource);\n",
                ),
                (
                    "policies/guard.rego",
                    "package kairos\n\nallow[\"all\"] := \"fine\" if {\n    input.resource.tire == \"low\"\n}\n",
                ),
            ],
        ),
        &[
            "policies/guard.rego:4:5: policy guard.rego: input.resource.tire: input.resource has no field \"tire\"",
        ],
    );
}

#[test]
fn all_errors_are_reported_together() {
    let toml = pre(&format!(
        "{}\n[[entitlement]]\nname = \"orders-api/read\"\ntier = \"low\"\nmax_ttl = \"9h\"\nscopes = [\"r\"]\nextra = 1\n",
        IDENTITY.replace("\"payments\"", "\"paymnts\"")
    ));
    let errors = Catalog::from_bundle(&bundle(&toml)).unwrap_err();
    let text = errors.to_string();
    assert_eq!(errors.len(), 3, "{text}");
    let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(18), Some(26), Some(28)], "{text}");
}

#[test]
fn diff_reports_created_changed_and_removed() {
    let old = load(&pre(&format!(
        "{IDENTITY}\n[[team]]\nname = \"search\"\nowners = [\"erin\"]\n\n[policy]\nfiles = [\"policies/*.cedar\"]\n"
    )));
    let new_toml = pre(&format!(
        "{}\n[[identity]]\nname = \"indexer\"\nowner = \"payments\"\nkind = \"service\"\nissuer = \"ci\"\nsubject = \"idx\"\n\n[policy]\nfiles = [\"policies/*.cedar\"]\n",
        IDENTITY.replace("ci-job", "service")
    ));
    let new = Catalog::from_bundle(&bundle_with(
        &new_toml,
        &[
            ("ci-jwks.json", JWKS),
            ("policies/base.cedar", "@id(\"allow-all\")\nforbid (principal, action, resource);\n@id(\"extra\") permit (principal, action, resource);\n"),
        ],
    ))
    .unwrap();
    let diff = Catalog::diff(&old, &new);
    assert_eq!(
        diff,
        ConfigDiff {
            created: vec!["identity indexer".into(), "policy extra".into()],
            changed: vec!["identity nightly-backup".into(), "policy allow-all".into()],
            removed: vec!["team search".into()],
        }
    );
    assert!(Catalog::diff(&new, &new).is_empty());
    assert_eq!(
        Catalog::diff(&Catalog::empty(), &old).created,
        [
            "issuer ci",
            "team payments",
            "team search",
            "identity nightly-backup",
            "target orders-api",
            "policy allow-all"
        ]
    );
}

#[test]
fn bundles_travel_as_json() {
    let b = bundle(&pre(IDENTITY));
    let json = serde_json::to_string(&b).unwrap();
    let back: ConfigBundle = serde_json::from_str(&json).unwrap();
    assert_eq!(back, b);
}

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn read_from_disk_follows_globs_and_jwks_files() {
    let dir = tempfile::tempdir().unwrap();
    let toml = pre(&format!(
        "{IDENTITY}\n[policy]\nfiles = [\"policies/**/*.cedar\", \"../shared/*.cedar\"]\n"
    ));
    let conf = dir.path().join("conf");
    write(&conf, "kairos.toml", &toml);
    write(&conf, "ci-jwks.json", JWKS);
    write(&conf, "policies/base.cedar", POLICY);
    write(
        &conf,
        "policies/teams/payments.cedar",
        "permit (principal in Kairos::Team::\"payments\", action, resource);\n",
    );
    write(&conf, "policies/README.md", "not a policy");
    write(
        dir.path(),
        "shared/common.cedar",
        "forbid (principal, action, resource) when { principal.kind == \"bot\" };\n",
    );

    let bundle = ConfigBundle::read_from_disk(conf.join("kairos.toml")).unwrap();
    assert_eq!(
        bundle.files.keys().collect::<Vec<_>>(),
        [
            "../shared/common.cedar",
            "ci-jwks.json",
            "kairos.toml",
            "policies/base.cedar",
            "policies/teams/payments.cedar"
        ]
    );
    let catalog = Catalog::from_bundle(&bundle).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        catalog.policies().policy_ids().collect::<Vec<_>>(),
        ["allow-all", "common:0", "payments:0"]
    );
}

#[test]
fn read_from_disk_names_the_key_of_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "kairos.toml",
        &pre("[policy]\nfiles = [\"policies/*.cedar\"]\n"),
    );
    let err = ConfigBundle::read_from_disk(dir.path().join("kairos.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("kairos.toml:5: issuer[0].jwks_file: cannot read \"ci-jwks.json\""),
        "{err}"
    );

    write(dir.path(), "ci-jwks.json", JWKS);
    let err = ConfigBundle::read_from_disk(dir.path().join("kairos.toml")).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "kairos.toml:17: policy.files[0]: glob \"policies/*.cedar\" matches no file"
        ),
        "{err}"
    );

    let err = ConfigBundle::read_from_disk(dir.path().join("nope.toml")).unwrap_err();
    assert!(
        err.to_string().starts_with("nope.toml: cannot read"),
        "{err}"
    );

    // A main file that does not parse is still bundled; the catalog reports the error.
    write(dir.path(), "broken.toml", "[[team]\n");
    let bundle = ConfigBundle::read_from_disk(dir.path().join("broken.toml")).unwrap();
    check_bundle(&bundle, &["broken.toml:1: TOML syntax error"]);
}

// ---------------------------------------------------------------------------------
// Database targets (postgres, mariadb, redis)

/// Nineteen lines (the last one blank) of three account targets; after `PRE`, what
/// tests append starts on line 35.
const DBS: &str = r#"[[target]]
name = "orders-db"
kind = "postgres"
admin_url_env = "ORDERS_DB_ADMIN_URL"
connect_host = "orders-db.internal"
reconcile_interval = "1m"
owner = "payments"

[[target]]
name = "shop-db"
kind = "mariadb"
admin_url_file = "/run/secrets/shop-db-admin-url"
managed_prefix = "kx_"

[[target]]
name = "cache"
kind = "redis"
admin_url_env = "CACHE_ADMIN_URL"

"#;

fn dbs(rest: &str) -> String {
    assert_eq!(DBS.lines().count(), 19);
    pre(&format!("{DBS}{rest}"))
}

const DB_ENTITLEMENTS: &str = r#"[[entitlement]]
name = "orders-db/readonly"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT CONNECT ON DATABASE orders TO {{role}}",
          "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{role}}"]

[[entitlement]]
name = "shop-db/read"
tier = "low"
max_ttl = "1h"
grants = ["GRANT SELECT ON shop.* TO {{role}}"]

[[entitlement]]
name = "cache/sessions-read"
target = "cache"
tier = "low"
max_ttl = "15m"
acl = ["~sessions:*", "+get", "+mget", "%R~cart:*", "-@dangerous", "allchannels"]

[[entitlement]]
name = "orders-api/read"
tier = "low"
max_ttl = "1h"
scopes = ["orders:read"]
"#;

/// `[[entitlement]]` on line 35 with `name` (36; where a missing key is reported), `tier`
/// and `max_ttl`, then `extra` from line 39.
fn entitlement(name: &str, extra: &str) -> String {
    dbs(&format!(
        "[[entitlement]]\nname = \"{name}\"\ntier = \"low\"\nmax_ttl = \"1h\"\n{extra}"
    ))
}

fn target_named<'a>(catalog: &'a Catalog, name: &str) -> &'a kairos_config::Target {
    catalog.target(&TargetName::parse(name).unwrap()).unwrap()
}

fn entitlement_named<'a>(catalog: &'a Catalog, name: &str) -> &'a kairos_config::Entitlement {
    catalog
        .entitlement(&EntitlementName::parse(name).unwrap())
        .unwrap()
}

/// `scram_iterations` belongs to postgres targets: a whole number from 1 to 100,000.
#[test]
fn scram_iterations_are_a_postgres_count() {
    let one = load(&pre(
        "[[target]]\nname = \"fast-db\"\nkind = \"postgres\"\nadmin_url_env = \"F\"\nscram_iterations = 1\n",
    ));
    assert!(
        matches!(&target_named(&one, "fast-db").kind, TargetKind::Postgres(db) if db.scram_iterations == Some(1))
    );
    check(
        &dbs(
            "[[target]]\nname = \"x-db\"\nkind = \"postgres\"\nadmin_url_env = \"X\"\nscram_iterations = 0\n\n[[target]]\nname = \"y-db\"\nkind = \"postgres\"\nadmin_url_env = \"Y\"\nscram_iterations = 4096.5\n\n[[target]]\nname = \"z-db\"\nkind = \"mariadb\"\nadmin_url_env = \"Z\"\nscram_iterations = 1\n\n[[target]]\nname = \"w-db\"\nkind = \"postgres\"\nadmin_url_env = \"W\"\nscram_iterations = \"1\"\n",
        ),
        &[
            "kairos.toml:39: target[4].scram_iterations: 0 is not an iteration count: write a whole number from 1 to 100000",
            "kairos.toml:45: target[5].scram_iterations: 4096.5 is not an iteration count",
            "kairos.toml:51: target[6].scram_iterations: `scram_iterations` applies only to postgres targets; this target's kind is mariadb",
            "kairos.toml:57: target[7].scram_iterations: expected a number, found a string",
        ],
    );
}

#[test]
fn database_targets_and_their_entitlements_load() {
    let catalog = load(&dbs(DB_ENTITLEMENTS));

    let orders = target_named(&catalog, "orders-db");
    assert_eq!(orders.kind_name(), "postgres");
    assert_eq!(orders.audience(), None);
    assert_eq!(orders.owner, Some(TeamName::parse("payments").unwrap()));
    let TargetKind::Postgres(db) = &orders.kind else {
        panic!("{orders:?}")
    };
    assert_eq!(db.admin_url, SecretRef::Env("ORDERS_DB_ADMIN_URL".into()));
    assert_eq!(db.admin_url.describe(), "env ORDERS_DB_ADMIN_URL");
    assert_eq!(db.managed_prefix, "kairos_", "the default prefix");
    assert_eq!(db.connect_host.as_deref(), Some("orders-db.internal"));
    assert_eq!(db.reconcile_interval, Ttl::parse("1m").unwrap());
    assert_eq!(db.account_host, None);
    assert_eq!(db.scram_iterations, Some(4096), "PostgreSQL's own default");

    let shop = target_named(&catalog, "shop-db");
    assert_eq!(shop.kind_name(), "mariadb");
    let TargetKind::MariaDb(db) = &shop.kind else {
        panic!("{shop:?}")
    };
    assert_eq!(
        db.admin_url.describe(),
        "file /run/secrets/shop-db-admin-url"
    );
    assert_eq!(db.managed_prefix, "kx_");
    assert_eq!(db.connect_host, None);
    assert_eq!(db.reconcile_interval, Ttl::parse("30s").unwrap());
    assert_eq!(db.account_host.as_deref(), Some("%"), "the MariaDB default");
    assert_eq!(db.scram_iterations, None);

    let cache = target_named(&catalog, "cache");
    assert_eq!(cache.kind_name(), "redis");
    assert!(matches!(&cache.kind, TargetKind::Redis(db) if db.account_host.is_none()));
    assert_eq!(target_named(&catalog, "orders-api").kind_name(), "token");
    assert!(target_named(&catalog, "orders-api").db().is_none());

    let readonly = entitlement_named(&catalog, "orders-db/readonly");
    assert_eq!(
        readonly.privileges,
        Privileges::Sql(vec![
            "GRANT CONNECT ON DATABASE orders TO {{role}}".into(),
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{role}}".into(),
        ])
    );
    assert!(readonly.scopes.is_empty());
    assert_eq!(readonly.privileges.key(), "grants");
    let sessions = entitlement_named(&catalog, "cache/sessions-read");
    assert_eq!(
        sessions.privileges.entries(),
        [
            "~sessions:*",
            "+get",
            "+mget",
            "%R~cart:*",
            "-@dangerous",
            "allchannels"
        ]
    );
    assert!(matches!(sessions.privileges, Privileges::RedisAcl(_)));
    // Token entitlements keep `scopes` as before.
    let read = entitlement_named(&catalog, "orders-api/read");
    assert_eq!(read.scopes, ["orders:read"]);
    assert_eq!(
        read.privileges,
        Privileges::Scopes(vec!["orders:read".into()])
    );

    // A MariaDB account host, and an IP connect host.
    let catalog = load(&pre(
        "[[target]]\nname = \"shop-db\"\nkind = \"mariadb\"\nadmin_url_env = \"SHOP\"\naccount_host = \"10.0.%\"\nconnect_host = \"10.0.0.7\"\n",
    ));
    let db = target_named(&catalog, "shop-db").db().unwrap();
    assert_eq!(db.account_host.as_deref(), Some("10.0.%"));
    assert_eq!(db.connect_host.as_deref(), Some("10.0.0.7"));
}

#[test]
fn the_admin_url_is_a_reference_never_a_value() {
    let secret = "hunter2-admin";
    let toml = pre(&format!(
        "[[target]]\nname = \"orders-db\"\nkind = \"postgres\"\nadmin_url = \"postgres://admin:{secret}@db/orders\"\n"
    ));
    let errors = Catalog::from_bundle(&bundle(&toml)).unwrap_err();
    let text = errors.to_string();
    assert_eq!(
        errors.len(),
        1,
        "only the inline secret is reported:\n{text}"
    );
    assert!(
        text.contains(
            "kairos.toml:19: target[1].admin_url: looks like a secret written into the catalog"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "use `admin_url_env = \"ENV_VAR\"` or `admin_url_file = \"/path/to/file\"` instead"
        ),
        "{text}"
    );
    assert!(!text.contains(secret), "a secret was echoed:\n{text}");

    let target = |keys: &str| {
        pre(&format!(
            "[[target]]\nname = \"orders-db\"\nkind = \"postgres\"\n{keys}"
        ))
    };
    check(
        &target(""),
        &[
            "kairos.toml:16: target[1].admin_url_env: a postgres target needs its admin connection URL: set `admin_url_env` (an environment variable holding it) or `admin_url_file`",
        ],
    );
    check(
        &target("admin_url_env = \"A\"\nadmin_url_file = \"/run/a\"\n"),
        &[
            "kairos.toml:20: target[1].admin_url_file: set either `admin_url_env` or `admin_url_file`, not both",
        ],
    );
    check(
        &target("admin_url_env = \"postgres://x\"\n"),
        &[
            "kairos.toml:19: target[1].admin_url_env: \"postgres://x\" is not an environment variable name",
        ],
    );
}

#[test]
fn keys_of_other_target_kinds_are_errors() {
    check(
        &pre(
            "[[target]]\nname = \"orders-db\"\nkind = \"postgres\"\nadmin_url_env = \"A\"\naudience = \"x\"\naccount_host = \"%\"\n",
        ),
        &[
            "kairos.toml:20: target[1].audience: `audience` applies only to token targets; this target's kind is postgres",
            "kairos.toml:21: target[1].account_host: `account_host` applies only to mariadb targets; this target's kind is postgres",
        ],
    );
    check(
        &pre(
            "[[target]]\nname = \"cache\"\nkind = \"redis\"\nadmin_url_env = \"A\"\naccount_host = \"%\"\n",
        ),
        &[
            "kairos.toml:20: target[1].account_host: `account_host` applies only to mariadb targets; this target's kind is redis",
        ],
    );
    check(
        &pre(
            "[[target]]\nname = \"api2\"\nkind = \"token\"\naudience = \"x\"\nadmin_url_env = \"A\"\nmanaged_prefix = \"k_\"\n",
        ),
        &[
            "kairos.toml:20: target[1].admin_url_env: `admin_url_env` applies only to postgres, mariadb, redis and rabbitmq targets; this target's kind is token",
            "kairos.toml:21: target[1].managed_prefix: `managed_prefix` applies only to postgres, mariadb, redis and rabbitmq targets",
        ],
    );
    check(
        &pre("[[target]]\nname = \"db\"\nkind = \"postgresql\"\n"),
        &[
            "kairos.toml:18: target[1].kind: target kind \"postgresql\" is unknown; write \"postgres\"",
        ],
    );
}

#[test]
fn database_target_values_are_checked() {
    let target = |line: &str| {
        pre(&format!(
            "[[target]]\nname = \"shop-db\"\nkind = \"mariadb\"\nadmin_url_env = \"A\"\n{line}\n"
        ))
    };
    for prefix in ["Kairos_", "9x", "a-b", "", "abcdefghijklmnopqrstu"] {
        check(
            &target(&format!("managed_prefix = \"{prefix}\"")),
            &[
                "kairos.toml:20: target[1].managed_prefix: managed_prefix",
                "must be 1-20 characters",
            ],
        );
    }
    load(&target("managed_prefix = \"abcdefghijklmnopqrst\""));
    for host in ["postgres://db", "db:5432", "db/orders", "", "-db"] {
        check(
            &target(&format!("connect_host = \"{host}\"")),
            &[
                "kairos.toml:20: target[1].connect_host: connect_host",
                "must be a host name or IP address",
            ],
        );
    }
    load(&target("connect_host = \"[::1]\""));
    check(
        &target("account_host = \"%' OR '1\""),
        &[
            "kairos.toml:20: target[1].account_host: account_host \"%' OR '1\" must be a MariaDB host pattern",
        ],
    );
    check(
        &target("reconcile_interval = \"0s\""),
        &["kairos.toml:20: target[1].reconcile_interval: TTL \"0s\" is zero"],
    );
}

#[test]
fn targets_sharing_an_admin_url_need_distinct_prefixes() {
    let pg = |name: &str, extra: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\nkind = \"postgres\"\nadmin_url_env = \"PG_ADMIN\"\n{extra}\n"
        )
    };
    check(
        &pre(&format!("{}{}", pg("a-db", ""), pg("b-db", ""))),
        &[
            "kairos.toml:22: target[2].managed_prefix: target b-db has the same kind (postgres) and admin URL (env PG_ADMIN) as target a-db (line 17) and the same managed prefix \"kairos_\" (the default); each would reconcile (drop) the other's accounts",
        ],
    );
    check(
        &pre(&format!(
            "{}{}",
            pg("a-db", ""),
            pg("b-db", "managed_prefix = \"kairos_ro_\"")
        )),
        &[
            "kairos.toml:25: target[2].managed_prefix: target b-db has the same kind (postgres) and admin URL (env PG_ADMIN) as target a-db (line 17) and managed prefix \"kairos_ro_\", which overlaps its \"kairos_\"",
        ],
    );
    // Distinct prefixes, another admin URL or another kind are fine.
    load(&pre(&format!(
        "{}{}",
        pg("a-db", ""),
        pg("b-db", "managed_prefix = \"kro_\"")
    )));
    load(&pre(&format!(
        "{}{}",
        pg("a-db", ""),
        pg("b-db", "").replace("PG_ADMIN", "PG_ADMIN_2")
    )));
    load(&pre(&format!(
        "{}{}",
        pg("a-db", ""),
        pg("b-db", "").replace("postgres", "mariadb")
    )));
    // Files count too.
    let file = |name: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\nkind = \"redis\"\nadmin_url_file = \"/run/redis\"\nmanaged_prefix = \"k_\"\n\n"
        )
    };
    check(
        &pre(&format!("{}{}", file("c1"), file("c2"))),
        &[
            "kairos.toml:26: target[2].managed_prefix: target c2 has the same kind (redis) and admin URL (file /run/redis) as target c1 (line 17)",
        ],
    );
}

#[test]
fn grants_are_single_statements_with_a_role() {
    let grants = |list: &str| entitlement("orders-db/rw", &format!("grants = [{list}]\n"));
    check(
        &entitlement("orders-db/rw", ""),
        &[
            "kairos.toml:36: entitlement[0].grants: grants are required: target orders-db is postgres",
        ],
    );
    check(
        &grants(""),
        &["kairos.toml:39: entitlement[0].grants: grants are required"],
    );
    // An injection attempt: a second statement after `;`.
    check(
        &grants(
            "\"GRANT SELECT ON orders TO {{role}}\",\n  \"GRANT SELECT ON orders TO {{role}}; DROP TABLE orders\"",
        ),
        &[
            "kairos.toml:40: entitlement[0].grants[1]: grant template \"GRANT SELECT ON orders TO {{role}}; DROP TABLE orders\" contains ';': each entry is exactly one SQL statement",
        ],
    );
    check(
        &grants("\"GRANT SELECT ON orders TO {{role}} --\\n; DROP TABLE orders\""),
        &["entitlement[0].grants[0]: grant template", "contains ';'"],
    );
    check(
        &grants("\"GRANT SELECT ON orders TO kairos\""),
        &[
            "kairos.toml:39: entitlement[0].grants[0]: grant template \"GRANT SELECT ON orders TO kairos\" does not contain {{role}}",
        ],
    );
    check(
        &grants("\"  \""),
        &["kairos.toml:39: entitlement[0].grants[0]: grant template \"  \" is empty"],
    );
    check(
        &grants("\"GRANT {{role}} TO {{user}}\""),
        &[
            "entitlement[0].grants[0]: grant template \"GRANT {{role}} TO {{user}}\" has an unknown placeholder starting \"{{user}}\"; the only placeholder is {{role}}",
        ],
    );
    check(
        &grants("\"GRANT SELECT ON t TO '{{role}}'\""),
        &[
            "entitlement[0].grants[0]: grant template \"GRANT SELECT ON t TO '{{role}}'\" quotes {{role}}",
        ],
    );
    // Multi-line statements are fine.
    load(&grants(
        "\"\"\"\nGRANT SELECT\n  ON ALL TABLES IN SCHEMA public\n  TO {{role}}\"\"\"",
    ));
    // MariaDB takes grants too.
    load(&entitlement(
        "shop-db/rw",
        "grants = [\"GRANT SELECT, INSERT ON shop.* TO {{role}}\"]\n",
    ));
}

#[test]
fn acl_rules_cannot_touch_authentication() {
    let acl = |list: &str| entitlement("cache/rw", &format!("acl = [{list}]\n"));
    check(
        &entitlement("cache/rw", ""),
        &["kairos.toml:36: entitlement[0].acl: acl is required: target cache is redis"],
    );
    check(
        &acl("\"+get\", \"nopass\""),
        &[
            "kairos.toml:39: entitlement[0].acl[1]: ACL rule \"nopass\" would change how the account authenticates or whether it is enabled",
        ],
    );
    for rule in ["on", "off", "RESET", "resetpass"] {
        check(
            &acl(&format!("\"{rule}\"")),
            &[&format!(
                "entitlement[0].acl[0]: ACL rule \"{rule}\" would change how the account authenticates"
            )],
        );
    }
    for rule in [
        ">hunter2",
        "<hunter2",
        "#0123abcd",
        "!0123abcd",
        "+get >hunter2",
    ] {
        let toml = acl(&format!("\"{rule}\""));
        let errors = Catalog::from_bundle(&bundle(&toml))
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("kairos.toml:39: entitlement[0].acl[0]: this ACL rule"),
            "{errors}"
        );
        assert!(
            !errors.contains("0123abcd") && !errors.contains("hunter2"),
            "a secret was echoed:\n{errors}"
        );
    }
    check(
        &acl("\"(~x +get)\""),
        &["entitlement[0].acl[0]: ACL rule \"(~x +get)\" must be one rule without spaces"],
    );
    check(
        &acl("\"(~x\""),
        &["entitlement[0].acl[0]: ACL rule \"(~x\" is a selector"],
    );
    check(
        &acl("\"+get ~x\""),
        &["entitlement[0].acl[0]: ACL rule \"+get ~x\" must be one rule without spaces"],
    );
    check(
        &acl("\"clearselectors\""),
        &["entitlement[0].acl[0]: ACL rule \"clearselectors\" touches selectors"],
    );
    check(
        &acl("\"%X~k\""),
        &["entitlement[0].acl[0]: ACL rule \"%X~k\" is not a key permission Kairos accepts"],
    );
    check(
        &acl("\"+\""),
        &["entitlement[0].acl[0]: ACL rule \"+\" is not a valid +cmd"],
    );
    check(
        &acl("\"~\""),
        &["entitlement[0].acl[0]: ACL rule \"~\" has an empty pattern"],
    );
    load(&acl(
        "\"%RW~k:*\", \"+client|info\", \"+@read\", \"-@dangerous\", \"&news\", \"ALLKEYS\"",
    ));
    check(
        &acl("\"sessions:*\""),
        &["entitlement[0].acl[0]: ACL rule \"sessions:*\" is not a Redis ACL rule Kairos accepts"],
    );
}

#[test]
fn privileges_must_match_the_target_kind() {
    check(
        &entitlement("orders-db/rw", "scopes = [\"orders:write\"]\n"),
        &[
            "kairos.toml:39: entitlement[0].scopes: `scopes` applies only to token targets; target orders-db is postgres: write its privileges as `grants`",
        ],
    );
    check(
        &entitlement(
            "orders-db/rw",
            "grants = [\"GRANT SELECT ON t TO {{role}}\"]\nacl = [\"+get\"]\n",
        ),
        &[
            "kairos.toml:40: entitlement[0].acl: `acl` applies only to redis targets; target orders-db is postgres",
        ],
    );
    check(
        &entitlement("cache/rw", "grants = [\"GRANT SELECT ON t TO {{role}}\"]\n"),
        &[
            "kairos.toml:39: entitlement[0].grants: `grants` applies only to postgres and mariadb targets; target cache is redis: write its privileges as `acl`",
            "kairos.toml:36: entitlement[0].acl: acl is required",
        ],
    );
    check(
        &entitlement(
            "orders-api/rw",
            "scopes = [\"orders:write\"]\ngrants = [\"GRANT SELECT ON t TO {{role}}\"]\n",
        ),
        &[
            "kairos.toml:40: entitlement[0].grants: `grants` applies only to postgres and mariadb targets; target orders-api is token: write its privileges as `scopes`",
        ],
    );
}

#[test]
fn diff_sees_changed_grants_and_target_settings() {
    let old = load(&dbs(DB_ENTITLEMENTS));
    let new = load(&dbs(&DB_ENTITLEMENTS
        .replace("SCHEMA public TO", "SCHEMA reporting TO")
        .replace("\"+mget\", ", "")));
    assert_eq!(
        Catalog::diff(&old, &new),
        ConfigDiff {
            created: vec![],
            changed: vec![
                "entitlement cache/sessions-read".into(),
                "entitlement orders-db/readonly".into()
            ],
            removed: vec![],
        }
    );
    let moved = load(&dbs(DB_ENTITLEMENTS).replace("orders-db.internal", "orders-db-2.internal"));
    assert_eq!(Catalog::diff(&old, &moved).changed, ["target orders-db"]);
    let rotated = load(&dbs(DB_ENTITLEMENTS).replace("CACHE_ADMIN_URL", "CACHE_ADMIN_URL_V2"));
    assert_eq!(Catalog::diff(&old, &rotated).changed, ["target cache"]);
}

#[test]
fn audit_checkpoint_settings() {
    let defaults = load("[server]\n");
    let server = defaults.server().unwrap();
    assert_eq!(server.audit_checkpoint_file, None);
    assert_eq!(server.audit_checkpoint_interval, Ttl::parse("5m").unwrap());
    let set = load(
        "[server]\naudit_checkpoint_file = \"/var/lib/kairos/checkpoints.jsonl\"\naudit_checkpoint_interval = \"30s\"\n",
    );
    let server = set.server().unwrap();
    assert_eq!(
        server.audit_checkpoint_file.as_deref(),
        Some("/var/lib/kairos/checkpoints.jsonl")
    );
    assert_eq!(server.audit_checkpoint_interval, Ttl::parse("30s").unwrap());
    check(
        "[server]\naudit_checkpoint_interval = \"often\"\n",
        &["kairos.toml:2: server.audit_checkpoint_interval:"],
    );
}

#[test]
fn admin_grants_are_refused_unless_the_entitlement_allows_them() {
    let grants = |list: &str| entitlement("orders-db/rw", &format!("grants = [{list}]\n"));
    let way_out = "say so with `danger_allow_admin_grants = true` in it";
    for (template, why) in [
        (
            "ALTER ROLE {{role}} SUPERUSER",
            "ALTER ROLE changes an account",
        ),
        (
            "alter  user {{role}} with password 'x'",
            "ALTER USER changes an account",
        ),
        (
            "ALTER/* hidden */\\\"ROLE\\\" {{role}} CREATEROLE",
            "ALTER ROLE changes an account",
        ),
        (
            "GRANT pg_read_all_data TO {{role}} -- fine\\n WITH ADMIN OPTION",
            "WITH ADMIN lets the account hand",
        ),
        (
            "GRANT SELECT ON orders TO {{role}} WITH GRANT OPTION",
            "WITH GRANT OPTION lets the account",
        ),
        (
            "GRANT pg_execute_server_program TO {{role}}",
            "pg_execute_server_program is as powerful as a superuser",
        ),
        (
            "CREATE ROLE x IN ROLE {{role}}",
            "CREATE ROLE creates an account",
        ),
        ("DROP USER {{role}}", "DROP USER drops an account"),
        (
            "SET PASSWORD FOR {{role}} = PASSWORD('x')",
            "SET PASSWORD changes",
        ),
        (
            "GRANT ALL PRIVILEGES ON *.* TO {{role}}",
            "ALL ON *.* hands out every privilege",
        ),
        (
            "GRANT all on * . * TO {{role}}",
            "ALL ON *.* hands out every privilege",
        ),
        (
            "GRANT /*!50000 SUPER */ ON *.* TO {{role}}",
            "SUPER is an administrative privilege",
        ),
        (
            "GRANT REPLICATION SLAVE ON *.* TO {{role}}",
            "REPLICATION is an administrative privilege",
        ),
    ] {
        check(
            &grants(&format!(
                "\"GRANT SELECT ON orders TO {{{{role}}}}\", \"{template}\""
            )),
            &[
                &format!("kairos.toml:39: entitlement[0].grants[1]: {why}"),
                way_out,
            ],
        );
    }
    // The statement is not echoed: it may carry a password.
    let errors = Catalog::from_bundle(&bundle(&grants(
        "\"ALTER ROLE {{role}} PASSWORD 'hunter2-secret'\"",
    )))
    .err()
    .unwrap()
    .to_string();
    assert!(!errors.contains("hunter2-secret"), "{errors}");
    // Ordinary grants load; so do admin ones when the entitlement says so.
    load(&grants(
        "\"GRANT CONNECT ON DATABASE orders TO {{role}}\", \"GRANT SELECT, INSERT ON superusers_report TO {{role}}\"",
    ));
    load(&entitlement(
        "orders-db/rw",
        "grants = [\"ALTER ROLE {{role}} CREATEDB\", \"GRANT ALL ON *.* TO {{role}} WITH GRANT OPTION\"]\ndanger_allow_admin_grants = true\n",
    ));
    check(
        &entitlement(
            "orders-db/rw",
            "grants = [\"GRANT SELECT ON orders TO {{role}}\"]\ndanger_allow_admin_grants = \"yes\"\n",
        ),
        &[
            "kairos.toml:40: entitlement[0].danger_allow_admin_grants: expected true or false, found a string",
        ],
    );

    // Redis: administration through ACL rules.
    let acl = |list: &str| {
        entitlement(
            "cache/rw",
            &format!("target = \"cache\"\nacl = [\"~s:*\", {list}]\n"),
        )
    };
    for (rule, why) in [
        ("+@admin", "+@admin allows administrative commands"),
        ("+@DANGEROUS", "+@DANGEROUS allows administrative commands"),
        ("+acl", "+acl allows an administrative command"),
        (
            "+config|set",
            "+config|set allows an administrative command",
        ),
        ("allcommands", "allcommands allows every command"),
        ("+@all", "+@all allows every command"),
    ] {
        check(
            &acl(&format!("\"{rule}\"")),
            &[
                &format!("kairos.toml:40: entitlement[0].acl[1]: {why}"),
                way_out,
            ],
        );
    }
    load(&acl("\"+get\", \"-@admin\""));
    load(&entitlement(
        "cache/rw",
        "target = \"cache\"\nacl = [\"allkeys\", \"+@all\"]\ndanger_allow_admin_grants = true\n",
    ));
}

#[test]
fn issuers_cap_token_lifetimes_and_refuse_duplicated_kids() {
    let catalog = load(PRE);
    let ci = catalog.issuers().next().unwrap();
    assert_eq!(ci.max_token_age, Ttl::parse("24h").unwrap(), "the default");
    let capped = PRE.replace(
        "jwks_file = \"ci-jwks.json\"",
        "jwks_file = \"ci-jwks.json\"\nmax_token_age = \"1h\"",
    );
    let catalog = load(&capped);
    assert_eq!(
        catalog.issuers().next().unwrap().max_token_age,
        Ttl::parse("1h").unwrap()
    );
    check(
        &PRE.replace(
            "jwks_file = \"ci-jwks.json\"",
            "jwks_file = \"ci-jwks.json\"\nmax_token_age = \"soon\"",
        ),
        &["kairos.toml:6: issuer[0].max_token_age:"],
    );

    // The fixture's key twice under its kid.
    let mut doc: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    let key = doc["keys"][0].clone();
    doc["keys"].as_array_mut().unwrap().push(key);
    let twice = doc.to_string();
    check_bundle(
        &bundle_with(
            PRE,
            &[("ci-jwks.json", &twice), ("policies/base.cedar", POLICY)],
        ),
        &[
            "kairos.toml:5: issuer[0].jwks_file:",
            "two keys with kid \"ci-2026-01\"",
        ],
    );
}

#[test]
fn identities_take_allowed_sources_as_address_blocks() {
    let catalog = load(&pre(&format!(
        "{IDENTITY}allowed_sources = [\"10.0.0.0/8\", \"192.168.1.7\", \"2001:db8::/32\"]\n"
    )));
    let identity = catalog.identities().next().unwrap();
    let shown: Vec<String> = identity
        .allowed_sources
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"]);
    // Without the key: anywhere.
    assert!(
        load(&pre(IDENTITY))
            .identities()
            .next()
            .unwrap()
            .allowed_sources
            .is_empty()
    );
    // Line 22 is the key (15 lines of PRE, 6 of the identity).
    check(
        &pre(&format!(
            "{IDENTITY}allowed_sources = [\"10.0.0.0/8\", \"10.0.0.1/8\", \"office\"]\n"
        )),
        &[
            "kairos.toml:22: identity[0].allowed_sources[1]: \"10.0.0.1/8\" has address bits set past its /8 prefix; write \"10.0.0.0/8\"",
            "kairos.toml:22: identity[0].allowed_sources[2]: \"office\" is not an address block",
        ],
    );
    check(
        &pre(&format!("{IDENTITY}allowed_sources = \"10.0.0.0/8\"\n")),
        &["identity[0].allowed_sources: expected an array of strings"],
    );
}

#[test]
fn a_trusted_proxy_header_needs_trusted_proxies_and_the_reverse() {
    let catalog = load(&format!(
        "[server]\ntrusted_proxy_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n{}",
        pre(IDENTITY)
    ));
    let server = catalog.server().unwrap();
    assert_eq!(
        server.trusted_proxy_header.as_deref(),
        Some("x-forwarded-for")
    );
    assert_eq!(server.trusted_proxies.len(), 1);
    check(
        &format!(
            "[server]\ntrusted_proxy_header = \"x-forwarded-for\"\n{}",
            pre(IDENTITY)
        ),
        &[
            "kairos.toml:2: server.trusted_proxy_header: a trusted proxy header needs `trusted_proxies`",
        ],
    );
    check(
        &format!(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n{}",
            pre(IDENTITY)
        ),
        &["kairos.toml:2: server.trusted_proxies: `trusted_proxies` needs `trusted_proxy_header`"],
    );
    check(
        &format!(
            "[server]\ntrusted_proxy_header = \"x forwarded\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n{}",
            pre(IDENTITY)
        ),
        &[
            "kairos.toml:2: server.trusted_proxy_header: \"x forwarded\" is not an HTTP header name",
            "kairos.toml:3: server.trusted_proxies[0]: \"10.0.0.0/33\": the prefix length",
        ],
    );
}

#[test]
fn server_tls_keys_go_together() {
    let server = |extra: &str| {
        load(&format!("[server]\n{extra}{}", pre(IDENTITY)))
            .server()
            .unwrap()
            .tls
            .clone()
    };
    assert_eq!(server(""), None);
    let files = "tls_cert_file = \"/etc/kairos/tls.crt\"\ntls_key_file = \"/etc/kairos/tls.key\"\n";
    let tls = server(files).unwrap();
    assert_eq!(
        (tls.cert_file.as_str(), tls.key_file.as_str()),
        ("/etc/kairos/tls.crt", "/etc/kairos/tls.key")
    );
    assert_eq!(tls.client_certificates, ClientCertificates::NotRequested);
    // A CA alone asks for certificates without requiring them.
    let ca = "tls_client_ca_file = \"clients.pem\"\n";
    assert_eq!(
        server(&format!("{files}{ca}")).unwrap().client_certificates,
        ClientCertificates::Optional {
            ca_file: "clients.pem".into()
        }
    );
    assert_eq!(
        server(&format!("{files}{ca}tls_client_auth = \"required\"\n"))
            .unwrap()
            .client_certificates,
        ClientCertificates::Required {
            ca_file: "clients.pem".into()
        }
    );

    let check_server = |extra: &str, expected: &str| {
        check(&format!("[server]\n{extra}{}", pre(IDENTITY)), &[expected]);
    };
    check_server(
        "tls_cert_file = \"tls.crt\"\n",
        "kairos.toml:2: server.tls_cert_file: `tls_cert_file` needs `tls_key_file`",
    );
    check_server(
        "tls_key_file = \"tls.key\"\n",
        "kairos.toml:2: server.tls_key_file: `tls_key_file` needs `tls_cert_file`",
    );
    check_server(
        ca,
        "kairos.toml:2: server.tls_client_ca_file: client certificates need native TLS",
    );
    check_server(
        &format!("{files}tls_client_auth = \"required\"\n"),
        "kairos.toml:4: server.tls_client_auth: `tls_client_auth` needs `tls_client_ca_file`",
    );
    check_server(
        &format!("{files}{ca}tls_client_auth = \"always\"\n"),
        "kairos.toml:5: server.tls_client_auth: \"always\" is not a client certificate mode; use \"optional\"",
    );
    check_server(
        "tls_cert_file = 7\n",
        "kairos.toml:2: server.tls_cert_file: expected a string",
    );
}

#[test]
fn an_entitlement_may_require_a_known_binding() {
    let with = |line: &str| {
        pre(&format!(
            "[[entitlement]]\nname = \"orders-api/read\"\ntier = \"low\"\nmax_ttl = \"1h\"\nscopes = [\"orders:read\"]\n{line}\n"
        ))
    };
    let catalog = load(&with("require_binding = \"dpop\""));
    assert_eq!(
        entitlement_named(&catalog, "orders-api/read").require_binding,
        Some(kairos_config::Binding::Dpop)
    );
    let catalog = load(&with(""));
    assert_eq!(
        entitlement_named(&catalog, "orders-api/read").require_binding,
        None
    );
    check(
        &with("require_binding = \"tls\""),
        &[
            "kairos.toml:21: entitlement[0].require_binding:",
            "require_binding \"tls\" is unknown; use \"dpop\"",
        ],
    );
}

#[test]
fn the_dpop_table_sets_nonces_and_the_proof_window() {
    let catalog = load(&pre("[dpop]\nnonce = true\nproof_max_age = \"2m\"\n"));
    assert!(catalog.dpop().nonce);
    assert_eq!(catalog.dpop().proof_max_age.as_secs(), 120);
    let defaults = load(&pre(""));
    assert!(!defaults.dpop().nonce);
    assert_eq!(defaults.dpop().proof_max_age.as_secs(), 60);
    check(
        &pre("[dpop]\nproof_max_age = \"1h\"\n"),
        &["kairos.toml:17: dpop.proof_max_age:", "use 10m or less"],
    );
    check(
        &pre("[dpop]\nnonces = true\n"),
        &["kairos.toml:17: dpop.nonces:"],
    );
}
