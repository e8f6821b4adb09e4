//! Long-running services: what a job's `service` part says, and what the store reports about
//! one.
//!
//! A service is a job with a [`ServiceSpec`]. Its replicas are instances `0..replicas`; each
//! start of an instance is an execution carrying the instance's number and the revision it
//! runs. A change of what runs (runtime, env, secret env, workdir, limits) is a new revision,
//! rolled out as [`RolloutPolicy`] says; a change of anything else (replicas, restart policy,
//! health check, labels) applies in place.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::execution::Execution;
use crate::job::{Job, duration_ms};
use crate::validate::{ValidationError, validate_at_most};

/// The most replicas a service may ask for.
pub const MAX_REPLICAS: u32 = 1000;

/// The longest restart delay, stop timeout or health-check duration: 1 day.
pub const MAX_SERVICE_DURATION: Duration = Duration::from_secs(86_400);

/// The log an instance keeps of its current run when none is given: 64 MiB.
pub const DEFAULT_LOG_KEEP_BYTES: u64 = 64 << 20;

/// The most log an instance may keep of its current run: 16 GiB.
pub const MAX_LOG_KEEP_BYTES: u64 = 16 << 30;

/// Consecutive restarts without a healthy run that make a crash loop (one `crash_loop` alert).
pub const CRASH_LOOP_RESTARTS: u32 = 3;

/// When an instance that exited is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// After every exit, whatever its code.
    #[default]
    Always,
    /// After a failure only (a non-zero exit, a signal, a failed health check, a lost node);
    /// an instance that exits 0 stays stopped until the next revision or restart.
    OnFailure,
}

impl RestartPolicy {
    /// The word used in storage, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::OnFailure => "on_failure",
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "on_failure" | "on-failure" => Ok(Self::OnFailure),
            other => Err(ValidationError::Field {
                field: "restart",
                message: format!("{other:?} is not a restart policy; use always or on-failure"),
            }),
        }
    }
}

/// The signals a service may be stopped with, by name.
pub const STOP_SIGNALS: [(&str, i32); 8] = [
    ("SIGTERM", 15),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGHUP", 1),
    ("SIGUSR1", 10),
    ("SIGUSR2", 12),
    ("SIGWINCH", 28),
    ("SIGKILL", 9),
];

/// A signal a service is stopped with, by name (`SIGTERM`); `TERM` and lower case are read too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(into = "String")]
#[schema(value_type = String, example = "SIGTERM")]
pub struct StopSignal(&'static str);

impl<'de> Deserialize<'de> for StopSignal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl StopSignal {
    /// `SIGTERM`.
    pub const TERM: Self = Self("SIGTERM");

    /// The signal's name, `SIG…`.
    pub fn name(&self) -> &'static str {
        self.0
    }

    /// The signal's number on Linux.
    pub fn number(&self) -> i32 {
        STOP_SIGNALS
            .iter()
            .find(|(name, _)| *name == self.0)
            .map_or(15, |(_, n)| *n)
    }
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::TERM
    }
}

impl FromStr for StopSignal {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        STOP_SIGNALS
            .iter()
            .find(|(name, _)| *name == full)
            .map(|(name, _)| Self(name))
            .ok_or_else(|| ValidationError::Field {
                field: "stop_signal",
                message: format!(
                    "{s:?} is not a stop signal; use one of {}",
                    STOP_SIGNALS.map(|(name, _)| name).join(", ")
                ),
            })
    }
}

impl From<StopSignal> for String {
    fn from(s: StopSignal) -> Self {
        s.0.to_owned()
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// What a health check runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// A shell command (`sh -c`), in the container for an image, beside the process otherwise,
    /// with the instance's environment; exit 0 is healthy.
    Command {
        /// The command line; not blank.
        #[schema(pattern = "\\S")]
        command: String,
    },
    /// An HTTP GET from the node; a 2xx or 3xx answer within the timeout is healthy.
    Http {
        /// `http://` or `https://` URL.
        url: String,
    },
}

/// How an instance is checked while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// What to run.
    pub probe: Probe,
    /// Between two checks; from 1 s.
    #[serde(with = "duration_ms", rename = "interval_ms", default = "d10s")]
    #[schema(value_type = u64, minimum = 1000, maximum = 86_400_000_u64, default = 10_000)]
    pub interval: Duration,
    /// A check that takes longer fails; from 1 ms.
    #[serde(with = "duration_ms", rename = "timeout_ms", default = "d5s")]
    #[schema(value_type = u64, minimum = 1, maximum = 86_400_000_u64, default = 5_000)]
    pub timeout: Duration,
    /// Failures in a row (after the start period) that restart the instance; from 1.
    #[serde(default = "three")]
    #[schema(minimum = 1, maximum = 100, default = 3)]
    pub retries: u32,
    /// Failures during this long after a start do not count (a success ends it early).
    #[serde(with = "duration_ms", rename = "start_period_ms", default = "d30s")]
    #[schema(value_type = u64, maximum = 86_400_000_u64, default = 30_000)]
    pub start_period: Duration,
}

impl HealthCheck {
    /// A check with the default interval, timeout, retries and start period.
    pub fn new(probe: Probe) -> Self {
        Self {
            probe,
            interval: d10s(),
            timeout: d5s(),
            retries: three(),
            start_period: d30s(),
        }
    }
}

/// Which goes first when an instance is replaced by one of a new revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOrder {
    /// Start the new instance, stop the old once the new is healthy: never fewer than
    /// `replicas - max_parallel` healthy instances.
    #[default]
    StartFirst,
    /// Stop the old instance first, then start the new (for instances that cannot run twice,
    /// such as a single consumer of a partition).
    StopFirst,
}

impl UpdateOrder {
    /// The word used in storage, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartFirst => "start_first",
            Self::StopFirst => "stop_first",
        }
    }
}

impl FromStr for UpdateOrder {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "start_first" | "start-first" => Ok(Self::StartFirst),
            "stop_first" | "stop-first" => Ok(Self::StopFirst),
            other => Err(ValidationError::Field {
                field: "update_order",
                message: format!("{other:?} is not an update order; use start-first or stop-first"),
            }),
        }
    }
}

/// How a new revision replaces the instances of the old.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutPolicy {
    /// Instances replaced at a time; from 1.
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 1000, default = 1)]
    pub max_parallel: u32,
    /// A new instance must be healthy (or running, without a health check) this long before the
    /// next is replaced.
    #[serde(with = "duration_ms", rename = "min_healthy_ms", default = "d10s")]
    #[schema(value_type = u64, maximum = 86_400_000_u64, default = 10_000)]
    pub min_healthy: Duration,
    /// A new instance not healthy for `min_healthy` within this long of its creation fails the
    /// rollout, which reverts to the previous revision.
    #[serde(with = "duration_ms", rename = "healthy_deadline_ms", default = "d5m")]
    #[schema(value_type = u64, minimum = 1000, maximum = 86_400_000_u64, default = 300_000)]
    pub healthy_deadline: Duration,
    /// Start the new first, or stop the old first.
    #[serde(default)]
    pub order: UpdateOrder,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        Self {
            max_parallel: one(),
            min_healthy: d10s(),
            healthy_deadline: d5m(),
            order: UpdateOrder::default(),
        }
    }
}

/// The service part of a job: it makes the job a long-running service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Instances to keep running, `0..=1000`.
    #[serde(default = "one")]
    #[schema(maximum = 1000, default = 1)]
    pub replicas: u32,
    /// When an instance that exited starts again.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// The ceiling of the first restart's wait; waits double per restart up to
    /// `restart_delay_max`, with full jitter.
    #[serde(with = "duration_ms", rename = "restart_delay_ms", default = "d1s")]
    #[schema(value_type = u64, maximum = 86_400_000_u64, default = 1_000)]
    pub restart_delay: Duration,
    /// The longest wait before a restart.
    #[serde(with = "duration_ms", rename = "restart_delay_max_ms", default = "d5m")]
    #[schema(value_type = u64, maximum = 86_400_000_u64, default = 300_000)]
    pub restart_delay_max: Duration,
    /// A run that lasted this long resets the backoff (and ends a crash loop).
    #[serde(with = "duration_ms", rename = "healthy_after_ms", default = "d10m")]
    #[schema(value_type = u64, minimum = 1000, maximum = 86_400_000_u64, default = 600_000)]
    pub healthy_after: Duration,
    /// Sent to stop an instance.
    #[serde(default)]
    pub stop_signal: StopSignal,
    /// After the stop signal, this long before the whole process group or container is killed.
    #[serde(with = "duration_ms", rename = "stop_timeout_ms", default = "d30s")]
    #[schema(value_type = u64, maximum = 86_400_000_u64, default = 30_000)]
    pub stop_timeout: Duration,
    /// How an instance is checked while it runs; none means running is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// How a new revision is rolled out.
    #[serde(default)]
    pub rollout: RolloutPolicy,
    /// The newest bytes of each instance's current run kept as its log.
    #[serde(default = "default_log_keep")]
    #[schema(minimum = 1024, maximum = 17_179_869_184_u64, default = 67_108_864)]
    pub log_keep_bytes: u64,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            replicas: one(),
            restart: RestartPolicy::default(),
            restart_delay: d1s(),
            restart_delay_max: d5m(),
            healthy_after: d10m(),
            stop_signal: StopSignal::default(),
            stop_timeout: d30s(),
            health: None,
            rollout: RolloutPolicy::default(),
            log_keep_bytes: default_log_keep(),
        }
    }
}

impl ServiceSpec {
    /// Checks the bounds the types do not.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.replicas > MAX_REPLICAS {
            return Err(ValidationError::Field {
                field: "replicas",
                message: format!("must be from 0 to {MAX_REPLICAS}, not {}", self.replicas),
            });
        }
        for (field, value) in [
            ("restart_delay", self.restart_delay),
            ("restart_delay_max", self.restart_delay_max),
            ("healthy_after", self.healthy_after),
            ("stop_timeout", self.stop_timeout),
            ("min_healthy", self.rollout.min_healthy),
            ("healthy_deadline", self.rollout.healthy_deadline),
        ] {
            validate_at_most(field, value, MAX_SERVICE_DURATION)?;
        }
        if self.restart_delay_max < self.restart_delay {
            return Err(field(
                "restart_delay_max",
                "is shorter than restart_delay; make it at least as long",
            ));
        }
        if self.healthy_after < Duration::from_secs(1) {
            return Err(field("healthy_after", "must be at least 1s, such as 10m"));
        }
        if self.rollout.healthy_deadline < Duration::from_secs(1) {
            return Err(field("healthy_deadline", "must be at least 1s, such as 5m"));
        }
        if self.rollout.healthy_deadline <= self.rollout.min_healthy {
            return Err(field(
                "healthy_deadline",
                "must be longer than min_healthy, or no new instance could ever pass",
            ));
        }
        if !(1..=MAX_REPLICAS).contains(&self.rollout.max_parallel) {
            return Err(ValidationError::Field {
                field: "max_parallel",
                message: format!(
                    "must be from 1 to {MAX_REPLICAS}, not {}",
                    self.rollout.max_parallel
                ),
            });
        }
        if !(1024..=MAX_LOG_KEEP_BYTES).contains(&self.log_keep_bytes) {
            return Err(ValidationError::Field {
                field: "log_keep",
                message: format!(
                    "{} bytes is out of range; use 1 KiB to 16 GiB, such as 64MiB",
                    self.log_keep_bytes
                ),
            });
        }
        if let Some(health) = &self.health {
            match &health.probe {
                Probe::Command { command } if command.trim().is_empty() => {
                    return Err(field(
                        "health_cmd",
                        "is empty; give a command such as \"test -f /tmp/healthy\"",
                    ));
                }
                Probe::Http { url }
                    if !(url.starts_with("http://") || url.starts_with("https://"))
                        || url.len() < 10 =>
                {
                    return Err(ValidationError::Field {
                        field: "health_http",
                        message: format!(
                            "{url:?} is not an http:// or https:// URL, such as \
                             http://127.0.0.1:8080/healthz"
                        ),
                    });
                }
                _ => {}
            }
            if health.interval < Duration::from_secs(1) {
                return Err(field("health_interval", "must be at least 1s, such as 10s"));
            }
            if health.timeout.is_zero() {
                return Err(field(
                    "health_timeout",
                    "must be longer than zero, such as 5s",
                ));
            }
            if !(1..=100).contains(&health.retries) {
                return Err(ValidationError::Field {
                    field: "health_retries",
                    message: format!("must be from 1 to 100, not {}", health.retries),
                });
            }
            for (field, value) in [
                ("health_interval", health.interval),
                ("health_timeout", health.timeout),
                ("start_period", health.start_period),
            ] {
                validate_at_most(field, value, MAX_SERVICE_DURATION)?;
            }
        }
        Ok(())
    }

    /// The wait before restart number `restarts` (1 for the first restart after a start),
    /// before jitter: `restart_delay * 2^(restarts-1)`, at most `restart_delay_max`.
    pub fn restart_ceiling(&self, restarts: u32) -> Duration {
        let exp = restarts.saturating_sub(1).min(30);
        self.restart_delay
            .saturating_mul(1u32 << exp)
            .min(self.restart_delay_max)
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Instances are being replaced.
    Progressing,
    /// Every instance runs the new revision.
    Succeeded,
    /// A new instance did not become healthy in time: the previous revision was put back.
    Reverted,
}

impl RolloutState {
    /// The word used in storage, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progressing => "progressing",
            Self::Succeeded => "succeeded",
            Self::Reverted => "reverted",
        }
    }
}

/// The latest change of revision of a service, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    /// The revision being replaced.
    pub from_revision: u32,
    /// The revision being rolled out.
    pub to_revision: u32,
    /// Where it is.
    pub state: RolloutState,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// When its current step (the instances being replaced now) began; the healthy deadline
    /// counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<DateTime<Utc>>,
    /// When it succeeded or was reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it was reverted, in words (`instance 1 not healthy within 5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One kept revision of a service: what its instances run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Revision {
    /// From 1, one more per change of what runs.
    pub revision: u32,
    /// The job definition of that revision (secret values hidden in the API).
    pub job: Job,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// Where an instance is, as `service get` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Waiting for a node to start it.
    Pending,
    /// Running, health not yet known (start period, or first check pending).
    Starting,
    /// Running and healthy (or running, without a health check).
    Healthy,
    /// Running, and its health check fails.
    Unhealthy,
    /// Exited; it starts again at `next_start_at`.
    BackingOff,
    /// Exited and not started again (exit 0 under `on_failure`).
    Completed,
    /// Being stopped (scale down, suspend, delete, replaced by a rollout).
    Stopping,
}

impl InstanceState {
    /// Every state.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Starting,
        Self::Healthy,
        Self::Unhealthy,
        Self::BackingOff,
        Self::Completed,
        Self::Stopping,
    ];

    /// The word used in the API, the CLI and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::BackingOff => "backing_off",
            Self::Completed => "completed",
            Self::Stopping => "stopping",
        }
    }
}

/// One instance of a service: its current (or next) execution and its last ended one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    /// Its number, `0..replicas` (an instance being stopped may be past the replicas).
    pub index: u32,
    /// The revision its current execution runs.
    pub revision: u32,
    /// Where it is.
    pub state: InstanceState,
    /// The node running it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When its current run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it starts again, while backing off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start_at: Option<DateTime<Utc>>,
    /// Restarts since its last healthy run (the backoff's count).
    pub restarts: u32,
    /// The live execution (queued or running), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
    /// The last run that ended: its exit code, reason and time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<Execution>,
}

/// A service as `service list` and `service get` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceStatus {
    /// The service's job, its definition at the current revision (secret values hidden in the
    /// API).
    pub job: Job,
    /// The revision instances are meant to run.
    pub revision: u32,
    /// The latest rollout, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Instances wanted: `replicas`, or 0 while suspended.
    pub desired: u32,
    /// Instances running.
    pub running: u32,
    /// Instances running and healthy.
    pub healthy: u32,
    /// Restarts over the kept history.
    pub restarts: u64,
    /// Since when every wanted instance has been running (no restart since), if they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_since: Option<DateTime<Utc>>,
    /// Each instance with a live or kept execution, by index then revision.
    pub instances: Vec<Instance>,
}

fn one() -> u32 {
    1
}

fn three() -> u32 {
    3
}

fn d1s() -> Duration {
    Duration::from_secs(1)
}

fn d5s() -> Duration {
    Duration::from_secs(5)
}

fn d10s() -> Duration {
    Duration::from_secs(10)
}

fn d30s() -> Duration {
    Duration::from_secs(30)
}

fn d5m() -> Duration {
    Duration::from_secs(300)
}

fn d10m() -> Duration {
    Duration::from_secs(600)
}

fn default_log_keep() -> u64 {
    DEFAULT_LOG_KEEP_BYTES
}

fn field(field: &'static str, message: &str) -> ValidationError {
    ValidationError::Field {
        field,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_an_empty_object_and_round_trip() {
        let spec: ServiceSpec = serde_json::from_value(serde_json::json!({})).expect("parses");
        assert_eq!(spec, ServiceSpec::default());
        assert_eq!(spec.validate(), Ok(()));
        let again: ServiceSpec =
            serde_json::from_value(serde_json::to_value(&spec).expect("serializes"))
                .expect("parses");
        assert_eq!(again, spec);
    }

    #[test]
    fn signals_are_read_by_name_in_any_case_and_refused_otherwise() {
        assert_eq!("term".parse::<StopSignal>().map(|s| s.number()), Ok(15));
        assert_eq!("SIGINT".parse::<StopSignal>().map(|s| s.number()), Ok(2));
        let err = "SIGFOO".parse::<StopSignal>().expect_err("unknown");
        assert!(err.to_string().contains("SIGTERM"), "{err}");
        assert!(serde_json::from_value::<StopSignal>(serde_json::json!("nope")).is_err());
    }

    #[test]
    fn validate_refuses_what_cannot_be_run_and_names_the_field() {
        type Breaker = fn(&mut ServiceSpec);
        let cases: Vec<(&str, Breaker)> = vec![
            ("replicas", |s| s.replicas = MAX_REPLICAS + 1),
            ("restart_delay_max", |s| {
                s.restart_delay = Duration::from_secs(10);
                s.restart_delay_max = Duration::from_secs(1);
            }),
            ("health_cmd", |s| {
                s.health = Some(HealthCheck::new(Probe::Command {
                    command: "  ".into(),
                }));
            }),
            ("health_http", |s| {
                s.health = Some(HealthCheck::new(Probe::Http {
                    url: "ftp://x".into(),
                }));
            }),
            ("max_parallel", |s| s.rollout.max_parallel = 0),
            ("log_keep", |s| s.log_keep_bytes = 10),
            ("healthy_deadline", |s| {
                s.rollout.healthy_deadline = Duration::from_secs(5);
            }),
        ];
        for (name, breaker) in cases {
            let mut spec = ServiceSpec::default();
            breaker(&mut spec);
            let err = spec.validate().expect_err(name);
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn restart_ceiling_doubles_from_the_delay_up_to_the_maximum() {
        let spec = ServiceSpec::default();
        assert_eq!(spec.restart_ceiling(1), Duration::from_secs(1));
        assert_eq!(spec.restart_ceiling(2), Duration::from_secs(2));
        assert_eq!(spec.restart_ceiling(4), Duration::from_secs(8));
        assert_eq!(spec.restart_ceiling(40), Duration::from_secs(300));
        let zero = ServiceSpec {
            restart_delay: Duration::ZERO,
            ..ServiceSpec::default()
        };
        assert_eq!(zero.restart_ceiling(9), Duration::ZERO);
    }
}
