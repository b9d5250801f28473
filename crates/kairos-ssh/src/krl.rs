//! OpenSSH key revocation lists (`PROTOCOL.krl`): certificates revoked by serial, one
//! section per CA key. Encoded for sshd's `RevokedKeys`, and read back to verify what a
//! written file really lists.

use crate::wire::{Reader, Writer};

const MAGIC: u64 = 0x5353_484b_524c_0a00; // "SSHKRL\n\0"
const FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;

/// The serials revoked under one CA key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrlSection {
    /// The CA's public key blob (wire format).
    pub ca_key: Vec<u8>,
    /// Revoked serials, each ≥ 1. Encoded sorted and without duplicates.
    pub serials: Vec<u64>,
    /// Revoked serial ranges, inclusive (only ever read; Kairos writes lists).
    pub ranges: Vec<(u64, u64)>,
}

/// A key revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Krl {
    /// Increases with every change (Kairos uses the time of the latest revocation in
    /// milliseconds, so the same revocations give the same bytes on every replica).
    pub version: u64,
    /// Unix seconds.
    pub generated: u64,
    pub comment: String,
    pub sections: Vec<KrlSection>,
}

/// A KRL that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrlError {
    #[error("not a KRL (no SSHKRL magic)")]
    Magic,
    #[error("unsupported KRL format version {0}")]
    Version(u32),
    #[error("the KRL is truncated or malformed ({0})")]
    Malformed(&'static str),
}

impl Krl {
    /// The binary KRL, as `ssh-keygen -k` would write it for these serials.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(MAGIC);
        w.u32(FORMAT_VERSION);
        w.u64(self.version);
        w.u64(self.generated);
        w.u64(0); // flags
        w.string(b""); // reserved
        w.string(self.comment.as_bytes());
        for section in &self.sections {
            let mut serials: Vec<u64> =
                section.serials.iter().copied().filter(|s| *s > 0).collect();
            serials.sort_unstable();
            serials.dedup();
            let mut s = Writer::default();
            s.string(&section.ca_key);
            s.string(b""); // reserved
            if !serials.is_empty() {
                let mut list = Writer::default();
                for serial in serials {
                    list.u64(serial);
                }
                s.u8(CERT_SERIAL_LIST);
                s.string(&list.into_bytes());
            }
            for (lo, hi) in &section.ranges {
                let mut range = Writer::default();
                range.u64(*lo);
                range.u64(*hi);
                s.u8(CERT_SERIAL_RANGE);
                s.string(&range.into_bytes());
            }
            w.u8(SECTION_CERTIFICATES);
            w.string(&s.into_bytes());
        }
        w.into_bytes()
    }

    /// Reads a KRL's header and its certificate serial lists and ranges; other sections
    /// and sub-sections are skipped.
    pub fn parse(bytes: &[u8]) -> Result<Self, KrlError> {
        let bad = KrlError::Malformed;
        let mut r = Reader::new(bytes);
        if r.u64() != Some(MAGIC) {
            return Err(KrlError::Magic);
        }
        let format = r.u32().ok_or(bad("header"))?;
        if format != FORMAT_VERSION {
            return Err(KrlError::Version(format));
        }
        let version = r.u64().ok_or(bad("version"))?;
        let generated = r.u64().ok_or(bad("generated date"))?;
        let _flags = r.u64().ok_or(bad("flags"))?;
        let _reserved = r.string().ok_or(bad("reserved"))?;
        let comment = r.string().ok_or(bad("comment"))?;
        let mut sections = Vec::new();
        while !r.is_empty() {
            let kind = r.u8().ok_or(bad("section type"))?;
            let data = r.string().ok_or(bad("section"))?;
            if kind != SECTION_CERTIFICATES {
                continue;
            }
            let mut s = Reader::new(data);
            let ca_key = s.string().ok_or(bad("CA key"))?.to_vec();
            let _reserved = s.string().ok_or(bad("reserved"))?;
            let mut section = KrlSection {
                ca_key,
                serials: Vec::new(),
                ranges: Vec::new(),
            };
            while !s.is_empty() {
                let sub = s.u8().ok_or(bad("certificate section type"))?;
                let data = s.string().ok_or(bad("certificate section"))?;
                let mut d = Reader::new(data);
                match sub {
                    CERT_SERIAL_LIST => {
                        while !d.is_empty() {
                            section.serials.push(d.u64().ok_or(bad("serial list"))?);
                        }
                    }
                    CERT_SERIAL_RANGE => {
                        let lo = d.u64().ok_or(bad("serial range"))?;
                        let hi = d.u64().ok_or(bad("serial range"))?;
                        section.ranges.push((lo, hi));
                    }
                    CERT_SERIAL_BITMAP => {
                        let offset = d.u64().ok_or(bad("serial bitmap"))?;
                        let bitmap = d.string().ok_or(bad("serial bitmap"))?;
                        // An mpint: big-endian, bit 0 of the last byte is `offset`.
                        for (i, byte) in bitmap.iter().rev().enumerate() {
                            for bit in 0..8u64 {
                                if byte & (1 << bit) != 0 {
                                    let at = u64::try_from(i).map_err(|_| bad("serial bitmap"))?;
                                    let serial = at
                                        .checked_mul(8)
                                        .and_then(|b| b.checked_add(bit))
                                        .and_then(|b| b.checked_add(offset))
                                        .ok_or(bad("serial bitmap"))?;
                                    section.serials.push(serial);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            sections.push(section);
        }
        Ok(Self {
            version,
            generated,
            comment: String::from_utf8_lossy(comment).into_owned(),
            sections,
        })
    }

    /// Whether a certificate with `serial` signed by the CA with this key blob is revoked.
    pub fn revokes(&self, ca_key: &[u8], serial: u64) -> bool {
        self.sections.iter().any(|s| {
            s.ca_key == ca_key
                && (s.serials.contains(&serial)
                    || s.ranges
                        .iter()
                        .any(|(lo, hi)| (*lo..=*hi).contains(&serial)))
        })
    }
}
