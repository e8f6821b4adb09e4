//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so writers queue fairly in-process
//! instead of spinning on SQLite's busy handler, and every write transaction is
//! `BEGIN IMMEDIATE`, so a second process on the same file waits (`busy_timeout`) rather than
//! failing on a lock upgrade. Reads use a separate pool and see the last committed state.
//! With one writer, the claim and the other batch writes need no row locks: the statements in
//! this module's files are the ones PostgreSQL's files have, without `FOR UPDATE`.
//!
//! The claim's statements take their bound limits as `LIMIT +?N`, not `LIMIT ?N`: SQLite
//! folds a bare parameter's value into the plan, which marks the statement to be compiled
//! again each time that parameter is bound, that is at every run (13 % of the writer's time
//! went to compiling claims again). `+?N` is read at run time, so the statement prepared once
//! is reused; the plan then cannot count on a short limit, so each statement names its
//! indexes or looks rows up by a list (see `claim.rs`). Statements run now and then keep
//! `LIMIT ?N`.

mod alerts;
mod chains;
mod claim;
mod encode;
mod history;
mod jobs;
mod logs;
mod monitors;
mod queue;
mod rate;
mod retention;
mod services;
mod slots;
mod tokens;
mod webhooks;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::ExecutionId;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::dialect::{Backend, Query, Wakes};
use crate::error::OrStore;
use crate::model::{Claimed, ExecutionBrief, Finish, Finished, Notice};
use crate::{Sql, StoreResult};
use encode::{SqlitePoolConn, SqliteTx};
use panda_core::LogChunk;

/// [`Store`](crate::Store) on an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    notices: broadcast::Sender<Notice>,
    /// Stops the WAL checkpointer when the last clone of the store is dropped.
    _checkpointer: Arc<DropGuard>,
}

/// The size the WAL file is cut back to when it starts over, in bytes.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How often the checkpointer copies the WAL back into the database file. Often enough that
/// under steady writes the WAL stays a few megabytes, starts over within the part of the file
/// already written, and reads find their pages in a short WAL index: a no-op engine ran 1.1×
/// as fast as with a checkpoint every second (BENCHMARKS.md, "The WAL under writes that never
/// pause").
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The WAL frames (a page and its header each) past which the checkpointer makes the writer
/// start the WAL over: about [`WAL_SIZE_LIMIT`] of 4 KiB pages.
const WAL_RESTART_FRAMES: i64 = (WAL_SIZE_LIMIT / 4120) as i64;

/// Checkpoints the WAL from a connection of its own, so that the writer's commits never stop to
/// copy the WAL back into the database file (SQLite's automatic checkpoint runs inside the
/// commit that crosses 1,000 pages). PASSIVE: it never waits for, nor blocks, readers or the
/// writer.
///
/// Under writes that never pause, a passive checkpoint never catches up with the end of the
/// WAL (the writer appends while it copies), and a WAL starts over only once every frame in
/// it has been copied back: it would grow for as long as the load lasts, a gigabyte in a
/// quarter of an hour of a busy queue, every write to a new part of the file costing its
/// allocation. So when the WAL holds more than [`WAL_RESTART_FRAMES`] after the passive copy,
/// the checkpointer runs a RESTART one: it copies the little that is left, holding the writer
/// back for that long, and the next write starts the WAL over.
async fn spawn_checkpointer(options: &SqliteConnectOptions) -> StoreResult<DropGuard> {
    // A RESTART checkpoint holds new writes back while it waits for the writer and the readers
    // to let go of the WAL: it waits this long at most, then gives up until the next tick, so a
    // long read (a backup, a big report) costs the writer no more than this.
    let mut connection = options
        .clone()
        .busy_timeout(Duration::from_millis(50))
        .connect()
        .await
        .or_store()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped.cancelled() => break,
                _ = every.tick() => {}
            }
            // `busy`, `log` (frames in the WAL), `checkpointed` (frames copied back).
            let passive: Result<(i64, i64, i64), _> =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut connection)
                    .await;
            let restart = match passive {
                Ok((_, log, _)) => log > WAL_RESTART_FRAMES,
                Err(err) => {
                    tracing::warn!(%err, "SQLite WAL checkpoint failed; retrying");
                    false
                }
            };
            if restart
                && let Err(err) = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                    .execute(&mut connection)
                    .await
            {
                tracing::warn!(%err, "SQLite WAL restart checkpoint failed; retrying");
            }
        }
        // The last connection to close checkpoints what is left.
        if let Err(err) = connection.close().await {
            tracing::warn!(%err, "closing the SQLite checkpoint connection");
        }
    });
    Ok(stop.drop_guard())
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Once a checkpoint lets the writer start the WAL over, the file is cut back to
            // this size: a burst of writes does not leave a WAL of its size on disk for good.
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // sqlx counts open transactions itself. After some errors SQLite rolls a transaction
            // back on its own; the ROLLBACK sqlx sends when the transaction is dropped then
            // fails, and sqlx goes on counting it open, so the connection could never begin
            // again (every write: "begin_with at non-zero transaction depth"). Such a
            // connection is closed here and a fresh one opened.
            .before_acquire(|conn, _| {
                Box::pin(async move {
                    if conn.is_in_transaction() {
                        tracing::warn!(
                            "closing a database connection left inside a transaction SQLite had ended"
                        );
                        return Ok(false);
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await.or_store()?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .or_store()?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await
            .or_store()?;
        let checkpointer = spawn_checkpointer(&options).await?;
        let (notices, _) = broadcast::channel(1024);
        Ok(Self {
            writer,
            reader,
            notices,
            _checkpointer: Arc::new(checkpointer),
        })
    }
}

/// Every statement of the SQLite dialect.
const SQL: Sql = Sql {
    jobs: jobs::SQL,
    queue: queue::SQL,
    claim: claim::SQL,
    history: history::SQL,
    slots: slots::SQL,
    logs: logs::SQL,
    tokens: tokens::SQL,
    webhooks: webhooks::SQL,
    monitors: monitors::SQL,
    alerts: alerts::SQL,
    retention: retention::SQL,
    services: services::SQL,
    chains: chains::SQL,
    rate: rate::SQL,
};

#[async_trait]
impl Backend for SqliteStore {
    type Row = SqliteRow;
    type Tx = SqliteTx;
    type Pool = SqlitePoolConn;

    const SQL: &'static Sql = &SQL;

    fn placeholder(n: usize) -> Cow<'static, str> {
        format!("?{n}").into()
    }

    fn without_nul(text: &str) -> Cow<'_, str> {
        Cow::Borrowed(text)
    }

    async fn begin(&self) -> StoreResult<SqliteTx> {
        Ok(SqliteTx {
            tx: self.writer.begin_with("BEGIN IMMEDIATE").await.or_store()?,
            notices: self.notices.clone(),
            wakes: Wakes::default(),
        })
    }

    fn writer(&self) -> SqlitePoolConn {
        SqlitePoolConn(self.writer.clone())
    }

    fn reader(&self) -> SqlitePoolConn {
        SqlitePoolConn(self.reader.clone())
    }

    fn notices(&self) -> &broadcast::Sender<Notice> {
        &self.notices
    }

    async fn append_log(&self, execution_id: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()> {
        logs::append(self, execution_id, chunks).await
    }

    async fn recent_per_job(
        &self,
        jobs: &[String],
        per_job: u32,
        runs_only: bool,
    ) -> StoreResult<Vec<ExecutionBrief>> {
        history::recent_per_job(&self.reader, jobs, per_job, runs_only).await
    }

    fn overlapping(queues: &[String], now: DateTime<Utc>) -> Query {
        claim::overlapping(queues, now)
    }

    fn candidates(queues: &[String], now: DateTime<Utc>, limit: i64) -> Query {
        claim::candidates(queues, now, limit)
    }

    async fn claim_unrestricted(
        &self,
        queues: &[String],
        now: DateTime<Utc>,
        limit: i64,
        worker_id: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Vec<Claimed>>> {
        claim::unrestricted(self.writer(), queues, now, limit, worker_id, expires_at).await
    }

    async fn finish_successes(
        &self,
        batch: &[Finish],
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Vec<Option<Finished>>>> {
        queue::finish_successes(self.writer(), batch, now)
            .await
            .map(Some)
    }
}

/// What only SQLite can get wrong: the conformance suite in `tests/` covers the contract.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobStore, LogStore, LogStream, QueueStore, StoreError};
    use panda_core::{JobName, JobSpec, RuntimeSpec};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_sqlite_ended_on_its_own_does_not_stop_later_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("panda.db"))
            .await
            .expect("open");
        // As after an error SQLite answers by rolling back: the transaction ends under sqlx's
        // feet, and the ROLLBACK sent when it is dropped fails.
        let mut tx = Backend::begin(&store).await.expect("begin");
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut *tx.tx)
            .await
            .expect("end it behind sqlx's back");
        drop(tx);
        let spec = JobSpec::new(
            JobName::new("after").expect("name"),
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        for _ in 0..3 {
            store
                .job_delete("after", Utc::now())
                .await
                .or_else(|err| match err {
                    StoreError::NotFound { .. } => Ok(()),
                    err => Err(err),
                })
                .expect("delete");
            store
                .job_create(&spec, Utc::now())
                .await
                .expect("writes go on");
        }
    }

    /// A store in `dir` with one queued execution of a job `name` that runs `true`, to write
    /// logs to.
    async fn with_an_execution(dir: &Path, name: &str) -> (SqliteStore, ExecutionId) {
        let store = SqliteStore::open(&dir.join("panda.db"))
            .await
            .expect("open");
        let spec = JobSpec::new(
            JobName::new(name).expect("name"),
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        store.job_create(&spec, Utc::now()).await.expect("job");
        let execution = store
            .execution_enqueue(&crate::NewExecution::api(name), Utc::now())
            .await
            .expect("enqueue")
            .execution
            .id;
        (store, execution)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_while_writes_never_pause() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, execution) = with_an_execution(dir.path(), "steady").await;
        let wal = dir.path().join("panda.db-wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        // Writes with no pause between them, each 256 KiB of random bytes (stored as they
        // are), until four times the limit has been written and a few checkpoints have run:
        // without a restart the WAL would hold all of it.
        let line: Vec<u8> = (0..64 * 1024).map(|_| rand::random::<u8>()).collect();
        let started = std::time::Instant::now();
        let mut written = 0u64;
        let mut seq = 0u64;
        while written < 4 * WAL_SIZE_LIMIT || started.elapsed() < 4 * CHECKPOINT_EVERY {
            let chunks: Vec<LogChunk> = (0..4)
                .map(|_| {
                    seq += 1;
                    LogChunk {
                        seq,
                        stream: LogStream::Stdout,
                        at: Utc::now(),
                        data: line.clone(),
                    }
                })
                .collect();
            store.log_append(execution, &chunks).await.expect("append");
            written += 4 * 64 * 1024;
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "writes too slow to test"
            );
        }
        assert!(
            size() < 3 * WAL_SIZE_LIMIT,
            "the WAL holds {} bytes after {written} written without a pause",
            size()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_cut_back_after_a_burst_of_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, execution) = with_an_execution(dir.path(), "burst").await;
        // 96 MiB of output in 1 MiB transactions: more WAL than the limit. Random bytes, which
        // are stored as they are (repeated ones would be compressed).
        let line: Vec<u8> = (0..64 * 1024).map(|_| rand::random::<u8>()).collect();
        for batch in 0..96u64 {
            let chunks: Vec<LogChunk> = (0..16u64)
                .map(|i| LogChunk {
                    seq: batch * 16 + i,
                    stream: LogStream::Stdout,
                    at: Utc::now(),
                    data: line.clone(),
                })
                .collect();
            store.log_append(execution, &chunks).await.expect("append");
        }
        let wal = dir.path().join("panda.db-wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        // The burst fills the WAL to the limit at least (past it, a checkpoint may already
        // have made it start over and cut it back).
        assert!(
            size() >= WAL_SIZE_LIMIT,
            "the burst grew the WAL: {}",
            size()
        );
        // After a checkpoint the next write starts the WAL over, and cuts the file back.
        for seq in (96 * 16..).take(50) {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            let chunk = LogChunk {
                seq,
                stream: LogStream::Stdout,
                at: Utc::now(),
                data: b"after\n".to_vec(),
            };
            store.log_append(execution, &[chunk]).await.expect("append");
            if size() <= WAL_SIZE_LIMIT {
                return;
            }
        }
        panic!("the WAL stayed at {} bytes", size());
    }

    /// The steps of `sql`'s plan (`EXPLAIN QUERY PLAN`), its parameters unbound.
    pub(super) async fn query_plan(store: &SqliteStore, sql: &str) -> Vec<String> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&store.writer)
            .await
            .expect("explain");
        rows.iter()
            .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
            .collect()
    }

    /// The batch writes that join `json_each(?)` to `executions` look each row up by its
    /// primary key. A plain test of the status let the planner walk every running (or queued)
    /// execution through `executions_status` and scan the batch for each: SQLite's
    /// claim+finish fell from about 17,000 to 5,000 executions/s (BENCHMARKS.md, 2026-12-02).
    #[tokio::test]
    async fn batch_writes_look_executions_up_by_primary_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("panda.db"))
            .await
            .expect("open");
        for (name, sql) in [
            ("write_ends", SQL.queue.write_ends),
            ("skip", SQL.claim.skip),
            ("start", SQL.claim.start),
        ] {
            let plan = query_plan(&store, sql).await;
            let executions: Vec<&String> = plan
                .iter()
                .filter(|step| step.contains(" executions "))
                .collect();
            assert!(
                !executions.is_empty()
                    && executions
                        .iter()
                        .all(|step| step.contains("sqlite_autoindex_executions_1 (id=?)")),
                "{name}: {plan:?}"
            );
        }
    }
}
