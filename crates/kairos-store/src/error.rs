use kairos_domain::TransitionError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// An after-action review refused a change (filed already, a bad summary).
    #[error(transparent)]
    Review(#[from] kairos_domain::ReviewError),
    #[error("stored record {id} cannot be read: {problem}")]
    Corrupt { id: String, problem: String },
    #[error("store URL {0:?} is not supported; use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("migrating the store failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
    #[error("the store failed")]
    Backend(#[from] sqlx::Error),
    /// SQLite's direct read path (see `sql/direct.rs`).
    #[error("the store failed")]
    Sqlite(#[from] rusqlite::Error),
    /// The transaction a write ran in did not commit, so the write did not happen.
    #[error("the store failed to commit: {0}")]
    CommitFailed(String),
    #[error("the store is closed")]
    Closed,
    /// The SQLite file (or its WAL) could not be created or made private (mode 0600).
    #[error("cannot make the store file {path} private (mode 0600)")]
    Private {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the store cannot start its writer thread")]
    WriterThread(#[source] std::io::Error),
}

impl StoreError {
    /// True when the store could not be reached (or went away mid-way), as opposed to a
    /// refused or malformed operation: the connection failed, the pool found none in
    /// time, or PostgreSQL is shutting down, starting up or dropped the connection. Such
    /// an operation did not happen and may be tried again once the store is back.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Backend(e) => sqlx_unreachable(e),
            Self::Migration(sqlx::migrate::MigrateError::Execute(e)) => sqlx_unreachable(e),
            Self::CommitFailed(_) | Self::Closed => true,
            _ => false,
        }
    }
}

fn sqlx_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P01-03: admin shutdown, crash shutdown,
            // cannot connect now (starting up or shutting down).
            c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")
        }),
        sqlx::Error::Protocol(m) => m.contains("closed") || m.contains("connection"),
        _ => false,
    }
}
