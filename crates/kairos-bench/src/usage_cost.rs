//! What recording a use costs an introspection: the broker's own usage recorder, driven
//! directly by as many threads as the machine has cores, all on one grant (the bench's
//! introspections present one token, so every use lands on the same shard's lock: the
//! worst case). The report sets the CPU per recorded use beside the server's CPU per
//! introspection measured in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kairos_broker::governance::recorder::{Recorded, UsageRecorder, UseClient};
use kairos_domain::{Clock, GrantId, SystemClock};

#[derive(Debug, Clone)]
pub struct RecordingCost {
    pub threads: usize,
    pub uses: u64,
    pub elapsed: Duration,
}

impl RecordingCost {
    /// CPU nanoseconds per recorded use (every thread busy for the whole run).
    pub fn ns_per_use(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e9 * self.threads as f64 / self.uses.max(1) as f64
    }
}

pub fn measure(duration: Duration) -> anyhow::Result<RecordingCost> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let recorder = Arc::new(UsageRecorder::default());
    let grant = GrantId::generate();
    let source = Some(std::net::IpAddr::from([10, 0, 0, 7]));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (recorder, grant, stop) = (Arc::clone(&recorder), grant.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut uses = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        let at = SystemClock.now();
                        if recorder.record_use(&grant, at, source, UseClient::Session("orders-api"))
                            == Recorded::Dropped
                        {
                            return Err(anyhow::anyhow!("the recorder dropped a use of one grant"));
                        }
                    }
                    uses += 256;
                }
                Ok(uses)
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut uses = 0;
    for w in workers {
        uses += w
            .join()
            .map_err(|_| anyhow::anyhow!("a recording thread panicked"))??;
    }
    Ok(RecordingCost {
        threads,
        uses,
        elapsed: started.elapsed(),
    })
}
