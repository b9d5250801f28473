//! The files under `examples/` stay true: every configuration there validates as the
//! server validates it, the systemd unit parses as INI with the keys operations rely on
//! and agrees with the production configuration, and the production configuration serves
//! (its paths pointed at a scratch directory, its store at a new PostgreSQL database).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pg::with_scratch_db;
use common::*;
use kairos_config::{Catalog, ConfigBundle, SecretRef, StoreLocation};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

fn load(path: &Path) -> Catalog {
    let bundle =
        ConfigBundle::read_from_disk(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Catalog::from_bundle(&bundle).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_example_configuration_validates() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&examples(), dir.path());
    let mut files = Vec::new();
    toml_files(dir.path(), &mut files);
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // The quickstart trusts the development issuer its walk-through makes first.
        if text.contains("dev-issuer-jwks.json")
            && !file.with_file_name("dev-issuer-jwks.json").exists()
        {
            let out = Command::new(kairos_bin())
                .args(["dev-issuer", "init", "--dir"])
                .arg(file.parent().unwrap())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let catalog = load(file);
        assert!(
            catalog.identities().next().is_some(),
            "{}: no identity",
            file.display()
        );
    }
}

/// A systemd unit as sections of (key, values in order); panics on a line that is
/// neither blank, a comment, a section header nor `Key=value`.
fn parse_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_owned());
            sections.entry(name.to_owned()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not Key=value: {line}", n + 1));
        let key = key.trim();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()),
            "line {}: bad key {key:?}",
            n + 1
        );
        let section = current
            .as_ref()
            .unwrap_or_else(|| panic!("line {}: a key before any section", n + 1));
        sections
            .get_mut(section)
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    sections
}

/// The one value of `key` in a section.
fn one_value<'a>(section: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    let v = section
        .get(key)
        .unwrap_or_else(|| panic!("[Service] has no {key}"));
    assert_eq!(v.len(), 1, "{key} given {} times", v.len());
    &v[0]
}

#[test]
fn the_systemd_unit_parses_and_agrees_with_the_production_config() {
    let unit = parse_unit(&std::fs::read_to_string(examples().join("kairos.service")).unwrap());
    assert_eq!(
        unit.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Install", "Service", "Unit"]
    );
    let service = &unit["Service"];
    let one = |key: &str| one_value(service, key);
    assert_eq!(one("User"), "kairos");
    assert_eq!(
        one("ExecStart"),
        "/usr/local/bin/kairos server --config /etc/kairos/kairos.toml --log-json"
    );
    assert_eq!(one("Restart"), "on-failure");
    // The public URL is the `iss` of its tokens: fixed, not the listen address.
    assert!(
        one("Environment").starts_with("KAIROS_ISSUER_URL=https://"),
        "{}",
        one("Environment")
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    // Enough time for a graceful drain, but bounded.
    let stop = one("TimeoutStopSec");
    let secs: u64 = stop.trim_end_matches('s').parse().unwrap();
    assert!((10..=120).contains(&secs), "TimeoutStopSec={stop}");
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);

    // The unit and the production configuration name the same things.
    let catalog = load(&examples().join("production/kairos.toml"));
    let server = catalog.server().cloned().unwrap();
    let credential = one("LoadCredential");
    let (name, source) = credential.split_once(':').unwrap();
    assert_eq!(source, "/etc/kairos/master.key");
    assert_eq!(
        server.master_key,
        Some(SecretRef::File(format!(
            "/run/credentials/kairos.service/{name}"
        ))),
        "master_key_file must be the unit's credential"
    );
    let writable: Vec<&str> = one("ReadWritePaths").split_whitespace().collect();
    assert!(writable.contains(&"/var/lib/kairos"), "{writable:?}");
    let checkpoints = PathBuf::from(server.audit_checkpoint_file.clone().unwrap());
    assert!(
        writable.iter().any(|w| checkpoints.starts_with(w)),
        "{} is not writable under ProtectSystem=strict",
        checkpoints.display()
    );
    let StoreLocation::Env(var) = &server.store else {
        panic!("the production store comes from the environment");
    };
    assert_eq!(one("EnvironmentFile"), "/etc/kairos/kairos.env");
    let env = std::fs::read_to_string(examples().join("production/kairos.env")).unwrap();
    assert!(
        env.lines()
            .any(|l| l.starts_with(&format!("{var}=postgres://"))),
        "kairos.env does not set {var}"
    );
    assert!(server.tls.is_some(), "the production listener is TLS");
}

#[test]
fn the_production_configuration_serves() {
    with_scratch_db("kairos_examples", |store| {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&examples().join("production"), dir.path());
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        let certs = kairos_testkit::Certificates::make(&tls);
        let key = dir.path().join("master.key");
        let out = Command::new("openssl")
            .args(["rand", "-base64", "32"])
            .output()
            .unwrap();
        std::fs::write(&key, &out.stdout).unwrap();
        // The same file with its absolute paths pointed into the scratch directory.
        let config = dir.path().join("kairos.toml");
        let mut moved = std::fs::read_to_string(&config).unwrap();
        for (from, to) in [
            ("/run/credentials/kairos.service/master.key", key.clone()),
            ("/etc/kairos/tls/tls.crt", certs.cert.clone()),
            ("/etc/kairos/tls/tls.key", certs.key.clone()),
            (
                "/var/log/kairos/checkpoints.jsonl",
                dir.path().join("checkpoints.jsonl"),
            ),
        ] {
            assert!(moved.contains(from), "{from} is no longer in the example");
            moved = moved.replace(from, to.to_str().unwrap());
        }
        std::fs::write(&config, moved).unwrap();

        let log = dir.path().join("server.log");
        let mut child = Command::new(kairos_bin())
            .args(["server", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .env("KAIROS_STORE_URL", store)
            .env("KAIROS_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("kairos: listening on ") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "the production example did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        assert!(addr.starts_with("https://127.0.0.1:"), "{addr}");
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
        let http = reqwest::blocking::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let health = http.get(format!("{addr}/v1/health")).send().unwrap();
        assert_eq!(health.status(), 200);
        // The configuration it applied is the example's, and the admin token works.
        let shown: serde_json::Value = http
            .get(format!("{addr}/v1/config"))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let text = shown.to_string();
        for name in ["shop-deploy", "orders-api/deploy", "platform", "github"] {
            assert!(text.contains(name), "{name} not in {text}");
        }
        // SIGTERM: a graceful stop, as systemd sends it.
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("kairos stopped"), "{logged}");
    });
}
