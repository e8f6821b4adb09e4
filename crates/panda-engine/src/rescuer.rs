//! The Rescuer: executions whose worker stopped heartbeating become `lost` and are retried.
//!
//! A lease expires a few missed heartbeats after its worker died (15 s by default, not the hour
//! most queues wait), and the store's fencing makes the rescue safe: once an execution is lost,
//! a late write from its old worker is refused. A lost attempt's retry is due at once.
//!
//! **After a store outage**, every lease has expired by the store's clock, yet their workers
//! may be alive and well: they only could not renew. So once a pass fails, the Rescuer rescues
//! nothing until the store has answered again and a grace of one heartbeat interval has passed
//! on this node's own monotonic clock (the first pass after a failure only probes the store).
//! Within that grace the workers renew their leases (a failed heartbeat is retried after a
//! quarter interval) and write the results they kept (retried at least as often). The grace is
//! measured from when this node saw the store answer, never from times another node wrote, so
//! no node's clock can cut it short. While this node's own results cannot be written, the
//! store is failing for this node too, and it rescues nothing either.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use panda_core::Clock;
use panda_store::{Finished, QueueStore, StoreResult};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::{DEFAULT_HEARTBEAT_INTERVAL, UnwrittenFinishes};

/// How often the Rescuer looks for expired leases.
pub const DEFAULT_RESCUE_INTERVAL: Duration = Duration::from_millis(500);

/// Executions rescued per store call.
const RESCUE_BATCH: u32 = 500;

/// The Rescuer service. See the module docs.
#[derive(Debug)]
pub struct Rescuer {
    store: Arc<dyn QueueStore>,
    clock: Arc<dyn Clock>,
    every: Duration,
    grace: Duration,
    unwritten: Option<UnwrittenFinishes>,
}

/// Where the Rescuer stands with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// The last pass worked: rescue.
    Up,
    /// A pass failed: probe until the store answers.
    Down,
    /// The store answered again at this instant: probe until the grace has passed.
    Back(Instant),
}

impl Rescuer {
    /// A rescuer over `store`, looking every [`DEFAULT_RESCUE_INTERVAL`].
    pub fn new(store: Arc<dyn QueueStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            every: DEFAULT_RESCUE_INTERVAL,
            grace: DEFAULT_HEARTBEAT_INTERVAL,
            unwritten: None,
        }
    }

    /// After a failed pass, waits this long once the store answers again before it rescues:
    /// the nodes' heartbeat interval (see the module docs). The default is
    /// [`DEFAULT_HEARTBEAT_INTERVAL`].
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Rescues nothing while this node's dispatcher cannot write its results.
    pub fn with_unwritten(mut self, unwritten: UnwrittenFinishes) -> Self {
        self.unwritten = Some(unwritten);
        self
    }

    /// Looks for expired leases this often instead.
    pub fn with_interval(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// One pass: rescues every execution whose lease has expired, batch by batch.
    pub async fn tick(&self) -> StoreResult<Vec<Finished>> {
        let mut all = Vec::new();
        loop {
            let rescued = self
                .store
                .execution_rescue(self.clock.now(), RESCUE_BATCH)
                .await?;
            let full = rescued.len() == RESCUE_BATCH as usize;
            for finished in &rescued {
                crate::metrics::lease_rescued(finished);
                let execution = &finished.execution;
                tracing::warn!(
                    execution = %execution.id,
                    job = %execution.job_name,
                    worker = execution.worker_id.as_deref().unwrap_or("?"),
                    status = %execution.status,
                    retry = ?finished.retry.as_ref().map(|r| r.id),
                    "lease expired: the worker stopped heartbeating"
                );
            }
            all.extend(rescued);
            if !full {
                return Ok(all);
            }
        }
    }

    /// A pass that rescues nothing (no lease expired before 1970) and only shows whether the
    /// store answers.
    async fn probe(&self) -> StoreResult<()> {
        self.store
            .execution_rescue(DateTime::<Utc>::UNIX_EPOCH, 1)
            .await
            .map(drop)
    }

    /// One pass of [`Rescuer::run`], from `standing`: the next standing.
    async fn pass(&self, standing: Standing) -> Standing {
        if self
            .unwritten
            .as_ref()
            .is_some_and(UnwrittenFinishes::failing)
        {
            if standing == Standing::Up {
                tracing::warn!(
                    "this node's results cannot be written: rescuing waits until the store takes them"
                );
            }
            return Standing::Down;
        }
        let rescue = match standing {
            Standing::Up => true,
            Standing::Back(at) => at.elapsed() >= self.grace,
            Standing::Down => false,
        };
        let result = if rescue {
            self.tick().await.map(drop)
        } else {
            self.probe().await
        };
        match (result, standing) {
            (Ok(()), _) if rescue => Standing::Up,
            (Ok(()), Standing::Down) => {
                tracing::info!(
                    grace = %panda_core::human::exact(self.grace),
                    "the store answers again: leases are rescued after a grace for their workers to renew them"
                );
                Standing::Back(Instant::now())
            }
            (Ok(()), standing) => standing,
            (Err(err), Standing::Up) => {
                tracing::warn!(%err, "rescue failed; nothing is rescued until the store is back and a heartbeat interval has passed");
                Standing::Down
            }
            (Err(_), _) => Standing::Down,
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut standing = Standing::Up;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            standing = self.pass(standing).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use chrono::TimeDelta;
    use panda_core::{
        Execution, ExecutionId, JobName, JobSpec, RuntimeSpec, Status, StoreError, TestClock,
    };
    use panda_store::{
        ClaimRequest, Claimed, Enqueued, Heartbeat, HistoryStore, JobStore, NewExecution,
        SqliteStore,
    };
    use uuid::Uuid;

    use super::*;

    /// A queue store that fails every call while `down`, as one whose database went away.
    #[derive(Debug)]
    struct Flaky {
        inner: SqliteStore,
        down: AtomicBool,
    }

    impl Flaky {
        fn up(&self) -> StoreResult<()> {
            if self.down.load(Ordering::Relaxed) {
                return Err(StoreError::Unavailable("the database is down".into()));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl QueueStore for Flaky {
        async fn execution_enqueue(
            &self,
            request: &NewExecution,
            now: DateTime<Utc>,
        ) -> StoreResult<Enqueued> {
            self.up()?;
            self.inner.execution_enqueue(request, now).await
        }
        async fn execution_enqueue_many(
            &self,
            requests: &[NewExecution],
            now: DateTime<Utc>,
        ) -> StoreResult<Vec<StoreResult<Enqueued>>> {
            self.up()?;
            self.inner.execution_enqueue_many(requests, now).await
        }
        async fn execution_claim(
            &self,
            request: &ClaimRequest,
            now: DateTime<Utc>,
        ) -> StoreResult<Vec<Claimed>> {
            self.up()?;
            self.inner.execution_claim(request, now).await
        }
        async fn execution_heartbeat(
            &self,
            execution_id: ExecutionId,
            token: Uuid,
            lease_ttl: Duration,
            now: DateTime<Utc>,
        ) -> StoreResult<Heartbeat> {
            self.up()?;
            self.inner
                .execution_heartbeat(execution_id, token, lease_ttl, now)
                .await
        }
        async fn execution_finish_many(
            &self,
            batch: &[panda_store::Finish],
            now: DateTime<Utc>,
        ) -> StoreResult<Vec<StoreResult<Finished>>> {
            self.up()?;
            self.inner.execution_finish_many(batch, now).await
        }
        async fn execution_release_many(
            &self,
            leases: &[(ExecutionId, Uuid)],
            now: DateTime<Utc>,
        ) -> StoreResult<Vec<StoreResult<Execution>>> {
            self.up()?;
            self.inner.execution_release_many(leases, now).await
        }
        async fn execution_cancel(
            &self,
            id: ExecutionId,
            now: DateTime<Utc>,
        ) -> StoreResult<Execution> {
            self.up()?;
            self.inner.execution_cancel(id, now).await
        }
        async fn execution_rescue(
            &self,
            now: DateTime<Utc>,
            limit: u32,
        ) -> StoreResult<Vec<Finished>> {
            self.up()?;
            self.inner.execution_rescue(now, limit).await
        }
        async fn dlq_retry(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<Execution> {
            self.up()?;
            self.inner.dlq_retry(id, now).await
        }
        async fn dlq_retry_job(
            &self,
            job: &str,
            now: DateTime<Utc>,
        ) -> StoreResult<Vec<Execution>> {
            self.up()?;
            self.inner.dlq_retry_job(job, now).await
        }
        async fn dlq_discard(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<()> {
            self.up()?;
            self.inner.dlq_discard(id, now).await
        }
        async fn queue_pause(
            &self,
            name: &str,
            now: DateTime<Utc>,
        ) -> StoreResult<panda_store::QueuePause> {
            self.up()?;
            self.inner.queue_pause(name, now).await
        }
        async fn queue_resume(&self, name: &str) -> StoreResult<bool> {
            self.up()?;
            self.inner.queue_resume(name).await
        }
        async fn queue_pauses(&self) -> StoreResult<Vec<panda_store::QueuePause>> {
            self.up()?;
            self.inner.queue_pauses().await
        }
    }

    #[tokio::test]
    async fn after_a_failed_pass_leases_are_rescued_only_a_grace_after_the_store_answers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = SqliteStore::open(&dir.path().join("panda.db"))
            .await
            .expect("open");
        let start = Utc::now();
        let spec = JobSpec::new(
            JobName::new("work").expect("name"),
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        inner.job_create(&spec, start).await.expect("job");
        inner
            .execution_enqueue(&NewExecution::api("work"), start)
            .await
            .expect("enqueue");
        let claimed = inner
            .execution_claim(
                &ClaimRequest {
                    worker_id: "node".into(),
                    queues: Vec::new(),
                    limit: 1,
                    lease_ttl: Duration::from_secs(15),
                },
                start,
            )
            .await
            .expect("claim")
            .pop()
            .expect("claimed");
        let id = claimed.execution.id;
        let status = |store: &SqliteStore| {
            let store = store.clone();
            async move { store.execution_get(id).await.expect("get").status }
        };
        let flaky = Arc::new(Flaky {
            inner: inner.clone(),
            down: AtomicBool::new(true),
        });
        // The outage outlasts the lease.
        let clock = Arc::new(TestClock::new(start + TimeDelta::seconds(60)));
        let grace = Duration::from_secs(5);
        let rescuer = Rescuer::new(flaky.clone(), clock).with_grace(grace);

        assert_eq!(rescuer.pass(Standing::Up).await, Standing::Down);
        assert_eq!(rescuer.pass(Standing::Down).await, Standing::Down);
        flaky.down.store(false, Ordering::Relaxed);
        let Standing::Back(back) = rescuer.pass(Standing::Down).await else {
            panic!("the first pass that works only notes the time");
        };
        assert_eq!(status(&inner).await, Status::Running);
        assert!(matches!(
            rescuer.pass(Standing::Back(back)).await,
            Standing::Back(_)
        ));
        assert_eq!(status(&inner).await, Status::Running, "within the grace");
        // A failure within the grace starts it over.
        flaky.down.store(true, Ordering::Relaxed);
        assert_eq!(
            rescuer.pass(Standing::Back(back - grace)).await,
            Standing::Down
        );
        flaky.down.store(false, Ordering::Relaxed);
        assert_eq!(status(&inner).await, Status::Running);
        // A grace after the store answered, the lease is rescued.
        let back = Instant::now()
            .checked_sub(grace)
            .expect("an instant a grace ago");
        assert_eq!(rescuer.pass(Standing::Back(back)).await, Standing::Up);
        assert_eq!(status(&inner).await, Status::Lost);
    }
}
