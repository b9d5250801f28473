//! Restart with many active grants and a queue of revocations: a SQLite store filled with
//! N active token grants (and their requests and hash-chained audit records) and Q grants
//! revoked while the server was down (state `revoking`, a job in the revocation queue due
//! now and unclaimed), then `kairos server` timed from spawn until `/v1/health` and
//! `/v1/health/ready` answer 200, its resident memory, and how long its revocation worker
//! takes to verify every queued revocation — beside the same start on an empty store, and
//! beside the rate at which a live server verifies token-grant revocations (the floor).
//!
//! The store is filled by cloning real grants that the server issued: one active grant,
//! and one grant that an operator revoked through the API and the server verified. The
//! bench asks SQLite for the `requests` and `grants` columns and copies the template row
//! into every column it does not set itself (ids and times; for the revoked template, the
//! state and the receipt's columns, which a grant still being revoked does not have yet),
//! so it follows the schema the server's migrations made; a queued revocation's job takes
//! the `revocations` table's defaults beside its grant and due time, as the server's own
//! enqueue does. Audit records are re-sealed into the chain with `kairos-domain` (the
//! revoked template's, without the `verified` record its verification wrote), and the
//! chain is verified through the server (`GET /v1/audit/verify`, what `kairos audit
//! verify` calls) once the queue has drained.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use kairos_domain::{AuditKind, AuditRecord, GrantId, RequestId, Timestamp};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};

use crate::accounts::{self, Revocation};
use crate::api;
use crate::cpu::{Snapshot, Usage};
use crate::guard::ScratchDir;
use crate::load::{self, LoadResult};
use crate::server::{self, ADMIN_TOKEN, Issuer, Server, ServerOptions};
use crate::stats::Latencies;

/// The task reference of the revoked template grant and of its clones, the queue.
const QUEUE_TASK: &str = "bench-restart-queue";
/// The task reference of the floor's grants.
const FLOOR_TASK: &str = "bench-restart-floor";
/// The floor issues and revokes at most this many grants.
pub const FLOOR_MAX: u64 = 20_000;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Active grants in the filled store.
    pub grants: u64,
    /// Queued revocations in the filled store: grants revoked while the server was down.
    pub queued: u64,
    /// Timed restarts per store.
    pub runs: usize,
    /// How long after the queue drained (or, on the empty store, after `/v1/health`
    /// first answered) the resident memory is read again.
    pub settle: Duration,
    /// How long, from the spawn, every queued revocation may take to be verified (and the
    /// floor's revocations, from its revoke call); past it the drain is a failure.
    pub drain_timeout: Duration,
    /// Concurrent clients issuing the floor's grants.
    pub clients: usize,
}

/// One timed start.
#[derive(Debug, Clone)]
pub struct Run {
    /// Spawn → the first `200` from `/v1/health`.
    pub until_health: Duration,
    /// Spawn → the first `200` from `/v1/health/ready`.
    pub until_ready: Duration,
    /// `VmRSS` when health first answered.
    pub rss_at_health: u64,
    /// `VmRSS` after `settle`, serving and idle (after the queue drained, if any).
    pub rss: u64,
    /// `VmHWM`: the peak resident memory so far.
    pub peak: u64,
    /// The queue's drain after this start; `None` when the store holds no queue.
    pub drain: Option<Result<Drain, String>>,
}

/// Every queued revocation verified by the restarted server.
#[derive(Debug, Clone)]
pub struct Drain {
    /// Queued revocations in the store at the start.
    pub queued: u64,
    /// Spawn → the server printed that it listens (its background workers start then).
    pub until_listening: Duration,
    /// Spawn → `/metrics` counted `queued` revocations verified and `GET
    /// /v1/grants?state=revoking&limit=1` listed none.
    pub until_all_verified: Duration,
    /// `kairos_revocations_verified_total` then (the process counts from 0).
    pub counted: f64,
    /// `kairos_revocation_failures_total` then (failed attempts are retried).
    pub failed_attempts: f64,
    /// Queued grants read back from the store afterwards in state `ended` with a receipt
    /// (`verified_at` set).
    pub verified: u64,
    /// Per receipt: `verified_at` − the spawn (wall clock).
    pub after_spawn: Latencies,
    /// How the receipts say each grant was verified gone, with how many say so.
    pub methods: Vec<(String, u64)>,
    /// Where the CPU went from listening until every queued revocation was verified.
    pub usage: Usage,
    /// Alerts the process raised meanwhile (`kairos_alerts_raised_total`), by kind: each
    /// one its own store write beside the worker's.
    pub alerts: Vec<(String, f64)>,
}

impl Drain {
    /// Listening → every queued revocation verified: the worker's time.
    pub fn window(&self) -> Duration {
        self.until_all_verified.saturating_sub(self.until_listening)
    }

    /// Verified revocations per second over [`Self::window`].
    pub fn per_sec(&self) -> f64 {
        self.verified as f64 / self.window().as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct StoreRestart {
    pub grants: u64,
    /// Queued revocations in the store at each start.
    pub queued: u64,
    /// Size of the SQLite file (and WAL) at the restart.
    pub store_bytes: u64,
    pub runs: Vec<Run>,
}

impl StoreRestart {
    /// The run with the median time to health.
    pub fn median(&self) -> Option<Run> {
        self.median_by(|r| r.until_health)
    }

    /// The run with the median time to ready.
    pub fn median_ready(&self) -> Option<Run> {
        self.median_by(|r| r.until_ready)
    }

    fn median_by(&self, key: impl Fn(&Run) -> Duration) -> Option<Run> {
        let mut runs = self.runs.clone();
        runs.sort_by_key(|r| key(r));
        runs.get(runs.len().saturating_sub(1) / 2).cloned()
    }

    /// The drain of median rate, or the first failed drain; `None` without a queue.
    pub fn median_drain(&self) -> Option<Result<Drain, String>> {
        let mut drains = Vec::new();
        for run in &self.runs {
            match &run.drain {
                Some(Ok(d)) => drains.push(d.clone()),
                Some(Err(e)) => return Some(Err(e.clone())),
                None => {}
            }
        }
        drains.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
        drains
            .get(drains.len().saturating_sub(1) / 2)
            .cloned()
            .map(Ok)
    }
}

#[derive(Debug, Clone)]
pub struct Fill {
    pub grants: u64,
    pub audit_records: u64,
    pub elapsed: Duration,
}

/// The queued revocations cloned into the filled store.
#[derive(Debug, Clone)]
pub struct QueueFill {
    pub queued: u64,
    /// The revoked template grant (left out of the receipts read back).
    pub template: String,
    /// Audit records cloned per queued revocation.
    pub audit_per_grant: u64,
    pub elapsed: Duration,
}

/// The floor: a live server with an empty store issues token grants under one task
/// reference, an operator revokes them with one call, and the server verifies each.
#[derive(Debug, Clone)]
pub struct Floor {
    /// The grants issued, `clients` at a time.
    pub issued: LoadResult,
    pub clients: usize,
    pub revocation: Revocation,
}

impl Floor {
    /// Verified revocations per second, from the revoke call until every one verified.
    pub fn per_sec(&self) -> f64 {
        self.revocation.per_sec()
    }
}

/// `GET /v1/audit/verify` over the filled store after the drain.
#[derive(Debug, Clone)]
pub struct AuditCheck {
    pub records: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct RestartResult {
    pub settings: Settings,
    pub empty: StoreRestart,
    pub filled: StoreRestart,
    pub fill: Fill,
    pub queue: QueueFill,
    pub floor: Result<Floor, String>,
    pub audit: Result<AuditCheck, String>,
    pub posture: PostureTiming,
}

/// Identities registered for the posture figure (the clones' grants are spread over them).
pub const POSTURE_IDENTITIES: u64 = 10_000;
const POSTURE_RUNS: usize = 5;

/// `GET /v1/posture` over the filled store, timed end to end, fastest first.
#[derive(Debug, Clone)]
pub struct PostureTiming {
    pub identities: u64,
    pub grants: u64,
    pub times: Vec<Duration>,
}

impl PostureTiming {
    pub fn median(&self) -> Option<Duration> {
        self.times
            .get(self.times.len().saturating_sub(1) / 2)
            .copied()
    }
}

/// The identity of the `i`-th clone: `svc-0` … `svc-9998` (with the template's own
/// identity, 10,000 in all).
fn posture_identity(i: u64) -> String {
    format!("svc-{}", i % (POSTURE_IDENTITIES - 1))
}

/// The configuration's extra identities: every clone's identity registered, owned by
/// the base configuration's team.
pub fn clone_identities() -> server::ConfigExtras {
    server::ConfigExtras {
        toml: (1..POSTURE_IDENTITIES)
            .map(|i| {
                format!(
                    "[[identity]]\nname = \"{}\"\nowner = \"payments\"\nkind = \"service\"\nissuer = \"ci\"\nsubject = \"svc:{i}\"\n\n",
                    posture_identity(i - 1)
                )
            })
            .collect(),
        cedar: String::new(),
    }
}

/// One auto-granted `orders-api/read` token grant for `task_ref`, an hour long.
async fn issue(
    http: &reqwest::Client,
    server: &Server,
    platform: &str,
    task_ref: &str,
) -> anyhow::Result<()> {
    http.post(server.url("/v1/oauth/token"))
        .form(&server::exchange_form(platform, task_ref, "1h"))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

pub async fn measure(
    kairos: &Path,
    issuer: &Issuer,
    platform: &str,
    s: Settings,
) -> anyhow::Result<RestartResult> {
    let dir = ScratchDir::new("restart")?;
    let config = server::write_config(&dir.path().join("cfg"), issuer, &Default::default())?;
    let opts = |name: &str| ServerOptions {
        data: dir.path().join(name),
        config: config.clone(),
        log: dir.path().join(format!("{name}.log")),
        store: None,
        envs: Vec::new(),
        args: Vec::new(),
    };

    // The empty store: started once (keys made, configuration applied), then restarted.
    let empty_opts = opts("empty");
    Server::start(kairos, &empty_opts)?.stop(Duration::from_secs(10));
    eprintln!("  restarting on an empty store...");
    let empty = timed_restarts(kairos, &empty_opts, 0, None, None, s).await?;

    // The floor: how fast a live server verifies token-grant revocations.
    let floor_grants = s.queued.clamp(1, FLOOR_MAX);
    eprintln!("  floor: {floor_grants} token grants revoked at once on a fresh server...");
    let floor = revocation_floor(kairos, &opts("floor"), platform, floor_grants, s)
        .await
        .map_err(|e| format!("{e:#}"));

    // The filled store: one real active grant and one real revoked grant as templates,
    // then their clones.
    let full_opts = opts("full");
    let server = Server::start(kairos, &full_opts)?;
    let http = load::client(1)?;
    issue(&http, &server, platform, "bench-restart")
        .await
        .context("issuing the template grant")?;
    issue(&http, &server, platform, QUEUE_TASK)
        .await
        .context("issuing the grant to revoke")?;
    let revoked = accounts::revoke_all(&http, &server, QUEUE_TASK, s.drain_timeout)
        .await
        .context("revoking the template grant of the queue")?;
    if revoked.ended != 1 || revoked.verified != 1 {
        bail!(
            "revoking the queue's template ended {} grant(s) and verified {}, expected 1 and 1",
            revoked.ended,
            revoked.verified
        );
    }
    server.stop(Duration::from_secs(10));
    let db = full_opts.data.join("kairos.db");
    eprintln!("  filling the store with {} active grants...", s.grants);
    let fill = fill(&db, s.grants, 1).await?;
    eprintln!(
        "  filled in {:.1?}; queueing {} revocations...",
        fill.elapsed, s.queued
    );
    let queue = fill_queue(&db, QUEUE_TASK, s.queued).await?;
    eprintln!("  queued in {:.1?}; restarting on it...", queue.elapsed);
    // Each start drains the queue: every start after the first begins from a copy of the
    // store as filled.
    let pristine = if s.runs > 1 {
        let copy = dir.path().join("full-as-filled.db");
        std::fs::copy(&db, &copy).context("copying the filled store")?;
        Some(copy)
    } else {
        None
    };
    let filled = timed_restarts(
        kairos,
        &full_opts,
        s.grants,
        Some(&queue),
        pristine.as_deref(),
        s,
    )
    .await?;

    // The posture report over the filled store, with the clones' identities registered.
    eprintln!(
        "  posture report over {} identities and {} grants...",
        POSTURE_IDENTITIES, s.grants
    );
    let posture_config =
        server::write_config(&dir.path().join("cfg-posture"), issuer, &clone_identities())?;
    let posture_opts = ServerOptions {
        config: posture_config,
        ..opts("full")
    };
    let server = Server::start(kairos, &posture_opts)?;
    let mut times = Vec::new();
    let mut identities = 0;
    for _ in 0..POSTURE_RUNS {
        let started = Instant::now();
        let answer: serde_json::Value = http
            .get(server.url("/v1/posture"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .error_for_status()
            .context("reading the posture report")?
            .json()
            .await?;
        times.push(started.elapsed());
        identities = answer["identities"]["total"].as_u64().unwrap_or(0);
    }
    eprintln!("  verifying the audit chain of the filled store...");
    let audit = audit_verify(&http, &server)
        .await
        .map_err(|e| format!("{e:#}"));
    server.stop(Duration::from_secs(10));
    times.sort();
    Ok(RestartResult {
        settings: s,
        empty,
        filled,
        fill,
        queue,
        floor,
        audit,
        posture: PostureTiming {
            identities,
            grants: s.grants,
            times,
        },
    })
}

/// `GET /v1/audit/verify` as the admin: the whole chain walked by the server.
async fn audit_verify(http: &reqwest::Client, server: &Server) -> anyhow::Result<AuditCheck> {
    let started = Instant::now();
    let answer: serde_json::Value = http
        .get(server.url("/v1/audit/verify"))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(900))
        .send()
        .await?
        .error_for_status()
        .context("verifying the audit chain")?
        .json()
        .await?;
    let elapsed = started.elapsed();
    let records = answer["records"].as_u64().unwrap_or(0);
    if answer["ok"] != true {
        bail!(
            "the audit chain does not verify after {records} records: broken at record {}: {}",
            answer["broken_at"],
            answer["problem"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(AuditCheck { records, elapsed })
}

/// On a fresh server with an empty store: `count` token grants issued under one task
/// reference by `s.clients` clients, then revoked with one operator call, timed until the
/// server verified every one.
async fn revocation_floor(
    kairos: &Path,
    opts: &ServerOptions,
    platform: &str,
    count: u64,
    s: Settings,
) -> anyhow::Result<Floor> {
    let server = Server::start(kairos, opts)?;
    let clients = s.clients.max(1);
    let http = load::client(clients)?;
    let next = Arc::new(AtomicU64::new(0));
    let issued = {
        let (http, url) = (http.clone(), server.url("/v1/oauth/token"));
        let form = server::exchange_form(platform, FLOOR_TASK, "1h");
        load::steps(clients, Some(server.pid()), move |_, _| {
            let (http, url, form, next) = (http.clone(), url.clone(), form.clone(), next.clone());
            async move {
                if next.fetch_add(1, Ordering::Relaxed) >= count {
                    return None;
                }
                Some(load::send_ok(http.post(&url).form(&form)).await)
            }
        })
        .await
    };
    if issued.ok == 0 {
        bail!(
            "no floor grant could be issued: {}",
            issued.first_failure.clone().unwrap_or_default()
        );
    }
    let revocation = accounts::revoke_all(&http, &server, FLOOR_TASK, s.drain_timeout).await?;
    server.stop(Duration::from_secs(10));
    if revocation.verified as u64 != issued.ok {
        bail!(
            "{} floor grants were issued but {} read back verified",
            issued.ok,
            revocation.verified
        );
    }
    Ok(Floor {
        issued,
        clients,
        revocation,
    })
}

fn store_bytes(data: &Path) -> u64 {
    ["kairos.db", "kairos.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Puts the store as filled back in place: `pristine` over `kairos.db`, no WAL.
fn restore(pristine: &Path, data: &Path) -> anyhow::Result<()> {
    for f in ["kairos.db-wal", "kairos.db-shm"] {
        match std::fs::remove_file(data.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {f}"));
            }
            _ => {}
        }
    }
    std::fs::copy(pristine, data.join("kairos.db")).context("restoring the filled store")?;
    Ok(())
}

/// Spawn → `/v1/health` 200 (with `VmRSS` then), and spawn → `/v1/health/ready` 200, each
/// polled over a fresh connection every 2 ms.
fn wait_ready(host: &str, pid: u32, spawned: Instant) -> anyhow::Result<(Duration, u64, Duration)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut health = None;
    let mut ready_status = 0;
    loop {
        if health.is_none()
            && server::http_get_status(host, "/v1/health", Duration::from_secs(30)) == 200
        {
            let at = spawned.elapsed();
            let (rss, _) = server::memory(pid)?;
            health = Some((at, rss));
        }
        if let Some((until_health, rss)) = health {
            ready_status =
                server::http_get_status(host, "/v1/health/ready", Duration::from_secs(30));
            if ready_status == 200 {
                return Ok((until_health, rss, spawned.elapsed()));
            }
        }
        if Instant::now() > deadline {
            match health {
                None => bail!("/v1/health never answered 200 after a restart"),
                Some(_) => bail!(
                    "/v1/health/ready never answered 200 after a restart (last status {ready_status})"
                ),
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

async fn timed_restarts(
    kairos: &Path,
    opts: &ServerOptions,
    grants: u64,
    queue: Option<&QueueFill>,
    pristine: Option<&Path>,
    s: Settings,
) -> anyhow::Result<StoreRestart> {
    let bytes = store_bytes(&opts.data);
    let http = load::client(1)?;
    let mut runs = Vec::new();
    for i in 0..s.runs.max(1) {
        if i > 0
            && let Some(p) = pristine
        {
            restore(p, &opts.data)?;
        }
        let server = Server::start(kairos, opts)?;
        let snapshot = Snapshot::take(Some(server.pid()));
        let spawned_ms =
            now_millis() - i64::try_from(server.spawned.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (host, pid, spawned) = (server.host_port().to_owned(), server.pid(), server.spawned);
        let (until_health, rss_at_health, until_ready) =
            tokio::task::spawn_blocking(move || wait_ready(&host, pid, spawned)).await??;
        let drain = match queue {
            Some(q) => Some(
                wait_drained(&http, &server, q.queued, s.drain_timeout, &snapshot)
                    .await
                    .map_err(|e| format!("{e:#}{}", revocation_log(&server))),
            ),
            None => None,
        };
        tokio::time::sleep(s.settle).await;
        let (rss, peak) = server::memory(server.pid()).with_context(|| match &drain {
            Some(Err(e)) => format!("the server is gone after its drain failed ({e})"),
            _ => "the server is gone after its start".to_owned(),
        })?;
        server.stop(Duration::from_secs(10));
        // The receipts, read from the store the server wrote them to.
        let drain = match (drain, queue) {
            (Some(Ok(d)), Some(q)) => Some(
                receipts(&opts.data.join("kairos.db"), q, spawned_ms, d)
                    .await
                    .map_err(|e| format!("{e:#}")),
            ),
            (d, _) => d,
        };
        runs.push(Run {
            until_health,
            until_ready,
            rss_at_health,
            rss,
            peak,
            drain,
        });
    }
    Ok(StoreRestart {
        grants,
        queued: queue.map_or(0, |q| q.queued),
        store_bytes: bytes,
        runs,
    })
}

/// Polls `/metrics` until the process counted `queued` revocations verified and the API
/// lists no grant still revoking; fails past `timeout` from the spawn.
async fn wait_drained(
    http: &reqwest::Client,
    server: &Server,
    queued: u64,
    timeout: Duration,
    snapshot: &Snapshot,
) -> anyhow::Result<Drain> {
    const VERIFIED: &str = "kairos_revocations_verified_total";
    const FAILURES: &str = "kairos_revocation_failures_total";
    let deadline = server.spawned + timeout;
    loop {
        let text = api::metrics(http, server).await?;
        let counted = api::metric(&text, VERIFIED).context("no verified counter in /metrics")?;
        let failed_attempts = api::metric(&text, FAILURES).unwrap_or(0.0);
        if counted >= queued as f64 {
            let at = server.spawned.elapsed();
            let left =
                api::list_grants(http, server, &[("state", "revoking"), ("limit", "1")]).await?;
            if left.is_empty() {
                let usage = snapshot.usage();
                let alerts = labelled(&text, "kairos_alerts_raised_total", "kind");
                return Ok(Drain {
                    queued,
                    until_listening: server.until_listening,
                    until_all_verified: at,
                    counted,
                    failed_attempts,
                    verified: 0,
                    after_spawn: Latencies::default(),
                    methods: Vec::new(),
                    usage,
                    alerts,
                });
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{timeout:?} after the spawn only {counted} of {queued} queued revocations were verified ({failed_attempts} failed attempts)"
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The values of a metric with one label (`name{label="v"} value`), by the label's value.
fn labelled(text: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    let prefix = format!("{name}{{{label}=\"");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (value_of_label, rest) = rest.split_once("\"}")?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((value_of_label.to_owned(), value))
        })
        .collect()
}

/// The server log's last lines about revocations (its failed attempts and passes), to
/// go with a drain that failed.
fn revocation_log(server: &Server) -> String {
    let text = std::fs::read_to_string(&server.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("revocation")).collect();
    if lines.is_empty() {
        "; the server logged nothing about revocations".to_owned()
    } else {
        format!(
            "; the server log's last lines about revocations: {}",
            lines[lines.len().saturating_sub(3)..].join(" / ")
        )
    }
}

/// Reads the queued grants' receipts back from the store (the server stopped): each must
/// be `ended` with a `verified_at`.
async fn receipts(
    path: &Path,
    q: &QueueFill,
    spawned_ms: i64,
    mut drain: Drain,
) -> anyhow::Result<Drain> {
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        path.display()
    ))?)
    .await?;
    let rows = sqlx::query(
        "SELECT state, verified_at, verify_method FROM grants WHERE task_ref = $1 AND id <> $2",
    )
    .bind(QUEUE_TASK)
    .bind(&q.template)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let mut after_spawn = Vec::with_capacity(rows.len());
    let mut methods: std::collections::BTreeMap<String, u64> = Default::default();
    for row in &rows {
        let state: String = row.try_get("state")?;
        let verified_at: Option<i64> = row.try_get("verified_at")?;
        let (Some(at), "ended") = (verified_at, state.as_str()) else {
            continue;
        };
        let method: Option<String> = row.try_get("verify_method")?;
        *methods
            .entry(method.unwrap_or_else(|| "none".into()))
            .or_default() += 1;
        after_spawn.push(Duration::from_millis(
            u64::try_from(at - spawned_ms).unwrap_or(0),
        ));
    }
    drain.verified = after_spawn.len() as u64;
    if drain.verified != q.queued {
        bail!(
            "{} of {} queued grants were read back ended with a receipt ({} rows)",
            drain.verified,
            q.queued,
            rows.len()
        );
    }
    drain.after_spawn = Latencies::new(after_spawn);
    drain.methods = methods.into_iter().collect();
    Ok(drain)
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One template audit record, as read back.
struct TemplateAudit {
    at: i64,
    kind: AuditKind,
    actor: String,
    identity: Option<String>,
    request_id: Option<String>,
    grant_id: Option<String>,
    task_ref: Option<String>,
    data: String,
}

/// The audit records of one template grant and its request, in chain order.
async fn template_audit(
    conn: &mut SqliteConnection,
    rid: &str,
    gid: &str,
) -> anyhow::Result<Vec<TemplateAudit>> {
    let rows = sqlx::query(
        "SELECT at, kind, actor, identity, request_id, grant_id, task_ref, data FROM audit \
         WHERE request_id = $1 OR grant_id = $2 ORDER BY seq",
    )
    .bind(rid)
    .bind(gid)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let kind: String = r.try_get("kind")?;
        out.push(TemplateAudit {
            at: r.try_get("at")?,
            kind: AuditKind::parse(&kind)
                .with_context(|| format!("unknown audit kind {kind:?} in the store"))?,
            actor: r.try_get("actor")?,
            identity: r.try_get("identity")?,
            request_id: r.try_get("request_id")?,
            grant_id: r.try_get("grant_id")?,
            task_ref: r.try_get("task_ref")?,
            data: r.try_get("data")?,
        });
    }
    Ok(out)
}

/// The audit chain's head, extended record by record.
struct Chain {
    seq: i64,
    prev_hash: String,
}

impl Chain {
    async fn read(conn: &mut SqliteConnection) -> anyhow::Result<Self> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        Ok(Self {
            seq: head.try_get("seq")?,
            prev_hash: head.try_get("hash")?,
        })
    }

    /// A clone of `t` at `at` with `data`, its ids mapped, sealed after the head.
    fn seal(
        &mut self,
        t: &TemplateAudit,
        at: i64,
        data: String,
        map: impl Fn(&Option<String>) -> Option<String>,
    ) -> AuditRecord {
        self.seq += 1;
        let mut record = AuditRecord {
            seq: self.seq,
            at: Timestamp::from_millis(at),
            kind: t.kind,
            actor: t.actor.clone(),
            identity: t.identity.clone(),
            request_id: map(&t.request_id),
            grant_id: map(&t.grant_id),
            task_ref: t.task_ref.clone(),
            data,
            prev_hash: std::mem::take(&mut self.prev_hash),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        self.prev_hash = record.hash.clone();
        record
    }

    /// Inserts `records` (sealed in order after the stored head) and moves the head.
    async fn write(
        &self,
        conn: &mut SqliteConnection,
        records: &[AuditRecord],
    ) -> anyhow::Result<()> {
        for batch in records.chunks(ROWS_PER_INSERT) {
            let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; batch.len()].join(", ");
            let sql = format!(
                "INSERT INTO audit (seq, at, kind, actor, identity, request_id, grant_id, \
                 task_ref, data, prev_hash, hash) VALUES {values}"
            );
            let mut q = sqlx::query(&sql);
            for r in batch {
                q = q
                    .bind(r.seq)
                    .bind(r.at.as_millis())
                    .bind(r.kind.as_str())
                    .bind(&r.actor)
                    .bind(&r.identity)
                    .bind(&r.request_id)
                    .bind(&r.grant_id)
                    .bind(&r.task_ref)
                    .bind(&r.data)
                    .bind(&r.prev_hash)
                    .bind(&r.hash);
            }
            q.execute(&mut *conn).await?;
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(self.seq)
            .bind(&self.prev_hash)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// The column list of `table`, with `set` columns taken from the `fill` table (`f.`) and
/// the others from the template row (`t.`).
async fn clone_select(
    conn: &mut SqliteConnection,
    table: &str,
    set: &[(&str, &str)],
) -> anyhow::Result<(String, String)> {
    let cols: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
    ))
    .fetch_all(&mut *conn)
    .await?;
    if cols.is_empty() {
        bail!("the store has no {table} table");
    }
    let exprs: Vec<String> = cols
        .iter()
        .map(|c| match set.iter().find(|(name, _)| name == c) {
            Some((_, expr)) => (*expr).to_owned(),
            None => format!("t.\"{c}\""),
        })
        .collect();
    for (name, _) in set {
        if !cols.iter().any(|c| c == name) {
            bail!(
                "the store's {table} table has no column {name}; the bench's fill needs updating"
            );
        }
    }
    let cols = cols
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((cols, exprs.join(", ")))
}

/// Clones per transaction.
const CHUNK: usize = 20_000;
/// Rows per `INSERT … VALUES` statement.
const ROWS_PER_INSERT: usize = 500;

/// A connection for filling the store at `path` (the server must not be running).
async fn open_for_fill(path: &Path) -> anyhow::Result<SqliteConnection> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .journal_mode(SqliteJournalMode::Wal)
        // A benchmark fixture: speed over durability while filling; checkpointed at the end.
        .synchronous(SqliteSynchronous::Off)
        .foreign_keys(false)
        .pragma("cache_size", "-262144")
        .pragma("temp_store", "memory");
    Ok(SqliteConnection::connect_with(&options).await?)
}

/// Fills the store at `path` (one active grant in it, issued by the server) up to `total`
/// active grants, each clone with `rounds` copies of the template's audit records (1: the
/// records one issuance writes; more: a longer history per grant, for the audit-heavy
/// console figure). The server must not be running.
pub async fn fill(path: &Path, total: u64, rounds: usize) -> anyhow::Result<Fill> {
    let started = Instant::now();
    let mut conn = open_for_fill(path).await?;

    let template = sqlx::query(
        "SELECT id, request_id, issued_at, expires_at, max_expires_at FROM grants \
         WHERE state = 'active'",
    )
    .fetch_all(&mut conn)
    .await?;
    let [row] = template.as_slice() else {
        bail!(
            "expected exactly one active template grant, found {}",
            template.len()
        );
    };
    let t_gid: String = row.try_get("id")?;
    let t_rid: String = row.try_get("request_id")?;
    let t_times: Vec<String> = ["issued_at", "expires_at", "max_expires_at"]
        .iter()
        .map(|c| {
            row.try_get::<i64, _>(*c)
                .map(|ms| Timestamp::from_millis(ms).to_rfc3339())
        })
        .collect::<Result<_, _>>()?;
    let audit_template = template_audit(&mut conn, &t_rid, &t_gid).await?;
    let mut chain = Chain::read(&mut conn).await?;

    let (rcols, rexprs) = clone_select(
        &mut conn,
        "requests",
        &[
            ("id", "f.rid"),
            ("identity", "f.ident"),
            ("created_at", "f.at"),
            ("grant_id", "f.gid"),
        ],
    )
    .await?;
    let (gcols, gexprs) = clone_select(
        &mut conn,
        "grants",
        &[
            ("id", "f.gid"),
            ("request_id", "f.rid"),
            ("identity", "f.ident"),
            ("issued_at", "f.at"),
            ("expires_at", "f.exp"),
            ("max_expires_at", "f.exp"),
        ],
    )
    .await?;
    sqlx::query(
        "CREATE TEMP TABLE fill (n INTEGER PRIMARY KEY, gid TEXT NOT NULL, rid TEXT NOT NULL, \
         ident TEXT NOT NULL, at INTEGER NOT NULL, exp INTEGER NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    let insert_requests = format!(
        "INSERT INTO requests ({rcols}) SELECT {rexprs} FROM fill f \
         CROSS JOIN (SELECT * FROM requests WHERE id = $1) t ORDER BY f.n"
    );
    let insert_grants = format!(
        "INSERT INTO grants ({gcols}) SELECT {gexprs} FROM fill f \
         CROSS JOIN (SELECT * FROM grants WHERE id = $1) t ORDER BY f.n"
    );

    // Issued over the last 30 minutes, each for an hour: all active for the next 30.
    let clones = total.saturating_sub(1);
    let window_ms: i64 = 30 * 60 * 1000;
    let now = now_millis();
    let mut audit_records = 0u64;
    let mut n: u64 = 0;
    while n < clones {
        let count = usize::try_from((clones - n).min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut rows = Vec::with_capacity(count);
        for k in 0..count as u64 {
            let i = n + k;
            let at = now - window_ms
                + i64::try_from(i).unwrap_or(0) * window_ms
                    / i64::try_from(clones.max(1)).unwrap_or(1);
            rows.push((
                GrantId::generate().to_string(),
                RequestId::generate().to_string(),
                posture_identity(i),
                at,
                at + 2 * window_ms,
            ));
        }
        let mut tx = conn.begin().await?;
        for batch in rows.chunks(ROWS_PER_INSERT) {
            let values = vec!["(?, ?, ?, ?, ?)"; batch.len()].join(", ");
            let sql = format!("INSERT INTO fill (gid, rid, ident, at, exp) VALUES {values}");
            let mut q = sqlx::query(&sql);
            for (gid, rid, ident, at, exp) in batch {
                q = q.bind(gid).bind(rid).bind(ident).bind(at).bind(exp);
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query(&insert_requests)
            .bind(&t_rid)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&insert_grants)
            .bind(&t_gid)
            .execute(&mut *tx)
            .await?;

        // The clones' audit records, sealed into the chain in order.
        let mut records = Vec::with_capacity(rows.len() * audit_template.len() * rounds.max(1));
        for (gid, rid, _, at, exp) in &rows {
            let times = [
                Timestamp::from_millis(*at).to_rfc3339(),
                Timestamp::from_millis(*exp).to_rfc3339(),
                Timestamp::from_millis(*exp).to_rfc3339(),
            ];
            let map = |v: &Option<String>| {
                v.as_ref().map(|s| {
                    if *s == t_gid {
                        gid.clone()
                    } else if *s == t_rid {
                        rid.clone()
                    } else {
                        s.clone()
                    }
                })
            };
            for a in audit_template
                .iter()
                .cycle()
                .take(audit_template.len() * rounds.max(1))
            {
                let mut data = a.data.replace(&t_gid, gid).replace(&t_rid, rid);
                for (old, new) in t_times.iter().zip(&times) {
                    data = data.replace(old, new);
                }
                records.push(chain.seal(a, *at, data, map));
            }
        }
        chain.write(&mut tx, &records).await?;
        audit_records += records.len() as u64;
        sqlx::query("DELETE FROM fill").execute(&mut *tx).await?;
        tx.commit().await?;
        n += count as u64;
    }
    let active: i64 = sqlx::query_scalar("SELECT count(*) FROM grants WHERE state = 'active'")
        .fetch_one(&mut conn)
        .await?;
    if u64::try_from(active).unwrap_or(0) != total {
        bail!("the filled store holds {active} active grants, expected {total}");
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(Fill {
        grants: total,
        audit_records,
        elapsed: started.elapsed(),
    })
}

/// Adds `total` queued revocations to the store at `path` by cloning its one grant of
/// `task_ref`, which an operator revoked and the server verified: each clone is in state
/// `revoking` (`ending` in the store) with the template's end (reason, who), ended in the
/// last minute, its receipt not yet written, and a revocation job due at its end and
/// unclaimed — what the server's revoke writes before its worker runs. Its audit records
/// are the template's up to the revocation (the `verified` record is what the worker
/// writes). The server must not be running.
pub async fn fill_queue(path: &Path, task_ref: &str, total: u64) -> anyhow::Result<QueueFill> {
    let started = Instant::now();
    let mut conn = open_for_fill(path).await?;

    let template = sqlx::query(
        "SELECT id, request_id, issued_at, expires_at, max_expires_at, ended_at FROM grants \
         WHERE task_ref = $1 AND state = 'ended'",
    )
    .bind(task_ref)
    .fetch_all(&mut conn)
    .await?;
    let [row] = template.as_slice() else {
        bail!(
            "expected exactly one revoked template grant of task {task_ref}, found {}",
            template.len()
        );
    };
    let t_gid: String = row.try_get("id")?;
    let t_rid: String = row.try_get("request_id")?;
    let t_issued: i64 = row.try_get("issued_at")?;
    let t_ended: i64 = row.try_get("ended_at")?;
    let t_times: Vec<String> = ["issued_at", "expires_at", "max_expires_at", "ended_at"]
        .iter()
        .map(|c| {
            row.try_get::<i64, _>(*c)
                .map(|ms| Timestamp::from_millis(ms).to_rfc3339())
        })
        .collect::<Result<_, _>>()?;
    let audit_template: Vec<TemplateAudit> = template_audit(&mut conn, &t_rid, &t_gid)
        .await?
        .into_iter()
        .filter(|a| a.kind != AuditKind::Verified)
        .collect();
    if !audit_template.iter().any(|a| a.kind == AuditKind::Revoked) {
        bail!("the revoked template grant has no `revoked` audit record");
    }
    let mut chain = Chain::read(&mut conn).await?;

    let (rcols, rexprs) = clone_select(
        &mut conn,
        "requests",
        &[
            ("id", "f.rid"),
            ("created_at", "f.at"),
            ("grant_id", "f.gid"),
        ],
    )
    .await?;
    // The receipt's columns stay empty: the worker writes them when it verifies.
    let (gcols, gexprs) = clone_select(
        &mut conn,
        "grants",
        &[
            ("id", "f.gid"),
            ("request_id", "f.rid"),
            ("issued_at", "f.at"),
            ("expires_at", "f.exp"),
            ("max_expires_at", "f.exp"),
            ("state", "'ending'"),
            ("ended_at", "f.ended"),
            ("revoked_at", "NULL"),
            ("verified_at", "NULL"),
            ("verify_method", "NULL"),
            ("evidence", "NULL"),
        ],
    )
    .await?;
    sqlx::query(
        "CREATE TEMP TABLE fill (n INTEGER PRIMARY KEY, gid TEXT NOT NULL, rid TEXT NOT NULL, \
         at INTEGER NOT NULL, exp INTEGER NOT NULL, ended INTEGER NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    let insert_requests = format!(
        "INSERT INTO requests ({rcols}) SELECT {rexprs} FROM fill f \
         CROSS JOIN (SELECT * FROM requests WHERE id = $1) t ORDER BY f.n"
    );
    let insert_grants = format!(
        "INSERT INTO grants ({gcols}) SELECT {gexprs} FROM fill f \
         CROSS JOIN (SELECT * FROM grants WHERE id = $1) t ORDER BY f.n"
    );
    // The job as the server's enqueue writes it: due at the end, the rest as defaulted.
    let insert_jobs =
        "INSERT INTO revocations (grant_id, due_at) SELECT f.gid, f.ended FROM fill f ORDER BY f.n";

    // Issued between 30 and 5 minutes ago, each for an hour; revoked in the last minute.
    let issue_from: i64 = 30 * 60 * 1000;
    let issue_span: i64 = 25 * 60 * 1000;
    let end_span: i64 = 60 * 1000;
    let hour: i64 = 60 * 60 * 1000;
    let now = now_millis();
    let of_total = |i: u64, span: i64| {
        i64::try_from(i).unwrap_or(0) * span / i64::try_from(total.max(1)).unwrap_or(1)
    };
    let mut n: u64 = 0;
    while n < total {
        let count = usize::try_from((total - n).min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut rows = Vec::with_capacity(count);
        for k in 0..count as u64 {
            let i = n + k;
            let at = now - issue_from + of_total(i, issue_span);
            rows.push((
                GrantId::generate().to_string(),
                RequestId::generate().to_string(),
                at,
                at + hour,
                now - end_span + of_total(i, end_span),
            ));
        }
        let mut tx = conn.begin().await?;
        for batch in rows.chunks(ROWS_PER_INSERT) {
            let values = vec!["(?, ?, ?, ?, ?)"; batch.len()].join(", ");
            let sql = format!("INSERT INTO fill (gid, rid, at, exp, ended) VALUES {values}");
            let mut q = sqlx::query(&sql);
            for (gid, rid, at, exp, ended) in batch {
                q = q.bind(gid).bind(rid).bind(at).bind(exp).bind(ended);
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query(&insert_requests)
            .bind(&t_rid)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&insert_grants)
            .bind(&t_gid)
            .execute(&mut *tx)
            .await?;
        sqlx::query(insert_jobs).execute(&mut *tx).await?;

        // The clones' audit records, sealed into the chain in order; each at the same
        // distance from the clone's issue (or end) as the template's from its own.
        let mut records = Vec::with_capacity(rows.len() * audit_template.len());
        for (gid, rid, at, exp, ended) in &rows {
            let times = [*at, *exp, *exp, *ended].map(|ms| Timestamp::from_millis(ms).to_rfc3339());
            let map = |v: &Option<String>| {
                v.as_ref().map(|s| {
                    if *s == t_gid {
                        gid.clone()
                    } else if *s == t_rid {
                        rid.clone()
                    } else {
                        s.clone()
                    }
                })
            };
            for a in &audit_template {
                let mut data = a.data.replace(&t_gid, gid).replace(&t_rid, rid);
                for (old, new) in t_times.iter().zip(&times) {
                    data = data.replace(old, new);
                }
                let record_at = if a.at >= t_ended {
                    ended + (a.at - t_ended)
                } else {
                    at + (a.at - t_issued)
                };
                records.push(chain.seal(a, record_at, data, map));
            }
        }
        chain.write(&mut tx, &records).await?;
        sqlx::query("DELETE FROM fill").execute(&mut *tx).await?;
        tx.commit().await?;
        n += count as u64;
    }
    let revoking: i64 =
        sqlx::query_scalar("SELECT count(*) FROM grants WHERE state = 'ending' AND task_ref = $1")
            .bind(task_ref)
            .fetch_one(&mut conn)
            .await?;
    let jobs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM revocations WHERE claimed_until IS NULL AND due_at <= $1",
    )
    .bind(now)
    .fetch_one(&mut conn)
    .await?;
    if u64::try_from(revoking).unwrap_or(0) != total || u64::try_from(jobs).unwrap_or(0) != total {
        bail!(
            "the store holds {revoking} revoking grants and {jobs} due revocation jobs, expected {total} each"
        );
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(QueueFill {
        queued: total,
        template: t_gid,
        audit_per_grant: audit_template.len() as u64,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_labelled_metric() {
        let text = "# TYPE kairos_alerts_raised counter\n\
                    kairos_alerts_raised_total{kind=\"held_past_use\"} 103\n\
                    kairos_alerts_raised_total{kind=\"orphaned\"} 1\n\
                    kairos_alerts_raised_totally{kind=\"x\"} 9\n\
                    kairos_alerts_open{kind=\"orphaned\"} 1\n";
        assert_eq!(
            labelled(text, "kairos_alerts_raised_total", "kind"),
            vec![
                ("held_past_use".to_owned(), 103.0),
                ("orphaned".to_owned(), 1.0)
            ]
        );
    }
}
