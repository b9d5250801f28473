//! Configuration changes reach live grants, through the real server and CLI: an edited
//! policy that now denies live grants ends them as `policy_changed` (re-decided with the
//! TTL their request was granted with; `--dry-run` lists them and changes nothing), and a
//! configuration that removes what grants stand on ends each with the reason naming what
//! it removed (`identity_removed`, `team_removed`, `target_removed`,
//! `entitlement_removed`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::pg::SHARED_PG;
use common::*;
use serde_json::{Value, json};

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "CLI failed: {}\n{}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// A grant for the workload of `platform`: (grant id, token).
fn grant(api: &Api, platform: &str, entitlement: &str, ttl: &str) -> (String, String) {
    let (status, body) = api.exchange(platform, entitlement, Some(ttl));
    assert_eq!(status, 200, "{body}");
    (
        body["grant_id"].as_str().unwrap().to_owned(),
        body["access_token"].as_str().unwrap().to_owned(),
    )
}

fn state(api: &Api, grant: &str) -> Value {
    let (status, g) = api.get(ADMIN, &format!("/v1/grants/{grant}"));
    assert_eq!(status, 200, "{g}");
    g
}

fn ended_as(api: &Api, grant: &str, reason: &str) {
    let g = api.wait_grant(ADMIN, grant, Duration::from_secs(15), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["reason"], reason, "{g}");
    assert!(g["receipt"]["verified_at"].is_string(), "{g}");
}

fn edit_policy(dir: &Path, from: &str, to: &str) {
    let path = dir.join("policies/base.cedar");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

fn policy_change(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_config(&cfg, &issuer, "");
    let config_path = config.to_str().unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config), store);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (long_read, long_token) = grant(&api, &platform, "orders-api/read", "20m");
    let (short_read, _) = grant(&api, &platform, "orders-api/read", "5m");
    let (write, write_token) = grant(&api, &platform, "orders-api/write", "10m");

    // Reads now only up to 10 minutes, and the workload may not write any more.
    edit_policy(
        &cfg,
        r#"when { context.task_kind == "job" };"#,
        r#"when { context.task_kind == "job" && context.ttl_secs <= 600 };"#,
    );
    edit_policy(
        &cfg,
        r#"@id("write-auto")"#,
        "@id(\"no-backup-writes\")\nforbid (principal == Kairos::Identity::\"nightly-backup\", action, resource == Kairos::Entitlement::\"orders-api/write\");\n\n@id(\"write-auto\")",
    );

    // Dry run: lists the two grants the new policies deny, each with why; ends nothing.
    let dry = ok(&server.cli(ADMIN, &["apply", "--dry-run", config_path]));
    assert!(dry.contains("would end 2 live grants"), "{dry}");
    assert!(dry.contains(&long_read) && dry.contains(&write), "{dry}");
    assert!(!dry.contains(&short_read), "{dry}");
    assert!(dry.contains("policy_changed"), "{dry}");
    assert!(
        dry.contains("no-backup-writes"),
        "the forbid is named: {dry}"
    );
    let dry: Value = serde_json::from_str(&ok(
        &server.cli(ADMIN, &["--json", "apply", "--dry-run", config_path])
    ))
    .unwrap();
    assert_eq!(dry["dry_run"], true);
    let listed: Vec<(&str, &str)> = dry["grants_ending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["grant_id"].as_str().unwrap(),
                g["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 2, "{dry}");
    assert!(listed.iter().all(|(_, r)| *r == "policy_changed"), "{dry}");
    for g in [&long_read, &short_read, &write] {
        assert_eq!(
            state(&api, g)["state"],
            "active",
            "a dry run changes nothing"
        );
    }
    assert_eq!(api.introspect(ADMIN, &write_token)["active"], true);

    // Apply: those two end as policy_changed, verified; the 5-minute read stands.
    let applied: Value =
        serde_json::from_str(&ok(&server.cli(ADMIN, &["--json", "apply", config_path]))).unwrap();
    assert_eq!(
        applied["grants_ending"].as_array().unwrap().len(),
        2,
        "{applied}"
    );
    ended_as(&api, &long_read, "policy_changed");
    ended_as(&api, &write, "policy_changed");
    assert_eq!(state(&api, &short_read)["state"], "active");
    assert_eq!(api.introspect(ADMIN, &long_token)["active"], false);
    assert_eq!(api.introspect(ADMIN, &write_token)["active"], false);
    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?grant={write}"));
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "policy_changed"),
        "{audit}"
    );
    // New requests follow the new policies too.
    let (status, _) = api.exchange(&platform, "orders-api/read", Some("20m"));
    assert_ne!(status, 200);
    // Applying the same file again reads and ends nothing.
    let again = ok(&server.cli(ADMIN, &["apply", config_path]));
    assert!(again.contains("no changes"), "{again}");
    assert_eq!(state(&api, &short_read)["state"], "active");
}

#[test]
fn policy_change_ends_denied_grants_on_sqlite() {
    policy_change(None);
}

#[test]
fn policy_change_ends_denied_grants_on_postgres() {
    let name = format!("kairos_it_{}", uuid::Uuid::new_v4().simple());
    common::pg::psql(SHARED_PG, "postgres", &format!("CREATE DATABASE {name}"));
    let url = format!("{SHARED_PG}/{name}");
    let result = std::panic::catch_unwind(|| policy_change(Some(&url)));
    common::pg::psql(
        SHARED_PG,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// One configuration removes an identity, a team (with its identity), a target and an
/// entitlement: each live grant ends with the reason naming what was removed.
#[test]
fn removals_end_grants_with_what_was_removed() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_config(&cfg, &issuer, "");
    let base = std::fs::read_to_string(&config).unwrap();
    const OPS_SUBJECT: &str = "repo:acme/ops:ref:refs/heads/main";
    let extra = format!(
        r#"
[[team]]
name = "ops"
owners = ["olga"]

[[identity]]
name = "ops-bot"
owner = "ops"
kind = "ci-job"
issuer = "ci"
subject = "{OPS_SUBJECT}"

[[target]]
name = "billing-api"
kind = "token"
audience = "https://billing.internal"

[[entitlement]]
name = "billing-api/read"
target = "billing-api"
tier = "low"
max_ttl = "1h"
scopes = ["billing:read"]

[policy]"#
    );
    std::fs::write(&config, base.replace("[policy]", &extra)).unwrap();
    std::fs::write(
        cfg.join("policies/extra.cedar"),
        "@id(\"all-jobs\") permit (principal, action == Kairos::Action::\"request\", resource) when { context.task_kind == \"job\" };\n",
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let nightly = issuer.mint(SUBJECT, json!({}));
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));
    let ops = issuer.mint(OPS_SUBJECT, json!({}));
    let (by_identity, _) = grant(&api, &deployer, "orders-api/write", "10m");
    let (by_team, _) = grant(&api, &ops, "orders-api/read", "10m");
    let (by_target, _) = grant(&api, &nightly, "billing-api/read", "10m");
    let (by_entitlement, _) = grant(&api, &nightly, "orders-api/write", "10m");
    let (stays, _) = grant(&api, &nightly, "orders-api/read", "10m");

    // Remove deployer, team ops (and ops-bot), target billing-api (and its entitlement)
    // and entitlement orders-api/write.
    let text = std::fs::read_to_string(&config).unwrap();
    let cut = |text: &str, from: &str, to: &str| -> String {
        let start = text
            .find(from)
            .unwrap_or_else(|| panic!("{from} not in config"));
        let end = start + text[start..].find(to).unwrap();
        format!("{}{}", &text[..start], &text[end..])
    };
    let text = cut(&text, "[[identity]]\nname = \"deployer\"", "[[target]]");
    let text = cut(
        &text,
        "[[entitlement]]\nname = \"orders-api/write\"",
        "[[team]]\nname = \"ops\"",
    );
    let text = cut(&text, "[[team]]\nname = \"ops\"", "[policy]");
    std::fs::write(&config, text).unwrap();
    let applied: Value = serde_json::from_str(&ok(
        &server.cli(ADMIN, &["--json", "apply", config.to_str().unwrap()])
    ))
    .unwrap();
    let reasons: std::collections::BTreeMap<String, String> = applied["grants_ending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["grant_id"].as_str().unwrap().to_owned(),
                g["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{applied}");
    for (grant, reason) in [
        (&by_identity, "identity_removed"),
        (&by_team, "team_removed"),
        (&by_target, "target_removed"),
        (&by_entitlement, "entitlement_removed"),
    ] {
        assert_eq!(
            reasons.get(grant).map(String::as_str),
            Some(reason),
            "{applied}"
        );
        ended_as(&api, grant, reason);
    }
    assert_eq!(state(&api, &stays)["state"], "active");
}
