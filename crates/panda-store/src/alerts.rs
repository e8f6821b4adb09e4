//! Alerts: the inbox of failed attempts, one alert per incident, and its deliveries.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::DeliveryState;
use panda_core::{Execution, ExecutionId, JobId};
use uuid::Uuid;

use crate::dialect::{Backend, Column, Conn, Record, Tx, query};
use crate::model::{AlertRecord, DeliveryOutcome, DeliveryRecord, DueDelivery, NewAlert};
use crate::records::{self, all};
use crate::{StoreError, StoreResult, page_size, stored_instant};

/// Alerts and their deliveries.
#[async_trait]
pub trait AlertStore: Send + Sync + std::fmt::Debug {
    /// Failed, timed-out and dead attempts not yet judged by the alerter, oldest first. Each
    /// is put here in the same transaction that records its outcome.
    async fn alert_inbox(&self, limit: u32) -> StoreResult<Vec<Execution>>;

    /// Takes judged attempts out of the inbox.
    async fn alert_inbox_done(&self, ids: &[ExecutionId]) -> StoreResult<()>;

    /// Raises an alert with one pending delivery per notifier, due now; `None` when an alert
    /// with the same incident key exists (another node raised it first).
    async fn alert_raise(
        &self,
        alert: &NewAlert,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<AlertRecord>>;

    /// The newest alert about a job (without its deliveries).
    async fn alert_latest(&self, job_id: JobId) -> StoreResult<Option<AlertRecord>>;

    /// Open incidents: each job's newest alert where that is not a recovery (without
    /// deliveries).
    async fn alert_open(&self) -> StoreResult<Vec<AlertRecord>>;

    /// Alerts newest first, with their deliveries; only `job`'s when given; at most `limit`
    /// (0 means the default page).
    async fn alert_list(&self, job: Option<&str>, limit: u32) -> StoreResult<Vec<AlertRecord>>;

    /// Claims up to `limit` pending deliveries due at `now` for one attempt each: their next
    /// attempt moves to `now + hold`, so a node that dies mid-attempt hands them on.
    async fn alert_deliveries_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        hold: std::time::Duration,
    ) -> StoreResult<Vec<DueDelivery>>;

    /// Records how an attempt went.
    async fn alert_delivery_record(
        &self,
        id: Uuid,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

/// The statements of [`AlertStore`], in each backend's dialect.
#[derive(Debug)]
pub struct AlertSql {
    /// The inbox's oldest executions: `(limit)`.
    pub inbox: &'static str,
    /// `(ids)`.
    pub inbox_done: &'static str,
    /// Unless its incident exists: `(id, incident, job_id, job_name, kind, execution_id,
    /// message, body, created_at)`.
    pub insert: &'static str,
    /// `(alert_id, next_attempt_at, table of (id, notifier, url))`.
    pub insert_deliveries: &'static str,
    /// `(job_id)`.
    pub latest: &'static str,
    /// Each job's newest alert unless it is a recovery.
    pub open: &'static str,
    /// `(limit)`, newest first.
    pub list: &'static str,
    /// `(job_name, limit)`, newest first.
    pub list_by_job: &'static str,
    /// `(alert ids)`.
    pub deliveries_of: &'static str,
    /// Takes due deliveries for one attempt: `(next_attempt_at, now, limit)`, `RETURNING *`.
    pub take_due: &'static str,
    /// `(id)`.
    pub by_id: &'static str,
    /// `(state, next_attempt_at, last_error, delivered_at, id)`.
    pub record_delivery: &'static str,
}

/// The deliveries of `alerts`, attached to each.
async fn attach_deliveries<B: Backend>(
    backend: &B,
    mut alerts: Vec<AlertRecord>,
) -> StoreResult<Vec<AlertRecord>> {
    if alerts.is_empty() {
        return Ok(alerts);
    }
    let ids = alerts.iter().map(|a| a.id).collect();
    let rows = backend
        .reader()
        .fetch_all(query(B::SQL.alerts.deliveries_of).uuids(ids))
        .await?;
    let mut by_alert: HashMap<Uuid, Vec<DeliveryRecord>> = HashMap::new();
    for row in &rows {
        by_alert
            .entry(row.uuid("alert_id")?)
            .or_default()
            .push(records::delivery(row)?);
    }
    for alert in &mut alerts {
        alert.deliveries = by_alert.remove(&alert.id).unwrap_or_default();
    }
    Ok(alerts)
}

#[async_trait]
impl<B: Backend> AlertStore for B {
    async fn alert_inbox(&self, limit: u32) -> StoreResult<Vec<Execution>> {
        let rows = self
            .reader()
            .fetch_all(query(B::SQL.alerts.inbox).i64(i64::from(limit.max(1))))
            .await?;
        all(&rows, records::execution)
    }

    async fn alert_inbox_done(&self, ids: &[ExecutionId]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.iter().map(ExecutionId::as_uuid).collect();
        self.writer()
            .execute(query(B::SQL.alerts.inbox_done).uuids(ids))
            .await?;
        Ok(())
    }

    async fn alert_raise(
        &self,
        alert: &NewAlert,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<AlertRecord>> {
        let now = stored_instant(now);
        let id = Uuid::now_v7();
        let mut tx = self.begin().await?;
        let inserted = tx
            .execute(
                query(B::SQL.alerts.insert)
                    .uuid(id)
                    .text(&alert.incident)
                    .uuid(alert.job_id)
                    .text(&alert.job)
                    .text(alert.kind.as_str())
                    .opt_uuid(alert.execution_id)
                    .text(&alert.message)
                    .json(alert.body.clone())
                    .time(now),
            )
            .await?;
        if inserted == 0 {
            return Ok(None);
        }
        let deliveries: Vec<DeliveryRecord> = alert
            .notifiers
            .iter()
            .map(|(notifier, url)| DeliveryRecord {
                id: Uuid::now_v7(),
                notifier: *notifier,
                url: url.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: Some(now),
                last_error: None,
                delivered_at: None,
            })
            .collect();
        if !deliveries.is_empty() {
            tx.execute(
                query(B::SQL.alerts.insert_deliveries)
                    .uuid(id)
                    .time(now)
                    .table(vec![
                        Column::Uuids(Column::of(&deliveries, |d| Some(d.id))),
                        Column::Texts(Column::of(&deliveries, |d| {
                            Some(d.notifier.as_str().to_owned())
                        })),
                        Column::Texts(Column::of(&deliveries, |d| Some(d.url.clone()))),
                    ]),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(AlertRecord {
            id,
            job_id: alert.job_id,
            job: alert.job.clone(),
            kind: alert.kind,
            execution_id: alert.execution_id,
            message: alert.message.clone(),
            body: alert.body.clone(),
            created_at: now,
            deliveries,
        }))
    }

    async fn alert_latest(&self, job_id: JobId) -> StoreResult<Option<AlertRecord>> {
        self.reader()
            .fetch_optional(query(B::SQL.alerts.latest).uuid(job_id))
            .await?
            .as_ref()
            .map(records::alert)
            .transpose()
    }

    async fn alert_open(&self) -> StoreResult<Vec<AlertRecord>> {
        let rows = self.reader().fetch_all(query(B::SQL.alerts.open)).await?;
        all(&rows, records::alert)
    }

    async fn alert_list(&self, job: Option<&str>, limit: u32) -> StoreResult<Vec<AlertRecord>> {
        let limit = i64::from(page_size(limit));
        let statement = match job {
            Some(job) => query(B::SQL.alerts.list_by_job).text(job).i64(limit),
            None => query(B::SQL.alerts.list).i64(limit),
        };
        let rows = self.reader().fetch_all(statement).await?;
        let alerts = all(&rows, records::alert)?;
        attach_deliveries(self, alerts).await
    }

    async fn alert_deliveries_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        hold: std::time::Duration,
    ) -> StoreResult<Vec<DueDelivery>> {
        let held = now + chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.begin().await?;
        let rows = tx
            .fetch_all(
                query(B::SQL.alerts.take_due)
                    .time(held)
                    .time(now)
                    .i64(i64::from(limit.max(1))),
            )
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let alert = tx
                .fetch_optional(query(B::SQL.alerts.by_id).uuid(row.uuid("alert_id")?))
                .await?
                .ok_or_else(|| StoreError::Corrupt("a delivery of no alert".into()))?;
            due.push(DueDelivery {
                delivery: records::delivery(row)?,
                alert: records::alert(&alert)?,
            });
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn alert_delivery_record(
        &self,
        id: Uuid,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (state, next, error, delivered) = match outcome {
            DeliveryOutcome::Delivered => (DeliveryState::Delivered, None, None, Some(now)),
            DeliveryOutcome::Retry { error, at } => {
                (DeliveryState::Pending, Some(*at), Some(error), None)
            }
            DeliveryOutcome::GaveUp { error } => (DeliveryState::Failed, None, Some(error), None),
        };
        let updated = self
            .writer()
            .execute(
                query(B::SQL.alerts.record_delivery)
                    .text(state.as_str())
                    .opt_time(next)
                    .opt_text(error)
                    .opt_time(delivered)
                    .uuid(id),
            )
            .await?;
        if updated == 0 {
            return Err(StoreError::not_found(format!("alert delivery {id}")));
        }
        Ok(())
    }
}
