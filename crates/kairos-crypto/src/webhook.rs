//! Signatures of outgoing webhooks per the Standard Webhooks specification: an
//! HMAC-SHA256 over `{id}.{timestamp}.{body}` under the channel's secret (`whsec_` and the
//! base64 of 24 to 64 random bytes), sent as `webhook-signature: v1,<base64>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretSlice};

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a webhook secret was refused. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSecretError {
    /// It does not start with `whsec_`.
    #[error(
        "a webhook secret starts with \"whsec_\" followed by base64 (make one with `echo whsec_$(openssl rand -base64 32)`)"
    )]
    NoPrefix,
    /// What follows the prefix is not base64.
    #[error("the part of the webhook secret after \"whsec_\" is not valid base64")]
    NotBase64,
    /// The key is shorter than 24 or longer than 64 bytes.
    #[error("a webhook secret holds 24 to 64 bytes; this one holds {0}")]
    Length(usize),
}

/// A channel's signing key. `Debug` does not show it.
pub struct WebhookSecret {
    key: SecretSlice<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (surrounding whitespace, as a file ends, is ignored).
    pub fn parse(text: &str) -> Result<Self, WebhookSecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(WebhookSecretError::NoPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| WebhookSecretError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(WebhookSecretError::Length(key.len()));
        }
        Ok(Self { key: key.into() })
    }

    /// The `webhook-signature` header value for message `id` sent at `timestamp` (Unix
    /// seconds) with this exact `body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.expose_secret());
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_refused(text: &str, expected: WebhookSecretError) {
        assert_eq!(WebhookSecret::parse(text).err(), Some(expected));
    }

    #[test]
    fn refuses_what_is_not_a_secret() {
        check_refused(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            WebhookSecretError::NoPrefix,
        );
        check_refused("whsec_not base64!", WebhookSecretError::NotBase64);
        check_refused("whsec_c2hvcnQ=", WebhookSecretError::Length(5));
    }

    #[test]
    fn signs_id_timestamp_and_body() {
        // A value computed independently: python3 -c 'import hmac,hashlib,base64;
        // print(base64.b64encode(hmac.new(b"k"*32, b"msg_1.1700000000.{}",
        // hashlib.sha256).digest()).decode())'
        let secret =
            WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([b'k'; 32]))).unwrap();
        let sig = secret.sign("msg_1", 1_700_000_000, b"{}");
        let other = secret.sign("msg_2", 1_700_000_000, b"{}");
        assert!(sig.starts_with("v1,"));
        assert_ne!(sig, other);
        assert_eq!(sig, EXPECTED);
        assert!(!format!("{secret:?}").contains("kkk"));
    }

    const EXPECTED: &str = "v1,3sOcjp9LSFloZNG4djSBtbk6gHDplP0wungD5l+W7DU=";
}
