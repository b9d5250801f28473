//! Revocation pushed to resource servers that verify tokens offline, through the real
//! binary: every end of a token grant becomes one signed SET (RFC 8417) per receiver
//! covering the grant's target. A push receiver written in Python validates each SET with
//! PyJWT (PyJWKClient on Kairos's JWKS; `typ`, `aud`, `iss`) and answers 202 (RFC 8935); a
//! Python poller fetches and acknowledges them (RFC 8936). The receipt names which
//! receivers acknowledged and when, or which did not within their `ack_timeout`; a
//! receiver that is down gets its SET when it comes back, across a restart; a poll by
//! anyone but the receiver's resource server is refused and reveals nothing; a bad poll
//! body or ack is a 400 JSON error and loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Kairos's public URL in these tests: the SETs' `iss` (kept across restarts).
const PUBLIC: &str = "http://kairos.sets.test";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// PyJWT with its crypto extra in a venv under ~/.cache (made once).
fn python() -> PathBuf {
    common::python::venv_python(
        "sets-venv",
        &["PyJWT[crypto]"],
        "import jwt, cryptography; jwt.PyJWKClient",
    )
}

fn script(name: &str) -> String {
    format!("{}/tests/sets/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The Python push receiver (tests/sets/receiver.py).
struct Receiver {
    child: Child,
    out: PathBuf,
}

impl Receiver {
    fn start(
        dir: &Path,
        name: &str,
        server: &Server,
        audience: &str,
        mode: &str,
        port: u16,
    ) -> Self {
        let out = dir.join(format!("{name}.jsonl"));
        let mut child = Command::new(python())
            .arg(script("receiver.py"))
            .arg(&out)
            .arg(server.url("/.well-known/jwks.json"))
            .arg(PUBLIC)
            .arg(audience)
            .arg(mode)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("port {port}"),
            "the receiver did not start"
        );
        Self { child, out }
    }
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn sets(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l.get("jti").is_some())
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test catalog plus a second token target and `receivers`.
fn config_with(dir: &Path, issuer: &TestIssuer, receivers: &str) -> PathBuf {
    let path = write_config(dir, issuer, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[policy]",
        &format!(
            r#"
[[target]]
name = "inventory-api"
kind = "token"
audience = "https://inventory.internal"

{receivers}
[policy]"#
        ),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(dir: &Path, config: &Path, envs: &[(&str, &str)]) -> Server {
    Server::start_env(
        &dir.join("data"),
        Some(config),
        None,
        &["--issuer-url", PUBLIC, "--notify-timeout-ms", "1000"],
        envs,
    )
}

/// Adds a resource server for `target`; returns its API token.
fn add_rs(api: &Api, name: &str, target: &str) -> String {
    let (status, body) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": name, "role": "resource-server", "targets": [target]}),
    );
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// A token grant of nightly-backup on orders-api; returns (grant id, platform token).
fn token_grant(api: &Api, issuer: &TestIssuer) -> (String, String) {
    let (grant, platform, _) = token_grant_with_token(api, issuer);
    (grant, platform)
}

/// As [`token_grant`], with the access token.
fn token_grant_with_token(api: &Api, issuer: &TestIssuer) -> (String, String, String) {
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.exchange(&platform, "orders-api/read", Some("10m"));
    assert_eq!(status, 200, "{body}");
    (
        body["grant_id"].as_str().unwrap().to_owned(),
        platform,
        body["access_token"].as_str().unwrap().to_owned(),
    )
}

fn release(api: &Api, platform: &str, grant: &str) {
    let (status, g) = api.post(platform, &format!("/v1/grants/{grant}/release"), json!({}));
    assert_eq!(status, 200, "{g}");
}

fn ended(api: &Api, grant: &str, timeout: Duration) -> Value {
    api.wait_grant(ADMIN, grant, timeout, |g| g["state"] == "ended")
}

fn receiver_row<'a>(g: &'a Value, name: &str) -> &'a Value {
    g["receipt"]["set_receivers"]
        .as_array()
        .unwrap_or_else(|| panic!("no set_receivers in {g}"))
        .iter()
        .find(|r| r["receiver"] == name)
        .unwrap_or_else(|| panic!("no receiver {name} in {g}"))
}

/// Checks one SET's claims say that `grant`'s token ended for `reason`.
fn names_grant(claims: &Value, grant: &str, audience: &str, reason: &str) {
    assert_eq!(claims["iss"], PUBLIC, "{claims}");
    assert_eq!(claims["aud"], audience, "{claims}");
    assert_eq!(claims["sub_id"]["format"], "jwt_id", "{claims}");
    assert_eq!(claims["sub_id"]["iss"], PUBLIC, "{claims}");
    assert_eq!(claims["sub_id"]["jti"], grant, "{claims}");
    let event = &claims["events"][SESSION_REVOKED];
    assert!(event["event_timestamp"].as_i64().unwrap() > 0, "{claims}");
    assert!(
        event["reason_admin"]["en"]
            .as_str()
            .unwrap()
            .starts_with(reason),
        "{claims}"
    );
}

#[test]
fn a_push_receiver_gets_a_valid_set_and_the_receipt_names_its_ack() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let port = free_port();
    let other_port = free_port();
    let config = config_with(
        &dir.path().join("cfg"),
        &issuer,
        &format!(
            r#"
[[set_receiver]]
name = "orders-push"
delivery = "push"
endpoint_url = "http://127.0.0.1:{port}/ssf/events"
auth_header_env = "TEST_SET_AUTH"
resource_server = "orders-rs"
audience = "https://orders.internal"

[[set_receiver]]
name = "inventory-push"
delivery = "push"
endpoint_url = "http://127.0.0.1:{other_port}/ssf/events"
resource_server = "inventory-rs"
audience = "https://inventory.internal"
"#
        ),
    );
    let server = start(
        dir.path(),
        &config,
        &[("TEST_SET_AUTH", "Bearer set-secret-1")],
    );
    let api = Api::new(&server);
    add_rs(&api, "orders-rs", "orders-api");
    add_rs(&api, "inventory-rs", "inventory-api");
    let orders = Receiver::start(
        dir.path(),
        "orders",
        &server,
        "https://orders.internal",
        "ok",
        port,
    );
    let inventory = Receiver::start(
        dir.path(),
        "inventory",
        &server,
        "https://inventory.internal",
        "ok",
        other_port,
    );

    let (grant, platform) = token_grant(&api, &issuer);
    release(&api, &platform, &grant);
    let g = ended(&api, &grant, Duration::from_secs(30));

    // The receiver validated one SET naming the grant's token, and acknowledged it.
    let sets = orders.sets();
    assert_eq!(sets.len(), 1, "{:?}", orders.lines());
    names_grant(
        &sets[0]["claims"],
        &grant,
        "https://orders.internal",
        "released",
    );
    assert_eq!(sets[0]["content_type"], "application/secevent+jwt");
    assert_eq!(sets[0]["authorization"], "Bearer set-secret-1");
    let jti = sets[0]["jti"].as_str().unwrap();

    // The receipt: verified, with the receiver's ack and its time.
    let receipt = &g["receipt"];
    assert_eq!(receipt["method"], "introspection+set", "{g}");
    assert!(
        receipt["evidence"]
            .as_str()
            .unwrap()
            .contains("SET acknowledged by orders-push at "),
        "{g}"
    );
    let row = receiver_row(&g, "orders-push");
    assert_eq!(row["state"], "acked", "{g}");
    assert_eq!(row["jti"], jti);
    assert_eq!(row["delivery"], "push");
    let acked = row["acknowledged_at"].as_str().unwrap();
    assert!(acked >= receipt["ended_at"].as_str().unwrap(), "{g}");
    assert!(acked <= receipt["verified_at"].as_str().unwrap(), "{g}");

    // A resource server of another target is told nothing of it.
    assert_eq!(
        g["receipt"]["set_receivers"].as_array().unwrap().len(),
        1,
        "{g}"
    );
    assert_eq!(inventory.attempts(), 0);

    // The CLI shows the receiver's ack.
    let out = server.cli(ADMIN, &["grant", &grant]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("SET receiver:") && text.contains("orders-push (push): acknowledged at"),
        "{text}"
    );

    // Operators see the receiver's backlog; metrics count the delivery.
    let (status, list) = api.get(ADMIN, "/v1/ssf/receivers");
    assert_eq!(status, 200, "{list}");
    let r = list["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "orders-push")
        .unwrap();
    assert_eq!(
        (r["acked"].as_u64(), r["pending"].as_u64()),
        (Some(1), Some(0)),
        "{list}"
    );
    let rs = add_rs(&api, "other-rs", "orders-api");
    let (status, body) = api.get(&rs, "/v1/ssf/receivers");
    assert_eq!(status, 403, "{body}");
    assert!(body.get("receivers").is_none());
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics
            .contains("kairos_set_deliveries_total{receiver=\"orders-push\",outcome=\"acked\"} 1"),
        "{metrics}"
    );
    // The auth header never reaches the log.
    assert!(!server.log_text().contains("set-secret-1"));
}

#[test]
fn a_receiver_that_is_down_gets_the_set_when_it_comes_back_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let port = free_port();
    let config = config_with(
        &dir.path().join("cfg"),
        &issuer,
        &format!(
            r#"
[[set_receiver]]
name = "orders-push"
delivery = "push"
endpoint_url = "http://127.0.0.1:{port}/ssf/events"
resource_server = "orders-rs"
audience = "https://orders.internal"
"#
        ),
    );
    let server = start(dir.path(), &config, &[]);
    let api = Api::new(&server);
    add_rs(&api, "orders-rs", "orders-api");
    let (grant, platform, token) = token_grant_with_token(&api, &issuer);
    release(&api, &platform, &grant);

    // Nobody listens: the attempt fails and is retried; the grant stays `revoking` (its
    // token is inactive all the same) and the receipt says what the receiver lacks.
    let g = api.wait_grant(ADMIN, &grant, Duration::from_secs(30), |g| {
        g["receipt"]["set_receivers"][0]["attempts"].as_u64() >= Some(1)
    });
    assert_eq!(g["state"], "revoking", "{g}");
    let row = receiver_row(&g, "orders-push");
    assert_eq!(row["state"], "pending");
    assert!(row["acknowledged_at"].is_null());
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the receiver"),
        "{g}"
    );
    assert!(
        !row["last_error"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{g}"
    );
    // Introspection already answers inactive: only the receipt waits.
    assert_eq!(api.introspect(ADMIN, &token)["active"], false);

    // Kairos restarts with the SET undelivered; the receiver comes back afterwards.
    server.stop();
    let server = start(dir.path(), &config, &[]);
    let api = Api::new(&server);
    let receiver = Receiver::start(
        dir.path(),
        "orders",
        &server,
        "https://orders.internal",
        "ok",
        port,
    );
    let g = ended(&api, &grant, Duration::from_secs(60));
    let sets = receiver.sets();
    assert_eq!(sets.len(), 1, "{:?}", receiver.lines());
    names_grant(
        &sets[0]["claims"],
        &grant,
        "https://orders.internal",
        "released",
    );
    let row = receiver_row(&g, "orders-push");
    assert_eq!(row["state"], "acked", "{g}");
    assert!(row["attempts"].as_u64().unwrap() >= 1, "{g}");
    assert_eq!(g["receipt"]["method"], "introspection+set", "{g}");
}

#[test]
fn a_receiver_that_never_acks_or_refuses_is_named_in_the_receipt_after_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let (good, dead, picky) = (free_port(), free_port(), free_port());
    let config = config_with(
        &dir.path().join("cfg"),
        &issuer,
        &format!(
            r#"
[[set_receiver]]
name = "orders-good"
delivery = "push"
endpoint_url = "http://127.0.0.1:{good}/ssf"
resource_server = "orders-rs"
audience = "https://orders.internal"
ack_timeout = "3s"

[[set_receiver]]
name = "orders-dead"
delivery = "push"
endpoint_url = "http://127.0.0.1:{dead}/ssf"
resource_server = "orders-rs"
audience = "https://orders.internal"
ack_timeout = "3s"

[[set_receiver]]
name = "orders-picky"
delivery = "push"
endpoint_url = "http://127.0.0.1:{picky}/ssf"
resource_server = "orders-rs"
audience = "https://orders.internal"
ack_timeout = "3s"
"#
        ),
    );
    let server = start(dir.path(), &config, &[]);
    let api = Api::new(&server);
    add_rs(&api, "orders-rs", "orders-api");
    let _good = Receiver::start(
        dir.path(),
        "good",
        &server,
        "https://orders.internal",
        "ok",
        good,
    );
    let dead_rx = Receiver::start(
        dir.path(),
        "dead",
        &server,
        "https://orders.internal",
        "fail",
        dead,
    );
    // This one expects another audience: it refuses the SET with an RFC 8935 error.
    let picky_rx = Receiver::start(
        dir.path(),
        "picky",
        &server,
        "https://elsewhere.internal",
        "ok",
        picky,
    );

    let (grant, platform) = token_grant(&api, &issuer);
    // Another grant, revoked by an operator while the first waits: a dead receiver holds
    // up no other grant's end beyond its own bound.
    let (second, _) = token_grant(&api, &issuer);
    release(&api, &platform, &grant);
    let (status, body) = api.post(
        ADMIN,
        &format!("/v1/grants/{second}/revoke"),
        json!({"reason": "rotation"}),
    );
    assert_eq!(status, 200, "{body}");

    let g = ended(&api, &grant, Duration::from_secs(30));
    let receipt = &g["receipt"];
    assert_eq!(receipt["method"], "introspection+set(incomplete)", "{g}");
    let evidence = receipt["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("SET acknowledged by orders-good at "),
        "{evidence}"
    );
    assert!(
        evidence.contains("orders-dead (no acknowledgement within its ack_timeout; last error: the receiver answered HTTP 500"),
        "{evidence}"
    );
    assert!(
        evidence.contains("orders-picky (refused it at "),
        "{evidence}"
    );
    assert!(evidence.contains("invalid_request: "), "{evidence}");
    assert_eq!(receiver_row(&g, "orders-good")["state"], "acked");
    assert_eq!(receiver_row(&g, "orders-dead")["state"], "pending");
    assert!(receiver_row(&g, "orders-dead")["acknowledged_at"].is_null());
    assert_eq!(receiver_row(&g, "orders-picky")["state"], "failed");
    assert!(dead_rx.attempts() >= 1);

    let g2 = ended(&api, &second, Duration::from_secs(30));
    assert!(
        g2["receipt"]["evidence"]
            .as_str()
            .unwrap()
            .contains("SET NOT acknowledged by "),
        "{g2}"
    );
    // A refused SET is not sent again: one attempt per grant.
    assert_eq!(picky_rx.attempts(), 2, "{:?}", picky_rx.lines());
    // The dead receiver's SETs stay pending (it may yet come back), visible to operators.
    let (_, list) = api.get(ADMIN, "/v1/ssf/receivers");
    let r = list["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "orders-dead")
        .cloned()
        .unwrap();
    assert_eq!(r["pending"], 2, "{list}");
    let out = server.cli(ADMIN, &["grant", &grant]);
    let text = stdout(&out);
    assert!(
        text.contains("orders-dead (push): NOT acknowledged"),
        "{text}"
    );
}

/// One poll by Python (PyJWT validates every SET); returns its printout.
fn poll(server: &Server, receiver: &str, client: &str, secret: &str, request: Value) -> Value {
    let out = Command::new(python())
        .arg(script("poll.py"))
        .arg(&server.addr)
        .arg(receiver)
        .arg(client)
        .arg(secret)
        .arg(PUBLIC)
        .arg("https://orders.internal")
        .arg(request.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "poll.py: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_poll_receiver_fetches_verifies_and_acknowledges_and_nobody_else_may() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = config_with(
        &dir.path().join("cfg"),
        &issuer,
        r#"
[[set_receiver]]
name = "orders-poll"
delivery = "poll"
resource_server = "orders-rs"
audience = "https://orders.internal"
"#,
    );
    let server = start(dir.path(), &config, &[]);
    let api = Api::new(&server);
    let rs = add_rs(&api, "orders-rs", "orders-api");
    let other = add_rs(&api, "other-rs", "orders-api");

    let (grant, platform) = token_grant(&api, &issuer);
    release(&api, &platform, &grant);
    let p = wait_for(
        "the SET at the poll endpoint",
        Duration::from_secs(30),
        || {
            let p = poll(
                &server,
                "orders-poll",
                "orders-rs",
                &rs,
                json!({"returnImmediately": true}),
            );
            (p["claims"].as_object().is_some_and(|c| !c.is_empty())).then_some(p)
        },
    );
    assert_eq!(p["status"], 200, "{p}");
    assert_eq!(p["body"]["moreAvailable"], false);
    let (jti, claims) = p["claims"].as_object().unwrap().iter().next().unwrap();
    names_grant(claims, &grant, "https://orders.internal", "released");
    let g = api.get(ADMIN, &format!("/v1/grants/{grant}")).1;
    assert_eq!(g["state"], "revoking", "{g}");

    // Others: another resource server, an admin, a workload, nobody, an unknown receiver.
    for (who, secret) in [("other-rs", other.as_str()), ("test-admin", ADMIN)] {
        let p = poll(
            &server,
            "orders-poll",
            who,
            secret,
            json!({"ack": [jti], "returnImmediately": true}),
        );
        assert!(p["status"] == 401 || p["status"] == 403, "{p}");
        assert!(p["body"].get("sets").is_none(), "{p}");
    }
    let denied = |token: Option<&str>, receiver: &str| {
        let mut req = api
            .http
            .post(server.url(&format!("/v1/ssf/poll/{receiver}")))
            .header("content-type", "application/json")
            .body(json!({"returnImmediately": true}).to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, body) = denied(Some(&other), "orders-poll");
    assert_eq!(status, 403, "{body}");
    let (status2, body2) = denied(Some(&other), "no-such-receiver");
    assert_eq!(
        (status2, &body2),
        (403, &body.replace("orders-poll", "no-such-receiver"))
    );
    assert!(!body.contains(jti.as_str()));
    let (status, body) = denied(Some(ADMIN), "orders-poll");
    assert_eq!(status, 403, "{body}");
    let (status, body) = denied(Some(&platform), "orders-poll");
    assert_eq!(status, 403, "{body}");
    let (status, body) = denied(None, "orders-poll");
    assert_eq!(status, 401, "{body}");

    // Bad bodies and bad acks: 400 with a JSON error, nothing recorded, nothing lost.
    for bad in [
        "{not json",
        "[1, 2]",
        r#"{"ack": "one"}"#,
        r#"{"maxEvents": -1}"#,
        r#"{"ack": ["does-not-exist"]}"#,
    ] {
        let r = api
            .http
            .post(server.url("/v1/ssf/poll/orders-poll"))
            .basic_auth("orders-rs", Some(&rs))
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
        let e: Value = r.json().unwrap();
        assert!(
            e["error"]["code"].is_string() && e["error"]["message"].is_string(),
            "{e}"
        );
    }
    // A mix of a good and a bad ack records neither.
    let p = poll(
        &server,
        "orders-poll",
        "orders-rs",
        &rs,
        json!({"ack": [jti, "nope"], "returnImmediately": true}),
    );
    assert_eq!(p["status"], 400, "{p}");
    let p = poll(
        &server,
        "orders-poll",
        "orders-rs",
        &rs,
        json!({"returnImmediately": true}),
    );
    assert!(
        p["claims"].get(jti.as_str()).is_some(),
        "the SET was lost: {p}"
    );

    // The acknowledgement ends the wait: the receipt names it.
    let p = poll(
        &server,
        "orders-poll",
        "orders-rs",
        &rs,
        json!({"ack": [jti], "maxEvents": 0, "returnImmediately": true}),
    );
    assert_eq!(p["status"], 200, "{p}");
    let g = ended(&api, &grant, Duration::from_secs(30));
    let row = receiver_row(&g, "orders-poll");
    assert_eq!(row["state"], "acked", "{g}");
    assert_eq!(row["delivery"], "poll");
    assert!(row["acknowledged_at"].is_string());
    assert_eq!(g["receipt"]["method"], "introspection+set");

    // A long poll waits for the next SET, and returns it soon after the grant ends.
    let (next, platform) = token_grant(&api, &issuer);
    let waiting = {
        let (addr, rs) = (server.addr.clone(), rs.clone());
        std::thread::spawn(move || {
            let out = Command::new(python())
                .arg(script("poll.py"))
                .arg(&addr)
                .arg("orders-poll")
                .arg("orders-rs")
                .arg(&rs)
                .arg(PUBLIC)
                .arg("https://orders.internal")
                .arg(json!({"returnImmediately": false}).to_string())
                .output()
                .unwrap();
            let started = Instant::now();
            (
                serde_json::from_slice::<Value>(&out.stdout).unwrap(),
                started,
            )
        })
    };
    // Usually the poll is waiting before the grant ends (with nothing to return it waits
    // up to 20 s); either way it must answer with the new SET, well before its bound.
    let released_at = Instant::now();
    release(&api, &platform, &next);
    let (p, _) = waiting.join().unwrap();
    assert!(
        released_at.elapsed() < Duration::from_secs(15),
        "the long poll did not return when the SET came"
    );
    let claims = p["claims"].as_object().unwrap();
    assert_eq!(claims.len(), 1, "{p}");
    names_grant(
        claims.values().next().unwrap(),
        &next,
        "https://orders.internal",
        "released",
    );
}
