//! Kairos's native TLS listener.
//!
//! - [`TlsSettings`] names the PEM files (certificate chain, private key, optionally the CAs
//!   that sign client certificates) and the setting each came from, so that every error
//!   says which file and which key or flag to fix.
//! - [`server_config`] builds the rustls configuration: TLS 1.2 and 1.3 only, on the ring
//!   provider; ALPN `h2` and `http/1.1`; client certificates not asked for, optional or
//!   required.
//! - [`ReloadingCert`] serves the certificate: on a handshake, at most once a second, it
//!   looks at the files' size, modification time and inode; when they changed it reads them
//!   again, and new handshakes get the new pair. A pair that does not load (unparsable,
//!   key and certificate not matching, a file missing half-way through a replacement) is
//!   logged and the previous pair kept. There is no background loop.
//! - [`serve`] accepts TCP connections, completes the handshake (at most
//!   [`HANDSHAKE_TIMEOUT`]) and serves an axum [`Router`](axum::Router) over HTTP/1.1 or
//!   HTTP/2, with graceful shutdown. Each request carries the peer's address as
//!   [`axum::extract::ConnectInfo<SocketAddr>`] and, when the client showed a certificate
//!   that verified, the chain as [`PeerCertificates`].
//!
//! Invariant: nothing here logs key material; errors name files, never their contents.

mod files;
mod reload;
mod serve;
mod verify;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

pub use files::{load_certified_key, load_client_roots};
pub use reload::ReloadingCert;
pub use serve::{HANDSHAKE_TIMEOUT, serve};

/// A PEM file and the setting that named it (e.g. `[server] tls_key_file in kairos.toml`
/// or `--tls-key-file`), for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    pub setting: String,
}

impl PemFile {
    pub fn new(path: impl Into<PathBuf>, setting: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            setting: setting.into(),
        }
    }
}

impl fmt::Display for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (set by {})", self.path.display(), self.setting)
    }
}

/// Whether clients are asked for a certificate, and the CAs (a PEM bundle) that must have
/// signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    NotRequested,
    /// A client without a certificate is served; one whose certificate does not verify is
    /// refused at the handshake. A chain that is refused only because a certificate's
    /// validity has passed is let through (it verified at the moment it expired): the
    /// application checks the time of what it reads (`PeerCertificates`) with its own
    /// clock, and says that the certificate expired.
    Optional(PemFile),
    /// A client without a verified certificate is refused at the handshake.
    Required(PemFile),
}

/// What the listener needs: the certificate (chain) and key files, and client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PemFile,
    pub key: PemFile,
    pub client_auth: ClientAuth,
}

/// The verified certificate chain a client showed, leaf first: a request extension that
/// handlers extract (`Extension<PeerCertificates>`). Absent when the client showed none.
/// In the optional mode the chain may have expired (see [`ClientAuth::Optional`]): check
/// the leaf's validity before trusting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCertificates {
    /// The client's own certificate (DER).
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }
}

/// Why TLS could not be set up or a certificate could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {file}: {source}")]
    Read {
        what: &'static str,
        file: PemFile,
        source: std::io::Error,
    },
    #[error(
        "the {what} {file} is not PEM that can be read ({detail}); it should hold `-----BEGIN {label}-----` blocks"
    )]
    BadPem {
        what: &'static str,
        label: &'static str,
        file: PemFile,
        detail: String,
    },
    #[error("the {what} {file} holds no certificate (`-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { what: &'static str, file: PemFile },
    #[error(
        "the key file {0} holds no private key (`-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)"
    )]
    NoKey(PemFile),
    #[error("the private key in {file} cannot be used: {detail}")]
    BadKey { file: PemFile, detail: String },
    #[error("the certificate in {file} cannot be used: {detail}")]
    BadCertificate { file: PemFile, detail: String },
    #[error(
        "the private key in {key} does not belong to the certificate in {cert}: give the key the certificate was issued for"
    )]
    KeyMismatch { cert: PemFile, key: PemFile },
    #[error("the client CA file {file} cannot be used: {detail}")]
    ClientCa { file: PemFile, detail: String },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The rustls server configuration for `settings`: TLS 1.2 and 1.3 on ring, the
/// certificate from `cert` (see [`ReloadingCert`]), client certificates as configured.
pub fn server_config(
    settings: &TlsSettings,
    cert: Arc<ReloadingCert>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match &settings.client_auth {
        ClientAuth::NotRequested => builder.with_no_client_auth(),
        ClientAuth::Optional(file) | ClientAuth::Required(file) => {
            let roots = Arc::new(load_client_roots(file)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match &settings.client_auth {
                ClientAuth::Optional(_) => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|e| TlsError::ClientCa {
                file: file.clone(),
                detail: e.to_string(),
            })?;
            let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match &settings
                .client_auth
            {
                ClientAuth::Optional(_) => Arc::new(verify::ExpiryAtRequest { inner: verifier }),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
