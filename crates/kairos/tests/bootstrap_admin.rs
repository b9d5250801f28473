//! The bootstrap admin token in production: installed only into a store with no live
//! admin, never reinstated once revoked, and a start with no admin says how to make one.
//! The log written to a file carries no colour codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::json;

const FIRST: &str = "first-admin-token-0123456789";
const SECOND: &str = "second-admin-token-0123456789";
const THIRD: &str = "third-admin-token-0123456789";

fn master_key() -> String {
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key).unwrap();
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// `kairos server --config` (production form) on a SQLite store under `dir`, its log
/// (stderr) in a file; `admin_token` as KAIROS_ADMIN_TOKEN.
fn start_production(dir: &Path, key: &str, admin_token: Option<&str>, run: u32) -> Server {
    let config = dir.join("cfg").join("kairos.toml");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let log = dir.join(format!("run-{run}.log"));
    let mut cmd = Command::new(kairos_bin());
    cmd.args(["server", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--store")
        .arg(format!("sqlite://{}", data.join("kairos.db").display()))
        .env("KAIROS_MASTER_KEY", key)
        .env("RUST_LOG", "info,sqlx=warn")
        .env_remove("KAIROS_ADMIN_TOKEN")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(t) = admin_token {
        cmd.env("KAIROS_ADMIN_TOKEN", t);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("kairos: listening on ") {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let Ok(addr) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        panic!(
            "server did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    Server {
        child,
        addr,
        data,
        log,
    }
}

fn users_status(server: &Server, token: &str) -> u16 {
    Api::new(server).get(token, "/v1/users").0
}

#[test]
fn a_revoked_bootstrap_admin_stays_revoked_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    write_config(&dir.path().join("cfg"), &TestIssuer::new("k1"), "");
    let key = master_key();

    let server = start_production(dir.path(), &key, Some(FIRST), 1);
    assert_eq!(users_status(&server, FIRST), 200);
    assert!(
        server
            .log_text()
            .contains("bootstrap admin token installed"),
        "{}",
        server.log_text()
    );
    let (status, body) = Api::new(&server).post(FIRST, "/v1/users/admin/revoke", json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(users_status(&server, FIRST), 401);
    server.stop();

    // The same secret does not bring the admin back, and the log says why.
    let server = start_production(dir.path(), &key, Some(FIRST), 2);
    assert_eq!(users_status(&server, FIRST), 401);
    let log = server.log_text();
    assert!(
        log.contains("the admin token given at start was ignored: it was revoked"),
        "{log}"
    );
    server.stop();

    // A store left without any admin is recovered with a new secret.
    let server = start_production(dir.path(), &key, Some(SECOND), 3);
    assert_eq!(users_status(&server, SECOND), 200);
    let (status, body) = Api::new(&server).post(
        SECOND,
        "/v1/users",
        json!({"name": "alice", "role": "admin", "teams": []}),
    );
    assert_eq!(status, 201, "{body}");
    let alice = body["token"].as_str().unwrap().to_owned();
    server.stop();

    // With a live admin in the store, another secret is ignored (and so said).
    let server = start_production(dir.path(), &key, Some(THIRD), 4);
    assert_eq!(users_status(&server, THIRD), 401);
    assert_eq!(users_status(&server, &alice), 200);
    assert_eq!(users_status(&server, SECOND), 200);
    let log = server.log_text();
    assert!(
        log.contains("the store already has an admin with a live token"),
        "{log}"
    );
    assert!(log.contains("admin, alice"), "{log}");
    assert!(
        !log.contains(THIRD) && !log.contains(SECOND),
        "a token in the log: {log}"
    );
    server.stop();
}

#[test]
fn a_production_start_with_no_admin_says_how_to_make_one_without_colour_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    write_config(&dir.path().join("cfg"), &TestIssuer::new("k1"), "");
    let server = start_production(dir.path(), &master_key(), None, 1);
    assert_eq!(users_status(&server, FIRST), 401);
    let log = server.log_text();
    assert!(
        log.contains("the store has no admin with a live token"),
        "{log}"
    );
    assert!(log.contains("KAIROS_ADMIN_TOKEN"), "{log}");
    // The log went to a file: no ANSI colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
    server.stop();
}
