//! The RabbitMQ connector against the machine's RabbitMQ (127.0.0.1:5672, management API on
//! 15672, guest/guest), with a real AMQP client (`amqprs`) as the workload. Every test
//! works under a random prefix of its own and removes what it made.

// PANIC SAFETY: tests and their helpers; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use amqprs::BasicProperties;
use amqprs::channel::{BasicGetArguments, BasicPublishArguments, QueueDeclareArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use kairos_connector_rabbitmq::{
    NO_NATIVE_EXPIRY, RabbitMqConnector, RabbitMqSettings, VERIFY_METHOD, VERIFY_METHOD_API_ONLY,
};
use kairos_connectors::{
    AccountName, AccountRequest, Connector, ConnectorError, Privileges, RabbitMqPermissions,
    RabbitMqTopic, Revoked,
};
use kairos_domain::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const ADMIN_URL: &str = "http://guest:guest@127.0.0.1:15672";
const API: &str = "http://127.0.0.1:15672/api";

fn unique_prefix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("kt{}_", &id[..8])
}

fn connector(url: &str, prefix: &str) -> RabbitMqConnector {
    let mut settings = RabbitMqSettings::new("test-rabbitmq", SecretString::from(url.to_owned()));
    settings.managed_prefix = prefix.to_owned();
    settings.timeout = Duration::from_secs(3);
    RabbitMqConnector::new(settings).unwrap()
}

fn account(prefix: &str, suffix: &str) -> AccountName {
    AccountName::parse(format!("{prefix}{suffix}")).unwrap()
}

fn password() -> SecretString {
    SecretString::from(uuid::Uuid::new_v4().simple().to_string())
}

/// Permissions on `/` over resources named `{prefix}orders.…`.
fn orders(prefix: &str, topic: Option<RabbitMqTopic>) -> Privileges {
    let pattern = format!("^{prefix}orders\\.");
    Privileges::RabbitMq(RabbitMqPermissions {
        vhost: "/".into(),
        configure: "^$".into(),
        write: pattern.clone(),
        read: pattern,
        topic,
    })
}

fn request<'a>(
    account: &'a AccountName,
    password: &'a SecretString,
    privileges: &'a Privileges,
) -> AccountRequest<'a> {
    AccountRequest {
        account,
        password,
        valid_until: Timestamp::from_millis(4_102_444_800_000),
        privileges,
    }
}

fn variant(e: &ConnectorError) -> &'static str {
    match e {
        ConnectorError::Unreachable { .. } => "Unreachable",
        ConnectorError::AdminRefused { .. } => "AdminRefused",
        ConnectorError::BadPrivileges(_) => "BadPrivileges",
        ConnectorError::Failed { .. } => "Failed",
        ConnectorError::StillPresent(_) => "StillPresent",
    }
}

/// The management API as guest, for setting up and checking.
async fn admin(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{API}/{path}"))
        .basic_auth("guest", Some("guest"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Removes every user, queue and exchange whose name starts with the prefix.
async fn cleanup(prefix: &str) {
    for (list, kind) in [
        ("users", "users"),
        ("queues/%2F", "queues/%2F"),
        ("exchanges/%2F", "exchanges/%2F"),
    ] {
        let (_, items) = admin(reqwest::Method::GET, list, None).await;
        for item in items.as_array().cloned().unwrap_or_default() {
            let name = item["name"].as_str().unwrap_or("");
            if name.starts_with(prefix) {
                admin(reqwest::Method::DELETE, &format!("{kind}/{name}"), None).await;
            }
        }
    }
}

/// A fanout exchange `{prefix}{x}` bound to queue `{prefix}{q}`, made by guest.
async fn exchange_to_queue(prefix: &str, x: &str, q: &str) {
    let (s, _) = admin(
        reqwest::Method::PUT,
        &format!("exchanges/%2F/{prefix}{x}"),
        Some(json!({"type": "fanout", "auto_delete": false, "durable": false})),
    )
    .await;
    assert!(s < 300, "exchange: {s}");
    let (s, _) = admin(
        reqwest::Method::PUT,
        &format!("queues/%2F/{prefix}{q}"),
        Some(json!({"auto_delete": false, "durable": false})),
    )
    .await;
    assert!(s < 300, "queue: {s}");
    let (s, _) = admin(
        reqwest::Method::POST,
        &format!("bindings/%2F/e/{prefix}{x}/q/{prefix}{q}"),
        Some(json!({"routing_key": ""})),
    )
    .await;
    assert!(s < 300, "binding: {s}");
}

async fn amqp_login(user: &str, password: &str) -> Result<Connection, amqprs::error::Error> {
    let mut args = OpenConnectionArguments::new("127.0.0.1", 5672, user, password);
    args.virtual_host("/");
    Connection::open(&args).await
}

/// Waits until the management API lists a number of connections of `user` that `wanted`
/// accepts (`what` says which, for the failure). It learns of a new connection shortly
/// after it opens, and forgets a closed one shortly after its client saw it closed.
async fn wait_connections(user: &str, what: &str, wanted: impl Fn(usize) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = admin(
            reqwest::Method::GET,
            &format!("connections/username/{user}"),
            None,
        )
        .await;
        if list.as_array().is_some_and(|l| wanted(l.len())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the connections of {user} are never {what}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a connection of `user` is listed.
async fn wait_listed(user: &str) {
    wait_connections(user, "listed", |n| n > 0).await;
}

/// Waits until no connection of `user` is listed: until then `verify_gone` rightly says
/// the user still has one.
async fn wait_unlisted(user: &str) {
    wait_connections(user, "unlisted", |n| n == 0).await;
}

/// Waits until the server has closed the revoked user's connection.
async fn wait_closed(conn: &Connection) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn.is_open() {
        assert!(
            Instant::now() < deadline,
            "the revoked user's connection stays open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn provision_use_revoke_verify() {
    let prefix = unique_prefix();
    let rabbit = connector(ADMIN_URL, &prefix);
    let acct = account(&prefix, "lifecycle");
    let pw = password();
    exchange_to_queue(&prefix, "orders.x", "orders.q").await;
    exchange_to_queue(&prefix, "other.x", "other.q").await;

    let privileges = orders(&prefix, None);
    let info = rabbit
        .provision(&request(&acct, &pw, &privileges))
        .await
        .unwrap();
    assert_eq!(info.host, "127.0.0.1");
    assert_eq!(info.port, 5672);
    assert_eq!(info.database.as_deref(), Some("/"));
    assert_eq!(info.username, acct.as_str());
    assert_eq!(rabbit.list_managed().await.unwrap(), vec![acct.clone()]);
    assert_eq!(rabbit.revocability().native_expiry, None);
    assert!(NO_NATIVE_EXPIRY.contains("no expiry"));

    // The workload: publish and consume inside the pattern.
    let conn = amqp_login(acct.as_str(), pw.expose_secret()).await.unwrap();
    let channel = conn.open_channel(None).await.unwrap();
    channel
        .basic_publish(
            BasicProperties::default(),
            b"order 1".to_vec(),
            BasicPublishArguments::new(&format!("{prefix}orders.x"), ""),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        let got = channel
            .basic_get(
                BasicGetArguments::new(&format!("{prefix}orders.q"))
                    .no_ack(true)
                    .finish(),
            )
            .await
            .unwrap();
        if let Some((_, _, body)) = got {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the published message never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got, b"order 1");
    // Outside the pattern: reading another queue and declaring a queue are refused.
    let outside = conn.open_channel(None).await.unwrap();
    let refused = outside
        .basic_get(BasicGetArguments::new(&format!("{prefix}other.q")))
        .await;
    assert!(refused.is_err(), "read outside the pattern: {refused:?}");
    let declare = conn.open_channel(None).await.unwrap();
    let refused = declare
        .queue_declare(QueueDeclareArguments::new(&format!("{prefix}orders.new")))
        .await;
    assert!(refused.is_err(), "configure with ^$: {refused:?}");

    // Still there: verification must say so.
    let present = rabbit.verify_gone(&acct, Some(&pw)).await.unwrap_err();
    assert_eq!(variant(&present), "StillPresent", "{present}");

    wait_listed(acct.as_str()).await;
    assert!(conn.is_open());
    // The full connection list comes from the management statistics (refreshed every few
    // seconds), so the session shows up there a little later.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sessions = rabbit.list_sessions().await.unwrap();
        if sessions
            .iter()
            .any(|s| s.account == acct && s.client_addr == Some([127, 0, 0, 1].into()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never listed as a session: {sessions:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let revoked = rabbit.revoke(&acct).await.unwrap();
    assert_eq!(
        revoked,
        Revoked {
            sessions_killed: 1,
            account_existed: true
        }
    );

    // The open connection is closed by the server.
    wait_closed(&conn).await;
    wait_unlisted(acct.as_str()).await;
    assert!(
        channel
            .basic_get(BasicGetArguments::new(&format!("{prefix}orders.q")))
            .await
            .is_err()
    );
    // A new login is refused.
    let relogin = amqp_login(acct.as_str(), pw.expose_secret()).await;
    assert!(relogin.is_err(), "a login after revoke worked");

    let verification = rabbit.verify_gone(&acct, Some(&pw)).await.unwrap();
    assert_eq!(verification.method, VERIFY_METHOD);
    assert!(
        verification.evidence.contains("403"),
        "{}",
        verification.evidence
    );
    assert!(
        verification.evidence.contains("ACCESS_REFUSED"),
        "{}",
        verification.evidence
    );
    assert!(!verification.evidence.contains(pw.expose_secret()));
    let api_only = rabbit.verify_gone(&acct, None).await.unwrap();
    assert_eq!(api_only.method, VERIFY_METHOD_API_ONLY);

    // Idempotent.
    assert_eq!(
        rabbit.revoke(&acct).await.unwrap(),
        Revoked {
            sessions_killed: 0,
            account_existed: false
        }
    );
    assert!(rabbit.list_managed().await.unwrap().is_empty());
    cleanup(&prefix).await;
}

#[tokio::test]
async fn provision_converges_and_sets_topic_permissions() {
    let prefix = unique_prefix();
    let rabbit = connector(ADMIN_URL, &prefix);
    let acct = account(&prefix, "topic");
    let first = password();
    let topic = RabbitMqTopic {
        exchange: "amq.topic".into(),
        write: format!("^{prefix}orders\\."),
        read: "^$".into(),
    };
    rabbit
        .provision(&request(&acct, &first, &orders(&prefix, Some(topic))))
        .await
        .unwrap();
    let (s, perms) = admin(
        reqwest::Method::GET,
        &format!("topic-permissions/%2F/{acct}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(perms[0]["exchange"], "amq.topic");
    assert_eq!(perms[0]["write"], format!("^{prefix}orders\\."));
    let (_, user) = admin(reqwest::Method::GET, &format!("users/{acct}"), None).await;
    assert_eq!(user["tags"], json!([]), "{user}");

    // A retry with another password and without topic converges to exactly that.
    let second = password();
    rabbit
        .provision(&request(&acct, &second, &orders(&prefix, None)))
        .await
        .unwrap();
    let (s, _) = admin(
        reqwest::Method::GET,
        &format!("topic-permissions/%2F/{acct}"),
        None,
    )
    .await;
    assert_eq!(s, 404, "the topic permissions stayed");
    let (_, perms) = admin(
        reqwest::Method::GET,
        &format!("permissions/%2F/{acct}"),
        None,
    )
    .await;
    assert_eq!(perms["configure"], "^$");
    assert!(
        amqp_login(acct.as_str(), first.expose_secret())
            .await
            .is_err()
    );
    let conn = amqp_login(acct.as_str(), second.expose_secret())
        .await
        .unwrap();
    conn.close().await.unwrap();

    rabbit.revoke(&acct).await.unwrap();
    cleanup(&prefix).await;
}

#[tokio::test]
async fn missing_vhost_is_bad_privileges_and_leaves_nothing() {
    let prefix = unique_prefix();
    let rabbit = connector(ADMIN_URL, &prefix);
    let acct = account(&prefix, "novhost");
    let privileges = Privileges::RabbitMq(RabbitMqPermissions {
        vhost: format!("{prefix}missing"),
        configure: "^$".into(),
        write: "^$".into(),
        read: "^$".into(),
        topic: None,
    });
    let pw = password();
    let e = rabbit
        .provision(&request(&acct, &pw, &privileges))
        .await
        .unwrap_err();
    assert_eq!(variant(&e), "BadPrivileges", "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    assert!(!e.to_string().contains(pw.expose_secret()));
    assert!(rabbit.list_managed().await.unwrap().is_empty());

    let sql = Privileges::Sql(vec!["GRANT".into()]);
    let e = rabbit
        .provision(&request(&acct, &pw, &sql))
        .await
        .unwrap_err();
    assert_eq!(variant(&e), "BadPrivileges", "{e}");
    // Names without the prefix are not the connector's.
    let foreign = AccountName::parse("guest").unwrap();
    let e = rabbit.revoke(&foreign).await.unwrap_err();
    assert_eq!(variant(&e), "Failed", "{e}");
    cleanup(&prefix).await;
}

#[tokio::test]
async fn list_managed_returns_only_the_prefix() {
    let prefix = unique_prefix();
    let other = unique_prefix();
    let rabbit = connector(ADMIN_URL, &prefix);
    let a = account(&prefix, "a");
    let b = account(&prefix, "b");
    let privileges = orders(&prefix, None);
    for acct in [&a, &b] {
        rabbit
            .provision(&request(acct, &password(), &privileges))
            .await
            .unwrap();
    }
    let (s, _) = admin(
        reqwest::Method::PUT,
        &format!("users/{other}stray"),
        Some(json!({"password": "x", "tags": ""})),
    )
    .await;
    assert!(s < 300);
    assert_eq!(
        rabbit.list_managed().await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert!(
        connector(ADMIN_URL, &other)
            .list_managed()
            .await
            .unwrap()
            .iter()
            .all(|u| u.as_str() == format!("{other}stray"))
    );
    // Percent-escapes in the admin URL's credentials are decoded (`%65` is `e`).
    assert_eq!(
        connector("http://gu%65st:gu%65st@127.0.0.1:15672", &prefix)
            .list_managed()
            .await
            .unwrap(),
        vec![a.clone(), b.clone()]
    );
    let facts = rabbit.server_facts().await.unwrap();
    assert!(
        facts.identity.to_string().contains("rabbitmq cluster"),
        "{}",
        facts.identity
    );
    assert!(
        facts.identity.same_server(
            &connector("http://guest:guest@localhost:15672", "x_")
                .server_facts()
                .await
                .unwrap()
                .identity
        ),
        "the same server through another host name"
    );
    cleanup(&prefix).await;
    cleanup(&other).await;
}

#[tokio::test]
async fn unreachable_or_refused_admin_never_shows_the_password() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let secret = "Sup3r-s3cret-admin-pw";
    let down = connector(
        &format!("http://guest:{secret}@127.0.0.1:{port}"),
        "kt_down_",
    );
    let e = down.list_managed().await.unwrap_err();
    assert_eq!(variant(&e), "Unreachable", "{e}");
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(!format!("{down:?}").contains(secret));
    let acct = account("kt_down_", "x");
    let e = down
        .provision(&request(&acct, &password(), &orders("kt_down_", None)))
        .await
        .unwrap_err();
    assert_eq!(variant(&e), "Unreachable", "{e}");

    let refused = connector(
        &format!("http://guest:{secret}@127.0.0.1:15672"),
        "kt_down_",
    );
    let e = refused.list_managed().await.unwrap_err();
    assert_eq!(variant(&e), "AdminRefused", "{e}");
    assert!(!e.to_string().contains(secret), "{e}");

    let bad = RabbitMqConnector::new(RabbitMqSettings::new(
        "t",
        SecretString::from(format!("amqp://guest:{secret}@127.0.0.1:5672")),
    ))
    .unwrap_err();
    assert!(bad.to_string().contains("http://"), "{bad}");
    assert!(!bad.to_string().contains(secret), "{bad}");
}

/// A batch revokes and checks its users several at a time; each result stays in its
/// account's place: the one user that was never made says so, the others are gone and
/// verified with a refused login, and a user still present fails its check alone. A user
/// with an open connection has it closed and counted, as one revoked alone would.
#[tokio::test]
async fn batches_revoke_and_verify_in_order() {
    let prefix = unique_prefix();
    let c = connector(ADMIN_URL, &prefix);
    let privileges = orders(&prefix, None);
    let mut made = Vec::new();
    for i in 0..20 {
        let name = account(&prefix, &format!("b{i:02}"));
        let pw = password();
        c.provision(&request(&name, &pw, &privileges))
            .await
            .unwrap();
        made.push((name, pw));
    }
    // One user is connected.
    let (busy, busy_pw) = &made[5];
    let conn = amqp_login(busy.as_str(), busy_pw.expose_secret())
        .await
        .unwrap();
    wait_listed(busy.as_str()).await;
    // The batch: every made user, with a never-made one in the middle.
    let ghost = account(&prefix, "ghost");
    let mut names: Vec<AccountName> = made.iter().map(|(n, _)| n.clone()).collect();
    names.insert(10, ghost.clone());
    let revoked = c.revoke_many(&names).await;
    assert_eq!(revoked.len(), names.len());
    for (name, r) in names.iter().zip(&revoked) {
        let r = r.as_ref().unwrap();
        assert_eq!(r.account_existed, *name != ghost, "{name}");
        assert_eq!(r.sessions_killed, u64::from(name == busy), "{name}");
    }
    wait_closed(&conn).await;
    wait_unlisted(busy.as_str()).await;
    assert!(c.list_managed().await.unwrap().is_empty());

    // One user made again after the revocation: still present, so its check fails.
    let (back, back_pw) = &made[3];
    c.provision(&request(back, back_pw, &privileges))
        .await
        .unwrap();
    let checks: Vec<(AccountName, Option<SecretString>)> = made
        .iter()
        .map(|(n, p)| (n.clone(), Some(p.clone())))
        .collect();
    let verified = c.verify_gone_many(&checks).await;
    assert_eq!(verified.len(), made.len());
    for (i, ((name, _), v)) in made.iter().zip(&verified).enumerate() {
        if i == 3 {
            let e = v.as_ref().unwrap_err();
            assert_eq!(variant(e), "StillPresent", "{name}: {e}");
        } else {
            let v = v.as_ref().unwrap();
            assert_eq!(v.method, VERIFY_METHOD, "{name}");
            assert!(v.evidence.contains("ACCESS_REFUSED"), "{}", v.evidence);
        }
    }
    cleanup(&prefix).await;
}

/// A user with many open connections, revoked over and over: deleting the user makes
/// RabbitMQ close the connections by itself while the connector closes them too, and the
/// management API may answer 500 for a connection ending under it. Every revoke still
/// succeeds, counts every connection, and leaves none open.
#[tokio::test]
async fn revoke_races_rabbitmqs_own_closing_and_still_succeeds() {
    const CONNECTIONS: usize = 8;
    let prefix = unique_prefix();
    let c = connector(ADMIN_URL, &prefix);
    let privileges = orders(&prefix, None);
    let name = account(&prefix, "many");
    for round in 0..4 {
        let pw = password();
        c.provision(&request(&name, &pw, &privileges))
            .await
            .unwrap();
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            conns.push(amqp_login(name.as_str(), pw.expose_secret()).await.unwrap());
        }
        wait_connections(name.as_str(), "all listed", |n| n == CONNECTIONS).await;
        let revoked = c.revoke(&name).await.unwrap();
        assert_eq!(
            revoked,
            Revoked {
                sessions_killed: CONNECTIONS as u64,
                account_existed: true
            },
            "round {round}"
        );
        for conn in &conns {
            wait_closed(conn).await;
        }
        wait_unlisted(name.as_str()).await;
        let verified = c.verify_gone(&name, Some(&pw)).await.unwrap();
        assert!(
            verified.evidence.contains("ACCESS_REFUSED"),
            "{}",
            verified.evidence
        );
    }
    assert!(c.list_managed().await.unwrap().is_empty());
    cleanup(&prefix).await;
}
