//! Recertification and standing exceptions through the real binary, on SQLite and
//! PostgreSQL: review tasks, who may attest (and what the others get), exceptions whose
//! rotation is overdue, recording a rotation, and the CLI's tables and JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::pg::{SHARED_PG, SharedDb, managed_roles};
use common::*;
use serde_json::{Value, json};

fn add_user(api: &Api, name: &str, role: &str, teams: &[&str], targets: &[&str]) -> String {
    let (status, body) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": name, "role": role, "teams": teams, "targets": targets}),
    );
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// The test configuration plus: `nightly-backup` recertified every 10 days (shorter than
/// the 14-day notice: its review is open at once), `deployer` on the 30-day default, and a
/// standing exception whose secret must be rotated every `rotate_every`.
fn write_recert_config(dir: &Path, issuer: &TestIssuer, rotate_every: &str) -> std::path::PathBuf {
    let governance = "\n[governance]\nrecertify_every = \"30d\"\nrecert_notice = \"14d\"\n";
    let path = write_config(dir, issuer, governance);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        &format!("subject = \"{SUBJECT}\"\n"),
        &format!("subject = \"{SUBJECT}\"\nrecertify_every = \"10d\"\n"),
        1,
    );
    let ends = kairos_domain::Timestamp::from_millis(now_secs() * 1000)
        .plus(Duration::from_secs(30 * 86_400))
        .to_rfc3339();
    let text = format!(
        r#"{text}
[[exception]]
name = "legacy-billing"
identity = "deployer"
owner = "payments"
system = "billing-db (legacy)"
secret_ref = "vault:kv/legacy/billing"
reason = "the vendor client cannot take short-lived accounts yet"
rotate_every = "{rotate_every}"
ends = "{ends}"
allowed_sources = ["10.20.0.0/16"]
scope_note = "read-only on the invoices schema"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<Value>) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn entry<'a>(list: &'a Value, kind: &str, subject: &str) -> &'a Value {
    list["recertifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind && e["subject"] == subject)
        .unwrap_or_else(|| panic!("{kind} {subject} not listed: {list}"))
}

fn audit_of(api: &Api, token: &str, kind: &str) -> Vec<Value> {
    let (status, body) = api.get(token, "/v1/audit?limit=1000");
    assert_eq!(status, 200, "{body}");
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == kind)
        .cloned()
        .collect()
}

fn recertification_round(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_recert_config(&dir.path().join("cfg"), &issuer, "2s");
    let server = Server::start_with(
        &dir.path().join("data"),
        Some(&config),
        store,
        &["--recert-pass-ms", "200"],
    );
    let api = Api::new(&server);
    let carol = add_user(&api, "carol", "approver", &["payments"], &[]); // owner of payments
    let alice = add_user(&api, "alice", "approver", &["payments"], &[]); // approver, no owner
    let oscar = add_user(&api, "oscar", "operator", &[], &[]);
    let audrey = add_user(&api, "audrey", "auditor", &[], &[]);
    let rs = add_user(&api, "orders-rs", "resource-server", &[], &["orders-api"]);
    let platform = issuer.mint(SUBJECT, json!({}));

    // The pass records what it sees and opens the review of what is due.
    let list = wait_until("the first pass", Duration::from_secs(20), || {
        let (status, list) = api.get(&audrey, "/v1/recertifications");
        assert_eq!(status, 200, "{list}");
        let seen = list["recertifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["first_seen_at"].is_null());
        seen.then_some(list)
    });
    let backup = entry(&list, "identity", "nightly-backup");
    assert_eq!(backup["status"], "due", "{backup}");
    assert_eq!(backup["team"], "payments");
    assert_eq!(backup["recertify_every"], "10d");
    assert_eq!(entry(&list, "identity", "deployer")["status"], "ok");
    assert_eq!(
        entry(&list, "identity", "deployer")["recertify_every"],
        "30d"
    );
    assert_eq!(entry(&list, "exception", "legacy-billing")["status"], "ok");
    let (_, due) = api.get(&oscar, "/v1/recertifications?state=due");
    let due_names: Vec<&str> = due["recertifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(due_names, vec!["nightly-backup"]);
    let (_, overdue) = api.get(&alice, "/v1/recertifications?state=overdue");
    assert_eq!(overdue["recertifications"], json!([]));
    let due_audit = wait_until("recert_due audit", Duration::from_secs(10), || {
        let records = audit_of(&api, &audrey, "recert_due");
        (!records.is_empty()).then(|| json!(records))
    });
    assert_eq!(due_audit.as_array().unwrap().len(), 1, "{due_audit}");
    assert_eq!(due_audit[0]["identity"], "nightly-backup");

    // Bad input: a clear 4xx, nothing written.
    let (status, body) = api.get(&audrey, "/v1/recertifications?state=late");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_state");
    let attest = "/v1/recertifications/identity/nightly-backup/attest";
    let (status, body) = api.post(&carol, attest, json!({}));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reason"),
        "{body}"
    );
    let (status, body) = api.post(&carol, attest, json!({"reason": "   "}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "missing_reason");
    let (status, body) = api.post(
        &carol,
        "/v1/recertifications/identity/ghost/attest",
        json!({"reason": "x"}),
    );
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"ghost\""),
        "{body}"
    );
    let (status, body) = api.post(
        &carol,
        "/v1/recertifications/robot/nightly-backup/attest",
        json!({"reason": "x"}),
    );
    assert_eq!(status, 404, "{body}");

    // Callers outside the owners: 403 naming the rule, revealing no owner.
    for (who, token) in [("alice", &alice), ("oscar", &oscar), ("audrey", &audrey)] {
        let (status, body) = api.post(token, attest, json!({"reason": "looks fine"}));
        assert_eq!(status, 403, "{who}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("only an owner of team payments"),
            "{message}"
        );
        assert!(!message.contains("carol"), "{message}");
    }
    let (status, body) = api.post(ADMIN, attest, json!({"reason": "I am admin"}));
    assert_eq!(status, 403, "admin is no owner: {body}");
    let (status, body) = api.post(&platform, attest, json!({"reason": "me"}));
    assert_eq!(status, 403, "{body}");
    let (status, body) = api.post(&rs, attest, json!({"reason": "me"}));
    assert_eq!(status, 403, "{body}");
    // Listing: people only; the others learn nothing (the workload here is another one).
    let deployer = issuer.mint(OTHER_SUBJECT, json!({}));
    for token in [&rs, &deployer] {
        let (status, body) = api.get(token, "/v1/recertifications");
        assert_eq!(status, 403, "{body}");
        assert!(!body.to_string().contains("nightly-backup"), "{body}");
        let (status, body) = api.get(token, "/v1/exceptions");
        assert_eq!(status, 403, "{body}");
        assert!(!body.to_string().contains("legacy-billing"), "{body}");
    }
    let (status, _) = api.get("not-a-token", "/v1/recertifications");
    assert_eq!(status, 401);
    let (_, list) = api.get(&audrey, "/v1/recertifications");
    assert!(entry(&list, "identity", "nightly-backup")["last_attested_at"].is_null());
    assert!(audit_of(&api, &audrey, "recert_attested").is_empty());

    // The owner attests, through the CLI.
    let out = server.cli(
        &carol,
        &[
            "recert",
            "attest",
            "nightly-backup",
            "--reason",
            "still backs up orders",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("attested identity nightly-backup (team payments): next due "),
        "{}",
        stdout(&out)
    );
    let out = server.cli(&audrey, &["recert", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let backup = entry(&list, "identity", "nightly-backup");
    assert_eq!(backup["attested_by"], "user:carol");
    assert_eq!(backup["reason"], "still backs up orders");
    // Within the 14-day notice of its 10-day cycle, it is due again at once.
    assert_eq!(backup["status"], "due");
    let out = server.cli(&audrey, &["recert", "list", "--due"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("KIND "), "{table}");
    assert!(table.contains("nightly-backup  payments  due"), "{table}");
    assert!(table.contains("user:carol"), "{table}");
    let attested = audit_of(&api, &audrey, "recert_attested");
    assert_eq!(attested.len(), 1);
    assert_eq!(attested[0]["actor"], "user:carol");
    assert_eq!(attested[0]["data"]["reason"], "still backs up orders");
    // A new cycle, a new review task.
    wait_until("the next cycle's review", Duration::from_secs(10), || {
        (audit_of(&api, &audrey, "recert_due").len() == 2).then_some(Value::Null)
    });
    // A non-owner through the CLI: exit 1, the rule on stderr.
    let out = server.cli(
        &alice,
        &[
            "recert",
            "attest",
            "--exception",
            "legacy-billing",
            "--reason",
            "ok",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only an owner of team payments"),
        "{}",
        stderr(&out)
    );

    // The exception's 2-second rotation falls overdue: flagged once per cycle.
    let flagged = wait_until("rotation overdue", Duration::from_secs(20), || {
        let (status, list) = api.get(&audrey, "/v1/exceptions");
        assert_eq!(status, 200, "{list}");
        let e = list["exceptions"][0].clone();
        (e["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["finding"] == "rotation_overdue"))
        .then_some(e)
    });
    assert_eq!(flagged["name"], "legacy-billing");
    assert_eq!(flagged["secret_ref"], "vault:kv/legacy/billing");
    assert_eq!(flagged["allowed_sources"], json!(["10.20.0.0/16"]));
    assert_eq!(flagged["scope_note"], "read-only on the invoices schema");
    assert!(flagged["last_rotated_at"].is_null());
    wait_until(
        "the rotation_overdue audit",
        Duration::from_secs(10),
        || {
            (!audit_of(&api, &audrey, "exception_rotation_overdue").is_empty())
                .then_some(Value::Null)
        },
    );
    std::thread::sleep(Duration::from_millis(2500)); // a few more passes
    let overdue_records = audit_of(&api, &audrey, "exception_rotation_overdue");
    assert_eq!(
        overdue_records.len(),
        1,
        "once per cycle: {overdue_records:?}"
    );
    assert_eq!(overdue_records[0]["identity"], "deployer");
    let out = server.cli(&audrey, &["exception", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rotation_overdue since"),
        "{}",
        stdout(&out)
    );

    // Recording a rotation: an approver who is no owner may not; an operator may.
    let (status, body) = api.post(&alice, "/v1/exceptions/legacy-billing/rotated", json!({}));
    assert_eq!(status, 403, "{body}");
    let (status, body) = api.post(&oscar, "/v1/exceptions/ghost/rotated", json!({}));
    assert_eq!(status, 404, "{body}");
    let out = server.cli(
        &oscar,
        &[
            "exception",
            "rotated",
            "legacy-billing",
            "--note",
            "rotated in vault, SEC-12",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("recorded a rotation of exception legacy-billing by user:oscar"),
        "{}",
        stdout(&out)
    );
    let rotated = audit_of(&api, &audrey, "exception_rotated");
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0]["actor"], "user:oscar");
    assert_eq!(rotated[0]["data"]["note"], "rotated in vault, SEC-12");

    // Retiring instead: not by a non-owner; by the owner, through the CLI.
    let (status, body) = api.post(
        &alice,
        "/v1/recertifications/identity/deployer/retire",
        json!({"reason": "gone"}),
    );
    assert_eq!(status, 403, "{body}");
    let out = server.cli(
        &carol,
        &[
            "recert",
            "retire",
            "deployer",
            "--reason",
            "the deploy job moved elsewhere",
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("retired identity deployer"),
        "{}",
        stdout(&out)
    );
    let (status, body) = api.post(
        &carol,
        "/v1/recertifications/identity/deployer/attest",
        json!({"reason": "too late"}),
    );
    assert_eq!(status, 409, "{body}");

    // Every record is on the chain.
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // The OpenAPI document names the endpoints.
    let (_, doc) = api.get(ADMIN, "/v1/openapi.json");
    for path in [
        "/v1/recertifications",
        "/v1/recertifications/{kind}/{name}/attest",
        "/v1/recertifications/identity/{name}/retire",
        "/v1/exceptions",
        "/v1/exceptions/{name}/rotated",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

#[test]
fn recertification_and_exceptions_on_sqlite() {
    recertification_round(None);
}

#[test]
fn recertification_and_exceptions_on_postgres() {
    let admin = std::env::var("KAIROS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let db = format!("kairos_it_{}", uuid::Uuid::new_v4().simple());
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([
                &format!("{admin}/postgres"),
                "-v",
                "ON_ERROR_STOP=1",
                "-qc",
                sql,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    psql(&format!("CREATE DATABASE {db}"));
    let url = format!("{admin}/{db}");
    let result = std::panic::catch_unwind(|| recertification_round(Some(&url)));
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// A configuration whose exception has already ended is refused at apply, naming the
/// file, line and key; nothing is applied.
#[test]
fn an_exception_past_its_end_is_refused_at_apply() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_recert_config(&dir.path().join("cfg"), &issuer, "30d");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text.lines().position(|l| l.starts_with("ends = ")).unwrap() + 1;
    let past = text
        .lines()
        .map(|l| {
            if l.starts_with("ends = ") {
                "ends = \"2020-01-31\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, past).unwrap();
    let out = server.cli(ADMIN, &["apply", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("kairos.toml:{line}: exception[0].ends: exception legacy-billing ended at 2020-01-31T00:00:00.000Z")),
        "{err}"
    );
    // Still the first configuration: the exception ends in 30 days.
    let (_, list) = Api::new(&server).get(ADMIN, "/v1/exceptions");
    assert_ne!(
        list["exceptions"][0]["ends"], "2020-01-31T00:00:00.000Z",
        "{list}"
    );
}

/// An identity whose recertification falls overdue (a 4-second interval, on the server's
/// real clock) is suspended: its PostgreSQL account is revoked and verified gone, its
/// requests are refused, and an alert is open; the owner's attestation lifts it. The store
/// is PostgreSQL.
#[test]
fn an_overdue_identity_is_suspended_and_its_postgres_account_verified_gone() {
    let shared = SharedDb::new();
    let store_db = format!("kairos_it_{}", uuid::Uuid::new_v4().simple());
    common::pg::psql(
        SHARED_PG,
        "postgres",
        &format!("CREATE DATABASE {store_db}"),
    );
    let result =
        std::panic::catch_unwind(|| overdue_round(&shared, &format!("{SHARED_PG}/{store_db}")));
    common::pg::psql(
        SHARED_PG,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {store_db} WITH (FORCE)"),
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn overdue_round(shared: &SharedDb, store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let path = write_config(&cfg, &issuer, "\n[governance]\nrecert_notice = \"1s\"\n");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replacen(
            &format!("subject = \"{SUBJECT}\"\n"),
            &format!("subject = \"{SUBJECT}\"\nrecertify_every = \"4s\"\n"),
            1,
        )
        .replace(
            "[policy]",
            &format!(
                r#"[[target]]
name = "orders-db"
kind = "postgres"
admin_url_env = "KAIROS_IT_PG_ADMIN"
managed_prefix = "{}"
reconcile_interval = "1s"

[[entitlement]]
name = "orders-db/readonly"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT CONNECT ON DATABASE {} TO {{{{role}}}}"]

[policy]"#,
                shared.prefix, shared.name
            ),
        );
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        cfg.join("policies/db.cedar"),
        "@id(\"db-jobs\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"orders-db\");\n",
    )
    .unwrap();
    let admin = shared.admin_url();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&path),
        Some(store),
        &["--recert-pass-ms", "200"],
        &[("KAIROS_IT_PG_ADMIN", admin.as_str())],
    );
    let api = Api::new(&server);
    let carol = add_user(&api, "carol", "approver", &["payments"], &[]);
    let platform = issuer.mint(SUBJECT, json!({}));
    let ask = || {
        api.post(
            &platform,
            "/v1/requests",
            json!({"entitlement": "orders-db/readonly", "ttl": "10m",
                   "task": {"kind": "job", "ref": "run-1", "reason": "export"}}),
        )
    };
    let (status, body) = ask();
    assert_eq!(status, 201, "{body}");
    let account = body["credential"]["username"].as_str().unwrap().to_owned();
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        managed_roles(SHARED_PG, &shared.prefix),
        vec![account.clone()]
    );

    // Overdue after 4 s: suspended, the grant ended and its account verified gone.
    let g = api.wait_grant(ADMIN, &grant, Duration::from_secs(30), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["reason"], "suspended", "{g}");
    assert_eq!(g["receipt"]["ended_by"], "system:recert", "{g}");
    assert!(!g["receipt"]["verified_at"].is_null(), "{g}");
    assert!(managed_roles(SHARED_PG, &shared.prefix).is_empty());
    let (status, body) = ask();
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recert attest"),
        "{body}"
    );
    let (_, alerts) = api.get(ADMIN, "/v1/alerts");
    assert!(alerts.to_string().contains("recert_overdue"), "{alerts}");
    let (_, overdue) = api.get(ADMIN, "/v1/recertifications?state=overdue");
    assert_eq!(
        overdue["recertifications"][0]["subject"], "nightly-backup",
        "{overdue}"
    );

    // The owner attests: resumed, and the identity gets access again.
    let (status, body) = api.post(
        &carol,
        "/v1/recertifications/identity/nightly-backup/attest",
        json!({"reason": "reviewed: still exports orders nightly"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    let (status, body) = ask();
    assert_eq!(status, 201, "{body}");
    let (_, audit) = api.get(ADMIN, "/v1/audit?identity=nightly-backup&limit=1000");
    let kinds: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "recert_due",
        "recert_overdue",
        "identity_suspended",
        "recert_attested",
        "identity_resumed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
}
