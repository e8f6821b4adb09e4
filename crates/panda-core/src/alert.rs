//! Alerts: what a job says about being watched, the events that raise an alert, and the
//! incident rule.
//!
//! An incident is "this job is unhealthy". The first event of an incident raises one alert;
//! every later event of the same incident is folded into it, until the first success after it
//! raises a `recovered` alert and closes it. So a job that fails on every retry alerts once, not
//! once per attempt.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::job::duration_ms_opt;

/// How late a cron slot may start before it counts as late, when the job does not say.
pub const DEFAULT_LATE_AFTER: Duration = Duration::from_secs(300);

/// The longest `late_after` a job may set: 7 days.
pub const MAX_LATE_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// How a job is watched. Every field is optional: an empty policy alerts on the first failed
/// attempt, on a dead execution and on a late or missed cron slot, to the server's notifiers.
///
/// The API shows an endpoint's path and credentials as `********` (`https://hooks.slack.com/********`);
/// sent back so, it keeps the stored URL it stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertPolicy {
    /// Generic JSON webhooks to call (http:// or https:// URLs); none means the server's
    /// defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = crate::api::schema::webhooks)]
    pub webhooks: Vec<String>,
    /// Slack-compatible incoming webhooks to post to; none means the server's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = crate::api::schema::webhooks)]
    pub slack: Vec<String>,
    /// Alert only once this many attempts in a row have failed (timed out, died); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub after_failures: Option<u32>,
    /// Alert when an execution is still running this long after it started; at most 30 days.
    #[serde(
        default,
        with = "duration_ms_opt",
        rename = "running_longer_than_ms",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2_592_000_000_u64)]
    pub running_longer_than: Option<Duration>,
    /// A cron slot that has not started this long after its time is late; default 5 minutes,
    /// at most 7 days.
    #[serde(
        default,
        with = "duration_ms_opt",
        rename = "late_after_ms",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>, minimum = 1000, maximum = 604_800_000_u64)]
    pub late_after: Option<Duration>,
}

impl AlertPolicy {
    /// The most consecutive failures a threshold may ask for.
    pub const MAX_AFTER_FAILURES: u32 = 1000;

    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Attempts that must fail in a row before an alert.
    pub fn threshold(&self) -> u32 {
        self.after_failures.unwrap_or(1).max(1)
    }

    /// How late a slot may start.
    pub fn late_after(&self) -> Duration {
        self.late_after.unwrap_or(DEFAULT_LATE_AFTER)
    }

    /// Checks the URLs and numbers.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for url in self.webhooks.iter().chain(&self.slack) {
            validate_webhook_url(url)?;
        }
        if let Some(n) = self.after_failures
            && !(1..=Self::MAX_AFTER_FAILURES).contains(&n)
        {
            return Err(ValidationError::Field {
                field: "alert_after_failures",
                message: format!("{n} is out of range 1-{}", Self::MAX_AFTER_FAILURES),
            });
        }
        if self.running_longer_than.is_some_and(|d| d.is_zero()) {
            return Err(ValidationError::Field {
                field: "alert_running_longer_than",
                message: "must be longer than zero, such as 30m".into(),
            });
        }
        if self.late_after.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err(ValidationError::Field {
                field: "alert_late_after",
                message: "must be at least 1s, such as 5m".into(),
            });
        }
        if let Some(limit) = self.running_longer_than {
            crate::validate_at_most("alert_running_longer_than", limit, crate::job::MAX_TIMEOUT)?;
        }
        if let Some(late) = self.late_after {
            crate::validate_at_most("alert_late_after", late, MAX_LATE_AFTER)?;
        }
        Ok(())
    }
}

/// A webhook URL must be absolute http(s), without spaces.
pub fn validate_webhook_url(url: &str) -> Result<(), ValidationError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(ValidationError::Field {
            field: "webhook",
            message: format!("{url:?} is not an http:// or https:// URL"),
        }),
    }
}

/// What happened, as an alert names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An attempt failed.
    Failed,
    /// An attempt ran out of time.
    TimedOut,
    /// A run used up its attempts and is in the dead-letter queue.
    Dead,
    /// Several attempts in a row failed (the job's threshold).
    ConsecutiveFailures,
    /// A cron slot did not run.
    Missed,
    /// A cron slot started late, or has not started yet.
    Late,
    /// An execution runs longer than the job allows.
    LongRunning,
    /// A service's instance keeps exiting: restarted `CRASH_LOOP_RESTARTS` times in a row
    /// without a healthy run.
    CrashLoop,
    /// The first success after an alert.
    Recovered,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [Self; 9] = [
        Self::Failed,
        Self::TimedOut,
        Self::Dead,
        Self::ConsecutiveFailures,
        Self::Missed,
        Self::Late,
        Self::LongRunning,
        Self::CrashLoop,
        Self::Recovered,
    ];

    /// The lower-case word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Dead => "dead",
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::Missed => "missed",
            Self::Late => "late",
            Self::LongRunning => "long_running",
            Self::CrashLoop => "crash_loop",
            Self::Recovered => "recovered",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown alert kind {s:?}"))
    }
}

/// Where an alert goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// A generic JSON webhook, optionally signed.
    Webhook,
    /// A Slack-compatible incoming webhook.
    Slack,
}

impl NotifierKind {
    /// The lower-case word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
        }
    }
}

impl FromStr for NotifierKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webhook" => Ok(Self::Webhook),
            "slack" => Ok(Self::Slack),
            other => Err(format!("unknown notifier {other:?}")),
        }
    }
}

/// The alert an incident opens with, given the attempt that reached the threshold, or `None`
/// while fewer than `threshold` attempts in a row have failed.
///
/// `recent` holds the job's latest finished attempts that count (succeeded, failed, timed out,
/// dead), newest first; the first is the one being judged.
pub fn failure_alert(recent: &[crate::Status], threshold: u32) -> Option<AlertKind> {
    use crate::Status;
    let threshold = usize::try_from(threshold.max(1)).unwrap_or(usize::MAX);
    let failing = |s: &Status| matches!(s, Status::Failed | Status::TimedOut | Status::Dead);
    let streak = recent.iter().take_while(|s| failing(s)).count();
    if streak < threshold {
        return None;
    }
    Some(match recent.first()? {
        Status::Dead => AlertKind::Dead,
        _ if threshold > 1 => AlertKind::ConsecutiveFailures,
        Status::TimedOut => AlertKind::TimedOut,
        _ => AlertKind::Failed,
    })
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; tried again at `next_attempt_at`.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed; given up.
    Failed,
}

impl DeliveryState {
    /// The lower-case word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(format!("unknown delivery state {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status::{Dead, Failed, Succeeded, TimedOut};

    #[test]
    fn failure_alert_waits_for_the_threshold() {
        assert_eq!(failure_alert(&[Failed], 1), Some(AlertKind::Failed));
        assert_eq!(failure_alert(&[TimedOut], 1), Some(AlertKind::TimedOut));
        assert_eq!(failure_alert(&[Dead, Failed], 1), Some(AlertKind::Dead));
        assert_eq!(failure_alert(&[Failed, Failed], 3), None);
        assert_eq!(failure_alert(&[Failed, Failed, Succeeded, Failed], 3), None);
        assert_eq!(
            failure_alert(&[Failed, TimedOut, Failed], 3),
            Some(AlertKind::ConsecutiveFailures)
        );
        assert_eq!(
            failure_alert(&[Dead, Failed, Failed], 3),
            Some(AlertKind::Dead)
        );
        assert_eq!(failure_alert(&[Succeeded, Failed], 1), None);
        assert_eq!(failure_alert(&[], 1), None);
    }

    #[test]
    fn policy_validation_names_the_field() {
        let bad = AlertPolicy {
            webhooks: vec!["ftp://x".into()],
            ..AlertPolicy::default()
        };
        assert!(
            bad.validate()
                .expect_err("refused")
                .to_string()
                .contains("ftp://x")
        );
        let bad = AlertPolicy {
            after_failures: Some(0),
            ..AlertPolicy::default()
        };
        assert!(
            bad.validate()
                .expect_err("refused")
                .to_string()
                .contains("alert_after_failures")
        );
        let good = AlertPolicy {
            webhooks: vec!["https://hooks.example.com/x".into()],
            slack: vec!["http://127.0.0.1:9/services/T/B/C".into()],
            after_failures: Some(3),
            running_longer_than: Some(Duration::from_secs(60)),
            late_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(good.validate(), Ok(()));
        let json = serde_json::to_value(&good).expect("serializes");
        assert_eq!(json["running_longer_than_ms"], 60_000);
        let back: AlertPolicy = serde_json::from_value(json).expect("parses");
        assert_eq!(back, good);
    }

    #[test]
    fn kinds_round_trip_through_their_words() {
        for kind in AlertKind::ALL {
            assert_eq!(kind.as_str().parse::<AlertKind>(), Ok(kind));
        }
    }
}
