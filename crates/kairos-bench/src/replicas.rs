//! Token grants on 1, 2 and 3 replicas of `kairos server` over one PostgreSQL database:
//! the same total client concurrency, spread round-robin over the replicas, each replica
//! count on a fresh database. Beside each figure: the same run's no-op floor and where the
//! CPU went (each replica's process, PostgreSQL's processes, the load generator, the
//! machine), read from `/proc`, so the text can say what bounds it and estimate how it
//! would scale on cores the replicas did not share.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::guard::ScratchDir;
use crate::load::{self, LoadResult, MakeRequest};
use crate::stats::{human, thousands};
use crate::{Plan, cpu, pg, server};

/// The replica counts measured.
pub const COUNTS: [usize; 3] = [1, 2, 3];

/// One replica count's phase.
#[derive(Debug, Clone)]
pub struct ReplicaRun {
    pub replicas: usize,
    /// The phase; its `usage.server` is the replicas' cores together.
    pub load: LoadResult,
    /// Cores each replica used during the timed phase.
    pub per_replica: Vec<f64>,
}

/// Every replica count that ran, in order; a count that failed is the error.
pub type ReplicasResult = Vec<Result<ReplicaRun, String>>;

pub async fn measure(
    kairos: &std::path::Path,
    issuer: &server::Issuer,
    form: &[(&'static str, String)],
    plan: Plan,
) -> ReplicasResult {
    let mut out = Vec::new();
    for n in COUNTS {
        eprintln!("token grants, PostgreSQL store, {n} replica(s)...");
        out.push(
            one(kairos, issuer, form, plan, n)
                .await
                .map_err(|e| format!("{e:#}")),
        );
    }
    out
}

async fn one(
    kairos: &std::path::Path,
    issuer: &server::Issuer,
    form: &[(&'static str, String)],
    plan: Plan,
    n: usize,
) -> anyhow::Result<ReplicaRun> {
    let db = pg::ScratchDb::create().await?;
    let dir = ScratchDir::new(&format!("replicas-{n}"))?;
    let config = server::write_config(&dir.path().join("cfg"), issuer, &Default::default())?;
    // One data directory for all: replicas must share the master key (it opens the
    // signing keys in the store). The first creates it and the schema; the others start
    // after it is up.
    let mut servers = Vec::with_capacity(n);
    for i in 0..n {
        servers.push(server::Server::start(
            kairos,
            &server::ServerOptions {
                data: dir.path().join("data"),
                config: config.clone(),
                log: dir.path().join(format!("server-{i}.log")),
                store: Some(db.url()),
                envs: Vec::new(),
                args: Vec::new(),
            },
        )?);
    }
    let http = load::client(plan.clients)?;
    let urls: Arc<Vec<String>> =
        Arc::new(servers.iter().map(|s| s.url("/v1/oauth/token")).collect());
    for (i, url) in urls.iter().enumerate() {
        http.post(url)
            .form(form)
            .send()
            .await?
            .error_for_status()
            .with_context(|| {
                format!("the first token exchange on replica {i} of {n} failed; see its log")
            })?;
    }
    let make: MakeRequest = {
        let (http, urls, form, next) = (
            http.clone(),
            Arc::clone(&urls),
            form.to_vec(),
            Arc::new(AtomicUsize::new(0)),
        );
        Arc::new(move || {
            let i = next.fetch_add(1, Ordering::Relaxed) % urls.len();
            http.post(&urls[i]).form(&form)
        })
    };
    let pids: Vec<u32> = servers.iter().map(server::Server::pid).collect();
    let _ = load::drive(
        plan.clients,
        Duration::ZERO,
        plan.warmup,
        None,
        make.clone(),
    )
    .await;
    let before: Vec<Option<u64>> = pids.iter().map(|p| cpu::pid_ticks(*p)).collect();
    let started = Instant::now();
    let mut r = load::drive(plan.clients, Duration::ZERO, plan.http, Some(pids[0]), make).await;
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let per_replica: Vec<f64> = pids
        .iter()
        .zip(&before)
        .map(|(p, b)| match (b, cpu::pid_ticks(*p)) {
            (Some(b), Some(a)) => a.saturating_sub(*b) as f64 / cpu::ticks_per_sec() / secs,
            _ => 0.0,
        })
        .collect();
    r.usage.server = Some(per_replica.iter().sum());
    drop(servers);
    drop(db);
    Ok(ReplicaRun {
        replicas: n,
        load: r,
        per_replica,
    })
}

/// CPU seconds per grant of `cores` busy at `rate` grants a second.
fn per_grant(cores: f64, rate: f64) -> f64 {
    cores / rate.max(1e-9)
}

/// The section of BENCHMARKS.md: the table, and what bounds it with an estimate of how it
/// would scale on cores of their own.
pub fn render(s: &mut String, result: &ReplicasResult, noop: Option<&LoadResult>, clients: usize) {
    let _ = writeln!(
        s,
        "### Token grants on several replicas over one PostgreSQL\n"
    );
    let _ = writeln!(
        s,
        "N `kairos server` processes on one PostgreSQL database (each replica count on a fresh \
         one), the same {clients} clients in all, each request sent to the next replica in turn. \
         The floor is the no-op axum handler of this run{}. CPU in cores, read from `/proc` \
         over the timed phase.\n",
        noop.map_or(" (not measured)".to_owned(), |n| format!(
            ", {}/s",
            thousands(n.per_sec())
        ))
    );
    let _ = writeln!(
        s,
        "| replicas | grants/s | failed | ÷ no-op floor | ÷ 1 replica | p50 | p99 | Kairos (each replica) | PostgreSQL | bench | machine |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let one = result
        .iter()
        .find_map(|r| r.as_ref().ok().filter(|r| r.replicas == 1));
    for (i, r) in result.iter().enumerate() {
        match r {
            Ok(r) => {
                let l = &r.load;
                let each: Vec<String> = r.per_replica.iter().map(|c| format!("{c:.2}")).collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {:.2} ({}) | {:.2} | {:.2} | {:.2} of {} |",
                    r.replicas,
                    thousands(l.per_sec()),
                    l.failed,
                    noop.map_or("—".into(), |n| format!(
                        "{:.1}%",
                        100.0 * l.per_sec() / n.per_sec().max(1e-9)
                    )),
                    one.map_or("—".into(), |o| format!(
                        "{:.2}×",
                        l.per_sec() / o.load.per_sec().max(1e-9)
                    )),
                    human(l.latencies.percentile(50.0)),
                    human(l.latencies.percentile(99.0)),
                    l.usage.server.unwrap_or(0.0),
                    each.join(" + "),
                    l.usage.postgres,
                    l.usage.bench,
                    l.usage.machine,
                    l.usage.cores,
                );
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "| {} | failed: {} | | | | | | | | | |",
                    COUNTS.get(i).copied().unwrap_or(0),
                    e.replace(['\n', '|'], " ")
                );
            }
        }
    }
    let _ = writeln!(s);
    for r in result.iter().flatten() {
        if let Some(f) = &r.load.first_failure {
            let _ = writeln!(
                s,
                "First failure with {} replica(s): `{}`\n",
                r.replicas,
                f.replace(['\n', '`'], " ")
            );
        }
    }
    if let Some(text) = bounds(result) {
        let _ = writeln!(s, "{text}\n");
    }
}

/// What bounds the replicas' figures in this run, and an estimate of the scaling on
/// cores they did not share, from the CPU each grant cost.
fn bounds(result: &ReplicasResult) -> Option<String> {
    let runs: Vec<&ReplicaRun> = result.iter().flatten().collect();
    let one = runs.iter().find(|r| r.replicas == 1)?;
    let last = runs.iter().max_by_key(|r| r.replicas)?;
    let rate1 = one.load.per_sec();
    let u = &one.load.usage;
    let cores = u.cores.max(1) as f64;
    let kairos = per_grant(u.server.unwrap_or(0.0), rate1);
    let postgres = per_grant(u.postgres, rate1);
    let bench = per_grant(u.bench, rate1);
    let saturated = |r: &ReplicaRun| r.load.usage.machine >= 0.85 * cores;
    let mut text = format!(
        "**What bounds it.** With one replica a grant cost {:.0} µs of Kairos CPU, {:.0} µs of \
         PostgreSQL CPU and {:.0} µs of the load generator's. ",
        kairos * 1e6,
        postgres * 1e6,
        bench * 1e6
    );
    if saturated(one) && saturated(last) {
        let _ = write!(
            text,
            "The machine's {} cores were busy in every phase ({:.2} and {:.2} of {}), so the \
             replicas, PostgreSQL and the load generator divided one fixed amount of CPU: a \
             second or third replica adds no cores here, only another process to share them \
             (and {}× the grants/s of one replica with {} is that split, not a scaling figure). ",
            u.cores,
            u.machine,
            last.load.usage.machine,
            u.cores,
            format_args!("{:.2}", last.load.per_sec() / rate1.max(1e-9)),
            last.replicas,
        );
    } else {
        let _ = write!(
            text,
            "The cores were not all busy ({:.2} of {} with one replica, {:.2} with {}), so part \
             of the time went to waiting rather than computing: each replica's writer waits for \
             PostgreSQL's commit, and every replica's batch appends to the one audit chain, \
             whose head row they take in turn. ",
            u.machine, u.cores, last.load.usage.machine, last.replicas,
        );
    }
    let scale = last.load.per_sec() / rate1.max(1e-9);
    if last.replicas > 1 && scale < 0.8 {
        // More replicas, fewer grants, the same CPU per second: a serial step.
        let _ = write!(
            text,
            "More replicas gave fewer grants/s ({scale:.2}× with {}), at about the same CPU \
             (Kairos {:.2} and {:.2} cores) and the same PostgreSQL CPU ({:.2} and {:.2}): the \
             bound is a serial step, not CPU. Each replica's writer commits its own batches, and \
             every batch takes the audit chain's head row (`SELECT … FOR UPDATE` on \
             `audit_head`) and holds it through its commit's WAL flush, so the replicas' commits \
             run one at a time; with the same clients split over N replicas each batch carries \
             about 1/N of the grants, and grants/s fall with it. Until that serial step goes \
             (one chain per replica, or the head taken at commit), a replica adds availability, \
             not throughput, on one PostgreSQL. ",
            last.replicas,
            u.server.unwrap_or(0.0),
            last.load.usage.server.unwrap_or(0.0),
            u.postgres,
            last.load.usage.postgres,
        );
    }
    // Estimate: each replica on a core of its own, the load generator elsewhere, and
    // PostgreSQL on as many cores as it needs up to the same count.
    let estimates: Vec<String> = COUNTS
        .iter()
        .map(|&n| {
            let by_kairos = n as f64 / kairos.max(1e-9);
            let by_postgres = n as f64 / postgres.max(1e-9);
            format!(
                "{n}: about {}/s{}",
                thousands(by_kairos.min(by_postgres)),
                if by_postgres < by_kairos {
                    " (PostgreSQL's share bounds it)"
                } else {
                    ""
                }
            )
        })
        .collect();
    let _ = write!(
        text,
        "{} from that CPU split, for a machine where each replica has a core of its own, \
         PostgreSQL as many cores as replicas and the clients run elsewhere (CPU per grant \
         held constant, no other bound): {}. That is an upper bound: it leaves out the audit \
         chain's head, which every replica's writes take in turn, and the commit's WAL flush, \
         neither of which more cores remove; measure on the target machine before relying on \
         it.",
        if last.replicas > 1 && scale < 0.8 {
            "Were that serial step gone, the estimate"
        } else {
            "Estimate"
        },
        estimates.join(", ")
    );
    Some(text)
}
