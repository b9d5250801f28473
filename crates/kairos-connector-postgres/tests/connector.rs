//! The PostgreSQL connector against real PostgreSQL: the shared server (trust auth) for
//! catalog and session behaviour, private `initdb` instances (scram-sha-256) for passwords,
//! outages and native expiry.

// Test code: clippy.toml's allowances only cover #[test] fns, not the helpers in support/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kairos_connector_postgres::{PostgresConnector, PostgresSettings};
use kairos_connectors::{AccountName, Connector, ConnectorError, Privileges, Revoked};
use kairos_domain::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use support::{
    PgAuth, PrivatePg, PrivatePgExt, TestDb, free_port, in_one_hour, login, now, password,
    random_hex, request, run, sql, sqlstate,
};

const SELECT_ON_T: &str = "GRANT SELECT ON t TO {{role}}";

/// Logs in as an issued account and reads the fixture row every template grants.
async fn login_and_read(
    info: &kairos_connectors::ConnectionInfo,
    password: &SecretString,
) -> (sqlx::PgConnection, String) {
    let mut session = login(
        &info.host,
        info.port,
        info.database.as_deref().unwrap(),
        &info.username,
        password.expose_secret(),
    )
    .await
    .unwrap();
    let v: String = sqlx::query_scalar("SELECT v FROM t WHERE id = 1")
        .fetch_one(&mut session)
        .await
        .unwrap();
    (session, v)
}

#[tokio::test]
async fn issue_use_revoke_verify() {
    let db = TestDb::new().await;
    let pg = db.connector();
    let account = db.account("issue");
    let pw = password();
    let privileges = sql(&[SELECT_ON_T]);

    let info = pg
        .provision(&request(&account, &pw, &privileges, in_one_hour()))
        .await
        .unwrap();
    assert_eq!(
        (
            info.host.as_str(),
            info.port,
            info.database.as_deref(),
            info.username.as_str()
        ),
        ("127.0.0.1", 5432, Some(db.name.as_str()), account.as_str())
    );
    assert_eq!(pg.list_managed().await.unwrap(), vec![account.clone()]);

    let database = info.database.clone().unwrap();
    let (mut session, v) = login_and_read(&info, &pw).await;
    assert_eq!(v, "one");
    let insert = sqlx::query("INSERT INTO t VALUES (2, 'two')")
        .execute(&mut session)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&insert).as_deref(), Some("42501"), "{insert}");

    // Revoke with the session still open.
    let revoked = pg.revoke(&account).await.unwrap();
    assert_eq!(
        revoked,
        Revoked {
            sessions_killed: 1,
            account_existed: true
        }
    );
    let after = sqlx::query("SELECT 1").execute(&mut session).await;
    assert!(after.is_err(), "the open session survived the revocation");

    let relogin = login(
        &info.host,
        info.port,
        &database,
        &info.username,
        pw.expose_secret(),
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&relogin).as_deref(), Some("28000"), "{relogin}");

    let verification = pg.verify_gone(&account, Some(&pw)).await.unwrap();
    assert_eq!(verification.method, "pg_roles+login");
    assert!(
        verification.evidence.contains(account.as_str())
            && verification.evidence.contains("absent from pg_roles")
            && verification.evidence.contains("refused"),
        "{}",
        verification.evidence
    );
    let without_password = pg.verify_gone(&account, None).await.unwrap();
    assert_eq!(without_password.method, "pg_roles");

    assert!(pg.list_managed().await.unwrap().is_empty());
    assert_eq!(
        pg.revoke(&account).await.unwrap(),
        Revoked {
            sessions_killed: 0,
            account_existed: false
        }
    );
}

#[tokio::test]
async fn privilege_templates_cannot_smuggle_statements() {
    let db = TestDb::new().await;
    let pg = db.connector();
    let pw = password();

    // A second command in a template: the server refuses it, and the transaction with it.
    let account = db.account("inject");
    let injected = sql(&[SELECT_ON_T, "GRANT SELECT ON t TO {{role}}; DROP TABLE t"]);
    let e = pg
        .provision(&request(&account, &pw, &injected, in_one_hour()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ConnectorError::BadPrivileges(m) if m.contains("multiple commands")),
        "{e}"
    );
    assert!(db.table_exists("t").await, "the injected DROP TABLE ran");
    assert!(
        !db.role_exists(account.as_str()).await,
        "a half-made role was left"
    );

    // A template without {{role}}: refused before anything runs.
    let e = pg
        .provision(&request(
            &account,
            &pw,
            &sql(&["GRANT SELECT ON t TO PUBLIC"]),
            in_one_hour(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::BadPrivileges(_)), "{e}");
    assert!(!db.role_exists(account.as_str()).await);

    // Redis rules on a PostgreSQL target.
    let e = pg
        .provision(&request(
            &account,
            &pw,
            &Privileges::RedisAcl(vec!["+get".into()]),
            in_one_hour(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::BadPrivileges(_)), "{e}");
    assert!(!db.role_exists(account.as_str()).await);

    // An account name can't carry SQL in the first place.
    assert!(AccountName::parse(r#"x"; DROP ROLE postgres; --"#).is_err());
    assert!(AccountName::parse(format!("{}x\"; DROP ROLE postgres; --", db.prefix)).is_err());
}

#[tokio::test]
async fn wrong_admin_password_is_refused_and_never_echoed() {
    let private = PrivatePg::start(PgAuth::AdminPassword);
    let wrong = "wrong-admin-pw-77e0d2";
    let settings = PostgresSettings {
        target: "pg-private".to_owned(),
        admin_url: private.url(PrivatePg::ADMIN, wrong, "postgres"),
        managed_prefix: format!("kt{}_", random_hex(8)),
        connect_host: None,
        scram_iterations: kairos_connector_postgres::SCRAM_ITERATIONS,
    };
    let pg = PostgresConnector::new(settings.clone()).unwrap();
    let debug = format!("{pg:?} {settings:?}");
    assert!(!debug.contains(wrong), "{debug}");

    let account = AccountName::parse(format!("{}x", settings.managed_prefix)).unwrap();
    let pw = password();
    let errors = [
        pg.list_managed().await.map(|_| ()).unwrap_err(),
        pg.revoke(&account).await.map(|_| ()).unwrap_err(),
        pg.provision(&request(&account, &pw, &sql(&[]), in_one_hour()))
            .await
            .map(|_| ())
            .unwrap_err(),
    ];
    for e in errors {
        let text = format!("{e} {e:?}");
        assert!(matches!(e, ConnectorError::AdminRefused { .. }), "{text}");
        assert!(text.contains("28P01"), "{text}");
        for secret in [wrong, PrivatePg::ADMIN_PASSWORD, pw.expose_secret()] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

#[tokio::test]
async fn unreachable_target() {
    let port = free_port();
    let admin_pw = "unreachable-admin-pw-1c4e";
    let pg = PostgresConnector::new(PostgresSettings {
        target: "pg-down".to_owned(),
        admin_url: SecretString::from(format!("postgres://admin:{admin_pw}@127.0.0.1:{port}/app")),
        managed_prefix: "kairos_".to_owned(),
        connect_host: None,
        scram_iterations: kairos_connector_postgres::SCRAM_ITERATIONS,
    })
    .unwrap(); // lazily connecting: a target that is down does not fail construction
    let account = AccountName::parse("kairos_down").unwrap();
    let pw = password();
    let privileges = sql(&[SELECT_ON_T]);
    let req = request(&account, &pw, &privileges, in_one_hour());

    // Concurrently: each waits out the 5 s connect deadline.
    let (provision, renew, revoke, verify, list, facts) = tokio::join!(
        pg.provision(&req),
        pg.renew(&account, in_one_hour()),
        pg.revoke(&account),
        pg.verify_gone(&account, Some(&pw)),
        pg.list_managed(),
        pg.server_facts(),
    );
    let errors = [
        provision.map(|_| ()).unwrap_err(),
        renew.unwrap_err(),
        revoke.map(|_| ()).unwrap_err(),
        verify.map(|_| ()).unwrap_err(),
        list.map(|_| ()).unwrap_err(),
        facts.map(|_| ()).unwrap_err(),
    ];
    for e in errors {
        let text = format!("{e} {e:?}");
        assert!(
            matches!(&e, ConnectorError::Unreachable { target, .. } if target == "pg-down"),
            "{text}"
        );
        assert!(
            !text.contains(admin_pw) && !text.contains(pw.expose_secret()),
            "{text}"
        );
    }
}

/// Right and wrong passwords, an outage during revocation, and verification by login, on a
/// private scram-sha-256 instance.
#[tokio::test]
async fn private_instance_outage_then_revoke_and_verify() {
    let private = PrivatePg::start(PgAuth::AdminPassword);
    run(&mut private.admin().await, "CREATE TABLE t (id int)").await;
    let prefix = format!("kt{}_", random_hex(8));
    let pg = PostgresConnector::new(PostgresSettings {
        target: "pg-private".to_owned(),
        admin_url: private.admin_url(),
        managed_prefix: prefix.clone(),
        connect_host: Some("db.internal".to_owned()),
        scram_iterations: kairos_connector_postgres::SCRAM_ITERATIONS,
    })
    .unwrap();
    let account = AccountName::parse(format!("{prefix}outage")).unwrap();
    let pw = password();

    let info = pg
        .provision(&request(&account, &pw, &sql(&[SELECT_ON_T]), in_one_hour()))
        .await
        .unwrap();
    assert_eq!(
        (info.host.as_str(), info.port),
        ("db.internal", private.port)
    );

    // The client-side SCRAM verifier accepts the right password and only it.
    let mut ok = private
        .login(account.as_str(), pw.expose_secret())
        .await
        .unwrap();
    sqlx::query("SELECT count(*) FROM t")
        .execute(&mut ok)
        .await
        .unwrap();
    let wrong = private
        .login(account.as_str(), "not-the-password")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&wrong).as_deref(), Some("28P01"), "{wrong}");
    drop(ok);

    private.stop();
    let e = pg.revoke(&account).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unreachable { .. }), "{e}");
    let e = pg.verify_gone(&account, Some(&pw)).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unreachable { .. }), "{e}");

    private.restart();
    let e = pg.verify_gone(&account, Some(&pw)).await.unwrap_err();
    assert!(matches!(e, ConnectorError::StillPresent(_)), "{e}");
    let revoked = pg.revoke(&account).await.unwrap();
    assert!(revoked.account_existed);
    let verification = pg.verify_gone(&account, Some(&pw)).await.unwrap();
    assert_eq!(verification.method, "pg_roles+login");
    assert!(
        verification.evidence.contains("28"),
        "{}",
        verification.evidence
    );
}

/// The provisioning worker keeps one connection between batches; after its server
/// restarts (that connection is dead), the next batches are created on a new one instead
/// of being refused as unreachable.
#[tokio::test]
async fn batches_after_a_server_restart_are_created_on_a_new_connection() {
    const N: usize = 40;
    let private = PrivatePg::start(PgAuth::AdminPassword);
    run(&mut private.admin().await, "CREATE TABLE t (id int)").await;
    let prefix = format!("kt{}_", random_hex(8));
    let pg = Arc::new(
        PostgresConnector::new(PostgresSettings {
            target: "pg-private".to_owned(),
            admin_url: private.admin_url(),
            managed_prefix: prefix.clone(),
            connect_host: None,
            scram_iterations: std::num::NonZeroU32::MIN,
        })
        .unwrap(),
    );
    let privileges = Arc::new(sql(&[SELECT_ON_T]));
    let round = |tag: &str| -> (Vec<AccountName>, Vec<SecretString>) {
        (
            (0..N)
                .map(|i| AccountName::parse(format!("{prefix}{tag}{i:02}")).unwrap())
                .collect(),
            (0..N).map(|_| password()).collect(),
        )
    };
    let (first, first_pw) = round("a");
    for r in provision_all(&pg, &first, &first_pw, |_| &privileges).await {
        r.unwrap();
    }

    private.stop();
    private.restart();
    let (second, second_pw) = round("b");
    for r in provision_all(&pg, &second, &second_pw, |_| &privileges).await {
        r.unwrap();
    }
    for (account, pw) in second.iter().zip(&second_pw) {
        private
            .login(account.as_str(), pw.expose_secret())
            .await
            .unwrap();
    }
    assert_eq!(pg.list_managed().await.unwrap().len(), 2 * N);
}

/// `VALID UNTIL` is enforced by PostgreSQL itself (only under password authentication).
#[tokio::test]
async fn native_expiry_refuses_login_without_kairos() {
    let private = PrivatePg::start(PgAuth::AdminPassword);
    let prefix = format!("kt{}_", random_hex(8));
    let pg = PostgresConnector::new(PostgresSettings {
        target: "pg-private".to_owned(),
        admin_url: private.admin_url(),
        managed_prefix: prefix.clone(),
        connect_host: None,
        scram_iterations: kairos_connector_postgres::SCRAM_ITERATIONS,
    })
    .unwrap();
    let account = AccountName::parse(format!("{prefix}expired")).unwrap();
    let pw = password();
    let an_hour_ago = Timestamp::from_millis(now().as_millis() - 3_600_000);

    pg.provision(&request(&account, &pw, &sql(&[]), an_hour_ago))
        .await
        .unwrap();
    let refused = private
        .login(account.as_str(), pw.expose_secret())
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&refused).as_deref(), Some("28P01"), "{refused}");

    // Renewal moves the native expiry: the same password logs in again.
    pg.renew(&account, in_one_hour()).await.unwrap();
    private
        .login(account.as_str(), pw.expose_secret())
        .await
        .unwrap();

    pg.revoke(&account).await.unwrap();
    pg.verify_gone(&account, Some(&pw)).await.unwrap();
}

/// The verifier's iteration count is the target's `scram_iterations`: at 1 (the cheapest,
/// as safe for random passwords) the accounts log in with sqlx and with psql (libpq), over
/// SCRAM-SHA-256 on a server that requires it; the default stays PostgreSQL's 4,096.
#[tokio::test]
async fn scram_iterations_set_the_verifier_and_logins_work() {
    let private = PrivatePg::start(PgAuth::AdminPassword);
    let prefix = format!("kt{}_", random_hex(8));
    let connector = |iterations: u32| {
        PostgresConnector::new(PostgresSettings {
            target: "pg-private".to_owned(),
            admin_url: private.admin_url(),
            managed_prefix: prefix.clone(),
            connect_host: None,
            scram_iterations: std::num::NonZeroU32::new(iterations).unwrap(),
        })
        .unwrap()
    };
    let mut admin = private.admin().await;
    for (iterations, suffix) in [(1, "one"), (4096, "default")] {
        let pg = connector(iterations);
        let account = AccountName::parse(format!("{prefix}{suffix}")).unwrap();
        let pw = password();
        let info = pg
            .provision(&request(&account, &pw, &sql(&[]), in_one_hour()))
            .await
            .unwrap();
        let verifier = stored_verifier(&mut admin, &account).await;
        assert!(
            verifier.starts_with(&format!("SCRAM-SHA-256${iterations}:")),
            "{verifier}"
        );

        let mut session = private
            .login(account.as_str(), pw.expose_secret())
            .await
            .unwrap();
        let who: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut session)
            .await
            .unwrap();
        assert_eq!(who, account.as_str());

        let psql = |password: &str| {
            std::process::Command::new("psql")
                .args(["-X", "-A", "-t", "-w", "-h", &info.host])
                .args(["-p", &info.port.to_string(), "-U", &info.username])
                .args(["-d", info.database.as_deref().unwrap()])
                .args(["-c", "SELECT current_user"])
                .env("PGPASSWORD", password)
                .output()
                .unwrap()
        };
        let out = psql(pw.expose_secret());
        assert!(
            out.status.success(),
            "psql could not log in at {iterations} iterations: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            account.as_str()
        );
        // The check is real: a wrong password is refused.
        let wrong = psql("not-the-password");
        assert!(!wrong.status.success());
        assert!(
            String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"),
            "{}",
            String::from_utf8_lossy(&wrong.stderr)
        );

        drop(session);
        pg.revoke(&account).await.unwrap();
        pg.verify_gone(&account, Some(&pw)).await.unwrap();
    }
}

#[tokio::test]
async fn list_managed_matches_the_prefix_literally() {
    let db = TestDb::new().await;
    let pg = db.connector();
    let mut admin = db.admin().await;
    let handmade = format!("{}handmade", db.prefix);
    // Would match `LIKE '<stem>_%'`, where `_` is a wildcard.
    let lookalike = format!("{}xhandmade", db.stem());
    for role in [&handmade, &lookalike] {
        run(&mut admin, &format!("CREATE ROLE \"{role}\" LOGIN")).await;
    }
    let listed = pg.list_managed().await.unwrap();
    assert_eq!(listed, vec![AccountName::parse(handmade).unwrap()]);
}

/// The SCRAM verifier PostgreSQL stores for `account`.
async fn stored_verifier(conn: &mut sqlx::PgConnection, account: &AccountName) -> String {
    sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(account.as_str())
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn valid_until(conn: &mut sqlx::PgConnection, account: &AccountName) -> i64 {
    let secs: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM rolvaliduntil)::float8 FROM pg_roles WHERE rolname = $1",
    )
    .bind(account.as_str())
    .fetch_one(conn)
    .await
    .unwrap();
    secs as i64
}

#[tokio::test]
async fn retried_provision_converges_and_renew_moves_expiry() {
    let db = TestDb::new().await;
    let pg = db.connector();
    let account = db.account("again");
    let privileges = sql(&[SELECT_ON_T]);
    let mut admin = db.admin().await;

    let first = in_one_hour();
    pg.provision(&request(&account, &password(), &privileges, first))
        .await
        .unwrap();
    assert_eq!(valid_until(&mut admin, &account).await, first.as_secs());

    let second = first.plus(Duration::from_secs(600));
    let pw = password();
    pg.provision(&request(&account, &pw, &privileges, second))
        .await
        .unwrap();
    assert_eq!(valid_until(&mut admin, &account).await, second.as_secs());
    let verifier = stored_verifier(&mut admin, &account).await;
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");

    let third = second.plus(Duration::from_secs(600));
    pg.renew(&account, third).await.unwrap();
    assert_eq!(valid_until(&mut admin, &account).await, third.as_secs());

    let e = pg.verify_gone(&account, None).await.unwrap_err();
    assert!(matches!(e, ConnectorError::StillPresent(_)), "{e}");

    pg.revoke(&account).await.unwrap();
    let e = pg.renew(&account, third).await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Failed { reason, .. } if reason.contains("does not exist")),
        "{e}"
    );
}

#[tokio::test]
async fn roles_outside_the_prefix_are_never_touched() {
    let db = TestDb::new().await;
    let pg = db.connector();
    let postgres = AccountName::parse("postgres").unwrap();
    let pw = password();
    let e = pg.revoke(&postgres).await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Failed { reason, .. } if reason.contains("managed prefix")),
        "{e}"
    );
    let e = pg
        .provision(&request(&postgres, &pw, &sql(&[]), in_one_hour()))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Failed { .. }), "{e}");
    assert!(pg.renew(&postgres, in_one_hour()).await.is_err());
    assert!(db.role_exists("postgres").await);

    for prefix in ["", "Kairos_", "k-"] {
        let mut settings = db.settings();
        settings.managed_prefix = prefix.to_owned();
        assert!(PostgresConnector::new(settings).is_err(), "{prefix:?}");
    }
    let mut settings = db.settings();
    settings.admin_url = SecretString::from("postgres://u:hunter2@[::1".to_owned());
    let e = PostgresConnector::new(settings).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");

    assert_eq!(pg.kind(), "postgres");
    let r = pg.revocability();
    assert!(r.revocable && r.kills_sessions && r.native_expiry.unwrap().contains("VALID UNTIL"));
}

#[tokio::test]
async fn two_hundred_accounts() {
    const N: usize = 200;
    const CONCURRENCY: usize = 16;
    let db = TestDb::new().await;
    let pg = Arc::new(db.connector());
    let accounts: Vec<AccountName> = (0..N).map(|i| db.account(&format!("many{i:03}"))).collect();
    let privileges = Arc::new(sql(&[SELECT_ON_T]));
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for account in accounts.clone() {
        let (pg, privileges, limit) = (pg.clone(), privileges.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let pw = password();
            pg.provision(&request(&account, &pw, &privileges, in_one_hour()))
                .await
                .map(|_| ())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let provisioned = started.elapsed();
    assert_eq!(pg.list_managed().await.unwrap(), accounts);

    let started = Instant::now();
    for account in accounts.clone() {
        let (pg, limit) = (pg.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            pg.revoke(&account)
                .await
                .map(|r| assert!(r.account_existed))
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let revoked = started.elapsed();
    assert!(pg.list_managed().await.unwrap().is_empty());

    let rate = |d: Duration| N as f64 / d.as_secs_f64();
    println!(
        "{N} accounts, concurrency {CONCURRENCY}: provisioned in {provisioned:.2?} ({:.0}/s), revoked in {revoked:.2?} ({:.0}/s)",
        rate(provisioned),
        rate(revoked)
    );
}

/// Provisions every account at once (so the worker takes them in batches), account `i`
/// with `privileges(i)`; the answers in the accounts' order.
async fn provision_all<'p>(
    pg: &Arc<PostgresConnector>,
    accounts: &[AccountName],
    passwords: &[SecretString],
    privileges: impl Fn(usize) -> &'p Arc<Privileges>,
) -> Vec<Result<kairos_connectors::ConnectionInfo, ConnectorError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (account, pw)) in accounts.iter().zip(passwords).enumerate() {
        let (pg, account, pw) = (pg.clone(), account.clone(), pw.clone());
        let privileges = Arc::clone(privileges(i));
        tasks.spawn(async move {
            let r = pg
                .provision(&request(&account, &pw, &privileges, in_one_hour()))
                .await;
            (i, r)
        });
    }
    let mut results: Vec<_> = tasks.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Concurrent provisions are created together (one transaction per batch); a batch with a
/// bad template falls back to one account at a time so only that account fails. Revoking
/// and verifying many accounts at once gives each its own answer.
#[tokio::test]
async fn batched_provision_revoke_and_verify() {
    const N: usize = 40;
    let db = TestDb::new().await;
    let pg = Arc::new(db.connector());
    let good = Arc::new(sql(&[SELECT_ON_T]));
    let bad = Arc::new(sql(&["GRANT SELEKT ON t TO {{role}}"]));
    let accounts: Vec<AccountName> = (0..N).map(|i| db.account(&format!("b{i:02}"))).collect();
    let passwords: Vec<SecretString> = (0..N).map(|_| password()).collect();
    let bad_one = 17;

    // All at once, so the worker takes them in a few batches.
    let results = provision_all(&pg, &accounts, &passwords, |i| {
        if i == bad_one { &bad } else { &good }
    })
    .await;
    let mut infos = vec![None; N];
    for (i, r) in results.into_iter().enumerate() {
        if i == bad_one {
            assert!(
                matches!(r, Err(ConnectorError::BadPrivileges(ref m)) if m.contains("#1")),
                "{r:?}"
            );
        } else {
            infos[i] = Some(r.unwrap());
        }
    }
    let mut expected: Vec<AccountName> = accounts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != bad_one)
        .map(|(_, a)| a.clone())
        .collect();
    expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(
        pg.list_managed().await.unwrap(),
        expected,
        "only the bad account is missing"
    );

    // Two accounts hold open sessions that use their privilege.
    let mut sessions = Vec::new();
    for i in [3, 29] {
        let (s, v) = login_and_read(infos[i].as_ref().unwrap(), &passwords[i]).await;
        assert_eq!(v, "one");
        sessions.push(s);
    }

    // Revoke all of them together, the never-created one included.
    let revoked = pg.revoke_many(&accounts).await;
    assert_eq!(revoked.len(), N);
    for (i, r) in revoked.iter().enumerate() {
        let r = r.as_ref().unwrap();
        let expected = Revoked {
            sessions_killed: u64::from(i == 3 || i == 29),
            account_existed: i != bad_one,
        };
        assert_eq!(*r, expected, "account #{i}");
    }
    for mut s in sessions {
        assert!(sqlx::query("SELECT 1").execute(&mut s).await.is_err());
    }
    assert!(pg.list_managed().await.unwrap().is_empty());

    // Verified together: the catalog for all, a login probe for a sample.
    let to_verify: Vec<(AccountName, Option<SecretString>)> = accounts
        .iter()
        .cloned()
        .zip(passwords.iter().cloned().map(Some))
        .collect();
    let verified = pg.verify_gone_many(&to_verify).await;
    let methods: Vec<&str> = verified
        .iter()
        .map(|v| v.as_ref().unwrap().method.as_str())
        .collect();
    let probed = methods.iter().filter(|m| **m == "pg_roles+login").count();
    assert_eq!(probed, 2, "{methods:?}");
    assert_eq!(methods.iter().filter(|m| **m == "pg_roles").count(), N - 2);
    for v in verified.iter().map(|v| v.as_ref().unwrap()) {
        assert!(
            v.evidence.contains("absent from pg_roles"),
            "{}",
            v.evidence
        );
        if v.method == "pg_roles" {
            assert!(v.evidence.contains("login probe"), "{}", v.evidence);
        }
    }

    // A role that still exists is caught, and only it.
    let survivor = db.account("survivor");
    let pw = password();
    pg.provision(&request(&survivor, &pw, &good, in_one_hour()))
        .await
        .unwrap();
    let mixed = vec![
        (accounts[0].clone(), None),
        (survivor.clone(), Some(pw.clone())),
        (accounts[1].clone(), None),
    ];
    let verified = pg.verify_gone_many(&mixed).await;
    assert!(verified[0].is_ok() && verified[2].is_ok(), "{verified:?}");
    assert!(
        matches!(&verified[1], Err(ConnectorError::StillPresent(m)) if m.contains(survivor.as_str())),
        "{:?}",
        verified[1]
    );
    pg.revoke(&survivor).await.unwrap();
}

/// A template that has run once as a prepared statement joins later batches' one message:
/// the accounts so made get their privileges (a trailing comment does not swallow the
/// next statement), and a template of two commands is still refused, alone.
#[tokio::test]
async fn proven_templates_join_the_batch_and_smuggling_still_fails() {
    const N: usize = 20;
    let db = TestDb::new().await;
    let pg = Arc::new(db.connector());
    let good = Arc::new(sql(&[
        SELECT_ON_T,
        "GRANT SELECT ON t TO {{role}} -- read t",
    ]));
    let smuggler = Arc::new(sql(&[
        SELECT_ON_T,
        "GRANT SELECT ON t TO {{role}}; DROP TABLE t",
    ]));
    let smuggling = 7;
    for round in 0..3 {
        let accounts: Vec<AccountName> = (0..N)
            .map(|i| db.account(&format!("p{round}{i:02}")))
            .collect();
        let passwords: Vec<SecretString> = (0..N).map(|_| password()).collect();
        let results = provision_all(&pg, &accounts, &passwords, |i| {
            if i == smuggling { &smuggler } else { &good }
        })
        .await;
        let mut infos = vec![None; N];
        for (i, r) in results.into_iter().enumerate() {
            if i == smuggling {
                assert!(
                    matches!(&r, Err(ConnectorError::BadPrivileges(m)) if m.contains("multiple commands")),
                    "round {round}: {r:?}"
                );
            } else {
                infos[i] = Some(r.unwrap());
            }
        }
        assert!(
            db.table_exists("t").await,
            "round {round}: the smuggled DROP ran"
        );
        assert!(!db.role_exists(accounts[smuggling].as_str()).await);
        for i in [0, N - 1] {
            let (mut s, v) = login_and_read(infos[i].as_ref().unwrap(), &passwords[i]).await;
            assert_eq!(v, "one", "round {round}, account {i}");
            assert!(
                sqlx::query("CREATE TABLE p_not_granted (x int)")
                    .execute(&mut s)
                    .await
                    .is_err(),
                "round {round}: more than the granted privilege"
            );
        }
        let made: Vec<AccountName> = accounts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != smuggling)
            .map(|(_, a)| a.clone())
            .collect();
        for r in pg.revoke_many(&made).await {
            r.unwrap();
        }
    }
}

/// REASSIGN/DROP OWNED act only in the connector's database: a role that owns something in
/// another database of the cluster cannot be dropped. The revocation says so (naming the
/// connector's database), leaves the role unable to log in, and succeeds once the object
/// is gone.
#[tokio::test]
async fn a_role_owning_objects_elsewhere_is_refused_with_the_reason() {
    let db = TestDb::new().await;
    let pg = db.connector();
    let account = db.account("elsewhere");
    let pw = password();
    pg.provision(&request(&account, &pw, &sql(&[SELECT_ON_T]), in_one_hour()))
        .await
        .unwrap();

    // Dropped by `TestDb` too, should this test fail before its end.
    let other = format!("{}_other", db.name);
    let mut server = db.admin().await;
    run(&mut server, &format!("CREATE DATABASE {other}")).await;
    let mut elsewhere = login("127.0.0.1", 5432, &other, "postgres", "")
        .await
        .unwrap();
    run(&mut elsewhere, "CREATE TABLE owned (id int)").await;
    run(
        &mut elsewhere,
        &format!("ALTER TABLE owned OWNER TO {}", account.as_str()),
    )
    .await;

    let refused = pg.revoke(&account).await.unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, ConnectorError::Failed { .. })
            && message.contains("another database")
            && message.contains(&db.name),
        "{message}"
    );
    assert!(
        db.role_exists(account.as_str()).await,
        "the role is still there"
    );
    let login_refused = login(
        "127.0.0.1",
        5432,
        &db.name,
        account.as_str(),
        pw.expose_secret(),
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&login_refused).as_deref(), Some("28000"));

    run(&mut elsewhere, "DROP TABLE owned").await;
    drop(elsewhere);
    run(&mut server, &format!("DROP DATABASE {other} WITH (FORCE)")).await;
    let revoked = pg.revoke(&account).await.unwrap();
    assert!(revoked.account_existed);
    assert!(!db.role_exists(account.as_str()).await);
}

/// An admin URL with `sslmode=verify-full` reaches the server over TLS and checks its
/// certificate: every connection the connector makes (its pool, and the login that
/// verifies an account is gone) is encrypted, and a server whose certificate another CA
/// signed is refused without the URL's password in the error.
#[tokio::test]
async fn admin_connections_use_tls_and_check_the_certificate() {
    let private = PrivatePg::start(PgAuth::AdminPassword);
    let ca = private.enable_tls();
    let tls_url = |ca: &std::path::Path| {
        SecretString::from(format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            private.admin_url().expose_secret(),
            ca.display()
        ))
    };
    let prefix = format!("kt{}_", random_hex(8));
    let settings = |admin_url| PostgresSettings {
        target: "pg-tls".to_owned(),
        admin_url,
        managed_prefix: prefix.clone(),
        connect_host: None,
        scram_iterations: kairos_connector_postgres::SCRAM_ITERATIONS,
    };
    let pg = PostgresConnector::new(settings(tls_url(&ca))).unwrap();
    let account = AccountName::parse(format!("{prefix}tls")).unwrap();
    let pw = password();
    pg.provision(&request(&account, &pw, &sql(&[]), in_one_hour()))
        .await
        .unwrap();

    // The connector's own sessions, seen by the server.
    let mut admin = private.admin().await;
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.usename = $1 AND a.pid <> pg_backend_pid() AND NOT s.ssl",
    )
    .bind(PrivatePg::ADMIN)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let encrypted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.usename = $1 AND a.pid <> pg_backend_pid() AND s.ssl",
    )
    .bind(PrivatePg::ADMIN)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!((plain, encrypted > 0), (0, true), "{encrypted} encrypted");

    pg.revoke(&account).await.unwrap();
    let verification = pg.verify_gone(&account, Some(&pw)).await.unwrap();
    assert_eq!(verification.method, "pg_roles+login");

    // Trusting another CA only: the server's certificate does not verify, and nothing is
    // done.
    let elsewhere = PrivatePg::start(PgAuth::AdminPassword);
    let other_ca = elsewhere.enable_tls();
    let impostor = PostgresConnector::new(settings(tls_url(&other_ca))).unwrap();
    let refused = impostor
        .provision(&request(&account, &pw, &sql(&[]), in_one_hour()))
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, ConnectorError::Unreachable { .. }) && message.contains("certificate"),
        "{message}"
    );
    assert!(
        !message.contains(PrivatePg::ADMIN_PASSWORD),
        "the error echoes the password: {message}"
    );
    assert!(
        !db_role_exists(&mut admin, account.as_str()).await,
        "{message}"
    );
}

async fn db_role_exists(conn: &mut sqlx::PgConnection, role: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(role)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Roles are cluster-wide: two targets on two databases of one server reach the same server,
/// a private cluster is another one, and an admin that may not read the system identifier
/// still matches one that may (by the postmaster's start time and port).
#[tokio::test]
async fn server_identity_tells_servers_apart() {
    let (one, two) = tokio::join!(TestDb::new(), TestDb::new());
    let a = one.connector().server_facts().await.unwrap();
    let b = two.connector().server_facts().await.unwrap();
    assert!(
        a.identity.same_server(&b.identity),
        "{} / {}",
        a.identity,
        b.identity
    );
    assert!(
        a.identity.to_string().contains("system_identifier"),
        "{}",
        a.identity
    );
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);

    let private = PrivatePg::start(PgAuth::AdminPassword);
    let mut admin = private.admin().await;
    run(
        &mut admin,
        "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC",
    )
    .await;
    run(
        &mut admin,
        "CREATE ROLE lowly LOGIN PASSWORD 'lowly-pw-5e0a'",
    )
    .await;
    let full = PostgresConnector::new(PostgresSettings::new("pg-private", private.admin_url()))
        .unwrap()
        .server_facts()
        .await
        .unwrap();
    let lowly = PostgresConnector::new(PostgresSettings::new(
        "pg-private-lowly",
        SecretString::from(format!(
            "postgres://lowly:lowly-pw-5e0a@127.0.0.1:{}/postgres",
            private.port
        )),
    ))
    .unwrap()
    .server_facts()
    .await
    .unwrap();
    assert!(
        !lowly.identity.to_string().contains("system_identifier"),
        "{}",
        lowly.identity
    );
    assert!(
        full.identity.same_server(&lowly.identity),
        "{} / {}",
        full.identity,
        lowly.identity
    );
    assert!(
        !full.identity.same_server(&a.identity),
        "{} / {}",
        full.identity,
        a.identity
    );
    assert!(!lowly.identity.same_server(&a.identity));
}

/// `list_sessions` lists the live sessions of managed roles with their client addresses,
/// and nothing of other roles.
#[tokio::test]
async fn sessions_of_managed_roles_are_listed_with_their_addresses() {
    let db = TestDb::new().await;
    let pg = db.connector();
    assert!(pg.list_sessions().await.unwrap().is_empty());
    let account = db.account("sess");
    let pw = password();
    let privileges = sql(&[SELECT_ON_T]);
    let info = pg
        .provision(&request(&account, &pw, &privileges, in_one_hour()))
        .await
        .unwrap();
    let (first, _) = login_and_read(&info, &pw).await;
    let (second, _) = login_and_read(&info, &pw).await;
    let sessions = pg.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for s in &sessions {
        assert_eq!(s.account, account);
        assert_eq!(
            s.client_addr,
            Some(std::net::IpAddr::from([127, 0, 0, 1])),
            "{s:?}"
        );
    }
    drop(first);
    drop(second);
    pg.revoke(&account).await.unwrap();
    assert!(pg.list_sessions().await.unwrap().is_empty());
}

/// Roles that are only members of a group role are dropped by `DROP ROLE` alone; a batch
/// that also holds a role with a privilege of its own and one that owns a table is refused
/// that shortcut by PostgreSQL and goes the whole way: the privilege goes, the table is
/// reassigned to the admin. Either way every role is gone, its open session killed, and
/// the group role and the other members untouched.
#[tokio::test]
async fn group_members_drop_alone_and_a_batch_with_owners_still_reassigns() {
    let db = TestDb::new().await;
    let pg = Arc::new(db.connector());
    let mut admin = db.admin().await;
    // Outside the managed prefix (so Kairos never drops it), inside the cleanup's stem.
    let group = format!("{}grp", db.stem());
    run(&mut admin, &format!("CREATE ROLE {group} NOLOGIN")).await;
    run(&mut admin, &format!("GRANT SELECT ON t TO {group}")).await;
    let member_of = format!("GRANT {group} TO {{{{role}}}}");
    let membership = Arc::new(sql(&[&member_of]));
    let privilege = Arc::new(sql(&[SELECT_ON_T]));

    let provision = |name: &str, privileges: &Privileges| {
        let (account, pw) = (db.account(name), password());
        let pg = Arc::clone(&pg);
        let privileges = privileges.clone();
        async move {
            let info = pg
                .provision(&request(&account, &pw, &privileges, in_one_hour()))
                .await
                .unwrap();
            (account, pw, info)
        }
    };

    // 1. Members only: one of them holds a session reading through the group's privilege.
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(provision(&format!("m{i}"), &membership).await);
    }
    let bystander = provision("bystander", &membership).await;
    let (mut session, v) = login_and_read(&members[2].2, &members[2].1).await;
    assert_eq!(v, "one");
    let names: Vec<AccountName> = members.iter().map(|(a, _, _)| a.clone()).collect();
    let revoked = pg.revoke_many(&names).await;
    for (i, r) in revoked.into_iter().enumerate() {
        let expected = Revoked {
            sessions_killed: u64::from(i == 2),
            account_existed: true,
        };
        assert_eq!(r.unwrap(), expected, "member #{i}");
        assert!(!db.role_exists(names[i].as_str()).await, "member #{i}");
    }
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_err());
    assert!(db.role_exists(&group).await, "the group role stays");
    let (_, v) = login_and_read(&bystander.2, &bystander.1).await;
    assert_eq!(v, "one", "another member keeps the group's privilege");

    // 2. Members beside a role with a privilege of its own and a role owning a table.
    let mixed = [
        provision("x0", &membership).await,
        provision("x1", &privilege).await,
        provision("x2", &membership).await,
        provision("x3", &membership).await,
    ];
    run(&mut admin, "CREATE TABLE owned_by_x3 (id int)").await;
    run(
        &mut admin,
        &format!("ALTER TABLE owned_by_x3 OWNER TO {}", mixed[3].0.as_str()),
    )
    .await;
    let names: Vec<AccountName> = mixed.iter().map(|(a, _, _)| a.clone()).collect();
    for (i, r) in pg.revoke_many(&names).await.into_iter().enumerate() {
        assert!(r.unwrap().account_existed, "mixed #{i}");
        assert!(!db.role_exists(names[i].as_str()).await, "mixed #{i}");
    }
    let owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE tablename = 'owned_by_x3'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(owner, "postgres", "the table went to the admin");
    assert!(db.role_exists(&group).await);
    pg.revoke(&bystander.0).await.unwrap();
}
