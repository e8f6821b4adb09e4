//! Monitors: jobs whose runs happen elsewhere (a crontab, another scheduler) and report
//! themselves by calling a secret ping URL. Each ping is recorded as an execution of the
//! monitor (trigger `ping`), so history, logs, alerts and retention treat it as any run.
//!
//! Only a hash of the URL's token is stored, as for API tokens and webhooks. A ping is one
//! transaction with the monitor's row locked, so pings of one monitor are recorded one after
//! another, and what a ping may add is bounded: a start while a run is open adds nothing, and
//! an end that repeats the newest run's outcome within [`COALESCE`] is folded into it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{Execution, Job, JobId, JobSpec, LogChunk, LogStream, Status, Trigger};

use crate::dialect::{Backend, Column, Conn, Record, Tx, query, settle};
use crate::jobs::{JobLock, insert_job, live_job};
use crate::records::{self, all};
use crate::{StoreError, StoreResult, token};

/// The most of a ping's body kept as its execution's log; the rest is cut, with a marker.
pub const MAX_PING_LOG_BYTES: usize = 10 * 1024;

/// Two ends of the same outcome closer than this are one run: a caller that loops on its
/// ping URL adds one execution per second at most.
pub const COALESCE: Duration = Duration::from_secs(1);

/// A monitor's ping URL as it may be shown: never its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingUrl {
    /// When the current URL was made.
    pub created_at: DateTime<Utc>,
}

/// What a ping says about the run it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    /// The run succeeded (`/ping/<token>`, or `/0`).
    Success,
    /// The run started (`/start`): it is recorded running until its end is pinged.
    Start,
    /// The run failed (`/fail`), without an exit code.
    Fail,
    /// The run ended with this exit code (`/<code>`): 0 is a success, anything else a failure.
    Exit(i32),
}

impl PingKind {
    /// The status and exit code of the run this end reports; `None` for a start.
    fn end(self) -> Option<(Status, Option<i32>)> {
        match self {
            Self::Start => None,
            Self::Success => Some((Status::Succeeded, None)),
            Self::Fail => Some((Status::Failed, None)),
            Self::Exit(0) => Some((Status::Succeeded, Some(0))),
            Self::Exit(code) => Some((Status::Failed, Some(code))),
        }
    }
}

/// One ping: what it says and the body it carried (kept as the run's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// What it says.
    pub kind: PingKind,
    /// The request body, if any: at most [`MAX_PING_LOG_BYTES`] of it are kept.
    pub body: Option<Vec<u8>>,
}

/// Monitors' URLs and pings.
#[async_trait]
pub trait MonitorStore: Send + Sync + std::fmt::Debug {
    /// Creates the monitor `spec` (a job with a monitor part) with its ping URL, in one
    /// transaction, and returns the URL's token: not stored, shown once. As
    /// [`JobStore::job_create`](crate::JobStore::job_create) otherwise.
    async fn monitor_create(
        &self,
        spec: &JobSpec,
        now: DateTime<Utc>,
    ) -> StoreResult<(Job, String, PingUrl)>;

    /// Gives the live monitor `job` a new ping URL, replacing the earlier one (which stops
    /// working at once), and returns its token. `NotFound` for no such job, `Invalid` for a
    /// job that is not a monitor.
    async fn monitor_rotate(&self, job: &str, now: DateTime<Utc>)
    -> StoreResult<(String, PingUrl)>;

    /// The live job's ping URL, if it has one. `NotFound` for no such job.
    async fn monitor_url(&self, job: &str) -> StoreResult<Option<PingUrl>>;

    /// Records a ping of the monitor whose URL has `token`, as of `now`, and returns the
    /// execution it started, ended or was folded into; `None` when no live monitor has this
    /// URL.
    ///
    /// A start opens a running execution (or returns the one open); an end finishes the open
    /// one (giving the run its duration) or records a run that started and ended `now`. A
    /// failed end goes to the alerter's inbox, as a failed attempt does. An open run older
    /// than the monitor's timeout is ended as timed out first.
    async fn monitor_ping(
        &self,
        token: &str,
        ping: &Ping,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Execution>>;

    /// Ends the runs that a start ping opened and no end ping closed: as `timed_out` once
    /// their monitor's timeout has passed, as `cancelled` once their monitor was deleted.
    /// Returns the executions it ended.
    async fn monitor_close_stale(&self, now: DateTime<Utc>) -> StoreResult<Vec<Execution>>;
}

/// The statements of [`MonitorStore`], in each backend's dialect.
#[derive(Debug)]
pub struct MonitorSql {
    /// `(job_id, token_hash, created_at)`, replacing the monitor's URL.
    pub upsert: &'static str,
    /// `created_at` of a job's URL: `(job_id)`.
    pub of_job: &'static str,
    /// `name, token_hash` of the live job whose URL has this hash: `(token_hash)`.
    pub by_hash: &'static str,
    /// The newest execution of a job: `(job_name, job_id)`.
    pub newest: &'static str,
    /// The newest running execution of a job: `(job_id)`.
    pub open_run: &'static str,
    /// Every running execution a ping opened.
    pub open_runs: &'static str,
    /// Ends a running execution: `(status, finished_at, exit_code, reason, id)`.
    pub end_run: &'static str,
}

/// The prefix of a ping URL's token, so that one found in a log is known for what it is.
const PREFIX: &str = "png_";

fn new_token() -> String {
    format!(
        "{PREFIX}{}",
        token::generate_secret().trim_start_matches("panda_")
    )
}

async fn store_url<B: Backend>(
    tx: &mut B::Tx,
    job: JobId,
    now: DateTime<Utc>,
) -> StoreResult<(String, PingUrl)> {
    let token = new_token();
    tx.execute(
        query(B::SQL.monitors.upsert)
            .uuid(job)
            .text(token::hash_secret(&token))
            .time(now),
    )
    .await?;
    Ok((
        token,
        PingUrl {
            created_at: crate::stored_instant(now),
        },
    ))
}

/// A ping's body as the log of its run: one stdout chunk, cut at [`MAX_PING_LOG_BYTES`].
fn log_of(body: &[u8], seq: u64, now: DateTime<Utc>) -> Option<LogChunk> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let mut data = body[..body.len().min(MAX_PING_LOG_BYTES)].to_vec();
    if body.len() > MAX_PING_LOG_BYTES {
        data.extend_from_slice(
            format!(
                "\n[panda: the ping's body was cut at {MAX_PING_LOG_BYTES} of its {} bytes]\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    Some(LogChunk {
        seq,
        stream: LogStream::Stdout,
        at: now,
        data,
    })
}

/// A run of `job` recorded from a ping at `now`: running (a start) or ended.
fn ping_run(job: &Job, end: Option<(Status, Option<i32>)>, now: DateTime<Utc>) -> Execution {
    let status = end.map_or(Status::Running, |(status, _)| status);
    let mut execution = crate::lifecycle::first_attempt(job, Trigger::Ping, status, now, now);
    execution.started_at = Some(now);
    if let Some((status, exit_code)) = end {
        execution.exit_code = exit_code;
        execution.reason = reason(status, exit_code);
    }
    execution
}

/// Why a run a ping ended failed: its ping said so (with the exit code, when it gave one).
fn reason(status: Status, _exit_code: Option<i32>) -> Option<String> {
    (status == Status::Failed).then(|| "reported by its ping".to_owned())
}

/// Ends the running execution `run` as `status` in `tx`, putting a failure in the alerter's
/// inbox; returns it as it ends, or `None` when it was no longer running (another node, or
/// another ping, ended it first).
async fn end_run<B: Backend>(
    tx: &mut B::Tx,
    mut run: Execution,
    status: Status,
    exit_code: Option<i32>,
    why: Option<String>,
    now: DateTime<Utc>,
) -> StoreResult<Option<Execution>> {
    run.status = status;
    run.finished_at = Some(now);
    run.exit_code = exit_code;
    run.reason = why;
    let changed = tx
        .execute(
            query(B::SQL.monitors.end_run)
                .text(status.as_str())
                .time(now)
                .opt_i32(exit_code)
                .opt_text(run.reason.clone())
                .uuid(run.id),
        )
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    if crate::lifecycle::alertable(status) {
        to_inbox::<B>(tx, &run, now).await?;
    }
    Ok(Some(run))
}

/// Puts a failed run in the alerter's inbox, as a failed attempt's finish does.
async fn to_inbox<B: Backend>(
    tx: &mut B::Tx,
    run: &Execution,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    tx.execute(query(B::SQL.queue.inbox).table(vec![
        Column::Uuids(vec![Some(run.id.as_uuid())]),
        Column::Times(vec![Some(now)]),
    ]))
    .await?;
    Ok(())
}

/// Records one ping of the locked monitor `job` in `tx`: the execution that stands for its
/// run, and the place its body takes in that run's log, `None` when the ping added nothing (a
/// start while a run is open, an end folded into the newest run).
async fn record<B: Backend>(
    tx: &mut B::Tx,
    job: &Job,
    kind: PingKind,
    now: DateTime<Utc>,
) -> StoreResult<(Execution, Option<u64>)> {
    let mut open = tx
        .fetch_optional(query(B::SQL.monitors.open_run).uuid(job.id))
        .await?
        .map(|row| records::execution(&row))
        .transpose()?;
    if let Some(run) = open.take_if(|run| stale(job, run.started_at, now)) {
        let why = timed_out_reason(job);
        end_run::<B>(tx, run, Status::TimedOut, None, Some(why), now).await?;
    }
    match (kind.end(), open) {
        // A start while a run is open: that run, unchanged.
        (None, Some(run)) => Ok((run, None)),
        (None, None) => {
            let run = ping_run(job, None, now);
            crate::ends::insert_executions::<B>(tx, std::slice::from_ref(&run)).await?;
            Ok((run, Some(0)))
        }
        // The end of the open run: its body follows the start's.
        (Some((status, exit_code)), Some(run)) => {
            let why = reason(status, exit_code);
            let id = run.id;
            match end_run::<B>(tx, run, status, exit_code, why, now).await? {
                Some(ended) => Ok((ended, Some(1))),
                None => Err(StoreError::Corrupt(format!(
                    "execution {id} was running under a locked monitor, then was not"
                ))),
            }
        }
        (Some((status, exit_code)), None) => {
            let newest = tx
                .fetch_optional(
                    query(B::SQL.monitors.newest)
                        .text(job.spec.name.as_str())
                        .uuid(job.id),
                )
                .await?
                .map(|row| records::execution(&row))
                .transpose()?;
            let window = chrono::Duration::from_std(COALESCE).unwrap_or_default();
            if let Some(newest) = newest.filter(|e| {
                e.status == status && e.exit_code == exit_code && now - e.created_at < window
            }) {
                return Ok((newest, None));
            }
            let run = ping_run(job, Some((status, exit_code)), now);
            crate::ends::insert_executions::<B>(tx, std::slice::from_ref(&run)).await?;
            if crate::lifecycle::alertable(status) {
                to_inbox::<B>(tx, &run, now).await?;
            }
            Ok((run, Some(0)))
        }
    }
}

/// Whether a run opened at `started` is past `job`'s timeout at `now`.
fn stale(job: &Job, started: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let timeout = chrono::Duration::from_std(job.spec.timeout).unwrap_or(chrono::Duration::MAX);
    started.is_some_and(|at| now - at > timeout)
}

fn timed_out_reason(job: &Job) -> String {
    format!(
        "no end ping came within the monitor's timeout of {} after its start ping",
        panda_core::human::exact(job.spec.timeout)
    )
}

#[async_trait]
impl<B: Backend> MonitorStore for B {
    async fn monitor_create(
        &self,
        spec: &JobSpec,
        now: DateTime<Utc>,
    ) -> StoreResult<(Job, String, PingUrl)> {
        if spec.monitor.is_none() {
            return Err(StoreError::Invalid(panda_core::ValidationError::Field {
                field: "monitor",
                message: format!("{} has no monitor part (a grace)", spec.name),
            }));
        }
        let mut tx = self.begin().await?;
        let job = insert_job::<B>(&mut tx, spec, now).await?;
        let (token, url) = store_url::<B>(&mut tx, job.id, now).await?;
        tx.commit().await?;
        Ok((job, token, url))
    }

    async fn monitor_rotate(
        &self,
        job: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(String, PingUrl)> {
        let mut tx = self.begin().await?;
        let found = live_job::<B>(&mut tx, job, JobLock::Update).await?;
        if found.spec.monitor.is_none() {
            return Err(StoreError::Invalid(panda_core::ValidationError::Field {
                field: "job",
                message: format!(
                    "{job} is not a monitor: only a monitor (a job with a grace and no runtime \
                     of its own) has a ping URL"
                ),
            }));
        }
        let made = store_url::<B>(&mut tx, found.id, now).await?;
        tx.commit().await?;
        Ok(made)
    }

    async fn monitor_url(&self, job: &str) -> StoreResult<Option<PingUrl>> {
        let mut reader = self.reader();
        let found = live_job::<B>(&mut reader, job, JobLock::Share).await?;
        reader
            .fetch_optional(query(B::SQL.monitors.of_job).uuid(found.id))
            .await?
            .map(|row| {
                Ok(PingUrl {
                    created_at: row.time("created_at")?,
                })
            })
            .transpose()
    }

    async fn monitor_ping(
        &self,
        token: &str,
        ping: &Ping,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Execution>> {
        let row = self
            .reader()
            .fetch_optional(query(B::SQL.monitors.by_hash).text(token::hash_secret(token)))
            .await?;
        let Some(row) = row else { return Ok(None) };
        if !token::hash_matches(&row.text("token_hash")?, token) {
            return Ok(None);
        }
        let name = row.text("name")?;
        let mut tx = self.begin().await?;
        let job = match live_job::<B>(&mut tx, &name, JobLock::Update).await {
            Ok(job) if job.spec.monitor.is_some() => job,
            // Deleted, or no longer a monitor, since the URL was read.
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                tx.rollback().await?;
                return Ok(None);
            }
            Err(err) => {
                // The error says what went wrong; a failed rollback ends with the connection.
                let _ = tx.rollback().await;
                return Err(err);
            }
        };
        let result = record::<B>(&mut tx, &job, ping.kind, now).await;
        let (recorded, seq) = settle(tx, result).await?;
        if let (Some(seq), Some(body)) = (seq, ping.body.as_deref())
            && let Some(chunk) = log_of(body, seq, now)
        {
            self.append_log(recorded.id, &[chunk]).await?;
        }
        Ok(Some(recorded))
    }

    async fn monitor_close_stale(&self, now: DateTime<Utc>) -> StoreResult<Vec<Execution>> {
        let rows = self
            .reader()
            .fetch_all(query(B::SQL.monitors.open_runs))
            .await?;
        let mut ended = Vec::new();
        // Decided from what was read; only a run to end takes a write transaction, whose
        // update ends it only if it is still running.
        for run in all(&rows, records::execution)? {
            let Some(row) = self
                .reader()
                .fetch_optional(query(B::SQL.jobs.by_id).uuid(run.job_id))
                .await?
            else {
                continue;
            };
            let job = records::job(&row)?;
            let (status, why) = if run.cancel_requested {
                (
                    Status::Cancelled,
                    "its monitor was deleted before the run's end was pinged".to_owned(),
                )
            } else if stale(&job, run.started_at, now) {
                (Status::TimedOut, timed_out_reason(&job))
            } else {
                continue;
            };
            let mut tx = self.begin().await?;
            let result = end_run::<B>(&mut tx, run, status, None, Some(why), now).await;
            if let Some(run) = settle(tx, result).await? {
                ended.push(run);
            }
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pings_body_is_kept_up_to_its_limit_with_a_marker() {
        let now = Utc::now();
        assert_eq!(log_of(b"  \n", 0, now), None, "blank bodies are no log");
        let small = log_of(b"backup done\n", 0, now).expect("kept");
        assert_eq!(small.data, b"backup done\n");
        let big = vec![b'x'; MAX_PING_LOG_BYTES + 500];
        let cut = log_of(&big, 1, now).expect("kept");
        assert_eq!(cut.seq, 1);
        assert!(cut.data.starts_with(&big[..MAX_PING_LOG_BYTES]));
        let tail = String::from_utf8_lossy(&cut.data[MAX_PING_LOG_BYTES..]).into_owned();
        assert!(tail.contains("cut at 10240 of its 10740 bytes"), "{tail}");
    }

    #[test]
    fn an_exit_code_of_zero_is_a_success_and_any_other_a_failure() {
        assert_eq!(PingKind::Exit(0).end(), Some((Status::Succeeded, Some(0))));
        assert_eq!(PingKind::Exit(3).end(), Some((Status::Failed, Some(3))));
        assert_eq!(PingKind::Fail.end(), Some((Status::Failed, None)));
        assert_eq!(PingKind::Start.end(), None);
    }
}
