//! `panda server`: opens the store, makes sure the admin token exists, runs the Scheduler, the
//! Dispatcher (this node's workers), the ServiceController, the Rescuer, the Alerter and the
//! Pruner, and on SIGTERM or Ctrl-C drains: nothing new starts, service instances are stopped
//! and handed over at once, running executions get a grace period, the rest go back to the
//! queue.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, ValueEnum};
use panda_core::SystemClock;
use panda_engine::{
    Alerter, AlerterConfig, DEFAULT_DRAIN_GRACE, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_KEEP,
    DEFAULT_LEASE_TTL, DEFAULT_PRUNE_BATCH, DEFAULT_PRUNE_INTERVAL, Dispatcher, DispatcherConfig,
    Pruner, QueueLimit, Rescuer, Runtimes, Scheduler, ServiceController,
};

// The flags' defaults, written out for clap, are these.
const _: () = assert!(DEFAULT_LEASE_TTL.as_secs() == 15);
const _: () = assert!(DEFAULT_HEARTBEAT_INTERVAL.as_secs() == 5);
const _: () = assert!(DEFAULT_DRAIN_GRACE.as_secs() == 30);
const _: () = assert!(DEFAULT_KEEP == 1000);
const _: () = assert!(DEFAULT_PRUNE_INTERVAL.as_secs() == 60);
const _: () = assert!(DEFAULT_PRUNE_BATCH == 1000);
/// SQLite has one writer, so a claim waits for a whole pruning transaction: batches of 250 keep
/// claim latency near idle while history is pruned, where 1,000 more than doubled its p99
/// (BENCHMARKS.md, `panda-bench prune`).
const SQLITE_PRUNE_BATCH: u32 = 250;
use panda_runtime::{DockerRuntime, ProcessRuntime, Records, Runtime, host_name};
use panda_store::{Retention, Store, StoreError, TokenScope};
use tokio_util::sync::CancellationToken;

use crate::{UserError, store};

/// The token file the local CLI reads when no token is given.
const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Beside the token file: the name of the token this node made, the only one it ever replaces.
const ADMIN_TOKEN_NAME_FILE: &str = "admin.token.name";

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda server
  panda server --example
  panda server --data-dir /var/lib/panda --bind 0.0.0.0:7070
  PANDA_DATABASE_URL=postgres://panda@db/panda panda server")]
pub(crate) struct ServerArgs {
    /// Where the HTTP API listens
    #[arg(
        long,
        env = "PANDA_BIND",
        default_value = "127.0.0.1:7070",
        value_name = "ADDR"
    )]
    bind: String,
    /// Also create an example cronjob, `hello`, that runs a local command every 10 seconds
    /// (if it does not exist yet), so there is something to watch
    #[arg(long)]
    example: bool,
    /// Finished executions kept per job, newest first, when the job has no `--keep` of its own
    /// (executions in the dead-letter queue are kept until they age out)
    #[arg(long, env = "PANDA_KEEP", default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    keep: u32,
    /// Finished executions (and cron slots) older than this are deleted with their logs, when
    /// the job has no `--max-age` of its own [default: no age limit]
    #[arg(long, env = "PANDA_MAX_AGE", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    max_age: Option<Duration>,
    /// How often old history is pruned
    #[arg(long, env = "PANDA_PRUNE_INTERVAL", value_parser = humantime::parse_duration,
          default_value = "60s", value_name = "DURATION")]
    prune_interval: Duration,
    /// Executions deleted per pruning transaction: smaller batches hold the database for less
    /// time (on SQLite, claims wait for each one), larger ones prune faster [default: 250 on
    /// SQLite, 1000 on PostgreSQL]
    #[arg(long, env = "PANDA_PRUNE_BATCH", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    prune_batch: Option<u32>,
    #[command(flatten)]
    alerts: AlertArgs,
    #[command(flatten)]
    node: NodeArgs,
}

/// What only a server runs: the API (with the example job), the Alerter and the Pruner.
#[derive(Debug)]
struct ServerParts<'a> {
    bind: &'a str,
    example: bool,
    alerts: &'a AlertArgs,
    retention: Retention,
    prune_interval: Duration,
}

/// Where alerts go when a job names no notifier of its own.
#[derive(Debug, Args)]
pub(crate) struct AlertArgs {
    /// A generic JSON webhook for alerts of jobs that name none (repeat, or comma-separate)
    #[arg(
        long = "alert-webhook",
        env = "PANDA_ALERT_WEBHOOKS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    webhooks: Vec<String>,
    /// A Slack-compatible incoming webhook for alerts of jobs that name none
    #[arg(
        long = "alert-slack",
        env = "PANDA_ALERT_SLACK",
        value_delimiter = ',',
        value_name = "URL",
        hide_env_values = true
    )]
    slack: Vec<String>,
    /// Signs generic webhook bodies: `X-Panda-Signature: sha256=<HMAC-SHA256 of the body>`
    #[arg(
        long = "alert-signing-secret",
        env = "PANDA_ALERT_SIGNING_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    signing_secret: Option<String>,
    /// The address people reach this server at, for links in alerts [default: http://BIND]
    #[arg(long, env = "PANDA_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// How often cron slots, monitors' pings and long runs are checked
    #[arg(long, env = "PANDA_ALERT_WATCH_INTERVAL", value_parser = humantime::parse_duration,
          default_value = "10s", value_name = "DURATION")]
    alert_watch_interval: Duration,
    /// How long after start-up before cron slots and monitors are first checked (the
    /// scheduler catches up first)
    #[arg(long, env = "PANDA_ALERT_WATCH_DELAY", value_parser = humantime::parse_duration,
          default_value = "30s", value_name = "DURATION")]
    alert_watch_delay: Duration,
}

impl AlertArgs {
    /// Refuses an endpoint or a public address that is not an http:// or https:// URL.
    fn check(&self) -> anyhow::Result<()> {
        for url in self.webhooks.iter().chain(&self.slack) {
            panda_core::validate_webhook_url(url).map_err(|err| {
                UserError::new(
                    format!("--alert-webhook/--alert-slack: {err}"),
                    "give a full URL such as https://hooks.example.com/panda",
                )
            })?;
        }
        if let Some(url) = &self.public_url {
            panda_core::validate_webhook_url(url).map_err(|_| {
                UserError::new(
                    format!("--public-url {url:?} is not an http:// or https:// URL"),
                    "give the address people open, such as https://panda.example.com",
                )
            })?;
        }
        Ok(())
    }

    /// The Alerter's configuration, once [`AlertArgs::check`] passed and the API is bound.
    fn config(&self, bound: std::net::SocketAddr) -> AlerterConfig {
        AlerterConfig {
            webhooks: self.webhooks.clone(),
            slack: self.slack.clone(),
            signing_secret: self.signing_secret.clone().filter(|s| !s.is_empty()),
            dashboard_url: Some(
                self.public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{bound}")),
            ),
            watch_interval: self.alert_watch_interval.max(Duration::from_millis(100)),
            watch_delay: self.alert_watch_delay,
            ..AlerterConfig::default()
        }
    }
}

/// `panda worker`: a node that only runs executions.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  PANDA_DATABASE_URL=postgres://panda@db/panda panda worker
  panda worker --database-url postgres://panda@db/panda --queues reports=2 --concurrency 4")]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    node: NodeArgs,
}

/// What every node is told: its store, its runtimes and how it works.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Where the SQLite database, the admin token and the records of running local processes
    /// (`running/`, which a worker keeps too) live [default: ~/.local/share/panda]
    #[arg(long, env = "PANDA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A postgres:// URL to keep state in PostgreSQL instead of SQLite
    #[arg(
        long,
        env = "PANDA_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Which runtimes this node offers: `auto` runs images on the Docker engine when one
    /// answers, and local processes always
    #[arg(long, env = "PANDA_RUNTIME", value_enum, default_value_t = RuntimeChoice::Auto)]
    runtime: RuntimeChoice,
    /// Executions run at once on this node
    #[arg(long, env = "PANDA_CONCURRENCY", default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// Service instances run at once on this node, apart from --concurrency: instances and
    /// job executions never wait for each other's room
    #[arg(long, env = "PANDA_SERVICE_SLOTS", default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    service_slots: u32,
    /// Queues to take work from, comma-separated, each with an optional limit of its own
    /// (`reports=2`); every queue when left out
    #[arg(
        long,
        env = "PANDA_QUEUES",
        value_delimiter = ',',
        value_name = "QUEUE[=N],..."
    )]
    queues: Vec<QueueLimit>,
    /// How long a lease lasts without a heartbeat: after that, another node runs the execution
    /// again
    #[arg(long, env = "PANDA_LEASE_TTL", value_parser = humantime::parse_duration,
          default_value = "15s", value_name = "DURATION")]
    lease_ttl: Duration,
    /// How often a running execution's lease is renewed (well under --lease-ttl)
    #[arg(long, env = "PANDA_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration,
          default_value = "5s", value_name = "DURATION")]
    heartbeat_interval: Duration,
    /// On SIGTERM, how long running executions may go on before they are stopped and put back
    /// in the queue
    #[arg(long, env = "PANDA_SHUTDOWN_GRACE", value_parser = humantime::parse_duration,
          default_value = "30s", value_name = "DURATION")]
    shutdown_grace: Duration,
    /// This node's name on the executions it runs [default: HOSTNAME-PID]
    #[arg(long, env = "PANDA_WORKER_ID", value_name = "NAME")]
    worker_id: Option<String>,
    /// Also serve /metrics (Prometheus, behind an API token) on this address: how a `panda
    /// worker`, which serves no API, is scraped
    #[arg(long, env = "PANDA_METRICS_BIND", value_name = "ADDR")]
    metrics_bind: Option<String>,
    /// Once every service runs, write this file, with a line `api=http://ADDR` (a server) and
    /// `metrics=http://ADDR/metrics` (with --metrics-bind) for the addresses bound: a signal for
    /// scripts and supervisors that the node is ready (the file is written whole, by rename; it
    /// is removed at the start and at a clean stop)
    #[arg(long, env = "PANDA_READY_FILE", value_name = "PATH")]
    ready_file: Option<PathBuf>,
    #[command(flatten)]
    http: HttpArgs,
}

/// What one HTTP client may hold of the node (the API and --metrics-bind alike).
#[derive(Debug, Args)]
pub(crate) struct HttpArgs {
    /// A client must send a request's whole header within this long (an idle keep-alive
    /// connection is closed after it too)
    #[arg(long, env = "PANDA_HTTP_HEADER_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = "10s", value_name = "DURATION")]
    http_header_timeout: Duration,
    /// A client must send a request's whole body within this long of its header
    #[arg(long, env = "PANDA_HTTP_BODY_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = "30s", value_name = "DURATION")]
    http_body_timeout: Duration,
    /// HTTP connections served at once; more wait in the listen backlog until one closes.
    /// Each takes a file descriptor: keep it well under `ulimit -n`, and raise both together
    #[arg(long, env = "PANDA_HTTP_MAX_CONNECTIONS", default_value_t = 512, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    http_max_connections: u32,
}

// The flags' defaults, written out for clap, are these.
const _: () = assert!(panda_api::HttpLimits::DEFAULT_HEADER_READ_TIMEOUT.as_secs() == 10);
const _: () = assert!(panda_api::HttpLimits::DEFAULT_BODY_READ_TIMEOUT.as_secs() == 30);
const _: () = assert!(panda_api::HttpLimits::DEFAULT_MAX_CONNECTIONS == 512);

impl NodeArgs {
    /// The HTTP limits, once the durations are known to be above zero.
    fn http_limits(&self) -> anyhow::Result<panda_api::HttpLimits> {
        let http = &self.http;
        for (flag, value) in [
            ("--http-header-timeout", http.http_header_timeout),
            ("--http-body-timeout", http.http_body_timeout),
        ] {
            if value.is_zero() {
                return Err(UserError::new(
                    format!("{flag} must be above 0"),
                    "give a duration such as 10s",
                )
                .into());
            }
        }
        Ok(panda_api::HttpLimits {
            header_read_timeout: http.http_header_timeout,
            body_read_timeout: http.http_body_timeout,
            max_connections: usize::try_from(http.http_max_connections).unwrap_or(usize::MAX),
            shutdown_grace: self.shutdown_grace,
            ..panda_api::HttpLimits::default()
        })
    }
}

/// The example cronjob `--example` creates.
const EXAMPLE_JOB: &str = "hello";

/// Creates the example cronjob unless a job of its name exists.
async fn ensure_example(store: &dyn Store) -> anyhow::Result<()> {
    let mut spec = panda_core::JobSpec::new(
        panda_core::JobName::new(EXAMPLE_JOB)?,
        panda_core::RuntimeSpec::Process {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo \"hello from $PANDA_JOB, execution $PANDA_EXECUTION_ID, scheduled for $PANDA_SCHEDULED_AT\"".into(),
            ],
        },
    );
    spec.schedule = Some(panda_core::Schedule::new("*/10 * * * * *"));
    spec.retry = panda_core::JobKind::Cron.default_retry();
    spec.concurrency = panda_core::JobKind::Cron.default_concurrency(false);
    spec.keep = Some(100);
    match store.job_create(&spec, Utc::now()).await {
        Ok(_) => {
            tracing::info!(
                job = EXAMPLE_JOB,
                "example cronjob created: it runs every 10 s; watch it with `panda cronjob logs hello --latest`"
            );
            Ok(())
        }
        Err(StoreError::Conflict(_)) => Ok(()),
        Err(err) => Err(err).context("create the example cronjob"),
    }
}

/// Which runtimes a node offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuntimeChoice {
    /// Docker when an engine answers, and local processes.
    Auto,
    /// Docker only; the server does not start without an engine.
    Docker,
    /// Local processes only.
    Process,
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if args.prune_interval.is_zero() {
        return Err(UserError::new(
            "--prune-interval must be above 0",
            "give a duration such as 60s or 10m",
        )
        .into());
    }
    if args.max_age.is_some_and(|age| age < Duration::from_secs(1)) {
        return Err(UserError::new(
            "--max-age must be at least 1s",
            "give a duration such as 30d, or leave it out for no age limit",
        )
        .into());
    }
    let parts = ServerParts {
        bind: &args.bind,
        example: args.example,
        alerts: &args.alerts,
        retention: Retention {
            max_age: args.max_age,
            keep_per_job: args.keep,
            batch: args
                .prune_batch
                .unwrap_or(if args.node.database_url.is_some() {
                    DEFAULT_PRUNE_BATCH
                } else {
                    SQLITE_PRUNE_BATCH
                }),
        },
        prune_interval: args.prune_interval,
    };
    run_node(&args.node, Some(parts)).await
}

/// `panda worker`: the Dispatcher and the Rescuer, no API and no scheduler.
pub(crate) async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    run_node(&args.node, None).await
}

/// Runs a node until SIGTERM or Ctrl-C: with `server`, a whole server; without, workers only.
async fn run_node(args: &NodeArgs, server: Option<ServerParts<'_>>) -> anyhow::Result<()> {
    let stop = ShutdownSignal::install()?;
    // The whole configuration is checked before anything is bound or opened: a mistake is
    // reported as itself, not as whatever the first bind or open ran into (a port in use).
    let config = dispatcher_config(args)?;
    let http_limits = args.http_limits()?;
    if let Some(parts) = &server {
        check_address(parts.bind, "--bind", "PANDA_BIND")?;
        parts.alerts.check()?;
    }
    if let Some(bind) = &args.metrics_bind {
        check_address(bind, "--metrics-bind", "PANDA_METRICS_BIND")?;
    }
    store::check_url(args.database_url.as_deref())?;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => store::default_data_dir()?,
    };
    if args.database_url.is_none() || server.is_some() {
        check_data_dir(&data_dir)?;
    }
    if let Some(path) = &args.ready_file {
        check_ready_file(path)?;
        remove_ready_file(path)?;
    }
    let listener = match &server {
        Some(ServerParts { bind, .. }) => {
            Some(tokio::net::TcpListener::bind(bind).await.map_err(|err| {
                UserError::new(
                    format!("cannot listen on {bind}: {err}"),
                    "is another server running there? pass --bind 127.0.0.1:PORT or set PANDA_BIND",
                )
            })?)
        }
        None => None,
    };
    let metrics_listener = match &args.metrics_bind {
        Some(bind) => Some(tokio::net::TcpListener::bind(bind).await.map_err(|err| {
            UserError::new(
                format!("cannot listen on {bind} for metrics: {err}"),
                "pass --metrics-bind 127.0.0.1:PORT or set PANDA_METRICS_BIND",
            )
        })?),
        None => None,
    };
    let store = store::open(args.database_url.as_deref(), &data_dir).await?;
    match &args.database_url {
        Some(url) => tracing::info!(database = %store::redact(url), "store ready on PostgreSQL"),
        None => {
            tracing::info!(path = %data_dir.join("panda.db").display(), "store ready on SQLite")
        }
    }
    if server.is_some() {
        ensure_admin_token(store.as_ref(), &data_dir).await?;
    }
    if server.as_ref().is_some_and(|parts| parts.example) {
        ensure_example(store.as_ref()).await?;
    }
    let runtimes = runtimes(args.runtime, args.worker_id.as_deref(), &data_dir).await?;
    let clock = Arc::new(SystemClock);
    let shutdown = CancellationToken::new();
    let metrics = crate::metrics::install(&shutdown)?;
    let mut services = Vec::new();
    let mut ready = String::new();
    if let (Some(listener), Some(parts)) = (listener, &server) {
        let alerts = parts
            .alerts
            .config(listener.local_addr().context("the listening address")?);
        let alerter = Alerter::new(Arc::clone(&store), clock.clone(), alerts)
            .context("set up the HTTP client for alerts")?;
        services.push(tokio::spawn(alerter.run(shutdown.clone())));
        let scheduler = Scheduler::new(Arc::clone(&store), clock.clone());
        let state = panda_api::AppState::new(
            Arc::clone(&store),
            clock.clone(),
            Some(scheduler.handle()),
            shutdown.clone(),
        )
        .with_metrics(metrics.clone())
        .with_http_limits(http_limits);
        let bound = listener.local_addr().context("the listening address")?;
        services.push(tokio::spawn(scheduler.run(shutdown.clone())));
        let controller = ServiceController::new(Arc::clone(&store), clock.clone());
        services.push(tokio::spawn(controller.run(shutdown.clone())));
        let api = panda_api::serve(listener, state);
        services.push(tokio::spawn(async move {
            if let Err(err) = api.await {
                tracing::error!(%err, "the API stopped with an error");
            }
        }));
        tracing::info!(address = %bound, "API listening on http://{bound}");
        ready.push_str(&format!("api=http://{bound}\n"));
        tracing::info!("scheduler, service controller and alerter running");
    }
    if let Some(listener) = metrics_listener {
        let state =
            panda_api::AppState::new(Arc::clone(&store), clock.clone(), None, shutdown.clone())
                .with_metrics(metrics)
                .with_http_limits(http_limits);
        let bound = listener.local_addr().context("the metrics address")?;
        let served = panda_api::serve_metrics(listener, state);
        services.push(tokio::spawn(async move {
            if let Err(err) = served.await {
                tracing::error!(%err, "the metrics listener stopped with an error");
            }
        }));
        tracing::info!(address = %bound, "metrics on http://{bound}/metrics");
        ready.push_str(&format!("metrics=http://{bound}/metrics\n"));
    }
    if let Some(parts) = &server {
        let pruner = Pruner::new(store.clone(), clock.clone(), parts.retention)
            .with_interval(parts.prune_interval);
        services.push(tokio::spawn(pruner.run(shutdown.clone())));
        tracing::info!(
            keep = parts.retention.keep_per_job,
            max_age = %parts
                .retention
                .max_age
                .map_or_else(|| "none".to_owned(), panda_core::human::exact),
            every = %panda_core::human::exact(parts.prune_interval),
            "pruner running"
        );
    }
    tracing::info!(
        worker = %config.worker_id,
        concurrency = config.concurrency,
        service_slots = config.service_slots,
        queues = %queue_list(&config.queues),
        docker = runtimes.docker.is_some(),
        process = runtimes.process.is_some(),
        "workers running"
    );
    let heartbeat_every = config.heartbeat_every;
    let dispatcher = Dispatcher::new(Arc::clone(&store), clock.clone(), runtimes, config);
    let rescuer = Rescuer::new(store.clone(), clock)
        .with_grace(heartbeat_every)
        .with_unwritten(dispatcher.unwritten_finishes());
    services.push(tokio::spawn(rescuer.run(shutdown.clone())));
    let dispatcher = tokio::spawn(dispatcher.run(shutdown.clone()));
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &ready)?;
    }
    stop.received().await;
    tracing::info!("shutting down");
    // Not ready any more; a file that cannot be removed must not keep the drain from running.
    if let Some(path) = &args.ready_file
        && let Err(err) = remove_ready_file(path)
    {
        tracing::warn!(err = format!("{err:#}"), "the ready file stays");
    }
    shutdown.cancel();
    for service in services {
        service.await.context("a service task")?;
    }
    let drained = dispatcher.await.context("the dispatcher task")?;
    tracing::info!(
        finished = drained.finished,
        released = drained.released,
        instances = drained.instances,
        "stopped"
    );
    Ok(())
}

/// Refuses a listening address that has no port: `HOST:PORT`, `[IPV6]:PORT`.
fn check_address(address: &str, flag: &str, env: &str) -> anyhow::Result<()> {
    let has_port = address.parse::<std::net::SocketAddr>().is_ok()
        || address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
        });
    if has_port {
        return Ok(());
    }
    Err(UserError::new(
        format!("{flag} {address:?} is not an address with a port"),
        format!("give HOST:PORT, such as 127.0.0.1:7070, to {flag} or {env}"),
    )
    .into())
}

/// Refuses a data directory that is there but is not a directory.
fn check_data_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(UserError::new(
            format!("the data directory {} is not a directory", dir.display()),
            "pass --data-dir DIR or set PANDA_DATA_DIR to a directory (it is made if missing)",
        )
        .into()),
        _ => Ok(()),
    }
}

/// Refuses a ready file that could not be written once the node runs: a directory, or a path
/// in a directory that is not there.
fn check_ready_file(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if path.is_dir() || !parent.is_dir() {
        return Err(UserError::new(
            format!("--ready-file {} cannot be written", path.display()),
            "give a file path in a directory that exists",
        )
        .into());
    }
    Ok(())
}

/// Writes the ready file whole: a reader sees no file or all of it.
fn write_ready_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, contents)
        .with_context(|| format!("write the ready file {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("write the ready file {}", path.display()))
}

fn remove_ready_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("remove the ready file {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn dispatcher_config(args: &NodeArgs) -> anyhow::Result<DispatcherConfig> {
    if args.heartbeat_interval.is_zero() || args.heartbeat_interval >= args.lease_ttl {
        return Err(UserError::new(
            format!(
                "--heartbeat-interval {} must be above 0 and shorter than --lease-ttl {}",
                panda_core::human::exact(args.heartbeat_interval),
                panda_core::human::exact(args.lease_ttl)
            ),
            "a lease should outlive about three heartbeats, e.g. --heartbeat-interval 5s --lease-ttl 15s",
        )
        .into());
    }
    let worker_id = match &args.worker_id {
        Some(id) => id.clone(),
        None => format!("{}-{}", host_name(), std::process::id()),
    };
    let concurrency = usize::try_from(args.concurrency).unwrap_or(usize::MAX);
    let mut config = DispatcherConfig::new(worker_id, concurrency);
    config.service_slots = usize::try_from(args.service_slots).unwrap_or(usize::MAX);
    config.queues = args.queues.clone();
    config.lease_ttl = args.lease_ttl;
    config.heartbeat_every = args.heartbeat_interval;
    config.drain_grace = args.shutdown_grace;
    Ok(config)
}

fn queue_list(queues: &[QueueLimit]) -> String {
    if queues.is_empty() {
        return "all".to_owned();
    }
    queues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The name this node's containers carry when no `--worker-id` is given: the host name and a
/// digest of the data dir. A restart on the same data dir finds what its last run left
/// behind, and two servers on one host (a data dir each) never take each other's running
/// containers for leftovers, as they would with the host name alone.
fn container_node(data_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = hex::encode(Sha256::digest(dir.as_os_str().as_encoded_bytes()));
    format!("{}-{}", host_name(), &digest[..8])
}

/// The runtimes `choice` asks for. A Docker engine that answers is cleared of the containers
/// this node (by `--worker-id`, or else [`container_node`]) left behind when it last stopped
/// uncleanly. Local processes run under the per-run supervisor, with a record of each in
/// `DATA_DIR/running/`; what a dead node's runs left there is killed first.
async fn runtimes(
    choice: RuntimeChoice,
    node: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<Runtimes> {
    let process: Option<Arc<dyn Runtime>> = match choice {
        RuntimeChoice::Auto | RuntimeChoice::Process => {
            Some(Arc::new(process_runtime(&data_dir.join(RUNNING_DIR))))
        }
        RuntimeChoice::Docker => None,
    };
    let docker: Option<Arc<dyn Runtime>> = match choice {
        RuntimeChoice::Process => None,
        RuntimeChoice::Auto | RuntimeChoice::Docker => match DockerRuntime::connect().await {
            Ok(docker) => {
                let docker = docker
                    .with_node(node.map_or_else(|| container_node(data_dir), ToOwned::to_owned));
                // Its containers are removed the moment this process dies.
                let docker = docker
                    .watched(Path::new(panda_runtime::SELF_EXE))
                    .map_err(|err| UserError::plain(err.to_string()))?;
                match docker.reap_leftovers().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        containers = n,
                        "removed containers a crashed run left behind"
                    ),
                    Err(err) => tracing::warn!(%err, "could not look for leftover containers"),
                }
                Some(Arc::new(docker))
            }
            Err(err) if choice == RuntimeChoice::Auto => {
                tracing::info!(%err, "no Docker engine: image jobs fail until one answers; local processes run");
                None
            }
            Err(err) => {
                return Err(UserError::new(
                    format!("--runtime docker, but {err}"),
                    "start the Docker engine (or set DOCKER_HOST), or use --runtime auto",
                )
                .into());
            }
        },
    };
    Ok(Runtimes { docker, process })
}

/// Where a node records the local processes it runs (in its data dir, which a `panda worker`
/// has too: `--data-dir`, or `~/.local/share/panda`).
const RUNNING_DIR: &str = "running";

/// The process runtime: each job under the supervisor (this binary), recorded in `dir` once
/// the leftovers of dead nodes recorded there are killed.
fn process_runtime(dir: &Path) -> ProcessRuntime {
    let runtime = ProcessRuntime::supervised(panda_runtime::SELF_EXE);
    let records = match Records::new(dir) {
        Ok(records) => records,
        Err(err) => {
            tracing::warn!(dir = %dir.display(), %err, "cannot keep records of running processes: a crash of a supervisor would leave its job running until it ends");
            return runtime;
        }
    };
    match records.reap() {
        Ok(reaped) => {
            for process in &reaped.killed {
                tracing::warn!(process = %process, "killed a process a dead node's run left behind");
            }
            if reaped.records > 0 {
                tracing::info!(
                    runs = reaped.records,
                    killed = reaped.killed.len(),
                    dir = %dir.display(),
                    "cleared the records of runs a dead node left"
                );
            }
        }
        Err(err) => {
            tracing::warn!(dir = %dir.display(), %err, "could not look for leftover processes");
        }
    }
    runtime.with_records(records)
}

/// Makes sure `DATA_DIR/admin.token` holds an admin token the store knows, for the local CLI.
///
/// A file that verifies is kept, whichever token it holds (one this node made, the `admin`
/// token of a single-node install from before tokens were per node, or one an operator copied
/// there to share it). Otherwise this node makes a token of its own, named after the node
/// (`admin-HOST-XXXXXXXX`) and recorded in `DATA_DIR/admin.token.name`, and replaces only that
/// one: no node ever revokes another's token.
async fn ensure_admin_token(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let name_path = data_dir.join(ADMIN_TOKEN_NAME_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && let Some(token) = store.token_verify(existing.trim(), Utc::now()).await?
        && token.scope == TokenScope::Admin
    {
        tracing::info!(
            token = %token.name,
            path = %path.display(),
            "admin token reused: the token file verifies"
        );
        return Ok(());
    }
    let recorded = std::fs::read_to_string(&name_path)
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| panda_core::validate_name("token", name).is_ok());
    let name = recorded.unwrap_or_else(node_token_name);
    let replaced = match store.token_revoke(&name, Utc::now()).await {
        Ok(()) => true,
        Err(StoreError::NotFound { .. }) => false,
        Err(err) => return Err(err).context("replace this node's admin token"),
    };
    let (_, secret) = store
        .token_create(&name, TokenScope::Admin, Utc::now())
        .await
        .context("create the admin token")?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("create the directory {}", data_dir.display()))?;
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("write the admin token to {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("write {}", path.display()))?;
    std::fs::write(&name_path, format!("{name}\n"))
        .with_context(|| format!("write {}", name_path.display()))?;
    if replaced {
        tracing::info!(
            token = %name,
            path = %path.display(),
            "admin token replaced: the token file did not verify (a new database, or the token \
             was revoked); this node's own token was revoked and made anew, no other"
        );
    } else {
        tracing::info!(
            token = %name,
            path = %path.display(),
            "admin token created for this node"
        );
    }
    Ok(())
}

/// A new admin token name for this node: `admin-`, the host name, and eight random hex digits
/// (two nodes on one host, or two hosts of one name, still differ).
fn node_token_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut host: String = host
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    host = host.trim_matches('-').to_owned();
    if host.is_empty() {
        host.push_str("node");
    }
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("admin-{host}-{}", &suffix[..8])
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the moment this is made: a signal that comes
/// while the server is still starting is not lost (nor does it kill the process unclean).
struct ShutdownSignal {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("listen for SIGINT")?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
