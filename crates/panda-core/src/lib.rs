//! Panda's vocabulary.
//!
//! Everything else in Panda is a loop around the store; this crate names what those loops move
//! around: [`Job`] definitions, [`Execution`]s and their [`Status`] state machine, the
//! [`RetryPolicy`], and the [`Clock`] every time-dependent decision reads from.
//!
//! Two decisions a newcomer must know:
//!
//! - **No I/O, no async.** Everything here is a pure function of its inputs, so the scheduler,
//!   the retry logic and the state machine are table-tested with fixed instants and a seeded RNG.
//!   The one exception is a declaration: [`LogStore`], with [`StoreError`], lives here so that
//!   the runtimes write logs without depending on the store that implements it.
//! - **Time is injected.** Code never calls `Utc::now()` directly; it asks a [`Clock`], which is
//!   a [`SystemClock`] in production and a [`TestClock`] in tests.

mod alert;
pub mod api;
mod chain;
mod clock;
mod cron;
mod due;
mod execution;
pub mod human;
mod ids;
mod job;
mod rate;
mod retry;
mod service;
mod store;
mod validate;

pub use alert::{
    AlertKind, AlertPolicy, DEFAULT_LATE_AFTER, DeliveryState, MAX_LATE_AFTER, NotifierKind,
    failure_alert, validate_webhook_url,
};
pub use chain::{MAX_UPSTREAMS, RunEnd, Upstream, cycle_error, find_cycle};
pub use clock::{Clock, SystemClock, TestClock};
pub use cron::{CronError, CronSchedule, Slots};
pub use due::{
    CATCH_UP_ALL_CAP, Decision, MAX_SLOTS_PER_DECISION, ON_TIME_GRACE, SkipReason, Verdict, decide,
    decide_paused,
};
pub use execution::{
    Execution, Status, Trigger, UPSTREAM_EXECUTION_ENV, UPSTREAM_JOB_ENV, UPSTREAM_STATUS_ENV,
};
pub use ids::{ExecutionId, JobId, ParseIdError};
pub use job::{
    CatchUp, ConcurrencyPolicy, DEFAULT_TIMEOUT, Job, JobKind, JobName, JobSpec, KeyExpr, Limits,
    MAX_AGE_LIMIT, MAX_CPUS, MAX_GRACE, MAX_KEEP, MAX_KEY_BYTES, MAX_MEMORY_BYTES,
    MAX_RUNNING_LIMIT, MAX_STARTING_DEADLINE, MAX_TIMEOUT, MonitorSpec, RuntimeSpec, Schedule,
};
pub use rate::{MAX_RATE_STARTS, MAX_RATE_WINDOW, MIN_RATE_WINDOW, RateLimit};
pub use retry::RetryPolicy;
pub use service::{
    CRASH_LOOP_RESTARTS, DEFAULT_LOG_KEEP_BYTES, HealthCheck, Instance, InstanceState,
    MAX_LOG_KEEP_BYTES, MAX_REPLICAS, MAX_SERVICE_DURATION, Probe, RestartPolicy, Revision,
    Rollout, RolloutPolicy, RolloutState, STOP_SIGNALS, ServiceSpec, ServiceStatus, StopSignal,
    UpdateOrder,
};
pub use store::{DatabaseError, LogChunk, LogStore, LogStream, StoreError, StoreResult};
pub use validate::{
    MAX_IDEMPOTENCY_KEY_BYTES, MAX_PAYLOAD_BYTES, MAX_PRIORITY, MIN_PRIORITY, UnknownField,
    ValidationError, reject_nul, reject_nul_in_json, validate_at_most, validate_name,
    validate_payload, validate_priority, validate_queue_name,
};
