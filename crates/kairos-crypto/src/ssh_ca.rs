//! The Ed25519 keys of SSH certificate authorities (one per `ssh` target): generated here,
//! exported only as sealed-ready PKCS#8 (wrapped in [`secrecy`]), and used only to sign
//! the certificate bodies that `kairos-ssh` builds.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use secrecy::SecretSlice;

use crate::RandomUnavailable;

/// An SSH CA's private key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SshCaError {
    /// The random number generator failed while generating a key.
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
    /// The stored PKCS#8 document is not an Ed25519 key.
    #[error("the SSH CA key is not a valid Ed25519 PKCS#8 key: {0}")]
    InvalidPkcs8(String),
}

/// An SSH CA's Ed25519 key pair.
pub struct SshCaKey {
    pair: Ed25519KeyPair,
    pkcs8: SecretSlice<u8>,
    public: [u8; 32],
}

impl fmt::Debug for SshCaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshCaKey")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

impl SshCaKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, SshCaError> {
        let der =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| RandomUnavailable)?;
        Self::from_pkcs8(der.as_ref())
    }

    /// Loads a key from the PKCS#8 DER that [`Self::pkcs8_der`] exported.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SshCaError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| SshCaError::InvalidPkcs8(e.to_string()))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(Self {
            pair,
            pkcs8: SecretSlice::from(der.to_vec()),
            public,
        })
    }

    /// The PKCS#8 DER, to be sealed before it is stored.
    pub fn pkcs8_der(&self) -> &SecretSlice<u8> {
        &self.pkcs8
    }

    /// The 32-byte Ed25519 public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The Ed25519 signature of `data` (a certificate body).
    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(data).as_ref());
        out
    }
}

/// A random certificate serial in `1..=i64::MAX` (it fits a signed 64-bit column, and
/// OpenSSH cannot revoke serial 0).
pub fn random_serial() -> Result<u64, RandomUnavailable> {
    let bytes = crate::random::array::<8>()?;
    let n = u64::from_be_bytes(bytes) >> 1;
    Ok(n.max(1))
}

/// 32 random bytes for a certificate's nonce.
pub fn random_nonce() -> Result<[u8; 32], RandomUnavailable> {
    crate::random::array::<32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_key_survives_its_pkcs8_and_signs_verifiably() {
        let key = SshCaKey::generate().unwrap();
        let again = SshCaKey::from_pkcs8(key.pkcs8_der().expose_secret()).unwrap();
        assert_eq!(key.public(), again.public());
        let sig = again.sign(b"body");
        let pk = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.public());
        assert!(pk.verify(b"body", &sig).is_ok());
        assert!(pk.verify(b"other", &sig).is_err());
        assert!(!format!("{key:?}").contains("pkcs8"));
        assert!(SshCaKey::from_pkcs8(b"junk").is_err());
        let s = random_serial().unwrap();
        assert!(s >= 1 && i64::try_from(s).is_ok());
    }
}
