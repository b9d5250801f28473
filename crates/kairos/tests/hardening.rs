//! Hardening through the real binary: private files whatever the umask, absolute policy
//! globs from any directory, oversized request headers answered with a JSON 431, and
//! transparent huge pages off for the server's process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Starts `kairos server --dev` through `sh -c 'umask …; cd …; exec kairos …'`: under
/// that umask, from that working directory.
fn start_under(umask: &str, cwd: &Path, data: &Path, config: Option<&Path>) -> Server {
    let log = data.with_extension("log");
    let mut script = format!(
        "umask {umask}; cd \"$1\"; shift; exec \"$@\" server --dev --listen 127.0.0.1:0 --dev-admin-token {ADMIN} --data \"$DATA\""
    );
    if config.is_some() {
        script.push_str(" --config \"$CONFIG\"");
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(cwd)
        .arg(kairos_bin())
        .env("DATA", data)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(c) = config {
        cmd.env("CONFIG", c);
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
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    };
    Server {
        child,
        addr,
        data: data.to_owned(),
        log,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn sibling(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// A token grant: a write through the store, so the WAL exists.
fn issue_one(server: &Server, issuer: &TestIssuer) {
    let api = Api::new(server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        json!({"entitlement": "orders-api/read", "ttl": "5m",
               "task": {"kind": "job", "ref": "run-1", "reason": "hardening"}}),
    );
    assert_eq!(status, 201, "{body}");
}

/// The server opts its process out of transparent huge pages (see `memory.rs` in the
/// binary: with them, bulk store writes spent a third of their time zeroing 2 MiB pages).
/// The kernel reports the process's setting in `/proc/PID/status` (`THP_enabled`, since
/// Linux 5.0), whatever the machine's own setting is.
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), None, None);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .unwrap_or_else(|| panic!("no THP_enabled line in /proc/PID/status:\n{status}"));
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    // This test process itself did not opt out: the setting is the server's own.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let machine = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok();
    if machine.is_some_and(|m| !m.contains("[never]")) {
        assert!(own.lines().any(|l| l == "THP_enabled:\t1"), "{own}");
    }
    server.stop();
}

#[test]
fn data_dir_and_store_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let data = dir.path().join("data");
    let db = data.join("kairos.db");

    // A fresh data directory under umask 000.
    let server = start_under("000", dir.path(), &data, Some(&config));
    issue_one(&server, &issuer);
    assert_eq!(mode(&data), 0o700, "data directory");
    for file in [
        db.clone(),
        sibling(&db, "-wal"),
        sibling(&db, "-shm"),
        data.join("master.key"),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    server.stop();

    // Files an earlier run (or an operator) left readable are tightened at start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in [db.clone(), sibling(&db, "-wal"), sibling(&db, "-shm")] {
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let server = start_under("000", dir.path(), &data, None);
    issue_one(&server, &issuer);
    assert_eq!(mode(&data), 0o700, "data directory");
    for file in [db.clone(), sibling(&db, "-wal"), sibling(&db, "-shm")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn absolute_policy_globs_load_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_config(&cfg, &issuer, "");
    let absolute = cfg.join("policies").join("*.cedar");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "files = [\"policies/*.cedar\"]",
        &format!("files = [{:?}]", absolute.display().to_string()),
    );
    assert!(text.contains(&absolute.display().to_string()), "{text}");
    std::fs::write(&config, text).unwrap();
    // Started from a directory that is neither the config's nor its parent.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let server = start_under("022", &elsewhere, &dir.path().join("data"), Some(&config));
    // The policies were read: CI jobs read orders without approval.
    issue_one(&server, &issuer);
    // And `kairos apply` from there bundles the same files.
    let out = Command::new(kairos_bin())
        .args(["apply"])
        .arg(&config)
        .current_dir(&elsewhere)
        .env("KAIROS_ADDR", &server.addr)
        .env("KAIROS_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// One raw HTTP/1.1 request over TCP; returns the status and the body.
fn raw_get(addr: &str, extra_headers: &str) -> (u16, String) {
    let host = addr.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!(
        "GET /v1/grants HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN}\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn oversized_headers_get_a_json_431() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), None, None);
    // A request with ordinary headers is served.
    let (status, body) = raw_get(&server.addr, "X-Trace: abc\r\n");
    assert_eq!(status, 200, "{body}");
    // 40 headers of 1 KiB each: 40 KiB, over the 16 KiB the API reads.
    let big: String = (0..40)
        .map(|i| format!("X-Padding-{i}: {}\r\n", "a".repeat(1024)))
        .collect();
    let (status, body) = raw_get(&server.addr, &big);
    assert_eq!(status, 431, "{body}");
    // Chunked or not, the body is the JSON error.
    let json_start = body
        .find('{')
        .unwrap_or_else(|| panic!("no JSON body: {body:?}"));
    let json_end = body.rfind('}').unwrap() + 1;
    let error: Value = serde_json::from_str(&body[json_start..json_end]).unwrap();
    assert_eq!(error["error"]["code"], "headers_too_large", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("16384"), "{message}");
    // One long header value does the same.
    let (status, body) = raw_get(&server.addr, &format!("Cookie: {}\r\n", "c".repeat(20_000)));
    assert_eq!(status, 431, "{body}");
    assert!(body.contains("headers_too_large"), "{body}");
}
