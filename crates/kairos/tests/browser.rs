//! The console in a real browser: Debian's headless Chromium, driven by `playwright-core`
//! (`tests/browser/console.mjs`), through the real server. Two approvers sign in — one
//! with her API token, one through a real OpenID Connect provider (`tests/idp/`) — see the
//! request in their inboxes and approve it; the workload waiting on its request gets its
//! credential; an admin searches and exports the audit log. A form without its CSRF token is refused; axe-core finds no serious or
//! critical accessibility violation on any page; screenshots of the main pages are kept
//! under the test's target temp dir (`console-screenshots-*`).
//!
//! Needs `chromium` (apt) and `node`/`npm`; the npm packages are installed from the
//! committed lock file into a cache outside the repository (`KAIROS_BROWSER_DEPS`, default
//! `~/.cache/kairos/browser-tests`). `.ci/run` installs Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

fn add_user(api: &Api, body: Value) -> String {
    let (status, r) = api.post(ADMIN, "/v1/users", body);
    assert_eq!(status, 201, "{r}");
    r["token"].as_str().unwrap().to_owned()
}

/// The script and its npm dependencies, installed (once per lock file) outside the repo.
fn browser_deps() -> PathBuf {
    common::node::node_deps(
        "browser",
        "KAIROS_BROWSER_DEPS",
        "browser-tests",
        &["console.mjs"],
        "playwright-core",
    )
}

#[test]
fn approvers_approve_in_a_real_browser_and_the_workload_gets_its_credential() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install -y chromium chromium-driver"
    );
    let deps = browser_deps();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "console-screenshots-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&shots).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let mut idp = common::idp::Idp::start(json!({
        "bob-at-idp": {"preferred_username": "bob", "groups": ["payments"]},
    }));
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&idp.console_toml("groups_claim = \"groups\""));
    std::fs::write(&config, text).unwrap();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[],
        &[(common::idp::SECRET_ENV, common::idp::CLIENT_SECRET)],
    );
    idp.register(&server.url("/ui/sso/callback"));
    let api = Api::new(&server);
    let alice = add_user(&api, json!({"name": "alice", "role": "approver"}));
    add_user(
        &api,
        json!({"name": "bob", "role": "approver", "teams": ["payments"]}),
    );
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.exchange(&platform, "orders-api/admin", Some("10m"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending", "{body}");
    let req = body["request_id"].as_str().unwrap().to_owned();

    let waiter = {
        let base = api.base.clone();
        let platform = platform.clone();
        let req = req.clone();
        std::thread::spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap()
                .get(format!("{base}/v1/requests/{req}?wait=60s"))
                .bearer_auth(&platform)
                .send()
                .unwrap()
                .json::<Value>()
                .unwrap()
        })
    };

    let out = Command::new("node")
        .arg(deps.join("console.mjs"))
        .current_dir(&deps)
        .env("KAIROS_ADDR", &server.addr)
        .env("ALICE_TOKEN", &alice)
        .env("BOB_LOGIN", "bob-at-idp")
        .env("ADMIN_TOKEN", ADMIN)
        .env("REQUEST_ID", &req)
        .env("OUT_DIR", &shots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "browser script failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    eprintln!("console screenshots: {}", shots.display());
    for shot in [
        "login",
        "login-sso",
        "inbox",
        "request",
        "requests",
        "grants",
        "identities",
        "grant",
        "grant-admin",
        "alerts",
        "reviews",
        "recertifications",
        "exceptions",
        "posture",
        "notifications",
    ] {
        let png = std::fs::metadata(shots.join(format!("{shot}.png"))).unwrap();
        assert!(png.len() > 1000, "{shot}.png is empty");
    }

    let waited = waiter.join().unwrap();
    assert_eq!(waited["request"]["state"], "granted", "{waited}");
    let access = waited["credential"]["access_token"].as_str().unwrap();
    assert_eq!(api.introspect(ADMIN, access)["active"], true);
    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?request={req}"));
    let approvers: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "approved")
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["user:alice", "user:bob"], "{audit}");
    // Bob came through the IdP, alice with her token.
    let (_, audit) = api.get(ADMIN, "/v1/audit?limit=500");
    let method = |who: &str| {
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "console_signed_in" && r["actor"] == who)
            .map(|r| r["data"]["method"].clone())
    };
    assert_eq!(method("user:bob"), Some(json!("oidc")), "{audit}");
    assert_eq!(method("user:alice"), Some(json!("api_token")), "{audit}");
}
