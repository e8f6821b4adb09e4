//! The Rescuer: executions whose worker stopped heartbeating become `lost` and are retried.
//!
//! A lease expires a few missed heartbeats after its worker died (15 s by default, not the hour
//! most queues wait), and the store's fencing makes the rescue safe: once an execution is lost,
//! a late write from its old worker is refused. A lost attempt's retry is due at once.

use std::sync::Arc;
use std::time::Duration;

use panda_core::Clock;
use panda_store::{Finished, QueueStore, StoreResult};
use tokio_util::sync::CancellationToken;

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
}

impl Rescuer {
    /// A rescuer over `store`, looking every [`DEFAULT_RESCUE_INTERVAL`].
    pub fn new(store: Arc<dyn QueueStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            every: DEFAULT_RESCUE_INTERVAL,
        }
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

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(err) = self.tick().await {
                tracing::warn!(%err, "rescue failed; trying again");
            }
        }
    }
}
