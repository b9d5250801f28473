//! Online backup of a SQLite store: a consistent copy of the file taken while a server
//! keeps running and writing (`kairos backup`).
//!
//! The copy is SQLite's `VACUUM INTO` on a connection of its own: one read transaction,
//! so the copy is the store as of one commit (WAL lets the server's writer go on
//! meanwhile), written to a private temporary file beside the output, checked
//! (`PRAGMA quick_check`), synced, and only then moved to the output name. A failed
//! backup leaves no output behind. The store holds no master key (it is read from a file
//! or the environment at start), so neither does the copy: its sealed signing keys and
//! account passwords open only with the master key kept beside it.
//!
//! PostgreSQL stores are backed up with `pg_dump -Fc` (README, "Backup and restore").

use std::path::{Path, PathBuf};
use std::time::Duration;

mod rules;
pub use rules::{partial_path, sqlite_path};

/// Why a backup was refused or failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "{0} is a PostgreSQL store: back it up with `pg_dump -Fc` and restore with `pg_restore` (README, \"Backup and restore\"); `kairos backup` copies SQLite stores"
    )]
    Postgres(String),
    #[error("store URL {0:?} is not a SQLite store; give sqlite://PATH (the server's --store)")]
    NotSqlite(String),
    #[error(
        "the store file {0} does not exist; give the server's store, e.g. --store sqlite:///var/lib/kairos/kairos.db"
    )]
    SourceMissing(PathBuf),
    #[error("{0} is not a Kairos store (it has no Kairos tables); give the server's store file")]
    NotAStore(PathBuf),
    #[error("{0} already exists; give a new path, or --force to replace it")]
    OutputExists(PathBuf),
    #[error("{0} is the store itself; write the backup to another file")]
    OutputIsSource(PathBuf),
    #[error("the directory of {0} does not exist; create it first")]
    OutputDirMissing(PathBuf),
    #[error("the output path {0} is not valid UTF-8; choose another")]
    OutputNotUtf8(PathBuf),
    #[error(
        "the copy in {path} failed its integrity check ({problem}); the store was not changed, try again"
    )]
    CopyDamaged { path: PathBuf, problem: String },
    #[error("reading the store {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("writing the backup {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("copying the store into {path}: {source}")]
    Copy {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub out: PathBuf,
    pub bytes: u64,
    pub grants: i64,
    /// The audit chain's last sequence number in the copy (0: no records).
    pub audit_seq: i64,
}

/// Copies the SQLite store file `source` to `out` while the store may be in use. Refuses
/// an existing `out` unless `force` (then replaces it atomically).
pub fn backup_sqlite(source: &Path, out: &Path, force: bool) -> Result<BackupSummary, BackupError> {
    if !source.is_file() {
        return Err(BackupError::SourceMissing(source.to_owned()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(BackupError::OutputDirMissing(out.to_owned()));
    }
    if out.exists() {
        let same = match (std::fs::canonicalize(source), std::fs::canonicalize(out)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(BackupError::OutputIsSource(out.to_owned()));
        }
        if !force {
            return Err(BackupError::OutputExists(out.to_owned()));
        }
    }

    let read = |e| BackupError::Read {
        path: source.to_owned(),
        source: e,
    };
    // Read-write without create: a reader that writes nothing, but may set up the WAL's
    // shared memory if the server is not running (a read-only one could not).
    let conn = rusqlite::Connection::open_with_flags(
        source,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(read)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(read)?;
    let kairos_tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('_sqlx_migrations', 'grants', 'audit')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                BackupError::NotAStore(source.to_owned())
            }
            e => read(e),
        })?;
    if kairos_tables != 3 {
        return Err(BackupError::NotAStore(source.to_owned()));
    }

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let partial = partial_path(out, std::process::id(), nanos);
    let result = copy_into(&conn, &partial, out, force);
    drop(conn);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn copy_into(
    conn: &rusqlite::Connection,
    partial: &Path,
    out: &Path,
    force: bool,
) -> Result<BackupSummary, BackupError> {
    let write = |path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| BackupError::Write { path, source: e }
    };
    // Created empty and private first: SQLite keeps the mode of an existing file, and
    // `VACUUM INTO` accepts an empty one.
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(partial).map_err(write(partial))?;
    }
    let target = partial
        .to_str()
        .ok_or_else(|| BackupError::OutputNotUtf8(out.to_owned()))?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(|e| BackupError::Copy {
            path: out.to_owned(),
            source: e,
        })?;

    // Check the copy and read what it holds, on a connection of its own.
    let copy_err = |e| BackupError::Copy {
        path: out.to_owned(),
        source: e,
    };
    let (grants, audit_seq) = {
        let copy = rusqlite::Connection::open_with_flags(
            partial,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(copy_err)?;
        let check: String = copy
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(copy_err)?;
        if check != "ok" {
            return Err(BackupError::CopyDamaged {
                path: out.to_owned(),
                problem: check,
            });
        }
        let grants: i64 = copy
            .query_row("SELECT count(*) FROM grants", [], |r| r.get(0))
            .map_err(copy_err)?;
        let audit_seq: i64 = copy
            .query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))
            .map_err(copy_err)?;
        (grants, audit_seq)
    };
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(write(partial))?;
    let bytes = std::fs::metadata(partial).map_err(write(partial))?.len();

    if force {
        std::fs::rename(partial, out).map_err(write(out))?;
    } else {
        // A hard link never replaces an existing file: a file that appeared at `out`
        // since the check above is refused, not overwritten.
        std::fs::hard_link(partial, out).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::OutputExists(out.to_owned())
            } else {
                BackupError::Write {
                    path: out.to_owned(),
                    source: e,
                }
            }
        })?;
        std::fs::remove_file(partial).map_err(write(partial))?;
    }
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The new directory entry is durable too (best effort: not every filesystem
        // lets a directory be opened and synced).
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(BackupSummary {
        out: out.to_owned(),
        bytes,
        grants,
        audit_seq,
    })
}
