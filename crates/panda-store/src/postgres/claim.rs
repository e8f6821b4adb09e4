//! The claim, in PostgreSQL's dialect: candidates are locked `FOR UPDATE SKIP LOCKED`, so no
//! execution is claimed twice and no claimer waits on another, and job locks are taken in key
//! order, so two claimers cannot deadlock on them.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::PgStore;
use super::encode::PgPoolConn;
use crate::ClaimSql;
use crate::StoreResult;
use crate::dialect::{Arg, Conn, Query, query};
use crate::model::Claimed;
use crate::records::execution_columns;

pub(super) const SQL: ClaimSql = ClaimSql {
    lock: "INSERT INTO job_locks (job_id, slot, execution_id) \
           SELECT job_id, 0, execution_id \
           FROM UNNEST($1::uuid[], $2::uuid[]) AS t(job_id, execution_id) \
           ORDER BY job_id \
           ON CONFLICT (job_id, key, slot) DO NOTHING RETURNING job_id",
    holders: "SELECT job_id, execution_id FROM job_locks WHERE job_id = ANY($1)",
    slots_taken: "SELECT job_id, key, slot FROM job_locks WHERE job_id = ANY($1)",
    take_slots: "INSERT INTO job_locks (job_id, key, slot, execution_id) \
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::integer[], $4::uuid[]) \
                     AS t(job_id, key, slot, execution_id) \
                 ORDER BY job_id, key, slot \
                 ON CONFLICT (job_id, key, slot) DO NOTHING RETURNING execution_id",
    // FOR SHARE: a release of one of these slots waits until this claim has parked what it
    // parks, and un-parks after it (see `claim::park_full_keys`).
    key_holders: "SELECT l.job_id, l.key FROM job_locks l \
                  JOIN UNNEST($1::uuid[], $2::text[]) AS k(job_id, key) \
                      ON l.job_id = k.job_id AND l.key = k.key \
                  ORDER BY l.job_id, l.key, l.slot FOR SHARE OF l",
    park: "UPDATE executions e SET parked = true, reason = t.reason \
           FROM UNNEST($1::uuid[], $2::text[]) AS t(id, reason) \
           WHERE e.id = t.id AND (e.status = 'queued') IS TRUE",
    // SKIP LOCKED: a row locked now is another claim's candidate.
    park_key: "UPDATE executions SET parked = true, reason = $5 WHERE id IN ( \
                   SELECT id FROM executions \
                   WHERE job_id = $1 AND concurrency_key = $2 AND status = 'queued' \
                     AND NOT parked AND concurrency_key IS NOT NULL AND run_at <= $3 \
                   LIMIT $4 FOR UPDATE SKIP LOCKED)",
    // SKIP LOCKED: a parked execution locked now is being un-parked by another release, which
    // frees a slot of its own; this one takes the next.
    unpark_key: "UPDATE executions SET parked = false, reason = NULL WHERE id IN ( \
                     SELECT id FROM executions \
                     WHERE job_id = $1 AND concurrency_key = $2 AND status = 'queued' \
                       AND parked \
                     ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)",
    unpark_job: "UPDATE executions SET parked = false, reason = NULL WHERE id IN ( \
                     SELECT id FROM executions \
                     WHERE job_id = $1 AND concurrency_key IS NULL AND status = 'queued' \
                       AND parked \
                     ORDER BY priority DESC, run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)",
    unpark_free: "UPDATE executions SET parked = false, reason = NULL WHERE id IN ( \
                      SELECT id FROM executions p \
                      WHERE status = 'queued' AND parked AND p.max_running > ( \
                          SELECT count(*) FROM job_locks l \
                          WHERE l.job_id = p.job_id \
                            AND l.key = coalesce(p.concurrency_key, '')) \
                      LIMIT $1 FOR UPDATE SKIP LOCKED)",
    // `IS TRUE` keeps the planner on the primary key, off the partial indexes of queued
    // executions (see the queue's statements).
    skip: "UPDATE executions e SET status = 'skipped', finished_at = $1, reason = t.reason \
           FROM UNNEST($2::uuid[], $3::text[]) AS t(id, reason) \
           WHERE e.id = t.id AND (e.status = 'queued') IS TRUE",
    replace: "UPDATE executions SET cancel_requested = true WHERE id IN ( \
                  SELECT id FROM executions WHERE job_id = ANY($1) AND status = 'running' \
                  ORDER BY id FOR UPDATE)",
    start: "UPDATE executions e SET status = 'running', started_at = $1, worker_id = $2, \
                lease_token = t.token, lease_expires_at = $3, \
                cancel_requested = e.cancel_requested OR t.cancel \
            FROM UNNEST($4::uuid[], $5::uuid[], $6::boolean[]) AS t(id, token, cancel) \
            WHERE e.id = t.id",
    queues_present: "WITH RECURSIVE q(name) AS ( \
                         SELECT (SELECT queue FROM executions \
                             WHERE status = 'queued' AND NOT parked ORDER BY queue LIMIT 1) \
                         UNION ALL \
                         SELECT (SELECT queue FROM executions \
                             WHERE status = 'queued' AND NOT parked AND queue > q.name \
                             ORDER BY queue LIMIT 1) \
                         FROM q WHERE q.name IS NOT NULL) \
                     SELECT name FROM q WHERE name IS NOT NULL",
};

/// Appends `AND column = …` for the queues a claim takes from (none: every queue). One queue
/// is an equality, so the claim index yields rows already in claim order.
fn queue_filter(q: Query, column: &str, queues: &[String]) -> Query {
    match queues {
        [] => q,
        [queue] => q
            .push(&format!(" AND {column} = "))
            .push_arg::<PgStore>(Arg::Text(Some(queue.clone()))),
        many => q
            .push(&format!(" AND {column} = ANY("))
            .push_arg::<PgStore>(Arg::Texts(many.to_vec()))
            .push(")"),
    }
}

/// Queued runs of running `forbid` jobs that a schedule fired, locked: driven by the (usually
/// empty) lock table, so it costs nothing while no forbid job runs.
pub(super) fn overlapping(queues: &[String], now: DateTime<Utc>) -> Query {
    let q = query(
        "SELECT e.id AS id, l.execution_id AS holder FROM job_locks l \
         JOIN executions h ON h.id = l.execution_id AND h.concurrency = 'forbid' \
         CROSS JOIN LATERAL ( \
             SELECT x.id FROM executions x \
             WHERE x.job_id = l.job_id AND x.status = 'queued' AND x.trigger = 'schedule' \
               AND x.concurrency = 'forbid' AND x.run_at <= $1",
    )
    .time(now);
    queue_filter(q, "x.queue", queues).push(" FOR UPDATE SKIP LOCKED) e")
}

/// The steps of the claim from one priority present among queued executions to the next,
/// per queue (`$2`; every queue, with `NULL` for the queue, when `every_queue`): `p(queue,
/// priority)`, one index seek per step. Queued executions have few distinct priorities.
fn priorities(every_queue: bool) -> String {
    // Paused queues are left out; a claim from every queue claims nothing while any queue is
    // paused (the full claim then names the queues, see `crate::claim`).
    let (seed, first_queue, same_queue) = if every_queue {
        (
            "(SELECT NULL::text) AS q(name) WHERE NOT EXISTS (SELECT 1 FROM queue_pauses)",
            "",
            "",
        )
    } else {
        (
            "UNNEST($2::text[]) AS q(name) \
             WHERE q.name NOT IN (SELECT name FROM queue_pauses)",
            "queue = q.name AND ",
            "queue = p.queue AND ",
        )
    };
    format!(
        "p(queue, priority) AS ( \
             SELECT q.name, ( \
                 SELECT priority FROM executions \
                 WHERE {first_queue}status = 'queued' AND NOT parked \
                 ORDER BY priority DESC LIMIT 1) \
             FROM {seed} \
             UNION ALL \
             SELECT p.queue, ( \
                 SELECT priority FROM executions \
                 WHERE {same_queue}status = 'queued' AND NOT parked AND priority < p.priority \
                 ORDER BY priority DESC LIMIT 1) \
             FROM p WHERE p.priority IS NOT NULL)"
    )
}

/// The condition on the queue of the lateral read of one step of [`priorities`].
fn step_queue(every_queue: bool) -> &'static str {
    if every_queue {
        ""
    } else {
        "queue = p.queue AND "
    }
}

/// The claim's candidates: up to `limit` due queued executions in claim order (highest
/// priority, then earliest due, then oldest), locked, skipping rows another claimer holds, and
/// leaving out `forbid` executions whose job lock is taken. A limited execution whose key is
/// full is read all the same: the claim parks it (see `crate::claim`), so that it is read once,
/// not by every claim.
///
/// A claim index walked in claim order passes over every execution of a priority that is not
/// due yet (a backlog of delayed work) before it reaches a lower priority, and PostgreSQL
/// cannot skip through the index on its own: the cost would grow with the backlog. So the
/// claim steps through the priorities present ([`priorities`]) and reads, for each priority
/// and queue, the due executions only, by a range on `run_at` in the claim index: at most
/// `limit` rows each, plus those the filters pass over. Rows locked beyond the first `limit`
/// are released at commit.
pub(super) fn candidates(queues: &[String], now: DateTime<Utc>, limit: i64) -> Query {
    static EVERY_QUEUE: LazyLock<String> = LazyLock::new(|| candidates_sql(true));
    static SOME_QUEUES: LazyLock<String> = LazyLock::new(|| candidates_sql(false));
    let sql = if queues.is_empty() {
        &*EVERY_QUEUE
    } else {
        &*SOME_QUEUES
    };
    // With every queue, $2 is bound all the same (an empty list), so the numbering holds.
    query(sql.as_str())
        .time(now)
        .texts(queues.to_vec())
        .i64(limit)
}

fn candidates_sql(every_queue: bool) -> String {
    format!(
        "WITH RECURSIVE {priorities} \
         SELECT c.* FROM p CROSS JOIN LATERAL ( \
             SELECT {columns} FROM executions \
             WHERE {same_queue}priority = p.priority AND status = 'queued' AND NOT parked \
               AND instance IS NULL \
               AND NOT (concurrency = 'forbid' AND job_id IN (SELECT job_id FROM job_locks)) \
               AND run_at <= $1 \
             ORDER BY run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) c \
         ORDER BY c.priority DESC, c.run_at, c.id LIMIT $3",
        priorities = priorities(every_queue),
        columns = execution_columns!(),
        same_queue = step_queue(every_queue),
    )
}

/// The claim in one statement, for the common case where nothing restricts it: every
/// candidate allows overlap, without a limit of running executions or of starts (a rate
/// limit), and no job lock is held anywhere (so no scheduled run waits to be
/// skipped). Otherwise it claims nothing, and the full claim, with its job locks, overlap
/// skips and replacements, runs instead. One statement instead of five round trips is most of
/// a claim's cost here. Its candidates are read as [`candidates`] reads them. `None` for a
/// claim from several queues, which it does not serve.
pub(super) async fn unrestricted(
    pool: &PgPool,
    queues: &[String],
    now: DateTime<Utc>,
    limit: i64,
    worker_id: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<Option<Vec<Claimed>>> {
    static EVERY_QUEUE: LazyLock<String> = LazyLock::new(|| unrestricted_sql(true));
    static ONE_QUEUE: LazyLock<String> = LazyLock::new(|| unrestricted_sql(false));
    let sql = match queues {
        [] => &*EVERY_QUEUE,
        [_] => &*ONE_QUEUE,
        _ => return Ok(None),
    };
    let q = query(sql.as_str())
        .time(now)
        .texts(queues.to_vec())
        .i64(limit)
        .text(worker_id)
        .time(expires_at);
    let rows = PgPoolConn(pool.clone()).fetch_all(q).await?;
    crate::claim::claimed_in_order(&rows, expires_at).map(Some)
}

fn unrestricted_sql(every_queue: bool) -> String {
    format!(
        "WITH RECURSIVE {priorities}, \
         c AS ( \
             SELECT x.id AS claim_id, x.concurrency AS claim_concurrency, \
                 x.max_running IS NOT NULL \
                     OR x.job_id IN (SELECT job_id FROM rate_limits) AS claim_limited \
             FROM p CROSS JOIN LATERAL ( \
                 SELECT id, job_id, concurrency, max_running, priority, run_at \
                 FROM executions \
                 WHERE {same_queue}priority = p.priority AND status = 'queued' AND NOT parked \
                   AND instance IS NULL AND run_at <= $1 \
                 ORDER BY run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) x \
             ORDER BY x.priority DESC, x.run_at, x.id LIMIT $3), \
         fast AS (SELECT NOT EXISTS ( \
                 SELECT 1 FROM c WHERE claim_concurrency <> 'allow' OR claim_limited) \
             AND NOT EXISTS (SELECT 1 FROM job_locks) AS ok) \
         UPDATE executions SET status = 'running', started_at = $1, worker_id = $4, \
             lease_token = gen_random_uuid(), lease_expires_at = $5 \
         FROM c, fast WHERE fast.ok AND id = c.claim_id \
         RETURNING {columns}, lease_token",
        priorities = priorities(every_queue),
        columns = execution_columns!(),
        same_queue = step_queue(every_queue),
    )
}
