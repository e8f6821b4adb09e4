//! `logs`, and the log stream `trigger --wait` follows: filters, the waiting spinner and the
//! final status line.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use futures::StreamExt;
use panda_client::{Client, LogEvent};
use panda_core::api::LogLine;
use panda_core::{Execution, ExecutionId};

use super::connection::user;
use crate::UserError;
use crate::output;

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The job's name
    name: String,
    /// The newest execution (the default when no --execution is given)
    #[arg(long)]
    latest: bool,
    /// This execution
    #[arg(long)]
    execution: Option<ExecutionId>,
    /// Keep following while it runs (the default for a running execution)
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only the last N lines
    #[arg(long)]
    tail: Option<u32>,
    /// Only lines from the last duration (10m)
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Prefix each line with its time (UTC)
    #[arg(long)]
    timestamps: bool,
    /// Only stdout or stderr
    #[arg(long)]
    stream: Option<String>,
}

/// Which lines to print.
#[derive(Debug, Default)]
pub(super) struct Filter {
    stream: Option<String>,
    since: Option<DateTime<Utc>>,
    timestamps: bool,
}

impl Filter {
    fn print(&self, line: &LogLine) {
        if self.stream.as_deref().is_some_and(|s| s != line.stream) {
            return;
        }
        if self.since.is_some_and(|since| line.at < since) {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.timestamps {
            let _ = write!(out, "{} ", line.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        }
        let _ = out.write_all(line.text.as_bytes());
        // A piece without its newline (the job's last output, or a long line's cut) ends here,
        // so that what follows, the final status line included, starts on a line of its own.
        if !line.text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
}

pub(super) async fn logs(
    client: &Client,
    args: &LogsArgs,
) -> anyhow::Result<std::process::ExitCode> {
    if let Some(stream) = &args.stream
        && !matches!(stream.as_str(), "stdout" | "stderr")
    {
        return Err(
            UserError::plain(format!("--stream {stream:?} is not stdout or stderr")).into(),
        );
    }
    let execution = match args.execution {
        Some(id) => client.execution(id).await.map_err(user)?,
        None => client.latest(&args.name).await.map_err(user)?,
    };
    let filter = Filter {
        stream: args.stream.clone(),
        since: args
            .since
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| Utc::now() - d),
        timestamps: args.timestamps,
    };
    // The tail first, when asked: then follow from its end.
    let mut after = None;
    if let Some(n) = args.tail {
        let page = client
            .logs(execution.id, None, Some(n))
            .await
            .map_err(user)?;
        for line in &page.lines {
            filter.print(line);
        }
        after = page.lines.last().map(|l| l.seq);
        if page.status.is_terminal() && !args.follow {
            final_line(&client.execution(execution.id).await.map_err(user)?);
            return Ok(std::process::ExitCode::SUCCESS);
        }
    }
    let queued = execution.status == panda_core::Status::Queued;
    let ended = stream_logs(client, execution.id, after, &filter, queued).await?;
    let _ = ended;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Prints an execution's log from after `after` and follows it until it ends; then the final
/// status line. Returns the execution as it ended.
pub(super) async fn stream_logs(
    client: &Client,
    id: ExecutionId,
    after: Option<u64>,
    filter: &Filter,
    queued: bool,
) -> anyhow::Result<Execution> {
    let mut events = std::pin::pin!(client.follow(id, after).await.map_err(user)?);
    // Until the job's first line: a spinner with the elapsed time, which shows the image
    // pull's progress as Panda logs it (drawn on a terminal only).
    let mut waiting = queued.then(waiting_spinner);
    while let Some(event) = events.next().await {
        match event.map_err(user)? {
            LogEvent::Line(line) => {
                if let Some(spinner) = &waiting {
                    if line.stream == "system" {
                        let text = line.text.trim_end().trim_start_matches("[panda] ");
                        match pulled_bytes(text) {
                            // The pull's bytes: the spinner becomes a bar.
                            Some((done, total)) => {
                                if spinner.length() != Some(total) {
                                    spinner.set_length(total);
                                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                                        "pulling {wide_bar} {bytes}/{total_bytes} {elapsed}",
                                    ) {
                                        spinner.set_style(style);
                                    }
                                }
                                spinner.set_position(done);
                            }
                            None => spinner.set_message(text.to_owned()),
                        }
                    } else {
                        spinner.finish_and_clear();
                        waiting = None;
                    }
                }
                spinner_suspended(waiting.as_ref(), || filter.print(&line));
            }
            LogEvent::End(execution) => {
                if let Some(spinner) = waiting.take() {
                    spinner.finish_and_clear();
                }
                final_line(&execution);
                return Ok(*execution);
            }
        }
    }
    Err(UserError::new(
        "the log stream ended before the execution did",
        "the server may be restarting; run the command again to pick up where it left",
    )
    .into())
}

/// The bytes an image pull line tells (`pull: downloading 12.3 of 45.6 MB (3 layers)`):
/// (done, total).
fn pulled_bytes(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix("pull: downloading ")?;
    let (done, rest) = rest.split_once(" of ")?;
    let (total, _) = rest.split_once(" MB")?;
    let bytes = |mb: &str| {
        mb.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| (v * 1_000_000.0) as u64)
    };
    Some((bytes(done)?, bytes(total)?))
}

/// A spinner on stderr with the elapsed time and the latest word from Panda.
fn waiting_spinner() -> indicatif::ProgressBar {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} waiting to start {elapsed} {msg}")
    {
        spinner.set_style(style);
    }
    spinner.set_message("");
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}

/// Runs `print` with the spinner (if any) out of the way, so lines never mix with it.
fn spinner_suspended(spinner: Option<&indicatif::ProgressBar>, print: impl FnOnce()) {
    match spinner {
        Some(spinner) => spinner.suspend(print),
        None => print(),
    }
}

/// `✓ succeeded in 1.2s (exit code 0)`, on stderr so that stdout holds the job's output only.
/// It starts a line of its own on a terminal that shows both streams, even after output
/// without a final newline (`printf done`): [`Filter::print`] ends every piece it prints.
pub(super) fn final_line(execution: &Execution) {
    let mut line = format!(
        "execution {} {}",
        execution.id,
        output::status(execution.status)
    );
    if let Some(ran) = output::ran_for(execution, Utc::now()) {
        line.push_str(&format!(" in {}", panda_core::human::elapsed(ran)));
    }
    if let Some(code) = execution.exit_code {
        line.push_str(&format!(" (exit code {code})"));
    }
    if let Some(reason) = &execution.reason {
        line.push_str(&format!(": {reason}"));
    }
    eprintln!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn pull_lines_give_their_bytes() {
        assert_eq!(
            pulled_bytes("pull: downloading 12.3 of 45.6 MB (3 layers)"),
            Some((12_300_000, 45_600_000))
        );
        assert_eq!(pulled_bytes("pull: Pulling fs layer"), None);
        assert_eq!(pulled_bytes("pulling image x"), None);
    }
}
