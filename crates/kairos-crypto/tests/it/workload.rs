use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kairos_crypto::workload::{
    AuthnError, IssuerTrust, JwksSource, TrustConfigError, WorkloadVerifier, check_jwks,
};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const ISSUER: &str = "https://token.actions.example.test";
const AUDIENCE: &str = "kairos";
const NOW: i64 = 1_700_000_000;

/// A platform signing key: what the platform signs with, and the JWK it publishes.
struct PlatformKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl PlatformKey {
    /// The RSA-2048 fixture made with openssl (ring cannot generate RSA keys).
    fn rsa() -> Self {
        let jwk: Value =
            serde_json::from_str(include_str!("../fixtures/rsa_workload_jwk.json")).unwrap();
        Self {
            kid: jwk["kid"].as_str().unwrap().to_owned(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa_workload_key.pem"))
                .unwrap(),
            jwk,
        }
    }

    fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            }),
        }
    }

    fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        }
    }

    /// A token with this key's `kid`, signed by jsonwebtoken (an independent implementation).
    fn mint(&self, claims: &Value) -> String {
        self.mint_with_kid(Some(&self.kid), claims)
    }

    fn mint_with_kid(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "repo:acme/billing:ref:refs/heads/main",
        "repository": "acme/billing",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 300,
    })
}

fn with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn jwks(keys: &[&PlatformKey]) -> Value {
    json!({ "keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
}

fn trust(jwks: JwksSource) -> IssuerTrust {
    IssuerTrust {
        name: "github-actions".to_owned(),
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        jwks,
        max_token_age: std::time::Duration::from_secs(24 * 3600),
        spiffe_trust_domain: None,
    }
}

fn inline_verifier(keys: &[&PlatformKey]) -> WorkloadVerifier {
    WorkloadVerifier::new(vec![trust(JwksSource::Inline(jwks(keys)))]).unwrap()
}

/// Asserts that `token` is rejected at `now` with an error `expected` accepts, and that
/// the error message does not echo the token or any sizeable part of it.
async fn check_rejected(
    verifier: &WorkloadVerifier,
    token: &str,
    now: i64,
    expected: impl Fn(&AuthnError) -> bool,
) {
    match verifier.verify(token, now).await {
        Ok(claims) => panic!("token was accepted: {claims:?}"),
        Err(err) => {
            assert!(expected(&err), "unexpected error: {err:?}");
            let message = err.to_string();
            for part in token.split('.').filter(|part| part.len() > 8) {
                assert!(!message.contains(part), "error echoes the token: {message}");
            }
        }
    }
}

#[tokio::test]
async fn valid_tokens_pass_for_every_algorithm() {
    let (rsa, es, ed) = (
        PlatformKey::rsa(),
        PlatformKey::es256("es-1"),
        PlatformKey::ed25519("ed-1"),
    );
    let verifier = inline_verifier(&[&rsa, &es, &ed]);
    for key in [&rsa, &es, &ed] {
        let verified = verifier.verify(&key.mint(&claims()), NOW).await.unwrap();
        assert_eq!(verified.issuer_name, "github-actions");
        assert_eq!(verified.sub, "repo:acme/billing:ref:refs/heads/main");
        assert_eq!(verified.claims["repository"], "acme/billing");
    }
}

#[tokio::test]
async fn audience_may_be_a_list() {
    let key = PlatformKey::es256("es-1");
    let verifier = inline_verifier(&[&key]);
    let token = key.mint(&with(json!({ "aud": ["sts.example.test", AUDIENCE] })));
    assert!(verifier.verify(&token, NOW).await.is_ok());

    let token = key.mint(&with(json!({ "aud": ["sts.example.test"] })));
    check_rejected(
        &verifier,
        &token,
        NOW,
        |err| matches!(err, AuthnError::WrongAudience { expected } if expected == AUDIENCE),
    )
    .await;
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let key = PlatformKey::rsa();
    let verifier = inline_verifier(&[&key]);
    let token = key.mint(&with(json!({ "aud": "https://kubernetes.default.svc" })));
    check_rejected(&verifier, &token, NOW, |err| {
        matches!(err, AuthnError::WrongAudience { .. })
    })
    .await;
    let token = key.mint(&with(json!({ "aud": null })));
    check_rejected(&verifier, &token, NOW, |err| {
        *err == AuthnError::MissingClaim("aud")
    })
    .await;
}

#[tokio::test]
async fn expiry_allows_clock_skew() {
    let key = PlatformKey::ed25519("ed-1");
    let verifier = inline_verifier(&[&key]);
    let token = key.mint(&with(json!({ "exp": NOW - 59 })));
    assert!(verifier.verify(&token, NOW).await.is_ok());

    let token = key.mint(&with(json!({ "exp": NOW - 61 })));
    check_rejected(
        &verifier,
        &token,
        NOW,
        |err| matches!(err, AuthnError::Expired { exp, .. } if *exp == NOW - 61),
    )
    .await;

    let strict = inline_verifier(&[&key]).with_clock_skew(std::time::Duration::ZERO);
    let token = key.mint(&with(json!({ "exp": NOW })));
    check_rejected(&strict, &token, NOW, |err| {
        matches!(err, AuthnError::Expired { .. })
    })
    .await;
}

#[tokio::test]
async fn future_nbf_is_rejected() {
    let key = PlatformKey::es256("es-1");
    let verifier = inline_verifier(&[&key]);
    let token = key.mint(&with(json!({ "nbf": NOW + 59 })));
    assert!(verifier.verify(&token, NOW).await.is_ok());

    let token = key.mint(&with(json!({ "nbf": NOW + 61 })));
    check_rejected(
        &verifier,
        &token,
        NOW,
        |err| matches!(err, AuthnError::NotYetValid { nbf, .. } if *nbf == NOW + 61),
    )
    .await;
}

#[tokio::test]
async fn required_claims_are_enforced() {
    let key = PlatformKey::rsa();
    let verifier = inline_verifier(&[&key]);
    let cases = [
        (json!({ "exp": null }), AuthnError::MissingClaim("exp")),
        (json!({ "sub": null }), AuthnError::MissingClaim("sub")),
        (json!({ "iss": null }), AuthnError::MissingClaim("iss")),
        (
            json!({ "exp": "tomorrow" }),
            AuthnError::InvalidClaim("exp"),
        ),
        (json!({ "aud": 42 }), AuthnError::InvalidClaim("aud")),
    ];
    for (changes, expected) in cases {
        let token = key.mint(&with(changes));
        check_rejected(&verifier, &token, NOW, |err| *err == expected).await;
    }
}

#[tokio::test]
async fn untrusted_issuer_is_rejected() {
    let key = PlatformKey::rsa();
    let verifier = inline_verifier(&[&key]);
    let token = key.mint(&with(json!({ "iss": "https://evil.example.test" })));
    check_rejected(
        &verifier,
        &token,
        NOW,
        |err| matches!(err, AuthnError::UnknownIssuer(iss) if iss == "https://evil.example.test"),
    )
    .await;
    // Issuers match exactly: no trailing-slash leniency.
    let token = key.mint(&with(json!({ "iss": format!("{ISSUER}/") })));
    check_rejected(&verifier, &token, NOW, |err| {
        matches!(err, AuthnError::UnknownIssuer(_))
    })
    .await;
}

#[tokio::test]
async fn unknown_kid_is_rejected() {
    let key = PlatformKey::es256("es-1");
    let verifier = inline_verifier(&[&key]);
    let token = key.mint_with_kid(Some("es-2"), &claims());
    check_rejected(
        &verifier,
        &token,
        NOW,
        |err| matches!(err, AuthnError::UnknownKey { kid: Some(kid), .. } if kid == "es-2"),
    )
    .await;
}

#[tokio::test]
async fn forged_signature_is_rejected() {
    let trusted = PlatformKey::es256("es-1");
    let verifier = inline_verifier(&[&trusted, &PlatformKey::rsa()]);
    // Same kid, different private key.
    let forger = PlatformKey::es256("es-1");
    check_rejected(&verifier, &forger.mint(&claims()), NOW, |err| {
        matches!(err, AuthnError::BadSignature { .. })
    })
    .await;

    // A valid token with its payload swapped for another subject.
    let token = trusted.mint(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&with(json!({ "sub": "repo:acme/admin" }))).unwrap());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    check_rejected(&verifier, &tampered, NOW, |err| {
        matches!(err, AuthnError::BadSignature { .. })
    })
    .await;
}

#[tokio::test]
async fn alg_none_and_hmac_are_rejected() {
    let rsa = PlatformKey::rsa();
    let verifier = inline_verifier(&[&rsa]);

    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    let unsigned = format!("{header}.{payload}.");
    check_rejected(
        &verifier,
        &unsigned,
        NOW,
        |err| matches!(err, AuthnError::UnsupportedAlgorithm(alg) if alg == "none"),
    )
    .await;

    // The classic confusion: HMAC keyed with the issuer's public key material.
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(rsa.kid.clone());
    let public_modulus = rsa.jwk["n"].as_str().unwrap().as_bytes();
    let hs = jsonwebtoken::encode(
        &hs_header,
        &claims(),
        &EncodingKey::from_secret(public_modulus),
    )
    .unwrap();
    check_rejected(
        &verifier,
        &hs,
        NOW,
        |err| matches!(err, AuthnError::UnsupportedAlgorithm(alg) if alg == "HS256"),
    )
    .await;

    let mut rs512 = Header::new(Algorithm::RS512);
    rs512.kid = Some(rsa.kid.clone());
    let token = jsonwebtoken::encode(&rs512, &claims(), &rsa.encoding).unwrap();
    check_rejected(
        &verifier,
        &token,
        NOW,
        |err| matches!(err, AuthnError::UnsupportedAlgorithm(alg) if alg == "RS512"),
    )
    .await;
}

#[tokio::test]
async fn algorithm_must_fit_the_key() {
    // An ES256 header naming the RSA key is not checked with the RSA key.
    let rsa = PlatformKey::rsa();
    let es = PlatformKey::es256("es-1");
    let verifier = inline_verifier(&[&rsa]);
    let token = es.mint_with_kid(Some(&rsa.kid), &claims());
    check_rejected(&verifier, &token, NOW, |err| {
        matches!(err, AuthnError::UnknownKey { .. })
    })
    .await;
}

#[tokio::test]
async fn missing_kid_uses_the_only_compatible_key() {
    let (rsa, es) = (PlatformKey::rsa(), PlatformKey::es256("es-1"));
    let verifier = inline_verifier(&[&rsa, &es]);
    for key in [&rsa, &es] {
        let token = key.mint_with_kid(None, &claims());
        assert!(verifier.verify(&token, NOW).await.is_ok());
    }

    let (first, second) = (PlatformKey::es256("es-1"), PlatformKey::es256("es-2"));
    let ambiguous = inline_verifier(&[&first, &second]);
    let token = first.mint_with_kid(None, &claims());
    check_rejected(&ambiguous, &token, NOW, |err| {
        matches!(err, AuthnError::UnknownKey { kid: None, .. })
    })
    .await;
}

#[tokio::test]
async fn garbage_is_malformed() {
    let verifier = inline_verifier(&[&PlatformKey::rsa()]);
    for garbage in ["", "Bearer", "a.b", "a.b.c.d", "e30.e30.", "!!.e30.e30"] {
        check_rejected(&verifier, garbage, NOW, |err| {
            matches!(err, AuthnError::Malformed(_))
        })
        .await;
    }
}

/// The config loader asks `check_jwks` what the verifier would say (fuzzing found a
/// catalog that validated but that the server then refused): the same verdict, and why
/// each key is unusable.
#[test]
fn check_jwks_agrees_with_the_verifier_and_says_why() {
    let rsa = PlatformKey::rsa();
    let ed = PlatformKey::ed25519("ed-1");
    assert_eq!(check_jwks(&jwks(&[&rsa, &ed])), Ok(2));
    let mixed = json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }, ed.jwk.clone()] });
    assert_eq!(check_jwks(&mixed), Ok(1));
    assert!(WorkloadVerifier::new(vec![trust(JwksSource::Inline(mixed))]).is_ok());

    let unusable = json!({ "keys": [
        { "kty": "RSA", "kid": "short", "n": "sXch", "e": "AQAB" },
        { "kty": "EC", "crv": "P-384", "x": "AA", "y": "AA" },
        { "kty": "OKP", "crv": "Ed25519", "use": "enc", "x": "AA" },
        { "kty": "oct", "k": "c2VjcmV0" },
    ] });
    let reason = check_jwks(&unusable).unwrap_err();
    for part in [
        "no usable signing key (4 keys",
        "key 0 (\"short\"): RSA modulus is shorter than 2048 bits",
        "key 1: EC key is not on curve P-256",
        "key 2: `use` is \"enc\", not \"sig\"",
        "; …",
    ] {
        assert!(reason.contains(part), "{part:?} not in {reason:?}");
    }
    assert!(!reason.contains("c2VjcmV0"), "{reason}");
    match WorkloadVerifier::new(vec![trust(JwksSource::Inline(unusable))]) {
        Err(TrustConfigError::InlineJwks { reason: said, .. }) => assert_eq!(said, reason),
        other => panic!("expected InlineJwks, got {other:?}"),
    }
    assert!(check_jwks(&json!({ "keys": "none" })).is_err());
}

#[tokio::test]
async fn unusable_configuration_is_refused() {
    let rsa = PlatformKey::rsa();
    let check = |trusts: Vec<IssuerTrust>, expected: fn(&TrustConfigError) -> bool| {
        match WorkloadVerifier::new(trusts) {
            Ok(_) => panic!("configuration was accepted"),
            Err(err) => assert!(expected(&err), "unexpected error: {err:?}"),
        }
    };
    let url = |url: &str| trust(JwksSource::Url(url.to_owned()));

    check(vec![url("http://jwks.example.test/keys")], |err| {
        matches!(err, TrustConfigError::JwksUrl { .. })
    });
    check(vec![url("ftp://127.0.0.1/keys")], |err| {
        matches!(err, TrustConfigError::JwksUrl { .. })
    });
    check(vec![url("not a url")], |err| {
        matches!(err, TrustConfigError::JwksUrl { .. })
    });
    check(
        vec![
            trust(JwksSource::Inline(jwks(&[&rsa]))),
            url("https://jwks.example.test"),
        ],
        |err| matches!(err, TrustConfigError::DuplicateIssuer(_)),
    );
    check(
        vec![trust(JwksSource::Inline(
            json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] }),
        ))],
        |err| matches!(err, TrustConfigError::InlineJwks { .. }),
    );
    check(vec![trust(JwksSource::Inline(json!([])))], |err| {
        matches!(err, TrustConfigError::InlineJwks { .. })
    });
    let mut no_audience = url("https://jwks.example.test");
    no_audience.audience.clear();
    check(vec![no_audience], |err| {
        matches!(
            err,
            TrustConfigError::EmptyField {
                field: "audience",
                ..
            }
        )
    });

    for ok in [
        "https://jwks.example.test/keys",
        "http://127.0.0.1:8080/k",
        "http://localhost/k",
        "http://[::1]/k",
    ] {
        assert!(WorkloadVerifier::new(vec![url(ok)]).is_ok(), "{ok}");
    }
}

/// A tiny JWKS endpoint on loopback that counts its requests.
struct JwksServer {
    url: String,
    hits: Arc<AtomicUsize>,
    response: Arc<Mutex<(u16, String)>>,
}

impl JwksServer {
    async fn start(document: &Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let response = Arc::new(Mutex::new((200, document.to_string())));
        let (task_hits, task_response) = (Arc::clone(&hits), Arc::clone(&response));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                task_hits.fetch_add(1, Ordering::SeqCst);
                let (status, body) = task_response.lock().unwrap().clone();
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        Self {
            url,
            hits,
            response,
        }
    }

    fn serve(&self, status: u16, document: &Value) {
        *self.response.lock().unwrap() = (status, document.to_string());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn url_jwks_is_cached_and_refetched_for_new_keys() {
    let (first, second) = (PlatformKey::es256("es-1"), PlatformKey::ed25519("ed-2"));
    let server = JwksServer::start(&jwks(&[&first])).await;
    let verifier = WorkloadVerifier::new(vec![trust(JwksSource::Url(server.url.clone()))]).unwrap();

    // Two verifications, one fetch.
    assert!(verifier.verify(&first.mint(&claims()), NOW).await.is_ok());
    assert!(
        verifier
            .verify(&first.mint(&claims()), NOW + 10)
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 1);

    // The platform rotates in a new key. Within 30 s of the last fetch an unknown kid
    // does not trigger a fetch...
    server.serve(200, &jwks(&[&first, &second]));
    let token = second.mint(&claims());
    check_rejected(&verifier, &token, NOW + 20, |err| {
        matches!(err, AuthnError::UnknownKey { .. })
    })
    .await;
    assert_eq!(server.hits(), 1);

    // ...after that it does, once, and the new key is found.
    assert!(verifier.verify(&token, NOW + 31).await.is_ok());
    assert_eq!(server.hits(), 2);
    assert!(verifier.verify(&token, NOW + 40).await.is_ok());
    assert!(
        verifier
            .verify(&first.mint(&claims()), NOW + 40)
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 2);

    // A forged kid does not cause a fetch per token either.
    for offset in 0..5 {
        let token = first.mint_with_kid(Some(&format!("forged-{offset}")), &claims());
        check_rejected(&verifier, &token, NOW + 70, |err| {
            matches!(err, AuthnError::UnknownKey { .. })
        })
        .await;
    }
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn url_jwks_is_refreshed_and_survives_fetch_failures() {
    let key = PlatformKey::rsa();
    let server = JwksServer::start(&jwks(&[&key])).await;
    let verifier = WorkloadVerifier::new(vec![trust(JwksSource::Url(server.url.clone()))]).unwrap();
    let token = key.mint(&with(json!({ "exp": NOW + 10_000 })));

    assert!(verifier.verify(&token, NOW).await.is_ok());
    assert!(verifier.verify(&token, NOW + 299).await.is_ok());
    assert_eq!(server.hits(), 1);
    assert!(verifier.verify(&token, NOW + 300).await.is_ok());
    assert_eq!(server.hits(), 2);

    // The endpoint breaks: the cached keys stay in use, retried at most every 30 s.
    server.serve(500, &json!({ "error": "down" }));
    assert!(verifier.verify(&token, NOW + 600).await.is_ok());
    assert!(verifier.verify(&token, NOW + 610).await.is_ok());
    assert_eq!(server.hits(), 3);
    assert!(verifier.verify(&token, NOW + 630).await.is_ok());
    assert_eq!(server.hits(), 4);

    // A document without usable keys does not replace good cached keys.
    server.serve(200, &json!({ "keys": [] }));
    assert!(verifier.verify(&token, NOW + 660).await.is_ok());
    assert_eq!(server.hits(), 5);
}

/// A platform token is verified once and then remembered, but only with the key that
/// verified it, and never past its time.
#[tokio::test]
async fn a_remembered_token_is_still_checked_for_time_and_key() {
    let key = PlatformKey::es256("k1");
    let server = JwksServer::start(&jwks(&[&key])).await;
    let verifier = WorkloadVerifier::new(vec![trust(JwksSource::Url(server.url.clone()))])
        .unwrap()
        .with_jwks_refresh_interval(std::time::Duration::from_secs(1))
        .with_jwks_min_refetch_interval(std::time::Duration::ZERO);
    let token = key.mint(&claims());
    for now in [NOW, NOW + 1, NOW + 2] {
        let claims = verifier.verify(&token, now).await.unwrap();
        assert_eq!(claims.sub, "repo:acme/billing:ref:refs/heads/main");
    }
    // The platform replaces the key behind the same kid (a compromised key swapped out):
    // the token signed by the old key fails, although it verified before.
    let replacement = PlatformKey::es256("k1");
    server.serve(200, &jwks(&[&replacement]));
    check_rejected(&verifier, &token, NOW + 10, |err| {
        matches!(err, AuthnError::BadSignature { .. })
    })
    .await;
    assert!(
        verifier
            .verify(&replacement.mint(&claims()), NOW + 11)
            .await
            .is_ok()
    );
    // And the old key's token stays refused when the new key's token was just accepted.
    check_rejected(&verifier, &token, NOW + 12, |err| {
        matches!(err, AuthnError::BadSignature { .. })
    })
    .await;

    // A remembered token's time runs out as if it had never been seen.
    let fresh = replacement.mint(&claims());
    assert!(verifier.verify(&fresh, NOW + 13).await.is_ok());
    check_rejected(&verifier, &fresh, NOW + 300 + 60, |err| {
        matches!(err, AuthnError::Expired { .. })
    })
    .await;
}

#[tokio::test]
async fn url_jwks_unavailable_without_cache() {
    let key = PlatformKey::rsa();
    let server = JwksServer::start(&jwks(&[&key])).await;
    server.serve(503, &json!({}));
    let verifier = WorkloadVerifier::new(vec![trust(JwksSource::Url(server.url.clone()))]).unwrap();
    let token = key.mint(&claims());
    check_rejected(
        &verifier,
        &token,
        NOW,
        |err| matches!(err, AuthnError::JwksUnavailable { reason, .. } if reason.contains("503")),
    )
    .await;
    // Rate-limited: no new attempt within 30 s, same answer.
    check_rejected(&verifier, &token, NOW + 5, |err| {
        matches!(err, AuthnError::JwksUnavailable { .. })
    })
    .await;
    assert_eq!(server.hits(), 1);

    server.serve(200, &jwks(&[&key]));
    assert!(verifier.verify(&token, NOW + 30).await.is_ok());
    assert_eq!(server.hits(), 2);
}

/// A platform token valid for longer than its issuer's `max_token_age` is refused, with
/// `iat` or, without it, from now: `exp` 2^62 was accepted.
#[tokio::test]
async fn lifetimes_past_the_issuers_max_token_age_are_refused() {
    let key = PlatformKey::es256("es-1");
    let verifier = inline_verifier(&[&key]);
    let day = 24 * 3600;
    let too_long = |e: &AuthnError| matches!(e, AuthnError::LifetimeTooLong { .. });
    // exp 2^62 (and without iat).
    let huge = 1_i64 << 62;
    check_rejected(
        &verifier,
        &key.mint(&with(json!({ "exp": huge }))),
        NOW,
        too_long,
    )
    .await;
    check_rejected(
        &verifier,
        &key.mint(&with(json!({ "exp": huge, "iat": null }))),
        NOW,
        too_long,
    )
    .await;
    // One second past the default cap, measured from iat.
    let over = with(json!({ "exp": NOW + day + 1 }));
    match verifier.verify(&key.mint(&over), NOW).await {
        Err(e @ AuthnError::LifetimeTooLong { .. }) => {
            let message = e.to_string();
            for part in ["86401 s (exp - iat)", "86400 s", "max_token_age"] {
                assert!(message.contains(part), "{part:?} not in {message}");
            }
        }
        other => panic!("expected LifetimeTooLong, got {other:?}"),
    }
    // Exactly the cap passes; a smaller cap refuses what the default accepts.
    assert!(
        verifier
            .verify(&key.mint(&with(json!({ "exp": NOW + day }))), NOW)
            .await
            .is_ok()
    );
    let mut strict = trust(JwksSource::Inline(jwks(&[&key])));
    strict.max_token_age = std::time::Duration::from_secs(60);
    let strict = WorkloadVerifier::new(vec![strict]).unwrap();
    check_rejected(&strict, &key.mint(&claims()), NOW, too_long).await;
    assert!(
        strict
            .verify(&key.mint(&with(json!({ "exp": NOW + 60 }))), NOW)
            .await
            .is_ok()
    );
}

/// Two keys under one `kid` make a JWKS unusable, inline or fetched.
#[test]
fn a_duplicated_kid_is_refused() {
    let a = PlatformKey::es256("same");
    let b = PlatformKey::es256("same");
    let reason = check_jwks(&jwks(&[&a, &b])).unwrap_err();
    assert!(
        reason.contains("two keys with kid \"same\" (keys 0 and 1)"),
        "{reason}"
    );
    assert!(matches!(
        WorkloadVerifier::new(vec![trust(JwksSource::Inline(jwks(&[&a, &b])))]),
        Err(TrustConfigError::InlineJwks { .. })
    ));
    let c = PlatformKey::es256("other");
    assert_eq!(check_jwks(&jwks(&[&a, &c])), Ok(2));
}
