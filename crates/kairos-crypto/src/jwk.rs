//! Public keys in JWK form (RFC 7517/7518/8037): parsing, publishing, and signature checks.

use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use serde_json::{Map, Value};

use crate::jws::{self, Alg};

/// A public key of a type Kairos can verify signatures with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point `0x04 || x || y` on P-256.
    P256 { point: Vec<u8> },
    /// The 32-byte Ed25519 public key.
    Ed25519 { x: Vec<u8> },
}

impl PublicKey {
    /// Whether this key can check signatures made with `alg`.
    pub(crate) fn supports(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (Self::Rsa { .. }, Alg::Rs256)
                | (Self::P256 { .. }, Alg::Es256)
                | (Self::Ed25519 { .. }, Alg::EdDsa)
        )
    }

    /// Checks `signature` over `message`; false on any mismatch, including an `alg`
    /// this key does not support.
    pub(crate) fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match (self, alg) {
            (Self::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (Self::P256 { point }, Alg::Es256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Self::Ed25519 { x }, Alg::EdDsa) => UnparsedPublicKey::new(&ED25519, x)
                .verify(message, signature)
                .is_ok(),
            _ => false,
        }
    }

    /// The key-type members of this key's JWK (`kty`, `crv`, `x`, `y`, `n`, `e`).
    pub(crate) fn jwk_members(&self) -> Map<String, Value> {
        let members: Vec<(&str, String)> = match self {
            Self::Rsa { n, e } => vec![
                ("kty", "RSA".to_owned()),
                ("n", jws::b64(n)),
                ("e", jws::b64(e)),
            ],
            Self::P256 { point } => {
                let coordinates = point.get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                vec![
                    ("kty", "EC".to_owned()),
                    ("crv", "P-256".to_owned()),
                    ("x", jws::b64(x)),
                    ("y", jws::b64(y)),
                ]
            }
            Self::Ed25519 { x } => vec![
                ("kty", "OKP".to_owned()),
                ("crv", "Ed25519".to_owned()),
                ("x", jws::b64(x)),
            ],
        };
        members
            .into_iter()
            .map(|(name, value)| (name.to_owned(), Value::String(value)))
            .collect()
    }
}

/// One usable key from a JWKS.
#[derive(Debug, Clone)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    /// The JWK's `alg`, when it pins the key to one algorithm.
    pub(crate) alg: Option<Alg>,
    pub(crate) key: PublicKey,
}

impl Jwk {
    /// Whether this key may check a signature made with `alg`.
    pub(crate) fn accepts(&self, alg: Alg) -> bool {
        self.key.supports(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }

    /// Parses one JWK. The error says why the key cannot be used.
    pub(crate) fn parse(jwk: &Value) -> Result<Self, String> {
        let member = |name: &str| jwk.get(name).and_then(Value::as_str);
        let bytes = |name: &'static str| -> Result<Vec<u8>, String> {
            let text = member(name).ok_or_else(|| format!("no `{name}` member"))?;
            jws::unb64(text).ok_or_else(|| format!("`{name}` is not unpadded base64url"))
        };
        if let Some(usage) = member("use")
            && usage != "sig"
        {
            return Err(format!("`use` is {:?}, not \"sig\"", jws::excerpt(usage)));
        }
        let kid = member("kid").map(str::to_owned);
        let alg = match member("alg") {
            None => None,
            Some(name) => Some(
                Alg::from_jws_name(name)
                    .ok_or_else(|| format!("unsupported `alg` {:?}", jws::excerpt(name)))?,
            ),
        };
        let key = match member("kty") {
            Some("RSA") => {
                let n = strip_leading_zeros(bytes("n")?);
                let e = strip_leading_zeros(bytes("e")?);
                if n.len() < 256 {
                    return Err("RSA modulus is shorter than 2048 bits".to_owned());
                }
                PublicKey::Rsa { n, e }
            }
            Some("EC") => {
                if member("crv") != Some("P-256") {
                    return Err("EC key is not on curve P-256".to_owned());
                }
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("P-256 coordinates must be 32 bytes each".to_owned());
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::P256 { point }
            }
            Some("OKP") => {
                if member("crv") != Some("Ed25519") {
                    return Err("OKP key is not an Ed25519 key".to_owned());
                }
                let x = bytes("x")?;
                if x.len() != 32 {
                    return Err("Ed25519 public key must be 32 bytes".to_owned());
                }
                PublicKey::Ed25519 { x }
            }
            Some(other) => return Err(format!("unsupported `kty` {:?}", jws::excerpt(other))),
            None => return Err("no `kty` member".to_owned()),
        };
        if let Some(pinned) = alg
            && !key.supports(pinned)
        {
            return Err(format!(
                "`alg` {} does not fit the key type",
                pinned.jws_name()
            ));
        }
        Ok(Self { kid, alg, key })
    }
}

/// The usable keys of a JWKS document.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// Parses `{"keys": [...]}`, keeping the keys Kairos can use. Unusable keys (encryption
    /// keys, other curves) are skipped, since JWKS documents legitimately mix them; a
    /// document with no usable key at all is an error.
    pub(crate) fn parse(document: &Value) -> Result<Self, String> {
        let entries = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS is not a JSON object with a `keys` array")?;
        // Two keys under one `kid`: which one a token naming it means is ambiguous (and a
        // key could be slipped in beside the real one), so the document is refused.
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            if let Some(kid) = entry.get("kid").and_then(Value::as_str)
                && let Some(first) = seen.insert(kid, index)
            {
                return Err(format!(
                    "JWKS has two keys with kid {:?} (keys {first} and {index}); each key needs its own kid",
                    jws::excerpt(kid)
                ));
            }
        }
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match Jwk::parse(entry) {
                Ok(jwk) => keys.push(jwk),
                Err(reason) => {
                    tracing::debug!(%reason, "skipping unusable JWK");
                    // Say why for the first few keys; the messages quote only excerpts.
                    if skipped.len() < 3 {
                        let kid = entry.get("kid").and_then(Value::as_str);
                        skipped.push(match kid {
                            Some(kid) => format!("key {index} ({:?}): {reason}", jws::excerpt(kid)),
                            None => format!("key {index}: {reason}"),
                        });
                    }
                }
            }
        }
        if keys.is_empty() {
            let more = if entries.len() > skipped.len() {
                "; …"
            } else {
                ""
            };
            return Err(format!(
                "JWKS has no usable signing key ({} keys, none RSA >= 2048 bits, P-256 or Ed25519 for signatures){}{}{more}",
                entries.len(),
                if skipped.is_empty() { "" } else { ": " },
                skipped.join("; "),
            ));
        }
        Ok(Self { keys })
    }

    /// How many keys are usable.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key to check a signature made with `alg`: the one named by `kid`, or, when the
    /// token names none, the only key that accepts `alg`.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Alg) -> Option<&PublicKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|jwk| jwk.kid.as_deref() == Some(kid) && jwk.accepts(alg))
                .map(|jwk| &jwk.key),
            None => {
                let mut candidates = self.keys.iter().filter(|jwk| jwk.accepts(alg));
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(&only.key),
                    _ => None,
                }
            }
        }
    }
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}
