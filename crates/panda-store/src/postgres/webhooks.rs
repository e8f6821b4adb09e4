//! Inbound webhooks, in PostgreSQL's dialect.

use crate::WebhookSql;

pub(super) const SQL: WebhookSql = WebhookSql {
    upsert: "INSERT INTO webhooks (job_id, token_hash, secret, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job_id) DO UPDATE SET token_hash = excluded.token_hash, \
             secret = excluded.secret, created_at = excluded.created_at",
    of_job: "SELECT w.secret, w.created_at FROM webhooks w WHERE w.job_id = $1",
    delete: "DELETE FROM webhooks WHERE job_id = $1",
    by_hash: "SELECT j.name, w.token_hash, w.secret FROM webhooks w \
              JOIN jobs j ON j.id = w.job_id AND j.deleted_at IS NULL \
              WHERE w.token_hash = $1",
};
