//! The queue, in PostgreSQL's dialect: rows a transaction depends on are locked, batch
//! writes go in id order (so two writers never deadlock), and a batch of successes is one
//! statement.
//!
//! The batch writes test the status as `(status = 'running') IS TRUE`: the plain test lets the
//! planner answer it from `executions_lease` (the partial index of running executions), which
//! it scans whole, with every entry that ran since the last vacuum left dead, instead of
//! looking each id up in the primary key.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::encode::PgPoolConn;
use crate::dialect::{Column, Conn, query};
use crate::model::{Finish, Finished};
use crate::records::execution_columns;
use crate::{QueueSql, StoreResult};

pub(super) const SQL: QueueSql = QueueSql {
    insert: concat!(
        "INSERT INTO executions (",
        execution_columns!(),
        ", upstream_id) SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], \
            $6::integer[], $7::text[], $8::text[], $9::integer[], $10::integer[], $11::bigint[], \
            $12::bigint[], $13::text[], $14::text[], $15::jsonb[], $16::jsonb[], \
            $17::timestamptz[], $18::timestamptz[], $19::timestamptz[], $20::timestamptz[], \
            $21::timestamptz[], $22::text[], $23::timestamptz[], $24::boolean[], \
            $25::integer[], $26::text[], $27::text[], $28::integer[], $29::integer[], \
            $30::integer[], $31::timestamptz[], $32::text[], $33::uuid[]) \
         ON CONFLICT (job_id, idempotency_key) WHERE idempotency_key IS NOT NULL AND attempt = 1 \
         DO NOTHING RETURNING id"
    ),
    by_key: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE job_id = $1 AND idempotency_key = $2 AND attempt = 1"
    ),
    leased: concat!(
        "SELECT ",
        execution_columns!(),
        ", lease_token FROM executions WHERE id = $1 FOR UPDATE"
    ),
    exists: "SELECT 1 AS found FROM executions WHERE id = $1",
    heartbeat: "UPDATE executions SET lease_expires_at = $1 \
                WHERE id = $2 AND status = 'running' AND lease_token = $3 \
                RETURNING cancel_requested",
    leased_many: concat!(
        "SELECT ",
        execution_columns!(),
        ", lease_token FROM executions WHERE id = ANY($1)"
    ),
    write_ends: "UPDATE executions e SET status = t.status, finished_at = $1, lease_token = NULL, \
                 lease_expires_at = NULL, reason = t.reason, exit_code = t.exit_code, \
                 image_digest = t.image_digest \
             FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::integer[], \
                 $7::text[]) AS t(id, token, status, reason, exit_code, image_digest) \
             WHERE e.id = t.id AND e.lease_token = t.token AND (e.status = 'running') IS TRUE \
             RETURNING e.id, e.cancel_requested",
    inbox: "INSERT INTO alert_inbox (execution_id, finished_at) \
            SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[]) \
            ON CONFLICT (execution_id) DO NOTHING",
    unlock: "DELETE FROM job_locks WHERE execution_id = ANY($1)",
    release: "UPDATE executions SET status = 'queued', run_at = $1, reason = $2, \
                  started_at = NULL, worker_id = NULL, lease_token = NULL, \
                  lease_expires_at = NULL \
              WHERE id = $3",
    cancel_queued: "UPDATE executions SET status = 'cancelled', finished_at = $1, reason = $2 \
                    WHERE id = $3",
    stop_running: "UPDATE executions SET cancel_requested = true WHERE id = $1",
    // SKIP LOCKED: a row locked right now is being finished or rescued by someone else.
    expired: concat!(
        "SELECT ",
        execution_columns!(),
        ", lease_token FROM executions \
         WHERE status = 'running' AND lease_expires_at < $1 \
         ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ),
    resolution: "SELECT resolution FROM dlq_resolutions WHERE execution_id = $1",
    resolve: "INSERT INTO dlq_resolutions (execution_id, resolution, retry_id, resolved_at) \
              VALUES ($1, $2, $3, $4)",
    // Shared lock: a delete of the job waits until the new attempt is in.
    job_live: "SELECT deleted_at IS NULL AS live FROM jobs WHERE id = $1 FOR SHARE",
    dead_of_job: "SELECT id FROM executions e WHERE job_id = $1 AND status = 'dead' \
                    AND NOT EXISTS (SELECT 1 FROM dlq_resolutions r WHERE r.execution_id = e.id) \
                  ORDER BY id",
    pause: "INSERT INTO queue_pauses (name, paused_at) VALUES ($1, $2) \
            ON CONFLICT (name) DO NOTHING",
    resume: "DELETE FROM queue_pauses WHERE name = $1",
    pauses: "SELECT name, paused_at FROM queue_pauses ORDER BY name COLLATE \"C\"",
};

/// A finish batch in which every run succeeded: no retries, no alerts, nothing to decide from
/// the stored row (an instance of a service is left to the full finish, which restarts it, and
/// so is a run of a limited job, whose freed slot un-parks the next of its key, and a run of a
/// job that others follow, which queues them). One statement writes them, fenced by each
/// lease, and releases any job slots
/// they held. For each item, what was written, or `None` for an item it did not write (stale,
/// unknown, or a second item for one execution), which the full finish answers.
pub(super) async fn finish_successes(
    pool: &PgPool,
    batch: &[Finish],
    now: DateTime<Utc>,
) -> StoreResult<Vec<Option<Finished>>> {
    // In id order, as every batch write, so that two writers never deadlock.
    let mut order: Vec<&Finish> = batch.iter().collect();
    order.sort_by_key(|f| f.execution_id);
    let rows = PgPoolConn(pool.clone())
        .fetch_all(
            query(concat!(
                "WITH t AS ( \
                     SELECT * FROM UNNEST($2::uuid[], $3::uuid[], $4::integer[], $5::text[], \
                         $6::text[]) AS t(id, token, exit_code, reason, image_digest)), \
                 u AS ( \
                     UPDATE executions e SET status = 'succeeded', finished_at = $1, \
                         lease_token = NULL, lease_expires_at = NULL, reason = t.reason, \
                         exit_code = t.exit_code, image_digest = t.image_digest \
                     FROM t WHERE e.id = t.id AND e.lease_token = t.token \
                         AND (e.status = 'running') IS TRUE AND e.instance IS NULL \
                         AND NOT (e.concurrency = 'allow' AND e.max_running IS NOT NULL) \
                         AND NOT EXISTS (SELECT 1 FROM job_chains c \
                             WHERE c.upstream_id = e.job_id) \
                     RETURNING e.*), \
                 d AS (DELETE FROM job_locks l USING u WHERE l.execution_id = u.id) \
                 SELECT ",
                execution_columns!(),
                " FROM u"
            ))
            .time(now)
            .table(vec![
                Column::Uuids(Column::of(&order, |f| Some(f.execution_id.as_uuid()))),
                Column::Uuids(Column::of(&order, |f| Some(f.token))),
                Column::I32s(Column::of(&order, |f| f.exit_code)),
                Column::Texts(Column::of(&order, |f| f.reason.clone())),
                Column::Texts(Column::of(&order, |f| f.image_digest.clone())),
            ]),
        )
        .await?;
    crate::queue::successes_in_place(&rows, batch)
}
