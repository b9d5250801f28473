//! All cryptography of the Kairos broker.
//!
//! - [`issuer`]: Kairos' own signing keys, the key ring with rotation, and the access
//!   tokens (JWTs) the broker issues for grants.
//! - [`workload`]: verification of platform-issued JWTs (Kubernetes service-account tokens,
//!   CI OIDC tokens, SPIFFE JWT-SVIDs) that non-human identities present to authenticate.
//! - [`spiffe`]: SPIFFE IDs, trust bundles, X.509-SVID verification, RFC 8705 thumbprints.
//! - [`dpop`]: DPoP proofs (RFC 9449) and the key confirmation of sender-constrained
//!   tokens.
//! - [`api_token`]: personal API tokens for humans (operators, approvers, auditors).
//! - [`seal`]: authenticated encryption of secrets at rest under a master key.
//! - [`webhook`]: Standard Webhooks signatures of outgoing notifications.
//! - [`ssh_ca`]: the Ed25519 keys of SSH certificate authorities (`ssh` targets).
//!
//! Invariants: no other crate touches key material or signatures; secrets leave this crate
//! only wrapped in [`secrecy`] types, so `Debug` cannot print them; no error message
//! contains a token or a secret. The only IO here is fetching JWKS documents of trusted
//! workload issuers.

#![warn(missing_docs)]
// Tests may unwrap: a failed expectation is a failed test.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api_token;
mod checked;
pub mod dpop;
pub mod issuer;
mod jwk;
mod jws;
mod random;
pub mod seal;
pub mod spiffe;
pub mod ssh_ca;
pub mod webhook;
pub mod workload;

pub use random::{RandomUnavailable, random_secret};

/// Lowercase hex of the SHA-256 digest of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
