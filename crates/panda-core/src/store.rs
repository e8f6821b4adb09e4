//! What the store and the runtimes share, so that neither depends on the other: the store's
//! errors, and execution logs with the [`LogStore`] a runtime writes them to.
//!
//! The one trait with I/O behind it in this crate: the runtimes need to write logs and must not
//! depend on `panda-store`, which implements it.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ExecutionId, ValidationError};

/// An error of the database below a store, kept as its source.
pub type DatabaseError = Box<dyn std::error::Error + Send + Sync>;

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
    Unavailable(#[source] DatabaseError),
    /// The database has no room left for this write (SQLite's "database or disk is full",
    /// PostgreSQL's `disk_full`). Nothing was changed; the same write succeeds once space is
    /// freed.
    #[error("storage full: {0}")]
    Full(#[source] DatabaseError),
    /// Any other database error: a bug or a broken database, not the caller's doing.
    #[error("database error: {0}")]
    Database(#[source] DatabaseError),
    /// A stored value that cannot be read back (a corrupt row or a newer schema).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// `NotFound`, for `what` (in words).
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// Whether the same call may succeed later unchanged: the store is unreachable or full,
    /// not refusing this call for what it asks.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Full(_))
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which output stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Panda's own lines about the execution (pulling, timeout, truncation).
    System,
}

impl LogStream {
    /// The word used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogStream {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            "system" => Ok(LogStream::System),
            other => Err(ValidationError::Field {
                field: "stream",
                message: format!("{other:?} is not a stream; use stdout or stderr"),
            }),
        }
    }
}

/// A piece of an execution's output, numbered by its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Position in the execution's log, from 0; appending a seq twice keeps the first.
    pub seq: u64,
    /// Where it came from.
    pub stream: LogStream,
    /// When it was read from the process.
    pub at: DateTime<Utc>,
    /// The bytes (usually one line).
    pub data: Vec<u8>,
}

/// Execution logs.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Appends chunks to an execution's log. A chunk whose seq is already stored is ignored,
    /// so a writer may resend after an error.
    async fn log_append(&self, execution_id: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()>;

    /// Up to `limit` chunks after seq `after` (from the start when `None`), in order.
    async fn log_read(
        &self,
        execution_id: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<LogChunk>>;

    /// The last `n` chunks, in order.
    async fn log_tail(&self, execution_id: ExecutionId, n: u32) -> StoreResult<Vec<LogChunk>>;
}
