//! The OAuth endpoints as their clients see them: resource servers authenticate as
//! themselves (HTTP Basic or Bearer) and learn only about tokens of their targets
//! (RFC 7662); RFC 7009 answers the same for a token the caller may not revoke as for an
//! unknown one; the token endpoint's errors, status and cache headers (RFC 6749 §5.1/5.2,
//! RFC 8693 §2.2.2, RFC 8628's `authorization_pending`); RFC 8414 metadata; RFC 9068's
//! `client_id`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

/// The test configuration plus a second token target, `billing-api`, with an entitlement
/// CI jobs get without approval.
fn start(dir: &std::path::Path) -> (Server, TestIssuer) {
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.join("cfg"), &issuer, "");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(
        r#"
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
"#,
    );
    std::fs::write(&config, toml).unwrap();
    std::fs::write(
        dir.join("cfg/policies/billing.cedar"),
        r#"
@id("billing-read-auto")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"billing-api/read");
"#,
    )
    .unwrap();
    let server = Server::start(&dir.join("data"), Some(&config), None);
    (server, issuer)
}

fn add_user(api: &Api, body: Value) -> String {
    let (status, b) = api.post(ADMIN, "/v1/users", body);
    assert_eq!(status, 201, "{b}");
    b["token"].as_str().unwrap().to_owned()
}

fn resource_server(api: &Api, name: &str, target: &str) -> String {
    add_user(
        api,
        json!({"name": name, "role": "resource-server", "targets": [target]}),
    )
}

/// A raw answer: status, `Content-Type`, body bytes.
type Raw = (u16, Option<String>, Vec<u8>);

fn raw(resp: reqwest::blocking::Response) -> Raw {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, ct, resp.bytes().unwrap().to_vec())
}

fn json_of(r: &Raw) -> Value {
    serde_json::from_slice(&r.2).unwrap()
}

/// POSTs `token` to an OAuth endpoint as a client with Basic credentials.
fn basic(api: &Api, path: &str, id: &str, secret: &str, token: &str) -> Raw {
    raw(api
        .http
        .post(format!("{}{path}", api.base))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .unwrap())
}

fn bearer(api: &Api, path: &str, caller: &str, token: &str) -> Raw {
    raw(api
        .http
        .post(format!("{}{path}", api.base))
        .bearer_auth(caller)
        .form(&[("token", token)])
        .send()
        .unwrap())
}

fn exchange(api: &Api, platform: &str, entitlement: &str) -> String {
    let (status, body) = api.exchange(platform, entitlement, Some("10m"));
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

const INTROSPECT: &str = "/v1/oauth/introspect";
const REVOKE: &str = "/v1/oauth/revoke";

#[test]
fn resource_servers_learn_only_about_tokens_of_their_targets() {
    let dir = tempfile::tempdir().unwrap();
    let (server, issuer) = start(dir.path());
    let api = Api::new(&server);
    let orders_rs = resource_server(&api, "orders-rs", "orders-api");
    let billing_rs = resource_server(&api, "billing-rs", "billing-api");
    let approver = add_user(&api, json!({"name": "alice", "role": "approver"}));
    let backup = issuer.mint(SUBJECT, json!({}));
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));
    let orders = exchange(&api, &backup, "orders-api/read");

    // Its own audience's token: active, with the claims (and RFC 9068's client_id).
    let r = basic(&api, INTROSPECT, "orders-rs", &orders_rs, &orders);
    assert_eq!(r.0, 200);
    let i = json_of(&r);
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["aud"], "https://orders.internal");
    assert_eq!(i["sub"], "nightly-backup");
    assert_eq!(i["client_id"], "nightly-backup");
    // The same as Bearer.
    let r = bearer(&api, INTROSPECT, &orders_rs, &orders);
    assert_eq!(json_of(&r)["active"], true);

    // Another audience's token answers byte for byte as an unknown token.
    let unknown = basic(&api, INTROSPECT, "billing-rs", &billing_rs, "not-a-token");
    assert_eq!(unknown.0, 200);
    assert_eq!(json_of(&unknown), json!({"active": false}));
    let other = basic(&api, INTROSPECT, "billing-rs", &billing_rs, &orders);
    assert_eq!(other, unknown);
    let other = bearer(&api, INTROSPECT, &billing_rs, &orders);
    assert_eq!(other, unknown);
    // ... and its own target's token is active for it.
    let billing = exchange(&api, &backup, "billing-api/read");
    let r = basic(&api, INTROSPECT, "billing-rs", &billing_rs, &billing);
    assert_eq!(json_of(&r)["active"], true);
    assert_eq!(
        basic(&api, INTROSPECT, "orders-rs", &orders_rs, &billing),
        unknown
    );

    // A workload learns about its own tokens only.
    assert_eq!(bearer(&api, INTROSPECT, &deployer, &orders), unknown);
    assert_eq!(
        json_of(&bearer(&api, INTROSPECT, &backup, &orders))["active"],
        true
    );
    // People keep `kairos introspect` (they may read every grant anyway).
    assert_eq!(
        json_of(&bearer(&api, INTROSPECT, &approver, &orders))["active"],
        true
    );
}

#[test]
fn oauth_client_authentication_failures_are_rfc_6749_401s() {
    let dir = tempfile::tempdir().unwrap();
    let (server, issuer) = start(dir.path());
    let api = Api::new(&server);
    let orders_rs = resource_server(&api, "orders-rs", "orders-api");
    let billing_rs = resource_server(&api, "billing-rs", "billing-api");
    let backup = issuer.mint(SUBJECT, json!({}));
    let orders = exchange(&api, &backup, "orders-api/read");

    let check = |r: reqwest::blocking::Response, what: &str| {
        assert_eq!(r.status().as_u16(), 401, "{what}");
        let challenge = r
            .headers()
            .get("www-authenticate")
            .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Basic realm=") && challenge.contains("Bearer"),
            "{what}: {challenge}"
        );
        let body: Value = r.json().unwrap();
        assert_eq!(body["error"], "invalid_client", "{what}: {body}");
        assert!(body["error_description"].as_str().unwrap().len() > 10);
        let text = body.to_string();
        assert!(!text.contains(&orders_rs) && !text.contains(&billing_rs));
    };
    for path in [INTROSPECT, REVOKE] {
        let post = || {
            api.http
                .post(format!("{}{path}", api.base))
                .form(&[("token", orders.as_str())])
        };
        check(post().send().unwrap(), "no credentials");
        check(
            post()
                .basic_auth("orders-rs", Some("kairos_pat_wrong"))
                .send()
                .unwrap(),
            "wrong secret",
        );
        // Another client's secret under this client's id.
        check(
            post()
                .basic_auth("orders-rs", Some(&billing_rs))
                .send()
                .unwrap(),
            "another client's secret",
        );
        // A platform JWT is not a client secret.
        check(
            post()
                .basic_auth("nightly-backup", Some(&backup))
                .send()
                .unwrap(),
            "platform JWT as secret",
        );
        check(
            post().header("authorization", "Basic !!!").send().unwrap(),
            "malformed Basic",
        );
        check(post().bearer_auth("nonsense").send().unwrap(), "bad bearer");
    }
    // A malformed form is RFC 6749's invalid_request, 400.
    let r = api
        .http
        .post(format!("{}{INTROSPECT}", api.base))
        .basic_auth("orders-rs", Some(&orders_rs))
        .form(&[("nottoken", "x")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"], "invalid_request");
    // The Basic client_id/client_secret may be form-urlencoded (RFC 6749 §2.3.1).
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("orders%2Drs:{}", orders_rs.replace('_', "%5F")));
    let r = raw(api
        .http
        .post(format!("{}{INTROSPECT}", api.base))
        .header("authorization", format!("Basic {encoded}"))
        .form(&[("token", orders.as_str())])
        .send()
        .unwrap());
    assert_eq!(json_of(&r)["active"], true);
}

#[test]
fn rfc_7009_answers_the_same_for_tokens_the_caller_may_not_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let (server, issuer) = start(dir.path());
    let api = Api::new(&server);
    let orders_rs = resource_server(&api, "orders-rs", "orders-api");
    let billing_rs = resource_server(&api, "billing-rs", "billing-api");
    let approver = add_user(&api, json!({"name": "alice", "role": "approver"}));
    let auditor = add_user(&api, json!({"name": "audrey", "role": "auditor"}));
    let operator = add_user(&api, json!({"name": "olga", "role": "operator"}));
    let backup = issuer.mint(SUBJECT, json!({}));
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));
    let token = exchange(&api, &backup, "orders-api/read");
    let active = || api.introspect(ADMIN, &token)["active"] == true;

    // The reference: an unknown token, per caller kind.
    let unknown = bearer(&api, REVOKE, &approver, "not-a-token");
    assert_eq!(unknown.0, 200);
    for (what, r) in [
        ("approver", bearer(&api, REVOKE, &approver, &token)),
        ("auditor", bearer(&api, REVOKE, &auditor, &token)),
        ("other workload", bearer(&api, REVOKE, &deployer, &token)),
        (
            "other target's resource server",
            basic(&api, REVOKE, "billing-rs", &billing_rs, &token),
        ),
        (
            "unknown token, Basic",
            basic(&api, REVOKE, "billing-rs", &billing_rs, "not-a-token"),
        ),
    ] {
        assert_eq!(r, unknown, "{what}");
        assert!(active(), "{what} revoked the token");
    }

    // Its audience's resource server may revoke it: same answer, and it is gone.
    let r = basic(&api, REVOKE, "orders-rs", &orders_rs, &token);
    assert_eq!(r, unknown);
    assert!(!active());
    // Revoking it again (now inactive) answers the same.
    assert_eq!(
        basic(&api, REVOKE, "orders-rs", &orders_rs, &token),
        unknown
    );

    // An operator may revoke any token; the holder its own.
    let second = exchange(&api, &backup, "orders-api/read");
    assert_eq!(bearer(&api, REVOKE, &operator, &second), unknown);
    assert_eq!(api.introspect(ADMIN, &second)["active"], false);
    let third = exchange(&api, &backup, "orders-api/read");
    assert_eq!(bearer(&api, REVOKE, &backup, &third), unknown);
    assert_eq!(api.introspect(ADMIN, &third)["active"], false);

    // The resource server's revocation is audited under its name.
    let (_, audit) = api.get(ADMIN, "/v1/audit?limit=1000");
    let by: Vec<(&str, &str)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["actor"].as_str().unwrap()))
        .collect();
    assert!(by.contains(&("revoked", "user:orders-rs")), "{by:?}");

    // Three tokens issued at once, three ends verified gone: both histograms count them.
    let sample = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = reqwest::blocking::get(server.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        assert_eq!(
            sample(&text, "kairos_issuance_seconds_count"),
            Some(3.0),
            "{text}"
        );
        if sample(&text, "kairos_grant_verified_gone_seconds_count") == Some(3.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the verified-gone histogram never counted 3: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn resource_servers_are_bound_to_token_targets() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start(dir.path());
    let api = Api::new(&server);
    let refused = |body: Value, status: u16, code: &str| {
        let (s, b) = api.post(ADMIN, "/v1/users", body.clone());
        assert_eq!(s, status, "{body}: {b}");
        assert_eq!(b["error"]["code"], code, "{body}: {b}");
    };
    refused(
        json!({"name": "rs", "role": "resource-server"}),
        400,
        "bad_target",
    );
    refused(
        json!({"name": "rs", "role": "resource-server", "targets": ["nope"]}),
        404,
        "not_found",
    );
    refused(
        json!({"name": "rs", "role": "operator", "targets": ["orders-api"]}),
        400,
        "bad_target",
    );
    refused(
        json!({"name": "rs", "role": "resource-server", "targets": ["orders-api"], "teams": ["payments"]}),
        400,
        "bad_team",
    );
    // Through the CLI, and it shows up with its target.
    let out = server.cli(
        ADMIN,
        &[
            "user",
            "add",
            "orders-rs",
            "--role",
            "resource-server",
            "--target",
            "orders-api",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("targets: orders-api"),
        "{}",
        stdout(&out)
    );
    let (_, users) = api.get(ADMIN, "/v1/users");
    let rs = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "orders-rs")
        .unwrap();
    assert_eq!(rs["role"], "resource-server");
    assert_eq!(rs["targets"], json!(["orders-api"]));
    // A resource server can do nothing else.
    let token = stdout(&out).lines().last().unwrap().trim().to_owned();
    let (s, b) = api.get(&token, "/v1/grants");
    assert_eq!(s, 403, "{b}");
}

#[test]
fn token_endpoint_speaks_rfc_6749_and_8693() {
    let dir = tempfile::tempdir().unwrap();
    let (server, issuer) = start(dir.path());
    let api = Api::new(&server);
    let backup = issuer.mint(SUBJECT, json!({}));
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));
    let form = |subject: &str, scope: &str, grant_type: &str| {
        api.http
            .post(format!("{}/v1/oauth/token", api.base))
            .form(&[
                ("grant_type", grant_type),
                ("subject_token", subject),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("scope", scope),
                ("task_kind", "job"),
                ("task_ref", "run-42"),
                ("task_reason", "nightly backup"),
            ])
            .send()
            .unwrap()
    };
    const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    let check = |r: reqwest::blocking::Response, status: u16, error: Option<&str>| -> Value {
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(r.headers()["pragma"], "no-cache");
        let body: Value = r.json().unwrap();
        if let Some(e) = error {
            assert_eq!(body["error"], e, "{body}");
            assert!(body["error_description"].is_string(), "{body}");
        }
        body
    };
    let ok = check(form(&backup, "orders-api/read", EXCHANGE), 200, None);
    assert_eq!(ok["token_type"], "Bearer");
    // RFC 9068: the access token names its client.
    let token = ok["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["client_id"], "nightly-backup");

    check(
        form(&backup, "orders-api/read", "client_credentials"),
        400,
        Some("unsupported_grant_type"),
    );
    // An invalid subject_token is invalid_request (RFC 8693 §2.2.2), not a 401.
    let expired = issuer.mint(SUBJECT, json!({"exp": now_secs() - 600}));
    check(
        form(&expired, "orders-api/read", EXCHANGE),
        400,
        Some("invalid_request"),
    );
    check(
        form(&backup, "no-such/thing", EXCHANGE),
        400,
        Some("invalid_scope"),
    );
    // Denied by policy: RFC 8628's access_denied, 400, with the policies.
    let denied = check(
        form(&deployer, "orders-api/read", EXCHANGE),
        400,
        Some("access_denied"),
    );
    assert_eq!(denied["policies"], json!(["no-deployer-reads"]));
    // Approval needed: 400 authorization_pending with the request to wait on.
    let pending = check(
        form(&backup, "orders-api/admin", EXCHANGE),
        400,
        Some("authorization_pending"),
    );
    assert!(
        pending["request_id"].as_str().unwrap().starts_with("req_"),
        "{pending}"
    );
    // A malformed form too.
    let r = api
        .http
        .post(format!("{}/v1/oauth/token", api.base))
        .body("{}")
        .header("content-type", "application/json")
        .send()
        .unwrap();
    check(r, 400, Some("invalid_request"));
}

#[test]
fn rfc_8414_metadata_is_served_and_openid_configuration_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start(dir.path());
    let api = Api::new(&server);
    let r = api
        .http
        .get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let m: Value = r.json().unwrap();
    let iss = server.addr.as_str();
    assert_eq!(m["issuer"], iss);
    assert_eq!(m["jwks_uri"], format!("{iss}/.well-known/jwks.json"));
    assert_eq!(m["token_endpoint"], format!("{iss}/v1/oauth/token"));
    assert_eq!(
        m["introspection_endpoint"],
        format!("{iss}/v1/oauth/introspect")
    );
    assert_eq!(m["revocation_endpoint"], format!("{iss}/v1/oauth/revoke"));
    assert_eq!(
        m["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic"])
    );
    assert_eq!(
        m["revocation_endpoint_auth_methods_supported"],
        json!(["client_secret_basic"])
    );
    assert_eq!(
        m["grant_types_supported"],
        json!(["urn:ietf:params:oauth:grant-type:token-exchange"])
    );
    // Kairos is no OpenID Provider (no ID tokens, no authorization endpoint).
    let r = api
        .http
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[test]
fn openapi_operation_ids_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), None, None);
    let doc: Value = reqwest::blocking::get(server.url("/v1/openapi.json"))
        .unwrap()
        .json()
        .unwrap();
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate operationIds among {ids:?}");
    // Introspection and revocation document both client authentications.
    let security = &doc["paths"]["/v1/oauth/introspect"]["post"]["security"];
    assert_eq!(security, &json!([{"basic": []}, {"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["basic"]["scheme"],
        "basic"
    );
}

#[test]
fn metrics_answer_the_format_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), None, None);
    let http = reqwest::blocking::Client::new();
    let get = |accept: Option<&str>| {
        let mut req = http.get(server.url("/metrics"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        (ct, r.text().unwrap())
    };
    // What Prometheus sends when it prefers OpenMetrics.
    let (ct, text) = get(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ));
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE kairos_grants_issued counter"),
        "{text}"
    );
    // The classic format, asked for or by default.
    for accept in [Some("text/plain;version=0.0.4"), None] {
        let (ct, text) = get(accept);
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains(
                "# TYPE kairos_grants_issued_total counter\nkairos_grants_issued_total 0\n"
            ),
            "{text}"
        );
    }
}

#[test]
fn http_requests_are_counted_by_route_template() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), None, None);
    let api = Api::new(&server);
    let (grant_status, _) = api.get(ADMIN, "/v1/grants/grt_0000");
    assert!(grant_status >= 400);
    let (s, _) = api.get(ADMIN, "/v1/health");
    assert_eq!(s, 200);
    let (s, _) = api.get(ADMIN, "/no/such/path");
    assert_eq!(s, 404);
    let text = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let grant_line = format!(
        "kairos_http_requests_total{{route=\"/v1/grants/{{id}}\",method=\"GET\",status=\"{grant_status}\"}} 1"
    );
    for line in [
        "kairos_http_requests_total{route=\"/v1/health\",method=\"GET\",status=\"200\"} 1",
        grant_line.as_str(),
        "kairos_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "kairos_http_request_duration_seconds_count{route=\"/v1/health\",method=\"GET\",status=\"200\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    // Never the raw path.
    assert!(!text.contains("grt_0000") && !text.contains("/no/such/path"));
}
