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

use std::path::PathBuf;
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
    #[arg(long, value_name = "PATH")]
    panda: Option<PathBuf>,
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
    let response = reqwest::Client::new()
        .post(format!("{url}/api/v1/jobs"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(format!(
            r#"{{"name":"{JOB}","runtime":{{"kind":"process","argv":["true"]}},"queue":"bench-unserved"}}"#
        ))
        .send()
        .await
        .context("create the job")?;
    let status = response.status();
    ensure!(
        status.is_success(),
        "creating the job answered {status}: {}",
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
