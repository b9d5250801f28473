//! The posture report: facts from the catalog and the store, findings from the pure rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use kairos_domain::Timestamp;
use kairos_governance::posture::{self, IdentityFacts, Posture, PostureFacts, RevocationFacts};
use kairos_governance::{AlertKind, IdentityState};
use kairos_store::{AlertFilter, Role};

use crate::{Broker, Caller, Result};

/// The window of the report's figures over time: this many calendar days (UTC), today
/// included.
pub const POSTURE_WINDOW_DAYS: u32 = 30;

/// At most this many audit records are read by one fold of verified grants.
const FOLD_SPAN: u64 = 50_000;

/// The report, with when and over what window it was computed.
#[derive(Debug, Clone)]
pub struct PostureReport {
    pub at: Timestamp,
    pub window_days: u32,
    /// The window's start: midnight UTC, `window_days - 1` days before today.
    pub since: Timestamp,
    pub posture: Posture,
}

/// A kept report is recomputed in the background when older than this, or than thirty
/// times what computing it took (a report that takes a second to compute is recomputed
/// every thirty: a thirtieth of a core)…
const KEPT_REFRESH: std::time::Duration = std::time::Duration::from_secs(15);
/// …while someone looked at it this recently; after that it is dropped.
const KEPT_WANTED: std::time::Duration = std::time::Duration::from_secs(600);

/// The posture report kept for the console: a page view reads it instead of computing
/// one (a second or more with a hundred thousand grants); the scheduler recomputes it
/// every [`KEPT_REFRESH`] while people keep looking.
#[derive(Debug, Default)]
pub(crate) struct KeptPosture {
    report: std::sync::Mutex<Option<Arc<PostureReport>>>,
    /// When it was last asked for, if ever.
    wanted: std::sync::Mutex<Option<std::time::Instant>>,
    /// How long the last computation took, in ms.
    took_ms: std::sync::atomic::AtomicU64,
}

/// The value behind a mutex, even one a panicking holder left poisoned (each value here
/// is replaced whole, so it is never half-written).
fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KeptPosture {
    fn get(&self) -> Option<Arc<PostureReport>> {
        locked(&self.report).clone()
    }

    fn set(&self, report: Option<Arc<PostureReport>>) {
        *locked(&self.report) = report;
    }

    fn want(&self) {
        *locked(&self.wanted) = Some(std::time::Instant::now());
    }

    fn wanted_within(&self, d: std::time::Duration) -> bool {
        locked(&self.wanted).is_some_and(|t| t.elapsed() < d)
    }
}

impl Broker {
    /// The posture report as last computed for the console (its `at` says when; at most
    /// about a minute old while people look at it), computed now if none is kept. The
    /// same readers as [`Self::posture`].
    pub async fn posture_kept(&self, caller: &Caller) -> Result<Arc<PostureReport>> {
        caller.require_role(&[Role::Operator, Role::Auditor], "read the posture report")?;
        let kept = &self.governance.posture;
        kept.want();
        if let Some(report) = kept.get() {
            return Ok(report);
        }
        Ok(Arc::new(self.compute_posture().await?))
    }

    /// From the scheduler: recomputes the kept report when it is older than a minute
    /// and someone looked at it in the last ten; drops it when nobody has.
    pub(crate) async fn refresh_kept_posture(&self) -> Result<()> {
        let kept = &self.governance.posture;
        if !kept.wanted_within(KEPT_WANTED) {
            kept.set(None);
            return Ok(());
        }
        let took = kept.took_ms.load(std::sync::atomic::Ordering::Relaxed);
        let refresh_ms = u64::try_from(KEPT_REFRESH.as_millis())
            .unwrap_or(u64::MAX)
            .max(took.saturating_mul(30));
        let stale = kept.get().is_none_or(|r| {
            let age = self.now().as_millis().saturating_sub(r.at.as_millis());
            u64::try_from(age).unwrap_or(0) >= refresh_ms
        });
        if stale {
            self.compute_posture().await?;
        }
        Ok(())
    }

    /// Folds the grants verified since the last fold into the posture's per-day figures
    /// (from the governance pass), so that a report reads days, not every grant of its
    /// window. Answers how many grants it folded.
    pub async fn fold_posture(&self) -> Result<u64> {
        let keep_from = posture::window_start(self.now(), POSTURE_WINDOW_DAYS);
        Ok(self.store.fold_posture(keep_from, FOLD_SPAN).await?)
    }

    /// The posture report (admins, operators, auditors): identities by state and owner,
    /// the lifecycle's open findings, standing privilege and revocation figures, each
    /// finding mapped to OWASP NHI Top 10 (2025) and NIST CSF 2.0.
    pub async fn posture(&self, caller: &Caller) -> Result<PostureReport> {
        caller.require_role(&[Role::Operator, Role::Auditor], "read the posture report")?;
        self.compute_posture().await
    }

    /// Computes the report, and keeps it for the console.
    async fn compute_posture(&self) -> Result<PostureReport> {
        let started = std::time::Instant::now();
        let report = self.posture_now().await?;
        let kept = &self.governance.posture;
        kept.took_ms.store(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        kept.set(Some(Arc::new(report.clone())));
        Ok(report)
    }

    async fn posture_now(&self) -> Result<PostureReport> {
        let now = self.now();
        let since = posture::window_start(now, POSTURE_WINDOW_DAYS);
        let catalog = self.catalog();

        let unresolved = self
            .store
            .list_alerts(&AlertFilter {
                unresolved: true,
                ..AlertFilter::default()
            })
            .await?;
        let mut alerts: BTreeMap<AlertKind, Vec<String>> = BTreeMap::new();
        for a in &unresolved {
            alerts.entry(a.kind).or_default().push(a.subject.clone());
        }
        // Looked up once per identity: a set per kind, not a scan of every alert (with
        // ten thousand orphaned identities a scan was a hundred million comparisons).
        let subjects_of = |kind: AlertKind| -> std::collections::HashSet<&str> {
            unresolved
                .iter()
                .filter(|a| a.kind == kind)
                .map(|a| a.subject.as_str())
                .collect()
        };
        let (orphaned, dormant) = (
            subjects_of(AlertKind::Orphaned),
            subjects_of(AlertKind::DormantIdentity),
        );
        let states: BTreeMap<_, _> = self
            .store
            .identity_states()
            .await?
            .into_iter()
            .map(|s| (s.identity.clone(), s.state))
            .collect();
        let identities = catalog
            .identities()
            .map(|i| IdentityFacts {
                name: i.name.to_string(),
                owner_team: i.owner.to_string(),
                state: states
                    .get(&i.name)
                    .copied()
                    .unwrap_or(IdentityState::Active),
                orphaned: orphaned.contains(i.name.as_str()),
                dormant: dormant.contains(i.name.as_str()),
            })
            .collect();

        let figures = self.store.posture_figures(since, now).await?;
        let alarming = self
            .store
            .failing_revocations(self.settings.revocation_alarm_after)
            .await?;
        let mean_ms = (figures.verified > 0)
            .then(|| figures.verified_ms_total as f64 / figures.verified as f64);
        // Recertifications (identities and exceptions) and the exceptions' own state, as
        // the recertification rules compute them now.
        let (recerts, exceptions) = self.recerts_and_exceptions().await?;
        let named = |status: kairos_governance::recert::RecertStatus| -> Vec<String> {
            recerts
                .iter()
                .filter(|r| r.status == status)
                .map(|r| format!("{} {}", r.kind.as_str(), r.subject))
                .collect()
        };
        let exception_findings = |what: &str| -> Vec<String> {
            exceptions
                .iter()
                .filter(|e| e.findings.iter().any(|f| f.as_str() == what))
                .map(|e| e.exception.name.to_string())
                .collect()
        };
        // After-action reviews not yet filed, and those of them past due.
        let open_reviews = self.with_status(
            self.store
                .list_reviews(&kairos_store::ReviewFilter {
                    state: Some(kairos_store::ReviewStateFilter::Open),
                    ..kairos_store::ReviewFilter::default()
                })
                .await?,
        );
        let reviews_open: Vec<String> = open_reviews
            .iter()
            .map(|r| format!("{} ({})", r.review.id, r.review.identity))
            .collect();
        let reviews_overdue: Vec<String> = open_reviews
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    kairos_governance::breakglass::ReviewStatus::Overdue
                        | kairos_governance::breakglass::ReviewStatus::Escalated
                )
            })
            .map(|r| format!("{} ({})", r.review.id, r.review.identity))
            .collect();
        let facts = PostureFacts {
            now: Some(now),
            window_days: POSTURE_WINDOW_DAYS,
            identities,
            recert_due: named(kairos_governance::recert::RecertStatus::Due),
            recert_overdue: named(kairos_governance::recert::RecertStatus::Overdue),
            reviews_open,
            reviews_overdue,
            exceptions: u64::try_from(exceptions.len()).unwrap_or(u64::MAX),
            exceptions_rotation_overdue: exception_findings("rotation_overdue"),
            exceptions_expired: exception_findings("expired"),
            alerts,
            grant_ms: figures.grant_ms,
            grant_ms_by_day: figures.grant_ms_by_day,
            revocation: RevocationFacts {
                verified: figures.verified,
                mean_ms,
                p95_ms_at_most: posture::p95_bound(&figures.latency_counts),
                alarming,
                residue_removed: figures.residue_removed,
                latency_counts: figures.latency_counts,
            },
        };
        Ok(PostureReport {
            at: now,
            window_days: POSTURE_WINDOW_DAYS,
            since,
            posture: posture::assess(&facts),
        })
    }
}
