//! Identity lifecycle through the real server and CLI: owners are people (an apply warns
//! about owners who are not users; an identity whose team has no active owner is
//! orphaned, audited and alerted at once, and with `orphan_action = "suspend"` suspended
//! after the grace, its PostgreSQL account verified gone); suspend, resume and retire
//! with a mandatory reason; a suspended identity's requests get 403 naming the
//! suspension; and who may call each `/v1/identities` endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pg::{SHARED_PG, SharedDb, managed_roles};
use common::*;
use serde_json::{Value, json};

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "CLI failed: {}\n{}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Adds a person with the CLI; returns their API token.
fn add_user(server: &Server, name: &str, role: &str, team: Option<&str>) -> String {
    let mut args = vec!["--json", "user", "add", name, "--role", role];
    if let Some(t) = team {
        args.extend(["--team", t]);
    }
    let out: Value = serde_json::from_str(&ok(&server.cli(ADMIN, &args))).unwrap();
    out["token"].as_str().unwrap().to_owned()
}

/// The common test catalog plus a PostgreSQL target whose entitlement policy grants at
/// once, and a `[governance]` table that suspends orphans after `grace`.
fn write_lifecycle_config(dir: &Path, issuer: &TestIssuer, db: &SharedDb, grace: &str) -> PathBuf {
    let path = write_config(dir, issuer, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[policy]",
        &format!(
            r#"
[[target]]
name = "orders-db"
kind = "postgres"
admin_url_env = "KAIROS_IT_PG_ADMIN"
managed_prefix = "{prefix}"

[[entitlement]]
name = "orders-db/readonly"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT CONNECT ON DATABASE {name} TO {{{{role}}}}"]

[governance]
orphan_action = "suspend"
orphan_grace = "{grace}"

[policy]"#,
            prefix = db.prefix,
            name = db.name,
        ),
    );
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        dir.join("policies/db.cedar"),
        "@id(\"db-jobs\") permit (principal in Kairos::Team::\"payments\", action == Kairos::Action::\"request\", resource in Kairos::Target::\"orders-db\") when { context.task_kind == \"job\" };\n",
    )
    .unwrap();
    path
}

fn ask(api: &Api, platform: &str, entitlement: &str, task_ref: &str) -> (u16, Value) {
    api.post(
        platform,
        "/v1/requests",
        json!({"entitlement": entitlement, "ttl": "10m",
               "task": {"kind": "job", "ref": task_ref, "reason": "export"}}),
    )
}

fn identity(api: &Api, name: &str) -> Value {
    let (status, body) = api.get(ADMIN, &format!("/v1/identities/{name}"));
    assert_eq!(status, 200, "{body}");
    body
}

fn audit_kinds(api: &Api, identity: &str) -> Vec<String> {
    let (status, audit) = api.get(ADMIN, &format!("/v1/audit?identity={identity}"));
    assert_eq!(status, 200, "{audit}");
    audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> Option<Value>) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = done() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Revoke the last owner → orphaned at once (audit, alert) → suspended after a 2 s grace
/// → its live PostgreSQL account verified gone; its requests get 403 naming the
/// suspension until a person resumes it.
fn orphan_to_suspension(store: Option<&str>) {
    let shared = SharedDb::new();
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_lifecycle_config(&cfg, &issuer, &shared, "1h");
    let admin_url = shared.admin_url();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        store,
        &[],
        &[("KAIROS_IT_PG_ADMIN", admin_url.as_str())],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));

    // carol owns payments but is no user yet: a warning, not an error; the identity is
    // orphaned (flagged, not yet suspended: the grace is an hour).
    let dry = ok(&server.cli(ADMIN, &["apply", "--dry-run", config.to_str().unwrap()]));
    assert!(
        dry.contains("warning: team payments: owners names carol, who is not a Kairos user"),
        "{dry}"
    );
    assert!(dry.contains("team payments has no active owner"), "{dry}");
    let nightly = identity(&api, "nightly-backup");
    assert_eq!(nightly["orphaned"], true, "{nightly}");
    assert_eq!(nightly["status"]["state"], "active", "{nightly}");
    assert_eq!(nightly["owners"], json!(["carol"]), "{nightly}");
    assert_eq!(nightly["active_owners"], json!([]), "{nightly}");
    assert!(nightly["orphan"]["grace_ends"].is_string(), "{nightly}");
    assert_eq!(
        count(&audit_kinds(&api, "nightly-backup"), "identity_orphaned"),
        1
    );

    // carol arrives: the flag clears at once, audited.
    let carol = add_user(&server, "carol", "approver", Some("payments"));
    let nightly = identity(&api, "nightly-backup");
    assert_eq!(nightly["orphaned"], false, "{nightly}");
    assert_eq!(nightly["active_owners"], json!(["carol"]), "{nightly}");
    assert_eq!(
        count(&audit_kinds(&api, "nightly-backup"), "orphan_cleared"),
        1
    );
    let listed = ok(&server.cli(&carol, &["identity", "list"]));
    assert!(listed.contains("nightly-backup"), "{listed}");

    // A short grace from now on; then a live database account.
    let config = write_lifecycle_config(&cfg, &issuer, &shared, "2s");
    let applied = ok(&server.cli(ADMIN, &["apply", config.to_str().unwrap()]));
    assert!(!applied.contains("carol"), "carol is a user now: {applied}");
    let (status, body) = ask(&api, &platform, "orders-db/readonly", "run-1");
    assert_eq!(status, 201, "{body}");
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    let role = body["credential"]["username"].as_str().unwrap().to_owned();
    assert!(managed_roles(SHARED_PG, &shared.prefix).contains(&role));

    // The last owner's tokens are revoked: orphaned at once, audited and alerted.
    ok(&server.cli(ADMIN, &["user", "revoke", "carol"]));
    let nightly = identity(&api, "nightly-backup");
    assert_eq!(nightly["orphaned"], true, "orphaned at once: {nightly}");
    let kinds = audit_kinds(&api, "nightly-backup");
    assert_eq!(count(&kinds, "identity_orphaned"), 2, "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "alert_raised"), "{kinds:?}");

    // After the grace: suspended (cause orphaned), its grant ended and verified gone. The
    // suspension and the orphan record's `suspended_at` are two writes; wait for both.
    let suspended = wait_until("the orphan's suspension", Duration::from_secs(30), || {
        let v = identity(&api, "nightly-backup");
        (v["status"]["state"] == "suspended" && v["orphan"]["suspended_at"].is_string())
            .then_some(v)
    });
    assert_eq!(suspended["status"]["cause"], "orphaned", "{suspended}");
    assert_eq!(
        suspended["status"]["by"], "system:governance",
        "{suspended}"
    );
    assert!(
        suspended["orphan"]["suspended_at"].is_string(),
        "{suspended}"
    );
    let ended = api.wait_grant(ADMIN, &grant, Duration::from_secs(30), |g| {
        g["state"] == "ended"
    });
    assert_eq!(ended["receipt"]["reason"], "suspended", "{ended}");
    assert!(ended["receipt"]["verified_at"].is_string(), "{ended}");
    assert!(
        !managed_roles(SHARED_PG, &shared.prefix).contains(&role),
        "{role} must be gone"
    );

    // Its requests are refused, naming the suspension.
    let (status, body) = ask(&api, &platform, "orders-api/read", "run-2");
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("nightly-backup is suspended (orphaned)"),
        "{message}"
    );

    // Resumed by a person (still flagged, but not suspended again): requests work.
    let out = ok(&server.cli(
        ADMIN,
        &[
            "identity",
            "resume",
            "nightly-backup",
            "--reason",
            "owner is on leave, checked",
        ],
    ));
    assert!(out.contains("nightly-backup is active"), "{out}");
    let (status, body) = ask(&api, &platform, "orders-api/read", "run-3");
    assert_eq!(status, 201, "{body}");
    std::thread::sleep(Duration::from_secs(3));
    let nightly = identity(&api, "nightly-backup");
    assert_eq!(nightly["status"]["state"], "active", "{nightly}");
    assert_eq!(nightly["orphaned"], true, "{nightly}");
}

#[test]
fn orphan_to_suspension_on_sqlite() {
    orphan_to_suspension(None);
}

#[test]
fn orphan_to_suspension_on_postgres() {
    let name = format!("kairos_it_{}", uuid::Uuid::new_v4().simple());
    common::pg::psql(SHARED_PG, "postgres", &format!("CREATE DATABASE {name}"));
    let url = format!("{SHARED_PG}/{name}");
    let result = std::panic::catch_unwind(|| orphan_to_suspension(Some(&url)));
    common::pg::psql(
        SHARED_PG,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Who may call each `/v1/identities` endpoint; what the others get (403 that names no
/// identity, and nothing changes); a missing reason is a 400 that changes nothing; an
/// unknown identity is a 404 for those who may act; suspend, resume and retire through
/// the CLI, and a retired identity is never resumed.
#[test]
fn identity_endpoints_permissions_and_states() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let deployer_jwt = issuer.mint(OTHER_SUBJECT, json!({}));

    let operator = add_user(&server, "olga", "operator", None);
    let owner = add_user(&server, "carol", "approver", Some("payments"));
    let approver = add_user(&server, "alice", "approver", Some("payments"));
    let auditor = add_user(&server, "dora", "auditor", None);
    let rs = {
        let out = ok(&server.cli(
            ADMIN,
            &[
                "--json",
                "user",
                "add",
                "orders-rs",
                "--role",
                "resource-server",
                "--target",
                "orders-api",
            ],
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        v["token"].as_str().unwrap().to_owned()
    };

    // Reading: people; not resource servers, not workloads.
    for token in [ADMIN, &operator, &owner, &approver, &auditor] {
        let (status, body) = api.get(token, "/v1/identities");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["identities"].as_array().unwrap().len(), 2, "{body}");
        let (status, body) = api.get(token, "/v1/identities/deployer");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["team"], "payments");
    }
    for token in [&rs, &platform] {
        for path in ["/v1/identities", "/v1/identities/deployer"] {
            let (status, body) = api.get(token, path);
            assert_eq!(status, 403, "{path}: {body}");
            let text = body.to_string();
            assert!(
                !text.contains("payments") && !text.contains("ci-job"),
                "{path} reveals: {text}"
            );
        }
    }
    let (status, body) = api.get(ADMIN, "/v1/identities/ghost");
    assert_eq!(status, 404, "{body}");

    // Changing a state: admin, operator, the identity's owners. The others get 403 and
    // nothing changes; an approver learns nothing of an identity they do not own.
    let reason = json!({"reason": "incident INC-9"});
    for verb in ["suspend", "resume", "retire"] {
        for token in [&approver, &auditor, &rs, &platform] {
            for who in ["deployer", "ghost"] {
                let (status, body) = api.post(
                    token,
                    &format!("/v1/identities/{who}/{verb}"),
                    reason.clone(),
                );
                assert_eq!(status, 403, "{verb} {who}: {body}");
                let text = body.to_string();
                assert!(!text.contains("payments"), "{text}");
            }
        }
        // The same answer for an identity they do not own and one that does not exist.
        let (_, a) = api.post(
            &approver,
            &format!("/v1/identities/deployer/{verb}"),
            reason.clone(),
        );
        let (_, b) = api.post(
            &approver,
            &format!("/v1/identities/ghost/{verb}"),
            reason.clone(),
        );
        assert_eq!(a, b);
    }
    assert_eq!(identity(&api, "deployer")["status"]["state"], "active");

    // A reason is mandatory: 400, nothing changes.
    for body in [json!({}), json!({"reason": "   "})] {
        let (status, answer) = api.post(&owner, "/v1/identities/deployer/suspend", body);
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("reason"),
            "{answer}"
        );
    }
    let refused = server.cli(&owner, &["identity", "suspend", "deployer", "--reason", ""]);
    assert!(!refused.status.success());
    assert_eq!(identity(&api, "deployer")["status"]["state"], "active");
    assert!(
        !audit_kinds(&api, "deployer")
            .iter()
            .any(|k| k == "identity_suspended")
    );

    // Unknown identity, for those who may act: 404.
    for token in [ADMIN, &operator] {
        let (status, body) = api.post(token, "/v1/identities/ghost/suspend", reason.clone());
        assert_eq!(status, 404, "{body}");
    }

    // The owner suspends (its live grant ends), cannot suspend twice, and resumes.
    let (status, body) = api.exchange(&deployer_jwt, "orders-api/write", Some("10m"));
    assert_eq!(status, 200, "{body}");
    let grant = body["grant_id"].as_str().unwrap().to_owned();
    let out = ok(&server.cli(
        &owner,
        &[
            "identity",
            "suspend",
            "deployer",
            "--reason",
            "leaked token",
        ],
    ));
    assert!(out.contains("deployer is suspended (manual)"), "{out}");
    assert!(out.contains(&grant), "{out}");
    let ended = api.wait_grant(ADMIN, &grant, Duration::from_secs(15), |g| {
        g["state"] == "ended"
    });
    assert_eq!(ended["receipt"]["reason"], "suspended", "{ended}");
    let (status, body) = api.post(&owner, "/v1/identities/deployer/suspend", reason.clone());
    assert_eq!(status, 409, "{body}");
    let (status, body) = api.exchange(&deployer_jwt, "orders-api/write", Some("10m"));
    assert_ne!(status, 200, "a suspended identity gets nothing: {body}");
    let shown = ok(&server.cli(&auditor, &["identity", "show", "deployer"]));
    assert!(shown.contains("suspended (manual)"), "{shown}");
    assert!(shown.contains("leaked token"), "{shown}");
    assert!(shown.contains("user:carol"), "{shown}");
    let json_list = ok(&server.cli(&auditor, &["--json", "identity", "list"]));
    let list: Value = serde_json::from_str(&json_list).unwrap();
    assert!(
        list["identities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "deployer" && i["status"]["state"] == "suspended")
    );
    ok(&server.cli(
        &owner,
        &[
            "identity",
            "resume",
            "deployer",
            "--reason",
            "token rotated",
        ],
    ));
    let (status, body) = api.exchange(&deployer_jwt, "orders-api/write", Some("10m"));
    assert_eq!(status, 200, "resumed: {body}");

    // An operator retires it; a retired identity is never resumed (409), nor asks.
    ok(&server.cli(
        &operator,
        &[
            "identity",
            "retire",
            "deployer",
            "--reason",
            "service decommissioned",
        ],
    ));
    let (status, body) = api.post(ADMIN, "/v1/identities/deployer/resume", reason.clone());
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retired"),
        "{body}"
    );
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        json!({"entitlement": "orders-api/read", "ttl": "5m",
               "task": {"kind": "job", "ref": "run-1", "reason": "nightly"}}),
    );
    assert_eq!(status, 201, "another identity is unaffected: {body}");
    let kinds = audit_kinds(&api, "deployer");
    for kind in ["identity_suspended", "identity_resumed", "identity_retired"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind}: {kinds:?}");
    }
}
