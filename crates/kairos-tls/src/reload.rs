//! The certificate resolver that follows its files.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::files::load_certified_key;
use crate::{PemFile, TlsError};

/// Serves one certificate chain and key, read from files, and reads them again when they
/// change: on a handshake, at most once per `look_every` (a second by default), it compares
/// the files' size, modification time and inode with those of the pair it serves. A pair
/// that loads replaces the served one for new handshakes (connections already open keep
/// theirs); one that does not is logged once and the served pair kept.
pub struct ReloadingCert {
    cert: PemFile,
    key: PemFile,
    provider: Arc<CryptoProvider>,
    look_every: Duration,
    state: Mutex<State>,
}

struct State {
    current: Arc<CertifiedKey>,
    /// The files as they were when `current` was read.
    loaded: Stamp,
    /// The files as they were when a pair last failed to load (not tried again until they
    /// change).
    refused: Option<Stamp>,
    last_look: Instant,
}

/// What is compared to notice that a file changed (a missing file has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    cert: Option<FileStamp>,
    key: Option<FileStamp>,
}

fn file_stamp(file: &PemFile) -> Option<FileStamp> {
    let meta = std::fs::metadata(&file.path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

impl ReloadingCert {
    /// How often, at most, the files are looked at.
    pub const LOOK_EVERY: Duration = Duration::from_secs(1);

    /// Reads the pair now: an error here is a startup error.
    pub fn load(cert: PemFile, key: PemFile) -> Result<Self, TlsError> {
        Self::load_looking_every(cert, key, Self::LOOK_EVERY)
    }

    /// [`ReloadingCert::load`] with another interval between looks at the files.
    pub fn load_looking_every(
        cert: PemFile,
        key: PemFile,
        look_every: Duration,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = Stamp {
            cert: file_stamp(&cert),
            key: file_stamp(&key),
        };
        let current = Arc::new(load_certified_key(&cert, &key, &provider)?);
        Ok(Self {
            cert,
            key,
            provider,
            look_every,
            state: Mutex::new(State {
                current,
                loaded,
                refused: None,
                last_look: Instant::now(),
            }),
        })
    }

    /// The pair new handshakes get, after looking at the files if it is time to.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock only means a panic elsewhere while holding it; the state itself is
        // always whole (every field is written in one assignment).
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.last_look.elapsed() < self.look_every {
            return Arc::clone(&state.current);
        }
        state.last_look = Instant::now();
        let now = Stamp {
            cert: file_stamp(&self.cert),
            key: file_stamp(&self.key),
        };
        if now == state.loaded || state.refused == Some(now) {
            return Arc::clone(&state.current);
        }
        match load_certified_key(&self.cert, &self.key, &self.provider) {
            Ok(pair) => {
                state.current = Arc::new(pair);
                state.loaded = now;
                state.refused = None;
                tracing::info!(
                    cert = %self.cert.path.display(),
                    key = %self.key.path.display(),
                    "TLS certificate reloaded: new connections get the new certificate"
                );
            }
            Err(e) => {
                state.refused = Some(now);
                tracing::warn!(
                    error = %e,
                    "TLS certificate files changed but do not load; kept serving the previous certificate"
                );
            }
        }
        Arc::clone(&state.current)
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("look_every", &self.look_every)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
