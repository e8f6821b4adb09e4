//! The job flags of `create` and `update`, and the job definition they build.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use panda_core::{
    CatchUp, ConcurrencyPolicy, CronSchedule, JobKind, JobName, JobSpec, RateLimit, RetryPolicy,
    RuntimeSpec, Schedule, Upstream,
};

use crate::UserError;

/// The definition flags every kind of job shares: a cronjob, a job and a service.
#[derive(Debug, Args)]
pub(crate) struct DefinitionArgs {
    /// The name: lower-case letters, digits and '-'
    #[arg(long)]
    name: String,
    /// The container image to run
    #[arg(long, conflicts_with = "exec")]
    image: Option<String>,
    /// A local command to run instead of an image (split like a shell, run without one)
    #[arg(long)]
    exec: Option<String>,
    /// Environment, K=V (repeatable)
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Secret environment, K=V: never shown again, masked in logs (repeatable)
    #[arg(long = "secret-env", value_name = "K=V")]
    secret_env: Vec<String>,
    /// A file of K=V lines to add to the environment
    #[arg(long)]
    env_file: Option<PathBuf>,
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

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    definition: DefinitionArgs,
    /// Give the job a secret URL (POST /hooks/<token>) that another service calls without an
    /// API token; the request body becomes the payload. The URL is shown once
    #[arg(long)]
    pub(crate) webhook: bool,
    /// With --webhook: take only deliveries signed with this key (HMAC-SHA256, GitHub's
    /// X-Hub-Signature-256 header)
    #[arg(long, value_name = "KEY", requires = "webhook")]
    pub(crate) webhook_secret: Option<String>,
    /// When it fires: cron (5 fields, or 6 with seconds) or @daily, @hourly, …
    #[arg(long)]
    schedule: Option<String>,
    /// The schedule's IANA time zone
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// Stopped after this long [default: 1h]
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Attempts per run [default: 3 for jobs, 1 for cronjobs]
    #[arg(long)]
    max_attempts: Option<u32>,
    /// The first retry's backoff ceiling (doubles per attempt, full jitter) [default: 10s]
    #[arg(long, value_parser = humantime::parse_duration)]
    backoff: Option<Duration>,
    /// The largest backoff [default: 10m]
    #[arg(long, value_parser = humantime::parse_duration)]
    backoff_max: Option<Duration>,
    /// forbid, allow or replace [default: allow for jobs; forbid for cronjobs unless
    /// --max-running]
    #[arg(long)]
    concurrency: Option<String>,
    /// At most N executions at once, across every node; the rest wait (implies --concurrency
    /// allow)
    #[arg(long, value_name = "N")]
    max_running: Option<u32>,
    /// With --max-running N, at most N per key instead of per job: payload.FIELD (a dotted
    /// path), env.NAME or idempotency_key (--concurrency-key payload.customer_id --max-running
    /// 1 runs one customer's work at a time)
    #[arg(long, value_name = "EXPR")]
    concurrency_key: Option<String>,
    /// At most STARTS starts in any WINDOW, across every node (100/1m, 5/1s); the rest wait,
    /// with the reason, and never fail
    #[arg(long, value_name = "STARTS/WINDOW")]
    rate_limit: Option<RateLimit>,
    /// With --rate-limit, count per key instead of per job: payload.FIELD (a dotted path),
    /// env.NAME or idempotency_key
    #[arg(long, value_name = "EXPR", requires = "rate_limit")]
    rate_limit_key: Option<String>,
    /// What to do with missed slots: latest, none or all
    #[arg(long, default_value = "latest")]
    catch_up: String,
    /// A missed slot later than this is skipped
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    starting_deadline: Duration,
    /// Moves every slot later by the same offset below this (5m), chosen from the job's id, so
    /// that many jobs on one schedule do not all start at once; `next` shows the moved times
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    jitter: Option<Duration>,
    /// Start this job when a run of JOB ends: succeeded (the default), failed (dead, no
    /// attempt left) or any; once per run, with the run's payload (repeatable)
    #[arg(long = "after", value_name = "JOB[:succeeded|failed|any]", value_parser = parse_upstream)]
    after: Vec<Upstream>,
}

/// `--after JOB[:succeeded|failed|any]`.
fn parse_upstream(text: &str) -> Result<Upstream, String> {
    const FORMS: &str =
        "write JOB, JOB:succeeded, JOB:failed or JOB:any, as in generate-reports:failed";
    let (name, on) = text.split_once(':').unwrap_or((text, "succeeded"));
    let on = on
        .parse()
        .map_err(|_| format!("{on:?} is not how a run ends; {FORMS}"))?;
    let job = JobName::new(name).map_err(|err| err.to_string())?;
    Ok(Upstream::new(job, on))
}

/// `--max-running` of `update`: a limit, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaxRunning {
    Limit(u32),
    None,
}

/// `--jitter` of `update`: a window, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jitter {
    Window(Duration),
    None,
}

fn parse_jitter(text: &str) -> Result<Jitter, String> {
    if text == "none" {
        return Ok(Jitter::None);
    }
    humantime::parse_duration(text)
        .map(Jitter::Window)
        .map_err(|err| format!("{text:?} is not a duration (such as 5m) or none: {err}"))
}

/// `--rate-limit` of `update`: a limit, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rate {
    Limit(RateLimit),
    None,
}

fn parse_rate_limit(text: &str) -> Result<Rate, String> {
    if text == "none" {
        return Ok(Rate::None);
    }
    text.parse().map(Rate::Limit)
}

fn parse_max_running(text: &str) -> Result<MaxRunning, String> {
    if text == "none" {
        return Ok(MaxRunning::None);
    }
    text.parse()
        .map(MaxRunning::Limit)
        .map_err(|_| format!("{text:?} is not a number of executions (such as 4) or none"))
}

/// The definition flags of `update` every kind of job shares; only the flags given change.
#[derive(Debug, Args)]
pub(crate) struct DefinitionUpdateArgs {
    /// The name
    pub(super) name: String,
    /// A new image (one that ran a local command runs this image instead)
    #[arg(long, conflicts_with = "exec")]
    image: Option<String>,
    /// A new local command
    #[arg(long)]
    exec: Option<String>,
    /// Sets an environment variable, K=V (repeatable); the others stay
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Removes an environment variable (repeatable)
    #[arg(long = "unset-env", value_name = "K")]
    unset_env: Vec<String>,
    /// Sets a secret environment variable, K=V (repeatable)
    #[arg(long = "secret-env", value_name = "K=V")]
    secret_env: Vec<String>,
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

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    pub(super) definition: DefinitionUpdateArgs,
    /// A new schedule
    #[arg(long)]
    schedule: Option<String>,
    /// A new time zone for the schedule
    #[arg(long)]
    timezone: Option<String>,
    /// A new jitter window for the schedule (5m), or "none"
    #[arg(long, value_name = "DURATION|none", value_parser = parse_jitter)]
    jitter: Option<Jitter>,
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
    /// Limit per key instead of per job (payload.FIELD, env.NAME or idempotency_key), or
    /// "none" to limit the job as a whole again
    #[arg(long, value_name = "EXPR|none")]
    concurrency_key: Option<String>,
    /// A new rate limit (100/1m), or "none"
    #[arg(long, value_name = "STARTS/WINDOW|none", value_parser = parse_rate_limit)]
    rate_limit: Option<Rate>,
    /// Count the rate limit per key (payload.FIELD, env.NAME or idempotency_key), or "none"
    /// to count the job as a whole again
    #[arg(long, value_name = "EXPR|none")]
    rate_limit_key: Option<String>,
    /// The jobs it follows, in place of the ones it did: start it when a run of JOB ends as
    /// said (succeeded by default; repeatable)
    #[arg(
        long = "after",
        value_name = "JOB[:succeeded|failed|any]",
        value_parser = parse_upstream,
        conflicts_with = "no_after"
    )]
    after: Vec<Upstream>,
    /// Follow no job any more
    #[arg(long)]
    no_after: bool,
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
    /// Whether `--alert-late-after` was given (a monitor's lateness is its grace instead).
    pub(super) fn late_after_given(&self) -> bool {
        self.alert_late_after.is_some()
    }

    pub(super) fn apply(&self, policy: &mut panda_core::AlertPolicy) {
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

/// The definition the shared create flags describe, not yet validated.
pub(super) fn definition_of(args: &DefinitionArgs) -> anyhow::Result<JobSpec> {
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
            let mut argv = split_exec(exec)?;
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
    spec.queue.clone_from(&args.queue);
    spec.priority = args.priority;
    spec.limits.memory_bytes = args.memory.as_deref().map(memory_bytes).transpose()?;
    spec.limits.cpus = args.cpus;
    spec.keep = args.keep;
    spec.max_age = args.max_age;
    spec.suspended = args.suspended;
    args.alerts.apply(&mut spec.alerts);
    Ok(spec)
}

/// `--exec`'s words, split as a shell would (no shell runs them).
fn split_exec(exec: &str) -> anyhow::Result<Vec<String>> {
    shell_words::split(exec).map_err(|err| {
        UserError::new(
            format!("--exec {exec:?} cannot be split into words: {err}"),
            "quote arguments as a shell would; no shell runs it",
        )
        .into()
    })
}

/// The job definition the create flags describe.
pub(super) fn spec_of(args: &CreateArgs, scheduled: bool) -> anyhow::Result<JobSpec> {
    let mut spec = definition_of(&args.definition)?;
    let kind = JobKind::of(scheduled, false);
    if let Some(timeout) = args.timeout {
        spec.timeout = timeout;
    }
    let defaults = kind.default_retry();
    spec.retry = RetryPolicy {
        max_attempts: args.max_attempts.unwrap_or(defaults.max_attempts),
        backoff_base: args.backoff.unwrap_or(defaults.backoff_base),
        backoff_cap: args.backoff_max.unwrap_or(defaults.backoff_cap),
    };
    spec.concurrency = match &args.concurrency {
        Some(policy) => policy
            .parse::<ConcurrencyPolicy>()
            .map_err(|err| UserError::plain(err.to_string()))?,
        None => kind.default_concurrency(args.max_running.is_some()),
    };
    spec.max_running = args.max_running;
    spec.concurrency_key.clone_from(&args.concurrency_key);
    spec.rate_limit = args.rate_limit.clone().map(|limit| RateLimit {
        key: args.rate_limit_key.clone(),
        ..limit
    });
    spec.after.clone_from(&args.after);
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
                jitter: args.jitter,
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
        (None, false) => {
            if args.jitter.is_some() {
                return Err(UserError::new(
                    "--jitter spreads a schedule's slots, and a job has none",
                    "use it with `panda cronjob create --schedule …`",
                )
                .into());
            }
        }
    }
    spec.validate()
        .map_err(|err| UserError::new(err.to_string(), err.hint().unwrap_or_default()))?;
    Ok(spec)
}

/// Applies the shared update flags that were given to a definition read from the server
/// (whose secrets are placeholders, which the server keeps as they are); not yet validated.
pub(super) fn update_definition(
    spec: &mut JobSpec,
    args: &DefinitionUpdateArgs,
) -> anyhow::Result<()> {
    if let Some(image) = &args.image {
        let command = match &spec.runtime {
            RuntimeSpec::Image { command, .. } => command.clone(),
            RuntimeSpec::Process { .. } | RuntimeSpec::Ping => None,
        };
        spec.runtime = RuntimeSpec::Image {
            image: image.clone(),
            command,
        };
    }
    if let Some(exec) = &args.exec {
        spec.runtime = RuntimeSpec::Process {
            argv: split_exec(exec)?,
        };
    }
    spec.env.extend(pairs("--env", &args.env)?);
    for key in &args.unset_env {
        spec.env.remove(key);
    }
    spec.secret_env
        .extend(pairs("--secret-env", &args.secret_env)?);
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
    Ok(())
}

/// Applies the update flags that were given to a definition read from the server (whose
/// secrets are placeholders, which the server keeps as they are).
pub(super) fn update_spec(spec: &mut JobSpec, args: &UpdateArgs) -> anyhow::Result<()> {
    update_definition(spec, &args.definition)?;
    if args.schedule.is_some() || args.timezone.is_some() || args.jitter.is_some() {
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
        match args.jitter {
            Some(Jitter::Window(window)) => schedule.jitter = Some(window),
            Some(Jitter::None) => schedule.jitter = None,
            None => {}
        }
        CronSchedule::parse(&schedule.cron, &schedule.timezone).map_err(|err| {
            UserError::new(
                format!("--schedule {:?}: {err}", schedule.cron),
                "five fields: minute hour day-of-month month day-of-week, as in \"0 5 * * *\"",
            )
        })?;
    }
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
    match args.concurrency_key.as_deref() {
        Some("none") => spec.concurrency_key = None,
        Some(expr) => spec.concurrency_key = Some(expr.to_owned()),
        None => {}
    }
    match &args.rate_limit {
        // A new rate keeps the key it was counted by, unless --rate-limit-key says otherwise.
        Some(Rate::Limit(limit)) => {
            let key = spec.rate_limit.take().and_then(|old| old.key);
            spec.rate_limit = Some(RateLimit {
                key,
                ..limit.clone()
            });
        }
        Some(Rate::None) => spec.rate_limit = None,
        None => {}
    }
    if let Some(expr) = args.rate_limit_key.as_deref() {
        let Some(limit) = spec.rate_limit.as_mut() else {
            return Err(UserError::new(
                "--rate-limit-key counts a rate limit per key, and this job has no rate limit",
                "give the limit as well, as in --rate-limit 100/1m --rate-limit-key payload.customer_id",
            )
            .into());
        };
        limit.key = (expr != "none").then(|| expr.to_owned());
    }
    if !args.after.is_empty() {
        spec.after.clone_from(&args.after);
    }
    if args.no_after {
        spec.after.clear();
    }
    spec.validate()
        .map_err(|err| UserError::new(err.to_string(), err.hint().unwrap_or_default()))?;
    Ok(())
}

/// `K=V` flags as a map; a value without `=` is an error that names the flag.
pub(super) fn pairs(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
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
pub(super) fn memory_bytes(text: &str) -> anyhow::Result<u64> {
    size_bytes("--memory", text)
}

/// A size given to `flag`: `64MiB`, `512m`, `2g`, `1024k`, or bytes.
pub(super) fn size_bytes(flag: &str, text: &str) -> anyhow::Result<u64> {
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
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && factor > 0)
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| {
            UserError::new(
                format!("{flag} {text:?} is not a size"),
                "write it as 512m, 64MiB or 2g",
            )
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
