//! Chaos and residue through the real server, against private PostgreSQL and Redis
//! instances this file starts (and tears down) alone.
//!
//! - **Kill anywhere**: a mixed workload (tokens, PostgreSQL and Redis accounts with real
//!   sessions, releases, expiries) runs from a few client threads while the server is
//!   killed at random points (SIGKILL, and the `KAIROS_DANGER_CRASH_AT` hooks) several
//!   times and restarted on the same data directory. Once it has drained and reconciled,
//!   nothing may remain that backs no active grant: no account, no session, no active
//!   token; no grant reported issued may be missing; every ended grant has a verified
//!   receipt; the audit chain verifies. The RNG seed is printed (and read from
//!   `KAIROS_CHAOS_SEED`) so a failure can be replayed.
//! - **Downstream outage**: PostgreSQL stops while grants on it expire, are released and
//!   are requested; revocations retry, the alarm fires; PostgreSQL comes back on the same
//!   data and port; every revocation completes, each receipt says truthfully that access
//!   ended only after the restart, and the alarm clears.
//! - **One target down, another up, the broker restarted**: while PostgreSQL's revocations
//!   fail, a Redis grant that ends is still revoked promptly, and a broker restart in the
//!   middle of the outage does not silence the alarm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::pg::psql;
use common::private::{PgAuth, PrivatePg, PrivateRedis, redis_connect};
use common::*;
use kairos_domain::Timestamp;
use serde_json::{Value, json};
use sqlx::Connection;

/// Every account Kairos makes on the private instances starts with this.
const PREFIX: &str = "kairos_";
const TOKEN_ENT: &str = "orders-api/read";
const PG_ENT: &str = "orders-db/readonly";
const REDIS_ENT: &str = "cache/sessions-read";
/// A hand-made residue: once the reconciler has removed it, a whole pass ran after it was
/// made. Its name sorts after every grant's account (`kairos_` + hex), and both connectors
/// list accounts in name order, so that pass had already looked at every other account.
const SENTINEL: &str = "kairos_zzzz_sentinel";
const SIGKILL: i32 = 9;
const SIGABRT: i32 = 6;

// ---- small helpers --------------------------------------------------------------------

/// splitmix64: small, seedable, good enough to pick operations and timings.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn between_ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// The seed of this run: `KAIROS_CHAOS_SEED` if set, else fresh from the clock.
fn chaos_seed() -> u64 {
    match std::env::var("KAIROS_CHAOS_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("KAIROS_CHAOS_SEED={s:?} is not a u64")),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            // The low 64 bits of the nanoseconds, and the pid.
            (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
        }
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

/// The account a grant gets: the prefix and the grant id's hex.
fn account_of(grant_id: &str) -> String {
    format!("{PREFIX}{}", grant_id.trim_start_matches("grt_"))
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

/// A sample's value on /metrics (`name` with its labels, if any).
fn metric(api: &Api, name: &str) -> f64 {
    let (status, body) = api.get(ADMIN, "/metrics");
    assert_eq!(status, 200, "{body}");
    let text = body.as_str().unwrap_or_default();
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

/// Polls `probe` until it yields a value; after `timeout`, panics with `what` and the
/// last thing `probe` reported.
fn eventually<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "not within {timeout:?}: {what}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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

/// The base configuration plus a PostgreSQL target (admin URL from `KAIROS_IT_PG_ADMIN`,
/// database `postgres`) and, if asked, a Redis target (`KAIROS_IT_REDIS_ADMIN`), both
/// reconciled every second, with auto-granted entitlements.
fn write_chaos_config(dir: &Path, issuer: &TestIssuer, with_redis: bool) -> PathBuf {
    let path = write_config(dir, issuer, "");
    let mut targets = format!(
        r#"
[[target]]
name = "orders-db"
kind = "postgres"
admin_url_env = "KAIROS_IT_PG_ADMIN"
managed_prefix = "{PREFIX}"
reconcile_interval = "1s"

[[entitlement]]
name = "{PG_ENT}"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT CONNECT ON DATABASE postgres TO {{{{role}}}}", "GRANT SELECT ON orders TO {{{{role}}}}"]
"#
    );
    let mut policies = String::from(
        "@id(\"db-jobs\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"orders-db\") when { context.task_kind == \"job\" };\n",
    );
    if with_redis {
        targets.push_str(&format!(
            r#"
[[target]]
name = "cache"
kind = "redis"
admin_url_env = "KAIROS_IT_REDIS_ADMIN"
managed_prefix = "{PREFIX}"
reconcile_interval = "1s"

[[entitlement]]
name = "{REDIS_ENT}"
tier = "low"
max_ttl = "15m"
acl = ["~sessions:*", "+get"]
"#
        ));
        policies.push_str(
            "@id(\"cache-jobs\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"cache\");\n",
        );
    }
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[policy]", &format!("{targets}\n[policy]"));
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.join("policies/db.cedar"), policies).unwrap();
    path
}

fn request_body(entitlement: &str, ttl: &str, task_ref: &str) -> Value {
    json!({
        "entitlement": entitlement, "ttl": ttl,
        "task": {"kind": "job", "ref": task_ref, "reason": "chaos drill"}
    })
}

/// A connection URL for an issued account credential (holds its password: never print).
fn account_url(cred: &Value) -> String {
    let scheme = match cred["kind"].as_str().unwrap() {
        "postgres" => "postgres",
        "redis" => "redis",
        other => panic!("not an account credential: {other}"),
    };
    let mut url = format!(
        "{scheme}://{}:{}@{}:{}",
        cred["username"].as_str().unwrap(),
        cred["password"].as_str().unwrap(),
        cred["host"].as_str().unwrap(),
        cred["port"],
    );
    if let Some(db) = cred["database"].as_str() {
        url.push('/');
        url.push_str(db);
    }
    url
}

/// An error message with the password taken out (sqlx and redis do not echo it, but a
/// test must never be the one that logs a secret).
fn scrub(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .unwrap_or_default();
    if password.is_empty() {
        message.to_owned()
    } else {
        message.replace(password, "<password>")
    }
}

/// Opens a PostgreSQL session as the account and reads `orders` with it.
async fn pg_login(url: &str) -> Result<sqlx::PgConnection, String> {
    let attempt = async {
        let mut c = sqlx::PgConnection::connect(url).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&mut c)
            .await?;
        Ok::<_, sqlx::Error>((c, n))
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Err(_) => Err("no answer within 10 s".into()),
        Ok(Err(e)) => Err(scrub(&e.to_string(), url)),
        Ok(Ok((_, n))) if n != 1 => Err(format!("orders has {n} rows, expected 1")),
        Ok(Ok((c, _))) => Ok(c),
    }
}

/// Whether a PostgreSQL session still answers.
async fn pg_alive(conn: &mut sqlx::PgConnection) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::query("SELECT 1").execute(&mut *conn)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Opens a Redis session as the account and runs a permitted command.
fn redis_login(url: &str) -> Result<redis::Connection, String> {
    let mut c = redis_connect(url).map_err(|e| scrub(&e.to_string(), url))?;
    let v: Option<String> = redis::cmd("GET")
        .arg("sessions:1")
        .query(&mut c)
        .map_err(|e| scrub(&e.to_string(), url))?;
    assert_eq!(v, None);
    Ok(c)
}

/// Whether a Redis session still answers.
fn redis_alive(conn: &mut redis::Connection) -> bool {
    redis::cmd("GET")
        .arg("sessions:1")
        .query::<Option<String>>(conn)
        .is_ok()
}

/// Makes the sentinel residue on each instance and waits until the reconciler removed it
/// from all of them: proof that one full reconcile pass over each target ran after now.
fn await_reconcile_pass(pg: &PrivatePg, redis: Option<&PrivateRedis>) {
    psql(
        &pg.base_url(),
        "postgres",
        &format!("CREATE ROLE {SENTINEL} LOGIN"),
    );
    if let Some(r) = redis {
        let mut c = r.admin().unwrap();
        let () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(SENTINEL)
            .arg("off")
            .query(&mut c)
            .unwrap();
    }
    eventually(
        Duration::from_secs(30),
        "the reconciler removes the hand-made sentinel account",
        || {
            let mut left = Vec::new();
            if common::pg::managed_roles(&pg.base_url(), SENTINEL)
                .iter()
                .any(|r| r == SENTINEL)
            {
                left.push("postgres");
            }
            if redis.is_some_and(|r| r.users(SENTINEL).iter().any(|u| u == SENTINEL)) {
                left.push("redis");
            }
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still on {left:?}"))
            }
        },
    );
}

/// Managed PostgreSQL backends: (role, pid).
fn pg_sessions(pg: &PrivatePg) -> Vec<(String, String)> {
    psql(
        &pg.base_url(),
        "postgres",
        &format!(
            "SELECT usename || ' ' || pid FROM pg_stat_activity WHERE starts_with(usename::text, '{PREFIX}') ORDER BY 1"
        ),
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(u, p)| (u.to_owned(), p.to_owned()))
    .collect()
}

// ---- the kill-anywhere workload ---------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Token,
    Pg,
    Redis,
}

impl Kind {
    fn entitlement(self) -> &'static str {
        match self {
            Self::Token => TOKEN_ENT,
            Self::Pg => PG_ENT,
            Self::Redis => REDIS_ENT,
        }
    }
}

/// What a release call answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    NotAsked,
    /// 200: the grant ended as released.
    Released,
    /// 409: it had already ended (expired).
    AlreadyEnded,
    /// No answer (the server died meanwhile): it may or may not have ended.
    Lost,
}

/// A grant the workload got a 201 for.
struct Issued {
    id: String,
    kind: Kind,
    long_lived: bool,
    /// The signed token of a token grant (a secret: never printed).
    token: Option<String>,
    release: Release,
}

struct PgSession {
    grant: String,
    conn: sqlx::PgConnection,
}

struct RedisSession {
    grant: String,
    conn: redis::Connection,
}

#[derive(Default)]
struct WorkerLog {
    issued: Vec<Issued>,
    pg_sessions: Vec<PgSession>,
    redis_sessions: Vec<RedisSession>,
    /// Requests that got no answer (the server was down or died mid-way).
    lost: usize,
    /// Answers other than the expected ones, by "status code".
    other_answers: BTreeMap<String, usize>,
    /// Things that must not happen, whatever the crash timing.
    anomalies: Vec<String>,
}

/// The workload's HTTP client: follows the server's current address (it changes at each
/// restart) and reports a lost answer instead of panicking.
#[derive(Clone)]
struct Client {
    http: reqwest::blocking::Client,
    base: Arc<RwLock<String>>,
}

impl Client {
    fn call(
        &self,
        build: impl FnOnce(&reqwest::blocking::Client, &str) -> reqwest::blocking::RequestBuilder,
    ) -> Option<(u16, Value)> {
        let base = self.base.read().unwrap().clone();
        let resp = build(&self.http, &base).send().ok()?;
        let status = resp.status().as_u16();
        let text = resp.text().ok()?;
        Some((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

/// Per-worker caps on the sessions opened, of each kind, and of those for long-lived grants,
/// which stay open to the end (the private PostgreSQL has 200 connection slots; a session of a short
/// grant gives its slot back when the revocation kills it).
const MAX_SESSIONS: usize = 25;
const MAX_LONG_SESSIONS: usize = 6;

fn worker(
    n: u64,
    seed: u64,
    client: Client,
    issuer: Arc<TestIssuer>,
    rt: Arc<tokio::runtime::Runtime>,
    stop: Arc<AtomicBool>,
) -> WorkerLog {
    let mut rng = Rng::new(seed);
    let mut log = WorkerLog::default();
    let mut op = 0u64;
    while !stop.load(Ordering::Relaxed) {
        op += 1;
        let platform = issuer.mint(SUBJECT, json!({}));
        let roll = rng.below(100);
        let releasable: Vec<usize> = (0..log.issued.len())
            .filter(|&i| log.issued[i].release == Release::NotAsked)
            .collect();
        if roll < 15 && !releasable.is_empty() {
            let i = releasable[usize::try_from(rng.below(releasable.len() as u64)).unwrap()];
            let id = log.issued[i].id.clone();
            let answer = client.call(|h, base| {
                h.post(format!("{base}/v1/grants/{id}/release"))
                    .bearer_auth(&platform)
                    .json(&json!({}))
            });
            log.issued[i].release = match answer {
                Some((200, _)) => Release::Released,
                Some((409, _)) => Release::AlreadyEnded,
                None => {
                    log.lost += 1;
                    Release::Lost
                }
                Some((status, body)) => {
                    *log.other_answers
                        .entry(format!("release {status} {}", body["error"]["code"]))
                        .or_default() += 1;
                    log.anomalies
                        .push(format!("release of {id} answered {status}: {body}"));
                    Release::Lost
                }
            };
        } else if roll < 22 {
            let tokens: Vec<&Issued> = log.issued.iter().filter(|g| g.token.is_some()).collect();
            if tokens.is_empty() {
                continue;
            }
            let t = tokens[usize::try_from(rng.below(tokens.len() as u64)).unwrap()]
                .token
                .clone()
                .unwrap();
            match client.call(|h, base| {
                h.post(format!("{base}/v1/oauth/introspect"))
                    .bearer_auth(ADMIN)
                    .form(&[("token", t.as_str())])
            }) {
                Some((200, _)) => {}
                None => log.lost += 1,
                Some((status, body)) => {
                    *log.other_answers
                        .entry(format!("introspect {status}"))
                        .or_default() += 1;
                    log.anomalies
                        .push(format!("introspection answered {status}: {body}"));
                }
            }
        } else {
            let kind = match roll {
                22..=47 => Kind::Token,
                48..=73 => Kind::Pg,
                _ => Kind::Redis,
            };
            // Most grants are short: they expire during the run, some while the server is down.
            let long_lived = rng.below(100) < 35;
            let ttl = if long_lived {
                "12m".to_owned()
            } else {
                format!("{}s", 2 + rng.below(3))
            };
            let body = request_body(kind.entitlement(), &ttl, &format!("chaos-{n}-{op}"));
            let answer = client.call(|h, base| {
                h.post(format!("{base}/v1/requests"))
                    .bearer_auth(&platform)
                    .json(&body)
            });
            match answer {
                None => log.lost += 1,
                Some((201, body)) => issued(&mut log, kind, long_lived, &body, &rt),
                Some((status, body)) => {
                    let code = body["error"]["code"].as_str().unwrap_or("?");
                    *log.other_answers
                        .entry(format!("request {status} {code}"))
                        .or_default() += 1;
                    // A refusal may say why (503: a target busy or down), but a server
                    // error is a bug whatever the crash timing.
                    if status >= 500 && status != 503 {
                        log.anomalies
                            .push(format!("a request answered {status}: {}", body["error"]));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.below(40)));
    }
    log
}

trait SessionOf {
    fn grant(&self) -> &str;
}

impl SessionOf for PgSession {
    fn grant(&self) -> &str {
        &self.grant
    }
}

impl SessionOf for RedisSession {
    fn grant(&self) -> &str {
        &self.grant
    }
}

/// Whether the workload opens one more session of this kind (see [`MAX_SESSIONS`]).
fn may_open<S: SessionOf>(sessions: &[S], issued: &[Issued], long_lived: bool) -> bool {
    let long = || {
        sessions
            .iter()
            .filter(|s| issued.iter().any(|g| g.id == s.grant() && g.long_lived))
            .count()
    };
    sessions.len() < MAX_SESSIONS && (!long_lived || long() < MAX_LONG_SESSIONS)
}

/// Records a 201 and, for an account, opens a real session with it.
fn issued(
    log: &mut WorkerLog,
    kind: Kind,
    long_lived: bool,
    body: &Value,
    rt: &tokio::runtime::Runtime,
) {
    let id = body["grant"]["id"].as_str().unwrap().to_owned();
    let cred = &body["credential"];
    let mut g = Issued {
        id: id.clone(),
        kind,
        long_lived,
        token: None,
        release: Release::NotAsked,
    };
    match kind {
        Kind::Token => g.token = Some(cred["access_token"].as_str().unwrap().to_owned()),
        Kind::Pg if may_open(&log.pg_sessions, &log.issued, long_lived) => {
            let url = account_url(cred);
            match rt.block_on(pg_login(&url)) {
                Ok(conn) => log.pg_sessions.push(PgSession {
                    grant: id.clone(),
                    conn,
                }),
                // A short grant may be gone already; a long one must let its holder in.
                Err(e) if long_lived => log.anomalies.push(format!(
                    "grant {id} (12m): PostgreSQL login right after issuance failed: {e}"
                )),
                Err(_) => {}
            }
        }
        Kind::Redis if may_open(&log.redis_sessions, &log.issued, long_lived) => {
            let url = account_url(cred);
            match redis_login(&url) {
                Ok(conn) => log.redis_sessions.push(RedisSession {
                    grant: id.clone(),
                    conn,
                }),
                Err(e) if long_lived => log.anomalies.push(format!(
                    "grant {id} (12m): Redis login right after issuance failed: {e}"
                )),
                Err(_) => {}
            }
        }
        Kind::Pg | Kind::Redis => {}
    }
    log.issued.push(g);
}

/// Log lines (of every life of the server) that mention any of `needles`.
fn log_lines_about(logs: &str, needles: &BTreeSet<String>, max: usize) -> String {
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n.as_str())))
        .collect();
    let skip = lines.len().saturating_sub(max);
    lines[skip..].join("\n")
}

#[test]
fn kill_anywhere_leaves_no_residual_access() {
    let seed = chaos_seed();
    println!("chaos seed: {seed} (replay with KAIROS_CHAOS_SEED={seed})");
    let mut rng = Rng::new(seed);

    let pg = PrivatePg::start(PgAuth::Passwords);
    psql(
        &pg.base_url(),
        "postgres",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)",
    );
    let redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let issuer = Arc::new(TestIssuer::new("k1"));
    let config = write_chaos_config(&dir.path().join("cfg"), &issuer, true);
    let data = dir.path().join("data");
    let pg_admin = format!("{}/postgres", pg.base_url());
    let redis_admin = redis.url();
    // A stuck provisioning is aborted after 5 s; a crashed claim is retried after 3 s. The
    // address changes at each restart, the `iss` of the tokens must not.
    let flags = [
        "--provisioning-grace",
        "5s",
        "--revocation-lease",
        "3s",
        "--issuer-url",
        "https://kairos.chaos.test",
    ];
    let start = |crash: Option<&str>| {
        let mut envs = vec![
            ("KAIROS_IT_PG_ADMIN", pg_admin.as_str()),
            ("KAIROS_IT_REDIS_ADMIN", redis_admin.as_str()),
        ];
        if let Some(point) = crash {
            envs.push(("KAIROS_DANGER_CRASH_AT", point));
        }
        Server::start_env(&data, Some(&config), None, &flags, &envs)
    };
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );

    // The workload runs across every life of the server.
    let mut server = start(None);
    let client = Client {
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        base: Arc::new(RwLock::new(server.addr.clone())),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3u64)
        .map(|n| {
            let (client, issuer, rt, stop) = (
                client.clone(),
                Arc::clone(&issuer),
                Arc::clone(&rt),
                Arc::clone(&stop),
            );
            let seed = seed ^ (n + 1).wrapping_mul(0xA076_1D64_78BD_642F);
            std::thread::spawn(move || worker(n, seed, client, issuer, rt, stop))
        })
        .collect();

    let workload_started = Instant::now();
    // 4 to 6 deaths: the first by SIGKILL, one at each crash point, the others by SIGKILL,
    // in an order the seed picks.
    let kills = 4 + rng.below(3);
    let mut schedule: Vec<Option<&'static str>> = vec![None; usize::try_from(kills).unwrap()];
    schedule[1] = Some("after-provision");
    schedule[2] = Some("after-revoke");
    for i in (2..schedule.len()).rev() {
        let j = 1 + usize::try_from(rng.below(i as u64)).unwrap();
        schedule.swap(i, j);
    }
    let mut deaths = Vec::new();
    let mut logs = String::new();
    for (life, crash) in schedule.into_iter().enumerate() {
        if life > 0 {
            server = start(crash);
            *client.base.write().unwrap() = server.addr.clone();
        }
        let born = Instant::now();
        let death = match crash {
            None => {
                std::thread::sleep(rng.between_ms(1000, 4000));
                server.child.kill().unwrap();
                let status = server.child.wait().unwrap();
                assert_eq!(status.signal(), Some(SIGKILL), "{status:?}");
                format!("SIGKILL after {:.1}s", born.elapsed().as_secs_f64())
            }
            Some(point) => {
                let deadline = born + Duration::from_secs(8);
                loop {
                    if let Some(status) = server.child.try_wait().unwrap() {
                        assert_eq!(status.signal(), Some(SIGABRT), "{status:?}");
                        assert!(server.log_text().contains("KAIROS_DANGER_CRASH_AT reached"));
                        break format!(
                            "aborted at {point} after {:.1}s",
                            born.elapsed().as_secs_f64()
                        );
                    }
                    if Instant::now() >= deadline {
                        server.child.kill().unwrap();
                        let _ = server.child.wait();
                        break format!("{point} not reached in 8s: SIGKILL");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        println!("chaos: life {life}: {death}");
        deaths.push(death);
        logs.push_str(&format!("==== life {life} ====\n{}", server.log_text()));
    }
    stop.store(true, Ordering::Relaxed);
    let mut logs_of_workers: Vec<WorkerLog> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();
    let workload_secs = workload_started.elapsed().as_secs_f64();

    // The last life: no crash. Let it drain and reconcile.
    drop(server);
    let server = start(None);
    let api = Api::new(&server);
    let drained = Instant::now();
    loop {
        let all = grants(&api);
        let horizon = now_millis() + 60_000;
        let pending: Vec<&Value> = all
            .iter()
            .filter(|g| {
                !(g["state"] == "ended"
                    || (g["state"] == "active" && millis(&g["expires_at"]) > horizon))
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        if drained.elapsed() > Duration::from_secs(90) {
            let ids: BTreeSet<String> = pending
                .iter()
                .flat_map(|g| {
                    let id = g["id"].as_str().unwrap();
                    [id.to_owned(), id.trim_start_matches("grt_").to_owned()]
                })
                .collect();
            logs.push_str(&format!("==== last life ====\n{}", server.log_text()));
            panic!(
                "seed {seed}: the revocation queue did not drain in 90 s; {} grant(s) left:\n  {}\n\nserver log lines about them:\n{}",
                pending.len(),
                pending
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  "),
                log_lines_about(&logs, &ids, 200)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    await_reconcile_pass(&pg, Some(&redis));
    let drain_secs = drained.elapsed().as_secs_f64();
    logs.push_str(&format!("==== last life ====\n{}", server.log_text()));

    // ---- what is left ------------------------------------------------------------------
    let all = grants(&api);
    let by_id: BTreeMap<String, &Value> = all
        .iter()
        .map(|g| (g["id"].as_str().unwrap().to_owned(), g))
        .collect();
    let state_of = |id: &str| {
        by_id
            .get(id)
            .map(|g| g["state"].as_str().unwrap().to_owned())
    };
    let active_accounts: BTreeSet<String> = all
        .iter()
        .filter(|g| g["state"] == "active")
        .map(|g| account_of(g["id"].as_str().unwrap()))
        .collect();
    let mut violations: Vec<String> = Vec::new();
    let mut implicated: BTreeSet<String> = BTreeSet::new();

    // Accounts that back no active grant, and active grants without their account.
    let roles = common::pg::managed_roles(&pg.base_url(), PREFIX);
    let users = redis.users(PREFIX);
    let residual_roles: Vec<&String> = roles
        .iter()
        .filter(|r| !active_accounts.contains(*r))
        .collect();
    let residual_users: Vec<&String> = users
        .iter()
        .filter(|u| !active_accounts.contains(*u))
        .collect();
    for r in &residual_roles {
        violations.push(format!("PostgreSQL role {r} backs no active grant"));
        implicated.insert((*r).clone());
    }
    for u in &residual_users {
        violations.push(format!("Redis ACL user {u} backs no active grant"));
        implicated.insert((*u).clone());
    }
    for g in all.iter().filter(|g| g["state"] == "active") {
        let account = account_of(g["id"].as_str().unwrap());
        let present = match g["target"].as_str().unwrap() {
            "orders-db" => roles.contains(&account),
            "cache" => users.contains(&account),
            _ => true,
        };
        if !present {
            violations.push(format!(
                "active grant {} has no account downstream",
                g["id"]
            ));
            implicated.insert(g["id"].as_str().unwrap().to_owned());
        }
    }

    // Live sessions of accounts that back no active grant, seen by the servers…
    let mut residual_sessions = 0usize;
    for (role, pid) in pg_sessions(&pg) {
        if !active_accounts.contains(&role) {
            residual_sessions += 1;
            violations.push(format!(
                "PostgreSQL backend {pid} of {role} is still connected"
            ));
            implicated.insert(role);
        }
    }
    for (user, id) in redis.clients(PREFIX) {
        if !active_accounts.contains(&user) {
            residual_sessions += 1;
            violations.push(format!("Redis client {id} of {user} is still connected"));
            implicated.insert(user);
        }
    }
    // …and by the sessions the workload opened: those of ended grants must be dead, those
    // of active grants alive.
    let (mut pg_opened, mut redis_opened) = (0, 0);
    for w in &mut logs_of_workers {
        for s in &mut w.pg_sessions {
            pg_opened += 1;
            let alive = rt.block_on(pg_alive(&mut s.conn));
            let active = state_of(&s.grant).as_deref() == Some("active");
            if alive && !active {
                residual_sessions += 1;
                violations.push(format!(
                    "the PostgreSQL session of ended grant {} still answers",
                    s.grant
                ));
                implicated.insert(s.grant.clone());
            } else if !alive && active {
                violations.push(format!(
                    "the PostgreSQL session of active grant {} was killed",
                    s.grant
                ));
                implicated.insert(s.grant.clone());
            }
        }
        for s in &mut w.redis_sessions {
            redis_opened += 1;
            let alive = redis_alive(&mut s.conn);
            let active = state_of(&s.grant).as_deref() == Some("active");
            if alive && !active {
                residual_sessions += 1;
                violations.push(format!(
                    "the Redis session of ended grant {} still answers",
                    s.grant
                ));
                implicated.insert(s.grant.clone());
            } else if !alive && active {
                violations.push(format!(
                    "the Redis session of active grant {} was killed",
                    s.grant
                ));
                implicated.insert(s.grant.clone());
            }
        }
    }

    // Every grant reported issued is in the store, and tells the truth about its end.
    let mut residual_tokens = 0usize;
    let mut counts: BTreeMap<(Kind, &str), usize> = BTreeMap::new();
    for w in &logs_of_workers {
        for g in &w.issued {
            let Some(stored) = by_id.get(&g.id) else {
                violations.push(format!(
                    "grant {} ({:?}) was issued (201) but is missing from the store",
                    g.id, g.kind
                ));
                implicated.insert(g.id.clone());
                continue;
            };
            let state = stored["state"].as_str().unwrap();
            let reason = stored["receipt"]["reason"].as_str().unwrap_or("");
            *counts
                .entry((g.kind, if state == "ended" { reason } else { state }))
                .or_default() += 1;
            let ok = match (state, g.release) {
                ("ended", Release::Released) => reason == "released",
                ("ended", Release::NotAsked | Release::AlreadyEnded) => reason == "expired",
                ("ended", Release::Lost) => reason == "expired" || reason == "released",
                ("active", Release::Released | Release::AlreadyEnded) => false,
                ("active", _) => g.long_lived,
                _ => false,
            };
            if !ok {
                violations.push(format!(
                    "grant {} ({:?}, {}, release {:?}) is {state} ({reason}): {stored}",
                    g.id,
                    g.kind,
                    if g.long_lived { "12m" } else { "short" },
                    g.release
                ));
                implicated.insert(g.id.clone());
            }
            if let Some(token) = &g.token {
                let active = api.introspect(ADMIN, token)["active"] == true;
                if active && state != "active" {
                    residual_tokens += 1;
                    violations.push(format!(
                        "the token of ended grant {} introspects active",
                        g.id
                    ));
                    implicated.insert(g.id.clone());
                } else if !active && state == "active" {
                    violations.push(format!(
                        "the token of active grant {} introspects inactive",
                        g.id
                    ));
                    implicated.insert(g.id.clone());
                }
            }
        }
    }

    // Every ended grant — issued, aborted, or never answered — has a verified receipt.
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    for g in all.iter().filter(|g| g["state"] == "ended") {
        let r = &g["receipt"];
        // The catalog check always; a login probe too, or (in a batch) on a sample.
        let method_ok = match g["target"].as_str().unwrap() {
            "orders-db" => {
                ["pg_roles+login", "pg_roles"].contains(&r["method"].as_str().unwrap_or(""))
            }
            "cache" => ["acl+auth", "acl"].contains(&r["method"].as_str().unwrap_or("")),
            _ => r["method"].is_string(),
        };
        let ok = r["verified_at"].is_string()
            && r["revoked_at"].is_string()
            && millis(&r["verified_at"]) >= millis(&r["ended_at"])
            && millis(&r["verified_at"]) >= millis(&r["revoked_at"])
            && method_ok;
        *methods
            .entry(r["method"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        if !ok {
            violations.push(format!("ended grant without a sound verified receipt: {g}"));
            implicated.insert(g["id"].as_str().unwrap().to_owned());
        }
    }

    for w in &logs_of_workers {
        for a in &w.anomalies {
            violations.push(format!("during the workload: {a}"));
        }
    }
    let audit = server.cli(ADMIN, &["audit", "verify"]);
    if !audit.status.success() {
        violations.push(format!(
            "audit verify: {}{}",
            stdout(&audit),
            stderr(&audit)
        ));
    }

    // ---- the report ----------------------------------------------------------------------
    let issued_total: usize = logs_of_workers.iter().map(|w| w.issued.len()).sum();
    let lost: usize = logs_of_workers.iter().map(|w| w.lost).sum();
    let mut other: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &logs_of_workers {
        for (k, v) in &w.other_answers {
            *other.entry(k.as_str()).or_default() += v;
        }
    }
    println!(
        "chaos: seed {seed}; {} lives ({deaths:?}); workload {workload_secs:.1}s, drain+reconcile {drain_secs:.1}s",
        deaths.len()
    );
    println!(
        "chaos: {} grants in the store, {issued_total} answered 201 ({counts:?}); {lost} requests unanswered; other answers {other:?}; sessions opened: {pg_opened} PostgreSQL, {redis_opened} Redis; receipts by method {methods:?}",
        all.len()
    );
    let residual_accounts = residual_roles.len() + residual_users.len();
    let residual = residual_accounts + residual_sessions + residual_tokens;
    println!(
        "chaos: residual access = {residual} (accounts {residual_accounts}, sessions {residual_sessions}, active tokens {residual_tokens})"
    );
    if !violations.is_empty() {
        let needles: BTreeSet<String> = implicated
            .iter()
            .flat_map(|s| [s.clone(), s.trim_start_matches(PREFIX).to_owned()])
            .collect();
        panic!(
            "seed {seed}: {} violation(s):\n  {}\n\nserver log lines about them:\n{}",
            violations.len(),
            violations.join("\n  "),
            log_lines_about(&logs, &needles, 200)
        );
    }
    assert_eq!(residual, 0);
    assert!(issued_total > 0, "the workload got nothing issued");
}

// ---- the outage ---------------------------------------------------------------------------

#[test]
fn downstream_outage_raises_the_alarm_and_receipts_tell_when_access_ended() {
    let pg = PrivatePg::start(PgAuth::Passwords);
    let base = pg.base_url();
    psql(
        &base,
        "postgres",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)",
    );
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_chaos_config(&dir.path().join("cfg"), &issuer, false);
    let admin_url = format!("{base}/postgres");
    // The alarm fires at the second failed attempt (default 5: ~40 s of a down target).
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &["--revocation-alarm-after", "2"],
        &[("KAIROS_IT_PG_ADMIN", admin_url.as_str())],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Issue: one grant that outlives the outage, one released during it, two that expire
    // during it. Each is used with a real session.
    let issue = |ttl: &str, task: &str| -> (String, String, i64) {
        let (status, body) = api.post(&platform, "/v1/requests", request_body(PG_ENT, ttl, task));
        assert_eq!(status, 201, "{}", body["error"]);
        let url = account_url(&body["credential"]);
        rt.block_on(pg_login(&url)).unwrap();
        (
            body["grant"]["id"].as_str().unwrap().to_owned(),
            url,
            millis(&body["grant"]["expires_at"]),
        )
    };
    let (live, live_url, _) = issue("20m", "outage-live");
    let (released, released_url, _) = issue("20m", "outage-released");
    let expiring: Vec<(String, String, i64)> = ["6s", "7s"]
        .iter()
        .enumerate()
        .map(|(i, ttl)| issue(ttl, &format!("outage-expiring-{i}")))
        .collect();
    let first_expiry = expiring.iter().map(|e| e.2).min().unwrap();

    // The target goes down before any of them expires.
    pg.stop();
    let stopped_at = now_millis();
    let outage = Instant::now();
    assert!(
        stopped_at < first_expiry,
        "PostgreSQL stopped {} ms after the first grant expired: the outage was not observed",
        stopped_at - first_expiry
    );

    // During the outage: a release succeeds (the grant ends; its revocation is queued)…
    let (status, g) = api.post(
        &platform,
        &format!("/v1/grants/{released}/release"),
        json!({}),
    );
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["state"], "revoking", "{g}");
    // …a new request is refused as unavailable, its half-begun grant aborted…
    let before: BTreeSet<String> = grants(&api)
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        request_body(PG_ENT, "20m", "outage-refused"),
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "target_unavailable", "{body}");
    let aborted: Vec<String> = grants(&api)
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(aborted.len(), 1, "{aborted:?}");
    let aborted = aborted[0].clone();

    // …and every ended grant's revocation fails, is retried, and raises the alarm.
    let mut ended: Vec<(String, &str)> =
        vec![(released.clone(), "released"), (aborted.clone(), "aborted")];
    ended.extend(expiring.iter().map(|e| (e.0.clone(), "expired")));
    let alarm_seen = eventually(
        Duration::from_secs(120),
        "every ended grant has failed twice and the alarm gauge counts them all",
        || {
            let mut behind = Vec::new();
            for (id, reason) in &ended {
                let g = grant(&api, id);
                assert_ne!(
                    g["state"], "ended",
                    "verified gone while the target is down: {g}"
                );
                if g["state"] == "active" {
                    // Not yet expired.
                    behind.push(format!("{id}: active"));
                    continue;
                }
                assert_eq!(g["receipt"]["reason"], *reason, "{g}");
                if g["receipt"]["attempts"].as_u64().unwrap_or(0) < 2 {
                    behind.push(format!("{id}: {}", g["receipt"]));
                }
            }
            let alarming = metric(&api, "kairos_revocations_alarming");
            if behind.is_empty() && alarming >= ended.len() as f64 {
                Ok(alarming)
            } else {
                Err(format!(
                    "alarming={alarming}; fewer than 2 attempts: {behind:?}"
                ))
            }
        },
    );
    assert_eq!(alarm_seen, ended.len() as f64, "only these grants fail");
    let alarm_after = outage.elapsed();
    assert!(now_millis() > first_expiry + 2_000);
    assert!(
        server.log_text().contains("revocation keeps failing"),
        "the alarm is logged too"
    );
    let urls: Vec<&String> = expiring
        .iter()
        .map(|e| &e.1)
        .chain([&released_url])
        .collect();
    for (id, _) in &ended {
        let g = grant(&api, id);
        let error = g["receipt"]["last_error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{g}");
        for url in &urls {
            assert_eq!(scrub(error, url), error, "a password in {id}'s last_error");
        }
    }
    assert!(metric(&api, "kairos_revocation_failures_total") >= 2.0 * ended.len() as f64);
    assert_eq!(grant(&api, &live)["state"], "active");

    // PostgreSQL comes back on the same data and port.
    let restarted_at = now_millis();
    pg.restart();

    // The expired grants' accounts refuse logins at once (native VALID UNTIL, or dropped).
    for (id, url, _) in &expiring {
        assert!(
            rt.block_on(pg_login(url)).is_err(),
            "expired grant {id}: a login succeeded after the restart"
        );
    }
    // The released grant had no native expiry: its account works until Kairos drops it.
    // Every login that gets in is kept open (it must be killed), and the receipt must not
    // claim access ended before the last one began.
    let mut last_login_in = None;
    let mut late_sessions = Vec::new();
    let mut logins_in = 0u32;
    eventually(
        Duration::from_secs(60),
        "the released grant's login is refused",
        || {
            let began = now_millis();
            match rt.block_on(pg_login(&released_url)) {
                Ok(conn) => {
                    last_login_in = Some(began);
                    logins_in += 1;
                    // Keep the first three and the latest (PostgreSQL has 100 slots).
                    late_sessions.push(conn);
                    if late_sessions.len() > 4 {
                        let extra = late_sessions.remove(3);
                        rt.block_on(async move {
                            let _ = extra.close().await;
                        });
                    }
                    Err(format!(
                        "a login as the released grant's account still gets in ({logins_in} so far)"
                    ))
                }
                Err(_) => Ok(()),
            }
        },
    );

    let back_after = outage.elapsed();
    // Every revocation completes and verifies, and says when access really ended.
    for (id, reason) in &ended {
        let g = api.wait_grant(ADMIN, id, Duration::from_secs(60), |g| {
            g["state"] == "ended"
        });
        let r = &g["receipt"];
        assert_eq!(r["reason"], *reason, "{g}");
        // The catalog check always; a login probe too, or (revoked in a batch) on a sample.
        assert!(
            r["method"] == "pg_roles+login" || r["method"] == "pg_roles",
            "{g}"
        );
        assert!(
            r["evidence"]
                .as_str()
                .unwrap()
                .contains("absent from pg_roles"),
            "{g}"
        );
        assert!(millis(&r["ended_at"]) <= restarted_at, "{g}");
        assert!(millis(&r["revoked_at"]) >= restarted_at, "{g}");
        assert!(millis(&r["verified_at"]) >= restarted_at, "{g}");
        assert!(millis(&r["verified_at"]) >= millis(&r["revoked_at"]), "{g}");
        if *id == released
            && let Some(began) = last_login_in
        {
            assert!(
                millis(&r["revoked_at"]) >= began,
                "a login began at {began} ms, after the receipt's revoked_at: {g}"
            );
        }
    }
    rt.block_on(async {
        for mut s in late_sessions {
            assert!(
                !pg_alive(&mut s).await,
                "a session opened after the restart survived the revocation"
            );
        }
    });
    for (id, _) in &ended {
        assert!(
            !common::pg::managed_roles(&base, &account_of(id)).contains(&account_of(id)),
            "{id}'s role is still there"
        );
    }

    // The grant that outlived the outage still works: the reconciler left its account be.
    await_reconcile_pass(&pg, None);
    assert_eq!(grant(&api, &live)["state"], "active");
    let mut conn = rt
        .block_on(pg_login(&live_url))
        .expect("the live grant's login works");
    assert!(rt.block_on(pg_alive(&mut conn)));
    let roles = common::pg::managed_roles(&base, PREFIX);
    let residue: Vec<&String> = roles.iter().filter(|r| **r != account_of(&live)).collect();
    println!(
        "outage: residual access = {} managed role(s) backing no active grant {residue:?}",
        residue.len()
    );
    assert!(residue.is_empty(), "{residue:?}");
    assert_eq!(metric(&api, "kairos_revoking_grants"), 0.0);
    assert!(metric(&api, "kairos_revocations_verified_total") >= ended.len() as f64);
    assert_audit_verifies(&server);
    println!(
        "outage: alarm gauge reached {alarm_seen} at +{:.1}s; PostgreSQL back at +{:.1}s; released grant's logins still got in after the restart: {logins_in}; all verified and reconciled at +{:.1}s",
        alarm_after.as_secs_f64(),
        back_after.as_secs_f64(),
        outage.elapsed().as_secs_f64()
    );

    // Once every revocation has verified, nothing is failing any more: the alarm clears
    // (at once, or at the next refresh of the gauges).
    let clear_by = Instant::now() + Duration::from_secs(35);
    let alarming = loop {
        let alarming = metric(&api, "kairos_revocations_alarming");
        if alarming == 0.0 || Instant::now() >= clear_by {
            break alarming;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        alarming, 0.0,
        "kairos_revocations_alarming stays at {alarming} for 35 s after every alarming revocation verified \
         (the gauge is incremented at the threshold and never decremented)"
    );
}

// ---- one target down, another healthy, the broker restarted --------------------------------

/// While PostgreSQL is down and its revocations keep failing, a Redis grant that ends must
/// still be revoked promptly (its access is not held hostage by another target's retries),
/// and a broker restart in the middle of the outage must not silence the alarm.
#[test]
fn an_outage_neither_holds_back_other_targets_nor_loses_its_alarm_across_a_restart() {
    let pg = PrivatePg::start(PgAuth::Passwords);
    let base = pg.base_url();
    psql(
        &base,
        "postgres",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)",
    );
    let redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_chaos_config(&dir.path().join("cfg"), &issuer, true);
    let data = dir.path().join("data");
    let pg_admin = format!("{base}/postgres");
    let redis_admin = redis.url();
    // The alarm fires at the first failed attempt: the outage is certain here. Jobs the
    // killed broker had claimed are taken up again 5 s after (one broker: no other claimant).
    let start = || {
        Server::start_env(
            &data,
            Some(&config),
            None,
            &["--revocation-alarm-after", "1", "--revocation-lease", "5s"],
            &[
                ("KAIROS_IT_PG_ADMIN", pg_admin.as_str()),
                ("KAIROS_IT_REDIS_ADMIN", redis_admin.as_str()),
            ],
        )
    };
    let mut server = start();
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let mut violations: Vec<String> = Vec::new();

    // Three PostgreSQL grants of one task, and a Redis grant in use.
    let mut pg_grants = Vec::new();
    for _ in 0..3 {
        let (status, body) = api.post(
            &platform,
            "/v1/requests",
            request_body(PG_ENT, "20m", "outage-batch"),
        );
        assert_eq!(status, 201, "{}", body["error"]);
        pg_grants.push(body["grant"]["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        request_body(REDIS_ENT, "10m", "outage-cache"),
    );
    assert_eq!(status, 201, "{}", body["error"]);
    let redis_grant = body["grant"]["id"].as_str().unwrap().to_owned();
    let redis_url = account_url(&body["credential"]);
    let mut redis_session = redis_login(&redis_url).unwrap();

    // PostgreSQL goes down; an operator revokes the task's grants (one transaction, so the
    // revocation worker takes them up together) and their revocations start failing.
    pg.stop();
    let outage = Instant::now();
    let (status, body) = api.post(
        ADMIN,
        "/v1/grants/revoke",
        json!({"task_ref": "outage-batch"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["grants"].as_array().unwrap().len(), 3, "{body}");
    // The worker is woken by the revoke and claims the three at once; by now it is well
    // into their (failing) batch.
    std::thread::sleep(Duration::from_secs(2));

    // The Redis grant ends now; Redis is up, so its revocation should take moments.
    let (status, g) = api.post(
        &platform,
        &format!("/v1/grants/{redis_grant}/release"),
        json!({}),
    );
    assert_eq!(status, 200, "{g}");
    let g = api.wait_grant(ADMIN, &redis_grant, Duration::from_secs(90), |g| {
        g["state"] == "ended"
    });
    let r = &g["receipt"];
    let held_for = millis(&r["verified_at"]) - millis(&r["ended_at"]);
    println!(
        "isolation: the Redis grant was verified gone {held_for} ms after its release, during the PostgreSQL outage"
    );
    if held_for > 10_000 {
        violations.push(format!(
            "a released Redis grant kept its access for {held_for} ms (ended_at {} → revoked_at {}) while another target's revocations were failing: the revocation pass waits for the down target's batch before it takes up new work",
            r["ended_at"], r["revoked_at"]
        ));
    }
    assert!(
        !redis_alive(&mut redis_session),
        "the Redis session must be killed"
    );
    assert!(redis_login(&redis_url).is_err(), "AUTH must fail");
    assert!(redis.users(PREFIX).is_empty(), "{:?}", redis.users(PREFIX));

    // The alarm counts the three failing revocations.
    let attempts_of = |api: &Api| -> Vec<u64> {
        pg_grants
            .iter()
            .map(|id| grant(api, id)["receipt"]["attempts"].as_u64().unwrap_or(0))
            .collect()
    };
    eventually(
        Duration::from_secs(90),
        "the three failing revocations raise the alarm",
        || {
            let alarming = metric(&api, "kairos_revocations_alarming");
            if alarming >= 3.0 {
                Ok(())
            } else {
                Err(format!(
                    "alarming={alarming}, attempts {:?}",
                    attempts_of(&api)
                ))
            }
        },
    );
    let before = attempts_of(&api);

    // The broker restarts (a deploy, a crash) while PostgreSQL is still down. The
    // revocations keep failing; the alarm must still say so.
    server.child.kill().unwrap();
    let _ = server.child.wait();
    drop(server);
    let server = start();
    let api = Api::new(&server);
    eventually(
        Duration::from_secs(90),
        "each revocation fails again after the restart",
        || {
            let now = attempts_of(&api);
            if now.iter().zip(&before).all(|(n, b)| n > b) {
                Ok(())
            } else {
                Err(format!("attempts {now:?}, before the restart {before:?}"))
            }
        },
    );
    // However the gauge is kept (at each failure, or refreshed from the store), it must
    // count them again within a refresh period while they keep failing.
    let alarm_window = Instant::now() + Duration::from_secs(35);
    let alarming = loop {
        let alarming = metric(&api, "kairos_revocations_alarming");
        if alarming >= 3.0 || Instant::now() >= alarm_window {
            break alarming;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    println!(
        "isolation: after the restart, with 3 revocations still failing, kairos_revocations_alarming = {alarming}"
    );
    if alarming < 3.0 {
        violations.push(format!(
            "after a broker restart, 3 revocations keep failing (attempts {:?}) but kairos_revocations_alarming = {alarming} for 35 s: the gauge is raised only when a grant's attempt count equals the threshold, in the process that saw it, so a restart silences it",
            attempts_of(&api)
        ));
    }

    // PostgreSQL comes back: everything completes and nothing is left.
    pg.restart();
    for id in &pg_grants {
        let g = api.wait_grant(ADMIN, id, Duration::from_secs(90), |g| {
            g["state"] == "ended"
        });
        assert_eq!(g["receipt"]["reason"], "revoked", "{g}");
    }
    await_reconcile_pass(&pg, Some(&redis));
    let residue: Vec<String> = common::pg::managed_roles(&base, PREFIX)
        .into_iter()
        .chain(redis.users(PREFIX))
        .collect();
    println!(
        "isolation: residual access = {} account(s) {residue:?}; whole test {:.1}s of outage",
        residue.len(),
        outage.elapsed().as_secs_f64()
    );
    assert!(residue.is_empty(), "{residue:?}");
    assert_audit_verifies(&server);
    assert!(
        violations.is_empty(),
        "{} violation(s):\n  {}",
        violations.len(),
        violations.join("\n  ")
    );
}
