//! The lifecycle state of a registered identity.
//!
//! The catalog says which identities exist; the store says which state each is in. An
//! identity with no stored state is active.

use std::fmt;

use kairos_domain::Timestamp;

/// Active, suspended or retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityState {
    /// May request access.
    Active,
    /// Every grant ended; requests refused until it is resumed (or, when the cause is an
    /// overdue recertification, until an owner attests).
    Suspended,
    /// For good: every grant ended, requests refused, never resumed. Remove it from the
    /// catalog to finish.
    Retired,
}

impl IdentityState {
    pub const ALL: [IdentityState; 3] = [Self::Active, Self::Suspended, Self::Retired];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Retired => "retired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for IdentityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an identity left `active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspensionCause {
    /// A person suspended or retired it.
    Manual,
    /// Its owner team had no active owner for longer than the orphan grace.
    Orphaned,
    /// Its recertification was overdue: only an owner's attestation lifts it.
    RecertOverdue,
}

impl SuspensionCause {
    pub const ALL: [SuspensionCause; 3] = [Self::Manual, Self::Orphaned, Self::RecertOverdue];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Orphaned => "orphaned",
            Self::RecertOverdue => "recert_overdue",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    /// Whether a plain `resume` may lift a suspension of this cause. An overdue
    /// recertification is lifted only by an owner's attestation, which is the point of it.
    pub fn resumable(self) -> bool {
        !matches!(self, Self::RecertOverdue)
    }
}

impl fmt::Display for SuspensionCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identity's stored state: what it is, why, since when, and who put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityStatus {
    pub identity: kairos_domain::IdentityName,
    pub state: IdentityState,
    /// For a suspended or retired identity: why.
    pub cause: Option<SuspensionCause>,
    /// The reason as given (by a person, or the rule that acted).
    pub reason: String,
    /// `Principal` display form: `user:alice`, `system:governance`.
    pub by: String,
    pub since: Timestamp,
}

impl IdentityStatus {
    /// Whether requests of this identity are refused.
    pub fn refuses_requests(&self) -> bool {
        self.state != IdentityState::Active
    }

    /// The sentence a refused request carries: names the state, the cause and the
    /// reason, and what lifts it.
    pub fn refusal(&self) -> String {
        let how = match (self.state, self.cause) {
            (IdentityState::Retired, _) => {
                "it is retired for good; register a new identity if the workload needs access again"
            }
            (_, Some(SuspensionCause::RecertOverdue)) => {
                "an owner of its team lifts it by attesting (`kairos recert attest`)"
            }
            _ => "an operator or an owner of its team lifts it with `kairos identity resume`",
        };
        let cause = self.cause.map_or(String::new(), |c| format!(" ({c})"));
        format!(
            "identity {} is {}{cause} since {} by {}: {}; {how}",
            self.identity,
            self.state,
            self.since.to_rfc3339(),
            self.by,
            self.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in IdentityState::ALL {
            assert_eq!(IdentityState::parse(s.as_str()), Some(s));
        }
        for c in SuspensionCause::ALL {
            assert_eq!(SuspensionCause::parse(c.as_str()), Some(c));
        }
        assert_eq!(IdentityState::parse("gone"), None);
    }

    #[test]
    fn only_an_attestation_lifts_an_overdue_recertification() {
        assert!(SuspensionCause::Manual.resumable());
        assert!(SuspensionCause::Orphaned.resumable());
        assert!(!SuspensionCause::RecertOverdue.resumable());
    }

    #[test]
    fn the_refusal_names_state_cause_reason_and_the_way_out() {
        let s = IdentityStatus {
            identity: kairos_domain::IdentityName::parse("nightly").unwrap(),
            state: IdentityState::Suspended,
            cause: Some(SuspensionCause::RecertOverdue),
            reason: "recertification overdue since 2026-01-01".into(),
            by: "system:governance".into(),
            since: Timestamp::from_millis(0),
        };
        assert!(s.refuses_requests());
        let text = s.refusal();
        assert!(
            text.contains("nightly is suspended (recert_overdue)"),
            "{text}"
        );
        assert!(text.contains("kairos recert attest"), "{text}");
        let active = IdentityStatus {
            state: IdentityState::Active,
            cause: None,
            ..s
        };
        assert!(!active.refuses_requests());
    }
}
