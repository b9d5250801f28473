//! Renewal is a policy decision: Cedar decides it (action `renew`, `context.ttl_secs` the
//! grant's whole lifetime after it), a renewal past what people approved waits for the
//! same approvals again, who may renew is checked, and all of it is audited. Also: only a
//! team's approvers count as approvals (admins included), and a grant's audit trail
//! includes its request's records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Reads are allowed for 5 minutes whatever the action (so renewals too); admin access
/// is requested for at most 5 minutes with two approvals and renewed up to 30 minutes.
const POLICIES: &str = r#"
@id("read-5m")
permit (principal, action, resource == Kairos::Entitlement::"orders-api/read")
when { context.ttl_secs <= 300 };

@id("admin-two-approvals")
@approvals("2")
permit (principal in Kairos::Team::"payments", action == Kairos::Action::"request", resource == Kairos::Entitlement::"orders-api/admin")
when { context.ttl_secs <= 300 };

@id("admin-renew")
permit (principal in Kairos::Team::"payments", action == Kairos::Action::"renew", resource == Kairos::Entitlement::"orders-api/admin")
when { context.renewal && context.ttl_secs <= 1800 };
"#;

struct Setup {
    _dir: tempfile::TempDir,
    server: Server,
    api: Api,
    issuer: TestIssuer,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    std::fs::write(dir.path().join("cfg/policies/base.cedar"), POLICIES).unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    Setup {
        _dir: dir,
        server,
        api,
        issuer,
    }
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

fn expires_at(api: &Api, token: &str, grant: &str) -> String {
    let (status, g) = api.get(token, &format!("/v1/grants/{grant}"));
    assert_eq!(status, 200, "{g}");
    g["expires_at"].as_str().unwrap().to_owned()
}

fn audit_kinds(api: &Api, grant: &str) -> Vec<String> {
    let (status, audit) = api.get(ADMIN, &format!("/v1/audit?grant={grant}"));
    assert_eq!(status, 200, "{audit}");
    audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn renew(api: &Api, token: &str, grant: &str, ttl: &str) -> (u16, Value) {
    api.post(
        token,
        &format!("/v1/grants/{grant}/renew"),
        json!({ "ttl": ttl }),
    )
}

#[test]
fn a_renewal_past_what_policy_permits_is_denied_and_audited() {
    let s = setup();
    let platform = s.issuer.mint(SUBJECT, json!({}));
    let (status, body) = s.api.exchange(&platform, "orders-api/read", Some("5m"));
    assert_eq!(status, 200, "{body}");
    let grant = body["grant_id"].as_str().unwrap().to_owned();
    let before = expires_at(&s.api, &platform, &grant);

    // 5 m → 55 m: the grant's lifetime would be 55 m, which no policy permits.
    let (status, r) = renew(&s.api, &platform, &grant, "55m");
    assert_eq!(status, 403, "{r}");
    assert_eq!(r["error"]["code"], "denied", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("renew") && message.contains(&grant), "{r}");
    assert_eq!(expires_at(&s.api, &platform, &grant), before);

    // Within the policy's 5 minutes the workload renews its own grant.
    let (status, r) = renew(&s.api, &platform, &grant, "4m");
    assert_eq!(status, 200, "{r}");
    assert!(r["credential"]["access_token"].is_string(), "{r}");
    assert!(r["request"].is_null(), "{r}");

    let (_, audit) = s.api.get(ADMIN, &format!("/v1/audit?grant={grant}"));
    let records: Vec<&Value> = audit["records"].as_array().unwrap().iter().collect();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            // Granted on the spot: one record with the request and its decision.
            "issued",
            "renew_requested",
            "decided",
            "renew_requested",
            "decided",
            "renewed"
        ],
        "{audit}"
    );
    assert_eq!(
        records[0]["data"]["decision"]["outcome"], "grant",
        "{audit}"
    );
    assert_eq!(records[0]["data"]["request"]["ttl"], "5m", "{audit}");
    // The denied renewal's decision names no policy and says it was a renewal; the
    // granted one names the policy that permitted it.
    assert_eq!(records[2]["data"]["decision"]["outcome"], "deny", "{audit}");
    assert_eq!(records[2]["data"]["renewal"], true, "{audit}");
    assert_eq!(
        records[4]["data"]["decision"]["policies"],
        json!(["read-5m"]),
        "{audit}"
    );
    assert_eq!(records[5]["actor"], "workload:nightly-backup", "{audit}");
}

#[test]
fn who_may_renew_is_checked() {
    let s = setup();
    let platform = s.issuer.mint(SUBJECT, json!({}));
    let (status, body) = s.api.exchange(&platform, "orders-api/read", Some("2m"));
    assert_eq!(status, 200, "{body}");
    let grant = body["grant_id"].as_str().unwrap().to_owned();

    // Another workload gets the answer it would get for a grant that does not exist.
    let other = s.issuer.mint(OTHER_SUBJECT, json!({}));
    let (status, theirs) = renew(&s.api, &other, &grant, "3m");
    let missing = format!("grt_{}", "0".repeat(32));
    let (missing_status, none) = renew(&s.api, &other, &missing, "3m");
    assert_eq!((status, missing_status), (404, 404), "{theirs} {none}");
    assert_eq!(
        theirs["error"]["message"],
        none["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&missing, &grant),
        "{theirs} {none}"
    );

    // A person needs the operator role; an operator's renewal is decided as a user's.
    let alice = add_user(&s.api, "alice", "approver", &["payments"]);
    let (status, r) = renew(&s.api, &alice, &grant, "3m");
    assert_eq!(status, 403, "{r}");
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    let olga = add_user(&s.api, "olga", "operator", &[]);
    let (status, r) = renew(&s.api, &olga, &grant, "3m");
    assert_eq!(status, 200, "{r}");
    let (_, audit) = s.api.get(ADMIN, &format!("/v1/audit?grant={grant}"));
    let renewed = audit["records"].as_array().unwrap().last().unwrap();
    assert_eq!(renewed["kind"], "renewed", "{audit}");
    assert_eq!(renewed["actor"], "user:olga", "{audit}");
}

#[test]
fn a_renewal_past_the_approved_lifetime_waits_for_the_team_s_approvers_again() {
    let s = setup();
    let api = &s.api;
    let alice = add_user(api, "alice", "approver", &[]);
    let bob = add_user(api, "bob", "approver", &[]);
    // An admin who is not one of the team's approvers.
    let root = add_user(api, "root", "admin", &[]);
    let platform = s.issuer.mint(SUBJECT, json!({}));

    let (status, body) = api.exchange(&platform, "orders-api/admin", Some("5m"));
    // RFC 8628's answer for "not yet": 400 authorization_pending, with the request id.
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending", "{body}");
    let req = body["request_id"].as_str().unwrap().to_owned();
    let approve = |token: &str, req: &str| {
        api.post(
            token,
            &format!("/v1/requests/{req}/approve"),
            json!({"reason": "ok"}),
        )
    };

    // The admin does not count as an approval: only the team's approvers do.
    let (status, r) = approve(&alice, &req);
    assert_eq!(status, 200, "{r}");
    let (status, r) = approve(&root, &req);
    assert_eq!(status, 403, "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("root is not an approver of team payments"),
        "{r}"
    );
    let (_, r) = api.get(&alice, &format!("/v1/requests/{req}"));
    assert_eq!(r["request"]["state"], "pending", "{r}");
    assert_eq!(
        r["request"]["approvals"].as_array().unwrap().len(),
        1,
        "{r}"
    );
    let (status, r) = approve(&bob, &req);
    assert_eq!(status, 200, "{r}");
    let grant = r["request"]["grant_id"].as_str().unwrap().to_owned();
    let before = expires_at(api, &alice, &grant);

    // Approved for 5 m; the workload asks for 29 m: a renewal policy permits it, but
    // people approved 5 m, so it needs the same two approvals again.
    let (status, r) = renew(api, &platform, &grant, "29m");
    assert_eq!(status, 202, "{r}");
    assert!(r["credential"].is_null(), "{r}");
    let renewal = r["request"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r["request"]["renews"], grant.as_str(), "{r}");
    assert_eq!(r["request"]["state"], "pending", "{r}");
    assert_eq!(r["request"]["decision"]["approvals_required"], 2, "{r}");
    assert_eq!(expires_at(api, &alice, &grant), before);

    // It is an ordinary pending request: listed, approved by distinct team approvers,
    // never by the admin outside the team, never twice by the same person.
    let (_, list) = api.get(&alice, "/v1/requests?state=pending");
    assert!(
        list["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["id"] == renewal.as_str()),
        "{list}"
    );
    let (status, r) = approve(&alice, &renewal);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["request"]["state"], "pending", "{r}");
    let (status, r) = approve(&alice, &renewal);
    assert_eq!(status, 403, "{r}");
    let (status, r) = approve(&root, &renewal);
    assert_eq!(status, 403, "{r}");
    assert_eq!(expires_at(api, &alice, &grant), before);

    let (status, r) = approve(&bob, &renewal);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["request"]["state"], "granted", "{r}");
    assert_eq!(r["request"]["grant_id"], grant.as_str(), "{r}");
    let after = expires_at(api, &alice, &grant);
    assert!(after > before, "{before} -> {after}");

    // The workload picks up a token with the new end from its renewal request.
    let (status, r) = api.get(&platform, &format!("/v1/requests/{renewal}"));
    assert_eq!(status, 200, "{r}");
    let token = r["credential"]["access_token"].as_str().unwrap();
    let seen = api.introspect(&alice, token);
    assert_eq!(seen["active"], true, "{seen}");
    assert!(
        seen["exp"].as_i64().unwrap() > now_secs() + 20 * 60,
        "{seen}"
    );

    // The grant's audit trail holds its request's records, the renewal's and the change.
    assert_eq!(
        audit_kinds(api, &grant),
        [
            "requested",
            "decided",
            "approved",
            "approved",
            "issued",
            "renew_requested",
            "decided",
            "approved",
            "approved",
            "renewed"
        ]
    );
    let out = s.server.cli(ADMIN, &["audit", "--grant", &grant]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    for kind in ["requested", "decided", "approved", "issued", "renewed"] {
        assert!(text.contains(kind), "no {kind} in:\n{text}");
    }
}

#[test]
fn a_pending_renewal_lapses_when_its_grant_ends_first() {
    let s = setup();
    let api = &s.api;
    let alice = add_user(api, "alice", "approver", &[]);
    let bob = add_user(api, "bob", "approver", &[]);
    let olga = add_user(api, "olga", "operator", &[]);
    let platform = s.issuer.mint(SUBJECT, json!({}));
    let (_, body) = api.exchange(&platform, "orders-api/admin", Some("5m"));
    let req = body["request_id"].as_str().unwrap().to_owned();
    for approver in [&alice, &bob] {
        let (status, r) = api.post(
            approver,
            &format!("/v1/requests/{req}/approve"),
            json!({"reason": "ok"}),
        );
        assert_eq!(status, 200, "{r}");
    }
    let (_, r) = api.get(&alice, &format!("/v1/requests/{req}"));
    let grant = r["request"]["grant_id"].as_str().unwrap().to_owned();
    let (status, r) = renew(api, &platform, &grant, "20m");
    assert_eq!(status, 202, "{r}");
    let renewal = r["request"]["id"].as_str().unwrap().to_owned();
    // It can wait no longer than the grant it would extend lasts.
    let pending_until = r["request"]["pending_until"].as_str().unwrap();
    assert!(
        pending_until <= r["grant"]["expires_at"].as_str().unwrap(),
        "{r}"
    );

    let (status, r) = api.post(&olga, &format!("/v1/grants/{grant}/revoke"), json!({}));
    assert_eq!(status, 200, "{r}");
    let (status, r) = api.post(
        &alice,
        &format!("/v1/requests/{renewal}/approve"),
        json!({"reason": "ok"}),
    );
    assert_eq!(status, 409, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("lapsed"),
        "{r}"
    );
    let (_, r) = api.get(&alice, &format!("/v1/requests/{renewal}"));
    assert_eq!(r["request"]["state"], "expired", "{r}");
    let g = api.wait_grant(&alice, &grant, Duration::from_secs(10), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["reason"], "revoked", "{g}");
}

/// The same rule on a real PostgreSQL target: a renewal the policy permits moves the role's
/// native expiry (`VALID UNTIL`) with the grant; one past the policy is refused and leaves
/// both where they were.
#[test]
fn renewing_a_postgres_account_is_decided_and_moves_its_native_expiry_only_when_permitted() {
    use common::pg::{SHARED_PG, SharedDb, psql};

    let db = SharedDb::new();
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[policy]",
        &format!(
            r#"
[[target]]
name = "orders-db"
kind = "postgres"
admin_url_env = "KAIROS_IT_RENEW_PG"
managed_prefix = "{prefix}"

[[entitlement]]
name = "orders-db/readonly"
tier = "medium"
max_ttl = "30m"
grants = ["GRANT CONNECT ON DATABASE {name} TO {{{{role}}}}", "GRANT SELECT ON orders TO {{{{role}}}}"]

[policy]"#,
            prefix = db.prefix,
            name = db.name
        ),
    );
    std::fs::write(&config, text).unwrap();
    // Requests and renewals alike: at most 10 minutes of life in all.
    std::fs::write(
        dir.path().join("cfg/policies/base.cedar"),
        r#"@id("db-10m")
permit (principal, action, resource == Kairos::Entitlement::"orders-db/readonly")
when { context.ttl_secs <= 600 };
"#,
    )
    .unwrap();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&config),
        None,
        &[],
        &[("KAIROS_IT_RENEW_PG", db.admin_url().as_str())],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        json!({"entitlement": "orders-db/readonly", "ttl": "5m",
               "task": {"kind": "job", "ref": "run-1", "reason": "export"}}),
    );
    assert_eq!(status, 201, "{body}");
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    let role = body["credential"]["username"].as_str().unwrap().to_owned();
    let valid_until = || {
        psql(
            SHARED_PG,
            "postgres",
            &format!(
                "SELECT (extract(epoch FROM rolvaliduntil) * 1000)::bigint FROM pg_roles WHERE rolname = '{role}'"
            ),
        )
        .trim()
        .parse::<i64>()
        .unwrap()
    };
    let millis = |s: &str| {
        let (status, g) = api.get(ADMIN, &format!("/v1/grants/{grant}"));
        assert_eq!(status, 200, "{g}");
        let at = g[s].as_str().unwrap().to_owned();
        let out = std::process::Command::new("date")
            .args(["-d", &at, "+%s%3N"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    let first_end = millis("expires_at");
    assert!(
        (valid_until() - first_end).abs() <= 1000,
        "VALID UNTIL follows the grant"
    );

    // Renewed to end 9 m from now (about 9 m of life in all): permitted; the grant and
    // VALID UNTIL move together.
    let (status, body) = renew(&api, &platform, &grant, "9m");
    assert_eq!(status, 200, "{body}");
    let second_end = millis("expires_at");
    assert!(
        second_end >= first_end + 4 * 60 * 1000,
        "{first_end} → {second_end}"
    );
    assert!(
        (valid_until() - second_end).abs() <= 1000,
        "VALID UNTIL follows the renewal"
    );

    // To end 20 m from now: past the policy's 10 minutes in all, refused; nothing moves.
    let (status, body) = renew(&api, &platform, &grant, "20m");
    assert_eq!(status, 403, "{body}");
    assert_eq!(millis("expires_at"), second_end);
    assert!(
        (valid_until() - second_end).abs() <= 1000,
        "VALID UNTIL unchanged"
    );
    let kinds = audit_kinds(&api, &grant);
    assert_eq!(
        kinds.iter().filter(|k| *k == "renewed").count(),
        1,
        "{kinds:?}"
    );
}
