use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use kairos_connectors::{
    AccountName, AccountRequest, ConnectionInfo, Connector, ConnectorError, Revocability, Revoked,
    Verification,
};
use kairos_domain::Timestamp;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::error::{classify, describe, is_login_refused, is_unreachable, sqlstate};
use crate::scram::{SCRAM_ITERATIONS, SCRAM_SALT_LEN, scram_sha256_verifier};
use crate::sql::{quote_ident, quote_literal, render_privileges};

/// The managed prefix when the configuration names none.
pub const DEFAULT_MANAGED_PREFIX: &str = "kairos_";

/// How long any one connection attempt (pooled admin connection or verification login) may
/// take before the target counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Admin connections kept per target. Kairos's DDL is serialized per database anyway (see
/// the crate docs), so a few connections suffice.
const POOL_SIZE: u32 = 4;

/// Key of the transaction-level advisory lock that serializes Kairos's role DDL within one
/// database ("kairos" in ASCII). Concurrent GRANTs or DROP OWNEDs touching the same object
/// otherwise fail with "tuple concurrently updated".
const DDL_LOCK_KEY: i64 = 0x6b61_6972_6f73;

/// How to reach one PostgreSQL target.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// The target's name in Kairos's configuration (used in errors and logs).
    pub target: String,
    /// `postgres://user:password@host:port/database[?sslmode=…]` of a role with CREATEROLE,
    /// `pg_signal_backend` and the grant option on what the templates grant.
    pub admin_url: SecretString,
    /// Every account Kairos creates here starts with it; Kairos never touches other roles.
    pub managed_prefix: String,
    /// The host workloads should connect to; default the admin URL's host.
    pub connect_host: Option<String>,
}

impl PostgresSettings {
    /// Settings with the default prefix (`kairos_`) and the admin URL's host for workloads.
    pub fn new(target: impl Into<String>, admin_url: SecretString) -> Self {
        Self {
            target: target.into(),
            admin_url,
            managed_prefix: DEFAULT_MANAGED_PREFIX.to_owned(),
            connect_host: None,
        }
    }
}

/// The connector for one PostgreSQL target (one admin URL, hence one database). See the
/// crate documentation for what each operation does.
pub struct PostgresConnector {
    target: String,
    prefix: String,
    pool: PgPool,
    /// The admin URL's options (password included): the base of verification logins.
    admin: PgConnectOptions,
    connect_host: String,
    port: u16,
    database: String,
}

/// Deliberately hand-written: `PgConnectOptions`'s derived `Debug` would print the password.
impl fmt::Debug for PostgresConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnector")
            .field("target", &self.target)
            .field("managed_prefix", &self.prefix)
            .field("host", &self.admin.get_host())
            .field("port", &self.port)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl PostgresConnector {
    /// Checks the settings and prepares a lazily connecting pool: nothing is contacted here,
    /// so a target that is down does not block start-up. Must be called inside a Tokio
    /// runtime (the pool spawns its maintenance task); outside one it returns `Failed`.
    pub fn new(settings: PostgresSettings) -> Result<Self, ConnectorError> {
        let PostgresSettings {
            target,
            admin_url,
            managed_prefix,
            connect_host,
        } = settings;
        let failed = |reason: String| ConnectorError::Failed {
            target: target.clone(),
            reason,
        };

        let prefix_ok = !managed_prefix.is_empty()
            && managed_prefix.len() < 63
            && managed_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !prefix_ok {
            return Err(failed(format!(
                "managed prefix {managed_prefix:?} must be 1-62 characters of a-z, 0-9 and _ \
                 (an empty prefix would make every role look managed)"
            )));
        }

        // The parse error is not quoted: it could echo part of the URL.
        let mut admin = PgConnectOptions::from_str(admin_url.expose_secret())
            .map_err(|_| {
                failed(
                    "the admin URL is not a valid postgres://user:password@host:port/database URL \
                     (not shown: it holds a password)"
                        .to_owned(),
                )
            })?
            // Statements carry SCRAM verifiers; keep them out of Kairos's logs.
            .disable_statement_logging();
        if admin.get_application_name().is_none() {
            // So a DBA can tell Kairos's sessions apart in pg_stat_activity.
            admin = admin.application_name("kairos");
        }

        if tokio::runtime::Handle::try_current().is_err() {
            return Err(failed(
                "PostgresConnector::new must be called inside a Tokio runtime".to_owned(),
            ));
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(0)
            // The deadline covers connecting too: sqlx retries a refused connection until it.
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(admin.clone());

        // PostgreSQL's default database is the user's name.
        let database = admin
            .get_database()
            .unwrap_or(admin.get_username())
            .to_owned();
        Ok(Self {
            connect_host: connect_host.unwrap_or_else(|| admin.get_host().to_owned()),
            port: admin.get_port(),
            database,
            admin,
            pool,
            prefix: managed_prefix,
            target,
        })
    }

    fn err(&self, doing: &str, e: &sqlx::Error) -> ConnectorError {
        classify(&self.target, doing, e)
    }

    fn failed(&self, reason: String) -> ConnectorError {
        ConnectorError::Failed {
            target: self.target.clone(),
            reason,
        }
    }

    /// Kairos only ever touches roles with its prefix (so a stray `postgres` can't be dropped).
    fn ensure_managed(&self, account: &AccountName) -> Result<(), ConnectorError> {
        if account.has_prefix(&self.prefix) {
            Ok(())
        } else {
            Err(self.failed(format!(
                "account {account} lacks the managed prefix {:?}; Kairos only manages its own roles",
                self.prefix
            )))
        }
    }

    /// The role's OID, or None if it does not exist.
    async fn role_oid(
        &self,
        conn: &mut PgConnection,
        account: &AccountName,
    ) -> Result<Option<i64>, ConnectorError> {
        sqlx::query_scalar("SELECT oid::int8 FROM pg_roles WHERE rolname = $1")
            .bind(account.as_str())
            .fetch_optional(conn)
            .await
            .map_err(|e| self.err(&format!("looking up role {account}"), &e))
    }

    /// Terminates every backend logged in as the role with this OID (by OID, so it works
    /// after the role is dropped too). Returns how many were signalled.
    async fn kill_sessions(
        &self,
        conn: &mut PgConnection,
        oid: i64,
    ) -> Result<u64, ConnectorError> {
        // pg_terminate_backend runs only on the rows the WHERE clause selected.
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
             FROM pg_stat_activity WHERE usesysid = $1::int8::oid AND pid <> pg_backend_pid()",
        )
        .bind(oid)
        .fetch_one(conn)
        .await
        .map_err(|e| self.err("terminating sessions", &e))?;
        Ok(u64::try_from(killed).unwrap_or(0))
    }

    fn salt(&self) -> Result<[u8; SCRAM_SALT_LEN], ConnectorError> {
        let mut salt = [0u8; SCRAM_SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| self.failed("the system random generator failed".to_owned()))?;
        Ok(salt)
    }
}

/// Runs one statement as an unnamed prepared statement (extended protocol), so the server
/// refuses a text that holds more than one command.
async fn execute(conn: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    sqlx::query(statement)
        .persistent(false)
        .execute(conn)
        .await
        .map(|_| ())
}

async fn lock_ddl(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(DDL_LOCK_KEY)
        .execute(conn)
        .await
        .map(|_| ())
}

/// What a verification login observed.
enum Login {
    Refused(String),
    Accepted,
}

#[async_trait]
impl Connector for PostgresConnector {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn revocability(&self) -> Revocability {
        Revocability {
            revocable: true,
            kills_sessions: true,
            native_expiry: Some(
                "PostgreSQL refuses logins after VALID UNTIL (the grant's end), even if Kairos \
                 is down; sessions opened before stay until killed"
                    .to_owned(),
            ),
        }
    }

    fn managed_prefix(&self) -> &str {
        &self.prefix
    }

    async fn provision(&self, req: &AccountRequest<'_>) -> Result<ConnectionInfo, ConnectorError> {
        let account = req.account;
        self.ensure_managed(account)?;
        let role = quote_ident(account.as_str());
        let grants = render_privileges(req.privileges, &role)?;

        let password = req.password.expose_secret();
        if !password.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(self.failed(format!(
                "the password for {account} must be printable ASCII (the SCRAM verifier is \
                 computed without SASLprep)"
            )));
        }
        let verifier = scram_sha256_verifier(password, &self.salt()?, SCRAM_ITERATIONS);
        let credentials = format!(
            "LOGIN PASSWORD {} VALID UNTIL {}",
            quote_literal(&verifier),
            quote_literal(&req.valid_until.to_rfc3339())
        );

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.err("connecting", &e))?;
        lock_ddl(&mut tx)
            .await
            .map_err(|e| self.err("taking Kairos's DDL lock", &e))?;
        let existed = self.role_oid(&mut tx, account).await?.is_some();
        let (verb, doing) = if existed {
            ("ALTER", format!("updating existing role {account}"))
        } else {
            ("CREATE", format!("creating role {account}"))
        };
        execute(&mut tx, &format!("{verb} ROLE {role} WITH {credentials}"))
            .await
            .map_err(|e| self.err(&doing, &e))?;

        for (i, grant) in grants.iter().enumerate() {
            if let Err(e) = execute(&mut tx, grant).await {
                // Class 42 (syntax error, unknown object, several commands in one template…)
                // is the template's fault; insufficient_privilege is the admin's.
                let code = sqlstate(&e);
                return Err(match code.as_deref() {
                    Some(c) if c.starts_with("42") && c != "42501" => {
                        ConnectorError::BadPrivileges(format!(
                            "privilege template #{} for target {} was refused: {}; the whole provisioning was rolled back",
                            i + 1,
                            self.target,
                            describe(&e)
                        ))
                    }
                    _ => self.err(&format!("running privilege template #{}", i + 1), &e),
                });
            }
        }
        tx.commit()
            .await
            .map_err(|e| self.err(&format!("committing role {account}"), &e))?;
        tracing::info!(target_name = %self.target, %account, converged = existed, "provisioned PostgreSQL role");

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
        self.ensure_managed(account)?;
        let statement = format!(
            "ALTER ROLE {} VALID UNTIL {}",
            quote_ident(account.as_str()),
            quote_literal(&valid_until.to_rfc3339())
        );
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.err("connecting", &e))?;
        match execute(&mut conn, &statement).await {
            Ok(()) => Ok(()),
            Err(e) if sqlstate(&e).as_deref() == Some("42704") => Err(self.failed(format!(
                "cannot renew {account}: the role does not exist (revoked, or never provisioned)"
            ))),
            Err(e) => Err(self.err(&format!("renewing {account}"), &e)),
        }
    }

    async fn revoke(&self, account: &AccountName) -> Result<Revoked, ConnectorError> {
        self.ensure_managed(account)?;
        let role = quote_ident(account.as_str());
        let gone = Revoked {
            sessions_killed: 0,
            account_existed: false,
        };
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.err("connecting", &e))?;
        let Some(oid) = self.role_oid(&mut conn, account).await? else {
            return Ok(gone);
        };

        // 1. No new logins (committed at once, before the sessions are killed).
        if let Err(e) = execute(&mut conn, &format!("ALTER ROLE {role} NOLOGIN")).await {
            return match sqlstate(&e).as_deref() {
                Some("42704") => Ok(gone), // a concurrent revoke got there first
                _ => Err(self.err(&format!("disabling logins of {account}"), &e)),
            };
        }
        // 2. Live sessions, in every database of the cluster.
        let mut sessions_killed = self.kill_sessions(&mut conn, oid).await?;

        // 3. Its objects go to the admin, its privileges go, then the role.
        let drop_role = async {
            let mut tx = Connection::begin(&mut *conn).await?;
            lock_ddl(&mut tx).await?;
            execute(
                &mut tx,
                &format!("REASSIGN OWNED BY {role} TO CURRENT_USER"),
            )
            .await?;
            execute(&mut tx, &format!("DROP OWNED BY {role}")).await?;
            execute(&mut tx, &format!("DROP ROLE IF EXISTS {role}")).await?;
            tx.commit().await
        };
        if let Err(e) = drop_role.await {
            return match sqlstate(&e).as_deref() {
                Some("42704") => Ok(Revoked {
                    sessions_killed,
                    account_existed: false,
                }),
                Some("2BP01") => Err(self.failed(format!(
                    "dropping role {account}: {}; REASSIGN/DROP OWNED only act in database {}, \
                     so the role still owns or holds privileges in another database",
                    describe(&e),
                    self.database
                ))),
                _ => Err(self.err(&format!("dropping role {account}"), &e)),
            };
        }

        // 4. A login that passed authentication just before step 1 may have started since.
        sessions_killed += self.kill_sessions(&mut conn, oid).await?;
        tracing::info!(target_name = %self.target, %account, sessions_killed, "revoked PostgreSQL role");
        Ok(Revoked {
            sessions_killed,
            account_existed: true,
        })
    }

    async fn verify_gone(
        &self,
        account: &AccountName,
        password: Option<&SecretString>,
    ) -> Result<Verification, ConnectorError> {
        self.ensure_managed(account)?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.err("connecting", &e))?;
        if self.role_oid(&mut conn, account).await?.is_some() {
            return Err(ConnectorError::StillPresent(format!(
                "role {account} still exists in pg_roles on target {}",
                self.target
            )));
        }
        drop(conn);
        let catalog = format!("role {account} is absent from pg_roles");
        let Some(password) = password else {
            return Ok(Verification {
                method: "pg_roles".to_owned(),
                evidence: format!("{catalog} on target {}", self.target),
            });
        };

        let where_ = format!("{}:{}/{}", self.admin.get_host(), self.port, self.database);
        match self.login(account, password).await? {
            Login::Accepted => Err(ConnectorError::StillPresent(format!(
                "{catalog}, yet a login as {account} to {where_} with its password succeeded"
            ))),
            Login::Refused(why) => Ok(Verification {
                method: "pg_roles+login".to_owned(),
                evidence: format!(
                    "{catalog} on target {} and a fresh login as {account} with its password \
                     to {where_} was refused: {why}",
                    self.target
                ),
            }),
        }
    }

    async fn list_managed(&self) -> Result<Vec<AccountName>, ConnectorError> {
        // starts_with, not LIKE: `_` in the prefix would be a wildcard.
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname",
        )
        .bind(&self.prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err("listing managed roles", &e))?;
        Ok(names
            .into_iter()
            .filter_map(|name| match AccountName::parse(name) {
                Ok(account) => Some(account),
                Err(e) => {
                    tracing::warn!(target_name = %self.target, error = %e, "skipping a role with the managed prefix that is not a valid account name");
                    None
                }
            })
            .collect())
    }
}

impl PostgresConnector {
    /// A fresh connection (not pooled) as `account`, to the admin URL's host, port, database
    /// and TLS settings.
    async fn login(
        &self,
        account: &AccountName,
        password: &SecretString,
    ) -> Result<Login, ConnectorError> {
        let options = self
            .admin
            .clone()
            .username(account.as_str())
            .password(password.expose_secret());
        let doing = format!("logging in as {account} to verify");
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Err(_elapsed) => Err(ConnectorError::Unreachable {
                target: self.target.clone(),
                reason: format!("{doing}: no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            }),
            Ok(Ok(conn)) => {
                // Best effort: the server ends the session when the socket closes anyway.
                if let Err(e) = conn.close().await {
                    tracing::debug!(error = %describe(&e), "closing the verification login");
                }
                Ok(Login::Accepted)
            }
            Ok(Err(e)) if is_login_refused(&e) => Ok(Login::Refused(describe(&e))),
            Ok(Err(e)) if is_unreachable(&e) => Err(self.err(&doing, &e)),
            // Anything else (too many connections, database gone…) proves nothing.
            Ok(Err(e)) => Err(self.failed(format!(
                "{doing}: {} (the login was neither refused nor accepted, so nothing is verified)",
                describe(&e)
            ))),
        }
    }
}
