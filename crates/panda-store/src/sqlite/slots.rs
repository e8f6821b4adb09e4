//! Cron slots, in SQLite's dialect.

use crate::SlotSql;

pub(super) const SQL: SlotSql = SlotSql {
    live_jobs: "SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(?)) \
                AND deleted_at IS NULL",
    recorded: "SELECT s.* FROM json_each(?) k CROSS JOIN slots s \
               ON s.job_id = k.value ->> 0 AND s.scheduled_at = k.value ->> 1",
    insert: "INSERT INTO slots (job_id, scheduled_at, execution_id, fired, recorded_at) \
             SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, ?1 \
             FROM json_each(?2) AS r WHERE true \
             ON CONFLICT (job_id, scheduled_at) DO NOTHING \
             RETURNING job_id, scheduled_at",
    insert_fired: "INSERT INTO slots (job_id, scheduled_at, execution_id, fired, recorded_at) \
                   VALUES (?, ?, ?, 1, ?) ON CONFLICT (job_id, scheduled_at) DO NOTHING",
    get: "SELECT * FROM slots WHERE job_id = ? AND scheduled_at = ?",
    list: "SELECT * FROM slots WHERE job_id = ? ORDER BY scheduled_at DESC LIMIT ?",
};
