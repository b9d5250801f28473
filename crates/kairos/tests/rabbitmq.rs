//! RabbitMQ accounts end to end through the real server and the machine's RabbitMQ
//! (AMQP on 5672, management API on 15672, guest/guest): a user is issued and used with a
//! real AMQP client (`amqprs`), released (its open connection closed, its login refused,
//! the receipt verified), and the reconciler removes a stray user with the managed prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use amqprs::BasicProperties;
use amqprs::channel::{BasicGetArguments, BasicPublishArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use common::*;
use serde_json::{Value, json};

const API: &str = "http://127.0.0.1:15672/api";

/// The management API as guest (set-up and checks).
fn admin(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::blocking::Client::new()
        .request(method, format!("{API}/{path}"))
        .basic_auth("guest", Some("guest"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn users_with(prefix: &str) -> Vec<String> {
    let (_, users) = admin(reqwest::Method::GET, "users?columns=name", None);
    users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .filter(|u| u.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Removes this test's users, queues and exchanges whatever happens.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (list, kind) in [
            ("users", "users"),
            ("queues/%2F", "queues/%2F"),
            ("exchanges/%2F", "exchanges/%2F"),
        ] {
            let (_, items) = admin(reqwest::Method::GET, list, None);
            for item in items.as_array().cloned().unwrap_or_default() {
                let name = item["name"].as_str().unwrap_or("");
                if name.starts_with(&self.0) {
                    admin(reqwest::Method::DELETE, &format!("{kind}/{name}"), None);
                }
            }
        }
    }
}

async fn amqp_login(user: &str, password: &str) -> Result<Connection, amqprs::error::Error> {
    let mut args = OpenConnectionArguments::new("127.0.0.1", 5672, user, password);
    args.virtual_host("/");
    Connection::open(&args).await
}

#[test]
fn rabbitmq_users_are_issued_used_released_verified_and_reconciled() {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("kit{}_", &hex[..8]);
    let _cleanup = Cleanup(prefix.clone());
    for (path, body) in [
        (
            format!("exchanges/%2F/{prefix}orders.x"),
            json!({"type": "fanout", "durable": false}),
        ),
        (
            format!("queues/%2F/{prefix}orders.q"),
            json!({"durable": false}),
        ),
        (
            format!("queues/%2F/{prefix}other.q"),
            json!({"durable": false}),
        ),
    ] {
        let (s, b) = admin(reqwest::Method::PUT, &path, Some(body));
        assert!(s < 300, "{path}: {s} {b}");
    }
    let (s, _) = admin(
        reqwest::Method::POST,
        &format!("bindings/%2F/e/{prefix}orders.x/q/{prefix}orders.q"),
        Some(json!({"routing_key": ""})),
    );
    assert!(s < 300);

    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::new("k1");
    let path = write_config(&dir.path().join("cfg"), &issuer, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[policy]",
        &format!(
            r#"
[[target]]
name = "queues"
kind = "rabbitmq"
admin_url_env = "KAIROS_IT_RABBITMQ_ADMIN"
managed_prefix = "{prefix}"
reconcile_interval = "1s"

[[entitlement]]
name = "queues/orders"
tier = "low"
max_ttl = "15m"

[entitlement.rabbitmq]
vhost = "/"
configure = "^$"
write = "^{prefix}orders\\."
read = "^{prefix}orders\\."

[policy]"#
        ),
    );
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        dir.path().join("cfg/policies/mq.cedar"),
        "@id(\"mq-jobs\") permit (principal in Kairos::Team::\"payments\", action, resource in Kairos::Target::\"queues\");\n",
    )
    .unwrap();
    let server = Server::start_env(
        &dir.path().join("data"),
        Some(&path),
        None,
        &[],
        &[(
            "KAIROS_IT_RABBITMQ_ADMIN",
            "http://guest:guest@127.0.0.1:15672",
        )],
    );
    let api = Api::new(&server);
    let platform = issuer.mint(SUBJECT, json!({}));
    let rt = tokio::runtime::Runtime::new().unwrap();

    let (status, body) = api.post(
        &platform,
        "/v1/requests",
        json!({
            "entitlement": "queues/orders", "ttl": "10m",
            "task": {"kind": "job", "ref": "run-9", "reason": "order export"}
        }),
    );
    assert_eq!(status, 201, "{body}");
    let cred = &body["credential"];
    assert_eq!(cred["kind"], "rabbitmq", "{cred}");
    assert_eq!(cred["host"], "127.0.0.1");
    assert_eq!(cred["port"], 5672);
    assert_eq!(cred["database"], "/");
    let user = cred["username"].as_str().unwrap().to_owned();
    let password = cred["password"].as_str().unwrap().to_owned();
    assert!(user.starts_with(&prefix), "{user}");
    let grant = body["grant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["grant"]["state"], "active");

    // The workload publishes and consumes within the pattern, and is refused outside it.
    let conn = rt.block_on(async {
        let conn = amqp_login(&user, &password).await.unwrap();
        let ch = conn.open_channel(None).await.unwrap();
        ch.basic_publish(
            BasicProperties::default(),
            b"order 7".to_vec(),
            BasicPublishArguments::new(&format!("{prefix}orders.x"), ""),
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = ch
                .basic_get(
                    BasicGetArguments::new(&format!("{prefix}orders.q"))
                        .no_ack(true)
                        .finish(),
                )
                .await
                .unwrap();
            if let Some((_, _, body)) = got {
                assert_eq!(body, b"order 7");
                break;
            }
            assert!(Instant::now() < deadline, "the message never arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let other = conn.open_channel(None).await.unwrap();
        assert!(
            other
                .basic_get(BasicGetArguments::new(&format!("{prefix}other.q")))
                .await
                .is_err(),
            "reading outside the pattern must be refused"
        );
        conn
    });
    assert!(conn.is_open());

    // Release: the open connection is closed, the user is gone, the receipt says how.
    let (status, g) = api.post(&platform, &format!("/v1/grants/{grant}/release"), json!({}));
    assert_eq!(status, 200, "{g}");
    let g = api.wait_grant(ADMIN, &grant, Duration::from_secs(20), |g| {
        g["state"] == "ended"
    });
    assert_eq!(g["receipt"]["method"], "api+amqp", "{g}");
    assert!(g["receipt"]["verified_at"].is_string(), "{g}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn.is_open() {
        assert!(
            Instant::now() < deadline,
            "the released user's connection stays open"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        rt.block_on(amqp_login(&user, &password)).is_err(),
        "a login after release worked"
    );
    assert!(users_with(&prefix).is_empty());
    let receipt = g["receipt"].to_string();
    assert!(receipt.contains("ACCESS_REFUSED"), "{receipt}");
    assert!(!receipt.contains(&password));

    // A stray user with the managed prefix is removed by the reconciler.
    let stray = format!("{prefix}stray");
    let (s, _) = admin(
        reqwest::Method::PUT,
        &format!("users/{stray}"),
        Some(json!({"password": "x", "tags": ""})),
    );
    assert!(s < 300);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !users_with(&prefix).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the reconciler never removed {stray}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The reconciler records the removal after RabbitMQ has answered it: the user can be
    // gone a moment before its record is written.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, audit) = api.get(ADMIN, "/v1/audit?limit=200");
        let recorded = audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "residue_removed" && r["data"]["account"] == stray.as_str());
        if recorded {
            break;
        }
        assert!(Instant::now() < deadline, "{audit}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!server.log_text().contains(&password));
}
