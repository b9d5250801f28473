//! Several `kairos server` processes on one PostgreSQL: a configuration applied or a key
//! rotated on one replica is in force on the others within 2 s; readiness follows the
//! store; a replica rides out a PostgreSQL restart; SIGTERM drains.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::pg::with_scratch_db;
use common::private::{PgAuth, PrivatePg};
use common::*;
use serde_json::{Value, json};

/// Starts a replica on `store` with the master key of `first` (in dev mode each data
/// directory holds its own `master.key`; replicas share one).
fn replica(dir: &Path, name: &str, first: Option<&Server>, store: &str) -> Server {
    replica_env(dir, name, first, None, store, &[], &[])
}

fn replica_env(
    dir: &Path,
    name: &str,
    first: Option<&Server>,
    config: Option<&Path>,
    store: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Server {
    let data = dir.join(name);
    if let Some(first) = first {
        std::fs::create_dir_all(&data).unwrap();
        std::fs::copy(first.data.join("master.key"), data.join("master.key")).unwrap();
    }
    // Replicas behind one load balancer share one public URL: the `iss` of their tokens.
    let mut args = vec!["--issuer-url", "https://kairos.replicas.test"];
    args.extend_from_slice(extra);
    Server::start_env(&data, config, Some(store), &args, envs)
}

/// The configuration of `write_config` plus an entitlement `orders-api/audit` that
/// policy grants at once.
fn add_audit_entitlement(config: &Path) {
    let dir = config.parent().unwrap();
    let mut toml = std::fs::read_to_string(config).unwrap();
    toml = toml.replace(
        "[policy]",
        "[[entitlement]]\nname = \"orders-api/audit\"\ntarget = \"orders-api\"\ntier = \"low\"\nmax_ttl = \"1h\"\nscopes = [\"orders:audit\"]\n\n[policy]",
    );
    std::fs::write(config, toml).unwrap();
    std::fs::write(
        dir.join("policies/audit.cedar"),
        "@id(\"audit-auto\")\npermit (principal, action == Kairos::Action::\"request\", resource == Kairos::Entitlement::\"orders-api/audit\");\n",
    )
    .unwrap();
}

fn request(api: &Api, platform: &str, entitlement: &str) -> (u16, Value) {
    api.post(
        platform,
        "/v1/requests",
        json!({
            "entitlement": entitlement,
            "ttl": "10m",
            "task": {"kind": "job", "ref": "run-7", "reason": "replica test"},
        }),
    )
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn jwks_kids(api: &Api) -> Vec<String> {
    let (status, jwks) = api.get(ADMIN, "/.well-known/jwks.json");
    assert_eq!(status, 200, "{jwks}");
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `within`.
fn within<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, started.elapsed());
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_apply_and_a_rotation_on_one_replica_are_in_force_on_another_within_2_s() {
    with_scratch_db("kairos_replicas", |store| {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TestIssuer::new("ci-key-1");
        let config = write_config(&dir.path().join("cfg"), &issuer, "");
        let a = replica_env(dir.path(), "a", None, Some(&config), store, &[], &[]);
        let b = replica(dir.path(), "b", Some(&a), store);
        let (api_a, api_b) = (Api::new(&a), Api::new(&b));
        let platform = issuer.mint(SUBJECT, json!({}));

        // B knows the configuration A applied at its start.
        let (status, body) = request(&api_b, &platform, "orders-api/read");
        assert_eq!(status, 201, "{body}");
        let (status, body) = request(&api_b, &platform, "orders-api/audit");
        assert_eq!(status, 404, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("orders-api/audit is not defined"),
            "{body}"
        );

        // Apply on A: within 2 s B decides with the new catalog, and says which.
        add_audit_entitlement(&config);
        let out = a.cli(ADMIN, &["apply", config.to_str().unwrap()]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let applied = Instant::now();
        let (_, cfg) = api_a.get(ADMIN, "/v1/config");
        let version = cfg["version"].as_i64().unwrap();
        let ((req, took), _) = within(
            Duration::from_secs(5),
            "B grants the new entitlement",
            || {
                let (status, body) = request(&api_b, &platform, "orders-api/audit");
                (status == 201).then(|| (body, applied.elapsed()))
            },
        );
        assert!(
            took <= Duration::from_secs(2),
            "B took {took:?} to decide with the configuration applied on A"
        );
        let request_id = req["request"]["id"].as_str().unwrap().to_owned();
        let (status, audit) = api_b.get(ADMIN, &format!("/v1/audit?request={request_id}"));
        assert_eq!(status, 200, "{audit}");
        let decided = audit["records"]
            .as_array()
            .unwrap()
            .iter()
            // Granted on the spot: the one `issued` record carries the decision.
            .find(|r| r["kind"] == "issued" && !r["data"]["decision"].is_null())
            .unwrap_or_else(|| panic!("no issued record with the decision: {audit}"))
            .clone();
        assert_eq!(decided["data"]["catalog_version"], version, "{decided}");
        assert!(
            b.log_text()
                .contains("configuration applied on another replica is now in force here"),
            "{}",
            b.log_text()
        );

        // Rotation on A: within 2 s B lists the new key, signs with it, and verifies
        // tokens A signs with it.
        let old_kid = kid_of(body_token(&request(&api_a, &platform, "orders-api/read").1));
        let (status, keys) = api_a.post(ADMIN, "/v1/keys", json!({}));
        assert_eq!(status, 200, "{keys}");
        let new_kid = keys["current_kid"].as_str().unwrap().to_owned();
        assert_ne!(new_kid, old_kid);
        let rotated = Instant::now();
        let (_, took) = within(Duration::from_secs(5), "B's JWKS lists the new key", || {
            jwks_kids(&api_b).contains(&new_kid).then_some(())
        });
        assert!(took <= Duration::from_secs(2), "JWKS on B after {took:?}");
        assert!(rotated.elapsed() <= Duration::from_secs(3));
        let (status, on_b) = request(&api_b, &platform, "orders-api/read");
        assert_eq!(status, 201, "{on_b}");
        assert_eq!(
            kid_of(body_token(&on_b)),
            new_kid,
            "B signs with the new key"
        );
        let (status, on_a) = request(&api_a, &platform, "orders-api/read");
        assert_eq!(status, 201, "{on_a}");
        let token_a = body_token(&on_a);
        assert_eq!(kid_of(token_a), new_kid);
        let i = api_b.introspect(ADMIN, token_a);
        assert_eq!(i["active"], true, "A's token under the new key, on B: {i}");
        // The old key's tokens still verify on B (the old key stays until they expire).
        assert!(jwks_kids(&api_b).contains(&old_kid));
    });
}

fn body_token(body: &Value) -> &str {
    body["credential"]["token"]
        .as_str()
        .or_else(|| body["credential"]["access_token"].as_str())
        .unwrap_or_else(|| panic!("no token in {body}"))
}

#[test]
fn a_postgresql_restart_is_a_503_then_recovery_without_a_kairos_restart() {
    let pg = PrivatePg::start(PgAuth::Trust);
    let store = format!("{}/postgres", pg.base_url());
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("ci-key-1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), Some(&store));
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));

    let (status, ready) = api.get(ADMIN, "/v1/health/ready");
    assert_eq!((status, &ready), (200, &json!({"ready": true})));
    let (status, body) = request(&api, &platform, "orders-api/read");
    assert_eq!(status, 201, "{body}");
    let token = body_token(&body).to_owned();

    pg.stop();
    // A request while the store is down: a 503 that says so (not a 500), and no
    // readiness; liveness still answers.
    let (status, body) = request(&api, &platform, "orders-api/read");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store (PostgreSQL) is unreachable"),
        "{body}"
    );
    let (status, ready) = api.get(ADMIN, "/v1/health/ready");
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);
    let reasons = ready["reasons"].to_string();
    assert!(reasons.contains("store"), "{ready}");
    // Anyone may ask (a load balancer has no token), and the answer names no address.
    let outsider = reqwest::blocking::Client::new();
    let resp = outsider.get(server.url("/v1/health/ready")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let text = resp.text().unwrap();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("postgres://"),
        "{text}"
    );
    let resp = outsider.get(server.url("/v1/health/live")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().unwrap(), json!({"live": true}));
    let (status, body) = api.form(Some(ADMIN), "/v1/oauth/introspect", &[("token", &token)]);
    assert_eq!(status, 503, "introspection while the store is down: {body}");

    pg.restart();
    // Back without restarting kairos.
    let (_, took) = within(Duration::from_secs(30), "ready again", || {
        let (status, _) = api.get(ADMIN, "/v1/health/ready");
        (status == 200).then_some(())
    });
    eprintln!("ready {took:?} after PostgreSQL came back");
    let (status, body) = request(&api, &platform, "orders-api/read");
    assert_eq!(status, 201, "{body}");
    assert_eq!(api.introspect(ADMIN, &token)["active"], true);
    let (status, v) = api.get(ADMIN, "/v1/audit/verify");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("ci-key-1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let mut server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    // A pending request (two approvals) and a long-poll on it in flight.
    let (status, body) = request(&api, &platform, "orders-api/admin");
    assert_eq!(status, 202, "{body}");
    let id = body["request"]["id"].as_str().unwrap().to_owned();
    let base = server.addr.clone();
    let poll_platform = platform.clone();
    let poll = std::thread::spawn(move || {
        let http = reqwest::blocking::Client::new();
        let resp = http
            .get(format!("{base}/v1/requests/{id}?wait=3s"))
            .bearer_auth(poll_platform)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    });
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, body) = poll.join().unwrap();
    assert_eq!(status, 200, "the long-poll in flight is answered: {body}");
    assert_eq!(body["request"]["state"], "pending", "{body}");
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0), "{}", server.log_text());
    assert!(server.log_text().contains("kairos stopped"));
    // Nothing listens any more.
    assert!(
        reqwest::blocking::Client::new()
            .get(server.url("/v1/health/live"))
            .timeout(Duration::from_secs(2))
            .send()
            .is_err()
    );
}

// ---- three replicas, a mixed workload, one SIGKILL, one PostgreSQL restart ----------

const DB_ENTITLEMENT: &str = "orders-db/readonly";

/// A client that sends each call to the next replica in turn and, when a replica does not
/// answer (killed) or answers 503 (the store restarting), tries the next one, for up to
/// 30 s. Each call returns the replica that answered.
struct RoundRobin {
    http: reqwest::blocking::Client,
    bases: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
}

impl RoundRobin {
    fn pick(&self) -> usize {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.bases.len()
    }

    fn send(
        &self,
        build: impl Fn(&reqwest::blocking::Client, &str) -> reqwest::blocking::RequestBuilder,
    ) -> (u16, Value, usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let i = self.pick();
            match build(&self.http, &self.bases[i]).send() {
                Ok(resp) if resp.status().as_u16() != 503 => {
                    let status = resp.status().as_u16();
                    let text = resp.text().unwrap_or_default();
                    return (
                        status,
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                        i,
                    );
                }
                Ok(resp) => {
                    let text = resp.text().unwrap_or_default();
                    assert!(
                        text.contains("store_unavailable") || text.contains("target_unavailable"),
                        "a 503 that does not say why: {text}"
                    );
                }
                Err(_) => {}
            }
            assert!(Instant::now() < deadline, "no replica answered for 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value, usize) {
        self.send(|http, base| {
            http.post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(body)
        })
    }

    fn get(&self, token: &str, path: &str) -> (u16, Value, usize) {
        self.send(|http, base| http.get(format!("{base}{path}")).bearer_auth(token))
    }
}

/// What the workload saw: every grant id handed out, with its kind.
#[derive(Default)]
struct Seen {
    token_grants: Vec<String>,
    account_grants: Vec<String>,
    approved_grants: Vec<String>,
    pending_left: Vec<String>,
    released: Vec<String>,
    long_polls_woken: usize,
}

fn db_config(dir: &Path, issuer: &TestIssuer, database: &str, prefix: &str) -> std::path::PathBuf {
    // Long enough that an approval caught by the drill's SIGKILL or PostgreSQL restart
    // (requests retried after 503s) still lands inside the window; short enough that the
    // requests left pending expire within the quiet wait.
    let path = write_config(dir, issuer, "pending_timeout = \"12s\"");
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
name = "{DB_ENTITLEMENT}"
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

fn body(entitlement: &str, ttl: &str, n: usize) -> Value {
    json!({
        "entitlement": entitlement, "ttl": ttl,
        "task": {"kind": "job", "ref": format!("run-{n}"), "reason": "replica drill"}
    })
}

/// One worker's share of the workload: token grants (some expire, some are released on
/// another replica), account grants (likewise), an approval with a long-poll on another
/// replica, and a pending request nobody approves.
/// When the drill's PostgreSQL was down: marked by the drill, read by the workers.
struct Outage {
    origin: Instant,
    /// Milliseconds from `origin` to the stop and to the restart; `u64::MAX` until then.
    down_ms: std::sync::atomic::AtomicU64,
    up_ms: std::sync::atomic::AtomicU64,
}

impl Outage {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            down_ms: std::sync::atomic::AtomicU64::new(u64::MAX),
            up_ms: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap()
    }

    fn went_down(&self) {
        let now = self.ms(Instant::now());
        self.down_ms.store(now, std::sync::atomic::Ordering::SeqCst);
    }

    fn came_back(&self) {
        let now = self.ms(Instant::now());
        self.up_ms.store(now, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether PostgreSQL was down, or back for less than `settle`, at some moment since
    /// `from`: while it is, the replicas' reads wait for their connections to come back.
    fn overlaps(&self, from: Instant, settle: Duration) -> bool {
        let down = self.down_ms.load(std::sync::atomic::Ordering::SeqCst);
        let up = self.up_ms.load(std::sync::atomic::Ordering::SeqCst);
        down != u64::MAX
            && (up == u64::MAX
                || up.saturating_add(u64::try_from(settle.as_millis()).unwrap()) >= self.ms(from))
    }
}

fn work(
    rr: &RoundRobin,
    platform: &str,
    approvers: &[String; 2],
    stop: &std::sync::atomic::AtomicBool,
    outage: &Outage,
    worker: usize,
) -> Seen {
    let mut seen = Seen::default();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let tag = worker * 10_000 + n;
        match n % 6 {
            0 | 1 => {
                let ttl = if n % 6 == 0 { "3s" } else { "10m" };
                let (status, b, _) =
                    rr.post(platform, "/v1/requests", &body("orders-api/read", ttl, tag));
                assert_eq!(status, 201, "{b}");
                let id = b["grant"]["id"].as_str().unwrap().to_owned();
                seen.token_grants.push(id.clone());
                if ttl == "10m" {
                    release(rr, platform, &id, &mut seen);
                }
            }
            2 | 3 => {
                let ttl = if n % 6 == 2 { "4s" } else { "10m" };
                let (status, b, _) =
                    rr.post(platform, "/v1/requests", &body(DB_ENTITLEMENT, ttl, tag));
                assert_eq!(status, 201, "{b}");
                assert_eq!(b["grant"]["state"], "active", "{b}");
                let id = b["grant"]["id"].as_str().unwrap().to_owned();
                seen.account_grants.push(id.clone());
                if ttl == "10m" && n % 12 == 3 {
                    release(rr, platform, &id, &mut seen);
                }
            }
            4 => {
                let (status, b, at) = rr.post(
                    platform,
                    "/v1/requests",
                    &body("orders-api/admin", "10m", tag),
                );
                assert_eq!(status, 202, "{b}");
                let id = b["request"]["id"].as_str().unwrap().to_owned();
                // The workload long-polls on another replica than the one it asked.
                let poll_base = rr.bases[(at + 1) % rr.bases.len()].clone();
                let poll_token = platform.to_owned();
                let poll_id = id.clone();
                let poll_started = Instant::now();
                let poll = std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(40))
                        .build()
                        .unwrap();
                    http.get(format!("{poll_base}/v1/requests/{poll_id}?wait=30s"))
                        .bearer_auth(poll_token)
                        .send()
                        .ok()
                        .filter(|r| r.status().as_u16() == 200)
                        .and_then(|r| r.json::<Value>().ok())
                });
                std::thread::sleep(Duration::from_millis(200));
                for approver in approvers {
                    let (status, r, _) = rr.post(
                        approver,
                        &format!("/v1/requests/{id}/approve"),
                        &json!({"reason": "drill"}),
                    );
                    // A retried approval after an answer was lost says it was counted.
                    assert!(
                        status == 200 || r.to_string().contains("already approved"),
                        "{status} {r}"
                    );
                }
                let approved_at = Instant::now();
                // The long-poll (if its replica still lives) wakes with the grant.
                if let Some(p) = poll.join().unwrap()
                    && p["request"]["state"] == "granted"
                {
                    // Within 3 s of the approval, unless PostgreSQL's restart came
                    // between: the polling replica's reads then wait for the database.
                    let took = approved_at.elapsed();
                    assert!(
                        took < Duration::from_secs(3)
                            || outage.overlaps(poll_started, Duration::from_secs(5)),
                        "a long-poll woke {took:?} after the approval, PostgreSQL up throughout"
                    );
                    seen.long_polls_woken += 1;
                }
                let (status, r, _) = rr.get(platform, &format!("/v1/requests/{id}"));
                assert_eq!(status, 200, "{r}");
                assert_eq!(r["request"]["state"], "granted", "{r}");
                seen.approved_grants
                    .push(r["request"]["grant_id"].as_str().unwrap().to_owned());
            }
            _ => {
                if seen.pending_left.len() < 2 {
                    let (status, b, _) = rr.post(
                        platform,
                        "/v1/requests",
                        &body("orders-api/admin", "10m", tag),
                    );
                    assert_eq!(status, 202, "{b}");
                    seen.pending_left
                        .push(b["request"]["id"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    seen
}

fn release(rr: &RoundRobin, platform: &str, id: &str, seen: &mut Seen) {
    let (status, r, _) = rr.post(platform, &format!("/v1/grants/{id}/release"), &json!({}));
    // A retried release after an answer was lost finds the grant ending already.
    assert!(status == 200 || status == 409, "{status} {r}");
    seen.released.push(id.to_owned());
}

fn store_rows(store: &str, sql: &str) -> Vec<String> {
    let out = std::process::Command::new("psql")
        .args([store, "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn three_replicas_a_sigkill_and_a_postgresql_restart_lose_and_double_nothing() {
    let started = Instant::now();
    let pg = PrivatePg::start(PgAuth::Trust);
    let store = format!("{}/postgres", pg.base_url());
    let target = common::pg::SharedDb::new();
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("ci-key-1");
    let config = db_config(
        &dir.path().join("cfg"),
        &issuer,
        &target.name,
        &target.prefix,
    );
    let admin_url = target.admin_url();
    let envs = [("KAIROS_IT_PG_ADMIN", admin_url.as_str())];
    let extra = ["--provisioning-grace", "5s", "--revocation-lease", "5s"];
    let a = replica_env(dir.path(), "a", None, Some(&config), &store, &extra, &envs);
    let b = replica_env(
        dir.path(),
        "b",
        Some(&a),
        Some(&config),
        &store,
        &extra,
        &envs,
    );
    let mut c = replica_env(
        dir.path(),
        "c",
        Some(&a),
        Some(&config),
        &store,
        &extra,
        &envs,
    );
    let api_a = Api::new(&a);
    let add_user = |name: &str| {
        let (status, body) = api_a.post(
            ADMIN,
            "/v1/users",
            json!({"name": name, "role": "approver", "teams": ["payments"]}),
        );
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    };
    let approvers = [add_user("alice"), add_user("bob")];
    let rr = RoundRobin {
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap(),
        bases: vec![a.addr.clone(), b.addr.clone(), c.addr.clone()],
        next: std::sync::atomic::AtomicUsize::new(0),
    };
    let platform = issuer.mint(SUBJECT, json!({}));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let outage = Outage::new();

    let seen: Vec<Seen> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|w| {
                let (rr, platform, approvers, stop, outage) =
                    (&rr, &platform, &approvers, &stop, &outage);
                s.spawn(move || work(rr, platform, approvers, stop, outage, w))
            })
            .collect();
        // A configuration applied on A mid-way: every live replica grants the new
        // entitlement within 2 s.
        std::thread::sleep(Duration::from_secs(4));
        add_audit_entitlement(&config);
        let out = a.cli(ADMIN, &["apply", config.to_str().unwrap()]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        std::thread::sleep(Duration::from_millis(2100));
        for base in &rr.bases {
            let api = Api {
                http: reqwest::blocking::Client::new(),
                base: base.clone(),
            };
            let (status, body) = request(&api, &platform, "orders-api/audit");
            assert_eq!(status, 201, "{base}: {body}");
        }
        // SIGKILL one replica mid-way.
        std::thread::sleep(Duration::from_secs(3));
        c.child.kill().unwrap();
        c.child.wait().unwrap();
        // PostgreSQL restarted once.
        std::thread::sleep(Duration::from_secs(3));
        outage.went_down();
        pg.stop();
        std::thread::sleep(Duration::from_secs(2));
        pg.restart();
        outage.came_back();
        std::thread::sleep(Duration::from_secs(6));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all = |f: fn(&Seen) -> &Vec<String>| -> Vec<String> {
        seen.iter().flat_map(|s| f(s).iter().cloned()).collect()
    };
    let issued: Vec<String> = [
        all(|s| &s.token_grants),
        all(|s| &s.account_grants),
        all(|s| &s.approved_grants),
    ]
    .concat();
    let woken: usize = seen.iter().map(|s| s.long_polls_woken).sum();
    eprintln!(
        "workload: {} grants ({} token, {} account, {} approved; {} long-polls woken on another replica), {} released, {} pending left",
        issued.len(),
        all(|s| &s.token_grants).len(),
        all(|s| &s.account_grants).len(),
        all(|s| &s.approved_grants).len(),
        woken,
        all(|s| &s.released).len(),
        all(|s| &s.pending_left).len(),
    );
    assert!(all(|s| &s.account_grants).len() >= 3 && all(|s| &s.approved_grants).len() >= 2);
    assert!(woken >= 1, "no long-poll woke on another replica");

    // Quiesce: nothing provisioning or ending, nothing active past its end, nothing
    // pending past its timeout (the killed replica's claims taken over after their lease).
    let quiet = Instant::now();
    loop {
        let busy = store_rows(
            &store,
            "SELECT count(*) FROM grants WHERE state IN ('provisioning', 'ending') \
               OR (state = 'active' AND expires_at < (extract(epoch FROM now()) * 1000)::bigint - 2000)",
        );
        let pending = store_rows(
            &store,
            "SELECT count(*) FROM requests WHERE state = 'pending'",
        );
        if busy == ["0"] && pending == ["0"] {
            break;
        }
        assert!(
            quiet.elapsed() < Duration::from_secs(40),
            "not quiet after 40 s: {busy:?} busy, {pending:?} pending\nA: {}\nB: {}",
            a.log_text(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Every grant handed out exists, issued once; no request has two grants.
    let stored: std::collections::BTreeSet<String> = store_rows(&store, "SELECT id FROM grants")
        .into_iter()
        .collect();
    let mut unique = std::collections::BTreeSet::new();
    for id in &issued {
        assert!(unique.insert(id.clone()), "grant {id} handed out twice");
        assert!(
            stored.contains(id),
            "grant {id} was handed out but is not stored"
        );
    }
    let doubled = store_rows(
        &store,
        "SELECT grant_id FROM audit WHERE kind = 'issued' GROUP BY grant_id HAVING count(*) > 1",
    );
    assert!(doubled.is_empty(), "issued twice: {doubled:?}");
    let two = store_rows(
        &store,
        "SELECT request_id FROM grants GROUP BY request_id HAVING count(*) > 1",
    );
    assert!(two.is_empty(), "requests with two grants: {two:?}");
    // Every ended grant verified gone once, with its receipt.
    let unverified = store_rows(
        &store,
        "SELECT g.id || ' ' || (SELECT count(*) FROM audit a WHERE a.grant_id = g.id AND a.kind = 'verified') \
         FROM grants g WHERE g.state = 'ended' AND (g.verified_at IS NULL OR \
         (SELECT count(*) FROM audit a WHERE a.grant_id = g.id AND a.kind = 'verified') <> 1)",
    );
    assert!(
        unverified.is_empty(),
        "ended grants not verified exactly once: {unverified:?}"
    );
    let ended = store_rows(&store, "SELECT count(*) FROM grants WHERE state = 'ended'");
    let expired = store_rows(
        &store,
        "SELECT count(*) FROM requests WHERE state = 'expired'",
    );
    eprintln!("ended grants {ended:?}, expired pending requests {expired:?}");
    assert_ne!(expired, ["0"], "no pending request expired");
    // The released and short-lived grants ended.
    for id in all(|s| &s.released) {
        assert!(
            store_rows(
                &store,
                &format!("SELECT state FROM grants WHERE id = '{id}'")
            ) == ["ended"],
            "released grant {id} did not end"
        );
    }

    // One audit chain, and it verifies.
    let api_b = Api::new(&b);
    let (status, v) = api_b.get(ADMIN, "/v1/audit/verify");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    let out = b.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // Accounts == live grants after a reconcile interval.
    std::thread::sleep(Duration::from_secs(3));
    let live: std::collections::BTreeSet<String> = store_rows(
        &store,
        "SELECT account FROM grants WHERE target = 'orders-db' AND state IN ('active', 'provisioning', 'ending')",
    )
    .into_iter()
    .collect();
    let roles: std::collections::BTreeSet<String> =
        common::pg::managed_roles(common::pg::SHARED_PG, &target.prefix)
            .into_iter()
            .filter(|r| !r.is_empty())
            .collect();
    assert_eq!(roles, live, "accounts on the target vs live account grants");
    eprintln!("three-replica drill took {:?}", started.elapsed());
}
