//! The posture report: what an auditor asks of the whole estate, as findings that each
//! name the OWASP NHI Top 10 (2025) risk and the NIST CSF 2.0 subcategories they address.
//!
//! [`assess`] is pure: the broker gathers [`PostureFacts`] from the catalog and the store
//! and gets the report back.

use std::collections::BTreeMap;

use kairos_domain::Timestamp;

use crate::alert::AlertKind;
use crate::mapping::{CsfSubcategory, NhiRisk, RiskMapping};
use crate::state::IdentityState;

/// Everything the report is computed from.
#[derive(Debug, Clone, Default)]
pub struct PostureFacts {
    pub now: Option<Timestamp>,
    /// The window of the figures over time (grant-hours, revocation latency).
    pub window_days: u32,
    pub identities: Vec<IdentityFacts>,
    /// Unresolved alerts by kind, and the subjects of each (newest first).
    pub alerts: BTreeMap<AlertKind, Vec<String>>,
    /// Identities whose recertification is due (within its notice), and overdue.
    pub recert_due: Vec<String>,
    pub recert_overdue: Vec<String>,
    /// After-action reviews not yet filed, and those of them past their due date.
    pub reviews_open: Vec<String>,
    pub reviews_overdue: Vec<String>,
    /// Standing exceptions, with those overdue for rotation and those past their end.
    pub exceptions: u64,
    pub exceptions_rotation_overdue: Vec<String>,
    pub exceptions_expired: Vec<String>,
    /// Milliseconds of active access per identity within the window.
    pub grant_ms: BTreeMap<String, i64>,
    /// The same per UTC day (days since the epoch, [`day_of`]), all identities together.
    pub grant_ms_by_day: BTreeMap<i64, i64>,
    pub revocation: RevocationFacts,
}

/// One registered identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFacts {
    pub name: String,
    pub owner_team: String,
    pub state: IdentityState,
    /// Its owner team has no active owner.
    pub orphaned: bool,
    /// No request within the dormancy period.
    pub dormant: bool,
}

/// How ends became verified revocations within the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevocationFacts {
    /// Ends verified gone in the window.
    pub verified: u64,
    /// Mean milliseconds from end to verified gone.
    pub mean_ms: Option<f64>,
    /// Upper bound of the bucket holding the 95th percentile (ms).
    pub p95_ms_at_most: Option<i64>,
    /// Grants whose revocation keeps failing (the alarm).
    pub alarming: u64,
    /// Residual accounts the reconciler removed in the window.
    pub residue_removed: u64,
    /// End → verified latencies per bucket of [`LATENCY_BUCKETS_MS`] (one more for longer).
    pub latency_counts: Vec<u64>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A figure for the record; nothing is wrong.
    Info,
    Low,
    Medium,
    High,
}

/// One thing the report found (or measured).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    /// Stable id: `orphaned_identities`, `recert_overdue`, `standing_privilege`, …
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    /// How many subjects it concerns (or the figure, for a measure).
    pub count: u64,
    /// Up to [`MAX_SUBJECTS`] of them.
    pub subjects: Vec<String>,
    /// `NHI1` … `NHI10`.
    pub owasp_nhi: &'static str,
    pub owasp_nhi_title: &'static str,
    /// `PR.AA-01`, …
    pub nist_csf: Vec<&'static str>,
    /// Why it matters, one sentence.
    pub why: &'static str,
    /// The figure's own words, when it is a measure (`mean 0.4 s, p95 ≤ 1 s`).
    pub detail: Option<String>,
}

/// The most subjects a finding lists.
pub const MAX_SUBJECTS: usize = 20;

/// The report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Posture {
    pub identities: IdentitySummary,
    /// Grant-hours per identity over the window, most first (at most 20).
    pub standing_privilege: Vec<(String, f64)>,
    pub total_grant_hours: f64,
    /// Grant-hours per UTC day, every day of the window oldest first (0 for a day
    /// without access).
    pub grant_hours_by_day: Vec<DayHours>,
    /// How long ends took to be verified gone over the window, per latency bucket.
    pub revocation_latency: Vec<LatencyBucket>,
    pub findings: Vec<Finding>,
}

/// Access held on one UTC day.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DayHours {
    /// The day's midnight (UTC).
    pub day: Timestamp,
    pub grant_hours: f64,
}

/// How many ends were verified gone within a latency bucket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LatencyBucket {
    /// Longer than the previous bucket's bound, at most this (ms); `None` for the last
    /// bucket (longer than every bound).
    pub at_most_ms: Option<i64>,
    pub count: u64,
}

/// Every day of a window of `days` ending on `now`'s day, oldest first, with its hours.
pub fn hours_by_day(now: Timestamp, days: u32, ms_by_day: &BTreeMap<i64, i64>) -> Vec<DayHours> {
    let first = day_of(window_start(now, days).as_millis());
    let last = day_of(now.as_millis());
    (first..=last)
        .map(|day| DayHours {
            day: Timestamp::from_millis(day.saturating_mul(DAY_MS)),
            grant_hours: round2(ms_by_day.get(&day).copied().unwrap_or(0) as f64 / 3_600_000.0),
        })
        .collect()
}

/// The latency buckets with their counts (`counts` as [`RevocationFacts::latency_counts`];
/// missing entries count 0).
pub fn latency_distribution(counts: &[u64]) -> Vec<LatencyBucket> {
    (0..=LATENCY_BUCKETS_MS.len())
        .map(|i| LatencyBucket {
            at_most_ms: LATENCY_BUCKETS_MS.get(i).copied(),
            count: counts.get(i).copied().unwrap_or(0),
        })
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IdentitySummary {
    pub total: u64,
    pub active: u64,
    pub suspended: u64,
    pub retired: u64,
    /// Identities per owner team.
    pub by_owner: BTreeMap<String, u64>,
}

/// Computes the report from its facts.
pub fn assess(facts: &PostureFacts) -> Posture {
    let mut summary = IdentitySummary::default();
    for i in &facts.identities {
        summary.total += 1;
        match i.state {
            IdentityState::Active => summary.active += 1,
            IdentityState::Suspended => summary.suspended += 1,
            IdentityState::Retired => summary.retired += 1,
        }
        *summary.by_owner.entry(i.owner_team.clone()).or_default() += 1;
    }

    let mut findings = Vec::new();
    let names = |pick: &dyn Fn(&IdentityFacts) -> bool| -> Vec<String> {
        facts
            .identities
            .iter()
            .filter(|i| pick(i))
            .map(|i| i.name.clone())
            .collect()
    };
    let orphaned = names(&|i| i.orphaned && i.state != IdentityState::Retired);
    push(
        &mut findings,
        "orphaned_identities",
        "Identities whose owner team has no active owner",
        Severity::High,
        orphaned,
        AlertKind::Orphaned.mapping(),
    );
    let suspended = names(&|i| i.state == IdentityState::Suspended);
    push(
        &mut findings,
        "suspended_identities",
        "Identities suspended (grants ended, requests refused)",
        Severity::Info,
        suspended,
        AlertKind::IdentitySuspended.mapping(),
    );
    let dormant = names(&|i| i.dormant && i.state == IdentityState::Active);
    push(
        &mut findings,
        "dormant_identities",
        "Active identities that have not asked for access within the dormancy period",
        Severity::Medium,
        dormant,
        AlertKind::DormantIdentity.mapping(),
    );
    push(
        &mut findings,
        "recert_due",
        "Recertifications due (owners have a review task)",
        Severity::Low,
        facts.recert_due.clone(),
        AlertKind::RecertOverdue.mapping(),
    );
    push(
        &mut findings,
        "recert_overdue",
        "Recertifications overdue (the identity is suspended until an owner attests)",
        Severity::High,
        facts.recert_overdue.clone(),
        AlertKind::RecertOverdue.mapping(),
    );
    push(
        &mut findings,
        "reviews_open",
        "Break-glass after-action reviews not yet filed",
        Severity::Medium,
        facts.reviews_open.clone(),
        AlertKind::BreakGlass.mapping(),
    );
    push(
        &mut findings,
        "reviews_overdue",
        "Break-glass after-action reviews overdue",
        Severity::High,
        facts.reviews_overdue.clone(),
        AlertKind::ReviewOverdue.mapping(),
    );
    push(
        &mut findings,
        "exceptions_rotation_overdue",
        "Standing exceptions whose secret is overdue for rotation",
        Severity::High,
        facts.exceptions_rotation_overdue.clone(),
        AlertKind::ExceptionRotationOverdue.mapping(),
    );
    push(
        &mut findings,
        "exceptions_expired",
        "Standing exceptions past their end date",
        Severity::High,
        facts.exceptions_expired.clone(),
        AlertKind::ExceptionExpired.mapping(),
    );

    // Unresolved alerts of the kinds not already counted above.
    for (kind, subjects) in &facts.alerts {
        let (id, title, severity) = match kind {
            AlertKind::UseAfterEnd => (
                "alerts_use_after_end",
                "Tokens presented after their grant ended (open alerts)",
                Severity::High,
            ),
            AlertKind::UnexpectedSource => (
                "alerts_unexpected_source",
                "Use from outside the identity's allowed sources (open alerts)",
                Severity::High,
            ),
            AlertKind::SharedIdentity => (
                "alerts_shared_identity",
                "Identities used from many sources or tasks at once (open alerts)",
                Severity::Medium,
            ),
            AlertKind::HeldPastUse => (
                "alerts_held_past_use",
                "Grants held unused past their task (open alerts)",
                Severity::Low,
            ),
            AlertKind::BreakGlass => (
                "alerts_break_glass",
                "Break-glass uses not yet acknowledged (open alerts)",
                Severity::Medium,
            ),
            _ => continue,
        };
        push(
            &mut findings,
            id,
            title,
            severity,
            subjects.clone(),
            kind.mapping(),
        );
    }

    // Standing privilege: grant-hours per identity over the window.
    let mut hours: Vec<(String, f64)> = facts
        .grant_ms
        .iter()
        .map(|(i, ms)| (i.clone(), round2(*ms as f64 / 3_600_000.0)))
        .collect();
    hours.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total_grant_hours =
        round2(facts.grant_ms.values().map(|ms| *ms as f64).sum::<f64>() / 3_600_000.0);
    let standing = STANDING_PRIVILEGE;
    findings.push(Finding {
        id: "standing_privilege",
        title: "Access held, in grant-hours over the window",
        severity: Severity::Info,
        count: u64::try_from(hours.len()).unwrap_or(u64::MAX),
        subjects: hours
            .iter()
            .take(MAX_SUBJECTS)
            .map(|(i, h)| format!("{i}: {h} h"))
            .collect(),
        owasp_nhi: standing.nhi.id(),
        owasp_nhi_title: standing.nhi.title(),
        nist_csf: standing.csf.iter().map(|c| c.id()).collect(),
        why: standing.why,
        detail: Some(format!(
            "{total_grant_hours} grant-hours over {} days",
            facts.window_days
        )),
    });

    // Revocation: verified gone, how fast, and what keeps failing.
    let r = &facts.revocation;
    let latency = REVOCATION_LATENCY;
    findings.push(Finding {
        id: "revocation_latency",
        title: "Time from a grant's end to its access verified gone",
        severity: Severity::Info,
        count: r.verified,
        subjects: Vec::new(),
        owasp_nhi: latency.nhi.id(),
        owasp_nhi_title: latency.nhi.title(),
        nist_csf: latency.csf.iter().map(|c| c.id()).collect(),
        why: latency.why,
        detail: Some(match (r.mean_ms, r.p95_ms_at_most) {
            (Some(mean), Some(p95)) => format!(
                "{} ends verified; mean {}, p95 ≤ {}",
                r.verified,
                human_ms(mean),
                human_ms(p95 as f64)
            ),
            _ => "no end verified in the window".into(),
        }),
    });
    let alarm = REVOCATION_ALARM;
    findings.push(Finding {
        id: "revocations_alarming",
        title: "Grants whose revocation keeps failing (access may not be gone)",
        severity: if r.alarming > 0 {
            Severity::High
        } else {
            Severity::Info
        },
        count: r.alarming,
        subjects: Vec::new(),
        owasp_nhi: alarm.nhi.id(),
        owasp_nhi_title: alarm.nhi.title(),
        nist_csf: alarm.csf.iter().map(|c| c.id()).collect(),
        why: alarm.why,
        detail: None,
    });
    let residue = RESIDUE;
    findings.push(Finding {
        id: "residue_removed",
        title: "Managed accounts that backed no grant, removed by the reconciler",
        severity: if r.residue_removed > 0 {
            Severity::Medium
        } else {
            Severity::Info
        },
        count: r.residue_removed,
        subjects: Vec::new(),
        owasp_nhi: residue.nhi.id(),
        owasp_nhi_title: residue.nhi.title(),
        nist_csf: residue.csf.iter().map(|c| c.id()).collect(),
        why: residue.why,
        detail: None,
    });

    Posture {
        identities: summary,
        standing_privilege: hours.into_iter().take(MAX_SUBJECTS).collect(),
        total_grant_hours,
        grant_hours_by_day: facts
            .now
            .map(|now| hours_by_day(now, facts.window_days, &facts.grant_ms_by_day))
            .unwrap_or_default(),
        revocation_latency: latency_distribution(&r.latency_counts),
        findings,
    }
}

/// Where the measures sit in both frameworks.
pub const STANDING_PRIVILEGE: RiskMapping = RiskMapping {
    nhi: NhiRisk::Overprivileged,
    csf: &[CsfSubcategory::PR_AA_05],
    why: "every hour of held access is exposure; just-in-time access keeps it near the task's length",
};
pub const REVOCATION_LATENCY: RiskMapping = RiskMapping {
    nhi: NhiRisk::ImproperOffboarding,
    csf: &[CsfSubcategory::PR_AA_01, CsfSubcategory::RS_MI_01],
    why: "access is over only when it is verified gone downstream, not when it is marked ended",
};
pub const REVOCATION_ALARM: RiskMapping = RiskMapping {
    nhi: NhiRisk::ImproperOffboarding,
    csf: &[CsfSubcategory::PR_AA_01, CsfSubcategory::DE_CM_09],
    why: "an end that cannot be verified may leave working credentials behind",
};
pub const RESIDUE: RiskMapping = RiskMapping {
    nhi: NhiRisk::ImproperOffboarding,
    csf: &[CsfSubcategory::DE_CM_09, CsfSubcategory::PR_AA_01],
    why: "an account nobody's grant explains is access nobody decided",
};

/// Every finding id with its mapping (for the docs' table).
pub fn finding_mappings() -> Vec<(&'static str, RiskMapping)> {
    vec![
        ("orphaned_identities", AlertKind::Orphaned.mapping()),
        (
            "suspended_identities",
            AlertKind::IdentitySuspended.mapping(),
        ),
        ("dormant_identities", AlertKind::DormantIdentity.mapping()),
        ("recert_due", AlertKind::RecertOverdue.mapping()),
        ("recert_overdue", AlertKind::RecertOverdue.mapping()),
        ("reviews_open", AlertKind::BreakGlass.mapping()),
        ("reviews_overdue", AlertKind::ReviewOverdue.mapping()),
        (
            "exceptions_rotation_overdue",
            AlertKind::ExceptionRotationOverdue.mapping(),
        ),
        ("exceptions_expired", AlertKind::ExceptionExpired.mapping()),
        ("alerts_use_after_end", AlertKind::UseAfterEnd.mapping()),
        (
            "alerts_unexpected_source",
            AlertKind::UnexpectedSource.mapping(),
        ),
        (
            "alerts_shared_identity",
            AlertKind::SharedIdentity.mapping(),
        ),
        ("alerts_held_past_use", AlertKind::HeldPastUse.mapping()),
        ("alerts_break_glass", AlertKind::BreakGlass.mapping()),
        ("standing_privilege", STANDING_PRIVILEGE),
        ("revocation_latency", REVOCATION_LATENCY),
        ("revocations_alarming", REVOCATION_ALARM),
        ("residue_removed", RESIDUE),
    ]
}

fn push(
    findings: &mut Vec<Finding>,
    id: &'static str,
    title: &'static str,
    severity: Severity,
    subjects: Vec<String>,
    mapping: RiskMapping,
) {
    let count = u64::try_from(subjects.len()).unwrap_or(u64::MAX);
    findings.push(Finding {
        id,
        title,
        severity: if count == 0 { Severity::Info } else { severity },
        count,
        subjects: subjects.into_iter().take(MAX_SUBJECTS).collect(),
        owasp_nhi: mapping.nhi.id(),
        owasp_nhi_title: mapping.nhi.title(),
        nist_csf: mapping.csf.iter().map(|c| c.id()).collect(),
        why: mapping.why,
        detail: None,
    });
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn human_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{} ms", ms.round())
    } else if ms < 120_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{:.1} min", ms / 60_000.0)
    }
}

/// The bucket bounds (ms) revocation latencies are counted in; the p95 is reported as the
/// bound of its bucket, so one pass over the window's grants gives it.
pub const LATENCY_BUCKETS_MS: [i64; 14] = [
    10, 50, 100, 250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000,
];

/// The p95 bucket bound from counts per bucket (`counts[i]` for `≤ LATENCY_BUCKETS_MS[i]`,
/// the last entry for longer); `None` with no counts.
pub fn p95_bound(counts: &[u64]) -> Option<i64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = total.saturating_mul(95).div_ceil(100);
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(i64::MAX));
        }
    }
    None
}

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day (days since the epoch) that `ms` falls in.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// The start of a report window of `days` calendar days ending at `now`: midnight UTC
/// `days - 1` days before `now`'s day (today counts as one). Whole days let the store
/// keep the figures of finished grants folded per day instead of reading every grant.
pub fn window_start(now: Timestamp, days: u32) -> Timestamp {
    let first = day_of(now.as_millis()) - i64::from(days.max(1)) + 1;
    Timestamp::from_millis(first.saturating_mul(DAY_MS))
}

/// The bucket of `LATENCY_BUCKETS_MS` an end → verified latency is counted in (the last
/// index, one past the bounds, for longer).
pub fn latency_bucket(ms: i64) -> usize {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|bound| ms <= *bound)
        .unwrap_or(LATENCY_BUCKETS_MS.len())
}

/// One grant whose end is verified: what it adds to the posture's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGrant {
    pub identity: String,
    pub issued_at: i64,
    pub ended_at: i64,
    pub verified_at: i64,
    /// An aborted grant never gave access: it adds a latency but no grant-hours.
    pub aborted: bool,
}

/// The figures of verified grants, per UTC day: milliseconds of access per identity and
/// day, and end → verified latencies per day (counted on the day of the end) and bucket.
/// The store keeps one of these folded (so a report reads days, not grants) and adds the
/// grants verified since its last fold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayLedger {
    pub grant_ms: BTreeMap<(String, i64), i64>,
    /// (day, bucket) → (count, sum of latencies in ms).
    pub latency: BTreeMap<(i64, usize), (u64, i64)>,
}

/// Spreads the access of `n` grants that each started on day `first_day` and stopped on
/// day `last_day` over the days between, into `by_day`. `start_in_day` and `end_in_day`
/// are the sums of their starts' and ends' offsets into their days (ms since that
/// midnight): what a store can sum in SQL per (first day, last day) without reading the
/// grants one by one. A grant within one day adds `end - start` to it; a longer one adds
/// the rest of its first day, every whole day between, and the start of its last day.
pub fn spread_spans(
    by_day: &mut BTreeMap<i64, i64>,
    first_day: i64,
    last_day: i64,
    n: i64,
    start_in_day: i64,
    end_in_day: i64,
) {
    if n <= 0 || last_day < first_day {
        return;
    }
    if first_day == last_day {
        *by_day.entry(first_day).or_insert(0) += end_in_day - start_in_day;
        return;
    }
    *by_day.entry(first_day).or_insert(0) += n * DAY_MS - start_in_day;
    for day in first_day + 1..last_day {
        *by_day.entry(day).or_insert(0) += n * DAY_MS;
    }
    if end_in_day > 0 {
        *by_day.entry(last_day).or_insert(0) += end_in_day;
    }
}

impl DayLedger {
    /// Adds `g`, leaving out what falls before `from_day`.
    pub fn add(&mut self, g: &VerifiedGrant, from_day: i64) {
        if !g.aborted {
            let mut at = g.issued_at;
            while at < g.ended_at {
                let day = day_of(at);
                let next = (day + 1).saturating_mul(DAY_MS).min(g.ended_at);
                if day >= from_day {
                    *self.grant_ms.entry((g.identity.clone(), day)).or_insert(0) += next - at;
                }
                at = next;
            }
        }
        let day = day_of(g.ended_at);
        if day >= from_day {
            let latency = (g.verified_at - g.ended_at).max(0);
            let slot = self
                .latency
                .entry((day, latency_bucket(latency)))
                .or_insert((0, 0));
            slot.0 += 1;
            slot.1 += latency;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.grant_ms.is_empty() && self.latency.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(
        name: &str,
        team: &str,
        state: IdentityState,
        orphaned: bool,
        dormant: bool,
    ) -> IdentityFacts {
        IdentityFacts {
            name: name.into(),
            owner_team: team.into(),
            state,
            orphaned,
            dormant,
        }
    }

    #[test]
    fn a_seeded_estate_gives_the_expected_findings_with_their_mappings() {
        let facts = PostureFacts {
            window_days: 30,
            identities: vec![
                identity("a", "payments", IdentityState::Active, true, false),
                identity("b", "payments", IdentityState::Suspended, true, false),
                identity("c", "ops", IdentityState::Active, false, true),
                identity("d", "ops", IdentityState::Retired, true, true),
            ],
            alerts: BTreeMap::from([(AlertKind::UseAfterEnd, vec!["grt_1".into()])]),
            recert_overdue: vec!["b".into()],
            reviews_open: vec!["rev_1".into()],
            exceptions_rotation_overdue: vec!["legacy-ftp".into()],
            grant_ms: BTreeMap::from([("a".into(), 7_200_000), ("c".into(), 1_800_000)]),
            revocation: RevocationFacts {
                verified: 10,
                mean_ms: Some(420.0),
                p95_ms_at_most: Some(1_000),
                alarming: 1,
                residue_removed: 0,
                latency_counts: vec![4, 6],
            },
            now: Some(Timestamp::from_millis(20_000 * DAY_MS + 5_000)),
            grant_ms_by_day: BTreeMap::from([
                (20_000, 5_400_000),
                (19_990, 3_600_000),
                // Before the window: not shown.
                (19_970, 3_600_000),
            ]),
            ..PostureFacts::default()
        };
        let p = assess(&facts);
        assert_eq!(p.identities.total, 4);
        assert_eq!(
            (
                p.identities.active,
                p.identities.suspended,
                p.identities.retired
            ),
            (2, 1, 1)
        );
        assert_eq!(p.identities.by_owner["ops"], 2);
        let f = |id: &str| p.findings.iter().find(|f| f.id == id).unwrap().clone();
        // A retired identity is not an orphan worth a finding; a suspended one still is.
        assert_eq!(f("orphaned_identities").subjects, ["a", "b"]);
        assert_eq!(f("orphaned_identities").owasp_nhi, "NHI1");
        assert!(f("orphaned_identities").nist_csf.contains(&"GV.RR-02"));
        assert_eq!(f("dormant_identities").subjects, ["c"]);
        assert_eq!(f("recert_overdue").severity, Severity::High);
        assert_eq!(f("recert_due").severity, Severity::Info);
        assert_eq!(f("reviews_open").count, 1);
        assert_eq!(f("exceptions_rotation_overdue").owasp_nhi, "NHI7");
        assert_eq!(f("alerts_use_after_end").owasp_nhi, "NHI2");
        assert_eq!(p.total_grant_hours, 2.5);
        assert_eq!(p.standing_privilege[0], ("a".to_string(), 2.0));
        assert_eq!(f("standing_privilege").owasp_nhi, "NHI5");
        assert!(
            f("revocation_latency")
                .detail
                .unwrap()
                .contains("mean 420 ms, p95 ≤ 1.0 s")
        );
        assert_eq!(f("revocations_alarming").severity, Severity::High);
        assert_eq!(f("residue_removed").severity, Severity::Info);
        // Every day of the window, oldest first, zeros included.
        assert_eq!(p.grant_hours_by_day.len(), 30);
        assert_eq!(
            p.grant_hours_by_day[0].day,
            Timestamp::from_millis(19_971 * DAY_MS)
        );
        assert_eq!(p.grant_hours_by_day[29].grant_hours, 1.5);
        assert_eq!(p.grant_hours_by_day[19].grant_hours, 1.0);
        assert_eq!(
            p.grant_hours_by_day
                .iter()
                .filter(|d| d.grant_hours == 0.0)
                .count(),
            28
        );
        // Every bucket, the last one open-ended.
        assert_eq!(p.revocation_latency.len(), LATENCY_BUCKETS_MS.len() + 1);
        assert_eq!(p.revocation_latency[0].at_most_ms, Some(10));
        assert_eq!(p.revocation_latency[1].count, 6);
        assert_eq!(p.revocation_latency.last().unwrap().at_most_ms, None);
        // Every finding id has a documented mapping.
        let documented: Vec<_> = finding_mappings().into_iter().map(|(id, _)| id).collect();
        for finding in &p.findings {
            assert!(
                documented.contains(&finding.id),
                "{} undocumented",
                finding.id
            );
        }
    }

    #[test]
    fn spans_are_spread_over_the_days_they_cover() {
        const H: i64 = 3_600_000;
        let mut by_day = BTreeMap::new();
        // Two grants within day 10: 01:00-03:00 and 02:00-05:00.
        spread_spans(&mut by_day, 10, 10, 2, 3 * H, 8 * H);
        assert_eq!(by_day, BTreeMap::from([(10, 5 * H)]));
        // Two from day 11 (20:00 and 22:00) to day 14 (01:00 and 00:00 exactly).
        let mut by_day = BTreeMap::new();
        spread_spans(&mut by_day, 11, 14, 2, 42 * H, H);
        assert_eq!(
            by_day,
            BTreeMap::from([(11, 6 * H), (12, 2 * DAY_MS), (13, 2 * DAY_MS), (14, H)])
        );
        // Nothing for no grants or a backwards span.
        let mut by_day = BTreeMap::new();
        spread_spans(&mut by_day, 11, 14, 0, 0, 0);
        spread_spans(&mut by_day, 14, 11, 1, 0, 0);
        assert!(by_day.is_empty());
    }

    #[test]
    fn the_p95_is_the_bound_of_its_bucket() {
        assert_eq!(p95_bound(&[]), None);
        assert_eq!(p95_bound(&[0; 15]), None);
        let mut counts = [0u64; 15];
        counts[2] = 95; // ≤ 100 ms
        counts[6] = 5; // ≤ 2 s
        assert_eq!(p95_bound(&counts), Some(100));
        counts[6] = 6;
        assert_eq!(p95_bound(&counts), Some(2_000));
        let mut slow = [0u64; 15];
        slow[14] = 1; // longer than an hour
        assert_eq!(p95_bound(&slow), Some(i64::MAX));
    }

    #[test]
    fn the_window_is_whole_utc_days_ending_today() {
        // 2026-12-06T15:30:00Z
        let now = Timestamp::from_millis(1_796_571_000_000);
        let start = window_start(now, 30);
        assert_eq!(start.as_millis() % DAY_MS, 0);
        assert_eq!(day_of(now.as_millis()) - day_of(start.as_millis()), 29);
        assert_eq!(
            window_start(now, 1).as_millis(),
            day_of(now.as_millis()) * DAY_MS
        );
    }

    #[test]
    fn latencies_fall_in_the_first_bucket_that_holds_them() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(10), 0);
        assert_eq!(latency_bucket(11), 1);
        assert_eq!(latency_bucket(3_600_000), LATENCY_BUCKETS_MS.len() - 1);
        assert_eq!(latency_bucket(3_600_001), LATENCY_BUCKETS_MS.len());
    }

    #[test]
    fn a_grant_over_midnight_is_split_between_its_days() {
        let day = 20_000;
        let g = VerifiedGrant {
            identity: "a".into(),
            issued_at: day * DAY_MS + DAY_MS - 1_000,
            ended_at: (day + 1) * DAY_MS + 3_000,
            verified_at: (day + 1) * DAY_MS + 3_040,
            aborted: false,
        };
        let mut all = DayLedger::default();
        all.add(&g, 0);
        assert_eq!(all.grant_ms[&("a".to_string(), day)], 1_000);
        assert_eq!(all.grant_ms[&("a".to_string(), day + 1)], 3_000);
        assert_eq!(all.latency[&(day + 1, 1)], (1, 40));

        // Days before the window are left out; an aborted grant adds only its latency.
        let mut later = DayLedger::default();
        later.add(&g, day + 1);
        later.add(
            &VerifiedGrant {
                aborted: true,
                ..g.clone()
            },
            day + 1,
        );
        assert_eq!(later.grant_ms.len(), 1);
        assert_eq!(later.grant_ms[&("a".to_string(), day + 1)], 3_000);
        assert_eq!(later.latency[&(day + 1, 1)], (2, 80));
        let mut none = DayLedger::default();
        none.add(&g, day + 2);
        assert!(none.is_empty());
    }
}
