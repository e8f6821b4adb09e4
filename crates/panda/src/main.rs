//! `panda`: the server and the command-line client of Panda, in one binary.
//!
//! This is the only crate that names concrete backends: it picks SQLite or PostgreSQL from the
//! configuration and hands the rest of Panda an `Arc<dyn Store>`.

mod apply;
mod cli;
mod metrics;
mod output;
mod server;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Self-hosted background jobs and cron, from one binary.
#[derive(Debug, Parser)]
#[command(name = "panda", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: cli::Connection,
    /// How Panda's own log lines are written: text for people, json (one object a line) for
    /// machines
    #[arg(long, global = true, env = "PANDA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Jobs that run on a schedule
    #[command(subcommand)]
    Cronjob(cli::JobCommand),
    /// Jobs that run when enqueued
    #[command(subcommand)]
    Job(cli::JobCommand),
    /// Long-running services: N instances kept running, health-checked, rolled out
    #[command(subcommand)]
    Service(cli::ServiceCommand),
    /// Monitors: crons that run elsewhere and ping a URL, alerted on when a ping is missed
    #[command(subcommand)]
    Monitor(cli::MonitorCommand),
    /// One execution, by id
    #[command(subcommand)]
    Execution(cli::ExecutionCommand),
    /// The dead-letter queue: executions whose retries ran out
    #[command(subcommand)]
    Dlq(cli::DlqCommand),
    /// Queues: their depth, and pausing and resuming one
    #[command(subcommand)]
    Queue(cli::QueueCommand),
    /// Alerts raised, and how their webhooks went
    #[command(subcommand)]
    Alert(cli::AlertCommand),
    /// API tokens
    #[command(subcommand)]
    Token(cli::TokenCommand),
    /// Create or update jobs from a TOML file of `[[job]]` tables; says what changed
    #[command(after_help = "Examples:
  panda export > jobs.toml
  panda apply -f jobs.toml")]
    Apply {
        /// The file
        #[arg(long, short = 'f')]
        file: std::path::PathBuf,
    },
    /// Print every job as the TOML that `panda apply` reads (secret values as placeholders)
    Export,
    /// Save a server and a token for later commands (checked against the server first)
    #[command(after_help = "Examples:
  panda login --server http://panda.internal:7070 --token panda_…
  PANDA_TOKEN=panda_… panda login --server http://10.0.0.5:7070")]
    Login,
    /// Whether the server answers, and what it holds
    Status,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "Examples:
  panda completions bash > ~/.local/share/bash-completion/completions/panda
  panda completions zsh > \"${fpath[1]}/_panda\"")]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Run the Panda server on this machine: API, scheduler and workers
    Server(server::ServerArgs),
    /// Run workers only: an extra node next to a server, on the same PostgreSQL
    Worker(server::WorkerArgs),
}

fn main() -> ExitCode {
    // The per-run process supervisor and the container watcher are this binary too; they start
    // before anything else (no async runtime, no logging: a supervisor's stdout and stderr are
    // the job's), and are not commands people run, so clap never sees them.
    let mut args = std::env::args_os();
    match args.nth(1) {
        Some(arg) if arg == panda_runtime::SUPERVISE_COMMAND => {
            return panda_runtime::supervise(args.collect());
        }
        Some(arg) if arg == panda_runtime::WATCH_COMMAND => {
            return panda_runtime::watch(args.collect());
        }
        _ => {}
    }
    // Every HTTPS client in this process (reqwest is built without a provider) uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PANDA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("start the async runtime")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Cronjob(command) => cli::run(command, &cli.connection, true).await,
            Command::Job(command) => cli::run(command, &cli.connection, false).await,
            Command::Service(command) => cli::service(command, &cli.connection).await,
            Command::Monitor(command) => cli::monitor(command, &cli.connection).await,
            Command::Execution(command) => cli::execution(command, &cli.connection).await,
            Command::Dlq(command) => cli::dlq(command, &cli.connection).await,
            Command::Queue(command) => cli::queue(command, &cli.connection).await,
            Command::Alert(command) => cli::alert(command, &cli.connection).await,
            Command::Token(command) => cli::token(command, &cli.connection).await,
            Command::Apply { file } => apply::apply(&file, &cli.connection)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Login => cli::login(&cli.connection).await,
            Command::Status => cli::status(&cli.connection).await,
            Command::Export => apply::export(&cli.connection)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "panda",
                    &mut std::io::stdout(),
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Server(args) => server::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Worker(args) => server::run_worker(args).await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => fail(&err),
    }
}

/// Prints an error the way every command does: one `error:` line, then at most one `hint:`.
fn fail(err: &anyhow::Error) -> ExitCode {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        message.push_str(": ");
        message.push_str(&cause.to_string());
    }
    eprintln!("error: {message}");
    if let Some(hint) = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<UserError>())
        .map(|user| &user.hint)
        .filter(|hint| !hint.is_empty())
    {
        eprintln!("hint: {hint}");
    }
    ExitCode::FAILURE
}

/// An error the user can fix, with the advice printed as the `hint:` line.
#[derive(Debug)]
struct UserError {
    message: String,
    hint: String,
}

impl UserError {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// An error with nothing more to say than its message.
    fn plain(message: impl Into<String>) -> Self {
        Self::new(message, "")
    }
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}
