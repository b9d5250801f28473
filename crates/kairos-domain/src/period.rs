use std::fmt;
use std::time::Duration;

/// The longest period Kairos parses: ten years.
pub const MAX_PERIOD_SECS: u64 = 3650 * 86_400;

/// A governance interval (how often an identity is recertified, a static secret
/// rotated): whole seconds, written like a TTL with weeks besides (`90d`, `12w`, `1d12h`,
/// `30s`), from 1 s to ten years. A [`crate::Ttl`] bounds a grant (31 d at most); a
/// `Period` bounds a review cycle, which is usually longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("interval is empty; write a duration such as `90d`, `12w` or `36h`")]
    Empty,
    #[error("interval {0:?} is not a duration; write it as e.g. `90d`, `12w`, `1d12h` or `30s`")]
    Malformed(String),
    #[error("interval {input:?} has no unit after {number}; add s, m, h, d or w, e.g. `{number}d`")]
    MissingUnit { input: String, number: u64 },
    #[error("interval {input:?} uses unit {unit:?}; use s, m, h, d or w (e.g. `90d`, `12w`)")]
    BadUnit { input: String, unit: String },
    #[error("interval {0:?} is zero; write at least `1s`")]
    Zero(String),
    #[error("interval {0:?} is longer than ten years (3650d)")]
    TooLong(String),
}

impl Period {
    pub fn from_secs(secs: u64) -> Result<Self, PeriodError> {
        match secs {
            0 => Err(PeriodError::Zero(format!("{secs}s"))),
            s if s > MAX_PERIOD_SECS => Err(PeriodError::TooLong(format!("{secs}s"))),
            s => Ok(Self(s)),
        }
    }

    /// `days` whole days; for defaults written in code (`Period::days(90)`). Clamped to
    /// 1..=3650 days.
    pub fn days(days: u64) -> Self {
        Self(days.clamp(1, 3650) * 86_400)
    }

    pub fn parse(input: &str) -> Result<Self, PeriodError> {
        let s = input.trim();
        let short = || s.chars().take(32).collect::<String>();
        if s.is_empty() {
            return Err(PeriodError::Empty);
        }
        let mut total: u64 = 0;
        let mut chars = s.chars().peekable();
        while chars.peek().is_some() {
            let mut digits = String::new();
            while let Some(c) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(c);
                chars.next();
            }
            if digits.is_empty() {
                return Err(PeriodError::Malformed(short()));
            }
            let number: u64 = digits.parse().map_err(|_| PeriodError::TooLong(short()))?;
            let mut unit = String::new();
            while let Some(c) = chars.peek().copied().filter(|c| c.is_ascii_alphabetic()) {
                unit.push(c);
                chars.next();
            }
            let scale = match unit.as_str() {
                "" => {
                    return Err(PeriodError::MissingUnit {
                        input: short(),
                        number,
                    });
                }
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                "w" => 7 * 86_400,
                _ => {
                    return Err(PeriodError::BadUnit {
                        input: short(),
                        unit,
                    });
                }
            };
            total = number
                .checked_mul(scale)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| PeriodError::TooLong(short()))?;
        }
        match total {
            0 => Err(PeriodError::Zero(short())),
            t if t > MAX_PERIOD_SECS => Err(PeriodError::TooLong(short())),
            t => Ok(Self(t)),
        }
    }

    pub fn as_secs(self) -> u64 {
        self.0
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl fmt::Display for Period {
    /// Days, hours, minutes, seconds (`90d`, `1d12h`); weeks are read, never written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Period {
    type Err = PeriodError;
    fn from_str(s: &str) -> Result<Self, PeriodError> {
        Self::parse(s)
    }
}

impl serde::Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Period::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<u64, &str>) {
        let got = Period::parse(input)
            .map(Period::as_secs)
            .map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{input}"),
            (Err(g), Err(e)) => assert!(g.contains(e), "{input}: {g:?} lacks {e:?}"),
            (g, e) => panic!("{input}: got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn parses_and_refuses() {
        check("90d", Ok(90 * 86_400));
        check("12w", Ok(84 * 86_400));
        check("1d12h", Ok(129_600));
        check("3s", Ok(3));
        check(" 14d ", Ok(14 * 86_400));
        check("3650d", Ok(MAX_PERIOD_SECS));
        check("3651d", Err("ten years"));
        check("1y", Err("unit \"y\""));
        check("90", Err("no unit"));
        check("0d", Err("zero"));
        check("", Err("empty"));
        check("-1d", Err("not a duration"));
        check("d", Err("not a duration"));
        check("99999999999999999999999w", Err("ten years"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["90d", "1d12h", "14d", "1d1h1m1s", "45s"] {
            assert_eq!(Period::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Period::parse("2w").unwrap().to_string(), "14d");
        assert_eq!(Period::days(90).as_secs(), 90 * 86_400);
        assert_eq!(Period::days(0).as_secs(), 86_400);
    }
}
