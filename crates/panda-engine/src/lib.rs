//! Panda's long-running services: the Scheduler (cron slots into executions), the Dispatcher
//! (this node's workers, and the instances of user services it runs), the ServiceController
//! (keeps user services at their definition), the Rescuer (expired leases), the Alerter
//! (alerts and their webhooks) and the Pruner (retention). Each is a struct with `async fn run(self, shutdown)`; its
//! dependencies (the store, the clock) are passed in, and one pass of its loop is a method of
//! its own that tests drive with a [`TestClock`](panda_core::TestClock), without sleeping.

mod alerter;
mod controller;
mod dispatcher;
pub mod metrics;
mod pruner;
mod rescuer;
mod scheduler;

pub use alerter::{Alerter, AlerterConfig, SIGNATURE_HEADER, signature};
pub use controller::{DEFAULT_RECONCILE_INTERVAL, ServiceController};
pub use dispatcher::{
    DEFAULT_DRAIN_GRACE, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LEASE_TTL, DEFAULT_POLL_INTERVAL,
    DEFAULT_SERVICE_SLOTS, Dispatcher, DispatcherConfig, DrainReport, QueueLimit, Runtimes,
    UnwrittenFinishes, execution_env,
};
pub use pruner::{
    DEFAULT_KEEP, DEFAULT_PRUNE_BATCH, DEFAULT_PRUNE_INTERVAL, DEFAULT_PRUNE_PAUSE, Pruner,
};
pub use rescuer::{DEFAULT_RESCUE_INTERVAL, Rescuer};
pub use scheduler::{Scheduler, SchedulerHandle, SchedulerPass};
