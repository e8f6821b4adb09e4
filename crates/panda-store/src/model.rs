//! The values that cross the [`Store`](crate::Store) trait, besides the core types.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use panda_core::{
    AlertKind, DeliveryState, Execution, ExecutionId, JobId, NotifierKind, Status, Trigger,
    ValidationError,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which jobs [`Store::job_list`](crate::Store::job_list) returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JobKind {
    /// Every live job.
    #[default]
    All,
    /// Jobs with a schedule that Panda runs (cronjobs; monitors left out).
    Scheduled,
    /// Jobs without a schedule or a service part (triggered jobs).
    Triggered,
    /// Jobs with a service part (services).
    Service,
    /// Jobs with a monitor part (monitors: crons run elsewhere that ping Panda).
    Monitor,
}

/// A request to put an execution in the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    /// The live job to run, by name.
    pub job: String,
    /// Why it is enqueued: `Api` or `Manual` here (`Schedule` comes through slots, `Retry`
    /// from the retry policy).
    pub trigger: Trigger,
    /// JSON handed to the job as `PANDA_PAYLOAD`; at most `MAX_PAYLOAD_BYTES`.
    pub payload: Option<serde_json::Value>,
    /// Environment overrides for this execution.
    pub env: BTreeMap<String, String>,
    /// A second enqueue of the same job with the same key returns the first execution.
    pub idempotency_key: Option<String>,
    /// Not claimed before this instant; `None` means now.
    pub run_at: Option<DateTime<Utc>>,
    /// Overrides the job's priority.
    pub priority: Option<i32>,
    /// The past slot of the job's schedule this run stands for (a backfill): the slot is
    /// recorded with this execution, so it counts as that slot and runs once.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Run beside the job's other executions whatever its concurrency policy (`--force`):
    /// this execution neither waits for a running one nor replaces it.
    pub force: bool,
}

impl NewExecution {
    /// A plain API enqueue of `job`, due now.
    pub fn api(job: impl Into<String>) -> Self {
        Self {
            job: job.into(),
            trigger: Trigger::Api,
            payload: None,
            env: BTreeMap::new(),
            idempotency_key: None,
            run_at: None,
            priority: None,
            scheduled_at: None,
            force: false,
        }
    }
}

/// The answer to an enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The execution: new, or the one an earlier enqueue with the same key made.
    pub execution: Execution,
    /// `false` when the idempotency key matched an existing execution.
    pub created: bool,
}

/// A worker asking for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Who is asking; recorded on the execution.
    pub worker_id: String,
    /// Queues to take from; empty means every queue.
    pub queues: Vec<String>,
    /// At most this many executions.
    pub limit: u32,
    /// How long the lease lasts without a heartbeat.
    pub lease_ttl: Duration,
}

/// The right to write about one running execution.
///
/// Every write after the claim carries the token; once the lease has moved on (rescued as lost,
/// or claimed again) the store refuses it as [`StoreError::Stale`](crate::StoreError::Stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The execution it is for.
    pub execution_id: ExecutionId,
    /// The fencing token.
    pub token: Uuid,
    /// After this instant the rescuer may take it (until then nobody may); renewed by a
    /// heartbeat.
    pub expires_at: DateTime<Utc>,
}

/// An execution a worker now holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The execution, now `running`.
    pub execution: Execution,
    /// Its lease.
    pub lease: Lease,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The lease's new expiry.
    pub expires_at: DateTime<Utc>,
    /// Someone asked to cancel the execution: stop it and finish it as cancelled.
    pub cancel_requested: bool,
}

/// How a run ended, as the worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit, killed for memory, or could not start: subject to retry.
    Failed,
    /// Stopped at its timeout: subject to retry.
    TimedOut,
    /// Stopped on request: never retried.
    Cancelled,
    /// Could not run at all, and trying again will not help (a missing image or program, a bad
    /// spec): never retried. The execution is `dead`, in the dead-letter queue, from where it
    /// can be run again once the cause is fixed.
    Rejected,
}

/// A worker's report that a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// The lease it ran under; checked before anything is written.
    pub execution_id: ExecutionId,
    /// The fencing token from the claim.
    pub token: Uuid,
    /// How it ended.
    pub outcome: Outcome,
    /// The exit code, when there was one.
    pub exit_code: Option<i32>,
    /// Why, in words (`OOMKilled`, the engine's error).
    pub reason: Option<String>,
    /// The image digest that ran.
    pub image_digest: Option<String>,
}

/// What a finish (or a rescue) did.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The execution in its terminal status (`dead` when retries are exhausted).
    pub execution: Execution,
    /// The next attempt, queued with backoff, when the policy allows one.
    pub retry: Option<Execution>,
}

/// Which executions [`Store::execution_list`](crate::Store::execution_list) returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    /// Only this job's (by name, so history of a deleted job stays listable).
    pub job: Option<String>,
    /// Only these statuses; empty means all.
    pub statuses: Vec<Status>,
    /// Only the dead-letter queue: `dead` executions not yet retried or discarded from it.
    pub dead_letter: bool,
    /// Only executions with this trigger.
    pub trigger: Option<Trigger>,
    /// Only the attempts of one run: the executions whose first attempt is this one.
    pub root: Option<ExecutionId>,
    /// Keyset cursor: only executions older than this one (the `next` of the previous page).
    pub before: Option<ExecutionId>,
    /// Page size; 0 means the default of 50, and at most 1,000.
    pub limit: u32,
}

/// An execution in brief: enough to draw it in a history strip, without its environment or
/// payload. [`Store::execution_recent_per_job`](crate::Store::execution_recent_per_job) returns
/// these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionBrief {
    /// Its id.
    pub id: ExecutionId,
    /// The job's name.
    pub job_name: String,
    /// Where it is in its life.
    pub status: Status,
    /// Why it exists.
    pub trigger: Trigger,
    /// Which attempt of its run, from 1.
    pub attempt: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One page of executions.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionPage {
    /// Newest first.
    pub executions: Vec<Execution>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next: Option<ExecutionId>,
}

/// Whether a cron slot runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotDecision {
    /// Enqueue an execution for it, due at once.
    Fire,
    /// Record a `skipped` execution with this reason.
    Skip {
        /// Why, in words (`missed starting deadline`, `suspended`).
        reason: String,
    },
}

/// One recorded cron slot: (job, scheduled instant) is unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The job it belongs to.
    pub job_id: JobId,
    /// The slot's instant.
    pub scheduled_at: DateTime<Utc>,
    /// The execution recorded for it (queued or skipped).
    pub execution_id: ExecutionId,
    /// `true` when it was fired, `false` when skipped.
    pub fired: bool,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// A slot to record, for [`Store::slot_record_many`](crate::Store::slot_record_many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSlot {
    /// The job it belongs to.
    pub job_id: JobId,
    /// The slot's instant.
    pub scheduled_at: DateTime<Utc>,
    /// Fire it, or skip it with a reason.
    pub decision: SlotDecision,
}

/// The answer to recording a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotRecord {
    /// The slot is new; its execution was created in the same transaction.
    Inserted(Slot),
    /// The slot was already recorded (by this node earlier, or another node): nothing changed.
    Duplicate(Slot),
}

impl SlotRecord {
    /// The slot, whichever way it went.
    pub fn slot(&self) -> &Slot {
        match self {
            SlotRecord::Inserted(slot) | SlotRecord::Duplicate(slot) => slot,
        }
    }
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Everything.
    Admin,
    /// Reads only.
    ReadOnly,
}

impl TokenScope {
    /// The word used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Admin => "admin",
            TokenScope::ReadOnly => "read_only",
        }
    }
}

impl FromStr for TokenScope {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(TokenScope::Admin),
            "read_only" => Ok(TokenScope::ReadOnly),
            other => Err(ValidationError::Field {
                field: "scope",
                message: format!("{other:?} is not a scope; use admin or read_only"),
            }),
        }
    }
}

/// A stored API token. The secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id.
    pub id: Uuid,
    /// A unique name for people (`admin`, `ci-deploy`).
    pub name: String,
    /// What it may do.
    pub scope: TokenScope,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was last seen, to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// An alert to raise: [`Store::alert_raise`](crate::Store::alert_raise).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// The incident key: a second alert with the same key is not raised.
    pub incident: String,
    /// The job it is about.
    pub job_id: JobId,
    /// The job's name.
    pub job: String,
    /// What happened.
    pub kind: AlertKind,
    /// The execution it is about, if any.
    pub execution_id: Option<ExecutionId>,
    /// One line for people.
    pub message: String,
    /// The JSON body a generic webhook receives.
    pub body: serde_json::Value,
    /// Where it goes: one delivery each.
    pub notifiers: Vec<(NotifierKind, String)>,
}

/// A delivery that is due, claimed for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    /// The delivery, its `attempts` counting this one.
    pub delivery: DeliveryRecord,
    /// The alert it carries (its `deliveries` left empty).
    pub alert: AlertRecord,
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The endpoint accepted it.
    Delivered,
    /// It failed; try again at this time.
    Retry {
        /// Why, in words.
        error: String,
        /// When to try again.
        at: DateTime<Utc>,
    },
    /// It failed for the last time.
    GaveUp {
        /// Why, in words.
        error: String,
    },
}

/// One queue's load, as the dashboard and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue's name.
    pub queue: String,
    /// Queued executions that are due now.
    pub due: u64,
    /// Queued executions waiting for a later time (delayed runs, retries in backoff).
    pub waiting: u64,
    /// Executions running now.
    pub running: u64,
    /// When the longest-waiting due execution became due: its age is how far behind the
    /// queue is. `None` when nothing is due.
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// Since when the queue is paused (it accepts work and starts none); `None` when it runs.
    pub paused_at: Option<DateTime<Utc>>,
}

/// A paused queue: it keeps accepting work and starts none until it is resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePause {
    /// The queue's name.
    pub queue: String,
    /// When it was paused (a second pause keeps the first one's time).
    pub paused_at: DateTime<Utc>,
}

/// What retention pruning removes: the store-wide defaults, which a job's own `keep` and
/// `max_age` override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished executions older than this go, whatever the count, when the job does not say
    /// (`--max-age`); so do cron slots older than it.
    pub max_age: Option<Duration>,
    /// Finished executions kept per job when the job does not say (`--keep`).
    pub keep_per_job: u32,
    /// At most this many executions (and this many slots) per call, so one call never holds
    /// the database long.
    pub batch: u32,
}

impl Pruned {
    /// Whether the call filled its batch, so there may be more to prune.
    pub fn is_full(&self, batch: u32) -> bool {
        let batch = u64::from(batch.max(1));
        self.executions >= batch || self.slots >= batch
    }
}

/// What one pruning call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Executions deleted (with their logs).
    pub executions: u64,
    /// Log chunks deleted with them.
    pub log_chunks: u64,
    /// Cron slots older than the maximum age deleted.
    pub slots: u64,
}

/// A wake-up: something may now be claimable. Only ever a hint; polling remains the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An execution was queued on this queue.
    Queued {
        /// The queue's name.
        queue: String,
    },
}

/// An alert as stored, with its deliveries where the call says so.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    /// Its id (UUIDv7: sorts by time).
    pub id: Uuid,
    /// The job it is about (its id: the name may be reused after a delete).
    pub job_id: JobId,
    /// The job's name when it was raised.
    pub job: String,
    /// What happened.
    pub kind: AlertKind,
    /// The execution it is about, when there is one.
    pub execution_id: Option<ExecutionId>,
    /// One line for people.
    pub message: String,
    /// The JSON body a generic webhook receives.
    pub body: serde_json::Value,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
    /// One per notifier it goes to.
    pub deliveries: Vec<DeliveryRecord>,
}

/// How far one alert got to one notifier, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Its id.
    pub id: Uuid,
    /// What kind of endpoint.
    pub notifier: NotifierKind,
    /// Where it goes.
    pub url: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// What the last failed attempt said.
    pub last_error: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<AlertRecord> for panda_core::api::Alert {
    fn from(alert: AlertRecord) -> Self {
        Self {
            id: alert.id,
            job_id: alert.job_id,
            job: alert.job,
            kind: alert.kind,
            execution_id: alert.execution_id,
            message: alert.message,
            body: alert.body,
            created_at: alert.created_at,
            deliveries: alert.deliveries.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<DeliveryRecord> for panda_core::api::AlertDelivery {
    fn from(delivery: DeliveryRecord) -> Self {
        Self {
            id: delivery.id,
            notifier: delivery.notifier,
            url: delivery.url,
            state: delivery.state,
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_attempt_at,
            last_error: delivery.last_error,
            delivered_at: delivery.delivered_at,
        }
    }
}
