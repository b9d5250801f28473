//! Platform JWT verification (`kairos_crypto::workload::WorkloadVerifier::verify`) on
//! arbitrary input, against one trusted issuer with a fixed JWKS (an Ed25519, a P-256 and
//! an RSA key). Must never panic, and its errors stay short whatever the token holds.
//!
//! The first input byte picks what the rest is:
//! - `0` (mod 3): the token string itself (signatures will not verify: this explores the
//!   parsing up to the signature check);
//! - `1`: a payload, put under a fixed EdDSA header and signed with the trusted Ed25519
//!   key, so that the claim checks after the signature (`exp`, `nbf`, `aud`, `sub`) run;
//! - `2`: `header 0xFF payload`, both signed with that key (header fields, `kid`
//!   selection, `crit`).
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kairos_crypto::workload::{IssuerTrust, JwksSource, WorkloadVerifier};
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

const ISSUER: &str = "https://ci.fuzz.example";
const AUDIENCE: &str = "kairos";
/// The verification time. Seeds carry `exp` after it.
const NOW: i64 = 1_750_000_000;
/// The trusted Ed25519 key's seed: fixed, so that every run (and every saved crash) signs
/// the same way. It protects nothing.
const ED25519_SEED: [u8; 32] = *b"kairos-fuzz-ed25519-seed-0000001";
/// P-256's generator point, a valid public key (of private key 1).
const P256_X: &str = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY";
const P256_Y: &str = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";
/// The RSA test key of kairos-crypto's tests.
const RSA_JWK: &str =
    include_str!("../../crates/kairos-crypto/tests/fixtures/rsa_workload_jwk.json");

struct Fixture {
    runtime: tokio::runtime::Runtime,
    verifier: WorkloadVerifier,
    signer: Ed25519KeyPair,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| match build_fixture() {
        Ok(fixture) => fixture,
        Err(e) => panic!("fuzz setup failed: {e}"),
    })
}

fn build_fixture() -> Result<Fixture, String> {
    let signer =
        Ed25519KeyPair::from_seed_unchecked(&ED25519_SEED).map_err(|e| format!("ed25519: {e}"))?;
    let rsa: Value = serde_json::from_str(RSA_JWK).map_err(|e| format!("RSA JWK: {e}"))?;
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "fuzz-ed25519", "use": "sig",
         "x": URL_SAFE_NO_PAD.encode(signer.public_key().as_ref())},
        {"kty": "EC", "crv": "P-256", "kid": "fuzz-p256", "alg": "ES256", "x": P256_X, "y": P256_Y},
        rsa,
        // Skipped as unusable, as a real JWKS may mix in such keys.
        {"kty": "EC", "crv": "P-384", "kid": "fuzz-p384", "x": "AA", "y": "AA"},
    ]});
    let verifier = WorkloadVerifier::new(vec![IssuerTrust {
        name: "fuzz".to_owned(),
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        jwks: JwksSource::Inline(jwks),
        // The default cap: tokens living longer are refused, a path worth fuzzing too.
        max_token_age: std::time::Duration::from_secs(24 * 3600),
        spiffe_trust_domain: None,
    }])
    .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    Ok(Fixture {
        runtime,
        verifier,
        signer,
    })
}

fn signed(signer: &Ed25519KeyPair, header: &[u8], payload: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = signer.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let token = match mode % 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => signed(
            &fixture.signer,
            br#"{"alg":"EdDSA","kid":"fuzz-ed25519","typ":"JWT"}"#,
            rest,
        ),
        _ => {
            let (header, payload) = match rest.iter().position(|&b| b == 0xFF) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &b"{}"[..]),
            };
            signed(&fixture.signer, header, payload)
        }
    };
    match fixture
        .runtime
        .block_on(fixture.verifier.verify(&token, NOW))
    {
        Ok(claims) => {
            assert_eq!(claims.issuer_name, "fuzz");
            assert_eq!(claims.claims.get("iss"), Some(&json!(ISSUER)));
            assert_eq!(claims.claims.get("sub"), Some(&json!(claims.sub)));
            assert!(claims.claims.get("exp").is_some(), "accepted without exp");
        }
        Err(e) => {
            // Untrusted parts are quoted as excerpts: a message never grows with the token.
            let message = e.to_string();
            assert!(message.len() <= 1024, "{} bytes: {message}", message.len());
        }
    }
});
