//! The checks of request bodies, as the handlers and the fuzz targets run them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kairos_api::inputs::{JsonBody, check_json_body};

fn refused(endpoint: JsonBody, body: &str) -> (u16, String) {
    let e = check_json_body(endpoint, body.as_bytes()).unwrap_err();
    assert!(!e.message.is_empty(), "{e:?}");
    (e.status.as_u16(), e.code)
}

#[test]
fn good_bodies_pass() {
    for (endpoint, body) in [
        (
            JsonBody::CreateRequest,
            r#"{"entitlement":"orders-api/read","ttl":"15m","task":{"kind":"job","ref":"run-1","reason":"nightly"}}"#,
        ),
        (JsonBody::Reason, r#"{"reason":"checked the ticket"}"#),
        (JsonBody::Renew, r#"{"ttl":"10m"}"#),
        (JsonBody::BulkRevoke, r#"{"task_ref":"CHG-1"}"#),
        (
            JsonBody::ConfigApply,
            r#"{"main_path":"k.toml","files":{}}"#,
        ),
        (JsonBody::RotateKeys, r#"{}"#),
        (JsonBody::AddUser, r#"{"name":"alice","role":"approver"}"#),
    ] {
        check_json_body(endpoint, body.as_bytes()).unwrap();
    }
}

#[test]
fn bad_bodies_get_a_4xx_that_names_the_problem() {
    for (endpoint, body, code) in [
        (JsonBody::CreateRequest, "{", "invalid_json"),
        (JsonBody::CreateRequest, "{} trailing", "invalid_json"),
        (
            JsonBody::CreateRequest,
            r#"{"entitlement":5}"#,
            "invalid_json",
        ),
        (
            JsonBody::CreateRequest,
            r#"{"entitlement":"a/b","task":{"kind":"job","ref":"r","reason":"x"},"sudo":1}"#,
            "invalid_json",
        ),
        (
            JsonBody::CreateRequest,
            r#"{"entitlement":"orders","task":{"kind":"job","ref":"r","reason":"x"}}"#,
            "bad_entitlement",
        ),
        (
            JsonBody::CreateRequest,
            r#"{"entitlement":"a/b","ttl":"10y","task":{"kind":"job","ref":"r","reason":"x"}}"#,
            "bad_ttl",
        ),
        (
            JsonBody::CreateRequest,
            r#"{"entitlement":"a/b","task":{"kind":"whim","ref":"r","reason":"x"}}"#,
            "bad_task",
        ),
        (
            JsonBody::CreateRequest,
            r#"{"entitlement":"a/b","identity":"Bad Name","task":{"kind":"job","ref":"r","reason":"x"}}"#,
            "bad_identity",
        ),
        (JsonBody::Reason, r#"{"reason":"   "}"#, "bad_reason"),
        (JsonBody::Renew, r#"{"ttl":"0s"}"#, "bad_ttl"),
        (JsonBody::BulkRevoke, r#"{}"#, "bad_scope"),
        (
            JsonBody::BulkRevoke,
            r#"{"identity":"a","task_ref":"b"}"#,
            "bad_scope",
        ),
        (JsonBody::BulkRevoke, r#"{"task_ref":""}"#, "bad_task_ref"),
        (JsonBody::ConfigApply, r#"{"files":{}}"#, "invalid_json"),
        (JsonBody::RotateKeys, r#"{"alg":"rs256"}"#, "bad_alg"),
        (
            JsonBody::AddUser,
            r#"{"name":"","role":"admin"}"#,
            "bad_name",
        ),
        (
            JsonBody::AddUser,
            r#"{"name":"bob","role":"admin","teams":["Pay Ments"]}"#,
            "bad_team",
        ),
    ] {
        assert_eq!(
            refused(endpoint, body),
            (400, code.to_owned()),
            "{endpoint:?} {body}"
        );
    }
}
