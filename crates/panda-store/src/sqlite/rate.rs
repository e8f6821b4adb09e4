//! Rate limits, in SQLite's dialect. One writer: no key to lock.

use crate::RateSql;

pub(super) const SQL: RateSql = RateSql {
    upsert: "INSERT INTO rate_limits (job_id, starts, window_ms, key_expr, key_default) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (job_id) DO UPDATE SET starts = excluded.starts, \
                 window_ms = excluded.window_ms, key_expr = excluded.key_expr, \
                 key_default = excluded.key_default",
    forget: "DELETE FROM rate_limits WHERE job_id = ?",
    of_jobs: "SELECT job_id, starts, window_ms, key_expr, key_default FROM rate_limits \
              WHERE job_id IN (SELECT value FROM json_each(?))",
    lock: None,
    live: "SELECT k.value ->> 0 AS job_id, k.value ->> 1 AS key, ( \
               SELECT count(*) FROM rate_starts r \
               WHERE r.job_id = k.value ->> 0 AND r.key = k.value ->> 1 \
                 AND r.expires_at > ?1) AS live \
           FROM json_each(?2) k",
    // No LATERAL: the key's starts in their window, numbered, then cut to `n` (a window holds
    // at most the limit's starts).
    oldest: "SELECT job_id, key, expires_at FROM ( \
                 SELECT r.job_id AS job_id, r.key AS key, r.expires_at AS expires_at, \
                     row_number() OVER (PARTITION BY r.job_id, r.key ORDER BY r.expires_at) \
                         AS n, \
                     k.value ->> 2 AS wanted \
                 FROM json_each(?2) k JOIN rate_starts r \
                     ON r.job_id = k.value ->> 0 AND r.key = k.value ->> 1 \
                 WHERE r.expires_at > ?1) \
             WHERE n <= wanted",
    record: "INSERT INTO rate_starts (job_id, key, expires_at, execution_id) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?) \
             WHERE true ON CONFLICT DO NOTHING",
    // `+executions.status`: on the primary key, not every queued execution.
    delay: "UPDATE executions SET run_at = d.value ->> 1, reason = d.value ->> 2 \
            FROM json_each(?) AS d \
            WHERE executions.id = d.value ->> 0 AND +executions.status = 'queued'",
    clear: "UPDATE executions SET reason = NULL \
            WHERE id IN (SELECT value FROM json_each(?)) AND reason LIKE 'rate limited until %'",
    release: "UPDATE executions SET run_at = ?2, reason = NULL \
              WHERE job_id = ?1 AND status = 'queued' AND reason LIKE 'rate limited until %'",
    prune: "DELETE FROM rate_starts WHERE expires_at <= ?",
};
