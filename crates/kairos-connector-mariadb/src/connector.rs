//! `MariaDbConnector`: the `Connector` contract on MariaDB.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kairos_connectors::{
    AccountName, AccountRequest, ConnectionInfo, Connector, ConnectorError, Revocability, Revoked,
    ServerFacts, ServerIdentity, Session, Verification,
};
use kairos_domain::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{ConnectOptions, Connection, MySql};

use crate::error::{self, code};
use crate::settings::MariaDbSettings;
use crate::sql::{self, QuotedAccount};

/// How long opening a connection (admin or verification login) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The verification method named in every `Verification`.
pub const VERIFICATION_METHOD: &str = "mysql.user+login";

const MAX_ADMIN_CONNECTIONS: u32 = 4;

/// What `SELECT @@event_scheduler` said the last time the connector asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScheduler {
    /// Events run: accounts get an expiry event (the native second line).
    On,
    /// `OFF` or `DISABLED`: no expiry events are created.
    Off,
}

const SCHEDULER_UNKNOWN: u8 = 0;
const SCHEDULER_ON: u8 = 1;
const SCHEDULER_OFF: u8 = 2;

/// Dynamic accounts in MariaDB. See the crate documentation for what each operation does.
pub struct MariaDbConnector {
    target: String,
    managed_prefix: String,
    account_host: String,
    /// Where workloads connect (`connect_host`, or the admin URL's host).
    connect_host: String,
    port: u16,
    /// The admin URL's database: expiry events live here; workloads are told to use it.
    database: String,
    /// The admin URL's host, port, socket and TLS settings (mode and files), without
    /// credentials or database: the template for verification logins.
    login: MySqlConnectOptions,
    pool: MySqlPool,
    scheduler: AtomicU8,
}

impl fmt::Debug for MariaDbConnector {
    // By hand: the pool and connect options hold the admin password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariaDbConnector")
            .field("target", &self.target)
            .field("managed_prefix", &self.managed_prefix)
            .field("account_host", &self.account_host)
            .field("connect_host", &self.connect_host)
            .field("port", &self.port)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl MariaDbConnector {
    /// Validates the settings and prepares a lazily connecting admin pool: nothing is
    /// contacted until the first operation. Must be called inside a Tokio runtime.
    pub fn new(settings: MariaDbSettings) -> Result<Self, ConnectorError> {
        let target = settings.target;
        let invalid = |reason: String| ConnectorError::Failed {
            target: target.clone(),
            reason,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(invalid(
                "the MariaDB connector must be created inside a Tokio runtime".into(),
            ));
        }
        let prefix_ok = !settings.managed_prefix.is_empty()
            && settings
                .managed_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !prefix_ok {
            return Err(invalid(format!(
                "managed_prefix {:?} must be one or more of a-z, 0-9 and _",
                settings.managed_prefix
            )));
        }
        let host_ok = !settings.account_host.is_empty()
            && settings.account_host.len() <= 255
            && settings
                .account_host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".%_:-/".contains(&b));
        if !host_ok {
            return Err(invalid(format!(
                "account_host {:?} must be 1-255 letters, digits and . % _ : - /",
                settings.account_host
            )));
        }
        let url = settings.admin_url.expose_secret();
        let not_a_url = || {
            invalid("admin_url is not a valid mysql://user:password@host:port/database URL".into())
        };
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(not_a_url());
        }
        // The parse error is not forwarded: it may quote the URL, password included.
        let admin = MySqlConnectOptions::from_str(url)
            .map_err(|_| not_a_url())?
            // Expiry times are written as UTC literals; force UTC whatever the URL says.
            .timezone(Some(String::from("+00:00")))
            // Statements carry password hashes: keep them out of the logs.
            .disable_statement_logging();
        let Some(database) = admin.get_database().map(str::to_owned) else {
            return Err(invalid(
                "admin_url must name a database (mysql://…/database): expiry events live there"
                    .into(),
            ));
        };
        let mut login = MySqlConnectOptions::new()
            .host(admin.get_host())
            .port(admin.get_port())
            .ssl_mode(admin.get_ssl_mode())
            .disable_statement_logging();
        if let Some(socket) = admin.get_socket() {
            login = login.socket(socket);
        }
        // The TLS files too (sqlx has no getters for them), read from the URL as sqlx
        // reads them: the login trusts the same CA and shows the same client certificate.
        if let Ok(parsed) = url::Url::parse(url) {
            for (key, value) in parsed.query_pairs() {
                login = match key.as_ref() {
                    "sslca" | "ssl-ca" => login.ssl_ca(&*value),
                    "sslcert" | "ssl-cert" => login.ssl_client_cert(&*value),
                    "sslkey" | "ssl-key" => login.ssl_client_key(&*value),
                    _ => login,
                };
            }
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_ADMIN_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(CONNECT_TIMEOUT)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(admin.clone());
        Ok(Self {
            connect_host: settings
                .connect_host
                .unwrap_or_else(|| admin.get_host().to_owned()),
            port: admin.get_port(),
            target,
            managed_prefix: settings.managed_prefix,
            account_host: settings.account_host,
            database,
            login,
            pool,
            scheduler: AtomicU8::new(SCHEDULER_UNKNOWN),
        })
    }

    /// Asks the server whether its event scheduler runs (and so whether accounts get an
    /// expiry event), and remembers the answer for [`Connector::revocability`]. Provision
    /// and renew refresh it too; call this at startup to report revocability accurately
    /// before the first provision.
    pub async fn check_event_scheduler(&self) -> Result<EventScheduler, ConnectorError> {
        let mut conn = self.acquire("checking the event scheduler").await?;
        self.read_scheduler(&mut conn).await
    }

    /// The name of the event that drops `account` at its grant's end, in the admin URL's
    /// database.
    pub fn expiry_event_name(&self, account: &AccountName) -> String {
        sql::event_name(account)
    }

    fn err(&self, what: &str, e: &sqlx::Error) -> ConnectorError {
        error::map(&self.target, what, e, &[])
    }

    fn check_managed(&self, account: &AccountName) -> Result<(), ConnectorError> {
        if account.has_prefix(&self.managed_prefix) {
            Ok(())
        } else {
            Err(ConnectorError::Failed {
                target: self.target.clone(),
                reason: format!(
                    "account {account} does not carry the managed prefix {:?}; Kairos only \
                     touches accounts it manages",
                    self.managed_prefix
                ),
            })
        }
    }

    fn quoted(&self, account: &AccountName, host: &str) -> Result<QuotedAccount, ConnectorError> {
        QuotedAccount::new(account, host).ok_or_else(|| ConnectorError::Failed {
            target: self.target.clone(),
            reason: format!("account {account}@{host:?} cannot be quoted safely"),
        })
    }

    async fn acquire(&self, what: &str) -> Result<PoolConnection<MySql>, ConnectorError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| self.err(&format!("{what}: connecting as the admin"), &e))
    }

    /// Runs one statement through the prepared-statement protocol, which accepts exactly
    /// one statement: `a; b` is a syntax error, not two statements.
    async fn exec(
        &self,
        conn: &mut MySqlConnection,
        statement: &str,
        what: &str,
        redact: &[&str],
    ) -> Result<(), ConnectorError> {
        sqlx::query(statement)
            .persistent(false)
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(|e| error::map(&self.target, what, &e, redact))
    }

    async fn read_scheduler(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<EventScheduler, ConnectorError> {
        let value: String = sqlx::query_scalar("SELECT CAST(@@event_scheduler AS CHAR)")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err("reading @@event_scheduler", &e))?;
        let state = if value.eq_ignore_ascii_case("ON") {
            EventScheduler::On
        } else {
            EventScheduler::Off
        };
        self.scheduler.store(
            match state {
                EventScheduler::On => SCHEDULER_ON,
                EventScheduler::Off => SCHEDULER_OFF,
            },
            Ordering::Relaxed,
        );
        Ok(state)
    }

    /// The hosts `account` exists with (normally just `account_host`).
    async fn account_hosts(
        &self,
        conn: &mut MySqlConnection,
        account: &AccountName,
    ) -> Result<Vec<String>, ConnectorError> {
        sqlx::query_scalar("SELECT CAST(Host AS CHAR) FROM mysql.user WHERE User = ?")
            .bind(account.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.err(&format!("looking up {account} in mysql.user"), &e))
    }

    async fn event_exists(
        &self,
        conn: &mut MySqlConnection,
        event: &str,
    ) -> Result<bool, ConnectorError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.EVENTS \
             WHERE EVENT_SCHEMA = ? AND EVENT_NAME = ?",
        )
        .bind(&self.database)
        .bind(event)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| self.err(&format!("looking up event {event}"), &e))?;
        Ok(n > 0)
    }

    fn qualified_event(&self, account: &AccountName) -> String {
        format!(
            "{}.{}",
            sql::quote_ident(&self.database),
            sql::quote_ident(&sql::event_name(account))
        )
    }

    /// Whether the account gets an expiry event: the scheduler is on, or an event already
    /// exists (the scheduler was switched off since; keep the event right for when it comes
    /// back).
    async fn wants_event(
        &self,
        conn: &mut MySqlConnection,
        account: &AccountName,
    ) -> Result<bool, ConnectorError> {
        let scheduler = self.read_scheduler(conn).await?;
        let exists = self.event_exists(conn, &sql::event_name(account)).await?;
        Ok(scheduler == EventScheduler::On || exists)
    }

    /// Creates the account's expiry event, or moves it to `valid_until`.
    async fn write_event(
        &self,
        conn: &mut MySqlConnection,
        account: &AccountName,
        who: &QuotedAccount,
        valid_until: Timestamp,
    ) -> Result<(), ConnectorError> {
        // The session's time_zone is +00:00 (forced at connect), so the literal is read
        // as UTC and the event is stored with TIME_ZONE '+00:00': it fires at the same
        // instant whatever the server's own time zone or its DST changes.
        // `CREATE OR REPLACE` both creates and moves the event (ALTER EVENT would fail
        // with 1539 if it were missing), so a retried provision or renew converges.
        let statement = format!(
            "CREATE OR REPLACE EVENT {event} ON SCHEDULE AT {at} ON COMPLETION NOT PRESERVE \
             COMMENT {comment} DO DROP USER IF EXISTS {who}",
            event = self.qualified_event(account),
            at = sql::utc_datetime_literal(valid_until),
            comment = "'Kairos: drops the account at its grant''s end'",
            who = who.as_str(),
        );
        self.exec(
            conn,
            &statement,
            &format!("creating expiry event for {account}"),
            &[],
        )
        .await
    }

    /// Kills the account's sessions, skipping (and not counting again) those in `killed`
    /// already: a killed connection stays in the processlist until its thread exits.
    async fn kill_sessions(
        &self,
        conn: &mut MySqlConnection,
        account: &AccountName,
        killed: &mut std::collections::HashSet<u64>,
    ) -> Result<(), ConnectorError> {
        let ids: Vec<u64> = sqlx::query_scalar(
            "SELECT CAST(ID AS UNSIGNED) FROM information_schema.PROCESSLIST \
             WHERE USER = ? AND ID <> CONNECTION_ID()",
        )
        .bind(account.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(&format!("listing sessions of {account}"), &e))?;
        for id in ids {
            if killed.contains(&id) {
                continue;
            }
            match sqlx::query(&format!("KILL CONNECTION {id}"))
                .persistent(false)
                .execute(&mut *conn)
                .await
            {
                Ok(_) => {
                    killed.insert(id);
                }
                // The session ended by itself in between.
                Err(e) if error::server_code(&e) == Some(code::NO_SUCH_THREAD) => {}
                Err(e) => return Err(self.err(&format!("killing session {id} of {account}"), &e)),
            }
        }
        Ok(())
    }

    /// Lock, kill, drop, kill again, drop the event. Every step is idempotent.
    async fn remove(&self, account: &AccountName) -> Result<Revoked, ConnectorError> {
        let mut conn = self.acquire(&format!("revoking {account}")).await?;
        let hosts = self.account_hosts(&mut conn, account).await?;
        let quoted = hosts
            .iter()
            .map(|host| self.quoted(account, host))
            .collect::<Result<Vec<_>, _>>()?;
        // New logins are refused from here on.
        for who in &quoted {
            let statement = format!("ALTER USER IF EXISTS {} ACCOUNT LOCK", who.as_str());
            self.exec(&mut conn, &statement, &format!("locking {account}"), &[])
                .await?;
        }
        // Dropping a user does not end its sessions: kill them.
        let mut killed = std::collections::HashSet::new();
        self.kill_sessions(&mut conn, account, &mut killed).await?;
        for who in &quoted {
            let statement = format!("DROP USER IF EXISTS {}", who.as_str());
            self.exec(&mut conn, &statement, &format!("dropping {account}"), &[])
                .await?;
        }
        // A login that authenticated just before the lock may have opened since.
        self.kill_sessions(&mut conn, account, &mut killed).await?;
        let event = sql::event_name(account);
        if self.event_exists(&mut conn, &event).await? {
            let statement = format!("DROP EVENT IF EXISTS {}", self.qualified_event(account));
            self.exec(
                &mut conn,
                &statement,
                &format!("dropping expiry event of {account}"),
                &[],
            )
            .await?;
        }
        Ok(Revoked {
            sessions_killed: u64::try_from(killed.len()).unwrap_or(u64::MAX),
            account_existed: !hosts.is_empty(),
        })
    }

    async fn provision_steps(
        &self,
        conn: &mut MySqlConnection,
        req: &AccountRequest<'_>,
        who: &QuotedAccount,
        statements: &[String],
        hash: &str,
    ) -> Result<(), ConnectorError> {
        let account = req.account;
        let exists: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = ?")
                .bind(account.as_str())
                .bind(&self.account_host)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| self.err(&format!("looking up {account} in mysql.user"), &e))?;
        // The hash is a fixed-format literal (`*` + 40 hex digits).
        let statement = if exists > 0 {
            tracing::info!(target = %self.target, %account, "account exists: converging");
            format!(
                "ALTER USER {} IDENTIFIED BY PASSWORD '{hash}' ACCOUNT UNLOCK",
                who.as_str()
            )
        } else {
            format!(
                "CREATE USER {} IDENTIFIED BY PASSWORD '{hash}'",
                who.as_str()
            )
        };
        self.exec(conn, &statement, &format!("creating {account}"), &[hash])
            .await?;
        let total = statements.len();
        for (i, statement) in statements.iter().enumerate() {
            let what = format!(
                "privilege statement {} of {total} for {account} ({statement})",
                i + 1
            );
            self.exec(conn, statement, &what, &[hash]).await?;
        }
        if self.wants_event(conn, account).await? {
            self.write_event(conn, account, who, req.valid_until)
                .await?;
        }
        Ok(())
    }

    async fn warn_about_anonymous_users(&self, conn: &mut MySqlConnection) {
        let anonymous: Result<i64, _> =
            sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user WHERE User = ''")
                .fetch_one(&mut *conn)
                .await;
        let n = anonymous.unwrap_or(0);
        if n > 0 {
            tracing::warn!(
                target = %self.target,
                anonymous_users = n,
                "the server has anonymous accounts (''@host); they take precedence over \
                 'name'@'{}' for logins from their hosts, so workloads may be refused",
                self.account_host
            );
        }
    }
}

#[async_trait]
impl Connector for MariaDbConnector {
    fn kind(&self) -> &'static str {
        "mariadb"
    }

    fn revocability(&self) -> Revocability {
        let native_expiry = match self.scheduler.load(Ordering::Relaxed) {
            SCHEDULER_ON => Some(format!(
                "an event in `{}` (`<account>_exp`) drops the account at the grant's end even \
                 if Kairos is down, as long as the server's event scheduler stays ON; it does \
                 not end sessions already open",
                self.database
            )),
            // Off, or not known yet (nothing asked the server): promise nothing.
            _ => None,
        };
        Revocability {
            revocable: true,
            kills_sessions: true,
            native_expiry,
        }
    }

    fn managed_prefix(&self) -> &str {
        &self.managed_prefix
    }

    async fn provision(&self, req: &AccountRequest<'_>) -> Result<ConnectionInfo, ConnectorError> {
        let account = req.account;
        self.check_managed(account)?;
        let who = self.quoted(account, &self.account_host)?;
        let statements = sql::render_privileges(req.privileges, &who)?;
        let hash = sql::native_password_hash(req.password);
        let mut conn = self.acquire(&format!("provisioning {account}")).await?;
        self.warn_about_anonymous_users(&mut conn).await;
        let result = self
            .provision_steps(&mut conn, req, &who, &statements, &hash)
            .await;
        drop(conn);
        if let Err(e) = result {
            // DDL is not transactional: undo by hand so nothing is half-created.
            tracing::warn!(target = %self.target, %account, error = %e,
                "provisioning failed: dropping the account");
            if let Err(undo) = self.remove(account).await {
                tracing::error!(target = %self.target, %account, error = %undo,
                    "could not drop the half-provisioned account; the reconciler will find it");
            }
            return Err(e);
        }
        tracing::info!(target = %self.target, %account, "account provisioned");
        Ok(ConnectionInfo {
            host: self.connect_host.clone(),
            port: self.port,
            database: Some(self.database.clone()),
            username: account.as_str().to_owned(),
        })
    }

    async fn renew(
        &self,
        account: &AccountName,
        valid_until: Timestamp,
    ) -> Result<(), ConnectorError> {
        self.check_managed(account)?;
        let who = self.quoted(account, &self.account_host)?;
        let mut conn = self.acquire(&format!("renewing {account}")).await?;
        if !self.wants_event(&mut conn, account).await? {
            return Ok(());
        }
        if self.account_hosts(&mut conn, account).await?.is_empty() {
            return Err(ConnectorError::Failed {
                target: self.target.clone(),
                reason: format!(
                    "account {account} no longer exists (its expiry event may have fired \
                     before the renewal); the grant needs a new account"
                ),
            });
        }
        self.write_event(&mut conn, account, &who, valid_until)
            .await
    }

    async fn revoke(&self, account: &AccountName) -> Result<Revoked, ConnectorError> {
        self.check_managed(account)?;
        let revoked = self.remove(account).await?;
        tracing::info!(target = %self.target, %account,
            sessions_killed = revoked.sessions_killed,
            account_existed = revoked.account_existed, "account revoked");
        Ok(revoked)
    }

    async fn verify_gone(
        &self,
        account: &AccountName,
        password: Option<&SecretString>,
    ) -> Result<Verification, ConnectorError> {
        self.check_managed(account)?;
        let mut conn = self.acquire(&format!("verifying {account}")).await?;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user WHERE User = ?")
            .bind(account.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(&format!("looking up {account} in mysql.user"), &e))?;
        if rows > 0 {
            return Err(ConnectorError::StillPresent(format!(
                "{account} still has {rows} row(s) in mysql.user on {}",
                self.target
            )));
        }
        let sessions: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
        )
        .bind(account.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| self.err(&format!("listing sessions of {account}"), &e))?;
        drop(conn);
        if sessions > 0 {
            return Err(ConnectorError::StillPresent(format!(
                "{account} is gone from mysql.user but {sessions} session(s) of it are still \
                 open on {}",
                self.target
            )));
        }
        let mut evidence =
            format!("no row for {account} in mysql.user and no session of it in the processlist");
        if let Some(password) = password {
            let options = self
                .login
                .clone()
                .username(account.as_str())
                .password(password.expose_secret());
            match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
                Err(_) => {
                    return Err(ConnectorError::Unreachable {
                        target: self.target.clone(),
                        reason: format!(
                            "verification login as {account} timed out after {CONNECT_TIMEOUT:?}"
                        ),
                    });
                }
                Ok(Ok(session)) => {
                    let _ = session.close().await;
                    return Err(ConnectorError::StillPresent(format!(
                        "a login as {account} with its password succeeded on {}",
                        self.target
                    )));
                }
                Ok(Err(e))
                    if matches!(
                        error::server_code(&e),
                        Some(code::ACCESS_DENIED | code::ACCESS_DENIED_NO_PASSWORD)
                    ) =>
                {
                    let number = error::server_code(&e).unwrap_or_default();
                    evidence.push_str(&format!(
                        ", and a login with its password was refused ({number}, access denied)"
                    ));
                }
                Ok(Err(e)) if error::is_unreachable(&e) => {
                    return Err(self.err(&format!("verification login as {account}"), &e));
                }
                Ok(Err(e)) => {
                    return Err(ConnectorError::Failed {
                        target: self.target.clone(),
                        reason: format!(
                            "a verification login as {account} failed, but not with \
                             access denied (1045/1698): {}",
                            error::describe(&e, &[])
                        ),
                    });
                }
            }
        }
        Ok(Verification {
            method: VERIFICATION_METHOD.to_owned(),
            evidence,
        })
    }

    async fn server_facts(&self) -> Result<ServerFacts, ConnectorError> {
        // MariaDB has no server UUID; its host name, port and data directory together
        // single out one server (two on one machine differ by port and data directory).
        let mut conn = self.acquire("asking which server this is").await?;
        let (hostname, port, datadir): (String, String, String) = sqlx::query_as(
            "SELECT CAST(@@hostname AS CHAR), CAST(@@port AS CHAR), CAST(@@datadir AS CHAR)",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| self.err("reading @@hostname, @@port and @@datadir", &e))?;
        let mut warnings = Vec::new();
        if self.read_scheduler(&mut conn).await? == EventScheduler::Off {
            warnings.push(format!(
                "target {}: MariaDB's event scheduler is off, so accounts get no expiry event: \
                 the native second line of defence (the account dropped at the grant's end \
                 even while Kairos is down) is off; turn it on with \
                 SET GLOBAL event_scheduler = ON and event_scheduler = ON in the server's config",
                self.target
            ));
        }
        Ok(ServerFacts {
            identity: ServerIdentity::new([format!(
                "mariadb host {hostname} port {port} datadir {datadir}"
            )]),
            warnings,
        })
    }

    async fn list_managed(&self) -> Result<Vec<AccountName>, ConnectorError> {
        let mut conn = self.acquire("listing managed accounts").await?;
        // Not LIKE: `_` in the prefix would be a wildcard.
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT CAST(User AS CHAR) FROM mysql.user \
             WHERE LEFT(User, CHAR_LENGTH(?)) = ? ORDER BY 1",
        )
        .bind(&self.managed_prefix)
        .bind(&self.managed_prefix)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err("listing managed accounts", &e))?;
        let mut accounts = Vec::with_capacity(users.len());
        for user in users {
            match AccountName::parse(user) {
                Ok(name) => accounts.push(name),
                Err(e) => tracing::warn!(target = %self.target, error = %e,
                    "a user with the managed prefix is not a valid account name; skipped"),
            }
        }
        Ok(accounts)
    }

    async fn list_sessions(&self) -> Result<Vec<Session>, ConnectorError> {
        let mut conn = self.acquire("listing managed accounts' sessions").await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(USER AS CHAR), CAST(HOST AS CHAR) FROM information_schema.PROCESSLIST \
             WHERE LEFT(USER, CHAR_LENGTH(?)) = ? ORDER BY ID",
        )
        .bind(&self.managed_prefix)
        .bind(&self.managed_prefix)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err("listing managed accounts' sessions", &e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(user, host)| {
                Some(Session {
                    account: AccountName::parse(user).ok()?,
                    client_addr: host_address(&host),
                })
            })
            .collect())
    }
}

/// The address in a process list's `HOST` (`127.0.0.1:52144`, `[::1]:52144`, `::1:52144`);
/// None for a name (`localhost`: a socket, or a resolved host name).
fn host_address(host: &str) -> Option<std::net::IpAddr> {
    if let Ok(sa) = host.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    let (addr, port) = host.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod host_tests {
    #[test]
    fn process_list_hosts() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().ok();
        assert_eq!(super::host_address("127.0.0.1:52144"), ip("127.0.0.1"));
        assert_eq!(super::host_address("[::1]:52144"), ip("::1"));
        assert_eq!(super::host_address("::1:52144"), ip("::1"));
        assert_eq!(super::host_address("10.1.2.3"), ip("10.1.2.3"));
        assert_eq!(super::host_address("localhost"), None);
        assert_eq!(super::host_address("db.example.com:3306"), None);
    }
}
