//! The Alerter: turns what happened to jobs into alerts, and alerts into webhook deliveries.
//!
//! It reads the store only, so it sees every node's work and survives any node's crash:
//!
//! - **Failures** come from the store's alert inbox, where each failed attempt is put in the
//!   transaction that records it. The job's latest attempts decide whether its threshold
//!   ([`AlertPolicy::after_failures`]) is reached.
//! - **Recoveries**: a job with an open incident whose newest success came after the alert.
//! - **Missed and late cron slots**, like a dead-man's switch: each cronjob's latest slot that
//!   is older than its grace must have a run that started within the grace.
//! - **Long runs**: running executions older than the job's limit.
//!
//! One alert per incident: while a job's newest alert is not a recovery, nothing else about
//! that job is raised. Every node runs an Alerter; the incident key (the job and the alert it
//! follows) is unique in the store, so two nodes that judge the same event raise it once.
//!
//! Deliveries run in their own tasks, each with a timeout, and are retried with backoff and
//! full jitter; a webhook that hangs or fails slows nothing but its own delivery.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use panda_core::{
    AlertKind, Clock, CronSchedule, Execution, ExecutionId, Job, JobId, NotifierKind, RetryPolicy,
    Status,
};
use panda_store::{
    AlertRecord, AlertStore, DeliveryOutcome, DueDelivery, ExecutionFilter, HistoryStore, JobKind,
    JobStore, LogStore, NewAlert, SlotStore, Store, StoreError, StoreResult,
};
use sha2::Sha256;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The header carrying a generic webhook's signature: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Panda-Signature";

/// Log lines an alert carries.
const LOG_TAIL_LINES: usize = 20;

/// Failed attempts judged per pass.
const INBOX_BATCH: u32 = 500;

/// How the Alerter behaves; the defaults suit production.
#[derive(Debug, Clone)]
pub struct AlerterConfig {
    /// Generic webhooks for jobs that name none.
    pub webhooks: Vec<String>,
    /// Slack-compatible webhooks for jobs that name none.
    pub slack: Vec<String>,
    /// Signs generic webhook bodies ([`SIGNATURE_HEADER`]) when set.
    pub signing_secret: Option<String>,
    /// The dashboard's base URL, for links in alerts.
    pub dashboard_url: Option<String>,
    /// How often it looks for events and due deliveries.
    pub interval: Duration,
    /// How often it checks cron slots and long runs (every node does, so not too often).
    pub watch_interval: Duration,
    /// How long after start-up before cron slots are checked: the scheduler catches up first.
    pub watch_delay: Duration,
    /// How long one delivery attempt may take.
    pub request_timeout: Duration,
    /// Attempts per delivery and the backoff between them.
    pub retry: RetryPolicy,
    /// Deliveries in flight at once.
    pub max_in_flight: usize,
}

impl Default for AlerterConfig {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            slack: Vec::new(),
            signing_secret: None,
            dashboard_url: None,
            interval: Duration::from_secs(1),
            watch_interval: Duration::from_secs(10),
            watch_delay: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 8,
                backoff_base: Duration::from_secs(2),
                backoff_cap: Duration::from_secs(600),
            },
            max_in_flight: 16,
        }
    }
}

/// The Alerter service. See the module docs. It writes alerts and reads what they are about
/// (jobs, their executions, slots and logs): any store with those five traits will do (the
/// server's is its whole [`Store`]).
#[derive(Debug)]
pub struct Alerter<S: ?Sized = dyn Store> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    config: Arc<AlerterConfig>,
    http: reqwest::Client,
    /// The latest slot checked per cronjob, so each slot is judged once by this node.
    checked_slots: HashMap<JobId, DateTime<Utc>>,
    /// Parsed schedules by (expression, zone).
    schedules: HashMap<(String, String), Option<CronSchedule>>,
    in_flight: Arc<Semaphore>,
    deliveries: TaskTracker,
}

impl<S> Alerter<S>
where
    S: AlertStore + HistoryStore + JobStore + LogStore + SlotStore + ?Sized + 'static,
{
    /// An alerter over `store`.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built (no TLS roots).
    pub fn new(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        config: AlerterConfig,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("panda/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            store,
            clock,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config: Arc::new(config),
            http,
            checked_slots: HashMap::new(),
            schedules: HashMap::new(),
            deliveries: TaskTracker::new(),
        })
    }

    /// One pass over failures and recoveries; returns the alerts it raised.
    pub async fn judge(&mut self) -> StoreResult<Vec<AlertRecord>> {
        let mut raised = Vec::new();
        let inbox = self.store.alert_inbox(INBOX_BATCH).await?;
        let mut done = Vec::with_capacity(inbox.len());
        for failed in &inbox {
            if let Some(alert) = self.judge_failure(failed).await? {
                raised.push(alert);
            }
            done.push(failed.id);
        }
        self.store.alert_inbox_done(&done).await?;
        for open in self.store.alert_open().await? {
            if let Some(alert) = self.judge_recovery(&open).await? {
                raised.push(alert);
            }
        }
        Ok(raised)
    }

    /// One pass over cron slots and running executions; returns the alerts it raised.
    pub async fn watch(&mut self) -> StoreResult<Vec<AlertRecord>> {
        let now = self.clock.now();
        let jobs = self.store.job_list(JobKind::All).await?;
        let mut raised = Vec::new();
        for job in jobs.iter().filter(|j| j.spec.schedule.is_some()) {
            if let Some(alert) = self.watch_slot(job, now).await? {
                raised.push(alert);
            }
        }
        let watched: HashMap<&str, &Job> = jobs
            .iter()
            .filter(|j| j.spec.alerts.running_longer_than.is_some())
            .map(|j| (j.spec.name.as_str(), j))
            .collect();
        if !watched.is_empty() {
            let running = self
                .store
                .execution_list(&ExecutionFilter {
                    statuses: vec![Status::Running],
                    limit: panda_store::MAX_PAGE_SIZE,
                    ..ExecutionFilter::default()
                })
                .await?;
            for execution in &running.executions {
                let Some(job) = watched.get(execution.job_name.as_str()) else {
                    continue;
                };
                if let Some(alert) = self.watch_run(job, execution, now).await? {
                    raised.push(alert);
                }
            }
        }
        Ok(raised)
    }

    /// Starts an attempt for each due delivery (up to the in-flight limit) and returns how
    /// many it started; they finish in the background.
    pub async fn deliver(&self) -> StoreResult<usize> {
        let free = self.in_flight.available_permits();
        if free == 0 {
            return Ok(0);
        }
        // Held long enough for the request to time out and be recorded.
        let hold = self.config.request_timeout * 2 + Duration::from_secs(5);
        let due = self
            .store
            .alert_deliveries_due(
                self.clock.now(),
                u32::try_from(free).unwrap_or(u32::MAX),
                hold,
            )
            .await?;
        let started = due.len();
        for item in due {
            let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else {
                break;
            };
            let store = Arc::clone(&self.store);
            let clock = Arc::clone(&self.clock);
            let config = Arc::clone(&self.config);
            let http = self.http.clone();
            self.deliveries.spawn(async move {
                let _permit = permit;
                attempt_delivery(&*store, &*clock, &config, &http, item).await;
            });
        }
        Ok(started)
    }

    /// Waits for the delivery attempts under way.
    pub async fn settle(&self) {
        self.deliveries.close();
        self.deliveries.wait().await;
        self.deliveries.reopen();
    }

    /// Runs until `shutdown`, then lets attempts under way finish (each has a timeout).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let started = tokio::time::Instant::now();
        let mut every = tokio::time::interval(self.config.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_watch: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            if let Err(err) = self.judge().await {
                tracing::warn!(error = %err, "alerter: could not judge failures; trying again");
            }
            let watch_due = started.elapsed() >= self.config.watch_delay
                && last_watch.is_none_or(|at| at.elapsed() >= self.config.watch_interval);
            if watch_due {
                last_watch = Some(tokio::time::Instant::now());
                if let Err(err) = self.watch().await {
                    tracing::warn!(error = %err, "alerter: could not check cron slots; trying again");
                }
            }
            if let Err(err) = self.deliver().await {
                tracing::warn!(error = %err, "alerter: could not read due deliveries; trying again");
            }
        }
        self.settle().await;
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

    async fn watch_slot(
        &mut self,
        job: &Job,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<AlertRecord>> {
        let Some(schedule) = job.spec.schedule.as_ref() else {
            return Ok(None);
        };
        if job.spec.suspended {
            return Ok(None);
        }
        let grace = job.spec.alerts.late_after();
        let key = (schedule.cron.clone(), schedule.timezone.clone());
        let parsed = self
            .schedules
            .entry(key)
            .or_insert_with(|| CronSchedule::parse(&schedule.cron, &schedule.timezone).ok());
        let Some(parsed) = parsed.as_ref() else {
            return Ok(None);
        };
        let Some(slot_at) = chrono::Duration::from_std(grace)
            .ok()
            .and_then(|g| parsed.latest_at_or_before(now - g))
        else {
            return Ok(None);
        };
        // Slots from before the job (or its latest change) are not its to miss.
        if slot_at <= job.updated_at || self.checked_slots.get(&job.id) >= Some(&slot_at) {
            return Ok(None);
        }
        self.checked_slots.insert(job.id, slot_at);
        let slots = self.store.slot_list(job.id, 50).await?;
        let Some(slot) = slots.iter().find(|s| s.scheduled_at == slot_at) else {
            let message = format!(
                "{}: the run due at {} did not happen: no node recorded it (were they all down?)",
                job.spec.name,
                slot_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            return self.raise(job, AlertKind::Missed, None, message).await;
        };
        let execution = self.store.execution_get(slot.execution_id).await?;
        let late_by = |started: DateTime<Utc>| started - slot_at;
        let grace_chrono = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let (kind, message) = if !slot.fired {
            let reason = execution.reason.as_deref().unwrap_or("skipped");
            if reason == panda_core::SkipReason::Suspended.to_string() {
                return Ok(None);
            }
            (
                AlertKind::Missed,
                format!(
                    "{}: the run due at {} was skipped: {reason}",
                    job.spec.name,
                    slot_at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            )
        } else {
            match execution.started_at {
                Some(started) if late_by(started) <= grace_chrono => return Ok(None),
                Some(started) => (
                    AlertKind::Late,
                    format!(
                        "{}: the run due at {} started {} late",
                        job.spec.name,
                        slot_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        short(late_by(started))
                    ),
                ),
                None if execution.status.is_terminal() => return Ok(None),
                None => (
                    AlertKind::Late,
                    format!(
                        "{}: the run due at {} has not started after {}",
                        job.spec.name,
                        slot_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        short(now - slot_at)
                    ),
                ),
            }
        };
        self.raise(job, kind, Some(&execution), message).await
    }

    async fn watch_run(
        &self,
        job: &Job,
        execution: &Execution,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<AlertRecord>> {
        let (Some(limit), Some(started)) =
            (job.spec.alerts.running_longer_than, execution.started_at)
        else {
            return Ok(None);
        };
        let limit = chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX);
        if now - started <= limit {
            return Ok(None);
        }
        let message = format!(
            "{}: {} has been running for {}, longer than {}",
            job.spec.name,
            execution.id,
            short(now - started),
            short(limit)
        );
        self.raise(job, AlertKind::LongRunning, Some(execution), message)
            .await
    }

    /// Raises `kind` about `job` unless an incident is already open.
    async fn raise(
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
        let body = alert_body(
            job,
            kind,
            execution,
            &message,
            &log_tail,
            self.config.dashboard_url.as_deref(),
            now,
        );
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

/// A short duration: `45s`, `3m04s`, `2h05m`.
fn short(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The JSON a generic webhook receives.
fn alert_body(
    job: &Job,
    kind: AlertKind,
    execution: Option<&Execution>,
    message: &str,
    log_tail: &[String],
    dashboard: Option<&str>,
    now: DateTime<Utc>,
) -> serde_json::Value {
    let dashboard = dashboard.map(|d| d.trim_end_matches('/'));
    let link = match (dashboard, execution) {
        (Some(base), Some(e)) => Some(format!("{base}/executions/{}", e.id)),
        (Some(base), None) => Some(format!("{base}/jobs/{}", job.spec.name)),
        (None, _) => None,
    };
    serde_json::json!({
        "event": kind.as_str(),
        "job": job.spec.name.as_str(),
        "message": message,
        "at": now,
        "execution": execution.map(|e| serde_json::json!({
            "id": e.id,
            "status": e.status.as_str(),
            "attempt": e.attempt,
            "trigger": e.trigger.as_str(),
            "scheduled_at": e.scheduled_at,
            "started_at": e.started_at,
            "finished_at": e.finished_at,
            "duration_ms": e.started_at.zip(e.finished_at).map(|(s, f)| (f - s).num_milliseconds()),
            "exit_code": e.exit_code,
            "reason": e.reason,
        })),
        "log_tail": log_tail,
        "dashboard_url": link,
    })
}

/// The body a Slack-compatible webhook receives.
fn slack_body(alert: &AlertRecord) -> serde_json::Value {
    let icon = match alert.kind {
        AlertKind::Recovered => ":white_check_mark:",
        AlertKind::Late | AlertKind::LongRunning => ":warning:",
        _ => ":x:",
    };
    let mut text = format!("{icon} *{}* {}", alert.kind, alert.message);
    if let Some(link) = alert.body.get("dashboard_url").and_then(|v| v.as_str()) {
        let _ = write!(text, "\n<{link}|Open in Panda>");
    }
    let tail: Vec<&str> = alert
        .body
        .get("log_tail")
        .and_then(|v| v.as_array())
        .map(|lines| lines.iter().filter_map(|l| l.as_str()).collect())
        .unwrap_or_default();
    if !tail.is_empty() {
        let _ = write!(text, "\n```{}```", tail.join("\n"));
    }
    serde_json::json!({ "text": text })
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One attempt of one delivery, recorded whatever happens.
async fn attempt_delivery(
    store: &(impl AlertStore + ?Sized),
    clock: &dyn Clock,
    config: &AlerterConfig,
    http: &reqwest::Client,
    due: DueDelivery,
) {
    let DueDelivery { delivery, alert } = due;
    let body = match delivery.notifier {
        NotifierKind::Webhook => alert.body.clone(),
        NotifierKind::Slack => slack_body(&alert),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut request = http
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Panda-Event", alert.kind.as_str())
        .header("X-Panda-Delivery", delivery.id.to_string());
    if delivery.notifier == NotifierKind::Webhook
        && let Some(secret) = &config.signing_secret
    {
        request = request.header(SIGNATURE_HEADER, signature(secret, &bytes));
    }
    let error = match request.body(bytes).send().await {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("HTTP {}", response.status())),
        Err(err) if err.is_timeout() => Some(format!(
            "no answer within {}",
            humantime::format_duration(config.request_timeout)
        )),
        // Recorded and shown: without the URL, whose path may be the endpoint's credential.
        Err(err) => Some(error_chain(&err.without_url())),
    };
    let now = clock.now();
    let outcome = match error {
        None => DeliveryOutcome::Delivered,
        Some(error) => {
            let wait = config
                .retry
                .retry_after(delivery.attempts, &mut rand::rng())
                .and_then(|wait| chrono::Duration::from_std(wait).ok());
            match wait {
                Some(wait) => DeliveryOutcome::Retry {
                    error,
                    at: now + wait,
                },
                None => DeliveryOutcome::GaveUp { error },
            }
        }
    };
    match &outcome {
        DeliveryOutcome::Delivered => crate::metrics::alert_delivery(alert.kind.as_str(), true),
        DeliveryOutcome::GaveUp { .. } => {
            crate::metrics::alert_delivery(alert.kind.as_str(), false)
        }
        DeliveryOutcome::Retry { .. } => {}
    }
    match &outcome {
        DeliveryOutcome::Delivered => tracing::info!(
            alert = %alert.id, url = %delivery.url, attempt = delivery.attempts, "alert delivered"
        ),
        DeliveryOutcome::Retry { error, at } => tracing::warn!(
            alert = %alert.id, url = %delivery.url, attempt = delivery.attempts, %error,
            retry_at = %at, "alert delivery failed; will retry"
        ),
        DeliveryOutcome::GaveUp { error } => tracing::error!(
            alert = %alert.id, url = %delivery.url, attempt = delivery.attempts, %error,
            "alert delivery failed for the last time"
        ),
    }
    if let Err(err) = store
        .alert_delivery_record(delivery.id, &outcome, now)
        .await
    {
        // Not recorded: the hold runs out and the delivery is attempted again.
        tracing::warn!(delivery = %delivery.id, error = %err, "could not record an alert delivery");
    }
}

/// An error with its causes: reqwest's own message rarely says what went wrong.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("an RFC 3339 instant")
    }

    /// A job whose third attempt of a run failed with exit code 3, and that attempt.
    fn failed_run() -> (Job, Execution) {
        let job_id: JobId = "01900000-0000-7000-8000-000000000001".parse().expect("id");
        let job = Job {
            id: job_id,
            spec: panda_core::JobSpec::new(
                panda_core::JobName::new("reports").expect("name"),
                panda_core::RuntimeSpec::Process {
                    argv: vec!["true".into()],
                },
            ),
            created_at: at("2026-03-01T11:00:00Z"),
            updated_at: at("2026-03-01T11:00:00Z"),
        };
        let id: ExecutionId = "01900000-0000-7000-8000-000000000003".parse().expect("id");
        let execution = Execution {
            id,
            root_id: "01900000-0000-7000-8000-000000000002".parse().expect("id"),
            job_id,
            job_name: "reports".into(),
            queue: "default".into(),
            priority: 0,
            status: Status::Dead,
            trigger: panda_core::Trigger::Retry,
            attempt: 3,
            retry: RetryPolicy::triggered_default(),
            concurrency: panda_core::ConcurrencyPolicy::Allow,
            max_running: None,
            idempotency_key: None,
            payload: None,
            env: std::collections::BTreeMap::new(),
            scheduled_at: Some(at("2026-03-01T12:00:00Z")),
            run_at: at("2026-03-01T12:00:00Z"),
            created_at: at("2026-03-01T12:00:00Z"),
            started_at: Some(at("2026-03-01T12:00:01Z")),
            finished_at: Some(at("2026-03-01T12:00:03.250Z")),
            worker_id: Some("w1".into()),
            lease_expires_at: None,
            cancel_requested: false,
            exit_code: Some(3),
            reason: Some("disk full".into()),
            image_digest: None,
        };
        (job, execution)
    }

    fn alert(kind: AlertKind, message: &str, body: serde_json::Value) -> AlertRecord {
        AlertRecord {
            id: ExecutionId::new().into(),
            job_id: JobId::new(),
            job: "reports".into(),
            kind,
            execution_id: None,
            message: message.into(),
            body,
            created_at: at("2026-03-01T12:00:05Z"),
            deliveries: Vec::new(),
        }
    }

    #[test]
    fn an_alert_about_an_execution_has_these_webhook_and_slack_bodies() {
        let (job, execution) = failed_run();
        let message = "reports: gave up after attempt 3 (exited with code 3: disk full); the run is in the dead-letter queue";
        let body = alert_body(
            &job,
            AlertKind::Dead,
            Some(&execution),
            message,
            &["line one".to_owned(), "line two".to_owned()],
            Some("http://panda.example/"),
            at("2026-03-01T12:00:05Z"),
        );
        assert_eq!(
            serde_json::to_string(&body).expect("JSON"),
            concat!(
                r#"{"at":"2026-03-01T12:00:05Z","#,
                r#""dashboard_url":"http://panda.example/executions/01900000-0000-7000-8000-000000000003","#,
                r#""event":"dead","#,
                r#""execution":{"attempt":3,"duration_ms":2250,"exit_code":3,"#,
                r#""finished_at":"2026-03-01T12:00:03.250Z","#,
                r#""id":"01900000-0000-7000-8000-000000000003","reason":"disk full","#,
                r#""scheduled_at":"2026-03-01T12:00:00Z","started_at":"2026-03-01T12:00:01Z","#,
                r#""status":"dead","trigger":"retry"},"#,
                r#""job":"reports","log_tail":["line one","line two"],"#,
                r#""message":"reports: gave up after attempt 3 (exited with code 3: disk full); the run is in the dead-letter queue"}"#,
            )
        );
        let slack = slack_body(&alert(AlertKind::Dead, message, body));
        assert_eq!(
            serde_json::to_string(&slack).expect("JSON"),
            concat!(
                r#"{"text":":x: *dead* reports: gave up after attempt 3 (exited with code 3: disk full); "#,
                r#"the run is in the dead-letter queue\n<http://panda.example/executions/01900000-0000-7000-8000-000000000003|Open in Panda>"#,
                r#"\n```line one\nline two```"}"#,
            )
        );
    }

    #[test]
    fn an_alert_without_an_execution_or_a_dashboard_has_these_webhook_and_slack_bodies() {
        let (job, _) = failed_run();
        let message = "reports: the run due at 2026-03-01 12:00:00 UTC did not happen";
        let body = alert_body(
            &job,
            AlertKind::Missed,
            None,
            message,
            &[],
            None,
            at("2026-03-01T12:05:00Z"),
        );
        assert_eq!(
            serde_json::to_string(&body).expect("JSON"),
            concat!(
                r#"{"at":"2026-03-01T12:05:00Z","dashboard_url":null,"event":"missed","#,
                r#""execution":null,"job":"reports","log_tail":[],"#,
                r#""message":"reports: the run due at 2026-03-01 12:00:00 UTC did not happen"}"#,
            )
        );
        let slack = slack_body(&alert(AlertKind::Missed, message, body));
        assert_eq!(
            serde_json::to_string(&slack).expect("JSON"),
            r#"{"text":":x: *missed* reports: the run due at 2026-03-01 12:00:00 UTC did not happen"}"#
        );
        let late = slack_body(&alert(
            AlertKind::Late,
            "reports: late",
            serde_json::json!({}),
        ));
        assert_eq!(
            serde_json::to_string(&late).expect("JSON"),
            r#"{"text":":warning: *late* reports: late"}"#
        );
    }

    #[test]
    fn short_durations_read_like_the_cli() {
        assert_eq!(short(chrono::Duration::seconds(45)), "45s");
        assert_eq!(short(chrono::Duration::seconds(184)), "3m04s");
        assert_eq!(short(chrono::Duration::seconds(7500)), "2h05m");
    }
}
