//! The PostgreSQL floors, measured with the machine's `pgbench` and custom scripts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cpu::{Snapshot, Usage};
use crate::guard;

/// How long pgbench runs: for a time (`-T`) or a number of transactions per client (`-t`).
#[derive(Debug, Clone, Copy)]
pub enum Length {
    Time(Duration),
    PerClient(u64),
}

/// What pgbench reported.
#[derive(Debug, Clone)]
pub struct PgbenchResult {
    pub script: String,
    pub clients: usize,
    pub threads: usize,
    pub transactions: u64,
    pub failed: u64,
    /// pgbench's own figure, excluding connection time.
    pub tps: f64,
    pub latency_avg_ms: Option<f64>,
    /// Wall time of the whole pgbench run, connections included.
    pub wall: Duration,
    pub usage: Usage,
}

/// `pgbench --version`, or an error naming what to install.
pub fn version() -> anyhow::Result<String> {
    let out = Command::new("pgbench")
        .arg("--version")
        .output()
        .context("pgbench is not on PATH; install the PostgreSQL client tools (postgresql-client or postgresql-contrib)")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One pgbench run: `script` (a custom script) against `url`, written into `dir`.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub url: &'a str,
    pub dir: &'a Path,
    pub name: &'a str,
    pub script: &'a str,
    pub clients: usize,
    pub threads: usize,
    pub length: Length,
    pub defines: &'a [(&'a str, &'a str)],
}

pub fn run(job: &Job<'_>) -> anyhow::Result<PgbenchResult> {
    let Job {
        url,
        dir,
        name,
        script,
        clients,
        threads,
        length,
        defines,
    } = job.clone();
    let path = dir.join(format!("{name}.sql"));
    std::fs::write(&path, script)?;
    let mut cmd = Command::new("pgbench");
    cmd.args(["-n", "-f"]).arg(&path).args([
        "-c",
        &clients.to_string(),
        "-j",
        &threads.to_string(),
    ]);
    match length {
        Length::Time(d) => cmd.args(["-T", &d.as_secs().max(1).to_string()]),
        Length::PerClient(t) => cmd.args(["-t", &t.to_string()]),
    };
    for (k, v) in defines {
        cmd.args(["-D", &format!("{k}={v}")]);
    }
    cmd.arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let snapshot = Snapshot::take(None);
    let started = Instant::now();
    let child = guard::spawn_tracked(&mut cmd).context("starting pgbench")?;
    let pid = child.id();
    let out = child.wait_with_output();
    guard::untrack_pid(pid);
    let out = out.context("waiting for pgbench")?;
    let wall = started.elapsed();
    let usage = snapshot.usage();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first_lines = || stderr.lines().take(5).collect::<Vec<_>>().join(" | ");
    let Some(parsed) = parse(&stdout) else {
        bail!(
            "pgbench ({name}) reported no tps (exit {}): {}",
            out.status,
            first_lines()
        );
    };
    if !out.status.success() {
        bail!(
            "pgbench ({name}) failed (exit {}): {}",
            out.status,
            first_lines()
        );
    }
    let Parsed {
        tps,
        transactions,
        failed,
        latency_avg_ms,
    } = parsed;
    Ok(PgbenchResult {
        script: script.trim().to_owned(),
        clients,
        threads,
        transactions,
        failed,
        tps,
        latency_avg_ms,
        wall,
        usage,
    })
}

/// The figures of pgbench's summary.
#[derive(Debug, Clone, PartialEq)]
struct Parsed {
    tps: f64,
    transactions: u64,
    failed: u64,
    latency_avg_ms: Option<f64>,
}

/// Reads pgbench's summary; None without a `tps =` line.
fn parse(stdout: &str) -> Option<Parsed> {
    let after = |prefix: &str| -> Option<&str> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    let tps = after("tps =")?
        .split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()?;
    // "516", or "4000/4000" with -t.
    let transactions = after("number of transactions actually processed:")
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let failed = after("number of failed transactions:")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let latency_avg_ms = after("latency average =")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    Some(Parsed {
        tps,
        transactions,
        failed,
        latency_avg_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary() {
        let out = "transaction type: create.sql\nscaling factor: 1\nquery mode: simple\n\
                   number of clients: 4\nnumber of threads: 2\nmaximum number of tries: 1\n\
                   number of transactions per client: 125\n\
                   number of transactions actually processed: 500/500\n\
                   number of failed transactions: 0 (0.000%)\n\
                   latency average = 22.938 ms\ninitial connection time = 52.281 ms\n\
                   tps = 174.384004 (without initial connection time)\n";
        assert_eq!(
            parse(out),
            Some(Parsed {
                tps: 174.384004,
                transactions: 500,
                failed: 0,
                latency_avg_ms: Some(22.938),
            })
        );
        assert_eq!(parse("pgbench: error: connection refused\n"), None);
    }
}
