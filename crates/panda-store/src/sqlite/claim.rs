//! The claim, in SQLite's dialect: with one writer, the candidates need no row locks, and the
//! claim index is named (SQLite has no statistics to choose it by).

use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::ClaimSql;
use crate::dialect::{Arg, Query, query};
use crate::records::execution_columns;

pub(super) const SQL: ClaimSql = ClaimSql {
    lock: "INSERT INTO job_locks (job_id, slot, execution_id) \
           SELECT value ->> 0, 0, value ->> 1 FROM json_each(?) WHERE true \
           ON CONFLICT (job_id, slot) DO NOTHING RETURNING job_id",
    holders: "SELECT job_id, execution_id FROM job_locks \
              WHERE job_id IN (SELECT value FROM json_each(?))",
    slots_taken: "SELECT job_id, slot FROM job_locks \
                  WHERE job_id IN (SELECT value FROM json_each(?))",
    take_slots: "INSERT INTO job_locks (job_id, slot, execution_id) \
                 SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?) WHERE true \
                 ON CONFLICT (job_id, slot) DO NOTHING RETURNING execution_id",
    // `+executions.status`: on the primary key, not every queued execution (see the queue's
    // statements).
    skip: "UPDATE executions SET status = 'skipped', finished_at = ?1, reason = s.value ->> 1 \
           FROM json_each(?2) AS s \
           WHERE executions.id = s.value ->> 0 AND +executions.status = 'queued'",
    replace: "UPDATE executions SET cancel_requested = 1 \
              WHERE job_id IN (SELECT value FROM json_each(?)) AND status = 'running'",
    start: "UPDATE executions SET status = 'running', started_at = ?1, worker_id = ?2, \
                lease_token = l.value ->> 1, lease_expires_at = ?3, \
                cancel_requested = cancel_requested OR (l.value ->> 2) \
            FROM json_each(?4) AS l WHERE executions.id = l.value ->> 0",
};

/// Queued runs of running `forbid` jobs that a schedule fired. CROSS JOIN keeps `job_locks`
/// as the outer loop, and only the locks that running forbid executions hold lead on to the
/// queued ones: a limited job's slots don't (its queue may be long).
pub(super) fn overlapping(queues: &[String], now: DateTime<Utc>) -> Query {
    query(
        "SELECT e.id AS id, l.execution_id AS holder FROM job_locks l \
         CROSS JOIN executions h ON h.id = l.execution_id AND h.concurrency = 'forbid' \
         CROSS JOIN executions e ON e.job_id = l.job_id \
         WHERE e.status = 'queued' AND e.trigger = 'schedule' AND e.concurrency = 'forbid' \
           AND e.run_at <= ?1 \
           AND (?2 = '[]' OR e.queue IN (SELECT value FROM json_each(?2)))",
    )
    .time(now)
    .texts(queues.to_vec())
}

/// The claim's candidates, in claim order. A node that serves every queue walks
/// `executions_claim`; one that serves some walks each queue's part of
/// `executions_claim_queue` (a subquery per queue, merged), so that however many executions
/// wait on other queues, the claim reads at most `limit` rows per queue it serves (plus those
/// its filters pass over).
pub(super) fn candidates(queues: &[String], now: DateTime<Utc>, limit: i64) -> Query {
    const WHERE: &str = "status = 'queued' AND instance IS NULL \
        AND NOT (concurrency = 'forbid' AND job_id IN (SELECT job_id FROM job_locks)) \
        AND NOT (max_running IS NOT NULL AND max_running <= ( \
            SELECT count(*) FROM job_locks l WHERE l.job_id = executions.job_id)) \
        AND run_at <= ";
    const ORDER: &str = " ORDER BY priority DESC, run_at, id LIMIT ";
    if queues.is_empty() {
        return query(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM executions INDEXED BY executions_claim WHERE "
        ))
        .push(WHERE)
        .push_arg::<SqliteStore>(Arg::Time(Some(now)))
        .push(ORDER)
        .push_arg::<SqliteStore>(Arg::I64(Some(limit)));
    }
    let mut q = query("");
    for (n, queue) in queues.iter().enumerate() {
        if n > 0 {
            q = q.push(" UNION ALL ");
        }
        q = q
            .push(concat!(
                "SELECT * FROM (SELECT ",
                execution_columns!(),
                " FROM executions INDEXED BY executions_claim_queue WHERE queue = "
            ))
            .push_arg::<SqliteStore>(Arg::Text(Some(queue.clone())))
            .push(" AND ")
            .push(WHERE)
            .push_arg::<SqliteStore>(Arg::Time(Some(now)))
            .push(ORDER)
            .push_arg::<SqliteStore>(Arg::I64(Some(limit)))
            .push(")");
    }
    q.push(ORDER).push_arg::<SqliteStore>(Arg::I64(Some(limit)))
}
