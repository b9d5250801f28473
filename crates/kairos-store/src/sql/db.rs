//! The connection the writer runs a batch on, and how a statement runs on it.
//!
//! On PostgreSQL (and an in-memory SQLite database) it is a sqlx connection. On a SQLite
//! file it is a rusqlite connection owned by the writer's thread: through sqlx every
//! statement of a batch was a hand-off to the connection's worker thread and back, two
//! thread switches each, and on two cores those switches were the largest item of a token
//! grant's profile. Here the writer's own thread runs SQLite itself.
//!
//! The statements are the same on both: each is built as a sqlx query (SQL text and bound
//! values, see `codec`) and either run by sqlx or, on the rusqlite connection, prepared
//! from the same text (cached) with the same values bound the way sqlx binds them. So one
//! text serves both paths, and the store's tests run the SQLite file path through
//! rusqlite and PostgreSQL through sqlx.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, Execute, Executor};
use sqlx_core::any::AnyValueKind;

use super::codec::{AnyQuery, Columns};
use super::{SQLITE_BUSY_TIMEOUT_MS, SQLITE_CACHE_KIB};
use crate::{Result, StoreError};

/// Prepared statements kept per writer connection: the fixed ones, and the multi-row
/// statements, each in the few row counts `bulk::pieces` cuts batches into (each count is
/// its own text), with room to spare so none of them is evicted under steady load.
const STATEMENT_CACHE: usize = 512;

/// The writer's connection.
pub(crate) enum Db {
    Any(PoolConnection<Any>),
    Lite(rusqlite::Connection),
}

impl Db {
    /// Opens the writer's own read-write connection to an existing SQLite file, with the
    /// settings the sqlx pool gives its connections (WAL, `synchronous = FULL`, foreign
    /// keys on).
    pub(crate) fn open_sqlite(path: &Path) -> Result<Self> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(Duration::from_millis(u64::from(SQLITE_BUSY_TIMEOUT_MS)))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "cache_size", -i64::from(SQLITE_CACHE_KIB))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self::Lite(conn))
    }

    /// Runs a statement with no parameters (`BEGIN`, `SAVEPOINT …`, `COMMIT`). The error
    /// is the database's own message, for the writer's reasons.
    pub(crate) async fn run(&mut self, sql: &str) -> std::result::Result<(), String> {
        match self {
            Self::Any(conn) => conn
                .execute(sql)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Self::Lite(conn) => conn
                .prepare_cached(sql)
                .and_then(|mut s| s.raw_execute())
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// Closes the connection (a sqlx one is closed, not returned to its pool: the writer
    /// calls this when the connection's state is unknown or its runtime is ending).
    pub(crate) async fn close(self) {
        match self {
            Self::Any(conn) => {
                let _ = conn.close().await;
            }
            Self::Lite(conn) => {
                let _ = conn.close();
            }
        }
    }

    async fn rows(&mut self, q: AnyQuery<'_>, keep: bool) -> Result<(Vec<DbRow>, u64)> {
        match self {
            Self::Any(conn) => {
                if keep {
                    let rows = q.fetch_all(&mut **conn).await?;
                    Ok((rows.into_iter().map(DbRow::Any).collect(), 0))
                } else {
                    Ok((Vec::new(), q.execute(&mut **conn).await?.rows_affected()))
                }
            }
            Self::Lite(conn) => lite_rows(conn, q, keep),
        }
    }
}

/// Runs a sqlx query on SQLite through rusqlite: the same text, prepared and cached, its
/// values bound as sqlx binds them (`$N`/`?N` to value N, a plain `?` to the next one).
/// Every row is stepped through, as sqlx does; `keep` collects them.
fn lite_rows(
    conn: &rusqlite::Connection,
    mut q: AnyQuery<'_>,
    keep: bool,
) -> Result<(Vec<DbRow>, u64)> {
    let args = q
        .take_arguments()
        .map_err(|e| StoreError::Backend(sqlx::Error::Encode(e)))?
        .unwrap_or_default();
    let mut statement = conn.prepare_cached(q.sql())?;
    bind(&mut statement, &args)?;
    let names: Arc<[String]> = if keep {
        statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    } else {
        Arc::from([])
    };
    let mut out = Vec::new();
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next()? {
        if keep {
            let values = (0..names.len())
                .map(|i| row.get::<_, rusqlite::types::Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.push(DbRow::Lite(LiteRow {
                names: Arc::clone(&names),
                values,
            }));
        }
    }
    drop(rows);
    Ok((out, conn.changes()))
}

fn bind(statement: &mut rusqlite::CachedStatement<'_>, args: &AnyArguments<'_>) -> Result<()> {
    let values = &args.values.0;
    let mut next = 0;
    for index in 1..=statement.parameter_count() {
        let n = match statement.parameter_name(index) {
            None => {
                next += 1;
                next
            }
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| unsupported(format!("parameter {name} is not numbered")))?,
        };
        // As sqlx: a parameter with no value stays NULL.
        let Some(value) = n.checked_sub(1).and_then(|i| values.get(i)) else {
            continue;
        };
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        // Text and blobs are bound by reference: SQLite copies them itself.
        let value = match value {
            AnyValueKind::Null(_) => ToSqlOutput::Owned(Value::Null),
            AnyValueKind::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
            AnyValueKind::SmallInt(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
            AnyValueKind::Integer(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
            AnyValueKind::BigInt(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            AnyValueKind::Real(f) => ToSqlOutput::Owned(Value::Real(f64::from(*f))),
            AnyValueKind::Double(f) => ToSqlOutput::Owned(Value::Real(*f)),
            AnyValueKind::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            AnyValueKind::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            other => return Err(unsupported(format!("cannot bind {other:?}"))),
        };
        statement.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

fn unsupported(problem: String) -> StoreError {
    StoreError::Backend(sqlx::Error::Protocol(problem))
}

/// Running a built query on the writer's connection: the sqlx methods of the same names,
/// for either kind of connection.
pub(crate) trait RunIn {
    /// Runs the statement; the number of rows it changed (0 through sqlx when unknown).
    async fn execute_in(self, db: &mut Db) -> Result<u64>;
    async fn fetch_all_in(self, db: &mut Db) -> Result<Vec<DbRow>>;
    async fn fetch_optional_in(self, db: &mut Db) -> Result<Option<DbRow>>;
    /// As `fetch_optional_in`, with no row an error.
    async fn fetch_one_in(self, db: &mut Db) -> Result<DbRow>;
}

impl RunIn for AnyQuery<'_> {
    async fn execute_in(self, db: &mut Db) -> Result<u64> {
        Ok(db.rows(self, false).await?.1)
    }

    async fn fetch_all_in(self, db: &mut Db) -> Result<Vec<DbRow>> {
        Ok(db.rows(self, true).await?.0)
    }

    async fn fetch_optional_in(self, db: &mut Db) -> Result<Option<DbRow>> {
        Ok(db.rows(self, true).await?.0.into_iter().next())
    }

    async fn fetch_one_in(self, db: &mut Db) -> Result<DbRow> {
        self.fetch_optional_in(db)
            .await?
            .ok_or(StoreError::Backend(sqlx::Error::RowNotFound))
    }
}

/// A row read on the writer's connection.
pub(crate) enum DbRow {
    Any(AnyRow),
    Lite(LiteRow),
}

/// A row read through rusqlite, owned (rusqlite's rows borrow their statement).
pub(crate) struct LiteRow {
    names: Arc<[String]>,
    values: Vec<rusqlite::types::Value>,
}

impl LiteRow {
    fn value(&self, column: &str) -> Result<&rusqlite::types::Value> {
        self.names
            .iter()
            .position(|n| n == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Sqlite(rusqlite::Error::InvalidColumnName(column.into())))
    }

    fn wrong_type(&self, column: &str, value: &rusqlite::types::Value) -> StoreError {
        let index = self.names.iter().position(|n| n == column).unwrap_or(0);
        StoreError::Sqlite(rusqlite::Error::InvalidColumnType(
            index,
            column.to_owned(),
            value.data_type(),
        ))
    }
}

impl LiteRow {
    /// `column`'s value, NULL as None; `pick` takes the one storage class it must be.
    fn opt<T>(
        &self,
        column: &str,
        pick: impl FnOnce(&rusqlite::types::Value) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.value(column)? {
            rusqlite::types::Value::Null => Ok(None),
            value => pick(value)
                .map(Some)
                .ok_or_else(|| self.wrong_type(column, value)),
        }
    }

    fn required<T>(&self, column: &str, value: Option<T>) -> Result<T> {
        value.ok_or_else(|| self.wrong_type(column, &rusqlite::types::Value::Null))
    }
}

impl Columns for LiteRow {
    fn text(&self, column: &str) -> Result<String> {
        self.required(column, self.opt_text(column)?)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.opt(column, |v| match v {
            rusqlite::types::Value::Text(s) => Some(s.clone()),
            _ => None,
        })
    }

    fn int(&self, column: &str) -> Result<i64> {
        self.required(column, self.opt_int(column)?)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.opt(column, |v| match v {
            rusqlite::types::Value::Integer(i) => Some(*i),
            _ => None,
        })
    }
}

impl DbRow {
    fn columns(&self) -> &dyn Columns {
        match self {
            Self::Any(row) => row,
            Self::Lite(row) => row,
        }
    }
}

impl Columns for DbRow {
    fn text(&self, column: &str) -> Result<String> {
        self.columns().text(column)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.columns().opt_text(column)
    }

    fn int(&self, column: &str) -> Result<i64> {
        self.columns().int(column)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.columns().opt_int(column)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn scratch() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, note TEXT)")
            .unwrap();
        let db = Db::open_sqlite(&path).unwrap();
        (dir, db)
    }

    /// Values are bound as sqlx binds them: `$N` to value N wherever it stands and however
    /// often, a plain `?` to the next value in order, a missing value as NULL.
    #[tokio::test]
    async fn values_bind_as_sqlx_binds_them() {
        let (_dir, mut db) = scratch();
        let changed = sqlx::query("INSERT INTO t (n, id, note) VALUES ($2, $1, $1 || '-' || $2)")
            .bind("a")
            .bind(7_i64)
            .execute_in(&mut db)
            .await
            .unwrap();
        assert_eq!(changed, 1);
        sqlx::query("INSERT INTO t (id, n, note) VALUES (?, ?, ?), (?, ?, ?)")
            .bind("b")
            .bind(8_i64)
            .bind(Option::<String>::None)
            .bind("c")
            .bind(9_i64)
            .bind("nine")
            .execute_in(&mut db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (id, n, note) VALUES ($1, $2, $3)")
            .bind("d")
            .execute_in(&mut db)
            .await
            .unwrap();
        let rows = sqlx::query("SELECT id, n, note FROM t ORDER BY id")
            .fetch_all_in(&mut db)
            .await
            .unwrap();
        let seen: Vec<(String, Option<i64>, Option<String>)> = rows
            .iter()
            .map(|r| {
                (
                    r.text("id").unwrap(),
                    r.opt_int("n").unwrap(),
                    r.opt_text("note").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("a".into(), Some(7), Some("a-7".into())),
                ("b".into(), Some(8), None),
                ("c".into(), Some(9), Some("nine".into())),
                ("d".into(), None, None),
            ]
        );
    }

    /// A row read with the wrong type, a missing column, or no row where one is required is
    /// an error, not a default; a duplicate key is the constraint error callers map to a
    /// conflict.
    #[tokio::test]
    async fn wrong_reads_and_duplicates_are_errors() {
        let (_dir, mut db) = scratch();
        sqlx::query("INSERT INTO t (id, n) VALUES ($1, $2)")
            .bind("a")
            .bind(1_i64)
            .execute_in(&mut db)
            .await
            .unwrap();
        let row = sqlx::query("SELECT id, n, note FROM t")
            .fetch_one_in(&mut db)
            .await
            .unwrap();
        assert!(row.int("id").is_err());
        assert!(row.text("n").is_err());
        assert!(row.text("note").is_err(), "NULL is not text");
        assert!(row.text("nope").is_err());
        let none = sqlx::query("SELECT id FROM t WHERE id = $1")
            .bind("zz")
            .fetch_one_in(&mut db)
            .await;
        assert!(matches!(
            none,
            Err(StoreError::Backend(sqlx::Error::RowNotFound))
        ));
        let dup = sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind("a")
            .execute_in(&mut db)
            .await
            .unwrap_err();
        let conflict = super::super::conflict(dup, || "taken".into());
        assert!(matches!(conflict, StoreError::Conflict(_)), "{conflict:?}");
    }

    /// Statements without parameters (the writer's transaction control) run, and their
    /// errors carry the database's message.
    #[tokio::test]
    async fn transaction_control_runs_and_explains_failures() {
        let (_dir, mut db) = scratch();
        db.run("BEGIN IMMEDIATE").await.unwrap();
        db.run("SAVEPOINT s").await.unwrap();
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind("x")
            .execute_in(&mut db)
            .await
            .unwrap();
        db.run("ROLLBACK TO SAVEPOINT s").await.unwrap();
        db.run("RELEASE SAVEPOINT s").await.unwrap();
        db.run("COMMIT").await.unwrap();
        let rows = sqlx::query("SELECT id FROM t")
            .fetch_all_in(&mut db)
            .await
            .unwrap();
        assert!(rows.is_empty());
        let why = db.run("RELEASE SAVEPOINT nowhere").await.unwrap_err();
        assert!(why.contains("no such savepoint"), "{why}");
    }
}
