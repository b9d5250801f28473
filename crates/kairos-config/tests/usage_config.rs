//! The usage detectors' thresholds in `[governance]`: defaults, values, and errors at
//! file, line and key.
// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use kairos_config::{Catalog, ConfigBundle};

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

#[test]
fn usage_thresholds_default_when_absent() {
    let g = load("").governance().clone();
    assert_eq!(g.shared_max_sources, 3);
    assert_eq!(g.shared_max_tasks, 5);
    assert_eq!(g.shared_window.as_secs(), 3600);
    assert_eq!(g.dormant_after.as_secs(), 30 * 86_400);
    assert_eq!(g.held_past_use_share.permille(), 500);
}

#[test]
fn usage_thresholds_are_read() {
    let g = load(
        "[governance]\nshared_max_sources = 10\nshared_max_tasks = 2\nshared_window = \"15m\"\n\
         dormant_after = \"90d\"\nheld_past_use_share = 0.75\n",
    )
    .governance()
    .clone();
    assert_eq!(g.shared_max_sources, 10);
    assert_eq!(g.shared_max_tasks, 2);
    assert_eq!(g.shared_window.as_secs(), 900);
    assert_eq!(g.dormant_after.as_secs(), 90 * 86_400);
    assert_eq!(g.held_past_use_share.permille(), 750);
    // A whole share may be written as an integer.
    let g = load("[governance]\nheld_past_use_share = 1\n")
        .governance()
        .clone();
    assert_eq!(g.held_past_use_share.permille(), 1000);
}

#[test]
fn bad_usage_thresholds_name_file_line_and_key() {
    let errors = refused(
        "[governance]\nshared_max_sources = 0\nshared_max_tasks = 2.5\nshared_window = \"soon\"\n\
         dormant_after = 30\nheld_past_use_share = 1.5\n",
    );
    for expected in [
        "kairos.toml:13: governance.shared_max_sources: 0 is not a count; write a whole number from 1 to 1000000",
        "kairos.toml:14: governance.shared_max_tasks: 2.5 is not a count",
        "kairos.toml:15: governance.shared_window:",
        "kairos.toml:16: governance.dormant_after: expected a string, found an integer",
        "kairos.toml:17: governance.held_past_use_share: 1.5 is not a share of a TTL",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    let errors = refused("[governance]\nshared_max_tasks = \"5\"\n");
    assert!(
        errors.contains(
            "kairos.toml:13: governance.shared_max_tasks: expected a number, found a string"
        ),
        "{errors}"
    );
}
