//! The shapes of Panda's HTTP API (`/api/v1`), shared by the server and its clients: a client
//! depends on these and on nothing of the server.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Execution, ExecutionId, Job, Status};

/// What every failed call answers: `{"error": {"code": …, "message": …, "hint": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// One error: a stable code to branch on, a message for people, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// `not_found`, `conflict`, `invalid`, `unauthorized`, `forbidden`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// What went wrong, in one line.
    pub message: String,
    /// What to do about it, when there is something to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The value shown instead of a secret environment value: the API never returns one.
pub const SECRET_PLACEHOLDER: &str = "********";

/// A job as the API shows it: secret values replaced by [`SECRET_PLACEHOLDER`].
pub fn redacted(mut job: Job) -> Job {
    for value in job.spec.secret_env.values_mut() {
        *value = SECRET_PLACEHOLDER.to_owned();
    }
    job
}

/// A job in a list: the definition (secrets redacted) and, for a cronjob that is not
/// suspended, when it fires next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// The next fire time, for an active cronjob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/jobs/{name}/executions`: run a job now (or later).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TriggerRequest {
    /// `api` (the default) for an application's enqueue, `manual` for a person's trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// JSON handed to the job as `PANDA_PAYLOAD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// Environment overrides for this execution.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A second enqueue with the same key returns the first execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Not before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Overrides the job's priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// The past slot this run stands for (a backfill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Run beside the job's other executions whatever its concurrency policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// The answer to a trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Triggered {
    /// The execution: new, or the one an earlier enqueue with the same key made.
    pub execution: Execution,
    /// `false` when the idempotency key matched an existing execution.
    pub created: bool,
}

/// One page of executions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionList {
    /// Newest first.
    pub executions: Vec<Execution>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ExecutionId>,
}

/// One piece of an execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its position in the execution's log; ask for what comes after it with `after`.
    pub seq: u64,
    /// `stdout`, `stderr`, or `system` (Panda's own lines).
    pub stream: String,
    /// When it was read.
    pub at: DateTime<Utc>,
    /// The text (invalid UTF-8 replaced), usually one line with its newline.
    pub text: String,
}

/// A page of an execution's log, with whether more can come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    /// In order.
    pub lines: Vec<LogLine>,
    /// The execution's status when the page was read: once it is terminal and a page comes
    /// back short, the log is complete.
    pub status: Status,
}

/// The last event of a log stream: the execution ended (or the stream was asked to stop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEnd {
    /// The execution as it ended.
    pub execution: Execution,
}
