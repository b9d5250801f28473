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

/// An HTTP request's route (the matched route template, never the raw path), method and
/// status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

fn http_duration_histogram() -> Histogram {
    // 50 µs .. ~26 s (a long-poll waits up to 60 s and lands in +Inf).
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

type HttpHistograms = Family<HttpLabels, Histogram, fn() -> Histogram>;

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
    /// From a grant's end (expiry, release, revocation) to its verification that access
    /// is gone.
    pub grant_verified_gone_seconds: Histogram,
    /// From a request's arrival to its credential (token signed or account created),
    /// for requests granted without approval.
    pub issuance_seconds: Histogram,
    /// HTTP requests answered, by route, method and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP request latency, by route, method and status.
    pub http_request_seconds: HttpHistograms,
    /// Uses of grants recorded (introspections answered active, sessions seen).
    pub usage_recorded: Counter,
    /// Uses not recorded because the recorder was full between two flushes.
    pub usage_dropped: Counter,
    /// Tokens presented to introspection after their grant ended, was ending or expired.
    pub use_after_end: Counter,
    /// Unresolved (open or acknowledged) alerts, by kind.
    pub alerts_open: Family<AlertKindLabel, Gauge>,
    /// Alerts opened, by kind.
    pub alerts_raised: Family<AlertKindLabel, Counter>,
    /// Notifications delivered, by channel.
    pub notifications_delivered: Family<ChannelLabel, Counter>,
    /// Failed delivery attempts, by channel.
    pub notifications_failed: Family<ChannelLabel, Counter>,
    /// Notifications given up on (dead-lettered), by channel.
    pub notifications_dead_total: Family<ChannelLabel, Counter>,
    /// Notifications waiting for delivery (from the store: all replicas).
    pub notifications_backlog: Gauge,
    /// Dead notifications waiting for an operator (from the store: all replicas).
    pub notifications_dead: Gauge,
    /// SETs not yet acknowledged, by receiver (from the store: all replicas).
    pub set_pending: Family<ReceiverLabel, Gauge>,
    /// SET deliveries (push attempts and poll answers), by receiver and outcome.
    pub set_deliveries: Family<SetDeliveryLabels, Counter>,
}

/// A SET receiver's name, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    pub receiver: String,
}

/// A SET receiver and what became of a delivery (`acked`, `refused`, `retry`, `dead`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SetDeliveryLabels {
    pub receiver: String,
    pub outcome: &'static str,
}

/// A notification channel's name, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

/// An alert's kind, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertKindLabel {
    pub kind: &'static str,
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
            // 10 ms .. ~5.8 h: a verification usually follows its end within a second,
            // a failing target's retries stretch it.
            grant_verified_gone_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 22)),
            // 50 µs .. ~13 s: a token is signed in microseconds, an account takes a
            // round trip or more to its target.
            issuance_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 19)),
            http_requests: Family::default(),
            http_request_seconds: Family::new_with_constructor(http_duration_histogram),
            usage_recorded: Counter::default(),
            usage_dropped: Counter::default(),
            use_after_end: Counter::default(),
            alerts_open: Family::default(),
            alerts_raised: Family::default(),
            notifications_delivered: Family::default(),
            notifications_failed: Family::default(),
            notifications_dead_total: Family::default(),
            notifications_backlog: Gauge::default(),
            notifications_dead: Gauge::default(),
            set_pending: Family::default(),
            set_deliveries: Family::default(),
            registry: Registry::default(),
        };
        registry.register("grants_issued", "Grants issued", m.grants_issued.clone());
        registry.register(
            "usage_recorded",
            "Uses of grants recorded (introspections answered active, database sessions seen)",
            m.usage_recorded.clone(),
        );
        registry.register(
            "usage_dropped",
            "Uses of grants not recorded because the recorder was full between two flushes",
            m.usage_dropped.clone(),
        );
        registry.register(
            "use_after_end",
            "Tokens presented to introspection after their grant ended, was ending or had expired",
            m.use_after_end.clone(),
        );
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
        registry.register(
            "grant_verified_gone_seconds",
            "Time from a grant's end to its verification that access is gone",
            m.grant_verified_gone_seconds.clone(),
        );
        registry.register(
            "issuance_seconds",
            "Time from a request's arrival to its credential, for requests granted at once",
            m.issuance_seconds.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route template, method and status",
            m.http_request_seconds.clone(),
        );
        registry.register(
            "alerts_open",
            "Unresolved (open or acknowledged) alerts, by kind",
            m.alerts_open.clone(),
        );
        registry.register(
            "alerts_raised",
            "Alerts opened, by kind",
            m.alerts_raised.clone(),
        );
        registry.register(
            "notifications_delivered",
            "Notifications delivered, by channel",
            m.notifications_delivered.clone(),
        );
        registry.register(
            "notifications_failed",
            "Failed notification delivery attempts, by channel",
            m.notifications_failed.clone(),
        );
        registry.register(
            "notifications_dead_lettered",
            "Notifications given up on after dead_after (dead-lettered), by channel",
            m.notifications_dead_total.clone(),
        );
        registry.register(
            "notifications_backlog",
            "Notifications waiting for delivery",
            m.notifications_backlog.clone(),
        );
        registry.register(
            "notifications_dead",
            "Dead-lettered notifications waiting for an operator's retry",
            m.notifications_dead.clone(),
        );
        registry.register(
            "set_pending",
            "Security Event Tokens not yet acknowledged, by receiver",
            m.set_pending.clone(),
        );
        registry.register(
            "set_deliveries",
            "Security Event Token deliveries, by receiver and outcome",
            m.set_deliveries.clone(),
        );
        Self { registry, ..m }
    }

    /// The OpenMetrics text exposition (`application/openmetrics-text; version=1.0.0`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The classic Prometheus text exposition (`text/plain; version=0.0.4`).
    pub fn render_classic(&self) -> String {
        classic_from_openmetrics(&self.render())
    }

    /// A new alert of `kind` was opened.
    pub fn alert_opened(&self, kind: kairos_governance::AlertKind) {
        let label = AlertKindLabel {
            kind: kind.as_str(),
        };
        self.alerts_raised.get_or_create(&label).inc();
        self.alerts_open.get_or_create(&label).inc();
    }

    /// An alert of `kind` was resolved.
    pub fn alert_closed(&self, kind: kairos_governance::AlertKind) {
        self.alerts_open
            .get_or_create(&AlertKindLabel {
                kind: kind.as_str(),
            })
            .dec();
    }

    /// Sets every kind's unresolved count (kinds not listed: 0).
    pub fn set_alerts_open(&self, counts: &[(kairos_governance::AlertKind, u64)]) {
        for kind in kairos_governance::AlertKind::ALL {
            let n = counts
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |(_, n)| i64::try_from(*n).unwrap_or(i64::MAX));
            self.alerts_open
                .get_or_create(&AlertKindLabel {
                    kind: kind.as_str(),
                })
                .set(n);
        }
    }

    /// Counts one answered HTTP request and its latency.
    pub fn http_request(&self, labels: HttpLabels, seconds: f64) {
        self.http_request_seconds
            .get_or_create(&labels)
            .observe(seconds);
        self.http_requests.get_or_create(&labels).inc();
    }

    pub fn ended(&self, reason: &str) {
        self.grants_ended
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// Rewrites an OpenMetrics text exposition in the classic Prometheus text format 0.0.4:
/// no `# EOF` nor `# UNIT`; a counter family is named after its `_total` sample (its
/// `# HELP` and `# TYPE` lines too) and loses its `_created` sample; exemplars are
/// dropped; types the classic format lacks (info, stateset, gaugehistogram, unknown)
/// become `untyped`.
pub fn classic_from_openmetrics(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // A family's `# HELP` comes before its `# TYPE`; it is written once the type is known.
    let mut help: Option<(&str, &str)> = None;
    let mut counter: Option<&str> = None;
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, doc));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            counter = (kind == "counter").then_some(rest.split(' ').next().unwrap_or(rest));
            if let Some((_, doc)) = help.take() {
                out.push_str(&format!("# HELP {name} {doc}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        // A sample; a counter's `_created` is OpenMetrics only.
        if let Some(family) = counter
            && line
                .strip_prefix(family)
                .is_some_and(|rest| rest.starts_with("_created"))
        {
            continue;
        }
        let sample = match line.find(" # {") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(sample);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_has_no_openmetrics_only_lines() {
        let m = Metrics::new();
        m.grants_issued.inc();
        m.ended("expired");
        m.decision_seconds.observe(0.001);
        let text = m.render_classic();
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
        assert!(!text.contains("_created"), "{text}");
        assert!(
            text.contains("# HELP kairos_grants_issued_total Grants issued.\n# TYPE kairos_grants_issued_total counter\nkairos_grants_issued_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kairos_grants_ended_total{reason=\"expired\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kairos_decision_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("kairos_decision_seconds_count 1\n"), "{text}");
    }

    #[test]
    fn classic_drops_created_exemplars_and_unknown_types() {
        let om = "# HELP a_things Things.\n# TYPE a_things counter\n# UNIT a_things things\n\
                  a_things_total 3 # {trace=\"x\"} 1.0\na_things_created 1.7e9\n\
                  # HELP b_info Build.\n# TYPE b_info info\nb_info{v=\"1\"} 1\n# EOF\n";
        assert_eq!(
            classic_from_openmetrics(om),
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\na_things_total 3\n\
             # HELP b_info Build.\n# TYPE b_info untyped\nb_info{v=\"1\"} 1\n"
        );
    }
}
