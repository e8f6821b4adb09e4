//! The pool: claims queued executions up to this node's free capacity and each queue's limit,
//! starts a task for each, and at shutdown drains them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use panda_core::{ExecutionId, Job, JobId, RetryPolicy};
use panda_store::{ClaimRequest, Claimed};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::run::{JobUnread, execute};
use super::{Context, DrainReport};

/// At most this many executions per claim (one transaction).
const CLAIM_BATCH: usize = 100;
/// How long a claim for a few free places waits for more to free up: runs that end together
/// (a batch of finishes, short runs started by one claim) are claimed for in one claim
/// instead of one claim for most of them and another for the last.
pub(super) const CLAIM_LINGER: Duration = Duration::from_millis(1);
/// A job definition read for one claim is reused for later claims this long.
const JOB_CACHE_TTL: Duration = Duration::from_secs(2);
/// The wait after failed claims: the policy's ceiling, from 100 ms doubling up to 5 s. Claims
/// are tried for as long as the node runs, so the attempts are not counted out.
pub(super) const CLAIM_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    backoff_base: Duration::from_millis(100),
    backoff_cap: Duration::from_secs(5),
};

/// One execution this node is running.
#[derive(Debug)]
struct Running {
    execution_id: ExecutionId,
    queue: String,
    /// Fired at the end of a drain's grace period: stop the run and release the execution.
    release: CancellationToken,
}

/// The executions in flight and the bookkeeping around them.
pub(super) struct Pool {
    context: Arc<Context>,
    pub(super) tasks: JoinSet<()>,
    running: HashMap<tokio::task::Id, Running>,
    jobs: HashMap<JobId, (Job, Instant)>,
    /// When the last claim failed, and how many failed in a row: the next waits
    /// [`CLAIM_BACKOFF`]'s ceiling after that many.
    claim_failures: Option<(Instant, u32)>,
    report: DrainReport,
}

impl Pool {
    pub(super) fn new(context: Arc<Context>) -> Self {
        Self {
            context,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            jobs: HashMap::new(),
            claim_failures: None,
            report: DrainReport::default(),
        }
    }

    fn free(&self) -> usize {
        self.context
            .config
            .concurrency
            .saturating_sub(self.running.len())
    }

    /// Whether so few places are free (fewer than half) that a claim is worth putting off for
    /// [`CLAIM_LINGER`] while others run: they may end in a moment.
    pub(super) fn mostly_busy(&self) -> bool {
        self.free() * 2 < self.context.config.concurrency && !self.running.is_empty()
    }

    /// Claims as much as the free capacity (and each queue's limit) allows. Returns whether
    /// there may be more to claim right away (a claim came back full).
    pub(super) async fn claim(&mut self) -> bool {
        if let Some((failed_at, failures)) = self.claim_failures
            && failed_at.elapsed() < CLAIM_BACKOFF.backoff_ceiling(failures)
        {
            return false;
        }
        let mut more = false;
        for (queues, limit) in self.claims_to_make() {
            let request = ClaimRequest {
                worker_id: self.context.config.worker_id.clone(),
                queues,
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
                lease_ttl: self.context.config.lease_ttl,
            };
            let claimed = match self
                .context
                .store
                .execution_claim(&request, self.context.clock.now())
                .await
            {
                Ok(claimed) => claimed,
                Err(err) => {
                    let failures = self.claim_failures.map_or(1, |(_, n)| n.saturating_add(1));
                    let wait = CLAIM_BACKOFF.backoff_ceiling(failures);
                    tracing::warn!(%err, retry_in = ?wait, "claim failed");
                    self.claim_failures = Some((Instant::now(), failures));
                    return false;
                }
            };
            self.claim_failures = None;
            more |= claimed.len() == limit;
            self.start(claimed).await;
        }
        more
    }

    /// The claims that fill the free capacity: one for the queues without a limit of their
    /// own, one for each limited queue with room.
    fn claims_to_make(&self) -> Vec<(Vec<String>, usize)> {
        let mut free = self.free();
        let mut claims = Vec::new();
        let queues = &self.context.config.queues;
        if queues.is_empty() {
            if free > 0 {
                claims.push((Vec::new(), free.min(CLAIM_BATCH)));
            }
            return claims;
        }
        for queue in queues.iter().filter(|q| q.limit.is_some()) {
            let busy = self
                .running
                .values()
                .filter(|r| r.queue == queue.name)
                .count()
                + self.context.unwritten.of(&queue.name);
            let room = queue.limit.unwrap_or(usize::MAX).saturating_sub(busy);
            let take = room.min(free).min(CLAIM_BATCH);
            if take > 0 {
                claims.push((vec![queue.name.clone()], take));
                free -= take;
            }
        }
        let open: Vec<String> = queues
            .iter()
            .filter(|q| q.limit.is_none())
            .map(|q| q.name.clone())
            .collect();
        if !open.is_empty() && free > 0 {
            claims.push((open, free.min(CLAIM_BATCH)));
        }
        claims
    }

    /// Starts a task for each claimed execution.
    async fn start(&mut self, claimed: Vec<Claimed>) {
        let wanted: HashSet<JobId> = claimed.iter().map(|c| c.execution.job_id).collect();
        let mut jobs: HashMap<JobId, Result<Job, JobUnread>> = HashMap::new();
        for job_id in wanted {
            let cached = self
                .jobs
                .get(&job_id)
                .filter(|(_, at)| at.elapsed() < JOB_CACHE_TTL)
                .map(|(job, _)| job.clone());
            let job = match cached {
                Some(job) => Ok(job),
                None => match self.context.store.job_get_by_id(job_id).await {
                    Ok(job) => {
                        self.jobs.insert(job_id, (job.clone(), Instant::now()));
                        Ok(job)
                    }
                    Err(err) if err.is_transient() => Err(JobUnread::StoreDown(err.to_string())),
                    Err(err) => Err(JobUnread::Failed(err.to_string())),
                },
            };
            jobs.insert(job_id, job);
        }
        for claimed in claimed {
            let job = jobs
                .get(&claimed.execution.job_id)
                .cloned()
                .unwrap_or_else(|| Err(JobUnread::Failed("the job was not read".to_owned())));
            let release = CancellationToken::new();
            let running = Running {
                execution_id: claimed.execution.id,
                queue: claimed.execution.queue.clone(),
                release: release.clone(),
            };
            let task = self
                .tasks
                .spawn(execute(Arc::clone(&self.context), claimed, job, release));
            self.running.insert(task.id(), running);
        }
    }

    /// Forgets a task that ended.
    pub(super) fn ended(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(err) => {
                // The lease is no longer heartbeated: the Rescuer will take the execution.
                tracing::error!(%err, "an execution's task failed");
                err.id()
            }
        };
        self.running.remove(&id);
    }

    /// Lets running executions end within the grace period, then releases the rest.
    pub(super) async fn drain(mut self) -> DrainReport {
        let grace = self.context.config.drain_grace;
        if !self.running.is_empty() {
            tracing::info!(
                running = self.running.len(),
                ?grace,
                "draining: no new work; running executions may finish"
            );
        }
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = self.tasks.join_next_with_id() => match done {
                    Some(done) => {
                        self.ended(done);
                        self.report.finished += 1;
                    }
                    None => return self.report,
                },
                () = &mut deadline => break,
            }
        }
        tracing::info!(
            running = self.running.len(),
            "grace period over: stopping and releasing the executions still running"
        );
        self.report.released = self.running.len();
        for running in self.running.values() {
            tracing::info!(execution = %running.execution_id, "releasing");
            running.release.cancel();
        }
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.ended(done);
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_claims_wait_from_100ms_doubling_up_to_5s() {
        let waits: Vec<u128> = (1..=8)
            .map(|n| CLAIM_BACKOFF.backoff_ceiling(n).as_millis())
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(
            CLAIM_BACKOFF.backoff_ceiling(u32::MAX),
            Duration::from_secs(5)
        );
    }
}
