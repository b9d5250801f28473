//! Approvals: N distinct approvers, the requester never approves, pending requests expire,
//! the workload waits for its grant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

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
fn two_distinct_approvers_issue_the_grant_and_the_workload_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let alice = add_user(&api, "alice", "approver", &[]);
    let bob = add_user(&api, "bob", "approver", &["payments"]);
    let dave = add_user(&api, "dave", "approver", &[]); // not in the payments team
    let platform = issuer.mint(SUBJECT, json!({}));

    // The exchange answers RFC 8628's 400 authorization_pending with the request id.
    let (status, body) = api.exchange(&platform, "orders-api/admin", Some("10m"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending");
    assert_eq!(body["policies"], json!(["admin-two-approvals"]));
    let req = body["request_id"].as_str().unwrap().to_owned();

    // The workload cannot approve its own request.
    let (status, r) = api.post(
        &platform,
        &format!("/v1/requests/{req}/approve"),
        json!({"reason": "me"}),
    );
    assert_eq!(status, 403, "{r}");
    // Someone outside the approving team cannot either.
    let (status, r) = api.post(
        &dave,
        &format!("/v1/requests/{req}/approve"),
        json!({"reason": "ok"}),
    );
    assert_eq!(status, 403, "{r}");

    // The workload long-polls while the approvals land (through the real CLI for one).
    let waiter = {
        let base = api.base.clone();
        let platform = platform.clone();
        let req = req.clone();
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap();
            let r = http
                .get(format!("{base}/v1/requests/{req}?wait=30s"))
                .bearer_auth(&platform)
                .send()
                .unwrap();
            r.json::<serde_json::Value>().unwrap()
        })
    };
    let out = server.cli(
        &alice,
        &["approve", &req, "--reason", "change CHG-1 reviewed"],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let (_, r) = api.get(&alice, &format!("/v1/requests/{req}"));
    assert_eq!(r["request"]["state"], "pending");
    // The same approver twice does not count.
    let (status, r) = api.post(
        &alice,
        &format!("/v1/requests/{req}/approve"),
        json!({"reason": "again"}),
    );
    assert_eq!(status, 403, "{r}");
    let (status, r) = api.post(
        &bob,
        &format!("/v1/requests/{req}/approve"),
        json!({"reason": "ok"}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["request"]["state"], "granted");
    // The completing approval retried (its answer lost) hears that it counted, and
    // issues nothing more.
    let (status, r) = api.post(
        &bob,
        &format!("/v1/requests/{req}/approve"),
        json!({"reason": "ok"}),
    );
    assert_eq!(status, 403, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bob has already approved this request"),
        "{r}"
    );

    let waited = waiter.join().unwrap();
    assert_eq!(waited["request"]["state"], "granted", "{waited}");
    let token = waited["credential"]["access_token"]
        .as_str()
        .expect("credential for the workload");
    assert_eq!(api.introspect(&alice, token)["active"], true);

    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?request={req}"));
    let kinds: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["requested", "decided", "approved", "approved", "issued"]
    );
}

#[test]
fn a_person_who_requested_cannot_approve_and_denial_ends_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    // carol is an admin, so she may both request on behalf of an identity and approve.
    let carol = add_user(&api, "carol", "admin", &["payments"]);
    let bob = add_user(&api, "bob", "approver", &[]);

    let (status, body) = api.post(
        &carol,
        "/v1/requests",
        json!({
            "identity": "nightly-backup", "entitlement": "orders-api/admin", "ttl": "10m",
            "task": {"kind": "incident", "ref": "INC-7", "reason": "restore orders"}
        }),
    );
    assert_eq!(status, 202, "{body}");
    let req = body["request"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["request"]["decision"]["approvals_required"], 2);

    let (status, r) = api.post(
        &carol,
        &format!("/v1/requests/{req}/approve"),
        json!({"reason": "mine"}),
    );
    assert_eq!(status, 403, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requester"),
        "{r}"
    );

    let out = server.cli(&bob, &["deny", &req, "--reason", "no ticket"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let (_, r) = api.get(&bob, &format!("/v1/requests/{req}"));
    assert_eq!(r["request"]["state"], "denied");
    let (status, r) = api.post(
        &bob,
        &format!("/v1/requests/{req}/approve"),
        json!({"reason": "late"}),
    );
    assert_eq!(status, 409, "{r}");
}

#[test]
fn pending_requests_expire() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(&dir.path().join("cfg"), &issuer, "pending_timeout = \"1s\"");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let alice = add_user(&api, "alice", "approver", &[]);
    let platform = issuer.mint(SUBJECT, json!({}));
    let (status, body) = api.exchange(&platform, "orders-api/admin", None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "authorization_pending", "{body}");
    let req = body["request_id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, r) = api.get(&alice, &format!("/v1/requests/{req}"));
        if r["request"]["state"] == "expired" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never expired: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, r) = api.post(
        &alice,
        &format!("/v1/requests/{req}/approve"),
        json!({"reason": "late"}),
    );
    assert_eq!(status, 409, "{r}");
    let (_, audit) = api.get(ADMIN, &format!("/v1/audit?request={req}"));
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "request_expired")
    );
}
