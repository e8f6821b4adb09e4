//! Panda's persistent state.
//!
//! Storage is the source of truth: the scheduler, the workers and the API are loops around the
//! [`Store`] trait, implemented here by [`SqliteStore`] (one machine, embedded) and [`PgStore`]
//! (many machines). The conformance suite in `tests/conformance/` runs every case against both.
//!
//! Two decisions a newcomer must know:
//!
//! - **Each method is one atomic unit.** No transaction handle crosses the trait; anything that
//!   must happen together (claim and job lock, finish and retry, slot and execution) happens in
//!   one method.
//! - **`now` comes from the caller.** Every time-dependent call takes the engine's clock reading
//!   instead of the database's `NOW()`, so both backends agree and tests are deterministic.

mod error;
mod lifecycle;
mod log_codec;
mod model;
mod postgres;
mod sqlite;
pub mod testing;
mod token;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::api::Alert;
use panda_core::{Execution, ExecutionId, Job, JobId, JobSpec};
use tokio::sync::broadcast;
use uuid::Uuid;

pub use error::{StoreError, StoreResult};
pub use model::{
    ApiToken, ClaimRequest, Claimed, DeliveryOutcome, DueDelivery, Enqueued, ExecutionBrief,
    ExecutionFilter, ExecutionPage, Finish, Finished, Heartbeat, JobKind, Lease, LogChunk,
    LogStream, NewAlert, NewExecution, NewSlot, Notice, Outcome, Pruned, QueueStats, Retention,
    Slot, SlotDecision, SlotRecord, TokenScope,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The default page size of [`Store::execution_list`].
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page [`Store::execution_list`] returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A requested page size: 0 means the default, and none is larger than the largest.
pub(crate) fn page_size(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// All of Panda's persistent state.
///
/// Method names put the noun first. Errors the caller can act on are typed: `NotFound`,
/// `Conflict`, `Stale`, `Invalid`, `Unavailable`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    // ---- jobs ----

    /// Creates a job. `Conflict` if a live job has that name; `Invalid` if the spec is.
    async fn job_create(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job>;

    /// A live job by name.
    async fn job_get(&self, name: &str) -> StoreResult<Job>;

    /// A job by id, deleted ones included (a worker may still be running its execution).
    async fn job_get_by_id(&self, id: JobId) -> StoreResult<Job>;

    /// Live jobs, by name.
    async fn job_list(&self, kind: JobKind) -> StoreResult<Vec<Job>>;

    /// Replaces the definition of the live job named `spec.name`. Executions already created
    /// keep the retry and overlap rules they were created with.
    async fn job_update(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job>;

    /// Deletes a live job: its name is free again, its queued executions are cancelled, its
    /// running ones are asked to stop, and its history stays readable.
    async fn job_delete(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()>;

    // ---- executions ----

    /// Queues an execution of a live job. With an idempotency key that this job has seen
    /// before, returns that execution instead (`created: false`).
    async fn execution_enqueue(
        &self,
        request: &NewExecution,
        now: DateTime<Utc>,
    ) -> StoreResult<Enqueued>;

    /// Claims up to `limit` due executions (highest priority first, then earliest due) and
    /// leases each to the worker. Takes the job lock of `forbid` jobs in the same transaction:
    /// a queued execution whose job is already running waits, or, when a schedule fired it, is
    /// recorded as `skipped` ("overlap forbidden"). For `replace` jobs, the running execution
    /// is asked to stop.
    async fn execution_claim(
        &self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Claimed>>;

    /// Renews a lease. `Stale` if the token no longer holds it.
    ///
    /// A lease past its expiry still holds until the rescuer has marked the execution `lost`:
    /// a worker that heartbeats late keeps its execution if it gets there first. Fencing is by
    /// token, not by clock, so either way exactly one of them wins.
    async fn execution_heartbeat(
        &self,
        execution_id: ExecutionId,
        token: Uuid,
        lease_ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Heartbeat>;

    /// Records how runs ended, each fenced by its lease token and each applying the retry
    /// policy (a failed or timed-out attempt with attempts left queues the next one with
    /// backoff; the last one is `dead`). One transaction for the batch; one result per item,
    /// `Stale` for an item whose lease has moved on (that item changes nothing).
    async fn execution_finish_many(
        &self,
        batch: &[Finish],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Finished>>>;

    /// [`Store::execution_finish_many`] for one execution.
    async fn execution_finish(&self, finish: &Finish, now: DateTime<Utc>) -> StoreResult<Finished> {
        let mut results = self
            .execution_finish_many(std::slice::from_ref(finish), now)
            .await?;
        results
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("finish returned no result".into())))
    }

    /// Puts running executions back in the queue as if they had never been claimed (their
    /// attempt is not used up), due at `now`: for a worker that shuts down before they finish.
    /// Fenced like a finish: one result per item, `Stale` for an item whose lease has moved on
    /// (that item changes nothing). Releases the job lock of `forbid` executions and wakes their
    /// queues. A released execution's `reason` says so until its next run ends (the only way
    /// a queued execution has a reason). An execution whose cancellation was asked for ends
    /// `cancelled` instead: the user's wish stands.
    async fn execution_release_many(
        &self,
        leases: &[(ExecutionId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Execution>>>;

    /// Cancels a queued execution at once, or asks a running one to stop (its worker sees
    /// `cancel_requested` at the next heartbeat). `Conflict` if it has already ended.
    async fn execution_cancel(&self, id: ExecutionId, now: DateTime<Utc>)
    -> StoreResult<Execution>;

    /// Marks up to `limit` running executions whose lease expired before `now` as `lost` and
    /// hands each to its retry policy (or marks it `dead`).
    async fn execution_rescue(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Finished>>;

    /// One execution.
    async fn execution_get(&self, id: ExecutionId) -> StoreResult<Execution>;

    /// Executions, newest first, one keyset page at a time.
    async fn execution_list(&self, filter: &ExecutionFilter) -> StoreResult<ExecutionPage>;

    /// The newest `per_job` executions (at most 100) of each of the named jobs, in brief: by
    /// job name, then newest first. One query for all of them, so that a page listing a
    /// hundred jobs with their recent history stays fast; a name with no executions (or no
    /// job) adds nothing.
    async fn execution_recent_per_job(
        &self,
        jobs: &[String],
        per_job: u32,
    ) -> StoreResult<Vec<ExecutionBrief>>;

    /// Every queue that has queued or running executions, by name.
    async fn queue_stats(&self, now: DateTime<Utc>) -> StoreResult<Vec<QueueStats>>;

    /// The newest execution of a job (by name) that was not skipped.
    async fn execution_latest(&self, job: &str) -> StoreResult<Option<Execution>>;

    // ---- the dead-letter queue ----

    /// Runs a dead execution again: queues a new attempt (trigger `retry`, the same run and
    /// idempotency key, attempt = the dead one's + 1, due at `now`, the same retry policy, so
    /// if it fails it is dead again) and takes the dead one out of the dead-letter queue; it
    /// stays `dead` in the history. `NotFound`; `Conflict` if it is not dead, already left the
    /// queue, or its job was deleted.
    async fn dlq_retry(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<Execution>;

    /// [`Store::dlq_retry`] for every execution of the live job `job` in the dead-letter queue,
    /// in one transaction; returns the new attempts (none when the queue holds none of its).
    async fn dlq_retry_job(&self, job: &str, now: DateTime<Utc>) -> StoreResult<Vec<Execution>>;

    /// Takes a dead execution out of the dead-letter queue without running it again; it stays
    /// `dead` in the history. `NotFound`; `Conflict` if it is not dead or already left the
    /// queue.
    async fn dlq_discard(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<()>;

    // ---- cron slots ----

    /// Records slots and, in the same transaction, their executions: queued when fired,
    /// `skipped` with the reason otherwise. A slot already recorded (by this batch, an earlier
    /// call, or another node) is left as it is and answered with [`SlotRecord::Duplicate`].
    /// One result per item, in order: an item that fails (its job was deleted) does not stop
    /// the others. The job as stored decides over the caller's view: a slot to fire of a job
    /// suspended since is recorded skipped as `suspended`, and one of a job whose schedule was
    /// removed is recorded skipped with that reason.
    async fn slot_record_many(
        &self,
        slots: &[NewSlot],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<SlotRecord>>>;

    /// [`Store::slot_record_many`] for one slot.
    async fn slot_record(
        &self,
        job_id: JobId,
        scheduled_at: DateTime<Utc>,
        decision: &SlotDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<SlotRecord> {
        let slot = NewSlot {
            job_id,
            scheduled_at,
            decision: decision.clone(),
        };
        self.slot_record_many(std::slice::from_ref(&slot), now)
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("slot record returned no result".into())))
    }

    /// A job's recorded slots, newest first.
    async fn slot_list(&self, job_id: JobId, limit: u32) -> StoreResult<Vec<Slot>>;

    // ---- logs ----

    /// Appends chunks to an execution's log. A chunk whose seq is already stored is ignored,
    /// so a writer may resend after an error.
    async fn log_append(&self, execution_id: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()>;

    /// Up to `limit` chunks after seq `after` (from the start when `None`), in order.
    async fn log_read(
        &self,
        execution_id: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<LogChunk>>;

    /// The last `n` chunks, in order.
    async fn log_tail(&self, execution_id: ExecutionId, n: u32) -> StoreResult<Vec<LogChunk>>;

    // ---- API tokens ----

    /// Creates a token and returns it with its secret, which is not stored and cannot be shown
    /// again. `Conflict` if the name is taken.
    async fn token_create(
        &self,
        name: &str,
        scope: TokenScope,
        now: DateTime<Utc>,
    ) -> StoreResult<(ApiToken, String)>;

    /// The live token whose secret this is, if any; notes when it was used (to the minute).
    async fn token_verify(&self, secret: &str, now: DateTime<Utc>)
    -> StoreResult<Option<ApiToken>>;

    /// Live tokens, by name.
    async fn token_list(&self) -> StoreResult<Vec<ApiToken>>;

    /// Revokes a token by name; it stops working at once.
    async fn token_revoke(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()>;

    // ---- retention ----

    /// Deletes at most `retention.batch` finished executions (with their logs) that are older
    /// than the maximum age or beyond their job's keep count, and slots older than the maximum
    /// age. Call again while it returns a full batch.
    async fn retention_prune(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> StoreResult<Pruned>;

    // ---- alerts ----

    /// Failed, timed-out and dead attempts not yet judged by the alerter, oldest first. Each
    /// is put here in the same transaction that records its outcome.
    async fn alert_inbox(&self, limit: u32) -> StoreResult<Vec<Execution>>;

    /// Takes judged attempts out of the inbox.
    async fn alert_inbox_done(&self, ids: &[ExecutionId]) -> StoreResult<()>;

    /// Raises an alert with one pending delivery per notifier, due now; `None` when an alert
    /// with the same incident key exists (another node raised it first).
    async fn alert_raise(&self, alert: &NewAlert, now: DateTime<Utc>)
    -> StoreResult<Option<Alert>>;

    /// The newest alert about a job (without its deliveries).
    async fn alert_latest(&self, job_id: JobId) -> StoreResult<Option<Alert>>;

    /// Open incidents: each job's newest alert where that is not a recovery (without
    /// deliveries).
    async fn alert_open(&self) -> StoreResult<Vec<Alert>>;

    /// Alerts newest first, with their deliveries; only `job`'s when given; at most `limit`
    /// (0 means the default page).
    async fn alert_list(&self, job: Option<&str>, limit: u32) -> StoreResult<Vec<Alert>>;

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

    // ---- wake-ups ----

    /// Hints that work may be claimable. Lossy by design: a receiver that lags or a listener
    /// that reconnects drops notices, so workers poll as well.
    fn subscribe(&self) -> broadcast::Receiver<Notice>;
}
