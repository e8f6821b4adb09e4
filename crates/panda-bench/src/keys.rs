//! `panda-bench keys`: the claim of other work with one saturated key's backlog queued ahead
//! of it, against the same work alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use panda_core::{ConcurrencyPolicy, JobName, JobSpec, RuntimeSpec};
use panda_store::{ClaimRequest, NewExecution, Store};

use super::{Backend, Scratch, median};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench keys
  panda-bench keys --database-url postgres://postgres@127.0.0.1:5432/panda_bench --rounds 3

A job limited to one running execution per customer (payload.customer, --max-running 1) has
one customer's execution running and --saturated more of that customer's queued ahead of
--others executions of as many other customers. The time to claim and finish the others is
measured, and against the same others with nothing queued ahead, alternating the two.")]
pub(crate) struct KeysBench {
    /// PostgreSQL database to measure in (a fresh schema is made and dropped); without it only
    /// SQLite is measured
    #[arg(
        long,
        env = "PANDA_BENCH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(super) database_url: Option<String>,
    /// The saturated key's executions queued ahead of the others
    #[arg(long, default_value_t = 10_000)]
    saturated: u32,
    /// Other keys' executions, one each
    #[arg(long, default_value_t = 10_000)]
    others: u32,
    /// Executions claimed per claim call
    #[arg(long, default_value_t = 32)]
    batch: u32,
    /// Measurements of each setup per backend, alternating
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

pub(super) async fn run(args: KeysBench) -> anyhow::Result<()> {
    if args.others == 0 || args.batch == 0 || args.rounds == 0 {
        bail!("--others, --batch and --rounds must be at least 1");
    }
    println!(
        "{:<9} {:>10} {:>14} {:>14} {:>9}",
        "backend", "round", "alone (/s)", "behind (/s)", "ratio"
    );
    for backend in Backend::requested(args.database_url.as_deref()) {
        let mut ratios = Vec::new();
        for round in 1..=args.rounds {
            let alone = measure(backend, &args, 0).await?;
            let behind = measure(backend, &args, args.saturated).await?;
            let rate = |d: Duration| f64::from(args.others) / d.as_secs_f64();
            let ratio = rate(behind) / rate(alone);
            ratios.push(ratio);
            println!(
                "{:<9} {:>10} {:>14.0} {:>14.0} {:>8.2}x",
                backend.name(),
                round,
                rate(alone),
                rate(behind),
                ratio
            );
        }
        println!(
            "{:<9} {:>10} {:>14} {:>14} {:>8.2}x",
            backend.name(),
            "median",
            "",
            "",
            median(&mut ratios)
        );
    }
    Ok(())
}

/// The time to claim and finish the others with `saturated` of one key queued ahead.
async fn measure(backend: Backend, args: &KeysBench, saturated: u32) -> anyhow::Result<Duration> {
    let scratch = Scratch::open(backend, args.database_url.as_deref(), 4).await?;
    let measured = bench(scratch.store(), args, saturated).await;
    scratch.close().await?;
    measured
}

fn request(customer: &str, at: DateTime<Utc>) -> NewExecution {
    NewExecution {
        payload: Some(serde_json::json!({ "customer": customer })),
        run_at: Some(at),
        ..NewExecution::api("sync")
    }
}

async fn bench(
    store: Arc<dyn Store>,
    args: &KeysBench,
    saturated: u32,
) -> anyhow::Result<Duration> {
    let mut spec = JobSpec::new(
        JobName::new("sync")?,
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.max_running = Some(1);
    spec.concurrency_key = Some("payload.customer".into());
    let now = Utc::now();
    store.job_create(&spec, now).await?;
    let early = now - chrono::Duration::hours(1);
    // The saturated key: one running, the rest queued ahead of everything else.
    store.execution_enqueue(&request("hot", early), now).await?;
    let worker = ClaimRequest {
        worker_id: "bench".into(),
        queues: vec!["default".into()],
        limit: 1,
        lease_ttl: Duration::from_secs(3600),
    };
    let running = store.execution_claim(&worker, now).await?;
    if running.len() != 1 {
        bail!("the saturated key's first execution did not start");
    }
    let hot: Vec<NewExecution> = (0..saturated)
        .map(|i| request("hot", early + chrono::Duration::milliseconds(i64::from(i))))
        .collect();
    let others: Vec<NewExecution> = (0..args.others)
        .map(|i| request(&format!("customer-{i}"), now))
        .collect();
    for chunk in hot.chunks(1000).chain(others.chunks(1000)) {
        for result in store.execution_enqueue_many(chunk, now).await? {
            result.context("enqueue")?;
        }
    }

    let claim = ClaimRequest {
        limit: args.batch,
        ..worker
    };
    let started = Instant::now();
    let finished = super::store::claim_and_finish(store.as_ref(), &claim).await?;
    let elapsed = started.elapsed();
    if finished != u64::from(args.others) {
        bail!(
            "finished {finished} executions, not the {} others (the saturated key must wait)",
            args.others
        );
    }
    Ok(elapsed)
}
