//! DPoP (RFC 9449) and certificate-bound tokens (RFC 8705): the part of the store that
//! remembers proofs and bindings.
//!
//! A proof's `jti` may be used once across every replica: the claim is an insert under a
//! primary key. A request made with a proof remembers the key its tokens are bound to.

use async_trait::async_trait;
use kairos_domain::{RequestId, Timestamp};

use crate::Result;

/// Persistence of DPoP proofs seen and of requests' key bindings.
#[async_trait]
pub trait DpopStore: Send + Sync {
    /// Claims a proof by its replay key until `until`; with `binding`, records in the same
    /// write that the request's tokens are bound to that key thumbprint (`jkt`). False
    /// when the proof was claimed before (then nothing is written).
    async fn claim_dpop_proof(
        &self,
        replay_key: &str,
        until: Timestamp,
        binding: Option<(&RequestId, &str)>,
    ) -> Result<bool>;

    /// The key thumbprint a request's tokens are bound to, if it was made with a proof.
    async fn dpop_binding(&self, request: &RequestId) -> Result<Option<String>>;

    /// Records that a request's tokens are bound to a client certificate (RFC 8705
    /// `x5t#S256`), before the request itself is written (like a DPoP binding).
    async fn bind_certificate(&self, request: &RequestId, x5t_s256: &str) -> Result<()>;

    /// The certificate thumbprint a request's tokens are bound to, if it came over mTLS.
    async fn certificate_binding(&self, request: &RequestId) -> Result<Option<String>>;

    /// Forgets proofs whose window ended at or before `now`; returns how many.
    async fn prune_dpop_proofs(&self, now: Timestamp) -> Result<u64>;
}
