//! Governance through the real binary: alerts and the posture report over HTTP and the
//! CLI, and what callers outside each endpoint's set get.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

fn add_user(api: &Api, name: &str, role: &str, teams: &[&str]) -> String {
    let (status, body) = api.post(
        ADMIN,
        "/v1/users",
        json!({"name": name, "role": role, "teams": teams}),
    );
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn finding<'a>(posture: &'a Value, id: &str) -> &'a Value {
    posture["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no finding {id}: {posture}"))
}

#[test]
fn posture_and_alerts_answer_only_the_roles_that_may_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let config = write_config(dir.path(), &issuer, "");
    let server = Server::start(&dir.path().join("data"), Some(&config), None);
    let api = Api::new(&server);
    let auditor = add_user(&api, "audrey", "auditor", &[]);
    let approver = add_user(&api, "alice", "approver", &["payments"]);
    let workload = issuer.mint(SUBJECT, json!({}));

    // Some access to measure: a grant, released and verified gone.
    let (status, grant) = api.exchange(&workload, "orders-api/read", Some("10m"));
    assert_eq!(status, 200, "{grant}");

    let (status, posture) = api.get(&auditor, "/v1/posture");
    assert_eq!(status, 200, "{posture}");
    assert_eq!(posture["identities"]["total"], 2);
    assert_eq!(posture["identities"]["active"], 2);
    assert_eq!(posture["identities"]["by_owner"]["payments"], 2);
    assert_eq!(posture["window_days"], 30);
    let standing = finding(&posture, "standing_privilege");
    assert_eq!(standing["owasp_nhi"], "NHI5");
    assert_eq!(standing["nist_csf"], json!(["PR.AA-05"]));
    assert_eq!(standing["count"], 1, "one identity held access: {standing}");
    let orphans = finding(&posture, "orphaned_identities");
    assert_eq!(orphans["owasp_nhi"], "NHI1");
    assert!(
        orphans["nist_csf"]
            .as_array()
            .unwrap()
            .contains(&json!("GV.RR-02"))
    );
    for f in posture["findings"].as_array().unwrap() {
        assert!(f["owasp_nhi"].as_str().unwrap().starts_with("NHI"), "{f}");
        assert!(!f["nist_csf"].as_array().unwrap().is_empty(), "{f}");
    }

    // Outside the set: an approver and a workload get 403 and nothing of the report.
    for token in [&approver, &workload] {
        let (status, body) = api.get(token, "/v1/posture");
        assert_eq!(status, 403, "{body}");
        assert!(body.get("findings").is_none());
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("posture"),
            "{body}"
        );
    }
    let (status, _) = api.get("not-a-token", "/v1/posture");
    assert_eq!(status, 401);

    // Alerts: readable by the auditor (none yet), refused to a workload; bad filters are
    // 400s that say what is allowed; an unknown or malformed id is a 404.
    let (status, list) = api.get(&auditor, "/v1/alerts");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["alerts"], json!([]));
    let (status, body) = api.get(&workload, "/v1/alerts");
    assert_eq!(status, 403, "{body}");
    let (status, body) = api.get(&auditor, "/v1/alerts?state=closed");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unresolved"),
        "{body}"
    );
    let (status, body) = api.get(&auditor, "/v1/alerts?kind=fire");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("use_after_end"),
        "{body}"
    );
    let (status, _) = api.get(&auditor, "/v1/alerts/alr_0192nothere");
    assert_eq!(status, 404);
    let (status, _) = api.get(&auditor, "/v1/alerts/..%2Fetc");
    assert_eq!(status, 404);
    // Handling is for operators and the owning team's approvers: an auditor gets 403, a
    // note is required.
    let (status, body) = api.post(
        &auditor,
        "/v1/alerts/alr_0192nothere/resolve",
        json!({"note": "x"}),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = api.post(
        ADMIN,
        "/v1/alerts/alr_0192nothere/resolve",
        json!({"note": " "}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = api.post(
        ADMIN,
        "/v1/alerts/alr_0192nothere/resolve",
        json!({"note": "x"}),
    );
    assert_eq!(status, 404, "{body}");

    // The CLI prints the same report as a table, and `--json` as the server's JSON.
    let out = server.cli(&auditor, &["posture"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("identities: 2 (2 active, 0 suspended, 0 retired)"),
        "{text}"
    );
    assert!(text.contains("standing_privilege"), "{text}");
    assert!(text.contains("NHI5"), "{text}");
    let out = server.cli(&auditor, &["posture", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["identities"]["total"], 2);
    let out = server.cli(&approver, &["posture"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("posture"), "{}", stderr(&out));
    let out = server.cli(&auditor, &["alerts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "no alerts\n");
}
