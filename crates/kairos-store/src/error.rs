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
