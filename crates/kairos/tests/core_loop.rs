//! The whole loop against the real binary: token exchange → JWT verifies against the JWKS →
//! introspect active → release → receipt verified → introspect inactive → audit verify.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn decode_with_jwks(token: &str, jwks: &Value, audience: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.expect("kid");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set.find(&kid).expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[audience]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

fn full_loop(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("ci-key-1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), store);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));

    // RFC 8693 exchange.
    let (status, body) = api.exchange(&platform, "orders-api/read", Some("10m"));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let grant_id = body["grant_id"].as_str().unwrap().to_owned();
    assert!(body["expires_in"].as_i64().unwrap() <= 600);

    // The JWT verifies against the published JWKS, with the claims the issue asks for.
    let (_, jwks) = api.get(ADMIN, "/.well-known/jwks.json");
    let claims = decode_with_jwks(&token, &jwks, "https://orders.internal");
    assert_eq!(claims["sub"], "nightly-backup");
    assert_eq!(claims["jti"], grant_id.as_str());
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(claims["task"]["kind"], "job");
    assert_eq!(claims["task"]["ref"], "run-42");
    assert_eq!(claims["iss"], server.addr.as_str());
    let (_, disco) = api.get(ADMIN, "/.well-known/oauth-authorization-server");
    assert_eq!(
        disco["jwks_uri"],
        format!("{}/.well-known/jwks.json", server.addr)
    );

    // Introspection: active (over HTTP and through the real CLI).
    let i = api.introspect(ADMIN, &token);
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["sub"], "nightly-backup");
    let out = server.cli(ADMIN, &["--json", "introspect", &token]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cli_view: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cli_view["active"], true);

    // Release by the workload; the receipt is verified; introspection turns inactive.
    let (status, g) = api.post(
        &platform,
        &format!("/v1/grants/{grant_id}/release"),
        json!({}),
    );
    assert_eq!(status, 200, "{g}");
    assert_eq!(api.introspect(ADMIN, &token)["active"], false);
    let out = server.cli(ADMIN, &["--json", "introspect", &token]);
    let cli_view: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cli_view["active"], false);
    let g = api.wait_grant(ADMIN, &grant_id, Duration::from_secs(10), |g| {
        g["state"] == "ended"
    });
    let receipt = &g["receipt"];
    assert_eq!(receipt["reason"], "released");
    assert_eq!(receipt["ended_by"], "workload:nightly-backup");
    assert_eq!(receipt["method"], "introspection");
    assert!(receipt["verified_at"].as_str().unwrap() >= receipt["ended_at"].as_str().unwrap());

    // The audit log tells the story, and the chain verifies through the real CLI.
    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?grant={grant_id}"));
    let kinds: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["issued", "released", "verified"], "{audit}");
    // Granted on the spot, the request is one record: by the workload, with what was
    // asked and the decision, found by identity, request, grant and task alike.
    let issued = &audit["records"][0];
    assert_eq!(issued["actor"], "workload:nightly-backup", "{issued}");
    assert_eq!(issued["data"]["request"]["ttl"], "10m", "{issued}");
    assert_eq!(
        issued["data"]["request"]["task"]["ref"], "run-42",
        "{issued}"
    );
    assert_eq!(issued["data"]["decision"]["outcome"], "grant", "{issued}");
    assert!(
        !issued["data"]["decision"]["policies"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{issued}"
    );
    assert!(issued["data"]["catalog_version"].is_number(), "{issued}");
    assert_eq!(issued["data"]["expires_at"], g["expires_at"], "{issued}");
    let request_id = issued["request_id"].as_str().unwrap();
    for filter in [
        "identity=nightly-backup".to_owned(),
        format!("request={request_id}"),
        "task_ref=run-42".to_owned(),
    ] {
        let (status, found) = api.get(ADMIN, &format!("/v1/audit?{filter}"));
        assert_eq!(status, 200, "{found}");
        assert!(
            found["records"].as_array().unwrap().contains(issued),
            "{filter}: {found}"
        );
    }
    let out = server.cli(ADMIN, &["audit", "--request", request_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("issued") && stdout(&out).contains(&grant_id),
        "{}",
        stdout(&out)
    );
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("intact"), "{}", stdout(&out));

    // Tokens never appear in the server log.
    let log = server.log_text();
    assert!(!log.contains(&token) && !log.contains(&platform) && !log.contains(ADMIN));
}

#[test]
fn full_loop_on_sqlite() {
    full_loop(None);
}

#[test]
fn full_loop_on_postgres() {
    let admin = std::env::var("KAIROS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let db = format!("kairos_it_{}", uuid::Uuid::new_v4().simple());
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([
                &format!("{admin}/postgres"),
                "-v",
                "ON_ERROR_STOP=1",
                "-qc",
                sql,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    psql(&format!("CREATE DATABASE {db}"));
    let url = format!("{admin}/{db}");
    let result = std::panic::catch_unwind(|| full_loop(Some(&url)));
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn expiry_ends_the_grant_with_a_verified_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.exchange(&platform, "orders-api/read", Some("2s"));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let grant_id = body["grant_id"].as_str().unwrap();
    assert_eq!(api.introspect(ADMIN, token)["active"], true);
    let g = api.wait_grant(ADMIN, grant_id, Duration::from_secs(15), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["reason"], "expired");
    assert_eq!(g["receipt"]["ended_by"], "system:expirer");
    assert_eq!(api.introspect(ADMIN, token)["active"], false);
    let (_, metrics) = (
        200,
        reqwest::blocking::get(server.url("/metrics"))
            .unwrap()
            .text()
            .unwrap(),
    );
    assert!(
        metrics.contains("kairos_grants_ended_total{reason=\"expired\"} 1"),
        "{metrics}"
    );
}

#[test]
fn renew_extends_only_up_to_the_cap_and_revoke_by_task_ref() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    // Renewals are decided by policy as their own action.
    std::fs::write(
        dir.path().join("cfg/policies/renew.cedar"),
        r#"@id("ci-read-renew")
permit (principal, action == Kairos::Action::"renew", resource == Kairos::Entitlement::"orders-api/read")
when { context.task_kind == "job" };"#,
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (_, body) = api.exchange(&platform, "orders-api/read", Some("5m"));
    let grant_id = body["grant_id"].as_str().unwrap().to_owned();

    let (status, r) = api.post(
        &platform,
        &format!("/v1/grants/{grant_id}/renew"),
        json!({"ttl": "30m"}),
    );
    assert_eq!(status, 200, "{r}");
    assert!(r["credential"]["access_token"].is_string());
    let (status, r) = api.post(
        &platform,
        &format!("/v1/grants/{grant_id}/renew"),
        json!({"ttl": "2h"}),
    );
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["error"]["code"], "ttl_over_cap");

    // A second grant for the same task; revoke every grant of the task at once.
    let (_, b2) = api.exchange(&platform, "orders-api/read", Some("5m"));
    let (_, op) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": "olga", "role": "operator"}),
    );
    let olga = op["token"].as_str().unwrap().to_owned();
    // A blank reason is refused before anything ends.
    let (status, r) = api.post(
        &olga,
        "/v1/grants/revoke",
        json!({"task_ref": "run-42", "reason": "   "}),
    );
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["error"]["code"], "bad_reason");
    let out = server.cli(
        &olga,
        &[
            "revoke",
            "--task-ref",
            "run-42",
            "--reason",
            "run-42 finished early",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for id in [grant_id.as_str(), b2["grant_id"].as_str().unwrap()] {
        let g = api.wait_grant(&olga, id, Duration::from_secs(10), |g| {
            g["state"] == "ended"
        });
        assert_eq!(g["receipt"]["reason"], "revoked");
        assert_eq!(g["receipt"]["ended_by"], "user:olga");
        // The reason is in the revocation's audit record, as `kairos audit` shows it.
        let out = server.cli(ADMIN, &["audit", "--grant", id, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        // One JSON record a line.
        let text = stdout(&out);
        let revoked: Value = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|r| r["kind"] == "revoked")
            .unwrap_or_else(|| panic!("no revoked record: {text}"));
        assert_eq!(
            revoked["data"]["note"], "run-42 finished early",
            "{revoked}"
        );
        assert_eq!(revoked["actor"], "user:olga");
    }
    let (status, r) = api.post(
        &platform,
        &format!("/v1/grants/{grant_id}/renew"),
        json!({"ttl": "1m"}),
    );
    assert_eq!(status, 409, "{r}");
}
