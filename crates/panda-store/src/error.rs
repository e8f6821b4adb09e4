use panda_core::ValidationError;

/// What a store call can fail with. The variants are the ones a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist (or no longer does).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, in words (`job "reports"`, `execution 0192…`).
        what: String,
    },
    /// The request clashes with what is stored (a live job of that name, a finished execution).
    #[error("{0}")]
    Conflict(String),
    /// A fenced write whose lease has moved on: another worker (or the rescuer) owns the
    /// execution now. Nothing was changed.
    #[error("stale lease: the execution's lease has expired or moved to another worker")]
    Stale,
    /// Input the store refuses.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The database cannot be reached right now; try again.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database error: a bug or a broken database, not the caller's doing.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A stored value that cannot be read back (a corrupt row or a newer schema).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// Whether a write broke a unique index (a name or key that is taken).
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(db)) if db.is_unique_violation())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err),
            other => Self::Database(other),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Self::Database(sqlx::Error::Migrate(Box::new(err)))
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;
