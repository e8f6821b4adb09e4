//! The writing of a run's end: finishes from every run go to one writer, which batches them
//! into one transaction and keeps trying while the store is unreachable or full, until the
//! store takes each result or refuses it as stale (the lease moved on): a result is never
//! dropped because the store was away for a while. An execution stopped at shutdown is
//! released to the queue instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use panda_core::{Clock, Execution, ExecutionId, RetryPolicy};
use panda_store::{Finish, Finished, Lease, Store, StoreError};
use tokio::sync::mpsc;

use super::Context;

/// At most this many finishes per transaction.
pub(super) const FINISH_BATCH: usize = 256;
/// How long the writer gathers more finishes once one has come. Short runs end in a stream,
/// and one write of several costs the store about what a write of one does; the runs' places
/// in this node's pool are free already, so only the record of each waits this long. A finish
/// that releases a slot of its job (`forbid`, `--max-running`) is written at once instead:
/// the job's next execution waits for it.
const FINISH_LINGER: Duration = Duration::from_millis(2);
/// How long a finish is retried when the store fails it for another reason than being
/// unreachable or full (a bug, a broken database): after that the lease expires and the
/// Rescuer runs the execution again: at least once, never lost. While the store is
/// unreachable or full, a finish is retried for as long as that lasts: the store accepts the
/// lease holder's result as long as no one else took the lease, and nobody can while it is
/// down.
const FINISH_PATIENCE: Duration = Duration::from_secs(60);
/// How often a write that keeps failing says so again in the log.
const FINISH_NAG: Duration = Duration::from_secs(30);
/// The wait between tries of a batch of finishes: the policy's ceiling, from 50 ms doubling
/// up to 5 s, and never more than a quarter of the heartbeat interval (see [`retry_wait`]).
const FINISH_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    backoff_base: Duration::from_millis(50),
    backoff_cap: Duration::from_secs(5),
};
/// The wait between tries of a release: the policy's ceiling, from 100 ms doubling up to 2 s;
/// tries stop before the lease would expire anyway, not after a count of attempts.
const RELEASE_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    backoff_base: Duration::from_millis(100),
    backoff_cap: Duration::from_secs(2),
};

/// A finish handed to the writer.
#[derive(Debug)]
pub(super) struct Handed {
    finish: Finish,
    /// Its execution's queue: the finish counts against the queue's limit until written.
    queue: String,
    /// Whether its execution holds one of its job's slots (`forbid`, or a `--max-running`
    /// limit) until the finish is written.
    holds_job_slot: bool,
}

/// The wait before the `failures`-th retry of a batch. Once the store is back, the Rescuer
/// waits a heartbeat interval before it treats leases as expired; a result waiting here is
/// tried again well within that, so it lands before its lease can be taken.
fn retry_wait(failures: u32, heartbeat_every: Duration) -> Duration {
    FINISH_BACKOFF
        .backoff_ceiling(failures)
        .min(heartbeat_every / 4)
        .max(Duration::from_millis(10))
}

/// Finishes not yet written, per queue, and a wake-up for each write.
#[derive(Debug, Default)]
pub(super) struct Unwritten {
    counts: std::sync::Mutex<HashMap<String, usize>>,
    /// Finishes handed to the writer and not yet written, on every queue.
    total: AtomicUsize,
    /// Whether the writer's last try failed: the store is failing this node's writes.
    failing: AtomicBool,
    /// A write was done.
    pub(super) written: tokio::sync::Notify,
    /// A write released job slots: the executions waiting for them can be claimed now.
    pub(super) slots_freed: tokio::sync::Notify,
}

impl Unwritten {
    fn add(&self, queue: &str, delta: isize) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(queue.to_owned()).or_insert(0);
        *count = count.saturating_add_signed(delta);
        let total = if delta >= 0 {
            self.total
                .fetch_add(delta.unsigned_abs(), Ordering::Relaxed)
                + delta.unsigned_abs()
        } else {
            self.total
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed)
                .saturating_sub(delta.unsigned_abs())
        };
        crate::metrics::finishes_pending(total);
    }

    pub(super) fn of(&self, queue: &str) -> usize {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.get(queue).copied().unwrap_or(0)
    }
}

/// A view of this node's results that wait to be written, for the Rescuer: while they cannot
/// be written, the store is failing this node, and rescuing other nodes' leases from it would
/// be rescuing from a store that has not recovered.
#[derive(Debug, Clone, Default)]
pub struct UnwrittenFinishes(pub(super) Arc<Unwritten>);

impl UnwrittenFinishes {
    /// Results handed to the writer and not yet written.
    pub fn count(&self) -> usize {
        self.0.total.load(Ordering::Relaxed)
    }

    /// Whether the writer's last try to write them failed.
    pub fn failing(&self) -> bool {
        self.0.failing.load(Ordering::Relaxed)
    }
}

/// What became of a finish.
#[derive(Debug)]
enum Written {
    /// Recorded.
    Done(Box<Finished>),
    /// Refused: the lease had moved on.
    Stale,
    /// Not recorded: the store failed, in these words.
    Failed(String),
}

impl From<Result<Finished, StoreError>> for Written {
    fn from(result: Result<Finished, StoreError>) -> Self {
        match result {
            Ok(finished) => Written::Done(Box::new(finished)),
            Err(StoreError::Stale) => Written::Stale,
            Err(err) => Written::Failed(err.to_string()),
        }
    }
}

/// Hands a finish to the batching writer, which records it and logs what became of it. The
/// run's place in this node's pool is free once this returns; a slot of its job that it holds
/// (`forbid`, `--max-running`) is free once the write is done.
pub(super) async fn record(context: &Context, execution: &Execution, finish: Finish) {
    context.unwritten.add(&execution.queue, 1);
    if context
        .finishes
        .send(Handed {
            finish,
            queue: execution.queue.clone(),
            holds_job_slot: execution.holds_job_slot(),
        })
        .await
        .is_err()
    {
        context.unwritten.add(&execution.queue, -1);
        tracing::error!(execution = %execution.id, "the finish writer is gone; the lease will expire and the execution run again");
    }
}

/// Logs what became of one finish, and counts it once written.
fn log_written(execution_id: ExecutionId, written: Written) {
    match written {
        Written::Done(finished) => {
            let done = &finished.execution;
            crate::metrics::execution_finished(done);
            tracing::info!(
                execution = %done.id,
                job = %done.job_name,
                status = %done.status,
                exit_code = ?done.exit_code,
                retry = ?finished.retry.as_ref().map(|r| r.id),
                "execution ended"
            );
        }
        Written::Stale => tracing::warn!(
            execution = %execution_id,
            "the lease moved on before the result was written: the result is not recorded"
        ),
        Written::Failed(err) => tracing::error!(
            execution = %execution_id,
            %err,
            "the result could not be written; the lease will expire and the execution run again"
        ),
    }
}

/// Puts an execution this node stopped at shutdown back in the queue.
pub(super) async fn release_execution(context: &Context, execution: &Execution, lease: &Lease) {
    let deadline = Instant::now() + context.config.lease_ttl;
    let mut failures = 0;
    loop {
        let result = context
            .store
            .execution_release_many(&[(lease.execution_id, lease.token)], context.clock.now())
            .await
            .and_then(|mut items| {
                items.pop().unwrap_or_else(|| {
                    Err(StoreError::Corrupt("release returned no result".into()))
                })
            });
        let wait = RELEASE_BACKOFF.backoff_ceiling(failures + 1);
        match result {
            Ok(released) => {
                tracing::info!(execution = %execution.id, status = %released.status, "released to the queue");
                return;
            }
            Err(StoreError::Stale) => return,
            Err(err) if Instant::now() + wait < deadline => {
                failures += 1;
                tracing::warn!(execution = %execution.id, %err, "release failed; trying again");
                tokio::time::sleep(wait).await;
            }
            Err(err) => {
                tracing::error!(execution = %execution.id, %err, "release failed; the lease will expire and the Rescuer retry it");
                return;
            }
        }
    }
}

/// The one writer of finishes: batches whatever is waiting into one transaction, and keeps
/// trying while the store is unreachable or full (taking in the finishes that arrive
/// meanwhile), until it takes or refuses each of them.
pub(super) async fn write_finishes(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    unwritten: Arc<Unwritten>,
    heartbeat_every: Duration,
    mut incoming: mpsc::Receiver<Handed>,
) {
    let holds_job_slot = |handed: &[Handed]| handed.iter().any(|h| h.holds_job_slot);
    let mut batch: Vec<Handed> = Vec::with_capacity(FINISH_BATCH);
    while incoming.recv_many(&mut batch, FINISH_BATCH).await > 0 {
        if !holds_job_slot(&batch) {
            let gather = async {
                loop {
                    let (had, room) = (batch.len(), FINISH_BATCH - batch.len());
                    if room == 0
                        || incoming.recv_many(&mut batch, room).await == 0
                        || holds_job_slot(&batch[had..])
                    {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(FINISH_LINGER, gather).await;
        }
        let (mut finishes, mut queues, mut frees_job_slots) = split(&mut batch);
        let started = Instant::now();
        let mut failures = 0;
        let mut said_at: Option<Instant> = None;
        let results: Vec<Written> = loop {
            let err = match store.execution_finish_many(&finishes, clock.now()).await {
                Ok(results) => break results.into_iter().map(Written::from).collect(),
                Err(err) => err,
            };
            unwritten.failing.store(true, Ordering::Relaxed);
            if !err.is_transient() && started.elapsed() >= FINISH_PATIENCE {
                let message = err.to_string();
                break finishes
                    .iter()
                    .map(|_| Written::Failed(message.clone()))
                    .collect();
            }
            failures += 1;
            if said_at.is_none_or(|at| at.elapsed() >= FINISH_NAG) {
                said_at = Some(Instant::now());
                tracing::warn!(
                    %err,
                    pending = unwritten.total.load(Ordering::Relaxed),
                    waiting = %panda_core::human::exact(started.elapsed()),
                    "results wait to be written: they are kept and tried again until the store takes them"
                );
            }
            tokio::time::sleep(retry_wait(failures, heartbeat_every)).await;
            // Whatever ended meanwhile waits on the same store: write it in the same try.
            let room = FINISH_BATCH.saturating_sub(finishes.len());
            while batch.len() < room {
                match incoming.try_recv() {
                    Ok(handed) => batch.push(handed),
                    Err(_) => break,
                }
            }
            let (more, more_queues, frees) = split(&mut batch);
            finishes.extend(more);
            queues.extend(more_queues);
            frees_job_slots |= frees;
        };
        unwritten.failing.store(false, Ordering::Relaxed);
        if failures > 0 {
            tracing::info!(
                count = finishes.len(),
                after = %panda_core::human::exact(started.elapsed()),
                "results that waited for the store are written"
            );
        }
        for (finish, result) in finishes.iter().zip(results) {
            log_written(finish.execution_id, result);
        }
        for queue in &queues {
            unwritten.add(queue, -1);
        }
        unwritten.written.notify_one();
        if frees_job_slots {
            unwritten.slots_freed.notify_one();
        }
    }
}

/// The finishes of a batch, their queues, and whether any frees a job slot; empties `batch`.
fn split(batch: &mut Vec<Handed>) -> (Vec<Finish>, Vec<String>, bool) {
    let frees_job_slots = batch.iter().any(|h| h.holds_job_slot);
    let (finishes, queues) = batch
        .drain(..)
        .map(|handed| (handed.finish, handed.queue))
        .unzip();
    (finishes, queues, frees_job_slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(policy: RetryPolicy) -> Vec<u128> {
        (1..=8)
            .map(|n| policy.backoff_ceiling(n).as_millis())
            .collect()
    }

    #[test]
    fn failed_writes_wait_from_50ms_doubling_up_to_5s() {
        assert_eq!(
            waits(FINISH_BACKOFF),
            [50, 100, 200, 400, 800, 1600, 3200, 5000]
        );
    }

    #[test]
    fn failed_writes_are_tried_again_within_a_quarter_heartbeat() {
        let every = Duration::from_secs(1);
        assert_eq!(retry_wait(1, every), Duration::from_millis(50));
        assert_eq!(retry_wait(8, every), Duration::from_millis(250));
        assert_eq!(
            retry_wait(8, Duration::from_secs(60)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn failed_releases_wait_from_100ms_doubling_up_to_2s() {
        assert_eq!(
            waits(RELEASE_BACKOFF),
            [100, 200, 400, 800, 1600, 2000, 2000, 2000]
        );
    }
}
