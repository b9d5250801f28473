use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kairos_crypto::seal::{MasterKey, SealError};
use secrecy::ExposeSecret;

const AAD: &[u8] = b"signing_keys/kid-1/pkcs8";

fn open(key: &MasterKey, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, SealError> {
    key.open(sealed, aad)
        .map(|plain| plain.expose_secret().to_vec())
}

#[test]
fn round_trip() {
    let key = MasterKey::generate().unwrap();
    for plaintext in [&b""[..], b"x", b"a database password", &[0u8; 1000]] {
        let sealed = key.seal(plaintext, AAD).unwrap();
        assert!(sealed.starts_with("v1."));
        assert_eq!(open(&key, &sealed, AAD).unwrap(), plaintext);
    }
}

#[test]
fn same_plaintext_seals_differently() {
    let key = MasterKey::generate().unwrap();
    assert_ne!(
        key.seal(b"secret", AAD).unwrap(),
        key.seal(b"secret", AAD).unwrap()
    );
}

#[test]
fn wrong_aad_is_rejected() {
    let key = MasterKey::generate().unwrap();
    let sealed = key.seal(b"secret", AAD).unwrap();
    assert_eq!(
        open(&key, &sealed, b"other/row"),
        Err(SealError::OpenFailed)
    );
    assert_eq!(open(&key, &sealed, b""), Err(SealError::OpenFailed));
}

#[test]
fn wrong_key_is_rejected() {
    let sealed = MasterKey::generate().unwrap().seal(b"secret", AAD).unwrap();
    let other = MasterKey::generate().unwrap();
    assert_eq!(open(&other, &sealed, AAD), Err(SealError::OpenFailed));
}

#[test]
fn tampering_is_rejected() {
    let key = MasterKey::generate().unwrap();
    let sealed = key.seal(b"secret value", AAD).unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
    // Flip one bit in the nonce, the ciphertext and the tag in turn.
    for index in [0, 12, raw.len() - 1] {
        let mut tampered = raw.clone();
        tampered[index] ^= 0x01;
        let tampered = format!("v1.{}", URL_SAFE_NO_PAD.encode(&tampered));
        assert_eq!(open(&key, &tampered, AAD), Err(SealError::OpenFailed));
    }
    let truncated = format!("v1.{}", URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]));
    assert_eq!(open(&key, &truncated, AAD), Err(SealError::OpenFailed));
}

#[test]
fn malformed_values_are_rejected() {
    let key = MasterKey::generate().unwrap();
    let sealed = key.seal(b"secret", AAD).unwrap();
    let checks = [
        sealed.replacen("v1.", "v2.", 1),
        sealed[3..].to_owned(),
        "v1.".to_owned(),
        "v1.AAAA".to_owned(),
        "v1.not base64!".to_owned(),
    ];
    for malformed in checks {
        assert_eq!(
            open(&key, &malformed, AAD),
            Err(SealError::Malformed),
            "{malformed}"
        );
    }
}

#[test]
fn key_survives_base64_round_trip() {
    let key = MasterKey::generate().unwrap();
    let sealed = key.seal(b"secret", AAD).unwrap();
    let encoded = key.to_base64();
    let reloaded = MasterKey::from_base64(&format!("{}\n", encoded.expose_secret())).unwrap();
    assert_eq!(open(&reloaded, &sealed, AAD).unwrap(), b"secret");
}

#[test]
fn key_parsing_rejects_wrong_lengths_and_garbage() {
    for bad in ["", "AAAA", "not base64 at all", &"A".repeat(100)] {
        assert_eq!(
            MasterKey::from_base64(bad).unwrap_err(),
            SealError::InvalidKey,
            "{bad}"
        );
    }
    // 32 bytes as unpadded base64url are accepted too.
    assert!(MasterKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
}

#[test]
fn debug_does_not_show_the_key() {
    let key = MasterKey::from_base64(&URL_SAFE_NO_PAD.encode([0xAB; 32])).unwrap();
    let debug = format!("{key:?}");
    assert_eq!(debug, "MasterKey([REDACTED])");
}
