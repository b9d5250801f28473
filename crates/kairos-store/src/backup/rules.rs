//! The pure part of a backup: which file a store URL names, where the copy is written
//! first. No IO.

use std::path::{Path, PathBuf};

use super::BackupError;

/// The file a store URL names: `sqlite://PATH` (query string ignored) or a plain path.
/// PostgreSQL URLs and other schemes are refused with what to do instead.
pub fn sqlite_path(store: &str) -> Result<PathBuf, BackupError> {
    if store.starts_with("postgres://") || store.starts_with("postgresql://") {
        // Never echo the rest: a URL may carry a password.
        return Err(BackupError::Postgres("the store".to_owned()));
    }
    let path = match store.strip_prefix("sqlite://") {
        Some(rest) => rest.split('?').next().unwrap_or_default(),
        None if store.contains("://") => {
            let scheme = store.split("://").next().unwrap_or_default();
            return Err(BackupError::NotSqlite(format!("{scheme}://…")));
        }
        None => store,
    };
    if path.is_empty() || path.contains(":memory:") {
        return Err(BackupError::NotSqlite(store.to_owned()));
    }
    Ok(PathBuf::from(path))
}

/// The temporary file a backup to `out` is written to first: hidden, beside `out` (so the
/// final move is a rename on one filesystem), unique per process and moment.
pub fn partial_path(out: &Path, pid: u32, nanos: u128) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{name}.partial-{pid}-{nanos}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn store_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/kairos/kairos.db").unwrap(),
            PathBuf::from("/var/lib/kairos/kairos.db")
        );
        assert_eq!(
            sqlite_path("sqlite://data/kairos.db?mode=rwc").unwrap(),
            PathBuf::from("data/kairos.db")
        );
        assert_eq!(
            sqlite_path("/srv/kairos.db").unwrap(),
            PathBuf::from("/srv/kairos.db")
        );
    }

    #[test]
    fn postgres_and_memory_stores_are_refused_without_echoing_the_url() {
        let e = sqlite_path("postgres://kairos:hunter2@db/kairos")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pg_dump -Fc"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = sqlite_path("mysql://u:hunter2@db/k")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2") && e.contains("sqlite://PATH"), "{e}");
        assert!(sqlite_path("sqlite://:memory:").is_err());
        assert!(sqlite_path("sqlite://").is_err());
    }

    #[test]
    fn the_partial_file_sits_hidden_beside_the_output() {
        let p = partial_path(Path::new("/backups/kairos.db"), 42, 7);
        assert_eq!(p, PathBuf::from("/backups/.kairos.db.partial-42-7"));
        assert_eq!(p.parent(), Path::new("/backups/kairos.db").parent());
    }
}
