//! The claim, in SQLite's dialect: with one writer, the candidates need no row locks, and the
//! claim index is named (SQLite has no statistics to choose it by).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use crate::ClaimSql;
use crate::dialect::{Query, query};
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

/// The claim's candidates, in claim order.
///
/// Claim order is priority, then due time: a claim index walked in that order passes over
/// every execution of a priority that is not due yet (a backlog of delayed work) before it
/// reaches a lower priority, so its cost would grow with that backlog. Instead the claim
/// steps from one priority present to the next (`p`, one index seek each: queued executions
/// have few distinct priorities) and reads, for each, only the due executions, by a range on
/// `run_at`: at most `limit` rows per priority and queue, plus those its filters pass over.
/// A node that serves every queue walks `executions_claim`; one that serves some walks each
/// queue's part of `executions_claim_queue`, so executions waiting on other queues cost it
/// nothing either. The correlated `IN` is SQLite's form of a lateral join.
pub(super) fn candidates(queues: &[String], now: DateTime<Utc>, limit: i64) -> Query {
    static EVERY_QUEUE: LazyLock<String> = LazyLock::new(|| candidates_sql(false));
    static SOME_QUEUES: LazyLock<String> = LazyLock::new(|| candidates_sql(true));
    let sql = if queues.is_empty() {
        &*EVERY_QUEUE
    } else {
        &*SOME_QUEUES
    };
    // With every queue, ?1 is bound all the same (an empty list), so the numbering holds.
    query(sql.as_str())
        .texts(queues.to_vec())
        .time(now)
        .i64(limit)
}

/// The statement of [`candidates`], for some queues (`?1`) or for every queue.
fn candidates_sql(some_queues: bool) -> String {
    const FILTERS: &str = "status = 'queued' AND instance IS NULL \
        AND NOT (concurrency = 'forbid' AND job_id IN (SELECT job_id FROM job_locks)) \
        AND NOT (max_running IS NOT NULL AND max_running <= ( \
            SELECT count(*) FROM job_locks l WHERE l.job_id = executions.job_id)) \
        AND run_at <= ?2";
    let (index, seed, first_queue, same_queue) = if some_queues {
        (
            "executions_claim_queue",
            "json_each(?1)",
            "queue = q.value AND ",
            "queue = p.queue AND ",
        )
    } else {
        ("executions_claim", "(SELECT NULL AS value)", "", "")
    };
    let columns = execution_columns!()
        .split(',')
        .map(|column| format!("e.{0} AS {0}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH RECURSIVE p(queue, priority) AS ( \
             SELECT q.value, ( \
                 SELECT priority FROM executions INDEXED BY {index} \
                 WHERE {first_queue}status = 'queued' ORDER BY priority DESC LIMIT 1) \
             FROM {seed} q \
             UNION ALL \
             SELECT p.queue, ( \
                 SELECT priority FROM executions INDEXED BY {index} \
                 WHERE {same_queue}status = 'queued' AND priority < p.priority \
                 ORDER BY priority DESC LIMIT 1) \
             FROM p WHERE p.priority IS NOT NULL) \
         SELECT {columns} FROM p CROSS JOIN executions e WHERE e.id IN ( \
             SELECT id FROM executions INDEXED BY {index} \
             WHERE {same_queue}priority = p.priority AND {FILTERS} \
             ORDER BY run_at, id LIMIT ?3) \
         ORDER BY e.priority DESC, e.run_at, e.id LIMIT ?3"
    )
}
