//! `panda-bench dashboard`: time to first byte of the dashboard's heaviest pages, on each
//! backend, with a realistic amount of data behind them.
//!
//! - The cronjobs page (`/`) with `--jobs` cronjobs, each with `--history` finished executions
//!   (mostly succeeded, some dead, of varying length), so every row draws a full strip.
//! - A job page (`/jobs/NAME`) of a job with `--executions` executions: the first page, a page
//!   deep in the history (a cursor half-way down), and a filtered deep page.
//!
//! The dashboard is served in-process from the same router `panda server` uses, over a real
//! TCP socket; each request is a fresh connection that sends the session cookie, and the time
//! is from sending the request to reading the first byte of the answer (the page is rendered
//! whole before it is sent, so this is the server's full time).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, TimeZone, Utc};
use clap::Args;
use panda_core::{ConcurrencyPolicy, ExecutionId, JobName, JobSpec, RuntimeSpec, Schedule};
use panda_store::{
    ClaimRequest, Finish, JobKind, NewSlot, Outcome, SlotDecision, Store, TokenScope,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::runtime::{Row, print_table};
use super::{Backend, Scratch};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench dashboard
  panda-bench dashboard --database-url postgres://postgres@127.0.0.1:5432/panda_bench
  panda-bench dashboard --jobs 1000 --history 40 --executions 1000000 --requests 50")]
pub(crate) struct DashboardBench {
    /// PostgreSQL database to measure in (a fresh schema is made and dropped); without it only
    /// SQLite is measured
    #[arg(
        long,
        env = "PANDA_BENCH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Cronjobs on the cronjobs page
    #[arg(long, default_value_t = 1000)]
    jobs: u32,
    /// Finished executions of each of those cronjobs
    #[arg(long, default_value_t = 40)]
    history: u32,
    /// Executions of the one job whose page is measured
    #[arg(long, default_value_t = 1_000_000)]
    executions: u32,
    /// Requests per page measured
    #[arg(long, default_value_t = 50)]
    requests: u32,
}

/// The name of the job with the long history.
const BIG: &str = "history";

pub(super) async fn run(args: DashboardBench) -> anyhow::Result<()> {
    if args.jobs == 0 || args.executions < 2 || args.requests == 0 {
        bail!("--jobs and --requests must be at least 1, --executions at least 2");
    }
    let mut rows = Vec::new();
    for backend in Backend::requested(args.database_url.as_deref()) {
        let scratch = Scratch::open(backend, args.database_url.as_deref(), 8).await?;
        let measured = bench_backend(backend, scratch.store(), &args).await;
        scratch.close().await?;
        rows.extend(measured?);
    }
    print_table(&rows);
    Ok(())
}

async fn bench_backend(
    backend: Backend,
    store: Arc<dyn Store>,
    args: &DashboardBench,
) -> anyhow::Result<Vec<Row>> {
    let name = backend.name();
    let started = Instant::now();
    eprintln!(
        "{name}: {} cronjobs with {} finished executions each",
        args.jobs, args.history
    );
    seed_cronjobs(&store, args.jobs, args.history).await?;
    eprintln!("{name}: {} executions of one job", args.executions);
    let deep = seed_history(&store, args.executions).await?;
    eprintln!("{name}: seeded in {:.0?}", started.elapsed());

    // The cronjobs page's history query on its own: for one page of 100 jobs, as the page
    // asks, and for every job at once, as a page listing them all would.
    let names: Vec<String> = store
        .job_list(JobKind::Scheduled)
        .await?
        .into_iter()
        .map(|job| job.spec.name.to_string())
        .collect();
    let mut query_p50 = Vec::new();
    for jobs in [&names[..names.len().min(100)], &names[..]] {
        let mut times = Vec::new();
        for _ in 0..args.requests {
            let started = Instant::now();
            let recent = store.execution_recent_per_job(jobs, 30).await?;
            times.push(started.elapsed());
            ensure!(!recent.is_empty(), "no recent executions");
        }
        times.sort();
        query_p50.push((jobs.len(), times[times.len() / 2].as_secs_f64() * 1000.0));
    }

    let (_, secret) = store
        .token_create("bench", TokenScope::Admin, Utc::now())
        .await?;
    let shutdown = CancellationToken::new();
    let state = panda_api::AppState::new(
        Arc::clone(&store),
        Arc::new(panda_core::SystemClock),
        None,
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(panda_api::serve(listener, state));

    let pages = [
        (
            format!("cronjobs page `/`, {} cronjobs, first page", args.jobs),
            "/".to_owned(),
        ),
        (
            format!("cronjobs page `/`, {} cronjobs, last page", args.jobs),
            format!("/?page={}", args.jobs.div_ceil(100).max(1)),
        ),
        (
            format!("cronjobs page `/`, {} cronjobs, name filter", args.jobs),
            "/?q=7".to_owned(),
        ),
        (
            format!("job page, {} executions, first page", args.executions),
            format!("/jobs/{BIG}"),
        ),
        (
            format!("job page, {} executions, page half-way", args.executions),
            format!("/jobs/{BIG}?before={deep}"),
        ),
        (
            format!(
                "job page, {} executions, filtered page half-way",
                args.executions
            ),
            format!("/jobs/{BIG}?status=skipped&trigger=schedule&before={deep}"),
        ),
        (
            format!(
                "job page, {} executions, filtered by a status none has",
                args.executions
            ),
            format!("/jobs/{BIG}?status=failed"),
        ),
    ];
    let mut rows: Vec<Row> = query_p50
        .into_iter()
        .map(|(jobs, p50)| Row {
            what: format!("{name}: execution_recent_per_job, {jobs} cronjobs x 30, p50"),
            value: p50,
            unit: "ms",
            baseline: None,
            target: "",
        })
        .collect();
    for (what, path) in pages {
        let (size, mut times) = ttfb(addr, &path, &secret, args.requests).await?;
        times.sort();
        let p = |q: f64| {
            let rank = ((q / 100.0) * times.len() as f64).ceil() as usize;
            times[rank.clamp(1, times.len()) - 1].as_secs_f64() * 1000.0
        };
        eprintln!("{name}: {path}: {} KiB", size / 1024);
        rows.push(Row {
            what: format!("{name}: {what}, TTFB p50"),
            value: p(50.0),
            unit: "ms",
            baseline: None,
            target: "",
        });
        rows.push(Row {
            what: format!("{name}: {what}, TTFB p99 of {}", args.requests),
            value: p(99.0),
            unit: "ms",
            baseline: None,
            target: "<= 50 ms",
        });
    }
    shutdown.cancel();
    server.await??;
    Ok(rows)
}

/// Requests `path` `n` times (after one unmeasured warm-up), each on a new connection; the
/// page's size and the time to the first byte of each answer.
async fn ttfb(
    addr: std::net::SocketAddr,
    path: &str,
    secret: &str,
    n: u32,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: panda_session={secret}\r\n\
         Connection: close\r\n\r\n"
    );
    let mut times = Vec::with_capacity(n as usize);
    let mut size = 0;
    for i in 0..=n {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let started = Instant::now();
        stream.write_all(request.as_bytes()).await?;
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await?;
        let elapsed = started.elapsed();
        let mut answer = first.to_vec();
        stream.read_to_end(&mut answer).await?;
        let head = String::from_utf8_lossy(&answer[..answer.len().min(20)]).into_owned();
        ensure!(
            head.starts_with("HTTP/1.1 200"),
            "{path} answered {}",
            head.lines().next().unwrap_or_default()
        );
        size = answer.len();
        if i > 0 {
            times.push(elapsed);
        }
    }
    Ok((size, times))
}

fn process_job(name: &str) -> anyhow::Result<JobSpec> {
    let mut spec = JobSpec::new(
        JobName::new(name)?,
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    // Executions of one job may overlap, so claiming many at once runs them all.
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.retry.max_attempts = 1;
    Ok(spec)
}

fn start_instant() -> anyhow::Result<DateTime<Utc>> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .context("a start instant")
}

/// `jobs` cronjobs, each a different daily time, each with `history` executions that ran:
/// slots fired, claimed a thousand at a time, finished in batches of a hundred at different
/// instants (so their lengths differ), one in seven failing (and so dead).
async fn seed_cronjobs(store: &Arc<dyn Store>, jobs: u32, history: u32) -> anyhow::Result<()> {
    let start = start_instant()?;
    let mut ids = Vec::with_capacity(jobs as usize);
    for i in 0..jobs {
        let mut spec = process_job(&format!("report-{i:05}"))?;
        spec.schedule = Some(Schedule::new(format!("{} {} * * *", i % 60, (i / 60) % 24)));
        ids.push(store.job_create(&spec, start).await?.id);
    }
    let slots: Vec<NewSlot> = (0..history)
        .flat_map(|h| {
            ids.iter().map(move |id| NewSlot {
                job_id: *id,
                scheduled_at: start + chrono::Duration::days(i64::from(h)),
                decision: SlotDecision::Fire,
            })
        })
        .collect();
    let mut now = start + chrono::Duration::days(i64::from(history));
    for batch in slots.chunks(2000) {
        for result in store.slot_record_many(batch, now).await? {
            result?;
        }
    }
    let claim = ClaimRequest {
        worker_id: "bench".into(),
        queues: Vec::new(),
        limit: 1000,
        lease_ttl: Duration::from_secs(3600),
    };
    let mut n = 0u64;
    loop {
        let claimed = store.execution_claim(&claim, now).await?;
        if claimed.is_empty() {
            break;
        }
        for chunk in claimed.chunks(100) {
            now += chrono::Duration::milliseconds(150 + (n % 7) as i64 * 400);
            let batch: Vec<Finish> = chunk
                .iter()
                .map(|c| {
                    n += 1;
                    let failed = n.is_multiple_of(7);
                    Finish {
                        execution_id: c.execution.id,
                        token: c.lease.token,
                        outcome: if failed {
                            Outcome::Failed
                        } else {
                            Outcome::Succeeded
                        },
                        exit_code: Some(i32::from(failed)),
                        reason: None,
                        image_digest: None,
                    }
                })
                .collect();
            for result in store.execution_finish_many(&batch, now).await? {
                result?;
            }
        }
    }
    let listed = store.job_list(JobKind::Scheduled).await?.len();
    ensure!(listed == jobs as usize, "{listed} cronjobs listed");
    Ok(())
}

/// `n` executions of one suspended every-second cronjob (its slots, skipped as suspended),
/// 5,000 a transaction; returns the id of the one half-way, for a deep cursor.
async fn seed_history(store: &Arc<dyn Store>, n: u32) -> anyhow::Result<ExecutionId> {
    let mut spec = process_job(BIG)?;
    spec.schedule = Some(Schedule::new("* * * * * *"));
    spec.suspended = true;
    let start = start_instant()?;
    let job = store.job_create(&spec, start).await?;
    let mut deep = None;
    let mut done = 0u32;
    while done < n {
        let batch: Vec<NewSlot> = (done..n.min(done + 5000))
            .map(|i| NewSlot {
                job_id: job.id,
                scheduled_at: start + chrono::Duration::seconds(i64::from(i)),
                decision: SlotDecision::Fire,
            })
            .collect();
        let count = batch.len() as u32;
        for (i, result) in store
            .slot_record_many(&batch, Utc::now())
            .await?
            .into_iter()
            .enumerate()
        {
            let record = result?;
            if done + i as u32 == n / 2 {
                deep = Some(record.slot().execution_id);
            }
        }
        done += count;
        if done.is_multiple_of(100_000) {
            eprintln!("  {done}");
        }
    }
    deep.context("the half-way execution")
}
