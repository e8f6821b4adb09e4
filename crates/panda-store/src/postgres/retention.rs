//! Retention, in PostgreSQL's dialect.

use crate::RetentionSql;

pub(super) const SQL: RetentionSql = RetentionSql {
    jobs: "SELECT id, spec FROM jobs ORDER BY id",
    older: "SELECT id FROM executions \
            WHERE job_id = $1 AND finished_at IS NOT NULL AND finished_at < $2 \
            ORDER BY finished_at LIMIT $3",
    keep_boundary: "SELECT id FROM executions \
                    WHERE job_id = $1 AND finished_at IS NOT NULL AND status <> 'dead' \
                    ORDER BY id DESC LIMIT 1 OFFSET $2",
    beyond_keep: "SELECT id FROM executions \
                  WHERE job_id = $1 AND finished_at IS NOT NULL AND status <> 'dead' \
                  AND id < $2 AND ($3::timestamptz IS NULL OR finished_at >= $3) \
                  ORDER BY id LIMIT $4",
    delete_logs: "DELETE FROM log_chunks WHERE execution_id = ANY($1)",
    delete_resolutions: "DELETE FROM dlq_resolutions WHERE execution_id = ANY($1)",
    delete_executions: "DELETE FROM executions WHERE id = ANY($1) AND finished_at IS NOT NULL",
    delete_slots: "DELETE FROM slots WHERE job_id = $1 AND scheduled_at IN ( \
                       SELECT scheduled_at FROM slots WHERE job_id = $1 AND scheduled_at < $2 \
                       ORDER BY scheduled_at LIMIT $3)",
};
