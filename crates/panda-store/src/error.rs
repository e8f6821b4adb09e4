//! The store's errors are core's ([`panda_core::StoreError`], shared with the runtimes that
//! write logs); this module says how the database's errors become them.

use panda_core::{StoreError, StoreResult};

/// A database error as the store's: the ones that mean "the database cannot be reached right
/// now" are `Unavailable`, the rest `Database`.
fn from_sqlx(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(err)),
        other => StoreError::Database(Box::new(other)),
    }
}

/// A database result as the store's.
pub(crate) trait OrStore<T> {
    fn or_store(self) -> StoreResult<T>;
}

impl<T> OrStore<T> for Result<T, sqlx::Error> {
    fn or_store(self) -> StoreResult<T> {
        self.map_err(from_sqlx)
    }
}

impl<T> OrStore<T> for Result<T, sqlx::migrate::MigrateError> {
    fn or_store(self) -> StoreResult<T> {
        self.map_err(|err| StoreError::Database(Box::new(err)))
    }
}

/// Whether a write broke a unique index (a name or key that is taken).
pub(crate) fn is_unique_violation(err: &StoreError) -> bool {
    let StoreError::Database(source) = err else {
        return false;
    };
    matches!(
        source.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Database(db)) if db.is_unique_violation()
    )
}
