//! The one source of randomness: the operating system's CSPRNG, through `ring`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;

/// The operating system's random number generator failed. Nothing that needs fresh keys,
/// nonces or secrets can proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomUnavailable;

/// Fills `buf` with cryptographically secure random bytes.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), RandomUnavailable> {
    SystemRandom::new().fill(buf).map_err(|_| RandomUnavailable)
}

/// Returns `N` cryptographically secure random bytes.
pub(crate) fn array<const N: usize>() -> Result<[u8; N], RandomUnavailable> {
    let mut buf = [0u8; N];
    fill(&mut buf)?;
    Ok(buf)
}

/// A fresh secret of `len` random bytes, encoded as unpadded base64url.
pub fn random_secret(len: usize) -> Result<SecretString, RandomUnavailable> {
    let mut buf = Zeroizing::new(vec![0u8; len]);
    fill(&mut buf)?;
    Ok(SecretString::from(URL_SAFE_NO_PAD.encode(&*buf)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn random_secret_has_expected_length_and_alphabet() {
        let secret = random_secret(32).unwrap();
        let secret = secret.expose_secret();
        assert_eq!(secret.len(), 43);
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(secret, random_secret(32).unwrap().expose_secret());
    }
}
