//! `panda cronjob …` and `panda job …`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use panda_client::Client;
use panda_core::api::{
    BatchItem, BatchRequest, Follower, MAX_BATCH_ITEMS, TriggerRequest, WebhookView,
};
use panda_core::{Execution, Job, RuntimeSpec};

use super::connection::{Connection, user};
use super::logs::{Filter, LogsArgs, logs, stream_logs};
use super::spec::{CreateArgs, UpdateArgs, pairs, spec_of, update_spec};
use crate::UserError;
use crate::output::{self, Format};

/// `panda cronjob …` and `panda job …`: the same commands, for jobs with or without a schedule.
#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Create a job
    #[command(after_help = "Examples:
  panda cronjob create --name generate-reports --image your-registry/report-job:latest \\
    --schedule \"0 5 * * *\" --env REPORT_FORMAT=pdf
  panda cronjob create --name cleanup --exec \"python3 cleanup.py --days 30\" --schedule @daily
  panda job create --name send-email --image acme/mailer:2 --max-attempts 5
  panda job create --name send-report --exec ./send-report.sh --after generate-reports
  panda job create --name page-oncall --exec ./page.sh --after generate-reports:failed
  panda cronjob create --name nightly-sync --exec ./sync.sh --schedule \"0 2 * * *\" \\
    --alert-slack https://hooks.slack.com/services/T/B/X --alert-after-failures 3")]
    Create(Box<CreateArgs>),
    /// Change a job: only the flags given change
    #[command(after_help = "Examples:
  panda cronjob update generate-reports --schedule \"30 6 * * *\" --timezone Europe/Berlin
  panda cronjob update generate-reports --env REPORT_FORMAT=csv --timeout 2h
  panda job update send-report --after generate-reports:any")]
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
    /// Show, make, rotate or remove a job's webhook: a secret URL that enqueues it
    #[command(after_help = "Examples:
  panda job webhook deploy-site
  panda job webhook deploy-site --rotate
  panda job webhook deploy-site --rotate --secret \"$GITHUB_WEBHOOK_SECRET\"
  panda job webhook deploy-site --remove")]
    Webhook(WebhookArgs),
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
pub(crate) struct WebhookArgs {
    /// The job's name
    name: String,
    /// Make a new URL (the first, or in place of the current one, which stops working); it is
    /// shown once
    #[arg(long, conflicts_with = "remove")]
    rotate: bool,
    /// With --rotate: take only deliveries signed with this key (HMAC-SHA256, GitHub's
    /// X-Hub-Signature-256)
    #[arg(
        long,
        value_name = "KEY",
        requires = "rotate",
        conflicts_with = "unsigned"
    )]
    secret: Option<String>,
    /// With --rotate: take unsigned deliveries
    #[arg(long, requires = "rotate")]
    unsigned: bool,
    /// Remove the webhook: its URL stops working
    #[arg(long)]
    remove: bool,
}

/// The longest `--delay`: 3,650 days.
const MAX_DELAY: Duration = Duration::from_secs(3650 * 86_400);

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
    /// Enqueue one execution per line of FILE (JSON Lines: one payload per line; - for
    /// stdin), 1,000 per transaction
    #[arg(long, value_name = "FILE", conflicts_with_all = ["payload", "idempotency_key", "wait", "scheduled_for"])]
    payload_file: Option<PathBuf>,
    /// A second enqueue with this key returns the first execution
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Not before this long from now (at most 3650 days)
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
            if args.webhook {
                let secret = args.webhook_secret.as_deref();
                let hook = client
                    .webhook_rotate(spec.name.as_ref(), Some(secret))
                    .await
                    .map_err(user)?;
                print_new_webhook(connection, &hook, format)?;
            }
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
            let mut spec = client.job(&args.definition.name).await.map_err(user)?.spec;
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
                Format::Table => {
                    let followers = client.job_followers(&name).await.map_err(user)?;
                    describe(&job, &followers, &recent.executions);
                }
            }
        }
        JobCommand::Delete { name } => {
            client.job_delete(&name).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => {
                    output::structured(&serde_json::json!({"job": name, "deleted": true}), format)?
                }
                Format::Table => println!("{noun} {name} deleted (its history stays)"),
            }
        }
        JobCommand::Suspend { name } => {
            let job = client.job_suspend(&name, true).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&job, format)?,
                Format::Table => println!("{noun} {name} suspended"),
            }
        }
        JobCommand::Resume { name } => {
            let job = client.job_suspend(&name, false).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&job, format)?,
                Format::Table => println!("{noun} {name} resumed"),
            }
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
        JobCommand::Webhook(args) => webhook(&client, connection, &args, format).await?,
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
            "last run",
            "status",
            "runs",
        ])
    } else {
        output::table(&[
            "name",
            "queue",
            "max attempts",
            "last run",
            "status",
            "runs",
        ])
    };
    for view in jobs {
        let job = &view.job;
        let runs = match &job.spec.runtime {
            RuntimeSpec::Image { image, .. } => image.clone(),
            RuntimeSpec::Process { argv } => shell_words::join(argv),
            RuntimeSpec::Ping => "(a monitor: pings from elsewhere)".to_owned(),
        };
        // When the last run started (or was queued, if it has not yet), and how it went.
        let (last_run, last_status) = view.last_run.as_ref().map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |run| {
                let at = run.started_at.unwrap_or(run.created_at);
                (
                    panda_core::human::relative(at, now),
                    output::status(run.status),
                )
            },
        );
        if let Some(schedule) = &job.spec.schedule {
            let next = view
                .next_run_at
                .map_or_else(|| "-".to_owned(), |at| panda_core::human::relative(at, now));
            table.add_row(vec![
                job.spec.name.to_string(),
                schedule.cron.clone(),
                schedule.timezone.clone(),
                if job.spec.suspended { "-".into() } else { next },
                job.spec.suspended.to_string(),
                last_run,
                last_status,
                runs,
            ]);
        } else {
            table.add_row(vec![
                job.spec.name.to_string(),
                job.spec.queue.clone(),
                job.spec.retry.max_attempts.to_string(),
                last_run,
                last_status,
                runs,
            ]);
        }
    }
    println!("{}", output::render(&table));
}

/// `get`: the definition, the jobs it follows and that follow it, the next fire times and the
/// last executions.
fn describe(job: &Job, followers: &[Follower], recent: &[Execution]) {
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
        RuntimeSpec::Ping => println!(
            "Runs:          elsewhere (a monitor: see `panda monitor get {}`)",
            spec.name
        ),
    }
    if let Some(schedule) = &spec.schedule {
        println!("Schedule:      {} ({})", schedule.cron, schedule.timezone);
        if let Some(jitter) = schedule.jitter {
            println!(
                "Jitter:        {} (each slot starts {} after its time)",
                panda_core::human::exact(jitter),
                panda_core::human::exact(schedule.offset(job.id))
            );
        }
        println!("Suspended:     {}", spec.suspended);
    }
    println!("Timeout:       {}", panda_core::human::exact(spec.timeout));
    println!(
        "Retries:       {} attempts, backoff {} up to {}",
        spec.retry.max_attempts,
        panda_core::human::exact(spec.retry.backoff_base),
        panda_core::human::exact(spec.retry.backoff_cap)
    );
    println!("Concurrency:   {}", panda_core::human::concurrency(spec));
    if let Some(rate) = panda_core::human::rate_limit(spec) {
        println!("Rate limit:    {rate}");
    }
    println!("Queue:         {} (priority {})", spec.queue, spec.priority);
    let history = [
        spec.keep.map(|keep| format!("keep {keep}")),
        spec.max_age
            .map(|age| format!("max age {}", panda_core::human::exact(age))),
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
    if !spec.after.is_empty() {
        let after: Vec<String> = spec.after.iter().map(chain_link).collect();
        println!("After:         {}", after.join(", "));
    }
    if !followers.is_empty() {
        let by: Vec<String> = followers
            .iter()
            .map(|f| chain_link(&panda_core::Upstream::new(f.job.clone(), f.on)))
            .collect();
        println!("Followed by:   {}", by.join(", "));
    }
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

/// One link of a chain as `get` shows it: `generate-reports (succeeded)`.
fn chain_link(link: &panda_core::Upstream) -> String {
    format!("{} ({})", link.job, link.on)
}

/// How a job is watched, in one line: `after 3 failures, runs over 30m, late after 5m; to 1
/// webhook`.
pub(super) fn alert_summary(policy: &panda_core::AlertPolicy, scheduled: bool) -> String {
    let mut when = vec![match policy.threshold() {
        1 => "on failure".to_owned(),
        n => format!("after {n} failures in a row"),
    }];
    if let Some(limit) = policy.running_longer_than {
        when.push(format!("runs over {}", panda_core::human::exact(limit)));
    }
    if scheduled {
        when.push(format!(
            "late after {}",
            panda_core::human::exact(policy.late_after())
        ));
    }
    let to = match (policy.webhooks.len(), policy.slack.len()) {
        (0, 0) => "to the server's notifiers".to_owned(),
        (w, s) => format!("to {w} webhook(s) and {s} Slack webhook(s)"),
    };
    format!("{}; {to}", when.join(", "))
}

/// One fire time: in the job's zone and in UTC. `-o json` shows it as
/// `{"local": "2027-03-14T03:00:00-04:00", "utc": "2027-03-14T07:00:00Z", "timezone":
/// "America/New_York"}`; a table as `2027-03-14 03:00:00 EDT (2027-03-14T07:00:00Z)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(super) struct FireTime {
    /// RFC 3339 with the zone's offset at that instant.
    #[serde(serialize_with = "with_offset")]
    local: DateTime<chrono_tz::Tz>,
    /// RFC 3339 in UTC.
    #[serde(serialize_with = "in_utc")]
    utc: DateTime<Utc>,
    /// The IANA zone `local` is in.
    timezone: String,
}

impl std::fmt::Display for FireTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            self.local.format("%Y-%m-%d %H:%M:%S %Z"),
            self.utc.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// `2027-03-14T03:00:00-04:00`: the offset written out, even when it is zero.
fn with_offset<S: serde::Serializer>(
    at: &DateTime<chrono_tz::Tz>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
}

/// `2027-03-14T07:00:00Z`.
fn in_utc<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The next `count` fire times, each in the job's zone and in UTC.
pub(super) fn next_fire_times(job: &Job, count: usize) -> Vec<FireTime> {
    let Some(schedule) = &job.spec.schedule else {
        return Vec::new();
    };
    let Ok(cron) = schedule.fire_times(job.id) else {
        return Vec::new();
    };
    let zone: chrono_tz::Tz = schedule.timezone.parse().unwrap_or(chrono_tz::UTC);
    let mut at = Utc::now();
    let mut times = Vec::new();
    while times.len() < count {
        let Some(next) = cron.next_after(at) else {
            break;
        };
        times.push(FireTime {
            local: next.with_timezone(&zone),
            utc: next,
            timezone: zone.name().to_owned(),
        });
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
        (Some(delay), _) => {
            panda_core::validate_at_most("--delay", delay, MAX_DELAY)
                .map_err(|err| UserError::new(err.to_string(), "or give the instant with --at"))?;
            chrono::Duration::from_std(delay)
                .ok()
                .and_then(|delay| Utc::now().checked_add_signed(delay))
        }
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
    if let Some(file) = &args.payload_file {
        return enqueue_lines(client, &args.name, file, &request, format).await;
    }
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

/// The URL a webhook answer names, under the address the CLI talks to.
fn webhook_url(connection: &Connection, hook: &WebhookView) -> String {
    format!("{}{}", connection.url().trim_end_matches('/'), hook.path)
}

/// Prints a new webhook's URL: the one time it is shown.
fn print_new_webhook(
    connection: &Connection,
    hook: &WebhookView,
    format: Format,
) -> anyhow::Result<()> {
    let shown = WebhookView {
        url: Some(webhook_url(connection, hook)),
        ..hook.clone()
    };
    match format {
        Format::Json | Format::Yaml => output::structured(&shown, format)?,
        Format::Table => {
            println!("webhook {}", shown.url.as_deref().unwrap_or_default());
            eprintln!(
                "this URL is a credential, shown only now: store it where the sender keeps secrets{}",
                if hook.signed {
                    "; deliveries must carry X-Hub-Signature-256"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

async fn webhook(
    client: &Client,
    connection: &Connection,
    args: &WebhookArgs,
    format: Format,
) -> anyhow::Result<()> {
    if args.remove {
        client.webhook_delete(&args.name).await.map_err(user)?;
        println!("webhook of {} removed: its URL no longer works", args.name);
        return Ok(());
    }
    if args.rotate {
        let secret = match (&args.secret, args.unsigned) {
            (Some(key), _) => Some(Some(key.as_str())),
            (None, true) => Some(None),
            (None, false) => None,
        };
        let hook = client
            .webhook_rotate(&args.name, secret)
            .await
            .map_err(user)?;
        return print_new_webhook(connection, &hook, format);
    }
    let hook = client.webhook(&args.name).await.map_err(user)?;
    match format {
        Format::Json | Format::Yaml => output::structured(&hook, format)?,
        Format::Table => println!(
            "webhook {} ({}, made {})",
            webhook_url(connection, &hook),
            if hook.signed { "signed" } else { "unsigned" },
            hook.created_at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    }
    Ok(())
}

/// `--payload-file`: one enqueue per line of `file`, like `template` but for its payload, in
/// batches of [`MAX_BATCH_ITEMS`]. Fails (exit 1) when any line is refused, after the others
/// were queued.
async fn enqueue_lines(
    client: &Client,
    name: &str,
    file: &Path,
    template: &TriggerRequest,
    format: Format,
) -> anyhow::Result<std::process::ExitCode> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("read the payloads from stdin")?
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("read the payload file {}", file.display()))?
    };
    let mut items = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let payload = serde_json::from_str(line).map_err(|err| {
            UserError::new(
                format!("{} line {}: not JSON: {err}", file.display(), index + 1),
                "one JSON payload per line (JSON Lines); nothing was enqueued",
            )
        })?;
        items.push((
            index + 1,
            TriggerRequest {
                payload: Some(payload),
                ..template.clone()
            },
        ));
    }
    if items.is_empty() {
        return Err(UserError::plain(format!(
            "{} holds no payload; give one JSON payload per line",
            file.display()
        ))
        .into());
    }
    let mut answers = Vec::with_capacity(items.len());
    let (mut created, mut duplicates, mut refused) = (0, 0, 0);
    for chunk in items.chunks(MAX_BATCH_ITEMS) {
        let request = BatchRequest {
            items: chunk.iter().map(|(_, item)| item.clone()).collect(),
        };
        let response = client.trigger_batch(name, &request).await.map_err(user)?;
        created += response.created;
        duplicates += response.duplicates;
        refused += response.invalid;
        for ((line, _), item) in chunk.iter().zip(response.items) {
            if let (BatchItem::Invalid { error }, Format::Table) = (&item, format) {
                eprintln!("line {line}: {}", error.message);
            }
            answers.push(item);
        }
    }
    match format {
        Format::Json | Format::Yaml => output::structured(&answers, format)?,
        Format::Table => println!(
            "{created} queued, {duplicates} already queued (same idempotency key), {refused} refused"
        ),
    }
    Ok(if refused == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// The process exit code `--wait` ends with: the job's own, or 1 when it has none.
fn exit_code_of(execution: &Execution) -> std::process::ExitCode {
    match (execution.status, execution.exit_code) {
        (panda_core::Status::Succeeded, _) => std::process::ExitCode::SUCCESS,
        (_, Some(code)) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
        _ => std::process::ExitCode::FAILURE,
    }
}
