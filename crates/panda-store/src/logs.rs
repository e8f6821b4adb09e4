//! Execution logs: chunks numbered by `seq`, stored LZ4-compressed where that pays.

use async_trait::async_trait;
use panda_core::ExecutionId;

use crate::dialect::{Backend, Conn, query};
use crate::model::LogChunk;
use crate::records::{self, all};
use crate::{StoreError, StoreResult};

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

#[async_trait]
impl<B: Backend> LogStore for B {
    async fn log_append(&self, execution_id: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()> {
        self.append_log(execution_id, chunks).await
    }

    async fn log_read(
        &self,
        execution_id: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<LogChunk>> {
        let after = after.map_or(-1, |seq| i64::try_from(seq).unwrap_or(i64::MAX));
        let rows = self
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

    async fn log_tail(&self, execution_id: ExecutionId, n: u32) -> StoreResult<Vec<LogChunk>> {
        let rows = self
            .reader()
            .fetch_all(query(B::SQL.logs.tail).uuid(execution_id).i64(i64::from(n)))
            .await?;
        let mut chunks = all(&rows, records::chunk)?;
        chunks.reverse();
        Ok(chunks)
    }
}
