//! Execution logs: chunks numbered by `seq`, stored LZ4-compressed where that pays. The
//! [`LogStore`] trait is core's.

use async_trait::async_trait;
use panda_core::ExecutionId;

use crate::dialect::{Backend, Conn, query};
use crate::records::{self, all};
use crate::{StoreError, StoreResult};
use panda_core::{LogChunk, LogStore};

/// The statements of [`LogStore`] both backends share the shape of (each appends its own way:
/// see [`Backend::append_log`]).
#[derive(Debug)]
pub struct LogSql {
    /// `(execution_id, after, limit)`, in seq order.
    pub read: &'static str,
    /// `(execution_id, n)`, newest first.
    pub tail: &'static str,
}

/// A chunk's seq as stored, or why it cannot be.
pub(crate) fn stored_seq(chunk: &LogChunk) -> StoreResult<i64> {
    i64::try_from(chunk.seq).map_err(|_| {
        StoreError::Invalid(panda_core::ValidationError::Field {
            field: "seq",
            message: format!("{} is too large", chunk.seq),
        })
    })
}

/// Up to `limit` chunks after seq `after`, in order.
async fn read<B: Backend>(
    backend: &B,
    execution_id: ExecutionId,
    after: Option<u64>,
    limit: u32,
) -> StoreResult<Vec<LogChunk>> {
    let after = after.map_or(-1, |seq| i64::try_from(seq).unwrap_or(i64::MAX));
    let rows = backend
        .reader()
        .fetch_all(
            query(B::SQL.logs.read)
                .uuid(execution_id)
                .i64(after)
                .i64(i64::from(limit)),
        )
        .await?;
    all(&rows, records::chunk)
}

/// The last `n` chunks, in order.
async fn tail<B: Backend>(
    backend: &B,
    execution_id: ExecutionId,
    n: u32,
) -> StoreResult<Vec<LogChunk>> {
    let rows = backend
        .reader()
        .fetch_all(query(B::SQL.logs.tail).uuid(execution_id).i64(i64::from(n)))
        .await?;
    let mut chunks = all(&rows, records::chunk)?;
    chunks.reverse();
    Ok(chunks)
}

/// [`LogStore`] is core's (the runtimes write logs without depending on this crate), so it is
/// implemented for each backend by name rather than for every [`Backend`] at once.
macro_rules! log_store {
    ($($store:ty),*) => {$(
        #[async_trait]
        impl LogStore for $store {
            async fn log_append(
                &self,
                execution_id: ExecutionId,
                chunks: &[LogChunk],
            ) -> StoreResult<()> {
                self.append_log(execution_id, chunks).await
            }

            async fn log_read(
                &self,
                execution_id: ExecutionId,
                after: Option<u64>,
                limit: u32,
            ) -> StoreResult<Vec<LogChunk>> {
                read(self, execution_id, after, limit).await
            }

            async fn log_tail(
                &self,
                execution_id: ExecutionId,
                n: u32,
            ) -> StoreResult<Vec<LogChunk>> {
                tail(self, execution_id, n).await
            }
        }
    )*};
}

log_store!(crate::SqliteStore, crate::PgStore);
