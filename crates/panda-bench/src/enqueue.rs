//! `panda-bench enqueue`: the batch enqueue against the single one, through a real
//! `panda server` over HTTP as a web application calls it, on each store backend in one run.
//!
//! One job, `bench-enqueue`, on a queue no node serves (`bench-unserved`; the server is
//! started with `--queues default`), so only the enqueue path is measured: nothing claims or
//! runs what is queued.
//!
//! - Single: `--executions` enqueues, one `POST /api/v1/jobs/bench-enqueue/executions` each,
//!   from each count of `--clients` concurrent clients (keep-alive connections).
//! - Batched: `--batches` batches of `--batch-size` items, one
//!   `POST /api/v1/jobs/bench-enqueue/executions/batch` each, from each count of
//!   `--batch-clients` concurrent clients.
//!
//! Every answer is checked: each execution must come back created, and the run fails unless
//! the count is exactly what was sent. Latencies are per request (a whole batch for batched).
//! The executions of all modes of one backend accumulate in one database, single first.
//!
//! With `--baseline OLD`, the single enqueues are measured on the `panda` from before a change
//! and on `--panda` alternately (`--rounds` each), each on an empty store the binary's own
//! server makes (so each applies its own migrations), and each row shows after/before.
//!
//! With `--backlog N,…`, single-client enqueue latency with N executions already queued,
//! cloned in SQL from one the server wrote (the `sqlite3` or `psql` client, the server
//! stopped): due on `bench-unserved`, which the node does not serve, or due in a day on
//! `default`, which it serves. The measured job is on `default` and each measured execution
//! is due in an hour: every enqueue wakes the node's claim, and nothing runs. The measured
//! executions are deleted after each measurement, so that each finds the same backlog.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use panda_client::Client;
use panda_core::api::{BatchItem, BatchRequest, MAX_BATCH_ITEMS, TriggerRequest};

use super::Backend;
use super::api::Server;
use super::runtime::{Row, print_table};
use super::service::Place;

const JOB: &str = "bench-enqueue";

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench enqueue
  panda-bench enqueue --pg-url postgres://postgres@127.0.0.1:55432/panda_test")]
pub(crate) struct EnqueueBench {
    /// PostgreSQL database to measure in (a fresh schema is made and dropped); without it only
    /// SQLite is measured
    #[arg(
        long = "pg-url",
        visible_alias = "database-url",
        env = "PANDA_BENCH_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pg_url: Option<String>,
    /// Single enqueues, one request each, for each count of clients
    #[arg(long, default_value_t = 5000)]
    executions: u32,
    /// Concurrent clients of the single enqueue, one measurement each
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    clients: Vec<u32>,
    /// Items in one batch
    #[arg(long, default_value_t = 1000)]
    batch_size: u32,
    /// Batches, for each count of clients
    #[arg(long, default_value_t = 50)]
    batches: u32,
    /// Concurrent clients of the batch enqueue, one measurement each
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    batch_clients: Vec<u32>,
    /// The `panda` binary measured [default: the one beside this binary, as cargo builds it]
    #[arg(long, visible_alias = "panda-bin", value_name = "PATH")]
    panda: Option<PathBuf>,
    /// A `panda` binary from before a change: every single-enqueue measurement then runs on it
    /// and on --panda alternately, each on a store of its own, and each row shows after/before
    /// (the batched modes are not measured: the binary may have no batch endpoint)
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Instead of the modes above: single-client enqueue latency with this many executions
    /// already queued, comma-separated (0,100000,1000000), where no node takes from them and
    /// delayed on the queue the node serves
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    backlog: Vec<u64>,
    /// With --baseline: measurements of each binary, alternated (before, after, before, ...)
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// With --backlog: one measurement stops after this long even if fewer than --executions
    /// requests were sent
    #[arg(long, default_value_t = 20, value_name = "SECONDS")]
    max_seconds: u64,
}

pub(super) async fn run(args: EnqueueBench) -> anyhow::Result<()> {
    if args.executions == 0 || args.batches == 0 {
        bail!("--executions and --batches must be at least 1");
    }
    if args.batch_size == 0 || args.batch_size as usize > MAX_BATCH_ITEMS {
        bail!("--batch-size must be from 1 to {MAX_BATCH_ITEMS}");
    }
    if args.clients.is_empty()
        || args.batch_clients.is_empty()
        || args.clients.contains(&0)
        || args.batch_clients.contains(&0)
    {
        bail!("--clients and --batch-clients must each be at least 1");
    }
    let exe = match &args.panda {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("find this binary")?
            .with_file_name("panda"),
    };
    ensure!(
        exe.is_file(),
        "no panda binary at {} (build it with `cargo build --release -p panda`, or pass --panda PATH)",
        exe.display()
    );

    let mut binaries = Vec::new();
    if let Some(path) = &args.baseline {
        ensure!(path.is_file(), "no panda binary at {}", path.display());
        binaries.push(Binary {
            label: "before",
            path: path.clone(),
        });
    }
    binaries.push(Binary {
        label: "after",
        path: exe.clone(),
    });
    if !args.backlog.is_empty() || args.baseline.is_some() {
        ensure!(args.rounds >= 1, "--rounds must be at least 1");
        let mut rows = Vec::new();
        for backend in Backend::requested(args.pg_url.as_deref()) {
            if args.backlog.is_empty() {
                rows.extend(compare_single(&args, &binaries, backend).await?);
            } else {
                rows.extend(backlogs(&args, &binaries, backend).await?);
            }
        }
        print_table(&rows);
        return Ok(());
    }

    let mut rows = Vec::new();
    for backend in Backend::requested(args.pg_url.as_deref()) {
        let place = Place::open(backend, args.pg_url.as_deref()).await?;
        let measured = measure(&args, &exe, backend, &place).await;
        // The schema goes whether or not the measurement did.
        let closed = place.close().await;
        rows.extend(measured?);
        closed?;
    }
    print_table(&rows);
    Ok(())
}

/// One backend's rows: every mode through one server.
async fn measure(
    args: &EnqueueBench,
    exe: &std::path::Path,
    backend: Backend,
    place: &Place,
) -> anyhow::Result<Vec<Row>> {
    let name = backend.name();
    let data_dir = place.data_dir("node-a");
    std::fs::create_dir_all(&data_dir)?;
    // The node takes only from `default`: nothing it runs is on the measured path.
    let mut flags = vec!["--queues", "default"];
    if let Some(url) = &place.url {
        flags.extend(["--database-url", url]);
    }
    let server = Server::start_with(exe, &data_dir, &flags)?;
    server.wait_ready().await?;
    let token = std::fs::read_to_string(data_dir.join("admin.token"))
        .context("read the server's admin token")?
        .trim()
        .to_owned();
    create_job(&server.url, &token).await?;

    // A few requests first, so that neither mode pays for the server's first ones.
    let warm = Client::new(&server.url, Some(token.clone()))?;
    for i in 0..50 {
        single(&warm, u64::MAX - i).await?;
    }

    let mut rows = Vec::new();
    let mut best_single: f64 = 0.0;
    let mut next_id = 0u64;
    for &clients in &args.clients {
        eprintln!(
            "{name}: {} single enqueues from {}",
            args.executions,
            plural(clients, "client")
        );
        let run = run_single(&server.url, &token, clients, args.executions, next_id).await?;
        next_id += u64::from(args.executions);
        best_single = best_single.max(run.rate());
        rows.extend(run.rows(
            &format!("{name}: single, {}", plural(clients, "client")),
            None,
            "(the baseline: the best of these)",
        ));
    }
    for &clients in &args.batch_clients {
        eprintln!(
            "{name}: {} batches of {} from {}",
            args.batches,
            args.batch_size,
            plural(clients, "client")
        );
        let run = run_batched(
            &server.url,
            &token,
            clients,
            args.batches,
            args.batch_size,
            next_id,
        )
        .await?;
        next_id += u64::from(args.batches) * u64::from(args.batch_size);
        rows.extend(run.rows(
            &format!(
                "{name}: batched by {}, {}",
                args.batch_size,
                plural(clients, "client")
            ),
            Some(best_single),
            ">= 20,000/s (baseline: best single)",
        ));
    }
    // Nothing may have left the queue: otherwise running them was measured too.
    let taken = warm
        .executions(JOB, "running,succeeded,failed", 1, None)
        .await
        .map_err(|err| anyhow::anyhow!("list executions: {err}"))?;
    ensure!(
        taken.executions.is_empty(),
        "the server ran executions of {JOB}: the measurement includes running them"
    );
    drop(server);
    Ok(rows)
}

/// `POST /api/v1/jobs` as an application would send it: a name, what to run, and a queue no
/// node serves.
async fn create_job(url: &str, token: &str) -> anyhow::Result<()> {
    create_job_on(url, token, JOB, "bench-unserved").await
}

/// A triggered job's default retry policy, spelled out: earlier builds require it.
const RETRY: &str = r#""retry":{"max_attempts":3,"backoff_base_ms":10000,"backoff_cap_ms":600000}"#;

/// `POST /api/v1/jobs`: job `name`, which runs `true`, on `queue`.
async fn create_job_on(url: &str, token: &str, name: &str, queue: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{url}/api/v1/jobs"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(format!(
            r#"{{"name":"{name}","runtime":{{"kind":"process","argv":["true"]}},"queue":"{queue}",{RETRY}}}"#
        ))
        .send()
        .await
        .with_context(|| format!("create the job {name}"))?;
    let status = response.status();
    ensure!(
        status.is_success(),
        "creating the job {name} answered {status}: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

/// `{"payload":{"id":ID}}`.
fn payload(id: u64) -> anyhow::Result<TriggerRequest> {
    Ok(TriggerRequest {
        payload: Some(format!(r#"{{"id":{id}}}"#).parse()?),
        ..TriggerRequest::default()
    })
}

/// One single enqueue; fails unless it made a new execution.
async fn single(client: &Client, id: u64) -> anyhow::Result<()> {
    let triggered = client
        .trigger(JOB, &payload(id)?)
        .await
        .map_err(|err| anyhow::anyhow!("enqueue {id}: {err}"))?;
    ensure!(triggered.created, "enqueue {id} was not created");
    Ok(())
}

/// What one mode measured: executions made, wall time, and each request's latency.
struct Run {
    executions: u64,
    elapsed: Duration,
    latencies: Vec<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.executions as f64 / self.elapsed.as_secs_f64()
    }

    fn rows(mut self, what: &str, baseline: Option<f64>, target: &'static str) -> Vec<Row> {
        let rate = self.rate();
        let requests = self.latencies.len();
        vec![
            Row {
                what: format!("{what}: executions/s ({} in total)", self.executions),
                value: rate,
                unit: "/s",
                baseline,
                target,
            },
            Row {
                what: format!("{what}: request p50"),
                value: percentile(&mut self.latencies, 50.0),
                unit: "ms",
                baseline: None,
                target: "",
            },
            Row {
                what: format!("{what}: request p99 of {requests}"),
                value: percentile(&mut self.latencies, 99.0),
                unit: "ms",
                baseline: None,
                target: "",
            },
        ]
    }
}

/// `count` single enqueues shared by `clients` tasks, each with its own keep-alive client.
async fn run_single(
    url: &str,
    token: &str,
    clients: u32,
    count: u32,
    first_id: u64,
) -> anyhow::Result<Run> {
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let client = Client::new(url, Some(token.to_owned()))?;
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let sent = Instant::now();
                single(&client, first_id + u64::from(i)).await?;
                latencies.push(ms(sent.elapsed()));
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(count as usize);
    while let Some(task) = tasks.join_next().await {
        latencies.extend(task??);
    }
    let elapsed = started.elapsed();
    ensure!(
        latencies.len() == count as usize,
        "{} of {count} single enqueues created",
        latencies.len()
    );
    Ok(Run {
        executions: u64::from(count),
        elapsed,
        latencies,
    })
}

/// `batches` batch enqueues of `size` items shared by `clients` tasks; fails unless every item
/// of every batch was created.
async fn run_batched(
    url: &str,
    token: &str,
    clients: u32,
    batches: u32,
    size: u32,
    first_id: u64,
) -> anyhow::Result<Run> {
    // The requests are built before the clock starts: the client's own work is the
    // application's, not the enqueue's.
    let requests = (0..batches)
        .map(|b| {
            let items = (0..size)
                .map(|i| payload(first_id + u64::from(b) * u64::from(size) + u64::from(i)))
                .collect::<anyhow::Result<_>>()?;
            Ok(BatchRequest { items })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let client = Client::new(url, Some(token.to_owned()))?;
        let next = Arc::clone(&next);
        let requests = Arc::clone(&requests);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut created = 0u64;
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(b as usize) else {
                    break;
                };
                let sent = Instant::now();
                let response = client
                    .trigger_batch(JOB, request)
                    .await
                    .map_err(|err| anyhow::anyhow!("batch {b}: {err}"))?;
                latencies.push(ms(sent.elapsed()));
                ensure!(
                    response.items.len() == request.items.len(),
                    "batch {b}: {} answers to {} items",
                    response.items.len(),
                    request.items.len()
                );
                let items_created = response
                    .items
                    .iter()
                    .filter(|item| matches!(item, BatchItem::Created { .. }))
                    .count();
                ensure!(
                    items_created == request.items.len() && response.created == items_created,
                    "batch {b}: {items_created} of {} items created ({} duplicates, {} invalid)",
                    request.items.len(),
                    response.duplicates,
                    response.invalid
                );
                created += items_created as u64;
            }
            anyhow::Ok((latencies, created))
        });
    }
    let mut latencies = Vec::with_capacity(batches as usize);
    let mut created = 0;
    while let Some(task) = tasks.join_next().await {
        let (task_latencies, task_created) = task??;
        latencies.extend(task_latencies);
        created += task_created;
    }
    let elapsed = started.elapsed();
    let expected = u64::from(batches) * u64::from(size);
    ensure!(
        created == expected,
        "{created} of {expected} batched executions created"
    );
    Ok(Run {
        executions: created,
        elapsed,
        latencies,
    })
}

/// One `panda` binary of a comparison: `before` (--baseline) or `after` (--panda).
struct Binary {
    label: &'static str,
    path: PathBuf,
}

/// A row of a comparison: the after binary's value, against the before binary's when there
/// is one (the table's ratio is then after/before).
fn compared(what: String, unit: &'static str, values: &[f64], target: &'static str) -> Row {
    let (value, baseline) = match values {
        [before, after] => (*after, Some(*before)),
        [.., after] => (*after, None),
        [] => (f64::NAN, None),
    };
    Row {
        what,
        value,
        unit,
        baseline,
        target,
    }
}

/// The single enqueue of the default modes on each binary, alternated `--rounds` times, each
/// measurement on an empty store of its own; the latencies of a binary's rounds are pooled.
async fn compare_single(
    args: &EnqueueBench,
    binaries: &[Binary],
    backend: Backend,
) -> anyhow::Result<Vec<Row>> {
    let name = backend.name();
    eprintln!("{name}: the batched modes are not compared (a baseline may have no batch endpoint)");
    let mut rows = Vec::new();
    for &clients in &args.clients {
        let mut pooled: Vec<Run> = binaries
            .iter()
            .map(|_| Run {
                executions: 0,
                elapsed: Duration::ZERO,
                latencies: Vec::new(),
            })
            .collect();
        for round in 1..=args.rounds {
            for (binary, pool) in binaries.iter().zip(&mut pooled) {
                let fresh = Fresh::open(backend, args.pg_url.as_deref())?;
                let run = single_on_empty(&fresh, &binary.path, clients, args.executions).await;
                let closed = fresh.close();
                let run = run?;
                closed?;
                eprintln!(
                    "{name}: {}, round {round}, {}: {:.0}/s, p50 {:.1} ms",
                    plural(clients, "client"),
                    binary.label,
                    run.rate(),
                    percentile(&mut run.latencies.clone(), 50.0)
                );
                pool.executions += run.executions;
                pool.elapsed += run.elapsed;
                pool.latencies.extend(run.latencies);
            }
        }
        let what = format!("{name}: single, {}", plural(clients, "client"));
        let rates: Vec<f64> = pooled.iter().map(Run::rate).collect();
        let requests = pooled.last().map_or(0, |run| run.latencies.len());
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for run in &mut pooled {
            p50.push(percentile(&mut run.latencies, 50.0));
            p99.push(percentile(&mut run.latencies, 99.0));
        }
        let (rate_target, p99_target) = if clients > 1 {
            (">= 5,000/s", "<= 25 ms")
        } else {
            ("", "not worse")
        };
        rows.push(compared(
            format!("{what}: executions/s (in {} rounds)", args.rounds),
            "/s",
            &rates,
            rate_target,
        ));
        rows.push(compared(format!("{what}: request p50"), "ms", &p50, ""));
        rows.push(compared(
            format!("{what}: request p99 of {requests}"),
            "ms",
            &p99,
            p99_target,
        ));
    }
    Ok(rows)
}

/// `count` single enqueues of the unserved job from `clients` clients, through a server of
/// `exe` on the empty store `fresh`.
async fn single_on_empty(
    fresh: &Fresh,
    exe: &Path,
    clients: u32,
    count: u32,
) -> anyhow::Result<Run> {
    let server = fresh.start(exe)?;
    server.wait_ready().await?;
    let token = fresh.token()?;
    create_job(&server.url, &token).await?;
    let warm = Client::new(&server.url, Some(token.clone()))?;
    for i in 0..50 {
        single(&warm, u64::MAX - i).await?;
    }
    let run = run_single(&server.url, &token, clients, count, 0).await?;
    drop(server);
    fresh.nothing_ran()?;
    Ok(run)
}

/// The job whose enqueues the backlog mode measures: on `default`, which the node serves.
const MEASURED_JOB: &str = "bench-measured";
/// The job of the served backlog: on `default` too.
const SERVED_JOB: &str = "bench-served";

/// Where the backlog of the backlog mode waits.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// Due executions of `bench-enqueue`, on a queue no node serves.
    Unserved,
    /// Executions of `bench-served` on `default`, the node's queue, due in a day.
    Served,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Self::Unserved => "unserved",
            Self::Served => "served",
        }
    }

    /// The job of the backlog and when it is due (`None`: now).
    fn backlog(self) -> (&'static str, Option<chrono::DateTime<chrono::Utc>>) {
        match self {
            Self::Unserved => (JOB, None),
            Self::Served => (
                SERVED_JOB,
                Some(chrono::Utc::now() + chrono::TimeDelta::days(1)),
            ),
        }
    }
}

/// One binary's store in the backlog mode, and the execution its backlog is cloned from.
struct Backlogged {
    fresh: Fresh,
    seed: String,
    /// Clones of `seed` in the store.
    cloned: u64,
}

/// The backlog mode on one backend: for each setup, a store per binary grown to each size in
/// turn, and at each size `--rounds` measurements per binary, alternated.
async fn backlogs(
    args: &EnqueueBench,
    binaries: &[Binary],
    backend: Backend,
) -> anyhow::Result<Vec<Row>> {
    let mut sizes = args.backlog.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut rows = Vec::new();
    for setup in [Setup::Unserved, Setup::Served] {
        let mut stores = Vec::new();
        let mut opened = Ok(());
        for binary in binaries {
            match seeded(args, &binary.path, backend, setup).await {
                Ok(store) => stores.push(store),
                Err(err) => {
                    opened = Err(err);
                    break;
                }
            }
        }
        let measured = match opened {
            Ok(()) => backlog_setup(args, binaries, backend, setup, &sizes, &mut stores).await,
            Err(err) => Err(err),
        };
        // The schemas go whether or not the measurement did.
        let mut closed = Ok(());
        for store in stores {
            closed = closed.and(store.fresh.close());
        }
        rows.extend(measured?);
        closed?;
    }
    Ok(rows)
}

/// A store made by `exe`'s server, with the jobs of the backlog mode and the one execution of
/// `setup`'s backlog job that the backlog is cloned from.
async fn seeded(
    args: &EnqueueBench,
    exe: &Path,
    backend: Backend,
    setup: Setup,
) -> anyhow::Result<Backlogged> {
    let fresh = Fresh::open(backend, args.pg_url.as_deref())?;
    let seed = async {
        let server = fresh.start(exe)?;
        server.wait_ready().await?;
        let token = fresh.token()?;
        create_job_on(&server.url, &token, JOB, "bench-unserved").await?;
        create_job_on(&server.url, &token, SERVED_JOB, "default").await?;
        create_job_on(&server.url, &token, MEASURED_JOB, "default").await?;
        let (job, run_at) = setup.backlog();
        let client = Client::new(&server.url, Some(token))?;
        let request = TriggerRequest {
            run_at,
            ..payload(0)?
        };
        client
            .trigger(job, &request)
            .await
            .map_err(|err| anyhow::anyhow!("enqueue the seed: {err}"))?;
        drop(server);
        let seed = fresh.sql(&[&format!(
            "SELECT id FROM executions WHERE job_name = '{job}'"
        )])?;
        ensure!(
            seed.lines().count() == 1,
            "one seed execution, found {seed:?}"
        );
        anyhow::Ok(seed.trim().to_owned())
    }
    .await;
    match seed {
        Ok(seed) => Ok(Backlogged {
            fresh,
            seed,
            cloned: 0,
        }),
        Err(err) => {
            let _ = fresh.close();
            Err(err)
        }
    }
}

async fn backlog_setup(
    args: &EnqueueBench,
    binaries: &[Binary],
    backend: Backend,
    setup: Setup,
    sizes: &[u64],
    stores: &mut [Backlogged],
) -> anyhow::Result<Vec<Row>> {
    let name = backend.name();
    let setup_name = setup.name();
    let mut rows = Vec::new();
    let mut first_p50: Option<(u64, Vec<f64>)> = None;
    let mut last_p50 = Vec::new();
    for &size in sizes {
        for (binary, store) in binaries.iter().zip(stores.iter_mut()) {
            if size > store.cloned {
                let started = Instant::now();
                store
                    .fresh
                    .clone_execution(&store.seed, store.cloned, size - store.cloned)?;
                eprintln!(
                    "{name} {setup_name} ({}): {} executions queued in {:.1} s",
                    binary.label,
                    size - store.cloned,
                    started.elapsed().as_secs_f64()
                );
                store.cloned = size;
            }
        }
        let mut pooled: Vec<Vec<f64>> = binaries.iter().map(|_| Vec::new()).collect();
        for round in 1..=args.rounds {
            for ((binary, store), pool) in binaries.iter().zip(stores.iter()).zip(&mut pooled) {
                let mut latencies = delayed_enqueues(
                    &store.fresh,
                    &binary.path,
                    args.executions,
                    Duration::from_secs(args.max_seconds),
                )
                .await?;
                eprintln!(
                    "{name} {setup_name} {size} queued, round {round}, {}: {} requests, p50 {:.2} ms, p99 {:.2} ms",
                    binary.label,
                    latencies.len(),
                    percentile(&mut latencies, 50.0),
                    percentile(&mut latencies, 99.0)
                );
                pool.extend(latencies);
            }
        }
        let what = format!("{name}, {setup_name}, {size} queued");
        let requests: Vec<String> = pooled.iter().map(|p| p.len().to_string()).collect();
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for pool in &mut pooled {
            p50.push(percentile(pool, 50.0));
            p99.push(percentile(pool, 99.0));
        }
        rows.push(compared(
            format!("{what}: p50 of {}", requests.join(" / ")),
            "ms",
            &p50,
            "",
        ));
        rows.push(compared(format!("{what}: p99"), "ms", &p99, ""));
        if first_p50.is_none() {
            first_p50 = Some((size, p50.clone()));
        }
        last_p50 = p50;
    }
    if let Some((first, empty)) = first_p50
        && sizes.len() > 1
    {
        let last = sizes.last().copied().unwrap_or_default();
        let ratios: Vec<f64> = last_p50.iter().zip(&empty).map(|(l, e)| l / e).collect();
        rows.push(compared(
            format!("{name}, {setup_name}: p50 at {last} queued / at {first}"),
            "x",
            &ratios,
            "<= 1.5x",
        ));
    }
    Ok(rows)
}

/// Single enqueues of the measured job from one client, each due in an hour, through a
/// server of `exe` on `fresh`: 50 to warm up, then up to `count` timed or until `max` has
/// passed. Their executions are deleted afterwards, so each measurement finds the same
/// backlog.
async fn delayed_enqueues(
    fresh: &Fresh,
    exe: &Path,
    count: u32,
    max: Duration,
) -> anyhow::Result<Vec<f64>> {
    let server = fresh.start(exe)?;
    server.wait_ready().await?;
    let client = Client::new(&server.url, Some(fresh.token()?))?;
    let run_at = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let enqueue = async |id: u64| {
        let request = TriggerRequest {
            run_at: Some(run_at),
            ..payload(id)?
        };
        let triggered = client
            .trigger(MEASURED_JOB, &request)
            .await
            .map_err(|err| anyhow::anyhow!("enqueue {id}: {err}"))?;
        ensure!(triggered.created, "enqueue {id} was not created");
        anyhow::Ok(())
    };
    for i in 0..50 {
        enqueue(u64::MAX - i).await?;
    }
    let mut latencies = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for i in 0..count {
        if started.elapsed() >= max {
            break;
        }
        let sent = Instant::now();
        enqueue(u64::from(i)).await?;
        latencies.push(ms(sent.elapsed()));
    }
    drop(server);
    fresh.nothing_ran()?;
    fresh.sql(&[&format!(
        "DELETE FROM executions WHERE job_name = '{MEASURED_JOB}'"
    )])?;
    Ok(latencies)
}

/// A store that the server under test makes itself, so that each binary applies its own
/// migrations (a binary that finds migrations it does not know applied refuses the
/// database): a temp data dir (on SQLite, the server's `panda.db` in it) and, on PostgreSQL,
/// an empty schema of its own, dropped by [`Fresh::close`]. The bench writes to it with the
/// `sqlite3` and `psql` command-line clients, while no server runs.
struct Fresh {
    dir: tempfile::TempDir,
    /// The database's URL and the schema.
    pg: Option<(String, String)>,
}

impl Fresh {
    fn open(backend: Backend, pg_url: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("create a temp data dir")?;
        let pg = match (backend, pg_url) {
            (Backend::Postgres, Some(url)) => {
                let schema = format!("panda_bench_{}", uuid::Uuid::now_v7().simple());
                psql(url, &[&format!("CREATE SCHEMA {schema}")])?;
                Some((url.to_owned(), schema))
            }
            _ => None,
        };
        Ok(Self { dir, pg })
    }

    /// `exe server` on this store, serving `default` only.
    fn start(&self, exe: &Path) -> anyhow::Result<Server> {
        let mut flags = vec!["--queues".to_owned(), "default".to_owned()];
        if let Some((url, schema)) = &self.pg {
            let separator = if url.contains('?') { '&' } else { '?' };
            flags.push("--database-url".to_owned());
            flags.push(format!(
                "{url}{separator}options=-c%20search_path%3D{schema}"
            ));
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Server::start_with(exe, self.dir.path(), &flags)
    }

    fn token(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("admin.token"))
            .context("read the server's admin token")?
            .trim()
            .to_owned())
    }

    /// Runs `statements` in order; what they print, a line per row.
    fn sql(&self, statements: &[&str]) -> anyhow::Result<String> {
        match &self.pg {
            Some((url, schema)) => {
                let search_path = format!("SET search_path TO {schema}");
                let mut all = vec![search_path.as_str()];
                all.extend(statements);
                psql(url, &all)
            }
            None => {
                let mut command = Command::new("sqlite3");
                command
                    .args(["-bail", "-batch", "-cmd", ".timeout 60000"])
                    .arg(self.dir.path().join("panda.db"))
                    .stdin(Stdio::piped());
                let mut script = statements.join(";\n");
                script.push_str(";\n");
                client_output(command, "sqlite3", Some(script))
            }
        }
    }

    /// Fails if any execution left the queue: running it would have been measured too.
    fn nothing_ran(&self) -> anyhow::Result<()> {
        let taken = self.sql(&["SELECT count(*) FROM executions WHERE status <> 'queued'"])?;
        ensure!(
            taken.trim() == "0",
            "{} executions left the queue: the measurement includes running them",
            taken.trim()
        );
        Ok(())
    }

    /// Inserts `count` copies of the execution `seed`, each with an id of its own and its own
    /// root, numbered after the `done` already made (SQLite: the seed's id with its last 12
    /// hex digits replaced by the number; PostgreSQL: `gen_random_uuid()`).
    fn clone_execution(&self, seed: &str, done: u64, count: u64) -> anyhow::Result<()> {
        let columns = if self.pg.is_some() {
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'executions' \
             ORDER BY ordinal_position"
        } else {
            "SELECT name FROM pragma_table_info('executions')"
        };
        let columns: Vec<String> = self.sql(&[columns])?.lines().map(str::to_owned).collect();
        ensure!(
            columns.iter().any(|c| c == "id") && columns.iter().any(|c| c == "root_id"),
            "no id and root_id among the columns of executions: {columns:?}"
        );
        let values = columns
            .iter()
            .map(|column| match column.as_str() {
                "id" | "root_id" => "n.id".to_owned(),
                other => format!("s.{other}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let columns = columns.join(", ");
        if self.pg.is_some() {
            self.sql(&[
                &format!(
                    "INSERT INTO executions ({columns}) SELECT {values} FROM executions s \
                     CROSS JOIN (SELECT gen_random_uuid() AS id FROM generate_series(1, {count})) n \
                     WHERE s.id = '{seed}'"
                ),
                // The statistics and visibility map a settled table has, whenever autovacuum
                // would get to them, and the rows on disk: otherwise the checkpoint of a
                // million rows' pages runs during the first measurement and slows its commits.
                "VACUUM ANALYZE executions",
                "CHECKPOINT",
            ])?;
        } else {
            let (first, last) = (done + 1, done + count);
            self.sql(&[
                "PRAGMA synchronous = OFF",
                &format!(
                    "WITH RECURSIVE k(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM k \
                     WHERE i < {last}), n(id) AS (SELECT substr('{seed}', 1, 24) || \
                     printf('%012x', i) FROM k) \
                     INSERT INTO executions ({columns}) SELECT {values} FROM executions s \
                     CROSS JOIN n WHERE s.id = '{seed}'"
                ),
            ])?;
        }
        Ok(())
    }

    fn close(self) -> anyhow::Result<()> {
        if let Some((url, schema)) = &self.pg {
            psql(url, &[&format!("DROP SCHEMA {schema} CASCADE")])?;
        }
        Ok(())
    }
}

/// `psql URL -c STATEMENT …`, one session, stopping at the first error.
fn psql(url: &str, statements: &[&str]) -> anyhow::Result<String> {
    let mut command = Command::new("psql");
    command.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url]);
    for statement in statements {
        command.arg("-c").arg(statement);
    }
    client_output(command, "psql", None)
}

/// Runs a database's command-line client, `input` on its stdin; its stdout, or its stderr
/// as the error.
fn client_output(
    mut command: Command,
    name: &str,
    input: Option<String>,
) -> anyhow::Result<String> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("run {name} (is it installed?)"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().context("its stdin")?;
        stdin.write_all(input.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8(output.stdout)?)
}

fn plural(n: u32, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q`th percentile.
fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}
