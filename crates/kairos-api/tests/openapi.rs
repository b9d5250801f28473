//! The OpenAPI document says what the server does. Each check here is a mismatch that
//! schemathesis (scripts/schemathesis.sh) found against the served document.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

fn document() -> Value {
    serde_json::to_value(kairos_api::openapi()).unwrap()
}

/// Every (path, method, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            out.push((path.clone(), method.clone(), operation.clone()));
        }
    }
    out
}

#[test]
fn the_dpop_header_is_documented_where_tokens_are_issued() {
    let doc = document();
    for (path, method) in [("/v1/requests", "post"), ("/v1/oauth/token", "post")] {
        let parameters = doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} documents no parameters"));
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "DPoP" && p["in"] == "header"),
            "{method} {path}: {parameters:?}"
        );
    }
}

#[test]
fn query_strings_are_documented_as_optional_query_parameters() {
    let doc = document();
    let mut seen = 0;
    for (path, method, operation) in operations(&doc) {
        let Some(parameters) = operation["parameters"].as_array() else {
            continue;
        };
        for p in parameters {
            let name = p["name"].as_str().unwrap();
            let in_path = path.contains(&format!("{{{name}}}"));
            if in_path {
                assert_eq!(p["in"], "path", "{method} {path} {name}");
                continue;
            }
            // The one header parameter: an optional DPoP proof (RFC 9449).
            if p["in"] == "header" {
                assert_eq!(name, "DPoP", "{method} {path}: {p}");
                assert_ne!(p["required"], true, "{method} {path} {name}: {p}");
                continue;
            }
            seen += 1;
            assert_eq!(p["in"], "query", "{method} {path} {name}: {p}");
            assert_ne!(p["required"], true, "{method} {path} {name}: {p}");
        }
    }
    assert!(seen >= 15, "only {seen} query parameters documented");
}

#[test]
fn limits_are_documented_with_the_range_the_server_takes() {
    let doc = document();
    for path in ["/v1/grants", "/v1/requests", "/v1/audit"] {
        let parameters = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let limit = parameters.iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["minimum"], 0, "{path}: {limit}");
        assert_eq!(
            limit["schema"]["maximum"],
            u64::from(u32::MAX),
            "{path}: {limit}"
        );
        assert_ne!(limit["schema"]["format"], "int32", "{path}: {limit}");
    }
}

#[test]
fn authentication_and_body_errors_are_documented_everywhere() {
    let doc = document();
    // Public: health and readiness for probes, the token endpoint (its client authenticates
    // in the form), and an ssh target's CA public keys and KRL for the hosts that fetch them.
    let open = [
        ("get", "/v1/health"),
        ("get", "/v1/health/ready"),
        ("get", "/v1/health/live"),
        ("post", "/v1/oauth/token"),
        ("get", "/v1/targets/{target}/ssh/ca"),
        ("get", "/v1/targets/{target}/ssh/krl"),
    ];
    for (path, method, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().unwrap();
        if !open.contains(&(method.as_str(), path.as_str())) {
            assert!(responses.contains_key("401"), "{method} {path} lacks 401");
        }
        // The OAuth endpoints answer every bad form (too large, wrong type) with RFC 6749's
        // 400 `invalid_request`; the rest of the API says 413 and 415.
        let statuses: &[&str] = if path.starts_with("/v1/oauth/") {
            &["400"]
        } else {
            &["400", "413", "415"]
        };
        if operation.get("requestBody").is_some() {
            for status in statuses.iter().copied() {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
    // The OAuth endpoints document their errors in OAuth's shape.
    for path in [
        "/v1/oauth/token",
        "/v1/oauth/introspect",
        "/v1/oauth/revoke",
    ] {
        assert_eq!(
            doc["paths"][path]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/OAuthError",
            "{path}"
        );
    }
    assert_eq!(
        doc["paths"]["/v1/grants"]["get"]["responses"]["401"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/ErrorBody"
    );
}

#[test]
fn answers_the_handlers_give_are_documented() {
    let doc = document();
    for (path, method, statuses) in [
        // A user's team that the configuration does not define.
        (
            "/v1/users",
            "post",
            &["201", "400", "403", "404", "409"][..],
        ),
        (
            "/v1/users/{name}/revoke",
            "post",
            &["200", "400", "403", "404"][..],
        ),
        (
            "/v1/requests/{id}",
            "get",
            &["200", "400", "403", "404"][..],
        ),
        (
            "/v1/requests/{id}/approve",
            "post",
            &["200", "400", "403", "404", "409"][..],
        ),
        (
            "/v1/grants/{id}/renew",
            "post",
            &["200", "400", "403", "404", "409"][..],
        ),
    ] {
        let responses = doc["paths"][path][method]["responses"].as_object().unwrap();
        for status in statuses {
            assert!(
                responses.contains_key(*status),
                "{method} {path} lacks {status}"
            );
        }
    }
}
