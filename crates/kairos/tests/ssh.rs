//! SSH targets against a real OpenSSH `sshd` started by the test on a private port, trusting
//! the target's CA keys as Kairos serves them (`TrustedUserCAKeys`) and reading the KRL
//! Kairos writes (`RevokedKeys`): a login works during the grant, is refused after release
//! (the KRL) and after expiry (the certificate's valid_before), and each receipt says how.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const PRINCIPAL: &str = "kairos-login";

/// Adds an ssh target (with a KRL file) and its entitlements to the test configuration.
fn ssh_config(dir: &Path, issuer: &TestIssuer, krl: &Path) -> PathBuf {
    let config = write_config(dir, issuer, "");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(&format!(
        r#"
[[target]]
name = "bastion"
kind = "ssh"
krl_file = "{krl}"

[[entitlement]]
name = "bastion/login"
tier = "low"
max_ttl = "1h"
principals = ["{PRINCIPAL}"]
source_address = ["127.0.0.1/32"]
"#,
        krl = krl.display()
    ));
    std::fs::write(&config, toml).unwrap();
    std::fs::write(
        dir.join("policies/ssh.cedar"),
        r#"
@id("bastion-login")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"bastion/login");
"#,
    )
    .unwrap();
    config
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path));
}

/// A private sshd: its own host key, config and port; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: PathBuf,
    user: String,
}

impl Sshd {
    fn start(dir: &Path, trusted: &Path, krl: &Path) -> Self {
        let dir = dir.to_owned();
        std::fs::create_dir_all(dir.join("principals")).unwrap();
        let user = String::from_utf8(run(Command::new("id").arg("-un")).stdout)
            .unwrap()
            .trim()
            .to_owned();
        // The certificate's principal maps to the user running the test.
        std::fs::write(dir.join("principals").join(&user), format!("{PRINCIPAL}\n")).unwrap();
        keygen(&dir.join("host_key"));
        // sshd's privilege separation needs its directory when run as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
                 AuthorizedKeysFile none\nTrustedUserCAKeys {trusted}\nRevokedKeys {krl}\n\
                 AuthorizedPrincipalsFile {principals}/%u\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nLogLevel VERBOSE\n",
                host = dir.join("host_key").display(),
                pid = dir.join("sshd.pid").display(),
                trusted = trusted.display(),
                krl = krl.display(),
                principals = dir.join("principals").display(),
            ),
        )
        .unwrap();
        run(Command::new("/usr/sbin/sshd")
            .arg("-t")
            .arg("-f")
            .arg(&config));
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(config.as_os_str())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                Self::log_of(&dir)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            dir,
            user,
        }
    }

    fn log_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    }

    /// `ssh … true` with this key and certificate: did the login work?
    fn login(&self, key: &Path, cert: &Path) -> bool {
        let status = Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "-p",
                &self.port.to_string(),
            ])
            .arg(format!("{}@127.0.0.1", self.user))
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        status.status.success()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ssh-keygen -Q`: does the KRL file revoke this certificate?
fn krl_revokes(krl: &Path, cert: &Path) -> bool {
    let out = Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(cert)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => false,
        Some(1) => true,
        other => panic!(
            "ssh-keygen -Q: {other:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn get_text(api: &Api, path: &str) -> (u16, Vec<u8>) {
    let resp = api.http.get(format!("{}{path}", api.base)).send().unwrap();
    (resp.status().as_u16(), resp.bytes().unwrap().to_vec())
}

/// `kairos request` through the real CLI as the workload; the JSON answer.
fn request(server: &Server, platform: &str, ttl: &str, key: &Path, task_ref: &str) -> Value {
    let out = server.cli(
        platform,
        &[
            "--json",
            "request",
            "bastion/login",
            "--task-kind",
            "job",
            "--task-ref",
            task_ref,
            "--reason",
            "rotate the bastion's logs",
            "--ttl",
            ttl,
            "--public-key-file",
            &key.with_extension("pub").display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn save_cert(answer: &Value, path: &Path) -> (String, u64) {
    let c = &answer["credential"];
    assert_eq!(c["kind"], "ssh", "{answer}");
    assert_eq!(c["principals"], json!([PRINCIPAL]));
    std::fs::write(path, c["ssh_certificate"].as_str().unwrap()).unwrap();
    (
        answer["grant"]["id"].as_str().unwrap().to_owned(),
        c["ssh_serial"].as_u64().unwrap(),
    )
}

fn list_cert(cert: &Path) -> String {
    String::from_utf8(run(Command::new("ssh-keygen").arg("-L").arg("-f").arg(cert)).stdout).unwrap()
}

fn grant_count(api: &Api) -> usize {
    let (status, body) = api.get(ADMIN, "/v1/grants");
    assert_eq!(status, 200, "{body}");
    body["grants"]
        .as_array()
        .map_or_else(|| body.as_array().map_or(0, Vec::len), Vec::len)
}

#[test]
fn certificates_log_in_until_release_or_expiry_and_rotation_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("ci-key-1");
    let krl = dir.path().join("kairos.krl");
    let config = ssh_config(&dir.path().join("cfg"), &issuer, &krl);
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));

    // The KRL file exists from the start (sshd refuses every key while it cannot read it),
    // and the CA keys are served without authentication, as hosts' fetchers read them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !krl.exists() {
        assert!(Instant::now() < deadline, "no krl_file written");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The CA key was made at start, not by the first (unauthenticated) read.
    let stored: Vec<String> = {
        let db = rusqlite::Connection::open(dir.path().join("data/kairos.db")).unwrap();
        let mut q = db
            .prepare("SELECT public_key FROM ssh_ca_keys WHERE target = 'bastion'")
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(stored.len(), 1, "no CA key made at start: {stored:?}");
    let (status, ca) = get_text(&api, "/v1/targets/bastion/ssh/ca");
    assert_eq!(status, 200);
    let ca = String::from_utf8(ca).unwrap();
    assert_eq!(ca.lines().count(), 1, "{ca}");
    assert_eq!(ca.trim_end(), stored[0]);
    assert!(ca.starts_with("ssh-ed25519 "), "{ca}");
    let trusted = dir.path().join("trusted_ca");
    std::fs::write(&trusted, ca.as_bytes()).unwrap();
    let (status, body) = api.get(ADMIN, "/v1/targets/orders-api/ssh/ca");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an ssh target")
    );

    let sshd = Sshd::start(&dir.path().join("sshd"), &trusted, &krl);
    let key = dir.path().join("id_ed25519");
    keygen(&key);

    // Bad input: no key, a malformed key, a key for a token entitlement: 400 JSON, no grant.
    let before = grant_count(&api);
    let task = json!({"kind": "job", "ref": "run-1", "reason": "logs"});
    for (body, code) in [
        (
            json!({"entitlement": "bastion/login", "task": task}),
            "public_key_required",
        ),
        (
            json!({"entitlement": "bastion/login", "task": task, "public_key": "ssh-ed25519 AAAAnotbase64!"}),
            "invalid_public_key",
        ),
        (
            json!({"entitlement": "bastion/login", "task": task, "public_key": "ssh-dss AAAAB3NzaC1kc3M= old"}),
            "invalid_public_key",
        ),
        (
            json!({"entitlement": "orders-api/read", "task": task,
                   "public_key": std::fs::read_to_string(key.with_extension("pub")).unwrap()}),
            "public_key_not_applicable",
        ),
    ] {
        let (status, answer) = api.post(&platform, "/v1/requests", body);
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(grant_count(&api), before, "a refused request wrote a grant");

    // 1. During the grant the certificate logs in.
    let answer = request(&server, &platform, "10m", &key, "run-1");
    let cert = dir.path().join("id_ed25519-cert.pub");
    let (grant, serial) = save_cert(&answer, &cert);
    let listed = list_cert(&cert);
    for expected in [
        format!("Serial: {serial}"),
        format!("Key ID: \"kairos:{grant}:nightly-backup\""),
        "source-address 127.0.0.1/32".to_owned(),
        "permit-pty".to_owned(),
        PRINCIPAL.to_owned(),
    ] {
        assert!(listed.contains(&expected), "no {expected:?} in\n{listed}");
    }
    assert!(!listed.contains("permit-port-forwarding"), "{listed}");
    assert!(
        sshd.login(&key, &cert),
        "login refused: {}",
        Sshd::log_of(&sshd.dir)
    );
    assert!(!krl_revokes(&krl, &cert));
    // The workload reads its request again: the same certificate.
    let (status, again) = api.get(
        &platform,
        &format!("/v1/requests/{}", answer["request"]["id"].as_str().unwrap()),
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["credential"]["ssh_serial"], serial);

    // 2. Released: the serial goes into the KRL file, sshd refuses the certificate.
    let (status, g) = api.post(&platform, &format!("/v1/grants/{grant}/release"), json!({}));
    assert_eq!(status, 200, "{g}");
    let g = api.wait_grant(ADMIN, &grant, Duration::from_secs(15), |g| {
        g["state"] == "ended"
    });
    let receipt = &g["receipt"];
    assert_eq!(receipt["method"], "ssh-krl-file", "{receipt}");
    let evidence = receipt["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!("serial {serial} of CA key"))
            && evidence.contains("listed in KRL version")
            && evidence.contains(&format!("re-read from krl_file {}", krl.display()))
            && evidence.contains("certificate valid_before"),
        "{evidence}"
    );
    assert!(
        krl_revokes(&krl, &cert),
        "ssh-keygen does not find the serial in the KRL"
    );
    let (status, served) = get_text(&api, "/v1/targets/bastion/ssh/krl");
    assert_eq!(status, 200);
    assert_eq!(
        served,
        std::fs::read(&krl).unwrap(),
        "served KRL differs from krl_file"
    );
    assert!(!sshd.login(&key, &cert), "a revoked certificate logged in");
    assert!(
        Sshd::log_of(&sshd.dir).contains("revoked"),
        "sshd's log does not say the key was revoked: {}",
        Sshd::log_of(&sshd.dir)
    );

    // 3. A short grant: after expiry the certificate's valid_before refuses it (the KRL
    // does not list it; it does not need to).
    let short_key = dir.path().join("id_short");
    keygen(&short_key);
    let answer = request(&server, &platform, "3s", &short_key, "run-2");
    let short_cert = dir.path().join("id_short-cert.pub");
    let (short_grant, _) = save_cert(&answer, &short_cert);
    assert!(
        sshd.login(&short_key, &short_cert),
        "login refused: {}",
        Sshd::log_of(&sshd.dir)
    );
    let g = api.wait_grant(ADMIN, &short_grant, Duration::from_secs(20), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["reason"], "expired", "{g}");
    assert_eq!(g["receipt"]["method"], "ssh-certificate-expired", "{g}");
    assert!(
        g["receipt"]["evidence"]
            .as_str()
            .unwrap()
            .contains("has passed"),
        "{g}"
    );
    assert!(!krl_revokes(&krl, &short_cert));
    assert!(
        !sshd.login(&short_key, &short_cert),
        "an expired certificate logged in"
    );

    // 4. Rotation: admins only; old certificates stay valid while the old key is listed,
    // new ones are signed by the new key.
    let live_key = dir.path().join("id_live");
    keygen(&live_key);
    let live_cert = dir.path().join("id_live-cert.pub");
    save_cert(
        &request(&server, &platform, "10m", &live_key, "run-3"),
        &live_cert,
    );
    let (status, body) = api.post(&platform, "/v1/targets/bastion/ssh/ca", json!({}));
    assert_eq!(status, 403, "{body}");
    let (status, rotated) = api.post(ADMIN, "/v1/targets/bastion/ssh/ca", json!({}));
    assert_eq!(status, 200, "{rotated}");
    let (_, ca) = get_text(&api, "/v1/targets/bastion/ssh/ca");
    let ca = String::from_utf8(ca).unwrap();
    assert_eq!(ca.lines().count(), 2, "{ca}");
    assert_eq!(rotated["trusted"], ca.as_str());
    std::fs::write(&trusted, ca.as_bytes()).unwrap();
    assert!(
        sshd.login(&live_key, &live_cert),
        "the old key's certificate stopped working"
    );
    let new_key = dir.path().join("id_new");
    keygen(&new_key);
    let new_cert = dir.path().join("id_new-cert.pub");
    save_cert(
        &request(&server, &platform, "10m", &new_key, "run-4"),
        &new_cert,
    );
    let ca_of = |cert: &Path| {
        list_cert(cert)
            .lines()
            .find(|l| l.contains("Signing CA"))
            .unwrap()
            .to_owned()
    };
    assert_ne!(ca_of(&live_cert), ca_of(&new_cert));
    assert!(
        sshd.login(&new_key, &new_cert),
        "login refused: {}",
        Sshd::log_of(&sshd.dir)
    );
    // A host that trusts only the new key: the new certificate works, the old one not.
    std::fs::write(&trusted, ca.lines().last().unwrap()).unwrap();
    assert!(sshd.login(&new_key, &new_cert));
    assert!(!sshd.login(&live_key, &live_cert));

    // The audit chain still verifies, and holds the rotation and the certificates.
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}
