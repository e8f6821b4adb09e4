//! The cron watch, a dead-man's switch: each cronjob's latest slot past its grace must have a
//! run that started within the grace (else it was missed or late), each monitor's latest slot
//! past its grace must have had a ping (else it was missed), and no execution may run longer
//! than its job's limit.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use panda_core::{AlertKind, CronSchedule, Execution, Job, MonitorSpec, Status, human};
use panda_store::{
    AlertRecord, AlertStore, ExecutionFilter, HistoryStore, JobKind, JobStore, LogStore,
    MonitorStore, ServiceStore, SlotStore, StoreResult,
};

use super::Alerter;

/// How long before its slot a monitor's ping still counts for it: the clocks of the machine
/// that runs the cron and of Panda's differ a little (never more than the grace).
const PING_EARLY: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// One pass over cron slots and running executions; returns the alerts it raised.
    pub async fn watch(&mut self) -> StoreResult<Vec<AlertRecord>> {
        let now = self.clock.now();
        // Runs a start ping opened and no end ping closed end as timed out (the failure goes
        // through the inbox like any other). A store that fails here fails the slots' reads
        // below too; until then, they need not wait for it.
        if let Err(err) = self.store.monitor_close_stale(now).await {
            tracing::warn!(error = %err, "alerter: could not end monitors' unfinished runs; trying again");
        }
        let jobs = self.store.job_list(JobKind::All).await?;
        let mut raised = Vec::new();
        for job in jobs.iter().filter(|j| j.spec.schedule.is_some()) {
            let alert = match &job.spec.monitor {
                Some(monitor) => self.watch_pings(job, monitor, now).await?,
                None => self.watch_slot(job, now).await?,
            };
            if let Some(alert) = alert {
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
        let key = (
            schedule.cron.clone(),
            schedule.timezone.clone(),
            schedule.offset(job.id),
        );
        let parsed = self
            .schedules
            .entry(key)
            .or_insert_with(|| schedule.fire_times(job.id).ok());
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
                        human::elapsed(late_by(started))
                    ),
                ),
                None if execution.status.is_terminal() => return Ok(None),
                None => (
                    AlertKind::Late,
                    format!(
                        "{}: the run due at {} has not started after {}",
                        job.spec.name,
                        slot_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        human::elapsed(now - slot_at)
                    ),
                ),
            }
        };
        self.raise(job, kind, Some(&execution), message).await
    }

    /// The fire times of `job`'s schedule, parsed once per (expression, zone, offset).
    fn fire_times(&mut self, job: &Job) -> Option<CronSchedule> {
        let schedule = job.spec.schedule.as_ref()?;
        let key = (
            schedule.cron.clone(),
            schedule.timezone.clone(),
            schedule.offset(job.id),
        );
        self.schedules
            .entry(key)
            .or_insert_with(|| schedule.fire_times(job.id).ok())
            .clone()
    }

    /// A monitor's latest slot past its grace must have had a ping (of any kind: a start, a
    /// success, a failure) from [`PING_EARLY`] (at most the grace) before it on; else the slot
    /// was missed.
    async fn watch_pings(
        &mut self,
        job: &Job,
        monitor: &MonitorSpec,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<AlertRecord>> {
        if job.spec.suspended {
            return Ok(None);
        }
        let Some(parsed) = self.fire_times(job) else {
            return Ok(None);
        };
        let grace = chrono::Duration::from_std(monitor.grace).unwrap_or(chrono::Duration::MAX);
        let Some(slot_at) = now
            .checked_sub_signed(grace)
            .and_then(|t| parsed.latest_at_or_before(t))
        else {
            return Ok(None);
        };
        // Slots from before the monitor (or its latest change) are not its to miss.
        if slot_at <= job.updated_at || self.checked_slots.get(&job.id) >= Some(&slot_at) {
            return Ok(None);
        }
        let newest = self
            .store
            .execution_list(&ExecutionFilter {
                job: Some(job.spec.name.to_string()),
                limit: 1,
                ..ExecutionFilter::default()
            })
            .await?;
        let early = chrono::Duration::from_std(PING_EARLY.min(monitor.grace))
            .unwrap_or(chrono::Duration::zero());
        let last_ping = newest
            .executions
            .first()
            .filter(|e| e.job_id == job.id)
            .map(|e| e.created_at);
        self.checked_slots.insert(job.id, slot_at);
        if last_ping.is_some_and(|at| at >= slot_at - early) {
            return Ok(None);
        }
        let since = match last_ping {
            Some(at) => format!("the last ping came {} ago", human::elapsed(now - at)),
            None => "it was never pinged".to_owned(),
        };
        let message = format!(
            "{}: no ping for the run due at {} within its grace of {}; {since}",
            job.spec.name,
            slot_at.format("%Y-%m-%d %H:%M:%S UTC"),
            human::exact(monitor.grace),
        );
        self.raise(job, AlertKind::Missed, None, message).await
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
            human::elapsed(now - started),
            human::elapsed(limit)
        );
        self.raise(job, AlertKind::LongRunning, Some(execution), message)
            .await
    }
}
