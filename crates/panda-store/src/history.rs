//! Executions as history: one, a page, the newest of each job, and the queues' counts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{Execution, ExecutionId};

use crate::dialect::{Arg, Backend, Conn, Record, query};
use crate::lifecycle;
use crate::model::{ExecutionBrief, ExecutionFilter, ExecutionPage, QueueStats};
use crate::records::{self, all, count, execution_columns};
use crate::{StoreError, StoreResult, page_size};

/// Executions as history.
#[async_trait]
pub trait HistoryStore: Send + Sync + std::fmt::Debug {
    /// One execution.
    async fn execution_get(&self, id: ExecutionId) -> StoreResult<Execution>;

    /// Executions, newest first, one keyset page at a time.
    async fn execution_list(&self, filter: &ExecutionFilter) -> StoreResult<ExecutionPage>;

    /// The newest `per_job` executions (at most 100) of each of the named jobs, in brief: by
    /// job name, then newest first. One query for all of them, so that a page listing a
    /// hundred jobs with their recent history stays fast; a name with no executions (or no
    /// job) adds nothing.
    async fn execution_recent_per_job(
        &self,
        jobs: &[String],
        per_job: u32,
    ) -> StoreResult<Vec<ExecutionBrief>>;

    /// The newest execution that was not skipped of each of the named jobs, in brief (what
    /// [`Self::execution_latest`] gives for one job): by job name. One query for all of them,
    /// as [`Self::execution_recent_per_job`]; a name with no such execution adds nothing.
    async fn execution_latest_per_job(&self, jobs: &[String]) -> StoreResult<Vec<ExecutionBrief>>;

    /// Every queue that has queued or running executions, by name.
    async fn queue_stats(&self, now: DateTime<Utc>) -> StoreResult<Vec<QueueStats>>;

    /// The newest execution of a job (by name) that was not skipped.
    async fn execution_latest(&self, job: &str) -> StoreResult<Option<Execution>>;
}

/// The statements of [`HistoryStore`], in each backend's dialect.
#[derive(Debug)]
pub struct HistorySql {
    /// `(id)`.
    pub get: &'static str,
    /// Per queue: `queue`, `due`, `waiting`, `running`, `oldest` (due); `(now)`.
    pub queue_stats: &'static str,
    /// `(job_name)`.
    pub latest: &'static str,
}

#[async_trait]
impl<B: Backend> HistoryStore for B {
    async fn execution_get(&self, id: ExecutionId) -> StoreResult<Execution> {
        let row = self
            .reader()
            .fetch_optional(query(B::SQL.history.get).uuid(id))
            .await?
            .ok_or_else(|| StoreError::not_found(format!("execution {id}")))?;
        records::execution(&row)
    }

    async fn execution_list(&self, filter: &ExecutionFilter) -> StoreResult<ExecutionPage> {
        let limit = page_size(filter.limit);
        let fetch = i64::from(limit) + 1;
        // Only the conditions that apply, so that each combination gets the plan of its index
        // (SQLite plans a statement once: `(?1 IS NULL OR job_name = ?1)` would keep it from
        // the index that fits). Each status is an equality of its own, its rows read newest
        // first from `(job_name, status, id)` and the ranges merged: `status IN (…)` cannot be
        // read in id order, and the planner then read every matching row and sorted them.
        let mut q = query(concat!("SELECT ", execution_columns!(), " FROM ("));
        for (i, status) in lifecycle::status_ranges(filter).into_iter().enumerate() {
            if i > 0 {
                q = q.push(" UNION ALL ");
            }
            q = q.push("SELECT * FROM (SELECT * FROM executions WHERE true");
            if let Some(job) = &filter.job {
                q = q
                    .push(" AND job_name = ")
                    .push_arg::<B>(Arg::Text(Some(job.clone())));
            }
            if let Some(status) = status {
                q = q
                    .push(" AND status = ")
                    .push_arg::<B>(Arg::Text(Some(status.into())));
            }
            if let Some(trigger) = filter.trigger {
                q = q
                    .push(" AND trigger = ")
                    .push_arg::<B>(Arg::Text(Some(trigger.as_str().into())));
            }
            if let Some(root) = filter.root {
                q = q
                    .push(" AND root_id = ")
                    .push_arg::<B>(Arg::Uuid(Some(root.as_uuid())));
            }
            if let Some(before) = filter.before {
                q = q
                    .push(" AND id < ")
                    .push_arg::<B>(Arg::Uuid(Some(before.as_uuid())));
            }
            if filter.dead_letter {
                q = q.push(
                    " AND status = 'dead' AND NOT EXISTS ( \
                     SELECT 1 FROM dlq_resolutions r WHERE r.execution_id = executions.id)",
                );
            }
            q = q
                .push(" ORDER BY id DESC LIMIT ")
                .push_arg::<B>(Arg::I64(Some(fetch)))
                .push(&format!(") AS r{i}"));
        }
        q = q
            .push(") AS executions ORDER BY id DESC LIMIT ")
            .push_arg::<B>(Arg::I64(Some(fetch)));
        let rows = self.reader().fetch_all(q).await?;
        let mut executions = all(&rows, records::execution)?;
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
        self.recent_per_job(jobs, per_job.min(100), false).await
    }

    async fn execution_latest_per_job(&self, jobs: &[String]) -> StoreResult<Vec<ExecutionBrief>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.recent_per_job(jobs, 1, true).await
    }

    async fn queue_stats(&self, now: DateTime<Utc>) -> StoreResult<Vec<QueueStats>> {
        let rows = self
            .reader()
            .fetch_all(query(B::SQL.history.queue_stats).time(now))
            .await?;
        let mut stats = all(&rows, |row| {
            Ok(QueueStats {
                queue: row.text("queue")?,
                due: count(row.i64("due")?),
                waiting: count(row.i64("waiting")?),
                running: count(row.i64("running")?),
                oldest_due_at: row.opt_time("oldest")?,
                paused_at: None,
            })
        })?;
        // A paused queue is listed even when it holds nothing, so that it can be resumed.
        for pause in crate::queue::pauses::<B>(&mut self.reader()).await? {
            match stats.iter_mut().find(|q| q.queue == pause.queue) {
                Some(queue) => queue.paused_at = Some(pause.paused_at),
                None => stats.push(QueueStats {
                    queue: pause.queue,
                    due: 0,
                    waiting: 0,
                    running: 0,
                    oldest_due_at: None,
                    paused_at: Some(pause.paused_at),
                }),
            }
        }
        stats.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(stats)
    }

    async fn execution_latest(&self, job: &str) -> StoreResult<Option<Execution>> {
        self.reader()
            .fetch_optional(query(B::SQL.history.latest).text(job))
            .await?
            .as_ref()
            .map(records::execution)
            .transpose()
    }
}
