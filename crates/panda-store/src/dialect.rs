//! The small layer each backend implements so that every store method is written once.
//!
//! A store method is an algorithm (in the domain modules: `jobs`, `queue`, `claim`, …) over a
//! [`Backend`]: it builds [`Query`] values from the backend's statement texts (each domain has
//! a struct of them, which `sqlite/` and `postgres/` fill side by side), runs them on a
//! [`Conn`] or in a [`Tx`], and reads rows through [`Record`]. What a backend supplies is only
//! its dialect:
//!
//! - **statement texts**: placeholders (`?` / `$n`), `RETURNING`, `FOR UPDATE SKIP LOCKED`
//!   against the single writer, `json_each` against `UNNEST`;
//! - **encoding**: how an [`Arg`] is bound (ids as text or `uuid`, instants as microseconds or
//!   `timestamptz`, a [`Column`] table as one JSON text or one array per column) and how a
//!   column is read back;
//! - **connections**: a write transaction, the writer and the reader, and when wake-ups go out
//!   (after the commit, or `pg_notify` inside it);
//! - **the few paths that are really backend-specific**: PostgreSQL's one-statement claim and
//!   finish, each backend's log append, the dashboard's per-job strips.
//!
//! The traits are public only because the domain traits are implemented for every `Backend`;
//! they are sealed: the two backends in this crate are the only ones.

use std::borrow::Cow;
use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::model::{Claimed, ExecutionBrief, Finish, Finished, Notice};
use panda_core::ExecutionId;
use panda_core::LogChunk;

use crate::StoreResult;

/// A statement and its arguments, in order.
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) sql: Cow<'static, str>,
    pub(crate) args: Vec<Arg>,
}

/// One argument of a [`Query`]; each backend binds it in its own encoding.
#[derive(Debug, Clone)]
pub enum Arg {
    /// An id: `TEXT` on SQLite, `uuid` on PostgreSQL.
    Uuid(Option<Uuid>),
    /// An instant: INTEGER microseconds on SQLite, `timestamptz` on PostgreSQL.
    Time(Option<DateTime<Utc>>),
    /// Text. PostgreSQL cannot store NUL characters: there each becomes U+FFFD.
    Text(Option<String>),
    /// A 64-bit integer.
    I64(Option<i64>),
    /// A 32-bit integer (`integer` columns on PostgreSQL).
    I32(Option<i32>),
    /// A boolean.
    Bool(Option<bool>),
    /// A JSON document: `TEXT` on SQLite, `jsonb` on PostgreSQL.
    Json(Option<serde_json::Value>),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A list of ids: a JSON array for `json_each(?)` on SQLite, a `uuid[]` on PostgreSQL.
    Uuids(Vec<Uuid>),
    /// A list of texts: a JSON array on SQLite, a `text[]` on PostgreSQL.
    Texts(Vec<String>),
    /// Rows of values, by column: one JSON array of rows for `json_each(?)` on SQLite (read
    /// with `value ->> i`), one array per column for `UNNEST($k, $k+1, …)` on PostgreSQL, so
    /// a table of n columns takes n placeholders there and one here.
    Table(Vec<Column>),
}

/// One column of an [`Arg::Table`]; every column of a table has the same length.
#[derive(Debug, Clone)]
pub enum Column {
    /// Ids.
    Uuids(Vec<Option<Uuid>>),
    /// Instants.
    Times(Vec<Option<DateTime<Utc>>>),
    /// Texts.
    Texts(Vec<Option<String>>),
    /// 64-bit integers.
    I64s(Vec<Option<i64>>),
    /// 32-bit integers.
    I32s(Vec<Option<i32>>),
    /// Booleans.
    Bools(Vec<bool>),
    /// JSON documents.
    Jsons(Vec<Option<serde_json::Value>>),
}

impl Column {
    /// A column of one value per row.
    pub(crate) fn of<T, V>(rows: &[T], value: impl Fn(&T) -> V) -> Vec<V> {
        rows.iter().map(value).collect()
    }
}

/// Starts a query.
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

impl Query {
    fn arg(mut self, arg: Arg) -> Self {
        self.args.push(arg);
        self
    }

    pub(crate) fn uuid(self, value: impl Into<Uuid>) -> Self {
        self.arg(Arg::Uuid(Some(value.into())))
    }

    pub(crate) fn opt_uuid(self, value: Option<impl Into<Uuid>>) -> Self {
        self.arg(Arg::Uuid(value.map(Into::into)))
    }

    pub(crate) fn time(self, value: DateTime<Utc>) -> Self {
        self.arg(Arg::Time(Some(value)))
    }

    pub(crate) fn opt_time(self, value: Option<DateTime<Utc>>) -> Self {
        self.arg(Arg::Time(value))
    }

    pub(crate) fn text(self, value: impl Into<String>) -> Self {
        self.arg(Arg::Text(Some(value.into())))
    }

    pub(crate) fn opt_text(self, value: Option<impl Into<String>>) -> Self {
        self.arg(Arg::Text(value.map(Into::into)))
    }

    pub(crate) fn i64(self, value: i64) -> Self {
        self.arg(Arg::I64(Some(value)))
    }

    pub(crate) fn opt_i32(self, value: Option<i32>) -> Self {
        self.arg(Arg::I32(value))
    }

    pub(crate) fn bool(self, value: bool) -> Self {
        self.arg(Arg::Bool(Some(value)))
    }

    pub(crate) fn opt_bool(self, value: Option<bool>) -> Self {
        self.arg(Arg::Bool(value))
    }

    pub(crate) fn json(self, value: serde_json::Value) -> Self {
        self.arg(Arg::Json(Some(value)))
    }

    pub(crate) fn opt_json(self, value: Option<serde_json::Value>) -> Self {
        self.arg(Arg::Json(value))
    }

    pub(crate) fn bytes(self, value: Vec<u8>) -> Self {
        self.arg(Arg::Bytes(value))
    }

    pub(crate) fn uuids(self, values: Vec<Uuid>) -> Self {
        self.arg(Arg::Uuids(values))
    }

    pub(crate) fn texts(self, values: Vec<String>) -> Self {
        self.arg(Arg::Texts(values))
    }

    pub(crate) fn table(self, columns: Vec<Column>) -> Self {
        self.arg(Arg::Table(columns))
    }

    /// Appends SQL text, for a statement built from the conditions that apply.
    pub(crate) fn push(mut self, sql: &str) -> Self {
        self.sql.to_mut().push_str(sql);
        self
    }

    /// Appends the placeholder of the next argument in `B`'s dialect, then the argument.
    pub(crate) fn push_arg<B: Backend>(mut self, arg: Arg) -> Self {
        let placeholder = B::placeholder(self.args.len() + 1);
        self.sql.to_mut().push_str(&placeholder);
        self.arg(arg)
    }
}

/// A row, read column by column in the backend's encoding.
pub trait Record: Send + Sync {
    /// An id column.
    fn uuid(&self, column: &str) -> StoreResult<Uuid>;
    /// A nullable id column.
    fn opt_uuid(&self, column: &str) -> StoreResult<Option<Uuid>>;
    /// An instant column.
    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>>;
    /// A nullable instant column.
    fn opt_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>>;
    /// A text column.
    fn text(&self, column: &str) -> StoreResult<String>;
    /// A text column, borrowed from the row (a word to parse: a status, a trigger).
    fn word(&self, column: &str) -> StoreResult<&str>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    /// A 64-bit integer column (a `COUNT`, a `bigint`).
    fn i64(&self, column: &str) -> StoreResult<i64>;
    /// A 32-bit integer column.
    fn i32(&self, column: &str) -> StoreResult<i32>;
    /// A nullable 32-bit integer column.
    fn opt_i32(&self, column: &str) -> StoreResult<Option<i32>>;
    /// A boolean column.
    fn bool(&self, column: &str) -> StoreResult<bool>;
    /// A JSON column, decoded.
    fn json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<T>;
    /// A nullable JSON column, decoded.
    fn opt_json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<Option<T>>;
    /// A bytes column.
    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>>;
}

/// Somewhere statements run: a pool (each statement on its own) or a transaction.
#[async_trait]
pub trait Conn: Send {
    /// The rows it returns.
    type Row: Record;

    /// Runs a statement; the number of rows it changed.
    async fn execute(&mut self, query: Query) -> StoreResult<u64>;

    /// Every row a statement returns.
    async fn fetch_all(&mut self, query: Query) -> StoreResult<Vec<Self::Row>>;

    /// The first row a statement returns, if any.
    async fn fetch_optional(&mut self, query: Query) -> StoreResult<Option<Self::Row>>;
}

/// Implements [`Conn`] for one of a backend's connection types, over the calling module's
/// `execute`, `fetch_all` and `fetch_optional`, which bind a [`Query`] in the backend's
/// encoding and run it on any of its executors; `|c| …` says which executor `c` has.
macro_rules! conn {
    ($conn:ty, $row:ty, |$c:ident| $on:expr) => {
        #[async_trait::async_trait]
        impl $crate::dialect::Conn for $conn {
            type Row = $row;

            async fn execute(&mut self, query: $crate::dialect::Query) -> StoreResult<u64> {
                let $c = self;
                execute($on, query).await
            }

            async fn fetch_all(&mut self, query: $crate::dialect::Query) -> StoreResult<Vec<$row>> {
                let $c = self;
                fetch_all($on, query).await
            }

            async fn fetch_optional(
                &mut self,
                query: $crate::dialect::Query,
            ) -> StoreResult<Option<$row>> {
                let $c = self;
                fetch_optional($on, query).await
            }
        }
    };
}
pub(crate) use conn;

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
#[async_trait]
pub trait Tx: Conn {
    /// Wakes the workers of `queue` once the transaction commits.
    fn wake(&mut self, queue: &str);

    /// Commits, then (or, on PostgreSQL, as part of it) sends the wake-ups.
    async fn commit(self) -> StoreResult<()>;

    /// Rolls back now, releasing every lock the transaction took.
    async fn rollback(self) -> StoreResult<()>;
}

/// Ends a transaction as `result` says: commits it when the work succeeded, and rolls it back
/// before the error is returned otherwise. A transaction that is only dropped is rolled back
/// when its connection is next used, after the caller has moved on: meanwhile the rows it
/// locked stay locked (a claim skips a queued execution that a refused DLQ retry read
/// `FOR UPDATE`), and on SQLite the write lock stays taken.
pub(crate) async fn settle<T: Send, X: Tx>(tx: X, result: StoreResult<T>) -> StoreResult<T> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            // The error says what went wrong; a failed rollback ends with the connection.
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

/// The queues to wake, each once.
#[derive(Debug, Default)]
pub(crate) struct Wakes(Vec<String>);

impl Wakes {
    pub(crate) fn add(&mut self, queue: &str) {
        if !self.0.iter().any(|q| q == queue) {
            self.0.push(queue.to_owned());
        }
    }

    pub(crate) fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.0)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::SqliteStore {}
    impl Sealed for crate::PgStore {}
}

/// A SQL backend: its connections, its statements and the paths only it has. Every domain
/// trait (`JobStore`, `QueueStore`, …) is implemented once for every `Backend`.
#[async_trait]
pub trait Backend: sealed::Sealed + Send + Sync + std::fmt::Debug + 'static {
    /// A row of this backend.
    type Row: Record;
    /// A write transaction.
    type Tx: Tx<Row = Self::Row>;
    /// A pool, each statement on its own.
    type Pool: Conn<Row = Self::Row>;

    /// Every statement of this backend, by domain.
    const SQL: &'static crate::Sql;

    /// The placeholder of the `n`th argument (from 1).
    fn placeholder(n: usize) -> Cow<'static, str>;

    /// Text as this backend can store it (PostgreSQL: NUL characters become U+FFFD).
    fn without_nul(text: &str) -> Cow<'_, str>;

    /// Begins a write transaction.
    async fn begin(&self) -> StoreResult<Self::Tx>;

    /// The connections writes outside a transaction go to, one statement each.
    fn writer(&self) -> Self::Pool;

    /// The connections reads go to: they see the last committed state.
    fn reader(&self) -> Self::Pool;

    /// The in-process end of the wake-ups.
    fn notices(&self) -> &broadcast::Sender<Notice>;

    /// Appends log chunks (see [`crate::LogStore::log_append`]).
    async fn append_log(&self, execution_id: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()>;

    /// The newest `per_job` executions of each named job, in brief, leaving skipped ones out
    /// when `runs_only` (see [`crate::HistoryStore::execution_recent_per_job`] and
    /// [`crate::HistoryStore::execution_latest_per_job`]).
    async fn recent_per_job(
        &self,
        jobs: &[String],
        per_job: u32,
        runs_only: bool,
    ) -> StoreResult<Vec<ExecutionBrief>>;

    /// The claim's queued runs of running `forbid` jobs that a schedule fired, with the
    /// execution that holds their job's lock: `id`, `holder`.
    fn overlapping(queues: &[String], now: DateTime<Utc>) -> Query;

    /// The claim's candidates, in claim order (see [`crate::claim`]).
    fn candidates(queues: &[String], now: DateTime<Utc>, limit: i64) -> Query;

    /// A claim that needs no job lock, in one statement, when the backend has one: `None`
    /// when it does not apply, and the full claim runs.
    async fn claim_unrestricted(
        &self,
        _queues: &[String],
        _now: DateTime<Utc>,
        _limit: i64,
        _worker_id: &str,
        _expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Vec<Claimed>>> {
        Ok(None)
    }

    /// Writes a batch of successes in one statement, when the backend has one: for each item,
    /// what was written, or `None` when the item must go through the full finish.
    async fn finish_successes(
        &self,
        _batch: &[Finish],
        _now: DateTime<Utc>,
    ) -> StoreResult<Option<Vec<Option<Finished>>>> {
        Ok(None)
    }
}

/// Ids as a set, for the plans that ask "was this one written?".
pub(crate) fn uuid_set<R: Record>(rows: &[R], column: &str) -> StoreResult<HashSet<Uuid>> {
    rows.iter().map(|row| row.uuid(column)).collect()
}
