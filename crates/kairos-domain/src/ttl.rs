use std::fmt;
use std::time::Duration;

/// The longest TTL Kairos will even parse. Entitlements and tiers cap far lower.
pub const MAX_TTL_SECS: u64 = 31 * 24 * 3600;

/// A positive time-to-live of whole seconds, written `90s`, `15m`, `1h`, `1h30m` or `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("TTL is empty; write a duration such as `15m`, `1h` or `90s`")]
    Empty,
    #[error("TTL {0:?} is negative; write a positive duration such as `15m`")]
    Negative(String),
    #[error("TTL {input:?} has no unit after {number}; add s, m, h or d, e.g. `{number}m`")]
    MissingUnit { input: String, number: u64 },
    #[error("TTL {input:?} uses unit {unit:?}; use s, m, h or d (e.g. `15m`, `2h`, `1d`)")]
    BadUnit { input: String, unit: String },
    #[error("TTL {0:?} is not a duration; write it as e.g. `15m`, `1h30m` or `90s`")]
    Malformed(String),
    #[error("TTL {0:?} is zero; ask for at least `1s`")]
    Zero(String),
    #[error(
        "TTL {0:?} is longer than Kairos allows for any grant (31d); ask for what the task needs"
    )]
    TooLong(String),
}

impl Ttl {
    pub fn from_secs(secs: u64) -> Result<Self, TtlError> {
        match secs {
            0 => Err(TtlError::Zero(format!("{secs}s"))),
            s if s > MAX_TTL_SECS => Err(TtlError::TooLong(format!("{secs}s"))),
            s => Ok(Self(s)),
        }
    }

    pub fn parse(input: &str) -> Result<Self, TtlError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(TtlError::Empty);
        }
        if s.starts_with('-') {
            return Err(TtlError::Negative(short(s)));
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
                return Err(TtlError::Malformed(short(s)));
            }
            let number: u64 = digits.parse().map_err(|_| TtlError::TooLong(short(s)))?;
            let mut unit = String::new();
            while let Some(c) = chars.peek().copied().filter(|c| c.is_ascii_alphabetic()) {
                unit.push(c);
                chars.next();
            }
            let scale = match unit.as_str() {
                "" => {
                    return Err(TtlError::MissingUnit {
                        input: short(s),
                        number,
                    });
                }
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => {
                    return Err(TtlError::BadUnit {
                        input: short(s),
                        unit,
                    });
                }
            };
            total = number
                .checked_mul(scale)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| TtlError::TooLong(short(s)))?;
        }
        match total {
            0 => Err(TtlError::Zero(short(s))),
            t if t > MAX_TTL_SECS => Err(TtlError::TooLong(short(s))),
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

fn short(s: &str) -> String {
    s.chars().take(32).collect()
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut wrote = false;
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
                wrote = true;
            }
        }
        if !wrote {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Ttl {
    type Err = TtlError;
    fn from_str(s: &str) -> Result<Self, TtlError> {
        Self::parse(s)
    }
}

impl serde::Serialize for Ttl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ttl::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<u64, &str>) {
        let got = Ttl::parse(input)
            .map(Ttl::as_secs)
            .map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{input}"),
            (Err(g), Err(e)) => assert!(g.contains(e), "{input}: {g:?} lacks {e:?}"),
            (g, e) => panic!("{input}: got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn parses_and_refuses() {
        check("15m", Ok(900));
        check("1h30m", Ok(5400));
        check("90s", Ok(90));
        check("2d", Ok(172_800));
        check(" 1h ", Ok(3600));
        check("-5m", Err("negative"));
        check("10y", Err("unit \"y\""));
        check("10", Err("no unit"));
        check("0m", Err("zero"));
        check("", Err("empty"));
        check("32d", Err("longer"));
        check("99999999999999999999999h", Err("longer"));
        check("m", Err("not a duration"));
        check("1h-", Err("not a duration"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["15m", "1h30m", "2d", "1d1h1m1s", "45s"] {
            assert_eq!(Ttl::parse(s).unwrap().to_string(), s);
        }
    }
}

/// The longest governance period Kairos parses (ten years).
pub const MAX_PERIOD_SECS: u64 = 3650 * 86_400;

/// A positive span of whole seconds for governance rules (recertification intervals,
/// grace periods, dormancy), longer than any grant may live: `90d`, `12w`, `72h`, `30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(u64);

impl Period {
    pub fn from_secs(secs: u64) -> Result<Self, String> {
        match secs {
            0 => Err("the period is zero; write at least `1s`".into()),
            s if s > MAX_PERIOD_SECS => Err(format!(
                "{s}s is longer than ten years (`3650d`), the longest period Kairos takes"
            )),
            s => Ok(Self(s)),
        }
    }

    /// `90d`, `12w`, `1d12h`, `30m`, `15s`: numbers each followed by s, m, h, d or w.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let hint = "write a duration such as `90d`, `12w`, `72h` or `30m`";
        if s.is_empty() {
            return Err(format!("the period is empty; {hint}"));
        }
        let mut total: u64 = 0;
        let mut chars = s.chars().peekable();
        while chars.peek().is_some() {
            let mut digits = String::new();
            while let Some(c) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(c);
                chars.next();
            }
            let unit: String =
                std::iter::from_fn(|| chars.next_if(char::is_ascii_alphabetic)).collect();
            let scale: u64 = match unit.as_str() {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                "w" => 7 * 86_400,
                _ => return Err(format!("{s:?} is not a period; {hint}")),
            };
            let number: u64 = digits
                .parse()
                .map_err(|_| format!("{s:?} is not a period; {hint}"))?;
            total = number
                .checked_mul(scale)
                .and_then(|n| total.checked_add(n))
                .ok_or_else(|| format!("{s:?} is longer than ten years (`3650d`)"))?;
        }
        Self::from_secs(total)
    }

    pub fn as_secs(self) -> u64 {
        self.0
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }

    /// In milliseconds, for timestamp arithmetic.
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Period {
    /// The largest whole units: `90d`, `1d12h`, `45m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        for (unit, secs) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if rest >= secs {
                write!(f, "{}{unit}", rest / secs)?;
                rest %= secs;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod period_tests {
    use super::*;

    #[test]
    fn periods_parse_long_spans_and_refuse_nonsense() {
        assert_eq!(Period::parse("90d").unwrap().as_secs(), 90 * 86_400);
        assert_eq!(Period::parse("2w").unwrap().as_secs(), 14 * 86_400);
        assert_eq!(Period::parse("1d12h").unwrap().as_secs(), 36 * 3600);
        assert_eq!(Period::parse("2s").unwrap().as_secs(), 2);
        assert_eq!(Period::parse("90d").unwrap().to_string(), "90d");
        assert_eq!(Period::parse("1d12h").unwrap().to_string(), "1d12h");
        for bad in [
            "",
            "0d",
            "d",
            "5",
            "5y",
            "-1d",
            "3651d",
            "99999999999999999999d",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
