//! What a notifier receives. The generic webhook's body is made once, when the alert is
//! raised, and stored with it, so every delivery of one alert sends the same bytes; a Slack
//! message is made from the alert and that stored body at each delivery.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use panda_core::{AlertKind, Execution, ExecutionId, Job};
use panda_store::AlertRecord;
use serde::{Deserialize, Serialize};

/// The JSON a generic webhook receives.
#[derive(Debug, Serialize)]
pub(super) struct WebhookBody<'a> {
    /// What happened: the alert's kind (`dead`, `missed`, `recovered`, …).
    event: &'static str,
    /// The job's name.
    job: &'a str,
    /// The alert's one line for people.
    message: &'a str,
    /// When the alert was raised.
    at: DateTime<Utc>,
    /// The execution it is about, when there is one.
    execution: Option<WebhookExecution<'a>>,
    /// The last lines of that execution's log.
    log_tail: &'a [String],
    /// The execution's page on the dashboard (the job's, without an execution), when the
    /// dashboard's address is known.
    dashboard_url: Option<String>,
}

/// The execution in a [`WebhookBody`].
#[derive(Debug, Serialize)]
struct WebhookExecution<'a> {
    id: ExecutionId,
    status: &'static str,
    attempt: u32,
    trigger: &'static str,
    scheduled_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    /// From start to finish, once both are known.
    duration_ms: Option<i64>,
    exit_code: Option<i32>,
    reason: Option<&'a str>,
}

impl<'a> WebhookBody<'a> {
    /// The body of an alert about `job` (and `execution`), raised `at`; `dashboard` is the
    /// dashboard's base URL.
    pub(super) fn new(
        job: &'a Job,
        kind: AlertKind,
        execution: Option<&'a Execution>,
        message: &'a str,
        log_tail: &'a [String],
        dashboard: Option<&str>,
        at: DateTime<Utc>,
    ) -> Self {
        let dashboard = dashboard.map(|d| d.trim_end_matches('/'));
        let dashboard_url = match (dashboard, execution) {
            (Some(base), Some(e)) => Some(format!("{base}/executions/{}", e.id)),
            (Some(base), None) => Some(format!("{base}/jobs/{}", job.spec.name)),
            (None, _) => None,
        };
        Self {
            event: kind.as_str(),
            job: job.spec.name.as_str(),
            message,
            at,
            execution: execution.map(|e| WebhookExecution {
                id: e.id,
                status: e.status.as_str(),
                attempt: e.attempt,
                trigger: e.trigger.as_str(),
                scheduled_at: e.scheduled_at,
                started_at: e.started_at,
                finished_at: e.finished_at,
                duration_ms: e
                    .started_at
                    .zip(e.finished_at)
                    .map(|(s, f)| (f - s).num_milliseconds()),
                exit_code: e.exit_code,
                reason: e.reason.as_deref(),
            }),
            log_tail,
            dashboard_url,
        }
    }

    /// The body as the alert stores it.
    pub(super) fn to_value(&self) -> serde_json::Value {
        // Strings, numbers, instants and ids only: nothing here can fail to serialize.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The JSON a Slack-compatible webhook receives.
#[derive(Debug, Serialize)]
pub(super) struct SlackBody {
    /// The message, in Slack's markup.
    text: String,
}

/// What a Slack message repeats of an alert's stored webhook body; a body without them (or
/// not of this shape) gives a message without a link or log lines.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Stored {
    dashboard_url: Option<String>,
    log_tail: Vec<String>,
}

impl SlackBody {
    /// The message for `alert`: an icon, its kind and message, a link to the dashboard and
    /// the log's last lines.
    pub(super) fn of(alert: &AlertRecord) -> Self {
        let icon = match alert.kind {
            AlertKind::Recovered => ":white_check_mark:",
            AlertKind::Late | AlertKind::LongRunning => ":warning:",
            _ => ":x:",
        };
        let stored = Stored::deserialize(&alert.body).unwrap_or_default();
        let mut text = format!("{icon} *{}* {}", alert.kind, alert.message);
        if let Some(link) = stored.dashboard_url {
            let _ = write!(text, "\n<{link}|Open in Panda>");
        }
        if !stored.log_tail.is_empty() {
            let _ = write!(text, "\n```{}```", stored.log_tail.join("\n"));
        }
        Self { text }
    }
}

#[cfg(test)]
mod tests {
    use panda_core::{
        ConcurrencyPolicy, JobId, JobName, JobSpec, RetryPolicy, RuntimeSpec, Status, Trigger,
    };

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("an RFC 3339 instant")
    }

    /// A job whose third attempt of a run failed with exit code 3, and that attempt.
    fn failed_run() -> (Job, Execution) {
        let job_id: JobId = "01900000-0000-7000-8000-000000000001".parse().expect("id");
        let job = Job {
            id: job_id,
            spec: JobSpec::new(
                JobName::new("reports").expect("name"),
                RuntimeSpec::Process {
                    argv: vec!["true".into()],
                },
            ),
            created_at: at("2026-03-01T11:00:00Z"),
            updated_at: at("2026-03-01T11:00:00Z"),
        };
        let id: ExecutionId = "01900000-0000-7000-8000-000000000003".parse().expect("id");
        let execution = Execution {
            id,
            root_id: "01900000-0000-7000-8000-000000000002".parse().expect("id"),
            job_id,
            job_name: "reports".into(),
            queue: "default".into(),
            priority: 0,
            status: Status::Dead,
            trigger: Trigger::Retry,
            attempt: 3,
            retry: RetryPolicy::triggered_default(),
            concurrency: ConcurrencyPolicy::Allow,
            max_running: None,
            concurrency_key: None,
            idempotency_key: None,
            payload: None,
            env: std::collections::BTreeMap::new(),
            scheduled_at: Some(at("2026-03-01T12:00:00Z")),
            run_at: at("2026-03-01T12:00:00Z"),
            created_at: at("2026-03-01T12:00:00Z"),
            started_at: Some(at("2026-03-01T12:00:01Z")),
            finished_at: Some(at("2026-03-01T12:00:03.250Z")),
            worker_id: Some("w1".into()),
            lease_expires_at: None,
            cancel_requested: false,
            exit_code: Some(3),
            reason: Some("disk full".into()),
            image_digest: None,
            instance: None,
            revision: None,
            healthy_at: None,
        };
        (job, execution)
    }

    fn alert(kind: AlertKind, message: &str, body: serde_json::Value) -> AlertRecord {
        AlertRecord {
            id: ExecutionId::new().into(),
            job_id: JobId::new(),
            job: "reports".into(),
            kind,
            execution_id: None,
            message: message.into(),
            body,
            created_at: at("2026-03-01T12:00:05Z"),
            deliveries: Vec::new(),
        }
    }

    /// Pins `body` to `expected`: its fields in this order (the server's build keeps JSON
    /// objects in insertion order), and what the alert stores, whatever the order.
    fn assert_body(body: &WebhookBody<'_>, expected: &str) -> serde_json::Value {
        assert_eq!(serde_json::to_string(body).expect("JSON"), expected);
        let stored = body.to_value();
        assert_eq!(
            stored,
            serde_json::from_str::<serde_json::Value>(expected).expect("JSON")
        );
        stored
    }

    #[test]
    fn an_alert_about_an_execution_has_these_webhook_and_slack_bodies() {
        let (job, execution) = failed_run();
        let message = "reports: gave up after attempt 3 (exited with code 3: disk full); the run is in the dead-letter queue";
        let log_tail = ["line one".to_owned(), "line two".to_owned()];
        let body = WebhookBody::new(
            &job,
            AlertKind::Dead,
            Some(&execution),
            message,
            &log_tail,
            Some("http://panda.example/"),
            at("2026-03-01T12:00:05Z"),
        );
        let body = assert_body(
            &body,
            concat!(
                r#"{"event":"dead","job":"reports","#,
                r#""message":"reports: gave up after attempt 3 (exited with code 3: disk full); the run is in the dead-letter queue","#,
                r#""at":"2026-03-01T12:00:05Z","#,
                r#""execution":{"id":"01900000-0000-7000-8000-000000000003","status":"dead","attempt":3,"#,
                r#""trigger":"retry","scheduled_at":"2026-03-01T12:00:00Z","started_at":"2026-03-01T12:00:01Z","#,
                r#""finished_at":"2026-03-01T12:00:03.250Z","duration_ms":2250,"exit_code":3,"reason":"disk full"},"#,
                r#""log_tail":["line one","line two"],"#,
                r#""dashboard_url":"http://panda.example/executions/01900000-0000-7000-8000-000000000003"}"#,
            ),
        );
        let slack = SlackBody::of(&alert(AlertKind::Dead, message, body));
        assert_eq!(
            serde_json::to_string(&slack).expect("JSON"),
            concat!(
                r#"{"text":":x: *dead* reports: gave up after attempt 3 (exited with code 3: disk full); "#,
                r#"the run is in the dead-letter queue\n<http://panda.example/executions/01900000-0000-7000-8000-000000000003|Open in Panda>"#,
                r#"\n```line one\nline two```"}"#,
            )
        );
    }

    #[test]
    fn an_alert_without_an_execution_or_a_dashboard_has_these_webhook_and_slack_bodies() {
        let (job, _) = failed_run();
        let message = "reports: the run due at 2026-03-01 12:00:00 UTC did not happen";
        let body = WebhookBody::new(
            &job,
            AlertKind::Missed,
            None,
            message,
            &[],
            None,
            at("2026-03-01T12:05:00Z"),
        );
        let body = assert_body(
            &body,
            concat!(
                r#"{"event":"missed","job":"reports","#,
                r#""message":"reports: the run due at 2026-03-01 12:00:00 UTC did not happen","#,
                r#""at":"2026-03-01T12:05:00Z","execution":null,"log_tail":[],"dashboard_url":null}"#,
            ),
        );
        let slack = SlackBody::of(&alert(AlertKind::Missed, message, body));
        assert_eq!(
            serde_json::to_string(&slack).expect("JSON"),
            r#"{"text":":x: *missed* reports: the run due at 2026-03-01 12:00:00 UTC did not happen"}"#
        );
        let late = SlackBody::of(&alert(
            AlertKind::Late,
            "reports: late",
            serde_json::json!({}),
        ));
        assert_eq!(
            serde_json::to_string(&late).expect("JSON"),
            r#"{"text":":warning: *late* reports: late"}"#
        );
    }
}
