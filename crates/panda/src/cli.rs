//! The client commands: `panda cronjob …`, `panda job …`, `panda execution …`, `panda dlq …`,
//! `panda alert …`, `panda token …`.
//! Each is a thin call of the API through `panda-client`; none opens the database.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use futures::StreamExt;
use panda_client::{Client, ClientError, LogEvent};
use panda_core::api::{LogLine, TriggerRequest};
use panda_core::{
    CatchUp, ConcurrencyPolicy, CronSchedule, Execution, ExecutionId, Job, JobName, JobSpec,
    RetryPolicy, RuntimeSpec, Schedule,
};

use crate::UserError;
use crate::output::{self, Format};

/// Where the server is and who is asking: the flags every client command takes.
#[derive(Debug, Args)]
pub(crate) struct Connection {
    /// The Panda server's URL [default: the one `panda login` saved, or http://127.0.0.1:7070]
    #[arg(long, global = true, env = "PANDA_URL")]
    server: Option<String>,
    /// An API token [default: the one `panda login` saved, or a local server's admin token]
    #[arg(long, global = true, env = "PANDA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How to print results
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
}

impl Connection {
    /// The server and the token: flags and environment first, then what `panda login` saved,
    /// then a local server on its defaults.
    fn resolved(&self) -> (String, Option<String>) {
        let saved = Login::read();
        let server = self
            .server
            .clone()
            .or_else(|| saved.as_ref().map(|l| l.server.clone()))
            .unwrap_or_else(|| panda_client::DEFAULT_URL.to_owned());
        let token = self
            .token
            .clone()
            .or_else(|| saved.map(|l| l.token))
            .or_else(local_admin_token);
        (server, token)
    }

    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let (server, token) = self.resolved();
        Client::new(&server, token).map_err(user)
    }
}

/// What `panda login` saves: a server and a token for it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Login {
    server: String,
    token: String,
}

impl Login {
    /// `$XDG_CONFIG_HOME/panda/config.toml`.
    fn path() -> Option<PathBuf> {
        use etcetera::BaseStrategy;
        let base = etcetera::choose_base_strategy().ok()?;
        Some(base.config_dir().join("panda").join("config.toml"))
    }

    fn read() -> Option<Self> {
        let text = std::fs::read_to_string(Self::path()?).ok()?;
        toml::from_str(&text).ok()
    }

    fn write(&self) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path().context("find the config directory")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("write {}", path.display()))?;
        file.write_all(toml::to_string(self)?.as_bytes())?;
        Ok(path)
    }
}

/// `panda login`: checks the token against the server, then saves both for later commands.
pub(crate) async fn login(connection: &Connection) -> anyhow::Result<std::process::ExitCode> {
    let (server, token) = connection.resolved();
    let Some(token) = token else {
        return Err(UserError::new(
            "no token to log in with",
            "pass --token TOKEN (from `panda token create NAME` on the server)",
        )
        .into());
    };
    let client = Client::new(&server, Some(token.clone())).map_err(user)?;
    client.jobs("all").await.map_err(user)?;
    let path = Login {
        server: server.clone(),
        token,
    }
    .write()?;
    println!("logged in to {server}; saved in {}", path.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `panda status`: whether the server answers, and what it holds.
pub(crate) async fn status(connection: &Connection) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    let jobs = client.jobs("all").await.map_err(user)?;
    let dead = client.dead_letters(None).await.map_err(user)?;
    let cronjobs = jobs
        .iter()
        .filter(|j| j.job.spec.schedule.is_some())
        .count();
    let suspended = jobs.iter().filter(|j| j.job.spec.suspended).count();
    let next = jobs
        .iter()
        .filter_map(|j| j.next_run_at.map(|at| (at, j.job.spec.name.to_string())))
        .min();
    let dead_count = match dead.next {
        Some(_) => format!("{}+", dead.executions.len()),
        None => dead.executions.len().to_string(),
    };
    match connection.output {
        Format::Json | Format::Yaml => output::structured(
            &serde_json::json!({
                "server": client.base(),
                "cronjobs": cronjobs,
                "suspended": suspended,
                "jobs": jobs.len() - cronjobs,
                "dead_letters": dead_count,
                "next_run": next.as_ref().map(|(at, name)| serde_json::json!({"job": name, "at": at})),
            }),
            connection.output,
        )?,
        Format::Table => {
            println!("Server:        {} (ready)", client.base());
            println!("Cronjobs:      {cronjobs} ({suspended} suspended)");
            println!("Jobs:          {}", jobs.len() - cronjobs);
            println!("Dead letters:  {dead_count}");
            if let Some((at, name)) = next {
                println!("Next run:      {name} {}", output::relative(at, Utc::now()));
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The admin token a local server wrote, if there is one to read.
fn local_admin_token() -> Option<String> {
    let dir = match std::env::var_os("PANDA_DATA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::store::default_data_dir().ok()?,
    };
    std::fs::read_to_string(dir.join("admin.token"))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// A client error as the one-line error and hint every command prints.
pub(crate) fn user(err: ClientError) -> anyhow::Error {
    let message = match &err {
        ClientError::Api { error, .. } => error.message.clone(),
        ClientError::Transport { message, .. } => message.clone(),
    };
    match err.hint() {
        Some(hint) => UserError::new(message, hint).into(),
        None => UserError::plain(message).into(),
    }
}

/// `panda cronjob …` and `panda job …`: the same commands, for jobs with or without a schedule.
#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Create a job
    #[command(after_help = "Examples:
  panda cronjob create --name generate-reports --image your-registry/report-job:latest \\
    --schedule \"0 5 * * *\" --env REPORT_FORMAT=pdf
  panda cronjob create --name cleanup --exec \"python3 cleanup.py --days 30\" --schedule @daily
  panda job create --name send-email --image acme/mailer:2 --max-attempts 5
  panda cronjob create --name nightly-sync --exec ./sync.sh --schedule \"0 2 * * *\" \\
    --alert-slack https://hooks.slack.com/services/T/B/X --alert-after-failures 3")]
    Create(Box<CreateArgs>),
    /// Change a job: only the flags given change
    #[command(after_help = "Examples:
  panda cronjob update generate-reports --schedule \"30 6 * * *\" --timezone Europe/Berlin
  panda cronjob update generate-reports --env REPORT_FORMAT=csv --timeout 2h")]
    Update(Box<UpdateArgs>),
    /// List jobs
    List,
    /// Show a job: its definition, next fire times and last executions
    Get {
        /// The job's name
        name: String,
    },
    /// Delete a job (its history stays)
    Delete {
        /// The job's name
        name: String,
    },
    /// Stop a cronjob's schedule from firing (its slots are recorded as skipped)
    Suspend {
        /// The cronjob's name
        name: String,
    },
    /// Let a suspended cronjob fire again
    Resume {
        /// The cronjob's name
        name: String,
    },
    /// Run a job now, as a manual execution recorded in its history
    #[command(
        alias = "enqueue",
        after_help = "Examples:
  panda cronjob trigger generate-reports
  panda cronjob trigger generate-reports --env REPORT_FORMAT=csv --force
  panda job enqueue send-email --payload '{\"to\":\"ada@example.com\"}' --idempotency-key signup-42 --wait"
    )]
    Trigger(TriggerArgs),
    /// List a job's executions, newest first
    #[command(after_help = "Examples:
  panda cronjob executions generate-reports
  panda cronjob executions generate-reports --status failed --limit 5 -o json")]
    Executions {
        /// The job's name
        name: String,
        /// Only these statuses (comma-separated: failed,dead)
        #[arg(long)]
        status: Option<String>,
        /// At most this many
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print an execution's logs; follow it while it runs
    #[command(after_help = "Examples:
  panda cronjob logs generate-reports --latest
  panda cronjob logs generate-reports --execution 0193… --timestamps
  panda cronjob logs generate-reports --latest --tail 20 --stream stderr")]
    Logs(LogsArgs),
    /// Print the next fire times of a cronjob, in its time zone and in UTC
    Next {
        /// The cronjob's name
        name: String,
        /// How many
        #[arg(short = 'n', default_value_t = 5)]
        count: usize,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The job's name: lower-case letters, digits and '-'
    #[arg(long)]
    name: String,
    /// The container image to run
    #[arg(long, conflicts_with = "exec")]
    image: Option<String>,
    /// A local command to run instead of an image (split like a shell, run without one)
    #[arg(long)]
    exec: Option<String>,
    /// When it fires: cron (5 fields, or 6 with seconds) or @daily, @hourly, …
    #[arg(long)]
    schedule: Option<String>,
    /// The schedule's IANA time zone
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// Environment, K=V (repeatable)
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Secret environment, K=V: never shown again, masked in logs (repeatable)
    #[arg(long = "secret-env", value_name = "K=V")]
    secret_env: Vec<String>,
    /// A file of K=V lines to add to the environment
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Stopped after this long
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Attempts per run [default: 1 for cronjobs, 3 for jobs]
    #[arg(long)]
    max_attempts: Option<u32>,
    /// The first retry's backoff ceiling (doubles per attempt, full jitter)
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    backoff: Duration,
    /// The largest backoff
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    backoff_max: Duration,
    /// forbid, allow or replace [default: forbid; allow with --max-running]
    #[arg(long)]
    concurrency: Option<String>,
    /// At most N executions at once, across every node; the rest wait (implies --concurrency
    /// allow)
    #[arg(long, value_name = "N")]
    max_running: Option<u32>,
    /// What to do with missed slots: latest, none or all
    #[arg(long, default_value = "latest")]
    catch_up: String,
    /// A missed slot later than this is skipped
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    starting_deadline: Duration,
    /// The queue its executions wait in
    #[arg(long, default_value = "default")]
    queue: String,
    /// Higher runs first
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Memory limit for containers (512m, 2g)
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit for containers (1.5)
    #[arg(long)]
    cpus: Option<f64>,
    /// The working directory
    #[arg(long)]
    workdir: Option<String>,
    /// A label, K=V (repeatable)
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Finished executions kept [default: the server's --keep]
    #[arg(long)]
    keep: Option<u32>,
    /// Finished executions older than this are deleted with their logs (30d)
    /// [default: the server's --max-age]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    max_age: Option<Duration>,
    /// Create it suspended
    #[arg(long)]
    suspended: bool,
    #[command(flatten)]
    alerts: AlertFlags,
    /// The image's command, replaced (after --)
    #[arg(last = true)]
    command: Vec<String>,
}

/// `--max-running` of `update`: a limit, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaxRunning {
    Limit(u32),
    None,
}

fn parse_max_running(text: &str) -> Result<MaxRunning, String> {
    if text == "none" {
        return Ok(MaxRunning::None);
    }
    text.parse()
        .map(MaxRunning::Limit)
        .map_err(|_| format!("{text:?} is not a number of executions (such as 4) or none"))
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The job's name
    name: String,
    /// A new image (a job that ran a local command runs this image instead)
    #[arg(long, conflicts_with = "exec")]
    image: Option<String>,
    /// A new local command
    #[arg(long)]
    exec: Option<String>,
    /// A new schedule
    #[arg(long)]
    schedule: Option<String>,
    /// A new time zone for the schedule
    #[arg(long)]
    timezone: Option<String>,
    /// Sets an environment variable, K=V (repeatable); the others stay
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Removes an environment variable (repeatable)
    #[arg(long = "unset-env", value_name = "K")]
    unset_env: Vec<String>,
    /// Sets a secret environment variable, K=V (repeatable)
    #[arg(long = "secret-env", value_name = "K=V")]
    secret_env: Vec<String>,
    /// A new timeout
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// New attempts per run
    #[arg(long)]
    max_attempts: Option<u32>,
    /// forbid, allow or replace
    #[arg(long)]
    concurrency: Option<String>,
    /// At most N executions at once (implies --concurrency allow), or "none" for no limit
    #[arg(long, value_name = "N|none", value_parser = parse_max_running)]
    max_running: Option<MaxRunning>,
    /// A new queue
    #[arg(long)]
    queue: Option<String>,
    /// A new priority
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Finished executions kept
    #[arg(long)]
    keep: Option<u32>,
    /// Finished executions older than this are deleted with their logs (30d)
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    max_age: Option<Duration>,
    #[command(flatten)]
    alerts: AlertFlags,
}

/// How a job is watched; on update, each flag given replaces what was set.
#[derive(Debug, Args)]
pub(crate) struct AlertFlags {
    /// Send this job's alerts to this JSON webhook instead of the server's (repeatable)
    #[arg(long = "alert-webhook", value_name = "URL")]
    alert_webhook: Vec<String>,
    /// Send this job's alerts to this Slack-compatible webhook instead of the server's
    /// (repeatable)
    #[arg(long = "alert-slack", value_name = "URL")]
    alert_slack: Vec<String>,
    /// Alert only once this many attempts in a row failed [default: 1]
    #[arg(long, value_name = "N")]
    alert_after_failures: Option<u32>,
    /// Alert when an execution runs longer than this
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    alert_running_longer_than: Option<Duration>,
    /// A cron slot that has not started this long after its time is late [default: 5m]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    alert_late_after: Option<Duration>,
}

impl AlertFlags {
    fn apply(&self, policy: &mut panda_core::AlertPolicy) {
        if !self.alert_webhook.is_empty() {
            policy.webhooks.clone_from(&self.alert_webhook);
        }
        if !self.alert_slack.is_empty() {
            policy.slack.clone_from(&self.alert_slack);
        }
        if self.alert_after_failures.is_some() {
            policy.after_failures = self.alert_after_failures;
        }
        if self.alert_running_longer_than.is_some() {
            policy.running_longer_than = self.alert_running_longer_than;
        }
        if self.alert_late_after.is_some() {
            policy.late_after = self.alert_late_after;
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct TriggerArgs {
    /// The job's name
    name: String,
    /// Environment overrides for this run, K=V (repeatable)
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// JSON for PANDA_PAYLOAD, or @FILE
    #[arg(long)]
    payload: Option<String>,
    /// A second enqueue with this key returns the first execution
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Not before this long from now
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "at")]
    delay: Option<Duration>,
    /// Not before this instant (RFC 3339)
    #[arg(long)]
    at: Option<DateTime<Utc>>,
    /// Overrides the job's priority
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Run beside a running execution whatever the concurrency policy
    #[arg(long)]
    force: bool,
    /// Backfill: the past slot this run stands for (RFC 3339)
    #[arg(long)]
    scheduled_for: Option<DateTime<Utc>>,
    /// Stream its logs and exit with its exit code, like `docker run`
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The job's name
    name: String,
    /// The newest execution (the default when no --execution is given)
    #[arg(long)]
    latest: bool,
    /// This execution
    #[arg(long)]
    execution: Option<ExecutionId>,
    /// Keep following while it runs (the default for a running execution)
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only the last N lines
    #[arg(long)]
    tail: Option<u32>,
    /// Only lines from the last duration (10m)
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Prefix each line with its time (UTC)
    #[arg(long)]
    timestamps: bool,
    /// Only stdout or stderr
    #[arg(long)]
    stream: Option<String>,
}

/// Runs a job command; `scheduled` is true for `panda cronjob`.
pub(crate) async fn run(
    command: JobCommand,
    connection: &Connection,
    scheduled: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    let format = connection.output;
    let noun = if scheduled { "cronjob" } else { "job" };
    match command {
        JobCommand::Create(args) => {
            let spec = spec_of(&args, scheduled)?;
            let job = client.job_create(&spec).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&job, format)?,
                Format::Table => {
                    println!("{noun} {} created", job.spec.name);
                    if let Some(next) = next_fire_times(&job, 1).first() {
                        println!("next run {next}");
                    }
                }
            }
        }
        JobCommand::Update(args) => {
            let mut spec = client.job(&args.name).await.map_err(user)?.spec;
            update_spec(&mut spec, &args)?;
            let job = client.job_update(&spec).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&job, format)?,
                Format::Table => println!("{noun} {} updated", job.spec.name),
            }
        }
        JobCommand::List => {
            let kind = if scheduled { "scheduled" } else { "triggered" };
            let jobs = client.jobs(kind).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&jobs, format)?,
                Format::Table => print_jobs(&jobs, scheduled),
            }
        }
        JobCommand::Get { name } => {
            let job = client.job(&name).await.map_err(user)?;
            let recent = client.executions(&name, "", 5, None).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&job, format)?,
                Format::Table => describe(&job, &recent.executions),
            }
        }
        JobCommand::Delete { name } => {
            client.job_delete(&name).await.map_err(user)?;
            println!("{noun} {name} deleted (its history stays)");
        }
        JobCommand::Suspend { name } => {
            client.job_suspend(&name, true).await.map_err(user)?;
            println!("{noun} {name} suspended");
        }
        JobCommand::Resume { name } => {
            client.job_suspend(&name, false).await.map_err(user)?;
            println!("{noun} {name} resumed");
        }
        JobCommand::Trigger(args) => return trigger(&client, args, format, scheduled).await,
        JobCommand::Executions {
            name,
            status,
            limit,
        } => {
            let page = client
                .executions(&name, status.as_deref().unwrap_or(""), limit, None)
                .await
                .map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&page.executions, format)?,
                Format::Table if page.executions.is_empty() => {
                    eprintln!("no executions of {name} yet");
                }
                Format::Table => {
                    println!(
                        "{}",
                        output::render(&output::executions_table(&page.executions, Utc::now()))
                    );
                }
            }
        }
        JobCommand::Logs(args) => return logs(&client, &args).await,
        JobCommand::Next { name, count } => {
            let job = client.job(&name).await.map_err(user)?;
            let times = next_fire_times(&job, count);
            if times.is_empty() {
                return Err(UserError::plain(format!("{noun} {name} has no schedule")).into());
            }
            match format {
                Format::Json | Format::Yaml => output::structured(&times, format)?,
                Format::Table => {
                    for line in times {
                        println!("{line}");
                    }
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The job definition the create flags describe.
fn spec_of(args: &CreateArgs, scheduled: bool) -> anyhow::Result<JobSpec> {
    let name = JobName::new(&args.name).map_err(|err| {
        UserError::new(
            err.to_string(),
            "a name is 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
        )
    })?;
    let runtime = match (&args.image, &args.exec) {
        (Some(image), None) => RuntimeSpec::Image {
            image: image.clone(),
            command: (!args.command.is_empty()).then(|| args.command.clone()),
        },
        (None, Some(exec)) => {
            let mut argv = shell_words::split(exec).map_err(|err| {
                UserError::new(
                    format!("--exec {exec:?} cannot be split into words: {err}"),
                    "quote arguments as a shell would; no shell runs it",
                )
            })?;
            argv.extend(args.command.iter().cloned());
            RuntimeSpec::Process { argv }
        }
        _ => {
            return Err(UserError::new(
                "say what to run: --image IMAGE or --exec \"COMMAND\"",
                "--image runs a container, --exec a local process",
            )
            .into());
        }
    };
    let mut spec = JobSpec::new(name, runtime);
    spec.env = pairs("--env", &args.env)?;
    if let Some(file) = &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("read --env-file {}", file.display()))?;
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        for (key, value) in pairs("--env-file", &lines)? {
            spec.env.entry(key).or_insert(value);
        }
    }
    spec.secret_env = pairs("--secret-env", &args.secret_env)?;
    spec.labels = pairs("--label", &args.labels)?;
    spec.workdir.clone_from(&args.workdir);
    spec.timeout = args.timeout;
    let defaults = if scheduled {
        RetryPolicy::cronjob_default()
    } else {
        RetryPolicy::triggered_default()
    };
    spec.retry = RetryPolicy {
        max_attempts: args.max_attempts.unwrap_or(defaults.max_attempts),
        backoff_base: args.backoff,
        backoff_cap: args.backoff_max,
    };
    spec.queue.clone_from(&args.queue);
    spec.priority = args.priority;
    spec.concurrency = match (&args.concurrency, args.max_running) {
        (Some(policy), _) => policy
            .parse::<ConcurrencyPolicy>()
            .map_err(|err| UserError::plain(err.to_string()))?,
        (None, Some(_)) => ConcurrencyPolicy::Allow,
        (None, None) => ConcurrencyPolicy::Forbid,
    };
    spec.max_running = args.max_running;
    spec.limits.memory_bytes = args.memory.as_deref().map(memory_bytes).transpose()?;
    spec.limits.cpus = args.cpus;
    spec.keep = args.keep;
    spec.max_age = args.max_age;
    spec.suspended = args.suspended;
    args.alerts.apply(&mut spec.alerts);
    match (&args.schedule, scheduled) {
        (Some(cron), true) => {
            let catch_up = match args.catch_up.as_str() {
                "latest" => CatchUp::Latest,
                "none" => CatchUp::None,
                "all" => CatchUp::All,
                other => {
                    return Err(UserError::plain(format!(
                        "--catch-up {other:?} is not latest, none or all"
                    ))
                    .into());
                }
            };
            // Checked here too, so the error can say which flag.
            CronSchedule::parse(cron, &args.timezone).map_err(|err| {
                UserError::new(
                    format!("--schedule {cron:?}: {err}"),
                    "five fields: minute hour day-of-month month day-of-week, as in \"0 5 * * *\"; or @daily, @hourly",
                )
            })?;
            spec.schedule = Some(Schedule {
                cron: cron.clone(),
                timezone: args.timezone.clone(),
                catch_up,
                starting_deadline: args.starting_deadline,
            });
        }
        (None, true) => {
            return Err(UserError::new(
                "a cronjob needs --schedule",
                "as in --schedule \"0 5 * * *\"; a job without one is `panda job create`",
            )
            .into());
        }
        (Some(_), false) => {
            return Err(UserError::new(
                "a job has no --schedule",
                "a job with a schedule is `panda cronjob create`",
            )
            .into());
        }
        (None, false) => {}
    }
    spec.validate()
        .map_err(|err| UserError::plain(err.to_string()))?;
    Ok(spec)
}

/// Applies the update flags that were given to a definition read from the server (whose
/// secrets are placeholders, which the server keeps as they are).
fn update_spec(spec: &mut JobSpec, args: &UpdateArgs) -> anyhow::Result<()> {
    if let Some(image) = &args.image {
        let command = match &spec.runtime {
            RuntimeSpec::Image { command, .. } => command.clone(),
            RuntimeSpec::Process { .. } => None,
        };
        spec.runtime = RuntimeSpec::Image {
            image: image.clone(),
            command,
        };
    }
    if let Some(exec) = &args.exec {
        let argv = shell_words::split(exec).map_err(|err| {
            UserError::new(
                format!("--exec {exec:?} cannot be split into words: {err}"),
                "quote arguments as a shell would; no shell runs it",
            )
        })?;
        spec.runtime = RuntimeSpec::Process { argv };
    }
    if args.schedule.is_some() || args.timezone.is_some() {
        let Some(schedule) = spec.schedule.as_mut() else {
            return Err(UserError::new(
                format!("job {} has no schedule to change", spec.name),
                "a job becomes a cronjob by `panda apply` with a schedule",
            )
            .into());
        };
        if let Some(cron) = &args.schedule {
            schedule.cron.clone_from(cron);
        }
        if let Some(timezone) = &args.timezone {
            schedule.timezone.clone_from(timezone);
        }
        CronSchedule::parse(&schedule.cron, &schedule.timezone).map_err(|err| {
            UserError::new(
                format!("--schedule {:?}: {err}", schedule.cron),
                "five fields: minute hour day-of-month month day-of-week, as in \"0 5 * * *\"",
            )
        })?;
    }
    spec.env.extend(pairs("--env", &args.env)?);
    for key in &args.unset_env {
        spec.env.remove(key);
    }
    spec.secret_env
        .extend(pairs("--secret-env", &args.secret_env)?);
    if let Some(timeout) = args.timeout {
        spec.timeout = timeout;
    }
    if let Some(max_attempts) = args.max_attempts {
        spec.retry.max_attempts = max_attempts;
    }
    if let Some(concurrency) = &args.concurrency {
        spec.concurrency = concurrency
            .parse()
            .map_err(|err: panda_core::ValidationError| UserError::plain(err.to_string()))?;
    }
    match args.max_running {
        Some(MaxRunning::Limit(n)) => {
            spec.max_running = Some(n);
            if args.concurrency.is_none() {
                spec.concurrency = ConcurrencyPolicy::Allow;
            }
        }
        Some(MaxRunning::None) => spec.max_running = None,
        None => {}
    }
    if let Some(queue) = &args.queue {
        spec.queue.clone_from(queue);
    }
    if let Some(priority) = args.priority {
        spec.priority = priority;
    }
    if args.keep.is_some() {
        spec.keep = args.keep;
    }
    args.alerts.apply(&mut spec.alerts);
    if args.max_age.is_some() {
        spec.max_age = args.max_age;
    }
    spec.validate()
        .map_err(|err| UserError::plain(err.to_string()))?;
    Ok(())
}

/// `K=V` flags as a map; a value without `=` is an error that names the flag.
fn pairs(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            return Err(UserError::new(
                format!("{flag} {item:?} has no '='"),
                format!("write it as {flag} KEY=VALUE"),
            )
            .into());
        };
        if key.is_empty() {
            return Err(UserError::new(
                format!("{flag} {item:?} has no name before '='"),
                format!("write it as {flag} KEY=VALUE"),
            )
            .into());
        }
        map.insert(key.to_owned(), value.to_owned());
    }
    Ok(map)
}

/// `512m`, `2g`, `1024k`, or bytes.
fn memory_bytes(text: &str) -> anyhow::Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b').trim_end_matches('i');
    let (number, unit) = match lower.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower, ""),
    };
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && factor > 0)
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| {
            UserError::new(
                format!("--memory {text:?} is not a size"),
                "write it as 512m or 2g",
            )
            .into()
        })
}

fn print_jobs(jobs: &[panda_core::api::JobView], scheduled: bool) {
    if jobs.is_empty() {
        eprintln!("no {} yet", if scheduled { "cronjobs" } else { "jobs" });
        return;
    }
    let now = Utc::now();
    let mut table = if scheduled {
        output::table(&[
            "name",
            "schedule",
            "timezone",
            "next run",
            "suspended",
            "runs",
        ])
    } else {
        output::table(&["name", "queue", "max attempts", "runs"])
    };
    for view in jobs {
        let job = &view.job;
        let runs = match &job.spec.runtime {
            RuntimeSpec::Image { image, .. } => image.clone(),
            RuntimeSpec::Process { argv } => shell_words::join(argv),
        };
        if let Some(schedule) = &job.spec.schedule {
            let next = view
                .next_run_at
                .map_or_else(|| "-".to_owned(), |at| output::relative(at, now));
            table.add_row(vec![
                job.spec.name.to_string(),
                schedule.cron.clone(),
                schedule.timezone.clone(),
                if job.spec.suspended { "-".into() } else { next },
                job.spec.suspended.to_string(),
                runs,
            ]);
        } else {
            table.add_row(vec![
                job.spec.name.to_string(),
                job.spec.queue.clone(),
                job.spec.retry.max_attempts.to_string(),
                runs,
            ]);
        }
    }
    println!("{}", output::render(&table));
}

/// `get`: the definition, the next fire times and the last executions.
fn describe(job: &Job, recent: &[Execution]) {
    let spec = &job.spec;
    println!("Name:          {}", spec.name);
    match &spec.runtime {
        RuntimeSpec::Image { image, command } => {
            println!("Image:         {image}");
            if let Some(command) = command {
                println!("Command:       {}", shell_words::join(command));
            }
        }
        RuntimeSpec::Process { argv } => println!("Exec:          {}", shell_words::join(argv)),
    }
    if let Some(schedule) = &spec.schedule {
        println!("Schedule:      {} ({})", schedule.cron, schedule.timezone);
        println!("Suspended:     {}", spec.suspended);
    }
    println!(
        "Timeout:       {}",
        humantime::format_duration(spec.timeout)
    );
    println!(
        "Retries:       {} attempts, backoff {} up to {}",
        spec.retry.max_attempts,
        humantime::format_duration(spec.retry.backoff_base),
        humantime::format_duration(spec.retry.backoff_cap)
    );
    match spec.max_running {
        Some(n) => println!(
            "Concurrency:   {}, at most {n} running",
            spec.concurrency.as_str()
        ),
        None => println!("Concurrency:   {}", spec.concurrency.as_str()),
    }
    println!("Queue:         {} (priority {})", spec.queue, spec.priority);
    let history = [
        spec.keep.map(|keep| format!("keep {keep}")),
        spec.max_age
            .map(|age| format!("max age {}", humantime::format_duration(age))),
    ];
    if history.iter().any(Option::is_some) {
        println!(
            "History:       {}",
            history.into_iter().flatten().collect::<Vec<_>>().join(", ")
        );
    }
    for (key, value) in &spec.env {
        println!("Env:           {key}={value}");
    }
    for key in spec.secret_env.keys() {
        println!("Secret env:    {key} (hidden)");
    }
    println!(
        "Alerts:        {}",
        alert_summary(&spec.alerts, spec.schedule.is_some())
    );
    let next = next_fire_times(job, 3);
    if !next.is_empty() {
        println!("Next runs:");
        for line in next {
            println!("  {line}");
        }
    }
    if recent.is_empty() {
        println!("Executions:    none yet");
    } else {
        println!("Last executions:");
        println!(
            "{}",
            output::render(&output::executions_table(recent, Utc::now()))
        );
    }
}

/// How a job is watched, in one line: `after 3 failures, runs over 30m, late after 5m; to 1
/// webhook`.
fn alert_summary(policy: &panda_core::AlertPolicy, scheduled: bool) -> String {
    let mut when = vec![match policy.threshold() {
        1 => "on failure".to_owned(),
        n => format!("after {n} failures in a row"),
    }];
    if let Some(limit) = policy.running_longer_than {
        when.push(format!("runs over {}", humantime::format_duration(limit)));
    }
    if scheduled {
        when.push(format!(
            "late after {}",
            humantime::format_duration(policy.late_after())
        ));
    }
    let to = match (policy.webhooks.len(), policy.slack.len()) {
        (0, 0) => "to the server's notifiers".to_owned(),
        (w, s) => format!("to {w} webhook(s) and {s} Slack webhook(s)"),
    };
    format!("{}; {to}", when.join(", "))
}

/// The next `count` fire times, each in the job's zone and in UTC.
fn next_fire_times(job: &Job, count: usize) -> Vec<String> {
    let Some(schedule) = &job.spec.schedule else {
        return Vec::new();
    };
    let Ok(cron) = CronSchedule::parse(&schedule.cron, &schedule.timezone) else {
        return Vec::new();
    };
    let zone: chrono_tz::Tz = schedule.timezone.parse().unwrap_or(chrono_tz::UTC);
    let mut at = Utc::now();
    let mut times = Vec::new();
    while times.len() < count {
        let Some(next) = cron.next_after(at) else {
            break;
        };
        let local = next.with_timezone(&zone);
        times.push(format!(
            "{} ({})",
            local.format("%Y-%m-%d %H:%M:%S %Z"),
            next.format("%Y-%m-%dT%H:%M:%SZ")
        ));
        at = next;
    }
    times
}

async fn trigger(
    client: &Client,
    args: TriggerArgs,
    format: Format,
    scheduled: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let payload = match &args.payload {
        None => None,
        Some(text) => {
            let json = match text.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("read the payload file {path}"))?,
                None => text.clone(),
            };
            Some(serde_json::from_str(&json).map_err(|err| {
                UserError::new(
                    format!("--payload is not JSON: {err}"),
                    "pass JSON ('{\"id\": 42}') or @FILE holding JSON",
                )
            })?)
        }
    };
    let run_at = match (args.delay, args.at) {
        (Some(delay), _) => Some(Utc::now() + chrono::Duration::from_std(delay)?),
        (None, at) => at,
    };
    let request = TriggerRequest {
        trigger: Some(if scheduled { "manual" } else { "api" }.to_owned()),
        payload,
        env: pairs("--env", &args.env)?,
        idempotency_key: args.idempotency_key.clone(),
        run_at,
        priority: args.priority,
        scheduled_for: args.scheduled_for,
        force: args.force,
    };
    let triggered = client.trigger(&args.name, &request).await.map_err(user)?;
    let execution = triggered.execution;
    if !args.wait {
        match format {
            Format::Json | Format::Yaml => output::structured(&execution, format)?,
            Format::Table => println!("{}", execution.id),
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    eprintln!(
        "execution {} {}",
        execution.id,
        output::status(execution.status)
    );
    let ended = stream_logs(client, execution.id, None, &Filter::default(), true).await?;
    Ok(exit_code_of(&ended))
}

/// The process exit code `--wait` ends with: the job's own, or 1 when it has none.
fn exit_code_of(execution: &Execution) -> std::process::ExitCode {
    match (execution.status, execution.exit_code) {
        (panda_core::Status::Succeeded, _) => std::process::ExitCode::SUCCESS,
        (_, Some(code)) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
        _ => std::process::ExitCode::FAILURE,
    }
}

/// Which lines to print.
#[derive(Debug, Default)]
struct Filter {
    stream: Option<String>,
    since: Option<DateTime<Utc>>,
    timestamps: bool,
}

impl Filter {
    fn print(&self, line: &LogLine) {
        if self.stream.as_deref().is_some_and(|s| s != line.stream) {
            return;
        }
        if self.since.is_some_and(|since| line.at < since) {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.timestamps {
            let _ = write!(out, "{} ", line.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        }
        let _ = out.write_all(line.text.as_bytes());
        if !line.text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
}

async fn logs(client: &Client, args: &LogsArgs) -> anyhow::Result<std::process::ExitCode> {
    if let Some(stream) = &args.stream
        && !matches!(stream.as_str(), "stdout" | "stderr")
    {
        return Err(
            UserError::plain(format!("--stream {stream:?} is not stdout or stderr")).into(),
        );
    }
    let execution = match args.execution {
        Some(id) => client.execution(id).await.map_err(user)?,
        None => client.latest(&args.name).await.map_err(user)?,
    };
    let filter = Filter {
        stream: args.stream.clone(),
        since: args
            .since
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| Utc::now() - d),
        timestamps: args.timestamps,
    };
    // The tail first, when asked: then follow from its end.
    let mut after = None;
    if let Some(n) = args.tail {
        let page = client
            .logs(execution.id, None, Some(n))
            .await
            .map_err(user)?;
        for line in &page.lines {
            filter.print(line);
        }
        after = page.lines.last().map(|l| l.seq);
        if page.status.is_terminal() && !args.follow {
            final_line(&client.execution(execution.id).await.map_err(user)?);
            return Ok(std::process::ExitCode::SUCCESS);
        }
    }
    let queued = execution.status == panda_core::Status::Queued;
    let ended = stream_logs(client, execution.id, after, &filter, queued).await?;
    let _ = ended;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Prints an execution's log from after `after` and follows it until it ends; then the final
/// status line. Returns the execution as it ended.
async fn stream_logs(
    client: &Client,
    id: ExecutionId,
    after: Option<u64>,
    filter: &Filter,
    queued: bool,
) -> anyhow::Result<Execution> {
    let mut events = std::pin::pin!(client.follow(id, after).await.map_err(user)?);
    // Until the job's first line: a spinner with the elapsed time, which shows the image
    // pull's progress as Panda logs it (drawn on a terminal only).
    let mut waiting = queued.then(waiting_spinner);
    while let Some(event) = events.next().await {
        match event.map_err(user)? {
            LogEvent::Line(line) => {
                if let Some(spinner) = &waiting {
                    if line.stream == "system" {
                        let text = line.text.trim_end().trim_start_matches("[panda] ");
                        match pulled_bytes(text) {
                            // The pull's bytes: the spinner becomes a bar.
                            Some((done, total)) => {
                                if spinner.length() != Some(total) {
                                    spinner.set_length(total);
                                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                                        "pulling {wide_bar} {bytes}/{total_bytes} {elapsed}",
                                    ) {
                                        spinner.set_style(style);
                                    }
                                }
                                spinner.set_position(done);
                            }
                            None => spinner.set_message(text.to_owned()),
                        }
                    } else {
                        spinner.finish_and_clear();
                        waiting = None;
                    }
                }
                spinner_suspended(waiting.as_ref(), || filter.print(&line));
            }
            LogEvent::End(execution) => {
                if let Some(spinner) = waiting.take() {
                    spinner.finish_and_clear();
                }
                final_line(&execution);
                return Ok(*execution);
            }
        }
    }
    Err(UserError::new(
        "the log stream ended before the execution did",
        "the server may be restarting; run the command again to pick up where it left",
    )
    .into())
}

/// The bytes an image pull line tells (`pull: downloading 12.3 of 45.6 MB (3 layers)`):
/// (done, total).
fn pulled_bytes(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix("pull: downloading ")?;
    let (done, rest) = rest.split_once(" of ")?;
    let (total, _) = rest.split_once(" MB")?;
    let bytes = |mb: &str| {
        mb.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| (v * 1_000_000.0) as u64)
    };
    Some((bytes(done)?, bytes(total)?))
}

/// A spinner on stderr with the elapsed time and the latest word from Panda.
fn waiting_spinner() -> indicatif::ProgressBar {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} waiting to start {elapsed} {msg}")
    {
        spinner.set_style(style);
    }
    spinner.set_message("");
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}

/// Runs `print` with the spinner (if any) out of the way, so lines never mix with it.
fn spinner_suspended(spinner: Option<&indicatif::ProgressBar>, print: impl FnOnce()) {
    match spinner {
        Some(spinner) => spinner.suspend(print),
        None => print(),
    }
}

/// `✓ succeeded in 1.2s (exit code 0)`, on stderr so that stdout holds the job's output only.
fn final_line(execution: &Execution) {
    let mut line = format!(
        "execution {} {}",
        execution.id,
        output::status(execution.status)
    );
    if let Some(ran) = output::ran_for(execution, Utc::now()) {
        line.push_str(&format!(" in {}", output::duration(ran)));
    }
    if let Some(code) = execution.exit_code {
        line.push_str(&format!(" (exit code {code})"));
    }
    if let Some(reason) = &execution.reason {
        line.push_str(&format!(": {reason}"));
    }
    eprintln!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_lines_give_their_bytes() {
        assert_eq!(
            pulled_bytes("pull: downloading 12.3 of 45.6 MB (3 layers)"),
            Some((12_300_000, 45_600_000))
        );
        assert_eq!(pulled_bytes("pull: Pulling fs layer"), None);
        assert_eq!(pulled_bytes("pulling image x"), None);
    }

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(memory_bytes("512m").ok(), Some(512 << 20));
        assert_eq!(memory_bytes("2G").ok(), Some(2 << 30));
        assert_eq!(memory_bytes("1024").ok(), Some(1024));
        assert_eq!(memory_bytes("1gib").ok(), Some(1 << 30));
        assert!(memory_bytes("lots").is_err());
        assert!(memory_bytes("0m").is_err());
    }

    #[test]
    fn env_pairs_need_an_equals_sign() {
        let ok = pairs("--env", &["A=1".into(), "B=x=y".into()]).expect("pairs");
        assert_eq!(ok["B"], "x=y");
        let err = pairs("--env", &["REPORT_FORMAT".into()]).expect_err("no =");
        assert!(err.to_string().contains("has no '='"), "{err}");
    }
}

/// `panda execution …`: one execution, by id.
#[derive(Debug, Subcommand)]
pub(crate) enum ExecutionCommand {
    /// Show an execution
    Get {
        /// The execution's id
        id: ExecutionId,
    },
    /// Cancel an execution: a queued one at once, a running one is stopped by its worker
    Cancel {
        /// The execution's id
        id: ExecutionId,
    },
    /// Run a dead execution again (it leaves the dead-letter queue)
    Retry {
        /// The execution's id
        id: ExecutionId,
    },
}

/// `panda dlq …`: the dead-letter queue.
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead executions not yet retried or discarded, newest first
    List {
        /// Only this job's
        #[arg(long)]
        job: Option<String>,
    },
    /// Run a dead execution again
    Retry {
        /// The execution's id
        id: ExecutionId,
    },
    /// Take a dead execution out of the queue without running it (its history stays)
    Discard {
        /// The execution's id
        id: ExecutionId,
    },
}

/// `panda alert …`: alerts and their deliveries.
#[derive(Debug, Subcommand)]
pub(crate) enum AlertCommand {
    /// List alerts, newest first, with where each went and how that went
    #[command(after_help = "Examples:
  panda alert list
  panda alert list --job generate-reports
  panda alert list -o json")]
    List {
        /// Only this job's
        #[arg(long)]
        job: Option<String>,
        /// How many
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

/// `panda token …`: API tokens.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; its secret is printed once
    #[command(after_help = "Examples:
  panda token create ci-deploy
  panda token create dashboard-viewer --read-only")]
    Create {
        /// A name for people: lower-case letters, digits and '-'
        name: String,
        /// May only read
        #[arg(long)]
        read_only: bool,
    },
    /// List tokens (never their secrets)
    List,
    /// Revoke a token; it stops working at once
    Revoke {
        /// The token's name
        name: String,
    },
}

pub(crate) async fn execution(
    command: ExecutionCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    let execution = match command {
        ExecutionCommand::Get { id } => client.execution(id).await,
        ExecutionCommand::Cancel { id } => client.cancel(id).await,
        ExecutionCommand::Retry { id } => client.dlq_retry(id).await,
    }
    .map_err(user)?;
    show_execution(&execution, connection.output)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn show_execution(execution: &Execution, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Yaml => output::structured(execution, format),
        Format::Table => {
            println!(
                "{}",
                output::render(&output::executions_table(
                    std::slice::from_ref(execution),
                    Utc::now()
                ))
            );
            Ok(())
        }
    }
}

pub(crate) async fn dlq(
    command: DlqCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    match command {
        DlqCommand::List { job } => {
            let page = client.dead_letters(job.as_deref()).await.map_err(user)?;
            match connection.output {
                Format::Json | Format::Yaml => {
                    output::structured(&page.executions, connection.output)?
                }
                Format::Table if page.executions.is_empty() => {
                    eprintln!("the dead-letter queue is empty");
                }
                Format::Table => println!(
                    "{}",
                    output::render(&output::executions_table(&page.executions, Utc::now()))
                ),
            }
        }
        DlqCommand::Retry { id } => {
            let retry = client.dlq_retry(id).await.map_err(user)?;
            show_execution(&retry, connection.output)?;
        }
        DlqCommand::Discard { id } => {
            client.dlq_discard(id).await.map_err(user)?;
            println!("execution {id} discarded from the dead-letter queue");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub(crate) async fn alert(
    command: AlertCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    let AlertCommand::List { job, limit } = command;
    let list = client.alerts(job.as_deref(), limit).await.map_err(user)?;
    match connection.output {
        Format::Json | Format::Yaml => output::structured(&list.alerts, connection.output)?,
        Format::Table if list.alerts.is_empty() => eprintln!("no alerts"),
        Format::Table => println!(
            "{}",
            output::render(&output::alerts_table(&list.alerts, Utc::now()))
        ),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub(crate) async fn token(
    command: TokenCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    match command {
        TokenCommand::Create { name, read_only } => {
            let scope = if read_only { "read_only" } else { "admin" };
            let created = client.token_create(&name, scope).await.map_err(user)?;
            match connection.output {
                Format::Json | Format::Yaml => output::structured(&created, connection.output)?,
                Format::Table => {
                    println!("{}", created["secret"].as_str().unwrap_or_default());
                    eprintln!("token {name} ({scope}) created; its secret is shown only now");
                }
            }
        }
        TokenCommand::List => {
            let tokens = client.tokens().await.map_err(user)?;
            match connection.output {
                Format::Json | Format::Yaml => output::structured(&tokens, connection.output)?,
                Format::Table => {
                    let mut table = output::table(&["name", "scope", "created", "last used"]);
                    let now = Utc::now();
                    let when = |value: &serde_json::Value| {
                        value
                            .as_str()
                            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                            .map_or_else(|| "-".to_owned(), |at| output::relative(at, now))
                    };
                    for token in &tokens {
                        table.add_row(vec![
                            token["name"].as_str().unwrap_or_default().to_owned(),
                            token["scope"].as_str().unwrap_or_default().to_owned(),
                            when(&token["created_at"]),
                            when(&token["last_used_at"]),
                        ]);
                    }
                    println!("{}", output::render(&table));
                }
            }
        }
        TokenCommand::Revoke { name } => {
            client.token_revoke(&name).await.map_err(user)?;
            println!("token {name} revoked");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
