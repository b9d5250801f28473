//! Native TLS through the real binary, with clients written by others (curl, openssl
//! s_client) and the real CLI: HTTPS with a private CA, TLS 1.2+ only, certificates
//! replaced on disk and served without a restart (a bad replacement is not), client
//! certificates, and startup errors that name the file and the setting.

// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kairos_testkit::Certificates;

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn curl(args: &[&str], url: &str) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

/// The port of an `https://127.0.0.1:PORT` address.
fn port(server: &Server) -> String {
    server.addr.rsplit(':').next().unwrap().to_owned()
}

/// `openssl s_client` to the server with extra arguments; stdin closed at once.
fn s_client(server: &Server, args: &[&str]) -> Output {
    Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", port(server)),
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The SHA-256 fingerprint of a PEM certificate (`openssl x509 -fingerprint`), from a
/// file or from s_client's output.
fn fingerprint_of_pem(pem: &[u8]) -> Option<String> {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), pem).unwrap();
    let out = child.wait_with_output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn fingerprint(cert: &Path) -> String {
    fingerprint_of_pem(&std::fs::read(cert).unwrap()).unwrap()
}

/// The certificate a new connection is served.
fn served(server: &Server) -> String {
    let out = s_client(server, &[]);
    fingerprint_of_pem(&out.stdout).unwrap_or_else(|| panic!("no certificate: {}", text(&out)))
}

/// Replaces a file as certificate tools do: a new file renamed over the old one.
fn replace(to: &Path, bytes: &[u8]) {
    let tmp = to.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

struct Setup {
    dir: tempfile::TempDir,
    certs: Certificates,
    config: PathBuf,
}

fn setup(extra_server: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let certs = Certificates::make(&tls);
    let config = write_config(dir.path(), &TestIssuer::new("k1"), extra_server);
    Setup { dir, certs, config }
}

impl Setup {
    fn start(&self, extra: &[&str]) -> Server {
        Server::start_with(
            &self.dir.path().join("data"),
            Some(&self.config),
            None,
            extra,
        )
    }

    fn tls_flags(&self) -> Vec<&str> {
        vec![
            "--tls-cert-file",
            s(&self.certs.cert),
            "--tls-key-file",
            s(&self.certs.key),
        ]
    }
}

#[test]
fn https_with_a_private_ca_for_curl_the_cli_and_the_console() {
    let setup = setup("");
    let server = setup.start(&setup.tls_flags());
    assert!(
        server.addr.starts_with("https://127.0.0.1:"),
        "{}",
        server.addr
    );
    let ca = s(&setup.certs.ca);

    let health = curl(&["--cacert", ca, "-f"], &server.url("/v1/health"));
    assert!(health.status.success(), "{}", text(&health));
    assert!(String::from_utf8_lossy(&health.stdout).contains("\"status\""));
    // Without the CA the certificate is not trusted; plain HTTP gets no answer.
    let untrusted = curl(&[], &server.url("/v1/health"));
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    let plain = curl(
        &[],
        &format!("http://127.0.0.1:{}/v1/health", port(&server)),
    );
    assert!(plain.stdout.is_empty(), "{}", text(&plain));

    // The metadata and the tokens' issuer say https.
    let meta = curl(
        &["--cacert", ca, "-f"],
        &server.url("/.well-known/oauth-authorization-server"),
    );
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    assert_eq!(meta["issuer"], server.addr.as_str(), "{meta}");
    assert!(
        meta["jwks_uri"].as_str().unwrap().starts_with("https://"),
        "{meta}"
    );

    // The console's session cookie is Secure.
    let login = curl(
        &[
            "--cacert",
            ca,
            "-i",
            "--data-urlencode",
            &format!("token={ADMIN}"),
        ],
        &server.url("/ui/login"),
    );
    let head = String::from_utf8_lossy(&login.stdout).to_ascii_lowercase();
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie: kairos_session="))
        .unwrap_or_else(|| panic!("no session cookie: {}", text(&login)));
    assert!(cookie.contains("; secure"), "{cookie}");

    // The CLI: with --ca-file (or KAIROS_CA_FILE) it works; without, a certificate error.
    let cli = |envs: &[(&str, &str)], args: &[&str]| {
        Command::new(kairos_bin())
            .args(args)
            .env("KAIROS_ADDR", &server.addr)
            .env("KAIROS_TOKEN", ADMIN)
            .env_remove("KAIROS_CA_FILE")
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    };
    let grants = cli(&[], &["grants", "--ca-file", ca, "--json"]);
    assert!(grants.status.success(), "{}", text(&grants));
    let by_env = cli(&[("KAIROS_CA_FILE", ca)], &["grants"]);
    assert!(by_env.status.success(), "{}", text(&by_env));
    let refused = cli(&[], &["grants"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("a TLS certificate this client does not trust (invalid peer certificate: UnknownIssuer): give the CA that signed it with --ca-file or KAIROS_CA_FILE"),
        "{}",
        text(&refused)
    );
    let missing = cli(&[], &["grants", "--ca-file", "/nonexistent/ca.pem"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("cannot read the CA file /nonexistent/ca.pem (--ca-file)"),
        "{}",
        text(&missing)
    );
    // --ca-file is the client's: the server refuses it with a pointer to its own flags.
    let server_flag = Command::new(kairos_bin())
        .args(["server", "--dev", "--ca-file", ca])
        .output()
        .unwrap();
    assert!(!server_flag.status.success());
    assert!(
        String::from_utf8_lossy(&server_flag.stderr).contains("--tls-cert-file"),
        "{}",
        text(&server_flag)
    );
}

#[test]
fn tls_1_1_is_refused_and_1_2_and_1_3_are_served() {
    let setup = setup("");
    let server = setup.start(&setup.tls_flags());
    // SECLEVEL=0 lets the client offer TLS 1.1: the refusal is the server's.
    let old = s_client(&server, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!old.status.success(), "{}", text(&old));
    assert!(fingerprint_of_pem(&old.stdout).is_none(), "{}", text(&old));
    let old_curl = curl(
        &[
            "--cacert",
            s(&setup.certs.ca),
            "--tlsv1.0",
            "--tls-max",
            "1.1",
        ],
        &server.url("/v1/health"),
    );
    assert!(!old_curl.status.success(), "{}", text(&old_curl));
    for version in ["-tls1_2", "-tls1_3"] {
        let out = s_client(&server, &[version, "-CAfile", s(&setup.certs.ca)]);
        assert!(out.status.success(), "{version}: {}", text(&out));
        assert_eq!(
            fingerprint_of_pem(&out.stdout).as_deref(),
            Some(fingerprint(&setup.certs.cert).as_str()),
            "{version}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Verify return code: 0 (ok)"),
            "{version}: {}",
            text(&out)
        );
    }
}

#[test]
fn a_replaced_certificate_is_served_without_restart_and_a_bad_one_is_not() {
    // The files named in [server], as a certificate tool would keep them.
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let certs = Certificates::make(&tls);
    let (live_crt, live_key) = (tls.join("live.crt"), tls.join("live.key"));
    std::fs::copy(&certs.cert, &live_crt).unwrap();
    std::fs::copy(&certs.key, &live_key).unwrap();
    let config = write_config(
        dir.path(),
        &TestIssuer::new("k1"),
        &format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
            s(&live_crt),
            s(&live_key)
        ),
    );
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    assert!(server.addr.starts_with("https://"), "{}", server.addr);
    assert_eq!(served(&server), fingerprint(&certs.cert));

    // Renewed: a new key and certificate from the same CA, key first.
    let (next_crt, next_key) = certs.issue("next", "127.0.0.1", "subjectAltName = IP:127.0.0.1");
    replace(&live_key, &std::fs::read(&next_key).unwrap());
    replace(&live_crt, &std::fs::read(&next_crt).unwrap());
    let next = fingerprint(&next_crt);
    let deadline = Instant::now() + Duration::from_secs(60);
    while served(&server) != next {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.log_text().contains("TLS certificate reloaded"));
    let health = curl(&["--cacert", s(&certs.ca), "-f"], &server.url("/v1/health"));
    assert!(health.status.success(), "{}", text(&health));

    // A corrupt replacement: logged, and the last good pair is still served.
    let refusals = |log: &str| log.matches("do not load").count();
    let before = refusals(&server.log_text());
    replace(
        &live_crt,
        b"-----BEGIN CERTIFICATE-----\nthis is not base64\n",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert_eq!(served(&server), next);
        if refusals(&server.log_text()) > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the corrupt certificate was never looked at:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = server.log_text();
    assert!(
        log.contains(&format!("the certificate file {}", live_crt.display())),
        "{log}"
    );
    assert_eq!(served(&server), next);
    // The log never holds the key.
    let key_body = std::fs::read_to_string(&next_key).unwrap();
    assert!(!log.contains(key_body.lines().nth(1).unwrap()));
}

#[test]
fn required_client_certificates_refuse_clients_without_one() {
    let setup = setup("");
    let (client_crt, client_key) =
        setup
            .certs
            .issue("client", "nightly-backup", "extendedKeyUsage = clientAuth");
    let mut flags = setup.tls_flags();
    flags.extend([
        "--tls-client-ca-file",
        s(&setup.certs.ca),
        "--tls-client-auth",
        "required",
    ]);
    let server = setup.start(&flags);
    let ca = s(&setup.certs.ca);
    let without = curl(&["--cacert", ca, "-f"], &server.url("/v1/health"));
    assert!(!without.status.success(), "{}", text(&without));
    assert!(without.stdout.is_empty(), "{}", text(&without));
    let with_cert = curl(
        &[
            "--cacert",
            ca,
            "-f",
            "--cert",
            s(&client_crt),
            "--key",
            s(&client_key),
        ],
        &server.url("/v1/health"),
    );
    assert!(with_cert.status.success(), "{}", text(&with_cert));
    // The CLI: refused without a client certificate, served with one.
    let cli = |args: &[&str]| {
        Command::new(kairos_bin())
            .args(["grants", "--ca-file", ca])
            .args(args)
            .env("KAIROS_ADDR", &server.addr)
            .env("KAIROS_TOKEN", ADMIN)
            .env_remove("KAIROS_CERT_FILE")
            .env_remove("KAIROS_KEY_FILE")
            .output()
            .unwrap()
    };
    let without = cli(&[]);
    assert_eq!(without.status.code(), Some(1), "{}", text(&without));
    assert!(
        String::from_utf8_lossy(&without.stderr)
            .contains("give yours with --cert-file and --key-file"),
        "{}",
        text(&without)
    );
    let with_cert = cli(&["--cert-file", s(&client_crt), "--key-file", s(&client_key)]);
    assert!(with_cert.status.success(), "{}", text(&with_cert));
    // A certificate without its key is a usage error.
    let half = cli(&["--cert-file", s(&client_crt)]);
    assert_eq!(half.status.code(), Some(2), "{}", text(&half));
}

/// `kairos server` with these arguments must fail at once, saying `expected`, and leave
/// no data directory behind.
fn refused_at_start(setup: &Setup, extra: &[&str], expected: &str) {
    let data = setup.dir.path().join("data");
    let out = Command::new(kairos_bin())
        .args(["server", "--dev", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&setup.config)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(expected), "{extra:?}: {}", text(&out));
    assert!(!data.exists(), "{extra:?}: the data directory was created");
}

#[test]
fn startup_errors_name_the_file_and_the_setting() {
    let mut setup = setup("");
    let cert = s(&setup.certs.cert).to_owned();
    let cert = cert.as_str();
    setup.config = write_config(
        setup.dir.path(),
        &TestIssuer::new("k1"),
        &format!("tls_cert_file = {cert:?}\ntls_key_file = \"/nonexistent/tls/server.key\"\n"),
    );
    let config = setup.config.display().to_string();
    refused_at_start(
        &setup,
        &[],
        &format!(
            "cannot read the key file /nonexistent/tls/server.key (set by [server] tls_key_file in {config}): No such file"
        ),
    );
    refused_at_start(
        &setup,
        &[
            "--tls-key-file",
            "/nonexistent/key.pem",
            "--tls-cert-file",
            cert,
        ],
        "cannot read the key file /nonexistent/key.pem (set by --tls-key-file)",
    );
    // The key of another certificate.
    let (_, other_key) = setup
        .certs
        .issue("other", "127.0.0.1", "subjectAltName = IP:127.0.0.1");
    refused_at_start(
        &setup,
        &["--tls-key-file", s(&other_key), "--tls-cert-file", cert],
        &format!(
            "the private key in {} (set by --tls-key-file) does not belong to the certificate in {cert} (set by --tls-cert-file)",
            other_key.display()
        ),
    );
    // The certificate's file given as the key.
    refused_at_start(
        &setup,
        &["--tls-key-file", cert, "--tls-cert-file", cert],
        &format!("the key file {cert} (set by --tls-key-file) holds no private key"),
    );
    setup.config = write_config(setup.dir.path(), &TestIssuer::new("k1"), "");
    let plain = &setup;
    refused_at_start(
        plain,
        &["--tls-cert-file", cert],
        &format!(
            "the certificate {cert} (set by --tls-cert-file) needs its private key: give --tls-key-file"
        ),
    );
    refused_at_start(
        plain,
        &["--tls-client-auth", "required"],
        "--tls-client-auth needs --tls-client-ca-file",
    );
    refused_at_start(
        plain,
        &["--tls-client-ca-file", cert],
        "client certificates need native TLS",
    );
}
