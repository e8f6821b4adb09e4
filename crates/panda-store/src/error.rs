//! The store's errors are core's ([`panda_core::StoreError`], shared with the runtimes that
//! write logs); this module says how the database's errors become them.

use panda_core::{StoreError, StoreResult};

/// A database error as the store's: the ones that mean "the database cannot be reached right
/// now" are `Unavailable`, "the disk is full" `Full`, the rest `Database`.
fn from_sqlx(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Io(io) if io.raw_os_error() == Some(ENOSPC) => StoreError::Full(Box::new(err)),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(err)),
        sqlx::Error::Database(db) => match classify(db.as_ref()) {
            Some(Kind::Full) => StoreError::Full(Box::new(err)),
            Some(Kind::Unavailable) => StoreError::Unavailable(Box::new(err)),
            None => StoreError::Database(Box::new(err)),
        },
        _ => StoreError::Database(Box::new(err)),
    }
}

/// `ENOSPC`: no space left on device.
const ENOSPC: i32 = 28;

/// What a database's own error code says beyond "an error".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Full,
    Unavailable,
}

/// Reads the backend's error code: SQLite's result code, PostgreSQL's SQLSTATE.
fn classify(db: &dyn sqlx::error::DatabaseError) -> Option<Kind> {
    let code = db.code()?;
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The extended code's low byte is the primary code: SQLITE_FULL is 13.
        return match code.parse::<i32>() {
            Ok(code) if code & 0xff == 13 => Some(Kind::Full),
            _ => None,
        };
    }
    pg_kind(&code)
}

/// A PostgreSQL SQLSTATE as a kind: `53100` disk_full is `Full`; a lost or refused connection
/// (class 08), a server shutting down, restarting or starting (`57P01`..`57P03`), and a server
/// out of connections or memory (`53300`, `53200`) are `Unavailable`.
fn pg_kind(sqlstate: &str) -> Option<Kind> {
    match sqlstate {
        "53100" => Some(Kind::Full),
        "53200" | "53300" | "57P01" | "57P02" | "57P03" => Some(Kind::Unavailable),
        s if s.starts_with("08") => Some(Kind::Unavailable),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::{Kind, pg_kind};

    #[test]
    fn postgres_codes_name_full_and_unavailable() {
        assert_eq!(pg_kind("53100"), Some(Kind::Full));
        for code in [
            "57P01", "57P02", "57P03", "53300", "53200", "08006", "08001",
        ] {
            assert_eq!(pg_kind(code), Some(Kind::Unavailable), "{code}");
        }
        for code in ["23505", "40001", "42P01"] {
            assert_eq!(pg_kind(code), None, "{code}");
        }
    }
}
