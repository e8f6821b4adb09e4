//! Monitors, in SQLite's dialect.

use crate::MonitorSql;
use crate::records::execution_columns;

pub(super) const SQL: MonitorSql = MonitorSql {
    upsert: "INSERT INTO monitor_urls (job_id, token_hash, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (job_id) DO UPDATE SET token_hash = excluded.token_hash, \
             created_at = excluded.created_at",
    of_job: "SELECT m.created_at FROM monitor_urls m WHERE m.job_id = ?",
    by_hash: "SELECT j.name, m.token_hash FROM monitor_urls m \
              JOIN jobs j ON j.id = m.job_id AND j.deleted_at IS NULL \
              WHERE m.token_hash = ?",
    newest: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE job_name = ? AND job_id = ? ORDER BY id DESC LIMIT 1"
    ),
    open_run: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE job_id = ? AND status = 'running' ORDER BY id DESC LIMIT 1"
    ),
    open_runs: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE status = 'running' AND trigger = 'ping'"
    ),
    end_run: "UPDATE executions SET status = ?, finished_at = ?, exit_code = ?, reason = ? \
              WHERE id = ? AND status = 'running'",
};
