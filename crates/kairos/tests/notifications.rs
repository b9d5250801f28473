//! Notifications through the real binary: a pending request reaches the approving team's
//! signed webhook (signature checked by the Standard Webhooks reference library) after the
//! receiver failed and stalled, exactly once per idempotency key; a Slack channel gets
//! Block Kit with the console link; an unreachable receiver dead-letters after
//! `--notify-dead-after`, visible in the API and the metrics, and the retry endpoint
//! sends it again; kill -9 with undelivered rows delivers them after restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The Standard Webhooks reference library in a venv under ~/.cache (made once).
fn python() -> PathBuf {
    let home = std::env::var("HOME").unwrap();
    let venv = Path::new(&home).join(".cache/kairos/notify-venv");
    let py = venv.join("bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import standardwebhooks.webhooks"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(&py) {
        let s = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(s.success(), "python3 -m venv failed");
        let s = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "standardwebhooks",
            ])
            .status()
            .unwrap();
        assert!(s.success(), "pip install standardwebhooks failed");
    }
    py
}

struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    fn start(dir: &Path, name: &str, secret: &str, script: &str, port: u16) -> Self {
        let out = dir.join(format!("{name}.jsonl"));
        let mut child = Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/notify/receiver.py"
            ))
            .arg(&out)
            .arg(secret)
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
        Self { child, port, out }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn deliveries(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l.get("id").is_some())
            .collect()
    }
    fn attempts(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.get("attempt").is_some())
            .count()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_with(dir: &Path, issuer: &TestIssuer, channels: &str) -> PathBuf {
    let path = write_config(dir, issuer, "");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace("[policy]", &format!("{channels}\n[policy]"));
    std::fs::write(&path, text).unwrap();
    path
}

fn add_user(api: &Api, name: &str, role: &str, teams: &[&str]) -> String {
    let (status, body) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": name, "role": role, "teams": teams}),
    );
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[test]
fn pending_request_reaches_the_approvers_signed_webhook_and_slack_after_failures() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    // The webhook fails once (500), stalls once (no answer within the timeout), then works.
    let hook = Receiver::start(dir.path(), "hook", SECRET, "500,stall", 0);
    let slack = Receiver::start(dir.path(), "slack", "-", "", 0);
    let other_team = Receiver::start(dir.path(), "other", SECRET, "", 0);
    let config = config_with(
        &dir.path().join("cfg"),
        &issuer,
        &format!(
            r#"
[[team]]
name = "security"
owners = ["carol"]
approvers = ["carol"]

[[notify]]
name = "payments-approvers"
kind = "webhook"
url = "{}"
secret_env = "TEST_HOOK_SECRET"
events = ["request_pending", "request_approved"]
teams = ["payments"]

[[notify]]
name = "security-hook"
kind = "webhook"
url = "{}"
secret_env = "TEST_HOOK_SECRET"
events = ["request_pending"]
teams = ["security"]

[[notify]]
name = "chat"
kind = "slack"
url_env = "TEST_SLACK_URL"
events = ["request_pending"]
"#,
            hook.url(),
            other_team.url()
        ),
    );
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &["--notify-backoff-ms", "100", "--notify-timeout-ms", "1000"],
        &[
            ("TEST_HOOK_SECRET", SECRET),
            ("TEST_SLACK_URL", &slack.url()),
        ],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.exchange(&platform, "orders-api/admin", Some("10m"));
    assert_eq!(status, 400, "{body}");
    let req = body["request_id"].as_str().unwrap().to_owned();

    let delivered = wait_for("the signed webhook delivery", || {
        let d = hook.deliveries();
        (!d.is_empty()).then_some(d)
    });
    let d = &delivered[0];
    assert_eq!(d["verified"], true, "{d}");
    assert_eq!(d["body"]["type"], "kairos.request_pending");
    assert_eq!(d["body"]["data"]["team"], "payments");
    let link = format!("{}/ui/requests/{req}", server.addr);
    assert_eq!(d["body"]["data"]["link"], link.as_str());
    // It took three attempts: 500, a stall past the timeout, then 200.
    assert!(hook.attempts() >= 3, "{:?}", hook.lines());
    let id = d["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("kairos-") && id.ends_with("-payments-approvers"),
        "{id}"
    );

    // Slack: Block Kit with what, who, why and the console link.
    let s = wait_for("the Slack message", || {
        slack.deliveries().into_iter().next()
    });
    let blocks = s["body"]["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        "Access request waits for approval"
    );
    let text = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("workload:nightly-backup") && text.contains("nightly backup"),
        "{text}"
    );
    let button = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    assert_eq!(button["elements"][0]["url"], link.as_str());

    // The API shows it delivered, with its failed attempts.
    let (status, list) = api.get(ADMIN, "/v1/notifications?state=delivered");
    assert_eq!(status, 200, "{list}");
    let row = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["attempts"], 2, "{row}");
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("kairos_notifications_delivered_total{channel=\"payments-approvers\"} 1"),
        "{metrics}"
    );

    // An approver or a workload learns nothing about the outbox.
    let alice = add_user(&api, "alice", "approver", &["payments"]);
    for token in [alice.as_str(), platform.as_str()] {
        let (status, body) = api.get(token, "/v1/notifications");
        assert_eq!(status, 403, "{body}");
        assert!(body.get("notifications").is_none());
    }

    // Exactly once per idempotency key, and the other team's channel got nothing.
    let ids: Vec<String> = hook
        .deliveries()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "{ids:?}");
    assert_eq!(other_team.attempts(), 0);
}

#[test]
fn an_unreachable_receiver_dead_letters_and_retry_sends_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let port = free_port();
    let config = config_with(
        &dir.path().join("cfg"),
        &issuer,
        &format!(
            r#"
[[notify]]
name = "ops"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_env = "TEST_HOOK_SECRET"
events = ["request_pending"]
"#
        ),
    );
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &["--notify-backoff-ms", "100", "--notify-dead-after", "1s"],
        &[("TEST_HOOK_SECRET", SECRET)],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, _) = api.exchange(&platform, "orders-api/admin", Some("10m"));
    assert_eq!(status, 400);

    let dead = wait_for("the dead letter", || {
        let (_, list) = api.get(ADMIN, "/v1/notifications?state=dead");
        list["notifications"].as_array().unwrap().first().cloned()
    });
    let id = dead["id"].as_str().unwrap().to_owned();
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{dead}"
    );
    // The error names no address and no secret.
    assert!(
        !dead["last_error"].as_str().unwrap().contains("whsec_"),
        "{dead}"
    );
    wait_for("the dead gauge", || {
        let m = reqwest::blocking::get(server.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        m.contains("kairos_notifications_dead 1").then_some(())
    });

    // An operator's retry, once the receiver is back, delivers it.
    let auditor = add_user(&api, "audrey", "auditor", &[]);
    let (status, body) = api.post(
        &auditor,
        &format!("/v1/notifications/{id}/retry"),
        json!({}),
    );
    assert_eq!(status, 403, "{body}");
    let hook = Receiver::start(dir.path(), "hook", SECRET, "", port);
    let (status, body) = api.post(ADMIN, &format!("/v1/notifications/{id}/retry"), json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "pending");
    let d = wait_for("the retried delivery", || {
        hook.deliveries().into_iter().next()
    });
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["verified"], true);
    // A delivered one cannot be retried; an unknown one is 404.
    wait_for("delivered state", || {
        let (_, list) = api.get(ADMIN, "/v1/notifications?state=delivered");
        (!list["notifications"].as_array().unwrap().is_empty()).then_some(())
    });
    let (status, _) = api.post(ADMIN, &format!("/v1/notifications/{id}/retry"), json!({}));
    assert_eq!(status, 409);
    let (status, _) = api.post(
        ADMIN,
        "/v1/notifications/kairos-999999-ops/retry",
        json!({}),
    );
    assert_eq!(status, 404);
    let (status, body) = api.get(ADMIN, "/v1/notifications?state=lost");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn undelivered_rows_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let port = free_port();
    let config = config_with(
        &dir.path().join("cfg"),
        &issuer,
        &format!(
            r#"
[[notify]]
name = "ops"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_env = "TEST_HOOK_SECRET"
events = ["request_pending"]
"#
        ),
    );
    let data = dir.path().join("data");
    let envs = [("TEST_HOOK_SECRET", SECRET)];
    // A row claimed at the moment of the kill is taken over after its lease (2 × timeout + 1 s).
    let args = ["--notify-backoff-ms", "100", "--notify-timeout-ms", "500"];
    let mut server = Server::start_env(&data, Some(&config), None, &args, &envs);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, _) = api.exchange(&platform, "orders-api/admin", Some("10m"));
    assert_eq!(status, 400);
    // Written to the outbox and failing (nobody listens yet).
    wait_for("a failed attempt", || {
        let (_, list) = api.get(ADMIN, "/v1/notifications?state=pending");
        list["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["attempts"].as_u64().unwrap_or(0) > 0)
            .then_some(())
    });
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    drop(server);

    let hook = Receiver::start(dir.path(), "hook", SECRET, "", port);
    let server = Server::start_env(&data, Some(&config), None, &args, &envs);
    let d = wait_for("delivery after restart", || {
        hook.deliveries().into_iter().next()
    });
    assert_eq!(d["verified"], true);
    assert_eq!(d["body"]["type"], "kairos.request_pending");
    drop(server);
}

#[test]
fn two_replicas_on_one_postgresql_deliver_each_message_once() {
    let db = format!(
        "kairos_nt_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    common::pg::psql(
        common::pg::SHARED_PG,
        "postgres",
        &format!("CREATE DATABASE {db}"),
    );
    let result = std::panic::catch_unwind(|| {
        two_replicas(&format!("{}/{db}", common::pg::SHARED_PG));
    });
    common::pg::psql(
        common::pg::SHARED_PG,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn two_replicas(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let hook = Receiver::start(dir.path(), "hook", SECRET, "", 0);
    let config = config_with(
        &dir.path().join("cfg"),
        &issuer,
        &format!(
            r#"
[[notify]]
name = "ops"
kind = "webhook"
url = "{}"
secret_env = "TEST_HOOK_SECRET"
events = ["request_pending"]
"#,
            hook.url()
        ),
    );
    let envs = [("TEST_HOOK_SECRET", SECRET)];
    let one_data = dir.path().join("one");
    let one = Server::start_env(&one_data, Some(&config), Some(store), &[], &envs);
    // The second replica shares the store, so it needs the same master key.
    let two_data = dir.path().join("two");
    std::fs::create_dir_all(&two_data).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&two_data, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::copy(one_data.join("master.key"), two_data.join("master.key")).unwrap();
        std::fs::set_permissions(
            two_data.join("master.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let two = Server::start_env(&two_data, Some(&config), Some(store), &[], &envs);
    let (api_one, api_two) = (Api::new(&one), Api::new(&two));
    let platform = issuer.mint(SUBJECT, json!({}));
    const N: usize = 6;
    for i in 0..N {
        let api = if i % 2 == 0 { &api_one } else { &api_two };
        let (status, body) = api.exchange(&platform, "orders-api/admin", Some("10m"));
        assert_eq!(status, 400, "{body}");
    }
    wait_for("every message delivered", || {
        let (_, list) = api_two.get(ADMIN, "/v1/notifications?state=delivered");
        (list["notifications"].as_array().unwrap().len() == N).then_some(())
    });
    let (_, all) = api_one.get(ADMIN, "/v1/notifications");
    assert_eq!(all["notifications"].as_array().unwrap().len(), N, "{all}");
    let mut ids: Vec<String> = hook
        .deliveries()
        .iter()
        .map(|d| {
            assert_eq!(d["verified"], true);
            d["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), N, "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "a message was delivered twice");
}
