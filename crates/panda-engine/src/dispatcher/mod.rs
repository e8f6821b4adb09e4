//! The Dispatcher: this node's worker pool. It claims queued executions up to its free
//! capacity, runs each through its runtime while heartbeating the lease, and writes the outcome
//! fenced by the lease token.
//!
//! - **Claims** come in batches, woken by the store's notices (an enqueue in this process, or
//!   PostgreSQL's NOTIFY) and by a poll, which stays the truth: a lost notice delays a claim by
//!   one poll at most, never loses it.
//! - **Heartbeats** renew each lease every few seconds. A heartbeat that says the execution was
//!   cancelled stops the run; one refused as stale (the lease was rescued) stops it too, and its
//!   result is not written: the execution already belongs to someone else.
//! - **Finishes** from all runs go through one writer that batches them into one transaction,
//!   so a busy node does not pay one commit per execution.
//! - **Drain**: when `shutdown` fires, nothing new is claimed; running executions get a grace
//!   period to end, then are stopped and released to the queue, so another node takes them at
//!   once instead of after the lease expires.
//!
//! - **Service instances** have a capacity of their own (`service_slots`), claimed apart from
//!   job executions so neither starves the other. An instance runs with no timeout and its
//!   health watched; a stop request, a failed health check or a drain stops it with its
//!   service's stop signal and stop timeout, and a lost lease kills it at once. A draining
//!   node does not wait for its instances: it stops and releases them at once.
//!
//! The pool that claims is [`pool`], the run of one execution [`run`], its lease's renewal
//! [`heartbeat`], and the writing of its end [`finish`]; instances are claimed by
//! [`instances`], each run by [`instance`], its health watched by [`health`].

mod finish;
mod health;
mod heartbeat;
mod instance;
mod instances;
mod pool;
mod run;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use panda_core::{Clock, RuntimeSpec};
use panda_runtime::{LogConfig, Runtime};
use panda_store::{Notice, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use finish::UnwrittenFinishes;
use finish::{Handed, Unwritten};
use instances::Instances;
use pool::Pool;

pub use run::execution_env;

/// How long a lease lasts without a heartbeat: three missed heartbeats.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// How often a running execution's lease is renewed.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How often the dispatcher looks for work when nothing woke it.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long running executions may go on after a shutdown begins.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Service instances run at once on a node.
pub const DEFAULT_SERVICE_SLOTS: usize = 100;

/// A queue this node takes work from, and how many of its executions it runs at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimit {
    /// The queue's name.
    pub name: String,
    /// At most this many of its executions at once on this node; `None`: only the node's
    /// concurrency limits it.
    pub limit: Option<usize>,
}

impl FromStr for QueueLimit {
    type Err = String;

    /// `reports` or `reports=2`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, limit) = match s.split_once('=') {
            Some((name, limit)) => {
                let limit = limit.trim().parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("{s:?}: the limit after '=' must be a whole number above 0, as in reports=2")
                })?;
                (name.trim(), Some(limit))
            }
            None => (s.trim(), None),
        };
        panda_core::validate_queue_name(name).map_err(|err| err.to_string())?;
        Ok(Self {
            name: name.to_owned(),
            limit,
        })
    }
}

impl fmt::Display for QueueLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Some(limit) => write!(f, "{}={limit}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// How a [`Dispatcher`] works.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// This node's name on the executions it claims.
    pub worker_id: String,
    /// Executions run at once on this node.
    pub concurrency: usize,
    /// Service instances run at once on this node, apart from `concurrency`.
    pub service_slots: usize,
    /// The queues taken from; empty means every queue.
    pub queues: Vec<QueueLimit>,
    /// How long a lease lasts without a heartbeat.
    pub lease_ttl: Duration,
    /// How often leases are renewed.
    pub heartbeat_every: Duration,
    /// How often to look for work when nothing woke the dispatcher.
    pub poll_every: Duration,
    /// How long running executions may go on after a shutdown begins.
    pub drain_grace: Duration,
    /// How output is captured.
    pub log: LogConfig,
}

impl DispatcherConfig {
    /// The defaults, with `concurrency` slots, named `worker_id`.
    pub fn new(worker_id: impl Into<String>, concurrency: usize) -> Self {
        Self {
            worker_id: worker_id.into(),
            concurrency,
            service_slots: DEFAULT_SERVICE_SLOTS,
            queues: Vec::new(),
            lease_ttl: DEFAULT_LEASE_TTL,
            heartbeat_every: DEFAULT_HEARTBEAT_INTERVAL,
            poll_every: DEFAULT_POLL_INTERVAL,
            drain_grace: DEFAULT_DRAIN_GRACE,
            log: LogConfig::default(),
        }
    }

    /// Whether this node takes work from `queue`.
    pub fn serves(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|q| q.name == queue)
    }
}

/// The runtimes this node has: an execution is run by the one its job names.
#[derive(Debug, Clone, Default)]
pub struct Runtimes {
    /// Runs `--image` jobs; `None` when this node has no Docker engine.
    pub docker: Option<Arc<dyn Runtime>>,
    /// Runs `--exec` jobs; `None` when this node may not run local processes.
    pub process: Option<Arc<dyn Runtime>>,
}

impl Runtimes {
    fn for_spec(&self, spec: &RuntimeSpec) -> Result<&Arc<dyn Runtime>, String> {
        match spec {
            RuntimeSpec::Image { .. } => self.docker.as_ref().ok_or_else(|| {
                "this node has no Docker engine to run an image: start the server where Docker \
                 answers, or give the job --exec to run it as a local process"
                    .to_owned()
            }),
            RuntimeSpec::Process { .. } => self.process.as_ref().ok_or_else(|| {
                "this node does not run local processes (it was started with --runtime docker); \
                 give the job --image, or run a node with --runtime process"
                    .to_owned()
            }),
            // The store refuses to queue a monitor's runs; one queued another way (SQL) ends
            // here, not retried.
            RuntimeSpec::Ping => Err("a monitor runs nothing on Panda: its runs happen \
                                      elsewhere and are recorded when they call its ping URL"
                .to_owned()),
        }
    }
}

/// What a dispatcher did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Executions that ended within the grace period.
    pub finished: usize,
    /// Executions stopped at the end of the grace period and put back in the queue.
    pub released: usize,
    /// Service instances stopped and handed over at once.
    pub instances: usize,
}

/// The worker pool of one node. See the module docs.
#[derive(Debug)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    runtimes: Runtimes,
    config: DispatcherConfig,
    unwritten: Arc<Unwritten>,
}

/// What every run shares.
#[derive(Debug)]
struct Context {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    runtimes: Runtimes,
    config: DispatcherConfig,
    finishes: mpsc::Sender<Handed>,
    /// Finishes handed to the writer and not yet written, per queue: their executions are
    /// still `running` in the store, so they count against their queue's limit.
    unwritten: Arc<Unwritten>,
}

impl Dispatcher {
    /// A dispatcher over `store`, running executions with `runtimes`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        runtimes: Runtimes,
        config: DispatcherConfig,
    ) -> Self {
        Self {
            store,
            clock,
            runtimes,
            config,
            unwritten: Arc::default(),
        }
    }

    /// This node's results waiting to be written, for the [`Rescuer`](crate::Rescuer).
    pub fn unwritten_finishes(&self) -> UnwrittenFinishes {
        UnwrittenFinishes(Arc::clone(&self.unwritten))
    }

    /// Runs until `shutdown`, then drains (see the module docs).
    pub async fn run(self, shutdown: CancellationToken) -> DrainReport {
        let mut notices = self.store.subscribe();
        let (finish_tx, finish_rx) = mpsc::channel(finish::FINISH_BATCH * 4);
        let context = Arc::new(Context {
            store: self.store,
            clock: self.clock,
            runtimes: self.runtimes,
            config: self.config,
            finishes: finish_tx,
            unwritten: self.unwritten,
        });
        let finisher = tokio::spawn(finish::write_finishes(
            Arc::clone(&context.store),
            Arc::clone(&context.clock),
            Arc::clone(&context.unwritten),
            context.config.heartbeat_every,
            finish_rx,
        ));
        // Only a queue with a limit of its own waits for its finishes to be written.
        let limited = context.config.queues.iter().any(|q| q.limit.is_some());
        let mut pool = Pool::new(Arc::clone(&context));
        let mut instances = Instances::new(Arc::clone(&context));
        let mut claim_instances = true;
        let mut poll = tokio::time::interval(context.config.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Instances are looked for four times as often: a drained node's instances are found
        // without a wake-up where the store has none across processes (SQLite), and the look
        // reads only the small index of due instances.
        let mut instance_poll =
            tokio::time::interval((context.config.poll_every / 4).max(Duration::from_millis(1)));
        instance_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut claim_now = true;
        // When a claim for a few free places was put off to: see [`pool::CLAIM_LINGER`].
        let mut claim_at: Option<tokio::time::Instant> = None;
        // The claim was put off once already: it is made now, however few places are free.
        let mut lingered = false;
        loop {
            if claim_now && claim_at.is_none() && !lingered && pool.mostly_busy() {
                claim_at = Some(tokio::time::Instant::now() + pool::CLAIM_LINGER);
            }
            if claim_at.is_some() && !pool.mostly_busy() {
                claim_at = None;
            }
            // A full claim may leave more waiting: claim again while there is room.
            while claim_now && claim_at.is_none() {
                claim_now = pool.claim().await;
                lingered = false;
            }
            while claim_instances {
                claim_instances = instances.claim().await;
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(done) = pool.tasks.join_next_with_id() => {
                    pool.ended(done);
                    // Finishes are written in batches, so runs end in bursts: one claim for
                    // the whole burst instead of one per run.
                    while let Some(done) = pool.tasks.try_join_next_with_id() {
                        pool.ended(done);
                    }
                    claim_now = true;
                }
                Some(done) = instances.tasks.join_next_with_id() => {
                    instances.ended(done);
                    claim_instances = true;
                }
                notice = notices.recv() => {
                    // A lagged receiver only means many notices: claim, as for one. Work
                    // queued where this node does not take from wakes nothing here.
                    let served = match &notice {
                        Ok(Notice::Queued { queue }) => context.config.serves(queue),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            notices = context.store.subscribe();
                            true
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    };
                    claim_now |= served;
                    claim_instances |= served;
                }
                () = context.unwritten.written.notified(), if limited => claim_now = true,
                () = context.unwritten.slots_freed.notified() => claim_now = true,
                _ = poll.tick() => claim_now = true,
                () = tokio::time::sleep_until(claim_at.unwrap_or_else(tokio::time::Instant::now)),
                    if claim_at.is_some() => {
                    claim_at = None;
                    lingered = true;
                }
                _ = instance_poll.tick() => claim_instances = true,
            }
        }
        // Instances are handed over at once, while executions get their grace period.
        let (mut report, handed_over) = tokio::join!(pool.drain(), instances.drain());
        report.instances = handed_over;
        // The last sender goes with the context: the writer writes what is left and ends.
        drop(context);
        if let Err(err) = finisher.await {
            tracing::error!(%err, "the finish writer failed");
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_limits_parse_with_and_without_a_limit() {
        assert_eq!(
            "reports=2".parse::<QueueLimit>(),
            Ok(QueueLimit {
                name: "reports".into(),
                limit: Some(2)
            })
        );
        assert_eq!(
            "default".parse::<QueueLimit>(),
            Ok(QueueLimit {
                name: "default".into(),
                limit: None
            })
        );
        let err = "reports=0".parse::<QueueLimit>().expect_err("zero");
        assert!(err.contains("above 0"), "{err}");
        let err = "reports=x".parse::<QueueLimit>().expect_err("not a number");
        assert!(err.contains("reports=2"), "{err}");
        assert!("Bad Name".parse::<QueueLimit>().is_err());
    }
}
