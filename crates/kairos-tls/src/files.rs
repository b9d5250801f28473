//! Reading PEM files into what rustls needs, with errors that name the file.

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::{PemFile, TlsError};

fn read(what: &'static str, file: &PemFile) -> Result<Vec<u8>, TlsError> {
    std::fs::read(&file.path).map_err(|source| TlsError::Read {
        what,
        file: file.clone(),
        source,
    })
}

fn certificates(
    what: &'static str,
    file: &PemFile,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, file)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            label: "CERTIFICATE",
            file: file.clone(),
            detail: pem_error(&e),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            file: file.clone(),
        });
    }
    Ok(chain)
}

/// The PEM error without quoting the file (a key file's bytes must not reach a log).
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a block is not valid base64".into(),
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "no PEM block found".into(),
        _ => "malformed PEM".into(),
    }
}

/// The certificate chain of `cert` with the private key of `key`, checked to belong
/// together.
pub fn load_certified_key(
    cert: &PemFile,
    key: &PemFile,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates("certificate file", cert)?;
    let key_bytes = read("key file", key)?;
    let private = match PrivateKeyDer::from_pem_slice(&key_bytes) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey(key.clone())),
        Err(e) => {
            return Err(TlsError::BadPem {
                what: "key file",
                label: "PRIVATE KEY",
                file: key.clone(),
                detail: pem_error(&e),
            });
        }
    };
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::BadKey {
            file: key.clone(),
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert.clone(),
                key: key.clone(),
            })
        }
        // ring knows every key's public half; should one not, the handshake still proves
        // possession to each client.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(TlsError::BadCertificate {
            file: cert.clone(),
            detail: e.to_string(),
        }),
    }
}

/// The trust anchors for client certificates: every certificate of the PEM bundle `file`.
pub fn load_client_roots(file: &PemFile) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("client CA file", file)? {
        roots.add(cert).map_err(|e| TlsError::ClientCa {
            file: file.clone(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}
