use std::collections::{HashMap, HashSet};
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kairos_connectors::{
    AccountName, AccountRequest, ConnectionInfo, Connector, ConnectorError, Revocability, Revoked,
    ServerFacts, ServerIdentity, Session, Verification,
};
use kairos_domain::Timestamp;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::{mpsc, oneshot};

use crate::batch::Provision;

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
pub(crate) const DDL_LOCK_KEY: i64 = 0x6b61_6972_6f73;

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
    /// The PBKDF2 iteration count of the SCRAM-SHA-256 verifiers of the accounts' passwords
    /// (see [`crate::scram::SCRAM_ITERATIONS`] for the default and what a lower one costs
    /// and buys).
    pub scram_iterations: NonZeroU32,
}

impl PostgresSettings {
    /// Settings with the default prefix (`kairos_`), the admin URL's host for workloads and
    /// PostgreSQL's own SCRAM iteration count.
    pub fn new(target: impl Into<String>, admin_url: SecretString) -> Self {
        Self {
            target: target.into(),
            admin_url,
            managed_prefix: DEFAULT_MANAGED_PREFIX.to_owned(),
            connect_host: None,
            scram_iterations: SCRAM_ITERATIONS,
        }
    }
}

/// The connector for one PostgreSQL target (one admin URL, hence one database). See the
/// crate documentation for what each operation does.
pub struct PostgresConnector {
    core: Arc<Core>,
    prefix: String,
    /// Provisioning requests waiting for the batching worker (see [`crate::batch`]).
    provisions: mpsc::Sender<Provision>,
    /// The admin URL's options (password included): the base of verification logins.
    admin: PgConnectOptions,
    connect_host: String,
    port: u16,
    database: String,
    scram_iterations: NonZeroU32,
}

/// Deliberately hand-written: `PgConnectOptions`'s derived `Debug` would print the password.
impl fmt::Debug for PostgresConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnector")
            .field("target", &self.core.target)
            .field("managed_prefix", &self.prefix)
            .field("host", &self.admin.get_host())
            .field("port", &self.port)
            .field("database", &self.database)
            .field("scram_iterations", &self.scram_iterations)
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
            scram_iterations,
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
        let core = Arc::new(Core {
            target,
            pool,
            proven: std::sync::Mutex::default(),
        });
        Ok(Self {
            connect_host: connect_host.unwrap_or_else(|| admin.get_host().to_owned()),
            port: admin.get_port(),
            database,
            admin,
            scram_iterations,
            provisions: crate::batch::start_provisioner(Arc::clone(&core)),
            core,
            prefix: managed_prefix,
        })
    }

    fn err(&self, doing: &str, e: &sqlx::Error) -> ConnectorError {
        self.core.err(doing, e)
    }

    fn failed(&self, reason: String) -> ConnectorError {
        self.core.failed(reason)
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

    fn salt(&self) -> Result<[u8; SCRAM_SALT_LEN], ConnectorError> {
        let mut salt = [0u8; SCRAM_SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| self.failed("the system random generator failed".to_owned()))?;
        Ok(salt)
    }
}

/// What the connector and its provisioning worker share.
pub(crate) struct Core {
    /// The target's name in Kairos's configuration (used in errors and logs).
    pub(crate) target: String,
    pub(crate) pool: PgPool,
    /// Privilege templates (as configured, before rendering) that the server has run as one
    /// prepared statement: each is one command. See [`crate::batch`].
    pub(crate) proven: std::sync::Mutex<HashSet<String>>,
}

impl Core {
    pub(crate) fn err(&self, doing: &str, e: &sqlx::Error) -> ConnectorError {
        classify(&self.target, doing, e)
    }

    pub(crate) fn failed(&self, reason: String) -> ConnectorError {
        ConnectorError::Failed {
            target: self.target.clone(),
            reason,
        }
    }

    /// Creates (or converges) one role in its own transaction. Returns whether it existed.
    pub(crate) async fn provision_one(&self, job: &Provision) -> Result<bool, ConnectorError> {
        let account = &job.account;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.err("connecting", &e))?;
        lock_ddl(&mut tx)
            .await
            .map_err(|e| self.err("taking Kairos's DDL lock", &e))?;
        let existed =
            sqlx::query_scalar::<_, i64>("SELECT oid::int8 FROM pg_roles WHERE rolname = $1")
                .bind(account.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(&format!("looking up role {account}"), &e))?
                .is_some();
        let (verb, doing) = if existed {
            ("ALTER", format!("updating existing role {account}"))
        } else {
            ("CREATE", format!("creating role {account}"))
        };
        execute(
            &mut tx,
            &format!("{verb} ROLE {} WITH {}", job.role, job.credentials),
        )
        .await
        .map_err(|e| self.err(&doing, &e))?;
        for (i, grant) in job.grants.iter().enumerate() {
            if let Err(e) = execute(&mut tx, grant).await {
                return Err(self.template_error(i, &e));
            }
        }
        tx.commit()
            .await
            .map_err(|e| self.err(&format!("committing role {account}"), &e))?;
        if let Ok(mut proven) = self.proven.lock() {
            proven.extend(job.templates.iter().cloned());
        }
        Ok(existed)
    }

    /// Class 42 (syntax error, unknown object, several commands in one template…) is the
    /// template's fault; insufficient_privilege is the admin's.
    pub(crate) fn template_error(&self, i: usize, e: &sqlx::Error) -> ConnectorError {
        match sqlstate(e).as_deref() {
            Some(c) if c.starts_with("42") && c != "42501" => {
                ConnectorError::BadPrivileges(format!(
                    "privilege template #{} for target {} was refused: {}; the whole provisioning was rolled back",
                    i + 1,
                    self.target,
                    describe(e)
                ))
            }
            _ => self.err(&format!("running privilege template #{}", i + 1), e),
        }
    }
}

/// For an error that says the target cannot be reached or refuses Kairos's admin
/// connection, the same error again (for each account of a batch); None for others.
pub(crate) fn unreachable_again(e: &ConnectorError) -> Option<ConnectorError> {
    match e {
        ConnectorError::Unreachable { target, reason } => Some(ConnectorError::Unreachable {
            target: target.clone(),
            reason: reason.clone(),
        }),
        ConnectorError::AdminRefused { target, reason } => Some(ConnectorError::AdminRefused {
            target: target.clone(),
            reason: reason.clone(),
        }),
        _ => None,
    }
}

/// Runs several statements Kairos generated itself (quoted identifiers and literals only,
/// never a configured template) in one simple-protocol round trip.
pub(crate) async fn execute_generated(
    conn: &mut PgConnection,
    sql: &str,
) -> Result<(), sqlx::Error> {
    // Without bind arguments sqlx sends the text as one simple-protocol query.
    sqlx::Executor::execute(conn, sql).await.map(|_| ())
}

/// The OIDs of the roles among `names` that exist.
async fn roles_named(
    conn: &mut PgConnection,
    names: Vec<String>,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    // Owned binds: a borrowed slice trips rustc's higher-ranked Send inference here.
    sqlx::query_as("SELECT oid::int8, rolname::text FROM pg_roles WHERE rolname = ANY($1)")
        .bind(names)
        .fetch_all(conn)
        .await
}

/// Terminates the backends of the roles with these OIDs (by OID, so it works after the
/// roles are dropped too); (oid, pid) of each backend signalled.
async fn terminate_backends(
    conn: &mut PgConnection,
    oids: Vec<i64>,
) -> Result<Vec<(i64, i32)>, sqlx::Error> {
    // Materialized, so pg_terminate_backend runs only on the rows selected first.
    sqlx::query_as(
        "WITH s AS MATERIALIZED ( \
           SELECT usesysid, pid FROM pg_stat_activity \
           WHERE usesysid = ANY($1::int8[]::oid[]) AND pid <> pg_backend_pid()) \
         SELECT usesysid::int8, pid FROM s WHERE pg_terminate_backend(pid)",
    )
    .bind(oids)
    .fetch_all(conn)
    .await
}

/// Drops the roles of `list` (quoted identifiers, comma-separated) in one transaction
/// under Kairos's DDL lock: what they own goes to the admin, their privileges go, then they.
///
/// `DROP ROLE` is tried alone first, under a savepoint: PostgreSQL refuses it (2BP01) while
/// any of the roles owns an object or holds a privilege anywhere in the cluster, and a role
/// whose template only made it a member of a group role holds neither (the membership goes
/// with the role). `REASSIGN OWNED` and `DROP OWNED` would find nothing to do for such roles
/// but still scan the database's catalogs for each (about 20 of the 26 ms for 1,000 roles,
/// measured with `psql`, 2026-12-07). Refused, the transaction rolls back to the savepoint
/// and runs the whole sequence, as it always did; so the outcome is the same either way.
async fn drop_together(conn: &mut PgConnection, list: &str) -> Result<(), sqlx::Error> {
    let mut tx = Connection::begin(conn).await?;
    lock_ddl(&mut tx).await?;
    let alone = format!("SAVEPOINT kairos_drop; DROP ROLE IF EXISTS {list};");
    match execute_generated(&mut tx, &alone).await {
        Ok(()) => {}
        Err(e) if sqlstate(&e).as_deref() == Some("2BP01") => {
            execute_generated(
                &mut tx,
                &format!(
                    "ROLLBACK TO SAVEPOINT kairos_drop; REASSIGN OWNED BY {list} TO CURRENT_USER; \
                     DROP OWNED BY {list}; DROP ROLE IF EXISTS {list};"
                ),
            )
            .await?;
        }
        Err(e) => return Err(e),
    }
    tx.commit().await
}

/// Runs one statement as an unnamed prepared statement (extended protocol), so the server
/// refuses a text that holds more than one command.
pub(crate) async fn execute(conn: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    sqlx::query(statement)
        .persistent(false)
        .execute(conn)
        .await
        .map(|_| ())
}

pub(crate) async fn lock_ddl(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
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
        let templates = match req.privileges {
            kairos_connectors::Privileges::Sql(templates) => templates.clone(),
            kairos_connectors::Privileges::RedisAcl(_)
            | kairos_connectors::Privileges::RabbitMq(_) => Vec::new(),
        };

        let password = req.password.expose_secret();
        if !password.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(self.failed(format!(
                "the password for {account} must be printable ASCII (the SCRAM verifier is \
                 computed without SASLprep)"
            )));
        }
        let verifier = scram_sha256_verifier(password, &self.salt()?, self.scram_iterations);
        let credentials = format!(
            "LOGIN PASSWORD {} VALID UNTIL {}",
            quote_literal(&verifier),
            quote_literal(&req.valid_until.to_rfc3339())
        );
        let (reply, answer) = oneshot::channel();
        let job = Provision {
            account: account.clone(),
            role,
            credentials,
            grants,
            templates,
            reply,
        };
        let stopped = || self.failed("the provisioning worker has stopped".to_owned());
        self.provisions.send(job).await.map_err(|_| stopped())?;
        let existed = answer.await.map_err(|_| stopped())??;
        tracing::info!(target_name = %self.core.target, %account, converged = existed, "provisioned PostgreSQL role");

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
            .core
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
            .core
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
        let (mut signalled, mut killed) = (HashSet::new(), HashMap::new());
        self.kill_sessions_of(&mut conn, &[oid], &mut signalled, &mut killed)
            .await?;

        // 3. Its objects go to the admin, its privileges go, then the role.
        if let Err(e) = drop_together(&mut conn, &role).await {
            return match sqlstate(&e).as_deref() {
                Some("42704") => Ok(Revoked {
                    sessions_killed: killed.get(&oid).copied().unwrap_or(0),
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
        self.kill_sessions_of(&mut conn, &[oid], &mut signalled, &mut killed)
            .await?;
        let sessions_killed = killed.get(&oid).copied().unwrap_or(0);
        tracing::info!(target_name = %self.core.target, %account, sessions_killed, "revoked PostgreSQL role");
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
            .core
            .pool
            .acquire()
            .await
            .map_err(|e| self.err("connecting", &e))?;
        if self.role_oid(&mut conn, account).await?.is_some() {
            return Err(ConnectorError::StillPresent(format!(
                "role {account} still exists in pg_roles on target {}",
                self.core.target
            )));
        }
        drop(conn);
        let catalog = format!("role {account} is absent from pg_roles");
        let Some(password) = password else {
            return Ok(Verification {
                method: "pg_roles".to_owned(),
                evidence: format!("{catalog} on target {}", self.core.target),
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
                    self.core.target
                ),
            }),
        }
    }

    async fn server_facts(&self) -> Result<ServerFacts, ConnectorError> {
        // Two facts: the cluster's system identifier (fixed at initdb, kept across restarts;
        // executable by PUBLIC by default, but a DBA may revoke it) and the postmaster's start
        // time with its port (anyone may read them; unique to one running server). A target
        // whose admin reads only the second still matches one that reads both.
        let (readable, port, started): (bool, String, i64) = sqlx::query_as(
            "SELECT has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE'), \
             current_setting('port'), \
             (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::int8",
        )
        .fetch_one(&self.core.pool)
        .await
        .map_err(|e| self.err("asking which server this is", &e))?;
        let mut facts = vec![format!("postgres port {port} started {started}")];
        if readable {
            let id: String =
                sqlx::query_scalar("SELECT system_identifier::text FROM pg_control_system()")
                    .fetch_one(&self.core.pool)
                    .await
                    .map_err(|e| self.err("reading the system identifier", &e))?;
            facts.push(format!("postgres system_identifier {id}"));
        }
        Ok(ServerFacts {
            identity: ServerIdentity::new(facts),
            warnings: Vec::new(),
        })
    }

    async fn list_managed(&self) -> Result<Vec<AccountName>, ConnectorError> {
        // starts_with, not LIKE: `_` in the prefix would be a wildcard.
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname",
        )
        .bind(&self.prefix)
        .fetch_all(&self.core.pool)
        .await
        .map_err(|e| self.err("listing managed roles", &e))?;
        Ok(names
            .into_iter()
            .filter_map(|name| match AccountName::parse(name) {
                Ok(account) => Some(account),
                Err(e) => {
                    tracing::warn!(target_name = %self.core.target, error = %e, "skipping a role with the managed prefix that is not a valid account name");
                    None
                }
            })
            .collect())
    }

    async fn list_sessions(&self) -> Result<Vec<Session>, ConnectorError> {
        // Every database of the cluster: roles are cluster-wide, so are their sessions.
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT usename::text, host(client_addr) FROM pg_stat_activity \
             WHERE usename IS NOT NULL AND starts_with(usename, $1) \
             ORDER BY usename, pid",
        )
        .bind(&self.prefix)
        .fetch_all(&self.core.pool)
        .await
        .map_err(|e| self.err("listing managed roles' sessions", &e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, addr)| {
                let account = AccountName::parse(name).ok()?;
                Some(Session {
                    account,
                    client_addr: addr.and_then(|a| a.parse().ok()),
                })
            })
            .collect())
    }

    async fn revoke_many(&self, accounts: &[AccountName]) -> Vec<Result<Revoked, ConnectorError>> {
        if accounts.len() <= 1 {
            let mut out = Vec::with_capacity(1);
            for account in accounts {
                out.push(self.revoke(account).await);
            }
            return out;
        }
        let managed: Vec<&AccountName> = accounts
            .iter()
            .filter(|a| self.ensure_managed(a).is_ok())
            .collect();
        let together = self.revoke_together(&managed).await;
        let mut out = Vec::with_capacity(accounts.len());
        match together {
            Ok(mut done) => {
                for account in accounts {
                    out.push(self.ensure_managed(account).map(|()| {
                        done.remove(account.as_str()).unwrap_or(Revoked {
                            sessions_killed: 0,
                            account_existed: false,
                        })
                    }));
                }
            }
            // The target is down or refuses Kairos: one at a time would only wait for the
            // same answer once per account (a connect timeout each), holding up the pass.
            Err(e) if unreachable_again(&e).is_some() => {
                for _ in accounts {
                    out.push(Err(unreachable_again(&e).unwrap_or(
                        ConnectorError::Unreachable {
                            target: self.core.target.clone(),
                            reason: e.to_string(),
                        },
                    )));
                }
            }
            Err(e) => {
                // Whatever step failed, every step is idempotent: one at a time, each
                // account gets its own answer.
                tracing::debug!(target_name = %self.core.target, accounts = accounts.len(), error = %e,
                    "batched revocation failed; revoking one account at a time");
                for account in accounts {
                    out.push(self.revoke(account).await);
                }
            }
        }
        out
    }

    async fn verify_gone_many(
        &self,
        accounts: &[(AccountName, Option<SecretString>)],
    ) -> Vec<Result<Verification, ConnectorError>> {
        if accounts.len() <= 1 {
            let mut out = Vec::with_capacity(1);
            for (account, password) in accounts {
                out.push(self.verify_gone(account, password.as_ref()).await);
            }
            return out;
        }
        let names: Vec<String> = accounts
            .iter()
            .map(|(a, _)| a.as_str().to_owned())
            .collect();
        let present: HashSet<String> = match sqlx::query_scalar::<_, String>(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
        )
        .bind(names)
        .fetch_all(&self.core.pool)
        .await
        {
            Ok(rows) => rows.into_iter().collect(),
            Err(e) => {
                return accounts
                    .iter()
                    .map(|_| Err(self.err("looking up roles", &e)))
                    .collect();
            }
        };
        let where_ = format!("{}:{}/{}", self.admin.get_host(), self.port, self.database);
        let mut probes = 0;
        let mut probe_note: Option<String> = None;
        let mut out = Vec::with_capacity(accounts.len());
        for (account, password) in accounts {
            if let Err(e) = self.ensure_managed(account) {
                out.push(Err(e));
                continue;
            }
            if present.contains(account.as_str()) {
                out.push(Err(ConnectorError::StillPresent(format!(
                    "role {account} still exists in pg_roles on target {}",
                    self.core.target
                ))));
                continue;
            }
            let catalog = format!(
                "role {account} is absent from pg_roles on target {} (checked in one query with {} other account(s) revoked together)",
                self.core.target,
                accounts.len() - 1
            );
            let probe = match password {
                Some(password) if probes < LOGIN_PROBES_PER_BATCH => {
                    probes += 1;
                    Some(self.login(account, password).await)
                }
                _ => None,
            };
            out.push(match probe {
                Some(Ok(Login::Refused(why))) => {
                    probe_note.get_or_insert_with(|| {
                        format!("a login probe as {account} in the same batch was refused")
                    });
                    Ok(Verification {
                        method: "pg_roles+login".to_owned(),
                        evidence: format!(
                            "{catalog}, and a fresh login as {account} with its password to {where_} was refused: {why}"
                        ),
                    })
                }
                Some(Ok(Login::Accepted)) => Err(ConnectorError::StillPresent(format!(
                    "{catalog}, yet a login as {account} to {where_} with its password succeeded"
                ))),
                Some(Err(e)) => Err(e),
                None => Ok(Verification {
                    method: "pg_roles".to_owned(),
                    evidence: catalog,
                }),
            });
        }
        // Catalog-only evidence names the sample probe that backs it.
        if let Some(note) = probe_note {
            for v in out.iter_mut().flatten() {
                if v.method == "pg_roles" {
                    v.evidence = format!("{}; {note}", v.evidence);
                }
            }
        }
        out
    }
}

/// Logins probed per batch of verifications: each costs a connection and a SCRAM exchange
/// (milliseconds of CPU), so a batch of thousands checks the catalog for all and logs in
/// as a sample. A batch of one is always probed.
const LOGIN_PROBES_PER_BATCH: usize = 2;

impl PostgresConnector {
    /// Revokes every present account of `accounts` with one statement per step (see
    /// [`Connector::revoke`] for the steps). Returns what happened to each present account
    /// by name; absent ones are not in the map.
    async fn revoke_together(
        &self,
        accounts: &[&AccountName],
    ) -> Result<HashMap<String, Revoked>, ConnectorError> {
        let names: Vec<String> = accounts.iter().map(|a| a.as_str().to_owned()).collect();
        let mut conn = self
            .core
            .pool
            .acquire()
            .await
            .map_err(|e| self.err("connecting", &e))?;
        let present = roles_named(&mut conn, names)
            .await
            .map_err(|e| self.err("looking up roles", &e))?;
        if present.is_empty() {
            return Ok(HashMap::new());
        }
        let oids: Vec<i64> = present.iter().map(|(oid, _)| *oid).collect();
        let roles: Vec<String> = present.iter().map(|(_, name)| quote_ident(name)).collect();

        // 1. No new logins, for all of them at once (one implicit transaction).
        let nologin: String = roles
            .iter()
            .map(|r| format!("ALTER ROLE {r} NOLOGIN;\n"))
            .collect();
        execute_generated(&mut conn, &nologin)
            .await
            .map_err(|e| self.err("disabling logins", &e))?;
        // 2. Live sessions.
        let (mut signalled, mut killed) = (HashSet::new(), HashMap::new());
        self.kill_sessions_of(&mut conn, &oids, &mut signalled, &mut killed)
            .await?;
        // 3. Objects, privileges, roles.
        let list = roles.join(", ");
        drop_together(&mut conn, &list)
            .await
            .map_err(|e| self.err(&format!("dropping {} roles", roles.len()), &e))?;
        // 4. Logins that were past authentication during step 2.
        self.kill_sessions_of(&mut conn, &oids, &mut signalled, &mut killed)
            .await?;
        tracing::info!(target_name = %self.core.target, roles = present.len(), sessions_killed = killed.values().sum::<u64>(), "revoked PostgreSQL roles together");
        Ok(present
            .into_iter()
            .map(|(oid, name)| {
                let revoked = Revoked {
                    sessions_killed: killed.get(&oid).copied().unwrap_or(0),
                    account_existed: true,
                };
                (name, revoked)
            })
            .collect())
    }

    /// Terminates the backends of every role in `oids`, counting per role those not in
    /// `signalled` already (a backend still exiting from an earlier pass is listed again).
    async fn kill_sessions_of(
        &self,
        conn: &mut PgConnection,
        oids: &[i64],
        signalled: &mut HashSet<i32>,
        killed: &mut HashMap<i64, u64>,
    ) -> Result<(), ConnectorError> {
        let rows = terminate_backends(conn, oids.to_vec())
            .await
            .map_err(|e| self.err("terminating sessions", &e))?;
        for (oid, pid) in rows {
            if signalled.insert(pid) {
                *killed.entry(oid).or_default() += 1;
            }
        }
        Ok(())
    }

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
                target: self.core.target.clone(),
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
