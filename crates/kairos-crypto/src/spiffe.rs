//! SPIFFE workload identity: SPIFFE IDs, trust bundles, X.509-SVIDs, and the certificate
//! thumbprints of certificate-bound tokens (RFC 8705).
//!
//! - [`SpiffeId::parse`]: the SPIFFE ID rules (scheme, trust domain, path) as pure code.
//! - [`TrustBundle::parse`]: a trust domain's bundle, PEM certificates or the SPIFFE bundle
//!   format (a JWKS whose `x509-svid` keys carry the CA certificates in `x5c` and whose
//!   `jwt-svid` keys verify JWT-SVIDs).
//! - [`SvidVerifier::verify`]: an X.509-SVID shown as a TLS client certificate. The leaf's
//!   facts are read with `x509-cert` (RustCrypto's DER types) and checked by the pure
//!   [`svid_rules`] (exactly one URI SAN that is a SPIFFE ID, not a CA, `digitalSignature`
//!   and no certificate signing, inside its validity at the caller's time); the chain is
//!   then verified by `rustls-webpki` (the verifier rustls itself uses) against the trust
//!   anchors of the trust domain the ID names, and no other.
//! - [`x5t_s256`]: base64url SHA-256 of a certificate's DER, the `cnf` member `x5t#S256`.
//!
//! Times are unix seconds supplied by the caller (the broker's clock).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use der::Decode as _;
pub use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{TrustAnchor, UnixTime};
use serde_json::Value;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectAltName};

/// Longest SPIFFE ID accepted (the SPIFFE ID specification's limit for URI SANs).
const MAX_ID_BYTES: usize = 2048;
/// Longest trust domain name accepted.
const MAX_TRUST_DOMAIN_BYTES: usize = 255;

/// A valid SPIFFE ID: `spiffe://<trust domain><path>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

/// Why a string is not a valid SPIFFE ID (or trust domain name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// Not `spiffe://`.
    #[error("a SPIFFE ID starts with `spiffe://` (lower case)")]
    Scheme,
    /// Longer than the specification allows.
    #[error("a SPIFFE ID is at most {MAX_ID_BYTES} bytes")]
    TooLong,
    /// No trust domain.
    #[error("the trust domain is empty; write `spiffe://<trust domain>/<path>`")]
    EmptyTrustDomain,
    /// A character a trust domain may not hold.
    #[error(
        "the trust domain may hold only lower-case letters, digits, `.`, `-` and `_` (no port, user or upper case)"
    )]
    TrustDomainChars,
    /// A trust domain name too long.
    #[error("a trust domain name is at most {MAX_TRUST_DOMAIN_BYTES} bytes")]
    TrustDomainTooLong,
    /// A query or fragment.
    #[error("a SPIFFE ID has no query or fragment")]
    QueryOrFragment,
    /// An empty path segment.
    #[error("the path has an empty segment (`//` or a trailing `/`)")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("the path may not contain `.` or `..` segments")]
    DotSegment,
    /// A character a path segment may not hold.
    #[error("path segments may hold only letters, digits, `.`, `-` and `_`")]
    PathChars,
}

fn trust_domain_chars_ok(td: &str) -> bool {
    td.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
}

/// Checks a trust domain name as written in configuration (`prod.example.org`).
pub fn check_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    if !trust_domain_chars_ok(td) {
        return Err(SpiffeIdError::TrustDomainChars);
    }
    Ok(())
}

impl SpiffeId {
    /// Parses a SPIFFE ID by the SPIFFE ID specification: scheme `spiffe`, a trust domain
    /// of `[a-z0-9._-]`, then an optional path of non-empty segments of
    /// `[a-zA-Z0-9._-]` that are not `.` or `..`, no trailing `/`, no query or fragment.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.len() > MAX_ID_BYTES {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix("spiffe://").ok_or(SpiffeIdError::Scheme)?;
        if rest.contains(['?', '#']) {
            return Err(SpiffeIdError::QueryOrFragment);
        }
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_trust_domain(td)?;
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                if segment.is_empty() {
                    return Err(SpiffeIdError::EmptySegment);
                }
                if segment == "." || segment == ".." {
                    return Err(SpiffeIdError::DotSegment);
                }
                if !segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                {
                    return Err(SpiffeIdError::PathChars);
                }
            }
        }
        Ok(Self {
            trust_domain: td.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The trust domain name (`prod.example.org`).
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path (`/ns/ci/sa/deployer`), empty for the trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

/// A trust domain's bundle: the CA certificates that sign its X.509-SVIDs, and the keys
/// that sign its JWT-SVIDs (from the SPIFFE bundle format only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    /// DER of the X.509 authorities.
    pub x509_authorities: Vec<Vec<u8>>,
    /// A JWKS of the `jwt-svid` keys (their `use` rewritten to `sig`), if the bundle has any.
    pub jwt_keys: Option<Value>,
}

impl TrustBundle {
    /// Parses a bundle file: PEM certificates (`-----BEGIN CERTIFICATE-----`), or a SPIFFE
    /// bundle (a JSON JWKS: `use: "x509-svid"` keys with one certificate in `x5c`, standard
    /// base64 DER; `use: "jwt-svid"` keys). Every certificate must parse as X.509 and be
    /// usable as a trust anchor. The error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim_start();
        let bundle = if trimmed.starts_with('{') {
            Self::parse_jwks(trimmed)?
        } else {
            let mut x509_authorities = Vec::new();
            for (i, cert) in CertificateDer::pem_slice_iter(text.as_bytes()).enumerate() {
                let cert =
                    cert.map_err(|e| format!("PEM certificate {} cannot be read: {e}", i + 1))?;
                x509_authorities.push(cert.as_ref().to_vec());
            }
            if x509_authorities.is_empty() {
                return Err(
                    "holds no certificate: a trust bundle is PEM certificates (`-----BEGIN CERTIFICATE-----`) or a SPIFFE bundle (JSON with `keys`)".into(),
                );
            }
            Self {
                x509_authorities,
                jwt_keys: None,
            }
        };
        for (i, der) in bundle.x509_authorities.iter().enumerate() {
            Certificate::from_der(der)
                .map_err(|e| format!("certificate {} is not X.509: {e}", i + 1))?;
            webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                .map_err(|e| format!("certificate {} cannot be a trust anchor: {e}", i + 1))?;
        }
        Ok(bundle)
    }

    fn parse_jwks(text: &str) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("is JSON without a `keys` array; a SPIFFE bundle is a JWKS")?;
        let mut x509_authorities = Vec::new();
        let mut jwt = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match key.get("use").and_then(Value::as_str) {
                Some("x509-svid") => {
                    let x5c = key
                        .get("x5c")
                        .and_then(Value::as_array)
                        .filter(|a| a.len() == 1)
                        .and_then(|a| a[0].as_str())
                        .ok_or_else(|| {
                            format!(
                                "keys[{i}] (x509-svid) needs `x5c` with exactly one certificate"
                            )
                        })?;
                    let der = STANDARD
                        .decode(x5c)
                        .map_err(|_| format!("keys[{i}].x5c[0] is not standard base64"))?;
                    x509_authorities.push(der);
                }
                Some("jwt-svid") => {
                    let mut k = key.clone();
                    if let Some(o) = k.as_object_mut() {
                        o.insert("use".into(), Value::from("sig"));
                    }
                    jwt.push(k);
                }
                // The SPIFFE bundle format says to ignore keys of unknown use.
                _ => {}
            }
        }
        if x509_authorities.is_empty() && jwt.is_empty() {
            return Err("has no `x509-svid` or `jwt-svid` key".into());
        }
        Ok(Self {
            x509_authorities,
            jwt_keys: (!jwt.is_empty()).then(|| serde_json::json!({ "keys": jwt })),
        })
    }
}

/// What an X.509 leaf says about itself, for [`svid_rules`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// Its URI SANs, as written.
    pub uris: Vec<String>,
    /// basicConstraints `cA` is true.
    pub is_ca: bool,
    /// The keyUsage extension, if present.
    pub key_usage: Option<KeyUsageFacts>,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

/// The keyUsage bits the SVID rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsageFacts {
    /// `digitalSignature`.
    pub digital_signature: bool,
    /// `keyCertSign`.
    pub key_cert_sign: bool,
    /// `cRLSign`.
    pub crl_sign: bool,
}

/// Why a client certificate was refused. Messages say what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    /// Not DER X.509 (or an extension that does not parse).
    #[error("the client certificate cannot be read as X.509: {0}")]
    Unreadable(String),
    /// Not exactly one URI SAN.
    #[error(
        "an X.509-SVID has exactly one URI SAN (its SPIFFE ID); this client certificate has {0}"
    )]
    UriSanCount(usize),
    /// The URI SAN is no SPIFFE ID.
    #[error("the client certificate's URI SAN is not a valid SPIFFE ID: {0}")]
    BadId(SpiffeIdError),
    /// A CA certificate as a leaf.
    #[error(
        "the client certificate is a CA certificate (basicConstraints cA=true); an X.509-SVID leaf must not be a CA"
    )]
    IsCa,
    /// keyUsage missing, without digitalSignature, or with certificate signing.
    #[error("the X.509-SVID's key usage {0}")]
    KeyUsage(&'static str),
    /// Past notAfter.
    #[error(
        "the client certificate expired at unix time {not_after} (now {now}); get a fresh SVID from your SPIFFE provider"
    )]
    Expired {
        /// The certificate's notAfter, unix seconds.
        not_after: i64,
        /// The time of the check.
        now: i64,
    },
    /// Before notBefore.
    #[error(
        "the client certificate is not valid before unix time {not_before} (now {now}); check the clocks"
    )]
    NotYetValid {
        /// The certificate's notBefore, unix seconds.
        not_before: i64,
        /// The time of the check.
        now: i64,
    },
    /// The SPIFFE ID's trust domain is not declared.
    #[error(
        "trust domain {0:?} is not declared; add a [[trust_domain]] with this name and its bundle_file"
    )]
    UnknownTrustDomain(String),
    /// The chain does not verify against the trust domain's bundle.
    #[error(
        "the X.509-SVID does not chain to the trust bundle of trust domain {trust_domain:?} ({reason}); it was not issued by that trust domain's CA"
    )]
    Chain {
        /// The trust domain the SPIFFE ID names.
        trust_domain: String,
        /// What webpki said.
        reason: String,
    },
}

/// The SPIFFE X.509-SVID rules for a leaf, at `now` (unix seconds): inside its validity,
/// exactly one URI SAN that is a SPIFFE ID, not a CA, keyUsage present with
/// `digitalSignature` and without `keyCertSign` or `cRLSign`. Returns the SPIFFE ID.
pub fn svid_rules(leaf: &LeafFacts, now: i64) -> Result<SpiffeId, SvidError> {
    if now > leaf.not_after {
        return Err(SvidError::Expired {
            not_after: leaf.not_after,
            now,
        });
    }
    if now < leaf.not_before {
        return Err(SvidError::NotYetValid {
            not_before: leaf.not_before,
            now,
        });
    }
    let [uri] = leaf.uris.as_slice() else {
        return Err(SvidError::UriSanCount(leaf.uris.len()));
    };
    let id = SpiffeId::parse(uri).map_err(SvidError::BadId)?;
    if leaf.is_ca {
        return Err(SvidError::IsCa);
    }
    match leaf.key_usage {
        None => Err(SvidError::KeyUsage(
            "extension is missing; a leaf SVID must have keyUsage digitalSignature",
        )),
        Some(ku) if !ku.digital_signature => Err(SvidError::KeyUsage(
            "lacks digitalSignature, which a leaf SVID must have",
        )),
        Some(ku) if ku.key_cert_sign || ku.crl_sign => Err(SvidError::KeyUsage(
            "has keyCertSign or cRLSign, which a leaf SVID must not have",
        )),
        Some(_) => Ok(id),
    }
}

/// Reads the facts of a certificate (DER) that the SVID rules look at.
pub fn leaf_facts(der: &[u8]) -> Result<LeafFacts, SvidError> {
    let cert = Certificate::from_der(der).map_err(|e| SvidError::Unreadable(e.to_string()))?;
    let tbs = &cert.tbs_certificate;
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let mut facts = LeafFacts {
        uris: Vec::new(),
        is_ca: false,
        key_usage: None,
        not_before: secs(tbs.validity.not_before.to_unix_duration()),
        not_after: secs(tbs.validity.not_after.to_unix_duration()),
    };
    let bad = |what: &str, e: der::Error| SvidError::Unreadable(format!("{what}: {e}"));
    for ext in tbs.extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME {
            let san = SubjectAltName::from_der(value).map_err(|e| bad("subjectAltName", e))?;
            for name in san.0 {
                if let GeneralName::UniformResourceIdentifier(uri) = name {
                    facts.uris.push(uri.as_str().to_owned());
                }
            }
        } else if ext.extn_id == const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS {
            let bc = BasicConstraints::from_der(value).map_err(|e| bad("basicConstraints", e))?;
            facts.is_ca = bc.ca;
        } else if ext.extn_id == const_oid::db::rfc5280::ID_CE_KEY_USAGE {
            let ku = KeyUsage::from_der(value).map_err(|e| bad("keyUsage", e))?;
            facts.key_usage = Some(KeyUsageFacts {
                digital_signature: ku.0.contains(KeyUsages::DigitalSignature),
                key_cert_sign: ku.0.contains(KeyUsages::KeyCertSign),
                crl_sign: ku.0.contains(KeyUsages::CRLSign),
            });
        }
    }
    Ok(facts)
}

/// Whether a certificate claims to be an X.509-SVID: one of its URI SANs has the `spiffe`
/// scheme. Such a certificate must pass [`SvidVerifier::verify`]; any other client
/// certificate is only checked for its validity time ([`check_validity`]).
pub fn claims_spiffe_id(facts: &LeafFacts) -> bool {
    facts.uris.iter().any(|u| {
        u.get(..9)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("spiffe://"))
    })
}

/// A client certificate's validity at `now` (the broker's clock), whatever it is.
pub fn check_validity(facts: &LeafFacts, now: i64) -> Result<(), SvidError> {
    if now > facts.not_after {
        return Err(SvidError::Expired {
            not_after: facts.not_after,
            now,
        });
    }
    if now < facts.not_before {
        return Err(SvidError::NotYetValid {
            not_before: facts.not_before,
            now,
        });
    }
    Ok(())
}

/// base64url (no padding) SHA-256 of a certificate's DER: RFC 8705's `x5t#S256`.
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// A verified X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSvid {
    /// The SPIFFE ID of its URI SAN.
    pub spiffe_id: SpiffeId,
    /// [`x5t_s256`] of the leaf.
    pub x5t_s256: String,
}

/// Verifies X.509-SVIDs against the declared trust domains' bundles.
#[derive(Debug, Default)]
pub struct SvidVerifier {
    anchors: BTreeMap<String, Vec<TrustAnchor<'static>>>,
}

impl SvidVerifier {
    /// A verifier for `domains` (trust domain name, its bundle). A bundle certificate
    /// that cannot be a trust anchor is an error naming the trust domain.
    pub fn new<'a>(
        domains: impl IntoIterator<Item = (&'a str, &'a TrustBundle)>,
    ) -> Result<Self, String> {
        let mut anchors = BTreeMap::new();
        for (name, bundle) in domains {
            let mut list = Vec::new();
            for der in &bundle.x509_authorities {
                let cert = CertificateDer::from(der.as_slice());
                let anchor = webpki::anchor_from_trusted_cert(&cert).map_err(|e| {
                    format!(
                        "trust domain {name:?}: a bundle certificate cannot be a trust anchor: {e}"
                    )
                })?;
                list.push(anchor.to_owned());
            }
            anchors.insert(name.to_owned(), list);
        }
        Ok(Self { anchors })
    }

    /// Whether any trust domain is declared.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Verifies an X.509-SVID chain (leaf first) at `now` (unix seconds): the leaf by
    /// [`svid_rules`], its trust domain declared, and the chain by webpki against that
    /// trust domain's bundle only (client-auth usage; a CA leaf is refused by webpki too).
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<VerifiedSvid, SvidError> {
        let [leaf, intermediates @ ..] = chain else {
            return Err(SvidError::Unreadable("no certificate was shown".into()));
        };
        let facts = leaf_facts(leaf)?;
        let id = svid_rules(&facts, now)?;
        let anchors = self
            .anchors
            .get(id.trust_domain())
            .ok_or_else(|| SvidError::UnknownTrustDomain(id.trust_domain().to_owned()))?;
        let chain_error = |reason: String| SvidError::Chain {
            trust_domain: id.trust_domain().to_owned(),
            reason,
        };
        if anchors.is_empty() {
            return Err(chain_error("its bundle has no X.509 authority".into()));
        }
        let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| chain_error(e.to_string()))?;
        let time =
            UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or_default()));
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            anchors,
            intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| chain_error(e.to_string()))?;
        Ok(VerifiedSvid {
            spiffe_id: id,
            x5t_s256: x5t_s256(leaf),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_id(input: &str, expected: Result<(&str, &str), SpiffeIdError>) {
        let got = SpiffeId::parse(input);
        match expected {
            Ok((td, path)) => {
                let id = got.unwrap_or_else(|e| panic!("{input}: {e}"));
                assert_eq!((id.trust_domain(), id.path()), (td, path), "{input}");
                assert_eq!(id.to_string(), input);
            }
            Err(e) => assert_eq!(got, Err(e), "{input}"),
        }
    }

    #[test]
    fn spiffe_ids() {
        use SpiffeIdError::*;
        check_id(
            "spiffe://prod.example.org/ns/ci/sa/deployer",
            Ok(("prod.example.org", "/ns/ci/sa/deployer")),
        );
        check_id("spiffe://example.org", Ok(("example.org", "")));
        check_id("spiffe://a_b-c.1/x.y-z_0", Ok(("a_b-c.1", "/x.y-z_0")));
        check_id("SPIFFE://example.org/a", Err(Scheme));
        check_id("https://example.org/a", Err(Scheme));
        check_id("spiffe:///a", Err(EmptyTrustDomain));
        check_id("spiffe://Example.org/a", Err(TrustDomainChars));
        check_id("spiffe://example.org:8443/a", Err(TrustDomainChars));
        check_id("spiffe://user@example.org/a", Err(TrustDomainChars));
        check_id("spiffe://example.org/a/", Err(EmptySegment));
        check_id("spiffe://example.org//a", Err(EmptySegment));
        check_id("spiffe://example.org/", Err(EmptySegment));
        check_id("spiffe://example.org/a/../b", Err(DotSegment));
        check_id("spiffe://example.org/./b", Err(DotSegment));
        check_id("spiffe://example.org/a?x=1", Err(QueryOrFragment));
        check_id("spiffe://example.org/a#f", Err(QueryOrFragment));
        check_id("spiffe://example.org/a b", Err(PathChars));
        check_id("spiffe://example.org/%41", Err(PathChars));
        check_id(
            &format!("spiffe://e.org/{}", "a".repeat(2100)),
            Err(TooLong),
        );
    }

    fn leaf(uris: &[&str]) -> LeafFacts {
        LeafFacts {
            uris: uris.iter().map(|s| (*s).to_owned()).collect(),
            is_ca: false,
            key_usage: Some(KeyUsageFacts {
                digital_signature: true,
                key_cert_sign: false,
                crl_sign: false,
            }),
            not_before: 100,
            not_after: 200,
        }
    }

    fn check_rules(facts: LeafFacts, now: i64, expected: Result<&str, SvidError>) {
        let got = svid_rules(&facts, now).map(|id| id.to_string());
        assert_eq!(got.as_deref().map_err(Clone::clone), expected, "{facts:?}");
    }

    #[test]
    fn svid_leaf_rules() {
        let id = "spiffe://td.org/w";
        check_rules(leaf(&[id]), 150, Ok(id));
        check_rules(leaf(&[id]), 200, Ok(id));
        check_rules(
            leaf(&[id]),
            201,
            Err(SvidError::Expired {
                not_after: 200,
                now: 201,
            }),
        );
        check_rules(
            leaf(&[id]),
            99,
            Err(SvidError::NotYetValid {
                not_before: 100,
                now: 99,
            }),
        );
        check_rules(leaf(&[]), 150, Err(SvidError::UriSanCount(0)));
        check_rules(
            leaf(&[id, "spiffe://td.org/x"]),
            150,
            Err(SvidError::UriSanCount(2)),
        );
        check_rules(
            leaf(&["spiffe://td.org/a/"]),
            150,
            Err(SvidError::BadId(SpiffeIdError::EmptySegment)),
        );
        let ca = LeafFacts {
            is_ca: true,
            ..leaf(&[id])
        };
        check_rules(ca, 150, Err(SvidError::IsCa));
        let no_ku = LeafFacts {
            key_usage: None,
            ..leaf(&[id])
        };
        assert!(matches!(
            svid_rules(&no_ku, 150),
            Err(SvidError::KeyUsage(_))
        ));
        let signer = LeafFacts {
            key_usage: Some(KeyUsageFacts {
                digital_signature: true,
                key_cert_sign: true,
                crl_sign: false,
            }),
            ..leaf(&[id])
        };
        assert!(matches!(
            svid_rules(&signer, 150),
            Err(SvidError::KeyUsage(_))
        ));
        let no_ds = LeafFacts {
            key_usage: Some(KeyUsageFacts {
                digital_signature: false,
                key_cert_sign: false,
                crl_sign: false,
            }),
            ..leaf(&[id])
        };
        assert!(matches!(
            svid_rules(&no_ds, 150),
            Err(SvidError::KeyUsage(_))
        ));
    }

    #[test]
    fn which_certificates_claim_a_spiffe_id() {
        assert!(claims_spiffe_id(&leaf(&["spiffe://td.org/w"])));
        assert!(claims_spiffe_id(&leaf(&["https://x", "SPIFFE://TD/w"])));
        assert!(!claims_spiffe_id(&leaf(&["https://example.org/x"])));
        assert!(!claims_spiffe_id(&leaf(&[])));
    }

    #[test]
    fn bundles_that_are_not_bundles() {
        assert!(
            TrustBundle::parse("")
                .unwrap_err()
                .contains("holds no certificate")
        );
        assert!(
            TrustBundle::parse("{")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            TrustBundle::parse("{\"x\":1}")
                .unwrap_err()
                .contains("`keys`")
        );
        assert!(
            TrustBundle::parse(r#"{"keys":[{"use":"x509-svid","x5c":["!!"]}]}"#)
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            TrustBundle::parse(r#"{"keys":[{"use":"x509-svid","x5c":["AAAA"]}]}"#)
                .unwrap_err()
                .contains("not X.509")
        );
        let jwt = TrustBundle::parse(
            r#"{"keys":[{"use":"jwt-svid","kty":"EC","crv":"P-256","kid":"k","x":"a","y":"b"}]}"#,
        )
        .unwrap();
        assert!(jwt.x509_authorities.is_empty());
        assert_eq!(jwt.jwt_keys.unwrap()["keys"][0]["use"], "sig");
    }

    #[test]
    fn thumbprint_is_base64url_sha256() {
        // SHA-256 of the empty string.
        assert_eq!(x5t_s256(b""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
    }
}
