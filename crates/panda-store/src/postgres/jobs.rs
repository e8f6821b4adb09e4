//! Jobs, in PostgreSQL's dialect: a job row is locked while a transaction depends on it.

use crate::JobSql;

pub(super) const SQL: JobSql = JobSql {
    insert: "INSERT INTO jobs (id, name, scheduled, spec, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
    by_name: "SELECT * FROM jobs WHERE name = $1 AND deleted_at IS NULL",
    by_name_share: "SELECT * FROM jobs WHERE name = $1 AND deleted_at IS NULL FOR SHARE",
    by_name_update: "SELECT * FROM jobs WHERE name = $1 AND deleted_at IS NULL FOR UPDATE",
    by_id: "SELECT * FROM jobs WHERE id = $1",
    list: "SELECT * FROM jobs WHERE deleted_at IS NULL \
             AND ($1::boolean IS NULL OR scheduled = $1) \
           ORDER BY name",
    update: "UPDATE jobs SET spec = $1, scheduled = $2, updated_at = $3 WHERE id = $4",
    delete: "UPDATE jobs SET deleted_at = $1 WHERE id = $2",
    cancel_queued: "UPDATE executions SET status = 'cancelled', finished_at = $1, \
                    reason = 'job deleted' WHERE job_id = $2 AND status = 'queued'",
    stop_running: "UPDATE executions SET cancel_requested = true \
                   WHERE job_id = $1 AND status = 'running'",
};
