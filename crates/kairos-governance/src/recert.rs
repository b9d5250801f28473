//! Recertification: every identity and every standing exception is re-attested by an
//! owner of its team once per interval (`recertify_every`).
//!
//! A cycle starts at the subject's last attestation (or, before the first, when Kairos
//! first saw it) and ends at its **due date**, one interval later. From `notice` before
//! the due date the owners' review task is open (**due**); from the due date on, unattested,
//! it is **overdue** — for an identity, a reason to suspend it.

use kairos_domain::{Period, Timestamp};

/// Where a subject stands in its recertification cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecertStatus {
    /// Attested recently enough: nothing to do before the review opens.
    Ok,
    /// Within `notice` of the due date: the owners' review task is open.
    Due,
    /// Past the due date without an attestation.
    Overdue,
}

impl RecertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Due => "due",
            Self::Overdue => "overdue",
        }
    }
}

/// How often a subject is recertified and how long before its due date the review opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// `recertify_every`.
    pub every: Period,
    /// `[governance] recert_notice`. A notice as long as the interval or longer opens the
    /// review as soon as a cycle starts.
    pub notice: Period,
}

/// What the store knows of a subject's attestations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attestations {
    /// When Kairos first saw the subject in its catalog.
    pub first_seen_at: Timestamp,
    /// The last attestation, if there was one.
    pub last_attested_at: Option<Timestamp>,
}

impl Attestations {
    /// Where the current cycle started: the last attestation, else first sight.
    pub fn cycle_start(&self) -> Timestamp {
        self.last_attested_at.unwrap_or(self.first_seen_at)
    }
}

/// A subject's cycle as of some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    /// The end of the current cycle.
    pub due_at: Timestamp,
    /// When the owners' review task opens (`due_at - notice`, not before the cycle's
    /// start).
    pub opens_at: Timestamp,
    pub status: RecertStatus,
}

/// The interval that applies: the subject's own, else its team's, else the default
/// (`[governance] recertify_every`).
pub fn interval(own: Option<Period>, team: Option<Period>, default: Period) -> Period {
    own.or(team).unwrap_or(default)
}

/// The end of the cycle that started at `start`.
pub fn due_at(start: Timestamp, every: Period) -> Timestamp {
    start.plus(every.as_duration())
}

/// Where `facts` stand at `now` under `cadence`.
pub fn assess(facts: Attestations, cadence: Cadence, now: Timestamp) -> Assessment {
    let start = facts.cycle_start();
    let due = due_at(start, cadence.every);
    let opens = Timestamp::from_millis(
        due.as_millis()
            .saturating_sub(millis(cadence.notice))
            .max(start.as_millis()),
    );
    let status = if now >= due {
        RecertStatus::Overdue
    } else if now >= opens {
        RecertStatus::Due
    } else {
        RecertStatus::Ok
    };
    Assessment {
        due_at: due,
        opens_at: opens,
        status,
    }
}

fn millis(p: Period) -> i64 {
    i64::try_from(p.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2030-01-01T00:00:00Z.
    const T0: i64 = 1_893_456_000_000;

    fn at(days: f64) -> Timestamp {
        Timestamp::from_millis(T0 + (days * DAY as f64) as i64)
    }

    fn cadence(every: &str, notice: &str) -> Cadence {
        Cadence {
            every: Period::parse(every).unwrap(),
            notice: Period::parse(notice).unwrap(),
        }
    }

    /// One line per case: facts (first seen, last attested), cadence, now → (due, status).
    fn check(
        first_seen: f64,
        attested: Option<f64>,
        cadence: Cadence,
        now: f64,
        due: f64,
        status: RecertStatus,
    ) {
        let facts = Attestations {
            first_seen_at: at(first_seen),
            last_attested_at: attested.map(at),
        };
        let got = assess(facts, cadence, at(now));
        assert_eq!(
            (got.due_at, got.status),
            (at(due), status),
            "first seen {first_seen}, attested {attested:?}, now {now}"
        );
    }

    #[test]
    fn status_moves_from_ok_to_due_to_overdue() {
        let c = cadence("90d", "14d");
        check(0.0, None, c, 0.0, 90.0, RecertStatus::Ok);
        check(0.0, None, c, 75.9, 90.0, RecertStatus::Ok);
        check(0.0, None, c, 76.0, 90.0, RecertStatus::Due);
        check(0.0, None, c, 89.99, 90.0, RecertStatus::Due);
        check(0.0, None, c, 90.0, 90.0, RecertStatus::Overdue);
        check(0.0, None, c, 400.0, 90.0, RecertStatus::Overdue);
    }

    #[test]
    fn an_attestation_starts_a_new_cycle() {
        let c = cadence("90d", "14d");
        check(0.0, Some(80.0), c, 95.0, 170.0, RecertStatus::Ok);
        check(0.0, Some(80.0), c, 156.0, 170.0, RecertStatus::Due);
        check(0.0, Some(80.0), c, 170.0, 170.0, RecertStatus::Overdue);
        // Attested late (while overdue): the new cycle counts from the attestation.
        check(0.0, Some(120.0), c, 121.0, 210.0, RecertStatus::Ok);
    }

    #[test]
    fn a_notice_longer_than_the_interval_opens_the_review_at_once() {
        let c = cadence("7d", "14d");
        check(0.0, None, c, 0.0, 7.0, RecertStatus::Due);
        let a = assess(
            Attestations {
                first_seen_at: at(3.0),
                last_attested_at: None,
            },
            c,
            at(3.0),
        );
        assert_eq!(a.opens_at, at(3.0));
    }

    #[test]
    fn exactly_at_the_boundaries() {
        let c = cadence("10s", "4s");
        let s = |ms: i64| {
            assess(
                Attestations {
                    first_seen_at: Timestamp::from_millis(T0),
                    last_attested_at: None,
                },
                c,
                Timestamp::from_millis(T0 + ms),
            )
            .status
        };
        assert_eq!(s(5_999), RecertStatus::Ok);
        assert_eq!(s(6_000), RecertStatus::Due);
        assert_eq!(s(9_999), RecertStatus::Due);
        assert_eq!(s(10_000), RecertStatus::Overdue);
    }

    #[test]
    fn the_subject_s_own_interval_wins_then_its_team_s() {
        let p = |s: &str| Period::parse(s).unwrap();
        assert_eq!(interval(Some(p("30d")), Some(p("60d")), p("90d")), p("30d"));
        assert_eq!(interval(None, Some(p("60d")), p("90d")), p("60d"));
        assert_eq!(interval(None, None, p("90d")), p("90d"));
    }
}
