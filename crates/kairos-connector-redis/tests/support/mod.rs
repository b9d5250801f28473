//! Real Redis for the tests: the shared server on 127.0.0.1:6379 (no auth) and private
//! `redis-server` children on free ports.

// PANIC SAFETY: test helpers; a panic is a failed test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kairos_connector_redis::{RedisConnector, RedisSettings};
use kairos_connectors::{AccountName, AccountRequest, ConnectorError, Privileges};
use kairos_domain::Timestamp;
use secrecy::SecretString;

pub const SHARED_URL: &str = "redis://127.0.0.1:6379";

/// A prefix of our own (`kt<8 hex>_`): ACL users are server-global and tests run in
/// parallel.
pub fn unique_prefix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("kt{}_", &id[..8])
}

pub fn settings(url: &str, prefix: &str) -> RedisSettings {
    let mut settings = RedisSettings::new("test-redis", SecretString::from(url.to_owned()));
    settings.managed_prefix = prefix.to_owned();
    settings
}

pub fn connector(url: &str, prefix: &str) -> RedisConnector {
    RedisConnector::new(settings(url, prefix)).unwrap()
}

pub fn account(prefix: &str, suffix: &str) -> AccountName {
    AccountName::parse(format!("{prefix}{suffix}")).unwrap()
}

pub fn password() -> SecretString {
    SecretString::from(uuid::Uuid::new_v4().simple().to_string())
}

pub fn acl(rules: &[&str]) -> Privileges {
    Privileges::RedisAcl(rules.iter().map(|r| (*r).to_owned()).collect())
}

pub fn request<'a>(
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

/// Which variant an error is, for assertions.
pub fn variant(e: &ConnectorError) -> &'static str {
    match e {
        ConnectorError::Unreachable { .. } => "Unreachable",
        ConnectorError::AdminRefused { .. } => "AdminRefused",
        ConnectorError::BadPrivileges(_) => "BadPrivileges",
        ConnectorError::Failed { .. } => "Failed",
        ConnectorError::StillPresent(_) => "StillPresent",
    }
}

/// A plain synchronous admin connection, for arranging and inspecting behind the
/// connector's back.
pub fn admin(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

pub fn acl_users(url: &str) -> Vec<String> {
    redis::cmd("ACL")
        .arg("USERS")
        .query(&mut admin(url))
        .unwrap()
}

pub fn users_with_prefix(url: &str, prefix: &str) -> Vec<String> {
    acl_users(url)
        .into_iter()
        .filter(|u| u.starts_with(prefix))
        .collect()
}

/// Deletes every ACL user starting with the prefix when dropped (even after a failed
/// assertion), so the shared server is left as it was found.
pub struct PrefixCleanup {
    pub url: String,
    pub prefix: String,
}

impl PrefixCleanup {
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for PrefixCleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let users: Vec<String> = redis::cmd("ACL")
            .arg("USERS")
            .query(&mut conn)
            .unwrap_or_default();
        for user in users.iter().filter(|u| u.starts_with(&self.prefix)) {
            let _: Result<u64, _> = redis::cmd("ACL").arg("DELUSER").arg(user).query(&mut conn);
        }
    }
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `redis-server` child, killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Child,
}

impl PrivateRedis {
    pub fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let port_arg = port.to_string();
        Self::spawn(port, &["--port", &port_arg], extra)
    }

    /// TLS only (no plain port), with the server certificate of `certs`; clients show no
    /// certificate.
    pub fn start_tls(certs: &kairos_testkit::Certificates) -> Self {
        let port = free_port();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let (cert, key, ca) = (path(&certs.cert), path(&certs.key), path(&certs.ca));
        Self::spawn(
            port,
            &[
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
            ],
            &[],
        )
    }

    fn spawn(port: u16, ports: &[&str], extra: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the connector tests");
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process.
        self.kill();
    }
}

/// A fresh connection with no credentials, then `AUTH user password`: the workload's view.
pub async fn login(
    url: &str,
    user: &str,
    password: &str,
) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
    let client = redis::Client::open(url)?;
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
