//! Kairos' own signing keys and the access tokens the broker issues.
//!
//! A [`KeyRing`] holds one current [`SigningKey`] and the retired keys whose tokens may
//! still be in use. Retired keys keep only their public half: they verify and appear in
//! the JWKS until every token they signed has expired, then [`KeyRing::prune`] drops them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use secrecy::SecretSlice;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

mod checkpoint;
mod set;

pub use checkpoint::{CheckpointClaims, CheckpointError};
pub use set::{SESSION_REVOKED, SET_TYPE, SessionRevoked};

use crate::checked::Checked;
use crate::jwk::PublicKey;
use crate::jws::{self, Alg};
use crate::random::{self, RandomUnavailable};

/// The JWS `typ` of Kairos access tokens (RFC 9068).
const TOKEN_TYPE: &str = "at+jwt";

/// The algorithm of a Kairos signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningAlg {
    /// ECDSA on P-256 with SHA-256 (JWS `ES256`).
    Es256,
    /// Ed25519 (JWS `EdDSA`).
    EdDsa,
}

impl SigningAlg {
    /// The `alg` value in JWS headers and JWKs: `ES256` or `EdDSA`.
    pub fn jws_name(self) -> &'static str {
        self.jws_alg().jws_name()
    }

    fn jws_alg(self) -> Alg {
        match self {
            Self::Es256 => Alg::Es256,
            Self::EdDsa => Alg::EdDsa,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Es256 => "es256",
            Self::EdDsa => "eddsa",
        })
    }
}

impl FromStr for SigningAlg {
    type Err = KeyError;

    /// Accepts `es256` or `eddsa`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "es256" => Ok(Self::Es256),
            "eddsa" => Ok(Self::EdDsa),
            _ => Err(KeyError::UnknownAlg(jws::excerpt(s))),
        }
    }
}

/// Creating, loading or naming a signing key failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The algorithm name is not one Kairos signs with.
    #[error("unknown signing algorithm {0:?}; use \"es256\" or \"eddsa\"")]
    UnknownAlg(String),
    /// The key id is empty, too long, or has characters outside base64url.
    #[error("invalid key id {0:?}: use 1 to 128 characters from A-Z, a-z, 0-9, '-' and '_'")]
    InvalidKid(String),
    /// The stored key is not a PKCS#8 document for the stated algorithm.
    #[error("key {kid} is not a valid PKCS#8 {alg} private key ({reason})")]
    InvalidPkcs8 {
        /// Id of the key being loaded.
        kid: String,
        /// Algorithm the key was expected to have.
        alg: SigningAlg,
        /// What `ring` rejected.
        reason: String,
    },
    /// Key generation needs randomness.
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
}

/// Signing an access token failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The claims name another issuer than the key ring's.
    #[error("claims carry issuer {found:?} but this key ring signs for {expected:?}")]
    IssuerMismatch {
        /// The ring's issuer.
        expected: String,
        /// The claims' `iss`.
        found: String,
    },
    /// The claims could not be serialized.
    #[error("could not encode token claims: {0}")]
    Encode(#[from] serde_json::Error),
    /// The signature primitive failed (for ECDSA: no randomness for the nonce).
    #[error("signing with key {kid} failed")]
    Crypto {
        /// Id of the signing key.
        kid: String,
    },
}

/// Why an access token was rejected. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS, or the claims are not Kairos access token claims.
    #[error("malformed access token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm Kairos does not issue (including `none`).
    #[error("access token algorithm {0:?} is not accepted; Kairos signs with ES256 or EdDSA")]
    UnsupportedAlgorithm(String),
    /// The header's `typ` is not `at+jwt`.
    #[error("token is not a Kairos access token (`typ` must be \"at+jwt\")")]
    WrongType,
    /// No key in the ring has the token's `kid` (it may have been pruned).
    #[error("no Kairos signing key has id {0:?}; the key may have been retired and pruned")]
    UnknownKey(String),
    /// The signature does not verify with the key named by `kid`.
    #[error("access token signature does not verify with key {kid:?}")]
    BadSignature {
        /// The `kid` of the key that was tried.
        kid: String,
    },
    /// `iss` is not this ring's issuer.
    #[error("access token was issued by {found:?}, not by {expected:?}")]
    WrongIssuer {
        /// The ring's issuer.
        expected: String,
        /// The token's `iss`.
        found: String,
    },
    /// `exp` has passed.
    #[error("access token expired at unix time {exp} (now {now}); request a new grant")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The time it was checked at.
        now: i64,
    },
    /// `nbf` is still in the future.
    #[error("access token is not valid before unix time {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The time it was checked at.
        now: i64,
    },
}

impl From<jws::Malformed> for TokenError {
    fn from(malformed: jws::Malformed) -> Self {
        Self::Malformed(malformed.0)
    }
}

/// The task a grant was issued for, as carried in an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskClaim {
    /// Kind of task, e.g. `incident` or `deploy`.
    pub kind: String,
    /// Reference in the task's system, e.g. a ticket id (`ref` on the wire).
    #[serde(rename = "ref")]
    pub reference: String,
    /// Free-text reason given by the requester.
    pub reason: String,
}

/// The claims of a Kairos access token. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuing broker; must equal the key ring's issuer.
    pub iss: String,
    /// The identity the grant was issued to.
    pub sub: String,
    /// RFC 9068 `client_id`: the OAuth client the token was issued to, which is the
    /// identity (the same as `sub`; a workload is its own client). Empty in tokens
    /// signed before the claim existed.
    #[serde(default)]
    pub client_id: String,
    /// The target the token is meant for.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// Start of validity.
    pub nbf: i64,
    /// The grant id.
    pub jti: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The task that justified the grant.
    pub task: TaskClaim,
    /// The entitlement that was granted.
    pub entitlement: String,
    /// The key the presenter must prove it holds (RFC 7800 / RFC 9449 `cnf.jkt`), for a
    /// sender-constrained token; absent for a Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<crate::dpop::Confirmation>,
    /// The workload's SPIFFE ID, when its identity has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
}

/// The public half of a Kairos signing key: enough to verify and to publish in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    kid: String,
    alg: SigningAlg,
    public: PublicKey,
}

impl VerifyingKey {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The public JWK: key members plus `kid`, `alg` and `use: "sig"`.
    pub fn jwk(&self) -> Value {
        let mut members = self.public.jwk_members();
        members.insert("kid".to_owned(), json!(self.kid));
        members.insert("alg".to_owned(), json!(self.alg.jws_name()));
        members.insert("use".to_owned(), json!("sig"));
        Value::Object(members)
    }
}

enum KeyPair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A Kairos signing key: id, algorithm, and the PKCS#8 private key (never printed).
pub struct SigningKey {
    verifying: VerifyingKey,
    pkcs8: SecretSlice<u8>,
    pair: KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.verifying.kid)
            .field("alg", &self.verifying.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key with a random 128-bit `kid`.
    pub fn generate(alg: SigningAlg) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            SigningAlg::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            SigningAlg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| RandomUnavailable)?;
        let kid = jws::b64(&random::array::<16>()?);
        Self::from_pkcs8(kid, alg, pkcs8.as_ref())
    }

    /// Loads a key from its id, algorithm and PKCS#8 DER (as exported by
    /// [`pkcs8_der`](Self::pkcs8_der)).
    pub fn from_pkcs8(kid: String, alg: SigningAlg, der: &[u8]) -> Result<Self, KeyError> {
        let kid_ok = (1..=128).contains(&kid.len())
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !kid_ok {
            return Err(KeyError::InvalidKid(jws::excerpt(&kid)));
        }
        let invalid = |reason: ring::error::KeyRejected| KeyError::InvalidPkcs8 {
            kid: kid.clone(),
            alg,
            reason: reason.to_string(),
        };
        let (pair, public) = match alg {
            SigningAlg::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &SystemRandom::new(),
                )
                .map_err(invalid)?;
                let point = pair.public_key().as_ref().to_vec();
                (KeyPair::Es256(pair), PublicKey::P256 { point })
            }
            SigningAlg::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(invalid)?;
                let x = pair.public_key().as_ref().to_vec();
                (KeyPair::EdDsa(pair), PublicKey::Ed25519 { x })
            }
        };
        Ok(Self {
            verifying: VerifyingKey { kid, alg, public },
            pkcs8: SecretSlice::from(der.to_vec()),
            pair,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.verifying.kid
    }

    /// The key's algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.verifying.alg
    }

    /// The PKCS#8 DER private key, for sealed storage (see [`crate::seal`]).
    pub fn pkcs8_der(&self) -> &SecretSlice<u8> {
        &self.pkcs8
    }

    /// The public JWK of this key.
    pub fn public_jwk(&self) -> Value {
        self.verifying.jwk()
    }

    /// The public half of this key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// Signs arbitrary JSON claims as a compact JWS with header `{"alg", "typ": "JWT", "kid"}`.
    ///
    /// Used by the development issuer (`kairos dev-issuer mint`) to mint *platform* tokens
    /// for a local test workload; the broker's own tokens go through [`KeyRing::sign`].
    pub fn sign_jwt(&self, claims: &Value) -> Result<String, SignError> {
        let header = json!({ "alg": self.alg().jws_name(), "typ": "JWT", "kid": self.kid() });
        let signing_input = format!(
            "{}.{}",
            jws::b64(&serde_json::to_vec(&header)?),
            jws::b64(&serde_json::to_vec(claims)?)
        );
        let signature = self.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", jws::b64(&signature)))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.pair {
            KeyPair::Es256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| SignError::Crypto {
                    kid: self.verifying.kid.clone(),
                }),
            KeyPair::EdDsa(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// A retired key: verification only, published until `retire_until`.
#[derive(Debug, Clone)]
struct RetiredKey {
    key: VerifyingKey,
    retire_until: i64,
}

/// The broker's signing keys: one current key that signs, and retired keys that still
/// verify (and stay in the JWKS) until the tokens they signed have expired.
#[derive(Debug)]
pub struct KeyRing {
    issuer: String,
    current: SigningKey,
    retired: Vec<RetiredKey>,
    checked: Checked<AccessClaims>,
}

/// Tokens remembered by one ring (see [`Checked`]): a resource server introspects the
/// same token again and again. Any change to the ring's keys empties it.
const SIGNATURE_CACHE_CAPACITY: usize = 100_000;

impl KeyRing {
    /// A ring that signs for `issuer` (the `iss` of every token) with `current`.
    pub fn new(issuer: impl Into<String>, current: SigningKey) -> Self {
        Self {
            issuer: issuer.into(),
            current,
            retired: Vec::new(),
            checked: Checked::new(SIGNATURE_CACHE_CAPACITY),
        }
    }

    /// The issuer this ring signs for and accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The id of the key that signs new tokens.
    pub fn current_kid(&self) -> &str {
        self.current.kid()
    }

    /// The key that signs new tokens (for sealing it into storage).
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// Retired keys with the unix time until which each stays verifiable.
    pub fn retired(&self) -> impl Iterator<Item = (&VerifyingKey, i64)> {
        self.retired
            .iter()
            .map(|retired| (&retired.key, retired.retire_until))
    }

    /// Makes `new_key` the signing key. The previous key keeps verifying, and stays in the
    /// JWKS, until `now + max_token_lifetime`: by then every token it signed has expired.
    /// Its private half is dropped (and zeroed) here.
    pub fn rotate(
        &mut self,
        new_key: SigningKey,
        now_unix_secs: i64,
        max_token_lifetime: Duration,
    ) {
        self.checked.clear();
        let old = std::mem::replace(&mut self.current, new_key);
        let lifetime = i64::try_from(max_token_lifetime.as_secs()).unwrap_or(i64::MAX);
        self.insert_retired(old.verifying, now_unix_secs.saturating_add(lifetime));
    }

    /// Adds a key that verifies until `retire_until` but no longer signs, e.g. when
    /// rebuilding the ring from storage after a restart.
    pub fn insert_retired(&mut self, key: VerifyingKey, retire_until: i64) {
        self.checked.clear();
        self.retired.push(RetiredKey { key, retire_until });
    }

    /// Drops retired keys whose `retire_until` has been reached; returns their ids so the
    /// caller can delete them from storage.
    pub fn prune(&mut self, now_unix_secs: i64) -> Vec<String> {
        self.checked.clear();
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|retired| retired.retire_until <= now_unix_secs);
        self.retired = kept;
        expired.into_iter().map(|retired| retired.key.kid).collect()
    }

    /// The JWKS document `{"keys": [...]}`: the current key, then the retired ones.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = std::iter::once(self.current.verifying_key())
            .chain(self.retired.iter().map(|retired| &retired.key))
            .map(VerifyingKey::jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// Signs `claims` with the current key as a compact JWS with header
    /// `{"alg", "typ": "at+jwt", "kid"}`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, SignError> {
        if claims.iss != self.issuer {
            return Err(SignError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: claims.iss.clone(),
            });
        }
        let header = json!({
            "alg": self.current.alg().jws_name(),
            "typ": TOKEN_TYPE,
            "kid": self.current.kid(),
        });
        let signing_input = format!(
            "{}.{}",
            jws::b64(&serde_json::to_vec(&header)?),
            jws::b64(&serde_json::to_vec(claims)?)
        );
        let signature = self.current.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", jws::b64(&signature)))
    }

    /// Verifies a token issued by this ring: signature by the key its `kid` names (current
    /// or retired), algorithm and `typ`, `iss`, then `exp` and `nbf` against `now_unix_secs`
    /// without clock skew (the broker checks its own tokens on its own clock).
    ///
    /// The audience is not checked here: the caller compares `aud` with the target.
    pub fn verify(&self, token: &str, now_unix_secs: i64) -> Result<AccessClaims, TokenError> {
        let digest = Checked::<AccessClaims>::digest(token);
        let claims = match self.checked.get(&digest) {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signed(token)?;
                self.checked
                    .insert(digest, claims.clone(), claims.exp, now_unix_secs);
                claims
            }
        };
        if now_unix_secs >= claims.exp {
            return Err(TokenError::Expired {
                exp: claims.exp,
                now: now_unix_secs,
            });
        }
        if now_unix_secs < claims.nbf {
            return Err(TokenError::NotYetValid {
                nbf: claims.nbf,
                now: now_unix_secs,
            });
        }
        Ok(claims)
    }

    /// [`Self::verify`] without the time checks: the claims of a token this ring signed,
    /// whether or not it has expired. For telling a token that is used after its end from
    /// one Kairos never issued; never for honouring a token.
    pub fn verify_ignoring_time(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let digest = Checked::<AccessClaims>::digest(token);
        match self.checked.get(&digest) {
            Some(claims) => Ok(claims),
            None => self.verify_signed(token),
        }
    }

    /// Everything [`Self::verify`] checks that does not depend on the time.
    fn verify_signed(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let jws = jws::parse(token)?;
        let alg = match Alg::from_jws_name(&jws.header.alg) {
            Some(alg @ (Alg::Es256 | Alg::EdDsa)) => alg,
            _ => {
                return Err(TokenError::UnsupportedAlgorithm(jws::excerpt(
                    &jws.header.alg,
                )));
            }
        };
        let typ_ok = jws.header.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case(TOKEN_TYPE) || typ.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::WrongType);
        }
        let kid = jws
            .header
            .kid
            .as_deref()
            .ok_or(TokenError::Malformed("header has no `kid`"))?;
        let key = self
            .verification_key(kid)
            .ok_or_else(|| TokenError::UnknownKey(jws::excerpt(kid)))?;
        if key.alg.jws_alg() != alg || !key.public.verify(alg, jws.signing_input, &jws.signature) {
            return Err(TokenError::BadSignature {
                kid: key.kid.clone(),
            });
        }
        let claims: AccessClaims = serde_json::from_slice(&jws.payload).map_err(|_| {
            TokenError::Malformed("claims are not a valid Kairos access token payload")
        })?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer {
                expected: self.issuer.clone(),
                found: jws::excerpt(&claims.iss),
            });
        }
        Ok(claims)
    }

    fn verification_key(&self, kid: &str) -> Option<&VerifyingKey> {
        std::iter::once(self.current.verifying_key())
            .chain(self.retired.iter().map(|retired| &retired.key))
            .find(|key| key.kid == kid)
    }
}
