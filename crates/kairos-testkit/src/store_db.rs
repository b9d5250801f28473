//! [`StoreDb`]: a fresh, empty store database for one case of the store suites (a SQLite
//! file in a temporary directory, or a PostgreSQL database of its own on the machine's
//! server, dropped after the case), and [`store_suite!`](crate::store_suite), which runs
//! every case on both.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless `KAIROS_TEST_PG` names
//! another admin URL.

use std::future::Future;
use std::sync::Arc;

use sqlx::Connection;

const DEFAULT_PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh, empty database and the URL to open it.
pub struct StoreDb {
    url: String,
    /// The admin URL and the database's name, on PostgreSQL.
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl StoreDb {
    pub async fn sqlite() -> StoreDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kairos.db").display());
        StoreDb {
            url,
            postgres: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> StoreDb {
        sqlx::any::install_default_drivers();
        let admin_url = std::env::var("KAIROS_TEST_PG").unwrap_or_else(|_| DEFAULT_PG_ADMIN.into());
        let name = format!("kairos_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::AnyConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        StoreDb {
            url: with_database(&admin_url, &name),
            postgres: Some((admin_url, name)),
            _dir: None,
        }
    }

    /// On PostgreSQL (not SQLite).
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// The URL the store opens.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A plain connection for what the store never does (tampering, disabling a user).
    pub async fn raw(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.url).await.unwrap()
    }

    /// Drops the PostgreSQL database (the SQLite file goes with the value).
    pub async fn cleanup(&self) {
        if let Some((admin_url, name)) = &self.postgres {
            let mut admin = sqlx::AnyConnection::connect(admin_url).await.unwrap();
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

/// `admin_url` with its database replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// Runs one case and drops its database whether or not the case panicked.
pub async fn run_case<F, Fut>(db: StoreDb, case: F)
where
    F: FnOnce(Arc<StoreDb>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = Arc::new(db);
    let result = tokio::spawn(case(db.clone())).await;
    db.cleanup().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One `#[tokio::test]` per case on SQLite (`mod sqlite`) and on PostgreSQL
/// (`mod postgres`); each case is an `async fn(Arc<StoreDb>)` where the macro is called.
#[macro_export]
macro_rules! store_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    $crate::run_case($crate::StoreDb::sqlite().await, super::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    $crate::run_case($crate::StoreDb::postgres().await, super::$case).await;
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_replaced_and_the_query_kept() {
        for (admin, want) in [
            ("postgres://u@h:5432/postgres", "postgres://u@h:5432/db"),
            (
                "postgres://u@h:5432/postgres?sslmode=disable",
                "postgres://u@h:5432/db?sslmode=disable",
            ),
            ("postgres://u@h:5432", "postgres://u@h:5432/db"),
        ] {
            assert_eq!(with_database(admin, "db"), want);
        }
    }
}
