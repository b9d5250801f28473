//! The MariaDB connector against real servers: the shared one on 127.0.0.1:3306 (root,
//! empty password) and private `mariadbd` instances for what needs a server to stop or an
//! event scheduler that is on.
// Test helpers outside #[test] functions unwrap too (clippy.toml covers only the latter).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use kairos_connector_mariadb::{EventScheduler, MariaDbConnector, MariaDbSettings};
use kairos_connectors::{AccountName, Connector, ConnectorError, Privileges};
use secrecy::SecretString;
use sqlx::{ConnectOptions as _, Connection};
use support::*;

const HOUR: Duration = Duration::from_secs(3600);
/// Login refused. MariaDB answers 1698 instead of 1045 for some unknown user names (see
/// the crate docs).
const ACCESS_DENIED: u16 = 1045;
const ACCESS_DENIED_NO_PASSWORD: u16 = 1698;

fn kind(e: &ConnectorError) -> &'static str {
    match e {
        ConnectorError::Unreachable { .. } => "Unreachable",
        ConnectorError::AdminRefused { .. } => "AdminRefused",
        ConnectorError::BadPrivileges(_) => "BadPrivileges",
        ConnectorError::Failed { .. } => "Failed",
        ConnectorError::StillPresent(_) => "StillPresent",
    }
}

fn password() -> SecretString {
    SecretString::from(format!("pw-{}-{}", hex8(), hex8()))
}

fn expose(s: &SecretString) -> &str {
    secrecy::ExposeSecret::expose_secret(s)
}

/// Provisions with `privileges` and expects the error kind `expected`; then the account
/// must not exist.
async fn check_refused(world: &World, templates: Privileges, expected: &str) -> ConnectorError {
    let account = world.account(&hex8());
    let pw = password();
    let err = world
        .connector
        .provision(&request(&account, &pw, now().plus(HOUR), &templates))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), expected, "{err}");
    assert!(!err.to_string().contains(expose(&pw)));
    assert_eq!(world.users().await, vec![], "{account} was left behind");
    world
        .connector
        .verify_gone(&account, Some(&pw))
        .await
        .unwrap();
    err
}

#[tokio::test]
async fn issue_use_revoke_verify() {
    let world = World::shared().await;
    let c = &world.connector;
    let account = world.account("issue");
    let pw = password();
    let privileges = world.select_on_t();

    let info = c
        .provision(&request(&account, &pw, now().plus(HOUR), &privileges))
        .await
        .unwrap();
    assert_eq!(info.username, account.as_str());
    assert_eq!((info.host.as_str(), info.port), (SHARED_HOST, SHARED_PORT));
    assert_eq!(info.database.as_deref(), Some("test"));
    assert_eq!(c.list_managed().await.unwrap(), vec![account.clone()]);

    // The workload's session: SELECT works, INSERT is refused.
    let mut session = login(SHARED_PORT, account.as_str(), expose(&pw), Some(&world.db))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM `{}`.t", world.db))
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let insert = sqlx::query(&format!("INSERT INTO `{}`.t VALUES (2)", world.db))
        .execute(&mut session)
        .await
        .unwrap_err();
    assert_eq!(mariadb_code(&insert), Some(1142), "{insert}");

    // Renewal without an event scheduler is a no-op; revocability matches the scheduler.
    c.renew(&account, now().plus(2 * HOUR)).await.unwrap();
    let scheduler = c.check_event_scheduler().await.unwrap();
    let r = c.revocability();
    assert!(r.revocable && r.kills_sessions);
    assert_eq!(r.native_expiry.is_some(), scheduler == EventScheduler::On);

    // Revoke with the session still open.
    let revoked = c.revoke(&account).await.unwrap();
    assert!(revoked.account_existed);
    assert_eq!(revoked.sessions_killed, 1);
    let after = sqlx::query("SELECT 1").execute(&mut session).await;
    assert!(after.is_err(), "the open session survived the revocation");
    let relogin = login(SHARED_PORT, account.as_str(), expose(&pw), None)
        .await
        .err();
    assert!(
        matches!(relogin, Some(ACCESS_DENIED | ACCESS_DENIED_NO_PASSWORD)),
        "{relogin:?}"
    );

    let v = c.verify_gone(&account, Some(&pw)).await.unwrap();
    assert_eq!(v.method, "mysql.user+login");
    assert!(v.evidence.contains("access denied"), "{}", v.evidence);
    assert!(!v.evidence.contains(expose(&pw)));
    assert_eq!(c.list_managed().await.unwrap(), Vec::<AccountName>::new());

    let again = c.revoke(&account).await.unwrap();
    assert!(!again.account_existed);
    assert_eq!(again.sessions_killed, 0);
}

#[tokio::test]
async fn retried_provision_converges() {
    let world = World::shared().await;
    let c = &world.connector;
    let account = world.account("retry");
    let (first, second) = (password(), password());
    let privileges = world.select_on_t();
    c.provision(&request(&account, &first, now().plus(HOUR), &privileges))
        .await
        .unwrap();
    c.provision(&request(&account, &second, now().plus(HOUR), &privileges))
        .await
        .unwrap();
    assert_eq!(world.users().await.len(), 1);
    // The account exists, so the wrong password is plainly 1045.
    assert_eq!(
        login(SHARED_PORT, account.as_str(), expose(&first), None)
            .await
            .err(),
        Some(ACCESS_DENIED)
    );
    let mut session = login(
        SHARED_PORT,
        account.as_str(),
        expose(&second),
        Some(&world.db),
    )
    .await
    .unwrap();
    sqlx::query(&format!("SELECT * FROM `{}`.t", world.db))
        .fetch_all(&mut session)
        .await
        .unwrap();
    session.close().await.unwrap();

    // Still present: verification says so.
    let err = c.verify_gone(&account, Some(&second)).await.unwrap_err();
    assert_eq!(kind(&err), "StillPresent", "{err}");
    c.revoke(&account).await.unwrap();
    c.verify_gone(&account, Some(&second)).await.unwrap();
}

#[tokio::test]
async fn bad_privileges_create_nothing() {
    let world = World::shared().await;
    let db = world.db.clone();

    // Two statements in one template: the prepared-statement protocol refuses it.
    let injection = sql_privileges(&[&format!(
        "GRANT SELECT ON `{db}`.t TO {{{{role}}}}; DROP TABLE `{db}`.t"
    )]);
    check_refused(&world, injection, "Failed").await;
    assert!(world.table_exists().await, "the injected DROP TABLE ran");

    // Caught before anything runs.
    let no_role = sql_privileges(&[&format!("GRANT SELECT ON `{db}`.t TO root")]);
    let err = check_refused(&world, no_role, "BadPrivileges").await;
    assert!(err.to_string().contains("{{role}}"), "{err}");
    check_refused(
        &world,
        Privileges::RedisAcl(vec!["+get".into()]),
        "BadPrivileges",
    )
    .await;

    // The second statement fails after the account and a grant exist: all is undone.
    let second_fails = sql_privileges(&[
        &format!("GRANT SELECT ON `{db}`.t TO {{{{role}}}}"),
        &format!("GRANT SELECT ON `{db}`.no_such_table TO {{{{role}}}}"),
    ]);
    let err = check_refused(&world, second_fails, "Failed").await;
    assert!(
        err.to_string().contains("privilege statement 2 of 2"),
        "{err}"
    );
    assert!(world.table_exists().await);
}

#[tokio::test]
async fn unmanaged_accounts_are_not_touched() {
    let world = World::shared().await;
    let root = AccountName::parse("root").unwrap();
    let err = world.connector.revoke(&root).await.unwrap_err();
    assert_eq!(kind(&err), "Failed", "{err}");
    assert!(err.to_string().contains("managed prefix"), "{err}");
    // root is still there.
    login(SHARED_PORT, "root", "", None).await.unwrap();
}

#[tokio::test]
async fn list_managed_matches_the_prefix_exactly() {
    let world = World::shared().await;
    let mut conn = root(SHARED_PORT).await;
    // `kt<hex>_hand` has the prefix; `kt<hex>xhand` would match `LIKE 'kt<hex>_%'`.
    let with = format!("{}hand", world.prefix);
    let without = format!("{}xhand", world.prefix.trim_end_matches('_'));
    exec(
        &mut conn,
        &format!("CREATE USER '{with}'@'%' IDENTIFIED BY 'x'; CREATE USER '{without}'@'%' IDENTIFIED BY 'x'"),
    )
    .await;
    let listed = world.connector.list_managed().await;
    exec(&mut conn, &format!("DROP USER '{without}'@'%'")).await;
    assert_eq!(listed.unwrap(), vec![AccountName::parse(with).unwrap()]);
}

#[tokio::test]
async fn wrong_admin_credentials_are_admin_refused_without_the_password() {
    let secret = format!("Wr0ngAdminPw{}", hex8());
    let url = SecretString::from(format!(
        "mysql://root:{secret}@{SHARED_HOST}:{SHARED_PORT}/test"
    ));
    let settings = MariaDbSettings::new("maria-test", url);
    assert!(!format!("{settings:?}").contains(&secret));
    let c = MariaDbConnector::new(settings).unwrap();
    assert!(!format!("{c:?}").contains(&secret));

    let account = AccountName::parse(format!("kairos_{}", hex8())).unwrap();
    let pw = password();
    let privileges = sql_privileges(&["GRANT SELECT ON test.* TO {{role}}"]);
    let errors = [
        c.provision(&request(&account, &pw, now().plus(HOUR), &privileges))
            .await
            .unwrap_err(),
        c.renew(&account, now().plus(HOUR)).await.unwrap_err(),
        c.revoke(&account).await.unwrap_err(),
        c.verify_gone(&account, Some(&pw)).await.unwrap_err(),
        c.list_managed().await.unwrap_err(),
        c.check_event_scheduler().await.unwrap_err(),
    ];
    for err in errors {
        assert_eq!(kind(&err), "AdminRefused", "{err}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(&secret), "{text}");
            assert!(!text.contains(expose(&pw)), "{text}");
        }
    }
}

#[tokio::test]
async fn an_admin_without_privileges_is_admin_refused() {
    let world = World::shared().await;
    // Can read mysql.user, cannot create users.
    let admin = world.account("weakadmin");
    let admin_pw = format!("AdminPw{}", hex8());
    let mut conn = root(SHARED_PORT).await;
    exec(
        &mut conn,
        &format!(
            "CREATE USER '{admin}'@'%' IDENTIFIED BY '{admin_pw}'; GRANT SELECT ON mysql.* TO '{admin}'@'%'; \
             GRANT SELECT ON `{db}`.* TO '{admin}'@'%'",
            db = world.db
        ),
    )
    .await;
    let url = format!(
        "mysql://{admin}:{admin_pw}@{SHARED_HOST}:{SHARED_PORT}/{}",
        world.db
    );
    let mut settings = MariaDbSettings::new("maria-test", SecretString::from(url));
    settings.managed_prefix = world.prefix.clone();
    let c = MariaDbConnector::new(settings).unwrap();
    let account = world.account("never");
    let pw = password();
    let err = c
        .provision(&request(
            &account,
            &pw,
            now().plus(HOUR),
            &world.select_on_t(),
        ))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), "AdminRefused", "{err}");
    assert!(err.to_string().contains("1227"), "{err}");
    for secret in [admin_pw.as_str(), expose(&pw)] {
        assert!(!err.to_string().contains(secret), "{err}");
    }
    assert_eq!(world.users().await.len(), 1, "only the admin exists");
}

#[tokio::test]
async fn bad_settings_are_refused() {
    let check = |mut settings: MariaDbSettings, expected: &str| {
        let secret = "S3cretInUrl";
        settings.admin_url = SecretString::from(
            secrecy::ExposeSecret::expose_secret(&settings.admin_url).replace("PW", secret),
        );
        let err = MariaDbConnector::new(settings).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
        assert!(!err.to_string().contains(secret), "{err}");
    };
    let s = |url: &str| MariaDbSettings::new("t", SecretString::from(url.to_owned()));
    check(s("mysql://root:PW@127.0.0.1:3306"), "must name a database");
    check(s("postgres://root:PW@127.0.0.1/x"), "not a valid mysql://");
    check(
        MariaDbSettings {
            managed_prefix: "Kairos-".into(),
            ..s("mysql://root:PW@127.0.0.1/x")
        },
        "managed_prefix",
    );
    check(
        MariaDbSettings {
            account_host: "a'b".into(),
            ..s("mysql://root:PW@127.0.0.1/x")
        },
        "account_host",
    );
}

#[tokio::test]
async fn unreachable_target_is_unreachable_everywhere() {
    let port = free_port();
    let c = MariaDbConnector::new(MariaDbSettings::new("gone", root_url(port, "test"))).unwrap();
    let account = AccountName::parse(format!("kairos_{}", hex8())).unwrap();
    let pw = password();
    let privileges = sql_privileges(&["GRANT SELECT ON test.* TO {{role}}"]);
    let req = request(&account, &pw, now().plus(HOUR), &privileges);
    let started = Instant::now();
    // Concurrently: each one waits out the 5 s connect timeout.
    let (a, b, d, e, f, g) = tokio::join!(
        c.provision(&req),
        c.renew(&account, now().plus(HOUR)),
        c.revoke(&account),
        c.verify_gone(&account, Some(&pw)),
        c.list_managed(),
        c.check_event_scheduler(),
    );
    let errors = [
        a.unwrap_err(),
        b.unwrap_err(),
        d.unwrap_err(),
        e.unwrap_err(),
        f.unwrap_err(),
        g.unwrap_err(),
    ];
    for err in errors {
        assert_eq!(kind(&err), "Unreachable", "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(c.revocability().native_expiry, None);
}

/// When the event `schema`.`name` fires, and in which time zone; None if it does not exist.
async fn event_execute_at(port: u16, schema: &str, name: &str) -> Option<(String, String)> {
    let mut conn = root(port).await;
    sqlx::query_as(
        "SELECT CAST(EXECUTE_AT AS CHAR), CAST(TIME_ZONE AS CHAR) FROM information_schema.EVENTS \
         WHERE EVENT_SCHEMA = ? AND EVENT_NAME = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_optional(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn revoke_waits_for_a_stopped_server() {
    let mut server = PrivateMariaDb::start().await;
    let world = World::private(&server).await;
    let c = &world.connector;
    assert_eq!(c.check_event_scheduler().await.unwrap(), EventScheduler::On);
    assert!(c.revocability().native_expiry.is_some());

    let account = world.account("stop");
    let pw = password();
    c.provision(&request(
        &account,
        &pw,
        now().plus(HOUR),
        &world.select_on_t(),
    ))
    .await
    .unwrap();
    let event = c.expiry_event_name(&account);
    let (first_at, tz) = event_execute_at(server.port, &world.db, &event)
        .await
        .unwrap();
    assert_eq!(tz, "+00:00");
    c.renew(&account, now().plus(2 * HOUR)).await.unwrap();
    let (moved_at, _) = event_execute_at(server.port, &world.db, &event)
        .await
        .unwrap();
    assert!(moved_at > first_at, "{moved_at} should be after {first_at}");

    server.stop();
    let err = c.revoke(&account).await.unwrap_err();
    assert_eq!(kind(&err), "Unreachable", "{err}");
    let err = c.verify_gone(&account, Some(&pw)).await.unwrap_err();
    assert_eq!(kind(&err), "Unreachable", "{err}");

    server.run().await;
    let revoked = c.revoke(&account).await.unwrap();
    assert!(revoked.account_existed);
    c.verify_gone(&account, Some(&pw)).await.unwrap();
    assert_eq!(event_execute_at(server.port, &world.db, &event).await, None);
}

#[tokio::test]
async fn the_event_scheduler_drops_an_expired_account_by_itself() {
    let server = PrivateMariaDb::start().await;
    let world = World::private(&server).await;
    let c = &world.connector;
    let account = world.account("native");
    let pw = password();
    let valid_until = now().plus(Duration::from_secs(2));
    c.provision(&request(&account, &pw, valid_until, &world.select_on_t()))
        .await
        .unwrap();
    let mut session = login(server.port, account.as_str(), expose(&pw), Some(&world.db))
        .await
        .unwrap();
    sqlx::query("SELECT 1").execute(&mut session).await.unwrap();

    // Kairos does nothing from here on.
    let started = Instant::now();
    while !world.users().await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the expiry event did not drop {account}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(now() >= valid_until, "dropped before the grant's end");
    let relogin = login(server.port, account.as_str(), expose(&pw), None)
        .await
        .err();
    assert!(
        matches!(relogin, Some(ACCESS_DENIED | ACCESS_DENIED_NO_PASSWORD)),
        "{relogin:?}"
    );
    // The event does not kill open sessions (documented): Kairos's revoke does.
    sqlx::query("SELECT 1").execute(&mut session).await.unwrap();
    let err = c.verify_gone(&account, Some(&pw)).await.unwrap_err();
    assert_eq!(kind(&err), "StillPresent", "{err}");
    let revoked = c.revoke(&account).await.unwrap();
    assert!(!revoked.account_existed);
    assert_eq!(revoked.sessions_killed, 1);
    c.verify_gone(&account, Some(&pw)).await.unwrap();
    let event = c.expiry_event_name(&account);
    assert_eq!(event_execute_at(server.port, &world.db, &event).await, None);
}

/// An admin URL with `ssl-mode=VERIFY_IDENTITY` reaches the server over TLS and checks its
/// certificate. The admin user here may only log in over TLS (`REQUIRE SSL`), so every
/// step succeeding shows every admin connection was encrypted; trusting another CA only,
/// the connector is refused without the URL's password in the error.
#[tokio::test]
async fn admin_connections_use_tls_and_check_the_certificate() {
    let (server, ca) = PrivateMariaDb::start_tls().await;
    let world = World::private(&server).await;
    let admin_pw = "tls-admin-pw-5e1d";
    let mut root = root(server.port).await;
    sqlx::raw_sql(&format!(
        "CREATE USER 'tls_admin'@'127.0.0.1' IDENTIFIED BY '{admin_pw}' REQUIRE SSL; \
         GRANT ALL PRIVILEGES ON *.* TO 'tls_admin'@'127.0.0.1' WITH GRANT OPTION"
    ))
    .execute(&mut root)
    .await
    .unwrap();
    let connector = |ca: &std::path::Path| {
        let url = format!(
            "mysql://tls_admin:{admin_pw}@127.0.0.1:{}/{}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
            server.port,
            world.db,
            ca.display()
        );
        let mut settings = MariaDbSettings::new("maria-tls", SecretString::from(url));
        settings.managed_prefix = world.prefix.clone();
        MariaDbConnector::new(settings).unwrap()
    };
    // Without TLS the admin user is refused (so the checks below mean something).
    let plain = options(server.port, "tls_admin", admin_pw, None)
        .ssl_mode(sqlx::mysql::MySqlSslMode::Disabled)
        .connect()
        .await;
    assert!(plain.is_err(), "a plain login of a REQUIRE SSL user worked");

    let c = connector(&ca);
    let account = world.account("tls");
    let pw = password();
    c.provision(&request(
        &account,
        &pw,
        now().plus(HOUR),
        &world.select_on_t(),
    ))
    .await
    .unwrap();
    assert_eq!(world.users().await.len(), 1);
    c.revoke(&account).await.unwrap();
    c.verify_gone(&account, Some(&pw)).await.unwrap();
    assert!(world.users().await.is_empty());

    let elsewhere = tempfile::tempdir().unwrap();
    let other_ca = kairos_testkit::Certificates::make(elsewhere.path()).ca;
    let refused = connector(&other_ca)
        .provision(&request(
            &account,
            &pw,
            now().plus(HOUR),
            &world.select_on_t(),
        ))
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, ConnectorError::Unreachable { .. }) && message.contains("certificate"),
        "{message}"
    );
    assert!(
        !message.contains(admin_pw),
        "the error echoes the password: {message}"
    );
    assert!(world.users().await.is_empty());
}

/// Users are server-wide: two targets on one server (their own databases) reach the same
/// server, the shared server is another one; with the event scheduler off the connector
/// warns, naming the target, that the native expiry is off.
#[tokio::test]
async fn server_identity_and_the_event_scheduler_warning() {
    let server = PrivateMariaDb::start().await;
    let a = World::private(&server).await;
    let b = World::private(&server).await;
    let shared = World::shared().await;
    let fa = a.connector.server_facts().await.unwrap();
    let fb = b.connector.server_facts().await.unwrap();
    let fs = shared.connector.server_facts().await.unwrap();
    assert!(
        fa.identity.same_server(&fb.identity),
        "{} / {}",
        fa.identity,
        fb.identity
    );
    assert!(
        !fa.identity.same_server(&fs.identity),
        "{} / {}",
        fa.identity,
        fs.identity
    );
    assert!(fa.warnings.is_empty(), "{:?}", fa.warnings);

    exec(
        &mut root(server.port).await,
        "SET GLOBAL event_scheduler = OFF",
    )
    .await;
    let off = a.connector.server_facts().await.unwrap();
    assert_eq!(off.warnings.len(), 1, "{:?}", off.warnings);
    assert!(
        off.warnings[0].contains("maria-test")
            && off.warnings[0].contains("event scheduler is off"),
        "{}",
        off.warnings[0]
    );
    assert!(a.connector.revocability().native_expiry.is_none());
}

/// `list_sessions` lists the live sessions of managed accounts with their client
/// addresses (from the process list), and nothing of other users.
#[tokio::test]
async fn sessions_of_managed_accounts_are_listed_with_their_addresses() {
    let world = World::shared().await;
    let c = &world.connector;
    assert!(c.list_sessions().await.unwrap().is_empty());
    let account = world.account("sess");
    let pw = password();
    c.provision(&request(
        &account,
        &pw,
        now().plus(HOUR),
        &world.select_on_t(),
    ))
    .await
    .unwrap();
    let session = login(SHARED_PORT, account.as_str(), expose(&pw), Some(&world.db))
        .await
        .unwrap();
    let sessions = c.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].account, account);
    assert_eq!(
        sessions[0].client_addr,
        Some(std::net::IpAddr::from([127, 0, 0, 1])),
        "{sessions:?}"
    );
    drop(session);
    c.revoke(&account).await.unwrap();
    assert!(c.list_sessions().await.unwrap().is_empty());
}
