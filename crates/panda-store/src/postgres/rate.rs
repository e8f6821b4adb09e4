//! Rate limits, in PostgreSQL's dialect: a claim takes a transaction-scoped advisory lock per
//! key, in the order of the locks' own numbers, so two claimers never wait on each other in a
//! cycle.

use crate::RateSql;

pub(super) const SQL: RateSql = RateSql {
    upsert: "INSERT INTO rate_limits (job_id, starts, window_ms, key_expr, key_default) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job_id) DO UPDATE SET starts = excluded.starts, \
                 window_ms = excluded.window_ms, key_expr = excluded.key_expr, \
                 key_default = excluded.key_default",
    forget: "DELETE FROM rate_limits WHERE job_id = $1",
    of_jobs: "SELECT job_id, starts, window_ms, key_expr, key_default FROM rate_limits \
              WHERE job_id = ANY($1)",
    // The two-number form, with a class of its own: apart from every one-number lock. Output
    // expressions are evaluated after ORDER BY, so the locks are taken in that order; keys
    // whose hashes collide share a lock, which only serialises them.
    lock: Some(
        "SELECT pg_advisory_xact_lock(7370020, h) FROM ( \
             SELECT DISTINCT hashtext(t.job_id::text || '/' || t.key) AS h \
             FROM UNNEST($1::uuid[], $2::text[]) AS t(job_id, key)) k \
         ORDER BY h",
    ),
    live: "SELECT k.job_id, k.key, ( \
               SELECT count(*) FROM rate_starts r \
               WHERE r.job_id = k.job_id AND r.key = k.key AND r.expires_at > $1) AS live \
           FROM UNNEST($2::uuid[], $3::text[]) AS k(job_id, key)",
    oldest: "SELECT k.job_id, k.key, r.expires_at \
             FROM UNNEST($2::uuid[], $3::text[], $4::bigint[]) AS k(job_id, key, n) \
             CROSS JOIN LATERAL ( \
                 SELECT expires_at FROM rate_starts r \
                 WHERE r.job_id = k.job_id AND r.key = k.key AND r.expires_at > $1 \
                 ORDER BY r.expires_at LIMIT k.n) r",
    record: "INSERT INTO rate_starts (job_id, key, expires_at, execution_id) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[]) \
             ON CONFLICT DO NOTHING",
    // `IS TRUE` keeps the planner on the primary key, off the partial indexes of queued
    // executions.
    delay: "UPDATE executions e SET run_at = t.run_at, reason = t.reason \
            FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[]) AS t(id, run_at, reason) \
            WHERE e.id = t.id AND (e.status = 'queued') IS TRUE",
    clear: "UPDATE executions SET reason = NULL \
            WHERE id = ANY($1) AND reason LIKE 'rate limited until %'",
    release: "UPDATE executions SET run_at = $2, reason = NULL \
              WHERE job_id = $1 AND status = 'queued' AND reason LIKE 'rate limited until %'",
    prune: "DELETE FROM rate_starts WHERE expires_at <= $1",
};
