//! The machine's PostgreSQL (127.0.0.1:5432, user `postgres`, trust authentication):
//! throwaway databases with a role prefix of their own, dropped with every role carrying
//! that prefix when the bench is done with them — also on failure and on interruption.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use ring::rand::SecureRandom;
use sqlx::{Connection, PgConnection};

use crate::guard;

/// The server, without a database.
pub const BASE_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Opens one admin connection to `database`.
pub async fn connect(database: &str) -> anyhow::Result<PgConnection> {
    let url = format!("{BASE_URL}/{database}");
    PgConnection::connect(&url)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {BASE_URL}/{database}"))
}

/// A randomly named database (`kbench_<hex>`) and a role prefix (`kb<hex>_`) for this run
/// alone. Dropping it drops the database, then every role with the prefix.
pub struct ScratchDb {
    pub name: String,
    pub prefix: String,
}

impl ScratchDb {
    /// Creates the database, with a one-row table `bench_orders (id int)` in it.
    pub async fn create() -> anyhow::Result<Self> {
        let hex = random_hex(8)?;
        let db = Self {
            name: format!("kbench_{}", &hex[..12]),
            prefix: format!("kb{}_", &hex[12..16]),
        };
        guard::track_database(&db.name, &db.prefix);
        let mut admin = connect("postgres").await?;
        sqlx::query(&format!("CREATE DATABASE {}", db.name))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {}", db.name))?;
        let _ = admin.close().await;
        let mut conn = connect(&db.name).await?;
        sqlx::raw_sql("CREATE TABLE bench_orders (id int); INSERT INTO bench_orders VALUES (1)")
            .execute(&mut conn)
            .await
            .context("creating bench_orders")?;
        let _ = conn.close().await;
        Ok(db)
    }

    /// The admin URL of this database (trust authentication: no password in it).
    pub fn url(&self) -> String {
        format!("{BASE_URL}/{}", self.name)
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        drop_database_and_roles(BASE_URL, &self.name, &self.prefix);
        guard::untrack_database(&self.name);
    }
}

fn psql(base: &str, sql: &str) -> Option<String> {
    let out = Command::new("psql")
        .args([&format!("{base}/postgres"), "-qtAX", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if out.status.success() {
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        None
    }
}

/// Drops `db` (terminating its sessions) and then every role starting with `prefix`.
/// Synchronous (through psql), so it works from `Drop` and from the signal handler.
pub fn drop_database_and_roles(base: &str, db: &str, prefix: &str) {
    // The database first: privileges granted in it would keep its roles from being dropped.
    let _ = psql(base, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    // A prefix always looks like kb<hex>_ (see ScratchDb::create); anything else is not ours.
    let ours = prefix.len() > 3
        && prefix.starts_with("kb")
        && prefix.ends_with('_')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ours {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Some(text) = psql(
            base,
            &format!(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, '{prefix}') LIMIT 2000"
            ),
        ) else {
            return;
        };
        let roles: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        if roles.is_empty() || Instant::now() > deadline {
            return;
        }
        let _ = psql(
            base,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE starts_with(usename, '{prefix}')"
            ),
        );
        let list = roles
            .iter()
            .map(|r| format!("\"{}\"", r.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        if psql(base, &format!("DROP ROLE IF EXISTS {list}")).is_none() {
            // One at a time, so one stubborn role does not keep the others.
            for r in &roles {
                let _ = psql(
                    base,
                    &format!("DROP ROLE IF EXISTS \"{}\"", r.replace('"', "\"\"")),
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
