//! Standing exceptions: static secrets that cannot be removed yet, tracked as migration
//! states. Each must be rotated every `rotate_every` and ends on a fixed date.

use kairos_domain::{Period, Timestamp};

/// What is known about one exception's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationFacts {
    /// When Kairos first saw the exception (the start of its first rotation interval).
    pub first_seen_at: Timestamp,
    /// The last recorded rotation (`kairos exception rotated`), if any.
    pub last_rotated_at: Option<Timestamp>,
    pub rotate_every: Period,
    /// The exception's mandatory end date.
    pub ends_at: Timestamp,
}

/// Something wrong with an exception as of some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum ExceptionFinding {
    /// The secret was due for rotation at `due_at` and has not been rotated since.
    RotationOverdue { due_at: Timestamp },
    /// The exception's end date passed: the static secret should be gone by now.
    Expired { ended_at: Timestamp },
}

impl ExceptionFinding {
    /// `rotation_overdue` or `expired`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::RotationOverdue { .. } => "rotation_overdue",
            Self::Expired { .. } => "expired",
        }
    }

    /// The moment this finding is about: one finding per rotation cycle and per end date,
    /// so that it is acted on once for each.
    pub fn cycle(&self) -> Timestamp {
        match self {
            Self::RotationOverdue { due_at } => *due_at,
            Self::Expired { ended_at } => *ended_at,
        }
    }
}

/// An exception's state as of some moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// When the secret must be rotated next: the last rotation (or first sight) plus
    /// `rotate_every`.
    pub rotation_due_at: Timestamp,
    /// Rotation overdue first, then past its end, as they apply.
    pub findings: Vec<ExceptionFinding>,
}

impl Assessment {
    pub fn rotation_overdue(&self) -> bool {
        self.findings
            .iter()
            .any(|f| matches!(f, ExceptionFinding::RotationOverdue { .. }))
    }
    pub fn expired(&self) -> bool {
        self.findings
            .iter()
            .any(|f| matches!(f, ExceptionFinding::Expired { .. }))
    }
}

/// When the next rotation is due.
pub fn rotation_due_at(facts: &RotationFacts) -> Timestamp {
    facts
        .last_rotated_at
        .unwrap_or(facts.first_seen_at)
        .plus(facts.rotate_every.as_duration())
}

/// What is wrong with the exception at `now`, if anything.
pub fn assess(facts: &RotationFacts, now: Timestamp) -> Assessment {
    let due = rotation_due_at(facts);
    let mut findings = Vec::new();
    if now >= due {
        findings.push(ExceptionFinding::RotationOverdue { due_at: due });
    }
    if now >= facts.ends_at {
        findings.push(ExceptionFinding::Expired {
            ended_at: facts.ends_at,
        });
    }
    Assessment {
        rotation_due_at: due,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2030-01-01T00:00:00Z.
    const T0: i64 = 1_893_456_000_000;

    fn at(days: i64) -> Timestamp {
        Timestamp::from_millis(T0 + days * DAY)
    }

    fn facts(rotated: Option<i64>, every_days: u64, ends: i64) -> RotationFacts {
        RotationFacts {
            first_seen_at: at(0),
            last_rotated_at: rotated.map(at),
            rotate_every: Period::from_secs(every_days * 86_400).unwrap(),
            ends_at: at(ends),
        }
    }

    /// One line per case: facts, now → the findings' names.
    fn check(f: RotationFacts, now: i64, expected: &[&str]) {
        let a = assess(&f, at(now));
        let names: Vec<&str> = a.findings.iter().map(ExceptionFinding::as_str).collect();
        assert_eq!(names, expected, "{f:?} at day {now}");
    }

    #[test]
    fn rotation_is_due_one_interval_after_the_last_one() {
        check(facts(None, 30, 365), 29, &[]);
        check(facts(None, 30, 365), 30, &["rotation_overdue"]);
        check(facts(Some(25), 30, 365), 30, &[]);
        check(facts(Some(25), 30, 365), 54, &[]);
        check(facts(Some(25), 30, 365), 55, &["rotation_overdue"]);
        assert_eq!(rotation_due_at(&facts(Some(25), 30, 365)), at(55));
    }

    #[test]
    fn an_exception_expires_at_its_end_date() {
        check(facts(Some(90), 30, 100), 99, &[]);
        check(facts(Some(90), 30, 100), 100, &["expired"]);
        check(facts(None, 30, 100), 100, &["rotation_overdue", "expired"]);
    }

    #[test]
    fn each_finding_names_its_cycle() {
        let a = assess(&facts(Some(10), 30, 45), at(50));
        assert_eq!(
            a.findings,
            vec![
                ExceptionFinding::RotationOverdue { due_at: at(40) },
                ExceptionFinding::Expired { ended_at: at(45) },
            ]
        );
        assert_eq!(a.findings[0].cycle(), at(40));
        assert_eq!(a.findings[1].cycle(), at(45));
        assert!(a.rotation_overdue() && a.expired());
    }
}
