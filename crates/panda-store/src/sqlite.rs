//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so writers queue fairly in-process
//! instead of spinning on SQLite's busy handler, and every write transaction is
//! `BEGIN IMMEDIATE`, so a second process on the same file waits (`busy_timeout`) rather than
//! failing on a lock upgrade. Reads use a separate pool and see the last committed state.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, Job, JobId, JobSpec, RetryPolicy, Status, Trigger,
    validate_name,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite, Transaction};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::lifecycle::{self, SlotPlan};
use crate::log_codec;
use crate::model::{
    ApiToken, ClaimRequest, Claimed, DeliveryOutcome, DueDelivery, Enqueued, ExecutionBrief,
    ExecutionFilter, ExecutionPage, Finish, Finished, Heartbeat, JobKind, Lease, LogChunk,
    LogStream, NewAlert, NewExecution, NewSlot, Notice, Pruned, QueueStats, Retention, Slot,
    SlotRecord, TokenScope,
};
use crate::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Store, StoreError, StoreResult, page_size, token};
use panda_core::api::{Alert, AlertDelivery, DeliveryState};

const EXECUTION_COLUMNS: &str = "id, root_id, job_id, job_name, queue, priority, status, trigger, \
    attempt, max_attempts, backoff_base_ms, backoff_cap_ms, concurrency, idempotency_key, payload, \
    env, scheduled_at, run_at, created_at, started_at, finished_at, worker_id, lease_expires_at, \
    cancel_requested, exit_code, reason, image_digest, max_running";

/// [`Store`] on an SQLite file.
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

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints the WAL from a connection of its own, so that the writer's commits never stop to
/// copy the WAL back into the database file (SQLite's automatic checkpoint runs inside the
/// commit that crosses 1,000 pages). PASSIVE: it never waits for, nor blocks, readers or the
/// writer.
async fn spawn_checkpointer(options: &SqliteConnectOptions) -> StoreResult<DropGuard> {
    let mut connection = options.connect().await?;
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
            if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut connection)
                .await
            {
                tracing::warn!(%err, "SQLite WAL checkpoint failed; retrying");
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
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await?;
        let checkpointer = spawn_checkpointer(&options).await?;
        let (notices, _) = broadcast::channel(1024);
        Ok(Self {
            writer,
            reader,
            notices,
            _checkpointer: Arc::new(checkpointer),
        })
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn notify_queued(&self, queue: &str) {
        // No receiver is fine: polling is the truth.
        let _ = self.notices.send(Notice::Queued {
            queue: queue.to_owned(),
        });
    }
}

// ---- encoding ----

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A `COUNT`/`SUM` as a count (never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn instant(micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("instant out of range: {micros}")))
}

fn opt_instant(micros: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    micros.map(instant).transpose()
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse<T: FromStr>(what: &str, text: &str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} {text:?}")))
}

fn json_text<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn job_from_row(row: &SqliteRow) -> StoreResult<Job> {
    Ok(Job {
        id: parse("job id", row.try_get("id")?)?,
        spec: from_json("job spec", row.try_get("spec")?)?,
        created_at: instant(row.try_get("created_at")?)?,
        updated_at: instant(row.try_get("updated_at")?)?,
    })
}

fn execution_from_row(row: &SqliteRow) -> StoreResult<Execution> {
    let payload: Option<String> = row.try_get("payload")?;
    let attempt: i64 = row.try_get("attempt")?;
    let max_attempts: i64 = row.try_get("max_attempts")?;
    let base_ms: i64 = row.try_get("backoff_base_ms")?;
    let cap_ms: i64 = row.try_get("backoff_cap_ms")?;
    let as_u32 = |what: &str, v: i64| {
        u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v}")))
    };
    let as_ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    Ok(Execution {
        id: parse("execution id", row.try_get("id")?)?,
        root_id: parse("execution id", row.try_get("root_id")?)?,
        job_id: parse("job id", row.try_get("job_id")?)?,
        job_name: row.try_get("job_name")?,
        queue: row.try_get("queue")?,
        priority: row.try_get("priority")?,
        status: parse("status", row.try_get("status")?)?,
        trigger: parse("trigger", row.try_get("trigger")?)?,
        attempt: as_u32("attempt", attempt)?,
        retry: RetryPolicy {
            max_attempts: as_u32("max_attempts", max_attempts)?,
            backoff_base: as_ms(base_ms),
            backoff_cap: as_ms(cap_ms),
        },
        concurrency: parse::<ConcurrencyPolicy>("concurrency", row.try_get("concurrency")?)?,
        max_running: row
            .try_get::<Option<i64>, _>("max_running")?
            .map(|v| as_u32("max_running", v))
            .transpose()?,
        idempotency_key: row.try_get("idempotency_key")?,
        payload: payload.map(|p| from_json("payload", &p)).transpose()?,
        env: from_json("env", row.try_get("env")?)?,
        scheduled_at: opt_instant(row.try_get("scheduled_at")?)?,
        run_at: instant(row.try_get("run_at")?)?,
        created_at: instant(row.try_get("created_at")?)?,
        started_at: opt_instant(row.try_get("started_at")?)?,
        finished_at: opt_instant(row.try_get("finished_at")?)?,
        worker_id: row.try_get("worker_id")?,
        lease_expires_at: opt_instant(row.try_get("lease_expires_at")?)?,
        cancel_requested: row.try_get("cancel_requested")?,
        exit_code: row.try_get("exit_code")?,
        reason: row.try_get("reason")?,
        image_digest: row.try_get("image_digest")?,
    })
}

fn token_from_row(row: &SqliteRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: parse("token id", row.try_get("id")?)?,
        name: row.try_get("name")?,
        scope: parse("scope", row.try_get("scope")?)?,
        created_at: instant(row.try_get("created_at")?)?,
        last_used_at: opt_instant(row.try_get("last_used_at")?)?,
    })
}

fn chunk_from_row(row: &SqliteRow) -> StoreResult<LogChunk> {
    let seq: i64 = row.try_get("seq")?;
    Ok(LogChunk {
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("seq {seq}")))?,
        stream: parse::<LogStream>("stream", row.try_get("stream")?)?,
        at: instant(row.try_get("at")?)?,
        data: log_codec::decode(
            log_codec::Codec::parse(row.try_get("codec")?)?,
            row.try_get("data")?,
        )?,
    })
}

fn alert_from_row(row: &SqliteRow) -> StoreResult<Alert> {
    Ok(Alert {
        id: parse("alert id", row.try_get("id")?)?,
        job_id: parse("job id", row.try_get("job_id")?)?,
        job: row.try_get("job_name")?,
        kind: parse("alert kind", row.try_get("kind")?)?,
        execution_id: row
            .try_get::<Option<&str>, _>("execution_id")?
            .map(|id| parse("execution id", id))
            .transpose()?,
        message: row.try_get("message")?,
        body: from_json("alert body", row.try_get("body")?)?,
        created_at: instant(row.try_get("created_at")?)?,
        deliveries: Vec::new(),
    })
}

fn delivery_from_row(row: &SqliteRow) -> StoreResult<AlertDelivery> {
    Ok(AlertDelivery {
        id: parse("delivery id", row.try_get("id")?)?,
        notifier: parse("notifier", row.try_get("notifier")?)?,
        url: row.try_get("url")?,
        state: parse("delivery state", row.try_get("state")?)?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: opt_instant(row.try_get("next_attempt_at")?)?,
        last_error: row.try_get("last_error")?,
        delivered_at: opt_instant(row.try_get("delivered_at")?)?,
    })
}

/// The deliveries of `alerts`, attached to each.
async fn attach_deliveries(pool: &SqlitePool, mut alerts: Vec<Alert>) -> StoreResult<Vec<Alert>> {
    if alerts.is_empty() {
        return Ok(alerts);
    }
    let ids: Vec<String> = alerts.iter().map(|a| a.id.to_string()).collect();
    let rows = sqlx::query(
        "SELECT * FROM alert_deliveries WHERE alert_id IN (SELECT value FROM json_each(?)) \
         ORDER BY id",
    )
    .bind(json_text(&ids)?)
    .fetch_all(pool)
    .await?;
    let mut by_alert: HashMap<Uuid, Vec<AlertDelivery>> = HashMap::new();
    for row in &rows {
        let alert_id: Uuid = parse("alert id", row.try_get("alert_id")?)?;
        by_alert
            .entry(alert_id)
            .or_default()
            .push(delivery_from_row(row)?);
    }
    for alert in &mut alerts {
        alert.deliveries = by_alert.remove(&alert.id).unwrap_or_default();
    }
    Ok(alerts)
}

fn slot_from_row(row: &SqliteRow) -> StoreResult<Slot> {
    Ok(Slot {
        job_id: parse("job id", row.try_get("job_id")?)?,
        scheduled_at: instant(row.try_get("scheduled_at")?)?,
        execution_id: parse("execution id", row.try_get("execution_id")?)?,
        fired: row.try_get("fired")?,
        recorded_at: instant(row.try_get("recorded_at")?)?,
    })
}

/// One execution as `execution_recent_per_job` packs it: id, status, trigger, attempt,
/// created, started and finished (the last two empty when unset), separated by spaces.
fn unpack_brief(job_name: &str, packed: &str) -> StoreResult<ExecutionBrief> {
    let corrupt = || StoreError::Corrupt(format!("a packed execution {packed:?}"));
    let fields: Vec<&str> = packed.split(' ').collect();
    let [id, status, trigger, attempt, created, started, finished] = fields[..] else {
        return Err(corrupt());
    };
    let micros = |text: &str| -> StoreResult<Option<DateTime<Utc>>> {
        if text.is_empty() {
            return Ok(None);
        }
        let value: i64 = text.parse().map_err(|_| corrupt())?;
        instant(value).map(Some)
    };
    Ok(ExecutionBrief {
        id: parse("execution id", id)?,
        job_name: job_name.to_owned(),
        status: parse("status", status)?,
        trigger: parse("trigger", trigger)?,
        attempt: attempt.parse().map_err(|_| corrupt())?,
        created_at: micros(created)?.ok_or_else(corrupt)?,
        started_at: micros(started)?,
        finished_at: micros(finished)?,
    })
}

// ---- statements used by several methods ----

async fn insert_execution(tx: &mut Transaction<'_, Sqlite>, e: &Execution) -> StoreResult<()> {
    insert_executions(tx, std::slice::from_ref(e)).await
}

/// Inserts executions, all in one statement.
async fn insert_executions(tx: &mut Transaction<'_, Sqlite>, es: &[Execution]) -> StoreResult<()> {
    if es.is_empty() {
        return Ok(());
    }
    let rows = es
        .iter()
        .map(|e| {
            Ok(serde_json::json!([
                e.id.to_string(),
                e.root_id.to_string(),
                e.job_id.to_string(),
                e.job_name,
                e.queue,
                e.priority,
                e.status.as_str(),
                e.trigger.as_str(),
                e.attempt,
                e.retry.max_attempts,
                duration_ms(e.retry.backoff_base),
                duration_ms(e.retry.backoff_cap),
                e.concurrency.as_str(),
                e.idempotency_key,
                e.payload.as_ref().map(json_text).transpose()?,
                json_text(&e.env)?,
                e.scheduled_at.map(micros),
                micros(e.run_at),
                micros(e.created_at),
                e.started_at.map(micros),
                e.finished_at.map(micros),
                e.worker_id,
                e.lease_expires_at.map(micros),
                e.cancel_requested,
                e.exit_code,
                e.reason,
                e.image_digest,
                e.max_running,
            ]))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let columns = (0..28)
        .map(|i| format!("r.value ->> {i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO executions (id, root_id, job_id, job_name, queue, priority, status, \
         trigger, attempt, max_attempts, backoff_base_ms, backoff_cap_ms, concurrency, \
         idempotency_key, payload, env, scheduled_at, run_at, created_at, started_at, \
         finished_at, worker_id, lease_expires_at, cancel_requested, exit_code, reason, \
         image_digest, max_running) SELECT {columns} FROM json_each(?) AS r"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(json_text(&rows)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn select_execution(
    tx: &mut Transaction<'_, Sqlite>,
    id: ExecutionId,
) -> StoreResult<Option<(Execution, Option<String>)>> {
    let sql = format!("SELECT {EXECUTION_COLUMNS}, lease_token FROM executions WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| Ok((execution_from_row(&row)?, row.try_get("lease_token")?)))
        .transpose()
}

async fn live_job_by_name(tx: &mut Transaction<'_, Sqlite>, name: &str) -> StoreResult<Job> {
    let row = sqlx::query("SELECT * FROM jobs WHERE name = ? AND deleted_at IS NULL")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("job {name:?}")))?;
    job_from_row(&row)
}

/// Writes the terminal status of each settled attempt, releases their job locks and queues
/// their next attempts: one statement each for the whole batch, plus one insert per retry.
async fn write_settled(tx: &mut Transaction<'_, Sqlite>, settled: &[Finished]) -> StoreResult<()> {
    if settled.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = settled
        .iter()
        .map(|f| {
            let e = &f.execution;
            serde_json::json!([
                e.id.to_string(),
                e.status.as_str(),
                e.finished_at.map(micros),
                e.reason,
                e.exit_code,
                e.image_digest,
            ])
        })
        .collect();
    sqlx::query(
        "UPDATE executions SET status = s.value ->> 1, finished_at = s.value ->> 2, \
             lease_token = NULL, lease_expires_at = NULL, reason = s.value ->> 3, \
             exit_code = s.value ->> 4, image_digest = s.value ->> 5 \
         FROM json_each(?) AS s WHERE executions.id = s.value ->> 0",
    )
    .bind(json_text(&rows)?)
    .execute(&mut **tx)
    .await?;
    let failures: Vec<serde_json::Value> = settled
        .iter()
        .filter(|f| lifecycle::alertable(f.execution.status))
        .map(|f| {
            serde_json::json!([
                f.execution.id.to_string(),
                f.execution.finished_at.map(micros)
            ])
        })
        .collect();
    if !failures.is_empty() {
        sqlx::query(
            "INSERT INTO alert_inbox (execution_id, finished_at) \
             SELECT value ->> 0, value ->> 1 FROM json_each(?) WHERE true \
             ON CONFLICT (execution_id) DO NOTHING",
        )
        .bind(json_text(&failures)?)
        .execute(&mut **tx)
        .await?;
    }
    let ids: Vec<String> = settled.iter().map(|f| f.execution.id.to_string()).collect();
    sqlx::query("DELETE FROM job_locks WHERE execution_id IN (SELECT value FROM json_each(?))")
        .bind(json_text(&ids)?)
        .execute(&mut **tx)
        .await?;
    for retry in settled.iter().filter_map(|f| f.retry.as_ref()) {
        insert_execution(tx, retry).await?;
    }
    Ok(())
}

/// How a dead execution left the dead-letter queue, if it did.
async fn dlq_resolution(
    tx: &mut Transaction<'_, Sqlite>,
    id: ExecutionId,
) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT resolution FROM dlq_resolutions WHERE execution_id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// Records that a dead execution left the dead-letter queue.
async fn dlq_resolve(
    tx: &mut Transaction<'_, Sqlite>,
    id: ExecutionId,
    resolution: lifecycle::DlqResolution,
    retry: Option<ExecutionId>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO dlq_resolutions (execution_id, resolution, retry_id, resolved_at) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(resolution.as_str())
    .bind(retry.map(|r| r.to_string()))
    .bind(micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A dead execution checked to be in the dead-letter queue.
async fn dead_letter(tx: &mut Transaction<'_, Sqlite>, id: ExecutionId) -> StoreResult<Execution> {
    let (dead, _) = select_execution(tx, id)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("execution {id}")))?;
    let resolved = dlq_resolution(tx, id).await?;
    lifecycle::check_dead_letter(&dead, resolved.as_deref())?;
    Ok(dead)
}

/// Queues the attempt that runs a dead execution again and takes it out of the queue.
async fn dlq_retry_one(
    tx: &mut Transaction<'_, Sqlite>,
    id: ExecutionId,
    now: DateTime<Utc>,
) -> StoreResult<Execution> {
    let dead = dead_letter(tx, id).await?;
    let live: Option<bool> = sqlx::query_scalar("SELECT deleted_at IS NULL FROM jobs WHERE id = ?")
        .bind(dead.job_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    if live != Some(true) {
        return Err(StoreError::Conflict(format!(
            "job {} of execution {id} was deleted; there is nothing to run it again",
            dead.job_name
        )));
    }
    let retry = lifecycle::dead_letter_retry(&dead, now);
    insert_execution(tx, &retry).await?;
    dlq_resolve(
        tx,
        id,
        lifecycle::DlqResolution::Retried,
        Some(retry.id),
        now,
    )
    .await?;
    Ok(retry)
}

#[async_trait]
impl Store for SqliteStore {
    async fn job_create(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job> {
        spec.validate()?;
        let job = Job {
            id: JobId::new(),
            spec: spec.clone(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, name, scheduled, spec, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(job.id.to_string())
        .bind(job.spec.name.as_str())
        .bind(job.spec.schedule.is_some())
        .bind(json_text(&job.spec)?)
        .bind(micros(now))
        .bind(micros(now))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::Conflict(format!(
                    "a job named {:?} already exists",
                    spec.name.as_str()
                )));
            }
            other => other?,
        };
        tx.commit().await?;
        Ok(job)
    }

    async fn job_get(&self, name: &str) -> StoreResult<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE name = ? AND deleted_at IS NULL")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("job {name:?}")))?;
        job_from_row(&row)
    }

    async fn job_get_by_id(&self, id: JobId) -> StoreResult<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("job {id}")))?;
        job_from_row(&row)
    }

    async fn job_list(&self, kind: JobKind) -> StoreResult<Vec<Job>> {
        let scheduled = match kind {
            JobKind::All => None,
            JobKind::Scheduled => Some(true),
            JobKind::Triggered => Some(false),
        };
        sqlx::query(
            "SELECT * FROM jobs WHERE deleted_at IS NULL AND (?1 IS NULL OR scheduled = ?1) \
             ORDER BY name",
        )
        .bind(scheduled)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    async fn job_update(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job> {
        spec.validate()?;
        let mut tx = self.begin().await?;
        let mut job = live_job_by_name(&mut tx, spec.name.as_str()).await?;
        job.spec = spec.clone();
        job.updated_at = now;
        sqlx::query("UPDATE jobs SET spec = ?, scheduled = ?, updated_at = ? WHERE id = ?")
            .bind(json_text(&job.spec)?)
            .bind(job.spec.schedule.is_some())
            .bind(micros(now))
            .bind(job.id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn job_delete(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let job = live_job_by_name(&mut tx, name).await?;
        let id = job.id.to_string();
        sqlx::query("UPDATE jobs SET deleted_at = ? WHERE id = ?")
            .bind(micros(now))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE executions SET status = 'cancelled', finished_at = ?, reason = 'job deleted' \
             WHERE job_id = ? AND status = 'queued'",
        )
        .bind(micros(now))
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE executions SET cancel_requested = 1 WHERE job_id = ? AND status = 'running'",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn execution_enqueue(
        &self,
        request: &NewExecution,
        now: DateTime<Utc>,
    ) -> StoreResult<Enqueued> {
        lifecycle::validate_new_execution(request)?;
        let mut tx = self.begin().await?;
        let job = live_job_by_name(&mut tx, &request.job).await?;
        if let Some(key) = &request.idempotency_key {
            let sql = format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions \
                 WHERE job_id = ? AND idempotency_key = ? AND attempt = 1"
            );
            let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(job.id.to_string())
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                return Ok(Enqueued {
                    execution: execution_from_row(&row)?,
                    created: false,
                });
            }
        }
        if let Some(at) = request.scheduled_at {
            lifecycle::validate_backfill(&job, at, now)?;
        }
        let execution = lifecycle::enqueued(&job, request, now);
        insert_execution(&mut tx, &execution).await?;
        if let Some(at) = request.scheduled_at {
            let slot = sqlx::query(
                "INSERT INTO slots (job_id, scheduled_at, execution_id, fired, recorded_at) \
                 VALUES (?, ?, ?, 1, ?) ON CONFLICT (job_id, scheduled_at) DO NOTHING",
            )
            .bind(job.id.to_string())
            .bind(micros(at))
            .bind(execution.id.to_string())
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            if slot.rows_affected() == 0 {
                let row = sqlx::query("SELECT * FROM slots WHERE job_id = ? AND scheduled_at = ?")
                    .bind(job.id.to_string())
                    .bind(micros(at))
                    .fetch_one(&mut *tx)
                    .await?;
                return Err(lifecycle::slot_taken(&job, &slot_from_row(&row)?));
            }
        }
        tx.commit().await?;
        self.notify_queued(&execution.queue);
        Ok(Enqueued {
            execution,
            created: true,
        })
    }

    async fn execution_claim(
        &self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Claimed>> {
        let limit = i64::from(request.limit.min(MAX_PAGE_SIZE));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let queues = json_text(&request.queues)?;
        let ttl = chrono::Duration::from_std(request.lease_ttl)
            .map_err(|_| StoreError::Corrupt("lease ttl out of range".into()))?;
        let expires_at = now + ttl;
        let mut tx = self.begin().await?;

        // Scheduled runs of forbid jobs that are still running are skipped, not delayed: the
        // next slot will come.
        let overlapping = sqlx::query(
            // CROSS JOIN keeps job_locks as the outer loop, and only the locks that running
            // forbid executions hold lead on to the queued ones: a limited job's slots don't
            // (its queue may be long).
            "SELECT e.id, l.execution_id AS holder FROM job_locks l \
             CROSS JOIN executions h ON h.id = l.execution_id AND h.concurrency = 'forbid' \
             CROSS JOIN executions e ON e.job_id = l.job_id \
             WHERE e.status = 'queued' AND e.trigger = 'schedule' AND e.concurrency = 'forbid' \
               AND e.run_at <= ?1 \
               AND (?2 = '[]' OR e.queue IN (SELECT value FROM json_each(?2)))",
        )
        .bind(micros(now))
        .bind(&queues)
        .fetch_all(&mut *tx)
        .await?;
        for row in overlapping {
            let holder: String = row.try_get("holder")?;
            sqlx::query(
                "UPDATE executions SET status = 'skipped', finished_at = ?, reason = ? WHERE id = ?",
            )
            .bind(micros(now))
            .bind(lifecycle::overlap_reason(&holder))
            .bind(row.try_get::<String, _>("id")?)
            .execute(&mut *tx)
            .await?;
        }

        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions INDEXED BY executions_claim \
             WHERE status = 'queued' AND run_at <= ?1 \
               AND (?2 = '[]' OR queue IN (SELECT value FROM json_each(?2))) \
               AND NOT (concurrency = 'forbid' AND job_id IN (SELECT job_id FROM job_locks)) \
               AND NOT (max_running IS NOT NULL AND max_running <= ( \
                   SELECT count(*) FROM job_locks l WHERE l.job_id = executions.job_id)) \
             ORDER BY priority DESC, run_at, id LIMIT ?3"
        );
        let candidates = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(micros(now))
            .bind(&queues)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;

        let mut claimed: Vec<Claimed> = Vec::with_capacity(candidates.len());
        for row in candidates {
            let mut execution = execution_from_row(&row)?;
            let id = execution.id.to_string();
            match execution.concurrency {
                ConcurrencyPolicy::Forbid => {
                    let locked = sqlx::query(
                        "INSERT INTO job_locks (job_id, slot, execution_id) VALUES (?, 0, ?) \
                         ON CONFLICT (job_id, slot) DO NOTHING",
                    )
                    .bind(execution.job_id.to_string())
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                    if locked.rows_affected() == 0 {
                        // Another execution of this job was claimed earlier in this batch: the
                        // same rule as the pre-pass, whatever the batch size.
                        if execution.trigger == Trigger::Schedule {
                            let holder: String = sqlx::query_scalar(
                                "SELECT execution_id FROM job_locks WHERE job_id = ? \
                                 ORDER BY slot LIMIT 1",
                            )
                            .bind(execution.job_id.to_string())
                            .fetch_one(&mut *tx)
                            .await?;
                            sqlx::query(
                                "UPDATE executions SET status = 'skipped', finished_at = ?, \
                                 reason = ? WHERE id = ?",
                            )
                            .bind(micros(now))
                            .bind(lifecycle::overlap_reason(&holder))
                            .bind(&id)
                            .execute(&mut *tx)
                            .await?;
                        }
                        continue;
                    }
                }
                ConcurrencyPolicy::Replace => {
                    sqlx::query(
                        "UPDATE executions SET cancel_requested = 1 \
                         WHERE job_id = ? AND status = 'running'",
                    )
                    .bind(execution.job_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                    // And so is every one of the job this batch started before it, as if the
                    // batch were claimed one at a time.
                    for earlier in claimed
                        .iter_mut()
                        .filter(|c| c.execution.job_id == execution.job_id)
                    {
                        earlier.execution.cancel_requested = true;
                    }
                }
                ConcurrencyPolicy::Allow => {
                    // A limited job's execution takes the lowest free slot, or waits.
                    if let Some(limit) = execution.max_running {
                        let job = execution.job_id.to_string();
                        let taken: Vec<i64> =
                            sqlx::query_scalar("SELECT slot FROM job_locks WHERE job_id = ?")
                                .bind(&job)
                                .fetch_all(&mut *tx)
                                .await?;
                        let Some(slot) = (0..i64::from(limit)).find(|s| !taken.contains(s)) else {
                            continue;
                        };
                        sqlx::query(
                            "INSERT INTO job_locks (job_id, slot, execution_id) VALUES (?, ?, ?)",
                        )
                        .bind(&job)
                        .bind(slot)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            let token = Uuid::new_v4();
            execution.status = Status::Running;
            execution.started_at = Some(now);
            execution.worker_id = Some(request.worker_id.clone());
            execution.lease_expires_at = Some(expires_at);
            claimed.push(Claimed {
                lease: Lease {
                    execution_id: execution.id,
                    token,
                    expires_at,
                },
                execution,
            });
        }
        let leases: Vec<(String, String, bool)> = claimed
            .iter()
            .map(|c| {
                (
                    c.execution.id.to_string(),
                    c.lease.token.to_string(),
                    c.execution.cancel_requested,
                )
            })
            .collect();
        sqlx::query(
            "UPDATE executions SET status = 'running', started_at = ?, worker_id = ?, \
                 lease_token = l.value ->> 1, lease_expires_at = ?, \
                 cancel_requested = cancel_requested OR (l.value ->> 2) \
             FROM json_each(?) AS l WHERE executions.id = l.value ->> 0",
        )
        .bind(micros(now))
        .bind(&request.worker_id)
        .bind(micros(expires_at))
        .bind(json_text(&leases)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn execution_heartbeat(
        &self,
        execution_id: ExecutionId,
        token: Uuid,
        lease_ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Heartbeat> {
        let ttl = chrono::Duration::from_std(lease_ttl)
            .map_err(|_| StoreError::Corrupt("lease ttl out of range".into()))?;
        let expires_at = now + ttl;
        let mut tx = self.begin().await?;
        let renewed = sqlx::query(
            "UPDATE executions SET lease_expires_at = ? \
             WHERE id = ? AND status = 'running' AND lease_token = ? RETURNING cancel_requested",
        )
        .bind(micros(expires_at))
        .bind(execution_id.to_string())
        .bind(token.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = renewed else {
            return match select_execution(&mut tx, execution_id).await? {
                None => Err(StoreError::not_found(format!("execution {execution_id}"))),
                Some(_) => Err(StoreError::Stale),
            };
        };
        let cancel_requested = row.try_get("cancel_requested")?;
        tx.commit().await?;
        Ok(Heartbeat {
            expires_at,
            cancel_requested,
        })
    }

    async fn execution_finish_many(
        &self,
        batch: &[Finish],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Finished>>> {
        let ids: Vec<String> = batch.iter().map(|f| f.execution_id.to_string()).collect();
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS}, lease_token FROM executions \
             WHERE id IN (SELECT value FROM json_each(?))"
        );
        let mut current = HashMap::with_capacity(batch.len());
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(json_text(&ids)?)
            .fetch_all(&mut *tx)
            .await?
        {
            let lease_token: Option<String> = row.try_get("lease_token")?;
            let execution = execution_from_row(&row)?;
            current.insert(execution.id, (execution, lease_token));
        }
        let mut results = Vec::with_capacity(batch.len());
        let mut settled = Vec::with_capacity(batch.len());
        for finish in batch {
            let result = match current.remove(&finish.execution_id) {
                Some((execution, Some(token)))
                    if execution.status == Status::Running && token == finish.token.to_string() =>
                {
                    let finished = lifecycle::settled(execution, Some(finish), now);
                    settled.push(finished.clone());
                    Ok(finished)
                }
                // Ended, leased to someone else, or already settled earlier in this batch.
                Some(_) => Err(StoreError::Stale),
                None if settled
                    .iter()
                    .any(|f| f.execution.id == finish.execution_id) =>
                {
                    Err(StoreError::Stale)
                }
                None => Err(StoreError::not_found(format!(
                    "execution {}",
                    finish.execution_id
                ))),
            };
            results.push(result);
        }
        write_settled(&mut tx, &settled).await?;
        tx.commit().await?;
        for retry in settled.iter().filter_map(|f| f.retry.as_ref()) {
            self.notify_queued(&retry.queue);
        }
        Ok(results)
    }

    async fn execution_release_many(
        &self,
        leases: &[(ExecutionId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Execution>>> {
        let mut tx = self.begin().await?;
        let mut results = Vec::with_capacity(leases.len());
        let mut woken = Vec::new();
        for (id, token) in leases {
            let result = match select_execution(&mut tx, *id).await? {
                None => Err(StoreError::not_found(format!("execution {id}"))),
                Some((execution, Some(held)))
                    if execution.status == Status::Running && held == token.to_string() =>
                {
                    if execution.cancel_requested {
                        let finish = lifecycle::released_cancelled(*id, *token);
                        let finished = lifecycle::settled(execution, Some(&finish), now);
                        write_settled(&mut tx, std::slice::from_ref(&finished)).await?;
                        Ok(finished.execution)
                    } else {
                        let released = lifecycle::released(&execution, now);
                        sqlx::query(
                            "UPDATE executions SET status = 'queued', run_at = ?, reason = ?, \
                                 started_at = NULL, worker_id = NULL, lease_token = NULL, \
                                 lease_expires_at = NULL \
                             WHERE id = ?",
                        )
                        .bind(micros(now))
                        .bind(lifecycle::RELEASED)
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query("DELETE FROM job_locks WHERE execution_id = ?")
                            .bind(id.to_string())
                            .execute(&mut *tx)
                            .await?;
                        woken.push(released.queue.clone());
                        Ok(released)
                    }
                }
                Some(_) => Err(StoreError::Stale),
            };
            results.push(result);
        }
        tx.commit().await?;
        for queue in woken {
            self.notify_queued(&queue);
        }
        Ok(results)
    }

    async fn execution_cancel(
        &self,
        id: ExecutionId,
        now: DateTime<Utc>,
    ) -> StoreResult<Execution> {
        let mut tx = self.begin().await?;
        let (mut execution, _) = select_execution(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("execution {id}")))?;
        match execution.status {
            Status::Queued => {
                execution.status = Status::Cancelled;
                execution.finished_at = Some(now);
                execution.reason = Some("cancelled by request".to_owned());
                sqlx::query(
                    "UPDATE executions SET status = 'cancelled', finished_at = ?, reason = ? \
                     WHERE id = ?",
                )
                .bind(micros(now))
                .bind(&execution.reason)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            }
            Status::Running => {
                execution.cancel_requested = true;
                sqlx::query("UPDATE executions SET cancel_requested = 1 WHERE id = ?")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            ended => {
                return Err(StoreError::Conflict(format!(
                    "execution {id} has already ended ({ended}); there is nothing to cancel"
                )));
            }
        }
        tx.commit().await?;
        Ok(execution)
    }

    async fn execution_rescue(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Finished>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions \
             WHERE status = 'running' AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?"
        );
        let expired = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let rescued = expired
            .iter()
            .map(|row| Ok(lifecycle::settled(execution_from_row(row)?, None, now)))
            .collect::<StoreResult<Vec<_>>>()?;
        write_settled(&mut tx, &rescued).await?;
        tx.commit().await?;
        for retry in rescued.iter().filter_map(|f| f.retry.as_ref()) {
            self.notify_queued(&retry.queue);
        }
        Ok(rescued)
    }

    async fn dlq_retry(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<Execution> {
        let mut tx = self.begin().await?;
        let retry = dlq_retry_one(&mut tx, id, now).await?;
        tx.commit().await?;
        self.notify_queued(&retry.queue);
        Ok(retry)
    }

    async fn dlq_retry_job(&self, job: &str, now: DateTime<Utc>) -> StoreResult<Vec<Execution>> {
        let mut tx = self.begin().await?;
        let job = live_job_by_name(&mut tx, job).await?;
        let dead: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM executions e WHERE job_id = ? AND status = 'dead' \
               AND NOT EXISTS (SELECT 1 FROM dlq_resolutions r WHERE r.execution_id = e.id) \
             ORDER BY id",
        )
        .bind(job.id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut retries = Vec::with_capacity(dead.len());
        for id in dead {
            let id: ExecutionId = id
                .parse()
                .map_err(|err| StoreError::Corrupt(format!("execution id {id:?}: {err}")))?;
            retries.push(dlq_retry_one(&mut tx, id, now).await?);
        }
        tx.commit().await?;
        if let Some(retry) = retries.first() {
            self.notify_queued(&retry.queue);
        }
        Ok(retries)
    }

    async fn dlq_discard(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        dead_letter(&mut tx, id).await?;
        dlq_resolve(&mut tx, id, lifecycle::DlqResolution::Discarded, None, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn execution_get(&self, id: ExecutionId) -> StoreResult<Execution> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("execution {id}")))?;
        execution_from_row(&row)
    }

    async fn execution_list(&self, filter: &ExecutionFilter) -> StoreResult<ExecutionPage> {
        let limit = match filter.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        // Only the conditions that apply: SQLite plans a statement once, and a condition such
        // as `(?1 IS NULL OR job_name = ?1)` keeps it from using the index that fits, so a deep
        // page of a long history would scan every newer row. Each status is an equality of its
        // own, read newest first from `executions_job_status` and the lists merged: with
        // `status IN (…)` the plan walked the job's whole history looking for a rare status.
        let statuses = lifecycle::status_ranges(filter);
        let fetch = i64::from(limit) + 1;
        let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {EXECUTION_COLUMNS} FROM ("));
        for (i, status) in statuses.iter().enumerate() {
            if i > 0 {
                query.push(" UNION ALL ");
            }
            query.push("SELECT * FROM (SELECT * FROM executions");
            let mut and = " WHERE ";
            if let Some(job) = &filter.job {
                query.push(and).push("job_name = ").push_bind(job.clone());
                and = " AND ";
            }
            if let Some(status) = status {
                query.push(and).push("status = ").push_bind(*status);
                and = " AND ";
            }
            if let Some(trigger) = filter.trigger {
                query
                    .push(and)
                    .push("trigger = ")
                    .push_bind(trigger.as_str());
                and = " AND ";
            }
            if let Some(root) = filter.root {
                query
                    .push(and)
                    .push("root_id = ")
                    .push_bind(root.to_string());
                and = " AND ";
            }
            if let Some(before) = filter.before {
                query.push(and).push("id < ").push_bind(before.to_string());
                and = " AND ";
            }
            if filter.dead_letter {
                query.push(and).push(
                    "status = 'dead' AND NOT EXISTS ( \
                     SELECT 1 FROM dlq_resolutions r WHERE r.execution_id = executions.id)",
                );
            }
            query
                .push(" ORDER BY id DESC LIMIT ")
                .push_bind(fetch)
                .push(")");
        }
        query.push(") ORDER BY id DESC LIMIT ").push_bind(fetch);
        let rows = query.build().fetch_all(&self.reader).await?;
        let mut executions = rows
            .iter()
            .map(execution_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let more = executions.len() > limit as usize;
        executions.truncate(limit as usize);
        let next = more.then(|| executions.last().map(|e| e.id)).flatten();
        Ok(ExecutionPage { executions, next })
    }

    async fn execution_recent_per_job(
        &self,
        jobs: &[String],
        per_job: u32,
    ) -> StoreResult<Vec<ExecutionBrief>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let names = serde_json::to_string(jobs).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // One row per job, its executions packed into one string, newest first: one range of
        // `executions_job` per job, and a row per job to decode instead of one per execution,
        // which was most of the cost.
        let rows = sqlx::query(
            "SELECT j.value AS name, ( \
                 SELECT group_concat(b, ',' ORDER BY k DESC) FROM ( \
                     SELECT x.id AS k, x.id || ' ' || x.status || ' ' || x.trigger || ' ' || \
                         x.attempt || ' ' || x.created_at || ' ' || \
                         ifnull(x.started_at, '') || ' ' || ifnull(x.finished_at, '') AS b \
                     FROM executions x INDEXED BY executions_job \
                     WHERE x.job_name = j.value ORDER BY x.id DESC LIMIT ?2) \
             ) AS recent \
             FROM (SELECT DISTINCT value FROM json_each(?1)) j \
             ORDER BY j.value",
        )
        .bind(names)
        .bind(i64::from(per_job.min(100)))
        .fetch_all(&self.reader)
        .await?;
        let mut briefs = Vec::new();
        for row in &rows {
            let job_name: String = row.try_get("name")?;
            let recent: Option<String> = row.try_get("recent")?;
            for packed in recent.as_deref().unwrap_or("").split(',') {
                if packed.is_empty() {
                    continue;
                }
                briefs.push(unpack_brief(&job_name, packed)?);
            }
        }
        Ok(briefs)
    }

    async fn queue_stats(&self, now: DateTime<Utc>) -> StoreResult<Vec<QueueStats>> {
        let now = micros(now);
        sqlx::query(
            "SELECT queue, \
                 SUM(status = 'queued' AND run_at <= ?1) AS due, \
                 SUM(status = 'queued' AND run_at > ?1) AS waiting, \
                 SUM(status = 'running') AS running, \
                 MIN(CASE WHEN status = 'queued' AND run_at <= ?1 THEN run_at END) AS oldest \
             FROM executions INDEXED BY executions_status \
             WHERE status IN ('queued', 'running') GROUP BY queue ORDER BY queue",
        )
        .bind(now)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            Ok(QueueStats {
                queue: row.try_get("queue")?,
                due: count(row.try_get("due")?),
                waiting: count(row.try_get("waiting")?),
                running: count(row.try_get("running")?),
                oldest_due_at: row
                    .try_get::<Option<i64>, _>("oldest")?
                    .map(instant)
                    .transpose()?,
            })
        })
        .collect()
    }

    async fn execution_latest(&self, job: &str) -> StoreResult<Option<Execution>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions \
             WHERE job_name = ? AND status <> 'skipped' ORDER BY id DESC LIMIT 1"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(execution_from_row)
            .transpose()
    }

    async fn slot_record_many(
        &self,
        slots: &[NewSlot],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<SlotRecord>>> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let job_ids: Vec<String> = slots.iter().map(|s| s.job_id.to_string()).collect();
        let keys: Vec<(String, i64)> = slots
            .iter()
            .map(|s| (s.job_id.to_string(), micros(s.scheduled_at)))
            .collect();
        let mut tx = self.begin().await?;
        let mut jobs = HashMap::new();
        for row in sqlx::query(
            "SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(?)) \
             AND deleted_at IS NULL",
        )
        .bind(json_text(&job_ids)?)
        .fetch_all(&mut *tx)
        .await?
        {
            let job = job_from_row(&row)?;
            jobs.insert(job.id, job);
        }
        let mut recorded = HashMap::new();
        for row in sqlx::query(
            "SELECT s.* FROM json_each(?) k CROSS JOIN slots s \
             ON s.job_id = k.value ->> 0 AND s.scheduled_at = k.value ->> 1",
        )
        .bind(json_text(&keys)?)
        .fetch_all(&mut *tx)
        .await?
        {
            let slot = slot_from_row(&row)?;
            recorded.insert((slot.job_id, slot.scheduled_at), slot);
        }

        let plans = lifecycle::plan_slots(slots, &jobs, &recorded, now);
        let mut executions = Vec::new();
        let mut rows = Vec::new();
        for plan in &plans {
            if let SlotPlan::New(execution, slot) = plan {
                executions.push((**execution).clone());
                rows.push(serde_json::json!([
                    slot.job_id.to_string(),
                    micros(slot.scheduled_at),
                    execution.id.to_string(),
                    slot.fired,
                ]));
            }
        }
        insert_executions(&mut tx, &executions).await?;
        sqlx::query(
            "INSERT INTO slots (job_id, scheduled_at, execution_id, fired, recorded_at) \
             SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, ? \
             FROM json_each(?) AS r",
        )
        .bind(micros(now))
        .bind(json_text(&rows)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(plans
            .into_iter()
            .map(|plan| match plan {
                SlotPlan::Refused(err) => Err(err),
                SlotPlan::Recorded(slot) => Ok(SlotRecord::Duplicate(slot)),
                SlotPlan::New(execution, slot) => {
                    if slot.fired {
                        self.notify_queued(&execution.queue);
                    }
                    Ok(SlotRecord::Inserted(slot))
                }
            })
            .collect())
    }

    async fn slot_list(&self, job_id: JobId, limit: u32) -> StoreResult<Vec<Slot>> {
        sqlx::query("SELECT * FROM slots WHERE job_id = ? ORDER BY scheduled_at DESC LIMIT ?")
            .bind(job_id.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(slot_from_row)
            .collect()
    }

    async fn log_append(&self, execution_id: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()> {
        // Compressed before the transaction: SQLite has one writer, which claims and finishes
        // wait for.
        let encoded: Vec<_> = chunks
            .iter()
            .map(|chunk| log_codec::encode(&chunk.data))
            .collect();
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM executions WHERE id = ?")
            .bind(execution_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found(format!("execution {execution_id}")));
        }
        for (chunk, (codec, data)) in chunks.iter().zip(&encoded) {
            let seq = i64::try_from(chunk.seq).map_err(|_| {
                StoreError::Invalid(panda_core::ValidationError::Field {
                    field: "seq",
                    message: format!("{} is too large", chunk.seq),
                })
            })?;
            sqlx::query(
                "INSERT INTO log_chunks (execution_id, seq, stream, at, data, codec) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (execution_id, seq) DO NOTHING",
            )
            .bind(execution_id.to_string())
            .bind(seq)
            .bind(chunk.stream.as_str())
            .bind(micros(chunk.at))
            .bind(data.as_ref())
            .bind(codec.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn log_read(
        &self,
        execution_id: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<LogChunk>> {
        let after = after.map_or(-1, |seq| i64::try_from(seq).unwrap_or(i64::MAX));
        sqlx::query(
            "SELECT seq, stream, at, data, codec FROM log_chunks \
             WHERE execution_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(execution_id.to_string())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(chunk_from_row)
        .collect()
    }

    async fn log_tail(&self, execution_id: ExecutionId, n: u32) -> StoreResult<Vec<LogChunk>> {
        let mut chunks = sqlx::query(
            "SELECT seq, stream, at, data, codec FROM log_chunks \
             WHERE execution_id = ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(execution_id.to_string())
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(chunk_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        chunks.reverse();
        Ok(chunks)
    }

    async fn token_create(
        &self,
        name: &str,
        scope: TokenScope,
        now: DateTime<Utc>,
    ) -> StoreResult<(ApiToken, String)> {
        validate_name("token", name)?;
        let secret = token::generate_secret();
        let token = ApiToken {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            scope,
            created_at: now,
            last_used_at: None,
        };
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (id, name, scope, hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token.id.to_string())
        .bind(name)
        .bind(scope.as_str())
        .bind(token::hash_secret(&secret))
        .bind(micros(now))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::Conflict(format!(
                    "a token named {name:?} already exists; revoke it first or pick another name"
                )));
            }
            other => other?,
        };
        tx.commit().await?;
        Ok((token, secret))
    }

    async fn token_verify(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiToken>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE hash = ? AND revoked_at IS NULL")
            .bind(token::hash_secret(secret))
            .fetch_optional(&self.reader)
            .await?;
        let Some(row) = row else { return Ok(None) };
        if !token::hash_matches(row.try_get("hash")?, secret) {
            return Ok(None);
        }
        let mut token = token_from_row(&row)?;
        let stale_after = now - chrono::Duration::minutes(1);
        if token.last_used_at.is_none_or(|t| t < stale_after) {
            sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
                .bind(micros(now))
                .bind(token.id.to_string())
                .execute(&self.writer)
                .await?;
            token.last_used_at = Some(now);
        }
        Ok(Some(token))
    }

    async fn token_list(&self) -> StoreResult<Vec<ApiToken>> {
        sqlx::query("SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY name")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    async fn token_revoke(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
        )
        .bind(micros(now))
        .bind(name)
        .execute(&self.writer)
        .await?;
        if revoked.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("token {name:?}")));
        }
        Ok(())
    }

    async fn retention_prune(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> StoreResult<Pruned> {
        let batch = retention.batch.max(1);
        // What to delete is found on a reader, job by job through the retention indexes, so
        // the write transaction (which claims wait for) only deletes. A finished execution
        // never changes again, and a keep boundary only moves forward as newer executions
        // finish, so a choice made outside the transaction stays right.
        let jobs = sqlx::query("SELECT id, spec FROM jobs ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        let mut rules = Vec::with_capacity(jobs.len());
        for row in &jobs {
            let id: String = row.try_get("id")?;
            let spec: JobSpec = from_json("job spec", row.try_get("spec")?)?;
            rules.push((id, lifecycle::job_retention(&spec, retention, now)));
        }
        let mut doomed: Vec<String> = Vec::new();
        for (job_id, rule) in &rules {
            let room = i64::from(batch) - doomed.len() as i64;
            if room <= 0 {
                break;
            }
            let cutoff = rule.cutoff.map(micros);
            if let Some(cutoff) = cutoff {
                let old: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM executions INDEXED BY executions_retention_age \
                     WHERE job_id = ?1 AND finished_at IS NOT NULL AND finished_at < ?2 \
                     ORDER BY finished_at LIMIT ?3",
                )
                .bind(job_id)
                .bind(cutoff)
                .bind(room)
                .fetch_all(&self.reader)
                .await?;
                doomed.extend(old);
            }
            let room = i64::from(batch) - doomed.len() as i64;
            if room <= 0 {
                break;
            }
            // The oldest execution kept by count: everything finished before it goes.
            let boundary: Option<String> = sqlx::query_scalar(
                "SELECT id FROM executions INDEXED BY executions_retention_keep \
                 WHERE job_id = ?1 AND finished_at IS NOT NULL AND status <> 'dead' \
                 ORDER BY id DESC LIMIT 1 OFFSET ?2",
            )
            .bind(job_id)
            .bind(i64::from(rule.keep) - 1)
            .fetch_optional(&self.reader)
            .await?;
            if let Some(boundary) = boundary {
                // Those past the age cutoff were taken above.
                let extra: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM executions INDEXED BY executions_retention_keep \
                     WHERE job_id = ?1 AND finished_at IS NOT NULL AND status <> 'dead' \
                     AND id < ?2 AND (?3 IS NULL OR finished_at >= ?3) \
                     ORDER BY id LIMIT ?4",
                )
                .bind(job_id)
                .bind(&boundary)
                .bind(cutoff)
                .bind(room)
                .fetch_all(&self.reader)
                .await?;
                doomed.extend(extra);
            }
        }
        if doomed.is_empty() && rules.iter().all(|(_, rule)| rule.cutoff.is_none()) {
            return Ok(Pruned::default());
        }
        let ids = json_text(&doomed)?;
        let mut tx = self.begin().await?;
        let log_chunks = sqlx::query(
            "DELETE FROM log_chunks WHERE execution_id IN (SELECT value FROM json_each(?))",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM dlq_resolutions WHERE execution_id IN (SELECT value FROM json_each(?))",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        let executions = sqlx::query(
            "DELETE FROM executions \
             WHERE id IN (SELECT value FROM json_each(?)) AND finished_at IS NOT NULL",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut slots = 0;
        for (job_id, rule) in &rules {
            let room = u64::from(batch).saturating_sub(slots);
            let Some(cutoff) = rule.cutoff.map(micros) else {
                continue;
            };
            if room == 0 {
                break;
            }
            slots += sqlx::query(
                "DELETE FROM slots WHERE job_id = ?1 AND scheduled_at IN ( \
                     SELECT scheduled_at FROM slots WHERE job_id = ?1 AND scheduled_at < ?2 \
                     ORDER BY scheduled_at LIMIT ?3)",
            )
            .bind(job_id)
            .bind(cutoff)
            .bind(i64::try_from(room).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(Pruned {
            executions,
            log_chunks,
            slots,
        })
    }

    async fn alert_inbox(&self, limit: u32) -> StoreResult<Vec<Execution>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE id IN ( \
                 SELECT execution_id FROM alert_inbox ORDER BY finished_at, execution_id LIMIT ?) \
             ORDER BY finished_at, id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(execution_from_row)
            .collect()
    }

    async fn alert_inbox_done(&self, ids: &[ExecutionId]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM alert_inbox WHERE execution_id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_text(&ids)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn alert_raise(
        &self,
        alert: &NewAlert,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Alert>> {
        let id = Uuid::now_v7();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO alerts \
                 (id, incident, job_id, job_name, kind, execution_id, message, body, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (incident) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(&alert.incident)
        .bind(alert.job_id.to_string())
        .bind(&alert.job)
        .bind(alert.kind.as_str())
        .bind(alert.execution_id.map(|e| e.to_string()))
        .bind(&alert.message)
        .bind(json_text(&alert.body)?)
        .bind(micros(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        let mut deliveries = Vec::with_capacity(alert.notifiers.len());
        for (notifier, url) in &alert.notifiers {
            let delivery = AlertDelivery {
                id: Uuid::now_v7(),
                notifier: *notifier,
                url: url.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: Some(now),
                last_error: None,
                delivered_at: None,
            };
            sqlx::query(
                "INSERT INTO alert_deliveries \
                     (id, alert_id, notifier, url, state, attempts, next_attempt_at) \
                 VALUES (?, ?, ?, ?, 'pending', 0, ?)",
            )
            .bind(delivery.id.to_string())
            .bind(id.to_string())
            .bind(notifier.as_str())
            .bind(url)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            deliveries.push(delivery);
        }
        tx.commit().await?;
        Ok(Some(Alert {
            id,
            job_id: alert.job_id,
            job: alert.job.clone(),
            kind: alert.kind,
            execution_id: alert.execution_id,
            message: alert.message.clone(),
            body: alert.body.clone(),
            created_at: instant(micros(now))?,
            deliveries,
        }))
    }

    async fn alert_latest(&self, job_id: JobId) -> StoreResult<Option<Alert>> {
        sqlx::query("SELECT * FROM alerts WHERE job_id = ? ORDER BY id DESC LIMIT 1")
            .bind(job_id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(alert_from_row)
            .transpose()
    }

    async fn alert_open(&self) -> StoreResult<Vec<Alert>> {
        sqlx::query(
            "SELECT a.* FROM (SELECT job_id, MAX(id) AS id FROM alerts GROUP BY job_id) AS m \
             JOIN alerts a ON a.id = m.id WHERE a.kind <> 'recovered' ORDER BY a.id",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(alert_from_row)
        .collect()
    }

    async fn alert_list(&self, job: Option<&str>, limit: u32) -> StoreResult<Vec<Alert>> {
        let limit = i64::from(page_size(limit));
        let rows = match job {
            Some(job) => {
                sqlx::query("SELECT * FROM alerts WHERE job_name = ? ORDER BY id DESC LIMIT ?")
                    .bind(job)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM alerts ORDER BY id DESC LIMIT ?")
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?
            }
        };
        let alerts = rows
            .iter()
            .map(alert_from_row)
            .collect::<StoreResult<_>>()?;
        attach_deliveries(&self.reader, alerts).await
    }

    async fn alert_deliveries_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        hold: Duration,
    ) -> StoreResult<Vec<DueDelivery>> {
        let held = now + chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "UPDATE alert_deliveries SET attempts = attempts + 1, next_attempt_at = ?1 \
             WHERE id IN (SELECT id FROM alert_deliveries \
                 WHERE state = 'pending' AND next_attempt_at <= ?2 \
                 ORDER BY next_attempt_at LIMIT ?3) \
             RETURNING *",
        )
        .bind(micros(held))
        .bind(micros(now))
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let alert_id: String = row.try_get("alert_id")?;
            let alert = sqlx::query("SELECT * FROM alerts WHERE id = ?")
                .bind(&alert_id)
                .fetch_one(&mut *tx)
                .await?;
            due.push(DueDelivery {
                delivery: delivery_from_row(row)?,
                alert: alert_from_row(&alert)?,
            });
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn alert_delivery_record(
        &self,
        id: Uuid,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (state, next, error, delivered) = match outcome {
            DeliveryOutcome::Delivered => (DeliveryState::Delivered, None, None, Some(now)),
            DeliveryOutcome::Retry { error, at } => {
                (DeliveryState::Pending, Some(*at), Some(error), None)
            }
            DeliveryOutcome::GaveUp { error } => (DeliveryState::Failed, None, Some(error), None),
        };
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE alert_deliveries SET state = ?, next_attempt_at = ?, \
                 last_error = COALESCE(?, last_error), delivered_at = ? \
             WHERE id = ?",
        )
        .bind(state.as_str())
        .bind(next.map(micros))
        .bind(error)
        .bind(delivered.map(micros))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if updated == 0 {
            return Err(StoreError::not_found(format!("alert delivery {id}")));
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }
}

/// What only SQLite can get wrong: the conformance suite in `tests/` covers the contract.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogChunk, LogStream};
    use panda_core::{JobName, JobSpec, RuntimeSpec};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_sqlite_ended_on_its_own_does_not_stop_later_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("panda.db"))
            .await
            .expect("open");
        // As after an error SQLite answers by rolling back: the transaction ends under sqlx's
        // feet, and the ROLLBACK sent when it is dropped fails.
        let mut tx = store.begin().await.expect("begin");
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut *tx)
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_cut_back_after_a_burst_of_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("panda.db"))
            .await
            .expect("open");
        let spec = JobSpec::new(
            JobName::new("burst").expect("name"),
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        store.job_create(&spec, Utc::now()).await.expect("job");
        let execution = store
            .execution_enqueue(&crate::NewExecution::api("burst"), Utc::now())
            .await
            .expect("enqueue")
            .execution
            .id;
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
        assert!(
            size() > WAL_SIZE_LIMIT,
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
}
