//! Services, in SQLite's dialect. One writer: no row locks to take.

use crate::services::ServiceSql;

pub(super) const SQL: ServiceSql = ServiceSql {
    revision_insert: "INSERT INTO service_revisions (job_id, revision, spec, created_at) \
                      VALUES (?, ?, ?, ?)",
    revisions: "SELECT revision, spec, created_at FROM service_revisions \
                WHERE job_id = ? ORDER BY revision DESC",
    revision: "SELECT spec, created_at FROM service_revisions WHERE job_id = ? AND revision = ?",
    newest_revision: "SELECT max(revision) AS revision FROM service_revisions WHERE job_id = ?",
    upsert: "INSERT INTO services (job_id, revision, rollout) VALUES (?1, ?2, ?3) \
             ON CONFLICT (job_id) DO UPDATE SET revision = ?2, rollout = ?3",
    current: "SELECT revision, rollout FROM services WHERE job_id = ?",
    live: concat!(
        "SELECT ",
        crate::records::execution_columns!(),
        " FROM executions INDEXED BY executions_instance_live \
         WHERE job_id = ? AND instance IS NOT NULL AND status IN ('queued', 'running') \
         ORDER BY instance, id"
    ),
    recent: concat!(
        "SELECT ",
        crate::records::execution_columns!(),
        " FROM executions WHERE job_id = ?1 AND instance IS NOT NULL ORDER BY id DESC LIMIT ?2"
    ),
    last_ended: concat!(
        "SELECT ",
        crate::records::execution_columns!(),
        " FROM executions WHERE job_id = ?1 AND instance = ?2 \
         AND status NOT IN ('queued', 'running') ORDER BY id DESC LIMIT 1"
    ),
    restarts: "SELECT count(*) AS n FROM executions \
               WHERE job_id = ?1 AND job_name = ?2 AND trigger = 'restart'",
    cancel: "UPDATE executions SET status = 'cancelled', finished_at = ?1, reason = ?2 \
             WHERE id IN (SELECT value FROM json_each(?3)) AND status = 'queued'",
    stop: "UPDATE executions SET cancel_requested = 1 \
           WHERE id IN (SELECT value FROM json_each(?)) AND status = 'running'",
    health: "UPDATE executions \
             SET healthy_at = CASE WHEN ?1 THEN coalesce(healthy_at, ?2) ELSE NULL END \
             WHERE id = ?3 AND status = 'running' AND lease_token = ?4 RETURNING id",
    running_by_worker: "SELECT job_id, count(*) AS n FROM executions \
                        WHERE status = 'running' AND worker_id = ? AND instance IS NOT NULL \
                        GROUP BY job_id",
    candidates: concat!(
        "SELECT ",
        crate::records::execution_columns!(),
        " FROM executions INDEXED BY executions_instance_due \
         WHERE instance IS NOT NULL AND status = 'queued' AND run_at <= ?1 \
           AND (?2 = '[]' OR queue IN (SELECT value FROM json_each(?2))) \
         ORDER BY run_at, id LIMIT +?3"
    ),
    log_sizes: "SELECT seq, length(data) AS bytes FROM log_chunks \
                WHERE execution_id = ? ORDER BY seq DESC",
    log_drop: "DELETE FROM log_chunks WHERE execution_id = ? AND seq <= ?",
    forget: "DELETE FROM services WHERE job_id = ?",
};
