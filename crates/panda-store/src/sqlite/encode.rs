//! How SQLite stores Panda's values: ids as TEXT, instants as INTEGER microseconds (UTC), JSON
//! as TEXT, lists and tables as one JSON text read with `json_each(?)`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Executor, Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::dialect::{Arg, Column, Query, Record, Tx, Wakes, conn};
use crate::error::OrStore;
use crate::model::Notice;
use crate::{StoreError, StoreResult};

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn instant(micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("instant out of range: {micros}")))
}

fn json_text(value: &impl serde::Serialize) -> String {
    // Serializing a `Value`, a list of strings or of JSON values cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// A table as the rows `json_each(?)` yields, each an array read with `value ->> i`.
fn table_text(columns: &[Column]) -> String {
    let rows = columns.first().map_or(0, column_len);
    let mut table = vec![Vec::with_capacity(columns.len()); rows];
    for column in columns {
        for (row, value) in table.iter_mut().zip(column_values(column)) {
            row.push(value);
        }
    }
    json_text(&table)
}

fn column_len(column: &Column) -> usize {
    match column {
        Column::Uuids(v) => v.len(),
        Column::Times(v) => v.len(),
        Column::Texts(v) => v.len(),
        Column::I64s(v) => v.len(),
        Column::I32s(v) => v.len(),
        Column::Bools(v) => v.len(),
        Column::Jsons(v) => v.len(),
    }
}

fn column_values(column: &Column) -> Vec<Value> {
    fn each<T>(values: &[T], f: impl Fn(&T) -> Value) -> Vec<Value> {
        values.iter().map(f).collect()
    }
    let or_null = |v: Option<Value>| v.unwrap_or(Value::Null);
    match column {
        Column::Uuids(v) => each(v, |u| or_null(u.map(|u| u.to_string().into()))),
        Column::Times(v) => each(v, |t| or_null(t.map(|t| micros(t).into()))),
        Column::Texts(v) => each(v, |t| or_null(t.clone().map(Value::from))),
        Column::I64s(v) => each(v, |n| or_null(n.map(Value::from))),
        Column::I32s(v) => each(v, |n| or_null(n.map(Value::from))),
        Column::Bools(v) => each(v, |b| Value::from(*b)),
        // A JSON column holds the document's text.
        Column::Jsons(v) => each(v, |j| or_null(j.as_ref().map(|j| json_text(j).into()))),
    }
}

/// The statement with its arguments bound in SQLite's encoding.
fn bind(query: Query) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(query.sql));
    for arg in query.args {
        q = match arg {
            Arg::Uuid(v) => q.bind(v.map(|u| u.to_string())),
            Arg::Time(v) => q.bind(v.map(micros)),
            Arg::Text(v) => q.bind(v),
            Arg::I64(v) => q.bind(v),
            Arg::I32(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Json(v) => q.bind(v.map(|j| json_text(&j))),
            Arg::Bytes(v) => q.bind(v),
            Arg::Uuids(v) => q.bind(json_text(
                &v.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )),
            Arg::Texts(v) => q.bind(json_text(&v)),
            Arg::Table(columns) => q.bind(table_text(&columns)),
        };
    }
    q
}

fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("id {text:?}")))
}

fn from_json<T: DeserializeOwned>(column: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("{column}: {err}")))
}

impl Record for SqliteRow {
    fn uuid(&self, column: &str) -> StoreResult<Uuid> {
        parse_uuid(self.try_get(column).or_store()?)
    }

    fn opt_uuid(&self, column: &str) -> StoreResult<Option<Uuid>> {
        self.try_get::<Option<&str>, _>(column)
            .or_store()?
            .map(parse_uuid)
            .transpose()
    }

    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>> {
        instant(self.try_get(column).or_store()?)
    }

    fn opt_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        self.try_get::<Option<i64>, _>(column)
            .or_store()?
            .map(instant)
            .transpose()
    }

    fn text(&self, column: &str) -> StoreResult<String> {
        self.try_get(column).or_store()
    }

    fn word(&self, column: &str) -> StoreResult<&str> {
        self.try_get(column).or_store()
    }

    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        self.try_get(column).or_store()
    }

    fn i64(&self, column: &str) -> StoreResult<i64> {
        self.try_get(column).or_store()
    }

    fn i32(&self, column: &str) -> StoreResult<i32> {
        let value: i64 = self.try_get(column).or_store()?;
        i32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} {value}")))
    }

    fn opt_i32(&self, column: &str) -> StoreResult<Option<i32>> {
        self.try_get::<Option<i64>, _>(column)
            .or_store()?
            .map(|value| {
                i32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} {value}")))
            })
            .transpose()
    }

    fn bool(&self, column: &str) -> StoreResult<bool> {
        self.try_get(column).or_store()
    }

    fn json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<T> {
        from_json(column, self.try_get(column).or_store()?)
    }

    fn opt_json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<Option<T>> {
        self.try_get::<Option<&str>, _>(column)
            .or_store()?
            .map(|text| from_json(column, text))
            .transpose()
    }

    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
        self.try_get(column).or_store()
    }
}

async fn execute<'e>(on: impl Executor<'e, Database = Sqlite>, query: Query) -> StoreResult<u64> {
    Ok(bind(query).execute(on).await.or_store()?.rows_affected())
}

async fn fetch_all<'e>(
    on: impl Executor<'e, Database = Sqlite>,
    query: Query,
) -> StoreResult<Vec<SqliteRow>> {
    bind(query).fetch_all(on).await.or_store()
}

async fn fetch_optional<'e>(
    on: impl Executor<'e, Database = Sqlite>,
    query: Query,
) -> StoreResult<Option<SqliteRow>> {
    bind(query).fetch_optional(on).await.or_store()
}

/// A pool of SQLite connections (the writer or the readers), one statement at a time.
#[derive(Debug, Clone)]
pub struct SqlitePoolConn(pub(crate) SqlitePool);

conn!(SqlitePoolConn, SqliteRow, |c| &c.0);

/// A write transaction (`BEGIN IMMEDIATE` on the one writer connection); its wake-ups go out
/// after it commits.
#[derive(Debug)]
pub struct SqliteTx {
    pub(crate) tx: Transaction<'static, Sqlite>,
    pub(crate) notices: broadcast::Sender<Notice>,
    pub(crate) wakes: Wakes,
}

conn!(SqliteTx, SqliteRow, |c| &mut *c.tx);

#[async_trait]
impl Tx for SqliteTx {
    fn wake(&mut self, queue: &str) {
        self.wakes.add(queue);
    }

    async fn commit(mut self) -> StoreResult<()> {
        let wakes = self.wakes.take();
        self.tx.commit().await.or_store()?;
        for queue in wakes {
            // No receiver is fine: polling is the truth.
            let _ = self.notices.send(Notice::Queued { queue });
        }
        Ok(())
    }

    async fn rollback(self) -> StoreResult<()> {
        self.tx.rollback().await.or_store()
    }
}
