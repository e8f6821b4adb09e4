//! Alerts, in PostgreSQL's dialect: deliveries are taken `FOR UPDATE SKIP LOCKED`, so two
//! nodes never attempt one delivery at once.

use crate::AlertSql;
use crate::records::execution_columns;

pub(super) const SQL: AlertSql = AlertSql {
    inbox: concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE id IN ( \
             SELECT execution_id FROM alert_inbox ORDER BY finished_at, execution_id LIMIT $1) \
         ORDER BY finished_at, id"
    ),
    inbox_done: "DELETE FROM alert_inbox WHERE execution_id = ANY($1)",
    insert: "INSERT INTO alerts \
                 (id, incident, job_id, job_name, kind, execution_id, message, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (incident) DO NOTHING",
    insert_deliveries: "INSERT INTO alert_deliveries \
                 (id, alert_id, notifier, url, state, attempts, next_attempt_at) \
             SELECT d.id, $1, d.notifier, d.url, 'pending', 0, $2 \
             FROM UNNEST($3::uuid[], $4::text[], $5::text[]) AS d(id, notifier, url)",
    latest: "SELECT * FROM alerts WHERE job_id = $1 ORDER BY id DESC LIMIT 1",
    open: "SELECT * FROM (SELECT DISTINCT ON (job_id) * FROM alerts ORDER BY job_id, id DESC) a \
           WHERE a.kind <> 'recovered' ORDER BY a.id",
    list: "SELECT * FROM alerts ORDER BY id DESC LIMIT $1",
    list_by_job: "SELECT * FROM alerts WHERE job_name = $1 ORDER BY id DESC LIMIT $2",
    deliveries_of: "SELECT * FROM alert_deliveries WHERE alert_id = ANY($1) ORDER BY id",
    take_due: "UPDATE alert_deliveries SET attempts = attempts + 1, next_attempt_at = $1 \
               WHERE id IN (SELECT id FROM alert_deliveries \
                   WHERE state = 'pending' AND next_attempt_at <= $2 \
                   ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
               RETURNING *",
    by_id: "SELECT * FROM alerts WHERE id = $1",
    record_delivery: "UPDATE alert_deliveries SET state = $1, next_attempt_at = $2, \
                          last_error = COALESCE($3, last_error), delivered_at = $4 \
                      WHERE id = $5",
};
