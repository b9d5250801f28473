//! Notifications through the real binary: a pending request reaches the approving team's
//! signed webhook (signature checked by the Standard Webhooks reference library) after the
//! receiver failed and stalled, exactly once per idempotency key; a Slack channel gets
//! Block Kit with the console link; an unreachable receiver dead-letters after
//! `--notify-dead-after`, visible in the API, the CLI and the metrics (read with
//! `prometheus_client`'s parser), and a retry sends it again; a receiver that stalls does
//! not hold up another channel; kill -9 with undelivered rows delivers them after restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The Standard Webhooks reference library and the Prometheus Python client in a venv
/// under ~/.cache (made once).
fn python() -> PathBuf {
    common::python::venv_python(
        "notify-venv",
        &["standardwebhooks", "prometheus_client"],
        "import standardwebhooks.webhooks, prometheus_client.parser",
    )
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

/// `/metrics` as `prometheus_client`'s parser reads it: every sample as
/// `name{label="value",…}` (labels sorted) → value.
fn metrics(server: &Server) -> std::collections::BTreeMap<String, f64> {
    let text = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let mut child = Command::new(python())
        .args([
            "-c",
            r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
"#,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client refused:\n{text}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    // The metrics say so, as a Prometheus client reads them: the gauge of dead messages
    // and the counter of dead-letterings per channel.
    wait_for("the dead gauge", || {
        let m = metrics(&server);
        (m.get("kairos_notifications_dead") == Some(&1.0)).then_some(m)
    });
    let m = metrics(&server);
    assert_eq!(
        m.get("kairos_notifications_dead_lettered_total{channel=\"ops\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert!(
        m.get("kairos_notifications_failed_total{channel=\"ops\"}")
            .is_some_and(|v| *v >= 1.0),
        "{m:?}"
    );

    // The CLI lists it: as a table, by state and channel, and as the server's JSON.
    let out = server.cli(ADMIN, &["notifications", "--state", "dead"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("STATE") && header.contains("LAST ERROR"),
        "{table}"
    );
    let line = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        line.contains(" ops ") && line.contains(" dead ") && line.contains("cannot reach"),
        "{table}"
    );
    let out = server.cli(ADMIN, &["notifications", "--channel", "ops", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed["notifications"][0]["id"], id.as_str(), "{listed}");
    let out = server.cli(ADMIN, &["notifications", "--channel", "chat"]);
    assert_eq!(stdout(&out), "no notifications\n");
    let out = server.cli(ADMIN, &["notifications", "--state", "pending"]);
    assert_eq!(stdout(&out), "no notifications\n");
    let out = server.cli(ADMIN, &["notifications", "--state", "lost"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pending, delivered, dead"),
        "{}",
        stderr(&out)
    );
    let out = server.cli(ADMIN, &["notifications", "--channel", "no such channel"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("channel must be a channel's name")
            && stderr(&out).contains("HTTP 400"),
        "{}",
        stderr(&out)
    );

    // An auditor reads the outbox but cannot retry; an approver cannot even read it. The
    // refusal is the same for a message that exists and one that does not.
    let auditor = add_user(&api, "audrey", "auditor", &[]);
    let approver = add_user(&api, "alice", "approver", &["payments"]);
    let (status, body) = api.post(
        &auditor,
        &format!("/v1/notifications/{id}/retry"),
        json!({}),
    );
    assert_eq!(status, 403, "{body}");
    let out = server.cli(&auditor, &["notifications"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
    let out = server.cli(&auditor, &["notifications", "retry", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "error: user audrey has role auditor; retry notifications needs one of: admin, operator (forbidden, HTTP 403)\n"
    );
    let unknown = server.cli(&auditor, &["notifications", "retry", "kairos-999999-ops"]);
    assert_eq!(
        stderr(&unknown),
        stderr(&out),
        "a refusal tells nothing of the id"
    );
    let out = server.cli(&approver, &["notifications", "retry", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("user alice has role approver") && stderr(&out).contains("HTTP 403"),
        "{}",
        stderr(&out)
    );
    let out = server.cli(&approver, &["notifications"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains(&id));
    let (_, still) = api.get(ADMIN, "/v1/notifications?state=dead");
    assert_eq!(
        still["notifications"][0]["id"],
        id.as_str(),
        "refusals changed nothing"
    );

    // An operator's retry through the CLI, once the receiver is back, delivers it.
    let operator = add_user(&api, "otto", "operator", &[]);
    let hook = Receiver::start(dir.path(), "hook", SECRET, "", port);
    let out = server.cli(&operator, &["notifications", "retry", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{id} is pending again (channel ops); it is sent on the next delivery pass\n")
    );
    let d = wait_for("the retried delivery", || {
        hook.deliveries().into_iter().next()
    });
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["verified"], true);
    // A delivered one cannot be retried (409, said plainly); an unknown one is 404.
    wait_for("delivered state", || {
        let (_, list) = api.get(ADMIN, "/v1/notifications?state=delivered");
        (!list["notifications"].as_array().unwrap().is_empty()).then_some(())
    });
    let out = server.cli(ADMIN, &["notifications", "retry", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: notification {id} is delivered; only a dead one can be retried (conflict, HTTP 409)\n"
        )
    );
    let (status, _) = api.post(ADMIN, &format!("/v1/notifications/{id}/retry"), json!({}));
    assert_eq!(status, 409);
    let (status, _) = api.post(
        ADMIN,
        "/v1/notifications/kairos-999999-ops/retry",
        json!({}),
    );
    assert_eq!(status, 404);
    let out = server.cli(ADMIN, &["notifications", "retry", "kairos-999999-ops"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));
    let (status, body) = api.get(ADMIN, "/v1/notifications?state=lost");
    assert_eq!(status, 400, "{body}");
    // Nothing is dead any more; the counter keeps what happened.
    let m = wait_for("the dead gauge back to 0", || {
        let m = metrics(&server);
        (m.get("kairos_notifications_dead") == Some(&0.0)).then_some(m)
    });
    assert_eq!(
        m.get("kairos_notifications_dead_lettered_total{channel=\"ops\"}"),
        Some(&1.0)
    );
}

#[test]
fn a_stalled_receiver_does_not_hold_up_another_channel() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    // The first channel's receiver takes the request and does not answer (until long past
    // the timeout); the second answers at once. Both take the same event, and the stalled
    // one's message comes first in the outbox's order (kairos-N-a-… < kairos-N-b-…).
    let slow = Receiver::start(dir.path(), "slow", SECRET, "stall", 0);
    let fast = Receiver::start(dir.path(), "fast", SECRET, "", 0);
    let config = config_with(
        &dir.path().join("cfg"),
        &issuer,
        &format!(
            r#"
[[notify]]
name = "a-stalls"
kind = "webhook"
url = "{}"
secret_env = "TEST_HOOK_SECRET"
events = ["request_pending"]

[[notify]]
name = "b-answers"
kind = "webhook"
url = "{}"
secret_env = "TEST_HOOK_SECRET"
events = ["request_pending"]
"#,
            slow.url(),
            fast.url()
        ),
    );
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &["--notify-backoff-ms", "100", "--notify-timeout-ms", "4000"],
        &[("TEST_HOOK_SECRET", SECRET)],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, _) = api.exchange(&platform, "orders-api/admin", Some("10m"));
    assert_eq!(status, 400);

    let d = wait_for("the answering channel's delivery", || {
        fast.deliveries().into_iter().next()
    });
    assert_eq!(d["verified"], true);
    // At that moment the stalled channel's attempt is still in flight: its receiver has
    // the request, and the outbox has recorded no outcome for it yet. Delivered one after
    // the other, the stalled attempt would have ended (and been counted) first.
    wait_for("the stalled receiver to have the request", || {
        (slow.attempts() == 1).then_some(())
    });
    let (_, list) = api.get(ADMIN, "/v1/notifications?channel=a-stalls");
    let stalled = &list["notifications"][0];
    assert_eq!(stalled["state"], "pending", "{stalled}");
    assert_eq!(stalled["attempts"], 0, "{stalled}");
    assert!(stalled["last_error"].is_null(), "{stalled}");
    assert!(slow.deliveries().is_empty());
    wait_for(
        "the answering channel's message recorded as delivered",
        || {
            let (_, list) = api.get(ADMIN, "/v1/notifications?channel=b-answers");
            (list["notifications"][0]["state"] == "delivered").then_some(())
        },
    );

    // The stall ends in a timeout, and the next attempt gets through.
    let d = wait_for("the stalled channel's delivery", || {
        slow.deliveries().into_iter().next()
    });
    assert_eq!(d["id"], stalled["id"]);
    let (_, list) = api.get(ADMIN, "/v1/notifications?channel=a-stalls");
    let row = &list["notifications"][0];
    assert_eq!(row["attempts"], 1, "{row}");
    assert_eq!(fast.deliveries().len(), 1);
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
