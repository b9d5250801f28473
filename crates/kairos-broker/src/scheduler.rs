//! Every background loop of the broker, in one place: what runs, how often, and what
//! wakes it. Each loop only calls a pass that lives with its subject (the expirer and
//! revocation worker in `ending`, the reconciler in `reconcile`, checkpoints in
//! `checkpoints`, governance in `governance`); a pass is safe to run on several replicas
//! at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kairos_domain::Timestamp;

use crate::Broker;
use crate::ending::ErrorChain;

/// How often the governance pass runs (identity states, and the lifecycle rules).
const GOVERNANCE_EVERY: Duration = Duration::from_secs(1);

/// Passes (of the revocation worker, or of the expirer for token grants) whose receipts
/// may still be being written while the next pass runs.
const RECEIPT_WRITES_IN_FLIGHT: usize = 4;

/// A pipelined pass's receipt write that failed leaves its jobs claimed: they are retried
/// after the lease, as when a pass fails.
fn log_receipt_write(
    done: std::result::Result<crate::Result<(usize, usize)>, tokio::task::JoinError>,
) {
    match done {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %ErrorChain(&e), "revocation receipts could not be written; retried after the lease")
        }
        Err(e) => tracing::error!(error = %e, "revocation receipt write did not finish"),
    }
}

impl Broker {
    /// Runs the background loops until `shutdown` resolves: the expirer (driven by the
    /// store's expiry index), the revocation worker, the outage prober, housekeeping
    /// (pending-request expiry, removed targets, key reload, gauges), the reconciler, the
    /// audit checkpointer, the governance pass and the catalog sync.
    pub async fn run_background(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let expirer = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                // A pass's token receipts are written while the next pass ends what fell
                // due meanwhile; a few writes in flight at most, all finished before it stops.
                let mut writes = crate::ending::RecordWrites::new();
                loop {
                    while let Some(done) = writes.try_join_next() {
                        log_receipt_write(done);
                    }
                    while writes.len() >= RECEIPT_WRITES_IN_FLIGHT {
                        if let Some(done) = writes.join_next().await {
                            log_receipt_write(done);
                        }
                    }
                    // A read decides; the write (a transaction) happens only when
                    // something is due. At most a second between looks, for grants other
                    // replicas issue and for clocks that jump.
                    let now = b.now();
                    let sleep = match b.store.next_expiry().await {
                        Ok(Some(next)) if next <= now => {
                            match b.expire_due_pipelined(&mut writes).await {
                                Ok(n) if n > 0 => continue,
                                // Due but held by another replica's expirer right now.
                                Ok(_) => Duration::from_millis(50),
                                Err(e) => {
                                    tracing::error!(error = %ErrorChain(&e), "expirer pass failed");
                                    Duration::from_secs(1)
                                }
                            }
                        }
                        Ok(Some(next)) => next.since(now).min(Duration::from_secs(1)),
                        Ok(None) => Duration::from_secs(1),
                        Err(e) => {
                            tracing::error!(error = %ErrorChain(&e), "expirer cannot read the next expiry");
                            Duration::from_secs(1)
                        }
                    };
                    let wake = now.plus(sleep);
                    b.expirer_wakes_at
                        .store(wake.as_millis(), std::sync::atomic::Ordering::Release);
                    tokio::select! {
                        _ = tokio::time::sleep(sleep) => {}
                        _ = b.changed.notified() => {}
                        _ = shutdown.changed() => {
                            while let Some(done) = writes.join_next().await {
                                log_receipt_write(done);
                            }
                            return;
                        }
                    }
                }
            })
        };
        let revoker = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                // A pass's receipts are written while the next pass claims and propagates;
                // a few writes in flight at most, and all of them finished before it stops.
                let mut writes = crate::ending::RecordWrites::new();
                loop {
                    while let Some(done) = writes.try_join_next() {
                        log_receipt_write(done);
                    }
                    while writes.len() >= RECEIPT_WRITES_IN_FLIGHT {
                        if let Some(done) = writes.join_next().await {
                            log_receipt_write(done);
                        }
                    }
                    match b.revoke_due_pipelined(&mut writes).await {
                        Ok((v, f)) if v + f > 0 => continue,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %ErrorChain(&e), "revocation pass failed")
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = b.revoke_work.notified() => {}
                        _ = shutdown.changed() => {
                            while let Some(done) = writes.join_next().await {
                                log_receipt_write(done);
                            }
                            return;
                        }
                    }
                }
            })
        };
        let prober = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut answering = BTreeMap::new();
                loop {
                    if let Err(e) = b.probe_failing_targets(&mut answering).await {
                        tracing::warn!(error = %ErrorChain(&e), "outage probe failed; will retry");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(b.settings.outage_probe_interval) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            })
        };
        // Catalog and key propagation: another replica's apply or rotation is in force
        // here within one pass (see `sync`). Errors are logged when they start and end,
        // not every pass, while the store is down.
        let sync = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut failing = false;
                loop {
                    match b.sync_catalog().await {
                        Ok(_) if failing => {
                            failing = false;
                            tracing::info!(
                                "configuration sync recovered: the catalog in force is current"
                            );
                        }
                        Ok(_) => {}
                        Err(e) if !failing => {
                            failing = true;
                            tracing::error!(error = %ErrorChain(&e), "configuration sync failed: this replica refuses decisions until it can confirm its catalog is current; will retry");
                        }
                        Err(_) => {}
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(crate::sync::SYNC_EVERY) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            })
        };
        let shutdown_reconciler = shutdown.clone();
        let shutdown_checkpointer = shutdown.clone();
        let shutdown_usage = shutdown.clone();
        let shutdown_posture = shutdown.clone();
        let notifier = tokio::spawn(Arc::clone(&self).run_notifications(shutdown.clone()));
        let governance = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(GOVERNANCE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    if let Err(e) = b.governance_pass().await {
                        tracing::error!(error = %ErrorChain(&e), "governance pass failed; will retry");
                    }
                }
            })
        };
        let housekeeping = {
            let b = Arc::clone(&self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut n: u64 = 0;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    n = n.wrapping_add(1);
                    if let Err(e) = b.expire_pending().await {
                        tracing::error!(error = %ErrorChain(&e), "pending-request expiry failed");
                    }
                    match b.prune_removed_targets().await {
                        Ok(done) if !done.is_empty() => {
                            tracing::info!(targets = ?done, "removed targets' grants are all verified gone; their connectors are closed");
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %ErrorChain(&e), "checking removed targets failed; will retry");
                        }
                    }
                    if n.is_multiple_of(60) {
                        // Console sessions past their absolute end (the console refuses
                        // them on sight; this removes those nobody came back with).
                        let now = b.now();
                        match b
                            .store
                            .delete_ended_sessions(now, Timestamp::from_millis(0))
                            .await
                        {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::debug!(sessions = n, "ended console sessions removed")
                            }
                            Err(e) => {
                                tracing::warn!(error = %ErrorChain(&e), "removing ended console sessions failed; will retry");
                            }
                        }
                    }
                    if n % 60 == 45 {
                        // DPoP proofs past their window: a replay of one is refused by
                        // its `iat` alone now.
                        match b.prune_dpop_proofs().await {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(proofs = n, "expired DPoP proofs forgotten"),
                            Err(e) => {
                                tracing::warn!(error = %ErrorChain(&e), "forgetting expired DPoP proofs failed; will retry");
                            }
                        }
                    }
                    if n.is_multiple_of(30) {
                        if let Err(e) = b.reload_keys().await {
                            tracing::error!(error = %ErrorChain(&e), "key reload failed");
                        }
                        if let Err(e) = b.refresh_gauges().await {
                            tracing::error!(error = %ErrorChain(&e), "gauge refresh failed");
                        }
                    }
                }
            })
        };
        let reconciler = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown_reconciler;
            tokio::spawn(async move {
                let mut last: std::collections::BTreeMap<
                    kairos_domain::TargetName,
                    tokio::time::Instant,
                > = std::collections::BTreeMap::new();
                loop {
                    let catalog = b.catalog();
                    for (name, connector) in b.targets().iter() {
                        let every = catalog
                            .target(name)
                            .and_then(|t| t.kind.db())
                            .map_or(Duration::from_secs(30), |d| {
                                d.reconcile_interval.as_duration()
                            });
                        if last.get(name).is_some_and(|t| t.elapsed() < every) {
                            continue;
                        }
                        last.insert(name.clone(), tokio::time::Instant::now());
                        match b.reconcile(name, Arc::clone(connector)).await {
                            Ok(r)
                                if !r.residue_removed.is_empty() || r.provisioning_aborted > 0 =>
                            {
                                tracing::warn!(target = %name, residue = ?r.residue_removed, aborted = r.provisioning_aborted, "reconciler removed residue");
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(target = %name, error = %ErrorChain(&e), "reconcile pass failed; will retry")
                            }
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            })
        };
        let checkpointer = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown_checkpointer;
            tokio::spawn(async move {
                // The first tick is at once: a start signs the head it finds.
                let mut tick = tokio::time::interval(b.settings.audit_checkpoint_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    if let Err(e) = b
                        .publish_checkpoint(crate::checkpoints::Unmoved::Skip)
                        .await
                    {
                        tracing::error!(error = %ErrorChain(&e), "audit checkpoint failed");
                    }
                }
            })
        };
        // Usage monitoring: recorded uses written in batches (every flush interval, when
        // the recorder fills, and once more at shutdown), and the usage detectors.
        let usage = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown_usage;
            tokio::spawn(async move {
                let mut flush = tokio::time::interval(b.settings.usage_flush_interval);
                flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut detect = tokio::time::interval(b.settings.usage_pass_interval);
                detect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = flush.tick() => {}
                        _ = b.usage.full.notified() => {}
                        _ = detect.tick() => {
                            match b.usage_pass().await {
                                Ok(r) if r != crate::UsagePassReport::default() => {
                                    tracing::info!(dormant = r.dormant.len(), awake = r.awake.len(), shared = r.shared.len(), held = r.held.len(), "usage pass");
                                }
                                Ok(_) => {}
                                Err(e) => tracing::warn!(error = %ErrorChain(&e), "usage pass failed; will retry"),
                            }
                            continue;
                        }
                        _ = shutdown.changed() => break,
                    }
                    if let Err(e) = b.usage_flush_pass().await {
                        tracing::warn!(error = %ErrorChain(&e), "writing usage failed; kept for the next flush");
                    }
                }
                if let Err(e) = b.usage_flush_pass().await {
                    tracing::error!(error = %ErrorChain(&e), "writing usage at shutdown failed");
                }
            })
        };
        // The posture report the console shows, kept fresh while people look at it.
        let posture = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown_posture;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    if let Err(e) = b.refresh_kept_posture().await {
                        tracing::warn!(error = %ErrorChain(&e), "refreshing the kept posture report failed; will retry");
                    }
                }
            })
        };
        let _ = tokio::join!(
            sync,
            posture,
            expirer,
            revoker,
            prober,
            housekeeping,
            reconciler,
            checkpointer,
            governance,
            usage,
            notifier
        );
    }

    /// Notifications: the dispatcher (audit records → outbox) and the deliverer (outbox →
    /// channels), two loops, each every 250 ms or at once while there is more, so a
    /// delivery pass waiting on a slow receiver does not hold up dispatching; gauges every
    /// 5 s (and after busy dispatch passes). Beside them, the same way, the push delivery
    /// of Security Event Tokens (`sets.rs`).
    async fn run_notifications(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let client = match crate::notify::http_client(self.settings.notify.timeout) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "notifications are off: no HTTP client");
                return;
            }
        };
        let dispatcher = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut n: u64 = 0;
                loop {
                    n = n.wrapping_add(1);
                    let busy = match b.dispatch_notifications().await {
                        Ok(rows) => rows > 0,
                        Err(e) => {
                            tracing::error!(error = %ErrorChain(&e), "notification dispatch failed; will retry");
                            false
                        }
                    };
                    if (n.is_multiple_of(20) || busy)
                        && let Err(e) = b.refresh_notification_gauges().await
                    {
                        tracing::warn!(error = %ErrorChain(&e), "notification gauges not refreshed");
                    }
                    if !pause(busy, &mut shutdown).await {
                        return;
                    }
                }
            })
        };
        let set_client = client.clone();
        let deliverer = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let busy = match b.deliver_notifications(&client).await {
                        Ok(sent) => sent > 0,
                        Err(e) => {
                            tracing::error!(error = %ErrorChain(&e), "notification delivery pass failed; will retry");
                            false
                        }
                    };
                    if busy && let Err(e) = b.refresh_notification_gauges().await {
                        tracing::warn!(error = %ErrorChain(&e), "notification gauges not refreshed");
                    }
                    if !pause(busy, &mut shutdown).await {
                        return;
                    }
                }
            })
        };
        let sets = {
            let b = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut n: u64 = 0;
                loop {
                    n = n.wrapping_add(1);
                    let busy = match b.deliver_sets(&set_client).await {
                        Ok(sent) => sent > 0,
                        Err(e) => {
                            tracing::error!(error = %ErrorChain(&e), "SET delivery pass failed; will retry");
                            false
                        }
                    };
                    if (n.is_multiple_of(20) || busy)
                        && let Err(e) = b.refresh_set_gauges().await
                    {
                        tracing::warn!(error = %ErrorChain(&e), "SET gauges not refreshed");
                    }
                    if !pause(busy, &mut shutdown).await {
                        return;
                    }
                }
            })
        };
        let _ = tokio::join!(dispatcher, deliverer, sets);
    }
}

/// The wait between two notification passes: short while there is more to do. False
/// when the server is shutting down.
async fn pause(busy: bool, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    let wait = if busy {
        Duration::from_millis(10)
    } else {
        Duration::from_millis(250)
    };
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shutdown.changed() => false,
    }
}
