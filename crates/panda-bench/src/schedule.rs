//! `panda-bench schedule`: the scheduler's two numbers on each backend.
//!
//! - Fan-out: `--jobs` cronjobs on `* * * * *`; the time from a minute boundary until the last
//!   of its slots is recorded (each a queued execution). The clock is a test clock set to the
//!   boundary, so the figure is the scheduler's own work from the instant it wakes (the wake-up
//!   itself is what the lag measures), over a job list it has already read. Boundaries are
//!   measured a few real seconds apart, standing in for the minute between real ones.
//! - Lag: one cronjob every second (`* * * * * *`), the real scheduler loop on the real clock;
//!   for each of `--slots` slots, from the slot's instant until the store announces its queued
//!   execution (a notice sent after the commit, which on PostgreSQL travels through
//!   LISTEN/NOTIFY), so the figure includes the wake-up, the write and the notice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, TimeZone, Utc};
use clap::Args;
use comfy_table::{CellAlignment, Table, presets};
use panda_core::{
    ConcurrencyPolicy, JobName, JobSpec, RuntimeSpec, Schedule, SystemClock, TestClock,
};
use panda_engine::Scheduler;
use panda_store::{ExecutionFilter, Notice, Store};
use tokio_util::sync::CancellationToken;

use super::{Backend, Scratch};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench schedule
  panda-bench schedule --database-url postgres://postgres@127.0.0.1:5432/panda_bench
  panda-bench schedule --jobs 10000 --slots 100")]
pub(crate) struct ScheduleBench {
    /// PostgreSQL database to measure in (a fresh schema is made and dropped); without it only
    /// SQLite is measured
    #[arg(
        long,
        env = "PANDA_BENCH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Cronjobs on `* * * * *` for the fan-out measurement
    #[arg(long, default_value_t = 10_000)]
    jobs: u32,
    /// Minute boundaries measured for the fan-out
    #[arg(long, default_value_t = 3)]
    minutes: u32,
    /// Slots of the every-second cronjob measured for the lag (one second each)
    #[arg(long, default_value_t = 100)]
    slots: u32,
}

/// The real pause between two measured boundaries.
const BETWEEN_BOUNDARIES: Duration = Duration::from_secs(3);

struct Fanout {
    backend: Backend,
    boundaries: Vec<Duration>,
    jobs: u32,
}

struct Lag {
    backend: Backend,
    lags: Vec<Duration>,
}

pub(super) async fn run(args: ScheduleBench) -> anyhow::Result<()> {
    if args.jobs == 0 || args.minutes == 0 || args.slots == 0 {
        bail!("--jobs, --minutes and --slots must be at least 1");
    }
    let mut fanouts = Vec::new();
    let mut lags = Vec::new();
    for backend in Backend::requested(args.database_url.as_deref()) {
        let scratch = Scratch::open(backend, args.database_url.as_deref(), 8).await?;
        let measured = fanout(backend, scratch.store(), &args).await;
        scratch.close().await?;
        fanouts.push(measured?);

        let scratch = Scratch::open(backend, args.database_url.as_deref(), 8).await?;
        let measured = lag(backend, scratch.store(), args.slots).await;
        scratch.close().await?;
        lags.push(measured?);
    }
    print_tables(&fanouts, &lags);
    Ok(())
}

fn cronjob(name: &str, cron: &str) -> anyhow::Result<JobSpec> {
    let mut spec = JobSpec::new(
        JobName::new(name)?,
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.schedule = Some(Schedule::new(cron));
    Ok(spec)
}

async fn fanout(
    backend: Backend,
    store: Arc<dyn Store>,
    args: &ScheduleBench,
) -> anyhow::Result<Fanout> {
    // A fixed, whole minute in the past of nothing: the test clock runs from there.
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .context("a valid instant")?;
    eprintln!("{}: creating {} cronjobs", backend.name(), args.jobs);
    for i in 0..args.jobs {
        store
            .job_create(&cronjob(&format!("job-{i}"), "* * * * *")?, start)
            .await?;
    }
    let clock = TestClock::new(start + chrono::Duration::seconds(30));
    let mut scheduler = Scheduler::new(store, Arc::new(clock.clone()))
        .with_resync_interval(Duration::from_secs(3600));
    let warm = scheduler.tick().await?;
    ensure!(warm.fired == 0, "no slot is due before the first boundary");

    let mut boundaries = Vec::new();
    for minute in 1..=i64::from(args.minutes) {
        // Real boundaries are a minute apart; the store's background work (SQLite's WAL
        // checkpoint) happens in between. A short real pause stands in for that minute.
        tokio::time::sleep(BETWEEN_BOUNDARIES).await;
        clock.set(start + chrono::Duration::minutes(minute));
        let began = Instant::now();
        let tick = scheduler.tick().await?;
        boundaries.push(began.elapsed());
        ensure!(
            tick.fired == args.jobs as usize,
            "{}: fired {} slots at a boundary, expected {}",
            backend.name(),
            tick.fired,
            args.jobs
        );
    }
    Ok(Fanout {
        backend,
        boundaries,
        jobs: args.jobs,
    })
}

async fn lag(backend: Backend, store: Arc<dyn Store>, slots: u32) -> anyhow::Result<Lag> {
    store
        .job_create(&cronjob("every-second", "* * * * * *")?, Utc::now())
        .await?;
    let mut notices = store.subscribe();
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::new(Arc::clone(&store), Arc::new(SystemClock));
    let running = tokio::spawn(scheduler.run(shutdown.clone()));
    eprintln!(
        "{}: measuring {slots} slots of an every-second cronjob",
        backend.name()
    );
    let mut heard = Vec::with_capacity(slots as usize);
    let deadline = Instant::now() + Duration::from_secs(u64::from(slots) + 30);
    while heard.len() < slots as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, notices.recv()).await {
            Ok(Ok(Notice::Queued { .. })) => heard.push(Utc::now()),
            Ok(Err(err)) => bail!("{}: notices: {err}", backend.name()),
            Err(_) => bail!(
                "{}: heard {} of {slots} slots in time",
                backend.name(),
                heard.len()
            ),
        }
    }
    shutdown.cancel();
    running.await.context("the scheduler task")?;

    // The k-th notice is the k-th slot: one job, queued in slot order.
    let mut scheduled: Vec<DateTime<Utc>> = store
        .execution_list(&ExecutionFilter {
            job: Some("every-second".into()),
            limit: 1000,
            ..Default::default()
        })
        .await?
        .executions
        .iter()
        .filter_map(|e| e.scheduled_at)
        .collect();
    scheduled.sort();
    ensure!(
        scheduled.len() >= heard.len(),
        "{}: {} notices but {} executions",
        backend.name(),
        heard.len(),
        scheduled.len()
    );
    let lags = heard
        .iter()
        .zip(&scheduled)
        .map(|(heard, slot)| (*heard - *slot).to_std().unwrap_or(Duration::ZERO))
        .collect();
    Ok(Lag { backend, lags })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn print_tables(fanouts: &[Fanout], lags: &[Lag]) {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header([
        "BACKEND",
        "CRONJOBS",
        "BOUNDARY",
        "MS TO LAST SLOT",
        "TARGET MS",
    ]);
    for f in fanouts {
        for (i, elapsed) in f.boundaries.iter().enumerate() {
            table.add_row([
                f.backend.name().to_owned(),
                f.jobs.to_string(),
                (i + 1).to_string(),
                millis(*elapsed),
                "1000".to_owned(),
            ]);
        }
    }
    right_align(&mut table, 1..5);
    println!("{table}\n");

    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header([
        "BACKEND",
        "SLOTS",
        "P50 MS",
        "P99 MS",
        "MAX MS",
        "TARGET P99 MS",
    ]);
    for l in lags {
        let mut sorted = l.lags.clone();
        sorted.sort();
        table.add_row([
            l.backend.name().to_owned(),
            sorted.len().to_string(),
            millis(percentile(&sorted, 50.0)),
            millis(percentile(&sorted, 99.0)),
            millis(sorted.last().copied().unwrap_or_default()),
            "20".to_owned(),
        ]);
    }
    right_align(&mut table, 1..6);
    println!("{table}");
}

fn right_align(table: &mut Table, columns: std::ops::Range<usize>) {
    for column in columns {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}
