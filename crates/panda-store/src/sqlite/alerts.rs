//! Alerts, in SQLite's dialect.

use crate::AlertSql;
use crate::records::execution_columns;

pub(super) const SQL: AlertSql = AlertSql {
    inbox: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE id IN ( \
             SELECT execution_id FROM alert_inbox ORDER BY finished_at, execution_id LIMIT ?) \
         ORDER BY finished_at, id"
    ),
    inbox_done: "DELETE FROM alert_inbox WHERE execution_id IN (SELECT value FROM json_each(?))",
    insert: "INSERT INTO alerts \
                 (id, incident, job_id, job_name, kind, execution_id, message, body, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (incident) DO NOTHING",
    insert_deliveries: "INSERT INTO alert_deliveries \
                 (id, alert_id, notifier, url, state, attempts, next_attempt_at) \
             SELECT d.value ->> 0, ?1, d.value ->> 1, d.value ->> 2, 'pending', 0, ?2 \
             FROM json_each(?3) AS d",
    latest: "SELECT * FROM alerts WHERE job_id = ? ORDER BY id DESC LIMIT 1",
    open: "SELECT a.* FROM (SELECT job_id, MAX(id) AS id FROM alerts GROUP BY job_id) AS m \
           JOIN alerts a ON a.id = m.id WHERE a.kind <> 'recovered' ORDER BY a.id",
    list: "SELECT * FROM alerts ORDER BY id DESC LIMIT ?",
    list_by_job: "SELECT * FROM alerts WHERE job_name = ? ORDER BY id DESC LIMIT ?",
    deliveries_of: "SELECT * FROM alert_deliveries \
                    WHERE alert_id IN (SELECT value FROM json_each(?)) ORDER BY id",
    take_due: "UPDATE alert_deliveries SET attempts = attempts + 1, next_attempt_at = ?1 \
               WHERE id IN (SELECT id FROM alert_deliveries \
                   WHERE state = 'pending' AND next_attempt_at <= ?2 \
                   ORDER BY next_attempt_at LIMIT ?3) \
               RETURNING *",
    by_id: "SELECT * FROM alerts WHERE id = ?",
    record_delivery: "UPDATE alert_deliveries SET state = ?, next_attempt_at = ?, \
                          last_error = COALESCE(?, last_error), delivered_at = ? \
                      WHERE id = ?",
};
