//! The queue: enqueue, heartbeat, finish, release, cancel, rescue and the dead-letter queue.
//! The claim is in [`crate::claim`], how an attempt's end is written in [`crate::ends`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{Execution, ExecutionId, Job, Status};
use uuid::Uuid;

use crate::dialect::{Backend, Conn, Record, Tx, query, settle};
use crate::ends::{FencedEnd, finish_in_full, insert_executions, without_nul_report, write_ends};
use crate::jobs::{JobLock, live_job};
use crate::lifecycle;
use crate::model::{
    ClaimRequest, Claimed, Enqueued, Finish, Finished, Heartbeat, NewExecution, Outcome, QueuePause,
};
use crate::records;
use crate::{StoreError, StoreResult};

/// The queue of executions and its dead letters.
#[async_trait]
pub trait QueueStore: Send + Sync + std::fmt::Debug {
    /// Queues an execution of a live job. With an idempotency key that this job has seen
    /// before, returns that execution instead (`created: false`).
    async fn execution_enqueue(
        &self,
        request: &NewExecution,
        now: DateTime<Utc>,
    ) -> StoreResult<Enqueued>;

    /// Queues many executions in one transaction, each answered in its place: `Ok` with
    /// `created: false` for an idempotency key its job has seen (in an earlier enqueue or
    /// earlier in the same batch), `Err` for an item that is refused (`Invalid`, or `NotFound`
    /// for a job that does not exist), which changes nothing. A backfill (`scheduled_at`) is
    /// refused here: it is enqueued alone. The outer `Err` is the store failing: nothing is
    /// queued.
    async fn execution_enqueue_many(
        &self,
        requests: &[NewExecution],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Enqueued>>>;

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
        lease_ttl: Duration,
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

    /// [`QueueStore::execution_finish_many`] for one execution.
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
    /// hands each to its retry policy (or marks it `dead`). Also puts back in line up to
    /// `limit` executions parked behind a key that has a free slot after all.
    async fn execution_rescue(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Finished>>;

    /// Runs a dead execution again: queues a new attempt (trigger `retry`, the same run and
    /// idempotency key, attempt = the dead one's + 1, due at `now`, the same retry policy, so
    /// if it fails it is dead again) and takes the dead one out of the dead-letter queue; it
    /// stays `dead` in the history. `NotFound`; `Conflict` if it is not dead, already left the
    /// queue, or its job was deleted.
    async fn dlq_retry(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<Execution>;

    /// [`QueueStore::dlq_retry`] for every execution of the live job `job` in the dead-letter
    /// queue, in one transaction; returns the new attempts (none when the queue holds none).
    async fn dlq_retry_job(&self, job: &str, now: DateTime<Utc>) -> StoreResult<Vec<Execution>>;

    /// Takes a dead execution out of the dead-letter queue without running it again; it stays
    /// `dead` in the history. `NotFound`; `Conflict` if it is not dead or already left the
    /// queue.
    async fn dlq_discard(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<()>;

    /// Pauses the queue `name` on every node: it keeps accepting work and starts none (what is
    /// running runs on) until it is resumed. Pausing a paused queue changes nothing and keeps
    /// its first pause's time. A queue need not hold work to be paused. `Invalid` for a name
    /// that is not a queue's.
    async fn queue_pause(&self, name: &str, now: DateTime<Utc>) -> StoreResult<QueuePause>;

    /// Resumes the queue `name` and wakes the nodes that serve it; `false` when it was not
    /// paused (nothing changes).
    async fn queue_resume(&self, name: &str) -> StoreResult<bool>;

    /// The paused queues, by name.
    async fn queue_pauses(&self) -> StoreResult<Vec<QueuePause>>;
}

/// The statements of [`QueueStore`], in each backend's dialect.
#[derive(Debug)]
pub struct QueueSql {
    /// Inserts executions (a table of the 32 columns of `execution_columns!`, in order),
    /// leaving out a first attempt whose idempotency key its job has seen; `RETURNING id`.
    pub insert: &'static str,
    /// A job's first attempt with an idempotency key: `(job_id, key)`.
    pub by_key: &'static str,
    /// One execution with its `lease_token`, locked where the backend locks rows: `(id)`.
    pub leased: &'static str,
    /// `(id)`: whether it exists.
    pub exists: &'static str,
    /// Renews a lease: `(expires_at, id, token)`, `RETURNING cancel_requested`.
    pub heartbeat: &'static str,
    /// Executions with their `lease_token`: `(ids)`.
    pub leased_many: &'static str,
    /// Writes ended attempts fenced by their lease: `(finished_at, table of (id, token,
    /// status, reason, exit_code, image_digest))`, `RETURNING id, cancel_requested`.
    pub write_ends: &'static str,
    /// `(table of (execution_id, finished_at))`.
    pub inbox: &'static str,
    /// Releases job locks: `(execution ids)`.
    pub unlock: &'static str,
    /// Puts a running execution back in the queue: `(run_at, reason, id)`.
    pub release: &'static str,
    /// `(finished_at, reason, id)`.
    pub cancel_queued: &'static str,
    /// `(id)`.
    pub stop_running: &'static str,
    /// Running executions whose lease expired, with their `lease_token`: `(now, limit)`.
    pub expired: &'static str,
    /// How a dead execution left the queue: `resolution`; `(id)`.
    pub resolution: &'static str,
    /// `(execution_id, resolution, retry_id, resolved_at)`.
    pub resolve: &'static str,
    /// Whether a job is live, locked against a delete: `live`; `(id)`.
    pub job_live: &'static str,
    /// A job's dead executions still in the queue: `(job_id)`.
    pub dead_of_job: &'static str,
    /// Pauses a queue unless it is paused: `(name, paused_at)`.
    pub pause: &'static str,
    /// Resumes a queue: `(name)`.
    pub resume: &'static str,
    /// The paused queues by name: `name`, `paused_at`.
    pub pauses: &'static str,
}

/// The paused queues, by name, as `conn` reads them.
pub(crate) async fn pauses<B: Backend>(conn: &mut impl Conn) -> StoreResult<Vec<QueuePause>> {
    let rows = conn.fetch_all(query(B::SQL.queue.pauses)).await?;
    records::all(&rows, |row| {
        Ok(QueuePause {
            queue: row.text("name")?,
            paused_at: row.time("paused_at")?,
        })
    })
}

/// One execution with its lease token.
async fn leased<B: Backend>(
    tx: &mut B::Tx,
    id: ExecutionId,
) -> StoreResult<Option<(Execution, Option<Uuid>)>> {
    tx.fetch_optional(query(B::SQL.queue.leased).uuid(id))
        .await?
        .as_ref()
        .map(records::leased_execution)
        .transpose()
}

/// A dead execution checked to be in the dead-letter queue, locked until the transaction ends
/// where the backend locks rows (so two retries of it wait for each other, and the second
/// finds it gone from the queue).
async fn dead_letter<B: Backend>(tx: &mut B::Tx, id: ExecutionId) -> StoreResult<Execution> {
    let (dead, _) = leased::<B>(tx, id)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("execution {id}")))?;
    let resolved = tx
        .fetch_optional(query(B::SQL.queue.resolution).uuid(id))
        .await?
        .map(|row| row.text("resolution"))
        .transpose()?;
    lifecycle::check_dead_letter(&dead, resolved.as_deref())?;
    Ok(dead)
}

/// Records that a dead execution left the dead-letter queue.
async fn dlq_resolve<B: Backend>(
    tx: &mut B::Tx,
    id: ExecutionId,
    resolution: lifecycle::DlqResolution,
    retry: Option<ExecutionId>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    tx.execute(
        query(B::SQL.queue.resolve)
            .uuid(id)
            .text(resolution.as_str())
            .opt_uuid(retry)
            .time(now),
    )
    .await?;
    Ok(())
}

/// Refuses an enqueue of a service, whose instances Panda starts itself, and of a monitor,
/// whose runs happen elsewhere and are recorded from its pings.
fn enqueueable(job: &Job) -> StoreResult<()> {
    if job.spec.monitor.is_some() {
        return Err(StoreError::Invalid(panda_core::ValidationError::Field {
            field: "job",
            message: format!(
                "{} is a monitor: its runs happen elsewhere and are recorded when they call its \
                 ping URL; Panda runs nothing for it",
                job.spec.name
            ),
        }));
    }
    if job.spec.service.is_some() {
        return Err(StoreError::Invalid(panda_core::ValidationError::Field {
            field: "job",
            message: format!(
                "{} is a service: Panda keeps its instances running; change how many with \
                 `panda service scale {} N` or replace them with `panda service restart {}`",
                job.spec.name, job.spec.name, job.spec.name
            ),
        }));
    }
    Ok(())
}

/// Refuses a backfill in a batch: a slot is recorded with its execution, one at a time.
fn refuse_backfill(request: &NewExecution) -> StoreResult<()> {
    if request.scheduled_at.is_some() {
        return Err(StoreError::Invalid(panda_core::ValidationError::Field {
            field: "scheduled_for",
            message: "a backfill is enqueued on its own, not in a batch".into(),
        }));
    }
    Ok(())
}

/// Queues the attempt that runs a dead execution again and takes it out of the queue.
async fn dlq_retry_one<B: Backend>(
    tx: &mut B::Tx,
    id: ExecutionId,
    now: DateTime<Utc>,
) -> StoreResult<Execution> {
    let dead = dead_letter::<B>(tx, id).await?;
    let live = tx
        .fetch_optional(query(B::SQL.queue.job_live).uuid(dead.job_id))
        .await?
        .map(|row| row.bool("live"))
        .transpose()?;
    if live != Some(true) {
        return Err(StoreError::Conflict(format!(
            "job {} of execution {id} was deleted; there is nothing to run it again",
            dead.job_name
        )));
    }
    let retry = lifecycle::dead_letter_retry(&dead, now);
    insert_executions::<B>(tx, std::slice::from_ref(&retry)).await?;
    dlq_resolve::<B>(
        tx,
        id,
        lifecycle::DlqResolution::Retried,
        Some(retry.id),
        now,
    )
    .await?;
    tx.wake(&retry.queue);
    Ok(retry)
}

#[async_trait]
impl<B: Backend> QueueStore for B {
    async fn execution_enqueue(
        &self,
        request: &NewExecution,
        now: DateTime<Utc>,
    ) -> StoreResult<Enqueued> {
        lifecycle::validate_new_execution(request)?;
        let mut tx = self.begin().await?;
        let job = live_job::<B>(&mut tx, &request.job, JobLock::Share).await?;
        enqueueable(&job)?;
        if let Some(at) = request.scheduled_at {
            lifecycle::validate_backfill(&job, at, now)?;
        }
        let execution = lifecycle::enqueued(&job, request, now);
        // With a key, the unique index decides between racing enqueues: the loser's insert
        // waits for the winner to commit, then does nothing, and it returns the winner's row.
        if insert_executions::<B>(&mut tx, std::slice::from_ref(&execution))
            .await?
            .is_empty()
        {
            let key = request.idempotency_key.as_deref().unwrap_or_default();
            let row = tx
                .fetch_optional(query(B::SQL.queue.by_key).uuid(job.id).text(key))
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "idempotency key {key:?} conflicts but matches no execution"
                    ))
                })?;
            return Ok(Enqueued {
                execution: records::execution(&row)?,
                created: false,
            });
        }
        if let Some(at) = request.scheduled_at {
            // Of racing recorders of the slot (the scheduler, another backfill), one inserts it.
            let inserted = tx
                .execute(
                    query(B::SQL.slots.insert_fired)
                        .uuid(job.id)
                        .time(at)
                        .uuid(execution.id)
                        .time(now),
                )
                .await?;
            if inserted == 0 {
                let row = tx
                    .fetch_optional(query(B::SQL.slots.get).uuid(job.id).time(at))
                    .await?
                    .ok_or_else(|| {
                        StoreError::Corrupt("a slot neither inserted nor found".into())
                    })?;
                return Err(lifecycle::slot_taken(&job, &records::slot(&row)?));
            }
        }
        tx.wake(&execution.queue);
        tx.commit().await?;
        Ok(Enqueued {
            execution,
            created: true,
        })
    }

    async fn execution_enqueue_many(
        &self,
        requests: &[NewExecution],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Enqueued>>> {
        let mut tx = self.begin().await?;
        // Each job is read once, `None` when there is no live job of that name.
        let mut jobs: HashMap<&str, Option<Job>> = HashMap::new();
        let mut results: Vec<Option<StoreResult<Enqueued>>> = Vec::with_capacity(requests.len());
        let mut queued: Vec<(usize, Execution)> = Vec::with_capacity(requests.len());
        for (place, request) in requests.iter().enumerate() {
            let name = request.job.as_str();
            if !jobs.contains_key(name) {
                let job = match live_job::<B>(&mut tx, name, JobLock::Share).await {
                    Ok(job) => Some(job),
                    Err(StoreError::NotFound { .. }) => None,
                    Err(err) => return Err(err),
                };
                jobs.insert(name, job);
            }
            let checked = match jobs.get(name).and_then(Option::as_ref) {
                None => Err(StoreError::not_found(format!("job {name:?}"))),
                Some(job) => enqueueable(job)
                    .and_then(|()| Ok(lifecycle::validate_new_execution(request)?))
                    .and_then(|()| refuse_backfill(request))
                    .map(|()| lifecycle::enqueued(job, request, now)),
            };
            match checked {
                Ok(execution) => {
                    results.push(None);
                    queued.push((place, execution));
                }
                Err(err) => results.push(Some(Err(err))),
            }
        }
        let executions: Vec<Execution> = queued.iter().map(|(_, e)| e.clone()).collect();
        let inserted: HashSet<Uuid> = insert_executions::<B>(&mut tx, &executions)
            .await?
            .into_iter()
            .collect();
        let mut queues = BTreeSet::new();
        for (place, execution) in queued {
            let answer = if inserted.contains(&execution.id.as_uuid()) {
                queues.insert(execution.queue.clone());
                Enqueued {
                    execution,
                    created: true,
                }
            } else {
                let key = execution.idempotency_key.as_deref().unwrap_or_default();
                let row = tx
                    .fetch_optional(query(B::SQL.queue.by_key).uuid(execution.job_id).text(key))
                    .await?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "idempotency key {key:?} conflicts but matches no execution"
                        ))
                    })?;
                Enqueued {
                    execution: records::execution(&row)?,
                    created: false,
                }
            };
            results[place] = Some(Ok(answer));
        }
        for queue in &queues {
            tx.wake(queue);
        }
        tx.commit().await?;
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(StoreError::Corrupt("an enqueue left unanswered".into()))
                })
            })
            .collect())
    }

    async fn execution_claim(
        &self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Claimed>> {
        crate::claim::claim(self, request, now).await
    }

    async fn execution_heartbeat(
        &self,
        execution_id: ExecutionId,
        token: Uuid,
        lease_ttl: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Heartbeat> {
        let ttl = chrono::Duration::from_std(lease_ttl)
            .map_err(|_| StoreError::Corrupt("lease ttl out of range".into()))?;
        let expires_at = now + ttl;
        let mut writer = self.writer();
        let renewed = writer
            .fetch_optional(
                query(B::SQL.queue.heartbeat)
                    .time(expires_at)
                    .uuid(execution_id)
                    .uuid(token),
            )
            .await?;
        let Some(row) = renewed else {
            let exists = writer
                .fetch_optional(query(B::SQL.queue.exists).uuid(execution_id))
                .await?;
            return match exists {
                None => Err(StoreError::not_found(format!("execution {execution_id}"))),
                Some(_) => Err(StoreError::Stale),
            };
        };
        Ok(Heartbeat {
            expires_at,
            cancel_requested: row.bool("cancel_requested")?,
        })
    }

    async fn execution_finish_many(
        &self,
        batch: &[Finish],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Finished>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if !batch.iter().all(|f| f.outcome == Outcome::Succeeded) {
            return finish_in_full(self, batch, now).await;
        }
        let reports: Vec<Finish> = batch.iter().map(without_nul_report::<B>).collect();
        let Some(written) = self.finish_successes(&reports, now).await? else {
            return finish_in_full(self, batch, now).await;
        };
        // Items it did not write (stale, unknown, or a second item for one execution) go
        // through the full path, which says why.
        let rest: Vec<Finish> = batch
            .iter()
            .zip(&written)
            .filter(|(_, w)| w.is_none())
            .map(|(f, _)| f.clone())
            .collect();
        let mut answers = if rest.is_empty() {
            Vec::new()
        } else {
            finish_in_full(self, &rest, now).await?
        }
        .into_iter();
        Ok(written
            .into_iter()
            .map(|w| match w {
                Some(finished) => Ok(finished),
                None => answers.next().unwrap_or(Err(StoreError::Stale)),
            })
            .collect())
    }

    async fn execution_release_many(
        &self,
        leases: &[(ExecutionId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Execution>>> {
        let mut tx = self.begin().await?;
        // Rows in id order, as every batch write, so two transactions never deadlock.
        let mut order: Vec<usize> = (0..leases.len()).collect();
        order.sort_by_key(|&i| leases[i].0);
        let mut results: Vec<StoreResult<Execution>> =
            leases.iter().map(|_| Err(StoreError::Stale)).collect();
        for i in order {
            let (id, token) = leases[i];
            results[i] = match leased::<B>(&mut tx, id).await? {
                None => Err(StoreError::not_found(format!("execution {id}"))),
                Some((execution, Some(held)))
                    if execution.status == Status::Running && held == token =>
                {
                    if execution.cancel_requested {
                        let finish = lifecycle::released_cancelled(id, token);
                        let finished = lifecycle::end_attempt(execution, Some(&finish), now);
                        write_ends::<B>(&mut tx, vec![FencedEnd { finished, token }], now)
                            .await?
                            .into_iter()
                            .flatten()
                            .next()
                            .map(|f| f.execution)
                            .ok_or(StoreError::Stale)
                    } else {
                        let released = lifecycle::released(&execution, now);
                        tx.execute(
                            query(B::SQL.queue.release)
                                .time(now)
                                .text(lifecycle::RELEASED)
                                .uuid(id),
                        )
                        .await?;
                        tx.execute(query(B::SQL.queue.unlock).uuids(vec![id.as_uuid()]))
                            .await?;
                        tx.wake(&released.queue);
                        Ok(released)
                    }
                }
                Some(_) => Err(StoreError::Stale),
            };
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn execution_cancel(
        &self,
        id: ExecutionId,
        now: DateTime<Utc>,
    ) -> StoreResult<Execution> {
        let mut tx = self.begin().await?;
        let Some((mut execution, _)) = leased::<B>(&mut tx, id).await? else {
            return settle(tx, Err(StoreError::not_found(format!("execution {id}")))).await;
        };
        match execution.status {
            Status::Queued => {
                execution.status = Status::Cancelled;
                execution.finished_at = Some(now);
                execution.reason = Some("cancelled by request".to_owned());
                tx.execute(
                    query(B::SQL.queue.cancel_queued)
                        .time(now)
                        .opt_text(execution.reason.clone())
                        .uuid(id),
                )
                .await?;
            }
            Status::Running => {
                execution.cancel_requested = true;
                tx.execute(query(B::SQL.queue.stop_running).uuid(id))
                    .await?;
            }
            ended => {
                let refused = StoreError::Conflict(format!(
                    "execution {id} has already ended ({ended}); there is nothing to cancel"
                ));
                return settle(tx, Err(refused)).await;
            }
        }
        tx.commit().await?;
        Ok(execution)
    }

    async fn execution_rescue(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Finished>> {
        let mut tx = self.begin().await?;
        let rows = tx
            .fetch_all(query(B::SQL.queue.expired).time(now).i64(i64::from(limit)))
            .await?;
        let mut ends = Vec::with_capacity(rows.len());
        for row in &rows {
            let (execution, token) = records::leased_execution(row)?;
            ends.push(FencedEnd {
                finished: lifecycle::end_attempt(execution, None, now),
                token: token.unwrap_or_default(),
            });
        }
        // The rows are locked (or the writer is this one), so every write holds.
        let rescued = write_ends::<B>(&mut tx, ends, now)
            .await?
            .into_iter()
            .flatten()
            .collect();
        // Parked executions whose key has a free slot nobody un-parked them for (the one a
        // release un-parked was cancelled, or the job's limit was raised) go back in line.
        tx.execute(query(B::SQL.claim.unpark_free).i64(i64::from(limit)))
            .await?;
        // Rate limits' starts that left their window count no more.
        crate::rate::prune::<B>(&mut tx, now).await?;
        tx.commit().await?;
        Ok(rescued)
    }

    async fn dlq_retry(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<Execution> {
        let mut tx = self.begin().await?;
        let retry = dlq_retry_one::<B>(&mut tx, id, now).await;
        settle(tx, retry).await
    }

    async fn dlq_retry_job(&self, job: &str, now: DateTime<Utc>) -> StoreResult<Vec<Execution>> {
        let mut tx = self.begin().await?;
        let job = live_job::<B>(&mut tx, job, JobLock::Share).await?;
        let dead = tx
            .fetch_all(query(B::SQL.queue.dead_of_job).uuid(job.id))
            .await?;
        let mut retries = Vec::with_capacity(dead.len());
        for row in &dead {
            let id = ExecutionId::from_uuid(row.uuid("id")?);
            match dlq_retry_one::<B>(&mut tx, id, now).await {
                Ok(retry) => retries.push(retry),
                Err(err) => return settle(tx, Err(err)).await,
            }
        }
        settle(tx, Ok(retries)).await
    }

    async fn dlq_discard(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let discarded = match dead_letter::<B>(&mut tx, id).await {
            Ok(_) => {
                dlq_resolve::<B>(&mut tx, id, lifecycle::DlqResolution::Discarded, None, now).await
            }
            Err(err) => Err(err),
        };
        settle(tx, discarded).await
    }

    async fn queue_pause(&self, name: &str, now: DateTime<Utc>) -> StoreResult<QueuePause> {
        panda_core::validate_queue_name(name).map_err(StoreError::from)?;
        let mut tx = self.begin().await?;
        let paused = async {
            tx.execute(query(B::SQL.queue.pause).text(name).time(now))
                .await?;
            pauses::<B>(&mut tx)
                .await?
                .into_iter()
                .find(|p| p.queue == name)
                .ok_or_else(|| StoreError::Corrupt(format!("queue {name:?} paused but not found")))
        }
        .await;
        settle(tx, paused).await
    }

    async fn queue_resume(&self, name: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let resumed = tx.execute(query(B::SQL.queue.resume).text(name)).await;
        if matches!(resumed, Ok(n) if n > 0) {
            tx.wake(name);
        }
        settle(tx, resumed.map(|n| n > 0)).await
    }

    async fn queue_pauses(&self) -> StoreResult<Vec<QueuePause>> {
        pauses::<B>(&mut self.reader()).await
    }
}

/// What a one-statement finish of successes wrote (`rows`, the executions it updated), for
/// each item of `batch` in its place: `None` for an item it did not write, which the full
/// finish then answers.
pub(crate) fn successes_in_place<R: Record>(
    rows: &[R],
    batch: &[Finish],
) -> StoreResult<Vec<Option<Finished>>> {
    let mut written: HashMap<ExecutionId, Finished> = HashMap::with_capacity(rows.len());
    for row in rows {
        let execution = records::execution(row)?;
        written.insert(
            execution.id,
            Finished {
                execution,
                retry: None,
            },
        );
    }
    Ok(batch
        .iter()
        .map(|f| written.remove(&f.execution_id))
        .collect())
}
