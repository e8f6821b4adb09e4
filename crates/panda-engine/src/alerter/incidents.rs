//! Judging failures and recoveries, and raising an alert: one per incident, whichever node
//! raises it first.

use panda_core::{
    AlertKind, CRASH_LOOP_RESTARTS, Execution, ExecutionId, Job, NotifierKind, Status,
};
use panda_store::{
    AlertRecord, AlertStore, ExecutionFilter, HistoryStore, JobStore, LogStore, MonitorStore,
    NewAlert, ServiceStore, SlotStore, StoreError, StoreResult,
};

use super::Alerter;
use super::payload::WebhookBody;

/// Log lines an alert carries.
const LOG_TAIL_LINES: usize = 20;

/// Failed attempts judged per pass.
const INBOX_BATCH: u32 = 500;

impl<S> Alerter<S>
where
    S: AlertStore
        + HistoryStore
        + JobStore
        + LogStore
        + ServiceStore
        + SlotStore
        + MonitorStore
        + ?Sized
        + 'static,
{
    /// One pass over failures and recoveries; returns the alerts it raised.
    pub async fn judge(&mut self) -> StoreResult<Vec<AlertRecord>> {
        let mut raised = Vec::new();
        let inbox = self.store.alert_inbox(INBOX_BATCH).await?;
        let mut done = Vec::with_capacity(inbox.len());
        for failed in &inbox {
            // A service instance's run that ended is restarted, not retried: one crash-loop
            // alert per incident instead of one per exit.
            let alert = if failed.instance.is_some() {
                self.judge_instance_end(failed).await?
            } else {
                self.judge_failure(failed).await?
            };
            if let Some(alert) = alert {
                raised.push(alert);
            }
            done.push(failed.id);
        }
        self.store.alert_inbox_done(&done).await?;
        for open in self.store.alert_open().await? {
            let alert = if open.kind == AlertKind::CrashLoop {
                self.judge_instance_recovery(&open).await?
            } else {
                self.judge_recovery(&open).await?
            };
            if let Some(alert) = alert {
                raised.push(alert);
            }
        }
        Ok(raised)
    }

    async fn judge_failure(&self, failed: &Execution) -> StoreResult<Option<AlertRecord>> {
        let job = match self.store.job_get_by_id(failed.job_id).await {
            Ok(job) => job,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let threshold = job.spec.alerts.threshold();
        let mut recent = vec![failed.status];
        if threshold > 1 {
            let older = self
                .store
                .execution_list(&ExecutionFilter {
                    job: Some(failed.job_name.clone()),
                    statuses: vec![
                        Status::Succeeded,
                        Status::Failed,
                        Status::TimedOut,
                        Status::Dead,
                    ],
                    before: Some(failed.id),
                    limit: threshold - 1,
                    ..ExecutionFilter::default()
                })
                .await?;
            recent.extend(older.executions.iter().map(|e| e.status));
        }
        let Some(kind) = panda_core::failure_alert(&recent, threshold) else {
            return Ok(None);
        };
        let message = match kind {
            AlertKind::ConsecutiveFailures => format!(
                "{}: {threshold} attempts in a row failed, the last {}",
                job.spec.name,
                describe_end(failed)
            ),
            AlertKind::Dead => format!(
                "{}: gave up after attempt {} ({}); the run is in the dead-letter queue",
                job.spec.name,
                failed.attempt,
                describe_end(failed)
            ),
            _ => format!(
                "{}: attempt {} {}",
                job.spec.name,
                failed.attempt,
                describe_end(failed)
            ),
        };
        self.raise(&job, kind, Some(failed), message).await
    }

    async fn judge_recovery(&self, open: &AlertRecord) -> StoreResult<Option<AlertRecord>> {
        let newest = self
            .store
            .execution_list(&ExecutionFilter {
                job: Some(open.job.clone()),
                statuses: vec![Status::Succeeded],
                limit: 1,
                ..ExecutionFilter::default()
            })
            .await?;
        let Some(success) = newest.executions.first() else {
            return Ok(None);
        };
        let after_alert = success.finished_at.is_some_and(|at| at > open.created_at)
            || open.execution_id.is_some_and(|failed| success.id > failed);
        if !after_alert || success.job_id != open.job_id {
            return Ok(None);
        }
        let job = match self.store.job_get_by_id(open.job_id).await {
            Ok(job) => job,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let message = format!(
            "{}: recovered, {} succeeded after the {} alert",
            job.spec.name, success.id, open.kind
        );
        self.raise_after(
            &job,
            Some(open),
            AlertKind::Recovered,
            Some(success),
            message,
        )
        .await
    }

    /// An instance run that ended and is restarted: a crash loop once the restart that follows
    /// is the [`CRASH_LOOP_RESTARTS`]th since its last healthy run (the restart's attempt less
    /// one, which is the ended run's attempt).
    async fn judge_instance_end(&self, ended: &Execution) -> StoreResult<Option<AlertRecord>> {
        let restarts = ended.attempt;
        if restarts < CRASH_LOOP_RESTARTS || ended.status == Status::Lost {
            return Ok(None);
        }
        let job = match self.store.job_get_by_id(ended.job_id).await {
            Ok(job) => job,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let message = format!(
            "{}: instance {} restarted {restarts} times without a healthy run, the last run {}",
            job.spec.name,
            ended.instance.unwrap_or_default(),
            describe_end(ended)
        );
        self.raise(&job, AlertKind::CrashLoop, Some(ended), message)
            .await
    }

    /// A crash loop is over once the instance's current run has been healthy for the service's
    /// `healthy_after`, the window that also resets its restart backoff.
    async fn judge_instance_recovery(
        &self,
        open: &AlertRecord,
    ) -> StoreResult<Option<AlertRecord>> {
        let Some(alerted) = open.execution_id else {
            return Ok(None);
        };
        let alerted = match self.store.execution_get(alerted).await {
            Ok(execution) => execution,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let Some(index) = alerted.instance else {
            return Ok(None);
        };
        let now = self.clock.now();
        let status = match self.store.service_get(&open.job, now).await {
            Ok(status) => status,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        if status.job.id != open.job_id {
            return Ok(None);
        }
        let Some(service) = status.job.spec.service.as_ref() else {
            return Ok(None);
        };
        let window =
            chrono::Duration::from_std(service.healthy_after).unwrap_or(chrono::Duration::MAX);
        let up = status
            .instances
            .iter()
            .filter(|i| i.index == index)
            .filter_map(|i| i.execution.as_ref())
            .find(|e| {
                e.status == Status::Running
                    && e.id != alerted.id
                    && e.healthy_at.is_some_and(|at| now - at >= window)
            });
        let Some(up) = up else {
            return Ok(None);
        };
        let job = match self.store.job_get_by_id(open.job_id).await {
            Ok(job) => job,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let message = format!(
            "{}: recovered, instance {index} has run healthy for {} ({})",
            job.spec.name,
            panda_core::human::exact(service.healthy_after),
            up.id
        );
        self.raise_after(&job, Some(open), AlertKind::Recovered, Some(up), message)
            .await
    }

    /// Raises `kind` about `job` unless an incident is already open.
    pub(super) async fn raise(
        &self,
        job: &Job,
        kind: AlertKind,
        execution: Option<&Execution>,
        message: String,
    ) -> StoreResult<Option<AlertRecord>> {
        let latest = self.store.alert_latest(job.id).await?;
        if latest
            .as_ref()
            .is_some_and(|a| a.kind != AlertKind::Recovered)
        {
            return Ok(None);
        }
        self.raise_after(job, latest.as_ref(), kind, execution, message)
            .await
    }

    /// Raises the alert that follows `previous` (the job's newest alert, if any): the incident
    /// key is the pair, so whichever node raises it first wins.
    async fn raise_after(
        &self,
        job: &Job,
        previous: Option<&AlertRecord>,
        kind: AlertKind,
        execution: Option<&Execution>,
        message: String,
    ) -> StoreResult<Option<AlertRecord>> {
        let now = self.clock.now();
        let incident = format!(
            "{}:after:{}",
            job.id,
            previous.map_or_else(|| "none".to_owned(), |a| a.id.to_string())
        );
        let log_tail = match execution {
            Some(e) => self.log_tail(e.id).await?,
            None => Vec::new(),
        };
        let body = WebhookBody::new(
            job,
            kind,
            execution,
            &message,
            &log_tail,
            self.config.dashboard_url.as_deref(),
            now,
        )
        .to_value();
        let (webhooks, slack) =
            if job.spec.alerts.webhooks.is_empty() && job.spec.alerts.slack.is_empty() {
                (&self.config.webhooks, &self.config.slack)
            } else {
                (&job.spec.alerts.webhooks, &job.spec.alerts.slack)
            };
        let notifiers = webhooks
            .iter()
            .map(|url| (NotifierKind::Webhook, url.clone()))
            .chain(slack.iter().map(|url| (NotifierKind::Slack, url.clone())))
            .collect();
        let alert = NewAlert {
            incident,
            job_id: job.id,
            job: job.spec.name.to_string(),
            kind,
            execution_id: execution.map(|e| e.id),
            message,
            body,
            notifiers,
        };
        let raised = self.store.alert_raise(&alert, now).await?;
        if let Some(alert) = &raised {
            tracing::warn!(
                job = %alert.job,
                kind = %alert.kind,
                deliveries = alert.deliveries.len(),
                "alert: {}", alert.message
            );
        }
        Ok(raised)
    }

    /// The last lines of an execution's log, as text.
    async fn log_tail(&self, execution: ExecutionId) -> StoreResult<Vec<String>> {
        let chunks = match self
            .store
            .log_tail(execution, u32::try_from(LOG_TAIL_LINES).unwrap_or(20))
            .await
        {
            Ok(chunks) => chunks,
            Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let text: String = chunks
            .iter()
            .map(|c| String::from_utf8_lossy(&c.data))
            .collect();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
        Ok(lines.into_iter().skip(skip).collect())
    }
}

/// How an attempt ended, in a few words.
fn describe_end(execution: &Execution) -> String {
    let how = match (execution.status, execution.exit_code) {
        (Status::TimedOut, _) => "timed out".to_owned(),
        (_, Some(code)) => format!("exited with code {code}"),
        (status, None) => status.to_string(),
    };
    match execution.reason.as_deref() {
        Some(reason) if !reason.is_empty() => format!("{how}: {reason}"),
        _ => how,
    }
}
