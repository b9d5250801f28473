//! SSH targets: the part of the store that keeps each target's CA keys (sealed), the
//! public keys requests asked to have certified, and the certificates issued, by grant,
//! with their serials (what the target's KRL lists once the grant ends).

use async_trait::async_trait;
use kairos_domain::{AuditDraft, GrantId, RequestId, Timestamp};

use crate::Result;

/// An SSH CA key as stored: the private half sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSshCa {
    pub id: String,
    pub target: String,
    /// OpenSSH one-line form (`ssh-ed25519 AAAA… kairos-ca:<target>:<id>`).
    pub public_key: String,
    pub sealed_private: String,
    pub created_at: Timestamp,
    /// None while it signs; else it stays trusted (served) until then.
    pub retire_until: Option<Timestamp>,
}

/// A certificate issued for a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshCert {
    pub grant_id: GrantId,
    pub target: String,
    pub ca_key_id: String,
    /// In `1..=i64::MAX`.
    pub serial: u64,
    /// OpenSSH one-line form.
    pub certificate: String,
    pub valid_before: Timestamp,
    /// When the revocation worker listed it (the grant ended).
    pub revoked_at: Option<Timestamp>,
}

/// A serial a target's KRL lists: certificates revoked and not yet expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    pub ca_key_id: String,
    pub serial: u64,
    pub revoked_at: Timestamp,
}

/// Persistence of SSH CA keys and certificates.
#[async_trait]
pub trait SshStore: Send + Sync {
    /// A target's CA keys (current and retired), oldest first.
    async fn ssh_ca_keys(&self, target: &str) -> Result<Vec<StoredSshCa>>;

    /// Stores a target's first CA key; false (and nothing written) when the target has a
    /// current key already (another replica made it first).
    async fn insert_first_ssh_ca(&self, key: &StoredSshCa) -> Result<bool>;

    /// Retires the target's current CA key until `retire_until` and makes `key` the
    /// signer, with its audit record, in one write.
    async fn rotate_ssh_ca(
        &self,
        key: &StoredSshCa,
        retire_until: Timestamp,
        audit: AuditDraft,
    ) -> Result<()>;

    /// Records the public key a request asks to have certified, before the request.
    async fn bind_ssh_key(&self, request: &RequestId, public_key: &str) -> Result<()>;

    /// The public key a request asked to have certified.
    async fn ssh_key_of(&self, request: &RequestId) -> Result<Option<String>>;

    /// Records a grant's certificate if the grant is active and has none yet; returns
    /// the grant's certificate (this one or the one recorded before), or None when the
    /// grant is not active (then nothing is written). `audit` (the certificate's issue)
    /// is appended, at `at`, only when this call recorded it.
    async fn record_ssh_cert(
        &self,
        cert: &SshCert,
        at: Timestamp,
        audit: AuditDraft,
    ) -> Result<Option<SshCert>>;

    /// A grant's certificate, if one was issued.
    async fn ssh_cert(&self, grant: &GrantId) -> Result<Option<SshCert>>;

    /// Marks a grant's certificate revoked at `at` (kept if it was already). False when
    /// the grant has no certificate.
    async fn revoke_ssh_cert(&self, grant: &GrantId, at: Timestamp) -> Result<bool>;

    /// The serials a target's KRL lists at `now`: revoked certificates whose
    /// `valid_before` is still ahead (an expired certificate needs no listing).
    async fn revoked_ssh_serials(&self, target: &str, now: Timestamp)
    -> Result<Vec<RevokedSerial>>;
}
