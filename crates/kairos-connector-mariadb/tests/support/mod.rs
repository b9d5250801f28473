//! What the MariaDB connector tests share: the shared server, per-test prefixes and
//! databases cleaned up by drop guards, and a private `mariadbd` for the tests that stop
//! the server.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kairos_connector_mariadb::{MariaDbConnector, MariaDbSettings};
use kairos_connectors::{AccountName, AccountRequest, Privileges};
use kairos_domain::Timestamp;
use secrecy::SecretString;
use sqlx::ConnectOptions;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};

/// The shared server: root with an empty password.
pub const SHARED_HOST: &str = "127.0.0.1";
pub const SHARED_PORT: u16 = 3306;

pub fn hex8() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_millis(i64::try_from(ms).unwrap())
}

pub fn root_url(port: u16, database: &str) -> SecretString {
    SecretString::from(format!("mysql://root@{SHARED_HOST}:{port}/{database}"))
}

pub fn options(
    port: u16,
    user: &str,
    password: &str,
    database: Option<&str>,
) -> MySqlConnectOptions {
    let mut o = MySqlConnectOptions::new()
        .host(SHARED_HOST)
        .port(port)
        .username(user)
        .disable_statement_logging();
    // An empty password must not be sent as one (the server would say "using password: YES").
    if !password.is_empty() {
        o = o.password(password);
    }
    if let Some(db) = database {
        o = o.database(db);
    }
    o
}

pub async fn root(port: u16) -> MySqlConnection {
    options(port, "root", "", None).connect().await.unwrap()
}

pub async fn exec(conn: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(sql).execute(&mut *conn).await.unwrap();
}

/// The MariaDB error number of a failed query or login, if the server sent one.
pub fn mariadb_code(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|e| e.number()),
        _ => None,
    }
}

/// A login as `user`; `Err` carries the MariaDB error number (0 if none).
pub async fn login(
    port: u16,
    user: &str,
    password: &str,
    database: Option<&str>,
) -> Result<MySqlConnection, u16> {
    options(port, user, password, database)
        .connect()
        .await
        .map_err(|e| mariadb_code(&e).unwrap_or(0))
}

pub async fn users_with_prefix(conn: &mut MySqlConnection, prefix: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT CAST(User AS CHAR), CAST(Host AS CHAR) FROM mysql.user \
         WHERE LEFT(User, CHAR_LENGTH(?)) = ?",
    )
    .bind(prefix)
    .bind(prefix)
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

pub fn sql_privileges(templates: &[&str]) -> Privileges {
    Privileges::Sql(templates.iter().map(|s| (*s).to_owned()).collect())
}

pub fn request<'a>(
    account: &'a AccountName,
    password: &'a SecretString,
    valid_until: Timestamp,
    privileges: &'a Privileges,
) -> AccountRequest<'a> {
    AccountRequest {
        account,
        password,
        valid_until,
        privileges,
    }
}

/// Runs async clean-up from `Drop` (which may run on a runtime thread) on a thread with
/// its own runtime.
/// The future is made on that thread, so it need not be `Send`.
fn block_on_thread<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let handle = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(make())
    });
    let _ = handle.join();
}

/// Drops every user and event with `prefix` and the given databases, on the server at
/// `port`. Best effort.
async fn clean(port: u16, prefix: String, databases: Vec<String>) {
    let Ok(mut conn) = options(port, "root", "", None).connect().await else {
        return;
    };
    let users = users_with_prefix(&mut conn, &prefix).await;
    for (user, host) in users {
        let _ = sqlx::raw_sql(&format!("DROP USER IF EXISTS '{user}'@'{host}'"))
            .execute(&mut conn)
            .await;
    }
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(EVENT_SCHEMA AS CHAR), CAST(EVENT_NAME AS CHAR) FROM information_schema.EVENTS \
         WHERE LEFT(EVENT_NAME, CHAR_LENGTH(?)) = ?",
    )
    .bind(&prefix)
    .bind(&prefix)
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for (schema, name) in events {
        let _ = sqlx::raw_sql(&format!("DROP EVENT IF EXISTS `{schema}`.`{name}`"))
            .execute(&mut conn)
            .await;
    }
    for db in databases {
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
            .execute(&mut conn)
            .await;
    }
}

/// One test's world on a server: a random managed prefix `kt<hex>_`, a database
/// `kairos_ct_<hex>` with a table `t (id INT)` holding one row, and a connector. Drop
/// removes the users, events and database.
pub struct World {
    pub port: u16,
    pub prefix: String,
    pub db: String,
    pub connector: MariaDbConnector,
}

impl World {
    /// On the shared server, admin database `test`.
    pub async fn shared() -> Self {
        Self::on(SHARED_PORT, Some("test")).await
    }

    /// On a private server; the admin URL names the world's own database, so expiry
    /// events live (and die) there.
    pub async fn private(server: &PrivateMariaDb) -> Self {
        Self::on(server.port, None).await
    }

    async fn on(port: u16, admin_db: Option<&str>) -> Self {
        let hex = hex8();
        let prefix = format!("kt{hex}_");
        let db = format!("kairos_ct_{hex}");
        let admin_db = admin_db.unwrap_or(&db).to_owned();
        let mut conn = root(port).await;
        exec(
            &mut conn,
            &format!(
                "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT); INSERT INTO `{db}`.t VALUES (1)"
            ),
        )
        .await;
        let mut settings = MariaDbSettings::new("maria-test", root_url(port, &admin_db));
        settings.managed_prefix = prefix.clone();
        let connector = MariaDbConnector::new(settings).unwrap();
        Self {
            port,
            prefix,
            db,
            connector,
        }
    }

    pub fn account(&self, suffix: &str) -> AccountName {
        AccountName::parse(format!("{}{suffix}", self.prefix)).unwrap()
    }

    pub fn select_on_t(&self) -> Privileges {
        sql_privileges(&[&format!("GRANT SELECT ON `{}`.t TO {{{{role}}}}", self.db)])
    }

    pub async fn table_exists(&self) -> bool {
        let mut conn = root(self.port).await;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't'",
        )
        .bind(&self.db)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        n == 1
    }

    pub async fn users(&self) -> Vec<(String, String)> {
        users_with_prefix(&mut root(self.port).await, &self.prefix).await
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let (port, prefix, db) = (self.port, self.prefix.clone(), self.db.clone());
        block_on_thread(move || clean(port, prefix, vec![db]));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((SHARED_HOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `mariadbd` on a free port, its data in a temporary directory, with the event
/// scheduler on. Killed (and waited for) on drop.
pub struct PrivateMariaDb {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// More `mariadbd` options, kept for restarts.
    extra: Vec<String>,
    /// Where its certificates are, if it speaks TLS.
    tls: Option<tempfile::TempDir>,
}

impl PrivateMariaDb {
    pub async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// With TLS: a server certificate for 127.0.0.1 from a new CA, whose certificate is
    /// returned (for clients' `ssl-ca`).
    pub async fn start_tls() -> (Self, std::path::PathBuf) {
        let tls = tempfile::tempdir().unwrap();
        let certificates = kairos_testkit::Certificates::make(tls.path());
        let mut server = Self::start_with(vec![
            format!("--ssl-ca={}", certificates.ca.display()),
            format!("--ssl-cert={}", certificates.cert.display()),
            format!("--ssl-key={}", certificates.key.display()),
        ])
        .await;
        server.tls = Some(tls);
        (server, certificates.ca)
    }

    pub async fn start_with(extra: Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // Its own tmpdir: two bootstraps sharing /tmp collide on temporary table names.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        // `normal`: root@localhost/127.0.0.1 with an empty password (no unix_socket auth);
        // `--skip-test-db`: no test database and no anonymous users (which would shadow
        // 'name'@'%' for logins from localhost).
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--skip-name-resolve")
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            port: free_port(),
            child: None,
            dir,
            extra,
            tls: None,
        };
        server.run().await;
        server
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts `mariadbd` on the same data and port and waits until it accepts logins.
    pub async fn run(&mut self) {
        assert!(self.child.is_none());
        let dir: &Path = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--user=root")
            .arg("--skip-name-resolve")
            .arg("--skip-log-bin")
            .arg("--event-scheduler=ON")
            .arg("--innodb-buffer-pool-size=32M")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if login(self.port, "root", "", None).await.is_ok() {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "mariadbd exited with {status}: {}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not accept connections within 60 s: {}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}
