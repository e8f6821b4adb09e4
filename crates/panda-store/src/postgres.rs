//! The shared store: PostgreSQL, for many nodes.
//!
//! The semantics are those of [`SqliteStore`](crate::SqliteStore), and the retry and settle
//! decisions come from the same `lifecycle` module; what differs is how concurrent nodes are kept
//! apart, because here they really do run at the same time:
//!
//! - **Claims use `FOR UPDATE SKIP LOCKED`**: each claimer locks the due rows it picked and
//!   skips the rows another claimer holds, so no execution is claimed twice and no claimer
//!   waits on another. The job lock of `forbid` jobs is a row in `job_locks`, inserted with
//!   `ON CONFLICT DO NOTHING` in key order (so two claimers cannot deadlock on it).
//! - **Races are settled by unique indexes**, not by reading first: an enqueue with an
//!   idempotency key and a cron slot are inserted with `ON CONFLICT DO NOTHING`, and the loser
//!   reads the winner's row.
//! - **Batches are set-based**: a claim marks all its executions running, and a finish settles
//!   all its items, with one statement each (`UNNEST` of per-row values), not a round trip per
//!   row.
//! - **Wake-ups use `LISTEN/NOTIFY` as a hint only**: enqueues, fired slots and retries call
//!   `pg_notify('panda_queued', queue)` in their transaction; a background task per store holds
//!   a `LISTEN` connection and forwards what it hears to [`Store::subscribe`]. It drops notices
//!   while it reconnects, which is fine: workers poll as well.
//!
//! Every instant comes from the caller's `now`, never from the database's `NOW()`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, Job, JobId, JobSpec, RetryPolicy, Status, Trigger,
    ValidationError, validate_name,
};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder, Row, Transaction};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::lifecycle::{self, SlotPlan};
use crate::log_codec;
use crate::model::{
    ApiToken, ClaimRequest, Claimed, DeliveryOutcome, DueDelivery, Enqueued, ExecutionBrief,
    ExecutionFilter, ExecutionPage, Finish, Finished, Heartbeat, JobKind, Lease, LogChunk,
    LogStream, NewAlert, NewExecution, NewSlot, Notice, Outcome, Pruned, QueueStats, Retention,
    Slot, SlotRecord, TokenScope,
};
use crate::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Store, StoreError, StoreResult, page_size, token};
use panda_core::api::{Alert, AlertDelivery, DeliveryState};

const EXECUTION_COLUMNS: &str = "id, root_id, job_id, job_name, queue, priority, status, trigger, \
    attempt, max_attempts, backoff_base_ms, backoff_cap_ms, concurrency, idempotency_key, payload, \
    env, scheduled_at, run_at, created_at, started_at, finished_at, worker_id, lease_expires_at, \
    cancel_requested, exit_code, reason, image_digest, max_running";

/// The channel wake-ups are sent on; the payload is the queue's name.
const CHANNEL: &str = "panda_queued";
/// The first wait before the listener reconnects; it doubles up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// [`Store`] on a PostgreSQL database, shared by every node.
///
/// Cloning is cheap and shares the pool; the `LISTEN` task stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The schema the tables live in, when it is not the connection's default.
    schema: Option<String>,
    notices: broadcast::Sender<Notice>,
    _listener: Arc<ListenerTask>,
}

/// Stops the `LISTEN` task when the last store handle goes.
#[derive(Debug)]
struct ListenerTask(AbortHandle);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgStore {
    /// Connects to the database at `url` with a pool of up to `max_connections`, brings the
    /// schema of the connection's default search path (normally `public`) up to date and starts
    /// listening for wake-ups.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        Self::open(url, None, max_connections).await
    }

    /// [`PgStore::connect`], but with every table in `schema`, which is created if missing:
    /// one database can hold many independent stores (one per test, one per benchmark run).
    /// `Invalid` unless the name is 1 to 63 of `a-z`, `0-9` and `_`.
    pub async fn connect_in_schema(
        url: &str,
        schema: &str,
        max_connections: u32,
    ) -> StoreResult<Self> {
        validate_schema_name(schema)?;
        Self::open(url, Some(schema), max_connections).await
    }

    /// Drops the schema this store was opened in, with everything in it. For throwaway stores
    /// made with [`PgStore::connect_in_schema`]; `Conflict` for a store opened with
    /// [`PgStore::connect`] or in `public`, whose data is not this store's to throw away.
    pub async fn drop_schema(&self) -> StoreResult<()> {
        let Some(schema) = self.schema.as_deref().filter(|s| *s != "public") else {
            return Err(StoreError::Conflict(
                "refusing to drop the default schema; only a store opened in a schema of its own \
                 can drop it"
                    .into(),
            ));
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn open(url: &str, schema: Option<&str>, max_connections: u32) -> StoreResult<Self> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            create_schema(&options, schema).await?;
            options = options.options([("search_path", schema)]);
        }
        // JIT compiling pays off for long analytical queries, never for these short ones, and
        // an estimate off by a lot (a lock table never analyzed) can make a 1 ms claim spend
        // 100 ms compiling.
        let options = options.options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;

        let (notices, _) = broadcast::channel(1024);
        // The listener has a connection of its own, so it never takes one from the pool the
        // store's work needs. The first LISTEN happens before `connect` returns, so a caller
        // that subscribes at once hears the next enqueue; failing that, the task keeps trying.
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options);
        let listener = match listen(&listener_pool).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                tracing::warn!(error = %err, "LISTEN {CHANNEL} failed; retrying in the background");
                None
            }
        };
        let task = tokio::spawn(forward_notices(listener_pool, listener, notices.clone()));
        Ok(Self {
            pool,
            schema: schema.map(str::to_owned),
            notices,
            _listener: Arc::new(ListenerTask(task.abort_handle())),
        })
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// A finish batch in which every run succeeded: no retries, no alerts, nothing to decide
    /// from the stored row. One statement writes them, fenced by each lease, and releases any
    /// job slots they held, with no transaction around it (it is one). Items it did not write
    /// (stale, unknown, or a second item for one execution) go through the full path, which
    /// says why.
    async fn finish_successes(
        &self,
        batch: &[Finish],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Finished>>> {
        let reports: Vec<Finish> = batch.iter().map(storable_report).collect();
        // In id order, as every batch write here, so that two writers never deadlock.
        // `(status = 'running') IS TRUE` is the plain test written so that the planner cannot
        // answer it from `executions_lease` (the partial index of running executions): it
        // would scan that index whole, with every entry that runs since the last vacuum left
        // dead, instead of looking each id up in the primary key.
        let mut order: Vec<&Finish> = reports.iter().collect();
        order.sort_by_key(|f| f.execution_id);
        let sql = format!(
            "WITH t AS ( \
                 SELECT * FROM UNNEST($2::uuid[], $3::uuid[], $4::integer[], $5::text[], \
                     $6::text[]) AS t(id, token, exit_code, reason, image_digest)), \
             u AS ( \
                 UPDATE executions e SET status = 'succeeded', finished_at = $1, \
                     lease_token = NULL, lease_expires_at = NULL, reason = t.reason, \
                     exit_code = t.exit_code, image_digest = t.image_digest \
                 FROM t WHERE e.id = t.id AND e.lease_token = t.token \
                     AND (e.status = 'running') IS TRUE \
                 RETURNING e.*), \
             d AS (DELETE FROM job_locks l USING u WHERE l.execution_id = u.id) \
             SELECT {EXECUTION_COLUMNS} FROM u"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(
                order
                    .iter()
                    .map(|f| f.execution_id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(order.iter().map(|f| f.token).collect::<Vec<_>>())
            .bind(order.iter().map(|f| f.exit_code).collect::<Vec<_>>())
            .bind(
                order
                    .iter()
                    .map(|f| f.reason.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                order
                    .iter()
                    .map(|f| f.image_digest.as_deref())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&self.pool)
            .await?;
        let mut written: HashMap<ExecutionId, Execution> = HashMap::new();
        for row in &rows {
            let execution = execution_from_row(row)?;
            written.insert(execution.id, execution);
        }
        let mut results: Vec<Option<StoreResult<Finished>>> = batch
            .iter()
            .map(|f| {
                written.remove(&f.execution_id).map(|execution| {
                    Ok(Finished {
                        execution,
                        retry: None,
                    })
                })
            })
            .collect();
        let rest: Vec<Finish> = batch
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(f, _)| f.clone())
            .collect();
        if !rest.is_empty() {
            let mut answers = self.finish_in_full(&rest, now).await?.into_iter();
            for slot in results.iter_mut().filter(|r| r.is_none()) {
                *slot = answers.next();
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(StoreError::Stale)))
            .collect())
    }

    /// A finish batch item by item, from the stored rows: retries, dead letters, alerts.
    async fn finish_in_full(
        &self,
        batch: &[Finish],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Finished>>> {
        let mut tx = self.begin().await?;
        // Every item's row at once, unlocked: the writes below are fenced by the lease, so an
        // item whose lease moves on in between is refused as stale then.
        let ids: Vec<Uuid> = batch.iter().map(|f| f.execution_id.as_uuid()).collect();
        let sql =
            format!("SELECT {EXECUTION_COLUMNS}, lease_token FROM executions WHERE id = ANY($1)");
        let mut current: HashMap<ExecutionId, (Execution, Option<Uuid>)> = HashMap::new();
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?
        {
            let execution = execution_from_row(&row)?;
            current.insert(execution.id, (execution, row.try_get("lease_token")?));
        }

        // Items in order, as if one at a time: an execution finished earlier in the batch has
        // ended, so a second item for it is stale.
        let mut results: Vec<StoreResult<Finished>> = Vec::with_capacity(batch.len());
        let mut settling = Vec::new();
        let mut settling_at = Vec::new();
        for (i, finish) in batch.iter().enumerate() {
            let Some((execution, lease_token)) = current.get_mut(&finish.execution_id) else {
                results.push(Err(StoreError::not_found(format!(
                    "execution {}",
                    finish.execution_id
                ))));
                continue;
            };
            // Stale unless settled below.
            results.push(Err(StoreError::Stale));
            let holds_lease =
                execution.status == Status::Running && *lease_token == Some(finish.token);
            if !holds_lease {
                continue;
            }
            let finished =
                lifecycle::settled(execution.clone(), Some(&storable_report(finish)), now);
            execution.status = finished.execution.status;
            *lease_token = None;
            settling.push(Settling {
                finished,
                token: finish.token,
            });
            settling_at.push(i);
        }
        let settled = settle_executions(&mut tx, settling, now).await?;
        for (i, finished) in settling_at.into_iter().zip(settled) {
            if let Some(finished) = finished {
                results[i] = Ok(finished);
            }
        }
        tx.commit().await?;
        Ok(results)
    }
}

fn validate_schema_name(schema: &str) -> StoreResult<()> {
    let valid = (1..=63).contains(&schema.len())
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(ValidationError::Field {
            field: "schema",
            message: format!("{schema:?} is not a schema name; use 1 to 63 of a-z, 0-9 and _"),
        }))
    }
}

/// Creates `schema` unless it exists (checked first, so a role without the right to create
/// schemas can still use one made for it).
async fn create_schema(options: &PgConnectOptions, schema: &str) -> StoreResult<()> {
    let mut conn = PgConnection::connect_with(options).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // The name was validated to [a-z0-9_], so quoting it is enough.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
        )))
        .execute(&mut conn)
        .await?;
    }
    conn.close().await?;
    Ok(())
}

// ---- wake-ups ----

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards every notification on [`CHANNEL`] to the store's subscribers until the task is
/// aborted, reconnecting (with a growing pause) whenever the connection fails.
async fn forward_notices(
    pool: PgPool,
    mut listener: Option<PgListener>,
    notices: broadcast::Sender<Notice>,
) {
    let mut pause = RECONNECT_MIN;
    loop {
        let mut active = match listener.take() {
            Some(active) => active,
            None => match listen(&pool).await {
                Ok(active) => active,
                Err(err) => {
                    tracing::warn!(error = %err, "LISTEN {CHANNEL} failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECONNECT_MAX);
                    continue;
                }
            },
        };
        loop {
            match active.recv().await {
                Ok(notification) => {
                    pause = RECONNECT_MIN;
                    // No receiver is fine: polling is the truth.
                    let _ = notices.send(Notice::Queued {
                        queue: notification.payload().to_owned(),
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "LISTEN {CHANNEL} connection failed; reconnecting");
                    break;
                }
            }
        }
        drop(active);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// Wakes the workers of each queue, when the transaction commits (NOTIFY is transactional).
async fn notify_queued(tx: &mut Transaction<'_, Postgres>, queues: &[&str]) -> StoreResult<()> {
    let queues: Vec<&str> = queues
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if queues.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, t.queue) FROM UNNEST($2::text[]) AS t(queue)")
        .bind(CHANNEL)
        .bind(&queues)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// ---- encoding ----

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse<T: FromStr>(what: &str, text: &str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} {text:?}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    value: serde_json::Value,
) -> StoreResult<T> {
    serde_json::from_value(value).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether a name looked up can be stored at all; one that cannot (it holds a NUL character)
/// names nothing, and PostgreSQL would refuse the query.
fn storable_name(name: &str) -> bool {
    !name.contains('\0')
}

/// Text a worker reports (its id, an engine's error message) is recorded even when it holds a
/// NUL character, which PostgreSQL cannot store: the NUL becomes U+FFFD.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

fn job_from_row(row: &PgRow) -> StoreResult<Job> {
    Ok(Job {
        id: JobId::from_uuid(row.try_get("id")?),
        spec: from_json("job spec", row.try_get("spec")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn execution_from_row(row: &PgRow) -> StoreResult<Execution> {
    let attempt: i32 = row.try_get("attempt")?;
    let max_attempts: i32 = row.try_get("max_attempts")?;
    let base_ms: i64 = row.try_get("backoff_base_ms")?;
    let cap_ms: i64 = row.try_get("backoff_cap_ms")?;
    let as_u32 = |what: &str, v: i32| {
        u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v}")))
    };
    let as_ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    Ok(Execution {
        id: ExecutionId::from_uuid(row.try_get("id")?),
        root_id: ExecutionId::from_uuid(row.try_get("root_id")?),
        job_id: JobId::from_uuid(row.try_get("job_id")?),
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
            .try_get::<Option<i32>, _>("max_running")?
            .map(|v| as_u32("max_running", v))
            .transpose()?,
        idempotency_key: row.try_get("idempotency_key")?,
        payload: row.try_get("payload")?,
        env: from_json("env", row.try_get("env")?)?,
        scheduled_at: row.try_get("scheduled_at")?,
        run_at: row.try_get("run_at")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        worker_id: row.try_get("worker_id")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        cancel_requested: row.try_get("cancel_requested")?,
        exit_code: row.try_get("exit_code")?,
        reason: row.try_get("reason")?,
        image_digest: row.try_get("image_digest")?,
    })
}

fn token_from_row(row: &PgRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scope: parse("scope", row.try_get("scope")?)?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn chunk_from_row(row: &PgRow) -> StoreResult<LogChunk> {
    let seq: i64 = row.try_get("seq")?;
    Ok(LogChunk {
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("seq {seq}")))?,
        stream: parse::<LogStream>("stream", row.try_get("stream")?)?,
        at: row.try_get("at")?,
        data: log_codec::decode(
            log_codec::Codec::parse(row.try_get("codec")?)?,
            row.try_get("data")?,
        )?,
    })
}

fn alert_from_row(row: &PgRow) -> StoreResult<Alert> {
    Ok(Alert {
        id: row.try_get("id")?,
        job_id: JobId::from_uuid(row.try_get("job_id")?),
        job: row.try_get("job_name")?,
        kind: parse("alert kind", row.try_get("kind")?)?,
        execution_id: row
            .try_get::<Option<Uuid>, _>("execution_id")?
            .map(ExecutionId::from_uuid),
        message: row.try_get("message")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
        deliveries: Vec::new(),
    })
}

fn delivery_from_row(row: &PgRow) -> StoreResult<AlertDelivery> {
    Ok(AlertDelivery {
        id: row.try_get("id")?,
        notifier: parse("notifier", row.try_get("notifier")?)?,
        url: row.try_get("url")?,
        state: parse("delivery state", row.try_get("state")?)?,
        attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

fn slot_from_row(row: &PgRow) -> StoreResult<Slot> {
    Ok(Slot {
        job_id: JobId::from_uuid(row.try_get("job_id")?),
        scheduled_at: row.try_get("scheduled_at")?,
        execution_id: ExecutionId::from_uuid(row.try_get("execution_id")?),
        fired: row.try_get("fired")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// Appends `AND column = …` for the queues a claim takes from (none: every queue). One queue
/// is an equality, so the claim index yields rows already in claim order.
fn push_queue_filter(query: &mut QueryBuilder<Postgres>, column: &str, queues: &[String]) {
    match queues {
        [] => {}
        [queue] => {
            query
                .push(format_args!(" AND {column} = "))
                .push_bind(queue.as_str());
        }
        many => {
            query
                .push(format_args!(" AND {column} = ANY("))
                .push_bind(many)
                .push(")");
        }
    }
}

/// The claim's candidates: up to `limit` due queued executions in claim order (highest
/// priority, then earliest due, then oldest), locked, skipping rows another claimer holds, and
/// leaving out `forbid` executions whose job lock is taken.
///
/// Each shape has an index that yields rows in claim order, so the scan stops after `limit`
/// rows (a locking query cannot stop a sort early). Several queues are read each through its
/// own index and merged; rows locked beyond the first `limit` are released at commit.
fn candidates_query(queues: &[String], now: DateTime<Utc>, limit: i64) -> QueryBuilder<Postgres> {
    const WHERE: &str = "status = 'queued' \
        AND NOT (concurrency = 'forbid' AND job_id IN (SELECT job_id FROM job_locks)) \
        AND NOT (max_running IS NOT NULL AND max_running <= ( \
            SELECT count(*) FROM job_locks l WHERE l.job_id = executions.job_id)) \
        AND run_at <= ";
    const ORDER: &str = " ORDER BY priority DESC, run_at, id LIMIT ";
    let mut query;
    if queues.len() > 1 {
        query = QueryBuilder::new("SELECT c.* FROM UNNEST(");
        query.push_bind(queues).push(format!(
            "::text[]) AS q(name) CROSS JOIN LATERAL ( \
                 SELECT {EXECUTION_COLUMNS} FROM executions WHERE queue = q.name AND {WHERE}"
        ));
        query
            .push_bind(now)
            .push(ORDER)
            .push_bind(limit)
            .push(" FOR UPDATE SKIP LOCKED) c ORDER BY c.priority DESC, c.run_at, c.id LIMIT ")
            .push_bind(limit);
    } else {
        query = QueryBuilder::new(format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE {WHERE}"
        ));
        query.push_bind(now);
        push_queue_filter(&mut query, "queue", queues);
        query
            .push(ORDER)
            .push_bind(limit)
            .push(" FOR UPDATE SKIP LOCKED");
    }
    query
}

/// The job slots that the candidates of limited jobs (`max_running`) take: each job's lowest
/// free slots, in candidate order, as many as are free. Returns the executions that got one; the
/// rest wait. A slot another claimer took since this claim read them is a conflict, and its
/// execution waits too: the slot's primary key is what keeps a job within its limit.
async fn take_limited_slots(
    tx: &mut Transaction<'_, Postgres>,
    candidates: &[Execution],
) -> StoreResult<HashSet<Uuid>> {
    let limited: Vec<&Execution> = candidates
        .iter()
        .filter(|e| e.concurrency == ConcurrencyPolicy::Allow && e.max_running.is_some())
        .collect();
    if limited.is_empty() {
        return Ok(HashSet::new());
    }
    let jobs: Vec<Uuid> = limited
        .iter()
        .map(|e| e.job_id.as_uuid())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut taken: HashMap<Uuid, BTreeSet<i32>> = HashMap::new();
    for row in sqlx::query("SELECT job_id, slot FROM job_locks WHERE job_id = ANY($1)")
        .bind(&jobs)
        .fetch_all(&mut **tx)
        .await?
    {
        taken
            .entry(row.try_get("job_id")?)
            .or_default()
            .insert(row.try_get("slot")?);
    }
    let mut requests: Vec<(Uuid, i32, Uuid)> = Vec::new();
    for e in limited {
        let limit = e
            .max_running
            .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX));
        let job = e.job_id.as_uuid();
        let slots = taken.entry(job).or_default();
        if let Some(slot) = (0..limit).find(|s| !slots.contains(s)) {
            slots.insert(slot);
            requests.push((job, slot, e.id.as_uuid()));
        }
    }
    if requests.is_empty() {
        return Ok(HashSet::new());
    }
    requests.sort();
    let mut jobs = Vec::with_capacity(requests.len());
    let mut slots = Vec::with_capacity(requests.len());
    let mut executions = Vec::with_capacity(requests.len());
    for (job, slot, execution) in requests {
        jobs.push(job);
        slots.push(slot);
        executions.push(execution);
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO job_locks (job_id, slot, execution_id) \
         SELECT * FROM UNNEST($1::uuid[], $2::integer[], $3::uuid[]) \
             AS t(job_id, slot, execution_id) \
         ORDER BY job_id, slot \
         ON CONFLICT (job_id, slot) DO NOTHING RETURNING execution_id",
    )
    .bind(jobs)
    .bind(slots)
    .bind(executions)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect())
}

/// The claim in one statement, for the common case where nothing restricts it: every
/// candidate allows overlap and no job lock is held anywhere (so no scheduled run waits to be
/// skipped). Otherwise it claims nothing, and the full claim, with its job locks, overlap
/// skips and replacements, runs instead. One statement instead of five round trips is most of
/// a claim's cost on PostgreSQL.
async fn claim_unrestricted(
    pool: &PgPool,
    queue: Option<&String>,
    now: DateTime<Utc>,
    limit: i64,
    worker_id: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<Vec<Claimed>> {
    let mut query = QueryBuilder::<Postgres>::new(
        "WITH c AS ( \
             SELECT id AS claim_id, concurrency AS claim_concurrency, \
                 max_running IS NOT NULL AS claim_limited FROM executions \
             WHERE status = 'queued' AND run_at <= ",
    );
    query.push_bind(now);
    if let Some(queue) = queue {
        query.push(" AND queue = ").push_bind(queue.as_str());
    }
    query
        .push(" ORDER BY priority DESC, run_at, id LIMIT ")
        .push_bind(limit)
        .push(
            " FOR UPDATE SKIP LOCKED), \
             fast AS (SELECT NOT EXISTS ( \
                     SELECT 1 FROM c WHERE claim_concurrency <> 'allow' OR claim_limited) \
                 AND NOT EXISTS (SELECT 1 FROM job_locks) AS ok) \
             UPDATE executions SET status = 'running', started_at = ",
        )
        .push_bind(now)
        .push(", worker_id = ")
        .push_bind(worker_id)
        .push(", lease_token = gen_random_uuid(), lease_expires_at = ")
        .push_bind(expires_at)
        .push(format!(
            " FROM c, fast WHERE fast.ok AND id = c.claim_id \
             RETURNING {EXECUTION_COLUMNS}, lease_token"
        ));
    let rows = query.build().fetch_all(pool).await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            let execution = execution_from_row(row)?;
            Ok(Claimed {
                lease: Lease {
                    execution_id: execution.id,
                    token: row.try_get("lease_token")?,
                    expires_at,
                },
                execution,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    // In claim order, as the full claim returns them.
    claimed.sort_by(|a, b| {
        b.execution
            .priority
            .cmp(&a.execution.priority)
            .then(a.execution.run_at.cmp(&b.execution.run_at))
            .then(a.execution.id.cmp(&b.execution.id))
    });
    Ok(claimed)
}

// ---- statements used by several methods ----

/// Inserts one execution. `false` when the idempotency index already holds a first attempt of
/// this job with this key (the row was not inserted).
async fn insert_execution(tx: &mut Transaction<'_, Postgres>, e: &Execution) -> StoreResult<bool> {
    Ok(!insert_executions(tx, std::slice::from_ref(e))
        .await?
        .is_empty())
}

/// Inserts executions with one statement; returns the ids actually inserted (an execution whose
/// idempotency key this job has already seen on a first attempt is left out, not an error).
async fn insert_executions(
    tx: &mut Transaction<'_, Postgres>,
    executions: &[Execution],
) -> StoreResult<Vec<Uuid>> {
    if executions.is_empty() {
        return Ok(Vec::new());
    }
    let sql = "INSERT INTO executions (id, root_id, job_id, job_name, queue, priority, status, \
        trigger, attempt, max_attempts, backoff_base_ms, backoff_cap_ms, concurrency, \
        idempotency_key, payload, env, scheduled_at, run_at, created_at, started_at, finished_at, \
        worker_id, lease_expires_at, cancel_requested, exit_code, reason, image_digest, \
        max_running) \
        SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], \
            $6::integer[], $7::text[], $8::text[], $9::integer[], $10::integer[], $11::bigint[], \
            $12::bigint[], $13::text[], $14::text[], $15::jsonb[], $16::jsonb[], \
            $17::timestamptz[], $18::timestamptz[], $19::timestamptz[], $20::timestamptz[], \
            $21::timestamptz[], $22::text[], $23::timestamptz[], $24::boolean[], $25::integer[], \
            $26::text[], $27::text[], $28::integer[]) \
        ON CONFLICT (job_id, idempotency_key) WHERE idempotency_key IS NOT NULL AND attempt = 1 \
        DO NOTHING RETURNING id";
    let column = |f: &dyn Fn(&Execution) -> Uuid| executions.iter().map(f).collect::<Vec<_>>();
    let ids = column(&|e| e.id.as_uuid());
    let root_ids = column(&|e| e.root_id.as_uuid());
    let job_ids = column(&|e| e.job_id.as_uuid());
    let texts = |f: &dyn Fn(&Execution) -> Option<&str>| {
        executions.iter().map(f).collect::<Vec<Option<&str>>>()
    };
    let ints = |f: &dyn Fn(&Execution) -> Option<i32>| {
        executions.iter().map(f).collect::<Vec<Option<i32>>>()
    };
    let instants = |f: &dyn Fn(&Execution) -> Option<DateTime<Utc>>| {
        executions
            .iter()
            .map(f)
            .collect::<Vec<Option<DateTime<Utc>>>>()
    };
    let to_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let envs = executions
        .iter()
        .map(|e| to_json(&e.env))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(sqlx::query_scalar(sql)
        .bind(ids)
        .bind(root_ids)
        .bind(job_ids)
        .bind(texts(&|e| Some(&e.job_name)))
        .bind(texts(&|e| Some(&e.queue)))
        .bind(ints(&|e| Some(e.priority)))
        .bind(texts(&|e| Some(e.status.as_str())))
        .bind(texts(&|e| Some(e.trigger.as_str())))
        .bind(ints(&|e| Some(to_i32(e.attempt))))
        .bind(ints(&|e| Some(to_i32(e.retry.max_attempts))))
        .bind(
            executions
                .iter()
                .map(|e| duration_ms(e.retry.backoff_base))
                .collect::<Vec<_>>(),
        )
        .bind(
            executions
                .iter()
                .map(|e| duration_ms(e.retry.backoff_cap))
                .collect::<Vec<_>>(),
        )
        .bind(texts(&|e| Some(e.concurrency.as_str())))
        .bind(texts(&|e| e.idempotency_key.as_deref()))
        .bind(
            executions
                .iter()
                .map(|e| e.payload.clone())
                .collect::<Vec<_>>(),
        )
        .bind(envs)
        .bind(instants(&|e| e.scheduled_at))
        .bind(instants(&|e| Some(e.run_at)))
        .bind(instants(&|e| Some(e.created_at)))
        .bind(instants(&|e| e.started_at))
        .bind(instants(&|e| e.finished_at))
        .bind(texts(&|e| e.worker_id.as_deref()))
        .bind(instants(&|e| e.lease_expires_at))
        .bind(
            executions
                .iter()
                .map(|e| e.cancel_requested)
                .collect::<Vec<_>>(),
        )
        .bind(ints(&|e| e.exit_code))
        .bind(texts(&|e| e.reason.as_deref()))
        .bind(texts(&|e| e.image_digest.as_deref()))
        .bind(ints(&|e| e.max_running.map(to_i32)))
        .fetch_all(&mut **tx)
        .await?)
}

/// One execution with its lease token, locked until the transaction ends.
async fn select_execution(
    tx: &mut Transaction<'_, Postgres>,
    id: ExecutionId,
) -> StoreResult<Option<(Execution, Option<Uuid>)>> {
    let sql =
        format!("SELECT {EXECUTION_COLUMNS}, lease_token FROM executions WHERE id = $1 FOR UPDATE");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| Ok((execution_from_row(&row)?, row.try_get("lease_token")?)))
        .transpose()
}

/// A live job by name, locked as `lock` says (`FOR SHARE` keeps it from being deleted while
/// an execution is added; `FOR UPDATE` before changing it).
async fn live_job_by_name(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    lock: JobLock,
) -> StoreResult<Job> {
    if !storable_name(name) {
        return Err(StoreError::not_found(format!("job {name:?}")));
    }
    let sql = format!(
        "SELECT * FROM jobs WHERE name = $1 AND deleted_at IS NULL {}",
        lock.sql()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("job {name:?}")))?;
    job_from_row(&row)
}

/// How a job row is locked while a transaction depends on it.
#[derive(Debug, Clone, Copy)]
enum JobLock {
    /// Adding executions: concurrent adds are fine, a delete waits.
    Share,
    /// Changing or deleting the job.
    Update,
}

impl JobLock {
    fn sql(self) -> &'static str {
        match self {
            JobLock::Share => "FOR SHARE",
            JobLock::Update => "FOR UPDATE",
        }
    }
}

/// An attempt that ended (or was lost), settled by [`lifecycle::settled`], and the lease its
/// write is fenced by: the lease must still hold when the row is written.
struct Settling {
    finished: Finished,
    token: Uuid,
}

/// The worker's report with the text PostgreSQL cannot store made storable.
fn storable_report(report: &Finish) -> Finish {
    Finish {
        reason: report.reason.as_deref().map(storable),
        image_digest: report.image_digest.as_deref().map(storable),
        ..report.clone()
    }
}

/// Writes the terminal status each attempt settled in, releases their job locks and queues the
/// next attempts (waking their queues), with one statement each for the whole batch: the
/// set-based form of SQLite's `settle_execution`.
///
/// Each write is fenced: an attempt whose row is no longer running under `token` (its lease
/// moved on since it was read) is left as it is and answered with `None`, in the item's place.
async fn settle_executions(
    tx: &mut Transaction<'_, Postgres>,
    items: Vec<Settling>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Option<Finished>>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let settled: Vec<(Uuid, Finished)> = items
        .into_iter()
        .map(|item| (item.token, item.finished))
        .collect();

    // Rows are written in id order, as every batch write here, so that two transactions
    // that touch the same rows wait for each other instead of deadlocking.
    let mut order: Vec<&(Uuid, Finished)> = settled.iter().collect();
    order.sort_by_key(|(_, f)| f.execution.id);
    let column = |f: &dyn Fn(&Execution) -> Option<&str>| {
        order
            .iter()
            .map(|(_, s)| f(&s.execution))
            .collect::<Vec<_>>()
    };
    // `IS TRUE` keeps the planner on the primary key, as in `finish_successes`.
    let written: HashMap<Uuid, bool> = sqlx::query_as(
        "UPDATE executions e SET status = t.status, finished_at = $1, lease_token = NULL, \
             lease_expires_at = NULL, reason = t.reason, exit_code = t.exit_code, \
             image_digest = t.image_digest \
         FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::integer[], $7::text[]) \
             AS t(id, token, status, reason, exit_code, image_digest) \
         WHERE e.id = t.id AND e.lease_token = t.token AND (e.status = 'running') IS TRUE \
         RETURNING e.id, e.cancel_requested",
    )
    .bind(now)
    .bind(
        order
            .iter()
            .map(|(_, f)| f.execution.id.as_uuid())
            .collect::<Vec<_>>(),
    )
    .bind(order.iter().map(|(token, _)| *token).collect::<Vec<_>>())
    .bind(column(&|e| Some(e.status.as_str())))
    .bind(column(&|e| e.reason.as_deref()))
    .bind(
        order
            .iter()
            .map(|(_, f)| f.execution.exit_code)
            .collect::<Vec<_>>(),
    )
    .bind(column(&|e| e.image_digest.as_deref()))
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();

    let settled: Vec<Option<Finished>> = settled
        .into_iter()
        .map(|(_, mut finished)| {
            let cancel_requested = written.get(&finished.execution.id.as_uuid())?;
            finished.execution.cancel_requested = *cancel_requested;
            Some(finished)
        })
        .collect();
    let done = || settled.iter().flatten();

    let failures: Vec<(Uuid, DateTime<Utc>)> = done()
        .filter(|f| lifecycle::alertable(f.execution.status))
        .map(|f| {
            (
                f.execution.id.as_uuid(),
                f.execution.finished_at.unwrap_or(now),
            )
        })
        .collect();
    if !failures.is_empty() {
        let (ids, at): (Vec<Uuid>, Vec<DateTime<Utc>>) = failures.into_iter().unzip();
        sqlx::query(
            "INSERT INTO alert_inbox (execution_id, finished_at) \
             SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[]) \
             ON CONFLICT (execution_id) DO NOTHING",
        )
        .bind(ids)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }

    // Only a `forbid` execution or one of a limited job ever holds a job lock.
    let holders: Vec<Uuid> = done()
        .filter(|f| f.execution.holds_job_slot())
        .map(|f| f.execution.id.as_uuid())
        .collect();
    if !holders.is_empty() {
        sqlx::query("DELETE FROM job_locks WHERE execution_id = ANY($1)")
            .bind(holders)
            .execute(&mut **tx)
            .await?;
    }

    let retries: Vec<Execution> = done().filter_map(|f| f.retry.clone()).collect();
    if !retries.is_empty() {
        let inserted = insert_executions(tx, &retries).await?;
        if inserted.len() != retries.len() {
            return Err(StoreError::Corrupt(format!(
                "queued {} of {} retries",
                inserted.len(),
                retries.len()
            )));
        }
        let queues: Vec<&str> = retries.iter().map(|r| r.queue.as_str()).collect();
        notify_queued(tx, &queues).await?;
    }
    Ok(settled)
}

/// The slots already recorded among the keys `(job_ids[i], instants[i])`.
async fn recorded_slots(
    tx: &mut Transaction<'_, Postgres>,
    job_ids: &[Uuid],
    instants: &[DateTime<Utc>],
) -> StoreResult<HashMap<(JobId, DateTime<Utc>), Slot>> {
    let rows = sqlx::query(
        "SELECT s.* FROM slots s \
         JOIN UNNEST($1::uuid[], $2::timestamptz[]) AS k(job_id, scheduled_at) \
         USING (job_id, scheduled_at)",
    )
    .bind(job_ids)
    .bind(instants)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| slot_from_row(row).map(|slot| ((slot.job_id, slot.scheduled_at), slot)))
        .collect()
}

/// What a claim does with one candidate it selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Start it.
    Claim,
    /// Its `forbid` job is running: it stays queued.
    Wait,
    /// Its `forbid` job is running and a schedule fired it: skipped, naming the holder.
    Skip(Uuid),
}

/// How a dead execution left the dead-letter queue, if it did.
async fn dlq_resolution(
    tx: &mut Transaction<'_, Postgres>,
    id: ExecutionId,
) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT resolution FROM dlq_resolutions WHERE execution_id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// Records that a dead execution left the dead-letter queue.
async fn dlq_resolve(
    tx: &mut Transaction<'_, Postgres>,
    id: ExecutionId,
    resolution: lifecycle::DlqResolution,
    retry: Option<ExecutionId>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO dlq_resolutions (execution_id, resolution, retry_id, resolved_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id.as_uuid())
    .bind(resolution.as_str())
    .bind(retry.map(|r| r.as_uuid()))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A dead execution checked to be in the dead-letter queue, locked until the transaction ends
/// (so two retries of it wait for each other, and the second finds it gone from the queue).
async fn dead_letter(
    tx: &mut Transaction<'_, Postgres>,
    id: ExecutionId,
) -> StoreResult<Execution> {
    let (dead, _) = select_execution(tx, id)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("execution {id}")))?;
    let resolved = dlq_resolution(tx, id).await?;
    lifecycle::check_dead_letter(&dead, resolved.as_deref())?;
    Ok(dead)
}

/// Queues the attempt that runs a dead execution again and takes it out of the queue.
async fn dlq_retry_one(
    tx: &mut Transaction<'_, Postgres>,
    id: ExecutionId,
    now: DateTime<Utc>,
) -> StoreResult<Execution> {
    let dead = dead_letter(tx, id).await?;
    // Shared lock: a delete of the job waits until the new attempt is in.
    let live: Option<bool> =
        sqlx::query_scalar("SELECT deleted_at IS NULL FROM jobs WHERE id = $1 FOR SHARE")
            .bind(dead.job_id.as_uuid())
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
impl Store for PgStore {
    async fn job_create(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job> {
        spec.validate()?;
        let spec_json = to_json(spec)?;
        let job = Job {
            id: JobId::new(),
            spec: spec.clone(),
            created_at: now,
            updated_at: now,
        };
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, name, scheduled, spec, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(job.id.as_uuid())
        .bind(job.spec.name.as_str())
        .bind(job.spec.schedule.is_some())
        .bind(spec_json)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
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
        Ok(job)
    }

    async fn job_get(&self, name: &str) -> StoreResult<Job> {
        if !storable_name(name) {
            return Err(StoreError::not_found(format!("job {name:?}")));
        }
        let row = sqlx::query("SELECT * FROM jobs WHERE name = $1 AND deleted_at IS NULL")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("job {name:?}")))?;
        job_from_row(&row)
    }

    async fn job_get_by_id(&self, id: JobId) -> StoreResult<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
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
            "SELECT * FROM jobs WHERE deleted_at IS NULL \
               AND ($1::boolean IS NULL OR scheduled = $1) \
             ORDER BY name",
        )
        .bind(scheduled)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    async fn job_update(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job> {
        spec.validate()?;
        let spec_json = to_json(spec)?;
        let mut tx = self.begin().await?;
        let mut job = live_job_by_name(&mut tx, spec.name.as_str(), JobLock::Update).await?;
        job.spec = spec.clone();
        job.updated_at = now;
        sqlx::query("UPDATE jobs SET spec = $1, scheduled = $2, updated_at = $3 WHERE id = $4")
            .bind(spec_json)
            .bind(job.spec.schedule.is_some())
            .bind(now)
            .bind(job.id.as_uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn job_delete(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let job = live_job_by_name(&mut tx, name, JobLock::Update).await?;
        let id = job.id.as_uuid();
        sqlx::query("UPDATE jobs SET deleted_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE executions SET status = 'cancelled', finished_at = $1, reason = 'job deleted' \
             WHERE job_id = $2 AND status = 'queued'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE executions SET cancel_requested = true \
             WHERE job_id = $1 AND status = 'running'",
        )
        .bind(id)
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
        let job = live_job_by_name(&mut tx, &request.job, JobLock::Share).await?;
        if let Some(at) = request.scheduled_at {
            lifecycle::validate_backfill(&job, at, now)?;
        }
        let execution = lifecycle::enqueued(&job, request, now);
        // With a key, the unique index decides between racing enqueues: the loser's insert
        // waits for the winner to commit, then does nothing, and it returns the winner's row.
        if !insert_execution(&mut tx, &execution).await? {
            let key = request.idempotency_key.as_deref().unwrap_or_default();
            let sql = format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions \
                 WHERE job_id = $1 AND idempotency_key = $2 AND attempt = 1"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(job.id.as_uuid())
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "idempotency key {key:?} conflicts but matches no execution"
                    ))
                })?;
            return Ok(Enqueued {
                execution: execution_from_row(&row)?,
                created: false,
            });
        }
        if let Some(at) = request.scheduled_at {
            // Of racing recorders of the slot (the scheduler, another backfill), one inserts it.
            let slot = sqlx::query(
                "INSERT INTO slots (job_id, scheduled_at, execution_id, fired, recorded_at) \
                 VALUES ($1, $2, $3, true, $4) ON CONFLICT (job_id, scheduled_at) DO NOTHING",
            )
            .bind(job.id.as_uuid())
            .bind(at)
            .bind(execution.id.as_uuid())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if slot.rows_affected() == 0 {
                let row =
                    sqlx::query("SELECT * FROM slots WHERE job_id = $1 AND scheduled_at = $2")
                        .bind(job.id.as_uuid())
                        .bind(at)
                        .fetch_one(&mut *tx)
                        .await?;
                return Err(lifecycle::slot_taken(&job, &slot_from_row(&row)?));
            }
        }
        notify_queued(&mut tx, &[&execution.queue]).await?;
        tx.commit().await?;
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
        let ttl = chrono::Duration::from_std(request.lease_ttl)
            .map_err(|_| StoreError::Corrupt("lease ttl out of range".into()))?;
        let expires_at = now + ttl;
        let worker_id = storable(&request.worker_id);
        // Each queue once: a queue named twice must not yield its rows twice. A name that
        // cannot be stored names no queue; when nothing else is left, there is nothing to claim
        // (not everything: no queues at all means every queue).
        let queues: Vec<String> = request
            .queues
            .iter()
            .filter(|q| storable_name(q))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if queues.is_empty() && !request.queues.is_empty() {
            return Ok(Vec::new());
        }
        if queues.len() <= 1 {
            let claimed = claim_unrestricted(
                &self.pool,
                queues.first(),
                now,
                limit,
                &worker_id,
                expires_at,
            )
            .await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }
        let mut tx = self.begin().await?;

        // Scheduled runs of forbid jobs that are still running are skipped, not delayed: the
        // next slot will come. Locked now, written with the batch's own skips below. Driven by
        // the (usually empty) lock table, so it costs nothing while no forbid job runs.
        let mut overlapping = QueryBuilder::<Postgres>::new(
            "SELECT e.id, l.execution_id AS holder FROM job_locks l \
             JOIN executions h ON h.id = l.execution_id AND h.concurrency = 'forbid' \
             CROSS JOIN LATERAL ( \
                 SELECT x.id FROM executions x \
                 WHERE x.job_id = l.job_id AND x.status = 'queued' AND x.trigger = 'schedule' \
                   AND x.concurrency = 'forbid' AND x.run_at <= ",
        );
        overlapping.push_bind(now);
        push_queue_filter(&mut overlapping, "x.queue", &queues);
        overlapping.push(" FOR UPDATE SKIP LOCKED) e");
        let mut skips: Vec<(Uuid, Uuid)> = Vec::new();
        for row in overlapping.build().fetch_all(&mut *tx).await? {
            skips.push((row.try_get("id")?, row.try_get("holder")?));
        }

        let candidates = candidates_query(&queues, now, limit)
            .build()
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(execution_from_row)
            .collect::<StoreResult<Vec<_>>>()?;

        // The first forbid candidate of each job asks for the job lock; all of them at once,
        // in job id order, so two claimers never wait on each other's locks in a cycle.
        let mut lock_requests: BTreeMap<Uuid, Uuid> = BTreeMap::new();
        for e in &candidates {
            if e.concurrency == ConcurrencyPolicy::Forbid {
                lock_requests
                    .entry(e.job_id.as_uuid())
                    .or_insert(e.id.as_uuid());
            }
        }
        let mut locked: HashSet<Uuid> = HashSet::new();
        if !lock_requests.is_empty() {
            let (jobs, executions): (Vec<Uuid>, Vec<Uuid>) =
                lock_requests.iter().map(|(j, e)| (*j, *e)).unzip();
            locked = sqlx::query_scalar(
                "INSERT INTO job_locks (job_id, slot, execution_id) \
                 SELECT job_id, 0, execution_id \
                 FROM UNNEST($1::uuid[], $2::uuid[]) AS t(job_id, execution_id) \
                 ORDER BY job_id \
                 ON CONFLICT (job_id, slot) DO NOTHING RETURNING job_id",
            )
            .bind(jobs)
            .bind(executions)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        }
        // Jobs whose lock another claimer took since this claim's snapshot: who holds it.
        let foreign: Vec<Uuid> = candidates
            .iter()
            .filter(|e| {
                e.trigger == Trigger::Schedule
                    && e.concurrency == ConcurrencyPolicy::Forbid
                    && !locked.contains(&e.job_id.as_uuid())
            })
            .map(|e| e.job_id.as_uuid())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut foreign_holders: HashMap<Uuid, Uuid> = HashMap::new();
        if !foreign.is_empty() {
            for row in
                sqlx::query("SELECT job_id, execution_id FROM job_locks WHERE job_id = ANY($1)")
                    .bind(foreign)
                    .fetch_all(&mut *tx)
                    .await?
            {
                foreign_holders.insert(row.try_get("job_id")?, row.try_get("execution_id")?);
            }
        }

        let granted = take_limited_slots(&mut tx, &candidates).await?;

        let verdicts: Vec<Verdict> = candidates
            .iter()
            .map(|e| {
                if e.concurrency != ConcurrencyPolicy::Forbid {
                    return if e.max_running.is_none() || granted.contains(&e.id.as_uuid()) {
                        Verdict::Claim
                    } else {
                        Verdict::Wait
                    };
                }
                let job = e.job_id.as_uuid();
                let holder = if locked.contains(&job) {
                    match lock_requests.get(&job) {
                        Some(first) if *first == e.id.as_uuid() => return Verdict::Claim,
                        // Behind another execution of its job claimed earlier in this batch:
                        // the same rule as the pre-pass, whatever the batch size.
                        first => first.copied(),
                    }
                } else {
                    foreign_holders.get(&job).copied()
                };
                match holder {
                    Some(holder) if e.trigger == Trigger::Schedule => Verdict::Skip(holder),
                    _ => Verdict::Wait,
                }
            })
            .collect();
        skips.extend(
            candidates
                .iter()
                .zip(&verdicts)
                .filter_map(|(e, v)| match v {
                    Verdict::Skip(holder) => Some((e.id.as_uuid(), *holder)),
                    _ => None,
                }),
        );
        if !skips.is_empty() {
            let (ids, reasons): (Vec<Uuid>, Vec<String>) = skips
                .iter()
                .map(|(id, holder)| (*id, lifecycle::overlap_reason(&holder.to_string())))
                .unzip();
            // `IS TRUE` keeps the planner on the primary key, off the partial indexes of queued
            // executions, as in `finish_successes`.
            sqlx::query(
                "UPDATE executions e SET status = 'skipped', finished_at = $1, reason = t.reason \
                 FROM UNNEST($2::uuid[], $3::text[]) AS t(id, reason) \
                 WHERE e.id = t.id AND (e.status = 'queued') IS TRUE",
            )
            .bind(now)
            .bind(ids)
            .bind(reasons)
            .execute(&mut *tx)
            .await?;
        }

        let mut claimed: Vec<Execution> = candidates
            .into_iter()
            .zip(verdicts)
            .filter(|(_, v)| *v == Verdict::Claim)
            .map(|(e, _)| e)
            .collect();
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }

        // Replace: the executions of the job that were already running are asked to stop, and
        // so is every one this batch starts before a later replace execution of the same job
        // (as if the batch were claimed one at a time).
        let replaced: Vec<Uuid> = claimed
            .iter()
            .filter(|e| e.concurrency == ConcurrencyPolicy::Replace)
            .map(|e| e.job_id.as_uuid())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !replaced.is_empty() {
            sqlx::query(
                "UPDATE executions SET cancel_requested = true WHERE id IN ( \
                     SELECT id FROM executions WHERE job_id = ANY($1) AND status = 'running' \
                     ORDER BY id FOR UPDATE)",
            )
            .bind(replaced)
            .execute(&mut *tx)
            .await?;
            let mut replaced_later: HashSet<JobId> = HashSet::new();
            for e in claimed.iter_mut().rev() {
                if replaced_later.contains(&e.job_id) {
                    e.cancel_requested = true;
                }
                if e.concurrency == ConcurrencyPolicy::Replace {
                    replaced_later.insert(e.job_id);
                }
            }
        }

        let tokens: Vec<Uuid> = claimed.iter().map(|_| Uuid::new_v4()).collect();
        sqlx::query(
            "UPDATE executions e SET status = 'running', started_at = $1, worker_id = $2, \
                 lease_token = t.token, lease_expires_at = $3, cancel_requested = t.cancel \
             FROM UNNEST($4::uuid[], $5::uuid[], $6::boolean[]) AS t(id, token, cancel) \
             WHERE e.id = t.id",
        )
        .bind(now)
        .bind(&worker_id)
        .bind(expires_at)
        .bind(claimed.iter().map(|e| e.id.as_uuid()).collect::<Vec<_>>())
        .bind(&tokens)
        .bind(
            claimed
                .iter()
                .map(|e| e.cancel_requested)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        Ok(claimed
            .into_iter()
            .zip(tokens)
            .map(|(mut execution, token)| {
                execution.status = Status::Running;
                execution.started_at = Some(now);
                execution.worker_id = Some(worker_id.clone());
                execution.lease_expires_at = Some(expires_at);
                Claimed {
                    lease: Lease {
                        execution_id: execution.id,
                        token,
                        expires_at,
                    },
                    execution,
                }
            })
            .collect())
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
        let renewed: Option<bool> = sqlx::query_scalar(
            "UPDATE executions SET lease_expires_at = $1 \
             WHERE id = $2 AND status = 'running' AND lease_token = $3 \
             RETURNING cancel_requested",
        )
        .bind(expires_at)
        .bind(execution_id.as_uuid())
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        let Some(cancel_requested) = renewed else {
            let exists = sqlx::query("SELECT 1 FROM executions WHERE id = $1")
                .bind(execution_id.as_uuid())
                .fetch_optional(&self.pool)
                .await?;
            return match exists {
                None => Err(StoreError::not_found(format!("execution {execution_id}"))),
                Some(_) => Err(StoreError::Stale),
            };
        };
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
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if batch.iter().all(|f| f.outcome == Outcome::Succeeded) {
            return self.finish_successes(batch, now).await;
        }
        self.finish_in_full(batch, now).await
    }

    async fn execution_release_many(
        &self,
        leases: &[(ExecutionId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Execution>>> {
        let mut tx = self.begin().await?;
        // Rows in id order, as every batch write here, so two transactions never deadlock.
        let mut order: Vec<usize> = (0..leases.len()).collect();
        order.sort_by_key(|&i| leases[i].0);
        let mut results: Vec<StoreResult<Execution>> =
            leases.iter().map(|_| Err(StoreError::Stale)).collect();
        let mut woken = Vec::new();
        for i in order {
            let (id, token) = leases[i];
            results[i] = match select_execution(&mut tx, id).await? {
                None => Err(StoreError::not_found(format!("execution {id}"))),
                Some((execution, Some(held)))
                    if execution.status == Status::Running && held == token =>
                {
                    if execution.cancel_requested {
                        let finish = lifecycle::released_cancelled(id, token);
                        let finished = lifecycle::settled(execution, Some(&finish), now);
                        let settled =
                            settle_executions(&mut tx, vec![Settling { finished, token }], now)
                                .await?;
                        settled
                            .into_iter()
                            .flatten()
                            .next()
                            .map(|f| f.execution)
                            .ok_or(StoreError::Stale)
                    } else {
                        let released = lifecycle::released(&execution, now);
                        sqlx::query(
                            "UPDATE executions SET status = 'queued', run_at = $1, reason = $3, \
                                 started_at = NULL, worker_id = NULL, lease_token = NULL, \
                                 lease_expires_at = NULL \
                             WHERE id = $2",
                        )
                        .bind(now)
                        .bind(id.as_uuid())
                        .bind(lifecycle::RELEASED)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query("DELETE FROM job_locks WHERE execution_id = $1")
                            .bind(id.as_uuid())
                            .execute(&mut *tx)
                            .await?;
                        woken.push(released.queue.clone());
                        Ok(released)
                    }
                }
                Some(_) => Err(StoreError::Stale),
            };
        }
        let woken: Vec<&str> = woken.iter().map(String::as_str).collect();
        notify_queued(&mut tx, &woken).await?;
        tx.commit().await?;
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
                    "UPDATE executions SET status = 'cancelled', finished_at = $1, reason = $2 \
                     WHERE id = $3",
                )
                .bind(now)
                .bind(&execution.reason)
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?;
            }
            Status::Running => {
                execution.cancel_requested = true;
                sqlx::query("UPDATE executions SET cancel_requested = true WHERE id = $1")
                    .bind(id.as_uuid())
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
        // SKIP LOCKED: a row locked right now is being finished or rescued by someone else.
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS}, lease_token FROM executions \
             WHERE status = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"
        );
        let expired = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut settling = Vec::with_capacity(expired.len());
        for row in expired {
            let execution = execution_from_row(&row)?;
            settling.push(Settling {
                finished: lifecycle::settled(execution, None, now),
                token: row
                    .try_get::<Option<Uuid>, _>("lease_token")?
                    .unwrap_or_default(),
            });
        }
        // The rows are locked, so every write holds.
        let rescued = settle_executions(&mut tx, settling, now)
            .await?
            .into_iter()
            .flatten()
            .collect();
        tx.commit().await?;
        Ok(rescued)
    }

    async fn dlq_retry(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<Execution> {
        let mut tx = self.begin().await?;
        let retry = dlq_retry_one(&mut tx, id, now).await?;
        notify_queued(&mut tx, &[retry.queue.as_str()]).await?;
        tx.commit().await?;
        Ok(retry)
    }

    async fn dlq_retry_job(&self, job: &str, now: DateTime<Utc>) -> StoreResult<Vec<Execution>> {
        let mut tx = self.begin().await?;
        let job = live_job_by_name(&mut tx, job, JobLock::Share).await?;
        let dead: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM executions e WHERE job_id = $1 AND status = 'dead' \
               AND NOT EXISTS (SELECT 1 FROM dlq_resolutions r WHERE r.execution_id = e.id) \
             ORDER BY id",
        )
        .bind(job.id.as_uuid())
        .fetch_all(&mut *tx)
        .await?;
        let mut retries = Vec::with_capacity(dead.len());
        for id in dead {
            retries.push(dlq_retry_one(&mut tx, ExecutionId::from_uuid(id), now).await?);
        }
        if let Some(retry) = retries.first() {
            notify_queued(&mut tx, &[retry.queue.as_str()]).await?;
        }
        tx.commit().await?;
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
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("execution {id}")))?;
        execution_from_row(&row)
    }

    async fn execution_list(&self, filter: &ExecutionFilter) -> StoreResult<ExecutionPage> {
        if !filter.job.as_deref().is_none_or(storable_name) {
            return Ok(ExecutionPage {
                executions: Vec::new(),
                next: None,
            });
        }
        let limit = match filter.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        // Only the conditions that apply, so each combination gets a plan that uses its index.
        // Each status is an equality of its own, its rows read newest first from an index and
        // the lists merged: `status = ANY(…)` cannot walk an index in `id` order, and with
        // statistics that lag behind a fast-growing history the planner chose to read every
        // matching row and sort them (a second, for one job's million skipped slots).
        let statuses = lifecycle::status_ranges(filter);
        let fetch = i64::from(limit) + 1;
        let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {EXECUTION_COLUMNS} FROM ("));
        for (i, status) in statuses.iter().enumerate() {
            if i > 0 {
                query.push(" UNION ALL ");
            }
            query.push("(SELECT * FROM executions WHERE true");
            if let Some(job) = &filter.job {
                query.push(" AND job_name = ").push_bind(job.as_str());
            }
            if let Some(status) = status {
                query.push(" AND status = ").push_bind(*status);
            }
            if let Some(trigger) = filter.trigger {
                query.push(" AND trigger = ").push_bind(trigger.as_str());
            }
            if let Some(root) = filter.root {
                query.push(" AND root_id = ").push_bind(root.as_uuid());
            }
            if let Some(before) = filter.before {
                query.push(" AND id < ").push_bind(before.as_uuid());
            }
            if filter.dead_letter {
                query.push(
                    " AND status = 'dead' AND NOT EXISTS ( \
                         SELECT 1 FROM dlq_resolutions r WHERE r.execution_id = executions.id)",
                );
            }
            query
                .push(" ORDER BY id DESC LIMIT ")
                .push_bind(fetch)
                .push(")");
        }
        query
            .push(") AS executions ORDER BY id DESC LIMIT ")
            .push_bind(fetch);
        let rows = query.build().fetch_all(&self.pool).await?;
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
        // One index range of executions_job per job, each stopped at its limit.
        let rows = sqlx::query(
            "SELECT e.id, e.job_name, e.status, e.trigger, e.attempt, e.created_at, \
                    e.started_at, e.finished_at \
             FROM (SELECT DISTINCT name COLLATE \"C\" AS name FROM unnest($1::text[]) AS n(name)) j \
             CROSS JOIN LATERAL ( \
                 SELECT x.id, x.job_name, x.status, x.trigger, x.attempt, x.created_at, \
                        x.started_at, x.finished_at \
                 FROM executions x WHERE x.job_name = j.name \
                 ORDER BY x.id DESC LIMIT $2) e \
             ORDER BY j.name, e.id DESC",
        )
        .bind(jobs)
        .bind(i64::from(per_job.min(100)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let attempt: i32 = row.try_get("attempt")?;
                let id: Uuid = row.try_get("id")?;
                Ok(ExecutionBrief {
                    id: ExecutionId::from_uuid(id),
                    job_name: row.try_get("job_name")?,
                    status: parse("status", row.try_get("status")?)?,
                    trigger: parse("trigger", row.try_get("trigger")?)?,
                    attempt: u32::try_from(attempt)
                        .map_err(|_| StoreError::Corrupt(format!("attempt {attempt}")))?,
                    created_at: row.try_get("created_at")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                })
            })
            .collect()
    }

    async fn queue_stats(&self, now: DateTime<Utc>) -> StoreResult<Vec<QueueStats>> {
        sqlx::query(
            "SELECT queue, \
                 COUNT(*) FILTER (WHERE status = 'queued' AND run_at <= $1) AS due, \
                 COUNT(*) FILTER (WHERE status = 'queued' AND run_at > $1) AS waiting, \
                 COUNT(*) FILTER (WHERE status = 'running') AS running, \
                 MIN(run_at) FILTER (WHERE status = 'queued' AND run_at <= $1) AS oldest \
             FROM executions WHERE status IN ('queued', 'running') \
             GROUP BY queue ORDER BY queue",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let count = |column: &str| -> StoreResult<u64> {
                Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
            };
            Ok(QueueStats {
                queue: row.try_get("queue")?,
                due: count("due")?,
                waiting: count("waiting")?,
                running: count("running")?,
                oldest_due_at: row.try_get("oldest")?,
            })
        })
        .collect()
    }

    async fn execution_latest(&self, job: &str) -> StoreResult<Option<Execution>> {
        if !storable_name(job) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions \
             WHERE job_name = $1 AND status <> 'skipped' ORDER BY id DESC LIMIT 1"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job)
            .fetch_optional(&self.pool)
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
        let key_ids: Vec<Uuid> = slots.iter().map(|s| s.job_id.as_uuid()).collect();
        let key_ats: Vec<DateTime<Utc>> = slots.iter().map(|s| s.scheduled_at).collect();
        let mut tx = self.begin().await?;
        // FOR SHARE: a job deleted meanwhile waits for this batch, or this batch for it.
        let mut job_ids = key_ids.clone();
        job_ids.sort();
        job_ids.dedup();
        let mut jobs = HashMap::new();
        for row in sqlx::query(
            "SELECT * FROM jobs WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id FOR SHARE",
        )
        .bind(&job_ids)
        .fetch_all(&mut *tx)
        .await?
        {
            let job = job_from_row(&row)?;
            jobs.insert(job.id, job);
        }
        let recorded = recorded_slots(&mut tx, &key_ids, &key_ats).await?;
        let mut plans = lifecycle::plan_slots(slots, &jobs, &recorded, now);

        // The slots first: of racing recorders, one inserts each; the others wait for it to
        // commit, insert nothing, and answer with the slot it recorded. In key order, so that
        // two batches wait for each other instead of deadlocking.
        let mut new: Vec<(&Execution, &Slot)> = plans
            .iter()
            .filter_map(|plan| match plan {
                SlotPlan::New(execution, slot) => Some((&**execution, slot)),
                _ => None,
            })
            .collect();
        new.sort_by_key(|(_, slot)| (slot.job_id, slot.scheduled_at));
        let inserted: HashSet<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "INSERT INTO slots (job_id, scheduled_at, execution_id, fired, recorded_at) \
             SELECT *, $5::timestamptz FROM UNNEST($1::uuid[], $2::timestamptz[], $3::uuid[], \
                 $4::boolean[]) \
             ON CONFLICT (job_id, scheduled_at) DO NOTHING \
             RETURNING job_id, scheduled_at",
        )
        .bind(
            new.iter()
                .map(|(_, s)| s.job_id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(new.iter().map(|(_, s)| s.scheduled_at).collect::<Vec<_>>())
        .bind(new.iter().map(|(e, _)| e.id.as_uuid()).collect::<Vec<_>>())
        .bind(new.iter().map(|(_, s)| s.fired).collect::<Vec<_>>())
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let executions: Vec<Execution> = new
            .iter()
            .filter(|(_, s)| inserted.contains(&(s.job_id.as_uuid(), s.scheduled_at)))
            .map(|(e, _)| (*e).clone())
            .collect();
        insert_executions(&mut tx, &executions).await?;
        let queues: Vec<&str> = new
            .iter()
            .filter(|(_, s)| s.fired && inserted.contains(&(s.job_id.as_uuid(), s.scheduled_at)))
            .map(|(e, _)| e.queue.as_str())
            .collect();
        if !queues.is_empty() {
            notify_queued(&mut tx, &queues).await?;
        }

        // Slots another recorder inserted first are theirs: answer with what they recorded.
        let lost_race = plans.iter().any(|plan| {
            matches!(plan, SlotPlan::New(_, s)
                if !inserted.contains(&(s.job_id.as_uuid(), s.scheduled_at)))
        });
        if lost_race {
            let mut theirs = recorded_slots(&mut tx, &key_ids, &key_ats).await?;
            for plan in &mut plans {
                if let SlotPlan::New(_, slot) = plan
                    && !inserted.contains(&(slot.job_id.as_uuid(), slot.scheduled_at))
                {
                    *plan = match theirs.remove(&(slot.job_id, slot.scheduled_at)) {
                        Some(recorded) => SlotPlan::Recorded(recorded),
                        None => SlotPlan::Refused(StoreError::Corrupt(format!(
                            "slot of job {} at {} neither inserted nor found",
                            slot.job_id, slot.scheduled_at
                        ))),
                    };
                }
            }
        }
        tx.commit().await?;
        Ok(plans
            .into_iter()
            .map(|plan| match plan {
                SlotPlan::Refused(err) => Err(err),
                SlotPlan::Recorded(slot) => Ok(SlotRecord::Duplicate(slot)),
                SlotPlan::New(_, slot) => Ok(SlotRecord::Inserted(slot)),
            })
            .collect())
    }

    async fn slot_list(&self, job_id: JobId, limit: u32) -> StoreResult<Vec<Slot>> {
        sqlx::query("SELECT * FROM slots WHERE job_id = $1 ORDER BY scheduled_at DESC LIMIT $2")
            .bind(job_id.as_uuid())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(slot_from_row)
            .collect()
    }

    async fn log_append(&self, execution_id: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()> {
        let mut seqs = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            seqs.push(i64::try_from(chunk.seq).map_err(|_| {
                StoreError::Invalid(ValidationError::Field {
                    field: "seq",
                    message: format!("{} is too large", chunk.seq),
                })
            })?);
        }
        let encoded: Vec<_> = chunks
            .iter()
            .map(|chunk| log_codec::encode(&chunk.data))
            .collect();
        // One statement: the existence check and the insert of every chunk. Within the batch,
        // as across calls, the first copy of a seq wins.
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
        .fetch_one(&self.pool)
        .await?;
        if found == 0 {
            return Err(StoreError::not_found(format!("execution {execution_id}")));
        }
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
             WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(execution_id.as_uuid())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(chunk_from_row)
        .collect()
    }

    async fn log_tail(&self, execution_id: ExecutionId, n: u32) -> StoreResult<Vec<LogChunk>> {
        let mut chunks = sqlx::query(
            "SELECT seq, stream, at, data, codec FROM log_chunks \
             WHERE execution_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(execution_id.as_uuid())
        .bind(i64::from(n))
        .fetch_all(&self.pool)
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
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (id, name, scope, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.id)
        .bind(name)
        .bind(scope.as_str())
        .bind(token::hash_secret(&secret))
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::Conflict(format!(
                    "a token named {name:?} already exists; revoke it first or pick another name"
                )));
            }
            other => other?,
        };
        Ok((token, secret))
    }

    async fn token_verify(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiToken>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL")
            .bind(token::hash_secret(secret))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        if !token::hash_matches(row.try_get("hash")?, secret) {
            return Ok(None);
        }
        let mut token = token_from_row(&row)?;
        let stale_after = now - chrono::Duration::minutes(1);
        if token.last_used_at.is_none_or(|t| t < stale_after) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token.id)
                .execute(&self.pool)
                .await?;
            token.last_used_at = Some(now);
        }
        Ok(Some(token))
    }

    async fn token_list(&self) -> StoreResult<Vec<ApiToken>> {
        sqlx::query("SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    async fn token_revoke(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()> {
        if !storable_name(name) {
            return Err(StoreError::not_found(format!("token {name:?}")));
        }
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
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
        // What to delete is found first, job by job through the retention indexes, and the
        // transaction only deletes. A finished execution never changes again, and a keep
        // boundary only moves forward as newer executions finish, so the choice stays right.
        let jobs = sqlx::query("SELECT id, spec FROM jobs ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut rules = Vec::with_capacity(jobs.len());
        for row in &jobs {
            let id: Uuid = row.try_get("id")?;
            let spec: JobSpec = from_json("job spec", row.try_get("spec")?)?;
            rules.push((id, lifecycle::job_retention(&spec, retention, now)));
        }
        let mut doomed: Vec<Uuid> = Vec::new();
        for (job_id, rule) in &rules {
            let room = i64::from(batch) - doomed.len() as i64;
            if room <= 0 {
                break;
            }
            if let Some(cutoff) = rule.cutoff {
                let old: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM executions \
                     WHERE job_id = $1 AND finished_at IS NOT NULL AND finished_at < $2 \
                     ORDER BY finished_at LIMIT $3",
                )
                .bind(job_id)
                .bind(cutoff)
                .bind(room)
                .fetch_all(&self.pool)
                .await?;
                doomed.extend(old);
            }
            let room = i64::from(batch) - doomed.len() as i64;
            if room <= 0 {
                break;
            }
            // The oldest execution kept by count: everything finished before it goes.
            let boundary: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM executions \
                 WHERE job_id = $1 AND finished_at IS NOT NULL AND status <> 'dead' \
                 ORDER BY id DESC LIMIT 1 OFFSET $2",
            )
            .bind(job_id)
            .bind(i64::from(rule.keep) - 1)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(boundary) = boundary {
                // Those past the age cutoff were taken above.
                let extra: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM executions \
                     WHERE job_id = $1 AND finished_at IS NOT NULL AND status <> 'dead' \
                     AND id < $2 AND ($3::timestamptz IS NULL OR finished_at >= $3) \
                     ORDER BY id LIMIT $4",
                )
                .bind(job_id)
                .bind(boundary)
                .bind(rule.cutoff)
                .bind(room)
                .fetch_all(&self.pool)
                .await?;
                doomed.extend(extra);
            }
        }
        if doomed.is_empty() && rules.iter().all(|(_, rule)| rule.cutoff.is_none()) {
            return Ok(Pruned::default());
        }
        let mut tx = self.begin().await?;
        let log_chunks = sqlx::query("DELETE FROM log_chunks WHERE execution_id = ANY($1)")
            .bind(&doomed)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM dlq_resolutions WHERE execution_id = ANY($1)")
            .bind(&doomed)
            .execute(&mut *tx)
            .await?;
        let executions =
            sqlx::query("DELETE FROM executions WHERE id = ANY($1) AND finished_at IS NOT NULL")
                .bind(&doomed)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let mut slots = 0;
        for (job_id, rule) in &rules {
            let room = u64::from(batch).saturating_sub(slots);
            let Some(cutoff) = rule.cutoff else {
                continue;
            };
            if room == 0 {
                break;
            }
            slots += sqlx::query(
                "DELETE FROM slots WHERE job_id = $1 AND scheduled_at IN ( \
                     SELECT scheduled_at FROM slots WHERE job_id = $1 AND scheduled_at < $2 \
                     ORDER BY scheduled_at LIMIT $3)",
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
                 SELECT execution_id FROM alert_inbox ORDER BY finished_at, execution_id LIMIT $1) \
             ORDER BY finished_at, id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(execution_from_row)
            .collect()
    }

    async fn alert_inbox_done(&self, ids: &[ExecutionId]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        sqlx::query("DELETE FROM alert_inbox WHERE execution_id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (incident) DO NOTHING",
        )
        .bind(id)
        .bind(storable(&alert.incident))
        .bind(alert.job_id.as_uuid())
        .bind(storable(&alert.job))
        .bind(alert.kind.as_str())
        .bind(alert.execution_id.map(|e| e.as_uuid()))
        .bind(storable(&alert.message))
        .bind(&alert.body)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        let deliveries: Vec<AlertDelivery> = alert
            .notifiers
            .iter()
            .map(|(notifier, url)| AlertDelivery {
                id: Uuid::now_v7(),
                notifier: *notifier,
                url: url.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: Some(now),
                last_error: None,
                delivered_at: None,
            })
            .collect();
        if !deliveries.is_empty() {
            sqlx::query(
                "INSERT INTO alert_deliveries \
                     (id, alert_id, notifier, url, state, attempts, next_attempt_at) \
                 SELECT d.id, $1, d.notifier, d.url, 'pending', 0, $2 \
                 FROM UNNEST($3::uuid[], $4::text[], $5::text[]) AS d(id, notifier, url)",
            )
            .bind(id)
            .bind(now)
            .bind(deliveries.iter().map(|d| d.id).collect::<Vec<_>>())
            .bind(
                deliveries
                    .iter()
                    .map(|d| d.notifier.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                deliveries
                    .iter()
                    .map(|d| storable(&d.url))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
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
            created_at: now,
            deliveries,
        }))
    }

    async fn alert_latest(&self, job_id: JobId) -> StoreResult<Option<Alert>> {
        sqlx::query("SELECT * FROM alerts WHERE job_id = $1 ORDER BY id DESC LIMIT 1")
            .bind(job_id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(alert_from_row)
            .transpose()
    }

    async fn alert_open(&self) -> StoreResult<Vec<Alert>> {
        sqlx::query(
            "SELECT * FROM (SELECT DISTINCT ON (job_id) * FROM alerts ORDER BY job_id, id DESC) a \
             WHERE a.kind <> 'recovered' ORDER BY a.id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(alert_from_row)
        .collect()
    }

    async fn alert_list(&self, job: Option<&str>, limit: u32) -> StoreResult<Vec<Alert>> {
        let limit = i64::from(page_size(limit));
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE ($1::text IS NULL OR job_name = $1) \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(job.map(storable))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut alerts = rows
            .iter()
            .map(alert_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        if alerts.is_empty() {
            return Ok(alerts);
        }
        let ids: Vec<Uuid> = alerts.iter().map(|a| a.id).collect();
        let mut by_alert: HashMap<Uuid, Vec<AlertDelivery>> = HashMap::new();
        for row in
            sqlx::query("SELECT * FROM alert_deliveries WHERE alert_id = ANY($1) ORDER BY id")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?
        {
            by_alert
                .entry(row.try_get("alert_id")?)
                .or_default()
                .push(delivery_from_row(&row)?);
        }
        for alert in &mut alerts {
            alert.deliveries = by_alert.remove(&alert.id).unwrap_or_default();
        }
        Ok(alerts)
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
            "UPDATE alert_deliveries SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE id IN (SELECT id FROM alert_deliveries \
                 WHERE state = 'pending' AND next_attempt_at <= $2 \
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING *",
        )
        .bind(held)
        .bind(now)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let alert_id: Uuid = row.try_get("alert_id")?;
            let alert = sqlx::query("SELECT * FROM alerts WHERE id = $1")
                .bind(alert_id)
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
            DeliveryOutcome::Retry { error, at } => (
                DeliveryState::Pending,
                Some(*at),
                Some(storable(error)),
                None,
            ),
            DeliveryOutcome::GaveUp { error } => {
                (DeliveryState::Failed, None, Some(storable(error)), None)
            }
        };
        let updated = sqlx::query(
            "UPDATE alert_deliveries SET state = $1, next_attempt_at = $2, \
                 last_error = COALESCE($3, last_error), delivered_at = $4 \
             WHERE id = $5",
        )
        .bind(state.as_str())
        .bind(next)
        .bind(error)
        .bind(delivered)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::not_found(format!("alert delivery {id}")));
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }
}

/// What only PostgreSQL can get wrong: the conformance suite in `tests/` covers the contract.
/// These run when `PANDA_TEST_DATABASE_URL` is set, each in a schema it drops at the end.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, TimeZone, Utc};
    use panda_core::{ConcurrencyPolicy, JobName, JobSpec, RuntimeSpec, Status};

    use super::*;
    use crate::Outcome;
    use crate::testing::{DATABASE_URL_ENV, REQUIRE_ALL_ENV};

    async fn store() -> Option<PgStore> {
        let Some(url) = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        else {
            assert_ne!(
                std::env::var(REQUIRE_ALL_ENV).as_deref(),
                Ok("1"),
                "{DATABASE_URL_ENV} is not set"
            );
            eprintln!("skipped: {DATABASE_URL_ENV} is not set");
            return None;
        };
        let schema = format!("panda_unit_{}", Uuid::now_v7().simple());
        Some(
            PgStore::connect_in_schema(&url, &schema, 8)
                .await
                .expect("connect"),
        )
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0)
            .single()
            .expect("a valid instant")
            + chrono::Duration::seconds(seconds)
    }

    fn spec(name: &str, concurrency: ConcurrencyPolicy) -> JobSpec {
        let mut spec = JobSpec::new(
            JobName::new(name).expect("a valid name"),
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        spec.concurrency = concurrency;
        spec
    }

    fn claim_request(worker: &str, limit: u32) -> ClaimRequest {
        ClaimRequest {
            worker_id: worker.into(),
            queues: vec![],
            limit,
            lease_ttl: Duration::from_secs(30),
        }
    }

    fn succeeded(claimed: &Claimed) -> Finish {
        Finish {
            execution_id: claimed.execution.id,
            token: claimed.lease.token,
            outcome: Outcome::Succeeded,
            exit_code: Some(0),
            reason: None,
            image_digest: None,
        }
    }

    #[tokio::test]
    async fn schema_names_are_checked_before_they_reach_sql() {
        for bad in ["", "Public", "a-b", "a\"b", "x;drop", &"a".repeat(64)] {
            let err = PgStore::connect_in_schema("postgres://127.0.0.1:1/none", bad, 1)
                .await
                .expect_err("refused");
            assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn nul_characters_are_refused_or_replaced_never_a_database_error() {
        let Some(store) = store().await else { return };
        store
            .job_create(&spec("nul", ConcurrencyPolicy::Allow), at(0))
            .await
            .expect("create");
        let mut with_nul = NewExecution::api("nul");
        with_nul.payload = Some(serde_json::json!({ "a": "x\u{0}y" }));
        let err = store.execution_enqueue(&with_nul, at(0)).await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
        with_nul.payload = None;
        with_nul.idempotency_key = Some("k\0".into());
        let err = store.execution_enqueue(&with_nul, at(0)).await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
        let mut env_nul = spec("nul-env", ConcurrencyPolicy::Allow);
        env_nul.env.insert("A".into(), "\0".into());
        let err = store.job_create(&env_nul, at(0)).await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");

        let err = store.job_get("nu\0l").await;
        assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
        let err = store
            .execution_enqueue(&NewExecution::api("nu\0l"), at(0))
            .await;
        assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
        assert_eq!(store.execution_latest("nu\0l").await.expect("latest"), None);

        store
            .execution_enqueue(&NewExecution::api("nul"), at(0))
            .await
            .expect("enqueue");
        let nul_queue = ClaimRequest {
            queues: vec!["de\0fault".into()],
            ..claim_request("w", 10)
        };
        assert!(
            store
                .execution_claim(&nul_queue, at(0))
                .await
                .expect("claim")
                .is_empty()
        );
        let mut claimed = store
            .execution_claim(&claim_request("worker\0", 1), at(1))
            .await
            .expect("claim");
        let claimed = claimed.pop().expect("one");
        assert_eq!(
            claimed.execution.worker_id.as_deref(),
            Some("worker\u{FFFD}")
        );
        let finish = Finish {
            reason: Some("engine said \0".into()),
            outcome: Outcome::Cancelled,
            ..succeeded(&claimed)
        };
        let finished = store
            .execution_finish(&finish, at(2))
            .await
            .expect("finish");
        assert_eq!(
            finished.execution.reason.as_deref(),
            Some("engine said \u{FFFD}")
        );
        assert_eq!(
            store
                .execution_get(claimed.execution.id)
                .await
                .expect("get"),
            finished.execution
        );
        store.drop_schema().await.expect("drop");
    }

    /// A claim from several queues merges them in claim order and stops at its limit; what it
    /// did not take stays queued for the next claim.
    #[tokio::test]
    async fn a_claim_from_several_queues_takes_the_best_across_them() {
        let Some(store) = store().await else { return };
        let mut expected = Vec::new();
        for (queue, priority) in [("low", 0), ("high", 5), ("mid", 2), ("other", 9)] {
            let mut spec = spec(&format!("job-{queue}"), ConcurrencyPolicy::Allow);
            spec.queue = queue.into();
            spec.priority = priority;
            store.job_create(&spec, at(0)).await.expect("create");
            for i in 0..3 {
                let e = store
                    .execution_enqueue(&NewExecution::api(format!("job-{queue}")), at(i))
                    .await
                    .expect("enqueue")
                    .execution;
                expected.push((queue, priority, i, e.id));
            }
        }
        let request = ClaimRequest {
            queues: vec!["low".into(), "mid".into(), "high".into(), "mid".into()],
            ..claim_request("w", 4)
        };
        let first = store
            .execution_claim(&request, at(10))
            .await
            .expect("claim");
        let want: Vec<ExecutionId> = expected
            .iter()
            .filter(|(q, ..)| *q == "high")
            .chain(expected.iter().filter(|(q, ..)| *q == "mid").take(1))
            .map(|(.., id)| *id)
            .collect();
        assert_eq!(
            first.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
            want
        );
        let rest = store
            .execution_claim(
                &ClaimRequest {
                    limit: 100,
                    ..request
                },
                at(10),
            )
            .await
            .expect("claim");
        assert_eq!(rest.len(), 5, "two of mid and three of low, each once");
        store.drop_schema().await.expect("drop");
    }

    /// Many workers claiming batches from many `forbid` jobs at once: the job locks are taken
    /// in one order, so no claim fails with a deadlock, and no job ever runs twice at a time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claims_of_forbid_jobs_neither_deadlock_nor_overlap() {
        let Some(store) = store().await else { return };
        const JOBS: usize = 12;
        const PER_JOB: usize = 15;
        for j in 0..JOBS {
            let name = format!("job-{j}");
            store
                .job_create(&spec(&name, ConcurrencyPolicy::Forbid), at(0))
                .await
                .expect("create");
            for _ in 0..PER_JOB {
                store
                    .execution_enqueue(&NewExecution::api(name.clone()), at(0))
                    .await
                    .expect("enqueue");
            }
        }
        let store = Arc::new(store);
        let workers: Vec<_> = (0..6)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut done = 0;
                    let mut idle = 0;
                    while idle < 20 {
                        let claimed = store
                            .execution_claim(&claim_request(&format!("w{w}"), 7), at(1))
                            .await
                            .expect("a claim never fails");
                        if claimed.is_empty() {
                            idle += 1;
                            tokio::task::yield_now().await;
                            continue;
                        }
                        idle = 0;
                        let jobs: HashSet<JobId> =
                            claimed.iter().map(|c| c.execution.job_id).collect();
                        assert_eq!(jobs.len(), claimed.len(), "one per job per batch");
                        let overlapping: i64 = sqlx::query_scalar(
                            "SELECT count(*) FROM (SELECT job_id FROM executions \
                             WHERE status = 'running' GROUP BY job_id HAVING count(*) > 1) o",
                        )
                        .fetch_one(&store.pool)
                        .await
                        .expect("count");
                        assert_eq!(overlapping, 0, "a forbid job runs twice");
                        let batch: Vec<Finish> = claimed.iter().map(succeeded).collect();
                        for result in store
                            .execution_finish_many(&batch, at(2))
                            .await
                            .expect("a finish never fails")
                        {
                            result.expect("each finish holds its lease");
                            done += 1;
                        }
                    }
                    done
                })
            })
            .collect();
        let mut done = 0;
        for worker in workers {
            done += worker.await.expect("worker");
        }
        assert_eq!(done, JOBS * PER_JOB);
        let locks: i64 = sqlx::query_scalar("SELECT count(*) FROM job_locks")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        assert_eq!(locks, 0, "every lock released");
        store.drop_schema().await.expect("drop");
    }

    /// A finish and a rescue of the same expired lease race: exactly one of them settles it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_finish_racing_a_rescue_settles_the_execution_once() {
        let Some(store) = store().await else { return };
        store
            .job_create(&spec("racy", ConcurrencyPolicy::Allow), at(0))
            .await
            .expect("create");
        let store = Arc::new(store);
        for round in 0..20 {
            store
                .execution_enqueue(&NewExecution::api("racy"), at(round * 100))
                .await
                .expect("enqueue");
            let claimed = store
                .execution_claim(&claim_request("w", 1), at(round * 100))
                .await
                .expect("claim")
                .pop()
                .expect("one");
            let later = at(round * 100 + 60);
            let finisher = {
                let store = Arc::clone(&store);
                let finish = succeeded(&claimed);
                tokio::spawn(async move { store.execution_finish(&finish, later).await })
            };
            let rescuer = {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.execution_rescue(later, 10).await })
            };
            let finished = finisher.await.expect("finisher");
            let rescued = rescuer.await.expect("rescuer").expect("rescue");
            let stored = store
                .execution_get(claimed.execution.id)
                .await
                .expect("get");
            match finished {
                Ok(f) => {
                    assert!(rescued.is_empty(), "round {round}: both settled it");
                    assert_eq!(f.execution, stored);
                    assert_eq!(stored.status, Status::Succeeded);
                }
                Err(StoreError::Stale) => {
                    assert_eq!(rescued.len(), 1, "round {round}: neither settled it");
                    assert_eq!(stored.status, Status::Lost);
                    // Its retry is queued; take it out of the way of the next round.
                    let retry = rescued[0].retry.as_ref().expect("a retry");
                    store
                        .execution_cancel(retry.id, later)
                        .await
                        .expect("cancel the retry");
                }
                Err(err) => panic!("round {round}: {err}"),
            }
        }
        store.drop_schema().await.expect("drop");
    }

    /// The listener reconnects after its connection is killed, and notices flow again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn notices_resume_after_the_listen_connection_is_killed() {
        let Some(store) = store().await else { return };
        store
            .job_create(&spec("wake", ConcurrencyPolicy::Allow), at(0))
            .await
            .expect("create");
        let mut notices = store.subscribe();
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query = 'LISTEN \"panda_queued\"' AND pid <> pg_backend_pid()",
        )
        .fetch_all(&store.pool)
        .await
        .expect("terminate the listeners");
        assert!(!killed.is_empty(), "a listener was connected");
        for attempt in 0..40 {
            store
                .execution_enqueue(&NewExecution::api("wake"), at(attempt))
                .await
                .expect("enqueue");
            let heard = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    match notices.recv().await {
                        Ok(Notice::Queued { queue }) if queue == "default" => return,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => panic!("closed"),
                    }
                }
            })
            .await;
            if heard.is_ok() {
                store.drop_schema().await.expect("drop");
                return;
            }
        }
        panic!("no notice after the listener's connection was killed");
    }

    /// Dropping the store ends its listener task.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_store_ends_the_listener() {
        let Some(store) = store().await else { return };
        let task = store._listener.0.clone();
        let copy = store.clone();
        store.drop_schema().await.expect("drop");
        drop(store);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "a clone still holds the store");
        drop(copy);
        for _ in 0..50 {
            if task.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the listener outlived its store");
    }
}
