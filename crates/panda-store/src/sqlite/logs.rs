//! Logs, in SQLite's dialect.

use panda_core::ExecutionId;

use super::SqliteStore;
use crate::dialect::{Backend, Conn, Tx, query};
use crate::logs::stored_seq;
use crate::{LogSql, StoreError, StoreResult, log_codec};
use panda_core::LogChunk;

pub(super) const SQL: LogSql = LogSql {
    read: "SELECT seq, stream, at, data, codec FROM log_chunks \
           WHERE execution_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    tail: "SELECT seq, stream, at, data, codec FROM log_chunks \
           WHERE execution_id = ? ORDER BY seq DESC LIMIT ?",
};

/// Appends chunks, one insert each (blobs do not travel in `json_each`); compressed before
/// the transaction begins, since claims and finishes wait for the one writer.
pub(super) async fn append(
    store: &SqliteStore,
    execution_id: ExecutionId,
    chunks: &[LogChunk],
) -> StoreResult<()> {
    let mut rows = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let (codec, data) = log_codec::encode(&chunk.data);
        rows.push((stored_seq(chunk)?, chunk, codec, data.into_owned()));
    }
    let mut tx = store.begin().await?;
    let exists = tx
        .fetch_optional(query("SELECT 1 FROM executions WHERE id = ?").uuid(execution_id))
        .await?;
    if exists.is_none() {
        return Err(StoreError::not_found(format!("execution {execution_id}")));
    }
    for (seq, chunk, codec, data) in rows {
        tx.execute(
            query(
                "INSERT INTO log_chunks (execution_id, seq, stream, at, data, codec) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (execution_id, seq) DO NOTHING",
            )
            .uuid(execution_id)
            .i64(seq)
            .text(chunk.stream.as_str())
            .time(chunk.at)
            .bytes(data)
            .text(codec.as_str()),
        )
        .await?;
    }
    tx.commit().await
}
