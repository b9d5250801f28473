//! Authentication of workloads by platform-issued JWTs: Kubernetes service-account
//! tokens, CI OIDC tokens, SPIFFE JWT-SVIDs.
//!
//! Each trusted platform is an [`IssuerTrust`]: its exact `iss`, the audience its tokens
//! must carry for Kairos, and where its public keys come from. Only RS256, ES256 and EdDSA
//! signatures are accepted.
//!
//! Keys fetched from a URL are cached per issuer for a refresh interval (default 300 s).
//! A token whose `kid` is not in the cache triggers a refetch, at most one attempt per
//! issuer every 30 s, so forged `kid`s cannot turn Kairos into a load generator against
//! the platform. When a refetch fails, the cached keys stay in use.
//!
//! A token whose signature verified is remembered (by its SHA-256, with the key that
//! verified it), so presenting it again costs no second signature check while that key
//! is still the issuer's key for its `kid`; its claims are checked on every call.
//!
//! All times are unix seconds supplied by the caller: the `now` given to
//! [`WorkloadVerifier::verify`] also drives the cache.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::checked::Checked;
use crate::jwk::{KeySet, PublicKey};
use crate::jws::{self, Alg};

/// Largest JWKS document accepted from a URL.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A platform whose tokens Kairos accepts.
#[derive(Debug, Clone)]
pub struct IssuerTrust {
    /// Kairos' name for this issuer (reported in [`WorkloadClaims::issuer_name`]).
    pub name: String,
    /// The exact `iss` value of its tokens.
    pub issuer: String,
    /// The audience its tokens must include to be accepted by Kairos.
    pub audience: String,
    /// Where its public keys come from.
    pub jwks: JwksSource,
    /// The longest lifetime accepted in one of its tokens: `exp` − `iat`, or `exp` − now
    /// when it has no `iat`. A token valid for longer is refused, however it was signed.
    pub max_token_age: Duration,
    /// For an issuer of SPIFFE JWT-SVIDs: its trust domain. Its tokens are accepted
    /// without `iss` (or with an `iss` no issuer has), found by the trust domain of their
    /// `sub`, which must be a SPIFFE ID in this trust domain. `issuer` may then be empty.
    pub spiffe_trust_domain: Option<String>,
}

/// Where an issuer's JWKS comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A JWKS document, e.g. read from a file by the caller.
    Inline(Value),
    /// An `https` URL serving the JWKS (plain `http` only to loopback addresses, for
    /// sidecars and tests). Redirects are not followed.
    Url(String),
}

/// The verified identity of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadClaims {
    /// The [`IssuerTrust::name`] of the issuer that vouched for the workload.
    pub issuer_name: String,
    /// The token's subject.
    pub sub: String,
    /// All claims of the token, for policy to inspect (namespace, repository, ...).
    pub claims: Value,
}

/// The trust configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TrustConfigError {
    /// A required field is empty.
    #[error("trusted issuer {name:?}: `{field}` must not be empty")]
    EmptyField {
        /// The issuer's name.
        name: String,
        /// The empty field.
        field: &'static str,
    },
    /// Two trusted issuers have the same `issuer` value.
    #[error("issuer {0:?} is configured twice; each `iss` value may be trusted only once")]
    DuplicateIssuer(String),
    /// An inline JWKS has no usable key.
    #[error("trusted issuer {name:?}: inline JWKS is unusable: {reason}")]
    InlineJwks {
        /// The issuer's name.
        name: String,
        /// What is wrong with the document.
        reason: String,
    },
    /// A JWKS URL is not an https URL (or http to loopback).
    #[error("trusted issuer {name:?}: JWKS URL {url:?} is not usable: {reason}")]
    JwksUrl {
        /// The issuer's name.
        name: String,
        /// The configured URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client for JWKS fetching: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// Why a workload token was rejected. Messages tell the caller what to fix and never
/// contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// Not a well-formed compact JWT.
    #[error("malformed workload token: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, an HMAC algorithm, or anything else but RS256, ES256 and EdDSA.
    #[error(
        "workload token algorithm {0:?} is not accepted; platform tokens must be signed with RS256, ES256 or EdDSA"
    )]
    UnsupportedAlgorithm(String),
    /// A JWT-SVID's `sub` is not a SPIFFE ID of its issuer's trust domain.
    #[error(
        "JWT-SVID subject is not a SPIFFE ID of trust domain {trust_domain:?} (issuer {issuer_name:?}): {reason}"
    )]
    WrongTrustDomain {
        /// The trusted issuer's name.
        issuer_name: String,
        /// Its trust domain.
        trust_domain: String,
        /// What is wrong with `sub`.
        reason: String,
    },
    /// No trusted issuer has the token's `iss`.
    #[error(
        "workload token issuer {0:?} is not trusted; the `iss` claim must exactly match a configured issuer"
    )]
    UnknownIssuer(String),
    /// The issuer publishes no key matching the token's `kid` and algorithm.
    #[error("{}", unknown_key_message(.issuer_name, .kid.as_deref()))]
    UnknownKey {
        /// The trusted issuer's name.
        issuer_name: String,
        /// The token's `kid`, if it had one.
        kid: Option<String>,
    },
    /// The signature does not verify.
    #[error(
        "workload token signature does not verify with the keys of issuer {issuer_name:?}; the token was not issued by that platform or was altered"
    )]
    BadSignature {
        /// The trusted issuer's name.
        issuer_name: String,
    },
    /// `exp` has passed, even allowing for clock skew.
    #[error(
        "workload token expired at unix time {exp} (now {now}, {skew_secs} s clock skew allowed); mint a fresh platform token"
    )]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The time it was checked at.
        now: i64,
        /// The clock skew allowed.
        skew_secs: i64,
    },
    /// The token is valid for longer than its issuer's `max_token_age`.
    #[error(
        "workload token is valid for {lifetime_secs} s ({from}), longer than the {max_secs} s issuer {issuer_name:?} allows (its max_token_age); mint a shorter-lived platform token"
    )]
    LifetimeTooLong {
        /// The token's lifetime in seconds.
        lifetime_secs: i64,
        /// What it was measured from.
        from: &'static str,
        /// The issuer's cap in seconds.
        max_secs: i64,
        /// The trusted issuer's name.
        issuer_name: String,
    },
    /// `nbf` is in the future, even allowing for clock skew.
    #[error(
        "workload token is not valid before unix time {nbf} (now {now}, {skew_secs} s clock skew allowed); check the clocks"
    )]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The time it was checked at.
        now: i64,
        /// The clock skew allowed.
        skew_secs: i64,
    },
    /// `aud` does not include the audience configured for the issuer.
    #[error(
        "workload token audience does not include {expected:?}; request the platform token with that audience"
    )]
    WrongAudience {
        /// The audience Kairos requires.
        expected: String,
    },
    /// A required claim is absent.
    #[error("workload token lacks the required `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type.
    #[error("workload token claim `{0}` has the wrong type")]
    InvalidClaim(&'static str),
    /// The issuer's keys could not be fetched and none are cached.
    #[error("signing keys of issuer {issuer_name:?} are unavailable: {reason}")]
    JwksUnavailable {
        /// The trusted issuer's name.
        issuer_name: String,
        /// Why the last fetch failed.
        reason: String,
    },
}

fn unknown_key_message(issuer_name: &str, kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!(
            "issuer {issuer_name:?} publishes no signing key with id {kid:?} for the token's algorithm"
        ),
        None => format!(
            "workload token has no `kid` and issuer {issuer_name:?} does not publish exactly one key for its algorithm"
        ),
    }
}

impl From<jws::Malformed> for AuthnError {
    fn from(malformed: jws::Malformed) -> Self {
        Self::Malformed(malformed.0)
    }
}

/// Checks a JWKS document as [`WorkloadVerifier::new`] checks an inline one: the number
/// of keys usable for verifying workload tokens (unusable keys are skipped, as a real JWKS
/// may mix in encryption keys or other curves), or why none is. The configuration loader
/// calls it so that a catalog it accepts is one the verifier accepts too.
pub fn check_jwks(document: &Value) -> Result<usize, String> {
    KeySet::parse(document).map(|keys| keys.len())
}

/// Whether the verifier can fetch keys from this JWKS URL (a parseable https:// URL, or
/// plain http:// to a loopback address), or why not. The configuration loader calls it so
/// that a catalog it accepts is one the verifier accepts too.
pub fn check_jwks_url(url: &str) -> Result<(), &'static str> {
    parse_jwks_url(url).map(|_| ())
}

/// Verifies workload tokens against a fixed set of trusted issuers.
#[derive(Debug)]
pub struct WorkloadVerifier {
    issuers: Vec<TrustedIssuer>,
    http: reqwest::Client,
    clock_skew_secs: i64,
    refresh_interval_secs: i64,
    min_refetch_interval_secs: i64,
    /// Platform tokens whose signature verified, with the key that verified it: a
    /// workload presents the same platform token for every exchange while it lives.
    verified: Checked<PublicKey>,
}

/// Platform tokens remembered (see [`Checked`]).
const VERIFIED_CAPACITY: usize = 20_000;

#[derive(Debug)]
struct TrustedIssuer {
    name: String,
    issuer: String,
    audience: String,
    keys: Keys,
    max_token_age: Duration,
    spiffe_trust_domain: Option<String>,
}

#[derive(Debug)]
enum Keys {
    Inline(KeySet),
    Remote { url: Url, cache: Mutex<RemoteKeys> },
}

/// What is known about a remote JWKS. Times are the caller's unix seconds.
#[derive(Debug, Default)]
struct RemoteKeys {
    keys: Option<KeySet>,
    fetched_at: i64,
    last_attempt: Option<i64>,
    last_error: Option<String>,
}

impl WorkloadVerifier {
    /// A verifier trusting `trusts`, with 60 s clock skew, a 300 s JWKS refresh interval
    /// and at most one JWKS fetch attempt per issuer every 30 s. Inline JWKS documents and
    /// URLs are checked here; URLs are first fetched on first use.
    pub fn new(trusts: Vec<IssuerTrust>) -> Result<Self, TrustConfigError> {
        let mut issuers: Vec<TrustedIssuer> = Vec::with_capacity(trusts.len());
        for trust in trusts {
            for (field, value) in [
                ("name", &trust.name),
                ("issuer", &trust.issuer),
                ("audience", &trust.audience),
            ] {
                let spiffe_without_iss = field == "issuer" && trust.spiffe_trust_domain.is_some();
                if value.is_empty() && !spiffe_without_iss {
                    return Err(TrustConfigError::EmptyField {
                        name: trust.name.clone(),
                        field,
                    });
                }
            }
            if !trust.issuer.is_empty() && issuers.iter().any(|known| known.issuer == trust.issuer)
            {
                return Err(TrustConfigError::DuplicateIssuer(trust.issuer));
            }
            let keys = match trust.jwks {
                JwksSource::Inline(document) => {
                    Keys::Inline(KeySet::parse(&document).map_err(|reason| {
                        TrustConfigError::InlineJwks {
                            name: trust.name.clone(),
                            reason,
                        }
                    })?)
                }
                JwksSource::Url(url) => Keys::Remote {
                    url: parse_jwks_url(&url).map_err(|reason| TrustConfigError::JwksUrl {
                        name: trust.name.clone(),
                        url,
                        reason,
                    })?,
                    cache: Mutex::default(),
                },
            };
            issuers.push(TrustedIssuer {
                name: trust.name,
                issuer: trust.issuer,
                audience: trust.audience,
                keys,
                max_token_age: trust.max_token_age,
                spiffe_trust_domain: trust.spiffe_trust_domain,
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            issuers,
            http,
            clock_skew_secs: 60,
            refresh_interval_secs: 300,
            min_refetch_interval_secs: 30,
            verified: Checked::new(VERIFIED_CAPACITY),
        })
    }

    /// Sets the clock skew allowed when checking `exp` and `nbf` (default 60 s).
    #[must_use]
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew_secs = secs(skew);
        self
    }

    /// Sets how long fetched JWKS documents are used before refetching (default 300 s).
    #[must_use]
    pub fn with_jwks_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval_secs = secs(interval);
        self
    }

    /// Sets the minimum time between two fetch attempts for one issuer (default 30 s).
    #[must_use]
    pub fn with_jwks_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval_secs = secs(interval);
        self
    }

    /// Verifies a platform token at `now_unix_secs`: algorithm, issuer, key, signature,
    /// then `exp` (required), `nbf`, `aud` and `sub`.
    pub async fn verify(
        &self,
        token: &str,
        now_unix_secs: i64,
    ) -> Result<WorkloadClaims, AuthnError> {
        let jws = jws::parse(token)?;
        let alg = Alg::from_jws_name(&jws.header.alg)
            .ok_or_else(|| AuthnError::UnsupportedAlgorithm(jws::excerpt(&jws.header.alg)))?;
        let claims: Value = serde_json::from_slice(&jws.payload)
            .map_err(|_| AuthnError::Malformed("payload is not JSON"))?;
        if !claims.is_object() {
            return Err(AuthnError::Malformed("payload is not a JSON object"));
        }
        let trusted = self.issuer_of(&claims)?;

        let kid = jws.header.kid.as_deref();
        let key = self.key_for(trusted, kid, alg, now_unix_secs).await?;
        // Remembered only with the key that verified it: if the issuer's key for this
        // `kid` has changed since, the signature is checked again.
        let digest = Checked::<PublicKey>::digest(token);
        let known = self.verified.get(&digest).is_some_and(|k| k == key);
        if !known && !key.verify(alg, jws.signing_input, &jws.signature) {
            return Err(AuthnError::BadSignature {
                issuer_name: trusted.name.clone(),
            });
        }

        let skew_secs = self.clock_skew_secs;
        let exp = numeric_date(&claims, "exp")?.ok_or(AuthnError::MissingClaim("exp"))?;
        if now_unix_secs >= exp.saturating_add(skew_secs) {
            return Err(AuthnError::Expired {
                exp,
                now: now_unix_secs,
                skew_secs,
            });
        }
        let (lifetime_secs, from) = match numeric_date(&claims, "iat")? {
            Some(iat) => (exp.saturating_sub(iat), "exp - iat"),
            None => (
                exp.saturating_sub(now_unix_secs),
                "exp - now, as it has no iat",
            ),
        };
        let max_secs = secs(trusted.max_token_age);
        if lifetime_secs > max_secs {
            return Err(AuthnError::LifetimeTooLong {
                lifetime_secs,
                from,
                max_secs,
                issuer_name: trusted.name.clone(),
            });
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")?
            && now_unix_secs.saturating_add(skew_secs) < nbf
        {
            return Err(AuthnError::NotYetValid {
                nbf,
                now: now_unix_secs,
                skew_secs,
            });
        }
        let audience_ok = match claims.get("aud") {
            None => return Err(AuthnError::MissingClaim("aud")),
            Some(Value::String(aud)) => *aud == trusted.audience,
            Some(Value::Array(auds)) => auds.iter().any(|aud| aud == trusted.audience.as_str()),
            Some(_) => return Err(AuthnError::InvalidClaim("aud")),
        };
        if !audience_ok {
            return Err(AuthnError::WrongAudience {
                expected: trusted.audience.clone(),
            });
        }
        let sub = string_claim(&claims, "sub")?.to_owned();
        if let Some(td) = &trusted.spiffe_trust_domain {
            let wrong = |reason: String| AuthnError::WrongTrustDomain {
                issuer_name: trusted.name.clone(),
                trust_domain: td.clone(),
                reason,
            };
            let id = crate::spiffe::SpiffeId::parse(&sub).map_err(|e| wrong(e.to_string()))?;
            if id.trust_domain() != td {
                return Err(wrong(format!(
                    "it is in trust domain {:?}",
                    jws::excerpt(id.trust_domain())
                )));
            }
        }
        if !known {
            self.verified
                .insert(digest, key, exp.saturating_add(skew_secs), now_unix_secs);
        }
        Ok(WorkloadClaims {
            issuer_name: trusted.name.clone(),
            sub,
            claims,
        })
    }

    /// The issuer that vouches for a token (signature not checked yet): the one whose
    /// `iss` it carries; else, for a JWT-SVID (no `iss`, or one no issuer has), the issuer
    /// declared for the trust domain of its SPIFFE ID `sub`.
    fn issuer_of(&self, claims: &Value) -> Result<&TrustedIssuer, AuthnError> {
        let iss = match claims.get("iss") {
            None | Some(Value::Null) => None,
            Some(Value::String(iss)) => Some(iss.as_str()),
            Some(_) => return Err(AuthnError::InvalidClaim("iss")),
        };
        if let Some(iss) = iss
            && let Some(trusted) = self
                .issuers
                .iter()
                .find(|t| !t.issuer.is_empty() && t.issuer == iss)
        {
            return Ok(trusted);
        }
        let by_trust_domain = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|sub| crate::spiffe::SpiffeId::parse(sub).ok())
            .and_then(|id| {
                self.issuers
                    .iter()
                    .find(|t| t.spiffe_trust_domain.as_deref() == Some(id.trust_domain()))
            });
        match (by_trust_domain, iss) {
            (Some(trusted), _) => Ok(trusted),
            (None, Some(iss)) => Err(AuthnError::UnknownIssuer(jws::excerpt(iss))),
            (None, None) => Err(AuthnError::MissingClaim("iss")),
        }
    }

    /// The key of `trusted` for a token with `kid` and `alg`, refetching a remote JWKS
    /// when it is stale or lacks the key (within the rate limit).
    async fn key_for(
        &self,
        trusted: &TrustedIssuer,
        kid: Option<&str>,
        alg: Alg,
        now: i64,
    ) -> Result<PublicKey, AuthnError> {
        let unknown_key = || AuthnError::UnknownKey {
            issuer_name: trusted.name.clone(),
            kid: kid.map(jws::excerpt),
        };
        let (url, cache) = match &trusted.keys {
            Keys::Inline(keys) => return keys.select(kid, alg).cloned().ok_or_else(unknown_key),
            Keys::Remote { url, cache } => (url, cache),
        };
        // Held across the fetch, so concurrent verifications wait for one fetch instead
        // of each starting their own.
        let mut cache = cache.lock().await;
        let stale = cache.keys.is_none()
            || now.saturating_sub(cache.fetched_at) >= self.refresh_interval_secs;
        if stale && cache.may_attempt(now, self.min_refetch_interval_secs) {
            self.refresh(trusted, url, &mut cache, now).await;
        }
        let Some(keys) = &cache.keys else {
            return Err(AuthnError::JwksUnavailable {
                issuer_name: trusted.name.clone(),
                reason: cache
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not fetched yet".to_owned()),
            });
        };
        if let Some(key) = keys.select(kid, alg) {
            return Ok(key.clone());
        }
        if cache.may_attempt(now, self.min_refetch_interval_secs) {
            self.refresh(trusted, url, &mut cache, now).await;
            if let Some(key) = cache.keys.as_ref().and_then(|keys| keys.select(kid, alg)) {
                return Ok(key.clone());
            }
        }
        Err(unknown_key())
    }

    /// Fetches the JWKS into `cache`; on failure the previous keys stay.
    async fn refresh(&self, trusted: &TrustedIssuer, url: &Url, cache: &mut RemoteKeys, now: i64) {
        cache.last_attempt = Some(now);
        match self.fetch(url).await {
            Ok(keys) => {
                tracing::debug!(issuer = %trusted.name, %url, "fetched JWKS");
                cache.keys = Some(keys);
                cache.fetched_at = now;
                cache.last_error = None;
            }
            Err(reason) => {
                tracing::warn!(
                    issuer = %trusted.name,
                    %url,
                    %reason,
                    cached = cache.keys.is_some(),
                    "JWKS fetch failed"
                );
                cache.last_error = Some(reason);
            }
        }
    }

    async fn fetch(&self, url: &Url) -> Result<KeySet, String> {
        let mut response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| format!("request to {url} failed: {err}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| format!("reading {url} failed: {err}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("{url} sent more than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let document: Value = serde_json::from_slice(&body)
            .map_err(|err| format!("{url} did not return JSON: {err}"))?;
        KeySet::parse(&document)
    }
}

impl RemoteKeys {
    fn may_attempt(&self, now: i64, min_interval: i64) -> bool {
        self.last_attempt
            .is_none_or(|last| now.saturating_sub(last) >= min_interval)
    }
}

fn parse_jwks_url(url: &str) -> Result<Url, &'static str> {
    let url = Url::parse(url).map_err(|_| "not a valid URL")?;
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let host = url.host_str().unwrap_or_default();
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(url)
            } else {
                Err("plain http is only allowed to loopback addresses; use https")
            }
        }
        _ => Err("scheme must be https"),
    }
}

fn string_claim<'a>(claims: &'a Value, name: &'static str) -> Result<&'a str, AuthnError> {
    match claims.get(name) {
        None => Err(AuthnError::MissingClaim(name)),
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(AuthnError::InvalidClaim(name)),
    }
}

/// A JWT NumericDate claim as whole seconds (fractions are truncated towards the past).
fn numeric_date(claims: &Value, name: &'static str) -> Result<Option<i64>, AuthnError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .or_else(|| {
                number
                    .as_f64()
                    .filter(|secs| secs.is_finite())
                    // Saturating float-to-int conversion is the intent here.
                    .map(|secs| secs.floor() as i64)
            })
            .map(Some)
            .ok_or(AuthnError::InvalidClaim(name)),
        Some(_) => Err(AuthnError::InvalidClaim(name)),
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
