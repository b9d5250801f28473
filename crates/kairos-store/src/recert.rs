//! Recertification and standing exceptions: what the store keeps of them.
//!
//! The exceptions themselves live in the catalog; the store keeps who attested what and
//! when (`recertifications`), when each exception's secret was last rotated
//! (`exception_rotations`), and which due, overdue, rotation and end notices were acted
//! on (`recert_notices`, one row per cycle, so that each is acted on once across
//! replicas).

use async_trait::async_trait;
use kairos_domain::{AuditDraft, ExceptionName, Timestamp};

use crate::Result;

/// What is recertified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Identity,
    Exception,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Exception => "exception",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "identity" => Some(Self::Identity),
            "exception" => Some(Self::Exception),
            _ => None,
        }
    }
}

/// One subject's recertification record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recertification {
    pub kind: SubjectKind,
    /// The identity's or exception's name.
    pub subject: String,
    /// When the recertification pass first saw it in the catalog.
    pub first_seen_at: Timestamp,
    pub last_attested_at: Option<Timestamp>,
    /// Who attested last (`user:carol`).
    pub attested_by: Option<String>,
    /// Why, in the owner's words.
    pub reason: Option<String>,
    /// The end of the current cycle.
    pub due_at: Timestamp,
}

/// A subject the recertification pass saw for the first time, and its first due date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecertification {
    pub kind: SubjectKind,
    pub subject: String,
    pub due_at: Timestamp,
}

/// An owner's attestation: the cycle restarts at `at` and ends at `due_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub kind: SubjectKind,
    pub subject: String,
    pub at: Timestamp,
    /// `user:carol`.
    pub by: String,
    pub reason: String,
    pub due_at: Timestamp,
}

/// The last recorded rotation of an exception's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRotation {
    pub exception: ExceptionName,
    pub last_rotated_at: Timestamp,
    /// `user:carol`.
    pub rotated_by: String,
    pub note: Option<String>,
}

/// What the recertification pass acts on once per cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecertNotice {
    /// The owners' review task opened.
    RecertDue,
    /// The due date passed unattested.
    RecertOverdue,
    /// An exception's secret was not rotated in time.
    RotationOverdue,
    /// An exception passed its end date.
    Expired,
}

impl RecertNotice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RecertDue => "recert_due",
            Self::RecertOverdue => "recert_overdue",
            Self::RotationOverdue => "rotation_overdue",
            Self::Expired => "expired",
        }
    }
}

/// Which recertification records to read (see [`RecertStore::recertification_page`]);
/// every field narrows, none widens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecertPageQuery {
    pub kind: Option<SubjectKind>,
    /// Due strictly after this time.
    pub due_after: Option<Timestamp>,
    /// Due at or before this time.
    pub due_until: Option<Timestamp>,
    /// Keyset pagination: records after this (due date, kind, subject).
    pub after: Option<(Timestamp, SubjectKind, String)>,
    pub limit: Option<u32>,
}

/// One notice to claim: `cycle_at` is the due date, rotation due date or end date it is
/// about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeClaim {
    pub kind: SubjectKind,
    pub subject: String,
    pub notice: RecertNotice,
    pub cycle_at: Timestamp,
}

#[async_trait]
pub trait RecertStore: Send + Sync {
    /// Adds a record for each subject that has none, first seen at `now`; existing records
    /// are left as they are (so replicas adding the same subject agree). Returns how many
    /// were added.
    async fn add_recertifications(
        &self,
        subjects: &[NewRecertification],
        now: Timestamp,
    ) -> Result<u64>;

    /// Every record, by kind and subject.
    async fn list_recertifications(&self) -> Result<Vec<Recertification>>;

    /// The records `query` selects, due soonest first (ties by kind and subject).
    async fn recertification_page(&self, query: &RecertPageQuery) -> Result<Vec<Recertification>>;

    async fn get_recertification(
        &self,
        kind: SubjectKind,
        subject: &str,
    ) -> Result<Option<Recertification>>;

    /// Moves due dates (the catalog's interval for them changed): each (kind, subject,
    /// due date) whose record has another due date. Returns how many moved.
    async fn move_recert_due(&self, due: &[(SubjectKind, String, Timestamp)]) -> Result<u64>;

    /// Records an attestation (a record is made first if there is none) with its audit
    /// record, in one transaction.
    async fn attest(&self, attestation: &Attestation, audit: AuditDraft)
    -> Result<Recertification>;

    /// Claims a notice at `now`: true, with `audit` written and `alert` raised in the same
    /// transaction, for the one caller (on any replica) that claims it first; false,
    /// writing nothing, for every later one.
    async fn claim_recert_notice(
        &self,
        claim: &NoticeClaim,
        now: Timestamp,
        audit: Vec<AuditDraft>,
        alert: Option<crate::AlertWrite>,
    ) -> Result<bool>;

    /// Whether a notice was claimed already.
    async fn recert_notice_claimed(&self, claim: &NoticeClaim) -> Result<bool>;

    /// Records a rotation of an exception's secret (replacing the last one) with its
    /// audit record, in one transaction.
    async fn record_rotation(&self, rotation: &ExceptionRotation, audit: AuditDraft) -> Result<()>;

    /// The last rotation of every exception that has one.
    async fn exception_rotations(&self) -> Result<Vec<ExceptionRotation>>;
}
