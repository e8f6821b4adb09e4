//! History reads, in SQLite's dialect.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqlitePool};

use super::encode::instant;
use crate::error::OrStore;
use crate::model::ExecutionBrief;
use crate::records::{execution_columns, parse};
use crate::{HistorySql, StoreError, StoreResult};

pub(super) const SQL: HistorySql = HistorySql {
    get: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE id = ?"
    ),
    queue_stats: "SELECT queue, \
             SUM(status = 'queued' AND run_at <= ?1) AS due, \
             SUM(status = 'queued' AND run_at > ?1) AS waiting, \
             SUM(status = 'running') AS running, \
             MIN(CASE WHEN status = 'queued' AND run_at <= ?1 THEN run_at END) AS oldest \
         FROM executions INDEXED BY executions_status \
         WHERE status IN ('queued', 'running') GROUP BY queue ORDER BY queue",
    latest: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE job_name = ? AND status <> 'skipped' ORDER BY id DESC LIMIT 1"
    ),
};

/// The newest `per_job` executions of each job (not skipped ones, when `runs_only`): one row
/// per job, its executions packed into one string, newest first. One range of
/// `executions_job` per job, and a row per job to decode instead of one per execution, which
/// was most of the cost.
pub(super) async fn recent_per_job(
    reader: &SqlitePool,
    jobs: &[String],
    per_job: u32,
    runs_only: bool,
) -> StoreResult<Vec<ExecutionBrief>> {
    let names = serde_json::to_string(jobs).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let rows = sqlx::query(if runs_only {
        RECENT_RUNS_PER_JOB
    } else {
        RECENT_PER_JOB
    })
    .bind(names)
    .bind(i64::from(per_job))
    .fetch_all(reader)
    .await
    .or_store()?;
    let mut briefs = Vec::new();
    for row in &rows {
        let job_name: String = row.try_get("name").or_store()?;
        let recent: Option<String> = row.try_get("recent").or_store()?;
        for packed in recent.as_deref().unwrap_or("").split(',') {
            if packed.is_empty() {
                continue;
            }
            briefs.push(unpack_brief(&job_name, packed)?);
        }
    }
    Ok(briefs)
}

/// `recent_per_job`'s statement, with `$runs` the condition on each execution.
macro_rules! recent_per_job {
    ($runs:literal) => {
        concat!(
            "SELECT j.value AS name, ( \
             SELECT group_concat(b, ',' ORDER BY k DESC) FROM ( \
                 SELECT x.id AS k, x.id || ' ' || x.status || ' ' || x.trigger || ' ' || \
                     x.attempt || ' ' || x.created_at || ' ' || \
                     ifnull(x.started_at, '') || ' ' || ifnull(x.finished_at, '') AS b \
                 FROM executions x INDEXED BY executions_job \
                 WHERE x.job_name = j.value",
            $runs,
            " ORDER BY x.id DESC LIMIT ?2) \
         ) AS recent \
         FROM (SELECT DISTINCT value FROM json_each(?1)) j \
         ORDER BY j.value"
        )
    };
}

const RECENT_PER_JOB: &str = recent_per_job!("");
const RECENT_RUNS_PER_JOB: &str = recent_per_job!(" AND x.status <> 'skipped'");

/// One execution as `recent_per_job` packs it: id, status, trigger, attempt, created, started
/// and finished (the last two empty when unset), separated by spaces.
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
