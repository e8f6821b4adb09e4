//! The shared store: PostgreSQL, for many nodes.
//!
//! The semantics are those of [`SqliteStore`](crate::SqliteStore), and the retry and end-of-attempt
//! decisions, and every algorithm, are written once for both (`crate::dialect`); what differs is
//! the dialect, and how concurrent nodes are kept apart, because here they really do run at the
//! same time:
//!
//! - **Claims use `FOR UPDATE SKIP LOCKED`**: each claimer locks the due rows it picked and
//!   skips the rows another claimer holds, so no execution is claimed twice and no claimer
//!   waits on another. The job lock of `forbid` jobs is a row in `job_locks`, inserted with
//!   `ON CONFLICT DO NOTHING` in key order (so two claimers cannot deadlock on it).
//! - **Races are decided by unique indexes**, not by reading first: an enqueue with an
//!   idempotency key and a cron slot are inserted with `ON CONFLICT DO NOTHING`, and the loser
//!   reads the winner's row.
//! - **Batches are set-based**: a claim marks all its executions running, and a finish ends
//!   all its items, with one statement each (`UNNEST` of per-row values), not a round trip per
//!   row.
//! - **Wake-ups use `LISTEN/NOTIFY` as a hint only**: enqueues, fired slots and retries call
//!   `pg_notify('panda_queued', queue)` in their transaction; a background task per store holds
//!   a `LISTEN` connection and forwards what it hears to [`Notifier::subscribe`](crate::Notifier::subscribe). It drops notices
//!   while it reconnects, which is fine: workers poll as well.
//!
//! Every instant comes from the caller's `now`, never from the database's `NOW()`.

mod alerts;
mod chains;
mod claim;
mod encode;
mod history;
mod jobs;
mod logs;
mod monitors;
mod notify;
mod queue;
mod rate;
mod retention;
mod services;
mod slots;
mod tokens;
mod webhooks;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{ExecutionId, ValidationError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::dialect::{Backend, Query, Wakes};
use crate::error::OrStore;
use crate::model::{Claimed, ExecutionBrief, Finish, Finished, Notice};
use crate::{Sql, StoreError, StoreResult};
use encode::{PgPoolConn, PgTx};
use notify::CHANNEL;
use panda_core::LogChunk;

/// How long a call waits for a connection, a new one included, before it fails as
/// `Unavailable`. sqlx's default, 30 s, kept every API request waiting that long while the
/// database was down (a refused connection is retried until the deadline). A healthy pool hands
/// out a connection in well under a millisecond, so 2 s is an outage, or a pool so swamped that
/// a quick 503 with `Retry-After` serves the caller better than a long wait. The engine's loops
/// retry on their own.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// [`Store`](crate::Store) on a PostgreSQL database, shared by every node.
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

    /// The schema the tables live in, when the store was opened in one of its own.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
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
        .await
        .or_store()?;
        Ok(())
    }

    async fn open(url: &str, schema: Option<&str>, max_connections: u32) -> StoreResult<Self> {
        let mut options = PgConnectOptions::from_str(url).or_store()?;
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
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .or_store()?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .or_store()?;

        let (notices, _) = broadcast::channel(1024);
        // The listener has a connection of its own, so it never takes one from the pool the
        // store's work needs. The first LISTEN happens before `connect` returns, so a caller
        // that subscribes at once hears the next enqueue; failing that, the task keeps trying.
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options);
        let listener = match notify::listen(&listener_pool).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                tracing::warn!(error = %err, "LISTEN {CHANNEL} failed; retrying in the background");
                None
            }
        };
        let task = tokio::spawn(notify::forward_notices(
            listener_pool,
            listener,
            notices.clone(),
        ));
        Ok(Self {
            pool,
            schema: schema.map(str::to_owned),
            notices,
            _listener: Arc::new(ListenerTask(task.abort_handle())),
        })
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
    let mut conn = PgConnection::connect_with(options).await.or_store()?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut conn)
            .await
            .or_store()?;
    if !exists {
        // The name was validated to [a-z0-9_], so quoting it is enough.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
        )))
        .execute(&mut conn)
        .await
        .or_store()?;
    }
    conn.close().await.or_store()?;
    Ok(())
}

/// Every statement of the PostgreSQL dialect.
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
impl Backend for PgStore {
    type Row = PgRow;
    type Tx = PgTx;
    type Pool = PgPoolConn;

    const SQL: &'static Sql = &SQL;

    fn placeholder(n: usize) -> Cow<'static, str> {
        format!("${n}").into()
    }

    fn without_nul(text: &str) -> Cow<'_, str> {
        if text.contains('\0') {
            Cow::Owned(encode::without_nul(text.to_owned()))
        } else {
            Cow::Borrowed(text)
        }
    }

    async fn begin(&self) -> StoreResult<PgTx> {
        Ok(PgTx {
            tx: self.pool.begin().await.or_store()?,
            wakes: Wakes::default(),
        })
    }

    fn writer(&self) -> PgPoolConn {
        PgPoolConn(self.pool.clone())
    }

    fn reader(&self) -> PgPoolConn {
        PgPoolConn(self.pool.clone())
    }

    fn notices(&self) -> &broadcast::Sender<Notice> {
        &self.notices
    }

    async fn append_log(&self, execution_id: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()> {
        logs::append(&self.pool, execution_id, chunks).await
    }

    async fn recent_per_job(
        &self,
        jobs: &[String],
        per_job: u32,
        runs_only: bool,
    ) -> StoreResult<Vec<ExecutionBrief>> {
        history::recent_per_job(&self.pool, jobs, per_job, runs_only).await
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
        claim::unrestricted(&self.pool, queues, now, limit, worker_id, expires_at).await
    }

    async fn finish_successes(
        &self,
        batch: &[Finish],
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Vec<Option<Finished>>>> {
        queue::finish_successes(&self.pool, batch, now)
            .await
            .map(Some)
    }
}

/// A database URL fit for printing: the password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://panda:s3cret@db:5432/panda"),
            "postgres://panda:***@db:5432/panda"
        );
        assert_eq!(
            redact_url("postgres://panda@db/panda"),
            "postgres://panda@db/panda"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
