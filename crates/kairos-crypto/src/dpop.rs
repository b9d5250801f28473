//! DPoP (RFC 9449): proofs of possession of a key, and the tokens bound to it.
//!
//! A client signs a short JWT (`typ` `dpop+jwt`) with its own key and sends it in the
//! `DPoP` header, the public key in the JWT's header. [`verify_proof`] checks one proof
//! against the request it came with (method, URL, time, access token, server nonce) and
//! returns the key's RFC 7638 thumbprint (`jkt`), which a bound token carries as
//! `cnf.jkt` ([`Confirmation`]). Replay of a proof's `jti` is the caller's to refuse:
//! [`VerifiedProof::replay_key`] and [`VerifiedProof::replay_until`] say what to remember
//! and for how long.
//!
//! Pure code: no IO, the time comes in as an argument. Nonces ([`NonceKey`]) are
//! stateless: an HMAC of a time slot under a key derived from the master key, so every
//! replica issues and accepts the same ones.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use crate::jwk::Jwk;
use crate::jws::{self, Alg};
use crate::seal::MasterKey;

/// The JWS `typ` of a DPoP proof.
pub const PROOF_TYPE: &str = "dpop+jwt";

/// The confirmation (`cnf`, RFC 7800) a bound token carries: the key (RFC 9449 `jkt`)
/// its presenter must prove it holds, and/or the client certificate (RFC 8705
/// `x5t#S256`) it must be presented over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// Base64url SHA-256 JWK thumbprint (RFC 7638) of the proof key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// Base64url SHA-256 of the DER of the client certificate (RFC 8705 §3.1).
    #[serde(default, rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl Confirmation {
    /// A confirmation by a DPoP key's thumbprint.
    pub fn dpop(jkt: impl Into<String>) -> Self {
        Self {
            jkt: Some(jkt.into()),
            x5t_s256: None,
        }
    }

    /// The confirmation of a token bound to a DPoP key (`jkt`), a client certificate
    /// (`x5t`), both, or neither (None: a Bearer token).
    pub fn of(jkt: Option<String>, x5t_s256: Option<String>) -> Option<Self> {
        (jkt.is_some() || x5t_s256.is_some()).then_some(Self { jkt, x5t_s256 })
    }

    /// Whether `thumbprint` (base64url SHA-256 of the certificate a resource server saw)
    /// is the certificate this token is bound to; compared in constant time. False when
    /// the token is not certificate-bound.
    pub fn certificate_matches(&self, thumbprint: &str) -> bool {
        self.x5t_s256
            .as_deref()
            .is_some_and(|x5t| bool::from(x5t.as_bytes().ct_eq(thumbprint.as_bytes())))
    }
}

/// What a proof must match: the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct ProofCheck<'a> {
    /// The request's HTTP method (`htm`), e.g. `POST`.
    pub method: &'a str,
    /// The request's absolute URL without query and fragment (`htu`), as the server's
    /// public base URL spells it.
    pub url: &'a str,
    /// The access token presented with the proof, whose hash `ath` must carry; `None`
    /// at a token request (then `ath` is not looked at).
    pub access_token: Option<&'a str>,
    /// When the server requires nonces: the key that makes and checks them.
    pub nonce: Option<&'a NonceKey>,
    /// How far `iat` may be from `now`, either way, in seconds.
    pub max_age_secs: i64,
    /// The time of the check, unix seconds.
    pub now: i64,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof's key: what a bound token's `cnf.jkt` holds.
    pub jkt: String,
    /// The proof's `iat`.
    pub iat: i64,
    jti: String,
    max_age_secs: i64,
}

impl VerifiedProof {
    /// What to remember to refuse this proof a second time: hex SHA-256 of the key's
    /// thumbprint and the proof's `jti` (a `jti` is unique per key).
    pub fn replay_key(&self) -> String {
        crate::sha256_hex(format!("{}.{}", self.jkt, self.jti).as_bytes())
    }

    /// Until when (unix seconds) the proof's `jti` must be remembered: after that its
    /// `iat` is out of the window and the proof is refused for that alone.
    pub fn replay_until(&self) -> i64 {
        self.iat.saturating_add(self.max_age_secs).saturating_add(1)
    }
}

/// Why a proof was refused. Messages quote no token and no proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Not a compact JWS, or its claims are not a JSON object.
    #[error("the DPoP proof is malformed: {0}")]
    Malformed(&'static str),
    /// The header's `typ` is not `dpop+jwt`.
    #[error("the DPoP proof's `typ` must be \"dpop+jwt\"")]
    WrongType,
    /// `alg` is not an asymmetric algorithm Kairos verifies.
    #[error(
        "the DPoP proof's `alg` {0:?} is not accepted; sign with ES256, EdDSA (Ed25519) or RS256 (no `none`, no HMAC)"
    )]
    UnsupportedAlgorithm(String),
    /// The header's `jwk` is missing or not a usable public key for `alg`.
    #[error("the DPoP proof's header `jwk` is unusable: {0}")]
    BadKey(String),
    /// The header's `jwk` holds private key material.
    #[error(
        "the DPoP proof's header `jwk` holds private key material (\"{0}\"); send the public key only, and replace that key"
    )]
    PrivateKey(String),
    /// The signature does not verify with the header's key.
    #[error("the DPoP proof's signature does not verify with the key in its header")]
    BadSignature,
    /// A required claim is missing or has the wrong type.
    #[error("the DPoP proof has no {0} claim")]
    MissingClaim(&'static str),
    /// `htm` is not the request's method.
    #[error("the DPoP proof is for method {found:?}, but this request is {expected}")]
    WrongMethod {
        /// The request's method.
        expected: String,
        /// The proof's `htm`.
        found: String,
    },
    /// `htu` is not the request's URL.
    #[error("the DPoP proof is for URL {found:?}, but this request is to {expected}")]
    WrongUrl {
        /// The request's URL.
        expected: String,
        /// The proof's `htu`.
        found: String,
    },
    /// `iat` is outside the window around `now`.
    #[error(
        "the DPoP proof was made at unix time {iat}, {off} s from now ({now}); a proof is good for {max_age} s: make a fresh one"
    )]
    Stale {
        /// The proof's `iat`.
        iat: i64,
        /// The time of the check.
        now: i64,
        /// How far off it is.
        off: i64,
        /// The window.
        max_age: i64,
    },
    /// `ath` is missing or is not the hash of the presented access token.
    #[error(
        "the DPoP proof's `ath` is not the SHA-256 of the access token presented with it; make the proof for this token"
    )]
    WrongAccessToken,
    /// The server requires a nonce and the proof carries none, or a stale one.
    #[error(
        "this server requires a DPoP nonce: make the proof again with the `nonce` from the DPoP-Nonce header"
    )]
    UseNonce,
    /// The proof's `jti` was seen before (reported by the caller that remembers them).
    #[error(
        "this DPoP proof was already used (its `jti` was seen); make a fresh proof for every request"
    )]
    Replayed,
    /// The proof's key is not the key the token is bound to.
    #[error("the DPoP proof is signed by another key than the one the access token is bound to")]
    WrongKey,
}

/// The claims of a proof Kairos reads.
#[derive(Debug, Deserialize)]
struct ProofClaims {
    jti: Option<Value>,
    htm: Option<Value>,
    htu: Option<Value>,
    iat: Option<Value>,
    ath: Option<Value>,
    nonce: Option<Value>,
}

/// The private members of a JWK (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// Checks `proof` (the `DPoP` header's value) against the request described by `check`.
pub fn verify_proof(proof: &str, check: &ProofCheck<'_>) -> Result<VerifiedProof, ProofError> {
    let jws = jws::parse(proof).map_err(|m| ProofError::Malformed(m.0))?;
    if !jws
        .header
        .typ
        .as_deref()
        .is_some_and(|typ| typ.eq_ignore_ascii_case(PROOF_TYPE))
    {
        return Err(ProofError::WrongType);
    }
    // `Ed25519` is the fully specified name of EdDSA with Ed25519 (RFC 9864), which
    // WebCrypto-based clients send.
    let alg = match jws.header.alg.as_str() {
        "Ed25519" => Some(Alg::EdDsa),
        name => Alg::from_jws_name(name),
    }
    .ok_or_else(|| ProofError::UnsupportedAlgorithm(jws::excerpt(&jws.header.alg)))?;
    let jwk = jws
        .header
        .jwk
        .as_ref()
        .ok_or_else(|| ProofError::BadKey("the header has no `jwk`".to_owned()))?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.get(**m).is_some()) {
        return Err(ProofError::PrivateKey((*member).to_owned()));
    }
    let key = Jwk::parse(jwk).map_err(ProofError::BadKey)?;
    if !key.accepts(alg) {
        return Err(ProofError::BadKey(format!(
            "it is not a key for `alg` {}",
            alg.jws_name()
        )));
    }
    if !key.key.verify(alg, jws.signing_input, &jws.signature) {
        return Err(ProofError::BadSignature);
    }
    let claims: ProofClaims = serde_json::from_slice(&jws.payload)
        .map_err(|_| ProofError::Malformed("its claims are not a JSON object"))?;
    let text = |value: Option<Value>, name: &'static str| match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(ProofError::MissingClaim(name)),
    };
    let jti = text(claims.jti, "`jti` (a unique string)")?;
    if jti.len() > MAX_JTI_LEN {
        return Err(ProofError::Malformed("its `jti` is longer than 256 bytes"));
    }
    let htm = text(claims.htm, "`htm` (the HTTP method)")?;
    if htm != check.method {
        return Err(ProofError::WrongMethod {
            expected: check.method.to_owned(),
            found: jws::excerpt(&htm),
        });
    }
    let htu = text(claims.htu, "`htu` (the URL)")?;
    if !same_url(&htu, check.url) {
        return Err(ProofError::WrongUrl {
            expected: check.url.to_owned(),
            found: jws::excerpt(&htu),
        });
    }
    let iat = match claims.iat {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or(ProofError::MissingClaim("`iat` (unix seconds)"))?,
        _ => return Err(ProofError::MissingClaim("`iat` (unix seconds)")),
    };
    let off = iat.saturating_sub(check.now);
    if off.saturating_abs() > check.max_age_secs {
        return Err(ProofError::Stale {
            iat,
            now: check.now,
            off,
            max_age: check.max_age_secs,
        });
    }
    if let Some(nonces) = check.nonce {
        let nonce = match claims.nonce {
            Some(Value::String(n)) => n,
            _ => return Err(ProofError::UseNonce),
        };
        if !nonces.accepts(&nonce, check.now) {
            return Err(ProofError::UseNonce);
        }
    }
    if let Some(token) = check.access_token {
        let expected = access_token_hash(token);
        let good = match claims.ath {
            Some(Value::String(ath)) => bool::from(ath.as_bytes().ct_eq(expected.as_bytes())),
            _ => false,
        };
        if !good {
            return Err(ProofError::WrongAccessToken);
        }
    }
    let jkt = thumbprint(jwk).map_err(ProofError::BadKey)?;
    Ok(VerifiedProof {
        jkt,
        iat,
        jti,
        max_age_secs: check.max_age_secs,
    })
}

/// `ath`: base64url SHA-256 of an access token (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    jws::b64(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// Whether the proof's key is the one `cnf` binds to, compared in constant time.
pub fn key_matches(proof: &VerifiedProof, cnf: &Confirmation) -> bool {
    cnf.jkt
        .as_deref()
        .is_some_and(|jkt| bool::from(jkt.as_bytes().ct_eq(proof.jkt.as_bytes())))
}

/// RFC 7638: base64url SHA-256 of the JWK's required members, in lexicographic order,
/// with no whitespace.
pub fn thumbprint(jwk: &Value) -> Result<String, String> {
    let member = |name: &str| -> Result<&str, String> {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no `{name}` member"))
    };
    let required: &[&str] = match member("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        other => return Err(format!("unsupported `kty` {:?}", jws::excerpt(other))),
    };
    let mut canonical = serde_json::Map::new();
    for name in required {
        canonical.insert((*name).to_owned(), Value::String(member(name)?.to_owned()));
    }
    // serde_json's map is ordered by key (no `preserve_order` feature here), and
    // `to_vec` writes no whitespace: exactly RFC 7638's form.
    let bytes = serde_json::to_vec(&Value::Object(canonical)).map_err(|e| e.to_string())?;
    Ok(jws::b64(
        ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref(),
    ))
}

/// RFC 9449 §4.3 with RFC 3986 §6 normalization: scheme and host compared without case,
/// a default port the same as none, the path with percent-encoding normalized; query and
/// fragment of either ignored.
fn same_url(proof_htu: &str, expected: &str) -> bool {
    let (Ok(a), Ok(b)) = (url::Url::parse(proof_htu), url::Url::parse(expected)) else {
        return false;
    };
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path() == b.path()
        && a.username().is_empty()
        && a.password().is_none()
}

/// A client's DPoP key: makes proofs. Kairos itself never holds one; the benchmark does,
/// to drive the server as a DPoP client would.
pub struct ProofKey {
    pair: ring::signature::EcdsaKeyPair,
    jwk: Value,
}

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofKey")
            .field("jwk", &self.jwk)
            .finish_non_exhaustive()
    }
}

impl ProofKey {
    /// A fresh ES256 key.
    pub fn generate() -> Result<Self, crate::RandomUnavailable> {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| crate::RandomUnavailable)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| crate::RandomUnavailable)?;
        let point = pair.public_key().as_ref();
        let (x, y) = point
            .get(1..)
            .unwrap_or_default()
            .split_at(32.min(point.len().saturating_sub(1)));
        let jwk =
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": jws::b64(x), "y": jws::b64(y)});
        Ok(Self { pair, jwk })
    }

    /// The key's RFC 7638 thumbprint.
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.jwk).unwrap_or_default()
    }

    /// A proof for `method` at `url`, made at `iat`, with `jti`.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        iat: i64,
        jti: &str,
    ) -> Result<String, crate::RandomUnavailable> {
        let header = serde_json::json!({"typ": PROOF_TYPE, "alg": "ES256", "jwk": self.jwk});
        let claims = serde_json::json!({"jti": jti, "htm": method, "htu": url, "iat": iat});
        let input = format!(
            "{}.{}",
            jws::b64(header.to_string().as_bytes()),
            jws::b64(claims.to_string().as_bytes())
        );
        let signature = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|_| crate::RandomUnavailable)?;
        Ok(format!("{input}.{}", jws::b64(signature.as_ref())))
    }
}

/// The length of one nonce slot: a nonce is good in its slot and the next.
const NONCE_SLOT_SECS: i64 = 300;

/// Server nonces (RFC 9449 §8): an HMAC of the current 5-minute slot under a key derived
/// from the master key. Stateless, so any replica accepts a nonce another made; a nonce
/// is good for 5 to 10 minutes.
pub struct NonceKey(ring::hmac::Key);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey([REDACTED])")
    }
}

impl NonceKey {
    /// The nonce key every replica with this master key derives.
    pub fn derive(master: &MasterKey) -> Self {
        Self(master.derive(b"kairos dpop nonce v1"))
    }

    /// The nonce to hand out at `now` (unix seconds).
    pub fn current(&self, now: i64) -> String {
        self.of_slot(now.div_euclid(NONCE_SLOT_SECS))
    }

    /// Whether `nonce` was handed out in this slot or the one before.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let slot = now.div_euclid(NONCE_SLOT_SECS);
        [slot, slot - 1]
            .iter()
            .any(|s| bool::from(self.of_slot(*s).as_bytes().ct_eq(nonce.as_bytes())))
    }

    fn of_slot(&self, slot: i64) -> String {
        let tag = ring::hmac::sign(&self.0, &slot.to_be_bytes());
        jws::b64(tag.as_ref().get(..18).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;
    const URL: &str = "https://kairos.example.test/v1/requests";

    enum Signer {
        Es(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    impl Signer {
        fn es256() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            Self::Es(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap(),
            )
        }

        fn ed25519() -> Self {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Self::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
        }

        fn alg(&self) -> &'static str {
            match self {
                Self::Es(_) => "ES256",
                Self::Ed(_) => "EdDSA",
            }
        }

        fn jwk(&self) -> Value {
            match self {
                Self::Es(pair) => {
                    let point = pair.public_key().as_ref();
                    json!({"kty": "EC", "crv": "P-256",
                        "x": jws::b64(&point[1..33]), "y": jws::b64(&point[33..])})
                }
                Self::Ed(pair) => {
                    json!({"kty": "OKP", "crv": "Ed25519", "x": jws::b64(pair.public_key().as_ref())})
                }
            }
        }

        fn sign_with(&self, header: &Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                jws::b64(&serde_json::to_vec(header).unwrap()),
                jws::b64(&serde_json::to_vec(claims).unwrap())
            );
            let signature = match self {
                Self::Es(pair) => pair
                    .sign(&SystemRandom::new(), input.as_bytes())
                    .unwrap()
                    .as_ref()
                    .to_vec(),
                Self::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            };
            format!("{input}.{}", jws::b64(&signature))
        }

        /// A proof with these claims changed (a `null` removes one).
        fn proof(&self, changes: Value) -> String {
            let header = json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()});
            self.sign_with(&header, &claims(changes))
        }
    }

    fn claims(changes: Value) -> Value {
        let mut claims = json!({"jti": "proof-1", "htm": "POST", "htu": URL, "iat": NOW});
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    fn check() -> ProofCheck<'static> {
        ProofCheck {
            method: "POST",
            url: URL,
            access_token: None,
            nonce: None,
            max_age_secs: 60,
            now: NOW,
        }
    }

    #[track_caller]
    fn refused(proof: &str, check: &ProofCheck<'_>, expected: impl Fn(&ProofError) -> bool) {
        match verify_proof(proof, check) {
            Ok(_) => panic!("proof accepted"),
            Err(e) => assert!(expected(&e), "unexpected refusal: {e}"),
        }
    }

    #[test]
    fn a_good_proof_gives_the_keys_thumbprint() {
        for signer in [Signer::es256(), Signer::ed25519()] {
            let verified = verify_proof(&signer.proof(json!({})), &check()).unwrap();
            assert_eq!(verified.jkt, thumbprint(&signer.jwk()).unwrap());
            assert_eq!(verified.iat, NOW);
            assert_eq!(verified.replay_until(), NOW + 61);
        }
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn each_broken_check_is_refused_with_its_reason() {
        let s = Signer::es256();
        let c = check();
        refused(&s.proof(json!({"htm": "GET"})), &c, |e| {
            matches!(e, ProofError::WrongMethod { .. })
        });
        refused(
            &s.proof(json!({"htu": "https://kairos.example.test/v1/oauth/token"})),
            &c,
            |e| matches!(e, ProofError::WrongUrl { .. }),
        );
        refused(
            &s.proof(json!({"htu": "https://other.example.test/v1/requests"})),
            &c,
            |e| matches!(e, ProofError::WrongUrl { .. }),
        );
        refused(
            &s.proof(json!({"htu": "http://kairos.example.test/v1/requests"})),
            &c,
            |e| matches!(e, ProofError::WrongUrl { .. }),
        );
        refused(&s.proof(json!({"iat": NOW - 61})), &c, |e| {
            matches!(e, ProofError::Stale { .. })
        });
        refused(&s.proof(json!({"iat": NOW + 61})), &c, |e| {
            matches!(e, ProofError::Stale { .. })
        });
        refused(&s.proof(json!({"iat": "yesterday"})), &c, |e| {
            matches!(e, ProofError::MissingClaim(_))
        });
        for claim in ["jti", "htm", "htu", "iat"] {
            refused(&s.proof(json!({ claim: null })), &c, |e| {
                matches!(e, ProofError::MissingClaim(_))
            });
        }
    }

    #[test]
    fn the_url_compares_as_rfc_3986_normalizes_it_without_query() {
        let s = Signer::ed25519();
        for htu in [
            "https://KAIROS.example.test/v1/requests",
            "HTTPS://kairos.example.test:443/v1/requests",
            "https://kairos.example.test/v1/requests?x=1",
            "https://kairos.example.test/v1/requests#frag",
        ] {
            assert!(
                verify_proof(&s.proof(json!({ "htu": htu })), &check()).is_ok(),
                "{htu}"
            );
        }
        refused(
            &s.proof(json!({"htu": "https://kairos.example.test:8443/v1/requests"})),
            &check(),
            |e| matches!(e, ProofError::WrongUrl { .. }),
        );
    }

    #[test]
    fn the_header_must_be_a_dpop_header_with_a_public_key() {
        let s = Signer::es256();
        let body = claims(json!({}));
        let wrong_typ = json!({"typ": "JWT", "alg": "ES256", "jwk": s.jwk()});
        refused(&s.sign_with(&wrong_typ, &body), &check(), |e| {
            *e == ProofError::WrongType
        });
        let hmac = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": s.jwk()});
        refused(&s.sign_with(&hmac, &body), &check(), |e| {
            matches!(e, ProofError::UnsupportedAlgorithm(_))
        });
        let none = json!({"typ": "dpop+jwt", "alg": "none", "jwk": s.jwk()});
        refused(&s.sign_with(&none, &body), &check(), |e| {
            matches!(e, ProofError::UnsupportedAlgorithm(_))
        });
        let no_key = json!({"typ": "dpop+jwt", "alg": "ES256"});
        refused(&s.sign_with(&no_key, &body), &check(), |e| {
            matches!(e, ProofError::BadKey(_))
        });
        let mut private = s.jwk();
        private["d"] = json!("c2VjcmV0");
        let private = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private});
        refused(&s.sign_with(&private, &body), &check(), |e| {
            matches!(e, ProofError::PrivateKey(_))
        });
        // The key of another signer: the signature does not verify.
        let other = Signer::es256();
        let swapped = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": other.jwk()});
        refused(&s.sign_with(&swapped, &body), &check(), |e| {
            *e == ProofError::BadSignature
        });
        // An Ed25519 key under `alg` ES256.
        let ed = Signer::ed25519();
        let mismatch = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": ed.jwk()});
        refused(&s.sign_with(&mismatch, &body), &check(), |e| {
            matches!(e, ProofError::BadKey(_))
        });
        refused("not.a.proof", &check(), |e| {
            matches!(e, ProofError::Malformed(_))
        });
    }

    #[test]
    fn ath_must_hash_the_presented_token() {
        let s = Signer::es256();
        let token = "eyJ.token.sig";
        let with_token = ProofCheck {
            access_token: Some(token),
            ..check()
        };
        let good = s.proof(json!({"ath": access_token_hash(token)}));
        let verified = verify_proof(&good, &with_token).unwrap();
        assert!(key_matches(
            &verified,
            &Confirmation::dpop(thumbprint(&s.jwk()).unwrap())
        ));
        assert!(!key_matches(
            &verified,
            &Confirmation::dpop(thumbprint(&Signer::es256().jwk()).unwrap())
        ));
        refused(&s.proof(json!({})), &with_token, |e| {
            *e == ProofError::WrongAccessToken
        });
        refused(
            &s.proof(json!({"ath": access_token_hash("another token")})),
            &with_token,
            |e| *e == ProofError::WrongAccessToken,
        );
    }

    #[test]
    fn nonces_are_required_when_configured_and_last_one_to_two_slots() {
        let master = MasterKey::generate().unwrap();
        let key = NonceKey::derive(&master);
        let s = Signer::ed25519();
        let with_nonce = ProofCheck {
            nonce: Some(&key),
            ..check()
        };
        refused(&s.proof(json!({})), &with_nonce, |e| {
            *e == ProofError::UseNonce
        });
        refused(&s.proof(json!({"nonce": "made-up"})), &with_nonce, |e| {
            *e == ProofError::UseNonce
        });
        let nonce = key.current(NOW);
        assert!(verify_proof(&s.proof(json!({ "nonce": nonce })), &with_nonce).is_ok());
        // Another replica with the same master key accepts it.
        assert!(NonceKey::derive(&master).accepts(&nonce, NOW));
        assert!(key.accepts(&nonce, NOW + NONCE_SLOT_SECS));
        assert!(!key.accepts(&nonce, NOW + 2 * NONCE_SLOT_SECS));
        // Another master key does not.
        assert!(!NonceKey::derive(&MasterKey::generate().unwrap()).accepts(&nonce, NOW));
    }

    #[test]
    fn a_proof_key_makes_proofs_that_verify() {
        let key = ProofKey::generate().unwrap();
        let proof = key.proof("POST", URL, NOW, "bench-1").unwrap();
        let verified = verify_proof(&proof, &check()).unwrap();
        assert_eq!(verified.jkt, key.thumbprint());
    }

    #[test]
    fn replay_keys_differ_by_key_and_jti() {
        let s = Signer::es256();
        let a = verify_proof(&s.proof(json!({})), &check()).unwrap();
        let b = verify_proof(&s.proof(json!({"jti": "proof-2"})), &check()).unwrap();
        let c = verify_proof(&Signer::es256().proof(json!({})), &check()).unwrap();
        assert_eq!(
            a.replay_key(),
            verify_proof(&s.proof(json!({})), &check())
                .unwrap()
                .replay_key()
        );
        assert_ne!(a.replay_key(), b.replay_key());
        assert_ne!(a.replay_key(), c.replay_key());
    }
}
