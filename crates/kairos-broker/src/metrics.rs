//! Prometheus metrics of the broker, rendered by the API at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub grants_issued: Counter,
    pub grants_ended: Family<ReasonLabel, Counter>,
    pub decisions: Family<OutcomeLabel, Counter>,
    pub decision_seconds: Histogram,
    pub active_grants: Gauge,
    pub revoking_grants: Gauge,
    pub pending_requests: Gauge,
    /// Seconds between a grant's `expires_at` and the expirer ending it (last pass).
    pub expirer_lag_seconds: Gauge<f64, AtomicU64>,
    pub revocations_verified: Counter,
    pub revocation_failures: Counter,
    /// Grants whose revocation has failed at least `alarm_after` times: the alarm.
    pub revocations_alarming: Gauge,
    /// Residual accounts the reconciler removed.
    pub residue_removed: Counter,
    /// Active grants whose downstream account was missing at the last reconcile pass.
    pub accounts_missing: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kairos");
        let m = Self {
            grants_issued: Counter::default(),
            grants_ended: Family::default(),
            decisions: Family::default(),
            decision_seconds: Histogram::new(exponential_buckets(0.000_005, 2.0, 18)),
            active_grants: Gauge::default(),
            revoking_grants: Gauge::default(),
            pending_requests: Gauge::default(),
            expirer_lag_seconds: Gauge::default(),
            revocations_verified: Counter::default(),
            revocation_failures: Counter::default(),
            revocations_alarming: Gauge::default(),
            residue_removed: Counter::default(),
            accounts_missing: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("grants_issued", "Grants issued", m.grants_issued.clone());
        registry.register(
            "grants_ended",
            "Grants ended, by reason",
            m.grants_ended.clone(),
        );
        registry.register(
            "decisions",
            "Policy decisions, by outcome",
            m.decisions.clone(),
        );
        registry.register(
            "decision_seconds",
            "Time to evaluate policy for a request",
            m.decision_seconds.clone(),
        );
        registry.register(
            "active_grants",
            "Grants active now",
            m.active_grants.clone(),
        );
        registry.register(
            "revoking_grants",
            "Grants ended but not yet verified gone",
            m.revoking_grants.clone(),
        );
        registry.register(
            "pending_requests",
            "Requests waiting for approval",
            m.pending_requests.clone(),
        );
        registry.register(
            "expirer_lag_seconds",
            "How late the expirer ended the most overdue grant of its last pass",
            m.expirer_lag_seconds.clone(),
        );
        registry.register(
            "revocations_verified",
            "Revocations verified gone",
            m.revocations_verified.clone(),
        );
        registry.register(
            "revocation_failures",
            "Failed revocation attempts (each is retried)",
            m.revocation_failures.clone(),
        );
        registry.register(
            "revocations_alarming",
            "Grants whose revocation keeps failing past the alarm threshold",
            m.revocations_alarming.clone(),
        );
        registry.register(
            "residue_removed",
            "Residual managed accounts the reconciler removed",
            m.residue_removed.clone(),
        );
        registry.register(
            "accounts_missing",
            "Active grants whose downstream account was missing at the last reconcile pass",
            m.accounts_missing.clone(),
        );
        Self { registry, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn ended(&self, reason: &str) {
        self.grants_ended
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
