//! Compact JWS (RFC 7515) parsing and encoding, shared by issued and workload tokens.
//!
//! Parsing only splits and decodes: nothing in a parsed token is trusted until its
//! signature has been checked by the caller.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Tokens longer than this are rejected before any decoding.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The JWS algorithms Kairos knows how to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    /// Parses a JWS `alg` value; anything other than the supported algorithms is `None`.
    pub(crate) fn from_jws_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }

    /// The `alg` value as it appears in a JWS header or JWK.
    pub(crate) fn jws_name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// Why a token could not even be parsed. The reason never quotes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// The JOSE header fields Kairos looks at.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    /// The signer's public key, carried in the header (DPoP proofs, RFC 9449 §4.2).
    #[serde(default)]
    pub(crate) jwk: Option<serde_json::Value>,
    /// Critical extensions: none are understood, so any present makes the token invalid.
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A decoded, *unverified* compact JWS.
#[derive(Debug)]
pub(crate) struct Compact<'a> {
    pub(crate) header: Header,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes the signature covers.
    pub(crate) signing_input: &'a [u8],
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
}

/// Splits and decodes a compact JWS without trusting any of it.
pub(crate) fn parse(token: &str) -> Result<Compact<'_>, Malformed> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Malformed("token is longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed(
            "not a compact JWT: expected three dot-separated parts",
        ));
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| Malformed("header is not unpadded base64url"))?;
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|_| Malformed("header is not a JSON object with an `alg` string"))?;
    if header.crit.is_some() {
        return Err(Malformed(
            "header lists critical extensions (`crit`), which are not supported",
        ));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| Malformed("payload is not unpadded base64url"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| Malformed("signature is not unpadded base64url"))?;
    let signing_input = token
        .rsplit_once('.')
        .map_or(token, |(signed, _signature)| signed);
    Ok(Compact {
        header,
        signing_input: signing_input.as_bytes(),
        payload,
        signature,
    })
}

/// Base64url (unpadded) encoding, as used throughout JOSE.
pub(crate) fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Base64url (unpadded) decoding, as used throughout JOSE.
pub(crate) fn unb64(data: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(data).ok()
}

/// Shortens an untrusted string (an `alg`, an `iss`, a `kid` read from an unverified
/// token) so that it can appear in an error message. Messages print it with `{:?}`, which
/// escapes control characters.
pub(crate) fn excerpt(untrusted: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out: String = untrusted.chars().take(MAX_CHARS).collect();
    if untrusted.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}
