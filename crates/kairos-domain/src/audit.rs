//! The tamper-evident audit chain: each record's hash covers its fields and the
//! previous record's hash, so an edited, reordered or deleted record breaks the chain.

use sha2::{Digest, Sha256};

use crate::Timestamp;

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Requested,
    Decided,
    Approved,
    Denied,
    RequestExpired,
    Issued,
    /// A renewal was asked for (its decision follows as `decided`).
    RenewRequested,
    Renewed,
    Released,
    Revoked,
    Expired,
    Aborted,
    Verified,
    RevocationFailed,
    ConfigApplied,
    KeyRotated,
    UserCreated,
    UserTokenRevoked,
    /// The reconciler found a managed account that backs no active grant and removed it.
    ResidueRemoved,
    /// The reconciler found an active grant whose account is missing downstream.
    AccountMissing,
    /// An account's password was shown to its workload (once).
    CredentialDelivered,
    /// A grant ended because an applied configuration removed its identity, team,
    /// target or entitlement.
    ConfigRemoved,
    /// A grant ended because an applied configuration's policies no longer permit it.
    PolicyChanged,
    /// An identity was suspended: its grants ended, its requests refused.
    IdentitySuspended,
    /// A suspended identity was resumed.
    IdentityResumed,
    /// An identity was retired for good.
    IdentityRetired,
    /// An alert was opened.
    AlertRaised,
    /// An alert was acknowledged or resolved.
    AlertUpdated,
    /// An identity's or standing exception's recertification came due: its owners' review
    /// task opened (once per cycle).
    RecertDue,
    /// A recertification passed its due date unattested (once per cycle); an identity is
    /// suspended for it, an exception flagged.
    RecertOverdue,
    /// An owner re-attested an identity or a standing exception.
    RecertAttested,
    /// A standing exception's secret was recorded as rotated.
    ExceptionRotated,
    /// A standing exception's secret was not rotated within its interval (once per cycle).
    ExceptionRotationOverdue,
    /// A standing exception passed its end date (once per end date).
    ExceptionExpired,
    /// A break-glass grant was issued and its after-action review opened (same write).
    ReviewOpened,
    /// An owner of the identity's team filed an after-action review.
    ReviewFiled,
    /// An after-action review passed its due time unfiled and escalated (once).
    ReviewEscalated,
    /// An identity's owner team was found to have no active owner.
    IdentityOrphaned,
    /// An orphaned identity's flag was cleared (an owner can act again, or it was retired
    /// or removed).
    OrphanCleared,
    /// A person signed in to the web console (a session began).
    ConsoleSignedIn,
    /// A person signed out of the web console (their session row was deleted).
    ConsoleSignedOut,
}

impl AuditKind {
    pub const ALL: [AuditKind; 41] = [
        Self::Requested,
        Self::Decided,
        Self::Approved,
        Self::Denied,
        Self::RequestExpired,
        Self::Issued,
        Self::RenewRequested,
        Self::Renewed,
        Self::Released,
        Self::Revoked,
        Self::Expired,
        Self::Aborted,
        Self::Verified,
        Self::RevocationFailed,
        Self::ConfigApplied,
        Self::KeyRotated,
        Self::UserCreated,
        Self::UserTokenRevoked,
        Self::ResidueRemoved,
        Self::AccountMissing,
        Self::CredentialDelivered,
        Self::ConfigRemoved,
        Self::PolicyChanged,
        Self::IdentitySuspended,
        Self::IdentityResumed,
        Self::IdentityRetired,
        Self::AlertRaised,
        Self::AlertUpdated,
        Self::RecertDue,
        Self::RecertOverdue,
        Self::RecertAttested,
        Self::ExceptionRotated,
        Self::ExceptionRotationOverdue,
        Self::ExceptionExpired,
        Self::ReviewOpened,
        Self::ReviewFiled,
        Self::ReviewEscalated,
        Self::IdentityOrphaned,
        Self::OrphanCleared,
        Self::ConsoleSignedIn,
        Self::ConsoleSignedOut,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Decided => "decided",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::RequestExpired => "request_expired",
            Self::Issued => "issued",
            Self::RenewRequested => "renew_requested",
            Self::Renewed => "renewed",
            Self::Released => "released",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Aborted => "aborted",
            Self::Verified => "verified",
            Self::RevocationFailed => "revocation_failed",
            Self::ConfigApplied => "config_applied",
            Self::KeyRotated => "key_rotated",
            Self::UserCreated => "user_created",
            Self::UserTokenRevoked => "user_token_revoked",
            Self::ResidueRemoved => "residue_removed",
            Self::AccountMissing => "account_missing",
            Self::CredentialDelivered => "credential_delivered",
            Self::ConfigRemoved => "config_removed",
            Self::PolicyChanged => "policy_changed",
            Self::IdentitySuspended => "identity_suspended",
            Self::IdentityResumed => "identity_resumed",
            Self::IdentityRetired => "identity_retired",
            Self::AlertRaised => "alert_raised",
            Self::AlertUpdated => "alert_updated",
            Self::RecertDue => "recert_due",
            Self::RecertOverdue => "recert_overdue",
            Self::RecertAttested => "recert_attested",
            Self::ExceptionRotated => "exception_rotated",
            Self::ExceptionRotationOverdue => "exception_rotation_overdue",
            Self::ExceptionExpired => "exception_expired",
            Self::ReviewOpened => "review_opened",
            Self::ReviewFiled => "review_filed",
            Self::ReviewEscalated => "review_escalated",
            Self::IdentityOrphaned => "identity_orphaned",
            Self::OrphanCleared => "orphan_cleared",
            Self::ConsoleSignedIn => "console_signed_in",
            Self::ConsoleSignedOut => "console_signed_out",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An audit record before the store gives it a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    pub kind: AuditKind,
    /// `Principal` display form: `workload:x`, `user:y`, `system:expirer`.
    pub actor: String,
    pub identity: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub task_ref: Option<String>,
    /// Details as a JSON object. Never holds a secret.
    pub data: serde_json::Value,
}

impl AuditDraft {
    pub fn new(kind: AuditKind, actor: impl ToString) -> Self {
        Self {
            kind,
            actor: actor.to_string(),
            identity: None,
            request_id: None,
            grant_id: None,
            task_ref: None,
            data: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
    pub fn identity(mut self, v: impl ToString) -> Self {
        self.identity = Some(v.to_string());
        self
    }
    pub fn request(mut self, v: impl ToString) -> Self {
        self.request_id = Some(v.to_string());
        self
    }
    pub fn grant(mut self, v: impl ToString) -> Self {
        self.grant_id = Some(v.to_string());
        self
    }
    pub fn task_ref(mut self, v: impl ToString) -> Self {
        self.task_ref = Some(v.to_string());
        self
    }
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }

    /// Seals the draft as record `seq` after `prev_hash`.
    pub fn seal(self, seq: i64, at: Timestamp, prev_hash: String) -> AuditRecord {
        let data = self.data.to_string();
        let mut record = AuditRecord {
            seq,
            at,
            kind: self.kind,
            actor: self.actor,
            identity: self.identity,
            request_id: self.request_id,
            grant_id: self.grant_id,
            task_ref: self.task_ref,
            data,
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }
}

/// A record in the chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: Timestamp,
    pub kind: AuditKind,
    pub actor: String,
    pub identity: Option<String>,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub task_ref: Option<String>,
    /// The JSON text exactly as hashed.
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// SHA-256 over length-prefixed fields, so no two field lists hash alike.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(b"kairos-audit-v1");
        field(self.prev_hash.as_bytes());
        field(&self.seq.to_be_bytes());
        field(&self.at.as_millis().to_be_bytes());
        field(self.kind.as_str().as_bytes());
        field(self.actor.as_bytes());
        for opt in [
            &self.identity,
            &self.request_id,
            &self.grant_id,
            &self.task_ref,
        ] {
            match opt {
                Some(v) => {
                    field(b"1");
                    field(v.as_bytes());
                }
                None => field(b"0"),
            }
        }
        field(self.data.as_bytes());
        hex::encode(h.finalize())
    }
}

/// The first place the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at record {seq}: {problem}")]
pub struct ChainError {
    pub seq: i64,
    pub problem: String,
}

/// Walks records in `seq` order; returns how many were checked.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<u64, ChainError> {
    let mut verifier = ChainVerifier::default();
    for r in records {
        verifier.push(r)?;
    }
    Ok(verifier.checked)
}

/// Incremental form of [`verify_chain`], for walking a long chain page by page.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
    pub checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
        }
    }
}

impl ChainVerifier {
    /// The last record verified so far: its `seq` and `hash` (0 and the genesis hash
    /// before the first).
    pub fn head(&self) -> (i64, &str) {
        (self.expected_seq - 1, &self.prev_hash)
    }

    pub fn push(&mut self, r: &AuditRecord) -> Result<(), ChainError> {
        if r.seq != self.expected_seq {
            return Err(ChainError {
                seq: self.expected_seq,
                problem: format!(
                    "expected record {} but found {}: a record was deleted or reordered",
                    self.expected_seq, r.seq
                ),
            });
        }
        if r.prev_hash != self.prev_hash {
            return Err(ChainError {
                seq: r.seq,
                problem: "its prev_hash does not match the previous record: records were reordered, deleted or edited".into(),
            });
        }
        if r.compute_hash() != r.hash {
            return Err(ChainError {
                seq: r.seq,
                problem: "its contents do not match its hash: the record was edited".into(),
            });
        }
        self.expected_seq += 1;
        self.prev_hash.clone_from(&r.hash);
        self.checked += 1;
        Ok(())
    }
}

/// Whether the chain still extends a signed checkpoint of record `seq` with `hash`:
/// `found` is the hash the chain holds at `seq` now (None if it has no such record),
/// `head_seq` the last record of the chain. None when it extends the checkpoint,
/// otherwise what was done to the chain. Only the chain's own checks
/// ([`verify_chain`]) prove that the records *before* `seq` are unchanged too.
pub fn checkpoint_problem(
    seq: i64,
    hash: &str,
    found: Option<&str>,
    head_seq: i64,
) -> Option<String> {
    if seq < 1 {
        return Some(format!(
            "it signs record {seq}, and records are numbered from 1"
        ));
    }
    match found {
        Some(found) if found == hash => None,
        Some(found) => Some(format!(
            "record {seq} now has hash {found} but the checkpoint signed {hash}: \
             the chain was rewritten at or before record {seq}"
        )),
        None if seq > head_seq => Some(format!(
            "the chain ends at record {head_seq} but the checkpoint signed record {seq}: \
             records were deleted from the end"
        )),
        None => Some(format!("record {seq} is missing: records were deleted")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let r = AuditDraft::new(AuditKind::Issued, "system:test")
                    .grant(format!("g{seq}"))
                    .seal(seq, Timestamp::from_millis(seq * 1000), prev.clone());
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn check(records: &[AuditRecord], broken_at: Option<i64>) {
        match (verify_chain(records), broken_at) {
            (Ok(n), None) => assert_eq!(n, records.len() as u64),
            (Err(e), Some(seq)) => assert_eq!(e.seq, seq, "{e}"),
            (got, want) => panic!("got {got:?}, wanted break at {want:?}"),
        }
    }

    #[test]
    fn checkpoints_are_extended_or_say_why_not() {
        let c = chain(5);
        let (seq, hash) = (3, c[2].hash.as_str());
        assert_eq!(checkpoint_problem(seq, hash, Some(hash), 5), None);
        let rewritten = checkpoint_problem(seq, hash, Some(&c[1].hash), 5).unwrap();
        assert!(
            rewritten.contains("rewritten at or before record 3"),
            "{rewritten}"
        );
        let cut = checkpoint_problem(seq, hash, None, 2).unwrap();
        assert!(cut.contains("ends at record 2"), "{cut}");
        assert!(checkpoint_problem(0, hash, None, 5).is_some());
        let mut v = ChainVerifier::default();
        assert_eq!(v.head(), (0, GENESIS_HASH));
        for r in &c {
            v.push(r).unwrap();
        }
        assert_eq!(v.head(), (5, c[4].hash.as_str()));
    }

    #[test]
    fn intact_chain_verifies() {
        check(&chain(5), None);
        check(&[], None);
    }

    #[test]
    fn edit_is_caught() {
        let mut c = chain(5);
        c[2].actor = "user:mallory".into();
        check(&c, Some(3));
    }

    #[test]
    fn deletion_is_caught() {
        let mut c = chain(5);
        c.remove(1);
        check(&c, Some(2));
    }

    #[test]
    fn reorder_is_caught() {
        let mut c = chain(5);
        c.swap(1, 2);
        check(&c, Some(2));
    }

    #[test]
    fn rehash_after_edit_is_caught_by_the_next_record() {
        let mut c = chain(5);
        c[2].actor = "user:mallory".into();
        c[2].hash = c[2].compute_hash();
        check(&c, Some(4));
    }
}
