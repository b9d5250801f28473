//! The Kairos broker: the core loop without HTTP.
//!
//! A [`Broker`] authenticates callers, asks policy, records requests and grants in the
//! [`Store`](kairos_store::Store), mints credentials, and drives every end of a grant
//! through one path: **mark ended → propagate → verify → receipt** ([`ending`]).
//!
//! Invariants: no HTTP or JSON-over-the-wire types here (the API crate owns those); no
//! SQL (the store owns it); time comes only from the injected [`Clock`].

mod accounts;
pub mod apply;
mod auth;
pub mod checkpoints;
mod connector;
pub mod dpop;
pub mod ending;
mod error;
mod fanout;
pub mod governance;
mod keys;
mod metrics;
pub mod notify;
pub mod reconcile;
mod renewal;
mod requests;
mod scheduler;
pub mod sets;
mod ssh;
pub mod sync;
pub mod targets;
pub mod users;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use kairos_config::Catalog;
use kairos_crypto::issuer::{KeyRing, SigningAlg};
use kairos_crypto::seal::MasterKey;
use kairos_crypto::workload::WorkloadVerifier;
use kairos_domain::{Clock, Timestamp};
use kairos_store::Store;

pub use apply::{ApplyMode, ApplyOptions, ApplyReport, EndingGrant, RemoveAll};
pub use auth::{Authenticated, Caller, api_token_id};
pub use checkpoints::{
    ChainStatus, Checkpoint, CheckpointFinding, CheckpointReport, CheckpointStatus,
};
pub use governance::usage::kinds as usage_alert_kinds;

pub use connector::{Connector, Revocability, TokenConnector};
pub use error::{BrokerError, Result};
pub use governance::recert::{
    ExceptionEntry, RecertCursor, RecertEntry, RecertFilter, RecertPage, RecertPassReport,
};
pub use governance::reviews::{ReviewNow, ReviewPass, ReviewStatus};
pub use governance::usage::{UsageLimits, UsagePassReport};
pub use governance::{AlertQuery, PostureReport, StateOutcome};
pub use metrics::{HttpLabels, Metrics};
pub use notify::notify_backoff;
pub use renewal::Renewal;
pub use requests::{IssuedCredential, NewRequest, RequestOutcome};
pub use ssh::SshCredential;
pub use users::{ChainReport, NewUserToken};

/// Knobs of the broker that are not part of the declarative catalog.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The `iss` of tokens Kairos signs (its public base URL).
    pub issuer_url: String,
    /// How long a pending request waits for approvals before it expires.
    pub pending_timeout: Duration,
    /// Algorithm of newly generated signing keys.
    pub signing_alg: SigningAlg,
    /// Failed revocation attempts after which the alarm metric and log fire.
    pub revocation_alarm_after: u32,
    /// TTL used when a request names none (still capped by the entitlement).
    pub default_ttl: Duration,
    /// A grant still `provisioning` after this long is taken for an interrupted one and
    /// aborted by the reconciler (another replica may be mid-way within it).
    pub provisioning_grace: Duration,
    /// How long a revocation worker holds a claimed job before another may take it over
    /// (after a crash).
    pub revocation_lease: Duration,
    /// The first retry's wait after a failed revocation; each further failure doubles
    /// it, up to 5 minutes (see [`ending::backoff`]).
    pub revocation_backoff_unit: Duration,
    /// How often a target with failing revocations is probed (a cheap `list_managed`);
    /// when it answers again, its whole backlog is retried at once.
    pub outage_probe_interval: Duration,
    /// For crash tests only: abort the process at this point (see [`CrashPoint`]).
    pub danger_crash_at: Option<CrashPoint>,
    /// Where signed audit checkpoints are appended (besides the log), if anywhere.
    pub audit_checkpoint_file: Option<std::path::PathBuf>,
    /// How often a checkpoint is made when the audit head has moved.
    pub audit_checkpoint_interval: Duration,
    /// How often the recertification pass runs (see [`Broker::recert_pass`]).
    pub recert_pass_interval: Duration,
    /// Where callers' addresses come from behind proxies.
    pub sources: SourceSettings,
    /// How often recorded usage is written to the store (also at shutdown).
    pub usage_flush_interval: Duration,
    /// How often the usage detectors look (dormant, shared, held past use).
    pub usage_pass_interval: Duration,
    /// Delivery of notifications (see [`notify`]).
    pub notify: NotifySettings,
}

/// How notifications are delivered.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// A notification still undelivered this long after it was written is dead-lettered.
    pub dead_after: Duration,
    /// The first retry's wait; each further failure doubles it, up to 5 minutes, with
    /// up to a quarter more at random (jitter).
    pub backoff_unit: Duration,
    /// How long one delivery attempt may take (a stalled receiver counts as a failure).
    pub timeout: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            dead_after: Duration::from_secs(24 * 3600),
            backoff_unit: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How the API finds a caller's address: the TCP peer, or — when the peer is one of the
/// trusted proxies — the right-most untrusted address of the proxy header.
#[derive(Debug, Clone, Default)]
pub struct SourceSettings {
    /// Lowercase header name, e.g. `x-forwarded-for`.
    pub trusted_proxy_header: Option<String>,
    pub trusted_proxies: Vec<kairos_domain::SourceRange>,
}

/// Points where a crash test asks the broker to die abruptly, as a SIGKILL would:
/// between creating an account and recording it active, and between revoking an account
/// and recording that it is verified gone. Set only by tests (`KAIROS_DANGER_CRASH_AT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    AfterProvision,
    AfterRevoke,
}

impl CrashPoint {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "after-provision" => Some(Self::AfterProvision),
            "after-revoke" => Some(Self::AfterRevoke),
            _ => None,
        }
    }
}

impl Broker {
    pub(crate) fn crash_point(&self, here: CrashPoint) {
        if self.settings.danger_crash_at == Some(here) {
            tracing::error!(
                ?here,
                "KAIROS_DANGER_CRASH_AT reached: aborting the process"
            );
            std::process::abort();
        }
    }
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            issuer_url: "http://127.0.0.1:8740".into(),
            pending_timeout: Duration::from_secs(3600),
            signing_alg: SigningAlg::Es256,
            revocation_alarm_after: 5,
            default_ttl: Duration::from_secs(15 * 60),
            provisioning_grace: Duration::from_secs(60),
            revocation_lease: Duration::from_secs(30),
            revocation_backoff_unit: Duration::from_secs(1),
            outage_probe_interval: Duration::from_secs(2),
            danger_crash_at: None,
            audit_checkpoint_file: None,
            audit_checkpoint_interval: Duration::from_secs(5 * 60),
            sources: SourceSettings::default(),
            usage_flush_interval: Duration::from_secs(1),
            usage_pass_interval: Duration::from_secs(30),
            recert_pass_interval: Duration::from_secs(5),
            notify: NotifySettings::default(),
        }
    }
}

/// The broker. Cheap to share: wrap it in an `Arc`.
pub struct Broker {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: MasterKey,
    settings: BrokerSettings,
    /// The catalog in force and the stored configuration version it was built from (0:
    /// none saved yet), swapped together.
    catalog: RwLock<(Arc<Catalog>, i64)>,
    /// Catalog and key propagation between replicas (see [`sync`]).
    sync: sync::SyncState,
    verifier: RwLock<Arc<WorkloadVerifier>>,
    /// X.509-SVIDs against the catalog's `[[trust_domain]]` bundles (swapped with it).
    svids: RwLock<Arc<kairos_crypto::spiffe::SvidVerifier>>,
    keys: RwLock<Arc<KeyRing>>,
    targets: RwLock<Arc<targets::Targets>>,
    metrics: Metrics,
    /// Wakes the expirer early: a grant became active that expires before the expirer's
    /// planned wake-up (see [`Broker::expiry_added`]).
    changed: tokio::sync::Notify,
    /// When the expirer plans to look next, in ms since the epoch.
    expirer_wakes_at: std::sync::atomic::AtomicI64,
    /// Woken when revocation work is queued.
    revoke_work: tokio::sync::Notify,
    /// Bumped on every request change, for long-polls.
    request_events: tokio::sync::watch::Sender<u64>,
    /// Bumped when SETs are written, for poll receivers' long-polls.
    set_events: tokio::sync::watch::Sender<u64>,
    /// Signed audit checkpoints: where they go, and the head verified so far.
    checkpointer: checkpoints::Checkpointer,
    /// Targets whose revocations are alarming, as the outage prober last read them from
    /// the store (what `/v1/health` reports without a store read of its own).
    degraded: RwLock<Arc<Vec<kairos_domain::TargetName>>>,
    /// Usage aggregated in memory until the next flush.
    usage: governance::recorder::UsageRecorder,
    /// Grants whose use after end this replica has alerted (bounded).
    after_end_seen: std::sync::Mutex<std::collections::HashSet<kairos_domain::GrantId>>,
    /// Targets whose revocation batch (on this replica) is still running: the next pass
    /// claims none of their jobs until it is done (see `Broker::revoke_due`).
    revoking_targets: ending::BusyTargets,
    /// Identity states as last read (see [`governance`]).
    governance: governance::GovernanceState,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.store.backend())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Opens the broker on a store: loads (or creates) signing keys and the stored catalog.
    /// `catalog` — when given — is applied at start (the `--config` file).
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: MasterKey,
        settings: BrokerSettings,
    ) -> Result<Arc<Self>> {
        // Read before the configuration: a change saved meanwhile is picked up by the
        // first sync pass.
        let stamp = store.catalog_stamp().await?;
        let (catalog, catalog_version) = match store.current_config().await? {
            Some(stored) => {
                let bundle =
                    serde_json::from_str(&stored.bundle_json).map_err(BrokerError::internal)?;
                let catalog = Catalog::from_bundle(&bundle).map_err(|e| {
                    BrokerError::Internal(
                        format!("the stored configuration no longer loads: {e}").into(),
                    )
                })?;
                (catalog, stored.version)
            }
            None => (Catalog::empty(), 0),
        };
        let verifier =
            WorkloadVerifier::new(auth::issuer_trusts(&catalog)).map_err(BrokerError::internal)?;
        let svids = auth::svid_verifier(&catalog);
        let keys = keys::load_or_create(&*store, &*clock, &master, &settings).await?;
        let targets = targets::Targets::from_catalog(&catalog)?;
        // Which server each target reaches, in the background: a target that is down must
        // not hold up the start. A stored configuration whose targets now overlap on one
        // server is not refused here (the operator could not apply a fix then): the
        // reconciler removes nothing on those targets until it is fixed (it checks again
        // before every pass, see `Targets::removal_allowed`), and this logs why.
        let at_start = targets.clone();
        tokio::spawn(async move {
            let check = at_start.check_servers().await;
            for o in &check.overlaps {
                tracing::error!(problem = %o, "stored configuration: targets overlap on one server; the reconciler removes nothing on them until it is fixed");
            }
            for w in &check.warnings {
                tracing::warn!(warning = %w, "target check at start");
            }
        });
        let (request_events, _) = tokio::sync::watch::channel(0);
        let (set_events, _) = tokio::sync::watch::channel(0);
        let checkpointer = checkpoints::Checkpointer::new(settings.audit_checkpoint_file.clone());
        let broker = Arc::new(Self {
            store,
            clock,
            master,
            settings,
            catalog: RwLock::new((Arc::new(catalog), catalog_version)),
            sync: sync::SyncState::new(stamp),
            verifier: RwLock::new(Arc::new(verifier)),
            svids: RwLock::new(Arc::new(svids)),
            keys: RwLock::new(Arc::new(keys)),
            targets: RwLock::new(Arc::new(targets)),
            metrics: Metrics::new(),
            changed: tokio::sync::Notify::new(),
            expirer_wakes_at: std::sync::atomic::AtomicI64::new(i64::MAX),
            revoke_work: tokio::sync::Notify::new(),
            request_events,
            set_events,
            checkpointer,
            degraded: RwLock::new(Arc::new(Vec::new())),
            usage: governance::recorder::UsageRecorder::default(),
            after_end_seen: std::sync::Mutex::new(std::collections::HashSet::new()),
            revoking_targets: ending::BusyTargets::default(),
            governance: governance::GovernanceState::default(),
        });
        broker.refresh_gauges().await?;
        broker.refresh_identity_states().await?;
        broker.refresh_alert_gauges().await?;
        if let Err(e) = broker.prepare_ssh_targets().await {
            tracing::error!(error = %e, "an ssh target's CA key cannot be made or its krl_file written; sshd refuses every key while it cannot read its RevokedKeys file");
        }
        Ok(broker)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.versioned_catalog().0
    }

    /// The catalog in force with the stored configuration version it was built from (0:
    /// none saved yet).
    pub fn versioned_catalog(&self) -> (Arc<Catalog>, i64) {
        match self.catalog.read() {
            Ok(c) => (Arc::clone(&c.0), c.1),
            Err(poisoned) => {
                let c = poisoned.into_inner();
                (Arc::clone(&c.0), c.1)
            }
        }
    }

    fn verifier(&self) -> Arc<WorkloadVerifier> {
        match self.verifier.read() {
            Ok(v) => Arc::clone(&v),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn svids(&self) -> Arc<kairos_crypto::spiffe::SvidVerifier> {
        match self.svids.read() {
            Ok(v) => Arc::clone(&v),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn key_ring(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(k) => Arc::clone(&k),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The workload verifier for a catalog's issuers; refuses what cannot be trusted.
    fn verifier_for(catalog: &Catalog) -> Result<WorkloadVerifier> {
        WorkloadVerifier::new(auth::issuer_trusts(catalog))
            .map_err(|e| BrokerError::invalid("invalid_config", e.to_string()))
    }

    pub fn targets(&self) -> Arc<targets::Targets> {
        match self.targets.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Swaps in a new catalog with the workload verifier and target connectors built from it.
    fn swap_catalog(
        &self,
        catalog: Catalog,
        version: i64,
        verifier: WorkloadVerifier,
        targets: targets::Targets,
    ) {
        match self.targets.write() {
            Ok(mut t) => *t = Arc::new(targets),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(targets),
        }
        match self.verifier.write() {
            Ok(mut v) => *v = Arc::new(verifier),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(verifier),
        }
        let svids = Arc::new(auth::svid_verifier(&catalog));
        match self.svids.write() {
            Ok(mut v) => *v = svids,
            Err(poisoned) => *poisoned.into_inner() = svids,
        }
        match self.catalog.write() {
            Ok(mut c) => *c = (Arc::new(catalog), version),
            Err(poisoned) => *poisoned.into_inner() = (Arc::new(catalog), version),
        }
    }

    /// For tests only: replaces `target`'s connector with what `wrap` makes of it, until the
    /// next configuration is applied (a slow target, say, built around the real one).
    #[doc(hidden)]
    pub fn wrap_connector_for_tests(
        &self,
        target: &kairos_domain::TargetName,
        wrap: impl FnOnce(
            Arc<dyn kairos_connectors::Connector>,
        ) -> Arc<dyn kairos_connectors::Connector>,
    ) {
        match self.targets.write() {
            Ok(mut t) => *t = Arc::new(t.wrapping(target, wrap)),
            Err(poisoned) => {
                let mut t = poisoned.into_inner();
                *t = Arc::new(t.wrapping(target, wrap));
            }
        }
    }

    /// Forgets the connectors of removed targets whose grants are all verified gone.
    fn drop_retired(&self, names: &[kairos_domain::TargetName]) {
        match self.targets.write() {
            Ok(mut t) => *t = Arc::new(t.without_retired(names)),
            Err(poisoned) => {
                let mut t = poisoned.into_inner();
                *t = Arc::new(t.without_retired(names));
            }
        }
    }

    /// Targets whose revocations keep failing (at least `revocation_alarm_after`
    /// attempts), as last read by the outage prober (every `outage_probe_interval`).
    pub fn degraded_targets(&self) -> Arc<Vec<kairos_domain::TargetName>> {
        match self.degraded.read() {
            Ok(d) => Arc::clone(&d),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn set_degraded(&self, targets: Vec<kairos_domain::TargetName>) {
        match self.degraded.write() {
            Ok(mut d) => *d = Arc::new(targets),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(targets),
        }
    }

    fn set_keys(&self, ring: KeyRing) {
        match self.keys.write() {
            Ok(mut k) => *k = Arc::new(ring),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(ring),
        }
    }

    /// Refreshes the gauges from the store's counts.
    pub async fn refresh_gauges(&self) -> Result<()> {
        let counts = self.store.counts().await?;
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics.active_grants.set(g(counts.active_grants));
        self.metrics.revoking_grants.set(g(counts.revoking_grants));
        self.metrics
            .pending_requests
            .set(g(counts.pending_requests));
        let alarming = self
            .store
            .failing_revocations(self.settings.revocation_alarm_after)
            .await?;
        self.metrics.revocations_alarming.set(g(alarming));
        let degraded = self
            .store
            .failing_targets(self.settings.revocation_alarm_after)
            .await?;
        self.set_degraded(degraded.into_iter().map(|(t, _)| t).collect());
        Ok(())
    }

    /// A grant became active that expires at `at`: the expirer is woken only if that is
    /// before its planned wake-up, so issuance at a high rate does not keep it busy.
    /// (`notify_one` keeps a permit if the expirer is between passes, so none is lost.)
    fn expiry_added(&self, at: kairos_domain::Timestamp) {
        let planned = self
            .expirer_wakes_at
            .load(std::sync::atomic::Ordering::Acquire);
        if at.as_millis() < planned {
            self.changed.notify_one();
        }
    }

    fn notify_requests(&self) {
        self.request_events.send_modify(|v| *v = v.wrapping_add(1));
    }
}
