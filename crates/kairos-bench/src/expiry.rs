//! Expiry lateness at a sustained rate: token grants issued open-loop at a steady rate
//! with a short TTL, so that about as many expire each second while issuance goes on;
//! lateness read from every grant's receipt (`verified_at` − `expires_at`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::Semaphore;

use crate::api;
use crate::cpu::{Snapshot, Usage};
use crate::load;
use crate::server::{self, Server};
use crate::stats::Latencies;

pub const TASK_REF: &str = "bench-expiry";

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Grants issued (and so expiring) per second.
    pub rate: f64,
    /// How long issuance goes on.
    pub issue_for: Duration,
    pub ttl_secs: u64,
    /// Requests in flight at most; beyond it the schedule slips (and the report says so).
    pub max_in_flight: usize,
    /// How long to wait, after the last expiry, for every grant to be verified ended.
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ExpiryResult {
    pub settings: Settings,
    pub scheduled: u64,
    pub issued: u64,
    pub issue_failed: u64,
    pub first_failure: Option<String>,
    /// From the first scheduled send to the last answer.
    pub issue_elapsed: Duration,
    /// The latest any request was sent after its scheduled time.
    pub max_send_slip: Duration,
    pub issue_latencies: Latencies,
    /// Grants read back with a receipt that has `verified_at`.
    pub verified: usize,
    /// Issued grants not verified ended when the wait gave up.
    pub not_verified: usize,
    /// `verified_at − expires_at` over all verified grants.
    pub lateness: Latencies,
    /// p99 of `verified_at − expires_at` in each third of the run, by `expires_at`: a
    /// backlog shows as growth.
    pub lateness_p99_by_third: Vec<Duration>,
    /// `ended_at − expires_at` (when the expirer moved it out of Active).
    pub end_lateness: Latencies,
    /// `revoked_at − ended_at`: the end's write committing, then the hand-over to whoever
    /// checks it (the expirer itself for token grants).
    pub pickup: Latencies,
    /// `verified_at − revoked_at`: the check until the receipt's stamp.
    pub check: Latencies,
    /// Grants per second over the span of their `expires_at`.
    pub expiry_rate: f64,
    /// Grants verified ended per second, over the span of `verified_at`.
    pub verify_rate: f64,
    /// CPU from the first issuance to the last verification.
    pub usage: Usage,
}

/// Runs the phase against a running server (fresh, so that only these grants expire).
pub async fn measure(server: &Server, platform: &str, s: Settings) -> anyhow::Result<ExpiryResult> {
    let http = load::client(s.max_in_flight)?;
    let url = server.url("/v1/oauth/token");
    let form = Arc::new(server::exchange_form(
        platform,
        TASK_REF,
        &format!("{}s", s.ttl_secs),
    ));
    let scheduled = (s.rate * s.issue_for.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / s.rate);
    let permits = Arc::new(Semaphore::new(s.max_in_flight));
    let snapshot = Snapshot::take(Some(server.pid()));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(usize::try_from(scheduled).unwrap_or(0));
    let mut max_slip = Duration::ZERO;
    for k in 0..scheduled {
        let at = start + interval.mul_f64(k as f64);
        tokio::time::sleep_until(at).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            bail!("the in-flight limiter closed");
        };
        max_slip = max_slip.max(tokio::time::Instant::now().saturating_duration_since(at));
        let (http, url, form) = (http.clone(), url.clone(), Arc::clone(&form));
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = match http.post(&url).form(form.as_slice()).send().await {
                Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                    Ok(_) => Ok(sent.elapsed()),
                    Err(e) => Err(format!("reading the body: {e}")),
                },
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    Err(format!("HTTP {status}: {}", &body[..body.len().min(300)]))
                }
                Err(e) => Err(format!("sending: {e}")),
            };
            drop(permit);
            outcome
        }));
    }
    let mut latencies = Vec::new();
    let (mut failed, mut first_failure) = (0u64, None);
    for t in tasks {
        match t.await {
            Ok(Ok(d)) => latencies.push(d),
            Ok(Err(e)) => {
                failed += 1;
                first_failure.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_failure.get_or_insert(format!("task: {e}"));
            }
        }
    }
    let issue_elapsed = start.elapsed();
    let issued = latencies.len() as u64;

    // Wait for the last expiry, then until nothing of this task is active or revoking.
    tokio::time::sleep(Duration::from_secs(s.ttl_secs)).await;
    let deadline = Instant::now() + s.drain_timeout;
    loop {
        let mut open = 0;
        for state in ["active", "revoking"] {
            open += api::list_grants(
                &http,
                server,
                &[("task_ref", TASK_REF), ("state", state), ("limit", "1")],
            )
            .await?
            .len();
        }
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let usage = snapshot.usage();

    let grants = api::list_grants(&http, server, &[("task_ref", TASK_REF)]).await?;
    let mut lateness = Vec::new();
    let mut end_lateness = Vec::new();
    let (mut pickup, mut check) = (Vec::new(), Vec::new());
    let (mut expires, mut verifies) = (Vec::new(), Vec::new());
    let mut by_expiry: Vec<(i64, Duration)> = Vec::new();
    let mut not_verified = 0;
    for g in &grants {
        let Some(exp) = api::time(g, &["expires_at"]) else {
            continue;
        };
        let (Some(ver), Some(end)) = (
            api::time(g, &["receipt", "verified_at"]),
            api::time(g, &["receipt", "ended_at"]),
        ) else {
            not_verified += 1;
            continue;
        };
        if g["state"] != "ended" {
            not_verified += 1;
            continue;
        }
        // An early end (none expected here) would count as zero lateness.
        let late = Duration::from_millis(api::millis_between(exp, ver).max(0).unsigned_abs());
        lateness.push(late);
        by_expiry.push((exp.as_millis(), late));
        end_lateness.push(Duration::from_millis(
            api::millis_between(exp, end).max(0).unsigned_abs(),
        ));
        if let Some(rev) = api::time(g, &["receipt", "revoked_at"]) {
            let gap = |a, b| Duration::from_millis(api::millis_between(a, b).max(0).unsigned_abs());
            pickup.push(gap(end, rev));
            check.push(gap(rev, ver));
        }
        expires.push(exp.as_millis());
        verifies.push(ver.as_millis());
    }
    let rate_over = |v: &[i64]| -> f64 {
        match (v.iter().min(), v.iter().max()) {
            (Some(a), Some(b)) if b > a => v.len() as f64 / ((b - a) as f64 / 1000.0),
            _ => 0.0,
        }
    };
    by_expiry.sort_by_key(|(exp, _)| *exp);
    let third = by_expiry.len().div_ceil(3).max(1);
    let lateness_p99_by_third = by_expiry
        .chunks(third)
        .map(|c| Latencies::new(c.iter().map(|(_, l)| *l).collect()).percentile(99.0))
        .collect();
    Ok(ExpiryResult {
        lateness_p99_by_third,
        settings: s,
        scheduled,
        issued,
        issue_failed: failed,
        first_failure,
        issue_elapsed,
        max_send_slip: max_slip,
        issue_latencies: Latencies::new(latencies),
        verified: lateness.len(),
        not_verified,
        lateness: Latencies::new(lateness),
        end_lateness: Latencies::new(end_lateness),
        pickup: Latencies::new(pickup),
        check: Latencies::new(check),
        expiry_rate: rate_over(&expires),
        verify_rate: rate_over(&verifies),
        usage,
    })
}
