//! The queue, in SQLite's dialect. One writer: no row locks to take.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use super::encode::SqlitePoolConn;
use crate::dialect::{Column, Conn, query};
use crate::model::{Finish, Finished};
use crate::records::execution_columns;
use crate::{QueueSql, StoreResult};

/// A batch write joins `json_each(?)` to `executions` by id. A test of the status is written
/// `+executions.status`, which keeps SQLite's planner on the primary key: with a plain
/// `executions.status = …` it walks every running (or queued) execution through
/// `executions_status` and scans the whole batch for each, a cost that grows with the queue.
pub(super) const SQL: QueueSql = QueueSql {
    insert: concat!(
        "INSERT INTO executions (",
        execution_columns!(),
        ", upstream_id) SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, r.value ->> 4, \
             r.value ->> 5, r.value ->> 6, r.value ->> 7, r.value ->> 8, r.value ->> 9, \
             r.value ->> 10, r.value ->> 11, r.value ->> 12, r.value ->> 13, r.value ->> 14, \
             r.value ->> 15, r.value ->> 16, r.value ->> 17, r.value ->> 18, r.value ->> 19, \
             r.value ->> 20, r.value ->> 21, r.value ->> 22, r.value ->> 23, r.value ->> 24, \
             r.value ->> 25, r.value ->> 26, r.value ->> 27, r.value ->> 28, r.value ->> 29, \
             r.value ->> 30, r.value ->> 31, r.value ->> 32 \
         FROM json_each(?) AS r WHERE true \
         ON CONFLICT (job_id, idempotency_key) \
             WHERE idempotency_key IS NOT NULL AND attempt = 1 DO NOTHING \
         RETURNING id"
    ),
    by_key: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE job_id = ? AND idempotency_key = ? AND attempt = 1"
    ),
    leased: concat!(
        "SELECT ",
        execution_columns!(),
        ", lease_token FROM executions WHERE id = ?"
    ),
    exists: "SELECT 1 AS found FROM executions WHERE id = ?",
    heartbeat: "UPDATE executions SET lease_expires_at = ? \
                WHERE id = ? AND status = 'running' AND lease_token = ? \
                RETURNING cancel_requested",
    leased_many: concat!(
        "SELECT ",
        execution_columns!(),
        ", lease_token FROM executions WHERE id IN (SELECT value FROM json_each(?))"
    ),
    write_ends: "UPDATE executions SET status = s.value ->> 2, finished_at = ?1, \
                 lease_token = NULL, lease_expires_at = NULL, reason = s.value ->> 3, \
                 exit_code = s.value ->> 4, image_digest = s.value ->> 5 \
             FROM json_each(?2) AS s \
             WHERE executions.id = s.value ->> 0 AND executions.lease_token = s.value ->> 1 \
                 AND +executions.status = 'running' \
             RETURNING executions.id AS id, executions.cancel_requested AS cancel_requested",
    inbox: "INSERT INTO alert_inbox (execution_id, finished_at) \
            SELECT value ->> 0, value ->> 1 FROM json_each(?) WHERE true \
            ON CONFLICT (execution_id) DO NOTHING",
    unlock: "DELETE FROM job_locks WHERE execution_id IN (SELECT value FROM json_each(?))",
    release: "UPDATE executions SET status = 'queued', run_at = ?, reason = ?, \
                  started_at = NULL, worker_id = NULL, lease_token = NULL, \
                  lease_expires_at = NULL \
              WHERE id = ?",
    cancel_queued: "UPDATE executions SET status = 'cancelled', finished_at = ?, reason = ? \
                    WHERE id = ?",
    stop_running: "UPDATE executions SET cancel_requested = 1 WHERE id = ?",
    expired: concat!(
        "SELECT ",
        execution_columns!(),
        ", lease_token FROM executions \
         WHERE status = 'running' AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?"
    ),
    resolution: "SELECT resolution FROM dlq_resolutions WHERE execution_id = ?",
    resolve: "INSERT INTO dlq_resolutions (execution_id, resolution, retry_id, resolved_at) \
              VALUES (?, ?, ?, ?)",
    job_live: "SELECT deleted_at IS NULL AS live FROM jobs WHERE id = ?",
    dead_of_job: "SELECT id FROM executions e WHERE job_id = ? AND status = 'dead' \
                    AND NOT EXISTS (SELECT 1 FROM dlq_resolutions r WHERE r.execution_id = e.id) \
                  ORDER BY id",
    pause: "INSERT INTO queue_pauses (name, paused_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
    resume: "DELETE FROM queue_pauses WHERE name = ?",
    pauses: "SELECT name, paused_at FROM queue_pauses ORDER BY name",
};

/// A finish batch in which every run succeeded: no retries, no alerts, nothing to decide from
/// the stored row. One statement writes the items whose execution holds no job slot (neither
/// `forbid` nor limited: SQLite cannot release a slot in the same statement), is no service's
/// instance and whose job no other job follows (the full finish queues the followers), fenced
/// by each lease. For each item, what was written, or `None` for
/// an item it did not write (stale, unknown, holding a slot, or a second item for one
/// execution), which the full finish answers.
pub(super) async fn finish_successes(
    mut writer: SqlitePoolConn,
    batch: &[Finish],
    now: DateTime<Utc>,
) -> StoreResult<Vec<Option<Finished>>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let columns = crate::records::qualified_execution_columns("executions");
        format!(
            "UPDATE executions SET status = 'succeeded', finished_at = ?1, lease_token = NULL, \
                 lease_expires_at = NULL, reason = s.value ->> 2, exit_code = s.value ->> 3, \
                 image_digest = s.value ->> 4 \
             FROM json_each(?2) AS s \
             WHERE executions.id = s.value ->> 0 AND executions.lease_token = s.value ->> 1 \
                 AND +executions.status = 'running' AND executions.instance IS NULL \
                 AND executions.concurrency <> 'forbid' \
                 AND NOT (executions.concurrency = 'allow' AND executions.max_running IS NOT NULL) \
                 AND NOT EXISTS (SELECT 1 FROM job_chains c WHERE c.upstream_id = executions.job_id) \
             RETURNING {columns}"
        )
    });
    let rows = writer
        .fetch_all(query(SQL.as_str()).time(now).table(vec![
            Column::Uuids(Column::of(batch, |f| Some(f.execution_id.as_uuid()))),
            Column::Uuids(Column::of(batch, |f| Some(f.token))),
            Column::Texts(Column::of(batch, |f| f.reason.clone())),
            Column::I32s(Column::of(batch, |f| f.exit_code)),
            Column::Texts(Column::of(batch, |f| f.image_digest.clone())),
        ]))
        .await?;
    crate::queue::successes_in_place(&rows, batch)
}
