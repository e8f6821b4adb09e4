//! `panda-bench store`: enqueue, then claim and finish, on each backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Args;
use comfy_table::{CellAlignment, Table, presets};
use panda_core::{ConcurrencyPolicy, JobName, JobSpec, RuntimeSpec};
use panda_store::{ClaimRequest, Finish, NewExecution, Outcome, Store};

use super::{Backend, Scratch};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench store
  panda-bench store --database-url postgres://postgres@127.0.0.1:5432/panda_bench
  panda-bench store --executions 50000 --batch 200 --workers 4")]
pub(crate) struct StoreBench {
    /// PostgreSQL database to measure in (a fresh schema is made and dropped); without it only
    /// SQLite is measured
    #[arg(
        long,
        env = "PANDA_BENCH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(super) database_url: Option<String>,
    /// Executions per backend
    #[arg(long, default_value_t = 20_000)]
    executions: u32,
    /// Executions claimed per claim call, and finished per finish call
    #[arg(long, default_value_t = 100)]
    batch: u32,
    /// Concurrent tasks enqueueing, and concurrent workers claiming
    #[arg(long, default_value_t = 4)]
    workers: u32,
}

struct Measurement {
    backend: Backend,
    phase: &'static str,
    executions: u64,
    batch: u32,
    elapsed: Duration,
}

pub(super) async fn run(args: StoreBench) -> anyhow::Result<()> {
    if args.executions == 0 || args.batch == 0 || args.workers == 0 {
        bail!("--executions, --batch and --workers must be at least 1");
    }
    let mut results = Vec::new();
    for backend in Backend::requested(args.database_url.as_deref()) {
        let scratch =
            Scratch::open(backend, args.database_url.as_deref(), args.workers * 2).await?;
        let measured = bench_store(backend, scratch.store(), &args).await;
        scratch.close().await?;
        results.extend(measured?);
    }
    print_table(&results, args.workers);
    Ok(())
}

async fn bench_store(
    backend: Backend,
    store: Arc<dyn Store>,
    args: &StoreBench,
) -> anyhow::Result<Vec<Measurement>> {
    let mut spec = JobSpec::new(
        JobName::new("bench")?,
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    // Allow: the job lock of `forbid` would serialize the whole benchmark on one job.
    spec.concurrency = ConcurrencyPolicy::Allow;
    store.job_create(&spec, Utc::now()).await?;

    let started = Instant::now();
    let per_task = args.executions / args.workers;
    let extra = args.executions % args.workers;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..args.workers {
        let store = store.clone();
        let count = per_task + u32::from(task < extra);
        tasks.spawn(async move {
            for _ in 0..count {
                store
                    .execution_enqueue(&NewExecution::api("bench"), Utc::now())
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("enqueue task")??;
    }
    let enqueue = started.elapsed();

    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.workers {
        let store = store.clone();
        let request = ClaimRequest {
            worker_id: format!("bench-{worker}"),
            queues: vec!["default".into()],
            limit: args.batch,
            lease_ttl: Duration::from_secs(60),
        };
        workers.spawn(async move { claim_and_finish(store.as_ref(), &request).await });
    }
    let mut finished = 0u64;
    while let Some(joined) = workers.join_next().await {
        finished += joined.context("claim task")??;
    }
    let claim_finish = started.elapsed();
    if finished != u64::from(args.executions) {
        bail!(
            "{backend:?}: finished {finished} executions but enqueued {}",
            args.executions
        );
    }
    Ok(vec![
        Measurement {
            backend,
            phase: "enqueue",
            executions: u64::from(args.executions),
            batch: 1,
            elapsed: enqueue,
        },
        Measurement {
            backend,
            phase: "claim+finish",
            executions: finished,
            batch: args.batch,
            elapsed: claim_finish,
        },
    ])
}

/// One worker: claims a batch, finishes it as succeeded, until the queue is empty.
pub(super) async fn claim_and_finish(
    store: &dyn Store,
    request: &ClaimRequest,
) -> anyhow::Result<u64> {
    let mut finished = 0;
    loop {
        let claimed = store.execution_claim(request, Utc::now()).await?;
        if claimed.is_empty() {
            return Ok(finished);
        }
        let batch: Vec<Finish> = claimed
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
        for result in store.execution_finish_many(&batch, Utc::now()).await? {
            result?;
            finished += 1;
        }
    }
}

fn print_table(results: &[Measurement], workers: u32) {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header([
        "BACKEND",
        "PHASE",
        "EXECUTIONS",
        "BATCH",
        "WORKERS",
        "SECONDS",
        "PER SECOND",
    ]);
    for m in results {
        let seconds = m.elapsed.as_secs_f64();
        table.add_row([
            m.backend.name().to_owned(),
            m.phase.to_owned(),
            m.executions.to_string(),
            m.batch.to_string(),
            workers.to_string(),
            format!("{seconds:.2}"),
            format!("{:.0}", m.executions as f64 / seconds),
        ]);
    }
    for column in 2..7 {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!("{table}");
}
