//! Kairos's connector for Redis: a grant's dynamic account is a Redis ACL user.
//!
//! # What each operation sends
//!
//! - **provision**: one command, `ACL SETUSER <account> reset on #<sha256 hex of password>
//!   <rules…>`. One command is atomic (Redis 7 applies all of it or, on a bad rule, none of
//!   it), and `reset` first means a retried provision converges an existing user to exactly
//!   this state. The `#hash` form keeps the plaintext password off the wire, out of `MONITOR`,
//!   the slow log and `ACL LOG`. If the command fails anyway, the connector makes a
//!   best-effort `ACL DELUSER` so nothing of the account is left behind.
//! - **renew**: nothing. Redis ACL users have no expiry (see below).
//! - **revoke** (idempotent): `ACL GETUSER` (absent → `account_existed: false`, nothing else
//!   is sent, because `ACL SETUSER` would create the user), then `ACL SETUSER <account> off`
//!   (new `AUTH` is refused from here on), `CLIENT KILL USER <account>` (the live sessions,
//!   counted; "No such user" is tolerated), `ACL DELUSER <account>`. Each step is safe to
//!   repeat after a crash.
//! - **verify_gone** (method `acl+auth`): `ACL GETUSER` returns nil *and*, when the password
//!   is known, a fresh connection's `AUTH <account> <password>` is refused with `WRONGPASS`.
//!   Without a password only the first half is possible, and the method says `acl`.
//! - **list_managed**: `ACL USERS`, filtered by the managed prefix.
//!
//! # No native expiry
//!
//! Redis has no expiry for ACL users: nothing in Redis removes the account at the grant's
//! end. If Kairos is down then, the user stays until Kairos comes back; the revocation queue
//! then removes it, and the receipt's `verified_at` records when that really happened
//! ([`NO_NATIVE_EXPIRY`], [`Revocability::native_expiry`] is `None`).
//!
//! # ACL files and restarts
//!
//! ACL users live in memory. If the server persists ACLs to an `aclfile`, a removal is
//! durable across a Redis restart only once `ACL SAVE` has rewritten the file, otherwise a
//! restart could bring a revoked user back from an older file. After every revocation the
//! connector therefore asks `CONFIG GET aclfile` and, if one is configured, runs `ACL SAVE`
//! (best effort: a failure is logged, servers without an aclfile or without `CONFIG`
//! permission are skipped). Users declared with `user` lines in `redis.conf` are not
//! Kairos's and are out of its reach.
//!
//! # ACL rules
//!
//! The entitlement's [`Privileges::RedisAcl`] rules are checked before anything is sent. Each
//! rule is one printable-ASCII token (no whitespace, no control characters) of one of these
//! forms (keywords are case-insensitive, as in Redis): key patterns `~pattern`,
//! `%R~pattern`, `%W~pattern`, `%RW~pattern`; channel patterns `&pattern`; `+cmd`, `-cmd`,
//! `+cmd|sub`, `-cmd|sub`, `+@category`, `-@category`; `allkeys`, `allchannels`,
//! `allcommands`, `nocommands`, `resetkeys`, `resetchannels`. Everything that would touch how
//! the account authenticates or its state is refused with `BadPrivileges` naming the rule:
//! `on`, `off`, `nopass`, `>pw`, `<pw`, `#hash`, `!hash`, `reset`, `resetpass`, selectors
//! `(…)`, `clearselectors`, `(skip-)sanitize-payload`. A rule Redis itself rejects (an
//! unknown command, say) is also reported as `BadPrivileges`. The rules are the operator's
//! decision: `allcommands` or `+@admin` make the account an administrator, and are accepted.
//!
//! # TLS
//!
//! An admin URL `rediss://[user:password@]host:port` speaks TLS (rustls) and checks the
//! server's certificate and name: against the CA certificates of the PEM file named by
//! `?ssl-ca=/path/ca.pem` (as MariaDB URLs name it), else against the public web roots.
//! The CA file is read when the connector is built (a missing file or one without a
//! certificate is refused then, naming the file), and it applies to every admin
//! connection and to the fresh connection of the login check in `verify_gone`. A server
//! whose certificate does not verify is `Unreachable` with the reason (e.g. an unknown
//! issuer), and nothing is created. `#insecure` (no certificate check) is refused, and so is
//! `ssl-ca` on a plain `redis://` URL.
//!
//! # Connections and errors
//!
//! Kairos's admin connection (from [`RedisSettings::admin_url`]) is one multiplexed
//! connection, opened on first use, shared by concurrent operations and dropped (to be
//! reopened by the next operation) when it fails. Connecting and each command time out after
//! [`RedisSettings::timeout`] (default 5 s), so a down or frozen target gives `Unreachable`
//! instead of a hang. Errors map as: connection, IO, timeout, `LOADING` → `Unreachable`;
//! `NOAUTH`, `WRONGPASS`, `NOPERM` or a failed handshake for the admin → `AdminRefused`;
//! anything else → `Failed`. The admin URL and passwords never appear in an error, a log line
//! or `Debug`.
//!
//! The connector only touches accounts that carry its managed prefix (and never `default`):
//! provisioning or revoking any other name is refused with `Failed`.

mod error;
mod rules;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use kairos_connectors::{
    AccountName, AccountRequest, ConnectionInfo, Connector, ConnectorError, Revocability, Revoked,
    ServerFacts, ServerIdentity, Session, Verification,
};
use kairos_domain::Timestamp;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

#[doc(no_inline)]
pub use kairos_connectors::Privileges;

use crate::error::{Class, Redactor, admin_error, classify, describe};
use crate::rules::AclRules;

/// The managed prefix when the target does not name one.
pub const DEFAULT_MANAGED_PREFIX: &str = "kairos_";

/// How long connecting, and each command, may take before the target counts as unreachable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why [`Revocability::native_expiry`] is `None` for Redis: there is no second line of
/// defence inside Redis.
pub const NO_NATIVE_EXPIRY: &str = "Redis has no native expiry for ACL users: if Kairos is \
    down at the grant's end the user stays until Kairos comes back; the revocation queue then \
    removes it and the receipt's verified_at tells when";

/// The verification method when the password was known and a login was attempted.
pub const VERIFY_METHOD: &str = "acl+auth";

/// The verification method when no password was given (only the ACL was checked).
pub const VERIFY_METHOD_ACL_ONLY: &str = "acl";

/// The name Redis gives its built-in user; never provisioned or revoked.
const DEFAULT_USER: &str = "default";

/// Where and how to reach one Redis target.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The target's name in the catalog (appears in errors).
    pub target: String,
    /// `redis://[user:password@]host:port` of an account allowed to run `ACL` (`SETUSER`,
    /// `GETUSER`, `DELUSER`, `USERS`, `SAVE`), `CLIENT KILL` and, optionally, `CONFIG GET`;
    /// `rediss://…` for TLS, with `?ssl-ca=FILE` when a private CA signed the server's
    /// certificate (see the crate docs, "TLS").
    pub admin_url: SecretString,
    /// Every account Kairos creates here starts with this ([`DEFAULT_MANAGED_PREFIX`]).
    pub managed_prefix: String,
    /// The host workloads connect to, when it differs from the admin URL's (e.g. the admin
    /// reaches Redis on `localhost`); the port is the admin URL's.
    pub connect_host: Option<String>,
    /// Connect and per-command timeout ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl RedisSettings {
    /// Settings with the default prefix, no separate connect host and the default timeout.
    pub fn new(target: impl Into<String>, admin_url: SecretString) -> Self {
        Self {
            target: target.into(),
            admin_url,
            managed_prefix: DEFAULT_MANAGED_PREFIX.to_owned(),
            connect_host: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The [`Connector`] for one Redis server (see the crate docs).
pub struct RedisConnector {
    target: String,
    prefix: String,
    timeout: Duration,
    /// Kairos's admin client (carries the admin credentials).
    admin: Client,
    /// The same server without any credentials: the fresh connection of `verify_gone`.
    probe: Client,
    /// The admin URL's `host:port` (one fact of the server's identity).
    admin_addr: String,
    /// Host and port handed to workloads.
    host: String,
    port: u16,
    /// The shared admin connection, opened on first use and dropped when it fails.
    connection: Mutex<Option<MultiplexedConnection>>,
    redactor: Redactor,
}

impl fmt::Debug for RedisConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnector")
            .field("target", &self.target)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("managed_prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConnector {
    /// Checks the settings; connects nothing (the first operation does).
    pub fn new(settings: RedisSettings) -> Result<Self, ConnectorError> {
        let RedisSettings {
            target,
            admin_url,
            managed_prefix,
            connect_host,
            timeout,
        } = settings;
        let failed = |reason: &str| ConnectorError::Failed {
            target: target.clone(),
            reason: reason.to_owned(),
        };
        if managed_prefix.is_empty()
            || !managed_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(failed(
                "the managed prefix must be non-empty and only a-z, 0-9 and _",
            ));
        }
        if timeout.is_zero() {
            return Err(failed("the timeout must be more than zero"));
        }
        // The parse error is not shown: it might quote the URL, password included.
        let info = admin_url
            .expose_secret()
            .into_connection_info()
            .map_err(|_| {
                failed("the admin URL is not a valid redis://[user:password@]host:port URL")
            })?;
        let ca_file = ssl_ca(admin_url.expose_secret());
        let (admin_host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                if ca_file.is_some() {
                    return Err(failed(
                        "the admin URL names a CA file (ssl-ca) but is redis://: write rediss:// for TLS",
                    ));
                }
                (host.clone(), *port)
            }
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => {
                if *insecure {
                    return Err(failed(
                        "the admin URL turns certificate checks off (#insecure); Kairos always checks the server's certificate: give its CA with ?ssl-ca=FILE instead",
                    ));
                }
                (host.clone(), *port)
            }
            _ => {
                return Err(failed(
                    "the admin URL must be redis://host:port or rediss://host:port (unix sockets are not supported by this connector)",
                ));
            }
        };
        // The CA that must have signed the server's certificate, for every admin connection
        // and the login check; without one, the public web roots.
        let root_cert = match &ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    failed(&format!(
                        "cannot read the CA file {path} (ssl-ca in the admin URL): {e}"
                    ))
                })?;
                if !pem
                    .windows(CERTIFICATE_PEM.len())
                    .any(|w| w == CERTIFICATE_PEM)
                {
                    return Err(failed(&format!(
                        "the CA file {path} (ssl-ca in the admin URL) holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
                    )));
                }
                Some(pem)
            }
            None => None,
        };
        let client = |info: redis::ConnectionInfo| match &root_cert {
            Some(pem) => Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => Client::open(info),
        };
        let redactor = Redactor::new(
            [
                Some(admin_url.expose_secret().to_owned()),
                info.redis_settings().password().map(str::to_owned),
            ]
            .into_iter()
            .flatten()
            .map(SecretString::from)
            .collect(),
        );
        let admin_settings = info
            .redis_settings()
            .clone()
            .set_lib_name("kairos-connector-redis", env!("CARGO_PKG_VERSION"));
        let probe_settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        let admin = client(info.clone().set_redis_settings(admin_settings))
            .map_err(|e| failed(&unusable(&e, ca_file.as_deref())))?;
        let probe = client(info.set_redis_settings(probe_settings))
            .map_err(|e| failed(&unusable(&e, ca_file.as_deref())))?;
        Ok(Self {
            admin_addr: format!("{admin_host}:{port}"),
            host: connect_host.unwrap_or(admin_host),
            port,
            target,
            prefix: managed_prefix,
            timeout,
            admin,
            probe,
            connection: Mutex::new(None),
            redactor,
        })
    }

    fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
    }

    /// The shared admin connection, opened if there is none.
    async fn admin(&self) -> Result<MultiplexedConnection, ConnectorError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self
            .admin
            .get_multiplexed_async_connection_with_config(&self.connection_config())
            .await
            .map_err(|e| self.error("connect", &e))?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `cmd` on the admin connection; a connection-level failure drops the connection
    /// so the next operation opens a new one (a timed-out connection may still deliver late
    /// answers, and is not trusted again).
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut MultiplexedConnection,
        cmd: &redis::Cmd,
    ) -> Result<T, redis::RedisError> {
        let result = cmd.query_async(connection).await;
        if result
            .as_ref()
            .is_err_and(|e| classify(e) == Class::Unreachable)
        {
            *self.connection.lock().await = None;
        }
        result
    }

    fn error(&self, op: &str, e: &redis::RedisError) -> ConnectorError {
        admin_error(&self.target, &self.redactor, op, e)
    }

    /// Refuses names this connector must not touch.
    fn check_managed(&self, account: &AccountName) -> Result<(), ConnectorError> {
        if account.has_prefix(&self.prefix) && account.as_str() != DEFAULT_USER {
            Ok(())
        } else {
            Err(ConnectorError::Failed {
                target: self.target.clone(),
                reason: format!(
                    "account {account} does not carry the managed prefix {:?}; Kairos only \
                     provisions and revokes accounts it manages",
                    self.prefix
                ),
            })
        }
    }

    /// Whether the ACL user exists (`ACL GETUSER` is not nil).
    async fn user_exists(
        &self,
        connection: &mut MultiplexedConnection,
        account: &AccountName,
    ) -> Result<bool, ConnectorError> {
        let user: Option<redis::Value> = self
            .run(
                connection,
                redis::cmd("ACL").arg("GETUSER").arg(account.as_str()),
            )
            .await
            .map_err(|e| self.error("ACL GETUSER", &e))?;
        Ok(user.is_some())
    }

    /// Best effort, after a failed provision: the account must not stay half made.
    async fn drop_after_failed_provision(&self, account: &AccountName) {
        let result = match self.admin().await {
            Ok(mut connection) => self
                .run::<u64>(
                    &mut connection,
                    redis::cmd("ACL").arg("DELUSER").arg(account.as_str()),
                )
                .await
                .map_err(|e| self.error("ACL DELUSER", &e)),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(
                target_name = %self.target,
                account = %account,
                error = %e,
                "could not remove a Redis ACL user after a failed provision; the reconciler will find it"
            );
        }
    }

    /// Best effort: `ACL SAVE` when the server persists ACLs to a file, so a removal
    /// survives a Redis restart.
    async fn save_acl_file(&self, connection: &mut MultiplexedConnection) {
        let config: Result<Vec<String>, _> = self
            .run(connection, redis::cmd("CONFIG").arg("GET").arg("aclfile"))
            .await;
        let has_file = match config {
            Ok(pairs) => pairs.get(1).is_some_and(|file| !file.is_empty()),
            Err(e) => {
                tracing::debug!(target_name = %self.target, error = %self.redactor.scrub(describe(&e)), "CONFIG GET aclfile failed; skipping ACL SAVE");
                false
            }
        };
        if !has_file {
            return;
        }
        if let Err(e) = self
            .run::<()>(connection, redis::cmd("ACL").arg("SAVE"))
            .await
        {
            tracing::warn!(
                target_name = %self.target,
                error = %self.redactor.scrub(describe(&e)),
                "ACL SAVE failed: the removal is not yet durable across a Redis restart"
            );
        }
    }

    /// A fresh, unauthenticated connection tries `AUTH account password`: `Ok` if Redis
    /// answers `WRONGPASS`.
    async fn login_refused(
        &self,
        account: &AccountName,
        password: &SecretString,
    ) -> Result<(), ConnectorError> {
        let redactor = Redactor::new(vec![password.clone()]);
        let probe_error = |op: &str, e: &redis::RedisError| {
            let reason = redactor.scrub(self.redactor.scrub(format!("{op}: {}", describe(e))));
            let target = self.target.clone();
            match classify(e) {
                Class::Unreachable => ConnectorError::Unreachable { target, reason },
                Class::Refused | Class::Failed => ConnectorError::Failed { target, reason },
            }
        };
        let mut connection = self
            .probe
            .get_multiplexed_async_connection_with_config(&self.connection_config())
            .await
            .map_err(|e| probe_error("connect for the login check", &e))?;
        let answer: Result<(), _> = redis::cmd("AUTH")
            .arg(account.as_str())
            .arg(password.expose_secret())
            .query_async(&mut connection)
            .await;
        match answer {
            Ok(()) => Err(ConnectorError::StillPresent(format!(
                "AUTH as {account} with the grant's password succeeded on {}",
                self.target
            ))),
            Err(e) if e.code() == Some("WRONGPASS") => Ok(()),
            Err(e) => Err(probe_error("AUTH (login check)", &e)),
        }
    }
}

/// The start of a PEM certificate.
const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// The `ssl-ca` query parameter of the admin URL (as MariaDB URLs name it): the CA file
/// that signed the server's certificate.
fn ssl_ca(admin_url: &str) -> Option<String> {
    let url = url::Url::parse(admin_url).ok()?;
    url.query_pairs()
        .find(|(key, _)| key == "ssl-ca")
        .map(|(_, value)| value.into_owned())
}

/// Why a client could not be built; with a CA file, most likely the file (the error names
/// no part of the URL).
fn unusable(e: &redis::RedisError, ca_file: Option<&str>) -> String {
    match ca_file {
        Some(path) => format!("the CA file {path} (ssl-ca in the admin URL) cannot be used: {e}"),
        None => "the admin URL could not be used".to_owned(),
    }
}

fn sha256_hex(password: &SecretString) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, password.expose_secret().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl Connector for RedisConnector {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn revocability(&self) -> Revocability {
        Revocability {
            revocable: true,
            kills_sessions: true,
            // See NO_NATIVE_EXPIRY: Redis ACL users never expire by themselves.
            native_expiry: None,
        }
    }

    fn managed_prefix(&self) -> &str {
        &self.prefix
    }

    async fn provision(&self, req: &AccountRequest<'_>) -> Result<ConnectionInfo, ConnectorError> {
        let rules = AclRules::parse(req.privileges)?;
        let account = req.account;
        self.check_managed(account)?;
        let hash = format!("#{}", sha256_hex(req.password));
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(account.as_str())
            .arg("reset")
            .arg("on")
            .arg(&hash)
            .arg(rules.as_slice());
        let mut connection = self.admin().await?;
        if let Err(e) = self.run::<()>(&mut connection, &cmd).await {
            let hashes = Redactor::new(vec![SecretString::from(hash)]);
            let err = match e.detail() {
                Some(detail)
                    if classify(&e) == Class::Failed
                        && detail.starts_with("Error in ACL SETUSER modifier") =>
                {
                    ConnectorError::BadPrivileges(format!(
                        "Redis {} refused an ACL rule: {}",
                        self.target,
                        hashes.scrub(detail)
                    ))
                }
                _ => self.error("ACL SETUSER", &e),
            };
            self.drop_after_failed_provision(account).await;
            return Err(err);
        }
        tracing::info!(target_name = %self.target, account = %account, "provisioned Redis ACL user");
        Ok(ConnectionInfo {
            host: self.host.clone(),
            port: self.port,
            database: None,
            username: account.as_str().to_owned(),
        })
    }

    async fn renew(
        &self,
        _account: &AccountName,
        _valid_until: Timestamp,
    ) -> Result<(), ConnectorError> {
        // Redis ACL users have no expiry to move (NO_NATIVE_EXPIRY).
        Ok(())
    }

    async fn revoke(&self, account: &AccountName) -> Result<Revoked, ConnectorError> {
        self.check_managed(account)?;
        let name = account.as_str();
        let mut connection = self.admin().await?;
        // `ACL SETUSER … off` would create an absent user: look first.
        if !self.user_exists(&mut connection, account).await? {
            self.save_acl_file(&mut connection).await;
            tracing::info!(target_name = %self.target, account = %account, "Redis ACL user already absent");
            return Ok(Revoked {
                sessions_killed: 0,
                account_existed: false,
            });
        }
        self.run::<()>(
            &mut connection,
            redis::cmd("ACL").arg("SETUSER").arg(name).arg("off"),
        )
        .await
        .map_err(|e| self.error("ACL SETUSER off", &e))?;
        let killed = match self
            .run::<u64>(
                &mut connection,
                redis::cmd("CLIENT").arg("KILL").arg("USER").arg(name),
            )
            .await
        {
            Ok(killed) => killed,
            Err(e) if e.detail().is_some_and(|d| d.starts_with("No such user")) => 0,
            Err(e) => return Err(self.error("CLIENT KILL USER", &e)),
        };
        let deleted: u64 = self
            .run(&mut connection, redis::cmd("ACL").arg("DELUSER").arg(name))
            .await
            .map_err(|e| self.error("ACL DELUSER", &e))?;
        self.save_acl_file(&mut connection).await;
        tracing::info!(
            target_name = %self.target,
            account = %account,
            sessions_killed = killed,
            deleted,
            "revoked Redis ACL user"
        );
        Ok(Revoked {
            sessions_killed: killed,
            account_existed: true,
        })
    }

    async fn verify_gone(
        &self,
        account: &AccountName,
        password: Option<&SecretString>,
    ) -> Result<Verification, ConnectorError> {
        let mut connection = self.admin().await?;
        if self.user_exists(&mut connection, account).await? {
            return Err(ConnectorError::StillPresent(format!(
                "ACL GETUSER {account} still returns the user on {}",
                self.target
            )));
        }
        let Some(password) = password else {
            return Ok(Verification {
                method: VERIFY_METHOD_ACL_ONLY.to_owned(),
                evidence: format!(
                    "ACL GETUSER {account} returned nil on {}; no password was given, so no \
                     login was attempted",
                    self.target
                ),
            });
        };
        self.login_refused(account, password).await?;
        Ok(Verification {
            method: VERIFY_METHOD.to_owned(),
            evidence: format!(
                "ACL GETUSER {account} returned nil on {}, and AUTH as {account} with the \
                 grant's password on a fresh connection was refused with WRONGPASS",
                self.target
            ),
        })
    }

    async fn server_facts(&self) -> Result<ServerFacts, ConnectorError> {
        // The admin URL's address (one address from one Kairos is one server) and, when the
        // admin may run INFO, the server's run_id (random per server process) with its port.
        let mut connection = self.admin().await?;
        let mut facts = vec![format!("redis address {}", self.admin_addr)];
        match self
            .run::<String>(&mut connection, redis::cmd("INFO").arg("server"))
            .await
        {
            Ok(info) => {
                let field = |name: &str| {
                    info.lines()
                        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                        .map(str::trim)
                };
                if let (Some(run_id), Some(port)) = (field("run_id"), field("tcp_port")) {
                    facts.push(format!("redis run_id {run_id} port {port}"));
                }
            }
            Err(e) if classify(&e) == Class::Unreachable => {
                return Err(self.error("INFO server", &e));
            }
            Err(e) => tracing::debug!(
                target_name = %self.target,
                error = %self.error("INFO server", &e),
                "the admin may not run INFO: the server is known by its address alone"
            ),
        }
        Ok(ServerFacts {
            identity: ServerIdentity::new(facts),
            warnings: Vec::new(),
        })
    }

    async fn list_managed(&self) -> Result<Vec<AccountName>, ConnectorError> {
        let mut connection = self.admin().await?;
        let users: Vec<String> = self
            .run(&mut connection, redis::cmd("ACL").arg("USERS"))
            .await
            .map_err(|e| self.error("ACL USERS", &e))?;
        let mut managed = Vec::new();
        for user in users.into_iter().filter(|u| u.starts_with(&self.prefix)) {
            match AccountName::parse(user) {
                Ok(account) if account.as_str() != DEFAULT_USER => managed.push(account),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    target_name = %self.target,
                    error = %e,
                    "a Redis ACL user carries the managed prefix but is not a valid account name; \
                     Kairos cannot manage it"
                ),
            }
        }
        managed.sort();
        Ok(managed)
    }

    async fn list_sessions(&self) -> Result<Vec<Session>, ConnectorError> {
        let mut connection = self.admin().await?;
        let list: String = self
            .run(&mut connection, redis::cmd("CLIENT").arg("LIST"))
            .await
            .map_err(|e| self.error("CLIENT LIST", &e))?;
        Ok(client_list_sessions(&list, &self.prefix))
    }
}

/// The sessions of `CLIENT LIST` (one line per client, `key=value` fields separated by
/// spaces) whose `user` carries `prefix`, with the address of their `addr` (`ip:port`,
/// IPv6 as `[::1]:port` or `::1:port`; a Unix socket has none).
fn client_list_sessions(list: &str, prefix: &str) -> Vec<Session> {
    list.lines()
        .filter_map(|line| {
            let field = |key: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            };
            let user = field("user")?;
            if !user.starts_with(prefix) || user == DEFAULT_USER {
                return None;
            }
            let account = AccountName::parse(user.to_owned()).ok()?;
            let client_addr = field("addr").and_then(|addr| {
                addr.parse::<std::net::SocketAddr>()
                    .map(|sa| sa.ip())
                    .ok()
                    .or_else(|| {
                        let (ip, port) = addr.rsplit_once(':')?;
                        port.parse::<u16>().ok()?;
                        ip.trim_start_matches('[')
                            .trim_end_matches(']')
                            .parse()
                            .ok()
                    })
            });
            Some(Session {
                account,
                client_addr,
            })
        })
        .collect()
}

#[cfg(test)]
mod client_list_tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn client_list_lines_become_sessions() {
        let list = "id=3 addr=127.0.0.1:50000 laddr=127.0.0.1:6379 fd=8 name= user=default\n\
                    id=4 addr=10.1.2.3:50001 laddr=127.0.0.1:6379 fd=9 name= user=kr_abc cmd=get\n\
                    id=5 addr=::1:50002 laddr=::1:6379 fd=10 name= user=kr_def\n\
                    id=6 addr=/tmp/redis.sock:0 fd=11 user=kr_ghi\n\
                    id=7 addr=10.9.9.9:1 fd=12 user=other";
        let sessions = super::client_list_sessions(list, "kr_");
        let got: Vec<(String, Option<String>)> = sessions
            .iter()
            .map(|s| (s.account.to_string(), s.client_addr.map(|a| a.to_string())))
            .collect();
        assert_eq!(
            got,
            vec![
                ("kr_abc".into(), Some("10.1.2.3".into())),
                ("kr_def".into(), Some("::1".into())),
                ("kr_ghi".into(), None),
            ]
        );
    }
}
