//! The claim, in SQLite's dialect: with one writer, the candidates need no row locks, and the
//! claim index is named (SQLite has no statistics to choose it by).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::encode::SqlitePoolConn;
use crate::ClaimSql;
use crate::StoreResult;
use crate::dialect::{Conn, Query, query};
use crate::model::Claimed;

pub(super) const SQL: ClaimSql = ClaimSql {
    lock: "INSERT INTO job_locks (job_id, slot, execution_id) \
           SELECT value ->> 0, 0, value ->> 1 FROM json_each(?) WHERE true \
           ON CONFLICT (job_id, key, slot) DO NOTHING RETURNING job_id",
    holders: "SELECT job_id, execution_id FROM job_locks \
              WHERE job_id IN (SELECT value FROM json_each(?))",
    slots_taken: "SELECT job_id, key, slot FROM job_locks \
                  WHERE job_id IN (SELECT value FROM json_each(?))",
    take_slots: "INSERT INTO job_locks (job_id, key, slot, execution_id) \
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 \
                 FROM json_each(?) WHERE true \
                 ON CONFLICT (job_id, key, slot) DO NOTHING RETURNING execution_id",
    // One writer: nothing to lock.
    key_holders: "SELECT l.job_id AS job_id, l.key AS key FROM json_each(?) k \
                  JOIN job_locks l ON l.job_id = k.value ->> 0 AND l.key = k.value ->> 1",
    park: "UPDATE executions SET parked = 1, reason = p.value ->> 1 FROM json_each(?) AS p \
           WHERE executions.id = p.value ->> 0 AND +executions.status = 'queued'",
    park_key: "UPDATE executions SET parked = 1, reason = ?5 WHERE id IN ( \
                   SELECT id FROM executions INDEXED BY executions_key_queued \
                   WHERE job_id = ?1 AND concurrency_key = ?2 AND status = 'queued' \
                     AND parked = 0 AND concurrency_key IS NOT NULL AND run_at <= ?3 \
                   LIMIT +?4)",
    unpark_key: "UPDATE executions SET parked = 0, reason = NULL WHERE id IN ( \
                     SELECT id FROM executions INDEXED BY executions_parked \
                     WHERE job_id = ?1 AND concurrency_key = ?2 AND status = 'queued' \
                       AND parked = 1 \
                     ORDER BY priority DESC, run_at, id LIMIT +?3)",
    unpark_job: "UPDATE executions SET parked = 0, reason = NULL WHERE id IN ( \
                     SELECT id FROM executions INDEXED BY executions_parked \
                     WHERE job_id = ?1 AND concurrency_key IS NULL AND status = 'queued' \
                       AND parked = 1 \
                     ORDER BY priority DESC, run_at, id LIMIT +?2)",
    unpark_free: "UPDATE executions SET parked = 0, reason = NULL WHERE id IN ( \
                      SELECT id FROM executions p INDEXED BY executions_parked \
                      WHERE status = 'queued' AND parked = 1 AND p.max_running > ( \
                          SELECT count(*) FROM job_locks l \
                          WHERE l.job_id = p.job_id \
                            AND l.key = coalesce(p.concurrency_key, '')) \
                      LIMIT +?)",
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
    queues_present: "WITH RECURSIVE q(name) AS ( \
                         SELECT (SELECT queue FROM executions INDEXED BY executions_claim_queue \
                             WHERE status = 'queued' AND parked = 0 ORDER BY queue LIMIT 1) \
                         UNION ALL \
                         SELECT (SELECT queue FROM executions INDEXED BY executions_claim_queue \
                             WHERE status = 'queued' AND parked = 0 AND queue > q.name \
                             ORDER BY queue LIMIT 1) \
                         FROM q WHERE q.name IS NOT NULL) \
                     SELECT name FROM q WHERE name IS NOT NULL",
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

/// The index a claim walks, the seed of its steps, and its conditions on the queue: for some
/// queues (`?1`, but the paused ones) or for every queue (none while any queue is paused: the
/// full claim then names the queues, see [`crate::claim`]).
fn claim_parts(some_queues: bool) -> (&'static str, &'static str, &'static str, &'static str) {
    if some_queues {
        (
            "executions_claim_queue",
            "json_each(?1) q WHERE q.value NOT IN (SELECT name FROM queue_pauses)",
            "queue = q.value AND ",
            "queue = p.queue AND ",
        )
    } else {
        (
            "executions_claim",
            "(SELECT NULL AS value) q WHERE NOT EXISTS (SELECT 1 FROM queue_pauses)",
            "",
            "",
        )
    }
}

/// The steps of a claim from one priority present among queued executions to the next (see
/// [`candidates`]): `p(queue, priority)`.
fn priorities(some_queues: bool) -> String {
    let (index, seed, first_queue, same_queue) = claim_parts(some_queues);
    format!(
        "p(queue, priority) AS ( \
             SELECT q.value, ( \
                 SELECT priority FROM executions INDEXED BY {index} \
                 WHERE {first_queue}status = 'queued' AND parked = 0 \
                 ORDER BY priority DESC LIMIT 1) \
             FROM {seed} \
             UNION ALL \
             SELECT p.queue, ( \
                 SELECT priority FROM executions INDEXED BY {index} \
                 WHERE {same_queue}status = 'queued' AND parked = 0 AND priority < p.priority \
                 ORDER BY priority DESC LIMIT 1) \
             FROM p WHERE p.priority IS NOT NULL)"
    )
}

/// The statement of [`candidates`], for some queues (`?1`) or for every queue.
fn candidates_sql(some_queues: bool) -> String {
    // A limited execution whose key is full is read all the same: the claim parks it (see
    // `crate::claim`), so that it is read once, not by every claim.
    const FILTERS: &str = "status = 'queued' AND parked = 0 AND instance IS NULL \
        AND NOT (concurrency = 'forbid' AND job_id IN (SELECT job_id FROM job_locks)) \
        AND run_at <= ?2";
    let (index, _, _, same_queue) = claim_parts(some_queues);
    let columns = crate::records::qualified_execution_columns("e");
    format!(
        "WITH RECURSIVE {priorities} \
         SELECT {columns} FROM p CROSS JOIN executions e WHERE e.id IN ( \
             SELECT id FROM executions INDEXED BY {index} \
             WHERE {same_queue}priority = p.priority AND {FILTERS} \
             ORDER BY run_at, id LIMIT +?3) \
         ORDER BY e.priority DESC, e.run_at, e.id LIMIT +?3",
        priorities = priorities(some_queues),
    )
}

/// The claim in one statement, for the common case where nothing restricts it: every
/// candidate allows overlap, without a limit of running executions or of starts (a rate
/// limit), and no job lock is held anywhere (so no scheduled run waits to be
/// skipped). Otherwise it claims nothing, and the full claim, with its job locks, overlap
/// skips and replacements, runs instead. SQLite has one writer, so the statement reads and
/// starts its candidates with no one in between; one statement instead of a transaction of
/// five is most of a claim's cost here (each is a round trip to the writer's thread). Its
/// candidates are read as [`candidates`] reads them, and each gets a lease token made here
/// (`?6`, in claim order).
pub(super) async fn unrestricted(
    mut writer: SqlitePoolConn,
    queues: &[String],
    now: DateTime<Utc>,
    limit: i64,
    worker_id: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<Option<Vec<Claimed>>> {
    static EVERY_QUEUE: LazyLock<String> = LazyLock::new(|| unrestricted_sql(false));
    static SOME_QUEUES: LazyLock<String> = LazyLock::new(|| unrestricted_sql(true));
    let sql = if queues.is_empty() {
        &*EVERY_QUEUE
    } else {
        &*SOME_QUEUES
    };
    let tokens = (0..limit).map(|_| Uuid::new_v4().to_string()).collect();
    let q = query(sql.as_str())
        .texts(queues.to_vec())
        .time(now)
        .i64(limit)
        .text(worker_id)
        .time(expires_at)
        .texts(tokens);
    let rows = writer.fetch_all(q).await?;
    crate::claim::claimed_in_order(&rows, expires_at).map(Some)
}

/// The statement of [`unrestricted`]. The candidates are numbered in claim order to pair each
/// with its token; the update looks each up by its primary key, from the list `k` (an
/// `UPDATE … FROM` would let the planner, which cannot know the list is short, walk every
/// execution to join it).
fn unrestricted_sql(some_queues: bool) -> String {
    let (index, _, _, same_queue) = claim_parts(some_queues);
    let columns = crate::records::qualified_execution_columns("executions");
    format!(
        "WITH RECURSIVE {priorities}, \
         c AS ( \
             SELECT claim_id, claim_free, \
                 row_number() OVER (ORDER BY claim_priority DESC, claim_run_at, claim_id) - 1 \
                     AS claim_n \
             FROM ( \
                 SELECT e.id AS claim_id, e.priority AS claim_priority, e.run_at AS claim_run_at, \
                     (e.concurrency = 'allow' AND e.max_running IS NULL \
                         AND e.job_id NOT IN (SELECT job_id FROM rate_limits)) AS claim_free \
                 FROM p CROSS JOIN executions e WHERE e.id IN ( \
                     SELECT id FROM executions INDEXED BY {index} \
                     WHERE {same_queue}priority = p.priority AND status = 'queued' \
                       AND parked = 0 AND instance IS NULL AND run_at <= ?2 \
                     ORDER BY run_at, id LIMIT +?3) \
                 ORDER BY e.priority DESC, e.run_at, e.id LIMIT +?3)), \
         k AS MATERIALIZED ( \
             SELECT c.claim_id AS claim_id, t.value AS token \
             FROM c JOIN json_each(?6) t ON t.key = c.claim_n) \
         UPDATE executions SET status = 'running', started_at = ?2, worker_id = ?4, \
             lease_token = (SELECT k.token FROM k WHERE k.claim_id = executions.id), \
             lease_expires_at = ?5 \
         WHERE executions.id IN (SELECT claim_id FROM k) \
           AND NOT EXISTS (SELECT 1 FROM c WHERE NOT c.claim_free) \
           AND NOT EXISTS (SELECT 1 FROM job_locks) \
         RETURNING {columns}, executions.lease_token AS lease_token",
        priorities = priorities(some_queues),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim's statements are compiled once (no bare `LIMIT ?`, see the module `sqlite`),
    /// so their plans cannot count on a short limit: each must still reach executions only by
    /// index seeks bounded by the batch. The one-statement claim once joined its list to every
    /// execution (`UPDATE … FROM`), and fell to a fifth of its speed at 30,000 executions.
    #[tokio::test]
    async fn the_claims_reach_executions_by_seeks_whatever_their_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = super::super::SqliteStore::open(&dir.path().join("panda.db"))
            .await
            .expect("open");
        for some_queues in [true, false] {
            for (name, sql) in [
                ("unrestricted", unrestricted_sql(some_queues)),
                ("candidates", candidates_sql(some_queues)),
            ] {
                assert!(!sql.contains("LIMIT ?"), "{name}: a bare LIMIT ?");
                let plan = super::super::tests::query_plan(&store, &sql).await;
                for step in plan
                    .iter()
                    .filter(|step| step.contains(" executions ") || step.starts_with("SCAN e "))
                {
                    // The every-queue form finds the highest priority present by the first
                    // entry of the claim index: a scan that stops at its first row.
                    let first_priority =
                        step == "SCAN executions USING COVERING INDEX executions_claim";
                    assert!(
                        step.starts_with("SEARCH ") || first_priority,
                        "{name} (some queues: {some_queues}) walks executions: {step}\n{plan:#?}"
                    );
                }
            }
        }
    }
}
