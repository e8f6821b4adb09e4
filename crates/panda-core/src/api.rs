//! The shapes of Panda's HTTP API (`/api/v1`), shared by the server and its clients: a client
//! depends on these and on nothing of the server.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Execution, ExecutionId, Job, JobSpec, Status, Trigger};

/// What every failed call answers: `{"error": {"code": …, "message": …, "hint": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// One error: a stable code to branch on, a message for people, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// `not_found`, `conflict`, `invalid`, `unauthorized`, `forbidden`,
    /// `method_not_allowed`, `payload_too_large`, `request_timeout`, `unavailable`,
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

/// A job as the API shows it: secret values replaced by [`SECRET_PLACEHOLDER`], and its alert
/// endpoints by [`redacted_url`] (a Slack webhook's path is its credential).
pub fn redacted(mut job: Job) -> Job {
    for value in job.spec.secret_env.values_mut() {
        *value = SECRET_PLACEHOLDER.to_owned();
    }
    let alerts = &mut job.spec.alerts;
    for url in alerts.webhooks.iter_mut().chain(alerts.slack.iter_mut()) {
        *url = redacted_url(url);
    }
    job
}

/// A URL as the API shows it: scheme and host, with any credentials, path and query replaced
/// by [`SECRET_PLACEHOLDER`]: `https://hooks.slack.com/********`. Enough to tell endpoints
/// apart, not to call one.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return SECRET_PLACEHOLDER.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let hidden = authority.len() != host.len() || !matches!(tail, "" | "/");
    if hidden {
        format!("{scheme}://{host}/{SECRET_PLACEHOLDER}")
    } else {
        format!("{scheme}://{host}{tail}")
    }
}

/// Why a job definition cannot be stored as it is sent: an alert endpoint still redacted (one
/// no stored URL stands behind: a new job, or a host the job never had). `None` when there is
/// none. The server asks this after [`restore_redacted_urls`]; a client may not, since only the
/// server knows what is stored.
pub fn redacted_endpoint_left(spec: &JobSpec) -> Option<String> {
    let alerts = &spec.alerts;
    alerts
        .webhooks
        .iter()
        .chain(&alerts.slack)
        .find(|url| url.contains(SECRET_PLACEHOLDER))
        .map(|url| {
            format!(
                "alert endpoint {url:?} is shown redacted, and no stored URL of this job stands \
                 behind it; give the whole URL"
            )
        })
}

/// The alert endpoints of `incoming` with each redacted one (as [`redacted_url`] shows it)
/// put back to the stored URL it stands for: the one in the same place when that matches,
/// else the first that does. A definition read from the API can so be changed and put back.
pub fn restore_redacted_urls(incoming: &mut [String], stored: &[String]) {
    for (i, url) in incoming.iter_mut().enumerate() {
        if !url.contains(SECRET_PLACEHOLDER) {
            continue;
        }
        let same_place = stored.get(i).filter(|s| redacted_url(s) == *url);
        if let Some(original) =
            same_place.or_else(|| stored.iter().find(|s| redacted_url(s) == *url))
        {
            url.clone_from(original);
        }
    }
}

/// A job in a list: the definition (secrets redacted), for a cronjob that is not suspended
/// when it fires next, and how its last run went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// The next fire time, for an active cronjob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<DateTime<Utc>>,
    /// Its newest execution that was not skipped (the one `logs --latest` shows); absent when
    /// it never ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<ExecutionSummary>,
}

/// A job that follows another (its `after` names it): which, and how a run of the other must
/// end to start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Follower {
    /// The following job's name.
    pub job: crate::JobName,
    /// How a run of the followed job must end: succeeded, failed or any.
    pub on: crate::RunEnd,
}

/// An execution in brief: which, how it went and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionSummary {
    /// The execution's id.
    pub id: ExecutionId,
    /// Where it is in its life.
    pub status: Status,
    /// Why it exists.
    pub trigger: Trigger,
    /// Which attempt of its run, from 1.
    pub attempt: u32,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When a worker started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/jobs/{name}/executions`: run a job now (or later).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// `api` (the default) for an application's enqueue, `manual` for a person's trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::enqueue_trigger)]
    pub trigger: Option<String>,
    /// JSON handed to the job as `PANDA_PAYLOAD`: at most 64 KiB once serialized, and no
    /// string or key in it may hold a NUL character.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<serde_json::Value>,
    /// Environment overrides for this execution.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = schema::env)]
    pub env: BTreeMap<String, String>,
    /// A second enqueue with the same key returns the first execution. 1 to 255 bytes of
    /// UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
    /// Not before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Overrides the job's priority: from -1000 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
    /// The past slot this run stands for (a backfill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Run beside the job's other executions whatever its concurrency policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// The answer to a trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Triggered {
    /// The execution: new, or the one an earlier enqueue with the same key made.
    pub execution: Execution,
    /// `false` when the idempotency key matched an existing execution.
    pub created: bool,
}

/// A monitor's ping URL. Its token is shown only in the answer that made it (the monitor's
/// create, or a rotation); everywhere else it reads `/ping/********`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PingUrlView {
    /// `/ping/<token>` under the server's address; `/ping/********` once made. Add `/start`,
    /// `/fail` or `/<exit code>` for the other kinds of ping.
    pub path: String,
    /// The whole URL, when the request named the host it was sent to (only when it is shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When this URL was made.
    pub created_at: DateTime<Utc>,
}

/// The answer to a ping: the execution it recorded (or was folded into) and its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pinged {
    /// The execution that stands for the run.
    pub execution_id: ExecutionId,
    /// `running` after a start, `succeeded` or `failed` after an end.
    pub status: Status,
}

/// The answer to a create: the job, and for a monitor its ping URL, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedJob {
    /// The job, secrets redacted.
    #[serde(flatten)]
    pub job: Job,
    /// A monitor's ping URL with its token: shown in this answer only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingUrlView>,
}

/// A job's webhook. Its URL's token is shown only in the answer that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    /// `/hooks/<token>` under the server's address; `/hooks/********` once made.
    pub path: String,
    /// The whole URL, when the request named the host it was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether deliveries must be signed.
    pub signed: bool,
    /// When this URL was made.
    pub created_at: DateTime<Utc>,
}

/// The answer to a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivered {
    /// The execution the delivery queued (or, for a repeated idempotency key, queued before).
    pub execution_id: ExecutionId,
    /// `false` when the idempotency key matched an earlier delivery's execution.
    pub created: bool,
}

/// The most items one batch enqueue takes.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// `POST /api/v1/jobs/{name}/executions/batch`: many enqueues of one job in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// From 1 to 1,000 enqueues, each as the single enqueue takes it (a backfill's
    /// `scheduled_for` is refused here).
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<TriggerRequest>,
}

/// How one item of a batch was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum BatchItem {
    /// Queued.
    Created {
        /// The new execution.
        execution: Execution,
    },
    /// Its idempotency key was seen before (earlier, or earlier in this batch): nothing new
    /// was queued.
    Duplicate {
        /// The execution the key made.
        execution: Execution,
    },
    /// Refused, as the single enqueue would refuse it; nothing was queued for it.
    Invalid {
        /// Why.
        error: ApiError,
    },
}

/// The answer to a batch: one item per item asked, in its place, and the counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// In the order of the request.
    pub items: Vec<BatchItem>,
    /// Items queued.
    pub created: usize,
    /// Items whose key was seen before.
    pub duplicates: usize,
    /// Items refused.
    pub invalid: usize,
}

/// One page of executions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionList {
    /// Newest first.
    pub executions: Vec<Execution>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<ExecutionId>,
}

/// One piece of an execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Its position in the execution's log; ask for what comes after it with `after`.
    pub seq: u64,
    /// `stdout`, `stderr`, or `system` (Panda's own lines).
    #[schema(schema_with = schema::log_stream)]
    pub stream: String,
    /// When it was read.
    pub at: DateTime<Utc>,
    /// The text (invalid UTF-8 replaced), usually one line with its newline.
    pub text: String,
}

/// A page of an execution's log, with whether more can come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    /// In order.
    pub lines: Vec<LogLine>,
    /// The execution's status when the page was read: once it is terminal and a page comes
    /// back short, the log is complete.
    pub status: Status,
}

/// The last event of a log stream: the execution ended (or the stream was asked to stop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogEnd {
    /// The execution as it ended.
    pub execution: Execution,
}

/// An alert that was raised, with where it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// Its id (UUIDv7: sorts by time).
    pub id: uuid::Uuid,
    /// The job it is about (its id: the name may be reused after a delete).
    pub job_id: crate::JobId,
    /// The job's name when it was raised.
    pub job: String,
    /// What happened.
    pub kind: crate::AlertKind,
    /// The execution it is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<ExecutionId>,
    /// One line for people.
    pub message: String,
    /// The JSON body a generic webhook receives.
    #[schema(value_type = serde_json::Value)]
    pub body: serde_json::Value,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
    /// One per notifier it goes to.
    #[serde(default)]
    pub deliveries: Vec<AlertDelivery>,
}

/// How far one alert got to one notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertDelivery {
    /// Its id.
    pub id: uuid::Uuid,
    /// What kind of endpoint.
    pub notifier: crate::NotifierKind,
    /// Where it goes.
    pub url: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: u32,
    /// When it is tried next, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the endpoint accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

pub use crate::DeliveryState;

/// A queue: how much work it holds and whether it is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// The queue's name.
    pub name: String,
    /// Queued executions due now.
    pub due: u64,
    /// Queued executions waiting for a later time (delayed runs, retries in backoff).
    pub waiting: u64,
    /// Executions running now.
    pub running: u64,
    /// When the longest-waiting due execution became due; absent when nothing is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// Whether the queue is paused: it accepts work and starts none.
    pub paused: bool,
    /// Since when it is paused; absent when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
}

/// Every queue that holds work or is paused, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    /// The queues.
    pub queues: Vec<QueueView>,
}

/// A page of alerts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// Schemas of the fields whose rule the type alone does not carry, for the OpenAPI document.
pub mod schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
    use utoipa::openapi::{AllOfBuilder, RefOr};

    use crate::validate::{ENV_NAME_PATTERN, NAME_PATTERN};

    fn string() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(Type::String)
    }

    /// A string that is one of `words`.
    pub fn one_of(words: &[&str], description: &str) -> Schema {
        string()
            .enum_values(Some(words.iter().copied()))
            .description(Some(description))
            .into()
    }

    /// A job, queue or token name: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
    pub fn name(description: &str) -> Schema {
        string()
            .pattern(Some(NAME_PATTERN))
            .min_length(Some(1))
            .max_length(Some(63))
            .description(Some(description))
            .into()
    }

    /// A process's argv: at least the program, which is not blank.
    pub fn argv() -> impl Into<RefOr<Schema>> {
        let program: Schema = string().pattern(Some("\\S")).into();
        ArrayBuilder::new()
            .items(string())
            .prefix_items([program])
            .min_items(Some(1))
            .description(Some(
                "Program and arguments; the program is not blank. No shell unless the argv \
                 says `sh -c`.",
            ))
    }

    /// Environment variables: names not empty, without `=` or NUL.
    pub fn env() -> impl Into<RefOr<Schema>> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property_names(Some(string().pattern(Some(ENV_NAME_PATTERN))))
            .additional_properties(Some(string()))
            .description(Some(
                "Environment variables by name; a name is not empty and holds no `=`.",
            ))
    }

    /// The jobs a job follows (`after`): `JOB`, `JOB:succeeded`, `JOB:failed` or `JOB:any`.
    pub fn after() -> impl Into<RefOr<Schema>> {
        let link = string()
            .pattern(Some(
                "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(:(succeeded|failed|any))?$",
            ))
            .max_length(Some(73))
            .examples(["generate-reports", "generate-reports:failed"])
            .description(Some(
                "A job this one follows, and how its run must end: `JOB` (succeeded), \
                 `JOB:failed` (dead, no attempt left) or `JOB:any`",
            ));
        ArrayBuilder::new()
            .items(link)
            .max_items(Some(crate::MAX_UPSTREAMS))
            .description(Some(
                "The jobs this one follows: a run of each that ends as its entry says queues \
                 one execution of this job, with the run's payload. Each a live job that is \
                 not a service, none twice, never itself, and no chain may lead back here.",
            ))
    }

    /// Alert endpoints: absolute http(s) URLs without spaces, or one the API showed redacted.
    pub fn webhooks() -> impl Into<RefOr<Schema>> {
        let url = AllOfBuilder::new()
            .item(string().pattern(Some("^https?://[^/\\s]\\S*$")))
            .description(Some("An http:// or https:// URL without spaces"));
        ArrayBuilder::new().items(url)
    }

    /// How a trigger request names its trigger.
    pub fn enqueue_trigger() -> impl Into<RefOr<Schema>> {
        one_of(
            &["api", "manual"],
            "`api` (the default) for an application's enqueue, `manual` for a person's trigger",
        )
    }

    /// A log line's stream.
    pub fn log_stream() -> impl Into<RefOr<Schema>> {
        one_of(
            &["stdout", "stderr", "system"],
            "`stdout`, `stderr`, or `system` (Panda's own lines)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_url_keeps_scheme_and_host_only() {
        let cases = [
            (
                "https://hooks.slack.com/services/T000/B000/XXXX",
                "https://hooks.slack.com/********",
            ),
            (
                "http://user:pass@alerts.internal:8080/hook?token=abc",
                "http://alerts.internal:8080/********",
            ),
            ("https://example.com?key=1", "https://example.com/********"),
            ("https://example.com", "https://example.com"),
            ("https://example.com/", "https://example.com/"),
            ("not a url", "********"),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
    }

    #[test]
    fn redacted_urls_are_put_back_by_place_then_by_match() {
        let stored = vec![
            "https://hooks.slack.com/services/A".to_owned(),
            "https://hooks.slack.com/services/B".to_owned(),
            "https://other.example/x".to_owned(),
        ];
        let mut incoming = vec![
            "https://hooks.slack.com/********".to_owned(),
            "https://hooks.slack.com/********".to_owned(),
            "https://new.example/hook".to_owned(),
            "https://other.example/********".to_owned(),
            "https://unknown.example/********".to_owned(),
        ];
        restore_redacted_urls(&mut incoming, &stored);
        assert_eq!(
            incoming,
            [
                "https://hooks.slack.com/services/A",
                "https://hooks.slack.com/services/B",
                "https://new.example/hook",
                "https://other.example/x",
                "https://unknown.example/********",
            ],
            "each by its place, the moved one by its host; an unknown one stays (and is refused)"
        );
        let mut spec = JobSpec::new(
            crate::JobName::new("sync").expect("a name"),
            crate::RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        spec.alerts.slack = incoming;
        let refused = redacted_endpoint_left(&spec).expect("refused");
        assert!(
            refused.contains("https://unknown.example/********"),
            "{refused}"
        );
        spec.alerts.slack.pop();
        assert_eq!(redacted_endpoint_left(&spec), None);
    }
}
