//! Bad input gets a 4xx with `{"error": {"code", "message"}}` — never a 5xx, never a
//! panic, nothing half-written — and never echoes a token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
}

fn task() -> Value {
    json!({"kind": "job", "ref": "run-1", "reason": "nightly"})
}

#[test]
fn malformed_requests_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let url = server.url("/v1/requests");

    // Malformed JSON.
    let r = api
        .http
        .post(&url)
        .bearer_auth(&platform)
        .header("content-type", "application/json")
        .body("{\"entitlement\": ")
        .send()
        .unwrap();
    let (s, b) = (r.status().as_u16(), r.json::<Value>().unwrap());
    assert_error(s, &b, 400, "invalid_json");
    // Wrong content type.
    let r = api
        .http
        .post(&url)
        .bearer_auth(&platform)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .unwrap();
    let (s, b) = (r.status().as_u16(), r.json::<Value>().unwrap());
    assert_error(s, &b, 415, "unsupported_media_type");
    // Oversized body.
    let big = json!({"entitlement": "orders-api/read", "task": {"kind": "job", "ref": "r", "reason": "x".repeat(100_000)}});
    let r = api
        .http
        .post(&url)
        .bearer_auth(&platform)
        .json(&big)
        .send()
        .unwrap();
    let (s, b) = (r.status().as_u16(), r.json::<Value>().unwrap());
    assert_error(s, &b, 413, "body_too_large");
    // A body that is not a JSON object, though serde would read a struct from an array of
    // its fields: refused everywhere, and the key is not rotated.
    let keys_before = api.get(ADMIN, "/v1/keys").1["current_kid"].clone();
    for (path, body) in [
        ("/v1/keys", "[null]"),
        ("/v1/requests", "[\"orders-api/read\", null]"),
        ("/v1/users", " 42"),
        ("/v1/grants/revoke", "null"),
    ] {
        let r = api
            .http
            .post(server.url(path))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let (s, b) = (r.status().as_u16(), r.json::<Value>().unwrap());
        assert_error(s, &b, 400, "invalid_json");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("must be a JSON object"),
            "{path}: {b}"
        );
    }
    assert_eq!(api.get(ADMIN, "/v1/keys").1["current_kid"], keys_before);
    // A `+json` content type with parameters is JSON.
    let r = api
        .http
        .post(&url)
        .bearer_auth(&platform)
        .header("content-type", "application/vnd.kairos+json; charset=utf-8")
        .body(json!({"entitlement": "orders-api/root", "task": task()}).to_string())
        .send()
        .unwrap();
    let (s, b) = (r.status().as_u16(), r.json::<Value>().unwrap());
    assert_error(s, &b, 404, "not_found");
    // Unknown field.
    let (s, b) = api.post(
        &platform,
        "/v1/requests",
        json!({"entitlement": "orders-api/read", "task": task(), "ttl": "5m", "sudo": true}),
    );
    assert_error(s, &b, 400, "invalid_json");
    // Unknown entitlement.
    let (s, b) = api.post(
        &platform,
        "/v1/requests",
        json!({"entitlement": "orders-api/root", "task": task()}),
    );
    assert_error(s, &b, 404, "not_found");
    // Bad TTLs.
    for (ttl, code) in [
        ("-5m", "bad_ttl"),
        ("10y", "bad_ttl"),
        ("0s", "bad_ttl"),
        ("2h", "ttl_over_cap"),
        ("abc", "bad_ttl"),
    ] {
        let (s, b) = api.post(
            &platform,
            "/v1/requests",
            json!({"entitlement": "orders-api/read", "ttl": ttl, "task": task()}),
        );
        assert_error(s, &b, 400, code);
    }
    // Over the cap with `over_cap = "cap"`: capped, and says so.
    let (s, b) = api.post(
        &platform,
        "/v1/requests",
        json!({"entitlement": "orders-api/write", "ttl": "3h", "task": task()}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["ttl_capped"], true);
    assert_eq!(b["request"]["ttl"], "1h");
    // Bad task kind.
    let (s, b) = api.post(&platform, "/v1/requests", json!({"entitlement": "orders-api/read", "task": {"kind": "whim", "ref": "x", "reason": "y"}}));
    assert_error(s, &b, 400, "bad_task");
    // Denied by policy names the forbidding policy, and is recorded.
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));
    let (s, b) = api.post(
        &deployer,
        "/v1/requests",
        json!({"entitlement": "orders-api/read", "task": task()}),
    );
    assert_error(s, &b, 403, "denied");
    assert_eq!(b["error"]["policies"], json!(["no-deployer-reads"]));
    // Unknown routes, ids and methods.
    let (s, b) = api.get(ADMIN, "/v1/nope");
    assert_error(s, &b, 404, "not_found");
    let (s, b) = api.get(ADMIN, "/v1/grants/grt_nothex");
    assert_error(s, &b, 404, "not_found");
    let (s, b) = api.get(ADMIN, "/v1/grants?state=sideways");
    assert_error(s, &b, 400, "bad_state");
    let (s, b) = api.get(ADMIN, "/v1/audit?since=yesterday");
    assert_error(s, &b, 400, "bad_time");

    // Nothing half-written: only the capped grant exists.
    let (_, grants) = api.get(ADMIN, "/v1/grants");
    assert_eq!(grants["grants"].as_array().unwrap().len(), 1, "{grants}");
    assert!(!server.log_text().contains("panicked"));
}

#[test]
fn bad_platform_tokens_are_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let now = now_secs();
    let stranger = TestIssuer::new("k1"); // same kid, different key: a forgery
    let alg_none = {
        use base64::Engine;
        let e = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            e(json!({"alg": "none", "typ": "JWT"})),
            e(json!({"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "exp": now + 300}))
        )
    };
    let cases = [
        (
            "expired",
            issuer.mint(
                SUBJECT,
                json!({"exp": now - 600, "iat": now - 900, "nbf": now - 900}),
            ),
        ),
        (
            "not yet valid",
            issuer.mint(SUBJECT, json!({"nbf": now + 3600})),
        ),
        (
            "wrong audience",
            issuer.mint(SUBJECT, json!({"aud": "someone-else"})),
        ),
        (
            "unknown issuer",
            issuer.mint(SUBJECT, json!({"iss": "https://evil.example"})),
        ),
        (
            "unknown subject",
            issuer.mint("repo:acme/unknown", json!({})),
        ),
        ("forged", stranger.mint(SUBJECT, json!({}))),
        ("alg none", alg_none),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (what, token) in cases {
        let (s, b) = api.post(
            &token,
            "/v1/requests",
            json!({"entitlement": "orders-api/read", "task": task()}),
        );
        assert_error(s, &b, 401, "unauthenticated");
        assert!(
            !b.to_string().contains(&token),
            "{what}: the error echoes the token"
        );
        // The exchange endpoint refuses it too, in OAuth's shape: an invalid
        // subject_token is RFC 8693 §2.2.2's 400 invalid_request.
        let (s, b) = api.exchange(&token, "orders-api/read", None);
        assert_eq!(s, 400, "{what}: {b}");
        assert_eq!(b["error"], "invalid_request", "{what}: {b}");
        assert!(!b.to_string().contains(&token));
    }
    // No Authorization at all.
    let r = api.http.get(server.url("/v1/grants")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "unauthenticated"
    );
}

#[test]
fn one_identity_cannot_touch_anothers_grant() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let backup = issuer.mint(SUBJECT, json!({}));
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));
    let (_, body) = api.exchange(&backup, "orders-api/write", Some("5m"));
    let grant = body["grant_id"].as_str().unwrap();
    let token = body["access_token"].as_str().unwrap();
    let (_, own) = api.get(&backup, &format!("/v1/grants/{grant}"));
    let request = own["request_id"].as_str().unwrap().to_owned();
    // Another identity's grant and request answer exactly as unknown ones: 404, naming
    // neither the identity nor anything else of them.
    let (s, b) = api.post(&deployer, &format!("/v1/grants/{grant}/release"), json!({}));
    assert_error(s, &b, 404, "not_found");
    assert_eq!(b["error"]["message"], format!("grant {grant} not found"));
    let (s, b) = api.get(&deployer, &format!("/v1/grants/{grant}"));
    assert_error(s, &b, 404, "not_found");
    assert_eq!(b["error"]["message"], format!("grant {grant} not found"));
    let (s, b) = api.post(
        &deployer,
        &format!("/v1/grants/{grant}/renew"),
        json!({"ttl": "10m"}),
    );
    assert_error(s, &b, 404, "not_found");
    let (s, b) = api.get(&deployer, &format!("/v1/requests/{request}"));
    assert_error(s, &b, 404, "not_found");
    assert_eq!(
        b["error"]["message"],
        format!("request {request} not found")
    );
    assert!(!b.to_string().contains("nightly-backup"), "{b}");
    // RFC 7009: another workload's revocation answers as for an unknown token, and
    // changes nothing.
    let (s, b) = api.form(Some(&deployer), "/v1/oauth/revoke", &[("token", token)]);
    assert_eq!((s, &b), (200, &Value::String(String::new())));
    // A workload cannot revoke as an operator, nor approve.
    let (s, b) = api.post(&deployer, &format!("/v1/grants/{grant}/revoke"), json!({}));
    assert_error(s, &b, 403, "forbidden");
    assert_eq!(api.introspect(ADMIN, token)["active"], true);
    // Its own holder can revoke it (RFC 7009).
    let (s, _) = api.form(Some(&backup), "/v1/oauth/revoke", &[("token", token)]);
    assert_eq!(s, 200);
    assert_eq!(api.introspect(ADMIN, token)["active"], false);
}

/// Found by schemathesis (scripts/schemathesis.sh): a malformed token-exchange form got the
/// API's `{"error": {...}}` shape, not the RFC 6749 shape the endpoint documents.
#[test]
fn token_endpoint_refuses_malformed_forms_in_oauth_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), None, None);
    let api = Api::new(&server);
    let oauth_error = |status: u16, body: &Value, want_status: u16| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(
            !body["error_description"].as_str().unwrap().is_empty(),
            "{body}"
        );
    };
    // No grant_type (and every other field empty).
    let (s, b) = api.form(
        None,
        "/v1/oauth/token",
        &[
            ("scope", ""),
            ("subject_token", ""),
            ("subject_token_type", ""),
            ("task_kind", ""),
            ("task_reason", ""),
            ("task_ref", ""),
        ],
    );
    oauth_error(s, &b, 400);
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type"),
        "{b}"
    );
    // JSON instead of a form.
    let r = api
        .http
        .post(server.url("/v1/oauth/token"))
        .json(&json!({"grant_type": "x"}))
        .send()
        .unwrap();
    let (s, b) = (r.status().as_u16(), r.json::<Value>().unwrap());
    oauth_error(s, &b, 400);
    assert!(!server.log_text().contains("panicked"));
}
