//! Admin connections over TLS (`rediss://…?ssl-ca=FILE`) against a private `redis-server`
//! that speaks only TLS, with a test CA made by openssl.

// PANIC SAFETY: test helpers outside `#[test]` functions; a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use kairos_connector_redis::{RedisConnector, VERIFY_METHOD};
use kairos_connectors::{Connector, Revoked};
use kairos_testkit::Certificates;
use secrecy::ExposeSecret;
use support::*;

fn tls_url(port: u16, ca: &Path) -> String {
    format!("rediss://127.0.0.1:{port}/?ssl-ca={}", ca.display())
}

/// A workload's login over TLS, trusting `ca`.
async fn tls_login(
    port: u16,
    ca: &Path,
    user: &str,
    password: &str,
) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(ca).unwrap()),
        },
    )?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("AUTH")
        .arg(user)
        .arg(password)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(conn)
}

#[tokio::test]
async fn tls_admin_connections_issue_revoke_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::make(dir.path());
    let server = PrivateRedis::start_tls(&certs);
    let prefix = unique_prefix();
    let redis = connector(&tls_url(server.port, &certs.ca), &prefix);
    let acct = account(&prefix, "tls");
    let pw = password();

    let rules = acl(&["~sessions:*", "+get"]);
    let info = redis.provision(&request(&acct, &pw, &rules)).await.unwrap();
    assert_eq!((info.host.as_str(), info.port), ("127.0.0.1", server.port));
    assert_eq!(redis.list_managed().await.unwrap(), vec![acct.clone()]);
    let mut session = tls_login(server.port, &certs.ca, acct.as_str(), pw.expose_secret())
        .await
        .unwrap();
    let got: Option<String> = redis::cmd("GET")
        .arg("sessions:1")
        .query_async(&mut session)
        .await
        .unwrap();
    assert_eq!(got, None);

    let revoked = redis.revoke(&acct).await.unwrap();
    assert_eq!(
        revoked,
        Revoked {
            sessions_killed: 1,
            account_existed: true
        }
    );
    // The login check of verify_gone runs over TLS too: it reaches AUTH and is refused.
    let verification = redis.verify_gone(&acct, Some(&pw)).await.unwrap();
    assert_eq!(verification.method, VERIFY_METHOD);
    assert!(
        verification.evidence.contains("WRONGPASS"),
        "{verification:?}"
    );
    assert!(redis.list_managed().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::make(dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let other = Certificates::make(other_dir.path());
    let server = PrivateRedis::start_tls(&certs);
    let prefix = unique_prefix();
    let trusted = connector(&tls_url(server.port, &certs.ca), &prefix);
    let acct = account(&prefix, "wrongca");
    let pw = password();
    let rules = acl(&["~sessions:*", "+get"]);

    // The wrong CA file, and none at all (the test CA is no public root).
    for url in [
        tls_url(server.port, &other.ca),
        format!("rediss://127.0.0.1:{}", server.port),
    ] {
        let redis = connector(&url, &prefix);
        let err = redis
            .provision(&request(&acct, &pw, &rules))
            .await
            .unwrap_err();
        assert_eq!(variant(&err), "Unreachable", "{url}: {err}");
        let shown = err.to_string();
        assert!(
            shown.contains("connect: invalid peer certificate: ")
                && shown.contains("does not verify against the CA file in the admin URL's ssl-ca"),
            "{url}: {shown}"
        );
        assert!(!shown.contains(pw.expose_secret()));
        let err = redis.verify_gone(&acct, Some(&pw)).await.unwrap_err();
        assert_eq!(variant(&err), "Unreachable", "{url}: {err}");
    }
    assert!(trusted.list_managed().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_tls_settings_are_refused_naming_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::make(dir.path());
    let no_cert = dir.path().join("empty.pem");
    std::fs::write(&no_cert, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let ca = certs.ca.display().to_string();
    for (url, expected) in [
        (
            format!("redis://:pw-in-url-1@127.0.0.1:6379/?ssl-ca={ca}"),
            "names a CA file (ssl-ca) but is redis://: write rediss://".to_owned(),
        ),
        (
            "rediss://:pw-in-url-1@127.0.0.1:6380/#insecure".to_owned(),
            "turns certificate checks off (#insecure)".to_owned(),
        ),
        (
            format!(
                "rediss://:pw-in-url-1@127.0.0.1:6380/?ssl-ca={}",
                missing.display()
            ),
            format!(
                "cannot read the CA file {} (ssl-ca in the admin URL)",
                missing.display()
            ),
        ),
        (
            format!(
                "rediss://:pw-in-url-1@127.0.0.1:6380/?ssl-ca={}",
                no_cert.display()
            ),
            format!(
                "the CA file {} (ssl-ca in the admin URL) holds no PEM certificate",
                no_cert.display()
            ),
        ),
    ] {
        let err = RedisConnector::new(settings(&url, "kairos_")).unwrap_err();
        assert_eq!(variant(&err), "Failed", "{err}");
        let shown = err.to_string();
        assert!(shown.contains(&expected), "{shown}\nexpected: {expected}");
        assert!(!shown.contains("pw-in-url-1"), "{shown}");
    }
}
