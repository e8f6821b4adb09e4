//! How the dashboard shows values: statuses with their symbol, times relative to now, short
//! durations, schedules in words, and the small SVG charts (drawn here, on the server).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use panda_core::{Execution, Status, human};
use panda_store::ExecutionBrief;

/// A status as the dashboard shows it: a symbol and the word (never colour alone), and the CSS
/// class that colours both.
#[derive(Debug, Clone)]
pub(crate) struct StatusView {
    /// `✓`, `✗`, `⏱`, `●`, `○`, `☠`, `–`.
    pub symbol: &'static str,
    /// The status's word.
    pub word: &'static str,
    /// `s-succeeded`, `s-failed`, …
    pub class: String,
}

impl StatusView {
    pub(crate) fn of(status: Status) -> Self {
        let symbol = match status {
            Status::Succeeded => "✓",
            Status::Failed | Status::Lost => "✗",
            Status::TimedOut => "⏱",
            Status::Running => "●",
            Status::Queued => "○",
            Status::Dead => "☠",
            Status::Cancelled => "⊘",
            Status::Skipped => "–",
        };
        Self {
            symbol,
            word: status.as_str(),
            class: format!("s-{}", status.as_str()),
        }
    }
}

/// An instant as UTC, to the second: `2026-11-29 05:00:00 UTC`.
pub(crate) fn absolute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How long an execution ran (so far, while it runs), if it started.
pub(crate) fn ran_for(execution: &Execution, now: DateTime<Utc>) -> Option<chrono::TimeDelta> {
    let started = execution.started_at?;
    Some(execution.finished_at.unwrap_or(now) - started)
}

/// A schedule in words where it is a common shape (`every day at 05:00`, `every 5 minutes`),
/// else `None` (the page then shows the expression alone).
pub(crate) fn schedule_in_words(cron: &str) -> Option<String> {
    let macro_words = match cron.trim() {
        "@yearly" | "@annually" => Some("every year on 1 January at 00:00"),
        "@monthly" => Some("every month on the 1st at 00:00"),
        "@weekly" => Some("every Sunday at 00:00"),
        "@daily" | "@midnight" => Some("every day at 00:00"),
        "@hourly" => Some("every hour, on the hour"),
        _ => None,
    };
    if let Some(words) = macro_words {
        return Some(words.to_owned());
    }
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let (second, rest) = match fields.len() {
        5 => (None, &fields[..]),
        6 => (Some(fields[0]), &fields[1..]),
        _ => return None,
    };
    let [minute, hour, dom, month, dow] = rest else {
        return None;
    };
    let every_day = *dom == "*" && *month == "*";
    let number = |field: &str, max: u32| field.parse::<u32>().ok().filter(|n| *n <= max);
    let step = |field: &str| {
        field
            .strip_prefix("*/")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n > 0)
    };
    let plural = |n: u32, unit: &str| {
        if n == 1 {
            format!("every {unit}")
        } else {
            format!("every {n} {unit}s")
        }
    };
    match second {
        None | Some("0") => {}
        Some(s) => {
            return (*minute == "*" && *hour == "*" && every_day && *dow == "*")
                .then(|| match s {
                    "*" => Some("every second".to_owned()),
                    s => step(s).map(|n| plural(n, "second")),
                })
                .flatten();
        }
    }
    if !every_day {
        return None;
    }
    let day = match *dow {
        "*" => "every day".to_owned(),
        "1-5" | "MON-FRI" | "mon-fri" => "every weekday".to_owned(),
        d => format!("every {}", weekday(d)?),
    };
    match (*minute, *hour) {
        ("*", "*") if *dow == "*" => Some("every minute".to_owned()),
        (m, "*") if *dow == "*" => match (step(m), number(m, 59)) {
            (Some(n), _) => Some(plural(n, "minute")),
            (_, Some(0)) => Some("every hour, on the hour".to_owned()),
            (_, Some(m)) => Some(format!("every hour at :{m:02}")),
            _ => None,
        },
        (m, h) if *dow == "*" && step(h).is_some() => {
            let m = number(m, 59)?;
            let n = step(h)?;
            Some(format!("{} at :{m:02}", plural(n, "hour")))
        }
        (m, h) => {
            let (m, h) = (number(m, 59)?, number(h, 23)?);
            Some(format!("{day} at {h:02}:{m:02}"))
        }
    }
}

fn weekday(field: &str) -> Option<&'static str> {
    Some(match field.to_ascii_uppercase().as_str() {
        "0" | "7" | "SUN" => "Sunday",
        "1" | "MON" => "Monday",
        "2" | "TUE" => "Tuesday",
        "3" | "WED" => "Wednesday",
        "4" | "THU" => "Thursday",
        "5" | "FRI" => "Friday",
        "6" | "SAT" => "Saturday",
        _ => return None,
    })
}

/// Escapes text for an SVG `<title>`.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The strip of a job's recent executions: one square each, oldest on the left, coloured by
/// status, as tall as its run was long (relative to the longest in the strip), with a tooltip.
pub(crate) fn strip_svg(recent: &[ExecutionBrief], now: DateTime<Utc>, slots: usize) -> String {
    const W: usize = 7;
    const GAP: usize = 2;
    const H: f64 = 20.0;
    let width = slots * (W + GAP);
    let lengths: Vec<Option<i64>> = recent
        .iter()
        .map(|e| {
            e.started_at
                .map(|s| (e.finished_at.unwrap_or(now) - s).num_milliseconds().max(0))
        })
        .collect();
    let longest = lengths.iter().flatten().copied().max().unwrap_or(0).max(1);
    let mut svg = String::with_capacity(recent.len() * 200 + 200);
    let _ = write!(
        svg,
        r#"<svg class="strip" width="{width}" height="{H}" viewBox="0 0 {width} {H}" role="img" aria-label="last {} executions">"#,
        recent.len()
    );
    // `recent` is newest first; the newest goes on the right.
    let offset = slots.saturating_sub(recent.len());
    for (i, (e, length)) in recent.iter().zip(&lengths).rev().enumerate() {
        let x = (offset + i) * (W + GAP);
        let height = match length {
            Some(ms) => (3.0 + (H - 3.0) * (*ms as f64 / longest as f64)).round(),
            None => 3.0,
        };
        let y = H - height;
        let took = length
            .map(|ms| format!(", {}", human::elapsed(chrono::TimeDelta::milliseconds(ms))))
            .unwrap_or_default();
        // Kept short: a thousand jobs draw thirty thousand of these (the width is in the CSS;
        // the job page and its history link to each execution).
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{y}" height="{height}" class="s-{status}"><title>{status}{took}, {trigger}, {when}</title></rect>"#,
            status = e.status.as_str(),
            trigger = e.trigger.as_str(),
            when = escape(&human::relative(e.created_at, now)),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A bar chart of how long the given executions ran, oldest on the left.
pub(crate) fn duration_chart_svg(executions: &[Execution], now: DateTime<Utc>) -> Option<String> {
    let bars: Vec<(&Execution, i64)> = executions
        .iter()
        .rev()
        .filter_map(|e| ran_for(e, now).map(|d| (e, d.num_milliseconds().max(0))))
        .collect();
    if bars.is_empty() {
        return None;
    }
    const W: f64 = 600.0;
    const H: f64 = 80.0;
    let longest = bars.iter().map(|(_, ms)| *ms).max().unwrap_or(1).max(1);
    // At least 50 slots, so that a short history does not draw a wall of wide bars.
    let step = W / bars.len().max(50) as f64;
    let bar = (step * 0.8).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {}" preserveAspectRatio="none" role="img" aria-label="duration of the last {} runs; the longest took {}">"#,
        H + 2.0,
        bars.len(),
        human::elapsed(chrono::TimeDelta::milliseconds(longest))
    );
    for (i, (e, ms)) in bars.iter().enumerate() {
        let height = (2.0 + (H - 2.0) * (*ms as f64 / longest as f64)).round();
        let _ = write!(
            svg,
            r#"<a href="/executions/{id}"><rect x="{x:.1}" y="{y}" width="{bar:.1}" height="{height}" class="s-{status}"><title>{took}, {status}, {when}</title></rect></a>"#,
            id = e.id,
            x = i as f64 * step,
            y = H - height,
            status = e.status.as_str(),
            took = human::elapsed(chrono::TimeDelta::milliseconds(*ms)),
            when = escape(&absolute(e.created_at)),
        );
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_schedules_read_as_words() {
        let cases = [
            ("0 5 * * *", Some("every day at 05:00")),
            ("30 2 * * 1", Some("every Monday at 02:30")),
            ("0 9 * * 1-5", Some("every weekday at 09:00")),
            ("*/5 * * * *", Some("every 5 minutes")),
            ("* * * * *", Some("every minute")),
            ("15 * * * *", Some("every hour at :15")),
            ("0 */2 * * *", Some("every 2 hours at :00")),
            ("*/10 * * * * *", Some("every 10 seconds")),
            ("@daily", Some("every day at 00:00")),
            ("0 5 1 * *", None),
            ("nonsense", None),
        ];
        for (cron, words) in cases {
            assert_eq!(schedule_in_words(cron).as_deref(), words, "{cron}");
        }
    }
}
