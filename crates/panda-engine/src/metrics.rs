//! Panda's metrics: every name, its labels, and one function per event that records it.
//!
//! Recording goes through the [`metrics`] facade: without an installed recorder (tests,
//! `panda-bench`, a node that exports nothing) each call is a no-op. The binary installs a
//! Prometheus recorder and the API renders it at `/metrics`; [`HISTOGRAM_BUCKETS`] are the
//! buckets it must give each histogram, or the exporter would render summaries instead.
//!
//! Counters count what the store recorded, not what was attempted: an execution is counted
//! once its terminal status is written, by whoever wrote it (a worker, or the Rescuer for a
//! lost one).

use chrono::{DateTime, Utc};
use panda_core::{Execution, InstanceState, ServiceStatus};
use panda_store::{Finished, QueueStats};

/// Counter, labels `job` and `status`: executions that reached a terminal status.
pub const EXECUTIONS_FINISHED: &str = "panda_executions_finished_total";
/// Histogram in seconds, label `job`: from claim to the written result of each execution a
/// worker finished (lost ones are not timed: their end is when the lease expired).
pub const EXECUTION_DURATION: &str = "panda_execution_duration_seconds";
/// Gauge, label `queue`: queued executions that are due now.
pub const QUEUE_DEPTH: &str = "panda_queue_depth";
/// Gauge, label `queue`: queued executions waiting for a later time (delayed, in backoff).
pub const QUEUE_WAITING: &str = "panda_queue_waiting";
/// Gauge, label `queue`: executions running now.
pub const QUEUE_RUNNING: &str = "panda_queue_running";
/// Gauge, per queue: 1 while the queue is paused (it accepts work and starts none), else 0.
pub const QUEUE_PAUSED: &str = "panda_queue_paused";
/// Gauge in seconds, label `queue`: how long the longest-waiting due execution has been due.
pub const QUEUE_OLDEST_AGE: &str = "panda_queue_oldest_age_seconds";
/// Histogram in seconds: for each cron slot fired, how late the scheduler recorded it.
pub const SCHEDULE_LAG: &str = "panda_schedule_lag_seconds";
/// Counter: executions whose lease expired and the Rescuer marked lost.
pub const LEASE_RESCUES: &str = "panda_lease_rescues_total";
/// Gauge: results of runs this node has ended and not yet written to the store (a few for
/// milliseconds normally; they pile up while the store is unreachable or full, and are written
/// once it takes them).
pub const FINISHES_PENDING: &str = "panda_finishes_pending";
/// Gauge, labels `service` and `state` (an instance state, as `service get` shows it):
/// instances of each service in each state.
pub const SERVICE_INSTANCES: &str = "panda_service_instances";
/// Counter, label `service`: restarts of the service's instances over its kept history.
pub const SERVICE_RESTARTS: &str = "panda_service_restarts_total";
/// Counter, labels `kind` and `result` (`delivered` or `failed`): alert deliveries.
pub const ALERT_DELIVERIES: &str = "panda_alert_deliveries_total";

/// Upper bounds of [`EXECUTION_DURATION`]'s buckets: 10 ms to an hour (the default timeout).
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
];
/// Upper bounds of [`SCHEDULE_LAG`]'s buckets: on time is under a second; a minute late still
/// counts as on time for the scheduler's policies.
pub const LAG_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Every histogram with its buckets.
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (EXECUTION_DURATION, DURATION_BUCKETS),
    (SCHEDULE_LAG, LAG_BUCKETS),
];

/// Gives every metric its help text. Call once, after installing the recorder.
pub fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(
        EXECUTIONS_FINISHED,
        "Executions that reached a terminal status, by job and status."
    );
    metrics::describe_histogram!(
        EXECUTION_DURATION,
        Unit::Seconds,
        "From claim to written result, of each execution a worker finished, by job."
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Queued executions that are due now.");
    metrics::describe_gauge!(
        FINISHES_PENDING,
        "Results of runs this node ended that wait to be written to the store."
    );
    metrics::describe_gauge!(
        QUEUE_WAITING,
        "Queued executions waiting for a later time (delayed runs, retries in backoff)."
    );
    metrics::describe_gauge!(QUEUE_RUNNING, "Executions running now.");
    metrics::describe_gauge!(
        QUEUE_PAUSED,
        "1 while the queue is paused: it accepts work and starts none."
    );
    metrics::describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "How long the longest-waiting due execution of the queue has been due."
    );
    metrics::describe_histogram!(
        SCHEDULE_LAG,
        Unit::Seconds,
        "For each cron slot fired, from its scheduled instant to when it was recorded."
    );
    metrics::describe_counter!(
        LEASE_RESCUES,
        "Executions whose lease expired without a heartbeat, marked lost."
    );
    metrics::describe_gauge!(
        SERVICE_INSTANCES,
        "Instances of each service, by state (pending, starting, healthy, unhealthy, backing_off, completed, stopping)."
    );
    metrics::describe_counter!(
        SERVICE_RESTARTS,
        "Restarts of each service's instances over its kept history."
    );
    metrics::describe_counter!(
        ALERT_DELIVERIES,
        "Alert deliveries, by kind and result (delivered or failed)."
    );
}

/// A worker's result was written: counts it, and times it from claim to result.
pub fn execution_finished(execution: &Execution) {
    count_finished(execution);
    if let (Some(started), Some(finished)) = (execution.started_at, execution.finished_at) {
        metrics::histogram!(EXECUTION_DURATION, "job" => execution.job_name.clone())
            .record(seconds(finished - started));
    }
}

/// The Rescuer marked an execution lost (or dead, on its last attempt).
pub fn lease_rescued(finished: &Finished) {
    metrics::counter!(LEASE_RESCUES).increment(1);
    count_finished(&finished.execution);
}

fn count_finished(execution: &Execution) {
    metrics::counter!(
        EXECUTIONS_FINISHED,
        "job" => execution.job_name.clone(),
        "status" => execution.status.to_string(),
    )
    .increment(1);
}

/// The scheduler recorded a cron slot as fired at `now`.
pub fn slot_fired(scheduled_at: DateTime<Utc>, now: DateTime<Utc>) {
    metrics::histogram!(SCHEDULE_LAG).record(seconds(now - scheduled_at).max(0.0));
}

/// An alert of `kind` was delivered, or given up on.
pub fn alert_delivery(kind: &str, delivered: bool) {
    let result = if delivered { "delivered" } else { "failed" };
    metrics::counter!(ALERT_DELIVERIES, "kind" => kind.to_owned(), "result" => result).increment(1);
}

/// The queue gauges, set from one reading of [`Store::queue_stats`](panda_store::Store::queue_stats)
/// at `now`. The store lists only queues that hold queued or running executions, so the
/// queues this remembers from earlier readings and that are gone now are set to 0, not left
/// at their last value.
#[derive(Debug, Default)]
pub struct QueueGauges {
    seen: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl QueueGauges {
    /// No queue seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets every queue's gauges from `stats`, read at `now`.
    pub fn set(&self, stats: &[QueueStats], now: DateTime<Utc>) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut emptied = std::mem::take(&mut *seen);
        for queue in stats {
            emptied.remove(&queue.queue);
            let age = queue
                .oldest_due_at
                .map_or(0.0, |due| seconds(now - due).max(0.0));
            set_queue(&queue.queue, queue.due, queue.waiting, queue.running, age);
            metrics::gauge!(QUEUE_PAUSED, "queue" => queue.queue.clone())
                .set(if queue.paused_at.is_some() { 1.0 } else { 0.0 });
            seen.insert(queue.queue.clone());
        }
        for queue in emptied {
            set_queue(&queue, 0, 0, 0, 0.0);
            metrics::gauge!(QUEUE_PAUSED, "queue" => queue.clone()).set(0.0);
            // Still known: a queue at 0 stays listed at 0.
            seen.insert(queue);
        }
    }
}

/// The service gauges, set from one reading of every service's status. A service that is gone
/// since an earlier reading is set to 0 in every state, not left at its last value.
#[derive(Debug, Default)]
pub struct ServiceGauges {
    seen: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl ServiceGauges {
    /// Sets each service's instance counts per state and its restarts from `services`.
    pub fn set(&self, services: &[ServiceStatus]) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut gone = std::mem::take(&mut *seen);
        for service in services {
            let name = service.job.spec.name.to_string();
            gone.remove(&name);
            for state in InstanceState::ALL {
                let count = service
                    .instances
                    .iter()
                    .filter(|i| i.state == state)
                    .count();
                metrics::gauge!(SERVICE_INSTANCES, "service" => name.clone(), "state" => state.as_str())
                    .set(count as f64);
            }
            metrics::counter!(SERVICE_RESTARTS, "service" => name.clone())
                .absolute(service.restarts);
            seen.insert(name);
        }
        for name in gone {
            for state in InstanceState::ALL {
                metrics::gauge!(SERVICE_INSTANCES, "service" => name.clone(), "state" => state.as_str())
                    .set(0.0);
            }
        }
    }
}

fn set_queue(queue: &str, due: u64, waiting: u64, running: u64, oldest_age: f64) {
    metrics::gauge!(QUEUE_DEPTH, "queue" => queue.to_owned()).set(due as f64);
    metrics::gauge!(QUEUE_WAITING, "queue" => queue.to_owned()).set(waiting as f64);
    metrics::gauge!(QUEUE_RUNNING, "queue" => queue.to_owned()).set(running as f64);
    metrics::gauge!(QUEUE_OLDEST_AGE, "queue" => queue.to_owned()).set(oldest_age);
}

fn seconds(duration: chrono::Duration) -> f64 {
    duration
        .num_microseconds()
        .map_or(f64::MAX, |us| us as f64 / 1e6)
}

/// Sets [`FINISHES_PENDING`].
pub(crate) fn finishes_pending(count: usize) {
    metrics::gauge!(FINISHES_PENDING).set(count as f64);
}
