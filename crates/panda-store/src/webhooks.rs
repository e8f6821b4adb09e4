//! Inbound webhooks: a job's secret URL, which another service calls without an API token.
//! Only a hash of the URL's token is stored, as for API tokens; the signing key, when there is
//! one, is kept as a job's secret environment is (it is needed to verify each delivery).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::dialect::{Backend, Conn, Record, Tx, query};
use crate::jobs::{JobLock, live_job};
use crate::{StoreError, StoreResult, token};

/// A job's webhook as it may be shown: never its token, never its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Whether deliveries must be signed.
    pub signed: bool,
    /// When its current URL was made.
    pub created_at: DateTime<Utc>,
}

/// What a delivery's token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// The live job it enqueues.
    pub job: String,
    /// The key deliveries are signed with, when they must be.
    pub secret: Option<String>,
}

/// How a webhook's signing key changes when its URL is made or rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKey {
    /// Keep the current one (none for a new webhook).
    Keep,
    /// Deliveries need no signature.
    None,
    /// Deliveries must be signed with this key.
    Set(String),
}

/// Inbound webhooks.
#[async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug {
    /// Gives the live job `job` a new webhook URL, replacing any earlier one (which stops
    /// working at once), and returns its token: not stored, shown once. `NotFound` for no such
    /// job.
    async fn webhook_rotate(
        &self,
        job: &str,
        key: SigningKey,
        now: DateTime<Utc>,
    ) -> StoreResult<(String, Webhook)>;

    /// The live job's webhook, if it has one. `NotFound` for no such job.
    async fn webhook_get(&self, job: &str) -> StoreResult<Option<Webhook>>;

    /// Removes the live job's webhook; its URL stops working. `NotFound` for no such job or
    /// no webhook.
    async fn webhook_delete(&self, job: &str) -> StoreResult<()>;

    /// What `token` opens: a live job's webhook, or nothing.
    async fn webhook_find(&self, token: &str) -> StoreResult<Option<WebhookTarget>>;
}

/// The statements of [`WebhookStore`], in each backend's dialect.
#[derive(Debug)]
pub struct WebhookSql {
    /// `(job_id, token_hash, secret, created_at)`, replacing the job's webhook.
    pub upsert: &'static str,
    /// `secret, created_at` of a job's webhook: `(job_id)`.
    pub of_job: &'static str,
    /// `(job_id)`.
    pub delete: &'static str,
    /// `name, token_hash, secret` of the live job whose webhook has this hash: `(token_hash)`.
    pub by_hash: &'static str,
}

/// The prefix of a webhook's token, so that one found in a log is known for what it is.
const PREFIX: &str = "whk_";

#[async_trait]
impl<B: Backend> WebhookStore for B {
    async fn webhook_rotate(
        &self,
        job: &str,
        key: SigningKey,
        now: DateTime<Utc>,
    ) -> StoreResult<(String, Webhook)> {
        if let SigningKey::Set(key) = &key
            && key.is_empty()
        {
            return Err(StoreError::Invalid(panda_core::ValidationError::Field {
                field: "secret",
                message: "is empty; give the key the sender signs with, or none".into(),
            }));
        }
        let mut tx = self.begin().await?;
        let found = live_job::<B>(&mut tx, job, JobLock::Update).await?;
        if found.spec.monitor.is_some() {
            let _ = tx.rollback().await;
            return Err(StoreError::Invalid(panda_core::ValidationError::Field {
                field: "job",
                message: format!(
                    "{job} is a monitor: nothing can be enqueued for it, so it has no webhook; \
                     its runs call its ping URL (`panda monitor rotate {job}` makes a new one)"
                ),
            }));
        }
        let secret = match key {
            SigningKey::Set(key) => Some(key),
            SigningKey::None => None,
            SigningKey::Keep => tx
                .fetch_optional(query(B::SQL.webhooks.of_job).uuid(found.id))
                .await?
                .map(|row| row.opt_text("secret"))
                .transpose()?
                .flatten(),
        };
        let token = format!(
            "{PREFIX}{}",
            token::generate_secret().trim_start_matches("panda_")
        );
        tx.execute(
            query(B::SQL.webhooks.upsert)
                .uuid(found.id)
                .text(token::hash_secret(&token))
                .opt_text(secret.clone())
                .time(now),
        )
        .await?;
        tx.commit().await?;
        Ok((
            token,
            Webhook {
                signed: secret.is_some(),
                created_at: crate::stored_instant(now),
            },
        ))
    }

    async fn webhook_get(&self, job: &str) -> StoreResult<Option<Webhook>> {
        let mut reader = self.reader();
        let found = live_job::<B>(&mut reader, job, JobLock::Share).await?;
        reader
            .fetch_optional(query(B::SQL.webhooks.of_job).uuid(found.id))
            .await?
            .map(|row| {
                Ok(Webhook {
                    signed: row.opt_text("secret")?.is_some(),
                    created_at: row.time("created_at")?,
                })
            })
            .transpose()
    }

    async fn webhook_delete(&self, job: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let found = live_job::<B>(&mut tx, job, JobLock::Update).await?;
        let deleted = tx
            .execute(query(B::SQL.webhooks.delete).uuid(found.id))
            .await?;
        if deleted == 0 {
            return Err(StoreError::not_found(format!("a webhook of job {job:?}")));
        }
        tx.commit().await
    }

    async fn webhook_find(&self, token: &str) -> StoreResult<Option<WebhookTarget>> {
        let row = self
            .reader()
            .fetch_optional(query(B::SQL.webhooks.by_hash).text(token::hash_secret(token)))
            .await?;
        let Some(row) = row else { return Ok(None) };
        if !token::hash_matches(&row.text("token_hash")?, token) {
            return Ok(None);
        }
        Ok(Some(WebhookTarget {
            job: row.text("name")?,
            secret: row.opt_text("secret")?,
        }))
    }
}
