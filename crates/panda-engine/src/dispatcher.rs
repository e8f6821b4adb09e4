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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use panda_core::{Clock, Execution, ExecutionId, Job, JobId, RuntimeSpec};
use panda_runtime::{LogConfig, LogSink, RunOutcome, RunReport, RunSpec, Runtime, RuntimeError};
use panda_store::{ClaimRequest, Claimed, Finish, Finished, Lease, Outcome, Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a lease lasts without a heartbeat: three missed heartbeats.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// How often a running execution's lease is renewed.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How often the dispatcher looks for work when nothing woke it.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long running executions may go on after a shutdown begins.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(30);

/// At most this many executions per claim (one transaction).
const CLAIM_BATCH: usize = 100;
/// At most this many finishes per transaction.
const FINISH_BATCH: usize = 256;
/// How long the writer gathers more finishes once one has come. Short runs end in a stream,
/// and one write of several costs the store about what a write of one does; the runs' places
/// in this node's pool are free already, so only the record of each waits this long. A finish
/// that releases a slot of its job (`forbid`, `--max-running`) is written at once instead:
/// the job's next execution waits for it.
const FINISH_LINGER: Duration = Duration::from_millis(2);
/// How long a finish is retried while the store is unreachable. After that the lease expires
/// and the Rescuer runs the execution again: at least once, never lost.
const FINISH_PATIENCE: Duration = Duration::from_secs(60);
/// A job definition read for one claim is reused for later claims this long.
const JOB_CACHE_TTL: Duration = Duration::from_secs(2);

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
            queues: Vec::new(),
            lease_ttl: DEFAULT_LEASE_TTL,
            heartbeat_every: DEFAULT_HEARTBEAT_INTERVAL,
            poll_every: DEFAULT_POLL_INTERVAL,
            drain_grace: DEFAULT_DRAIN_GRACE,
            log: LogConfig::default(),
        }
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
}

/// The worker pool of one node. See the module docs.
#[derive(Debug)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    runtimes: Runtimes,
    config: DispatcherConfig,
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

/// A finish handed to the writer, with its execution's queue and whether it holds one of its
/// job's slots (`forbid`, or a `--max-running` limit) until the finish is written.
type Handed = (Finish, String, bool);

/// Finishes not yet written, per queue, and a wake-up for each write.
#[derive(Debug, Default)]
struct Unwritten {
    counts: std::sync::Mutex<HashMap<String, usize>>,
    written: tokio::sync::Notify,
    /// A write released job slots: the executions waiting for them can be claimed now.
    slots_freed: tokio::sync::Notify,
}

impl Unwritten {
    fn add(&self, queue: &str, delta: isize) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(queue.to_owned()).or_insert(0);
        *count = count.saturating_add_signed(delta);
    }

    fn of(&self, queue: &str) -> usize {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.get(queue).copied().unwrap_or(0)
    }
}

/// One execution this node is running.
#[derive(Debug)]
struct Running {
    execution_id: ExecutionId,
    queue: String,
    /// Fired at the end of a drain's grace period: stop the run and release the execution.
    release: CancellationToken,
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
        }
    }

    /// Runs until `shutdown`, then drains (see the module docs).
    pub async fn run(self, shutdown: CancellationToken) -> DrainReport {
        let mut notices = self.store.subscribe();
        let (finish_tx, finish_rx) = mpsc::channel(FINISH_BATCH * 4);
        let context = Arc::new(Context {
            store: self.store,
            clock: self.clock,
            runtimes: self.runtimes,
            config: self.config,
            finishes: finish_tx,
            unwritten: Arc::default(),
        });
        let finisher = tokio::spawn(write_finishes(
            Arc::clone(&context.store),
            Arc::clone(&context.clock),
            Arc::clone(&context.unwritten),
            finish_rx,
        ));
        // Only a queue with a limit of its own waits for its finishes to be written.
        let limited = context.config.queues.iter().any(|q| q.limit.is_some());
        let mut pool = Pool::new(Arc::clone(&context));
        let mut poll = tokio::time::interval(context.config.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut claim_now = true;
        loop {
            // A full claim may leave more waiting: claim again while there is room.
            while claim_now {
                claim_now = pool.claim().await;
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
                notice = notices.recv() => {
                    // A lagged receiver only means many notices: claim, as for one.
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = notice {
                        notices = context.store.subscribe();
                    }
                    claim_now = true;
                }
                () = context.unwritten.written.notified(), if limited => claim_now = true,
                () = context.unwritten.slots_freed.notified() => claim_now = true,
                _ = poll.tick() => claim_now = true,
            }
        }
        let report = pool.drain().await;
        // The last sender goes with the context: the writer writes what is left and ends.
        drop(context);
        if let Err(err) = finisher.await {
            tracing::error!(%err, "the finish writer failed");
        }
        report
    }
}

/// The executions in flight and the bookkeeping around them.
struct Pool {
    context: Arc<Context>,
    tasks: JoinSet<()>,
    running: HashMap<tokio::task::Id, Running>,
    jobs: HashMap<JobId, (Job, Instant)>,
    /// When the last claim failed, and how long to wait before the next one.
    claim_backoff: Option<(Instant, Duration)>,
    report: DrainReport,
}

impl Pool {
    fn new(context: Arc<Context>) -> Self {
        Self {
            context,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            jobs: HashMap::new(),
            claim_backoff: None,
            report: DrainReport::default(),
        }
    }

    fn free(&self) -> usize {
        self.context
            .config
            .concurrency
            .saturating_sub(self.running.len())
    }

    /// Claims as much as the free capacity (and each queue's limit) allows. Returns whether
    /// there may be more to claim right away (a claim came back full).
    async fn claim(&mut self) -> bool {
        if let Some((failed_at, wait)) = self.claim_backoff
            && failed_at.elapsed() < wait
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
                    let wait = self
                        .claim_backoff
                        .map_or(Duration::from_millis(100), |(_, w)| w * 2)
                        .min(Duration::from_secs(5));
                    tracing::warn!(%err, retry_in = ?wait, "claim failed");
                    self.claim_backoff = Some((Instant::now(), wait));
                    return false;
                }
            };
            self.claim_backoff = None;
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
        let mut jobs: HashMap<JobId, Result<Job, String>> = HashMap::new();
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
                    Err(err) => Err(err.to_string()),
                },
            };
            jobs.insert(job_id, job);
        }
        for claimed in claimed {
            let job = jobs
                .get(&claimed.execution.job_id)
                .cloned()
                .unwrap_or_else(|| Err("the job was not read".to_owned()));
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
    fn ended(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
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
    async fn drain(mut self) -> DrainReport {
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

/// Why a run was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Someone cancelled the execution.
    Cancelled,
    /// The lease moved on (rescued as lost): the result is no longer ours to write.
    LeaseLost,
    /// The node is shutting down: put the execution back in the queue.
    Release,
}

/// Runs one claimed execution to its end and records the outcome.
async fn execute(
    context: Arc<Context>,
    claimed: Claimed,
    job: Result<Job, String>,
    release: CancellationToken,
) {
    let Claimed { execution, lease } = claimed;
    let started = prepare(&context, &execution, job).await;
    let (runtime, spec) = match started {
        Ok(ready) => ready,
        Err(reason) => {
            tracing::warn!(execution = %execution.id, job = %execution.job_name, %reason, "cannot run");
            let finish = Finish {
                execution_id: execution.id,
                token: lease.token,
                outcome: Outcome::Rejected,
                exit_code: None,
                reason: Some(reason),
                image_digest: None,
            };
            record(&context, &execution, finish).await;
            return;
        }
    };
    let logs = LogSink::new(
        Arc::clone(&context.store) as Arc<dyn panda_store::LogStore>,
        execution.id,
        context.config.log,
        spec.secret_env.values(),
    )
    .starting_at(first_log_seq(&context, &execution).await);
    if execution.attempt > 1 {
        // Said of retries only: a first attempt's log holds the job's own output alone, and
        // costs no write when the job prints nothing.
        logs.system(&format!(
            "attempt {} of {} on {}",
            execution.attempt, execution.retry.max_attempts, context.config.worker_id
        ));
    }
    let cancel = CancellationToken::new();
    let run = runtime.run(&spec, logs, cancel.clone());
    tokio::pin!(run);
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + context.config.heartbeat_every,
        context.config.heartbeat_every,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = None;
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            _ = heartbeat.tick() => {
                if let Some(why) = beat(&context, &lease).await
                    && stop.is_none()
                {
                    stop = Some(why);
                    cancel.cancel();
                }
            }
            () = release.cancelled(), if stop.is_none() => {
                stop = Some(Stop::Release);
                cancel.cancel();
            }
        }
    };
    match (stop, &result) {
        (Some(Stop::LeaseLost), _) => {
            tracing::warn!(
                execution = %execution.id,
                "the lease moved on while this ran (the execution was rescued): its result is not recorded"
            );
        }
        (
            Some(Stop::Release),
            Ok(RunReport {
                outcome: RunOutcome::Cancelled,
                ..
            }),
        ) => {
            release_execution(&context, &execution, &lease).await;
        }
        _ => {
            let finish = finish_of(&execution, &lease, &spec, result);
            record(&context, &execution, finish).await;
        }
    }
}

/// Where this run's log starts: after the chunks of an earlier run of the same execution. Only
/// a released execution ran before, and only a released one comes to a claim with a reason.
async fn first_log_seq(context: &Context, execution: &Execution) -> u64 {
    if execution.reason.is_none() {
        return 0;
    }
    match context.store.log_tail(execution.id, 1).await {
        Ok(last) => last.last().map_or(0, |chunk| chunk.seq + 1),
        Err(err) => {
            // A clash only loses the new run's first lines to the old ones; running matters more.
            tracing::warn!(execution = %execution.id, %err, "could not read the log's end");
            0
        }
    }
}

/// Picks the runtime and builds what it runs; `Err` with the reason when the execution cannot
/// run on this node at all.
async fn prepare(
    context: &Context,
    execution: &Execution,
    job: Result<Job, String>,
) -> Result<(Arc<dyn Runtime>, RunSpec), String> {
    let job = job.map_err(|err| format!("its job could not be read: {err}"))?;
    let runtime = context.runtimes.for_spec(&job.spec.runtime)?;
    let spec = RunSpec::for_job(&job.spec, execution.id, &execution_env(execution));
    Ok((Arc::clone(runtime), spec))
}

/// The environment an execution adds to its job's: its own overrides, then the `PANDA_*`
/// variables a job uses to know which run it is (they win over anything else).
pub fn execution_env(execution: &Execution) -> BTreeMap<String, String> {
    let mut env = execution.env.clone();
    env.insert("PANDA_JOB".into(), execution.job_name.clone());
    env.insert("PANDA_EXECUTION_ID".into(), execution.id.to_string());
    env.insert("PANDA_ATTEMPT".into(), execution.attempt.to_string());
    env.insert("PANDA_TRIGGER".into(), execution.trigger.to_string());
    env.insert("PANDA_IDEMPOTENCY_KEY".into(), execution.run_key());
    if let Some(at) = execution.scheduled_at {
        env.insert(
            "PANDA_SCHEDULED_AT".into(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    if let Some(payload) = &execution.payload {
        env.insert("PANDA_PAYLOAD".into(), payload.to_string());
    }
    env
}

/// Renews the lease; says why the run must stop, if it must.
async fn beat(context: &Context, lease: &Lease) -> Option<Stop> {
    match context
        .store
        .execution_heartbeat(
            lease.execution_id,
            lease.token,
            context.config.lease_ttl,
            context.clock.now(),
        )
        .await
    {
        Ok(heartbeat) if heartbeat.cancel_requested => Some(Stop::Cancelled),
        Ok(_) => None,
        Err(StoreError::Stale) => Some(Stop::LeaseLost),
        Err(err) => {
            // The lease outlives a few missed heartbeats; the next one may get through.
            tracing::warn!(execution = %lease.execution_id, %err, "heartbeat failed");
            None
        }
    }
}

/// The report a run's result makes.
fn finish_of(
    execution: &Execution,
    lease: &Lease,
    spec: &RunSpec,
    result: Result<RunReport, RuntimeError>,
) -> Finish {
    let mut finish = Finish {
        execution_id: execution.id,
        token: lease.token,
        outcome: Outcome::Succeeded,
        exit_code: None,
        reason: None,
        image_digest: None,
    };
    match result {
        Ok(report) => {
            finish.image_digest = report.image_digest;
            // Said in the reason, which a success otherwise leaves empty.
            finish.reason = report.log_error;
            match report.outcome {
                RunOutcome::Succeeded => finish.exit_code = Some(0),
                RunOutcome::Failed { exit_code } => {
                    finish.outcome = Outcome::Failed;
                    finish.exit_code = Some(exit_code);
                }
                RunOutcome::TimedOut => {
                    finish.outcome = Outcome::TimedOut;
                    finish.reason = joined(
                        format!(
                            "timed out after {}",
                            humantime::format_duration(spec.timeout)
                        ),
                        finish.reason,
                    );
                }
                RunOutcome::OomKilled => {
                    finish.outcome = Outcome::Failed;
                    finish.exit_code = Some(137);
                    finish.reason = joined("OOMKilled".to_owned(), finish.reason);
                }
                RunOutcome::Cancelled => {
                    finish.outcome = Outcome::Cancelled;
                    finish.reason = joined("cancelled by request".to_owned(), finish.reason);
                }
            }
        }
        Err(RuntimeError::Permanent(message)) => {
            finish.outcome = Outcome::Rejected;
            finish.reason = Some(message);
        }
        Err(RuntimeError::Transient(message)) => {
            finish.outcome = Outcome::Failed;
            finish.reason = Some(format!("could not run: {message}"));
        }
    }
    finish
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

/// `first`, then `more` when there is more to say.
fn joined(first: String, more: Option<String>) -> Option<String> {
    Some(match more {
        Some(more) => format!("{first}; {more}"),
        None => first,
    })
}

/// Hands a finish to the batching writer, which records it and logs what became of it. The
/// run's place in this node's pool is free once this returns; a slot of its job that it holds
/// (`forbid`, `--max-running`) is free once the write is done.
async fn record(context: &Context, execution: &Execution, finish: Finish) {
    context.unwritten.add(&execution.queue, 1);
    if context
        .finishes
        .send((finish, execution.queue.clone(), execution.holds_job_slot()))
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
async fn release_execution(context: &Context, execution: &Execution, lease: &Lease) {
    let mut wait = Duration::from_millis(100);
    let deadline = Instant::now() + context.config.lease_ttl;
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
        match result {
            Ok(released) => {
                tracing::info!(execution = %execution.id, status = %released.status, "released to the queue");
                return;
            }
            Err(StoreError::Stale) => return,
            Err(err) if Instant::now() + wait < deadline => {
                tracing::warn!(execution = %execution.id, %err, "release failed; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(err) => {
                tracing::error!(execution = %execution.id, %err, "release failed; the lease will expire and the Rescuer retry it");
                return;
            }
        }
    }
}

/// The one writer of finishes: batches whatever is waiting into one transaction, and keeps
/// trying while the store is unreachable.
async fn write_finishes(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    unwritten: Arc<Unwritten>,
    mut incoming: mpsc::Receiver<Handed>,
) {
    let holds_job_slot = |handed: &[Handed]| handed.iter().any(|(_, _, holds)| *holds);
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
        let frees_job_slots = holds_job_slot(&batch);
        let (finishes, queues): (Vec<Finish>, Vec<String>) = batch
            .drain(..)
            .map(|(finish, queue, _)| (finish, queue))
            .unzip();
        let started = Instant::now();
        let mut wait = Duration::from_millis(50);
        let results: Vec<Written> = loop {
            match store.execution_finish_many(&finishes, clock.now()).await {
                Ok(results) => break results.into_iter().map(Written::from).collect(),
                Err(err) if started.elapsed() < FINISH_PATIENCE => {
                    tracing::warn!(%err, count = finishes.len(), retry_in = ?wait, "writing results failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(err) => {
                    let message = err.to_string();
                    break finishes
                        .iter()
                        .map(|_| Written::Failed(message.clone()))
                        .collect();
                }
            }
        };
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
