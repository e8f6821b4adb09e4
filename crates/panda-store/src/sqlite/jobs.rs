//! Jobs, in SQLite's dialect. One writer: no row locks to take.

use crate::JobSql;

pub(super) const SQL: JobSql = JobSql {
    insert: "INSERT INTO jobs (id, name, scheduled, spec, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
    by_name: "SELECT * FROM jobs WHERE name = ? AND deleted_at IS NULL",
    by_name_share: "SELECT * FROM jobs WHERE name = ? AND deleted_at IS NULL",
    by_name_update: "SELECT * FROM jobs WHERE name = ? AND deleted_at IS NULL",
    by_id: "SELECT * FROM jobs WHERE id = ?",
    list: "SELECT * FROM jobs WHERE deleted_at IS NULL AND (?1 IS NULL OR scheduled = ?1) \
           ORDER BY name",
    update: "UPDATE jobs SET spec = ?, scheduled = ?, updated_at = ? WHERE id = ?",
    delete: "UPDATE jobs SET deleted_at = ? WHERE id = ?",
    cancel_queued: "UPDATE executions SET status = 'cancelled', finished_at = ?, \
                    reason = 'job deleted' WHERE job_id = ? AND status = 'queued'",
    stop_running: "UPDATE executions SET cancel_requested = 1 \
                   WHERE job_id = ? AND status = 'running'",
};
