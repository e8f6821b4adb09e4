//! The Alerter: turns what happened to jobs into alerts, and alerts into webhook deliveries.
//!
//! It reads the store only, so it sees every node's work and survives any node's crash:
//!
//! - **Failures** come from the store's alert inbox, where each failed attempt is put in the
//!   transaction that records it. The job's latest attempts decide whether its threshold
//!   ([`AlertPolicy::after_failures`](panda_core::AlertPolicy::after_failures)) is reached.
//! - **Recoveries**: a job with an open incident whose newest success came after the alert.
//! - **Crash loops**: a service instance's runs that end and restart come through the same
//!   inbox; none raises `failed`, but the [`CRASH_LOOP_RESTARTS`](panda_core::CRASH_LOOP_RESTARTS)th
//!   restart in a row without a healthy run raises one `crash_loop`, and `recovered` follows
//!   once the instance's current run has been healthy for the service's `healthy_after`.
//! - **Missed and late cron slots**, like a dead-man's switch: each cronjob's latest slot that
//!   is older than its grace must have a run that started within the grace.
//! - **Monitors' missed slots**: each monitor's latest slot older than its grace must have had
//!   a ping (its runs happen elsewhere); a run a start ping opened and no end ping closed
//!   within the monitor's timeout is ended as timed out, a failure like any other.
//! - **Long runs**: running executions older than the job's limit.
//!
//! One alert per incident: while a job's newest alert is not a recovery, nothing else about
//! that job is raised. Every node runs an Alerter; the incident key (the job and the alert it
//! follows) is unique in the store, so two nodes that judge the same event raise it once.
//!
//! Deliveries run in their own tasks, each with a timeout, and are retried with backoff and
//! full jitter; a webhook that hangs or fails slows nothing but its own delivery.
//!
//! Judging failures and recoveries, and raising an alert, is [`incidents`]; the cron watch
//! (missed, late, long-running) is [`cron_watch`]; sending is [`delivery`], and what is sent
//! is [`payload`].

mod cron_watch;
mod delivery;
mod incidents;
mod payload;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use panda_core::{Clock, CronSchedule, JobId, RetryPolicy};
use panda_store::{
    AlertStore, HistoryStore, JobStore, LogStore, MonitorStore, ServiceStore, SlotStore, Store,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use delivery::{SIGNATURE_HEADER, signature};

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
/// (jobs, their executions, slots, logs, services and monitors' open runs): any store with
/// those traits will do (the server's is its whole [`Store`]).
#[derive(Debug)]
pub struct Alerter<S: ?Sized = dyn Store> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    config: Arc<AlerterConfig>,
    http: reqwest::Client,
    /// The latest slot checked per cronjob, so each slot is judged once by this node.
    checked_slots: HashMap<JobId, DateTime<Utc>>,
    /// Parsed schedules by (expression, zone).
    schedules: HashMap<(String, String, std::time::Duration), Option<CronSchedule>>,
    in_flight: Arc<Semaphore>,
    deliveries: TaskTracker,
}

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
        self.wait_for_deliveries().await;
    }
}
