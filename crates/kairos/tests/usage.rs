//! Usage monitoring through the real server: introspections and database sessions are
//! recorded on their grants, requests carry their source address (behind a trusted proxy
//! too) and policy sees it, and the detectors alert: use after end, unexpected source,
//! held past use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::pg::{SharedDb, psql};
use common::*;
use serde_json::{Value, json};

fn add_user(api: &Api, body: Value) -> String {
    let (status, b) = api.post(ADMIN, "/v1/users", body);
    assert_eq!(status, 201, "{b}");
    b["token"].as_str().unwrap().to_owned()
}

/// Introspects `token` as the resource server `name` (HTTP Basic).
fn introspect_as(api: &Api, name: &str, secret: &str, token: &str) -> Value {
    let resp = api
        .http
        .post(format!("{}/v1/oauth/introspect", api.base))
        .basic_auth(name, Some(secret))
        .form(&[("token", token)])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().unwrap()
}

fn metrics(server: &Server) -> String {
    reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Open alerts of `kind`, waiting up to `timeout` for at least `at_least` of them.
fn wait_alerts(api: &Api, kind: &str, at_least: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = api.get(ADMIN, &format!("/v1/alerts?kind={kind}"));
        assert_eq!(status, 200, "{body}");
        let alerts: Vec<Value> = body["alerts"].as_array().cloned().unwrap_or_default();
        if alerts.len() >= at_least {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {at_least} {kind} alerts: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Introspections by a resource server are recorded on the grant (uses, last address, last
/// client) and shown by `GET /v1/grants/{id}` and `kairos grant`; the token presented after
/// release is a use after end: counted, and alerted once.
fn introspection_usage_and_use_after_end(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), store);
    let api = Api::new(&server);
    let rs = add_user(
        &api,
        json!({"name": "orders-rs", "role": "resource-server", "targets": ["orders-api"]}),
    );
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.exchange(&platform, "orders-api/read", Some("10m"));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let grant = body["grant_id"].as_str().unwrap().to_owned();

    // Never used yet: `usage` is null on the grant.
    let (_, g) = api.get(ADMIN, &format!("/v1/grants/{grant}"));
    assert!(g["usage"].is_null() && g.get("usage").is_some(), "{g}");
    for _ in 0..3 {
        assert_eq!(
            introspect_as(&api, "orders-rs", &rs, &token)["active"],
            true
        );
    }
    let g = api.wait_grant(ADMIN, &grant, Duration::from_secs(10), |g| {
        g["usage"]["uses"] == 3
    });
    assert_eq!(g["usage"]["last_client"], "user:orders-rs");
    assert_eq!(g["usage"]["last_source"], "127.0.0.1");
    // The workload sees its own grant's usage; lists carry none.
    let (_, own) = api.get(&platform, &format!("/v1/grants/{grant}"));
    assert_eq!(own["usage"]["uses"], 3, "{own}");
    let (_, list) = api.get(ADMIN, "/v1/grants");
    assert!(list["grants"][0].get("usage").is_none(), "{list}");
    let out = server.cli(ADMIN, &["grant", &grant]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("3 times"), "{text}");
    assert!(text.contains("by user:orders-rs from 127.0.0.1"), "{text}");
    // Another workload may not read it (404, as for an unknown grant), and learns nothing
    // of its usage.
    let other = issuer.mint(OTHER_SUBJECT, json!({}));
    let (status, body) = api.get(&other, &format!("/v1/grants/{grant}"));
    assert_eq!(status, 404, "{body}");
    assert!(!body.to_string().contains("orders-rs"), "{body}");

    let m = metrics(&server);
    assert_eq!(metric(&m, "kairos_usage_recorded_total"), 3.0);
    assert_eq!(metric(&m, "kairos_use_after_end_total"), 0.0);

    // Released: presenting the token is a use after end, counted each time, alerted once.
    let (status, body) = api.post(&platform, &format!("/v1/grants/{grant}/release"), json!({}));
    assert_eq!(status, 200, "{body}");
    for _ in 0..2 {
        assert_eq!(
            introspect_as(&api, "orders-rs", &rs, &token)["active"],
            false
        );
    }
    let m = metrics(&server);
    assert_eq!(metric(&m, "kairos_use_after_end_total"), 2.0);
    assert_eq!(metric(&m, "kairos_usage_recorded_total"), 3.0);
    let alerts = wait_alerts(&api, "use_after_end", 1, Duration::from_secs(5));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].to_string().contains(&grant), "{alerts:?}");
    let out = server.cli(ADMIN, &["alerts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("use_after_end"), "{}", stdout(&out));
    // Never the token itself.
    assert!(!alerts[0].to_string().contains(&token));
    assert!(!server.log_text().contains(&token));
}

#[test]
fn introspection_usage_and_use_after_end_on_sqlite() {
    introspection_usage_and_use_after_end(None);
}

#[test]
fn introspection_usage_and_use_after_end_on_postgres() {
    let admin = std::env::var("KAIROS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let db = format!("kairos_it_{}", uuid::Uuid::new_v4().simple());
    psql(&admin, "postgres", &format!("CREATE DATABASE {db}"));
    let url = format!("{admin}/{db}");
    let result = std::panic::catch_unwind(|| introspection_usage_and_use_after_end(Some(&url)));
    psql(
        &admin,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The deployer may be used from 10.0.0.0/8 only; a policy forbids its writes from
/// anywhere else.
fn fenced_config(dir: &std::path::Path, issuer: &TestIssuer, server: &str) -> std::path::PathBuf {
    let path = write_config(dir, issuer, server);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("subject = \"{OTHER_SUBJECT}\""),
        &format!(
            "subject = \"{OTHER_SUBJECT}\"\nallowed_sources = [\"10.0.0.0/8\", \"192.168.1.7/32\"]"
        ),
    );
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        dir.join("policies/sources.cedar"),
        r#"@id("writes-from-the-office")
@reason("writes come from 10.0.0.0/8 only")
forbid (principal, action, resource == Kairos::Entitlement::"orders-api/write")
unless { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };
"#,
    )
    .unwrap();
    path
}

fn request_from(api: &Api, platform: &str, forwarded: Option<&str>) -> (u16, Value) {
    let mut req = api
        .http
        .post(format!("{}/v1/requests", api.base))
        .bearer_auth(platform)
        .json(&json!({
            "entitlement": "orders-api/write", "ttl": "5m",
            "task": {"kind": "change", "ref": "CHG-9", "reason": "deploy"}
        }));
    if let Some(f) = forwarded {
        req = req.header("X-Forwarded-For", f);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

/// Behind a trusted proxy the client's address is the right-most untrusted hop: it is
/// recorded on the request, policy sees it (`context.source_ip`), and a request from
/// outside the identity's `allowed_sources` raises `unexpected_source`.
#[test]
fn source_addresses_behind_a_trusted_proxy_reach_policy_and_the_detector() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = fenced_config(
        &dir.path().join("cfg"),
        &issuer,
        "trusted_proxy_header = \"x-forwarded-for\"\ntrusted_proxies = [\"127.0.0.0/8\"]",
    );
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));

    // From the office, through the proxy (a forged left-most entry is ignored).
    let (status, body) = request_from(&api, &deployer, Some("203.0.113.50, 10.1.2.3"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["request"]["source_ip"], "10.1.2.3");

    // From outside: policy denies, and the detector alerts once per address.
    for _ in 0..2 {
        let (status, body) = request_from(&api, &deployer, Some("203.0.113.9"));
        assert_eq!(status, 403, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("writes come from 10.0.0.0/8 only"),
            "{body}"
        );
    }
    let (_, list) = api.get(ADMIN, "/v1/requests?identity=deployer");
    let sources: Vec<&str> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source_ip"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["203.0.113.9", "203.0.113.9", "10.1.2.3"]);
    let alerts = wait_alerts(&api, "unexpected_source", 1, Duration::from_secs(5));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let text = alerts[0].to_string();
    assert!(
        text.contains("203.0.113.9") && text.contains("deployer"),
        "{text}"
    );
}

/// Without trusted proxies, the header is nobody's word: the peer address counts.
#[test]
fn an_untrusted_peer_cannot_claim_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = fenced_config(
        &dir.path().join("cfg"),
        &issuer,
        "trusted_proxy_header = \"x-forwarded-for\"\ntrusted_proxies = [\"10.255.0.0/16\"]",
    );
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));
    let (status, body) = request_from(&api, &deployer, Some("10.1.2.3"));
    assert_eq!(status, 403, "{body}");
    let (_, list) = api.get(ADMIN, "/v1/requests?identity=deployer");
    assert_eq!(list["requests"][0]["source_ip"], "127.0.0.1", "{list}");
}

/// A configuration with a proxy header but no trusted proxies is refused, naming file,
/// line and key; so is a malformed block in `allowed_sources`.
#[test]
fn bad_source_settings_are_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = fenced_config(
        &dir.path().join("cfg"),
        &issuer,
        "trusted_proxy_header = \"x-forwarded-for\"",
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"192.168.1.7/32\"", "\"192.168.1.7/8\"");
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&dir.path().join("data"), None, None);
    let out = server.cli(ADMIN, &["apply", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out) + &stdout(&out);
    assert!(
        err.contains("kairos.toml:3: server.trusted_proxy_header"),
        "{err}"
    );
    assert!(err.contains("identity[1].allowed_sources[1]"), "{err}");
    assert!(err.contains("write \"192.0.0.0/8\""), "{err}");
}

/// A grant nobody uses for half its TTL raises `held_past_use` while it is still held.
#[test]
fn a_grant_held_unused_past_half_its_ttl_is_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start_with(
        &dir.path().join("data"),
        Some(&config),
        None,
        &["--usage-pass-ms", "200"],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.exchange(&platform, "orders-api/read", Some("4s"));
    assert_eq!(status, 200, "{body}");
    let grant = body["grant_id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let alerts = wait_alerts(&api, "held_past_use", 1, Duration::from_secs(4));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "alerted before half the TTL: {alerts:?}"
    );
    assert!(alerts[0].to_string().contains(&grant), "{alerts:?}");
    let (_, g) = api.get(ADMIN, &format!("/v1/grants/{grant}"));
    assert_eq!(g["state"], "active", "still held when alerted: {g}");
}

/// A live PostgreSQL session of an issued account is seen at reconcile and recorded as a
/// use of its grant, with the session's client address.
#[test]
fn postgres_sessions_are_recorded_at_reconcile() {
    let shared = SharedDb::new();
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let path = write_config(&cfg, &issuer, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[policy]",
        &format!(
            r#"
[[target]]
name = "orders-db"
kind = "postgres"
admin_url_env = "KAIROS_IT_PG_ADMIN"
managed_prefix = "{}"
reconcile_interval = "1s"

[[entitlement]]
name = "orders-db/readonly"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT CONNECT ON DATABASE {} TO {{{{role}}}}", "GRANT SELECT ON orders TO {{{{role}}}}"]

[policy]"#,
            shared.prefix, shared.name
        ),
    );
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        cfg.join("policies/db.cedar"),
        "@id(\"db-jobs\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"orders-db\");\n",
    )
    .unwrap();
    let admin = shared.admin_url();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&path),
        None,
        &[],
        &[("KAIROS_IT_PG_ADMIN", admin.as_str())],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        json!({"entitlement": "orders-db/readonly", "ttl": "10m",
               "task": {"kind": "job", "ref": "run-7", "reason": "export"}}),
    );
    assert_eq!(status, 201, "{body}");
    let cred = &body["credential"];
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}",
        cred["username"].as_str().unwrap(),
        cred["password"].as_str().unwrap(),
        cred["port"],
        cred["database"].as_str().unwrap()
    );
    // A real client holds a session open over TCP.
    let mut session = std::process::Command::new("psql")
        .args([url.as_str(), "-qtAc", "SELECT pg_sleep(20)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let g = api.wait_grant(ADMIN, &grant, Duration::from_secs(15), |g| {
        g["usage"]["last_client"] == "session@orders-db"
    });
    let _ = session.kill();
    let _ = session.wait();
    assert_eq!(g["usage"]["last_source"], "127.0.0.1", "{g}");
    assert!(g["usage"]["uses"].as_u64().unwrap() >= 1, "{g}");
    let (status, body) = api.post(&platform, &format!("/v1/grants/{grant}/release"), json!({}));
    assert_eq!(status, 200, "{body}");
    api.wait_grant(ADMIN, &grant, Duration::from_secs(15), |g| {
        g["state"] == "ended"
    });
}
