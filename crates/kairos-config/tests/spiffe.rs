//! The SPIFFE keys of the catalog: `[[trust_domain]]`, `[[identity]] spiffe_id`,
//! `[[issuer]] spiffe_trust_domain`, `require_binding = "mtls" | "any"` and
//! `[tiers.require_binding]`; errors name file, line and key.

// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use kairos_config::{Binding, Catalog, ConfigBundle, JwksRef};
use kairos_domain::{EntitlementName, IdentityName};

const JWKS: &str = include_str!("fixtures/ci-jwks.json");
const CA: &str = include_str!("fixtures/spiffe-ca.pem");
const POLICY: &str = "@id(\"allow-all\")\npermit (principal, action, resource);\n";

/// Lines 1–15 define issuer `ci`, team `payments`, target `orders-api`; what a test
/// appends starts on line 16.
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

fn bundle(rest: &str, files: &[(&str, &str)]) -> ConfigBundle {
    assert_eq!(PRE.lines().count(), 15);
    let mut map: BTreeMap<String, String> = [
        ("ci-jwks.json", JWKS),
        ("policies/base.cedar", POLICY),
        ("prod.pem", CA),
    ]
    .iter()
    .chain(files)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    map.insert("kairos.toml".into(), format!("{PRE}{rest}"));
    ConfigBundle {
        main_path: "kairos.toml".into(),
        files: map,
    }
}

fn load(rest: &str, files: &[(&str, &str)]) -> Catalog {
    Catalog::from_bundle(&bundle(rest, files)).unwrap_or_else(|e| panic!("refused:\n{e}"))
}

fn check(rest: &str, files: &[(&str, &str)], expected: &[&str]) {
    let errors = match Catalog::from_bundle(&bundle(rest, files)) {
        Ok(_) => panic!("catalog accepted, expected {expected:?}"),
        Err(e) => e.to_string(),
    };
    for want in expected {
        assert!(errors.contains(want), "errors lack {want:?}:\n{errors}");
    }
}

const TD: &str = "[[trust_domain]]\nname = \"prod.example.org\"\nbundle_file = \"prod.pem\"\n\n";

fn identity(name: &str, keys: &str) -> String {
    format!("[[identity]]\nname = \"{name}\"\nowner = \"payments\"\nkind = \"service\"\n{keys}\n")
}

#[test]
fn spiffe_identities_trust_domains_and_bindings_load() {
    let jwt_bundle = format!(
        r#"{{"keys": [{{"use": "jwt-svid", "kty": "RSA", "kid": "spire", "n": {n}, "e": "AQAB"}}]}}"#,
        n = serde_json::from_str::<serde_json::Value>(JWKS).unwrap()["keys"][0]["n"]
    );
    let rest = format!(
        "{TD}[[trust_domain]]\nname = \"jwt.example.org\"\nbundle_file = \"jwt.json\"\n\n\
         [[issuer]]\nname = \"spire\"\nspiffe_trust_domain = \"jwt.example.org\"\naudience = \"kairos\"\n\n\
         {}{}{}\
         [[entitlement]]\nname = \"orders-api/read\"\ntarget = \"orders-api\"\ntier = \"critical\"\nmax_ttl = \"5m\"\nscopes = [\"r\"]\nrequire_binding = \"mtls\"\n\n\
         [tiers.require_binding]\ncritical = \"any\"\n",
        identity(
            "deployer",
            "spiffe_id = \"spiffe://prod.example.org/ns/ci/sa/deployer\""
        ),
        identity(
            "both",
            "issuer = \"ci\"\nsubject = \"repo:x\"\nspiffe_id = \"spiffe://jwt.example.org/both\""
        ),
        identity("platform-only", "issuer = \"ci\"\nsubject = \"repo:y\""),
    );
    let catalog = load(&rest, &[("jwt.json", &jwt_bundle)]);
    let deployer = catalog
        .identity_by_spiffe_id("spiffe://prod.example.org/ns/ci/sa/deployer")
        .unwrap();
    assert_eq!(deployer.name, IdentityName::parse("deployer").unwrap());
    assert_eq!(deployer.issuer, None);
    // Policy sees the trust domain as the issuer of an identity with only a SPIFFE ID.
    assert_eq!(catalog.identity_facts(deployer).issuer, "prod.example.org");
    assert!(
        catalog
            .identity_by_spiffe_id("spiffe://jwt.example.org/both")
            .is_some()
    );
    let names: Vec<&str> = catalog.trust_domains().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["jwt.example.org", "prod.example.org"]);
    let spire = catalog
        .issuer(&kairos_config::IssuerName::parse("spire").unwrap())
        .unwrap();
    assert_eq!(spire.issuer, "");
    assert_eq!(
        spire.spiffe_trust_domain.as_deref(),
        Some("jwt.example.org")
    );
    assert!(matches!(&spire.jwks, JwksRef::Inline { file, .. } if file == "jwt.json"));
    let e = catalog
        .entitlement(&EntitlementName::parse("orders-api/read").unwrap())
        .unwrap();
    let required: Vec<Binding> = catalog
        .binding_requirements(e)
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(required, [Binding::Mtls, Binding::Any]);
}

#[test]
fn bad_trust_domains_and_bundles_name_file_line_and_key() {
    // Line 16 onwards.
    check(
        "[[trust_domain]]\nname = \"Prod.Example\"\nbundle_file = \"prod.pem\"\n",
        &[],
        &["kairos.toml:17: trust_domain[0].name: \"Prod.Example\" is not a trust domain name"],
    );
    check(
        "[[trust_domain]]\nname = \"prod.example.org\"\nbundle_file = \"bad.pem\"\n",
        &[("bad.pem", "not a certificate")],
        &["kairos.toml:18: trust_domain[0].bundle_file: \"bad.pem\" holds no certificate"],
    );
    check(
        "[[trust_domain]]\nname = \"prod.example.org\"\nbundle_file = \"bad.json\"\n",
        &[(
            "bad.json",
            r#"{"keys": [{"use": "x509-svid", "x5c": ["AAAA"]}]}"#,
        )],
        &["kairos.toml:18: trust_domain[0].bundle_file: \"bad.json\" certificate 1 is not X.509"],
    );
    check(
        "[[trust_domain]]\nname = \"prod.example.org\"\n",
        &[],
        &["kairos.toml:16: trust_domain[0].bundle_file: required key `bundle_file` is missing"],
    );
    check(
        &format!("{TD}{TD}"),
        &[],
        &[
            "kairos.toml:21: trust_domain[1].name: trust domain \"prod.example.org\" is already defined at line 17",
        ],
    );
}

#[test]
fn bad_spiffe_ids_and_duplicates_name_file_line_and_key() {
    check(
        &format!(
            "{TD}{}",
            identity("a", "spiffe_id = \"spiffe://prod.example.org/a/../b\"")
        ),
        &[],
        &[
            "kairos.toml:24: identity[0].spiffe_id: \"spiffe://prod.example.org/a/../b\" is not a SPIFFE ID: the path may not contain `.` or `..` segments",
        ],
    );
    check(
        &format!(
            "{TD}{}",
            identity("a", "spiffe_id = \"https://prod.example.org/a\"")
        ),
        &[],
        &[
            "kairos.toml:24: identity[0].spiffe_id: \"https://prod.example.org/a\" is not a SPIFFE ID: a SPIFFE ID starts with `spiffe://`",
        ],
    );
    check(
        &format!(
            "{TD}{}{}",
            identity("a", "spiffe_id = \"spiffe://prod.example.org/w\""),
            identity("b", "spiffe_id = \"spiffe://prod.example.org/w\"")
        ),
        &[],
        &[
            "kairos.toml:29: identity[1].spiffe_id: identity b has the same SPIFFE ID \"spiffe://prod.example.org/w\" as identity a (line 24)",
        ],
    );
    check(
        &identity("a", "spiffe_id = \"spiffe://nowhere.example.org/w\""),
        &[],
        &[
            "kairos.toml:20: identity[0].spiffe_id: the trust domain \"nowhere.example.org\" of this SPIFFE ID is not declared",
        ],
    );
    check(
        &identity("a", ""),
        &[],
        &["kairos.toml:16: identity[0]: an identity needs a way to authenticate"],
    );
    check(
        &identity("a", "issuer = \"ci\""),
        &[],
        &["kairos.toml:16: identity[0].subject: required key `subject` is missing"],
    );
}

#[test]
fn bad_bindings_and_spiffe_issuers_name_file_line_and_key() {
    check(
        "[tiers.require_binding]\ncritical = \"tls\"\n",
        &[],
        &[
            "kairos.toml:17: tiers.require_binding.critical: require_binding \"tls\" is unknown; use \"dpop\"",
        ],
    );
    check(
        "[tiers.require_binding]\nextreme = \"any\"\n",
        &[],
        &["kairos.toml:17: tiers.require_binding.extreme"],
    );
    // A JWT-SVID issuer needs keys: its own, or its declared trust domain's jwt-svid keys
    // (a PEM bundle has none).
    check(
        &format!(
            "{TD}[[issuer]]\nname = \"spire\"\nspiffe_trust_domain = \"prod.example.org\"\naudience = \"kairos\"\n"
        ),
        &[],
        &[
            "kairos.toml:22: issuer[1].spiffe_trust_domain: no keys for this trust domain's JWT-SVIDs",
        ],
    );
    check(
        "[[issuer]]\nname = \"spire\"\nspiffe_trust_domain = \"Bad Domain\"\naudience = \"kairos\"\njwks_file = \"ci-jwks.json\"\n",
        &[],
        &[
            "kairos.toml:18: issuer[1].spiffe_trust_domain: \"Bad Domain\" is not a trust domain name",
        ],
    );
}
