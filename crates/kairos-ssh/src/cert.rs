//! OpenSSH user certificates (`PROTOCOL.certkeys`) signed by an Ed25519 CA.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::PublicKey;
use crate::wire::Writer;

/// `SSH2_CERT_TYPE_USER`.
const USER_CERT: u32 = 1;

/// The extensions a grant's certificate carries when its entitlement names none: an
/// interactive terminal only. Forwarding (agent, ports, X11) and `~/.ssh/rc` are off
/// unless the entitlement lists them.
pub const DEFAULT_EXTENSIONS: [&str; 1] = ["permit-pty"];

/// The extensions an entitlement may list (OpenSSH's user-certificate extensions).
pub const KNOWN_EXTENSIONS: [&str; 6] = [
    "no-touch-required",
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// What a user certificate says. The nonce and serial come from the caller (this crate
/// draws no random numbers).
#[derive(Debug, Clone)]
pub struct UserCertificate<'a> {
    pub key: &'a PublicKey,
    pub nonce: [u8; 32],
    /// Unique per CA; what a KRL lists.
    pub serial: u64,
    /// Shown in sshd's log at every login.
    pub key_id: String,
    /// The user names (principals) it may log in as.
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds: sshd refuses the certificate from this second on.
    pub valid_before: u64,
    /// Critical option `force-command`.
    pub force_command: Option<String>,
    /// Critical option `source-address` (CIDRs, joined with commas).
    pub source_address: Vec<String>,
    /// Extension names (flags, empty data).
    pub extensions: Vec<String>,
}

/// A certificate's bytes up to and including the CA key: what the CA signs.
#[derive(Debug, Clone)]
pub struct CertificateBody {
    cert_type: String,
    bytes: Vec<u8>,
}

/// A signed certificate in OpenSSH's one-line format (`…-cert-v01@openssh.com AAAA…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    line: String,
}

impl UserCertificate<'_> {
    /// The body to sign with the CA whose Ed25519 public key is `ca_public`.
    pub fn body(&self, ca_public: &[u8; 32]) -> CertificateBody {
        let cert_type = self.key.certificate_type();
        let mut w = Writer::default();
        w.string(cert_type.as_bytes());
        w.string(&self.nonce);
        w.raw(self.key.fields());
        w.u64(self.serial);
        w.u32(USER_CERT);
        w.string(self.key_id.as_bytes());
        let mut principals = Writer::default();
        for p in &self.principals {
            principals.string(p.as_bytes());
        }
        w.string(&principals.into_bytes());
        w.u64(self.valid_after);
        w.u64(self.valid_before);
        // Critical options and extensions: sorted by name, each `string name, string data`
        // where data is itself a string for options with a value, empty for flags.
        let mut options: Vec<(&str, Option<String>)> = Vec::new();
        if let Some(cmd) = &self.force_command {
            options.push(("force-command", Some(cmd.clone())));
        }
        if !self.source_address.is_empty() {
            options.push(("source-address", Some(self.source_address.join(","))));
        }
        w.string(&named_list(options));
        let mut extensions: Vec<&str> = self.extensions.iter().map(String::as_str).collect();
        extensions.sort_unstable();
        extensions.dedup();
        w.string(&named_list(
            extensions.into_iter().map(|e| (e, None)).collect(),
        ));
        w.string(b""); // reserved
        w.string(&crate::ed25519_public_blob(ca_public));
        CertificateBody {
            cert_type,
            bytes: w.into_bytes(),
        }
    }
}

fn named_list(mut items: Vec<(&str, Option<String>)>) -> Vec<u8> {
    items.sort_by(|a, b| a.0.cmp(b.0));
    let mut w = Writer::default();
    for (name, value) in items {
        w.string(name.as_bytes());
        match value {
            Some(v) => {
                let mut inner = Writer::default();
                inner.string(v.as_bytes());
                w.string(&inner.into_bytes());
            }
            None => w.string(b""),
        }
    }
    w.into_bytes()
}

impl CertificateBody {
    /// The bytes the CA's Ed25519 key signs.
    pub fn signed_data(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends the CA's Ed25519 signature over [`Self::signed_data`].
    pub fn finish(self, signature: &[u8; 64], comment: &str) -> Certificate {
        let mut sig = Writer::default();
        sig.string(b"ssh-ed25519");
        sig.string(signature);
        let mut w = Writer::default();
        w.raw(&self.bytes);
        w.string(&sig.into_bytes());
        let b64 = STANDARD.encode(w.into_bytes());
        let line = if comment.is_empty() {
            format!("{} {b64}", self.cert_type)
        } else {
            format!("{} {b64} {comment}", self.cert_type)
        };
        Certificate { line }
    }
}

impl Certificate {
    /// The one-line form, as `ssh -o CertificateFile=` reads it.
    pub fn to_openssh(&self) -> &str {
        &self.line
    }
}
