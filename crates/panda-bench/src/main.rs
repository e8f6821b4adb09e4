//! `panda-bench`: measurements that go into BENCHMARKS.md
//! (`cargo run --release -p panda-bench -- queue …`).
//!
//! Benchmarks live here, not in tests: absolute times on a shared machine drift, so a result is
//! only read next to the other backends measured in the same run. They are a binary of their
//! own, so the `panda` that ships carries none of them.

mod api;
mod dashboard;
mod enqueue;
mod keys;
mod prune;
mod queue;
mod runtime;
mod schedule;
mod service;
mod store;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use panda_store::{PgStore, SqliteStore, Store};

/// Measure Panda's throughput on this machine.
#[derive(Debug, Parser)]
#[command(name = "panda-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Enqueue, then claim and finish, executions on each store backend.
    Store(store::StoreBench),
    /// The scheduler: a minute's slots of many cronjobs, and the lag of an every-second one.
    Schedule(schedule::ScheduleBench),
    /// The runtimes against their baselines, and log capture.
    Runtime(runtime::RuntimeBench),
    /// The workers end to end: throughput, enqueue-to-start latency, rescue time.
    Queue(queue::QueueBench),
    /// The server and the CLI: list and page latency, memory, start-up.
    Api(api::ApiBench),
    /// The dashboard: time to first byte of the cronjobs page and of a job page with a long
    /// history.
    Dashboard(dashboard::DashboardBench),
    /// Claim latency while a large history is pruned, against idle, and prune throughput.
    Prune(prune::PruneBench),
    /// The batch enqueue against the single one, over HTTP through a real server, on each
    /// backend.
    Enqueue(enqueue::EnqueueBench),
    /// The claim of other work with one saturated key's backlog queued ahead of it, against
    /// the same work alone.
    Keys(keys::KeysBench),
    /// Services through real nodes: exit to restart against a shell loop, and an instance's
    /// move to another node when its node is SIGKILLed or drained.
    Service(service::ServiceBench),
}

fn main() -> ExitCode {
    // Every HTTPS client in this process (reqwest is built without a provider) uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PANDA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Runtime::new()
        .context("start the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store(args) => store::run(args).await,
        BenchCommand::Schedule(args) => schedule::run(args).await,
        BenchCommand::Runtime(args) => runtime::run(args).await,
        BenchCommand::Queue(args) => queue::run(args).await,
        BenchCommand::Api(args) => api::run(args).await,
        BenchCommand::Dashboard(args) => dashboard::run(args).await,
        BenchCommand::Prune(args) => prune::run(args).await,
        BenchCommand::Service(args) => service::run(args).await,
        BenchCommand::Enqueue(args) => enqueue::run(args).await,
        BenchCommand::Keys(args) => keys::run(args).await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// SQLite always; PostgreSQL when a database was given (and a note when it was not).
    fn requested(database_url: Option<&str>) -> Vec<Self> {
        if database_url.is_some() {
            vec![Self::Sqlite, Self::Postgres]
        } else {
            eprintln!(
                "PostgreSQL not measured: pass --database-url or set PANDA_BENCH_DATABASE_URL"
            );
            vec![Self::Sqlite]
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A throwaway store for one measurement: a temp-file SQLite database, or a fresh schema in
/// the given PostgreSQL database that [`Scratch::close`] drops.
enum Scratch {
    Sqlite {
        store: Arc<SqliteStore>,
        _dir: tempfile::TempDir,
    },
    Postgres(Arc<PgStore>),
}

impl Scratch {
    async fn open(
        backend: Backend,
        database_url: Option<&str>,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        match (backend, database_url) {
            (Backend::Postgres, Some(url)) => {
                let schema = format!("panda_bench_{}", uuid::Uuid::now_v7().simple());
                let store = PgStore::connect_in_schema(url, &schema, max_connections)
                    .await
                    .with_context(|| format!("connect to {}", panda_store::redact_url(url)))?;
                Ok(Self::Postgres(Arc::new(store)))
            }
            _ => {
                let dir =
                    tempfile::tempdir().context("create a temp dir for the SQLite database")?;
                let store = SqliteStore::open(&dir.path().join("bench.db")).await?;
                Ok(Self::Sqlite {
                    store: Arc::new(store),
                    _dir: dir,
                })
            }
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite { store, .. } => Arc::clone(store) as Arc<dyn Store>,
            Self::Postgres(store) => Arc::clone(store) as Arc<dyn Store>,
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        if let Self::Postgres(store) = self {
            store
                .drop_schema()
                .await
                .context("drop the benchmark schema")?;
        }
        Ok(())
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        f64::midpoint(values[mid - 1], values[mid])
    } else {
        values[mid]
    }
}
