//! History reads, in PostgreSQL's dialect.

use sqlx::PgPool;

use crate::dialect::{Conn, Record, query};
use crate::model::ExecutionBrief;
use crate::records::{all, execution_columns, parse};
use crate::{HistorySql, StoreError, StoreResult};
use panda_core::ExecutionId;

use super::encode::PgPoolConn;

pub(super) const SQL: HistorySql = HistorySql {
    get: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE id = $1"
    ),
    queue_stats: "SELECT queue, \
             COUNT(*) FILTER (WHERE status = 'queued' AND run_at <= $1) AS due, \
             COUNT(*) FILTER (WHERE status = 'queued' AND run_at > $1) AS waiting, \
             COUNT(*) FILTER (WHERE status = 'running') AS running, \
             MIN(run_at) FILTER (WHERE status = 'queued' AND run_at <= $1) AS oldest \
         FROM executions WHERE status IN ('queued', 'running') \
         GROUP BY queue ORDER BY queue",
    latest: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE job_name = $1 AND status <> 'skipped' ORDER BY id DESC LIMIT 1"
    ),
};

/// The newest `per_job` executions of each job (not skipped ones, when `runs_only`): one
/// index range of `executions_job` per job, each stopped at its limit.
pub(super) async fn recent_per_job(
    pool: &PgPool,
    jobs: &[String],
    per_job: u32,
    runs_only: bool,
) -> StoreResult<Vec<ExecutionBrief>> {
    let rows = PgPoolConn(pool.clone())
        .fetch_all(
            query(if runs_only {
                RECENT_RUNS_PER_JOB
            } else {
                RECENT_PER_JOB
            })
            .texts(jobs.to_vec())
            .i64(i64::from(per_job)),
        )
        .await?;
    all(&rows, |row| {
        let attempt = row.i32("attempt")?;
        Ok(ExecutionBrief {
            id: ExecutionId::from_uuid(row.uuid("id")?),
            job_name: row.text("job_name")?,
            status: parse("status", row.word("status")?)?,
            trigger: parse("trigger", row.word("trigger")?)?,
            attempt: u32::try_from(attempt)
                .map_err(|_| StoreError::Corrupt(format!("attempt {attempt}")))?,
            created_at: row.time("created_at")?,
            started_at: row.opt_time("started_at")?,
            finished_at: row.opt_time("finished_at")?,
        })
    })
}

/// `recent_per_job`'s statement, with `$runs` the condition on each execution.
macro_rules! recent_per_job {
    ($runs:literal) => {
        concat!(
            "SELECT e.id, e.job_name, e.status, e.trigger, e.attempt, e.created_at, \
                    e.started_at, e.finished_at \
             FROM (SELECT DISTINCT name COLLATE \"C\" AS name \
                   FROM unnest($1::text[]) AS n(name)) j \
             CROSS JOIN LATERAL ( \
                 SELECT x.id, x.job_name, x.status, x.trigger, x.attempt, x.created_at, \
                        x.started_at, x.finished_at \
                 FROM executions x WHERE x.job_name = j.name",
            $runs,
            " ORDER BY x.id DESC LIMIT $2) e \
             ORDER BY j.name, e.id DESC"
        )
    };
}

const RECENT_PER_JOB: &str = recent_per_job!("");
const RECENT_RUNS_PER_JOB: &str = recent_per_job!(" AND x.status <> 'skipped'");
