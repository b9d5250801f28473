//! Real PostgreSQL for the connector tests: a throwaway database on the shared server, and
//! private instances started with `initdb`/`pg_ctl` for what the shared server can't show.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, chown};
use std::path::PathBuf;
use std::process::{Command, Output};
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

/// A port nothing listens on (bound once by the OS, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A database `kairos_ct_<uuid>` on the shared server with a table `t (id, v)` holding one
/// row, and a random managed prefix `kt<8 hex>_` for this test alone (roles are
/// cluster-global). Dropping it drops the database (WITH (FORCE)) and every role whose
/// name starts with the prefix's stem `kt<8 hex>`.
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
        let drop_db = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        if let Err(e) = sqlx::query(&drop_db).execute(&mut conn).await {
            eprintln!("cleanup: {drop_db}: {e}");
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

/// A private PostgreSQL cluster (`initdb` + `pg_ctl` from `pg_config --bindir`) with
/// `scram-sha-256` authentication, superuser [`PrivatePg::ADMIN`] with
/// [`PrivatePg::ADMIN_PASSWORD`], listening on 127.0.0.1 on a free port and on a Unix
/// socket inside its temporary directory. Stopped (`-m immediate`) when dropped.
///
/// initdb and postgres refuse to run as root. When the tests run as root, the temporary
/// directory is chowned to the `postgres` system user and every server command runs
/// through `runuser -u postgres --`; otherwise they run as the current user.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    pub port: u16,
}

impl PrivatePg {
    pub const ADMIN: &str = "kairos_admin";
    pub const ADMIN_PASSWORD: &str = "private-admin-pw-3b1f9c";

    pub fn start() -> Self {
        let bindir = PathBuf::from(stdout(
            Command::new("pg_config").arg("--bindir").output().unwrap(),
        ));
        let dir = tempfile::Builder::new()
            .prefix("kairos-pg-")
            .tempdir()
            .unwrap();
        let owner = server_user();
        std::fs::write(dir.path().join("pwfile"), Self::ADMIN_PASSWORD).unwrap();
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        if let Some((uid, gid)) = owner {
            for p in ["", "pwfile", "sock"] {
                chown(dir.path().join(p), Some(uid), Some(gid)).unwrap();
            }
        }
        let mut pg = Self {
            dir,
            bindir,
            port: 0,
        };
        let data = pg.data();
        let pwfile = pg.dir.path().join("pwfile");
        pg.server_cmd("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", Self::ADMIN, "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .check();

        // A free port can be taken between the probe and the bind: try a few.
        for _ in 0..5 {
            pg.port = free_port();
            if pg.pg_ctl_start().status.success() {
                return pg;
            }
        }
        panic!("private PostgreSQL did not start:\n{}", pg.log());
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A command for one of the server binaries, as the `postgres` user when we are root.
    fn server_cmd(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        match server_user() {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn pg_ctl_start(&self) -> Output {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().join("sock").display()
        );
        self.server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .unwrap()
    }

    /// Starts the instance again after [`PrivatePg::stop`] (same port and data).
    pub fn restart(&self) {
        let out = self.pg_ctl_start();
        assert!(out.status.success(), "restart failed:\n{}", self.log());
    }

    pub fn stop(&self) {
        self.server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .check();
    }

    pub fn url(&self, user: &str, password: &str, database: &str) -> SecretString {
        SecretString::from(format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        ))
    }

    pub fn admin_url(&self) -> SecretString {
        self.url(Self::ADMIN, Self::ADMIN_PASSWORD, "postgres")
    }

    pub async fn admin(&self) -> PgConnection {
        let opts =
            PgConnectOptions::from_str(secrecy::ExposeSecret::expose_secret(&self.admin_url()))
                .unwrap()
                .disable_statement_logging();
        PgConnection::connect_with(&opts).await.unwrap()
    }

    pub async fn login(&self, user: &str, password: &str) -> Result<PgConnection, sqlx::Error> {
        login("127.0.0.1", self.port, "postgres", user, password).await
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// `Some((uid, gid))` of the `postgres` system user when we run as root (the server
/// binaries must then run as that user), None otherwise.
fn server_user() -> Option<(u32, u32)> {
    let me = std::fs::metadata("/proc/self").ok()?;
    if me.uid() != 0 {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        stdout(out).parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

trait Check {
    fn check(&mut self);
}

impl Check for Command {
    fn check(&mut self) {
        let out = self.output().unwrap();
        assert!(
            out.status.success(),
            "{:?} failed:\n{}{}",
            self,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
