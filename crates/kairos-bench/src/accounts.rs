//! PostgreSQL accounts through Kairos: credentials issued per second (beside pgbench
//! `CREATE ROLE … LOGIN PASSWORD` + `DROP ROLE`), and verified revocations per second
//! end to end (beside pgbench `DROP ROLE`, one per transaction and in batches).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::api;
use crate::cpu::{Snapshot, Usage};
use crate::guard::ScratchDir;
use crate::load::{self, LoadResult, MakeRequest};
use crate::pg::{self, ScratchDb};
use crate::pgbench::{self, Job, Length, PgbenchResult};
use crate::server::{self, ADMIN_TOKEN, ConfigExtras, Issuer, Server, ServerOptions};
use crate::stats::Latencies;

/// The credentials figure is measured again with this many times the clients.
pub const WIDE: usize = 3;

/// The environment variable that carries the target's admin URL to the server.
const ADMIN_URL_ENV: &str = "KAIROS_BENCH_PG_ADMIN";
pub const ENTITLEMENT: &str = "bench-db/read";
/// The task reference of the accounts provisioned to be revoked all at once.
const REVOKE_TASK: &str = "bench-revoke";
/// The one privilege template: membership in a group role that may read `bench_orders`.
/// Not `GRANT SELECT ON bench_orders TO {{role}}`: every such grant adds an entry to the
/// table's ACL, kept in its `pg_class` row, which cannot outgrow a page — at about 2,000
/// concurrent accounts PostgreSQL refuses the next one ("row is too big", SQLSTATE 54000).
pub fn privilege(db: &ScratchDb) -> String {
    format!("GRANT {} TO {{{{role}}}}", reader_role(db))
}

/// The group role the accounts join; outside Kairos's managed prefix, inside the
/// database's prefix so that cleanup drops it.
fn reader_role(db: &ScratchDb) -> String {
    format!("{}reader", db.prefix)
}

/// Kairos's managed prefix: the database's prefix and `a`, so that none of the floors'
/// roles (`…f`, `…d`, `…s`, `…b`) nor the group role looks managed to it.
fn managed_prefix(db: &ScratchDb) -> String {
    format!("{}a", db.prefix)
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// How many accounts to provision and then revoke all at once.
    pub population: usize,
    /// How long to wait for every revocation to be verified.
    pub revoke_timeout: Duration,
}

/// The accounts provisioned for the revocation figure.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub accounts: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub first_failure: Option<String>,
}

/// The end-to-end revocation of the whole population.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// Grants the revoke call ended.
    pub ended: usize,
    /// How long the `POST /v1/grants/revoke` call took (all Active → Ending, one transaction).
    pub call: Duration,
    /// From sending the revoke call until the metrics showed every one verified.
    pub until_all_verified: Duration,
    /// Grants with state `ended` and a `verified_at`, read back afterwards.
    pub verified: usize,
    /// Per grant: receipt `verified_at` − `ended_at`.
    pub end_to_verified: Latencies,
    /// Last `verified_at` − first `ended_at`, from the receipts.
    pub receipts_span: Duration,
    /// Failed attempts counted by the server meanwhile (they are retried).
    pub failed_attempts: f64,
    /// Issued accounts still present on the target afterwards (must be 0); counted by the
    /// caller, which knows the target.
    pub accounts_left: Option<i64>,
    /// How the receipts say each account was verified gone (`pg_roles+login`, `pg_roles`…),
    /// with how many receipts say so.
    pub methods: Vec<(String, usize)>,
    pub usage: Usage,
}

impl Revocation {
    pub fn per_sec(&self) -> f64 {
        self.verified as f64 / self.until_all_verified.as_secs_f64().max(1e-9)
    }
}

/// `DROP ROLE a, b, …` timed on pre-created roles.
#[derive(Debug, Clone)]
pub struct BatchDrop {
    pub roles: usize,
    pub per_statement: usize,
    pub elapsed: Duration,
}

impl BatchDrop {
    pub fn per_sec(&self) -> f64 {
        self.roles as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Logins refused by PostgreSQL (a role that does not exist), concurrent, timed: the cost
/// of the verification login each revoked account gets.
#[derive(Debug, Clone)]
pub struct RefusedLogins {
    pub clients: usize,
    pub refused: u64,
    /// Attempts that failed otherwise (too many connections…); not counted as refused.
    pub other: u64,
    pub elapsed: Duration,
}

impl RefusedLogins {
    pub fn per_sec(&self) -> f64 {
        self.refused as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct AccountsResult {
    /// SCRAM-SHA-256 verifiers derived per second (4,096 PBKDF2 iterations), one thread:
    /// the CPU each account costs Kairos before any SQL.
    pub scram_per_sec: Option<f64>,
    /// Refused logins per second.
    pub refused_logins: Result<RefusedLogins, String>,
    /// The entitlement's privilege template.
    pub privilege: String,
    /// Kairos: `POST /v1/requests` for a PostgreSQL account, closed loop.
    pub issue: Option<LoadResult>,
    /// The same with [`WIDE`] times the clients, and how many: each shared step (the store's
    /// writes, the target's provisioning batch) then serves more requests at once.
    pub issue_wide: Option<(usize, LoadResult)>,
    /// pgbench `CREATE ROLE … LOGIN PASSWORD` + `DROP ROLE`, as many clients as Kairos's.
    pub create_floor: Result<PgbenchResult, String>,
    /// The same with one client: what a fully serialised issuer could reach.
    pub create_floor_serial: Result<PgbenchResult, String>,
    pub provisioned: Option<Provisioned>,
    pub revocation: Result<Revocation, String>,
    /// pgbench `DROP ROLE`, one per transaction, on pre-created roles.
    pub drop_floor: Result<PgbenchResult, String>,
    /// The same with one client.
    pub drop_floor_serial: Result<PgbenchResult, String>,
    pub batch_drop: Result<BatchDrop, String>,
    pub server_log_tail: Vec<String>,
}

fn config_extras(db: &ScratchDb) -> ConfigExtras {
    let prefix = managed_prefix(db);
    let privilege = privilege(db);
    ConfigExtras {
        toml: format!(
            r#"
[[target]]
name = "bench-db"
kind = "postgres"
admin_url_env = "{ADMIN_URL_ENV}"
managed_prefix = "{prefix}"
# Kept out of the figures: the reconciler's pass (every 30 s by default) lists every
# managed role; here it runs once, at start, when there are none.
reconcile_interval = "1h"
# Random passwords: one iteration is as safe as 4,096, and psql and sqlx accept it.
scram_iterations = 1

[[entitlement]]
name = "{ENTITLEMENT}"
target = "bench-db"
tier = "low"
max_ttl = "1h"
grants = ["{privilege}"]
"#
        ),
        cedar: format!(
            r#"
@id("bench-db-auto")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"{ENTITLEMENT}")
when {{ context.task_kind == "job" }};
"#
        ),
    }
}

/// An auto-granted account request for `entitlement`, 30 minutes, as a job of `task_ref`.
pub fn request_body_for(entitlement: &str, task_ref: &str) -> Value {
    json!({
        "entitlement": entitlement, "ttl": "30m",
        "task": {"kind": "job", "ref": task_ref, "reason": "benchmark"}
    })
}

/// Runs the whole accounts section on a fresh database of the machine's PostgreSQL.
pub async fn measure(
    kairos: &std::path::Path,
    issuer: &Issuer,
    platform: &str,
    s: Settings,
) -> anyhow::Result<AccountsResult> {
    let db = ScratchDb::create().await?;
    let dir = ScratchDir::new("accounts")?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());

    // Floor: the same number of concurrent clients creating and dropping login roles with
    // a password, straight to PostgreSQL (which hashes the password into a SCRAM verifier,
    // as Kairos does on its side before it sends one).
    eprintln!("  pgbench CREATE ROLE + DROP ROLE floor...");
    let create_script = format!(
        "\\set r random(1, 2000000000)\n\
         CREATE ROLE \"{p}f:client_id-:r\" LOGIN PASSWORD 'pw-:r-:client_id-floor';\n\
         DROP ROLE \"{p}f:client_id-:r\";\n",
        p = db.prefix
    );
    let create_floor = pgbench::run(&Job {
        url: &db.url(),
        dir: dir.path(),
        name: "create_drop",
        script: &create_script,
        clients: s.clients,
        threads,
        length: Length::Time(s.duration),
        defines: &[],
    })
    .map_err(|e| format!("{e:#}"));
    let create_floor_serial = pgbench::run(&Job {
        url: &db.url(),
        dir: dir.path(),
        name: "create_drop_serial",
        script: &create_script,
        clients: 1,
        threads: 1,
        length: Length::Time((s.duration / 2).max(Duration::from_secs(2))),
        defines: &[],
    })
    .map_err(|e| format!("{e:#}"));

    let mut conn = pg::connect(&db.name).await?;
    sqlx::raw_sql(&format!(
        "CREATE ROLE {r} NOLOGIN; GRANT SELECT ON bench_orders TO {r}",
        r = reader_role(&db)
    ))
    .execute(&mut conn)
    .await
    .context("creating the group role the accounts join")?;
    let _ = conn.close().await;
    let config = server::write_config(&dir.path().join("cfg"), issuer, &config_extras(&db))?;
    let server = Server::start(
        kairos,
        &ServerOptions {
            data: dir.path().join("data"),
            config,
            log: dir.path().join("server.log"),
            store: None,
            envs: vec![(ADMIN_URL_ENV.to_owned(), db.url())],
            args: Vec::new(),
        },
    )?;
    let http = load::client(s.clients)?;

    // One account first, and log in with it: the figure counts working credentials.
    let first: Value = http
        .post(server.url("/v1/requests"))
        .bearer_auth(platform)
        .json(&request_body_for(ENTITLEMENT, "bench-first"))
        .send()
        .await?
        .error_for_status()
        .context("the first account request failed; see the server log")?
        .json()
        .await?;
    check_login(&first["credential"], &managed_prefix(&db)).await?;

    eprintln!("  Kairos PostgreSQL credentials (POST /v1/requests)...");
    let url = server.url("/v1/requests");
    let requests = |http: &reqwest::Client, task_ref: &str| -> MakeRequest {
        let (http, url, platform, body) = (
            http.clone(),
            url.clone(),
            platform.to_owned(),
            request_body_for(ENTITLEMENT, task_ref),
        );
        Arc::new(move || http.post(&url).bearer_auth(&platform).json(&body))
    };
    let make = requests(&http, "bench-issue");
    let issue = load::drive(s.clients, s.warmup, s.duration, Some(server.pid()), make).await;

    let wide = s.clients * WIDE;
    eprintln!("  the same with {wide} clients...");
    let make = requests(&load::client(wide)?, "bench-issue-wide");
    let issue_wide = load::drive(wide, s.warmup, s.duration, Some(server.pid()), make).await;

    eprintln!("  provisioning {} accounts to revoke...", s.population);
    let (provisioned, usernames) = provision(
        &http,
        &server,
        platform,
        s.clients,
        s.population,
        &request_body_for(ENTITLEMENT, REVOKE_TASK),
    )
    .await;
    let revocation = if provisioned.accounts == 0 {
        Err(format!(
            "no account could be provisioned: {}",
            provisioned.first_failure.clone().unwrap_or_default()
        ))
    } else {
        eprintln!("  revoking {} accounts at once...", provisioned.accounts);
        async {
            let mut r = revoke_all(&http, &server, REVOKE_TASK, s.revoke_timeout).await?;
            r.accounts_left = Some(roles_left(&usernames).await?);
            anyhow::Ok(r)
        }
        .await
        .map_err(|e| format!("{e:#}"))
    };
    let server_log_tail = server.log_tail(5);
    drop(server);

    eprintln!("  pgbench DROP ROLE floors...");
    // At least 2,000 drops, so the concurrent floor runs long enough to be measured.
    let drop_many = drop_floor(
        &db,
        dir.path(),
        "d",
        s.clients,
        threads,
        s.population.max(2_000),
    )
    .await
    .map_err(|e| format!("{e:#}"));
    let drop_serial = drop_floor(&db, dir.path(), "s", 1, 1, s.population)
        .await
        .map_err(|e| format!("{e:#}"));
    let batch_drop = batch_drop(&db, s.population)
        .await
        .map_err(|e| format!("{e:#}"));

    eprintln!("  SCRAM and refused-login floors...");
    let scram_per_sec = scram_per_sec((s.duration / 5).max(Duration::from_secs(1)));
    let refused_logins =
        refused_logins(&db, s.clients, (s.duration / 5).max(Duration::from_secs(1)))
            .await
            .map_err(|e| format!("{e:#}"));

    Ok(AccountsResult {
        scram_per_sec: Some(scram_per_sec),
        refused_logins,
        privilege: privilege(&db),
        issue: Some(issue),
        issue_wide: Some((wide, issue_wide)),
        create_floor,
        create_floor_serial,
        provisioned: Some(provisioned),
        revocation,
        drop_floor: drop_many,
        drop_floor_serial: drop_serial,
        batch_drop,
        server_log_tail,
    })
}

/// An issued account credential's user name and password, the name checked to carry the
/// target's managed prefix.
pub fn user_and_password<'a>(cred: &'a Value, prefix: &str) -> anyhow::Result<(&'a str, &'a str)> {
    let user = cred["username"]
        .as_str()
        .context("no username in the credential")?;
    let password = cred["password"]
        .as_str()
        .context("no password in the credential")?;
    if !user.starts_with(prefix) {
        bail!("the issued account {user} lacks the managed prefix {prefix}");
    }
    Ok((user, password))
}

/// Logs in with an issued credential and reads the granted table.
async fn check_login(cred: &Value, prefix: &str) -> anyhow::Result<()> {
    let (user, password) = user_and_password(cred, prefix)?;
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(cred["host"].as_str().unwrap_or("127.0.0.1"))
        .port(
            cred["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(5432),
        )
        .database(cred["database"].as_str().unwrap_or_default())
        .username(user)
        .password(password);
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .context("logging in with the issued account")?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_orders")
        .fetch_one(&mut conn)
        .await
        .context("reading bench_orders with the issued account")?;
    let _ = conn.close().await;
    if n != 1 {
        bail!("the issued account read {n} rows from bench_orders, expected 1");
    }
    Ok(())
}

/// Provisions `population` accounts, each a `POST /v1/requests` of `body`, with `clients`
/// concurrent requests; returns what happened and the account names.
pub async fn provision(
    http: &reqwest::Client,
    server: &Server,
    platform: &str,
    clients: usize,
    population: usize,
    body: &Value,
) -> (Provisioned, Vec<String>) {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, platform, next, failures, body) = (
            http.clone(),
            server.url("/v1/requests"),
            platform.to_owned(),
            Arc::clone(&next),
            Arc::clone(&failures),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut names = Vec::new();
            let mut first_failure = None;
            // Stop after as many failures as accounts: a target that refuses everything
            // must not keep the bench spinning.
            while next.fetch_add(1, Ordering::Relaxed) < population
                && failures.load(Ordering::Relaxed) < population
            {
                let outcome = async {
                    let resp = http
                        .post(&url)
                        .bearer_auth(&platform)
                        .json(&body)
                        .send()
                        .await?;
                    let status = resp.status();
                    let body: Value = resp.json().await?;
                    if !status.is_success() {
                        bail!("HTTP {status}: {}", body["error"]);
                    }
                    body["credential"]["username"]
                        .as_str()
                        .map(str::to_owned)
                        .context("no username in the answer")
                }
                .await;
                match outcome {
                    Ok(name) => names.push(name),
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        first_failure.get_or_insert(format!("{e:#}"));
                    }
                }
            }
            (names, first_failure)
        }));
    }
    let mut names = Vec::new();
    let mut first_failure = None;
    for t in tasks {
        if let Ok((n, f)) = t.await {
            names.extend(n);
            if first_failure.is_none() {
                first_failure = f;
            }
        }
    }
    let p = Provisioned {
        accounts: names.len(),
        failed: failures.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        first_failure,
    };
    (p, names)
}

/// Revokes every grant of task reference `task_ref` with one operator call, then waits
/// until the server has verified each one gone, and reads the receipts back.
pub async fn revoke_all(
    http: &reqwest::Client,
    server: &Server,
    task_ref: &str,
    timeout: Duration,
) -> anyhow::Result<Revocation> {
    const VERIFIED: &str = "kairos_revocations_verified_total";
    const FAILURES: &str = "kairos_revocation_failures_total";
    let before = api::metrics(http, server).await?;
    let verified_before =
        api::metric(&before, VERIFIED).context("no verified counter in /metrics")?;
    let failures_before = api::metric(&before, FAILURES).unwrap_or(0.0);

    let snapshot = Snapshot::take(Some(server.pid()));
    let started = Instant::now();
    let answer: Value = http
        .post(server.url("/v1/grants/revoke"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "task_ref": task_ref }))
        .timeout(Duration::from_secs(300))
        .send()
        .await?
        .error_for_status()
        .context("the bulk revoke call failed")?
        .json()
        .await?;
    let call = started.elapsed();
    let ended = answer["grants"].as_array().map_or(0, Vec::len);
    let deadline = started + timeout;
    let mut failed_attempts;
    let until_all_verified = loop {
        let text = api::metrics(http, server).await?;
        let verified = api::metric(&text, VERIFIED).unwrap_or(0.0) - verified_before;
        failed_attempts = api::metric(&text, FAILURES).unwrap_or(0.0) - failures_before;
        if verified >= ended as f64 {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!(
                "after {timeout:?} only {verified} of {ended} revocations were verified ({failed_attempts} failed attempts)"
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let usage = snapshot.usage();

    let grants = api::list_grants(http, server, &[("task_ref", task_ref)]).await?;
    let mut latencies = Vec::new();
    let (mut first_end, mut last_verified) = (None, None);
    let mut verified = 0;
    let mut methods: std::collections::BTreeMap<String, usize> = Default::default();
    for g in &grants {
        let (Some(end), Some(ver)) = (
            api::time(g, &["receipt", "ended_at"]),
            api::time(g, &["receipt", "verified_at"]),
        ) else {
            continue;
        };
        if g["state"] != "ended" {
            continue;
        }
        verified += 1;
        *methods
            .entry(g["receipt"]["method"].as_str().unwrap_or("none").to_owned())
            .or_default() += 1;
        let ms = api::millis_between(end, ver).max(0);
        latencies.push(Duration::from_millis(ms.unsigned_abs()));
        first_end = Some(first_end.map_or(end, |f: kairos_domain::Timestamp| f.min(end)));
        last_verified = Some(last_verified.map_or(ver, |l: kairos_domain::Timestamp| l.max(ver)));
    }
    let receipts_span = match (first_end, last_verified) {
        (Some(a), Some(b)) => {
            Duration::from_millis(api::millis_between(a, b).max(0).unsigned_abs())
        }
        _ => Duration::ZERO,
    };

    Ok(Revocation {
        ended,
        call,
        until_all_verified,
        verified,
        end_to_verified: Latencies::new(latencies),
        receipts_span,
        failed_attempts,
        accounts_left: None,
        methods: methods.into_iter().collect(),
        usage,
    })
}

/// How many of `usernames` are still in `pg_roles`.
async fn roles_left(usernames: &[String]) -> anyhow::Result<i64> {
    let mut conn = pg::connect("postgres").await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)")
        .bind(usernames)
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(left)
}

/// Creates `per_client` roles for each of `clients` pgbench clients, named so that client
/// `c`'s transaction `i` drops `{prefix}{tag}{c}-{i}`; then drops them one per transaction.
async fn drop_floor(
    db: &ScratchDb,
    dir: &std::path::Path,
    tag: &str,
    clients: usize,
    threads: usize,
    population: usize,
) -> anyhow::Result<PgbenchResult> {
    let per_client = population.div_ceil(clients).max(1);
    let mut conn = pg::connect(&db.name).await?;
    sqlx::raw_sql(&format!(
        "DO $$ BEGIN FOR c IN 0..{} LOOP FOR i IN 1..{per_client} LOOP \
         EXECUTE format('CREATE ROLE %I LOGIN', '{}{tag}' || c || '-' || i); \
         END LOOP; END LOOP; END $$",
        clients - 1,
        db.prefix
    ))
    .execute(&mut conn)
    .await
    .context("pre-creating roles for the DROP ROLE floor")?;
    let _ = conn.close().await;
    let script = format!(
        "\\set i :i + 1\nDROP ROLE \"{}{tag}:client_id-:i\";\n",
        db.prefix
    );
    pgbench::run(&Job {
        url: &db.url(),
        dir,
        name: &format!("drop_one_{tag}"),
        script: &script,
        clients,
        threads,
        length: Length::PerClient(per_client as u64),
        defines: &[("i", "0")],
    })
}

/// Creates `population` roles, then drops them with `DROP ROLE a, b, …` of 1,000 names per
/// statement (each its own transaction), timed.
async fn batch_drop(db: &ScratchDb, population: usize) -> anyhow::Result<BatchDrop> {
    const PER_STATEMENT: usize = 1_000;
    let mut conn = pg::connect(&db.name).await?;
    sqlx::raw_sql(&format!(
        "DO $$ BEGIN FOR i IN 1..{population} LOOP \
         EXECUTE format('CREATE ROLE %I LOGIN', '{}b' || i); END LOOP; END $$",
        db.prefix
    ))
    .execute(&mut conn)
    .await
    .context("pre-creating roles for the batch DROP ROLE floor")?;
    let names: Vec<String> = (1..=population)
        .map(|i| format!("\"{}b{i}\"", db.prefix))
        .collect();
    let started = Instant::now();
    for chunk in names.chunks(PER_STATEMENT) {
        sqlx::raw_sql(&format!("DROP ROLE {}", chunk.join(", ")))
            .execute(&mut conn)
            .await
            .context("batch DROP ROLE")?;
    }
    let elapsed = started.elapsed();
    let _ = conn.close().await;
    Ok(BatchDrop {
        roles: population,
        per_statement: PER_STATEMENT,
        elapsed,
    })
}

/// SCRAM-SHA-256 salted passwords derived per second, as PostgreSQL and Kairos's connector
/// do for every account (PBKDF2-HMAC-SHA-256, 4,096 iterations), on one thread.
fn scram_per_sec(duration: Duration) -> f64 {
    const ITERATIONS: std::num::NonZeroU32 = match std::num::NonZeroU32::new(4096) {
        Some(n) => n,
        None => std::num::NonZeroU32::MIN,
    };
    let salt = [7u8; 16];
    let mut out = [0u8; 32];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            ITERATIONS,
            &salt,
            b"a-password-of-the-usual-length-0123",
            &mut out,
        );
        std::hint::black_box(&out);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `clients` concurrent loops of logins as a role that does not exist, for `duration`.
async fn refused_logins(
    db: &ScratchDb,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<RefusedLogins> {
    let options = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(5432)
        .database(&db.name)
        .username(&format!("{}nobody", db.prefix))
        .password("not-a-password");
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            let (mut refused, mut other) = (0u64, 0u64);
            while Instant::now() < deadline {
                match sqlx::PgConnection::connect_with(&options).await {
                    Ok(conn) => {
                        let _ = conn.close().await;
                        other += 1;
                    }
                    // 28000 invalid_authorization_specification, 28P01 invalid_password.
                    Err(sqlx::Error::Database(e))
                        if e.code().is_some_and(|c| c.starts_with("28")) =>
                    {
                        refused += 1;
                    }
                    Err(_) => other += 1,
                }
            }
            (refused, other)
        }));
    }
    let (mut refused, mut other) = (0, 0);
    for t in tasks {
        let (r, o) = t.await.unwrap_or((0, 1));
        refused += r;
        other += o;
    }
    if refused == 0 {
        bail!("no login was refused ({other} attempts ended otherwise)");
    }
    Ok(RefusedLogins {
        clients,
        refused,
        other,
        elapsed: start.elapsed(),
    })
}
