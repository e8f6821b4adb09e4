//! The ServiceController: keeps every service at its definition. Every half second it asks the
//! store to reconcile (start missing instances, stop surplus ones, move rollouts on), and every
//! few seconds it sets the service gauges from the services' status. The store does the work,
//! each service in its own transaction with its job locked, so every server node runs a
//! controller and they take turns; an error is logged and the next pass tries again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use panda_core::Clock;
use panda_store::{Reconciled, ServiceStore, StoreResult};
use tokio_util::sync::CancellationToken;

/// How often services are reconciled.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_millis(500);

/// How often the service gauges are read from the store.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// How often a reconcile that keeps failing says so again.
const NAG_EVERY: Duration = Duration::from_secs(30);

/// The ServiceController service. See the module docs.
#[derive(Debug)]
pub struct ServiceController<S: ?Sized = dyn panda_store::Store> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    gauges: crate::metrics::ServiceGauges,
}

impl<S: ServiceStore + ?Sized + 'static> ServiceController<S> {
    /// A controller over `store`, reconciling every [`DEFAULT_RECONCILE_INTERVAL`].
    pub fn new(store: Arc<S>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            interval: DEFAULT_RECONCILE_INTERVAL,
            gauges: crate::metrics::ServiceGauges::default(),
        }
    }

    /// Reconciles every `interval` instead.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// One reconcile pass, logged.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn reconcile(&self) -> StoreResult<Reconciled> {
        let done = self.store.service_reconcile(self.clock.now()).await?;
        if done.started > 0 || done.stopped > 0 {
            tracing::info!(
                started = done.started,
                stopped = done.stopped,
                "services reconciled"
            );
        }
        for (service, revision) in &done.rolled_out {
            tracing::info!(%service, revision, "rollout succeeded");
        }
        for (service, reason) in &done.reverted {
            tracing::warn!(%service, %reason, "rollout reverted to the previous revision");
        }
        Ok(done)
    }

    /// Sets the service gauges from one reading of every service's status.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn refresh_gauges(&self) -> StoreResult<()> {
        let services = self.store.service_list(self.clock.now()).await?;
        self.gauges.set(&services);
        Ok(())
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gauges_at: Option<tokio::time::Instant> = None;
        let mut said_at: Option<tokio::time::Instant> = None;
        let mut failing: BTreeSet<&'static str> = BTreeSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            // Each pass is awaited to its end (never dropped by the select): a store write cut
            // off half-way can keep SQLite's write lock.
            let reconciled = self.reconcile().await.err();
            let gauges = if gauges_at.is_none_or(|at| at.elapsed() >= GAUGES_EVERY) {
                gauges_at = Some(tokio::time::Instant::now());
                self.refresh_gauges().await.err()
            } else {
                None
            };
            let nag = said_at.is_none_or(|at| at.elapsed() >= NAG_EVERY);
            for (what, err) in [("reconcile", reconciled), ("gauges", gauges)] {
                match err {
                    Some(err) => {
                        if nag || failing.insert(what) {
                            said_at = Some(tokio::time::Instant::now());
                            tracing::warn!(%err, "services: {what} failed; trying again");
                        }
                        failing.insert(what);
                    }
                    None => {
                        if failing.remove(what) {
                            tracing::info!("services: {what} works again");
                        }
                    }
                }
            }
        }
    }
}
