//! Durations and instants as people read them: one way each, for the CLI, the dashboard, the
//! logs and the alerts alike.
//!
//! - [`exact`] writes a setting (a timeout, a backoff, a deadline) without losing anything, in
//!   a form the duration flags read back: `30s`, `10m`, `1h 30m`, `250ms`.
//! - [`elapsed`] writes how long something ran, rounded to what matters at its size: `850ms`,
//!   `1.2s`, `45s`, `3m04s`, `2h05m`.
//! - [`relative`] writes an instant from now, in its biggest unit: `3m ago`, `in 4h`, `just now`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// A setting's duration, exactly, in the form the duration flags read back: each unit that is
/// not zero, biggest first (`1h 30m`, `45s`, `1s 500ms`; zero is `0s`).
#[must_use]
pub fn exact(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// How long something ran (a negative span reads as zero): milliseconds below a second, a
/// tenth of a second below ten seconds, whole seconds below a minute, then two units.
#[must_use]
pub fn elapsed(d: TimeDelta) -> String {
    let ms = u64::try_from(d.num_milliseconds()).unwrap_or(0);
    let secs = ms / 1000;
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..10_000 => {
            let tenths = ms / 100;
            if tenths.is_multiple_of(10) {
                format!("{secs}s")
            } else {
                format!("{}.{}s", tenths / 10, tenths % 10)
            }
        }
        _ if secs < MINUTE => format!("{secs}s"),
        _ if secs < HOUR => format!("{}m{:02}s", secs / MINUTE, secs % MINUTE),
        _ => format!("{}h{:02}m", secs / HOUR, (secs % HOUR) / MINUTE),
    }
}

/// An instant seen from `now`, in its biggest unit: `3m ago`, `in 4h`, `just now` (within
/// five seconds either way).
#[must_use]
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    if seconds.abs() < 5 {
        return "just now".to_owned();
    }
    let amount = biggest_unit(seconds.unsigned_abs());
    if seconds < 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// The biggest unit only, rounded down: `42s`, `3m`, `4h`, `2d`.
fn biggest_unit(secs: u64) -> String {
    match secs {
        s if s < MINUTE => format!("{s}s"),
        s if s < HOUR => format!("{}m", s / MINUTE),
        s if s < DAY => format!("{}h", s / HOUR),
        s => format!("{}d", s / DAY),
    }
}

/// A job's overlap rule in words: `forbid`, `allow, at most 3 running`, `allow, at most 1
/// running per payload.customer_id`.
pub fn concurrency(spec: &crate::JobSpec) -> String {
    match (spec.max_running, &spec.concurrency_key) {
        (Some(n), Some(key)) => format!(
            "{}, at most {n} running per {key}",
            spec.concurrency.as_str()
        ),
        (Some(n), None) => format!("{}, at most {n} running", spec.concurrency.as_str()),
        (None, _) => spec.concurrency.as_str().to_owned(),
    }
}

/// A job's rate limit in words: `100 starts per 1m`, `5 starts per 1s per payload.customer_id`;
/// `None` without one.
pub fn rate_limit(spec: &crate::JobSpec) -> Option<String> {
    let limit = spec.rate_limit.as_ref()?;
    let per = exact(limit.per);
    Some(match &limit.key {
        Some(key) => format!("{} starts per {per} per {key}", limit.starts),
        None => format!("{} starts per {per}", limit.starts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_written_exactly_and_read_back() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(93_784), "1day 2h 3m 4s"),
            (Duration::from_nanos(1), "1ns"),
        ];
        for (d, text) in cases {
            assert_eq!(exact(d), text, "{d:?}");
            assert_eq!(
                humantime::parse_duration(text).expect("the flags read it"),
                d,
                "{text} reads back"
            );
        }
    }

    #[test]
    fn elapsed_time_is_rounded_to_its_size() {
        let ms = TimeDelta::milliseconds;
        assert_eq!(elapsed(ms(-5)), "0ms");
        assert_eq!(elapsed(ms(850)), "850ms");
        assert_eq!(elapsed(ms(1_234)), "1.2s");
        assert_eq!(elapsed(ms(2_000)), "2s");
        assert_eq!(elapsed(ms(45_900)), "45s");
        assert_eq!(elapsed(ms(184_000)), "3m04s");
        assert_eq!(elapsed(ms(7_500_000)), "2h05m");
    }

    #[test]
    fn instants_are_relative_to_now() {
        let now = Utc::now();
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - TimeDelta::seconds(4), now), "just now");
        assert_eq!(relative(now - TimeDelta::seconds(42), now), "42s ago");
        assert_eq!(relative(now - TimeDelta::minutes(3), now), "3m ago");
        assert_eq!(relative(now + TimeDelta::hours(4), now), "in 4h");
        assert_eq!(relative(now - TimeDelta::days(2), now), "2d ago");
    }
}
