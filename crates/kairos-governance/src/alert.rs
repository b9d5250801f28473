//! Alerts: findings that need a person, with a state.
//!
//! An alert is opened once per *dedupe key* (say, one `use_after_end` per grant): while
//! an alert with that key is open or acknowledged, seeing the same thing again only
//! counts another occurrence. Resolving it lets the next occurrence open a new one.

use std::fmt;

use kairos_domain::{IdentityName, Timestamp};

use crate::mapping::RiskMapping;

/// What an alert is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An identity's owner team has no active owner.
    Orphaned,
    /// An identity (or exception) was not recertified in time.
    RecertOverdue,
    /// Break-glass access was used.
    BreakGlass,
    /// An after-action review of a break-glass use is overdue.
    ReviewOverdue,
    /// A standing exception's secret was not rotated in time.
    ExceptionRotationOverdue,
    /// A standing exception is past its end date.
    ExceptionExpired,
    /// A token was presented after its grant ended.
    UseAfterEnd,
    /// A request or session came from outside the identity's allowed sources.
    UnexpectedSource,
    /// One identity used from many sources or for many concurrent tasks.
    SharedIdentity,
    /// An identity has not asked for access in a long time.
    DormantIdentity,
    /// An active grant unused for much of its lifetime and not released.
    HeldPastUse,
    /// An identity was suspended (by a person or a rule).
    IdentitySuspended,
}

impl AlertKind {
    pub const ALL: [AlertKind; 12] = [
        Self::Orphaned,
        Self::RecertOverdue,
        Self::BreakGlass,
        Self::ReviewOverdue,
        Self::ExceptionRotationOverdue,
        Self::ExceptionExpired,
        Self::UseAfterEnd,
        Self::UnexpectedSource,
        Self::SharedIdentity,
        Self::DormantIdentity,
        Self::HeldPastUse,
        Self::IdentitySuspended,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orphaned => "orphaned",
            Self::RecertOverdue => "recert_overdue",
            Self::BreakGlass => "break_glass",
            Self::ReviewOverdue => "review_overdue",
            Self::ExceptionRotationOverdue => "exception_rotation_overdue",
            Self::ExceptionExpired => "exception_expired",
            Self::UseAfterEnd => "use_after_end",
            Self::UnexpectedSource => "unexpected_source",
            Self::SharedIdentity => "shared_identity",
            Self::DormantIdentity => "dormant_identity",
            Self::HeldPastUse => "held_past_use",
            Self::IdentitySuspended => "identity_suspended",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// Which OWASP NHI Top 10 (2025) risk and NIST CSF 2.0 subcategories it speaks to.
    pub fn mapping(self) -> RiskMapping {
        crate::mapping::for_alert(self)
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Open → acknowledged → resolved (or open → resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    /// A person has seen it and is on it; it still counts as unresolved.
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub const ALL: [AlertState; 3] = [Self::Open, Self::Acknowledged, Self::Resolved];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    /// Whether moving to `next` is allowed: forward only, and never out of `resolved`.
    pub fn may_become(self, next: AlertState) -> bool {
        matches!(
            (self, next),
            (Self::Open, Self::Acknowledged | Self::Resolved)
                | (Self::Acknowledged, Self::Resolved)
        )
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert to raise.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertDraft {
    pub kind: AlertKind,
    /// What it is about, as people read it: an identity, an exception, a grant id.
    pub subject: String,
    /// The identity concerned, when there is one (for filters and the posture).
    pub identity: Option<IdentityName>,
    /// At most one unresolved alert per key: `use_after_end:<grant>`.
    pub dedupe_key: String,
    /// One sentence saying what was seen and what to do. Never a secret.
    pub message: String,
    /// Facts behind it, as a JSON object. Never a secret.
    pub detail: serde_json::Value,
}

impl AlertDraft {
    /// An alert of `kind` about `subject`, deduplicated per kind and subject.
    pub fn new(kind: AlertKind, subject: impl Into<String>, message: impl Into<String>) -> Self {
        let subject = subject.into();
        Self {
            kind,
            dedupe_key: format!("{}:{subject}", kind.as_str()),
            subject,
            identity: None,
            message: message.into(),
            detail: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
    pub fn identity(mut self, identity: &IdentityName) -> Self {
        self.identity = Some(identity.clone());
        self
    }
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
    /// A finer key than kind + subject (say, one alert per grant of an identity).
    pub fn dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = key.into();
        self
    }
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: String,
    pub kind: AlertKind,
    pub subject: String,
    pub identity: Option<IdentityName>,
    pub dedupe_key: String,
    pub state: AlertState,
    pub message: String,
    pub detail: serde_json::Value,
    pub opened_at: Timestamp,
    /// When it was last seen again (each occurrence while unresolved).
    pub last_seen_at: Timestamp,
    pub occurrences: u64,
    /// The last change of state: when, by whom, with what note.
    pub updated_at: Timestamp,
    pub updated_by: Option<String>,
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_each_has_a_mapping() {
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.as_str()), Some(k));
            let m = k.mapping();
            assert!(!m.csf.is_empty(), "{k} has no CSF subcategory");
        }
    }

    #[test]
    fn states_move_forward_only() {
        use AlertState::*;
        assert!(Open.may_become(Acknowledged));
        assert!(Open.may_become(Resolved));
        assert!(Acknowledged.may_become(Resolved));
        assert!(!Acknowledged.may_become(Open));
        assert!(!Resolved.may_become(Open));
        assert!(!Resolved.may_become(Acknowledged));
        assert!(!Open.may_become(Open));
    }

    #[test]
    fn drafts_dedupe_per_kind_and_subject_unless_told() {
        let a = AlertDraft::new(AlertKind::UseAfterEnd, "grant-1", "m");
        assert_eq!(a.dedupe_key, "use_after_end:grant-1");
        let b = AlertDraft::new(AlertKind::SharedIdentity, "x", "m").dedupe_key("k");
        assert_eq!(b.dedupe_key, "k");
    }
}
