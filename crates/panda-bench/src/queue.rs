//! `panda-bench queue`: the workers end to end, on each store backend, in one run.
//!
//! - The engine's own overhead: executions/s through the Dispatcher with a runtime that does
//!   nothing (claim, heartbeat bookkeeping, log sink, finish).
//! - `/bin/true` through the Dispatcher and the process runtime vs the same commands through
//!   `xargs -P N`, at the same concurrency, in alternating rounds; the medians are compared.
//! - Enqueue-to-start latency on an idle dispatcher: from the enqueue call to the runtime being
//!   asked to run it.
//! - Rescue: a worker claims and dies at once (no heartbeat ever comes); from the moment its
//!   lease began to the retry starting on a live node.
//!
//! Metrics are recorded as in `panda server` (the same Prometheus recorder is installed), so
//! their cost is in every figure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use async_trait::async_trait;
use chrono::Utc;
use clap::Args;
use panda_core::{
    ConcurrencyPolicy, ExecutionId, JobName, JobSpec, RetryPolicy, RuntimeSpec, Status, SystemClock,
};
use panda_engine::{Dispatcher, DispatcherConfig, Rescuer, Runtimes};
use panda_runtime::{
    LogSink, ProcessRuntime, RunOutcome, RunReport, RunSpec, Runtime, RuntimeError,
};
use panda_store::{ClaimRequest, ExecutionFilter, NewExecution, Store};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::runtime::{Row, print_table};
use super::{Backend, Scratch, median};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench queue
  panda-bench queue --database-url postgres://postgres@127.0.0.1/panda_bench --concurrency 8")]
pub(crate) struct QueueBench {
    /// PostgreSQL database to measure in (a fresh schema is made and dropped); without it only
    /// SQLite is measured
    #[arg(long, env = "PANDA_BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Executions through the no-op runtime
    #[arg(long, default_value_t = 5000)]
    executions: u32,
    /// Runs of /bin/true through the process runtime (and through xargs)
    #[arg(long, default_value_t = 1000)]
    runs: u32,
    /// Rounds of /bin/true, each through xargs then through Panda; the medians are compared
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Executions at a time (the dispatcher's concurrency, xargs' -P)
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// Enqueues timed on an idle dispatcher
    #[arg(long, default_value_t = 200)]
    samples: u32,
    /// Workers killed for the rescue measurement
    #[arg(long, default_value_t = 5)]
    rescues: u32,
    /// The lease of the workers in the rescue measurement
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    lease_ttl: Duration,
}

pub(super) async fn run(args: QueueBench) -> anyhow::Result<()> {
    if args.executions == 0
        || args.runs == 0
        || args.rounds == 0
        || args.concurrency == 0
        || args.samples == 0
    {
        bail!("--executions, --runs, --rounds, --concurrency and --samples must be at least 1");
    }
    let recording = CancellationToken::new();
    let _metrics = panda_api::install_metrics_recorder(&recording)?;
    let mut rows = Vec::new();
    for backend in Backend::requested(args.database_url.as_deref()) {
        let name = backend.name();
        let scratch = Scratch::open(backend, args.database_url.as_deref(), 16).await?;
        let store = scratch.store();

        eprintln!("{name}: {} executions, no-op runtime", args.executions);
        let noop = executions_per_second(&store, &args, Engine::Noop, args.executions).await?;
        rows.push(Row {
            what: format!("{name}: no-op runtime, concurrency {}", args.concurrency),
            value: noop,
            unit: "exec/s",
            baseline: None,
            target: "",
        });

        // Rounds of xargs then Panda, side by side, so that a drift of the machine's speed
        // (other tenants, turbo) touches both figures of a round alike.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 1..=args.rounds {
            let xargs = xargs_per_second(args.runs, args.concurrency).await?;
            eprintln!("{name}: {} runs of /bin/true, round {round}", args.runs);
            let panda = executions_per_second(&store, &args, Engine::Process, args.runs).await?;
            eprintln!(
                "{name}: round {round}: {panda:.1} exec/s vs xargs {xargs:.1} ({:.2}x)",
                panda / xargs
            );
            ours.push(panda);
            theirs.push(xargs);
        }
        rows.push(Row {
            what: format!(
                "{name}: /bin/true, concurrency {}, median of {}",
                args.concurrency, args.rounds
            ),
            value: median(&mut ours),
            unit: "exec/s",
            baseline: Some(median(&mut theirs)),
            target: ">= 0.8x xargs -P",
        });

        eprintln!("{name}: {} enqueues on an idle node", args.samples);
        let mut latencies = start_latencies(&store, &args).await?;
        rows.push(Row {
            what: format!("{name}: enqueue to start, p50"),
            value: percentile(&mut latencies, 50.0),
            unit: "ms",
            baseline: None,
            target: "",
        });
        rows.push(Row {
            what: format!("{name}: enqueue to start, p99"),
            value: percentile(&mut latencies, 99.0),
            unit: "ms",
            baseline: None,
            target: "<= 25 ms",
        });

        if args.rescues > 0 {
            eprintln!("{name}: {} dead workers rescued", args.rescues);
            let mut restarts = rescue_delays(&store, &args).await?;
            let lease_ms = args.lease_ttl.as_secs_f64() * 1000.0;
            rows.push(Row {
                what: format!("{name}: dead worker to restart, max"),
                value: percentile(&mut restarts, 100.0),
                unit: "ms",
                baseline: Some(lease_ms),
                target: "<= lease + 1000 ms",
            });
        }
        scratch.close().await?;
    }
    recording.cancel();
    print_table(&rows);
    Ok(())
}

/// The `q`th percentile, in milliseconds.
fn percentile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    let rank = ((q / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Noop,
    Process,
}

/// A runtime that runs nothing: it tells who is listening that it was asked, closes the log
/// and succeeds. What is left is the engine's own cost.
#[derive(Debug)]
struct NoopRuntime {
    started: Option<mpsc::UnboundedSender<(ExecutionId, Instant)>>,
}

#[async_trait]
impl Runtime for NoopRuntime {
    async fn run(
        &self,
        spec: &RunSpec,
        logs: LogSink,
        _cancel: CancellationToken,
    ) -> Result<RunReport, RuntimeError> {
        if let Some(started) = &self.started {
            let _ = started.send((spec.execution_id, Instant::now()));
        }
        logs.finish()
            .await
            .map_err(|err| RuntimeError::Transient(err.to_string()))?;
        Ok(RunReport {
            outcome: RunOutcome::Succeeded,
            image_digest: None,
            log_error: None,
        })
    }
}

fn bench_job(name: &str, argv: &[&str]) -> anyhow::Result<JobSpec> {
    let mut spec = JobSpec::new(
        JobName::new(name)?,
        RuntimeSpec::Process {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.retry = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::triggered_default()
    };
    Ok(spec)
}

fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}-{}", &id[id.len() - 12..])
}

fn node(
    store: &Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    concurrency: u32,
    lease_ttl: Duration,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<panda_engine::DrainReport>,
) {
    let mut config = DispatcherConfig::new(unique("bench"), concurrency as usize);
    config.lease_ttl = lease_ttl;
    config.heartbeat_every = lease_ttl / 3;
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::new(
        Arc::clone(store),
        Arc::new(SystemClock),
        Runtimes {
            docker: None,
            process: Some(runtime),
        },
        config,
    );
    let handle = tokio::spawn(dispatcher.run(shutdown.clone()));
    (shutdown, handle)
}

/// Enqueues `n` executions, then times a dispatcher from its start until none is left queued
/// or running, and checks they all succeeded.
async fn executions_per_second(
    store: &Arc<dyn Store>,
    args: &QueueBench,
    engine: Engine,
    n: u32,
) -> anyhow::Result<f64> {
    let name = unique("bench");
    store
        .job_create(&bench_job(&name, &["/bin/true"])?, Utc::now())
        .await?;
    for _ in 0..n {
        store
            .execution_enqueue(&NewExecution::api(&name), Utc::now())
            .await?;
    }
    let inner: Arc<dyn Runtime> = match engine {
        Engine::Noop => Arc::new(NoopRuntime { started: None }),
        Engine::Process => Arc::new(ProcessRuntime::default()),
    };
    let runtime = Arc::new(Counted {
        inner,
        runs: AtomicU32::new(0),
        ran: Notify::new(),
    });
    let started = Instant::now();
    let (shutdown, handle) = node(
        store,
        Arc::clone(&runtime) as Arc<dyn Runtime>,
        args.concurrency,
        Duration::from_secs(15),
    );
    // The runs are counted as they return, without asking the store every few milliseconds: a
    // poll of it while they run would be load on the very thing measured. It is asked after
    // each second in which no run returned (an execution rejected before it reaches the
    // runtime is never counted), and again for the last finishes.
    let unfinished = ExecutionFilter {
        job: Some(name.clone()),
        statuses: vec![Status::Queued, Status::Running],
        limit: 1,
        ..ExecutionFilter::default()
    };
    loop {
        let ran = runtime.ran.notified();
        if runtime.runs.load(Ordering::SeqCst) >= n {
            break;
        }
        if tokio::time::timeout(Duration::from_secs(1), ran)
            .await
            .is_err()
        {
            if all_finished(store, &unfinished).await? {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(600),
                "{n} executions did not run in 10 minutes"
            );
        }
    }
    while !all_finished(store, &unfinished).await? {
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{n} executions did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    handle.await.context("the dispatcher")?;
    let succeeded = ExecutionFilter {
        job: Some(name),
        statuses: vec![Status::Succeeded],
        limit: 1000,
        ..ExecutionFilter::default()
    };
    let mut count = 0usize;
    let mut page = store.execution_list(&succeeded).await?;
    loop {
        count += page.executions.len();
        let Some(next) = page.next else { break };
        page = store
            .execution_list(&ExecutionFilter {
                before: Some(next),
                ..succeeded.clone()
            })
            .await?;
    }
    ensure!(count == n as usize, "{count} of {n} executions succeeded");
    Ok(f64::from(n) / seconds)
}

/// Whether none of the executions `unfinished` selects (queued or running) is left.
async fn all_finished(
    store: &Arc<dyn Store>,
    unfinished: &ExecutionFilter,
) -> anyhow::Result<bool> {
    Ok(store
        .execution_list(unfinished)
        .await?
        .executions
        .is_empty())
}

/// A runtime that counts the runs of another as they return.
#[derive(Debug)]
struct Counted {
    inner: Arc<dyn Runtime>,
    runs: AtomicU32,
    ran: Notify,
}

#[async_trait]
impl Runtime for Counted {
    async fn run(
        &self,
        spec: &RunSpec,
        logs: LogSink,
        cancel: CancellationToken,
    ) -> Result<RunReport, RuntimeError> {
        let report = self.inner.run(spec, logs, cancel).await;
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.ran.notify_waiters();
        report
    }
}

/// The same `/bin/true` runs through `xargs -P`: one spawn and wait per run, nothing else.
async fn xargs_per_second(runs: u32, concurrency: u32) -> anyhow::Result<f64> {
    let script = format!("seq {runs} | xargs -P {concurrency} -n 1 /bin/true");
    let started = Instant::now();
    let status = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .await?;
    ensure!(status.success(), "{script} failed: {status}");
    Ok(f64::from(runs) / started.elapsed().as_secs_f64())
}

/// On an idle dispatcher: for each enqueue, from the call to the runtime being asked to run it.
async fn start_latencies(
    store: &Arc<dyn Store>,
    args: &QueueBench,
) -> anyhow::Result<Vec<Duration>> {
    let name = unique("bench");
    store
        .job_create(&bench_job(&name, &["/bin/true"])?, Utc::now())
        .await?;
    let (tx, mut started) = mpsc::unbounded_channel();
    let runtime = Arc::new(NoopRuntime { started: Some(tx) });
    let (shutdown, handle) = node(store, runtime, args.concurrency, Duration::from_secs(15));
    // Let the node settle into waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::with_capacity(args.samples as usize);
    for _ in 0..args.samples {
        let enqueued_at = Instant::now();
        let id = store
            .execution_enqueue(&NewExecution::api(&name), Utc::now())
            .await?
            .execution
            .id;
        let (ran, at) = tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await
            .context("an enqueued execution did not start within 10 s")?
            .context("the dispatcher stopped")?;
        ensure!(ran == id, "started {ran}, enqueued {id}");
        latencies.push(at - enqueued_at);
        // Idle again: the finish is written and the node waits for the next enqueue.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    handle.await.context("the dispatcher")?;
    Ok(latencies)
}

/// For each of `args.rescues` executions: a worker claims it and dies at once (its lease
/// begins, and no heartbeat follows); from the lease's start until the retry starts on a live
/// node running the Rescuer at its default interval.
async fn rescue_delays(store: &Arc<dyn Store>, args: &QueueBench) -> anyhow::Result<Vec<Duration>> {
    let name = unique("bench");
    store
        .job_create(&bench_job(&name, &["/bin/true"])?, Utc::now())
        .await?;
    let (tx, mut started) = mpsc::unbounded_channel();
    let runtime = Arc::new(NoopRuntime { started: Some(tx) });
    let (shutdown, handle) = node(store, runtime, args.concurrency, args.lease_ttl);
    let rescuer = Rescuer::new(store.clone(), Arc::new(SystemClock));
    let rescuer = tokio::spawn(rescuer.run(shutdown.clone()));
    let mut delays = Vec::new();
    for _ in 0..args.rescues {
        // Due a moment from now, so the live node cannot claim it before the dying one does.
        let due = Utc::now() + chrono::Duration::milliseconds(500);
        let mut request = NewExecution::api(&name);
        request.run_at = Some(due);
        let id = store
            .execution_enqueue(&request, Utc::now())
            .await?
            .execution
            .id;
        let claimed = store
            .execution_claim(
                &ClaimRequest {
                    worker_id: "dies-at-once".into(),
                    queues: Vec::new(),
                    limit: 1,
                    lease_ttl: args.lease_ttl,
                },
                due,
            )
            .await?;
        ensure!(
            claimed.len() == 1 && claimed[0].execution.id == id,
            "the dying worker did not get the execution"
        );
        // The lease began at `due` (the dying worker's clock reading): wait for it in real time.
        let lease_began = Instant::now() + (due - Utc::now()).to_std().unwrap_or_default();
        let (_, at) =
            tokio::time::timeout(args.lease_ttl * 4 + Duration::from_secs(10), started.recv())
                .await
                .context("the lost execution was not run again")?
                .context("the dispatcher stopped")?;
        delays.push(at.saturating_duration_since(lease_began));
    }
    shutdown.cancel();
    handle.await.context("the dispatcher")?;
    rescuer.await.context("the rescuer")?;
    Ok(delays)
}
