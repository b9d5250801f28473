//! `--since` / `--until`: an RFC 3339 time, or a duration ago (`1h`, `2d ago`).

use std::time::{Duration, SystemTime};

/// Turns a user's time into the RFC 3339 string the API takes. `now` is passed in so the
/// arithmetic is testable.
pub fn resolve_time(flag: &str, input: &str, now: SystemTime) -> Result<String, String> {
    let s = input.trim();
    let bad = || {
        format!(
            "--{flag} {input:?} is neither an RFC 3339 time (2026-11-26T10:00:00Z) nor a duration \
             ago (90s, 15m, 1h, 2d, `1h ago`)"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    if looks_like_a_date(s) {
        // Check it here for a quick, local message; the server parses it (offsets and all).
        humantime::parse_rfc3339_weak(without_offset(s)).map_err(|_| bad())?;
        return Ok(s.to_owned());
    }
    let ago = s.strip_suffix("ago").map_or(s, str::trim_end);
    let d: Duration = humantime::parse_duration(ago).map_err(|_| bad())?;
    let at = now.checked_sub(d).ok_or_else(bad)?;
    Ok(humantime::format_rfc3339_seconds(at).to_string())
}

/// `2026-…`: a year and a dash, which no duration starts with.
fn looks_like_a_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 5 && b.iter().take(4).all(u8::is_ascii_digit) && b.get(4) == Some(&b'-')
}

/// Drops a trailing `Z` or `+hh:mm` / `-hh:mm` (humantime only reads UTC).
fn without_offset(s: &str) -> &str {
    if let Some(rest) = s.strip_suffix(['Z', 'z']) {
        return rest;
    }
    let split = s.len().saturating_sub(6);
    match (s.get(..split), s.get(split..)) {
        (Some(rest), Some(off))
            if off.starts_with(['+', '-'])
                && off.get(3..4) == Some(":")
                && off.chars().skip(1).filter(char::is_ascii_digit).count() == 4 =>
        {
            rest
        }
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-26T10:00:00Z
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_687_200)
    }

    fn check(input: &str, expected: &str) {
        assert_eq!(
            resolve_time("since", input, now()).as_deref(),
            Ok(expected),
            "{input:?}"
        );
    }

    fn refused(input: &str) {
        let r = resolve_time("since", input, now());
        assert!(
            r.as_ref().is_err_and(|m| m.starts_with("--since ")),
            "{input:?} should be refused, got {r:?}"
        );
    }

    #[test]
    fn durations_ago() {
        check("1h", "2026-11-26T09:00:00Z");
        check("90s", "2026-11-26T09:58:30Z");
        check("2d", "2026-11-24T10:00:00Z");
        check("1h 30m", "2026-11-26T08:30:00Z");
        check("15m ago", "2026-11-26T09:45:00Z");
        check(" 1h ago ", "2026-11-26T09:00:00Z");
    }

    #[test]
    fn rfc3339_passes_through() {
        check("2026-11-26T10:00:00Z", "2026-11-26T10:00:00Z");
        check("2026-11-26T10:00:00.5Z", "2026-11-26T10:00:00.5Z");
        check("2026-11-26T11:00:00+01:00", "2026-11-26T11:00:00+01:00");
    }

    #[test]
    fn nonsense_is_refused() {
        refused("");
        refused("yesterday");
        refused("1 fortnight");
        refused("2026-13-45T10:00:00Z");
        refused("-1h");
    }
}
