use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{ExecutionId, JobId};
use crate::job::ConcurrencyPolicy;
use crate::retry::RetryPolicy;
use crate::validate::ValidationError;

/// Where an execution is in its life.
///
/// ```text
/// queued ──▶ running ──▶ succeeded | failed | timed_out | cancelled | lost | dead
///   │  └──▶ cancelled | skipped
/// skipped (a slot that was recorded but not run)
/// ```
///
/// `dead` replaces `failed`, `timed_out` or `lost` on the last attempt, once retries are
/// exhausted; the execution is then in the dead-letter queue. A retry is a new execution, so no
/// status ever goes back to `queued`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting to be claimed (possibly not yet due).
    Queued,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Exited with code 0.
    Succeeded,
    /// Exited non-zero (or could not start); another attempt follows.
    Failed,
    /// Ran past its timeout and was stopped; another attempt follows.
    TimedOut,
    /// Stopped on request.
    Cancelled,
    /// Its worker stopped heartbeating; another attempt follows.
    Lost,
    /// The last attempt failed: in the dead-letter queue.
    Dead,
    /// Recorded but never run (missed deadline, suspended, overlap forbidden).
    Skipped,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 9] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Cancelled,
        Status::Lost,
        Status::Dead,
        Status::Skipped,
    ];

    /// The one rule for which transitions are legal; the store refuses every other.
    /// `Running → Queued` is a release: a worker that shuts down puts the execution back.
    pub fn can_transition_to(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Queued, Running | Cancelled | Skipped)
                | (
                    Running,
                    Queued | Succeeded | Failed | TimedOut | Cancelled | Lost | Dead
                )
        )
    }

    /// The statuses an execution may be created in.
    pub fn is_initial(self) -> bool {
        matches!(self, Status::Queued | Status::Skipped)
    }

    /// No transition leaves a terminal status.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }

    /// The word used in storage, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
            Status::Lost => "lost",
            Status::Dead => "dead",
            Status::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ValidationError::Field {
                field: "status",
                message: format!(
                    "{s:?} is not a status; use one of {}",
                    Status::ALL.map(Status::as_str).join(", ")
                ),
            })
    }
}

/// Why an execution exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A cron slot fired.
    Schedule,
    /// A person asked for it (`cronjob trigger`, dashboard).
    Manual,
    /// A program enqueued it through the API.
    Api,
    /// An earlier attempt failed and the retry policy allowed another.
    Retry,
    /// A service's instance was started (created, scaled up, rolled out to a new revision).
    Service,
    /// A service's instance ended and its restart policy started it again.
    Restart,
    /// A run of a job it follows (`--after`) ended as it waits for.
    Upstream,
    /// A monitor's ping URL was called: a run of a cron that Panda does not run itself.
    Ping,
}

impl Trigger {
    /// Every trigger.
    pub const ALL: [Trigger; 8] = [
        Trigger::Schedule,
        Trigger::Manual,
        Trigger::Api,
        Trigger::Retry,
        Trigger::Service,
        Trigger::Restart,
        Trigger::Upstream,
        Trigger::Ping,
    ];

    /// The word used in storage, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Api => "api",
            Trigger::Retry => "retry",
            Trigger::Service => "service",
            Trigger::Restart => "restart",
            Trigger::Upstream => "upstream",
            Trigger::Ping => "ping",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Trigger {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ValidationError::Field {
                field: "trigger",
                message: format!(
                    "{s:?} is not a trigger; use schedule, manual, api, retry, service, restart, upstream or ping"
                ),
            })
    }
}

/// One attempt of one run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Execution {
    /// This attempt's id.
    pub id: ExecutionId,
    /// The first attempt of this logical run (its own id on the first attempt).
    pub root_id: ExecutionId,
    /// The job it runs.
    pub job_id: JobId,
    /// The job's name when the execution was created (kept after a delete).
    pub job_name: String,
    /// The queue it waits in.
    pub queue: String,
    /// Higher is claimed first.
    pub priority: i32,
    /// Where it is in its life.
    pub status: Status,
    /// Why it exists.
    pub trigger: Trigger,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The retry policy in force when the run started; later attempts follow it.
    pub retry: RetryPolicy,
    /// The overlap rule in force when it was created.
    pub concurrency: ConcurrencyPolicy,
    /// The job's limit of running executions when it was created (`max_running`), unless it
    /// was forced to run beside the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// With a per-key limit (its job's `concurrency_key`), the key it counts against:
    /// `max_running` holds per key. `None` when the limit, if any, is per job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// The key a second enqueue is deduplicated by (first attempt only).
    pub idempotency_key: Option<String>,
    /// JSON given to the job as `PANDA_PAYLOAD`.
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<serde_json::Value>,
    /// Environment overrides for this execution only.
    pub env: BTreeMap<String, String>,
    /// The cron slot (or backfilled slot) it runs for.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Not claimed before this instant.
    pub run_at: DateTime<Utc>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When a worker claimed it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker holding (or last holding) its lease.
    pub worker_id: Option<String>,
    /// When the current lease runs out, while running.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Cancellation was asked for while it ran; its worker stops it at the next heartbeat.
    pub cancel_requested: bool,
    /// The process or container exit code.
    pub exit_code: Option<i32>,
    /// Why it ended as it did or was skipped, in words (`OOMKilled`, `lease expired`); on a
    /// queued execution, that its worker released it at shutdown.
    pub reason: Option<String>,
    /// The image digest that actually ran.
    pub image_digest: Option<String>,
    /// A service's instance this execution is a run of (`0..replicas`); `None` for a job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    /// The service revision it runs; `None` for a job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    /// Since when a service instance's run has been healthy (its health check passes, or it
    /// runs, without one); `None` while unknown or unhealthy, and for a job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_at: Option<DateTime<Utc>>,
}

/// The variable that names, in the environment of a run a chain started (trigger
/// `upstream`), the upstream attempt whose end started it. It is stored in the execution's
/// own `env`, so its retries keep it and the job reads it like any other variable.
pub const UPSTREAM_EXECUTION_ENV: &str = "PANDA_UPSTREAM_EXECUTION_ID";
/// The name of the upstream job, beside [`UPSTREAM_EXECUTION_ENV`].
pub const UPSTREAM_JOB_ENV: &str = "PANDA_UPSTREAM_JOB";
/// How the upstream run ended (`succeeded` or `dead`), beside [`UPSTREAM_EXECUTION_ENV`].
pub const UPSTREAM_STATUS_ENV: &str = "PANDA_UPSTREAM_STATUS";

impl Execution {
    /// The key a job sees as `PANDA_IDEMPOTENCY_KEY`: the same for every attempt of one run.
    pub fn run_key(&self) -> String {
        self.idempotency_key
            .clone()
            .unwrap_or_else(|| self.root_id.to_string())
    }

    /// For a run a chain started: the upstream attempt whose end started it (its
    /// `PANDA_UPSTREAM_EXECUTION_ID`).
    pub fn upstream_id(&self) -> Option<ExecutionId> {
        self.env.get(UPSTREAM_EXECUTION_ENV)?.parse().ok()
    }

    /// Whether this execution, while it runs, holds one of its job's slots: a `forbid` one
    /// (slot 0), or one of a job with a limit of running executions. The slot is released
    /// when its finish is written, and the job's next execution waits for that.
    pub fn holds_job_slot(&self) -> bool {
        match self.concurrency {
            ConcurrencyPolicy::Forbid => true,
            ConcurrencyPolicy::Allow => self.max_running.is_some(),
            ConcurrencyPolicy::Replace => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn transitions_table() {
        // Every legal edge; every pair not listed is illegal.
        let legal = [
            (Queued, Running),
            (Queued, Cancelled),
            (Queued, Skipped),
            (Running, Queued),
            (Running, Succeeded),
            (Running, Failed),
            (Running, TimedOut),
            (Running, Cancelled),
            (Running, Lost),
            (Running, Dead),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn terminal_statuses_have_no_way_out_and_initial_ones_are_queued_or_skipped() {
        for s in Status::ALL {
            if s.is_terminal() {
                assert!(
                    Status::ALL.iter().all(|next| !s.can_transition_to(*next)),
                    "{s}"
                );
            }
        }
        let initial: Vec<_> = Status::ALL.into_iter().filter(|s| s.is_initial()).collect();
        assert_eq!(initial, [Queued, Skipped]);
    }

    #[test]
    fn statuses_and_triggers_round_trip_through_their_words() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
            assert_eq!(serde_json::to_value(s).expect("serializes"), s.as_str());
        }
        for t in Trigger::ALL {
            assert_eq!(t.as_str().parse::<Trigger>(), Ok(t));
        }
        let err = "finished".parse::<Status>().expect_err("not a status");
        assert!(err.to_string().contains("timed_out"), "{err}");
    }
}
