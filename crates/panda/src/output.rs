//! How the CLI prints: `kubectl`-like tables for a terminal, JSON for machines, statuses with a
//! symbol that survives `NO_COLOR`, relative times and short durations (both from `panda_core::human`).

use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use comfy_table::{Table, presets};
use panda_core::{Execution, Status};
use serde::Serialize;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON, for scripts.
    Json,
    /// YAML, for people who read it and the tools that take it.
    Yaml,
}

/// Prints `value` as one JSON document (pretty) or one YAML document, as `format` says; a
/// table asked for here is JSON.
pub(crate) fn structured(value: &impl Serialize, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Yaml => emit(serde_norway::to_string(value)?.trim_end()),
        Format::Json | Format::Table => emit(&serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

/// Prints `text` and a newline on stdout. A reader that went away (`panda … | head`) is not an
/// error: what it did not read is dropped.
pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Whether colour may be used on stdout: a terminal, and `NO_COLOR` unset.
fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// A table with upper-case headers and no borders, as wide as the terminal when there is one.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.iter().map(|h| h.to_uppercase()));
    if std::io::stdout().is_terminal() {
        table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    table
}

/// A table as text: columns three spaces apart, no space before the first or after the last.
pub(crate) fn render(table: &Table) -> String {
    table
        .lines()
        .map(|line| line.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `✓ succeeded`, `✗ failed`, …: a symbol and the word, coloured on a terminal.
pub(crate) fn status(status: Status) -> String {
    let (symbol, colour_code) = match status {
        Status::Succeeded => ("✓", "32"),
        Status::Failed => ("✗", "31"),
        Status::TimedOut => ("⏱", "31"),
        Status::Running => ("●", "34"),
        Status::Queued => ("○", "0"),
        Status::Dead => ("☠", "31;1"),
        Status::Skipped => ("–", "90"),
        Status::Cancelled => ("⊘", "33"),
        Status::Lost => ("?", "33"),
    };
    let text = format!("{symbol} {status}");
    if colour() {
        format!("\x1b[{colour_code}m{text}\x1b[0m")
    } else {
        text
    }
}

/// `text` in the ANSI colour `code` on a terminal that takes colour; as it is otherwise.
pub(crate) fn painted(text: String, code: &str) -> String {
    if colour() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text
    }
}

/// How long an execution ran (so far, while running).
pub(crate) fn ran_for(execution: &Execution, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let started = execution.started_at?;
    Some(execution.finished_at.unwrap_or(now) - started)
}

/// The executions table of `cronjob executions` and `job executions`.
pub(crate) fn executions_table(executions: &[Execution], now: DateTime<Utc>) -> Table {
    let mut table = table(&[
        "execution",
        "trigger",
        "scheduled for",
        "started",
        "duration",
        "status",
        "exit code",
        "attempt",
        "reason",
    ]);
    for e in executions {
        table.add_row(vec![
            e.id.to_string(),
            e.trigger.to_string(),
            e.scheduled_at
                .map_or_else(|| "-".to_owned(), |at| panda_core::human::relative(at, now)),
            e.started_at
                .map_or_else(|| "-".to_owned(), |at| panda_core::human::relative(at, now)),
            ran_for(e, now).map_or_else(|| "-".to_owned(), panda_core::human::elapsed),
            status(e.status),
            e.exit_code
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            format!("{}/{}", e.attempt, e.retry.max_attempts),
            e.reason.clone().unwrap_or_default(),
        ]);
    }
    table
}

/// Alerts: when, which job, what, where they went and how that went, and the message last
/// (the widest column).
pub(crate) fn alerts_table(alerts: &[panda_core::api::Alert], now: DateTime<Utc>) -> Table {
    let mut table = table(&["raised", "job", "event", "delivered", "message"]);
    for alert in alerts {
        table.add_row(vec![
            panda_core::human::relative(alert.created_at, now),
            alert.job.clone(),
            alert.kind.to_string(),
            deliveries(&alert.deliveries),
            alert.message.clone(),
        ]);
    }
    table
}

/// `2/2`, `1/2 (1 pending: HTTP 500 …)`, or `-` when the alert went nowhere.
fn deliveries(deliveries: &[panda_core::api::AlertDelivery]) -> String {
    use panda_core::api::DeliveryState;
    if deliveries.is_empty() {
        return "-".to_owned();
    }
    let count = |state| deliveries.iter().filter(|d| d.state == state).count();
    let mut text = format!("{}/{}", count(DeliveryState::Delivered), deliveries.len());
    for state in [DeliveryState::Pending, DeliveryState::Failed] {
        let n = count(state);
        if n > 0 {
            let error = deliveries
                .iter()
                .filter(|d| d.state == state)
                .find_map(|d| d.last_error.as_deref());
            text.push_str(&format!(" ({n} {}", state.as_str()));
            if let Some(error) = error {
                text.push_str(&format!(": {error}"));
            }
            text.push(')');
        }
    }
    text
}
