//! README's walk-throughs run as written: the `sh` blocks of "Quickstart", "Console", "Dynamic
//! database accounts" (with "RabbitMQ users"), "SSH certificates", "Governance",
//! "Notifications", "Policies in Rego", "Backup and restore" and "TLS" are extracted in order
//! and run in one bash session (`set -e`, so every line must succeed), against the machine's
//! PostgreSQL, MariaDB, Redis and RabbitMQ, a private OpenSSH sshd the walk-through starts (and
//! PyPI, for the notification receiver's Standard Webhooks library). "TLS" comes last: it stops
//! the walk-through's broker.
//!
//! Only these things are changed, each standing in for what a person does by hand:
//! - `cargo build …` becomes putting the test's own `kairos` binary on PATH (the build is done);
//! - `kairos server …` ("leave it running; use a second terminal") starts in the background, and a
//!   later `kairos server …` first stops the earlier one (the README says: Ctrl-C, then start);
//! - the scratch directory `/tmp/kairos-demo` becomes a fresh temporary directory;
//! - the ports the README names (the broker's default 8740, the receiver's 9099, the private
//!   sshd's 2222) become free ones, and `kairos server` is told to listen on its own (`--listen`), so the walk-through
//!   never talks to something else on this machine that holds a default port;
//! - whatever the walk-through leaves running in the background (the receiver; the sshd, if
//!   the walk-through failed before it stops it) is stopped at the end.
//!
//! The names the README uses on the shared servers (database `kairos_demo`, account prefixes
//! `demo_pg_`, `demo_my_`, `demo_rd_`, `demo_mq_`, RabbitMQ queues `orders.export` and
//! `payroll.export`) belong to this test: it removes them before and after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const SECTIONS: [&str; 11] = [
    "## Quickstart",
    "## AI agents (MCP)",
    "## Console",
    "## Dynamic database accounts",
    "## SSH certificates",
    "## Governance",
    "## Notifications",
    "## Revocation pushed to resource servers (SETs)",
    "## Policies in Rego",
    "## Backup and restore",
    "## TLS",
];
const SCRATCH: &str = "/tmp/kairos-demo";
/// The broker's default address, as the README writes it.
const BROKER: &str = "127.0.0.1:8740";
/// The notification receiver's port, as the README writes it.
const RECEIVER_PORT: &str = "9099";
/// The private sshd's port, as the README writes it.
const SSHD_PORT: &str = "2222";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `sh` blocks of a `## ` section, in order.
fn sh_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let body = &readme[start + 1..];
    let end = body[heading.len()..]
        .find("\n## ")
        .map_or(body.len(), |e| e + heading.len());
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in body[..end].lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unclosed sh block in {heading}");
    blocks
}

/// Free ports for the broker, the receiver and the sshd.
struct Ports {
    broker: u16,
    receiver: u16,
    sshd: u16,
}

/// One bash script from the blocks, with the stand-ins described at the top.
fn script(blocks: &[String], bin_dir: &Path, scratch: &Path, ports: &Ports) -> String {
    let mut out = String::from(
        r#"set -euo pipefail
__kairos_server_pid=
__stop_server() {
  if [[ -n "$__kairos_server_pid" ]]; then
    kill "$__kairos_server_pid" 2>/dev/null || true
    wait "$__kairos_server_pid" 2>/dev/null || true
    __kairos_server_pid=
  fi
}
__stop_all() {
  __stop_server
  local jobs
  jobs=$(jobs -p)
  if [[ -n "$jobs" ]]; then kill $jobs 2>/dev/null || true; fi
}
trap __stop_all EXIT
__start_server() {
  __stop_server
  kairos "$@" >>"$__scratch/server.log" 2>&1 &
  __kairos_server_pid=$!
  for _ in $(seq 1 200); do
    if curl -sf "http://$__broker/v1/health" >/dev/null; then return 0; fi
    # Native TLS: only whether it answers (the walk-through itself checks the certificate).
    if curl -sfk "https://$__broker/v1/health" >/dev/null; then return 0; fi
    if ! kill -0 "$__kairos_server_pid" 2>/dev/null; then cat "$__scratch/server.log" >&2; return 1; fi
    sleep 0.1
  done
  echo "the server did not answer" >&2; cat "$__scratch/server.log" >&2; return 1
}
"#,
    );
    out.push_str(&format!("__scratch='{}'\n", scratch.display()));
    let broker = format!("127.0.0.1:{}", ports.broker);
    out.push_str(&format!("__broker='{broker}'\n"));
    let scratch = scratch.display().to_string();
    for block in blocks {
        for line in block.lines() {
            let line = line
                .replace(SCRATCH, &scratch)
                .replace(BROKER, &broker)
                .replace(RECEIVER_PORT, &ports.receiver.to_string())
                .replace(SSHD_PORT, &ports.sshd.to_string());
            let trimmed = line.trim_start();
            if trimmed.starts_with("cargo build") {
                out.push_str(&format!("export PATH='{}':\"$PATH\"\n", bin_dir.display()));
            } else if let Some(args) = trimmed.strip_prefix("kairos server ") {
                out.push_str(&format!(
                    "__start_server server {args} --listen \"$__broker\"\n"
                ));
            } else {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sh(cmd: &str) {
    // Cleanup of what the walk-through leaves on the shared servers; failures are fine
    // (nothing to remove).
    let _ = Command::new("bash").arg("-c").arg(cmd).output();
}

fn cleanup_servers() {
    sh(
        "psql -h 127.0.0.1 -U postgres -d postgres -Atc \"SELECT rolname FROM pg_roles WHERE rolname LIKE 'demo\\_pg\\_%'\" \
        | while read -r r; do psql -h 127.0.0.1 -U postgres -d kairos_demo -c \"DROP OWNED BY \\\"$r\\\"\"; \
          psql -h 127.0.0.1 -U postgres -d postgres -c \"DROP ROLE IF EXISTS \\\"$r\\\"\"; done",
    );
    sh(
        "psql -h 127.0.0.1 -U postgres -d postgres -c 'DROP DATABASE IF EXISTS kairos_demo WITH (FORCE)'",
    );
    sh(
        "mariadb -h 127.0.0.1 -u root -Nse \"SELECT CONCAT('DROP USER ''', user, '''@''', host, ''';') FROM mysql.user WHERE user LIKE 'demo\\_my\\_%'\" \
        | mariadb -h 127.0.0.1 -u root",
    );
    sh("mariadb -h 127.0.0.1 -u root -e 'DROP DATABASE IF EXISTS kairos_demo'");
    sh(
        "redis-cli -h 127.0.0.1 ACL USERS | grep '^demo_rd_' | while read -r u; do redis-cli -h 127.0.0.1 ACL DELUSER \"$u\"; done",
    );
    sh(
        "curl -s -u guest:guest 'http://127.0.0.1:15672/api/users?columns=name' \
        | python3 -c 'import json,sys;print(\"\\n\".join(u[\"name\"] for u in json.load(sys.stdin) if u[\"name\"].startswith(\"demo_mq_\")))' \
        | while read -r u; do [ -n \"$u\" ] && curl -s -u guest:guest -X DELETE \"http://127.0.0.1:15672/api/users/$u\"; done",
    );
    for queue in ["orders.export", "payroll.export"] {
        sh(&format!(
            "curl -s -u guest:guest -X DELETE http://127.0.0.1:15672/api/queues/%2F/{queue}"
        ));
    }
}

#[test]
fn readme_walkthroughs_run_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks: Vec<String> = SECTIONS
        .iter()
        .flat_map(|s| sh_blocks(&readme, s))
        .collect();
    assert!(
        blocks.len() >= 8,
        "expected the walk-throughs' blocks, found {}",
        blocks.len()
    );
    let scratch = tempfile::tempdir().unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_kairos"));
    let ports = Ports {
        broker: free_port(),
        receiver: free_port(),
        sshd: free_port(),
    };
    let text = script(&blocks, bin.parent().unwrap(), scratch.path(), &ports);

    cleanup_servers();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&text)
        .current_dir(&root)
        .env_remove("KAIROS_ADDR")
        .env_remove("KAIROS_TOKEN")
        .output()
        .unwrap();
    cleanup_servers();
    // The private sshd, if the walk-through stopped before it killed it.
    if let Ok(pid) = std::fs::read_to_string(scratch.path().join("sshd/sshd.pid")) {
        sh(&format!("kill {}", pid.trim()));
    }

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(scratch.path().join("server.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "README walk-through failed ({}).\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{log}",
        out.status
    );
    // What the comments beside the commands promise.
    for promise in [
        "intact",                              // kairos audit verify
        "pg_roles+login",                      // the PostgreSQL receipt
        "refused: the account is gone",        // the released account no longer logs in
        "mysql.user+login",                    // the MariaDB receipt
        "refused: outside the pattern",        // RabbitMQ permissions hold
        "api+amqp",                            // the RabbitMQ receipt
        "refused: the user is gone",           // the released RabbitMQ user no longer logs in
        "logged in with the certificate",      // the SSH certificate works during the grant
        "ssh-krl",                             // the SSH receipt
        "the KRL lists it",                    // ssh-keygen -Q finds the serial in the fetched KRL
        "refused: the certificate is revoked", // and sshd refuses it
        "refused: TLS 1.1",                    // native TLS speaks 1.2 and 1.3 only
    ] {
        assert!(
            stdout.contains(promise),
            "README walk-through did not show {promise:?}.\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    }
    // The approved request's workload reads it once and gets its token (a JWT) in the table.
    let approved = stdout
        .find("granted as grt_")
        .expect("the second approval issues it");
    let status_part = &stdout[approved
        ..stdout[approved..]
            .find("CREATE DATABASE")
            .map_or(stdout.len(), |e| approved + e)];
    assert!(
        status_part.contains("eyJ"),
        "request-status shows no token:\n{status_part}"
    );
    // Notifications: the signed webhook's delivery verified by the reference library, and
    // both channels' messages delivered in the outbox listing.
    // The last table printed is `kairos notifications`; the line before it, grep's count.
    let start = stdout.rfind("\nID ").expect("the notifications table") + 1;
    let notes = &stdout[start..];
    for channel in ["chat", "payments-approvers"] {
        assert!(
            notes
                .lines()
                .any(|l| l.contains(&format!("-{channel} ")) && l.contains(" delivered ")),
            "no delivered message to {channel}:\n{notes}"
        );
    }
    let verified = stdout[..start].lines().last().unwrap_or_default();
    assert_eq!(verified.trim(), "1", "signatures verified:\n{stdout}");
    // Native TLS: the metadata's issuer is the https address.
    assert!(
        stdout.contains(&format!("https://127.0.0.1:{}\n", ports.broker)),
        "the metadata does not say https:\n{stdout}"
    );
    // Introspection answers active before the release and inactive after it.
    let active = stdout.find("active").expect("introspection output");
    assert!(stdout[active..].contains("false"), "{stdout}");
}

/// "Running several replicas" runs as written, in a bash session of its own (two servers at
/// once, which the main walk-through's one-broker stand-ins do not model). Only the ports
/// (8741, 8742) become free ones and the database `kairos_replicas` one of this test's own,
/// so that nothing else on the machine is touched; the block's own last line drops it.
#[test]
fn readme_replicas_walkthrough_runs_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = sh_blocks(&readme, "## Running several replicas");
    assert_eq!(blocks.len(), 1, "one walk-through block");
    let db = format!(
        "kairos_replicas_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let (a, b) = (free_port(), free_port());
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_kairos"));
    let text = format!(
        "set -euo pipefail\nexport PATH='{}':\"$PATH\"\n{}",
        bin.parent().unwrap().display(),
        blocks[0]
            .replace("kairos_replicas", &db)
            .replace("8741", &a.to_string())
            .replace("8742", &b.to_string())
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&text)
        .env_remove("KAIROS_ADDR")
        .env_remove("KAIROS_TOKEN")
        .output()
        .unwrap();
    // Whatever happened, the database goes.
    sh(&format!(
        "psql -h 127.0.0.1 -U postgres -d postgres -c 'DROP DATABASE IF EXISTS {db} WITH (FORCE)'"
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the replicas walk-through failed ({}).\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&r#"{"ready":true}"#), "{stdout}");
    assert!(lines.contains(&r#"{"live":true}"#), "{stdout}");
    // The second replica's JWKS lists the key rotated on the first beside the old one.
    let jwks: serde_json::Value = serde_json::from_str(
        lines
            .iter()
            .find(|l| l.starts_with(r#"{"keys""#))
            .unwrap_or_else(|| panic!("no JWKS in the output:\n{stdout}")),
    )
    .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
}
