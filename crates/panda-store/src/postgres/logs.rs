//! Logs, in PostgreSQL's dialect.

use panda_core::ExecutionId;
use sqlx::PgPool;

use crate::error::OrStore;
use crate::logs::stored_seq;
use crate::{LogSql, StoreError, StoreResult, log_codec};
use panda_core::LogChunk;

pub(super) const SQL: LogSql = LogSql {
    read: "SELECT seq, stream, at, data, codec FROM log_chunks \
           WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    tail: "SELECT seq, stream, at, data, codec FROM log_chunks \
           WHERE execution_id = $1 ORDER BY seq DESC LIMIT $2",
};

/// Appends chunks in one statement: the existence check and the insert of every chunk.
/// Within the batch, as across calls, the first copy of a seq wins.
pub(super) async fn append(
    pool: &PgPool,
    execution_id: ExecutionId,
    chunks: &[LogChunk],
) -> StoreResult<()> {
    let seqs = chunks
        .iter()
        .map(stored_seq)
        .collect::<StoreResult<Vec<_>>>()?;
    let encoded: Vec<_> = chunks
        .iter()
        .map(|chunk| log_codec::encode(&chunk.data))
        .collect();
    let found: i64 = sqlx::query_scalar(
        "WITH e AS (SELECT id FROM executions WHERE id = $1), \
         ins AS ( \
             INSERT INTO log_chunks (execution_id, seq, stream, at, data, codec) \
             SELECT e.id, t.seq, t.stream, t.at, t.data, t.codec FROM e, \
                 UNNEST($2::bigint[], $3::text[], $4::timestamptz[], $5::bytea[], \
                        $6::text[]) \
                     WITH ORDINALITY AS t(seq, stream, at, data, codec, n) \
             ORDER BY t.n \
             ON CONFLICT (execution_id, seq) DO NOTHING) \
         SELECT count(*) FROM e",
    )
    .bind(execution_id.as_uuid())
    .bind(seqs)
    .bind(chunks.iter().map(|c| c.stream.as_str()).collect::<Vec<_>>())
    .bind(chunks.iter().map(|c| c.at).collect::<Vec<_>>())
    .bind(
        encoded
            .iter()
            .map(|(_, data)| data.as_ref())
            .collect::<Vec<_>>(),
    )
    .bind(
        encoded
            .iter()
            .map(|(codec, _)| codec.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_one(pool)
    .await
    .or_store()?;
    if found == 0 {
        return Err(StoreError::not_found(format!("execution {execution_id}")));
    }
    Ok(())
}
