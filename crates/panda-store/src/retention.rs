//! Retention: finished history past each job's keep count and maximum age goes, in batches.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::JobSpec;
use uuid::Uuid;

use crate::StoreResult;
use crate::dialect::{Backend, Conn, Record, Tx, query};
use crate::lifecycle;
use crate::model::{Pruned, Retention};

/// History retention.
#[async_trait]
pub trait RetentionStore: Send + Sync + std::fmt::Debug {
    /// Deletes at most `retention.batch` finished executions (with their logs) that are older
    /// than the maximum age or beyond their job's keep count, and slots older than the maximum
    /// age. Call again while it returns a full batch.
    async fn retention_prune(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> StoreResult<Pruned>;
}

/// The statements of [`RetentionStore`], in each backend's dialect.
#[derive(Debug)]
pub struct RetentionSql {
    /// Every job, deleted ones too: `id`, `spec`.
    pub jobs: &'static str,
    /// A job's executions finished before a cutoff, oldest first: `(job_id, cutoff, limit)`.
    pub older: &'static str,
    /// The oldest execution kept by count: `(job_id, keep - 1)`.
    pub keep_boundary: &'static str,
    /// A job's finished executions before the boundary and not past the cutoff:
    /// `(job_id, boundary, cutoff or NULL, limit)`.
    pub beyond_keep: &'static str,
    /// `(execution ids)`.
    pub delete_logs: &'static str,
    /// `(execution ids)`.
    pub delete_resolutions: &'static str,
    /// `(execution ids)`, finished ones only.
    pub delete_executions: &'static str,
    /// A job's oldest slots before a cutoff: `(job_id, cutoff, limit)`.
    pub delete_slots: &'static str,
}

#[async_trait]
impl<B: Backend> RetentionStore for B {
    async fn retention_prune(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> StoreResult<Pruned> {
        let sql = &B::SQL.retention;
        let batch = retention.batch.max(1);
        // What to delete is found first, on the reader, job by job through the retention
        // indexes, so the write transaction (which claims wait for) only deletes. A finished
        // execution never changes again, and a keep boundary only moves forward as newer
        // executions finish, so a choice made outside the transaction stays right.
        let mut reader = self.reader();
        let mut rules = Vec::new();
        for row in reader.fetch_all(query(sql.jobs)).await? {
            let spec: JobSpec = row.json("spec")?;
            rules.push((
                row.uuid("id")?,
                lifecycle::job_retention(&spec, retention, now),
            ));
        }
        let mut doomed: Vec<Uuid> = Vec::new();
        let room = |doomed: &Vec<Uuid>| i64::from(batch) - doomed.len() as i64;
        for (job_id, rule) in &rules {
            if room(&doomed) <= 0 {
                break;
            }
            if let Some(cutoff) = rule.cutoff {
                let q = query(sql.older)
                    .uuid(*job_id)
                    .time(cutoff)
                    .i64(room(&doomed));
                for row in reader.fetch_all(q).await? {
                    doomed.push(row.uuid("id")?);
                }
            }
            if room(&doomed) <= 0 {
                break;
            }
            // The oldest execution kept by count: everything finished before it goes.
            let q = query(sql.keep_boundary)
                .uuid(*job_id)
                .i64(i64::from(rule.keep) - 1);
            if let Some(boundary) = reader.fetch_optional(q).await? {
                // Those past the age cutoff were taken above.
                let q = query(sql.beyond_keep)
                    .uuid(*job_id)
                    .uuid(boundary.uuid("id")?)
                    .opt_time(rule.cutoff)
                    .i64(room(&doomed));
                for row in reader.fetch_all(q).await? {
                    doomed.push(row.uuid("id")?);
                }
            }
        }
        if doomed.is_empty() && rules.iter().all(|(_, rule)| rule.cutoff.is_none()) {
            return Ok(Pruned::default());
        }
        let mut tx = self.begin().await?;
        let log_chunks = tx
            .execute(query(sql.delete_logs).uuids(doomed.clone()))
            .await?;
        tx.execute(query(sql.delete_resolutions).uuids(doomed.clone()))
            .await?;
        let executions = tx
            .execute(query(sql.delete_executions).uuids(doomed))
            .await?;
        let mut slots = 0;
        for (job_id, rule) in &rules {
            let room = u64::from(batch).saturating_sub(slots);
            let Some(cutoff) = rule.cutoff else {
                continue;
            };
            if room == 0 {
                break;
            }
            slots += tx
                .execute(
                    query(sql.delete_slots)
                        .uuid(*job_id)
                        .time(cutoff)
                        .i64(i64::try_from(room).unwrap_or(i64::MAX)),
                )
                .await?;
        }
        tx.commit().await?;
        Ok(Pruned {
            executions,
            log_chunks,
            slots,
        })
    }
}
