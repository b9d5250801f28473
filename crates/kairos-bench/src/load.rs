//! The closed-loop HTTP load driver shared by every HTTP figure and its floor: N clients,
//! each sending its next request as soon as the previous answer is read, for a fixed time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cpu::{Snapshot, Usage};
use crate::stats::Latencies;

/// Builds the next request; called once per request so each one is fresh.
pub type MakeRequest = Arc<dyn Fn() -> reqwest::RequestBuilder + Send + Sync>;

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// The first failure, to show why requests failed.
    pub first_failure: Option<String>,
    /// Where the CPU went during the timed run (not the warm-up).
    pub usage: Usage,
}

impl LoadResult {
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `clients` loops of `make` for `warmup` (discarded), then for `duration`, noting
/// the CPU used by `server_pid`, PostgreSQL, the bench and the machine meanwhile.
pub async fn drive(
    clients: usize,
    warmup: Duration,
    duration: Duration,
    server_pid: Option<u32>,
    make: MakeRequest,
) -> LoadResult {
    if !warmup.is_zero() {
        let _ = run(clients, warmup, server_pid, make.clone()).await;
    }
    run(clients, duration, server_pid, make).await
}

async fn run(
    clients: usize,
    duration: Duration,
    server_pid: Option<u32>,
    make: MakeRequest,
) -> LoadResult {
    let deadline = Instant::now() + duration;
    steps(clients, server_pid, move |_client, _i| {
        let make = make.clone();
        async move {
            if Instant::now() >= deadline {
                return None;
            }
            Some(send_ok(make()).await)
        }
    })
    .await
}

/// Sends `request` and reads its whole answer: `Ok` for a 2xx, else why not (the status
/// and the start of the body, or the transport error).
pub async fn send_ok(request: reqwest::RequestBuilder) -> Result<(), String> {
    match request.send().await {
        Ok(resp) => {
            let status = resp.status();
            match resp.bytes().await {
                Ok(_) if status.is_success() => Ok(()),
                Ok(body) => Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                )),
                Err(e) => Err(format!("reading the body: {e}")),
            }
        }
        Err(e) => Err(format!("sending: {e}")),
    }
}

/// `clients` closed loops of `step(client, i)` (`i` counts that client's steps from 0),
/// each until its step answers `None` (no more work: the phase's time is up, or the work
/// list is empty). A step's latency is timed around it; `Some(Err(_))` counts as failed.
/// Notes the CPU used by `server_pid`, PostgreSQL, the bench and the machine meanwhile.
pub async fn steps<F, Fut>(clients: usize, server_pid: Option<u32>, step: F) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Result<(), String>>> + Send,
{
    let snapshot = Snapshot::take(server_pid);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let step = step.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut failed = 0u64;
            let mut first_failure = None;
            for i in 0u64.. {
                let sent = Instant::now();
                match step(client, i).await {
                    None => break,
                    Some(Ok(())) => latencies.push(sent.elapsed()),
                    Some(Err(e)) => {
                        failed += 1;
                        first_failure.get_or_insert(e);
                    }
                }
            }
            (latencies, failed, first_failure)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    let mut first_failure = None;
    for task in tasks {
        match task.await {
            Ok((latencies, f, first)) => {
                all.extend(latencies);
                failed += f;
                if first_failure.is_none() {
                    first_failure = first;
                }
            }
            Err(e) => {
                failed += 1;
                first_failure.get_or_insert(format!("client task failed: {e}"));
            }
        }
    }
    let elapsed = start.elapsed();
    let usage = snapshot.usage();
    LoadResult {
        ok: all.len() as u64,
        failed,
        elapsed,
        latencies: Latencies::new(all),
        first_failure,
        usage,
    }
}

/// A shared HTTP client: keep-alive connections, one per concurrent client.
pub fn client(clients: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30))
        .build()?)
}
