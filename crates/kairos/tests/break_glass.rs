//! Break-glass through the real binary: an incident request granted at once with an
//! after-action review open, filed by an owner (API and CLI), on SQLite and PostgreSQL;
//! what everyone else gets; policy seeing open reviews; the configuration's cap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

/// The common test configuration plus `orders-api/breakglass` (high tier, 30m, break
/// glass) and a policy that permits it for incidents while the identity has no open
/// review.
fn write_break_glass_config(dir: &Path, issuer: &TestIssuer) -> PathBuf {
    let config = write_config(dir, issuer, "");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(
        r#"
[[entitlement]]
name = "orders-api/breakglass"
target = "orders-api"
tier = "high"
max_ttl = "30m"
scopes = ["orders:admin"]
break_glass = true
"#,
    );
    std::fs::write(&config, toml).unwrap();
    std::fs::write(
        dir.join("policies/breakglass.cedar"),
        r#"
@id("break-glass-one-at-a-time")
@reason("break-glass for incidents, one open review at a time")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/breakglass")
when { context.break_glass && context.task_kind == "incident" && context.open_reviews < 1 };
"#,
    )
    .unwrap();
    config
}

fn add_user(api: &Api, name: &str, role: &str) -> String {
    let mut body = json!({"name": name, "role": role});
    if role == "resource-server" {
        body["targets"] = json!(["orders-api"]);
    }
    let (status, body) = api.post(ADMIN, "/v1/users", body);
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn incident(identity: Option<&str>) -> Value {
    let mut body = json!({
        "entitlement": "orders-api/breakglass",
        "ttl": "10m",
        "task": {"kind": "incident", "ref": "INC-42", "reason": "orders are failing"},
    });
    if let Some(i) = identity {
        body["identity"] = json!(i);
    }
    body
}

fn audit_kinds(api: &Api, grant: &str) -> Vec<String> {
    let (status, body) = api.get(ADMIN, &format!("/v1/audit?grant={grant}"));
    assert_eq!(status, 200, "{body}");
    // Oldest first, as the API lists them.
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn audit_len(api: &Api) -> usize {
    let (status, body) = api.get(ADMIN, "/v1/audit");
    assert_eq!(status, 200, "{body}");
    body["records"].as_array().unwrap().len()
}

/// The whole walk on one store: granted at once with an open review, refused variants
/// writing nothing, the second break-glass denied by policy while the review is open,
/// outsiders refused, an owner filing through the CLI, and the review's record.
fn break_glass_walk(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_break_glass_config(&dir.path().join("cfg"), &issuer);
    let server = Server::start(&dir.path().join("data"), Some(&config), store);
    let api = Api::new(&server);
    let carol = add_user(&api, "carol", "approver"); // an owner of payments
    let olga = add_user(&api, "olga", "operator"); // not an owner
    let ann = add_user(&api, "ann", "auditor");
    let rs = add_user(&api, "orders-rs", "resource-server");
    let platform = issuer.mint(SUBJECT, json!({}));

    // Not an incident: 400 that says so, and nothing written.
    let before = audit_len(&api);
    let mut change = incident(None);
    change["task"]["kind"] = json!("change");
    let (status, body) = api.post(&platform, "/v1/requests", change);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "break_glass_incident_only");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("task kind `incident`"), "{message}");
    assert_eq!(audit_len(&api), before);
    let (_, requests) = api.get(ADMIN, "/v1/requests");
    assert_eq!(requests["requests"], json!([]));

    // The incident: granted at once (201), the answer names the review.
    let (status, body) = api.post(&platform, "/v1/requests", incident(None));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["request"]["state"], "granted");
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    let review = body["review_id"].as_str().unwrap().to_owned();
    assert!(review.starts_with("rev_"), "{review}");
    let token = body["credential"]["access_token"].as_str().unwrap();
    assert_eq!(api.introspect(ADMIN, token)["active"], true);
    // Loud: a break_glass alert is open at once, about the grant, naming the review.
    let (status, alerts) = api.get(ADMIN, "/v1/alerts?kind=break_glass&state=open");
    assert_eq!(status, 200, "{alerts}");
    let alerts = alerts["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["subject"], grant);
    assert_eq!(alerts[0]["identity"], "nightly-backup");
    assert_eq!(alerts[0]["detail"]["review"], review);

    let (status, r) = api.get(&ann, &format!("/v1/reviews/{review}"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "open");
    assert_eq!(r["status"], "open");
    assert_eq!(r["overdue"], false);
    assert_eq!(r["grant_id"], grant);
    assert_eq!(r["identity"], "nightly-backup");
    assert_eq!(r["requester"], "workload:nightly-backup");
    assert_eq!(r["task_ref"], "INC-42");
    assert_eq!(r["summary"], Value::Null);
    let (status, open) = api.get(&ann, "/v1/reviews?state=open");
    assert_eq!(status, 200, "{open}");
    assert_eq!(open["reviews"].as_array().unwrap().len(), 1);
    let (_, overdue) = api.get(&ann, "/v1/reviews?state=overdue");
    assert_eq!(overdue["reviews"], json!([]));
    let (status, bad) = api.get(&ann, "/v1/reviews?state=late");
    assert_eq!(status, 400, "{bad}");

    // Policy sees the open review: a second break-glass is denied (403, policy named).
    let (status, body) = api.post(&platform, "/v1/requests", incident(None));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "denied");
    // People break glass too: an operator for the identity, with the same rule.
    let (status, body) = api.post(&olga, "/v1/requests", incident(Some("deployer")));
    assert_eq!(status, 201, "{body}");
    let operator_review = body["review_id"].as_str().unwrap().to_owned();
    let (_, r) = api.get(&ann, &format!("/v1/reviews/{operator_review}"));
    assert_eq!(r["requester"], "user:olga");
    assert_eq!(r["identity"], "deployer");

    // Outsiders: workloads and resource servers read nothing; non-owners file nothing.
    let before = audit_len(&api);
    for token in [&platform, &rs] {
        for path in ["/v1/reviews".to_owned(), format!("/v1/reviews/{review}")] {
            let (status, body) = api.get(token, &path);
            assert_eq!(status, 403, "{path}: {body}");
            assert!(!body.to_string().contains("INC-42"), "{body}");
        }
    }
    for token in [
        olga.as_str(),
        ann.as_str(),
        ADMIN,
        platform.as_str(),
        rs.as_str(),
    ] {
        let (status, body) = api.post(
            token,
            &format!("/v1/reviews/{review}/file"),
            json!({"summary": "nothing to see"}),
        );
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, body) = api.post(
        &carol,
        &format!("/v1/reviews/{review}/file"),
        json!({"summary": "  "}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_summary");
    let (status, body) = api.post(
        &carol,
        "/v1/reviews/rev_0192aaaaaaaaaaaaaaaaaaaaaaaaaaaa/file",
        json!({"summary": "x"}),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = api.get(&carol, "/v1/reviews/not-a-review");
    assert_eq!(status, 404, "{body}");
    let (_, r) = api.get(&ann, &format!("/v1/reviews/{review}"));
    assert_eq!(r["state"], "open", "nothing changed: {r}");
    assert_eq!(audit_len(&api), before, "refusals write nothing");

    // The owner files it through the CLI.
    let out = server.cli(
        &carol,
        &[
            "review",
            "file",
            &review,
            "--summary",
            "restarted the order workers; no data touched",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("filed {review}")),
        "{}",
        stdout(&out)
    );
    let (_, r) = api.get(&ann, &format!("/v1/reviews/{review}"));
    assert_eq!(r["state"], "filed");
    assert_eq!(r["status"], "filed");
    assert_eq!(r["filed_by"], "carol");
    assert_eq!(r["summary"], "restarted the order workers; no data touched");
    // Filed is final.
    let (status, body) = api.post(
        &carol,
        &format!("/v1/reviews/{review}/file"),
        json!({"summary": "again"}),
    );
    assert_eq!(status, 409, "{body}");

    // The CLI lists and shows (tables and JSON).
    let out = server.cli(&ann, &["review", "list", "--open"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains(&operator_review) && !table.contains(&review),
        "{table}"
    );
    let out = server.cli(&ann, &["review", "show", &review, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["filed_by"], "carol");
    let out = server.cli(&ann, &["review", "show", &review]);
    assert!(
        stdout(&out).contains("restarted the order workers"),
        "{}",
        stdout(&out)
    );

    // The review's whole story is in the audit log, with the grant's.
    assert_eq!(
        audit_kinds(&api, &grant),
        ["issued", "review_opened", "review_filed"]
    );
    let (_, body) = api.get(ADMIN, &format!("/v1/audit?grant={grant}"));
    let filed = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "review_filed")
        .unwrap()
        .clone();
    assert_eq!(filed["actor"], "user:carol");
    assert_eq!(filed["data"]["review"], review);
    // Filed: the identity may break glass again.
    let (status, body) = api.post(&platform, "/v1/requests", incident(None));
    assert_eq!(status, 201, "{body}");
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn break_glass_on_sqlite() {
    break_glass_walk(None);
}

#[test]
fn break_glass_on_postgres() {
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
    let result = std::panic::catch_unwind(|| break_glass_walk(Some(&url)));
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// A break-glass entitlement whose cap is over an hour is refused with its file, line and
/// key, at start and by `kairos apply`; nothing is applied.
#[test]
fn a_break_glass_cap_over_an_hour_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let good = write_break_glass_config(&dir.path().join("cfg"), &issuer);
    let server = Server::start(&dir.path().join("data"), Some(&good), None);
    let text = std::fs::read_to_string(&good).unwrap();
    let bad = text.replace(
        "tier = \"high\"\nmax_ttl = \"30m\"\nscopes = [\"orders:admin\"]\nbreak_glass = true",
        "tier = \"low\"\nmax_ttl = \"2h\"\nscopes = [\"orders:admin\"]\nbreak_glass = true",
    );
    assert_ne!(bad, text);
    std::fs::write(&good, &bad).unwrap();
    let line = bad.lines().position(|l| l == "max_ttl = \"2h\"").unwrap() + 1;
    let out = server.cli(ADMIN, &["apply", good.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("kairos.toml:{line}: entitlement[3].max_ttl:")),
        "{err}"
    );
    assert!(err.contains("break_glass"), "{err}");
    // Nothing applied: the entitlement still has its 30m cap.
    let (_, config) = Api::new(&server).get(ADMIN, "/v1/config");
    let e = config["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "orders-api/breakglass")
        .unwrap()
        .clone();
    assert_eq!(e["max_ttl"], "30m");
    assert_eq!(e["break_glass"], true);
}

/// Policy changes re-decide a live break-glass grant with the context it was decided
/// with: `context.break_glass` from its entitlement, the address its request came from,
/// and the identity's open reviews less its own. An apply that leaves its permit as it was
/// keeps it live; one that forbids it ends it as `policy_changed`.
fn break_glass_survives_policy_changes(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let cfg = dir.path().join("cfg");
    let config = write_break_glass_config(&cfg, &issuer);
    // The permit also looks at where the request came from (the tests call from loopback).
    std::fs::write(
        cfg.join("policies/breakglass.cedar"),
        r#"
@id("break-glass-one-at-a-time")
@reason("break-glass for incidents from inside, one open review at a time")
permit (principal, action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/breakglass")
when { context.break_glass && context.task_kind == "incident" && context.open_reviews < 1
       && context has source_ip && context.source_ip.isLoopback() };
"#,
    )
    .unwrap();
    let config_path = config.to_str().unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config), store);
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.post(&platform, "/v1/requests", incident(None));
    assert_eq!(status, 201, "{body}");
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    let token = body["credential"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A new policy about something else: every live grant is decided again, and the
    // break-glass permit still holds for this one.
    std::fs::write(
        cfg.join("policies/unrelated.cedar"),
        "@id(\"no-change-writes\")\nforbid (principal, action, resource == Kairos::Entitlement::\"orders-api/write\") when { context.task_kind == \"change\" };\n",
    )
    .unwrap();
    let out = server.cli(ADMIN, &["--json", "apply", config_path]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let applied: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(applied["grants_ending"], json!([]), "{applied}");
    let (_, g) = api.get(ADMIN, &format!("/v1/grants/{grant}"));
    assert_eq!(g["state"], "active", "{g}");
    assert_eq!(api.introspect(ADMIN, &token)["active"], true);

    // A policy that forbids it ends it, as policy_changed, verified.
    std::fs::write(
        cfg.join("policies/unrelated.cedar"),
        "@id(\"no-break-glass\")\nforbid (principal, action, resource == Kairos::Entitlement::\"orders-api/breakglass\") when { context.break_glass };\n",
    )
    .unwrap();
    let out = server.cli(ADMIN, &["--json", "apply", config_path]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let applied: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ending = applied["grants_ending"].as_array().unwrap();
    assert_eq!(ending.len(), 1, "{applied}");
    assert_eq!(ending[0]["grant_id"], grant, "{applied}");
    assert_eq!(ending[0]["reason"], "policy_changed", "{applied}");
    let g = api.wait_grant(ADMIN, &grant, std::time::Duration::from_secs(15), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["reason"], "policy_changed", "{g}");
    assert_eq!(api.introspect(ADMIN, &token)["active"], false);
}

#[test]
fn a_live_break_glass_grant_is_re_decided_with_its_context_on_sqlite() {
    break_glass_survives_policy_changes(None);
}

#[test]
fn a_live_break_glass_grant_is_re_decided_with_its_context_on_postgres() {
    use common::pg::{SHARED_PG, psql};
    let name = format!("kairos_it_{}", uuid::Uuid::new_v4().simple());
    psql(SHARED_PG, "postgres", &format!("CREATE DATABASE {name}"));
    let url = format!("{SHARED_PG}/{name}");
    let result = std::panic::catch_unwind(|| break_glass_survives_policy_changes(Some(&url)));
    psql(
        SHARED_PG,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// A sample's value on /metrics, 0 when it is not there yet.
fn metric(api: &Api, name: &str) -> f64 {
    let (status, body) = api.get(ADMIN, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls the review until `done` holds (the server's own review pass moves it).
fn wait_review(api: &Api, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, r) = api.get(token, &format!("/v1/reviews/{id}"));
        assert_eq!(status, 200, "{r}");
        if done(&r) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "review {id} never got there: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// An after-action review whose due time passes (`review_due = "3s"`, on the server's real
/// clock) escalates once through the server's own pass: `review_escalated` audited, one
/// `review_overdue` alert (counted in `kairos_alerts_raised_total`), the review overdue in
/// the list and the posture; an owner can still file it, which resolves the alert.
fn overdue_review_escalates(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_break_glass_config(&dir.path().join("cfg"), &issuer);
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[governance]\nreview_due = \"3s\"\n");
    std::fs::write(&config, toml).unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config), store);
    let api = Api::new(&server);
    let carol = add_user(&api, "carol", "approver");
    let olga = add_user(&api, "olga", "operator");
    let ann = add_user(&api, "ann", "auditor");
    let platform = issuer.mint(SUBJECT, json!({}));
    let raised = r#"kairos_alerts_raised_total{kind="review_overdue"}"#;

    let (status, body) = api.post(&platform, "/v1/requests", incident(None));
    assert_eq!(status, 201, "{body}");
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    let review = body["review_id"].as_str().unwrap().to_owned();
    let (_, r) = api.get(&ann, &format!("/v1/reviews/{review}"));
    assert_eq!(r["status"], "open", "{r}");
    assert_eq!(metric(&api, raised), 0.0);

    // Past its due time the server's pass escalates it.
    let r = wait_review(&api, &ann, &review, |r| r["status"] == "escalated");
    assert_eq!(r["overdue"], true, "{r}");
    assert_eq!(r["state"], "open", "{r}");

    // A second review, opened after the first escalated, escalating in turn: the passes
    // in between ran, and left the first alone.
    let (status, body) = api.post(&olga, "/v1/requests", incident(Some("deployer")));
    assert_eq!(status, 201, "{body}");
    let second = body["review_id"].as_str().unwrap().to_owned();
    wait_review(&api, &ann, &second, |r| r["status"] == "escalated");
    assert_eq!(
        audit_kinds(&api, &grant)
            .iter()
            .filter(|k| *k == "review_escalated")
            .count(),
        1,
        "escalated once"
    );
    let (status, alerts) = api.get(ADMIN, "/v1/alerts?kind=review_overdue");
    assert_eq!(status, 200, "{alerts}");
    let alerts = alerts["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let first = alerts
        .iter()
        .find(|a| a["subject"] == review.as_str())
        .unwrap_or_else(|| panic!("no alert about {review}: {alerts:?}"));
    assert_eq!(first["state"], "open", "{first}");
    assert_eq!(first["occurrences"], 1, "{first}");
    assert_eq!(first["identity"], "nightly-backup", "{first}");
    assert_eq!(metric(&api, raised), 2.0);

    // Overdue where people look: the review list and the posture.
    let (_, overdue) = api.get(&ann, "/v1/reviews?state=overdue");
    let listed: Vec<&str> = overdue["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&review.as_str()), "{overdue}");
    // The posture shows it overdue.
    let (status, posture) = api.get(&ann, "/v1/posture");
    assert_eq!(status, 200, "{posture}");
    let finding = posture["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "reviews_overdue")
        .unwrap_or_else(|| panic!("no reviews_overdue finding: {posture}"));
    assert_eq!(finding["count"], 2, "{finding}");
    assert!(
        finding["subjects"].to_string().contains(&review),
        "{finding}"
    );

    // Filing it afterwards still works, and settles its alert.
    let (status, body) = api.post(
        &carol,
        &format!("/v1/reviews/{review}/file"),
        json!({"summary": "late: the incident ran over the weekend"}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, r) = api.get(&ann, &format!("/v1/reviews/{review}"));
    assert_eq!(r["state"], "filed", "{r}");
    assert_eq!(r["status"], "filed", "{r}");
    let (_, alert) = api.get(
        ADMIN,
        &format!("/v1/alerts/{}", first["id"].as_str().unwrap()),
    );
    assert_eq!(alert["state"], "resolved", "{alert}");
    assert_eq!(
        audit_kinds(&api, &grant),
        [
            "issued",
            "review_opened",
            "review_escalated",
            "review_filed"
        ]
    );
    let out = server.cli(ADMIN, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_overdue_review_escalates_once_through_the_server_on_sqlite() {
    overdue_review_escalates(None);
}

#[test]
fn an_overdue_review_escalates_once_through_the_server_on_postgres() {
    use common::pg::{SHARED_PG, psql};
    let name = format!("kairos_it_{}", uuid::Uuid::new_v4().simple());
    psql(SHARED_PG, "postgres", &format!("CREATE DATABASE {name}"));
    let url = format!("{SHARED_PG}/{name}");
    let result = std::panic::catch_unwind(|| overdue_review_escalates(Some(&url)));
    psql(
        SHARED_PG,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
