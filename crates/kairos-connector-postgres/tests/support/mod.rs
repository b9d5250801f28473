//! Real PostgreSQL for the connector tests: a throwaway database on the shared server, and
//! private instances started with `initdb`/`pg_ctl` for what the shared server can't show.

#![allow(dead_code)]

pub use kairos_testkit::{PgAuth, PrivatePg, free_port};

use std::str::FromStr;

use kairos_connector_postgres::{PostgresConnector, PostgresSettings};
use kairos_connectors::{AccountName, AccountRequest, Privileges};
use kairos_domain::{Clock, SystemClock, Timestamp};
use secrecy::SecretString;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::time::Duration;

/// The shared server: trust authentication, superuser `postgres`. A wrong password still
/// logs in there, so password checks happen on a [`PrivatePg`].
pub const SHARED_HOST: &str = "127.0.0.1";
pub const SHARED_PORT: u16 = 5432;

pub fn random_hex(len: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..len].to_owned()
}

/// A random 64-character password (what the broker would hand out).
pub fn password() -> SecretString {
    SecretString::from(format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    ))
}

pub fn now() -> Timestamp {
    SystemClock.now()
}

pub fn in_one_hour() -> Timestamp {
    now().plus(Duration::from_secs(3600))
}

pub fn sql(templates: &[&str]) -> Privileges {
    Privileges::Sql(templates.iter().map(|t| (*t).to_owned()).collect())
}

pub fn request<'a>(
    account: &'a AccountName,
    password: &'a SecretString,
    privileges: &'a Privileges,
    valid_until: Timestamp,
) -> AccountRequest<'a> {
    AccountRequest {
        account,
        password,
        valid_until,
        privileges,
    }
}

/// Logs in as `user` (a fresh connection, no pool), statement logging off.
pub async fn login(
    host: &str,
    port: u16,
    database: &str,
    user: &str,
    password: &str,
) -> Result<PgConnection, sqlx::Error> {
    let options = PgConnectOptions::new()
        .host(host)
        .port(port)
        .database(database)
        .username(user)
        .password(password)
        .disable_statement_logging();
    PgConnection::connect_with(&options).await
}

pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// A database `kairos_ct_<uuid>` on the shared server with a table `t (id, v)` holding one
/// row, and a random managed prefix `kt<8 hex>_` for this test alone (roles are
/// cluster-global). Dropping it drops the database (WITH (FORCE)), a second one named
/// `<name>_other` if a test made it, and every role whose name starts with the prefix's
/// stem `kt<8 hex>`.
pub struct TestDb {
    pub name: String,
    pub prefix: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let db = Self {
            name: format!("kairos_ct_{}", uuid::Uuid::new_v4().simple()),
            prefix: format!("kt{}_", random_hex(8)),
        };
        let mut server = db.admin_to("postgres").await;
        run(&mut server, &format!("CREATE DATABASE {}", db.name)).await;
        let mut conn = db.admin().await;
        run(&mut conn, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
        run(&mut conn, "INSERT INTO t VALUES (1, 'one')").await;
        db
    }

    pub fn admin_url(&self) -> SecretString {
        SecretString::from(format!(
            "postgres://postgres@{SHARED_HOST}:{SHARED_PORT}/{}",
            self.name
        ))
    }

    pub fn settings(&self) -> PostgresSettings {
        PostgresSettings {
            target: "pg-test".to_owned(),
            admin_url: self.admin_url(),
            managed_prefix: self.prefix.clone(),
            connect_host: None,
            scram_iterations: kairos_connector_postgres::SCRAM_ITERATIONS,
        }
    }

    pub fn connector(&self) -> PostgresConnector {
        PostgresConnector::new(self.settings()).unwrap()
    }

    pub fn account(&self, suffix: &str) -> AccountName {
        AccountName::parse(format!("{}{suffix}", self.prefix)).unwrap()
    }

    /// The prefix without its trailing `_`: cleanup drops every role that starts with it.
    pub fn stem(&self) -> &str {
        self.prefix.trim_end_matches('_')
    }

    /// A superuser connection to the test database.
    pub async fn admin(&self) -> PgConnection {
        self.admin_to(&self.name).await
    }

    async fn admin_to(&self, database: &str) -> PgConnection {
        login(SHARED_HOST, SHARED_PORT, database, "postgres", "")
            .await
            .unwrap()
    }

    pub async fn role_exists(&self, role: &str) -> bool {
        let mut conn = self.admin().await;
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }

    pub async fn table_exists(&self, table: &str) -> bool {
        let mut conn = self.admin().await;
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }

    async fn cleanup(name: String, stem: String) {
        let Ok(mut conn) = login(SHARED_HOST, SHARED_PORT, "postgres", "postgres", "").await else {
            eprintln!("cleanup: cannot reach the shared server; {name} and roles {stem}* remain");
            return;
        };
        // The test database, and the second one a test may make beside it (`<name>_other`:
        // its objects would keep the roles from being dropped).
        for database in [format!("{name}_other"), name.clone()] {
            let drop_db = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
            if let Err(e) = sqlx::query(&drop_db).execute(&mut conn).await {
                eprintln!("cleanup: {drop_db}: {e}");
            }
        }
        let roles: Vec<String> =
            sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)")
                .bind(&stem)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
        for role in roles {
            let _ = sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            )
            .bind(&role)
            .execute(&mut conn)
            .await;
            let drop_role = format!("DROP ROLE IF EXISTS \"{role}\"");
            if let Err(e) = sqlx::query(&drop_role).execute(&mut conn).await {
                eprintln!("cleanup: {drop_role}: {e}");
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop can't await: clean up on a thread with its own runtime (also works while the
        // test's runtime is still running, or unwinding from a failed assertion).
        let (name, stem) = (self.name.clone(), self.stem().to_owned());
        let cleanup =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(Self::cleanup(name, stem)),
                    Err(e) => eprintln!("cleanup: no runtime: {e}"),
                }
            });
        let _ = cleanup.join();
    }
}

pub async fn run(conn: &mut PgConnection, statement: &str) {
    sqlx::query(statement)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// The private-cluster conveniences these tests use, over the shared [`PrivatePg`]
/// (started with [`PgAuth::AdminPassword`]: every login needs its password).
pub trait PrivatePgExt {
    fn url(&self, user: &str, password: &str, database: &str) -> SecretString;
    fn admin_url(&self) -> SecretString;
    async fn admin(&self) -> PgConnection;
    async fn login(&self, user: &str, password: &str) -> Result<PgConnection, sqlx::Error>;
}

impl PrivatePgExt for PrivatePg {
    fn url(&self, user: &str, password: &str, database: &str) -> SecretString {
        SecretString::from(format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        ))
    }

    fn admin_url(&self) -> SecretString {
        self.url(Self::ADMIN, Self::ADMIN_PASSWORD, "postgres")
    }

    async fn admin(&self) -> PgConnection {
        let opts =
            PgConnectOptions::from_str(secrecy::ExposeSecret::expose_secret(&self.admin_url()))
                .unwrap()
                .disable_statement_logging();
        PgConnection::connect_with(&opts).await.unwrap()
    }

    async fn login(&self, user: &str, password: &str) -> Result<PgConnection, sqlx::Error> {
        login("127.0.0.1", self.port, "postgres", user, password).await
    }
}
