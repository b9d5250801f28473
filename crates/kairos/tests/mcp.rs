//! `kairos mcp` and `/v1/mcp` through the real binary, with the official MCP Python SDK
//! (PyPI `mcp`, 1.x; a shorter pass with 2.x) as the agent: over streamable HTTP and over stdio (the SDK launches
//! `kairos mcp`), an agent initializes, lists the tools and its entitlements, is granted
//! access at once, waits on a request that two people approve over the API meanwhile,
//! lists its grants and releases one (introspection says inactive after); releasing
//! another identity's grant, reading its request, naming another identity, a policy
//! denial and bad input come back as tool errors that change nothing and name no other
//! identity. The audit shows the calls as the workload. The HTTP rules (401, 403 for
//! people and foreign origins, 405, 406, 400, 202, SSE, batches) and the stdio bridge's
//! token file (re-read per message) are checked with plain HTTP and pipes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A venv under ~/.cache with the official MCP Python SDK of one major version (made once):
/// 1.x is what this test's main agent is written against (`streamablehttp_client`,
/// `stdio_client`), 2.x what `pip install mcp` gives today (`Client`, `httpx2`).
fn python(venv: &str, requirement: &str, check: &str) -> PathBuf {
    common::python::venv_python(venv, &[requirement], check)
}

fn sdk_1x() -> PathBuf {
    python(
        "mcp-venv",
        "mcp>=1.10,<2",
        "from mcp.client.streamable_http import streamablehttp_client; import mcp.client.stdio",
    )
}

fn sdk_2x() -> PathBuf {
    python(
        "mcp2-venv",
        "mcp>=2,<3",
        "import httpx2; from mcp import Client; from mcp.client.streamable_http import streamable_http_client",
    )
}

fn add_user(api: &Api, name: &str, role: &str) -> String {
    let (status, body) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": name, "role": role, "teams": []}),
    );
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

struct Setup {
    server: Server,
    api: Api,
    issuer: TestIssuer,
    token_file: PathBuf,
    other_grant: String,
    other_request: String,
    /// Last: removed after the server stopped.
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    // Another identity's grant, which the agent must not touch.
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));
    let (status, other) = api.post(
        &deployer,
        "/v1/requests",
        json!({"entitlement": "orders-api/write", "ttl": "10m",
               "task": {"kind": "job", "ref": "deploy-1", "reason": "deploy"}}),
    );
    assert_eq!(status, 201, "{other}");
    let token_file = dir.path().join("platform-token");
    std::fs::write(&token_file, issuer.mint(SUBJECT, json!({}))).unwrap();
    Setup {
        other_grant: other["grant"]["id"].as_str().unwrap().to_owned(),
        other_request: other["request"]["id"].as_str().unwrap().to_owned(),
        dir,
        server,
        api,
        issuer,
        token_file,
    }
}

/// Runs the agent (`args` after the script), approves its pending request as two people
/// while it waits, and returns its steps by name.
fn run_agent(s: &Setup, args: &[&str]) -> std::collections::HashMap<String, Value> {
    let alice = add_user(&s.api, "alice", "approver");
    let bob = add_user(&s.api, "bob", "approver");
    let agent_log = s.dir.path().join("agent.log");
    let mut child = Command::new(sdk_1x())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/agent.py"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut steps = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut approved = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(step) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the agent stopped after {:?}\nstderr: {}\nserver log: {}",
                steps.keys().collect::<Vec<_>>(),
                std::fs::read_to_string(&agent_log).unwrap_or_default(),
                s.server.log_text()
            );
        };
        let name = step["step"].as_str().unwrap().to_owned();
        steps.insert(name.clone(), step);
        if name == "waiting" && !approved {
            // The agent's request_access is waiting: find the request, approve it twice.
            let req = poll_pending(&s.api);
            for (who, token) in [("alice", &alice), ("bob", &bob)] {
                let (status, r) = s.api.post(
                    token,
                    &format!("/v1/requests/{req}/approve"),
                    json!({"reason": format!("{who}: change CHG-9 reviewed")}),
                );
                assert_eq!(status, 200, "{r}");
            }
            approved = true;
        }
        if name == "done" {
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the agent exited with {status}: {}",
        std::fs::read_to_string(&agent_log).unwrap_or_default()
    );
    steps
}

/// The agent's pending request for orders-api/admin, once it exists.
fn poll_pending(api: &Api) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, list) = api.get(ADMIN, "/v1/requests?state=pending&identity=nightly-backup");
        assert_eq!(status, 200, "{list}");
        if let Some(r) = list["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["entitlement"] == "orders-api/admin")
        {
            return r["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no pending request appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn check_scenario(s: &Setup, steps: &std::collections::HashMap<String, Value>) {
    let step = |name: &str| steps.get(name).unwrap_or_else(|| panic!("no step {name}"));

    let init = step("initialize");
    assert_eq!(init["server"], "kairos");
    assert!(
        kairos_mcp_versions().contains(&init["protocol"].as_str().unwrap()),
        "{init}"
    );
    assert_eq!(init["tools_capability"], true);
    assert!(init["instructions"].as_str().unwrap().contains("release"));

    let tools = step("tools");
    assert_eq!(
        tools["names"],
        json!([
            "list_entitlements",
            "request_access",
            "get_request",
            "list_grants",
            "release"
        ])
    );
    assert_eq!(
        tools["schemas"]["request_access"]["required"],
        json!(["entitlement", "task_kind", "task_ref", "reason"])
    );

    let ents = step("list_entitlements");
    assert_eq!(ents["isError"], false, "{ents}");
    assert_eq!(ents["structured"]["identity"], "nightly-backup");
    let names: Vec<&str> = ents["structured"]["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"orders-api/admin"), "{names:?}");

    // Auto-granted: the credential is in the result, and works.
    let read = step("request_read");
    assert_eq!(read["isError"], false, "{read}");
    assert_eq!(read["structured"]["request"]["state"], "granted");
    assert_eq!(read["structured"]["grant"]["identity"], "nightly-backup");
    assert!(read["text"][0].as_str().unwrap().starts_with("granted"));
    let read_token = read["structured"]["credential"]["access_token"]
        .as_str()
        .unwrap();
    let read_grant = read["structured"]["grant"]["id"].as_str().unwrap();

    // Pending, approved by two people while the call waited: granted.
    let admin = step("request_admin");
    assert_eq!(admin["isError"], false, "{admin}");
    assert_eq!(
        admin["structured"]["request"]["state"], "granted",
        "{admin}"
    );
    assert_eq!(
        admin["structured"]["request"]["approvals"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let admin_token = admin["structured"]["credential"]["access_token"]
        .as_str()
        .unwrap();
    // Its own request, read again: granted, with a token for the same grant.
    let again = step("get_admin");
    assert_eq!(again["isError"], false, "{again}");
    assert_eq!(again["structured"]["request"]["state"], "granted");
    assert_eq!(
        again["structured"]["grant"]["id"],
        admin["structured"]["grant"]["id"]
    );
    assert!(again["structured"]["credential"]["access_token"].is_string());

    let grants = step("list_grants");
    assert_eq!(grants["isError"], false);
    let listed = grants["structured"]["grants"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{grants}");
    assert!(listed.iter().all(|g| g["identity"] == "nightly-backup"));

    let released = step("release");
    assert_eq!(released["isError"], false, "{released}");
    assert_eq!(released["structured"]["id"], read_grant);
    let again = step("release_again");
    assert_eq!(again["isError"], true);
    assert_eq!(again["structured"]["error"]["code"], "conflict");

    // Another identity's grant and request: refused, revealing nothing of the other.
    for name in ["release_other", "get_other_request"] {
        let r = step(name);
        assert_eq!(r["isError"], true, "{r}");
        assert_eq!(r["structured"]["error"]["code"], "not_found", "{r}");
        let text = r.to_string();
        assert!(
            !text.contains("deployer"),
            "{name} names the other identity: {text}"
        );
    }
    let (_, other) = s.api.get(ADMIN, &format!("/v1/grants/{}", s.other_grant));
    assert_eq!(other["state"], "active", "{other}");

    let denied = step("denied");
    assert_eq!(denied["isError"], true);
    assert_eq!(denied["structured"]["error"]["code"], "denied");
    assert!(
        denied["text"][0].as_str().unwrap().starts_with("denied: "),
        "{denied}"
    );

    let as_other = step("as_other");
    assert_eq!(as_other["isError"], true);
    assert_eq!(as_other["structured"]["error"]["code"], "bad_arguments");
    assert!(
        as_other["text"][0]
            .as_str()
            .unwrap()
            .contains("acts as the workload identity"),
        "{as_other}"
    );
    let bad_ttl = step("bad_ttl");
    assert_eq!(bad_ttl["isError"], true);
    assert_eq!(
        bad_ttl["structured"]["error"]["code"], "bad_ttl",
        "{bad_ttl}"
    );
    assert_eq!(step("unknown_tool")["raised"], -32602);

    // Nothing was filed for the refused calls but the denied request; no grant for
    // deployer was made by the agent.
    let (_, deployer_grants) = s.api.get(ADMIN, "/v1/grants?identity=deployer");
    assert_eq!(deployer_grants["grants"].as_array().unwrap().len(), 1);

    // Use-time verification: the released token is inactive, the other still active.
    assert_eq!(s.api.introspect(ADMIN, read_token)["active"], false);
    assert_eq!(s.api.introspect(ADMIN, admin_token)["active"], true);

    // The audit shows the calls as the workload.
    let (_, audit) = s.api.get(ADMIN, "/v1/audit?identity=nightly-backup");
    let records = audit["records"].as_array().unwrap();
    let by_workload = |kind: &str| {
        records
            .iter()
            .filter(|r| r["kind"] == kind && r["actor"] == "workload:nightly-backup")
            .count()
    };
    // Each request is recorded as `requested`, or (granted on the spot) as one `issued`.
    assert!(
        by_workload("requested") + by_workload("issued") >= 3,
        "{audit}"
    );
    assert!(by_workload("released") == 1, "{audit}");
}

fn kairos_mcp_versions() -> [&'static str; 3] {
    ["2025-06-18", "2025-03-26", "2024-11-05"]
}

#[test]
fn an_agent_over_streamable_http_with_the_python_sdk() {
    let s = setup();
    let url = s.server.url("/v1/mcp");
    let steps = run_agent(
        &s,
        &[
            "http",
            &url,
            s.token_file.to_str().unwrap(),
            &s.other_grant,
            &s.other_request,
        ],
    );
    check_scenario(&s, &steps);
}

#[test]
fn an_agent_over_stdio_with_the_python_sdk() {
    let s = setup();
    let steps = run_agent(
        &s,
        &[
            "stdio",
            kairos_bin(),
            &s.server.addr,
            s.token_file.to_str().unwrap(),
            &s.other_grant,
            &s.other_request,
        ],
    );
    check_scenario(&s, &steps);
}

#[test]
fn the_2x_sdk_connects_over_stdio_and_streamable_http() {
    let s = setup();
    let out = Command::new(sdk_2x())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/agent2.py"))
        .args([
            kairos_bin(),
            &s.server.addr,
            s.token_file.to_str().unwrap(),
            &s.other_grant,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let steps: std::collections::HashMap<String, Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["step"].as_str().unwrap().to_owned(), v))
        .collect();
    assert!(steps.contains_key("done"), "{steps:?}");
    assert_eq!(steps["stdio_tools"]["names"].as_array().unwrap().len(), 5);
    assert_eq!(steps["http_tools"]["names"].as_array().unwrap().len(), 5);
    for transport in ["stdio", "http"] {
        let granted = &steps[&format!("{transport}_request")];
        assert_eq!(granted["isError"], false, "{granted}");
        assert_eq!(granted["structured"]["request"]["state"], "granted");
        let token = granted["structured"]["credential"]["access_token"]
            .as_str()
            .unwrap();
        let released = &steps[&format!("{transport}_release")];
        assert_eq!(released["isError"], false, "{released}");
        assert_eq!(s.api.introspect(ADMIN, token)["active"], false);
        let other = &steps[&format!("{transport}_release_other")];
        assert_eq!(other["isError"], true, "{other}");
        assert_eq!(other["structured"]["error"]["code"], "not_found");
    }
    let (_, other) = s.api.get(ADMIN, &format!("/v1/grants/{}", s.other_grant));
    assert_eq!(other["state"], "active");
}

fn mcp_post(
    s: &Setup,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> reqwest::blocking::Response {
    let mut req = s
        .api
        .http
        .post(s.server.url("/v1/mcp"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap()
}

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

#[test]
fn the_http_endpoint_refuses_what_it_must() {
    let s = setup();
    let workload = std::fs::read_to_string(&s.token_file).unwrap();
    let accept = ("accept", "application/json, text/event-stream");

    // No token, a bad one, an expired one: 401 with a Bearer challenge.
    let expired = s.issuer.mint(
        SUBJECT,
        json!({"iat": now_secs() - 900, "nbf": now_secs() - 900, "exp": now_secs() - 600}),
    );
    for token in [None, Some("not-a-token"), Some(expired.as_str())] {
        let r = mcp_post(&s, token, &[accept], PING);
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
        );
        let body: Value = r.json().unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    // A person's API token: refused; the endpoint is for workloads.
    let r = mcp_post(&s, Some(ADMIN), &[accept], PING);
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "workload_only");
    // A web page's origin (DNS rebinding), even with a valid token.
    let r = mcp_post(
        &s,
        Some(&workload),
        &[accept, ("origin", "http://evil.example")],
        PING,
    );
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "origin_refused"
    );
    // No GET stream, no session to delete.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = s
            .api
            .http
            .request(method, s.server.url("/v1/mcp"))
            .bearer_auth(&workload)
            .send()
            .unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "POST");
    }
    // Nothing it can answer in.
    let r = mcp_post(&s, Some(&workload), &[("accept", "text/html")], PING);
    assert_eq!(r.status(), 406);
    // A protocol revision it does not speak.
    let r = mcp_post(
        &s,
        Some(&workload),
        &[accept, ("mcp-protocol-version", "1999-01-01")],
        PING,
    );
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], -32600);
    // Not JSON.
    let r = mcp_post(&s, Some(&workload), &[accept], "{nope");
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], -32700);

    // A notification alone: 202, no body.
    let r = mcp_post(
        &s,
        Some(&workload),
        &[accept],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status(), 202);
    assert!(r.text().unwrap().is_empty());
    // JSON by default; no session id is assigned.
    let r = mcp_post(&s, Some(&workload), &[accept], PING);
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none());
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"jsonrpc": "2.0", "id": 1, "result": {}})
    );
    // SSE for a client that accepts only that.
    let r = mcp_post(
        &s,
        Some(&workload),
        &[("accept", "text/event-stream")],
        PING,
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().unwrap();
    let data = text
        .strip_prefix("event: message\ndata: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one SSE message event: {text:?}"));
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap(),
        json!({"jsonrpc": "2.0", "id": 1, "result": {}})
    );
    // A batch (2025-03-26): an array of answers, none for the notification.
    let r = mcp_post(
        &s,
        Some(&workload),
        &[accept],
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"nope"}]"#,
    );
    let answers: Value = r.json().unwrap();
    assert_eq!(answers[0]["result"], json!({}));
    assert_eq!(answers[1]["error"]["code"], -32601);
    assert_eq!(answers.as_array().unwrap().len(), 2);

    // A release of another identity's grant over raw JSON-RPC: a tool error, nothing ends.
    let r = mcp_post(
        &s,
        Some(&workload),
        &[accept],
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": "release", "arguments": {"grant_id": s.other_grant}}})
        .to_string(),
    );
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(!answer.to_string().contains("deployer"), "{answer}");
    let (_, other) = s.api.get(ADMIN, &format!("/v1/grants/{}", s.other_grant));
    assert_eq!(other["state"], "active");
}

/// A `kairos mcp` process: its stdin, and its stdout's lines.
struct Bridge {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Bridge {
    fn start(envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(kairos_bin())
            .arg("mcp")
            .env_remove("KAIROS_TOKEN")
            .env_remove("KAIROS_TOKEN_FILE")
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    fn call(&mut self, message: &Value) -> Value {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
        let line = self.lines.recv_timeout(Duration::from_secs(30)).unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_stdio_bridge_reads_the_token_file_for_every_message() {
    let s = setup();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "list_grants", "arguments": {}}});

    // No token at all: each request is answered with an error saying what to set.
    let mut bridge = Bridge::start(&[("KAIROS_ADDR", s.server.addr.as_str())]);
    let answer = bridge.call(&list);
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["error"]["code"], -32000);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("KAIROS_TOKEN_FILE"),
        "{answer}"
    );
    drop(bridge);

    // A token file whose token is refused, then rotated to a good one: the next message
    // uses the new token, without a restart.
    let file = s.token_file.with_extension("rotating");
    std::fs::write(&file, "aaa.bbb.ccc").unwrap();
    let mut bridge = Bridge::start(&[
        ("KAIROS_ADDR", s.server.addr.as_str()),
        ("KAIROS_TOKEN_FILE", file.to_str().unwrap()),
    ]);
    let answer = bridge.call(&list);
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("401"), "{message}");
    assert!(
        !message.contains("aaa.bbb.ccc"),
        "the token is echoed: {message}"
    );
    std::fs::write(&file, s.issuer.mint(SUBJECT, json!({}))).unwrap();
    let answer = bridge.call(&list);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(answer["result"]["structuredContent"]["grants"], json!([]));

    // A line that is not JSON: a parse error, and the bridge keeps serving.
    let stdin = bridge.child.stdin.as_mut().unwrap();
    writeln!(stdin, "{{nope").unwrap();
    let line = bridge.lines.recv_timeout(Duration::from_secs(30)).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["error"]["code"], -32700);
    let answer = bridge.call(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 2, "result": {}}));

    // stdin closed: the bridge exits cleanly, having written nothing but messages.
    drop(bridge.child.stdin.take());
    let status = bridge.child.wait().unwrap();
    assert!(status.success());
}
