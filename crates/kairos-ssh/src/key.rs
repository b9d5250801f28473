//! A workload's public key as sent with a request: the OpenSSH one-line format
//! (`type base64 [comment]`), parsed and checked (Ed25519, ECDSA on NIST P-256/384/521,
//! RSA of at least 2048 bits).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::wire::Reader;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A checked public key: its algorithm name and its wire blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: &'static str,
    blob: Vec<u8>,
}

/// Why a public key was refused; the message says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error(
        "the public key is empty; send the one line of your `.pub` file (e.g. `ssh-ed25519 AAAA… you@host`)"
    )]
    Empty,
    #[error(
        "the public key must be one line in OpenSSH format (`ssh-ed25519 AAAA… comment`); got {0} lines"
    )]
    Lines(usize),
    #[error(
        "key type {0:?} is not accepted; use ssh-ed25519 (preferred), ecdsa-sha2-nistp256/384/521 or ssh-rsa with at least 2048 bits"
    )]
    Algorithm(String),
    #[error("the key's base64 part is not valid base64; copy the whole line of your `.pub` file")]
    Base64,
    #[error("the key's data is malformed ({0}); copy the whole line of your `.pub` file")]
    Malformed(&'static str),
    #[error(
        "the line says {line} but the key data is {blob}; copy the whole line of your `.pub` file"
    )]
    Mismatch { line: String, blob: String },
    #[error(
        "the RSA key has {0} bits; RSA keys need at least {MIN_RSA_BITS} (better: use ssh-ed25519)"
    )]
    WeakRsa(usize),
}

const ALGORITHMS: [&str; 5] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

impl PublicKey {
    /// Parses `type base64 [comment]` (surrounding whitespace allowed, one line).
    pub fn parse_openssh(line: &str) -> Result<Self, PublicKeyError> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Err(PublicKeyError::Empty);
        }
        let lines = trimmed.lines().count();
        if lines != 1 {
            return Err(PublicKeyError::Lines(lines));
        }
        let mut parts = trimmed.split_ascii_whitespace();
        let kind = parts.next().unwrap_or_default();
        let algorithm = ALGORITHMS
            .iter()
            .copied()
            .find(|a| *a == kind)
            .ok_or_else(|| PublicKeyError::Algorithm(kind.chars().take(64).collect()))?;
        let b64 = parts.next().ok_or(PublicKeyError::Malformed(
            "no base64 part after the key type",
        ))?;
        let blob = STANDARD.decode(b64).map_err(|_| PublicKeyError::Base64)?;
        let mut r = Reader::new(&blob);
        let inner = r.string().ok_or(PublicKeyError::Malformed("no key type"))?;
        if inner != algorithm.as_bytes() {
            return Err(PublicKeyError::Mismatch {
                line: algorithm.to_owned(),
                blob: String::from_utf8_lossy(inner).chars().take(64).collect(),
            });
        }
        match algorithm {
            "ssh-ed25519" => {
                let pk = r.string().ok_or(PublicKeyError::Malformed("no key"))?;
                if pk.len() != 32 {
                    return Err(PublicKeyError::Malformed("an Ed25519 key is 32 bytes"));
                }
            }
            "ssh-rsa" => {
                let e = r.string().ok_or(PublicKeyError::Malformed("no exponent"))?;
                let n = r.string().ok_or(PublicKeyError::Malformed("no modulus"))?;
                if e.iter().all(|b| *b == 0) {
                    return Err(PublicKeyError::Malformed("the RSA exponent is zero"));
                }
                let bits = mpint_bits(n);
                if bits < MIN_RSA_BITS {
                    return Err(PublicKeyError::WeakRsa(bits));
                }
            }
            _ => {
                let curve = r.string().ok_or(PublicKeyError::Malformed("no curve"))?;
                let (name, point_len) = match algorithm {
                    "ecdsa-sha2-nistp256" => ("nistp256", 65),
                    "ecdsa-sha2-nistp384" => ("nistp384", 97),
                    _ => ("nistp521", 133),
                };
                if curve != name.as_bytes() {
                    return Err(PublicKeyError::Malformed(
                        "the ECDSA curve does not match the key type",
                    ));
                }
                let q = r.string().ok_or(PublicKeyError::Malformed("no point"))?;
                if q.len() != point_len || q.first() != Some(&4) {
                    return Err(PublicKeyError::Malformed(
                        "the ECDSA point is not an uncompressed point of the curve",
                    ));
                }
            }
        }
        if !r.is_empty() {
            return Err(PublicKeyError::Malformed("trailing data after the key"));
        }
        Ok(Self { algorithm, blob })
    }

    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, … or `ssh-rsa`.
    pub fn algorithm(&self) -> &'static str {
        self.algorithm
    }

    /// The certificate type that certifies this key (`ssh-ed25519-cert-v01@openssh.com`).
    pub fn certificate_type(&self) -> String {
        format!("{}-cert-v01@openssh.com", self.algorithm)
    }

    /// The wire blob (`string type` then the key's fields).
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The key's fields without the leading type string: what a certificate embeds.
    pub(crate) fn fields(&self) -> &[u8] {
        let mut r = Reader::new(&self.blob);
        let _ = r.string();
        r.rest()
    }

    /// The one-line form without a comment (`ssh-ed25519 AAAA…`), as stored.
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.algorithm, STANDARD.encode(&self.blob))
    }
}

/// The bit length of a positive mpint (leading zero bytes ignored).
fn mpint_bits(n: &[u8]) -> usize {
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return 0,
    };
    (n.len() - 1) * 8 + (8 - n[0].leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Writer;

    fn line(parts: &[&[u8]]) -> String {
        let mut w = Writer::default();
        for p in parts {
            w.string(p);
        }
        let kind = String::from_utf8_lossy(parts[0]).into_owned();
        format!("{kind} {} c", STANDARD.encode(w.into_bytes()))
    }

    fn check(input: &str, expected: Result<&str, PublicKeyError>) {
        assert_eq!(
            PublicKey::parse_openssh(input).map(|k| k.algorithm()),
            expected,
            "{input}"
        );
    }

    #[test]
    fn keys_are_parsed_and_checked() {
        let ed = line(&[b"ssh-ed25519", &[7u8; 32]]);
        check(&ed, Ok("ssh-ed25519"));
        check(&format!("  {ed}\n"), Ok("ssh-ed25519"));
        check("", Err(PublicKeyError::Empty));
        check(&format!("{ed}\n{ed}"), Err(PublicKeyError::Lines(2)));
        check(
            "ssh-dss AAAA",
            Err(PublicKeyError::Algorithm("ssh-dss".into())),
        );
        check("ssh-ed25519 !!!", Err(PublicKeyError::Base64));
        check(
            &line(&[b"ssh-ed25519", &[7u8; 31]]),
            Err(PublicKeyError::Malformed("an Ed25519 key is 32 bytes")),
        );
        let swapped = ed.replacen("ssh-ed25519", "ssh-rsa", 1);
        check(
            &swapped,
            Err(PublicKeyError::Mismatch {
                line: "ssh-rsa".into(),
                blob: "ssh-ed25519".into(),
            }),
        );
        let mut n = vec![0u8];
        n.extend([0xc1u8; 256]);
        check(&line(&[b"ssh-rsa", &[1, 0, 1], &n]), Ok("ssh-rsa"));
        check(
            &line(&[b"ssh-rsa", &[1, 0, 1], &[0x7f; 128]]),
            Err(PublicKeyError::WeakRsa(1023)),
        );
        let mut q = vec![4u8];
        q.extend([9u8; 64]);
        check(
            &line(&[b"ecdsa-sha2-nistp256", b"nistp256", &q]),
            Ok("ecdsa-sha2-nistp256"),
        );
        check(
            &line(&[b"ecdsa-sha2-nistp256", b"nistp384", &q]),
            Err(PublicKeyError::Malformed(
                "the ECDSA curve does not match the key type",
            )),
        );
        check(
            &line(&[b"ssh-ed25519", &[7u8; 32], b"x"]),
            Err(PublicKeyError::Malformed("trailing data after the key")),
        );
    }
}
