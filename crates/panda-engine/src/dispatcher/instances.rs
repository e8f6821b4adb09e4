//! The instance pool: service instances have a capacity of their own (`service_slots`), apart
//! from the executions of jobs, so neither can starve the other. It claims due instances with
//! [`ServiceStore::service_claim`](panda_store::ServiceStore::service_claim) (same worker, queues
//! and lease as the job claim), starts a task for each, and at shutdown stops them all at once
//! and releases them, so another node starts them without waiting for the leases to expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use panda_core::{Execution, Job, JobId};
use panda_store::{ClaimRequest, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::instance::run_instance;
use super::pool::CLAIM_BACKOFF;
use super::run::JobUnread;

/// At most this many instances per claim.
const CLAIM_BATCH: usize = 50;

/// Kept revisions read for instances, per service and revision: a revision never changes.
const REVISION_CACHE: usize = 256;

/// The instances in flight.
pub(super) struct Instances {
    context: Arc<Context>,
    pub(super) tasks: JoinSet<()>,
    running: HashMap<tokio::task::Id, CancellationToken>,
    revisions: HashMap<(JobId, u32), Job>,
    claim_failures: Option<(Instant, u32)>,
}

impl Instances {
    pub(super) fn new(context: Arc<Context>) -> Self {
        Self {
            context,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            revisions: HashMap::new(),
            claim_failures: None,
        }
    }

    /// Claims as many instances as the free service slots allow. Returns whether there may be
    /// more to claim right away.
    pub(super) async fn claim(&mut self) -> bool {
        let free = self
            .context
            .config
            .service_slots
            .saturating_sub(self.running.len())
            .min(CLAIM_BATCH);
        if free == 0 {
            return false;
        }
        if let Some((failed_at, failures)) = self.claim_failures
            && failed_at.elapsed() < CLAIM_BACKOFF.backoff_ceiling(failures)
        {
            return false;
        }
        let request = ClaimRequest {
            worker_id: self.context.config.worker_id.clone(),
            queues: self
                .context
                .config
                .queues
                .iter()
                .map(|q| q.name.clone())
                .collect(),
            limit: u32::try_from(free).unwrap_or(u32::MAX),
            lease_ttl: self.context.config.lease_ttl,
        };
        let claimed = match self
            .context
            .store
            .service_claim(&request, self.context.clock.now())
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                let failures = self.claim_failures.map_or(1, |(_, n)| n.saturating_add(1));
                let wait = CLAIM_BACKOFF.backoff_ceiling(failures);
                tracing::warn!(%err, retry_in = ?wait, "claiming service instances failed");
                self.claim_failures = Some((Instant::now(), failures));
                return false;
            }
        };
        self.claim_failures = None;
        let more = claimed.len() == free;
        for claimed in claimed {
            let job = self.job_of(&claimed.execution).await;
            let release = CancellationToken::new();
            let task = self.tasks.spawn(run_instance(
                Arc::clone(&self.context),
                claimed,
                job,
                release.clone(),
            ));
            self.running.insert(task.id(), release);
        }
        more
    }

    /// What an instance runs: its service as it is now, with what runs (runtime, env, secret
    /// env, workdir, limits) taken from the revision the instance was started for, which a
    /// rollout may have left behind.
    async fn job_of(&mut self, execution: &Execution) -> Result<Job, JobUnread> {
        let unread = |err: StoreError| {
            if err.is_transient() {
                JobUnread::StoreDown(err.to_string())
            } else {
                JobUnread::Failed(err.to_string())
            }
        };
        let mut job = self
            .context
            .store
            .job_get_by_id(execution.job_id)
            .await
            .map_err(unread)?;
        let Some(revision) = execution.revision else {
            return Ok(job);
        };
        let key = (execution.job_id, revision);
        if !self.revisions.contains_key(&key) {
            let kept = self
                .context
                .store
                .service_revisions(&execution.job_name)
                .await
                .map_err(unread)?;
            if self.revisions.len() >= REVISION_CACHE {
                self.revisions.clear();
            }
            for kept in kept {
                self.revisions
                    .insert((execution.job_id, kept.revision), kept.job);
            }
        }
        match self.revisions.get(&key) {
            Some(of_revision) => {
                let ran = &of_revision.spec;
                job.spec.runtime = ran.runtime.clone();
                job.spec.env = ran.env.clone();
                job.spec.secret_env = ran.secret_env.clone();
                job.spec.workdir = ran.workdir.clone();
                job.spec.limits = ran.limits;
            }
            None => tracing::warn!(
                execution = %execution.id,
                service = %execution.job_name,
                revision,
                "the instance's revision is no longer kept; it runs the service's current definition"
            ),
        }
        Ok(job)
    }

    /// Forgets a task that ended.
    pub(super) fn ended(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(err) => {
                tracing::error!(%err, "an instance's task failed");
                err.id()
            }
        };
        self.running.remove(&id);
    }

    /// Stops every instance (its stop signal, then the kill after its stop timeout) and
    /// releases it at once; returns how many there were.
    pub(super) async fn drain(mut self) -> usize {
        let count = self.running.len();
        if count > 0 {
            tracing::info!(
                instances = count,
                "draining: stopping this node's service instances and handing them over"
            );
        }
        for release in self.running.values() {
            release.cancel();
        }
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.ended(done);
        }
        count
    }
}
