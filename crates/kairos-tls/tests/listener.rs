//! The listener with real TLS clients (curl, openssl) and real certificates (openssl):
//! what reaches the handlers, what is refused at the handshake, and how certificate
//! files are read and read again.

// PANIC SAFETY: tests; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Extension};
use axum::routing::get;
use kairos_testkit::Certificates;
use kairos_tls::{
    ClientAuth, PeerCertificates, PemFile, ReloadingCert, TlsError, TlsSettings, server_config,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The DER of a PEM certificate file, in hex (openssl converts it).
fn der_hex(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    hex(&out.stdout)
}

/// What the test handler answers: the leaf certificate the client showed, or `none`,
/// and the peer address.
async fn who(
    certificates: Option<Extension<PeerCertificates>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> String {
    let leaf = match certificates {
        Some(Extension(chain)) => hex(chain.leaf().unwrap().as_ref()),
        None => "none".to_owned(),
    };
    format!("{leaf} from {}", peer.ip())
}

struct Listener {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start(settings: &TlsSettings) -> Self {
        let cert = ReloadingCert::load(settings.cert.clone(), settings.key.clone()).unwrap();
        let config = Arc::new(server_config(settings, Arc::new(cert)).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = Router::new().route("/who", get(who));
        let task = tokio::spawn(kairos_tls::serve(listener, config, router, async move {
            let _ = stopped.await;
        }));
        Self {
            port,
            stop: Some(stop),
            task,
        }
    }

    /// Stops accepting and waits for the serve loop to end (graceful shutdown).
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the listener did not stop")
            .unwrap();
    }

    /// curl with these extra arguments, off the runtime's threads.
    async fn curl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20"])
            .args(args)
            .arg(format!("https://127.0.0.1:{}/who", self.port));
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn settings(certs: &Certificates, client_auth: ClientAuth) -> TlsSettings {
    TlsSettings {
        cert: PemFile::new(&certs.cert, "the test's cert"),
        key: PemFile::new(&certs.key, "the test's key"),
        client_auth,
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn a_verified_client_certificate_reaches_the_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::make(dir.path());
    let (client_crt, client_key) =
        certs.issue("client", "workload-a", "extendedKeyUsage = clientAuth");
    // A client certificate from a CA the listener does not trust.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = Certificates::make(stranger_dir.path());
    let (stranger_crt, stranger_key) =
        stranger.issue("client", "workload-a", "extendedKeyUsage = clientAuth");

    let listener = Listener::start(&settings(
        &certs,
        ClientAuth::Optional(PemFile::new(&certs.ca, "the test's client CA")),
    ))
    .await;
    let ca = path_str(&certs.ca);
    let with_cert = listener
        .curl(&[
            "--cacert",
            ca,
            "--cert",
            path_str(&client_crt),
            "--key",
            path_str(&client_key),
        ])
        .await;
    assert!(with_cert.status.success(), "{}", text(&with_cert));
    assert_eq!(
        String::from_utf8_lossy(&with_cert.stdout),
        format!("{} from 127.0.0.1", der_hex(&client_crt))
    );
    // Optional: without a certificate the client is served, and no chain reaches the handler.
    let without = listener.curl(&["--cacert", ca]).await;
    assert!(without.status.success(), "{}", text(&without));
    assert_eq!(
        String::from_utf8_lossy(&without.stdout),
        "none from 127.0.0.1"
    );
    // A certificate that does not verify is refused at the handshake, even when optional.
    let strange = listener
        .curl(&[
            "--cacert",
            ca,
            "--cert",
            path_str(&stranger_crt),
            "--key",
            path_str(&stranger_key),
        ])
        .await;
    assert!(!strange.status.success(), "{}", text(&strange));
    assert!(strange.stdout.is_empty(), "{}", text(&strange));
    listener.stop().await;
}

#[tokio::test]
async fn required_client_certificates_refuse_clients_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::make(dir.path());
    let (client_crt, client_key) =
        certs.issue("client", "workload-a", "extendedKeyUsage = clientAuth");
    let listener = Listener::start(&settings(
        &certs,
        ClientAuth::Required(PemFile::new(&certs.ca, "the test's client CA")),
    ))
    .await;
    let ca = path_str(&certs.ca);
    let without = listener.curl(&["--cacert", ca]).await;
    assert!(!without.status.success(), "{}", text(&without));
    assert!(without.stdout.is_empty(), "{}", text(&without));
    let with_cert = listener
        .curl(&[
            "--cacert",
            ca,
            "--cert",
            path_str(&client_crt),
            "--key",
            path_str(&client_key),
        ])
        .await;
    assert!(with_cert.status.success(), "{}", text(&with_cert));
    assert!(
        String::from_utf8_lossy(&with_cert.stdout).starts_with(&der_hex(&client_crt)),
        "{}",
        text(&with_cert)
    );
    listener.stop().await;
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_spoken_over_http_1_1_and_h2() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::make(dir.path());
    let listener = Listener::start(&settings(&certs, ClientAuth::NotRequested)).await;
    let ca = path_str(&certs.ca);
    for (args, served) in [
        (&["--tlsv1.2", "--tls-max", "1.2"][..], true),
        (&["--tlsv1.3"][..], true),
        (&["--http1.1"][..], true),
        (&["--http2"][..], true),
        (&["--tlsv1.0", "--tls-max", "1.1"][..], false),
    ] {
        let out = listener.curl(&[&["--cacert", ca][..], args].concat()).await;
        assert_eq!(out.status.success(), served, "{args:?}: {}", text(&out));
        if served {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "none from 127.0.0.1",
                "{args:?}"
            );
        }
    }
    listener.stop().await;
}

/// Replaces `to` with `from`'s bytes the way certificate tools do: a new file renamed
/// over the old one.
fn replace(to: &Path, bytes: &[u8]) {
    let tmp = to.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn leaf_hex(cert: &ReloadingCert) -> String {
    hex(cert.current().end_entity_cert().unwrap().as_ref())
}

#[test]
fn changed_files_are_read_again_and_bad_ones_leave_the_served_pair() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::make(dir.path());
    let (next_crt, next_key) = certs.issue("next", "127.0.0.1", "subjectAltName = IP:127.0.0.1");
    let (live_crt, live_key) = (dir.path().join("live.crt"), dir.path().join("live.key"));
    std::fs::copy(&certs.cert, &live_crt).unwrap();
    std::fs::copy(&certs.key, &live_key).unwrap();
    // Looking at every handshake: the test decides when the files change.
    let cert = ReloadingCert::load_looking_every(
        PemFile::new(&live_crt, "test"),
        PemFile::new(&live_key, "test"),
        Duration::ZERO,
    )
    .unwrap();
    let first = der_hex(&certs.cert);
    assert_eq!(leaf_hex(&cert), first);
    assert_eq!(leaf_hex(&cert), first, "unchanged files: the same pair");

    // The certificate replaced before its key: a mismatch, the old pair stays.
    replace(&live_crt, &std::fs::read(&next_crt).unwrap());
    assert_eq!(leaf_hex(&cert), first);
    // Then the key: the new pair.
    replace(&live_key, &std::fs::read(&next_key).unwrap());
    let second = der_hex(&next_crt);
    assert_eq!(leaf_hex(&cert), second);

    // Garbage, an empty file, a missing file: the served pair stays.
    replace(&live_crt, b"-----BEGIN CERTIFICATE-----\nnot base64!\n");
    assert_eq!(leaf_hex(&cert), second);
    replace(&live_crt, b"");
    assert_eq!(leaf_hex(&cert), second);
    std::fs::remove_file(&live_key).unwrap();
    assert_eq!(leaf_hex(&cert), second);
    // Put back whole: served again (the first pair, as it is on disk now).
    replace(&live_crt, &std::fs::read(&certs.cert).unwrap());
    replace(&live_key, &std::fs::read(&certs.key).unwrap());
    assert_eq!(leaf_hex(&cert), first);
}

#[test]
fn the_files_are_looked_at_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::make(dir.path());
    let (next_crt, next_key) = certs.issue("next", "127.0.0.1", "subjectAltName = IP:127.0.0.1");
    // An interval no test run reaches: the change is not seen.
    let cert = ReloadingCert::load_looking_every(
        PemFile::new(&certs.cert, "test"),
        PemFile::new(&certs.key, "test"),
        Duration::from_secs(3600),
    )
    .unwrap();
    replace(&certs.cert, &std::fs::read(&next_crt).unwrap());
    replace(&certs.key, &std::fs::read(&next_key).unwrap());
    assert_ne!(leaf_hex(&cert), der_hex(&next_crt));
}

fn load_error(cert: &Path, key: &Path) -> String {
    match ReloadingCert::load(
        PemFile::new(cert, "[server] tls_cert_file in kairos.toml"),
        PemFile::new(key, "--tls-key-file"),
    ) {
        Ok(_) => panic!("loaded {} with {}", cert.display(), key.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn startup_errors_name_the_file_and_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::make(dir.path());
    let (_, other_key) = certs.issue("other", "127.0.0.1", "subjectAltName = IP:127.0.0.1");
    let missing: PathBuf = dir.path().join("missing.key");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let d = |p: &Path| p.display().to_string();
    for (cert, key, expected) in [
        (
            &certs.cert,
            &missing,
            format!(
                "cannot read the key file {} (set by --tls-key-file): No such file",
                d(&missing)
            ),
        ),
        (
            &empty,
            &certs.key,
            format!(
                "the certificate file {} (set by [server] tls_cert_file in kairos.toml) holds no certificate",
                d(&empty)
            ),
        ),
        (
            &garbage,
            &certs.key,
            format!(
                "the certificate file {} (set by [server] tls_cert_file in kairos.toml) is not PEM",
                d(&garbage)
            ),
        ),
        (
            &certs.cert,
            &certs.cert,
            format!(
                "the key file {} (set by --tls-key-file) holds no private key",
                d(&certs.cert)
            ),
        ),
        (
            &certs.cert,
            &other_key,
            format!(
                "the private key in {} (set by --tls-key-file) does not belong to the certificate in {}",
                d(&other_key),
                d(&certs.cert)
            ),
        ),
    ] {
        let err = load_error(cert, key);
        assert!(err.starts_with(&expected), "{err}\nexpected: {expected}");
    }
    // The key's bytes never appear in an error.
    let key_text = std::fs::read_to_string(&certs.key).unwrap();
    let body = key_text.lines().nth(1).unwrap();
    assert!(!load_error(&certs.key, &certs.key).contains(body));

    let bad_ca = settings(
        &certs,
        ClientAuth::Required(PemFile::new(&empty, "--tls-client-ca-file")),
    );
    let cert = ReloadingCert::load(bad_ca.cert.clone(), bad_ca.key.clone()).unwrap();
    let err = server_config(&bad_ca, Arc::new(cert)).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "the client CA file {} (set by --tls-client-ca-file) holds no certificate",
            d(&empty)
        )),
        "{err}"
    );
}
