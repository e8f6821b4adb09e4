//! Cron slots, in PostgreSQL's dialect: the jobs are locked `FOR SHARE`, so a job deleted
//! meanwhile waits for the batch, or the batch for it.

use crate::SlotSql;

pub(super) const SQL: SlotSql = SlotSql {
    live_jobs: "SELECT * FROM jobs WHERE id = ANY($1) AND deleted_at IS NULL \
                ORDER BY id FOR SHARE",
    recorded: "SELECT s.* FROM slots s \
               JOIN UNNEST($1::uuid[], $2::timestamptz[]) AS k(job_id, scheduled_at) \
               USING (job_id, scheduled_at)",
    insert: "INSERT INTO slots (job_id, scheduled_at, execution_id, fired, recorded_at) \
             SELECT *, $1::timestamptz FROM UNNEST($2::uuid[], $3::timestamptz[], \
                 $4::uuid[], $5::boolean[]) \
             ON CONFLICT (job_id, scheduled_at) DO NOTHING \
             RETURNING job_id, scheduled_at",
    insert_fired: "INSERT INTO slots (job_id, scheduled_at, execution_id, fired, recorded_at) \
                   VALUES ($1, $2, $3, true, $4) ON CONFLICT (job_id, scheduled_at) DO NOTHING",
    get: "SELECT * FROM slots WHERE job_id = $1 AND scheduled_at = $2",
    list: "SELECT * FROM slots WHERE job_id = $1 ORDER BY scheduled_at DESC LIMIT $2",
};
