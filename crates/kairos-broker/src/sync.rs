//! Catalog and key propagation between replicas on one store.
//!
//! Every replica holds the catalog and the signing key ring in memory. A configuration
//! applied or a key rotated on one replica reaches the others through the store: the
//! scheduler's sync loop reads [`kairos_store::CatalogStamp`] (one cheap read) every
//! [`SYNC_EVERY`]; when the stored configuration version is newer than the one in force,
//! the replica loads that bundle, builds the catalog exactly as an apply does
//! (`Catalog::from_bundle`, the workload verifier, the target connectors, the removed
//! targets' connectors kept while their grants are not verified gone), swaps it in and
//! ends the grants it issued meanwhile that the new catalog orphans or denies (as an
//! apply's second look does); when the keys changed, it reloads the ring.
//!
//! A replica never decides with a catalog it has not confirmed current within
//! [`CATALOG_MAX_AGE`]: a decision on an older confirmation first syncs, and when the store
//! cannot be reached the decision is refused as `StoreUnavailable` (503) — it could not
//! have been recorded anyway. Decision records carry `data.catalog_version`.

use std::time::{Duration, Instant};

use kairos_config::{Catalog, ConfigBundle};
use kairos_domain::Principal;
use kairos_store::CatalogStamp;

use crate::error::STORE_UNREACHABLE;
use crate::targets::Targets;
use crate::{Broker, BrokerError, Result};

/// How often the sync loop reads the store's stamp.
pub const SYNC_EVERY: Duration = Duration::from_millis(500);

/// The longest a replica decides with a catalog it has not confirmed current.
pub const CATALOG_MAX_AGE: Duration = Duration::from_secs(2);

/// What differs between what a replica holds and the store's stamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StampChange {
    /// A newer configuration version is stored.
    pub config: bool,
    /// Signing keys were added (a rotation) or removed (a prune).
    pub keys: bool,
}

/// Compares the configuration version in force and the stamp the key ring was last loaded
/// at with the store's stamp (pure).
pub fn stamp_change(version: i64, keys_at: &CatalogStamp, stored: &CatalogStamp) -> StampChange {
    StampChange {
        config: stored.config_version > version,
        keys: stored.keys != keys_at.keys || stored.newest_key_at != keys_at.newest_key_at,
    }
}

/// Whether a catalog last confirmed current `since` ago may still decide (pure).
pub fn may_decide(since: Duration) -> bool {
    since <= CATALOG_MAX_AGE
}

/// What a sync pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The configuration version now in force, when a newer one was loaded.
    pub adopted: Option<i64>,
    /// The key ring was reloaded.
    pub keys_reloaded: bool,
    /// Grants this replica issued under the old catalog that the new one ended.
    pub late_grants_ended: usize,
}

/// A replica's sync bookkeeping.
pub(crate) struct SyncState {
    /// Held by a sync pass and by an apply from its diff to its swap.
    lock: tokio::sync::Mutex<()>,
    /// The store's stamp when the key ring was last loaded.
    keys_at: std::sync::Mutex<CatalogStamp>,
    /// When the catalog in force was last confirmed current.
    confirmed: std::sync::Mutex<Instant>,
}

impl SyncState {
    pub(crate) fn new(stamp: CatalogStamp) -> Self {
        Self {
            lock: tokio::sync::Mutex::new(()),
            keys_at: std::sync::Mutex::new(stamp),
            confirmed: std::sync::Mutex::new(Instant::now()),
        }
    }

    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    fn keys_at(&self) -> CatalogStamp {
        match self.keys_at.lock() {
            Ok(k) => *k,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn set_keys_at(&self, stamp: CatalogStamp) {
        match self.keys_at.lock() {
            Ok(mut k) => *k = stamp,
            Err(poisoned) => *poisoned.into_inner() = stamp,
        }
    }

    /// How long ago the catalog in force was last confirmed current.
    fn since_confirmed(&self) -> Duration {
        match self.confirmed.lock() {
            Ok(c) => c.elapsed(),
            Err(poisoned) => poisoned.into_inner().elapsed(),
        }
    }

    fn confirm(&self, at: Instant) {
        match self.confirmed.lock() {
            Ok(mut c) => *c = (*c).max(at),
            Err(poisoned) => {
                let mut c = poisoned.into_inner();
                *c = (*c).max(at);
            }
        }
    }
}

impl Broker {
    /// One sync pass: reads the store's stamp and, when another replica applied a
    /// configuration or changed the keys, loads them. Confirms the catalog current (from
    /// the moment the stamp was read) when it succeeds.
    pub async fn sync_catalog(&self) -> Result<SyncOutcome> {
        let guard = self.sync.lock().await;
        let read_at = Instant::now();
        let stored = self.store.catalog_stamp().await?;
        let (old, version) = self.versioned_catalog();
        let change = stamp_change(version, &self.sync.keys_at(), &stored);
        let mut outcome = SyncOutcome::default();
        if change.keys {
            self.reload_key_ring().await?;
            self.sync.set_keys_at(stored);
            outcome.keys_reloaded = true;
            tracing::info!(
                keys = stored.keys,
                "signing keys changed in the store; key ring reloaded"
            );
        }
        let mut applied_at = None;
        if change.config {
            applied_at = self.adopt_stored_config(version).await?;
        }
        self.sync.confirm(read_at);
        drop(guard);
        if let Some((adopted, applied_at)) = applied_at {
            outcome.adopted = Some(adopted);
            // Grants this replica decided under the old catalog after the applying
            // replica's last look: ended as the apply's second look would have.
            outcome.late_grants_ended = self
                .end_late_grants(&old, applied_at, &Principal::System("broker"))
                .await?;
            self.orphan_pass_now("configuration applied on another replica")
                .await;
            tracing::info!(
                version = adopted,
                from = version,
                late_grants_ended = outcome.late_grants_ended,
                "configuration applied on another replica is now in force here"
            );
        }
        Ok(outcome)
    }

    /// Loads the newest stored configuration when it is newer than `version`, builds the
    /// catalog as an apply does, and swaps it in. Returns its version and when it was
    /// applied.
    async fn adopt_stored_config(
        &self,
        version: i64,
    ) -> Result<Option<(i64, kairos_domain::Timestamp)>> {
        let Some(stored) = self.store.current_config().await? else {
            return Ok(None);
        };
        if stored.version <= version {
            return Ok(None);
        }
        let cannot = |why: String| {
            BrokerError::Internal(
                format!(
                    "configuration version {} (saved by another replica) cannot be loaded here: {why}; this replica refuses decisions until it can (is it running an older Kairos?)",
                    stored.version
                )
                .into(),
            )
        };
        let bundle: ConfigBundle =
            serde_json::from_str(&stored.bundle_json).map_err(|e| cannot(e.to_string()))?;
        let catalog = Catalog::from_bundle(&bundle).map_err(|e| cannot(e.to_string()))?;
        let verifier = Self::verifier_for(&catalog).map_err(|e| cannot(e.to_string()))?;
        let live = Targets::from_catalog(&catalog).map_err(|e| cannot(e.to_string()))?;
        let targets = self.keep_removed_targets(&catalog, live).await?;
        self.swap_catalog(catalog, stored.version, verifier, targets);
        Ok(Some((stored.version, stored.applied_at)))
    }

    /// The catalog a decision may use, with its version: the one in force when it was
    /// confirmed current within [`CATALOG_MAX_AGE`], else after a sync pass. While the
    /// store cannot be reached, a 503 (nothing is decided on a catalog that may be stale).
    pub(crate) async fn decision_catalog(&self) -> Result<(std::sync::Arc<Catalog>, i64)> {
        if !may_decide(self.sync.since_confirmed()) {
            match self.sync_catalog().await {
                Ok(_) => {}
                Err(BrokerError::StoreUnavailable(_)) => {
                    return Err(BrokerError::StoreUnavailable(STORE_UNREACHABLE.to_owned()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.versioned_catalog())
    }

    /// How long ago the catalog in force was last confirmed current (for readiness).
    pub fn catalog_confirmed_ago(&self) -> Duration {
        self.sync.since_confirmed()
    }

    /// Why this replica cannot serve now, one sentence each; empty when it can. Reads the
    /// store once (at most [`READY_TIMEOUT`]).
    pub async fn readiness(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        match tokio::time::timeout(READY_TIMEOUT, self.store.readiness()).await {
            Err(_) => reasons.push(format!(
                "the store did not answer within {} ms",
                READY_TIMEOUT.as_millis()
            )),
            Ok(Err(e)) => {
                tracing::debug!(error = %crate::ending::ErrorChain(&e), "readiness: the store failed");
                reasons.push(if e.is_unreachable() {
                    "the store is unreachable".to_owned()
                } else {
                    "the store failed to answer a readiness read (see the server log)".to_owned()
                });
            }
            Ok(Ok(r)) if !r.pending_migrations.is_empty() => reasons.push(format!(
                "migrations pending in the store: {:?}; restart a replica of this version to run them",
                r.pending_migrations
            )),
            Ok(Ok(_)) => {}
        }
        let ago = self.catalog_confirmed_ago();
        if !may_decide(ago) {
            reasons.push(format!(
                "the configuration in force was last confirmed current {} ms ago (more than {} ms): decisions wait for the store",
                ago.as_millis(),
                CATALOG_MAX_AGE.as_millis()
            ));
        }
        reasons
    }
}

/// How long a readiness check waits for the store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(config_version: i64, keys: i64, newest_key_at: i64) -> CatalogStamp {
        CatalogStamp {
            config_version,
            keys,
            newest_key_at,
        }
    }

    #[test]
    fn a_newer_configuration_version_is_a_change() {
        let keys = stamp(3, 1, 100);
        assert_eq!(
            stamp_change(3, &keys, &stamp(4, 1, 100)),
            StampChange {
                config: true,
                keys: false
            }
        );
        assert_eq!(
            stamp_change(3, &keys, &stamp(3, 1, 100)),
            StampChange::default()
        );
        // A version this replica saved itself, ahead of what it last read, is no change.
        assert_eq!(
            stamp_change(5, &keys, &stamp(4, 1, 100)),
            StampChange::default()
        );
    }

    #[test]
    fn a_rotation_or_a_prune_is_a_key_change() {
        let keys = stamp(1, 2, 100);
        assert!(stamp_change(1, &keys, &stamp(1, 3, 200)).keys, "rotation");
        assert!(stamp_change(1, &keys, &stamp(1, 1, 100)).keys, "prune");
        assert!(
            stamp_change(1, &keys, &stamp(1, 2, 200)).keys,
            "rotation and prune"
        );
        assert!(!stamp_change(1, &keys, &stamp(1, 2, 100)).keys);
    }

    #[test]
    fn a_catalog_decides_only_while_recently_confirmed() {
        assert!(may_decide(Duration::ZERO));
        assert!(may_decide(CATALOG_MAX_AGE));
        assert!(!may_decide(CATALOG_MAX_AGE + Duration::from_millis(1)));
    }
}
