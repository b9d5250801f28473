//! Security Event Tokens (RFC 8417) that tell a resource server a Kairos token no longer
//! stands: the OpenID CAEP `session-revoked` event about the token (RFC 9493 subject
//! identifier of format `jwt_id`: the token's issuer and `jti`), signed with the ring's
//! current key so a receiver verifies it with the same JWKS as the tokens.

use serde_json::json;

use super::{KeyRing, SignError};
use crate::jws;

/// The JWS `typ` of a SET (RFC 8417 §2.3).
pub const SET_TYPE: &str = "secevent+jwt";

/// The OpenID CAEP event type a SET carries.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// What one SET says: the token `token_jti` (issued by this ring's issuer) stopped being
/// honoured at `event_timestamp`, for `reason`; addressed to `audience`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRevoked {
    /// The SET's own `jti` (unique per SET).
    pub jti: String,
    /// The receiver's audience (`aud`).
    pub audience: String,
    /// When the SET was made (`iat`, seconds).
    pub issued_at: i64,
    /// The `jti` of the access token that ended (the grant id).
    pub token_jti: String,
    /// When the token's grant ended (seconds).
    pub event_timestamp: i64,
    /// CAEP `initiating_entity`: `admin`, `user`, `policy` or `system`.
    pub initiating_entity: &'static str,
    /// Why, for the receiver's administrators (`reason_admin.en`); never a secret.
    pub reason: String,
}

impl KeyRing {
    /// Signs a `session-revoked` SET with the current key: compact JWS, header
    /// `{"alg", "typ": "secevent+jwt", "kid"}`, claims `iss`, `aud`, `iat`, `jti`,
    /// `sub_id` and `events`.
    pub fn sign_session_revoked(&self, event: &SessionRevoked) -> Result<String, SignError> {
        let header = json!({
            "alg": self.current.alg().jws_name(),
            "typ": SET_TYPE,
            "kid": self.current.kid(),
        });
        let claims = json!({
            "iss": self.issuer,
            "aud": event.audience,
            "iat": event.issued_at,
            "jti": event.jti,
            "sub_id": {
                "format": "jwt_id",
                "iss": self.issuer,
                "jti": event.token_jti,
            },
            "events": {
                SESSION_REVOKED: {
                    "event_timestamp": event.event_timestamp,
                    "initiating_entity": event.initiating_entity,
                    "reason_admin": { "en": event.reason },
                }
            }
        });
        let signing_input = format!(
            "{}.{}",
            jws::b64(&serde_json::to_vec(&header)?),
            jws::b64(&serde_json::to_vec(&claims)?)
        );
        let signature = self.current.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", jws::b64(&signature)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::issuer::{SigningAlg, SigningKey};

    #[test]
    fn a_set_verifies_with_the_rings_key_and_says_what_ended() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa] {
            let ring = KeyRing::new("https://kairos.example", SigningKey::generate(alg).unwrap());
            let set = ring
                .sign_session_revoked(&SessionRevoked {
                    jti: "set-1".into(),
                    audience: "https://orders.example".into(),
                    issued_at: 1_700_000_100,
                    token_jti: "grt_1".into(),
                    event_timestamp: 1_700_000_000,
                    initiating_entity: "user",
                    reason: "released".into(),
                })
                .unwrap();
            let parsed = jws::parse(&set).unwrap();
            assert_eq!(parsed.header.typ.as_deref(), Some(SET_TYPE));
            let kid = parsed.header.kid.as_deref().unwrap();
            let key = ring.verification_key(kid).unwrap();
            assert!(
                key.public
                    .verify(key.alg.jws_alg(), parsed.signing_input, &parsed.signature)
            );
            let claims: serde_json::Value = serde_json::from_slice(&parsed.payload).unwrap();
            assert_eq!(claims["iss"], "https://kairos.example");
            assert_eq!(claims["aud"], "https://orders.example");
            assert_eq!(claims["sub_id"]["format"], "jwt_id");
            assert_eq!(claims["sub_id"]["jti"], "grt_1");
            let event = &claims["events"][SESSION_REVOKED];
            assert_eq!(event["event_timestamp"], 1_700_000_000);
            assert_eq!(event["reason_admin"]["en"], "released");
        }
    }
}
