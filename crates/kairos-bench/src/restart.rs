//! Restart with many active grants: a SQLite store filled with N active token grants (and
//! their requests and hash-chained audit records), then `kairos server` timed from spawn
//! until `/v1/health` answers, and its resident memory once serving — beside the same for
//! a store with none.
//!
//! The store is filled by cloning one real grant that the server issued: the bench asks
//! SQLite for the `requests` and `grants` columns and copies the template row into every
//! column it does not set itself (ids, times), so it follows the schema the server's
//! migrations made. Audit records are re-sealed into the chain with `kairos-domain`, so
//! `kairos audit verify` passes on the filled store.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use kairos_domain::{AuditKind, AuditRecord, GrantId, RequestId, Timestamp};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};

use crate::guard::ScratchDir;
use crate::server::{self, Issuer, Server, ServerOptions};

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Active grants in the filled store.
    pub grants: u64,
    /// Timed restarts per store.
    pub runs: usize,
    /// How long after `/v1/health` first answers the resident memory is read again.
    pub settle: Duration,
}

/// One timed start.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Spawn → the first `200` from `/v1/health`.
    pub until_health: Duration,
    /// `VmRSS` when health first answered.
    pub rss_at_health: u64,
    /// `VmRSS` after `settle`, serving and idle.
    pub rss: u64,
    /// `VmHWM`: the peak resident memory so far.
    pub peak: u64,
}

#[derive(Debug, Clone)]
pub struct StoreRestart {
    pub grants: u64,
    /// Size of the SQLite file (and WAL) at the restart.
    pub store_bytes: u64,
    pub runs: Vec<Run>,
}

impl StoreRestart {
    /// The run with the median time to health.
    pub fn median(&self) -> Option<Run> {
        let mut runs = self.runs.clone();
        runs.sort_by_key(|r| r.until_health);
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    }
}

#[derive(Debug, Clone)]
pub struct Fill {
    pub grants: u64,
    pub audit_records: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct RestartResult {
    pub settings: Settings,
    pub empty: StoreRestart,
    pub filled: StoreRestart,
    pub fill: Fill,
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
    let empty = timed_restarts(kairos, &empty_opts, 0, s)?;

    // The filled store: one real grant as the template, then its clones.
    let full_opts = opts("full");
    let server = Server::start(kairos, &full_opts)?;
    let http = crate::load::client(1)?;
    http.post(server.url("/v1/oauth/token"))
        .form(&server::exchange_form(platform, "bench-restart", "1h"))
        .send()
        .await?
        .error_for_status()
        .context("issuing the template grant")?;
    server.stop(Duration::from_secs(10));
    eprintln!("  filling the store with {} active grants...", s.grants);
    let fill = fill(&full_opts.data.join("kairos.db"), s.grants, 1).await?;
    eprintln!("  filled in {:.1?}; restarting on it...", fill.elapsed);
    let filled = timed_restarts(kairos, &full_opts, s.grants, s)?;

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
            .bearer_auth(server::ADMIN_TOKEN)
            .send()
            .await?
            .error_for_status()
            .context("reading the posture report")?
            .json()
            .await?;
        times.push(started.elapsed());
        identities = answer["identities"]["total"].as_u64().unwrap_or(0);
    }
    server.stop(Duration::from_secs(10));
    times.sort();
    Ok(RestartResult {
        settings: s,
        empty,
        filled,
        fill,
        posture: PostureTiming {
            identities,
            grants: s.grants,
            times,
        },
    })
}

fn store_bytes(data: &Path) -> u64 {
    ["kairos.db", "kairos.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

fn timed_restarts(
    kairos: &Path,
    opts: &ServerOptions,
    grants: u64,
    s: Settings,
) -> anyhow::Result<StoreRestart> {
    let bytes = store_bytes(&opts.data);
    let mut runs = Vec::new();
    for _ in 0..s.runs.max(1) {
        let server = Server::start(kairos, opts)?;
        let host = server.host_port().to_owned();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if server::http_get_status(&host, "/v1/health", Duration::from_secs(30)) == 200 {
                break;
            }
            if Instant::now() > deadline {
                bail!("/v1/health never answered 200 after a restart");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let until_health = server.spawned.elapsed();
        let (rss_at_health, _) = server::memory(server.pid())?;
        std::thread::sleep(s.settle);
        let (rss, peak) = server::memory(server.pid())?;
        runs.push(Run {
            until_health,
            rss_at_health,
            rss,
            peak,
        });
        server.stop(Duration::from_secs(10));
    }
    Ok(StoreRestart {
        grants,
        store_bytes: bytes,
        runs,
    })
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One template audit record, as read back.
struct TemplateAudit {
    kind: AuditKind,
    actor: String,
    identity: Option<String>,
    request_id: Option<String>,
    grant_id: Option<String>,
    task_ref: Option<String>,
    data: String,
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

/// Fills the store at `path` (one grant in it, issued by the server) up to `total` active
/// grants, each clone with `rounds` copies of the template's audit records (1: the
/// records one issuance writes; more: a longer history per grant, for the audit-heavy
/// console figure). The server must not be running.
pub async fn fill(path: &Path, total: u64, rounds: usize) -> anyhow::Result<Fill> {
    const CHUNK: usize = 20_000;
    const ROWS_PER_INSERT: usize = 500;
    let started = Instant::now();
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .journal_mode(SqliteJournalMode::Wal)
        // A benchmark fixture: speed over durability while filling; checkpointed at the end.
        .synchronous(SqliteSynchronous::Off)
        .foreign_keys(false)
        .pragma("cache_size", "-262144")
        .pragma("temp_store", "memory");
    let mut conn = SqliteConnection::connect_with(&options).await?;

    let template =
        sqlx::query("SELECT id, request_id, issued_at, expires_at, max_expires_at FROM grants")
            .fetch_all(&mut conn)
            .await?;
    let [row] = template.as_slice() else {
        bail!(
            "expected exactly one template grant, found {}",
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
    let audit_rows = sqlx::query(
        "SELECT kind, actor, identity, request_id, grant_id, task_ref, data FROM audit \
         WHERE request_id = $1 OR grant_id = $2 ORDER BY seq",
    )
    .bind(&t_rid)
    .bind(&t_gid)
    .fetch_all(&mut conn)
    .await?;
    let mut audit_template = Vec::new();
    for r in &audit_rows {
        let kind: String = r.try_get("kind")?;
        audit_template.push(TemplateAudit {
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
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut conn)
        .await?;
    let mut seq: i64 = head.try_get("seq")?;
    let mut prev_hash: String = head.try_get("hash")?;

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
                seq += 1;
                let mut record = AuditRecord {
                    seq,
                    at: Timestamp::from_millis(*at),
                    kind: a.kind,
                    actor: a.actor.clone(),
                    identity: a.identity.clone(),
                    request_id: map(&a.request_id),
                    grant_id: map(&a.grant_id),
                    task_ref: a.task_ref.clone(),
                    data,
                    prev_hash: std::mem::take(&mut prev_hash),
                    hash: String::new(),
                };
                record.hash = record.compute_hash();
                prev_hash = record.hash.clone();
                records.push(record);
            }
        }
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
            q.execute(&mut *tx).await?;
        }
        audit_records += records.len() as u64;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&prev_hash)
            .execute(&mut *tx)
            .await?;
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
