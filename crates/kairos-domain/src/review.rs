//! After-action reviews: every break-glass grant opens one, in the transaction that
//! records the grant, and it stays open until an owner of the identity's team files it.

use std::fmt;

use crate::{
    EntitlementName, GrantId, IdentityName, Principal, RequestId, TaskRef, Timestamp, UserName,
};

/// `rev_` and 32 hex digits (a UUIDv7, so ids sort by creation time).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ReviewId(String);

impl ReviewId {
    pub fn generate() -> Self {
        Self(format!("rev_{}", uuid::Uuid::now_v7().simple()))
    }
    /// Accepts only the shape Kairos generates, so a stray string never reaches the store.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("rev_")?;
        (rest.len() == 32 && rest.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReviewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who filed a review, when, and what they found. The summary is free text written by a
/// person: it is shown and audited, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filing {
    pub by: UserName,
    pub at: Timestamp,
    pub summary: String,
}

/// Open until filed; filing is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewState {
    Open,
    Filed(Filing),
}

impl ReviewState {
    /// `open` or `filed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Filed(_) => "filed",
        }
    }
}

/// Why a review cannot take a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("review {id} was already filed by {by} at {at}; a filed review is final")]
    AlreadyFiled {
        id: ReviewId,
        by: UserName,
        at: String,
    },
    #[error(
        "the summary must be 1-{max} characters: say what happened, what the access was used for and what follows from it",
        max = Review::MAX_SUMMARY_CHARS
    )]
    BadSummary,
}

/// The after-action review of one break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: ReviewId,
    pub grant_id: GrantId,
    pub request_id: RequestId,
    /// The identity the break-glass access was for.
    pub identity: IdentityName,
    pub entitlement: EntitlementName,
    /// Who asked: the workload itself or a person on its behalf.
    pub requester: Principal,
    /// The incident the access was for.
    pub task_ref: TaskRef,
    pub opened_at: Timestamp,
    /// After this it is overdue (and escalates once).
    pub due_at: Timestamp,
    /// When it escalated for being overdue; None while it has not.
    pub escalated_at: Option<Timestamp>,
    pub state: ReviewState,
}

impl Review {
    /// The longest summary a filing may have.
    pub const MAX_SUMMARY_CHARS: usize = 4000;

    /// A summary as a person wrote it, checked: not blank, not over the limit, no control
    /// characters other than line breaks and tabs. Returned trimmed.
    pub fn check_summary(summary: &str) -> Result<String, ReviewError> {
        let trimmed = summary.trim();
        if trimmed.is_empty()
            || trimmed.chars().count() > Self::MAX_SUMMARY_CHARS
            || trimmed
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ReviewError::BadSummary);
        }
        Ok(trimmed.to_owned())
    }

    /// Open → filed. A filed review stays filed (a second filing is refused).
    pub fn file(&mut self, filing: Filing) -> Result<(), ReviewError> {
        match &self.state {
            ReviewState::Open => {
                let summary = Self::check_summary(&filing.summary)?;
                self.state = ReviewState::Filed(Filing { summary, ..filing });
                Ok(())
            }
            ReviewState::Filed(done) => Err(ReviewError::AlreadyFiled {
                id: self.id.clone(),
                by: done.by.clone(),
                at: done.at.to_rfc3339(),
            }),
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, ReviewState::Open)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::TaskRef;

    fn review() -> Review {
        Review {
            id: ReviewId::generate(),
            grant_id: GrantId::generate(),
            request_id: RequestId::generate(),
            identity: IdentityName::parse("job").unwrap(),
            entitlement: EntitlementName::parse("db/admin").unwrap(),
            requester: Principal::Workload(IdentityName::parse("job").unwrap()),
            task_ref: TaskRef::parse("INC-1").unwrap(),
            opened_at: Timestamp::from_millis(1_000),
            due_at: Timestamp::from_millis(2_000),
            escalated_at: None,
            state: ReviewState::Open,
        }
    }

    fn filing(by: &str, summary: &str) -> Filing {
        Filing {
            by: UserName::parse(by).unwrap(),
            at: Timestamp::from_millis(1_500),
            summary: summary.into(),
        }
    }

    #[test]
    fn ids_round_trip_and_refuse_other_shapes() {
        let id = ReviewId::generate();
        assert_eq!(ReviewId::parse(id.as_str()), Some(id.clone()));
        assert!(id.as_str().starts_with("rev_"));
        for bad in ["", "rev_", "req_0192", "rev_xyz", &format!("{id}0")] {
            assert_eq!(ReviewId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn filing_is_final_and_the_summary_is_checked() {
        let mut r = review();
        assert_eq!(r.file(filing("carol", "   ")), Err(ReviewError::BadSummary));
        assert_eq!(
            r.file(filing("carol", "bad\u{1b}[2J")),
            Err(ReviewError::BadSummary)
        );
        assert_eq!(
            r.file(filing("carol", &"x".repeat(Review::MAX_SUMMARY_CHARS + 1))),
            Err(ReviewError::BadSummary)
        );
        assert!(r.is_open(), "a refused filing changes nothing");
        r.file(filing(
            "carol",
            "  restarted the primary\nno data touched  ",
        ))
        .unwrap();
        match &r.state {
            ReviewState::Filed(f) => {
                assert_eq!(f.by.as_str(), "carol");
                assert_eq!(f.summary, "restarted the primary\nno data touched");
            }
            ReviewState::Open => panic!("not filed"),
        }
        let again = r.file(filing("dave", "again")).unwrap_err();
        assert!(
            matches!(&again, ReviewError::AlreadyFiled { by, .. } if by.as_str() == "carol"),
            "{again}"
        );
        assert_eq!(r.state.as_str(), "filed");
    }
}
