//! How PostgreSQL stores Panda's values: ids as `uuid`, instants as `timestamptz`, JSON as
//! `jsonb`, lists as arrays and tables as one array per column (read with `UNNEST`). Text
//! cannot hold a NUL character here: each becomes U+FFFD, so a worker's report or an engine's
//! message is recorded rather than refused, and a name that holds one matches nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Executor, PgPool, Postgres, Row, Transaction};

use super::notify;
use crate::dialect::{Arg, Column, Query, Record, Tx, Wakes, conn};
use crate::error::OrStore;
use crate::{StoreError, StoreResult};

/// Text as PostgreSQL can store it.
pub(crate) fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

fn all_without_nul(texts: Vec<Option<String>>) -> Vec<Option<String>> {
    texts.into_iter().map(|t| t.map(without_nul)).collect()
}

/// The statement with its arguments bound in PostgreSQL's encoding.
fn bind(query: Query) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(query.sql));
    for arg in query.args {
        q = match arg {
            Arg::Uuid(v) => q.bind(v),
            Arg::Time(v) => q.bind(v),
            Arg::Text(v) => q.bind(v.map(without_nul)),
            Arg::I64(v) => q.bind(v),
            Arg::I32(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Json(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
            Arg::Uuids(v) => q.bind(v),
            Arg::Texts(v) => q.bind(v.into_iter().map(without_nul).collect::<Vec<_>>()),
            Arg::Table(columns) => {
                for column in columns {
                    q = match column {
                        Column::Uuids(v) => q.bind(v),
                        Column::Times(v) => q.bind(v),
                        Column::Texts(v) => q.bind(all_without_nul(v)),
                        Column::I64s(v) => q.bind(v),
                        Column::I32s(v) => q.bind(v),
                        Column::Bools(v) => q.bind(v),
                        Column::Jsons(v) => q.bind(v),
                    };
                }
                q
            }
        };
    }
    q
}

impl Record for PgRow {
    fn uuid(&self, column: &str) -> StoreResult<uuid::Uuid> {
        self.try_get(column).or_store()
    }

    fn opt_uuid(&self, column: &str) -> StoreResult<Option<uuid::Uuid>> {
        self.try_get(column).or_store()
    }

    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>> {
        self.try_get(column).or_store()
    }

    fn opt_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        self.try_get(column).or_store()
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
        self.try_get(column).or_store()
    }

    fn opt_i32(&self, column: &str) -> StoreResult<Option<i32>> {
        self.try_get(column).or_store()
    }

    fn bool(&self, column: &str) -> StoreResult<bool> {
        self.try_get(column).or_store()
    }

    fn json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<T> {
        let value: serde_json::Value = self.try_get(column).or_store()?;
        serde_json::from_value(value).map_err(|err| StoreError::Corrupt(format!("{column}: {err}")))
    }

    fn opt_json<T: DeserializeOwned>(&self, column: &str) -> StoreResult<Option<T>> {
        self.try_get::<Option<serde_json::Value>, _>(column)
            .or_store()?
            .map(|value| {
                serde_json::from_value(value)
                    .map_err(|err| StoreError::Corrupt(format!("{column}: {err}")))
            })
            .transpose()
    }

    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
        self.try_get(column).or_store()
    }
}

async fn execute<'e>(on: impl Executor<'e, Database = Postgres>, query: Query) -> StoreResult<u64> {
    Ok(bind(query).execute(on).await.or_store()?.rows_affected())
}

async fn fetch_all<'e>(
    on: impl Executor<'e, Database = Postgres>,
    query: Query,
) -> StoreResult<Vec<PgRow>> {
    bind(query).fetch_all(on).await.or_store()
}

async fn fetch_optional<'e>(
    on: impl Executor<'e, Database = Postgres>,
    query: Query,
) -> StoreResult<Option<PgRow>> {
    bind(query).fetch_optional(on).await.or_store()
}

/// The pool, one statement at a time.
#[derive(Debug, Clone)]
pub struct PgPoolConn(pub(crate) PgPool);

conn!(PgPoolConn, PgRow, |c| &c.0);

/// A transaction; its wake-ups are sent inside it (NOTIFY is delivered on commit).
#[derive(Debug)]
pub struct PgTx {
    pub(crate) tx: Transaction<'static, Postgres>,
    pub(crate) wakes: Wakes,
}

conn!(PgTx, PgRow, |c| &mut *c.tx);

#[async_trait]
impl Tx for PgTx {
    fn wake(&mut self, queue: &str) {
        self.wakes.add(queue);
    }

    async fn commit(mut self) -> StoreResult<()> {
        let queues = self.wakes.take();
        notify::queued(&mut self.tx, queues).await?;
        self.tx.commit().await.or_store()?;
        Ok(())
    }

    async fn rollback(self) -> StoreResult<()> {
        self.tx.rollback().await.or_store()
    }
}
