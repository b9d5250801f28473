//! Break-glass entitlements in the catalog: `break_glass = true`, a cap of at most an hour.
// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use kairos_config::{Catalog, ConfigBundle};
use kairos_domain::EntitlementName;

const JWKS: &str = include_str!("fixtures/ci-jwks.json");

/// Eleven lines (the last one blank) that define issuer `ci` and target `db`; what a test
/// appends starts on line 12.
const PRE: &str = r#"[[issuer]]
name = "ci"
issuer = "https://ci.example.com"
audience = "kairos"
jwks_file = "ci-jwks.json"

[[target]]
name = "db"
kind = "token"
audience = "https://db.internal"

"#;

fn bundle(rest: &str) -> ConfigBundle {
    assert_eq!(PRE.lines().count(), 11);
    ConfigBundle {
        main_path: "kairos.toml".into(),
        files: BTreeMap::from([
            ("kairos.toml".into(), format!("{PRE}{rest}")),
            ("ci-jwks.json".into(), JWKS.into()),
        ]),
    }
}

fn load(rest: &str) -> Catalog {
    Catalog::from_bundle(&bundle(rest)).unwrap_or_else(|e| panic!("catalog refused:\n{e}"))
}

fn refused(rest: &str) -> String {
    match Catalog::from_bundle(&bundle(rest)) {
        Ok(_) => panic!("catalog accepted:\n{rest}"),
        Err(e) => e.to_string(),
    }
}

fn break_glass(catalog: &Catalog, name: &str) -> bool {
    let name = EntitlementName::parse(name).unwrap();
    catalog.entitlement(&name).unwrap().break_glass
}

#[test]
fn break_glass_is_off_unless_said() {
    let catalog = load(
        "[[entitlement]]\nname = \"db/read\"\ntier = \"low\"\nmax_ttl = \"8h\"\nscopes = [\"r\"]\n\n\
         [[entitlement]]\nname = \"db/admin\"\ntier = \"high\"\nmax_ttl = \"30m\"\nscopes = [\"a\"]\nbreak_glass = true\n",
    );
    assert!(!break_glass(&catalog, "db/read"));
    assert!(break_glass(&catalog, "db/admin"));
}

#[test]
fn a_break_glass_cap_over_an_hour_is_refused_at_its_line() {
    // max_ttl 2h within the low tier's 8h: the cap is 2h.
    let errors = refused(
        "[[entitlement]]\nname = \"db/admin\"\ntier = \"low\"\nmax_ttl = \"2h\"\nscopes = [\"a\"]\nbreak_glass = true\n",
    );
    assert!(
        errors.contains(
            "kairos.toml:15: entitlement[0].max_ttl: entitlement db/admin is break_glass"
        ),
        "{errors}"
    );
    assert!(errors.contains("its cap is 2h"), "{errors}");
    assert!(errors.contains("lower max_ttl to 1h or less"), "{errors}");
    // Exactly an hour is allowed; so is a long max_ttl that the tier caps to an hour.
    load(
        "[[entitlement]]\nname = \"db/admin\"\ntier = \"low\"\nmax_ttl = \"1h\"\nscopes = [\"a\"]\nbreak_glass = true\n",
    );
    let errors = refused(
        "[[entitlement]]\nname = \"db/admin\"\ntier = \"medium\"\nmax_ttl = \"90m\"\nscopes = [\"a\"]\nbreak_glass = true\n",
    );
    // Over the medium tier's 1h: only that error, the effective cap is an hour.
    assert!(
        errors.contains("max_ttl 1h30m is longer than the medium tier allows"),
        "{errors}"
    );
    assert!(!errors.contains("break_glass"), "{errors}");
}

#[test]
fn break_glass_must_be_a_boolean() {
    let errors = refused(
        "[[entitlement]]\nname = \"db/admin\"\ntier = \"high\"\nmax_ttl = \"30m\"\nscopes = [\"a\"]\nbreak_glass = \"yes\"\n",
    );
    assert!(
        errors.contains("kairos.toml:17: entitlement[0].break_glass: expected true or false"),
        "{errors}"
    );
}

#[test]
fn turning_break_glass_on_is_a_change() {
    let off = load(
        "[[entitlement]]\nname = \"db/admin\"\ntier = \"high\"\nmax_ttl = \"30m\"\nscopes = [\"a\"]\n",
    );
    let on = load(
        "[[entitlement]]\nname = \"db/admin\"\ntier = \"high\"\nmax_ttl = \"30m\"\nscopes = [\"a\"]\nbreak_glass = true\n",
    );
    assert_eq!(Catalog::diff(&off, &on).changed, ["entitlement db/admin"]);
}

#[test]
fn review_due_is_a_governance_setting() {
    let catalog = load("");
    assert_eq!(catalog.governance().review_due.as_secs(), 72 * 3600);
    let catalog = load("[governance]\nreview_due = \"2d\"\n");
    assert_eq!(catalog.governance().review_due.as_secs(), 48 * 3600);
    let errors = refused("[governance]\nreview_due = \"soon\"\n");
    assert!(
        errors.contains("kairos.toml:13: governance.review_due:"),
        "{errors}"
    );
}
