//! The Redis connector against real Redis servers: the shared one on 127.0.0.1:6379 and
//! private `redis-server` children for faults.

// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kairos_connector_redis::{
    NO_NATIVE_EXPIRY, RedisConnector, VERIFY_METHOD, VERIFY_METHOD_ACL_ONLY,
};
use kairos_connectors::{Connector, ConnectorError, Privileges, Revoked};
use kairos_domain::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use support::*;

#[tokio::test]
async fn issue_use_revoke_verify() {
    let prefix = unique_prefix();
    let _cleanup = PrefixCleanup::new(SHARED_URL, &prefix);
    let redis = connector(SHARED_URL, &prefix);
    let acct = account(&prefix, "lifecycle");
    let pw = password();

    // A first provision with broader rules, then the real one: the retry converges.
    let broad = acl(&["allkeys", "+@all"]);
    redis.provision(&request(&acct, &pw, &broad)).await.unwrap();
    let rules = acl(&["~sessions:*", "+get", "+set"]);
    let info = redis.provision(&request(&acct, &pw, &rules)).await.unwrap();
    assert_eq!(info.host, "127.0.0.1");
    assert_eq!(info.port, 6379);
    assert_eq!(info.database, None);
    assert_eq!(info.username, acct.as_str());
    assert_eq!(redis.list_managed().await.unwrap(), vec![acct.clone()]);

    // The workload's session.
    let mut session = login(SHARED_URL, acct.as_str(), pw.expose_secret())
        .await
        .unwrap();
    let got: Option<String> = redis::cmd("GET")
        .arg("sessions:1")
        .query_async(&mut session)
        .await
        .unwrap();
    assert_eq!(got, None);
    let other = redis::cmd("GET")
        .arg("other:1")
        .query_async::<Option<String>>(&mut session)
        .await
        .unwrap_err();
    assert_eq!(other.code(), Some("NOPERM"), "{other}");
    let del = redis::cmd("DEL")
        .arg("sessions:1")
        .query_async::<u64>(&mut session)
        .await
        .unwrap_err();
    assert_eq!(del.code(), Some("NOPERM"), "{del}");

    // Still there: verification must say so.
    let present = redis.verify_gone(&acct, Some(&pw)).await.unwrap_err();
    assert_eq!(variant(&present), "StillPresent", "{present}");

    let revoked = redis.revoke(&acct).await.unwrap();
    assert_eq!(
        revoked,
        Revoked {
            sessions_killed: 1,
            account_existed: true
        }
    );

    // The open session is closed.
    let after = redis::cmd("GET")
        .arg("sessions:1")
        .query_async::<Option<String>>(&mut session)
        .await;
    assert!(
        after.is_err(),
        "the killed session still answers: {after:?}"
    );
    // A new login is refused.
    let relogin = login(SHARED_URL, acct.as_str(), pw.expose_secret())
        .await
        .unwrap_err();
    assert_eq!(relogin.code(), Some("WRONGPASS"), "{relogin}");

    let verification = redis.verify_gone(&acct, Some(&pw)).await.unwrap();
    assert_eq!(verification.method, VERIFY_METHOD);
    assert!(verification.evidence.contains("WRONGPASS"));
    assert!(!verification.evidence.contains(pw.expose_secret()));
    let acl_only = redis.verify_gone(&acct, None).await.unwrap();
    assert_eq!(acl_only.method, VERIFY_METHOD_ACL_ONLY);

    assert!(redis.list_managed().await.unwrap().is_empty());
    assert!(users_with_prefix(SHARED_URL, &prefix).is_empty());
    assert_eq!(
        redis.revoke(&acct).await.unwrap(),
        Revoked {
            sessions_killed: 0,
            account_existed: false
        }
    );
}

#[tokio::test]
async fn password_never_travels_in_clear() {
    let prefix = unique_prefix();
    let _cleanup = PrefixCleanup::new(SHARED_URL, &prefix);
    let redis = connector(SHARED_URL, &prefix);
    let acct = account(&prefix, "hashed");
    let pw = password();
    redis
        .provision(&request(&acct, &pw, &acl(&["+ping"])))
        .await
        .unwrap();
    let user: redis::Value = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(acct.as_str())
        .query(&mut admin(SHARED_URL))
        .unwrap();
    let shown = format!("{user:?}");
    assert!(!shown.contains(pw.expose_secret()));
    // Redis stores the SHA-256 we sent: the login works with the plaintext.
    login(SHARED_URL, acct.as_str(), pw.expose_secret())
        .await
        .unwrap();
    redis.revoke(&acct).await.unwrap();
}

/// `rules` must be refused before anything reaches Redis, naming `named`.
async fn check_refused(redis: &RedisConnector, prefix: &str, privileges: Privileges, named: &str) {
    let acct = account(prefix, "refused");
    let pw = password();
    let err = redis
        .provision(&request(&acct, &pw, &privileges))
        .await
        .unwrap_err();
    assert_eq!(variant(&err), "BadPrivileges", "{privileges:?}: {err}");
    assert!(
        err.to_string().contains(named),
        "{privileges:?}: {err} does not name {named:?}"
    );
    assert!(
        users_with_prefix(SHARED_URL, prefix).is_empty(),
        "{privileges:?} left a user behind"
    );
}

#[tokio::test]
async fn bad_rules_are_refused_and_create_nothing() {
    let prefix = unique_prefix();
    let _cleanup = PrefixCleanup::new(SHARED_URL, &prefix);
    let redis = connector(SHARED_URL, &prefix);
    let before = acl_users(SHARED_URL);

    check_refused(&redis, &prefix, acl(&["nopass"]), "nopass").await;
    check_refused(&redis, &prefix, acl(&["~x", ">secret"]), ">secret").await;
    check_refused(&redis, &prefix, acl(&["<secret"]), "<secret").await;
    check_refused(&redis, &prefix, acl(&["on"]), "\"on\"").await;
    check_refused(&redis, &prefix, acl(&["OFF"]), "OFF").await;
    check_refused(&redis, &prefix, acl(&["+get nopass"]), "+get nopass").await;
    check_refused(&redis, &prefix, acl(&["+get\tnopass"]), "+get\\tnopass").await;
    check_refused(
        &redis,
        &prefix,
        acl(&["allkeys\r\nFLUSHALL"]),
        "allkeys\\r\\nFLUSHALL",
    )
    .await;
    check_refused(&redis, &prefix, acl(&["reset"]), "reset").await;
    check_refused(&redis, &prefix, acl(&["resetpass"]), "resetpass").await;
    check_refused(
        &redis,
        &prefix,
        acl(&["(~x +get)"]),
        "(~x +get)\" is a selector",
    )
    .await;
    check_refused(&redis, &prefix, acl(&["(~x", "+get)"]), "(~x").await;
    check_refused(
        &redis,
        &prefix,
        acl(&["#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"]),
        "#5e88",
    )
    .await;
    check_refused(&redis, &prefix, acl(&["!5e88"]), "!5e88").await;
    check_refused(&redis, &prefix, acl(&["clearselectors"]), "clearselectors").await;
    check_refused(&redis, &prefix, acl(&[""]), "\"\"").await;
    check_refused(&redis, &prefix, acl(&["~"]), "\"~\"").await;
    check_refused(&redis, &prefix, acl(&["%X~k"]), "%X~k").await;
    check_refused(&redis, &prefix, acl(&["+"]), "\"+\"").await;
    check_refused(&redis, &prefix, acl(&["+get|"]), "+get|").await;
    check_refused(&redis, &prefix, acl(&["~café"]), "~café").await;
    check_refused(&redis, &prefix, acl(&["flushall"]), "flushall").await;
    // Well formed, but Redis does not know the command: refused by the server, atomically.
    check_refused(
        &redis,
        &prefix,
        acl(&["+get", "+nosuchcommand"]),
        "+nosuchcommand",
    )
    .await;
    check_refused(
        &redis,
        &prefix,
        Privileges::Sql(vec!["GRANT SELECT ON t TO {{role}}".into()]),
        "SQL",
    )
    .await;

    assert_eq!(acl_users(SHARED_URL).len(), before.len());
}

#[tokio::test]
async fn every_accepted_rule_form_is_accepted_by_redis() {
    let prefix = unique_prefix();
    let _cleanup = PrefixCleanup::new(SHARED_URL, &prefix);
    let redis = connector(SHARED_URL, &prefix);
    let acct = account(&prefix, "forms");
    let pw = password();
    let all = acl(&[
        "~sessions:*",
        "%R~read:*",
        "%W~write:*",
        "%RW~both:*",
        "&news.*",
        "+get",
        "-set",
        "+client|id",
        "-client|kill",
        "+@read",
        "-@dangerous",
        "allkeys",
        "AllChannels",
        "allcommands",
        "nocommands",
        "resetkeys",
        "resetchannels",
        "+GET",
    ]);
    redis.provision(&request(&acct, &pw, &all)).await.unwrap();
    // An empty rule list is a user that can only authenticate.
    redis
        .provision(&request(&acct, &pw, &acl(&[])))
        .await
        .unwrap();
    redis.revoke(&acct).await.unwrap();
}

#[tokio::test]
async fn only_managed_accounts_are_touched() {
    let prefix = unique_prefix();
    let _cleanup = PrefixCleanup::new(SHARED_URL, &prefix);
    let redis = connector(SHARED_URL, &prefix);
    let pw = password();
    let outsider = account(&unique_prefix(), "x");
    let default = kairos_connectors::AccountName::parse("default").unwrap();
    for name in [&outsider, &default] {
        let err = redis
            .provision(&request(name, &pw, &acl(&["+get"])))
            .await
            .unwrap_err();
        assert_eq!(variant(&err), "Failed", "{err}");
        let err = redis.revoke(name).await.unwrap_err();
        assert_eq!(variant(&err), "Failed", "{err}");
    }
    assert!(acl_users(SHARED_URL).contains(&"default".to_owned()));
}

#[tokio::test]
async fn list_managed_finds_hand_made_users_with_the_prefix_only() {
    let prefix = unique_prefix();
    let _cleanup = PrefixCleanup::new(SHARED_URL, &prefix);
    let redis = connector(SHARED_URL, &prefix);
    let mut conn = admin(SHARED_URL);
    let handmade = format!("{prefix}handmade");
    // Same letters without the trailing underscore: not ours.
    let lookalike = format!("{}handmade", prefix.trim_end_matches('_'));
    for user in [&handmade, &lookalike] {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg("on")
            .arg(">x")
            .query::<()>(&mut conn)
            .unwrap();
    }
    let listed = redis.list_managed().await;
    let _: u64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&lookalike)
        .query(&mut conn)
        .unwrap();
    let listed = listed.unwrap();
    assert_eq!(listed, vec![account(&prefix, "handmade")]);

    // The reconciler can remove it like any other.
    let revoked = redis.revoke(&listed[0]).await.unwrap();
    assert!(revoked.account_existed);
    assert!(redis.list_managed().await.unwrap().is_empty());
}

#[tokio::test]
async fn wrong_admin_credentials_are_admin_refused_without_the_password() {
    let server = PrivateRedis::start(&["--requirepass", "s3cret-admin-pw"]);
    let prefix = unique_prefix();
    let acct = account(&prefix, "x");
    let pw = password();
    let rules = acl(&["+get"]);
    let port = server.port;
    for url in [
        format!("redis://127.0.0.1:{port}"),
        format!("redis://:wrong-pw-0123@127.0.0.1:{port}"),
        format!("redis://kairos_admin:wrong-pw-0123@127.0.0.1:{port}"),
    ] {
        let redis = connector(&url, &prefix);
        assert!(!format!("{redis:?}").contains("wrong-pw-0123"));
        let errors = [
            redis.provision(&request(&acct, &pw, &rules)).await.err(),
            redis.revoke(&acct).await.err(),
            redis.verify_gone(&acct, Some(&pw)).await.err(),
            redis.list_managed().await.err(),
        ];
        for err in errors {
            let err = err.expect("the operation must fail");
            assert_eq!(variant(&err), "AdminRefused", "{url}: {err}");
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains("wrong-pw-0123"), "{shown}");
                assert!(!shown.contains("s3cret-admin-pw"), "{shown}");
                assert!(!shown.contains(pw.expose_secret()), "{shown}");
            }
        }
    }

    // With the right password everything works, and the account's login is real.
    let redis = connector(
        &format!("redis://:s3cret-admin-pw@127.0.0.1:{port}"),
        &prefix,
    );
    redis.provision(&request(&acct, &pw, &rules)).await.unwrap();
    login(&server.url(), acct.as_str(), pw.expose_secret())
        .await
        .unwrap();
    assert!(redis.revoke(&acct).await.unwrap().account_existed);
    redis.verify_gone(&acct, Some(&pw)).await.unwrap();
}

#[tokio::test]
async fn a_down_target_is_unreachable_quickly() {
    let url = format!("redis://:admin-pw-x@127.0.0.1:{}", free_port());
    let prefix = unique_prefix();
    let redis = connector(&url, &prefix);
    let acct = account(&prefix, "x");
    let pw = password();
    let rules = acl(&["+get"]);
    let started = Instant::now();
    let errors = [
        redis.provision(&request(&acct, &pw, &rules)).await.err(),
        redis.revoke(&acct).await.err(),
        redis.verify_gone(&acct, Some(&pw)).await.err(),
        redis.list_managed().await.err(),
        redis.server_facts().await.err(),
    ];
    for err in errors {
        let err = err.expect("the operation must fail");
        assert_eq!(variant(&err), "Unreachable", "{err}");
        assert!(!err.to_string().contains("admin-pw-x"), "{err}");
    }
    // Renewal has nothing to do, reachable or not.
    redis
        .renew(&acct, Timestamp::from_millis(4_102_444_800_000))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_frozen_then_dead_target_is_unreachable_and_recovers() {
    let mut server = PrivateRedis::start(&[]);
    let prefix = unique_prefix();
    let mut settings = settings(&server.url(), &prefix);
    settings.timeout = Duration::from_millis(500);
    settings.connect_host = Some("redis.example.internal".into());
    let redis = RedisConnector::new(settings).unwrap();
    let acct = account(&prefix, "frozen");
    let pw = password();
    let info = redis
        .provision(&request(&acct, &pw, &acl(&["~k:*", "+get"])))
        .await
        .unwrap();
    assert_eq!(info.host, "redis.example.internal");
    assert_eq!(info.port, server.port);
    let _session = login(&server.url(), acct.as_str(), pw.expose_secret())
        .await
        .unwrap();

    server.signal("-STOP");
    let started = Instant::now();
    let err = redis.revoke(&acct).await.unwrap_err();
    assert_eq!(variant(&err), "Unreachable", "{err}");
    let err = redis.verify_gone(&acct, Some(&pw)).await.unwrap_err();
    assert_eq!(variant(&err), "Unreachable", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    server.signal("-CONT");

    let revoked = redis.revoke(&acct).await.unwrap();
    assert_eq!(
        revoked,
        Revoked {
            sessions_killed: 1,
            account_existed: true
        }
    );
    redis.verify_gone(&acct, Some(&pw)).await.unwrap();

    // Dead: the shared connection is lost, and so is every new one.
    let other = account(&prefix, "other");
    redis
        .provision(&request(&other, &pw, &acl(&["+get"])))
        .await
        .unwrap();
    server.kill();
    let started = Instant::now();
    let err = redis.revoke(&other).await.unwrap_err();
    assert_eq!(variant(&err), "Unreachable", "{err}");
    let err = redis.revoke(&other).await.unwrap_err();
    assert_eq!(variant(&err), "Unreachable", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn removals_are_saved_to_the_acl_file() {
    let dir = tempfile::tempdir().unwrap();
    let aclfile = dir.path().join("users.acl");
    std::fs::write(&aclfile, "").unwrap();
    let aclfile_arg = aclfile.to_str().unwrap();
    let mut server = PrivateRedis::start(&["--aclfile", aclfile_arg]);
    let prefix = unique_prefix();
    let redis = connector(&server.url(), &prefix);
    let acct = account(&prefix, "durable");
    let pw = password();
    redis
        .provision(&request(&acct, &pw, &acl(&["+get"])))
        .await
        .unwrap();
    // Someone (an operator, another tool) saves the ACLs while the account exists.
    redis::cmd("ACL")
        .arg("SAVE")
        .query::<()>(&mut admin(&server.url()))
        .unwrap();
    assert!(
        std::fs::read_to_string(&aclfile)
            .unwrap()
            .contains(acct.as_str())
    );

    assert!(redis.revoke(&acct).await.unwrap().account_existed);
    assert!(
        !std::fs::read_to_string(&aclfile)
            .unwrap()
            .contains(acct.as_str())
    );

    // A restart from the file does not bring the account back.
    server.kill();
    let restarted = PrivateRedis::start(&["--aclfile", aclfile_arg]);
    let redis = connector(&restarted.url(), &prefix);
    redis.verify_gone(&acct, Some(&pw)).await.unwrap();
    assert!(redis.list_managed().await.unwrap().is_empty());
}

#[tokio::test]
async fn revocability_says_there_is_no_native_expiry() {
    let redis = connector(SHARED_URL, &unique_prefix());
    let r = redis.revocability();
    assert!(r.revocable && r.kills_sessions);
    assert_eq!(r.native_expiry, None);
    assert!(NO_NATIVE_EXPIRY.contains("no native expiry"));
    assert_eq!(redis.kind(), "redis");
}

#[tokio::test]
async fn bad_settings_are_refused_without_echoing_the_url() {
    for (url, prefix) in [
        ("http://:pw-in-url-1@127.0.0.1:6379", "kairos_"),
        ("not a url pw-in-url-1", "kairos_"),
        ("redis+unix:///tmp/redis.sock?pass=pw-in-url-1", "kairos_"),
        (SHARED_URL, ""),
        (SHARED_URL, "Kairos-"),
    ] {
        let err = RedisConnector::new(settings(url, prefix)).unwrap_err();
        assert_eq!(variant(&err), "Failed", "{err}");
        assert!(!err.to_string().contains("pw-in-url-1"), "{err}");
    }
    let settings = settings("redis://:pw-in-url-1@127.0.0.1:6379", "kairos_");
    assert!(!format!("{settings:?}").contains("pw-in-url-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_accounts() {
    const N: usize = 500;
    let prefix = unique_prefix();
    let _cleanup = PrefixCleanup::new(SHARED_URL, &prefix);
    let redis = Arc::new(connector(SHARED_URL, &prefix));
    let accounts: Vec<_> = (0..N)
        .map(|i| (account(&prefix, &format!("c{i:04}")), password()))
        .collect();
    let accounts = Arc::new(accounts);

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (redis, accounts) = (redis.clone(), accounts.clone());
        tasks.spawn(async move {
            let (acct, pw) = &accounts[i];
            let rules = acl(&["~sessions:*", "+get", "+set"]);
            redis.provision(&request(acct, pw, &rules)).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let provisioned = started.elapsed();
    assert_eq!(redis.list_managed().await.unwrap().len(), N);

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (redis, accounts) = (redis.clone(), accounts.clone());
        tasks.spawn(async move {
            let (acct, pw) = &accounts[i];
            let revoked = redis.revoke(acct).await?;
            redis.verify_gone(acct, Some(pw)).await?;
            Ok::<_, ConnectorError>(revoked)
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(result.unwrap().unwrap().account_existed);
    }
    let revoked = started.elapsed();
    assert!(redis.list_managed().await.unwrap().is_empty());
    println!(
        "{N} accounts: provisioned in {provisioned:?} ({:.0}/s), revoked + verified in {revoked:?} ({:.0}/s)",
        N as f64 / provisioned.as_secs_f64(),
        N as f64 / revoked.as_secs_f64(),
    );
}

#[tokio::test]
async fn secrets_stay_out_of_debug() {
    let s = SecretString::from("redis://:dbg-pw-77@127.0.0.1:6379".to_owned());
    let redis = RedisConnector::new(kairos_connector_redis::RedisSettings::new("t", s)).unwrap();
    assert!(!format!("{redis:?}").contains("dbg-pw-77"));
}

/// ACL users are server-wide: two targets on one Redis reach the same server (by run_id,
/// whatever address they use), a private Redis is another one, and an admin that may not
/// run INFO is known by its address.
#[tokio::test]
async fn server_identity_tells_servers_apart() {
    let a = connector(SHARED_URL, &unique_prefix())
        .server_facts()
        .await
        .unwrap();
    let b = connector("redis://localhost:6379", &unique_prefix())
        .server_facts()
        .await
        .unwrap();
    assert!(
        a.identity.same_server(&b.identity),
        "{} / {}",
        a.identity,
        b.identity
    );
    assert!(a.identity.to_string().contains("run_id"), "{}", a.identity);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);

    let private = PrivateRedis::start(&[]);
    let other = connector(&private.url(), &unique_prefix())
        .server_facts()
        .await
        .unwrap();
    assert!(
        !other.identity.same_server(&a.identity),
        "{} / {}",
        other.identity,
        a.identity
    );

    // An admin without INFO: the address alone, which still matches the same address.
    let mut admin = admin(&private.url());
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("noinfo")
        .arg("on")
        .arg(">noinfo-pw")
        .arg("+@all")
        .arg("-info")
        .arg("~*")
        .exec(&mut admin)
        .unwrap();
    let noinfo_url = private
        .url()
        .replacen("redis://", "redis://noinfo:noinfo-pw@", 1);
    let limited = connector(&noinfo_url, &unique_prefix())
        .server_facts()
        .await
        .unwrap();
    assert!(
        !limited.identity.to_string().contains("run_id"),
        "{}",
        limited.identity
    );
    assert!(
        limited.identity.same_server(&other.identity),
        "{} / {}",
        limited.identity,
        other.identity
    );
}

/// `list_sessions` lists the live sessions of managed users (`CLIENT LIST`) with their
/// client addresses, and nothing of other users.
#[tokio::test]
async fn sessions_of_managed_users_are_listed_with_their_addresses() {
    let prefix = unique_prefix();
    let _cleanup = PrefixCleanup::new(SHARED_URL, &prefix);
    let redis = connector(SHARED_URL, &prefix);
    assert!(redis.list_sessions().await.unwrap().is_empty());
    let acct = account(&prefix, "sess");
    let pw = password();
    redis
        .provision(&request(&acct, &pw, &acl(&["~sessions:*", "+get"])))
        .await
        .unwrap();
    let session = login(SHARED_URL, acct.as_str(), pw.expose_secret())
        .await
        .unwrap();
    let sessions = redis.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].account, acct);
    assert_eq!(
        sessions[0].client_addr,
        Some(std::net::IpAddr::from([127, 0, 0, 1])),
        "{sessions:?}"
    );
    drop(session);
    redis.revoke(&acct).await.unwrap();
    assert!(redis.list_sessions().await.unwrap().is_empty());
}
