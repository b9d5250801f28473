use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kairos_crypto::issuer::{
    AccessClaims, KeyRing, SignError, SigningAlg, SigningKey, TaskClaim, TokenError,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const ISSUER: &str = "https://kairos.example.test";
const NOW: i64 = 1_700_000_000;
const ALGS: [SigningAlg; 2] = [SigningAlg::Es256, SigningAlg::EdDsa];

fn claims(now: i64) -> AccessClaims {
    AccessClaims {
        iss: ISSUER.to_owned(),
        sub: "billing-batch".to_owned(),
        client_id: "billing-batch".to_owned(),
        aud: "postgres-prod".to_owned(),
        exp: now + 900,
        iat: now,
        nbf: now,
        jti: "0190f3f5-7b3a-7c1e-9d2a-3f1e2d4c5b6a".to_owned(),
        scope: "db:read db:write".to_owned(),
        task: TaskClaim {
            kind: "incident".to_owned(),
            reference: "INC-4711".to_owned(),
            reason: "replay failed invoices".to_owned(),
        },
        entitlement: "billing-db-writer".to_owned(),
        cnf: None,
        spiffe_id: None,
    }
}

fn ring(alg: SigningAlg) -> KeyRing {
    KeyRing::new(ISSUER, SigningKey::generate(alg).unwrap())
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn header_of(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&segments(token)[0]).unwrap()).unwrap()
}

/// Asserts that `token` is rejected with an error `expected` accepts, and that the error
/// message does not echo the token.
fn check_rejected(ring: &KeyRing, token: &str, now: i64, expected: fn(&TokenError) -> bool) {
    match ring.verify(token, now) {
        Ok(claims) => panic!("token was accepted: {claims:?}"),
        Err(err) => {
            assert!(expected(&err), "unexpected error: {err:?}");
            let message = err.to_string();
            for segment in segments(token).iter().filter(|s| s.len() > 8) {
                assert!(!message.contains(segment.as_str()), "{message}");
            }
        }
    }
}

#[test]
fn sign_verify_round_trip() {
    for alg in ALGS {
        let ring = ring(alg);
        let token = ring.sign(&claims(NOW)).unwrap();
        assert_eq!(ring.verify(&token, NOW + 1).unwrap(), claims(NOW));

        let header = header_of(&token);
        assert_eq!(header["alg"], alg.jws_name());
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], ring.current_kid());
    }
}

#[test]
fn task_reference_is_named_ref_on_the_wire() {
    let token = ring(SigningAlg::EdDsa).sign(&claims(NOW)).unwrap();
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&segments(&token)[1]).unwrap()).unwrap();
    assert_eq!(payload["task"]["ref"], "INC-4711");
    assert_eq!(payload["scope"], "db:read db:write");
}

/// jsonwebtoken, an independent implementation, verifies our tokens with our JWKS.
#[test]
fn tokens_verify_against_published_jwks_with_an_independent_decoder() {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    for (alg, jwt_alg) in [
        (SigningAlg::Es256, Algorithm::ES256),
        (SigningAlg::EdDsa, Algorithm::EdDSA),
    ] {
        let ring = ring(alg);
        let token = ring.sign(&claims(now)).unwrap();
        let jwks: JwkSet = serde_json::from_value(ring.jwks()).unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let jwk = jwks.find(&kid).unwrap();
        let mut validation = Validation::new(jwt_alg);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&["postgres-prod"]);
        let decoded = jsonwebtoken::decode::<AccessClaims>(
            &token,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims, claims(now));
    }
}

#[test]
fn jwks_members_follow_the_key_type() {
    let es = SigningKey::generate(SigningAlg::Es256)
        .unwrap()
        .public_jwk();
    assert_eq!(es["kty"], "EC");
    assert_eq!(es["crv"], "P-256");
    assert_eq!(es["alg"], "ES256");
    assert_eq!(es["use"], "sig");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(es["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(es["y"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );

    let ed = SigningKey::generate(SigningAlg::EdDsa)
        .unwrap()
        .public_jwk();
    assert_eq!(ed["kty"], "OKP");
    assert_eq!(ed["crv"], "Ed25519");
    assert_eq!(ed["alg"], "EdDSA");
    assert_eq!(ed["use"], "sig");
    assert!(ed.get("y").is_none());
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(ed["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(ed["kid"].as_str().unwrap().len(), 22);
}

#[test]
fn rotated_key_verifies_until_pruned() {
    let mut ring = ring(SigningAlg::Es256);
    let old_kid = ring.current_kid().to_owned();
    let old_token = ring.sign(&claims(NOW)).unwrap();

    ring.rotate(
        SigningKey::generate(SigningAlg::EdDsa).unwrap(),
        NOW + 10,
        Duration::from_secs(900),
    );
    assert_ne!(ring.current_kid(), old_kid);
    let new_token = ring.sign(&claims(NOW + 20)).unwrap();
    assert_eq!(header_of(&new_token)["kid"], ring.current_kid());

    let kids = |ring: &KeyRing| -> Vec<String> {
        ring.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        kids(&ring),
        [ring.current_kid().to_owned(), old_kid.clone()]
    );
    assert!(ring.verify(&old_token, NOW + 30).is_ok());
    assert!(ring.verify(&new_token, NOW + 30).is_ok());

    // retire_until = NOW + 10 + 900.
    assert!(ring.prune(NOW + 909).is_empty());
    assert!(ring.verify(&old_token, NOW + 899).is_ok());
    assert_eq!(ring.prune(NOW + 910), [old_kid]);
    assert_eq!(kids(&ring), [ring.current_kid().to_owned()]);
    check_rejected(&ring, &old_token, NOW + 30, |err| {
        matches!(err, TokenError::UnknownKey(_))
    });
    assert!(ring.verify(&new_token, NOW + 30).is_ok());
}

#[test]
fn keys_reload_from_pkcs8() {
    for alg in ALGS {
        let key = SigningKey::generate(alg).unwrap();
        let reloaded =
            SigningKey::from_pkcs8(key.kid().to_owned(), alg, key.pkcs8_der().expose_secret())
                .unwrap();
        assert_eq!(reloaded.public_jwk(), key.public_jwk());

        let token = KeyRing::new(ISSUER, key).sign(&claims(NOW)).unwrap();
        assert!(KeyRing::new(ISSUER, reloaded).verify(&token, NOW).is_ok());
    }
}

#[test]
fn retired_keys_can_be_restored_after_restart() {
    let old = SigningKey::generate(SigningAlg::Es256).unwrap();
    let old_public = old.verifying_key().clone();
    let token = KeyRing::new(ISSUER, old).sign(&claims(NOW)).unwrap();

    let mut restarted = ring(SigningAlg::EdDsa);
    restarted.insert_retired(old_public, NOW + 900);
    assert!(restarted.verify(&token, NOW + 1).is_ok());
    assert_eq!(restarted.retired().count(), 1);
}

#[test]
fn invalid_keys_are_refused_on_load() {
    let ed = SigningKey::generate(SigningAlg::EdDsa).unwrap();
    let der = ed.pkcs8_der().expose_secret();
    assert!(SigningKey::from_pkcs8("kid".to_owned(), SigningAlg::Es256, der).is_err());
    assert!(SigningKey::from_pkcs8("kid".to_owned(), SigningAlg::EdDsa, b"junk").is_err());
    assert!(SigningKey::from_pkcs8(String::new(), SigningAlg::EdDsa, der).is_err());
    assert!(SigningKey::from_pkcs8("a.b".to_owned(), SigningAlg::EdDsa, der).is_err());
    assert!(SigningKey::from_pkcs8("ok-kid_1".to_owned(), SigningAlg::EdDsa, der).is_ok());
}

#[test]
fn debug_does_not_show_private_key() {
    let key = SigningKey::generate(SigningAlg::Es256).unwrap();
    assert_eq!(
        format!("{key:?}"),
        format!("SigningKey {{ kid: {:?}, alg: Es256, .. }}", key.kid())
    );
}

#[test]
fn alg_none_is_rejected() {
    let ring = ring(SigningAlg::Es256);
    let token = ring.sign(&claims(NOW)).unwrap();
    for alg in ["none", "None", "HS256", "RS256", "ES512"] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": ring.current_kid() });
        let forged = format!("{}.{}.", b64_json(&header), segments(&token)[1]);
        check_rejected(&ring, &forged, NOW, |err| {
            matches!(err, TokenError::UnsupportedAlgorithm(_))
        });
    }
}

#[test]
fn tampered_payload_is_rejected() {
    for alg in ALGS {
        let ring = ring(alg);
        let token = ring.sign(&claims(NOW)).unwrap();
        let mut escalated = claims(NOW);
        escalated.scope = "db:admin".to_owned();
        let parts = segments(&token);
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64_json(&serde_json::to_value(&escalated).unwrap()),
            parts[2]
        );
        check_rejected(&ring, &tampered, NOW, |err| {
            matches!(err, TokenError::BadSignature { .. })
        });
    }
}

#[test]
fn unknown_kid_is_rejected() {
    let ring = ring(SigningAlg::Es256);
    let token = ring.sign(&claims(NOW)).unwrap();
    let parts = segments(&token);
    let header = json!({ "alg": "ES256", "typ": "at+jwt", "kid": "no-such-key" });
    let forged = format!("{}.{}.{}", b64_json(&header), parts[1], parts[2]);
    check_rejected(
        &ring,
        &forged,
        NOW,
        |err| matches!(err, TokenError::UnknownKey(kid) if kid == "no-such-key"),
    );

    // A token from another ring (another key) is unknown here.
    let other = ring_with_issuer(ISSUER, SigningAlg::Es256)
        .sign(&claims(NOW))
        .unwrap();
    check_rejected(&ring, &other, NOW, |err| {
        matches!(err, TokenError::UnknownKey(_))
    });
}

#[test]
fn alg_must_match_the_key() {
    // An EdDSA header naming an ES256 key must not be checked as EdDSA.
    let ring = ring(SigningAlg::Es256);
    let token = ring.sign(&claims(NOW)).unwrap();
    let parts = segments(&token);
    let header = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": ring.current_kid() });
    let forged = format!("{}.{}.{}", b64_json(&header), parts[1], parts[2]);
    check_rejected(&ring, &forged, NOW, |err| {
        matches!(err, TokenError::BadSignature { .. })
    });
}

#[test]
fn header_must_say_at_jwt() {
    let ring = ring(SigningAlg::EdDsa);
    let token = ring.sign(&claims(NOW)).unwrap();
    let parts = segments(&token);
    for header in [
        json!({ "alg": "EdDSA", "kid": ring.current_kid() }),
        json!({ "alg": "EdDSA", "typ": "JWT", "kid": ring.current_kid() }),
    ] {
        let forged = format!("{}.{}.{}", b64_json(&header), parts[1], parts[2]);
        check_rejected(&ring, &forged, NOW, |err| {
            matches!(err, TokenError::WrongType)
        });
    }
}

#[test]
fn time_window_is_enforced() {
    let ring = ring(SigningAlg::EdDsa);
    let token = ring.sign(&claims(NOW)).unwrap();
    assert!(ring.verify(&token, NOW).is_ok());
    assert!(ring.verify(&token, NOW + 899).is_ok());
    check_rejected(
        &ring,
        &token,
        NOW + 900,
        |err| matches!(err, TokenError::Expired { exp, .. } if *exp == NOW + 900),
    );
    check_rejected(&ring, &token, NOW - 1, |err| {
        matches!(err, TokenError::NotYetValid { .. })
    });
}

fn ring_with_issuer(issuer: &str, alg: SigningAlg) -> KeyRing {
    KeyRing::new(issuer, SigningKey::generate(alg).unwrap())
}

#[test]
fn issuer_must_match() {
    let key = SigningKey::generate(SigningAlg::EdDsa).unwrap();
    let copy = SigningKey::from_pkcs8(
        key.kid().to_owned(),
        key.alg(),
        key.pkcs8_der().expose_secret(),
    )
    .unwrap();
    let ours = KeyRing::new(ISSUER, key);
    let theirs = KeyRing::new("https://other.example.test", copy);
    let mut foreign = claims(NOW);
    foreign.iss = "https://other.example.test".to_owned();
    let token = theirs.sign(&foreign).unwrap();
    check_rejected(&ours, &token, NOW, |err| {
        matches!(err, TokenError::WrongIssuer { .. })
    });

    assert!(matches!(
        ours.sign(&foreign),
        Err(SignError::IssuerMismatch { .. })
    ));
}

#[test]
fn garbage_is_malformed() {
    let ring = ring(SigningAlg::EdDsa);
    for garbage in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.e30.",
        "e30.e30.",
        &"a".repeat(20_000),
    ] {
        check_rejected(&ring, garbage, NOW, |err| {
            matches!(err, TokenError::Malformed(_))
        });
    }
}

#[test]
fn signing_alg_names() {
    for (alg, name) in [(SigningAlg::Es256, "es256"), (SigningAlg::EdDsa, "eddsa")] {
        assert_eq!(alg.to_string(), name);
        assert_eq!(name.parse::<SigningAlg>().unwrap(), alg);
        assert_eq!(name.to_uppercase().parse::<SigningAlg>().unwrap(), alg);
        assert_eq!(serde_json::to_value(alg).unwrap(), json!(name));
        assert_eq!(
            serde_json::from_value::<SigningAlg>(json!(name)).unwrap(),
            alg
        );
    }
    assert!("rs256".parse::<SigningAlg>().is_err());
}
