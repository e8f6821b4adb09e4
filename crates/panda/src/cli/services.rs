//! `panda service …`: long-running services, their instances, logs and rollouts.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use futures::StreamExt;
use panda_client::{Client, LogEvent};
use panda_core::api::LogLine;
use panda_core::{
    ExecutionId, HealthCheck, Instance, InstanceState, JobSpec, MAX_REPLICAS, Probe, RestartPolicy,
    Revision, RolloutState, RuntimeSpec, ServiceSpec, ServiceStatus, StopSignal, UpdateOrder,
};

use super::connection::{Connection, user};
use super::spec::{DefinitionArgs, DefinitionUpdateArgs, definition_of, update_definition};
use crate::UserError;
use crate::output::{self, Format};

/// `panda service …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCommand {
    /// Create a service: N instances kept running, restarted when they exit
    #[command(after_help = "Examples:
  panda service create --name event-processor --image your-registry/events:1.4 \\
    --replicas 2 --env KAFKA_BROKERS=kafka:9092 --health-cmd \"test -f /tmp/healthy\"
  panda service create --name worker --exec \"python3 worker.py\" --restart on-failure
  panda service create --name api --image acme/api:3 --health-http http://127.0.0.1:8080/healthz")]
    Create(Box<CreateArgs>),
    /// List services: desired, running and healthy instances, restarts, uptime, revision
    #[command(after_help = "Examples:
  panda service list
  panda service list -o json")]
    List,
    /// Show a service and each instance: node, state, started, restarts, last exit
    #[command(after_help = "Examples:
  panda service get event-processor
  panda service get event-processor -o yaml")]
    Get {
        /// The service's name
        name: String,
    },
    /// Print the instances' logs, interleaved and prefixed with [instance]
    #[command(after_help = "Examples:
  panda service logs event-processor -f
  panda service logs event-processor --instance 1 --tail 50 --timestamps")]
    Logs(LogsArgs),
    /// Set how many instances run (applies at once, no rollout)
    #[command(after_help = "Examples:
  panda service scale event-processor 3
  panda service scale event-processor 0")]
    Scale {
        /// The service's name
        name: String,
        /// Instances to run, 0 to 1000
        #[arg(allow_negative_numbers = true)]
        replicas: i64,
    },
    /// Change a service: only the flags given change; a change of what runs is rolled out
    #[command(after_help = "Examples:
  panda service update event-processor --image your-registry/events:1.5
  panda service update event-processor --env LOG_LEVEL=debug --max-parallel 2")]
    Update(Box<UpdateArgs>),
    /// Show the progress of a service's current (or last) rollout
    #[command(after_help = "Examples:
  panda service update event-processor --image your-registry/events:1.5
  panda service rollout event-processor")]
    Rollout {
        /// The service's name
        name: String,
    },
    /// Go back to the previous revision, rolled out like any change
    #[command(after_help = "Examples:
  panda service revisions event-processor
  panda service rollback event-processor")]
    Rollback {
        /// The service's name
        name: String,
    },
    /// Replace every instance with a fresh one, as a rollout
    #[command(after_help = "Examples:
  panda service restart event-processor
  panda service rollout event-processor")]
    Restart {
        /// The service's name
        name: String,
    },
    /// Stop every instance, keeping the service
    #[command(after_help = "Examples:
  panda service suspend event-processor
  panda service resume event-processor")]
    Suspend {
        /// The service's name
        name: String,
    },
    /// Start a suspended service's instances again
    Resume {
        /// The service's name
        name: String,
    },
    /// Delete a service: its instances stop; its history stays
    #[command(after_help = "Examples:
  panda service delete event-processor")]
    Delete {
        /// The service's name
        name: String,
    },
    /// List a service's kept revisions, newest first
    #[command(after_help = "Examples:
  panda service revisions event-processor
  panda service revisions event-processor -o json")]
    Revisions {
        /// The service's name
        name: String,
    },
}

/// The flags of a service's own part; on create, an absent flag takes its default.
#[derive(Debug, Args)]
pub(crate) struct ServiceFlags {
    /// Instances to keep running, 0 to 1000 [default: 1]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    replicas: Option<i64>,
    /// When an exited instance starts again: always or on-failure [default: always]
    #[arg(long, value_name = "POLICY")]
    restart: Option<String>,
    /// The first restart's wait ceiling; doubles per restart, full jitter [default: 1s]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    restart_delay: Option<Duration>,
    /// The longest wait before a restart [default: 5m]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    restart_delay_max: Option<Duration>,
    /// A run this long resets the backoff [default: 10m]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    healthy_after: Option<Duration>,
    /// The signal that stops an instance [default: SIGTERM]
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// After the stop signal, this long before it is killed [default: 30s]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    stop_timeout: Option<Duration>,
    /// A health check: a shell command, healthy when it exits 0
    #[arg(long, value_name = "COMMAND", conflicts_with = "health_http")]
    health_cmd: Option<String>,
    /// A health check: an HTTP GET, healthy on 2xx or 3xx
    #[arg(long, value_name = "URL")]
    health_http: Option<String>,
    /// Between two health checks [default: 10s]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    health_interval: Option<Duration>,
    /// A health check that takes longer fails [default: 5s]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    health_timeout: Option<Duration>,
    /// Failed health checks in a row that restart an instance [default: 3]
    #[arg(long, value_name = "N")]
    health_retries: Option<u32>,
    /// Failed health checks this long after a start do not count [default: 30s]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    start_period: Option<Duration>,
    /// Instances replaced at a time in a rollout [default: 1]
    #[arg(long, value_name = "N")]
    max_parallel: Option<u32>,
    /// A new instance healthy this long lets the rollout go on [default: 10s]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    min_healthy: Option<Duration>,
    /// A new instance not healthy by then reverts the rollout [default: 5m]
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    healthy_deadline: Option<Duration>,
    /// start-first or stop-first [default: start-first]
    #[arg(long, value_name = "ORDER")]
    update_order: Option<String>,
    /// Log kept of each instance's current run (64MiB, 1GiB) [default: 64MiB]
    #[arg(long, value_name = "SIZE")]
    log_keep: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    definition: DefinitionArgs,
    #[command(flatten)]
    service: ServiceFlags,
    /// Not for services: a service runs until stopped
    #[arg(long, hide = true)]
    schedule: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    definition: DefinitionUpdateArgs,
    #[command(flatten)]
    service: ServiceFlags,
    /// Not for services: a service runs until stopped
    #[arg(long, hide = true)]
    schedule: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The service's name
    name: String,
    /// Keep following, across restarts, until interrupted
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only this instance
    #[arg(long, value_name = "N")]
    instance: Option<u32>,
    /// Only the last N lines of each instance's run
    #[arg(long)]
    tail: Option<u32>,
    /// Prefix each line with its time (UTC)
    #[arg(long)]
    timestamps: bool,
    /// Only stdout or stderr
    #[arg(long)]
    stream: Option<String>,
}

/// Runs a service command.
pub(crate) async fn service(
    command: ServiceCommand,
    connection: &Connection,
) -> anyhow::Result<std::process::ExitCode> {
    let client = connection.client()?;
    let format = connection.output;
    match command {
        ServiceCommand::Create(args) => {
            no_schedule(args.schedule.as_ref())?;
            let mut spec = definition_of(&args.definition)?;
            let mut service = ServiceSpec::default();
            args.service.apply(&mut service, true)?;
            spec.service = Some(service);
            spec.retry = panda_core::JobKind::Service.default_retry();
            spec.concurrency = panda_core::JobKind::Service.default_concurrency(false);
            validate(&spec)?;
            let status = client.service_create(&spec).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&status, format)?,
                Format::Table => output::emit(&format!(
                    "service {} created: {} replica(s), revision {}",
                    status.job.spec.name, status.desired, status.revision
                )),
            }
        }
        ServiceCommand::Update(args) => {
            no_schedule(args.schedule.as_ref())?;
            let name = &args.definition.name;
            let current = client.service(name).await.map_err(user)?;
            let mut spec = current.job.spec.clone();
            update_definition(&mut spec, &args.definition)?;
            let mut service = spec.service.clone().unwrap_or_default();
            args.service.apply(&mut service, false)?;
            spec.service = Some(service);
            validate(&spec)?;
            let status = client.service_update(&spec).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&status, format)?,
                Format::Table if status.revision != current.revision => {
                    output::emit(&format!(
                        "service {name} updated: rolling out revision {} (follow it with `panda service rollout {name}`)",
                        status.revision
                    ));
                }
                Format::Table => output::emit(&format!("service {name} updated")),
            }
        }
        ServiceCommand::List => {
            let services = client.services().await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&services, format)?,
                Format::Table if services.is_empty() => eprintln!("no services yet"),
                Format::Table => output::emit(&list_table(&services, Utc::now())),
            }
        }
        ServiceCommand::Get { name } => {
            let status = client.service(&name).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&status, format)?,
                Format::Table => output::emit(&describe(&status, Utc::now())),
            }
        }
        ServiceCommand::Logs(args) => return logs(&client, &args).await,
        ServiceCommand::Scale { name, replicas } => {
            let replicas = replicas_in_range(replicas)?;
            let status = client.service_scale(&name, replicas).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&status, format)?,
                Format::Table => output::emit(&format!("service {name} scaled to {replicas}")),
            }
        }
        ServiceCommand::Rollout { name } => {
            let status = client.service(&name).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&status.rollout, format)?,
                Format::Table => output::emit(&rollout(&status, Utc::now())),
            }
        }
        ServiceCommand::Rollback { name } => {
            let status = client
                .service_action(&name, "rollback")
                .await
                .map_err(user)?;
            acted(&status, format, "rolling back")?;
        }
        ServiceCommand::Restart { name } => {
            let status = client
                .service_action(&name, "restart")
                .await
                .map_err(user)?;
            acted(&status, format, "restarting")?;
        }
        ServiceCommand::Suspend { name } => {
            let status = client
                .service_action(&name, "suspend")
                .await
                .map_err(user)?;
            acted(&status, format, "suspended")?;
        }
        ServiceCommand::Resume { name } => {
            let status = client.service_action(&name, "resume").await.map_err(user)?;
            acted(&status, format, "resumed")?;
        }
        ServiceCommand::Delete { name } => {
            client.service_delete(&name).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(
                    &serde_json::json!({"service": name, "deleted": true}),
                    format,
                )?,
                Format::Table => output::emit(&format!(
                    "service {name} deleted: its instances stop (its history stays)"
                )),
            }
        }
        ServiceCommand::Revisions { name } => {
            let status = client.service(&name).await.map_err(user)?;
            let revisions = client.service_revisions(&name).await.map_err(user)?;
            match format {
                Format::Json | Format::Yaml => output::structured(&revisions, format)?,
                Format::Table => {
                    output::emit(&revisions_table(&revisions, status.revision, Utc::now()));
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The schedule flag a service refuses.
fn no_schedule(schedule: Option<&String>) -> anyhow::Result<()> {
    match schedule {
        Some(_) => Err(UserError::new(
            "a service has no --schedule: it runs until stopped",
            "a job on a schedule is `panda cronjob create`",
        )
        .into()),
        None => Ok(()),
    }
}

/// Checks a definition before it is sent, naming the flag of what is wrong.
fn validate(spec: &JobSpec) -> anyhow::Result<()> {
    spec.validate().map_err(|err| {
        UserError::new(
            err.to_string(),
            "nothing was changed; `panda service create --help` lists the flags and their bounds",
        )
        .into()
    })
}

/// Replicas as the API takes them, or an error naming the bounds.
fn replicas_in_range(replicas: i64) -> anyhow::Result<u32> {
    u32::try_from(replicas)
        .ok()
        .filter(|n| *n <= MAX_REPLICAS)
        .ok_or_else(|| {
            UserError::new(
                format!("replicas must be from 0 to {MAX_REPLICAS}, not {replicas}"),
                "0 keeps the service with no instance running; more than 1000 is not supported",
            )
            .into()
        })
}

impl ServiceFlags {
    /// Sets what the flags give on `service`; `creating` when it is new (so health check
    /// settings need a probe with them).
    fn apply(&self, service: &mut ServiceSpec, creating: bool) -> anyhow::Result<()> {
        if let Some(replicas) = self.replicas {
            service.replicas = replicas_in_range(replicas)?;
        }
        if let Some(policy) = &self.restart {
            service.restart = policy.parse::<RestartPolicy>().map_err(|_| {
                UserError::new(
                    format!("--restart {policy:?} is not a restart policy"),
                    "use always (after every exit) or on-failure (after a failure only)",
                )
            })?;
        }
        set(&mut service.restart_delay, self.restart_delay);
        set(&mut service.restart_delay_max, self.restart_delay_max);
        set(&mut service.healthy_after, self.healthy_after);
        if let Some(signal) = &self.stop_signal {
            service.stop_signal = signal.parse::<StopSignal>().map_err(|_| {
                UserError::new(
                    format!(
                        "--stop-signal {signal:?} is not a signal a service can be stopped with"
                    ),
                    format!(
                        "use one of {}",
                        panda_core::STOP_SIGNALS.map(|(name, _)| name).join(", ")
                    ),
                )
            })?;
        }
        set(&mut service.stop_timeout, self.stop_timeout);
        let probe = match (&self.health_cmd, &self.health_http) {
            (Some(command), _) => Some(Probe::Command {
                command: command.clone(),
            }),
            (None, Some(url)) => Some(Probe::Http { url: url.clone() }),
            (None, None) => None,
        };
        if let Some(Probe::Command { command }) = &probe
            && command.trim().is_empty()
        {
            return Err(UserError::new(
                "--health-cmd is empty",
                "give a command that exits 0 when the instance is healthy, such as \"test -f /tmp/healthy\"",
            )
            .into());
        }
        let tuning = self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.start_period.is_some();
        match (probe, service.health.as_mut()) {
            (Some(probe), Some(health)) => health.probe = probe,
            (Some(probe), None) => service.health = Some(HealthCheck::new(probe)),
            (None, None) if tuning => {
                return Err(UserError::new(
                    "--health-interval, --health-timeout, --health-retries and --start-period tune a health check, and there is none",
                    if creating {
                        "add --health-cmd COMMAND or --health-http URL"
                    } else {
                        "add one with --health-cmd COMMAND or --health-http URL"
                    },
                )
                .into());
            }
            (None, _) => {}
        }
        if let Some(health) = service.health.as_mut() {
            set(&mut health.interval, self.health_interval);
            set(&mut health.timeout, self.health_timeout);
            if let Some(retries) = self.health_retries {
                health.retries = retries;
            }
            set(&mut health.start_period, self.start_period);
        }
        if let Some(n) = self.max_parallel {
            service.rollout.max_parallel = n;
        }
        set(&mut service.rollout.min_healthy, self.min_healthy);
        set(&mut service.rollout.healthy_deadline, self.healthy_deadline);
        if let Some(order) = &self.update_order {
            service.rollout.order = order.parse::<UpdateOrder>().map_err(|_| {
                UserError::new(
                    format!("--update-order {order:?} is not an update order"),
                    "use start-first (the new instance before the old stops) or stop-first",
                )
            })?;
        }
        if let Some(size) = &self.log_keep {
            service.log_keep_bytes = super::spec::size_bytes("--log-keep", size)?;
        }
        Ok(())
    }
}

fn set(target: &mut Duration, value: Option<Duration>) {
    if let Some(value) = value {
        *target = value;
    }
}

/// The line an action prints: `service x suspended`.
fn acted(status: &ServiceStatus, format: Format, what: &str) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Yaml => output::structured(status, format)?,
        Format::Table => {
            let name = &status.job.spec.name;
            match &status.rollout {
                Some(rollout) if rollout.state == RolloutState::Progressing => {
                    output::emit(&format!(
                        "service {name} {what}: revision {} → {} (follow it with `panda service rollout {name}`)",
                        rollout.from_revision, rollout.to_revision
                    ));
                }
                _ => output::emit(&format!("service {name} {what}")),
            }
        }
    }
    Ok(())
}

/// An instance state as a word with a symbol (and colour on a terminal).
fn state(state: InstanceState) -> String {
    let (symbol, word, colour) = match state {
        InstanceState::Pending => ("○", "pending", "0"),
        InstanceState::Starting => ("◐", "starting", "34"),
        InstanceState::Healthy => ("●", "healthy", "32"),
        InstanceState::Unhealthy => ("✗", "unhealthy", "31"),
        InstanceState::BackingOff => ("⏱", "backing-off", "31;1"),
        InstanceState::Completed => ("✓", "completed", "90"),
        InstanceState::Stopping => ("◌", "stopping", "33"),
    };
    output::painted(format!("{symbol} {word}"), colour)
}

/// What a service runs, in one cell.
fn runs(spec: &JobSpec) -> String {
    match &spec.runtime {
        RuntimeSpec::Image { image, .. } => image.clone(),
        RuntimeSpec::Process { argv } => shell_words::join(argv),
        RuntimeSpec::Ping => String::new(),
    }
}

/// The rollout column: `progressing 3→4`, `reverted 4→3`, `-`.
fn rollout_cell(status: &ServiceStatus) -> String {
    match &status.rollout {
        Some(rollout) => format!(
            "{} {}→{}",
            rollout.state.as_str(),
            rollout.from_revision,
            rollout.to_revision
        ),
        None => "-".to_owned(),
    }
}

fn list_table(services: &[ServiceStatus], now: DateTime<Utc>) -> String {
    let mut table = output::table(&[
        "name", "desired", "running", "healthy", "restarts", "up", "revision", "rollout",
    ]);
    for status in services {
        let desired = if status.job.spec.suspended {
            format!("{} (suspended)", status.desired)
        } else {
            status.desired.to_string()
        };
        table.add_row(vec![
            status.job.spec.name.to_string(),
            desired,
            status.running.to_string(),
            if status.healthy < status.desired {
                output::painted(status.healthy.to_string(), "31")
            } else {
                status.healthy.to_string()
            },
            status.restarts.to_string(),
            status
                .up_since
                .map_or_else(|| "-".to_owned(), |at| panda_core::human::elapsed(now - at)),
            status.revision.to_string(),
            rollout_cell(status),
        ]);
    }
    output::render(&table)
}

/// The instances table of `get` and `rollout`.
fn instances_table(instances: &[Instance], now: DateTime<Utc>) -> String {
    let mut table = output::table(&[
        "instance",
        "revision",
        "state",
        "node",
        "started",
        "restarts",
        "next start",
        "execution",
        "last exit",
    ]);
    for instance in instances {
        let when = |at: Option<DateTime<Utc>>| {
            at.map_or_else(|| "-".to_owned(), |at| panda_core::human::relative(at, now))
        };
        table.add_row(vec![
            instance.index.to_string(),
            instance.revision.to_string(),
            state(instance.state),
            instance.node.clone().unwrap_or_else(|| "-".to_owned()),
            when(instance.started_at),
            instance.restarts.to_string(),
            when(instance.next_start_at),
            instance
                .execution
                .as_ref()
                .map_or_else(|| "-".to_owned(), |e| e.id.to_string()),
            instance
                .last_exit
                .as_ref()
                .map_or_else(|| "-".to_owned(), |e| last_exit(e, now)),
        ]);
    }
    output::render(&table)
}

/// `✗ failed (exit code 1) 3m ago: reason`.
fn last_exit(execution: &panda_core::Execution, now: DateTime<Utc>) -> String {
    let mut text = output::status(execution.status);
    if let Some(code) = execution.exit_code {
        text.push_str(&format!(" (exit code {code})"));
    }
    if let Some(at) = execution.finished_at {
        text.push_str(&format!(" {}", panda_core::human::relative(at, now)));
    }
    if let Some(reason) = &execution.reason {
        text.push_str(&format!(": {reason}"));
    }
    text
}

/// `get`: the definition, the counts, the rollout and each instance.
fn describe(status: &ServiceStatus, now: DateTime<Utc>) -> String {
    let spec = &status.job.spec;
    let mut lines = vec![format!("Name:          {}", spec.name)];
    match &spec.runtime {
        RuntimeSpec::Image { image, command } => {
            lines.push(format!("Image:         {image}"));
            if let Some(command) = command {
                lines.push(format!("Command:       {}", shell_words::join(command)));
            }
        }
        RuntimeSpec::Process { argv } => {
            lines.push(format!("Exec:          {}", shell_words::join(argv)));
        }
        RuntimeSpec::Ping => {}
    }
    lines.push(format!(
        "Instances:     {} desired, {} running, {} healthy{}",
        status.desired,
        status.running,
        status.healthy,
        if spec.suspended { " (suspended)" } else { "" }
    ));
    lines.push(format!("Revision:      {}", status.revision));
    lines.push(format!(
        "Up:            {}",
        status.up_since.map_or_else(
            || "not every instance is running".to_owned(),
            |at| format!(
                "{} (since {})",
                panda_core::human::elapsed(now - at),
                at.format("%Y-%m-%dT%H:%M:%SZ")
            )
        )
    ));
    lines.push(format!("Restarts:      {}", status.restarts));
    if let Some(service) = &spec.service {
        lines.push(format!(
            "Restart:       {}, backoff {} up to {}, reset after {}",
            service.restart.as_str().replace('_', "-"),
            panda_core::human::exact(service.restart_delay),
            panda_core::human::exact(service.restart_delay_max),
            panda_core::human::exact(service.healthy_after)
        ));
        lines.push(format!(
            "Stop:          {}, killed after {}",
            service.stop_signal,
            panda_core::human::exact(service.stop_timeout)
        ));
        lines.push(format!(
            "Health:        {}",
            health(service.health.as_ref())
        ));
        lines.push(format!(
            "Rollout:       {} at a time, {}, healthy for {} within {}",
            service.rollout.max_parallel,
            service.rollout.order.as_str().replace('_', "-"),
            panda_core::human::exact(service.rollout.min_healthy),
            panda_core::human::exact(service.rollout.healthy_deadline)
        ));
    }
    lines.push(format!("Queue:         {}", spec.queue));
    for (key, value) in &spec.env {
        lines.push(format!("Env:           {key}={value}"));
    }
    for key in spec.secret_env.keys() {
        lines.push(format!("Secret env:    {key} (hidden)"));
    }
    if let Some(rollout) = &status.rollout {
        lines.push(format!("Last rollout:  {}", rollout_summary(rollout, now)));
    }
    if status.instances.is_empty() {
        lines.push("Instances:     none yet".to_owned());
    } else {
        lines.push(String::new());
        lines.push(instances_table(&status.instances, now));
    }
    lines.join("\n")
}

fn health(health: Option<&HealthCheck>) -> String {
    let Some(health) = health else {
        return "none (running is healthy)".to_owned();
    };
    let probe = match &health.probe {
        Probe::Command { command } => format!("command {command:?}"),
        Probe::Http { url } => format!("GET {url}"),
    };
    format!(
        "{probe} every {}, timeout {}, {} failures restart, start period {}",
        panda_core::human::exact(health.interval),
        panda_core::human::exact(health.timeout),
        health.retries,
        panda_core::human::exact(health.start_period)
    )
}

/// `revision 3 → 4 progressing, began 2m ago`.
fn rollout_summary(rollout: &panda_core::Rollout, now: DateTime<Utc>) -> String {
    let mut text = format!(
        "revision {} → {} {}, began {}",
        rollout.from_revision,
        rollout.to_revision,
        rollout.state.as_str(),
        panda_core::human::relative(rollout.started_at, now)
    );
    if let Some(finished) = rollout.finished_at {
        text.push_str(&format!(
            ", ended {}",
            panda_core::human::relative(finished, now)
        ));
    }
    if let Some(reason) = &rollout.reason {
        text.push_str(&format!(": {reason}"));
    }
    text
}

/// `rollout`: from and to, the state, and where each instance is.
fn rollout(status: &ServiceStatus, now: DateTime<Utc>) -> String {
    let name = &status.job.spec.name;
    let Some(rollout) = &status.rollout else {
        return format!(
            "service {name} has had no rollout: every instance runs revision {}",
            status.revision
        );
    };
    let wanted = status.desired;
    let done = status
        .instances
        .iter()
        .filter(|i| i.revision == rollout.to_revision && i.state == InstanceState::Healthy)
        .count();
    let mut lines = vec![
        format!("Service:       {name}"),
        format!(
            "Revision:      {} → {}",
            rollout.from_revision, rollout.to_revision
        ),
        format!("State:         {}", rollout.state.as_str()),
        format!(
            "Started:       {} ({})",
            panda_core::human::relative(rollout.started_at, now),
            rollout.started_at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    ];
    if let Some(finished) = rollout.finished_at {
        lines.push(format!(
            "Finished:      {} ({})",
            panda_core::human::relative(finished, now),
            finished.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    if let Some(reason) = &rollout.reason {
        lines.push(format!("Reason:        {reason}"));
    }
    lines.push(format!(
        "Progress:      {done}/{wanted} instance(s) healthy on revision {}",
        rollout.to_revision
    ));
    if !status.instances.is_empty() {
        lines.push(String::new());
        lines.push(instances_table(&status.instances, now));
    }
    lines.join("\n")
}

fn revisions_table(revisions: &[Revision], current: u32, now: DateTime<Utc>) -> String {
    let mut table = output::table(&["revision", "created", "current", "runs"]);
    for revision in revisions {
        table.add_row(vec![
            revision.revision.to_string(),
            panda_core::human::relative(revision.created_at, now),
            if revision.revision == current {
                "*".to_owned()
            } else {
                String::new()
            },
            runs(&revision.job.spec),
        ]);
    }
    output::render(&table)
}

/// Which lines to print and how.
struct Printer {
    stream: Option<String>,
    timestamps: bool,
}

impl Printer {
    /// Prints `line` with its instance's prefix; `false` once stdout's reader is gone.
    fn print(&self, instance: u32, line: &LogLine) -> bool {
        if self.stream.as_deref().is_some_and(|s| s != line.stream) {
            return true;
        }
        let mut out = std::io::stdout().lock();
        // A chunk may hold several lines: each gets the prefix.
        let mut text = String::new();
        for part in line.text.lines() {
            text.push_str(&format!("[{instance}] "));
            if self.timestamps {
                text.push_str(&format!("{} ", line.at.format("%Y-%m-%dT%H:%M:%S%.3fZ")));
            }
            text.push_str(part);
            text.push('\n');
        }
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_ok()
    }
}

/// The executions whose logs `logs` shows: each instance's live one, or its last ended one.
fn shown_runs(status: &ServiceStatus, only: Option<u32>) -> BTreeMap<u32, ExecutionId> {
    let mut runs = BTreeMap::new();
    for instance in &status.instances {
        if only.is_some_and(|n| n != instance.index) {
            continue;
        }
        let run = instance.execution.as_ref().or(instance.last_exit.as_ref());
        if let Some(run) = run {
            // Several rows of one index (old and new revision in a rollout): the live one wins.
            if instance.execution.is_some() || !runs.contains_key(&instance.index) {
                runs.insert(instance.index, run.id);
            }
        }
    }
    runs
}

async fn logs(client: &Client, args: &LogsArgs) -> anyhow::Result<std::process::ExitCode> {
    if let Some(stream) = &args.stream
        && !matches!(stream.as_str(), "stdout" | "stderr")
    {
        return Err(UserError::new(
            format!("--stream {stream:?} is not stdout or stderr"),
            "leave it out for both",
        )
        .into());
    }
    let printer = Printer {
        stream: args.stream.clone(),
        timestamps: args.timestamps,
    };
    let status = client.service(&args.name).await.map_err(user)?;
    if let Some(n) = args.instance
        && !status.instances.iter().any(|i| i.index == n)
    {
        return Err(UserError::new(
            format!("service {} has no instance {n}", args.name),
            format!(
                "its instances are 0 to {}; see them with `panda service get {}`",
                status.desired.saturating_sub(1),
                args.name
            ),
        )
        .into());
    }
    let runs = shown_runs(&status, args.instance);
    if runs.is_empty() && !args.follow {
        eprintln!("no instance of {} has started yet", args.name);
    }
    if !args.follow {
        for (instance, id) in runs {
            let mut after = None;
            let mut left = args.tail;
            loop {
                let page = client.logs(id, after, left).await.map_err(user)?;
                for line in &page.lines {
                    if !printer.print(instance, line) {
                        return Ok(std::process::ExitCode::SUCCESS);
                    }
                }
                match page.lines.last() {
                    Some(last) if left.is_none() => after = Some(last.seq),
                    _ => break,
                }
                left = None;
            }
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    follow(client, args, &printer, runs).await
}

/// Follows every shown instance's run, and each run that joins it (a restart, a scale-up, a
/// rollout's new instance beside the old), until interrupted or the service is gone.
async fn follow(
    client: &Client,
    args: &LogsArgs,
    printer: &Printer,
    runs: BTreeMap<u32, ExecutionId>,
) -> anyhow::Result<std::process::ExitCode> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u32, LogLine)>(256);
    // Every run followed so far: each is followed once, to its end.
    let mut following: BTreeSet<ExecutionId> = BTreeSet::new();
    let start = |instance: u32, id: ExecutionId, tail: Option<u32>| {
        let client = client.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut after = None;
            if let Some(n) = tail
                && let Ok(page) = client.logs(id, None, Some(n)).await
            {
                for line in page.lines {
                    after = Some(line.seq);
                    if tx.send((instance, line)).await.is_err() {
                        return;
                    }
                }
            }
            if let Ok(events) = client.follow(id, after).await {
                let mut events = std::pin::pin!(events);
                while let Some(Ok(LogEvent::Line(line))) = events.next().await {
                    if tx.send((instance, line)).await.is_err() {
                        return;
                    }
                }
            }
        })
    };
    for (instance, id) in runs {
        following.insert(id);
        start(instance, id, args.tail);
    }
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some((instance, line)) => {
                    if !printer.print(instance, &line) {
                        return Ok(std::process::ExitCode::SUCCESS);
                    }
                }
                None => break,
            },
            _ = poll.tick() => {
                let status = match client.service(&args.name).await {
                    Ok(status) => status,
                    Err(err) if err.code() == Some("not_found") => {
                        eprintln!("service {} was deleted", args.name);
                        break;
                    }
                    Err(_) => continue,
                };
                for instance in &status.instances {
                    if args.instance.is_some_and(|n| n != instance.index) {
                        continue;
                    }
                    if let Some(run) = &instance.execution
                        && following.insert(run.id)
                    {
                        start(instance.index, run.id, None);
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
