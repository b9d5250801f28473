//! Key rotation with overlap, restart persistence, config apply, audit tampering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn header_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[test]
fn key_rotation_keeps_old_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (_, old) = api.exchange(&platform, "orders-api/read", Some("10m"));
    let old_token = old["access_token"].as_str().unwrap();
    let (_, jwks) = api.get(ADMIN, "/.well-known/jwks.json");
    assert_eq!(kids(&jwks), [header_kid(old_token)]);

    let out = server.cli(ADMIN, &["keys", "rotate", "--alg", "eddsa"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let (_, new) = api.exchange(&platform, "orders-api/read", Some("10m"));
    let new_token = new["access_token"].as_str().unwrap();
    assert_ne!(header_kid(new_token), header_kid(old_token));
    assert_eq!(
        jsonwebtoken::decode_header(new_token).unwrap().alg,
        jsonwebtoken::Algorithm::EdDSA
    );
    let (_, jwks) = api.get(ADMIN, "/.well-known/jwks.json");
    let k = kids(&jwks);
    assert!(
        k.contains(&header_kid(old_token)) && k.contains(&header_kid(new_token)),
        "{jwks}"
    );
    // Both tokens are honoured.
    assert_eq!(api.introspect(ADMIN, old_token)["active"], true);
    assert_eq!(api.introspect(ADMIN, new_token)["active"], true);
    let (_, audit) = api.get(ADMIN, "/v1/audit");
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "key_rotated")
    );
}

#[test]
fn a_restart_keeps_grants_keys_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    // A stable public URL (the `iss` of Kairos tokens), as a real deployment has; the
    // listening port changes between the two runs.
    let public = ["--issuer-url", "http://kairos.restart.test"];
    let server = Server::start_with(&data, Some(&config), None, &public);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (_, body) = api.exchange(&platform, "orders-api/read", Some("30m"));
    let token = body["access_token"].as_str().unwrap().to_owned();
    let grant = body["grant_id"].as_str().unwrap().to_owned();
    let (_, jwks_before) = api.get(ADMIN, "/.well-known/jwks.json");
    let (_, audit_before) = api.get(ADMIN, "/v1/audit");
    server.stop();

    // Restart on the same data without --config: the applied catalog is in the store.
    let server = Server::start_with(&data, None, None, &public);
    let api = Api::new(&server);
    let (_, jwks_after) = api.get(ADMIN, "/.well-known/jwks.json");
    assert_eq!(kids(&jwks_before), kids(&jwks_after));
    assert_eq!(api.introspect(ADMIN, &token)["active"], true);
    let (s, g) = api.get(ADMIN, &format!("/v1/grants/{grant}"));
    assert_eq!((s, g["state"].as_str()), (200, Some("active")));
    let (_, audit_after) = api.get(ADMIN, "/v1/audit");
    assert!(
        audit_after["records"].as_array().unwrap().len()
            >= audit_before["records"].as_array().unwrap().len()
    );
    // And the loop still works after the restart.
    let (s, b) = api.exchange(&platform, "orders-api/read", Some("5m"));
    assert_eq!(s, 200, "{b}");
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn apply_reports_changes_and_refuses_bad_config_whole() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg_dir = dir.path().join("cfg");
    let config = write_config(&cfg_dir, &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);

    // Same file again: no changes.
    let out = server.cli(ADMIN, &["apply", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("no changes"), "{}", stdout(&out));

    // Add an identity: reported as created.
    let text = std::fs::read_to_string(&config).unwrap();
    let added = format!(
        "{text}\n[[identity]]\nname = \"reporter\"\nowner = \"payments\"\nkind = \"bot\"\nissuer = \"ci\"\nsubject = \"bot:reporter\"\n"
    );
    std::fs::write(&config, &added).unwrap();
    let out = server.cli(ADMIN, &["apply", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("identity reporter"),
        "{}",
        stdout(&out)
    );

    // A dangling reference: refused, naming file, line and key; nothing applied.
    let broken = added.replace(
        "owner = \"payments\"\nkind = \"bot\"",
        "owner = \"paymnts\"\nkind = \"bot\"",
    );
    std::fs::write(&config, &broken).unwrap();
    let out = server.cli(ADMIN, &["apply", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("kairos.toml:") && err.contains("owner") && err.contains("paymnts"),
        "{err}"
    );
    let api = Api::new(&server);
    let (s, _) = api.exchange(
        &issuer.mint("bot:reporter", json!({})),
        "orders-api/write",
        None,
    );
    assert_eq!(s, 200, "the earlier apply must still be in force");

    // A Cedar syntax error names the policy file and line.
    std::fs::write(&config, &added).unwrap();
    std::fs::write(
        cfg_dir.join("policies/bad.cedar"),
        "permit (principal, action, resource)\nwhen { context.ttl_secs < };\n",
    )
    .unwrap();
    let out = server.cli(ADMIN, &["apply", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad.cedar:2"), "{}", stderr(&out));
}

#[test]
fn audit_verify_names_the_first_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&data, Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    for _ in 0..3 {
        let (s, _) = api.exchange(&platform, "orders-api/read", Some("5m"));
        assert_eq!(s, 200);
    }
    server.stop();

    // Edit record 4 behind Kairos's back.
    let db = data.join("kairos.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let n = sqlx::query("UPDATE audit SET actor = 'user:mallory' WHERE seq = 4")
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(n.rows_affected(), 1);
    });

    let server = Server::start(&data, None, None);
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("record 4"), "{}", stderr(&out));
}

#[test]
fn openapi_metrics_and_health_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let doc: Value = reqwest::blocking::get(server.url("/v1/openapi.json"))
        .unwrap()
        .json()
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/requests",
        "/v1/requests/{id}",
        "/v1/requests/{id}/approve",
        "/v1/grants/{id}/release",
        "/v1/grants/revoke",
        "/v1/oauth/token",
        "/v1/oauth/introspect",
        "/v1/oauth/revoke",
        "/v1/audit/verify",
        "/v1/config/apply",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    let (s, h) = api.get(ADMIN, "/v1/health");
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));

    let platform = issuer.mint(SUBJECT, json!({}));
    let (s, _) = api.exchange(&platform, "orders-api/read", None);
    assert_eq!(s, 200);
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "kairos_grants_issued_total 1",
        "kairos_active_grants 1",
        "kairos_decisions_total{outcome=\"grant\"} 1",
        "kairos_decision_seconds_count 1",
        "kairos_expirer_lag_seconds",
        "kairos_revocations_alarming 0",
    ] {
        assert!(metrics.contains(line), "metrics lack {line}:\n{metrics}");
    }
}

#[test]
fn the_cli_waits_for_approval_and_prints_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let (_, a) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": "alice", "role": "approver", "teams": ["payments"]}),
    );
    let (_, b) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": "bob", "role": "approver", "teams": ["payments"]}),
    );
    let (alice, bob) = (
        a["token"].as_str().unwrap().to_owned(),
        b["token"].as_str().unwrap().to_owned(),
    );
    let platform = issuer.mint(SUBJECT, json!({}));

    // The workload asks through the CLI and waits.
    let waiting = std::process::Command::new(kairos_bin())
        .args([
            "request",
            "orders-api/admin",
            "--task-kind",
            "change",
            "--task-ref",
            "CHG-9",
            "--reason",
            "fix",
            "--ttl",
            "10m",
            "--wait=60s",
            "--token-only",
        ])
        .env("KAIROS_ADDR", &server.addr)
        .env("KAIROS_TOKEN", &platform)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Find the pending request and approve it twice.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let req = loop {
        let (_, list) = api.get(ADMIN, "/v1/requests?state=pending");
        if let Some(r) = list["requests"].as_array().unwrap().first() {
            break r["id"].as_str().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pending request appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    for t in [&alice, &bob] {
        let out = server.cli(t, &["approve", &req, "--reason", "ok"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    assert_eq!(api.introspect(ADMIN, &token)["active"], true);

    // `kairos grants` lists it; `kairos audit --json` prints JSON Lines.
    let out = server.cli(ADMIN, &["grants", "--state", "active"]);
    assert!(
        stdout(&out).contains("orders-api/admin"),
        "{}",
        stdout(&out)
    );
    let out = server.cli(ADMIN, &["--json", "audit", "--request", &req]);
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.first().unwrap()["kind"], "requested");
    assert_eq!(lines.last().unwrap()["kind"], "issued");
}
