//! Crashes and outages through the real server: the process aborts between creating an
//! account and recording it, and between dropping an account and recording its receipt; a
//! target is down when a grant expires. In each case, once things come back, the account
//! is gone, the grant is `ended` with a verified receipt that tells the truth, and no
//! managed account is left that backs no active grant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::pg::{SHARED_PG, SharedDb, managed_roles, psql};
use common::private::{PgAuth, PrivatePg};
use common::*;
use kairos_domain::Timestamp;
use serde_json::{Value, json};
use sqlx::Connection;

const ENTITLEMENT: &str = "orders-db/readonly";
const SIGABRT: i32 = 6;

/// The account a grant gets: the target's prefix and the grant id's hex.
fn account_of(prefix: &str, grant_id: &str) -> String {
    format!("{prefix}{}", grant_id.trim_start_matches("grt_"))
}

/// Managed roles on the target that back no active grant: access nobody is accounted for.
fn residual_access(api: &Api, base: &str, prefix: &str) -> Vec<String> {
    let backed: Vec<String> = grants(api)
        .iter()
        .filter(|g| g["state"] == "active")
        .map(|g| account_of(prefix, g["id"].as_str().unwrap()))
        .collect();
    managed_roles(base, prefix)
        .into_iter()
        .filter(|r| !backed.contains(r))
        .collect()
}

fn assert_no_residual_access(test: &str, api: &Api, base: &str, prefix: &str) {
    let residue = residual_access(api, base, prefix);
    println!(
        "{test}: residual access = {} managed role(s) backing no active grant {residue:?}",
        residue.len()
    );
    assert!(residue.is_empty(), "residual access: {residue:?}");
}

/// Every active grant's account exists downstream.
fn assert_active_grants_have_accounts(api: &Api, base: &str, prefix: &str) {
    let roles = managed_roles(base, prefix);
    for g in grants(api).iter().filter(|g| g["state"] == "active") {
        let account = account_of(prefix, g["id"].as_str().unwrap());
        assert!(
            roles.contains(&account),
            "active grant without its account: {g}"
        );
    }
}

// ---- Kairos from the outside --------------------------------------------------------

/// The base configuration plus one PostgreSQL target (admin URL from
/// `KAIROS_IT_PG_ADMIN`, reconciled every second) and one entitlement on `database`.
fn write_pg_config(dir: &Path, issuer: &TestIssuer, database: &str, prefix: &str) -> PathBuf {
    let path = write_config(dir, issuer, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[policy]",
        &format!(
            r#"
[[target]]
name = "orders-db"
kind = "postgres"
admin_url_env = "KAIROS_IT_PG_ADMIN"
managed_prefix = "{prefix}"
reconcile_interval = "1s"

[[entitlement]]
name = "{ENTITLEMENT}"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT CONNECT ON DATABASE {database} TO {{{{role}}}}", "GRANT SELECT ON orders TO {{{{role}}}}"]

[policy]"#
        ),
    );
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        dir.join("policies/db.cedar"),
        "@id(\"db-jobs\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"orders-db\") when { context.task_kind == \"job\" };\n",
    )
    .unwrap();
    path
}

fn request_body(ttl: &str) -> Value {
    json!({
        "entitlement": ENTITLEMENT, "ttl": ttl,
        "task": {"kind": "job", "ref": "run-9", "reason": "crash drill"}
    })
}

fn grants(api: &Api) -> Vec<Value> {
    let (status, body) = api.get(ADMIN, "/v1/grants");
    assert_eq!(status, 200, "{body}");
    body["grants"].as_array().unwrap().clone()
}

fn grant(api: &Api, id: &str) -> Value {
    let (status, g) = api.get(ADMIN, &format!("/v1/grants/{id}"));
    assert_eq!(status, 200, "{g}");
    g
}

/// Waits (bounded) for the server process to exit by itself.
fn wait_exit(server: &mut Server, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not die at the crash point:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `probe` until it yields a value, failing after `timeout` with `what`.
fn eventually<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_millis() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn millis(rfc3339: &Value) -> i64 {
    Timestamp::parse_rfc3339(rfc3339.as_str().unwrap_or_else(|| panic!("{rfc3339}")))
        .unwrap_or_else(|| panic!("not RFC 3339: {rfc3339}"))
        .as_millis()
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
}

fn assert_audit_verifies(server: &Server) {
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

fn env_of<'a>(admin_url: &'a str, crash: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut envs = vec![("KAIROS_IT_PG_ADMIN", admin_url)];
    if let Some(point) = crash {
        envs.push(("KAIROS_DANGER_CRASH_AT", point));
    }
    envs
}

// ---- the tests ----------------------------------------------------------------------

#[test]
fn sigkill_between_provision_and_commit_leaves_no_residue() {
    let db = SharedDb::new();
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_pg_config(&dir.path().join("cfg"), &issuer, &db.name, &db.prefix);
    let data = dir.path().join("data");
    let admin_url = db.admin_url();
    let grace = ["--provisioning-grace", "1s"];

    // The server dies after the role exists and before the grant is recorded active.
    let mut server = Server::start_env(
        &data,
        Some(&config),
        None,
        &grace,
        &env_of(&admin_url, Some("after-provision")),
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let answer = api
        .http
        .post(server.url("/v1/requests"))
        .bearer_auth(&platform)
        .json(&request_body("10m"))
        .send();
    assert!(
        answer.is_err(),
        "the request was answered although the server was to die: {answer:?}"
    );
    let status = wait_exit(&mut server, Duration::from_secs(20));
    assert_eq!(status.signal(), Some(SIGABRT), "{status:?}");
    assert!(
        server.log_text().contains("KAIROS_DANGER_CRASH_AT reached"),
        "{}",
        server.log_text()
    );
    // The crash window is real: the role exists downstream, recorded nowhere as active.
    let roles = managed_roles(SHARED_PG, &db.prefix);
    assert_eq!(roles.len(), 1, "{roles:?}");
    let role = roles[0].clone();
    drop(server);

    // Restarted without the crash point: the reconciler aborts the stuck provisioning and
    // the revocation worker removes the role and verifies it gone.
    let restarted_at = now_millis();
    let server = Server::start_env(
        &data,
        Some(&config),
        None,
        &grace,
        &env_of(&admin_url, None),
    );
    let api = Api::new(&server);
    let all = grants(&api);
    assert_eq!(all.len(), 1, "{all:?}");
    let id = all[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(account_of(&db.prefix, &id), role);
    assert_ne!(all[0]["state"], "active", "{}", all[0]);

    let g = api.wait_grant(ADMIN, &id, Duration::from_secs(20), |g| {
        g["state"] == "ended"
    });
    eventually(Duration::from_secs(5), "the role is dropped", || {
        managed_roles(SHARED_PG, &db.prefix)
            .is_empty()
            .then_some(())
    });
    let receipt = &g["receipt"];
    assert_eq!(receipt["reason"], "aborted", "{g}");
    assert_eq!(receipt["ended_by"], "system:reconciler", "{g}");
    assert_eq!(receipt["method"], "pg_roles+login", "{g}");
    assert!(millis(&receipt["verified_at"]) >= restarted_at, "{g}");
    assert!(
        receipt["evidence"]
            .as_str()
            .unwrap()
            .contains("absent from pg_roles"),
        "{g}"
    );
    assert!(
        grants(&api).iter().all(|g| g["state"] != "active"),
        "no grant may be active: the workload never got its credential"
    );
    assert_active_grants_have_accounts(&api, SHARED_PG, &db.prefix);
    // The metrics count the abort and do not go negative.
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("kairos_grants_ended_total{reason=\"aborted\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kairos_revoking_grants 0"), "{metrics}");
    assert_audit_verifies(&server);
    assert_no_residual_access(
        "sigkill_between_provision_and_commit",
        &api,
        SHARED_PG,
        &db.prefix,
    );
}

#[test]
fn sigkill_between_revoke_and_verify_completes_after_restart() {
    let db = SharedDb::new();
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_pg_config(&dir.path().join("cfg"), &issuer, &db.name, &db.prefix);
    let data = dir.path().join("data");
    let admin_url = db.admin_url();
    // Long enough that the restarted server reliably reads the grant inside the crashed
    // claim's lease, short enough that the test stays quick.
    let lease = ["--revocation-lease", "5s"];
    let rt = tokio::runtime::Runtime::new().unwrap();

    // An ordinary grant, used with a real login.
    let server = Server::start_env(&data, Some(&config), None, &[], &env_of(&admin_url, None));
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.post(&platform, "/v1/requests", request_body("10m"));
    assert_eq!(status, 201, "{body}");
    let id = body["grant"]["id"].as_str().unwrap().to_owned();
    let cred = &body["credential"];
    let user = cred["username"].as_str().unwrap().to_owned();
    let url = format!(
        "postgres://{user}:{}@{}:{}/{}",
        cred["password"].as_str().unwrap(),
        cred["host"].as_str().unwrap(),
        cred["port"],
        cred["database"].as_str().unwrap()
    );
    // The session stays open across the restarts and the crash.
    let mut session = rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 1);
        c
    });
    server.stop();

    // Restarted with the crash point: the release drops the role, then the server dies
    // before it records the receipt. The answer to the release itself may or may not
    // arrive first: the revocation worker runs beside the handler.
    let mut server = Server::start_env(
        &data,
        Some(&config),
        None,
        &lease,
        &env_of(&admin_url, Some("after-revoke")),
    );
    let api = Api::new(&server);
    let answer = api
        .http
        .post(server.url(&format!("/v1/grants/{id}/release")))
        .bearer_auth(&platform)
        .json(&json!({}))
        .send();
    if let Ok(resp) = answer {
        assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text());
    }
    let status = wait_exit(&mut server, Duration::from_secs(20));
    let crashed_at = now_millis();
    assert_eq!(status.signal(), Some(SIGABRT), "{status:?}");
    assert!(
        !managed_roles(SHARED_PG, &db.prefix).contains(&user),
        "the role must be dropped before the crash point"
    );
    drop(server);

    // Restarted normally: the grant is still `revoking` (the crashed worker's claim holds
    // for its lease), then another claim finishes it and records a verified receipt.
    let server = Server::start_env(
        &data,
        Some(&config),
        None,
        &lease,
        &env_of(&admin_url, None),
    );
    let api = Api::new(&server);
    let g = grant(&api, &id);
    assert_eq!(
        g["state"],
        "revoking",
        "read {} ms after the crash: {g}",
        now_millis() - crashed_at
    );
    assert_eq!(g["receipt"]["reason"], "released", "{g}");
    assert!(g["receipt"]["verified_at"].is_null(), "{g}");

    let g = api.wait_grant(ADMIN, &id, Duration::from_secs(20), |g| {
        g["state"] == "ended"
    });
    let receipt = &g["receipt"];
    assert_eq!(receipt["reason"], "released", "{g}");
    assert_eq!(receipt["method"], "pg_roles+login", "{g}");
    // Only the restarted server can have written it: the crashed one died unrecorded.
    assert!(millis(&receipt["verified_at"]) >= crashed_at, "{g}");
    rt.block_on(async {
        let still = sqlx::query("SELECT 1").execute(&mut session).await;
        assert!(still.is_err(), "the open session must be terminated");
        assert!(
            sqlx::PgConnection::connect(&url).await.is_err(),
            "a login must fail"
        );
    });
    assert!(!managed_roles(SHARED_PG, &db.prefix).contains(&user));
    assert_active_grants_have_accounts(&api, SHARED_PG, &db.prefix);
    assert_audit_verifies(&server);
    assert_no_residual_access(
        "sigkill_between_revoke_and_verify",
        &api,
        SHARED_PG,
        &db.prefix,
    );
}

#[test]
fn target_down_at_expiry_is_revoked_when_it_returns() {
    let pg = PrivatePg::start(PgAuth::Trust);
    let base = pg.base_url();
    psql(
        &base,
        "postgres",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)",
    );
    let prefix = format!("kit{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_pg_config(&dir.path().join("cfg"), &issuer, "postgres", &prefix);
    let admin_url = format!("{base}/postgres");
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[],
        &env_of(&admin_url, None),
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let rt = tokio::runtime::Runtime::new().unwrap();

    let (status, body) = api.post(&platform, "/v1/requests", request_body("3s"));
    assert_eq!(status, 201, "{body}");
    let id = body["grant"]["id"].as_str().unwrap().to_owned();
    let expires_at = millis(&body["grant"]["expires_at"]);
    let cred = &body["credential"];
    let user = cred["username"].as_str().unwrap().to_owned();
    assert_eq!(cred["port"], pg.port, "{cred}");
    let url = format!(
        "postgres://{user}:{}@{}:{}/{}",
        cred["password"].as_str().unwrap(),
        cred["host"].as_str().unwrap(),
        cred["port"],
        cred["database"].as_str().unwrap()
    );
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 1);
    });

    // The target goes down before the grant expires.
    pg.stop();
    assert!(
        now_millis() < expires_at,
        "the instance stopped only after the grant expired; the outage was not observed"
    );

    // Past expiry: ended, but the revocation fails and is retried, and says why.
    let g = api.wait_grant(ADMIN, &id, Duration::from_secs(20), |g| {
        g["state"] == "revoking" && g["receipt"]["attempts"].as_u64().unwrap_or(0) >= 1
    });
    assert!(now_millis() >= expires_at);
    assert_eq!(g["receipt"]["reason"], "expired", "{g}");
    let last_error = g["receipt"]["last_error"].as_str().unwrap_or_default();
    assert!(!last_error.is_empty(), "{g}");
    assert!(
        !last_error.contains(cred["password"].as_str().unwrap()),
        "{last_error}"
    );
    let (status, metrics) = api.get(ADMIN, "/metrics");
    assert_eq!(status, 200);
    let failures = counter(
        metrics.as_str().unwrap(),
        "kairos_revocation_failures_total",
    );
    assert!(failures > 0.0, "{metrics}");

    // Back up: the next retry removes the role and the receipt says when, truthfully.
    let restarted_at = now_millis();
    pg.restart();
    let g = api.wait_grant(ADMIN, &id, Duration::from_secs(30), |g| {
        g["state"] == "ended"
    });
    let receipt = &g["receipt"];
    assert_eq!(receipt["reason"], "expired", "{g}");
    assert_eq!(receipt["method"], "pg_roles+login", "{g}");
    assert!(millis(&receipt["revoked_at"]) >= restarted_at, "{g}");
    assert!(millis(&receipt["verified_at"]) >= restarted_at, "{g}");
    assert!(millis(&receipt["ended_at"]) <= restarted_at, "{g}");
    assert!(!managed_roles(&base, &prefix).contains(&user));
    rt.block_on(async {
        assert!(
            sqlx::PgConnection::connect(&url).await.is_err(),
            "a login must fail"
        );
    });
    assert_active_grants_have_accounts(&api, &base, &prefix);
    assert_audit_verifies(&server);
    assert_no_residual_access("target_down_at_expiry", &api, &base, &prefix);
}

#[test]
fn released_accounts_go_within_10s_of_the_target_returning() {
    let pg = PrivatePg::start(PgAuth::Trust);
    let base = pg.base_url();
    psql(
        &base,
        "postgres",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)",
    );
    let prefix = format!("kit{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_pg_config(&dir.path().join("cfg"), &issuer, "postgres", &prefix);
    let admin_url = format!("{base}/postgres");
    // Retries wait 10 s, then 20 s, 40 s …: after two failures the next retry is 20 s
    // away, so only the outage probe can revoke within 10 s of the target's return.
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[
            "--revocation-backoff-ms",
            "10000",
            "--revocation-alarm-after",
            "2",
        ],
        &env_of(&admin_url, None),
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let health = || {
        let (status, h) = api.get(ADMIN, "/v1/health");
        assert_eq!(status, 200, "{h}");
        h
    };
    assert_eq!(health()["status"], "ok");

    let (status, body) = api.post(&platform, "/v1/requests", request_body("10m"));
    assert_eq!(status, 201, "{body}");
    let id = body["grant"]["id"].as_str().unwrap().to_owned();
    let cred = &body["credential"];
    let user = cred["username"].as_str().unwrap().to_owned();
    let url = format!(
        "postgres://{user}:{}@{}:{}/{}",
        cred["password"].as_str().unwrap(),
        cred["host"].as_str().unwrap(),
        cred["port"],
        cred["database"].as_str().unwrap()
    );
    let logs_in = || rt.block_on(async { sqlx::PgConnection::connect(&url).await.is_ok() });
    assert!(logs_in());

    // Down, then released: the revocation fails, twice, and the backoff grows to 20 s.
    pg.stop();
    let (status, body) = api.post(&platform, &format!("/v1/grants/{id}/release"), json!({}));
    assert_eq!(status, 200, "{body}");
    let g = api.wait_grant(ADMIN, &id, Duration::from_secs(60), |g| {
        g["state"] == "revoking" && g["receipt"]["attempts"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(g["receipt"]["reason"], "released", "{g}");
    // Alarming: health says degraded and names the target.
    let h = eventually(Duration::from_secs(10), "health says degraded", || {
        let h = health();
        (h["status"] == "degraded").then_some(h)
    });
    assert_eq!(h["degraded_targets"], json!(["orders-db"]), "{h}");

    // Back: within 10 s the account no longer logs in, with a verified receipt.
    // The target is back somewhere inside `restart` (it answers before `restart` returns
    // to us), so its return is counted from when the restart began.
    let back = Instant::now();
    let returned_at = now_millis();
    pg.restart();
    eventually(
        Duration::from_secs(10),
        "the released role is dropped within 10 s of the target's return",
        || (!managed_roles(&base, &prefix).contains(&user)).then_some(()),
    );
    assert!(!logs_in(), "a login must fail");
    let gone_after = back.elapsed();
    println!("released role gone {gone_after:?} after the target returned");
    assert!(gone_after < Duration::from_secs(10), "{gone_after:?}");
    let g = api.wait_grant(ADMIN, &id, Duration::from_secs(10), |g| {
        g["state"] == "ended"
    });
    let receipt = &g["receipt"];
    assert_eq!(receipt["method"], "pg_roles+login", "{g}");
    assert!(millis(&receipt["verified_at"]) >= returned_at, "{g}");
    assert!(
        millis(&receipt["verified_at"]) < returned_at + 10_000,
        "{g}"
    );
    eventually(Duration::from_secs(10), "health is ok again", || {
        let h = health();
        (h["status"] == "ok" && h["degraded_targets"] == json!([])).then_some(())
    });
    assert_audit_verifies(&server);
    assert_no_residual_access("released_during_outage", &api, &base, &prefix);
}
