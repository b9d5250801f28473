//! Sealing secrets at rest: AES-256-GCM under a [`MasterKey`].
//!
//! A sealed value reads `v1.<base64url(nonce || ciphertext || tag)>` with a random 96-bit
//! nonce. The `aad` binds a sealed value to its context (say, the row and column it is
//! stored in), so it cannot be moved elsewhere and opened there. Random nonces keep one
//! master key safe for about 2^32 seals, far beyond what a broker stores.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretSlice, SecretString};

use crate::random::{self, RandomUnavailable};

const VERSION_PREFIX: &str = "v1.";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Sealing or opening failed. Messages never contain key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The master key text is not 32 bytes of base64.
    #[error("master key must be 32 bytes encoded as base64 (e.g. `openssl rand -base64 32`)")]
    InvalidKey,
    /// The sealed value is not in the `v1.` format.
    #[error("sealed value is not in the v1 format")]
    Malformed,
    /// Authentication failed.
    #[error(
        "sealed value cannot be opened: wrong master key, wrong context, or the value was altered"
    )]
    OpenFailed,
    /// The plaintext is too large for AES-GCM.
    #[error("value is too large to seal")]
    TooLarge,
    /// No randomness for the nonce.
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
}

/// The 256-bit key that seals secrets at rest. Zeroed on drop; `Debug` is redacted.
pub struct MasterKey(SecretBox<[u8; KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, RandomUnavailable> {
        let mut key = Box::new([0u8; KEY_LEN]);
        random::fill(key.as_mut())?;
        Ok(Self(SecretBox::new(key)))
    }

    /// Parses a key from standard base64 (padded) or unpadded base64url; surrounding
    /// whitespace, such as a file's trailing newline, is ignored.
    pub fn from_base64(encoded: &str) -> Result<Self, SealError> {
        let encoded = encoded.trim();
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
                .map_err(|_| SealError::InvalidKey)?,
        );
        let mut key = Box::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(SealError::InvalidKey);
        }
        key.copy_from_slice(&bytes);
        Ok(Self(SecretBox::new(key)))
    }

    /// The key as standard base64, for writing it to a secret store once.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.0.expose_secret()))
    }

    /// A key for one purpose derived from this one (HMAC-SHA256 of `label`), so that
    /// every replica sharing the master key derives the same key without storing it.
    pub(crate) fn derive(&self, label: &[u8]) -> ring::hmac::Key {
        let master = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.expose_secret());
        let derived = ring::hmac::sign(&master, label);
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
    }

    /// Encrypts and authenticates `plaintext`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, SealError> {
        let nonce_bytes = random::array::<NONCE_LEN>()?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce_bytes);
        let mut in_out = plaintext.to_vec();
        self.aead_key()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| SealError::TooLarge)?;
        out.extend_from_slice(&in_out);
        Ok(format!("{VERSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Decrypts a value made by [`seal`](Self::seal) with the same key and `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<SecretSlice<u8>, SealError> {
        let encoded = sealed
            .strip_prefix(VERSION_PREFIX)
            .ok_or(SealError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plaintext = self
            .aead_key()?
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .map_err(|_| SealError::OpenFailed)?;
        Ok(SecretSlice::from(plaintext.to_vec()))
    }

    fn aead_key(&self) -> Result<LessSafeKey, SealError> {
        UnboundKey::new(&AES_256_GCM, self.0.expose_secret())
            .map(LessSafeKey::new)
            .map_err(|_| SealError::InvalidKey)
    }
}
