//! Personal API tokens for humans (operators, approvers, auditors).
//!
//! A token reads `kairos_pat_<id>_<secret>`: `id` is 12 lowercase alphanumeric characters
//! that name the token in storage, `secret` is 32 random bytes as unpadded base64url
//! (43 characters, which may themselves contain `_` and `-`). The plain token is shown
//! once; only the [`TokenHash`] (SHA-256 of the secret) is stored.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::random::{self, RandomUnavailable};

/// Every personal API token starts with this.
pub const PREFIX: &str = "kairos_pat_";

const ID_LEN: usize = 12;
const ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_BYTES: usize = 32;
/// Unpadded base64url length of [`SECRET_BYTES`].
const SECRET_LEN: usize = 43;

/// A token string did not have the API token format. Messages never quote the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenError {
    /// The token does not start with `kairos_pat_`.
    #[error("not a Kairos API token: it must start with \"kairos_pat_\"")]
    WrongPrefix,
    /// The id part is not 12 lowercase letters or digits.
    #[error("malformed Kairos API token: the id must be 12 lowercase letters or digits")]
    BadId,
    /// The secret part is not 32 bytes of unpadded base64url.
    #[error("malformed Kairos API token: the secret part is damaged or truncated")]
    BadSecret,
    /// A stored hash is not 64 hex digits.
    #[error("stored API token hash is not 64 hex digits")]
    BadHash,
}

/// The public id of an API token, used to find its hash in storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(String);

impl TokenId {
    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TokenId {
    type Err = ApiTokenError;

    /// Parses a stored id: exactly 12 characters from `a-z0-9`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(ApiTokenError::BadId)
        }
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The secret part of a presented token.
#[derive(Debug)]
pub struct TokenSecret(SecretString);

impl TokenSecret {
    /// Takes a whole presented token as the secret: the bootstrap admin token
    /// (`--dev-admin-token`, `KAIROS_ADMIN_TOKEN`) has no id part and any shape.
    pub fn whole(token: &str) -> Self {
        Self(SecretString::from(token))
    }
}

/// A complete plain token, to be shown to its owner exactly once.
#[derive(Debug)]
pub struct PlainToken(SecretString);

impl PlainToken {
    /// The token text, for showing it to its owner.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The SHA-256 of a token's secret: the only part of a token that is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a token secret.
    pub fn of(secret: &TokenSecret) -> Self {
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest(&SHA256, secret.0.expose_secret().as_bytes()).as_ref());
        Self(hash)
    }

    /// Lowercase hex, for storage.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses a stored hash (64 hex digits).
    pub fn from_hex(stored: &str) -> Result<Self, ApiTokenError> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(stored, &mut hash).map_err(|_| ApiTokenError::BadHash)?;
        Ok(Self(hash))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.to_hex())
    }
}

/// A freshly generated token: show `token` once, store `id` and `hash`.
#[derive(Debug)]
pub struct NewApiToken {
    /// The complete token for its owner.
    pub token: PlainToken,
    /// The id to store.
    pub id: TokenId,
    /// The hash to store.
    pub hash: TokenHash,
}

/// Generates a new API token.
pub fn generate() -> Result<NewApiToken, RandomUnavailable> {
    let id = TokenId(random_id()?);
    let secret = TokenSecret(crate::random_secret(SECRET_BYTES)?);
    let token = PlainToken(SecretString::from(format!(
        "{PREFIX}{id}_{}",
        secret.0.expose_secret()
    )));
    let hash = TokenHash::of(&secret);
    Ok(NewApiToken { token, id, hash })
}

/// Splits a presented token into its id (to look up the stored hash) and its secret.
pub fn parse(token: &str) -> Result<(TokenId, TokenSecret), ApiTokenError> {
    let rest = token
        .strip_prefix(PREFIX)
        .ok_or(ApiTokenError::WrongPrefix)?;
    let (id, secret) = rest.split_at_checked(ID_LEN).ok_or(ApiTokenError::BadId)?;
    let id: TokenId = id.parse()?;
    let secret = secret.strip_prefix('_').ok_or(ApiTokenError::BadSecret)?;
    let secret_ok = secret.len() == SECRET_LEN
        && URL_SAFE_NO_PAD
            .decode(secret)
            .is_ok_and(|bytes| bytes.len() == SECRET_BYTES);
    if !secret_ok {
        return Err(ApiTokenError::BadSecret);
    }
    Ok((id, TokenSecret(SecretString::from(secret))))
}

/// Whether `secret` matches the stored `hash`, compared in constant time.
pub fn verify(secret: &TokenSecret, hash: &TokenHash) -> bool {
    TokenHash::of(secret).0.ct_eq(&hash.0).into()
}

/// 12 characters drawn uniformly from `a-z0-9`.
fn random_id() -> Result<String, RandomUnavailable> {
    // Rejection sampling: 252 = 7 * 36, so bytes below it map uniformly onto the alphabet.
    const LIMIT: u8 = 252;
    let mut id = String::with_capacity(ID_LEN);
    while id.len() < ID_LEN {
        for byte in random::array::<16>()? {
            if byte < LIMIT && id.len() < ID_LEN {
                id.push(char::from(ID_ALPHABET[usize::from(byte % 36)]));
            }
        }
    }
    Ok(id)
}
