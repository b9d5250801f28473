//! Policies in Rego through the real server and CLI: a Rego file that denies one task
//! kind, asks one approval for a tier and grants the rest decides requests, with its
//! rules named in the API answers and the audit; Cedar and Rego together (Cedar grants,
//! Rego denies → denied); and a Rego file with a syntax error or an unknown input field
//! refused by `kairos apply` and by `POST /v1/config/apply` (400 naming file, line and
//! column) while the old policies still decide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::{Value, json};

const POLICY: &str = r#"package kairos

deny["no-incidents"] := "incident tasks may not use the orders API" if {
    input.context.task_kind == "incident"
}

allow["high-needs-one"] := {"approvals": 1, "reason": "high-tier entitlements need one approver"} if {
    input.resource.tier == "high"
}

allow["ci-jobs"] := "CI jobs may use the orders API" if input.principal.kind == "ci-job"
"#;

/// The common test catalog with `[policy] files` set to `globs` and `policies/base.rego`.
fn write_rego_config(dir: &Path, issuer: &TestIssuer, globs: &str) -> std::path::PathBuf {
    let config = write_config(dir, issuer, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        r#"files = ["policies/*.cedar"]"#,
        &format!("files = {globs}"),
    );
    std::fs::write(&config, text).unwrap();
    std::fs::write(dir.join("policies/base.rego"), POLICY).unwrap();
    config
}

fn request(
    api: &Api,
    platform: &str,
    entitlement: &str,
    kind: &str,
    task_ref: &str,
) -> (u16, Value) {
    api.post(
        platform,
        "/v1/requests",
        json!({"entitlement": entitlement, "ttl": "10m",
               "task": {"kind": kind, "ref": task_ref, "reason": "rego test"}}),
    )
}

/// The audit record with the decision of the request with `task_ref`: its `decided`
/// record, or the one `issued` record of a request granted on the spot.
fn decided(api: &Api, task_ref: &str) -> Value {
    let (status, audit) = api.get(ADMIN, &format!("/v1/audit?task_ref={task_ref}"));
    assert_eq!(status, 200, "{audit}");
    audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["kind"] == "decided" || (r["kind"] == "issued" && r["data"]["decision"].is_object())
        })
        .cloned()
        .unwrap_or_else(|| panic!("no decided record for {task_ref}: {audit}"))
}

#[test]
fn a_rego_policy_denies_asks_for_approval_and_grants() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_rego_config(&cfg, &issuer, r#"["policies/*.rego"]"#);
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));

    // Granted: a CI job reading a low-tier entitlement.
    let (status, body) = request(&api, &platform, "orders-api/read", "job", "run-1");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["request"]["state"], "granted", "{body}");
    assert_eq!(
        body["request"]["decision"]["policies"],
        json!(["base.rego:ci-jobs"]),
        "{body}"
    );
    let record = decided(&api, "run-1");
    assert_eq!(record["data"]["decision"]["outcome"], "grant", "{record}");
    assert_eq!(
        record["data"]["decision"]["reason"], "CI jobs may use the orders API",
        "{record}"
    );

    // Pending one approval: the high tier.
    let (status, body) = request(&api, &platform, "orders-api/admin", "job", "run-2");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["request"]["state"], "pending", "{body}");
    assert_eq!(
        body["request"]["decision"]["approvals_required"], 1,
        "{body}"
    );
    assert_eq!(
        body["request"]["decision"]["policies"],
        json!(["base.rego:ci-jobs", "base.rego:high-needs-one"]),
        "{body}"
    );
    assert_eq!(
        body["request"]["decision"]["reason"], "high-tier entitlements need one approver",
        "{body}"
    );
    let record = decided(&api, "run-2");
    assert_eq!(record["data"]["decision"]["outcome"], "pending", "{record}");

    // Denied: an incident task, with the rule and its reason in the answer and the audit.
    let (status, body) = request(&api, &platform, "orders-api/read", "incident", "INC-7");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "denied", "{body}");
    assert_eq!(body["error"]["policies"], json!(["base.rego:no-incidents"]));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("incident tasks may not use the orders API"),
        "{body}"
    );
    let record = decided(&api, "INC-7");
    assert_eq!(record["data"]["decision"]["outcome"], "deny", "{record}");
    assert_eq!(
        record["data"]["decision"]["policies"],
        json!(["base.rego:no-incidents"]),
        "{record}"
    );

    // The configuration shows the Rego file as a policy, whole.
    let (_, shown) = api.get(ADMIN, "/v1/config");
    let policies = shown["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "{shown}");
    assert_eq!(policies[0]["id"], "base.rego");
    assert_eq!(policies[0]["text"], POLICY);
}

#[test]
fn cedar_and_rego_together_deny_wins() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_rego_config(&cfg, &issuer, r#"["policies/*.cedar", "policies/*.rego"]"#);
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));

    // Both grant a job's read: granted, both named.
    let (status, body) = request(&api, &platform, "orders-api/read", "job", "run-1");
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["request"]["decision"]["policies"],
        json!(["ci-read-auto", "base.rego:ci-jobs"]),
        "{body}"
    );

    // Cedar's `write-auto` grants any write; Rego denies incidents: denied.
    let (status, body) = request(&api, &platform, "orders-api/write", "incident", "INC-9");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["policies"], json!(["base.rego:no-incidents"]));
    let record = decided(&api, "INC-9");
    assert_eq!(record["data"]["decision"]["outcome"], "deny", "{record}");

    // Cedar asks two approvals for admin, Rego one: pending two, both reasons.
    let (status, body) = request(&api, &platform, "orders-api/admin", "job", "run-3");
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["request"]["decision"]["approvals_required"], 2,
        "{body}"
    );
    let reason = body["request"]["decision"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("high-tier entitlements need one approver"),
        "{body}"
    );
}

#[test]
fn a_bad_rego_file_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_rego_config(&cfg, &issuer, r#"["policies/*.rego"]"#);
    let config_path = config.to_str().unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let rego_path = cfg.join("policies/base.rego");

    // A syntax error (line 4 ends the rule body early): the CLI names file, line, column.
    let broken = POLICY.replace(
        "input.context.task_kind == \"incident\"",
        "input.context.task_kind ==",
    );
    std::fs::write(&rego_path, &broken).unwrap();
    let out = server.cli(ADMIN, &["apply", config_path]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("policies/base.rego:5:1"), "{err}");

    // The same through the API: 400 with the place in the message.
    let files: BTreeMap<String, String> = [
        ("kairos.toml", std::fs::read_to_string(&config).unwrap()),
        (
            "ci-jwks.json",
            std::fs::read_to_string(cfg.join("ci-jwks.json")).unwrap(),
        ),
        ("policies/base.rego", broken),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (status, body) = api.post(
        ADMIN,
        "/v1/config/apply",
        json!({"main_path": "kairos.toml", "files": files}),
    );
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("policies/base.rego:5:1"), "{body}");

    // A misspelt input field: refused, naming it and what exists.
    std::fs::write(
        &rego_path,
        POLICY.replace("input.context.task_kind", "input.context.tsk_kind"),
    )
    .unwrap();
    let out = server.cli(ADMIN, &["apply", config_path]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("policies/base.rego:4:5"), "{err}");
    assert!(
        err.contains("tsk_kind") && err.contains("task_kind"),
        "{err}"
    );

    // Nothing changed: the old policy still decides.
    let (status, body) = request(&api, &platform, "orders-api/read", "incident", "INC-1");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["policies"], json!(["base.rego:no-incidents"]));
    let (status, body) = request(&api, &platform, "orders-api/read", "job", "run-1");
    assert_eq!(status, 201, "{body}");

    // A good edit applies and decides at once; the policy change is reported.
    std::fs::write(
        &rego_path,
        POLICY.replace("\"incident\"", "\"maintenance\""),
    )
    .unwrap();
    let out = server.cli(ADMIN, &["apply", config_path]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("base.rego"), "{}", stdout(&out));
    let (status, body) = request(&api, &platform, "orders-api/read", "incident", "INC-2");
    assert_eq!(status, 201, "{body}");
    let (status, body) = request(&api, &platform, "orders-api/read", "maintenance", "MNT-1");
    assert_eq!(status, 403, "{body}");
}
