//! Where a caller is: IP addresses and the address ranges (CIDR blocks) an identity may be
//! used from, or a proxy is trusted at.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address block written as CIDR (`10.0.0.0/8`, `2001:db8::/32`), or one address
/// (`192.168.1.7`, the same as `192.168.1.7/32`). Parsed at the edge (configuration), so a
/// block whose address has bits set past its prefix (`10.0.0.1/8`, most likely a typo) is
/// refused rather than silently widened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRange {
    addr: IpAddr,
    prefix: u8,
}

impl SourceRange {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            format!(
                "{s:?} is not an address block; write CIDR like \"10.0.0.0/8\" or \"2001:db8::/32\", or one address like \"192.168.1.7\""
            )
        })?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => {
                    return Err(format!(
                        "{s:?}: the prefix length after '/' must be a number from 0 to {max}"
                    ));
                }
            },
        };
        let range = Self { addr, prefix };
        let network = range.network();
        if network != addr {
            return Err(format!(
                "{s:?} has address bits set past its /{prefix} prefix; write \"{network}/{prefix}\" (or a longer prefix if only {addr} was meant)"
            ));
        }
        Ok(range)
    }

    /// The first address of the block.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix))),
        }
    }

    /// True when `ip` is in the block. An IPv4 address written as IPv6
    /// (`::ffff:10.1.2.3`, as a dual-stack listener reports IPv4 peers) counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask32(self.prefix);
                u32::from(ip) & m == u32::from(net) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask128(self.prefix);
                u128::from(ip) & m == u128::from(net) & m
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

fn mask128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    }
}

/// An address as Kairos records and compares it: an IPv4-mapped IPv6 address
/// (`::ffff:10.1.2.3`) becomes the IPv4 address it carries; anything else is unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

impl fmt::Display for SourceRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl serde::Serialize for SourceRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for SourceRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn check(range: &str, addr: &str, inside: bool) {
        let r = SourceRange::parse(range).unwrap();
        assert_eq!(r.contains(ip(addr)), inside, "{range} ∋ {addr}");
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        check("10.0.0.0/8", "10.255.1.2", true);
        check("10.0.0.0/8", "11.0.0.1", false);
        check("192.168.1.7/32", "192.168.1.7", true);
        check("192.168.1.7/32", "192.168.1.8", false);
        check("192.168.1.7", "192.168.1.7", true);
        check("0.0.0.0/0", "8.8.8.8", true);
        check("0.0.0.0/0", "::1", false);
        check("2001:db8::/32", "2001:db8:1::5", true);
        check("2001:db8::/32", "2001:db9::5", false);
        check("::/0", "fe80::1", true);
        // A dual-stack listener reports IPv4 peers as mapped IPv6.
        check("10.0.0.0/8", "::ffff:10.1.2.3", true);
        check("127.0.0.1", "::ffff:127.0.0.1", true);
    }

    #[test]
    fn bad_blocks_are_refused_with_a_fix() {
        let e = SourceRange::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
        assert!(SourceRange::parse("10.0.0.0/33").is_err());
        assert!(SourceRange::parse("10.0.0.0/").is_err());
        assert!(SourceRange::parse("10.0.0.0/+8").is_err());
        assert!(SourceRange::parse("example.com").is_err());
        assert!(SourceRange::parse("::/129").is_err());
        assert_eq!(
            SourceRange::parse("192.168.1.7").unwrap().to_string(),
            "192.168.1.7/32"
        );
    }

    #[test]
    fn canonical_unmaps_ipv4() {
        assert_eq!(canonical_ip(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(canonical_ip(ip("::1")), ip("::1"));
    }
}
