//! Usage monitoring's rules: which address a request really came from, whether an
//! identity is used from where it should be, and the detectors — use after end,
//! unexpected source, shared identity, dormant identity, held past use.

use std::net::IpAddr;
use std::time::Duration;

use kairos_domain::{Grant, GrantState, SourceRange, Timestamp, canonical_ip};

// ---- where a request came from ---------------------------------------------------------

/// The client's address, given the TCP peer and the values of the trusted proxy header
/// (`X-Forwarded-For` style: comma-separated addresses, the nearest proxy's entry last,
/// every occurrence of the header in order).
///
/// Only a peer inside `trusted` may speak for the client: walking the chain from the right,
/// each hop is believed while the hop that reported it is a trusted proxy; the answer is
/// the right-most address that is not a trusted proxy (or the left-most, when all are).
/// An entry that is not an address stops the walk at the proxy that reported it, so a
/// forged or garbled header never yields an address no trusted proxy vouched for.
pub fn client_address(peer: IpAddr, header_values: &[&str], trusted: &[SourceRange]) -> IpAddr {
    let mut current = canonical_ip(peer);
    let entries = header_values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in entries.iter().rev() {
        if !trusted.iter().any(|r| r.contains(current)) {
            return current;
        }
        match parse_hop(entry) {
            Some(ip) => current = canonical_ip(ip),
            None => return current,
        }
    }
    current
}

/// One hop of a forwarding header: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, or
/// `[2001:db8::1]:443`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = entry.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

/// Whether a use from `source` is outside an identity's `allowed` blocks. No blocks means
/// anywhere is expected; an unknown source cannot be judged (not outside).
pub fn outside_allowed(allowed: &[SourceRange], source: Option<IpAddr>) -> bool {
    match source {
        Some(ip) if !allowed.is_empty() => !allowed.iter().any(|r| r.contains(ip)),
        _ => false,
    }
}

// ---- use after end -----------------------------------------------------------------------

/// Why a token presented at `now` should no longer be in use, if it should not: its grant
/// `ended` (verified gone), is `ending` (revocation under way), or `expired` (its time is
/// up though the expirer has not ended it yet). None for a live grant.
pub fn use_after_end(grant: &Grant, now: Timestamp) -> Option<&'static str> {
    match &grant.state {
        GrantState::Ended { .. } => Some("ended"),
        GrantState::Ending { .. } => Some("ending"),
        GrantState::Active if now >= grant.expires_at => Some("expired"),
        GrantState::Active | GrantState::Provisioning => None,
    }
}

// ---- held past use -----------------------------------------------------------------------

/// A share of a grant's TTL, in thousandths (`0.5` is 500): how long an active grant may
/// go unused before it counts as held past its use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Share(u32);

impl Share {
    pub const DEFAULT: Share = Share(500);

    /// `0 < share <= 1`, to the thousandth.
    pub fn new(share: f64) -> Result<Self, String> {
        if !(share > 0.0 && share <= 1.0) {
            return Err(format!(
                "{share} is not a share of a TTL; write a number above 0 and at most 1 (0.5 is half)"
            ));
        }
        let permille = (share * 1000.0).round();
        if permille < 1.0 {
            return Err(format!(
                "{share} is below a thousandth; write 0.001 or more"
            ));
        }
        // In 1..=1000 after the checks above.
        Ok(Self(permille as u32))
    }

    pub fn permille(self) -> u32 {
        self.0
    }
}

/// Whether an active grant has gone unused — no introspection of its token, no session of
/// its account — for at least `share` of its TTL at `now` (counting from its last use, or
/// from its issue when never used).
pub fn held_past_use(
    issued_at: Timestamp,
    expires_at: Timestamp,
    last_used_at: Option<Timestamp>,
    now: Timestamp,
    share: Share,
) -> bool {
    let ttl = expires_at.as_millis().saturating_sub(issued_at.as_millis());
    let idle = now
        .as_millis()
        .saturating_sub(last_used_at.unwrap_or(issued_at).as_millis());
    idle.saturating_mul(1000) >= ttl.saturating_mul(i64::from(share.0)) && ttl > 0
}

// ---- dormant identity --------------------------------------------------------------------

/// Since when an identity is dormant at `now` — no request for `after`, counting from its
/// last request, or from when it was first seen when it never requested — if it is.
pub fn dormant_since(
    first_seen_at: Timestamp,
    last_request_at: Option<Timestamp>,
    now: Timestamp,
    after: Duration,
) -> Option<Timestamp> {
    let quiet_since = last_request_at.unwrap_or(first_seen_at);
    let due = quiet_since.plus(after);
    (now >= due).then_some(quiet_since)
}

// ---- shared identity ---------------------------------------------------------------------

/// The thresholds of the shared-identity detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedLimits {
    /// More distinct source addresses than this within the window is sharing.
    pub max_sources: u64,
    /// More distinct task references among live grants at once than this is sharing.
    pub max_tasks: u64,
}

/// What made an identity look shared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharedFinding {
    /// Distinct addresses within the window, when over the limit.
    pub sources: Option<u64>,
    /// Distinct task references among live grants, when over the limit.
    pub tasks: Option<u64>,
}

impl SharedFinding {
    /// One sentence for the alert.
    pub fn describe(&self, limits: SharedLimits, window: Duration) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.sources {
            parts.push(format!(
                "used from {n} distinct addresses within {} (more than {})",
                humanize(window),
                limits.max_sources
            ));
        }
        if let Some(n) = self.tasks {
            parts.push(format!(
                "{n} concurrent task references among its live grants (more than {})",
                limits.max_tasks
            ));
        }
        parts.join("; ")
    }
}

/// Whether `sources` distinct addresses (within the window) or `tasks` concurrent task
/// references exceed the limits.
pub fn shared_identity(sources: u64, tasks: u64, limits: SharedLimits) -> Option<SharedFinding> {
    let finding = SharedFinding {
        sources: (sources > limits.max_sources).then_some(sources),
        tasks: (tasks > limits.max_tasks).then_some(tasks),
    };
    (finding.sources.is_some() || finding.tasks.is_some()).then_some(finding)
}

/// A duration as the configuration writes it: `30d`, `1h`, `15m`, `90s`.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s > 0 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s > 0 && s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kairos_domain::{
        EndReason, EntitlementName, GrantEnd, GrantId, IdentityName, Principal, Receipt, RequestId,
        TargetName, Task, TaskKind, TaskRef,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ranges(list: &[&str]) -> Vec<SourceRange> {
        list.iter()
            .map(|r| SourceRange::parse(r).unwrap())
            .collect()
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    fn check_client(peer: &str, headers: &[&str], trusted: &[&str], expected: &str) {
        assert_eq!(
            client_address(ip(peer), headers, &ranges(trusted)),
            ip(expected),
            "peer {peer}, headers {headers:?}, trusted {trusted:?}"
        );
    }

    #[test]
    fn client_address_believes_trusted_proxies_only() {
        // No proxy: the peer.
        check_client("203.0.113.9", &[], &["10.0.0.0/8"], "203.0.113.9");
        // An untrusted peer cannot claim an address.
        check_client("203.0.113.9", &["1.2.3.4"], &["10.0.0.0/8"], "203.0.113.9");
        // A trusted proxy speaks for its client.
        check_client(
            "10.0.0.5",
            &["198.51.100.7"],
            &["10.0.0.0/8"],
            "198.51.100.7",
        );
        // Right-most untrusted: the client's own forged entry on the left is ignored.
        check_client(
            "10.0.0.5",
            &["6.6.6.6, 198.51.100.7, 10.0.0.9"],
            &["10.0.0.0/8"],
            "198.51.100.7",
        );
        // Several header lines are one list, in order.
        check_client(
            "10.0.0.5",
            &["6.6.6.6", "198.51.100.7"],
            &["10.0.0.0/8"],
            "198.51.100.7",
        );
        // All hops trusted: the left-most.
        check_client(
            "10.0.0.5",
            &["10.1.1.1, 10.2.2.2"],
            &["10.0.0.0/8"],
            "10.1.1.1",
        );
        // Garbage stops the walk at the proxy that reported it.
        check_client("10.0.0.5", &["not-an-ip"], &["10.0.0.0/8"], "10.0.0.5");
        check_client(
            "10.0.0.5",
            &["198.51.100.7, junk"],
            &["10.0.0.0/8"],
            "10.0.0.5",
        );
        // Ports and brackets.
        check_client(
            "10.0.0.5",
            &["198.51.100.7:5555"],
            &["10.0.0.0/8"],
            "198.51.100.7",
        );
        check_client(
            "10.0.0.5",
            &["[2001:db8::7]:443"],
            &["10.0.0.0/8"],
            "2001:db8::7",
        );
        check_client(
            "10.0.0.5",
            &["[2001:db8::7]"],
            &["10.0.0.0/8"],
            "2001:db8::7",
        );
        // A dual-stack listener's mapped peer counts as IPv4.
        check_client(
            "::ffff:10.0.0.5",
            &["198.51.100.7"],
            &["10.0.0.0/8"],
            "198.51.100.7",
        );
        check_client("::ffff:192.0.2.1", &[], &[], "192.0.2.1");
    }

    #[test]
    fn outside_allowed_only_when_blocks_are_set_and_the_source_is_known() {
        let allowed = ranges(&["10.0.0.0/8", "192.168.1.7/32"]);
        assert!(!outside_allowed(&allowed, Some(ip("10.9.9.9"))));
        assert!(!outside_allowed(&allowed, Some(ip("192.168.1.7"))));
        assert!(outside_allowed(&allowed, Some(ip("192.168.1.8"))));
        assert!(!outside_allowed(&allowed, None));
        assert!(!outside_allowed(&[], Some(ip("8.8.8.8"))));
    }

    fn grant(state: GrantState, issued: i64, expires: i64) -> Grant {
        Grant {
            id: GrantId::generate(),
            request_id: RequestId::generate(),
            identity: IdentityName::parse("job").unwrap(),
            entitlement: EntitlementName::parse("api/read").unwrap(),
            target: TargetName::parse("api").unwrap(),
            audience: "https://api".into(),
            scopes: vec!["read".into()],
            task: Task::new(TaskKind::Job, TaskRef::parse("run-1").unwrap(), "r".into()).unwrap(),
            issued_at: t(issued),
            expires_at: t(expires),
            max_expires_at: t(expires),
            account: None,
            sealed_secret: None,
            state,
        }
    }

    #[test]
    fn use_after_end_names_why() {
        let end = GrantEnd {
            reason: EndReason::Released,
            by: Principal::System("expirer"),
            at: t(50),
        };
        assert_eq!(
            use_after_end(&grant(GrantState::Active, 0, 100), t(99)),
            None
        );
        assert_eq!(
            use_after_end(&grant(GrantState::Active, 0, 100), t(100)),
            Some("expired")
        );
        let ending = GrantState::Ending {
            end: end.clone(),
            attempts: 0,
            last_error: None,
        };
        assert_eq!(use_after_end(&grant(ending, 0, 100), t(60)), Some("ending"));
        let ended = GrantState::Ended {
            end,
            receipt: Receipt {
                revoked_at: t(51),
                verified_at: t(52),
                method: "m".into(),
                evidence: "e".into(),
            },
        };
        assert_eq!(use_after_end(&grant(ended, 0, 100), t(60)), Some("ended"));
        assert_eq!(
            use_after_end(&grant(GrantState::Provisioning, 0, 100), t(60)),
            None
        );
    }

    #[test]
    fn held_past_use_counts_from_the_last_use() {
        let half = Share::DEFAULT;
        // TTL 100 s, never used: held from 50 s on.
        assert!(!held_past_use(t(0), t(100), None, t(49), half));
        assert!(held_past_use(t(0), t(100), None, t(50), half));
        // Used at 40 s: held from 90 s on.
        assert!(!held_past_use(t(0), t(100), Some(t(40)), t(89), half));
        assert!(held_past_use(t(0), t(100), Some(t(40)), t(90), half));
        // A share of 1: never while the grant lives, unless unused all along.
        let all = Share::new(1.0).unwrap();
        assert!(!held_past_use(t(0), t(100), Some(t(1)), t(100), all));
        assert!(held_past_use(t(0), t(100), None, t(100), all));
        // A zero-length grant is never held.
        assert!(!held_past_use(t(0), t(0), None, t(10), half));
    }

    #[test]
    fn share_is_a_fraction_of_one() {
        assert_eq!(Share::new(0.5).unwrap().permille(), 500);
        assert_eq!(Share::new(1.0).unwrap().permille(), 1000);
        assert_eq!(Share::new(0.25).unwrap().permille(), 250);
        assert!(Share::new(0.0).is_err());
        assert!(Share::new(1.5).is_err());
        assert!(Share::new(-0.1).is_err());
        assert!(Share::new(f64::NAN).is_err());
        assert!(Share::new(0.0001).is_err());
    }

    #[test]
    fn dormant_after_a_quiet_period() {
        let month = Duration::from_secs(30 * 86_400);
        let day = 86_400;
        // Requested on day 10: dormant from day 40, since day 10.
        assert_eq!(
            dormant_since(t(0), Some(t(10 * day)), t(39 * day), month),
            None
        );
        assert_eq!(
            dormant_since(t(0), Some(t(10 * day)), t(40 * day), month),
            Some(t(10 * day))
        );
        // Never requested: counted from when it was first seen.
        assert_eq!(dormant_since(t(day), None, t(30 * day), month), None);
        assert_eq!(
            dormant_since(t(day), None, t(31 * day), month),
            Some(t(day))
        );
    }

    #[test]
    fn shared_identity_over_either_limit() {
        let limits = SharedLimits {
            max_sources: 3,
            max_tasks: 5,
        };
        assert_eq!(shared_identity(3, 5, limits), None);
        let f = shared_identity(4, 5, limits).unwrap();
        assert_eq!((f.sources, f.tasks), (Some(4), None));
        let f = shared_identity(1, 6, limits).unwrap();
        assert_eq!((f.sources, f.tasks), (None, Some(6)));
        let text = shared_identity(4, 6, limits)
            .unwrap()
            .describe(limits, Duration::from_secs(3600));
        assert!(text.contains("4 distinct addresses within 1h"), "{text}");
        assert!(text.contains("6 concurrent task references"), "{text}");
    }
}
