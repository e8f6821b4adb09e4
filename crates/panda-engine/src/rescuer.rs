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
