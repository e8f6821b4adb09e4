use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::alert::AlertPolicy;
use crate::chain::Upstream;
use crate::cron::CronSchedule;
use crate::ids::JobId;
use crate::rate::RateLimit;
use crate::retry::RetryPolicy;
use crate::service::ServiceSpec;
use crate::validate::{
    ValidationError, reject_nul, reject_nul_in_json, validate_at_most, validate_name,
    validate_priority, validate_queue_name,
};

/// A job's run timeout when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

const DAY: u64 = 86_400;

/// The longest run timeout a job may have: 30 days.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * DAY);

/// The longest starting deadline a schedule may have: 7 days.
pub const MAX_STARTING_DEADLINE: Duration = Duration::from_secs(7 * DAY);

/// The most finished executions a job may keep (`keep`).
pub const MAX_KEEP: u32 = 1_000_000;

/// The longest a job's history may be kept (`max_age`): 3,650 days, about ten years.
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(3650 * DAY);

/// The largest memory limit: 1 PiB.
pub const MAX_MEMORY_BYTES: u64 = 1 << 50;

/// The largest CPU limit, in cores.
pub const MAX_CPUS: f64 = 1024.0;

/// A valid job name: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`, like a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
    min_length = 1,
    max_length = 63,
    example = "generate-reports"
)]
pub struct JobName(String);

impl JobName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, ValidationError> {
        let name = name.into();
        validate_name("job", &name)?;
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobName {
    type Error = ValidationError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl From<JobName> for String {
    fn from(name: JobName) -> Self {
        name.0
    }
}

impl FromStr for JobName {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for JobName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What to run: a container image or a local command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = Runtime)]
pub enum RuntimeSpec {
    /// A container from `image`; `command`, when set, replaces the image's own.
    Image {
        /// The image reference (`registry/name:tag` or a digest); not blank.
        #[schema(pattern = "\\S")]
        image: String,
        /// Overrides the image's command; leave it out to run the image's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(min_items = 1)]
        command: Option<Vec<String>>,
    },
    /// A local process, run directly from its argv (no shell unless the argv says `sh -c`).
    Process {
        /// Program and arguments; the program is not blank.
        #[schema(schema_with = crate::api::schema::argv)]
        argv: Vec<String>,
    },
    /// Nothing Panda runs: a monitor's runs happen elsewhere (a crontab, another scheduler)
    /// and report themselves by calling its ping URL. Only a job with a `monitor` part has it.
    Ping,
}

/// The longest grace a monitor may give a late ping: 30 days.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * DAY);

/// What makes a job a monitor: a cron Panda does not run, watched through its ping URL
/// (`/ping/<token>`, with `/start`, `/fail` and `/<exit code>`), like a dead-man's switch.
///
/// Each slot of the job's schedule expects a ping: a slot with none from a minute before it
/// (clocks differ a little) until `grace` after it raises the `missed` alert; a failed ping
/// raises `failed`; the next successful ping after either raises `recovered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    /// How long after a slot its ping may come before the slot counts as missed; from 1 s to
    /// 30 days.
    #[serde(with = "duration_ms", rename = "grace_ms")]
    #[schema(value_type = u64, minimum = 1000, maximum = 2_592_000_000_u64, example = 1_800_000)]
    pub grace: Duration,
}

impl MonitorSpec {
    /// Checks the grace.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.grace < Duration::from_secs(1) {
            return Err(field(
                "grace",
                "must be at least 1s, such as 30m: how long after each slot its ping may come",
            ));
        }
        validate_at_most("grace", self.grace, MAX_GRACE)
    }
}

/// Resource limits; `None` means the runtime's default (no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in bytes; at most 1 PiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_125_899_906_842_624_u64)]
    pub memory_bytes: Option<u64>,
    /// CPU limit in cores (1.5 = one and a half); at most 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 1024)]
    pub cpus: Option<f64>,
}

/// The highest per-job limit of running executions (`max_running`).
pub const MAX_RUNNING_LIMIT: u32 = 10_000;

/// How a job's executions may overlap, as Kubernetes CronJobs define it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyPolicy {
    /// At most one execution runs at a time. A scheduled execution that finds another running is
    /// skipped; any other execution waits in the queue.
    #[default]
    Forbid,
    /// Executions run side by side.
    Allow,
    /// A new execution cancels the running one and takes its place.
    Replace,
}

impl ConcurrencyPolicy {
    /// The word used in storage, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbid => "forbid",
            Self::Allow => "allow",
            Self::Replace => "replace",
        }
    }
}

impl FromStr for ConcurrencyPolicy {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "forbid" => Ok(Self::Forbid),
            "allow" => Ok(Self::Allow),
            "replace" => Ok(Self::Replace),
            other => Err(ValidationError::Field {
                field: "concurrency",
                message: format!("{other:?} is not a policy; use forbid, allow or replace"),
            }),
        }
    }
}

/// What a job definition makes, which decides the defaults of what it leaves out. These are
/// the defaults of the API, the CLI and `apply` files alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Run when enqueued (`panda job create`): retried, and run side by side as a task queue
    /// runs its work.
    Triggered,
    /// Run on a schedule (`panda cronjob create`): once per slot, one at a time.
    Cron,
    /// Kept running (`panda service create`): restarted by its own policy, never retried.
    Service,
}

impl JobKind {
    /// The kind of a definition with (or without) a schedule and a service part.
    pub fn of(scheduled: bool, service: bool) -> Self {
        match (scheduled, service) {
            (_, true) => Self::Service,
            (true, false) => Self::Cron,
            (false, false) => Self::Triggered,
        }
    }

    /// The retry policy of a definition that gives none.
    pub const fn default_retry(self) -> RetryPolicy {
        match self {
            Self::Triggered => RetryPolicy::triggered_default(),
            Self::Cron | Self::Service => RetryPolicy::cronjob_default(),
        }
    }

    /// The concurrency policy of a definition that gives none: `allow` for a triggered job
    /// (or any job with `max_running`, which limits `allow`), `forbid` otherwise.
    pub const fn default_concurrency(self, max_running: bool) -> ConcurrencyPolicy {
        match (self, max_running) {
            (Self::Triggered, _) | (_, true) => ConcurrencyPolicy::Allow,
            (Self::Cron | Self::Service, false) => ConcurrencyPolicy::Forbid,
        }
    }
}

/// Everything a user says about a job: the part of a [`Job`] that create and update take.
///
/// No string in it may hold a NUL character (U+0000). A field it does not have is refused, so
/// a misspelt one is not silently ignored. Only `name` and `runtime` are required: `retry` and
/// `concurrency` default by the job's [`JobKind`], the rest as each field says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(from = "JobSpecInput")]
pub struct JobSpec {
    /// The job's unique name among live jobs.
    pub name: JobName,
    /// What to run.
    pub runtime: RuntimeSpec,
    /// Environment given to every execution.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::env)]
    pub env: BTreeMap<String, String>,
    /// Environment whose values are never shown again (the API shows `********`) and are
    /// masked in logs.
    #[serde(default)]
    #[schema(schema_with = crate::api::schema::env)]
    pub secret_env: BTreeMap<String, String>,
    /// Working directory for the process or container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// How long one execution may run before it is stopped as `timed_out`; at most 30 days.
    #[serde(
        with = "duration_ms",
        rename = "timeout_ms",
        default = "default_timeout"
    )]
    #[schema(value_type = u64, minimum = 1, maximum = 2_592_000_000_u64, default = 3_600_000)]
    pub timeout: Duration,
    /// Retries and backoff. When left out: 3 attempts for a triggered job, 1 for a cronjob or
    /// a service, backoff from 10 s up to 10 min.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// The queue its executions wait in; named like a job.
    #[serde(default = "default_queue")]
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63,
        default = "default"
    )]
    pub queue: String,
    /// Higher runs first among due executions; default 0, from -1000 to 1000.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
    /// Whether executions may overlap. When left out: `allow` for a triggered job or one with
    /// `max_running`, `forbid` for a cronjob or a service.
    #[serde(default)]
    pub concurrency: ConcurrencyPolicy,
    /// With `concurrency = allow`, at most this many executions of the job run at once, across
    /// every node; the others wait in the queue. `None` is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub max_running: Option<u32>,
    /// With `max_running`, the limit holds per key instead of per job: each execution's key
    /// is read from its payload (`payload.customer_id`, a dotted path), its environment
    /// (`env.TENANT`) or its `idempotency_key`, and at most `max_running` executions of one
    /// key run at once, across every node. An execution whose key is at its limit waits
    /// without holding back other keys' work; one without the field has the empty key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "payload.customer_id",
        pattern = "^(payload(\\.[^.]+)+|env\\.[A-Za-z_][A-Za-z0-9_]*|idempotency_key)$"
    )]
    pub concurrency_key: Option<String>,
    /// At most so many starts per window, across every node, of the job or of each key (see
    /// [`RateLimit`]); executions over it wait, with the reason. The limit in force when an
    /// execution starts is the one that counts, queued executions included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Finished executions kept per job, newest first; older ones are pruned with their logs.
    /// When absent, the server's `--keep`. At most 1,000,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub keep: Option<u32>,
    /// Finished executions older than this (milliseconds) are pruned with their logs, whatever
    /// the count. When absent, the server's `--max-age` (which may be no age limit). At most
    /// 3,650 days.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_ms_opt",
        rename = "max_age_ms"
    )]
    #[schema(value_type = Option<u64>, minimum = 1000, maximum = 315_360_000_000_u64)]
    pub max_age: Option<Duration>,
    /// When set, the job is a cronjob and fires on this schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// A suspended cronjob records its slots as skipped instead of running them.
    #[serde(default)]
    pub suspended: bool,
    /// How the job is watched: where its alerts go and what raises them.
    #[serde(default, skip_serializing_if = "AlertPolicy::is_default")]
    pub alerts: AlertPolicy,
    /// When set, the job is a long-running service: `replicas` instances kept running and
    /// restarted when they exit. A service has no schedule; `timeout` and `retry` do not apply
    /// to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    /// The jobs this one follows: a run of each that ends as its entry says (`job` when it
    /// succeeds, `job:failed` when it is dead, `job:any` either) queues one execution of this
    /// job with the upstream's payload. At most 32; each a live job that is not a service, none
    /// twice, never itself, and no chain may lead back to this job. See `docs/chains.md`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = crate::api::schema::after)]
    pub after: Vec<Upstream>,
    /// When set, the job is a monitor: its schedule's runs happen elsewhere and report
    /// themselves by pinging its URL (its runtime is `ping`). See [`MonitorSpec`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorSpec>,
}

/// A job definition as it is read: [`JobSpec`] with the fields whose default depends on the
/// kind of job still unresolved.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSpecInput {
    name: JobName,
    runtime: RuntimeSpec,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    secret_env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workdir: Option<String>,
    #[serde(default)]
    limits: Limits,
    #[serde(
        with = "duration_ms",
        rename = "timeout_ms",
        default = "default_timeout"
    )]
    timeout: Duration,
    #[serde(default)]
    retry: Option<RetryInput>,
    #[serde(default = "default_queue")]
    queue: String,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    concurrency: Option<ConcurrencyPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_running: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    concurrency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_ms_opt",
        rename = "max_age_ms"
    )]
    max_age: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule: Option<Schedule>,
    #[serde(default)]
    suspended: bool,
    #[serde(default, skip_serializing_if = "AlertPolicy::is_default")]
    alerts: AlertPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<ServiceSpec>,
    #[serde(default)]
    after: Vec<Upstream>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    monitor: Option<MonitorSpec>,
}

/// A retry policy as it is read: each field left out takes the kind of job's default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryInput {
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default, with = "duration_ms_opt", rename = "backoff_base_ms")]
    backoff_base: Option<Duration>,
    #[serde(default, with = "duration_ms_opt", rename = "backoff_cap_ms")]
    backoff_cap: Option<Duration>,
}

impl RetryInput {
    fn or(self, defaults: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts),
            backoff_base: self.backoff_base.unwrap_or(defaults.backoff_base),
            backoff_cap: self.backoff_cap.unwrap_or(defaults.backoff_cap),
        }
    }
}

impl From<JobSpecInput> for JobSpec {
    fn from(input: JobSpecInput) -> Self {
        let kind = JobKind::of(input.schedule.is_some(), input.service.is_some());
        Self {
            retry: input
                .retry
                .map_or(kind.default_retry(), |retry| retry.or(kind.default_retry())),
            concurrency: input
                .concurrency
                .unwrap_or(kind.default_concurrency(input.max_running.is_some())),
            name: input.name,
            runtime: input.runtime,
            env: input.env,
            secret_env: input.secret_env,
            workdir: input.workdir,
            limits: input.limits,
            timeout: input.timeout,
            queue: input.queue,
            priority: input.priority,
            max_running: input.max_running,
            concurrency_key: input.concurrency_key,
            rate_limit: input.rate_limit,
            labels: input.labels,
            keep: input.keep,
            max_age: input.max_age,
            schedule: input.schedule,
            suspended: input.suspended,
            alerts: input.alerts,
            service: input.service,
            after: input.after,
            monitor: input.monitor,
        }
    }
}

/// Where an execution's concurrency key is read from (a job's `concurrency_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyExpr {
    /// A field of the payload, by its path: `payload.customer.id` is `["customer", "id"]`.
    Payload(Vec<String>),
    /// A variable of the execution's environment (its own over its job's).
    Env(String),
    /// The execution's idempotency key.
    IdempotencyKey,
}

/// The longest concurrency key expression, and the longest key kept: longer values are cut.
pub const MAX_KEY_BYTES: usize = 255;

impl KeyExpr {
    /// Reads `payload.a.b`, `env.NAME` or `idempotency_key`.
    ///
    /// # Errors
    ///
    /// A `concurrency_key` field error that names the three forms.
    pub fn parse(expr: &str) -> Result<Self, ValidationError> {
        Self::parse_as("concurrency_key", expr)
    }

    /// Reads a key expression given as `field` (`concurrency_key`, `rate_limit_key`).
    ///
    /// # Errors
    ///
    /// A `field` error that names the three forms.
    pub fn parse_as(field: &'static str, expr: &str) -> Result<Self, ValidationError> {
        let bad = |why: &str| ValidationError::Field {
            field,
            message: format!(
                "{expr:?} {why}; use payload.FIELD (a dotted path such as payload.customer.id), \
                 env.NAME or idempotency_key"
            ),
        };
        if expr.len() > MAX_KEY_BYTES {
            return Err(bad("is too long"));
        }
        if expr == "idempotency_key" {
            return Ok(Self::IdempotencyKey);
        }
        if let Some(name) = expr.strip_prefix("env.") {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if valid {
                Ok(Self::Env(name.to_owned()))
            } else {
                Err(bad("does not name an environment variable"))
            };
        }
        if let Some(path) = expr.strip_prefix("payload.") {
            let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
            return if parts.iter().all(|p| !p.is_empty() && !p.contains('\0')) {
                Ok(Self::Payload(parts))
            } else {
                Err(bad("has an empty part in its path"))
            };
        }
        Err(bad("is not a key"))
    }

    /// The key of an execution with this `payload`, environment (`env`, its own over its
    /// job's) and idempotency key: the field's text (a string as it is, any other JSON value
    /// as JSON), cut to [`MAX_KEY_BYTES`]; the empty key when the field is absent or null.
    pub fn key_of(
        &self,
        payload: Option<&serde_json::Value>,
        env: impl Fn(&str) -> Option<String>,
        idempotency_key: Option<&str>,
    ) -> String {
        let mut key = match self {
            Self::IdempotencyKey => idempotency_key.unwrap_or_default().to_owned(),
            Self::Env(name) => env(name).unwrap_or_default(),
            Self::Payload(path) => {
                let mut value = payload;
                for part in path {
                    value = value.and_then(|v| match v {
                        serde_json::Value::Object(map) => map.get(part),
                        serde_json::Value::Array(items) => {
                            part.parse::<usize>().ok().and_then(|i| items.get(i))
                        }
                        _ => None,
                    });
                }
                match value {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                }
            }
        };
        if key.len() > MAX_KEY_BYTES {
            let mut end = MAX_KEY_BYTES;
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            key.truncate(end);
        }
        key
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_key_expression_is_a_payload_path_an_env_name_or_the_idempotency_key() {
        assert_eq!(
            KeyExpr::parse("payload.customer.id"),
            Ok(KeyExpr::Payload(vec!["customer".into(), "id".into()]))
        );
        assert_eq!(
            KeyExpr::parse("env.TENANT"),
            Ok(KeyExpr::Env("TENANT".into()))
        );
        assert_eq!(
            KeyExpr::parse("idempotency_key"),
            Ok(KeyExpr::IdempotencyKey)
        );
        for bad in [
            "payload",
            "payload.",
            "payload.a..b",
            "env.1X",
            "env.",
            "customer",
            "",
        ] {
            let err = KeyExpr::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("payload.FIELD"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_key_is_the_fields_text_or_empty_and_at_most_255_bytes() {
        let payload = serde_json::json!({"c": {"id": 42, "name": "ada", "tags": ["x", "y"]}});
        let key = |expr: &str| {
            KeyExpr::parse(expr).expect("valid").key_of(
                Some(&payload),
                |name| (name == "TENANT").then(|| "acme".to_owned()),
                Some("order-7"),
            )
        };
        assert_eq!(key("payload.c.id"), "42");
        assert_eq!(key("payload.c.name"), "ada");
        assert_eq!(key("payload.c.tags.1"), "y");
        assert_eq!(key("payload.c.missing"), "");
        assert_eq!(key("env.TENANT"), "acme");
        assert_eq!(key("env.OTHER"), "");
        assert_eq!(key("idempotency_key"), "order-7");
        let long = serde_json::json!({"k": "é".repeat(200)});
        let cut = KeyExpr::parse("payload.k")
            .expect("valid")
            .key_of(Some(&long), |_| None, None);
        assert!(cut.len() <= MAX_KEY_BYTES && cut.chars().all(|c| c == 'é'));
    }
}

/// What to do with slots that were missed (server down, suspended, clock jump).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Run the most recent missed slot if it is within the starting deadline.
    #[default]
    Latest,
    /// Run none; record them all as skipped.
    None,
    /// Run every missed slot, up to a cap.
    All,
}

/// When a cronjob fires.
///
/// The expression is stored as written; parsing it and computing fire times belong to the
/// scheduler's cron module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// A cron expression (`0 5 * * *`, `@daily`, or six fields with seconds).
    #[schema(example = "0 5 * * *")]
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[serde(default = "default_timezone")]
    #[schema(default = "UTC", example = "Europe/Paris")]
    pub timezone: String,
    /// Missed-slot policy.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// A slot that cannot start within this long after its instant is skipped; at most 7 days.
    #[serde(
        with = "duration_ms",
        rename = "starting_deadline_ms",
        default = "default_starting_deadline"
    )]
    #[schema(value_type = u64, minimum = 1000, maximum = 604_800_000_u64, default = 600_000)]
    pub starting_deadline: Duration,
    /// Spreads the job's start over this window: every slot moves later by the same offset,
    /// chosen from the job's id (stable, so `next` shows each slot's time in advance), less
    /// than this and less than the time between two slots. Left out: none.
    #[serde(
        with = "duration_ms_opt",
        rename = "jitter_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>, minimum = 1000, maximum = 86_400_000_u64)]
    pub jitter: Option<Duration>,
}

/// The longest jitter: a day.
pub const MAX_JITTER: Duration = Duration::from_secs(86_400);

fn default_timezone() -> String {
    "UTC".to_owned()
}

fn default_starting_deadline() -> Duration {
    Duration::from_secs(600)
}

impl Schedule {
    /// A schedule in UTC with the default catch-up policy and deadline.
    pub fn new(cron: impl Into<String>) -> Self {
        Self {
            cron: cron.into(),
            timezone: default_timezone(),
            catch_up: CatchUp::default(),
            starting_deadline: default_starting_deadline(),
            jitter: None,
        }
    }

    /// How far the job `job`'s slots move later under this schedule's jitter: a whole number
    /// of seconds below the jitter (so a slot's time reads as it is), taken from the random
    /// low bits of the job's id, so it is the same on every node and for the job's whole
    /// life. Zero without jitter.
    pub fn offset(&self, job: JobId) -> Duration {
        let Some(window) = self.jitter else {
            return Duration::ZERO;
        };
        let window = window.as_secs();
        if window == 0 {
            return Duration::ZERO;
        }
        let bytes = job.as_uuid().as_u128().to_be_bytes();
        let mut low = [0_u8; 8];
        low.copy_from_slice(&bytes[8..]);
        Duration::from_secs(u64::from_be_bytes(low) % window)
    }

    /// The schedule's fire times for the job `job`: the expression read in its time zone,
    /// moved by the job's jitter offset.
    ///
    /// # Errors
    ///
    /// [`CronError`] when the expression or the time zone does not parse.
    pub fn fire_times(&self, job: JobId) -> Result<CronSchedule, crate::cron::CronError> {
        Ok(CronSchedule::parse(&self.cron, &self.timezone)?.shifted(self.offset(job)))
    }
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_queue() -> String {
    "default".to_owned()
}

impl JobSpec {
    /// A triggered job with defaults for everything but its name and what it runs.
    pub fn new(name: JobName, runtime: RuntimeSpec) -> Self {
        Self {
            name,
            runtime,
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            workdir: None,
            limits: Limits::default(),
            timeout: DEFAULT_TIMEOUT,
            retry: JobKind::Triggered.default_retry(),
            queue: default_queue(),
            priority: 0,
            concurrency: JobKind::Triggered.default_concurrency(false),
            max_running: None,
            concurrency_key: None,
            rate_limit: None,
            labels: BTreeMap::new(),
            keep: None,
            max_age: None,
            schedule: None,
            suspended: false,
            alerts: AlertPolicy::default(),
            service: None,
            after: Vec::new(),
            monitor: None,
        }
    }

    /// A monitor named `name` that expects a ping for each slot of `schedule`, within `grace`
    /// after it; everything else as a cronjob's defaults.
    pub fn monitor(name: JobName, schedule: Schedule, grace: Duration) -> Self {
        Self {
            retry: JobKind::Cron.default_retry(),
            concurrency: JobKind::Cron.default_concurrency(false),
            schedule: Some(schedule),
            monitor: Some(MonitorSpec { grace }),
            ..Self::new(name, RuntimeSpec::Ping)
        }
    }

    /// Whether the job is a monitor (its runs happen elsewhere and ping it).
    pub fn is_monitor(&self) -> bool {
        self.monitor.is_some()
    }

    /// What this definition makes: a triggered job, a cronjob or a service.
    pub fn kind(&self) -> JobKind {
        JobKind::of(self.schedule.is_some(), self.service.is_some())
    }

    /// Whether the job is a long-running service.
    pub fn is_service(&self) -> bool {
        self.service.is_some()
    }

    /// Checks every field that the type system does not already guarantee.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("job", self.name.as_str())?;
        validate_queue_name(&self.queue)?;
        self.retry.validate()?;
        match &self.runtime {
            RuntimeSpec::Image { image, command } => {
                if image.trim().is_empty() {
                    return Err(field(
                        "image",
                        "is empty; give an image such as busybox:latest",
                    ));
                }
                if command.as_ref().is_some_and(Vec::is_empty) {
                    return Err(field(
                        "command",
                        "is empty; leave it out to run the image's own",
                    ));
                }
            }
            RuntimeSpec::Process { argv } => {
                if argv.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(field("exec", "is empty; give the program to run"));
                }
            }
            RuntimeSpec::Ping => {
                if self.monitor.is_none() {
                    return Err(field(
                        "runtime",
                        "ping is a monitor's runtime: give the job a monitor part (a grace) \
                         and a schedule, or an image or a command to run",
                    ));
                }
            }
        }
        if let Some(monitor) = &self.monitor {
            if self.runtime != RuntimeSpec::Ping {
                return Err(field(
                    "runtime",
                    "a monitor runs nothing itself (its runs ping it): set the runtime to ping, \
                     or leave the monitor part out",
                ));
            }
            if self.schedule.is_none() {
                return Err(field(
                    "schedule",
                    "a monitor needs the schedule its pings are expected on, such as \
                     \"0 3 * * *\"",
                ));
            }
            if self.service.is_some() {
                return Err(field(
                    "service",
                    "a monitor is not a service; leave one of them out",
                ));
            }
            monitor.validate()?;
        }
        if self.timeout.is_zero() {
            return Err(field("timeout", "must be longer than zero, such as 30m"));
        }
        validate_at_most("timeout", self.timeout, MAX_TIMEOUT)?;
        validate_priority(self.priority)?;
        for key in self.env.keys().chain(self.secret_env.keys()) {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(ValidationError::Field {
                    field: "env",
                    message: format!("{key:?} is not a valid variable name"),
                });
            }
        }
        if let Some(cpus) = self.limits.cpus
            && !(cpus.is_finite() && cpus > 0.0)
        {
            return Err(field("cpus", "must be a positive number such as 1.5"));
        }
        if let Some(cpus) = self.limits.cpus
            && cpus > MAX_CPUS
        {
            return Err(ValidationError::Field {
                field: "cpus",
                message: format!("{cpus} is over the maximum of {MAX_CPUS}"),
            });
        }
        if let Some(memory) = self.limits.memory_bytes
            && !(1..=MAX_MEMORY_BYTES).contains(&memory)
        {
            return Err(ValidationError::Field {
                field: "memory",
                message: format!(
                    "{memory} bytes is out of range; use 1 byte to {MAX_MEMORY_BYTES} (1 PiB)"
                ),
            });
        }
        if let Some(schedule) = &self.schedule {
            let cron = CronSchedule::parse(&schedule.cron, &schedule.timezone)?;
            if let Some(jitter) = schedule.jitter {
                check_jitter(&cron, jitter)?;
            }
            if schedule.starting_deadline < Duration::from_secs(1) {
                return Err(field(
                    "starting_deadline",
                    "must be at least 1s, such as 10m: a shorter one would skip slots that are \
                     merely a moment late",
                ));
            }
            validate_at_most(
                "starting_deadline",
                schedule.starting_deadline,
                MAX_STARTING_DEADLINE,
            )?;
        }
        self.alerts.validate()?;
        crate::chain::validate_after(&self.name, &self.after)?;
        if self.service.is_some() && !self.after.is_empty() {
            return Err(ValidationError::Chain {
                message: format!(
                    "service {:?} cannot follow a job: its instances run until stopped",
                    self.name.as_str()
                ),
                hint: "leave after out of a service; a job or a cronjob can follow another".into(),
            });
        }
        if let Some(service) = &self.service {
            if self.schedule.is_some() {
                return Err(field(
                    "schedule",
                    "a service runs until stopped and has no schedule; leave the schedule out, \
                     or make a cronjob instead",
                ));
            }
            service.validate()?;
        }
        if self.keep == Some(0) {
            return Err(field("keep", "must keep at least 1 execution"));
        }
        if let Some(keep) = self.keep
            && keep > MAX_KEEP
        {
            return Err(ValidationError::Field {
                field: "keep",
                message: format!("{keep} is over the maximum of {MAX_KEEP} executions"),
            });
        }
        if let Some(limit) = self.max_running {
            if !(1..=MAX_RUNNING_LIMIT).contains(&limit) {
                return Err(ValidationError::Field {
                    field: "max_running",
                    message: format!("must be from 1 to {MAX_RUNNING_LIMIT}, not {limit}"),
                });
            }
            if self.concurrency != ConcurrencyPolicy::Allow {
                return Err(ValidationError::Field {
                    field: "max_running",
                    message: format!(
                        "applies to concurrency allow only (this job's is {}, which runs one \
                         at a time already); set concurrency to allow as well",
                        self.concurrency.as_str()
                    ),
                });
            }
        }
        if let Some(expr) = &self.concurrency_key {
            KeyExpr::parse(expr)?;
            if self.max_running.is_none() {
                return Err(field(
                    "concurrency_key",
                    "needs max_running, the most executions of one key that run at once \
                     (--max-running 1 runs one at a time per key)",
                ));
            }
        }
        if let Some(rate) = &self.rate_limit {
            rate.validate()?;
            if self.service.is_some() {
                return Err(field(
                    "rate_limit",
                    "limits starts of runs, and a service's instances are kept running; leave                      it out of a service",
                ));
            }
            if self.monitor.is_some() {
                return Err(field(
                    "rate_limit",
                    "limits starts of runs, and a monitor runs nothing itself; leave it out of                      a monitor",
                ));
            }
        }
        if self.max_age.is_some_and(|age| age < Duration::from_secs(1)) {
            return Err(field("max_age", "must be at least 1s, such as 30d"));
        }
        if let Some(age) = self.max_age {
            validate_at_most("max_age", age, MAX_AGE_LIMIT)?;
        }
        for value in self.env.values() {
            reject_nul("env", value)?;
        }
        for value in self.secret_env.values() {
            reject_nul("secret_env", value)?;
        }
        // Every other string in the definition, whatever field it is in.
        match serde_json::to_value(self) {
            Ok(json) => reject_nul_in_json("spec", &json),
            Err(err) => Err(ValidationError::Field {
                field: "spec",
                message: format!("cannot be represented as JSON: {err}"),
            }),
        }
    }
}

fn field(field: &'static str, message: &str) -> ValidationError {
    ValidationError::Field {
        field,
        message: message.to_owned(),
    }
}

/// A stored job definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Stable id; executions point to it, so history survives a delete.
    pub id: JobId,
    /// The definition.
    #[serde(flatten)]
    pub spec: JobSpec,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// A jitter is at least a second, at most [`MAX_JITTER`], and shorter than the time between
/// two slots of `cron` (checked over its first 100 slots from 2000-01-01: a slot moved by
/// more would pass the next one).
fn check_jitter(cron: &CronSchedule, jitter: Duration) -> Result<(), ValidationError> {
    if jitter < Duration::from_secs(1) || jitter > MAX_JITTER {
        return Err(field(
            "jitter",
            "must be from 1s to 24h, such as 5m; leave it out for none",
        ));
    }
    let mut previous =
        DateTime::<Utc>::from_timestamp(946_684_800, 0).and_then(|t| cron.next_after(t));
    let mut shortest: Option<chrono::Duration> = None;
    for _ in 0..100 {
        let Some(slot) = previous else { break };
        let Some(next) = cron.next_after(slot) else {
            break;
        };
        let gap = next - slot;
        shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
        previous = Some(next);
    }
    if let Some(shortest) = shortest.and_then(|s| s.to_std().ok())
        && jitter >= shortest
    {
        return Err(field(
            "jitter",
            &format!(
                "{} is not shorter than the {} between two slots of {:?}; use a shorter \
                 jitter",
                crate::human::exact(jitter),
                crate::human::exact(shortest),
                cron.expression()
            ),
        ));
    }
    Ok(())
}

/// Serde for a `Duration` as whole milliseconds.
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Serde for an optional `Duration` as whole milliseconds (absent or `null` for `None`).
pub(crate) mod duration_ms_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(
        clippy::ref_option,
        reason = "serde's `with` passes a reference to the field"
    )]
    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_jitter(cron: &str, jitter: Option<Duration>) -> Schedule {
        Schedule {
            jitter,
            ..Schedule::new(cron)
        }
    }

    #[test]
    fn a_jitter_offset_is_below_the_window_and_the_same_for_a_job_every_time() {
        let schedule = with_jitter("0 * * * *", Some(Duration::from_secs(300)));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let job = JobId::new();
            let offset = schedule.offset(job);
            assert!(offset < Duration::from_secs(300), "{offset:?}");
            assert_eq!(offset, schedule.offset(job), "stable for one job");
            assert_eq!(offset.subsec_nanos(), 0, "whole seconds");
            seen.insert(offset);
        }
        assert!(
            seen.len() > 120,
            "spread over the window: {} distinct",
            seen.len()
        );
        assert_eq!(
            with_jitter("0 * * * *", None).offset(JobId::new()),
            Duration::ZERO
        );
    }

    #[test]
    fn a_jobs_fire_times_move_by_its_offset_and_stay_consistent() {
        let schedule = with_jitter("0 * * * *", Some(Duration::from_secs(600)));
        let job = JobId::from_uuid(uuid::Uuid::from_u128(
            0x0193_0000_0000_7000_8000_0000_0000_0123,
        ));
        let offset = schedule.offset(job);
        // The id's low 64 bits modulo the window in seconds: pinned, since a change of formula
        // would move every jittered job's slots.
        assert_eq!(offset, Duration::from_secs(0x8000_0000_0000_0123 % 600));
        assert_eq!(offset, Duration::from_secs(299));
        let fire = schedule.fire_times(job).expect("parse");
        let shift = chrono::Duration::from_std(offset).expect("shift");
        let noon = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        // The slot of 12:00 is at 12:00 + offset: not yet at 12:00 itself.
        assert_eq!(fire.next_after(noon), Some(noon + shift));
        assert_eq!(
            fire.latest_at_or_before(noon),
            Some(noon - chrono::Duration::hours(1) + shift)
        );
        assert_eq!(fire.latest_at_or_before(noon + shift), Some(noon + shift));
        let slots = fire.slots_between(noon, noon + chrono::Duration::hours(3), 10);
        let expected: Vec<_> = (0..3)
            .map(|h| noon + chrono::Duration::hours(h) + shift)
            .collect();
        assert_eq!(slots.instants, expected, "the slots in (12:00, 15:00]");
    }

    #[test]
    fn a_jitter_must_be_from_a_second_to_a_day_and_shorter_than_a_slots_gap() {
        let check = |cron: &str, secs: u64| {
            let mut spec = JobSpec::new(
                JobName::new("spread").expect("name"),
                RuntimeSpec::Process {
                    argv: vec!["true".into()],
                },
            );
            spec.schedule = Some(with_jitter(cron, Some(Duration::from_secs(secs))));
            spec.validate().map_err(|err| err.to_string())
        };
        assert!(check("0 * * * *", 300).is_ok());
        assert!(check("0 3 * * *", 3 * 3600).is_ok());
        let zero = check("0 * * * *", 0).expect_err("zero");
        assert!(
            zero.contains("jitter") && zero.contains("1s to 24h"),
            "{zero}"
        );
        let long = check("0 3 * * 1", 2 * 86_400).expect_err("two days");
        assert!(long.contains("1s to 24h"), "{long}");
        let wide = check("*/5 * * * *", 300).expect_err("as long as the gap");
        assert!(
            wide.contains("5m") && wide.contains("between two slots") && wide.contains("*/5"),
            "{wide}"
        );
    }

    fn spec() -> JobSpec {
        JobSpec::new(
            JobName::new("generate-reports").expect("valid"),
            RuntimeSpec::Image {
                image: "busybox:latest".into(),
                command: None,
            },
        )
    }

    #[test]
    fn job_names_are_validated_when_deserialized() {
        let err = serde_json::from_value::<JobName>(serde_json::json!("bad/name"))
            .expect_err("slash refused");
        assert!(err.to_string().contains("bad/name"));
    }

    #[test]
    fn spec_round_trips_through_json_with_defaults_filled_in() {
        let json = serde_json::json!({
            "name": "generate-reports",
            "runtime": {"kind": "process", "argv": ["python3", "job.py"]},
            "retry": {"max_attempts": 1, "backoff_base_ms": 10000, "backoff_cap_ms": 600000},
        });
        let parsed: JobSpec = serde_json::from_value(json).expect("parses");
        assert_eq!(parsed.timeout, DEFAULT_TIMEOUT);
        assert_eq!(parsed.queue, "default");
        assert_eq!(parsed.concurrency, ConcurrencyPolicy::Allow);
        let again: JobSpec =
            serde_json::from_value(serde_json::to_value(&parsed).expect("serializes"))
                .expect("parses");
        assert_eq!(again, parsed);
    }

    #[test]
    fn what_is_left_out_defaults_by_the_kind_of_job() {
        let read = |extra: serde_json::Value| -> JobSpec {
            let mut json = serde_json::json!({
                "name": "generate-reports",
                "runtime": {"kind": "process", "argv": ["true"]},
            });
            for (key, value) in extra.as_object().expect("an object") {
                json[key] = value.clone();
            }
            serde_json::from_value(json).expect("parses")
        };
        let triggered = read(serde_json::json!({}));
        assert_eq!(triggered, spec_named_process("generate-reports"));
        assert_eq!(triggered.retry, RetryPolicy::triggered_default());
        assert_eq!(triggered.concurrency, ConcurrencyPolicy::Allow);

        let cron = read(serde_json::json!({"schedule": {"cron": "0 5 * * *"}}));
        assert_eq!(cron.retry.max_attempts, 1);
        assert_eq!(cron.concurrency, ConcurrencyPolicy::Forbid);
        let limited =
            read(serde_json::json!({"schedule": {"cron": "0 5 * * *"}, "max_running": 2}));
        assert_eq!(limited.concurrency, ConcurrencyPolicy::Allow);
        let service = read(serde_json::json!({"service": {}}));
        assert_eq!(service.retry.max_attempts, 1);
        assert_eq!(service.concurrency, ConcurrencyPolicy::Forbid);

        // What is given is kept, whatever the kind.
        let given = read(serde_json::json!({
            "schedule": {"cron": "0 5 * * *"},
            "concurrency": "replace",
            "retry": {"max_attempts": 5, "backoff_base_ms": 1000, "backoff_cap_ms": 2000},
        }));
        assert_eq!(given.concurrency, ConcurrencyPolicy::Replace);
        assert_eq!(given.retry.max_attempts, 5);
        // A part of the retry policy: the rest from the kind's defaults.
        let part = read(serde_json::json!({"retry": {"backoff_base_ms": 1000}}));
        assert_eq!(part.retry.max_attempts, 3);
        assert_eq!(part.retry.backoff_base, Duration::from_secs(1));
        assert_eq!(
            part.retry.backoff_cap,
            RetryPolicy::triggered_default().backoff_cap
        );
        let err = serde_json::from_value::<JobSpec>(serde_json::json!({
            "name": "x", "runtime": {"kind": "process", "argv": ["true"]}, "retyr": {},
        }))
        .expect_err("a misspelt field is refused");
        assert!(err.to_string().contains("retyr"), "{err}");
    }

    fn spec_named_process(name: &str) -> JobSpec {
        JobSpec::new(
            JobName::new(name).expect("valid"),
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        )
    }

    #[test]
    fn max_age_is_stored_in_milliseconds_and_left_out_when_unset() {
        let mut spec = spec();
        let json = serde_json::to_value(&spec).expect("serializes");
        assert!(json.get("max_age_ms").is_none(), "{json}");
        spec.max_age = Some(Duration::from_secs(30 * 86_400));
        let json = serde_json::to_value(&spec).expect("serializes");
        assert_eq!(json["max_age_ms"], serde_json::json!(2_592_000_000_u64));
        let again: JobSpec = serde_json::from_value(json).expect("parses");
        assert_eq!(again.max_age, spec.max_age);
    }

    #[test]
    fn validate_refuses_what_cannot_run() {
        assert_eq!(spec().validate(), Ok(()));
        type Breaker = fn(&mut JobSpec);
        let cases: Vec<(&str, Breaker)> = vec![
            ("image", |s| {
                s.runtime = RuntimeSpec::Image {
                    image: " ".into(),
                    command: None,
                }
            }),
            ("command", |s| {
                s.runtime = RuntimeSpec::Image {
                    image: "x".into(),
                    command: Some(vec![]),
                }
            }),
            ("exec", |s| {
                s.runtime = RuntimeSpec::Process { argv: vec![] }
            }),
            ("timeout", |s| s.timeout = Duration::ZERO),
            ("queue", |s| s.queue = "Bad Queue".into()),
            ("env", |s| {
                s.env.insert("A=B".into(), "x".into());
            }),
            ("cpus", |s| s.limits.cpus = Some(f64::NAN)),
            ("keep", |s| s.keep = Some(0)),
            ("max_running", |s| {
                s.concurrency = ConcurrencyPolicy::Allow;
                s.max_running = Some(0);
            }),
            ("max_running", |s| {
                s.concurrency = ConcurrencyPolicy::Allow;
                s.max_running = Some(MAX_RUNNING_LIMIT + 1);
            }),
            ("max_running", |s| {
                s.concurrency = ConcurrencyPolicy::Forbid;
                s.max_running = Some(2);
            }),
            ("max_running", |s| {
                s.concurrency = ConcurrencyPolicy::Replace;
                s.max_running = Some(2);
            }),
            ("max_age", |s| s.max_age = Some(Duration::from_millis(10))),
            ("max_age", |s| {
                s.max_age = Some(MAX_AGE_LIMIT + Duration::from_secs(1))
            }),
            ("timeout", |s| {
                s.timeout = MAX_TIMEOUT + Duration::from_millis(1)
            }),
            ("priority", |s| s.priority = 1001),
            ("priority", |s| s.priority = i32::MIN),
            ("keep", |s| s.keep = Some(MAX_KEEP + 1)),
            ("cpus", |s| s.limits.cpus = Some(1e12)),
            ("memory", |s| s.limits.memory_bytes = Some(u64::MAX)),
            ("backoff", |s| {
                s.retry.backoff_base = Duration::from_millis(u64::MAX);
                s.retry.backoff_cap = Duration::from_millis(u64::MAX);
            }),
            ("backoff_max", |s| {
                s.retry.backoff_cap = Duration::from_millis(u64::MAX)
            }),
            ("starting_deadline", |s| {
                s.schedule = Some(Schedule {
                    starting_deadline: MAX_STARTING_DEADLINE + Duration::from_secs(1),
                    ..Schedule::new("* * * * *")
                });
            }),
            ("alert_running_longer_than", |s| {
                s.alerts.running_longer_than = Some(Duration::from_millis(u64::MAX));
            }),
            ("alert_late_after", |s| {
                s.alerts.late_after = Some(Duration::from_millis(u64::MAX));
            }),
            ("max_attempts", |s| s.retry.max_attempts = 0),
            ("starting_deadline", |s| {
                s.schedule = Some(Schedule {
                    starting_deadline: Duration::from_millis(500),
                    ..Schedule::new("* * * * *")
                });
            }),
        ];
        for (what, break_it) in cases {
            let mut s = spec();
            break_it(&mut s);
            let err = s.validate().expect_err(what);
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        let mut s = spec();
        s.timeout = MAX_TIMEOUT;
        s.priority = crate::MIN_PRIORITY;
        s.keep = Some(MAX_KEEP);
        s.max_age = Some(MAX_AGE_LIMIT);
        s.limits.cpus = Some(MAX_CPUS);
        s.limits.memory_bytes = Some(MAX_MEMORY_BYTES);
        s.retry.backoff_base = RetryPolicy::MAX_BACKOFF;
        s.retry.backoff_cap = RetryPolicy::MAX_BACKOFF;
        s.schedule = Some(Schedule {
            starting_deadline: MAX_STARTING_DEADLINE,
            ..Schedule::new("* * * * *")
        });
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        let base = serde_json::json!({
            "name": "generate-reports",
            "runtime": {"kind": "process", "argv": ["true"]},
            "retry": {"max_attempts": 1, "backoff_base_ms": 10, "backoff_cap_ms": 10},
            "schedule": {"cron": "* * * * *"},
            "limits": {},
            "alerts": {},
        });
        serde_json::from_value::<JobSpec>(base.clone()).expect("the base parses");
        for (path, typo) in [
            ("", "max_runing"),
            ("runtime", "arg"),
            ("retry", "max_atempts"),
            ("schedule", "timezon"),
            ("limits", "cpu"),
            ("alerts", "webhook"),
        ] {
            let mut json = base.clone();
            let object = if path.is_empty() {
                &mut json
            } else {
                &mut json[path]
            };
            object[typo] = serde_json::json!(1);
            let err = serde_json::from_value::<JobSpec>(json).expect_err(typo);
            assert!(
                err.to_string().contains(&format!("unknown field `{typo}`")),
                "{path}.{typo}: {err}"
            );
        }
    }

    #[test]
    fn concurrency_policy_parses_its_words_only() {
        for p in [
            ConcurrencyPolicy::Forbid,
            ConcurrencyPolicy::Allow,
            ConcurrencyPolicy::Replace,
        ] {
            assert_eq!(p.as_str().parse::<ConcurrencyPolicy>(), Ok(p));
        }
        assert!("sometimes".parse::<ConcurrencyPolicy>().is_err());
    }
}
