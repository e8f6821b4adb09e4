//! The health of a running service instance: its probe, run every `interval` within its
//! `timeout`, and what the results mean.
//!
//! - A success is reported healthy (when that changes), and ends the start period early.
//! - A failure during the start period does not count; after it, each failure counts and is
//!   reported unhealthy (when that changes); `retries` in a row give the instance up: it is
//!   stopped and finished as failed, and the store restarts it.
//! - Without a health check, running is healthy: that is reported once, right after the start.
//!
//! Each store write runs as a task of its own, never inside a `select!` that could drop it
//! half-way (a dropped SQLite write can keep the write lock). A write refused as stale means
//! the lease moved on: the copy here must stop at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use panda_core::HealthCheck;
use panda_runtime::{RunSpec, Runtime};
use panda_store::{Lease, StoreError};
use tokio::sync::mpsc;

use super::Context;

/// What the health watch decided about an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Too many failures in a row: stop it and finish it as failed, for this reason.
    Failed(String),
    /// A health write was refused as stale: another node holds the lease now.
    LeaseLost,
}

/// What one probe result changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Noted {
    /// Report this health to the store (it changed).
    pub(super) report: Option<bool>,
    /// Give the instance up, for this reason.
    pub(super) give_up: Option<String>,
}

/// The count of a health check's results over one run of an instance. Pure: the caller says
/// how long the instance has been running.
#[derive(Debug, Clone)]
pub(super) struct Counter {
    retries: u32,
    start_period: Duration,
    /// A success ended the start period early.
    started: bool,
    /// Counted failures in a row.
    failures: u32,
    /// The health last reported to the store.
    reported: Option<bool>,
}

impl Counter {
    pub(super) fn new(check: &HealthCheck) -> Self {
        Self {
            retries: check.retries.max(1),
            start_period: check.start_period,
            started: false,
            failures: 0,
            reported: None,
        }
    }

    /// Notes one probe result, `running` after the instance's start.
    pub(super) fn note(&mut self, running: Duration, result: Result<(), String>) -> Noted {
        match result {
            Ok(()) => {
                self.started = true;
                self.failures = 0;
                Noted {
                    report: self.change(true),
                    give_up: None,
                }
            }
            Err(_) if !self.started && running < self.start_period => Noted::default(),
            Err(err) => {
                self.failures += 1;
                let report = self.change(false);
                let give_up = (self.failures >= self.retries).then(|| {
                    format!(
                        "health check failed {} times in a row: {err}",
                        self.failures
                    )
                });
                Noted { report, give_up }
            }
        }
    }

    /// The last report did not reach the store: report again at the next result.
    pub(super) fn unreport(&mut self) {
        self.reported = None;
    }

    fn change(&mut self, healthy: bool) -> Option<bool> {
        (self.reported != Some(healthy)).then(|| {
            self.reported = Some(healthy);
            healthy
        })
    }
}

/// Watches one running instance until its health gives it up or its lease is lost, and says
/// so on `verdicts`; without a check, reports it healthy once and ends. Runs as a task of its
/// own, aborted when the run ends.
pub(super) async fn watch(
    context: Arc<Context>,
    runtime: Arc<dyn Runtime>,
    spec: RunSpec,
    lease: Lease,
    check: Option<HealthCheck>,
    verdicts: mpsc::Sender<Verdict>,
) {
    let Some(check) = check else {
        // Running is healthy. Tried until the store takes it: rollouts and the restart
        // backoff's reset read it.
        loop {
            match report(&context, &lease, true).await {
                Reported::Done => return,
                Reported::Stale => {
                    let _ = verdicts.send(Verdict::LeaseLost).await;
                    return;
                }
                Reported::Failed => tokio::time::sleep(context.config.heartbeat_every).await,
            }
        }
    };
    let started = Instant::now();
    let mut counter = Counter::new(&check);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + check.interval, check.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = runtime.probe(&spec, &check.probe, check.timeout).await;
        if let Err(err) = &result {
            tracing::debug!(execution = %lease.execution_id, %err, "health check failed");
        }
        let noted = counter.note(started.elapsed(), result);
        if let Some(healthy) = noted.report {
            match report(&context, &lease, healthy).await {
                Reported::Done => {}
                Reported::Stale => {
                    let _ = verdicts.send(Verdict::LeaseLost).await;
                    return;
                }
                Reported::Failed => counter.unreport(),
            }
        }
        if let Some(reason) = noted.give_up {
            let _ = verdicts.send(Verdict::Failed(reason)).await;
            return;
        }
    }
}

/// What became of a health report.
enum Reported {
    Done,
    Stale,
    Failed,
}

/// Writes the instance's health, fenced by its lease, in a task of its own.
async fn report(context: &Arc<Context>, lease: &Lease, healthy: bool) -> Reported {
    let store = Arc::clone(&context.store);
    let now = context.clock.now();
    let (id, token) = (lease.execution_id, lease.token);
    let write = tokio::spawn(async move { store.service_health(id, token, healthy, now).await });
    match write.await {
        Ok(Ok(())) => Reported::Done,
        Ok(Err(StoreError::Stale)) => Reported::Stale,
        Ok(Err(err)) => {
            tracing::warn!(execution = %id, %err, healthy, "the instance's health could not be written; trying again");
            Reported::Failed
        }
        Err(err) => {
            tracing::warn!(execution = %id, %err, "the health write failed");
            Reported::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use panda_core::Probe;

    use super::*;

    fn check(retries: u32, start_period: Duration) -> HealthCheck {
        HealthCheck {
            retries,
            start_period,
            ..HealthCheck::new(Probe::Command {
                command: "true".into(),
            })
        }
    }

    fn fail() -> Result<(), String> {
        Err("exit 1".into())
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut counter = Counter::new(&check(2, 30 * S));
        assert_eq!(counter.note(S, fail()), Noted::default());
        assert_eq!(counter.note(20 * S, fail()), Noted::default());
        // Past the start period, they count.
        assert_eq!(
            counter.note(31 * S, fail()),
            Noted {
                report: Some(false),
                give_up: None
            }
        );
        let noted = counter.note(32 * S, fail());
        assert_eq!(noted.report, None, "unhealthy was reported already");
        assert_eq!(
            noted.give_up.as_deref(),
            Some("health check failed 2 times in a row: exit 1")
        );
    }

    #[test]
    fn a_success_ends_the_start_period_early_and_is_reported_once() {
        let mut counter = Counter::new(&check(3, 60 * S));
        assert_eq!(counter.note(S, Ok(())).report, Some(true));
        assert_eq!(counter.note(2 * S, Ok(())).report, None);
        // The start period is over: this failure counts though it is early.
        assert_eq!(counter.note(3 * S, fail()).report, Some(false));
    }

    #[test]
    fn a_success_resets_the_failures_in_a_row() {
        let mut counter = Counter::new(&check(3, Duration::ZERO));
        counter.note(S, fail());
        counter.note(2 * S, fail());
        assert_eq!(counter.note(3 * S, Ok(())).report, Some(true));
        counter.note(4 * S, fail());
        assert_eq!(counter.note(5 * S, fail()).give_up, None);
        assert!(counter.note(6 * S, fail()).give_up.is_some());
    }

    #[test]
    fn a_report_the_store_did_not_take_is_made_again() {
        let mut counter = Counter::new(&check(5, Duration::ZERO));
        assert_eq!(counter.note(S, Ok(())).report, Some(true));
        counter.unreport();
        assert_eq!(counter.note(2 * S, Ok(())).report, Some(true));
    }
}
