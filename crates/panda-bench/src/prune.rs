//! `panda-bench prune`: claim latency while a large history is pruned, against the same
//! claims on an idle store, in one run.
//!
//! - Seeds `--executions` finished executions of one job (skipped slots of a suspended
//!   cronjob, 2,000 a transaction), each with a one-line log.
//! - A worker claims `--claim-batch` executions of another job at a time (and finishes them),
//!   while an enqueuer keeps that job's queue non-empty. Claim latency is measured first for
//!   `--idle` with nothing else going on, then while the Pruner deletes all but `--keep` of the
//!   seeded history in batches of `--batch`, pausing `--pause` between them.
//! - Reports p50/p99 of both phases, their ratio, and the pruning throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{TimeZone, Utc};
use clap::Args;
use panda_core::{ConcurrencyPolicy, JobName, JobSpec, RuntimeSpec, Schedule, SystemClock};
use panda_engine::{DEFAULT_PRUNE_BATCH, DEFAULT_PRUNE_PAUSE, Pruner};
use panda_store::{
    ClaimRequest, ExecutionFilter, Finish, LogChunk, LogStream, NewExecution, NewSlot, Outcome,
    Retention, SlotDecision, Store,
};
use tokio_util::sync::CancellationToken;

use super::runtime::{Row, print_table};
use super::{Backend, Scratch};

// The flags' defaults, written out for clap, are these.
const _: () = assert!(DEFAULT_PRUNE_BATCH == 1000);
const _: () = assert!(DEFAULT_PRUNE_PAUSE.as_millis() == 50);

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench prune
  panda-bench prune --database-url postgres://postgres@127.0.0.1:5432/panda_bench
  panda-bench prune --executions 100000 --batch 200 --pause 20ms")]
pub(crate) struct PruneBench {
    /// PostgreSQL database to measure in (a fresh schema is made and dropped); without it the
    /// measurement runs on a temp-file SQLite database
    #[arg(
        long,
        env = "PANDA_BENCH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Finished executions seeded, each with a one-line log
    #[arg(long, default_value_t = 1_000_000)]
    executions: u32,
    /// Finished executions the job keeps: the rest is pruned
    #[arg(long, default_value_t = 1000)]
    keep: u32,
    /// Executions deleted per store call
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// The Pruner's pause between batches
    #[arg(long, value_parser = humantime::parse_duration, default_value = "50ms")]
    pause: Duration,
    /// Executions claimed per claim call
    #[arg(long, default_value_t = 10)]
    claim_batch: u32,
    /// The worker's pause between claims
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5ms")]
    claim_every: Duration,
    /// How long claims are measured with nothing else going on
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    idle: Duration,
}

/// The job whose history is pruned, and the job whose executions are claimed.
const HISTORY_JOB: &str = "history";
const WORK_JOB: &str = "work";
/// Queued executions of the work job the enqueuer keeps ahead of the worker.
const QUEUE_DEPTH: i64 = 200;

pub(super) async fn run(args: PruneBench) -> anyhow::Result<()> {
    if args.executions == 0 || args.keep == 0 || args.batch == 0 || args.claim_batch == 0 {
        bail!("--executions, --keep, --batch and --claim-batch must be at least 1");
    }
    let backend = if args.database_url.is_some() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let scratch = Scratch::open(backend, args.database_url.as_deref(), 16).await?;
    let measured = bench_prune(backend, scratch.store(), &args).await;
    scratch.close().await?;
    print_table(&measured?);
    Ok(())
}

async fn bench_prune(
    backend: Backend,
    store: Arc<dyn Store>,
    args: &PruneBench,
) -> anyhow::Result<Vec<Row>> {
    let started = Instant::now();
    seed_history(&store, args.executions).await?;
    eprintln!(
        "{}: seeded {} finished executions with logs in {:.1} s",
        backend.name(),
        args.executions,
        started.elapsed().as_secs_f64()
    );
    let mut work = JobSpec::new(
        JobName::new(WORK_JOB)?,
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    work.concurrency = ConcurrencyPolicy::Allow;
    store.job_create(&work, Utc::now()).await?;

    // Idle: claims alone.
    let load = Load::start(Arc::clone(&store), args);
    tokio::time::sleep(args.idle).await;
    let mut idle = load.stop().await?;

    // The same claims while the Pruner drains the history.
    let load = Load::start(Arc::clone(&store), args);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let retention = Retention {
        max_age: None,
        keep_per_job: args.keep,
        batch: args.batch,
    };
    let pruner =
        Pruner::new(store.clone(), Arc::new(SystemClock), retention).with_pause(args.pause);
    let started = Instant::now();
    let pruned = pruner.tick(&CancellationToken::new()).await?;
    let pruning = started.elapsed();
    let mut busy = load.stop().await?;
    eprintln!(
        "{}: pruned {} executions and {} log chunks in {:.1} s; {} claims idle, {} while pruning",
        backend.name(),
        pruned.executions,
        pruned.log_chunks,
        pruning.as_secs_f64(),
        idle.len(),
        busy.len()
    );

    let expected = u64::from(args.executions.saturating_sub(args.keep));
    ensure!(
        pruned.executions >= expected,
        "pruned {} executions, expected at least {expected}",
        pruned.executions
    );
    let left = store
        .execution_list(&ExecutionFilter {
            job: Some(HISTORY_JOB.into()),
            limit: panda_store::MAX_PAGE_SIZE,
            ..ExecutionFilter::default()
        })
        .await?;
    ensure!(
        left.executions.len() == args.keep.min(args.executions) as usize,
        "the history job kept {} executions, not {}",
        left.executions.len(),
        args.keep
    );

    let name = backend.name();
    let idle_p50 = percentile(&mut idle, 50.0);
    let idle_p99 = percentile(&mut idle, 99.0);
    let busy_p50 = percentile(&mut busy, 50.0);
    let busy_p99 = percentile(&mut busy, 99.0);
    Ok(vec![
        Row {
            what: format!("{name}: claim of {}, idle, p50", args.claim_batch),
            value: idle_p50,
            unit: "ms",
            baseline: None,
            target: "",
        },
        Row {
            what: format!("{name}: claim of {}, idle, p99", args.claim_batch),
            value: idle_p99,
            unit: "ms",
            baseline: None,
            target: "",
        },
        Row {
            what: format!("{name}: claim of {}, pruning, p50", args.claim_batch),
            value: busy_p50,
            unit: "ms",
            baseline: Some(idle_p50),
            target: "",
        },
        Row {
            what: format!("{name}: claim of {}, pruning, p99", args.claim_batch),
            value: busy_p99,
            unit: "ms",
            baseline: Some(idle_p99),
            target: "<= 2x idle",
        },
        Row {
            what: format!(
                "{name}: pruned {} (batch {}, pause {})",
                pruned.executions,
                args.batch,
                panda_core::human::exact(args.pause)
            ),
            value: pruned.executions as f64 / pruning.as_secs_f64(),
            unit: "exec/s",
            baseline: None,
            target: "",
        },
    ])
}

/// `n` skipped slots of a suspended every-second cronjob (each a finished execution), 2,000
/// a transaction, then a one-line log for each, from several tasks.
async fn seed_history(store: &Arc<dyn Store>, n: u32) -> anyhow::Result<()> {
    let mut spec = JobSpec::new(
        JobName::new(HISTORY_JOB)?,
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.schedule = Some(Schedule::new("* * * * * *"));
    spec.suspended = true;
    let job = store.job_create(&spec, Utc::now()).await?;
    let start = Utc
        .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .context("a start instant")?;
    let skip = SlotDecision::Skip {
        reason: "benchmark history".into(),
    };
    let mut ids = Vec::with_capacity(n as usize);
    let mut done = 0u32;
    while done < n {
        let batch: Vec<NewSlot> = (done..n.min(done + 2000))
            .map(|i| NewSlot {
                job_id: job.id,
                scheduled_at: start + chrono::Duration::seconds(i64::from(i)),
                decision: skip.clone(),
            })
            .collect();
        done += batch.len() as u32;
        for result in store.slot_record_many(&batch, Utc::now()).await? {
            ids.push(result?.slot().execution_id);
        }
        if done.is_multiple_of(100_000) {
            eprintln!("  {done} executions");
        }
    }
    let ids = Arc::new(ids);
    let tasks = 8;
    let mut appends = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let ids = Arc::clone(&ids);
        let store = Arc::clone(store);
        appends.spawn(async move {
            for id in ids.iter().skip(task).step_by(tasks) {
                let chunk = LogChunk {
                    seq: 0,
                    stream: LogStream::Stdout,
                    at: Utc::now(),
                    data: b"skipped: benchmark history\n".to_vec(),
                };
                store.log_append(*id, &[chunk]).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = appends.join_next().await {
        joined.context("log task")??;
    }
    Ok(())
}

/// Claims and enqueues running in the background, until [`Load::stop`].
struct Load {
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>,
    enqueuer: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Load {
    fn start(store: Arc<dyn Store>, args: &PruneBench) -> Self {
        let stop = CancellationToken::new();
        let queued = Arc::new(AtomicI64::new(0));
        let enqueuer = tokio::spawn(enqueue_loop(
            Arc::clone(&store),
            Arc::clone(&queued),
            stop.clone(),
        ));
        let worker = tokio::spawn(claim_loop(
            store,
            queued,
            stop.clone(),
            args.claim_batch,
            args.claim_every,
        ));
        Self {
            stop,
            worker,
            enqueuer,
        }
    }

    /// Stops both; the claim latencies measured.
    async fn stop(self) -> anyhow::Result<Vec<Duration>> {
        self.stop.cancel();
        self.enqueuer.await.context("the enqueuer")??;
        let samples = self.worker.await.context("the worker")??;
        ensure!(!samples.is_empty(), "no claim was measured");
        Ok(samples)
    }
}

/// Keeps about [`QUEUE_DEPTH`] executions of the work job queued.
async fn enqueue_loop(
    store: Arc<dyn Store>,
    queued: Arc<AtomicI64>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    while !stop.is_cancelled() {
        if queued.load(Ordering::Relaxed) < QUEUE_DEPTH {
            store
                .execution_enqueue(&NewExecution::api(WORK_JOB), Utc::now())
                .await?;
            queued.fetch_add(1, Ordering::Relaxed);
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(())
}

/// Claims `limit` at a time, timing each claim, and finishes what it claimed.
async fn claim_loop(
    store: Arc<dyn Store>,
    queued: Arc<AtomicI64>,
    stop: CancellationToken,
    limit: u32,
    every: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let request = ClaimRequest {
        worker_id: "bench".into(),
        queues: vec!["default".into()],
        limit,
        lease_ttl: Duration::from_secs(60),
    };
    let mut samples = Vec::new();
    while !stop.is_cancelled() {
        let started = Instant::now();
        let claimed = store.execution_claim(&request, Utc::now()).await?;
        samples.push(started.elapsed());
        queued.fetch_sub(claimed.len() as i64, Ordering::Relaxed);
        let finishes: Vec<Finish> = claimed
            .iter()
            .map(|c| Finish {
                execution_id: c.lease.execution_id,
                token: c.lease.token,
                outcome: Outcome::Succeeded,
                exit_code: Some(0),
                reason: None,
                image_digest: None,
            })
            .collect();
        if !finishes.is_empty() {
            for result in store.execution_finish_many(&finishes, Utc::now()).await? {
                result?;
            }
        }
        tokio::time::sleep(every).await;
    }
    Ok(samples)
}

/// The `q`th percentile, in milliseconds.
fn percentile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    let rank = ((q / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0
}
