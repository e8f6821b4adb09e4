//! The Pruner: finished history beyond each job's keep count or maximum age is deleted, with
//! its logs, a bounded batch at a time.
//!
//! Every interval it calls [`RetentionStore::retention_prune`] until a batch comes back short. Each
//! call is one short transaction, and the Pruner pauses between calls, so claims, finishes and
//! log writes interleave with a large backlog instead of waiting behind it.

use std::sync::Arc;
use std::time::Duration;

use panda_core::Clock;
use panda_store::{Pruned, Retention, RetentionStore, StoreResult};
use tokio_util::sync::CancellationToken;

/// How often the Pruner looks for history to delete.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Executions deleted per store call.
pub const DEFAULT_PRUNE_BATCH: u32 = 1000;

/// Finished executions kept per job when neither the job nor the server says otherwise.
pub const DEFAULT_KEEP: u32 = 1000;

/// The pause between two batches of one pass, so other writers get the database.
pub const DEFAULT_PRUNE_PAUSE: Duration = Duration::from_millis(50);

/// The Pruner service. See the module docs.
#[derive(Debug)]
pub struct Pruner {
    store: Arc<dyn RetentionStore>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    every: Duration,
    pause: Duration,
}

impl Pruner {
    /// A pruner over `store` with the store-wide defaults `retention` (which jobs' own `keep`
    /// and `max_age` override), every [`DEFAULT_PRUNE_INTERVAL`], pausing
    /// [`DEFAULT_PRUNE_PAUSE`] between batches.
    pub fn new(
        store: Arc<dyn RetentionStore>,
        clock: Arc<dyn Clock>,
        retention: Retention,
    ) -> Self {
        Self {
            store,
            clock,
            retention,
            every: DEFAULT_PRUNE_INTERVAL,
            pause: DEFAULT_PRUNE_PAUSE,
        }
    }

    /// Prunes this often instead.
    pub fn with_interval(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Pauses this long between batches instead.
    pub fn with_pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// One pass: prunes batch after batch until one comes back short, or until `shutdown`.
    /// Returns what the pass deleted.
    pub async fn tick(&self, shutdown: &CancellationToken) -> StoreResult<Pruned> {
        let mut total = Pruned::default();
        let mut batches = 0u64;
        let started = std::time::Instant::now();
        loop {
            let pruned = self
                .store
                .retention_prune(&self.retention, self.clock.now())
                .await?;
            batches += 1;
            total.executions += pruned.executions;
            total.log_chunks += pruned.log_chunks;
            total.slots += pruned.slots;
            if !pruned.is_full(self.retention.batch) {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.pause) => {}
            }
        }
        if total != Pruned::default() {
            tracing::info!(
                executions = total.executions,
                log_chunks = total.log_chunks,
                slots = total.slots,
                batches,
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "pruned history"
            );
        }
        Ok(total)
    }

    /// Runs until `shutdown`; the first pass is at once.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            // A pass stops between batches on shutdown; a batch in flight is one short
            // transaction, so it is left to end.
            if let Err(err) = self.tick(&shutdown).await {
                tracing::warn!(%err, "pruning failed; trying again at the next interval");
            }
        }
    }
}
