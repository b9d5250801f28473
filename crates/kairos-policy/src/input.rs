use std::fmt;

use kairos_domain::{EntitlementName, IdentityName, Principal, Task, TeamName, Ttl};

/// How risky an entitlement is. Riskier tiers cap TTLs lower; policies read the tier as
/// `resource.tier`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Low,
    Medium,
    High,
    Critical,
}

impl Tier {
    /// From least to most risky.
    pub const ALL: [Tier; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What policy may know about the requesting identity (`principal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFacts {
    pub name: IdentityName,
    /// Free-form kind from the catalog: `ci-job`, `service`, `agent`, ...
    pub kind: String,
    /// The owning team; also the principal's parent entity.
    pub owner: TeamName,
    /// Name of the trusted issuer that vouches for this identity.
    pub issuer: String,
}

/// What policy may know about the requested entitlement (`resource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitlementFacts {
    pub name: EntitlementName,
    pub tier: Tier,
    /// The longest TTL a grant of this entitlement may have (after the tier cap).
    pub max_ttl: Ttl,
}

/// What is being decided: a new request, or the renewal of an existing grant. Policies
/// see it as `action == Kairos::Action::"request"` / `Kairos::Action::"renew"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PolicyAction {
    /// A new grant is asked for; `ttl` is its lifetime.
    #[default]
    Request,
    /// An existing grant is to be extended; `ttl` is its whole lifetime after the
    /// renewal, counted from its issue time, so that a `context.ttl_secs <= 300` condition
    /// bounds renewed grants as it bounds new ones.
    Renew,
}

impl PolicyAction {
    /// The Cedar action id: `request` or `renew`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Renew => "renew",
        }
    }
}

/// Everything a decision is based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInput {
    /// A request or a renewal.
    pub action: PolicyAction,
    pub identity: IdentityFacts,
    pub entitlement: EntitlementFacts,
    /// The TTL asked for; for a renewal, the grant's whole lifetime after it (from its
    /// issue time to its new end).
    pub ttl: Ttl,
    pub task: Task,
    /// Who sent the request: the workload itself or a person on its behalf.
    pub requester: Principal,
    /// What governance knows around the request.
    pub circumstances: Circumstances,
}

/// What governance adds to a decision's context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Circumstances {
    /// The caller's address, when known: `context.source_ip`, a Cedar `ip` value
    /// (`context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8"))`).
    pub source_ip: Option<std::net::IpAddr>,
    /// The entitlement is marked break-glass: `context.break_glass`.
    pub break_glass: bool,
    /// The identity's after-action reviews not yet filed: `context.open_reviews`.
    pub open_reviews: u32,
}
