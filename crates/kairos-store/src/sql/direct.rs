//! SQLite's direct read path for the hottest point reads: a grant by id (every
//! introspection) and an API token with its user (every call a person or a resource server
//! makes). Through sqlx each read is a hand-off to its connection's worker thread and back —
//! two context switches, most of what an introspection cost. Here the read runs on the
//! caller's own thread, on a read-only connection taken from a small idle list.
//!
//! A read is a primary-key lookup in pages SQLite keeps cached: microseconds, short enough
//! to run on an async worker. WAL lets it run beside the writer, and each read is its own
//! implicit transaction, so it sees every commit made before it began — the same answer
//! the sqlx readers give. The SQL text is the sqlx path's own (`$1` binds by position).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kairos_domain::{Grant, GrantId};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::codec::{GRANT_BY_ID, NamedRow, grant_from_row, token_from_row, user_from_row};
use super::{SQLITE_BUSY_TIMEOUT_MS, admin};
use crate::{Result, StoredToken, User};

/// Idle connections kept for reuse; more are opened under a burst and closed after.
const IDLE: usize = 8;

#[derive(Debug)]
pub(super) struct DirectReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// The column names of each read's statement: its SQL text is fixed, so are they.
    grant_columns: OnceLock<Vec<String>>,
    token_columns: OnceLock<Vec<String>>,
}

/// `statement`'s column names, read from it the first time and kept in `cell`.
fn names_of<'c>(
    cell: &'c OnceLock<Vec<String>>,
    statement: &rusqlite::Statement<'_>,
) -> &'c [String] {
    cell.get_or_init(|| {
        statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    })
}

impl DirectReads {
    /// For the file of a `sqlite://PATH?…` URL; None where the sqlx readers must serve
    /// (an in-memory database, or a path this module would have to decode).
    pub(super) fn for_url(url: &str) -> Option<Self> {
        Some(Self {
            path: super::sqlite_file(url)?,
            idle: Mutex::new(Vec::new()),
            grant_columns: OnceLock::new(),
            token_columns: OnceLock::new(),
        })
    }

    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(Duration::from_millis(u64::from(SQLITE_BUSY_TIMEOUT_MS)))?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one) and keeps the connection for the
    /// next read.
    fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let out = read(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE
        {
            idle.push(conn);
        }
        out
    }

    pub(super) fn grant(&self, id: &GrantId) -> Result<Option<Grant>> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(&GRANT_BY_ID)?;
            let names = names_of(&self.grant_columns, &statement);
            let mut rows = statement.query([id.as_str()])?;
            match rows.next()? {
                Some(row) => Ok(Some(grant_from_row(&NamedRow { row, names })?)),
                None => Ok(None),
            }
        })
    }

    pub(super) fn token(&self, token_id: &str) -> Result<Option<(StoredToken, User)>> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(admin::FIND_TOKEN)?;
            let names = names_of(&self.token_columns, &statement);
            let mut rows = statement.query([token_id])?;
            match rows.next()? {
                Some(row) => {
                    let row = NamedRow { row, names };
                    Ok(Some((token_from_row(&row)?, user_from_row(&row, "u_")?)))
                }
                None => Ok(None),
            }
        })
    }

    /// Whether a connection can be opened and read now (used once at start, so a file
    /// this path cannot read is found before the first request rather than at it).
    pub(super) fn check(&self) -> Result<()> {
        self.with(|conn| {
            conn.query_row("SELECT 1 FROM audit_head WHERE id = 1", [], |_| Ok(()))
                .optional()?;
            Ok(())
        })
    }
}
