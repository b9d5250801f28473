//! Signed audit checkpoints: the broker's signature over the head of its audit chain
//! (`seq`, `hash`, `at`), published where the store's writer cannot rewrite it. A chain
//! rewritten or cut after a checkpoint no longer extends it.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{KeyRing, SignError};
use crate::jws::{self, Alg};

/// The JWS `typ` of a checkpoint, so no other Kairos JWS passes for one.
const CHECKPOINT_TYPE: &str = "kairos-checkpoint+jwt";

/// What a checkpoint signs: the chain's head at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointClaims {
    /// The broker that signed it (the key ring's issuer).
    pub iss: String,
    /// The head record's sequence number.
    pub seq: i64,
    /// The head record's hash (hex SHA-256).
    pub hash: String,
    /// When the checkpoint was made (RFC 3339).
    pub at: String,
}

/// Why a checkpoint does not verify. Messages never quote more than an excerpt of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a compact JWS with checkpoint claims.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// No key in the ring has its `kid`: retired and pruned, or never a Kairos key.
    #[error(
        "unverifiable: key gone (no signing key of this broker has id {0:?}; it may have been retired and pruned)"
    )]
    KeyGone(String),
    /// The key it names is this broker's, and the signature does not verify with it.
    #[error("forged: the signature does not verify with key {kid:?}")]
    Forged {
        /// The key it names.
        kid: String,
    },
    /// Signed for another broker.
    #[error("checkpoint was signed by {found:?}, not by this broker ({expected:?})")]
    WrongIssuer {
        /// This ring's issuer.
        expected: String,
        /// The checkpoint's `iss`.
        found: String,
    },
}

impl From<jws::Malformed> for CheckpointError {
    fn from(malformed: jws::Malformed) -> Self {
        Self::Malformed(malformed.0)
    }
}

impl KeyRing {
    /// Signs a checkpoint with the current key: compact JWS, header
    /// `{"alg", "typ": "kairos-checkpoint+jwt", "kid"}`, verifiable with the JWKS.
    pub fn sign_checkpoint(&self, claims: &CheckpointClaims) -> Result<String, SignError> {
        if claims.iss != self.issuer {
            return Err(SignError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: claims.iss.clone(),
            });
        }
        let header = json!({
            "alg": self.current.alg().jws_name(),
            "typ": CHECKPOINT_TYPE,
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

    /// Verifies a checkpoint against the ring's keys (the ones its JWKS publishes) and
    /// returns what it signed together with the id of the key that signed it.
    pub fn verify_checkpoint(
        &self,
        checkpoint: &str,
    ) -> Result<(CheckpointClaims, String), CheckpointError> {
        let jws = jws::parse(checkpoint)?;
        let typ_ok = jws
            .header
            .typ
            .as_deref()
            .is_some_and(|typ| typ.eq_ignore_ascii_case(CHECKPOINT_TYPE));
        if !typ_ok {
            return Err(CheckpointError::Malformed(
                "not a Kairos audit checkpoint (`typ` must be \"kairos-checkpoint+jwt\")",
            ));
        }
        let kid = jws
            .header
            .kid
            .as_deref()
            .ok_or(CheckpointError::Malformed("header has no `kid`"))?;
        let key = self
            .verification_key(kid)
            .ok_or_else(|| CheckpointError::KeyGone(jws::excerpt(kid)))?;
        let alg = Alg::from_jws_name(&jws.header.alg);
        if alg != Some(key.alg.jws_alg())
            || !key
                .public
                .verify(key.alg.jws_alg(), jws.signing_input, &jws.signature)
        {
            return Err(CheckpointError::Forged {
                kid: key.kid.clone(),
            });
        }
        let claims: CheckpointClaims = serde_json::from_slice(&jws.payload)
            .map_err(|_| CheckpointError::Malformed("claims are not {iss, seq, hash, at}"))?;
        if claims.iss != self.issuer {
            return Err(CheckpointError::WrongIssuer {
                expected: self.issuer.clone(),
                found: jws::excerpt(&claims.iss),
            });
        }
        Ok((claims, key.kid.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SigningAlg, SigningKey};
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(
            "https://kairos.test",
            SigningKey::generate(SigningAlg::Es256).unwrap(),
        )
    }

    fn claims(seq: i64) -> CheckpointClaims {
        CheckpointClaims {
            iss: "https://kairos.test".into(),
            seq,
            hash: "ab".repeat(32),
            at: "2026-12-05T18:00:00Z".into(),
        }
    }

    #[test]
    fn a_checkpoint_verifies_with_the_key_that_signed_it() {
        let ring = ring();
        let signed = ring.sign_checkpoint(&claims(7)).unwrap();
        let (got, kid) = ring.verify_checkpoint(&signed).unwrap();
        assert_eq!(got, claims(7));
        assert_eq!(kid, ring.current_kid());
    }

    #[test]
    fn edited_claims_are_forged_and_unknown_keys_are_gone() {
        let ring = ring();
        let signed = ring.sign_checkpoint(&claims(7)).unwrap();
        let mut parts: Vec<&str> = signed.split('.').collect();
        let edited = jws::b64(&serde_json::to_vec(&claims(9)).unwrap());
        parts[1] = &edited;
        assert!(matches!(
            ring.verify_checkpoint(&parts.join(".")),
            Err(CheckpointError::Forged { .. })
        ));
        let other = self::ring();
        assert!(matches!(
            other.verify_checkpoint(&signed),
            Err(CheckpointError::KeyGone(_))
        ));
        assert!(matches!(
            ring.verify_checkpoint("not.a.jws"),
            Err(CheckpointError::Malformed(_))
        ));
    }

    #[test]
    fn an_access_token_is_not_a_checkpoint() {
        let ring = ring();
        let signed = ring.current.sign_jwt(&json!(claims(1))).unwrap();
        assert!(matches!(
            ring.verify_checkpoint(&signed),
            Err(CheckpointError::Malformed(_))
        ));
    }
}
