//! The machine's shared PostgreSQL, seen from outside Kairos: psql, managed roles, and a
//! throwaway database with its own managed prefix.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use super::{stderr, stdout};

/// The machine's shared PostgreSQL (trust authentication, superuser `postgres`).
pub const SHARED_PG: &str = "postgres://postgres@127.0.0.1:5432";

// ---- PostgreSQL from the outside ----------------------------------------------------

/// Runs one SQL text against `base/db` with psql; panics with psql's error.
pub fn psql(base: &str, db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            &format!("{base}/{db}"),
            "-v",
            "ON_ERROR_STOP=1",
            "-qtAc",
            sql,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// Runs `body` with the URL of a new database on the shared PostgreSQL (named
/// `{tag}_<random>`), and drops the database afterwards, whether `body` passed or panicked.
pub fn with_scratch_db(tag: &str, body: impl FnOnce(&str)) {
    let db = format!("{tag}_{}", uuid::Uuid::new_v4().simple());
    psql(SHARED_PG, "postgres", &format!("CREATE DATABASE {db}"));
    let url = format!("{SHARED_PG}/{db}");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&url)));
    psql(
        SHARED_PG,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Roles whose name starts with `prefix` (`starts_with`: `_` is no wildcard here).
pub fn managed_roles(base: &str, prefix: &str) -> Vec<String> {
    let text = psql(
        base,
        "postgres",
        &format!("SELECT rolname FROM pg_roles WHERE starts_with(rolname, '{prefix}') ORDER BY 1"),
    );
    text.lines().map(str::to_owned).collect()
}

/// A throwaway database on the shared server with `orders (id)`, and a random managed
/// prefix for this test alone (roles are cluster-global). Dropping it drops the database
/// and then every role with the prefix, whatever the test left.
pub struct SharedDb {
    pub name: String,
    pub prefix: String,
}

impl SharedDb {
    pub fn new() -> Self {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        let db = Self {
            name: format!("kairos_it_{}", &hex[..12]),
            prefix: format!("kit{}_", &hex[12..20]),
        };
        psql(
            SHARED_PG,
            "postgres",
            &format!("CREATE DATABASE {}", db.name),
        );
        psql(
            SHARED_PG,
            &db.name,
            "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)",
        );
        db
    }

    pub fn admin_url(&self) -> String {
        format!("{SHARED_PG}/{}", self.name)
    }
}

impl Drop for SharedDb {
    fn drop(&mut self) {
        let quiet = |sql: &str| {
            let _ = Command::new("psql")
                .args([&format!("{SHARED_PG}/postgres"), "-qc", sql])
                .output();
        };
        // The database first: its CONNECT grant would keep the roles from being dropped.
        quiet(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
        let roles = Command::new("psql")
            .args([
                &format!("{SHARED_PG}/postgres"),
                "-tAc",
                &format!(
                    "SELECT rolname FROM pg_roles WHERE starts_with(rolname, '{}')",
                    self.prefix
                ),
            ])
            .output()
            .map(|o| stdout(&o))
            .unwrap_or_default();
        for role in roles.lines().filter(|r| !r.is_empty()) {
            quiet(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
            ));
            quiet(&format!("DROP ROLE IF EXISTS \"{role}\""));
        }
    }
}
