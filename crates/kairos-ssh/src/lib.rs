//! OpenSSH user certificates and key revocation lists (KRLs) as pure code.
//!
//! Nothing here does IO, draws random numbers or holds a private key: the broker passes
//! the nonce and the serial in, and the CA's signature is made by `kairos-crypto` over the
//! bytes [`CertificateBody::signed_data`] returns. The formats are OpenSSH's
//! `PROTOCOL.certkeys` and `PROTOCOL.krl`.

mod cert;
mod key;
mod krl;
mod wire;

pub use cert::{
    Certificate, CertificateBody, DEFAULT_EXTENSIONS, KNOWN_EXTENSIONS, UserCertificate,
};
pub use key::{PublicKey, PublicKeyError};
pub use krl::{Krl, KrlError, KrlSection};

/// The OpenSSH one-line form of an Ed25519 public key (`ssh-ed25519 AAAA… comment`),
/// as sshd's `TrustedUserCAKeys` reads it.
pub fn ed25519_public_line(public: &[u8; 32], comment: &str) -> String {
    let blob = ed25519_public_blob(public);
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, blob);
    if comment.is_empty() {
        format!("ssh-ed25519 {b64}")
    } else {
        format!("ssh-ed25519 {b64} {comment}")
    }
}

/// The wire blob of an Ed25519 public key (`string "ssh-ed25519", string key`).
pub fn ed25519_public_blob(public: &[u8; 32]) -> Vec<u8> {
    let mut w = wire::Writer::default();
    w.string(b"ssh-ed25519");
    w.string(public);
    w.into_bytes()
}
