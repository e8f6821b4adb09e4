//! `panda monitor …`: crons that run elsewhere (a crontab, another scheduler) and report each
//! run by calling a ping URL, watched like a dead-man's switch. A monitor is a job with a
//! schedule and a grace and nothing to run; its pings are its executions (trigger `ping`).

use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};
use panda_client::Client;
use panda_core::api::{CreatedJob, JobView, PingUrlView};
use panda_core::{CronSchedule, Execution, Job, JobName, JobSpec, Schedule};

use super::connection::{Connection, user};
use super::jobs::{alert_summary, next_fire_times};
use super::logs::{LogsArgs, logs};
use super::spec::AlertFlags;
use crate::UserError;
use crate::output::{self, Format};

/// `panda monitor …`.
#[derive(Debug, Subcommand)]
pub(crate) enum MonitorCommand {
    /// Create a monitor: prints its ping URL, once
    #[command(after_help = "Examples:
  panda monitor create --name nightly-backup --schedule \"0 3 * * *\" --grace 30m
  panda monitor create --name invoices --schedule \"*/15 * * * *\" --grace 5m \\
    --timezone Europe/Berlin --alert-slack https://hooks.slack.com/services/T/B/X

Then, in the cron it watches:
  0 3 * * * curl -fsS -m 10 -o /dev/null $URL/start; backup.sh; curl -fsS -m 10 -o /dev/null $URL/$?")]
    Create(Box<CreateMonitorArgs>),
    /// Change a monitor's schedule, time zone or grace: only the flags given change
    #[command(after_help = "Examples:
  panda monitor update nightly-backup --grace 1h
  panda monitor update nightly-backup --schedule \"30 2 * * *\" --timezone Europe/Berlin")]
    Update(UpdateMonitorArgs),
    /// List monitors: each with its schedule, grace, next ping due and last ping
    List,
    /// Show a monitor: its definition, ping URL (redacted), next pings due and last pings
    Get {
        /// The monitor's name
        name: String,
    },
    /// Delete a monitor: its URL stops working (its history stays)
    Delete {
        /// The monitor's name
        name: String,
    },
    /// Stop expecting pings (no missed alerts while suspended; pings are still recorded)
    Suspend {
        /// The monitor's name
        name: String,
    },
    /// Expect pings again
    Resume {
        /// The monitor's name
        name: String,
    },
    /// Give a monitor a new ping URL; the old one stops working at once
    #[command(after_help = "Examples:
  panda monitor rotate nightly-backup")]
    Rotate {
        /// The monitor's name
        name: String,
    },
    /// List a monitor's pings (its executions), newest first
    #[command(after_help = "Examples:
  panda monitor pings nightly-backup
  panda monitor pings nightly-backup --status failed -o json")]
    Pings {
        /// The monitor's name
        name: String,
        /// Only these statuses (comma-separated: failed,timed_out)
        #[arg(long)]
        status: Option<String>,
        /// At most this many
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print what a ping posted (the body of a ping is kept as its run's log)
    #[command(after_help = "Examples:
  panda monitor logs nightly-backup --latest")]
    Logs(LogsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateMonitorArgs {
    /// The name: lower-case letters, digits and '-'
    #[arg(long)]
    name: String,
    /// When the watched cron runs: cron (5 fields, or 6 with seconds) or @daily, @hourly, …
    #[arg(long)]
    schedule: String,
    /// The schedule's IANA time zone
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// How long after each slot its ping may come before the slot counts as missed (30m)
    #[arg(long, value_name = "DURATION")]
    grace: String,
    /// A run that pinged /start and has not pinged its end this long after is timed out
    /// [default: 1h]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// Pings (executions) kept [default: the server's --keep]
    #[arg(long)]
    keep: Option<u32>,
    /// Pings older than this are deleted (30d) [default: the server's --max-age]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    max_age: Option<Duration>,
    /// Create it suspended
    #[arg(long)]
    suspended: bool,
    #[command(flatten)]
    alerts: AlertFlags,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateMonitorArgs {
    /// The monitor's name
    name: String,
    /// A new schedule
    #[arg(long)]
    schedule: Option<String>,
    /// A new time zone for the schedule
    #[arg(long)]
    timezone: Option<String>,
    /// A new grace (30m)
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
    /// A new timeout for a run that pinged /start
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Option<Duration>,
}

/// `--grace`: a duration of at least a second.
fn grace_of(text: &str) -> anyhow::Result<Duration> {
    let grace = humantime::parse_duration(text).map_err(|err| {
        UserError::new(
            format!("--grace {text:?} is not a duration: {err}"),
            "write it as 90s, 30m or 1h: how long after each slot its ping may come",
        )
    })?;
    if grace < Duration::from_secs(1) {
        return Err(UserError::new(
            format!("--grace {text:?} is too short: a monitor needs at least 1s"),
            "give the time the watched cron takes to ping after its slot, such as 30m",
        )
        .into());
    }
    Ok(grace)
}

/// `--schedule` in `--timezone`, checked here so the error names the flag at fault.
fn schedule_of(cron: &str, timezone: &str) -> anyhow::Result<()> {
    CronSchedule::parse(cron, "UTC").map_err(|err| {
        UserError::new(
            format!("--schedule {cron:?}: {err}"),
            "five fields: minute hour day-of-month month day-of-week, as in \"0 3 * * *\"; or @daily, @hourly",
        )
    })?;
    CronSchedule::parse(cron, timezone).map_err(|err| {
        UserError::new(
            format!("--timezone {timezone:?}: {err}"),
            "the zone the watched cron runs in, as its host reads its crontab: Europe/Berlin, America/New_York, UTC",
        )
    })?;
    Ok(())
}

/// The monitor the create flags describe.
fn spec_of(args: &CreateMonitorArgs) -> anyhow::Result<JobSpec> {
    let name = JobName::new(&args.name).map_err(|err| {
        UserError::new(
            err.to_string(),
            "a name is 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
        )
    })?;
    let grace = grace_of(&args.grace)?;
    schedule_of(&args.schedule, &args.timezone)?;
    if args.alerts.late_after_given() {
        return Err(UserError::new(
            "a monitor has no --alert-late-after",
            "its --grace says how late a ping may come",
        )
        .into());
    }
    let schedule = Schedule {
        timezone: args.timezone.clone(),
        ..Schedule::new(args.schedule.clone())
    };
    let mut spec = JobSpec::monitor(name, schedule, grace);
    if let Some(timeout) = args.timeout {
        spec.timeout = timeout;
    }
    spec.keep = args.keep;
    spec.max_age = args.max_age;
    spec.suspended = args.suspended;
    args.alerts.apply(&mut spec.alerts);
    spec.validate()
        .map_err(|err| UserError::plain(err.to_string()))?;
    Ok(spec)
}

/// A live monitor by name; a job that is not one is refused with what it is.
async fn monitor_named(client: &Client, name: &str) -> anyhow::Result<Job> {
    let job = client.job(name).await.map_err(user)?;
    if job.spec.monitor.is_none() {
        let what = if job.spec.service.is_some() {
            "service"
        } else if job.spec.schedule.is_some() {
            "cronjob"
        } else {
            "job"
        };
        return Err(UserError::new(
            format!("{name} is a {what}, not a monitor"),
            format!("see it with `panda {what} get {name}`"),
        )
        .into());
    }
    Ok(job)
}

/// The URL an answer names, under the address the CLI talks to.
fn full_url(connection: &Connection, ping: &PingUrlView) -> String {
    format!("{}{}", connection.url().trim_end_matches('/'), ping.path)
}

/// Prints a new ping URL: the one time it is shown.
fn print_new_url(connection: &Connection, ping: &PingUrlView) {
    println!("ping URL {}", full_url(connection, ping));
    eprintln!(
        "this URL is a credential, shown only now: keep it where the cron keeps secrets; \
         add /start when a run starts, and /fail or /<exit code> when it fails"
    );
}

/// Runs a monitor command.
pub(crate) async fn monitor(
    command: MonitorCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    let format = connection.output;
    match command {
        MonitorCommand::Create(args) => {
            let spec = spec_of(&args)?;
            let mut created = client.job_create_full(&spec).await.map_err(user)?;
            let Some(ping) = created.ping.as_mut() else {
                return Err(UserError::plain(
                    "the server made the monitor but sent no ping URL; it is too old for monitors",
                )
                .into());
            };
            ping.url = Some(full_url(connection, ping));
            match format {
                Format::Json | Format::Yaml => output::structured(&created, format)?,
                Format::Table => print_created(connection, &created),
            }
        }
        MonitorCommand::Update(args) => {
            let mut spec = monitor_named(&client, &args.name).await?.spec;
            if let Some(grace) = &args.grace
                && let Some(monitor) = spec.monitor.as_mut()
            {
                monitor.grace = grace_of(grace)?;
            }
            if let Some(schedule) = spec.schedule.as_mut() {
                if let Some(cron) = &args.schedule {
                    schedule.cron.clone_from(cron);
                }
                if let Some(timezone) = &args.timezone {
                    schedule.timezone.clone_from(timezone);
                }
                schedule_of(&schedule.cron, &schedule.timezone)?;
            }
            if let Some(timeout) = args.timeout {
                spec.timeout = timeout;
            }
            let job = client.job_update(&spec).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&job, format)?,
                Format::Table => println!("monitor {} updated", job.spec.name),
            }
        }
        MonitorCommand::List => {
            let monitors = client.jobs("monitor").await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&monitors, format)?,
                Format::Table => print_list(&monitors),
            }
        }
        MonitorCommand::Get { name } => {
            let job = monitor_named(&client, &name).await?;
            let url = match client.ping_url(&name).await {
                Ok(url) => Some(url),
                Err(err) if err.code() == Some("not_found") => None,
                Err(err) => return Err(user(err)),
            };
            let recent = client.executions(&name, "", 5, None).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&job, format)?,
                Format::Table => describe(&job, url.as_ref(), &recent.executions),
            }
        }
        MonitorCommand::Delete { name } => {
            monitor_named(&client, &name).await?;
            client.job_delete(&name).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(
                    &serde_json::json!({"monitor": name, "deleted": true}),
                    format,
                )?,
                Format::Table => {
                    println!("monitor {name} deleted: its URL no longer works (its history stays)");
                }
            }
        }
        MonitorCommand::Suspend { name } => suspend(&client, &name, true, format).await?,
        MonitorCommand::Resume { name } => suspend(&client, &name, false, format).await?,
        MonitorCommand::Rotate { name } => {
            monitor_named(&client, &name).await?;
            let mut ping = client.ping_url_rotate(&name).await.map_err(user)?;
            ping.url = Some(full_url(connection, &ping));
            match format {
                Format::Json | Format::Yaml => output::structured(&ping, format)?,
                Format::Table => print_new_url(connection, &ping),
            }
        }
        MonitorCommand::Pings {
            name,
            status,
            limit,
        } => {
            monitor_named(&client, &name).await?;
            let page = client
                .executions(&name, status.as_deref().unwrap_or(""), limit, None)
                .await
                .map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&page.executions, format)?,
                Format::Table if page.executions.is_empty() => {
                    eprintln!("no pings of {name} yet");
                }
                Format::Table => println!(
                    "{}",
                    output::render(&output::executions_table(&page.executions, Utc::now()))
                ),
            }
        }
        MonitorCommand::Logs(args) => return logs(&client, &args).await,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn suspend(client: &Client, name: &str, suspend: bool, format: Format) -> anyhow::Result<()> {
    monitor_named(client, name).await?;
    let job = client.job_suspend(name, suspend).await.map_err(user)?;
    match format {
        Format::Json | Format::Yaml => output::structured(&job, format)?,
        Format::Table if suspend => {
            println!("monitor {name} suspended: no missed alerts until it is resumed");
        }
        Format::Table => println!("monitor {name} resumed"),
    }
    Ok(())
}

fn print_created(connection: &Connection, created: &CreatedJob) {
    println!("monitor {} created", created.job.spec.name);
    if let Some(ping) = &created.ping {
        print_new_url(connection, ping);
    }
    if let Some(next) = next_fire_times(&created.job, 1).first() {
        println!("first ping due {next}");
    }
}

fn print_list(monitors: &[JobView]) {
    if monitors.is_empty() {
        eprintln!("no monitors yet");
        return;
    }
    let now = Utc::now();
    let mut table = output::table(&[
        "name",
        "schedule",
        "timezone",
        "grace",
        "next due",
        "suspended",
        "last ping",
        "status",
    ]);
    for view in monitors {
        let spec = &view.job.spec;
        let (Some(schedule), Some(monitor)) = (&spec.schedule, &spec.monitor) else {
            continue;
        };
        let next = match view.next_run_at {
            Some(at) if !spec.suspended => panda_core::human::relative(at, now),
            _ => "-".to_owned(),
        };
        let (last, status) = view.last_run.as_ref().map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |run| {
                (
                    panda_core::human::relative(run.created_at, now),
                    output::status(run.status),
                )
            },
        );
        table.add_row(vec![
            spec.name.to_string(),
            schedule.cron.clone(),
            schedule.timezone.clone(),
            panda_core::human::exact(monitor.grace),
            next,
            spec.suspended.to_string(),
            last,
            status,
        ]);
    }
    println!("{}", output::render(&table));
}

/// `get`: the definition, the URL (redacted), the next pings due and the last pings.
fn describe(job: &Job, url: Option<&PingUrlView>, recent: &[Execution]) {
    let spec = &job.spec;
    println!("Name:          {}", spec.name);
    if let Some(schedule) = &spec.schedule {
        println!("Schedule:      {} ({})", schedule.cron, schedule.timezone);
    }
    if let Some(monitor) = &spec.monitor {
        println!(
            "Grace:         {} (a slot with no ping by then is missed)",
            panda_core::human::exact(monitor.grace)
        );
    }
    println!(
        "Timeout:       {} (a run that pinged /start and not its end by then timed out)",
        panda_core::human::exact(spec.timeout)
    );
    println!("Suspended:     {}", spec.suspended);
    match url {
        Some(url) => println!(
            "Ping URL:      {} (made {}; a new one with `panda monitor rotate {}`)",
            url.path,
            url.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
            spec.name
        ),
        None => println!(
            "Ping URL:      none; make one with `panda monitor rotate {}`",
            spec.name
        ),
    }
    println!("Alerts:        {}", alert_summary(&spec.alerts, false));
    let next = next_fire_times(job, 3);
    if !next.is_empty() && !spec.suspended {
        println!("Next pings due:");
        for line in next {
            println!("  {line}");
        }
    }
    if recent.is_empty() {
        println!("Pings:         none yet");
    } else {
        println!("Last pings:");
        println!(
            "{}",
            output::render(&output::executions_table(recent, Utc::now()))
        );
    }
}
