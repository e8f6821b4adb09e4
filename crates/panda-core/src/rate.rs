//! Rate limits: at most so many starts of a job (or of one key of it) in any window of time,
//! across every node.
//!
//! The limit is a sliding log: the store keeps each start with the instant it leaves the
//! window, and a claim starts an execution only while fewer than `starts` are in it. That is
//! the one of the three usual algorithms that keeps the promise as it is written, "never more
//! than N starts in any window": a fixed window lets 2N through across its boundary (N at its
//! end, N at the next one's start), and a token bucket of N refilled over the window lets
//! about 2N−1 (a full bucket, then the refill). A log costs a row per start for one window;
//! Panda's starts are few enough (each runs a process or a container) for that to be cheap.
//!
//! An execution over the limit is not failed: it waits, its `run_at` moved to the instant a
//! start leaves the window and its reason saying so ("rate limited until 12:01:07 UTC").

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::{KeyExpr, duration_ms};
use crate::validate::ValidationError;

/// The most starts a rate limit allows per window.
pub const MAX_RATE_STARTS: u32 = 100_000;

/// The shortest window of a rate limit.
pub const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);

/// The longest window of a rate limit: 31 days.
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);

/// At most `starts` executions start in any window of `per`, across every node: of the job as
/// a whole, or of each key when `key` is set. Read as `100/1m` on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// The most starts in one window; from 1 to 100,000.
    #[schema(minimum = 1, maximum = 100_000, example = 100)]
    pub starts: u32,
    /// The window (milliseconds); from 1 s to 31 days.
    #[serde(with = "duration_ms", rename = "per_ms")]
    #[schema(value_type = u64, minimum = 1000, maximum = 2_678_400_000_u64, example = 60_000)]
    pub per: Duration,
    /// When set, the limit holds per key: `payload.FIELD` (a dotted path), `env.NAME` or
    /// `idempotency_key`, read from each execution as it starts; one without the field has the
    /// empty key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "payload.customer_id",
        pattern = "^(payload(\\.[^.]+)+|env\\.[A-Za-z_][A-Za-z0-9_]*|idempotency_key)$"
    )]
    pub key: Option<String>,
}

impl RateLimit {
    /// `starts` per `per`, for the job as a whole.
    pub fn new(starts: u32, per: Duration) -> Self {
        Self {
            starts,
            per,
            key: None,
        }
    }

    /// Checks the bounds and the key.
    ///
    /// # Errors
    ///
    /// A `rate_limit` (or `rate_limit_key`) field error that says what to write instead.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=MAX_RATE_STARTS).contains(&self.starts) {
            return Err(ValidationError::Field {
                field: "rate_limit",
                message: format!(
                    "allows {} starts per window; allow from 1 to {MAX_RATE_STARTS}, such as \
                     100/1m",
                    self.starts
                ),
            });
        }
        if !(MIN_RATE_WINDOW..=MAX_RATE_WINDOW).contains(&self.per) {
            return Err(ValidationError::Field {
                field: "rate_limit",
                message: format!(
                    "has a window of {}; use from 1s to 31d, such as 100/1m",
                    crate::human::exact(self.per)
                ),
            });
        }
        if let Some(key) = &self.key {
            KeyExpr::parse_as("rate_limit_key", key)?;
        }
        Ok(())
    }

    /// The key expression, parsed (`None`: the job as a whole, or a key that does not parse,
    /// which validation refuses).
    pub fn key_expr(&self) -> Option<KeyExpr> {
        KeyExpr::parse(self.key.as_deref()?).ok()
    }

    /// What an execution over the limit says while it waits until `until`.
    pub fn waiting_reason(&self, key: &str, until: DateTime<Utc>) -> String {
        let whose = match &self.key {
            Some(_) => format!("key {key:?}"),
            None => "its job".to_owned(),
        };
        format!(
            "rate limited until {} UTC: {whose} has started {} in the last {}, its limit",
            until.format("%H:%M:%S"),
            self.starts,
            crate::human::exact(self.per),
        )
    }
}

/// `100/1m`: starts, a slash, the window (`1m`, `30s`, `1h`; a bare unit is one of it, so
/// `100/m` is `100/1m`).
impl FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let form = |why: &str| {
            format!(
                "{text:?} {why}; write STARTS/WINDOW, such as 100/1m (100 starts a minute) or \
                 5/1s"
            )
        };
        let (starts, per) = text.split_once('/').ok_or_else(|| form("is not a rate"))?;
        let starts: u32 = starts
            .trim()
            .parse()
            .map_err(|_| form("does not start with a number of starts"))?;
        let per = per.trim();
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
            humantime::parse_duration(per)
        } else {
            humantime::parse_duration(&format!("1{per}"))
        }
        .map_err(|_| form("does not end with a window"))?;
        let limit = Self::new(starts, per);
        limit.validate().map_err(|err| match err {
            ValidationError::Field { message, .. } => format!("{text:?} {message}"),
            other => other.to_string(),
        })?;
        Ok(limit)
    }
}

/// `100/1m`, as [`RateLimit::from_str`] reads it back (the key is not part of it).
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.starts,
            crate::human::exact(self.per).replace(' ', "")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_starts_per_window_and_reads_back_as_it_is_written() {
        for (text, starts, secs) in [
            ("100/1m", 100, 60),
            ("5/1s", 5, 1),
            ("100/m", 100, 60),
            ("3/1h", 3, 3600),
            ("10 / 30s", 10, 30),
        ] {
            let limit: RateLimit = text.parse().expect(text);
            assert_eq!(
                (limit.starts, limit.per),
                (starts, Duration::from_secs(secs))
            );
            let again: RateLimit = limit.to_string().parse().expect("reads back");
            assert_eq!(again, limit);
        }
        let odd: RateLimit = "7/1h30m".parse().expect("two units");
        assert_eq!(odd.to_string(), "7/1h30m");
    }

    #[test]
    fn a_zero_malformed_or_out_of_range_rate_is_refused_with_the_form() {
        for bad in [
            "0/1m", "abc", "100", "100/", "/1m", "x/1m", "100/1q", "5/500ms", "5/32d",
        ] {
            let err = bad.parse::<RateLimit>().expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
            assert!(
                err.contains("100/1m") || err.contains("1s to 31d"),
                "{bad}: {err}"
            );
        }
        let too_many = RateLimit::new(MAX_RATE_STARTS + 1, Duration::from_secs(1));
        assert!(too_many.validate().is_err());
    }

    #[test]
    fn a_bad_key_is_refused_as_the_rate_limit_key() {
        let mut limit = RateLimit::new(1, Duration::from_secs(1));
        limit.key = Some("customer".into());
        let err = limit.validate().expect_err("not a key").to_string();
        assert!(err.contains("rate_limit_key"), "{err}");
        limit.key = Some("payload.customer".into());
        assert_eq!(limit.validate(), Ok(()));
        assert_eq!(
            limit.key_expr(),
            Some(KeyExpr::Payload(vec!["customer".into()]))
        );
    }

    #[test]
    fn the_waiting_reason_names_the_key_the_instant_and_the_limit() {
        let mut limit = RateLimit::new(100, Duration::from_secs(60));
        let until = DateTime::parse_from_rfc3339("2026-12-04T12:01:07.400Z")
            .expect("instant")
            .with_timezone(&Utc);
        assert_eq!(
            limit.waiting_reason("", until),
            "rate limited until 12:01:07 UTC: its job has started 100 in the last 1m, its limit"
        );
        limit.key = Some("payload.customer".into());
        assert_eq!(
            limit.waiting_reason("acme", until),
            "rate limited until 12:01:07 UTC: key \"acme\" has started 100 in the last 1m, its \
             limit"
        );
    }
}
