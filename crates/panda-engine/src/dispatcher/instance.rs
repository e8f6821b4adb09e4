//! The run of one claimed service instance: like an execution's, but with no timeout, its
//! health watched beside it, its log trimmed to what the service keeps, and three ways to
//! stop it from outside:
//!
//! - a stop request (the heartbeat says `cancel_requested`: scaled down, replaced, suspended):
//!   the service's stop signal, its stop timeout, then the kill; finished as cancelled;
//! - a health check given up: the same stop, finished as failed with the reason (the store
//!   restarts it);
//! - a lease that moved on (this node was paused past its lease, another took over): killed
//!   at once and nothing recorded, so at most one copy runs;
//! - a drain: the same stop, and the execution released at once for another node.
//!
//! An exit is finished as a job's is; the store decides the restart.

use std::sync::Arc;
use std::time::Duration;

use panda_core::Job;
use panda_runtime::{LogSink, RunOutcome, RunReport};
use panda_store::{Claimed, Finish, Outcome};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::finish::{record, release_execution};
use super::health::{self, Verdict};
use super::heartbeat;
use super::run::{JobUnread, Stop, finish_of, first_log_seq, prepare};

/// How often a running instance's log is cut down to what its service keeps.
pub(super) const LOG_TRIM_EVERY: Duration = Duration::from_secs(10);

/// Why an instance was stopped from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stopped {
    /// As a job's run is (a stop request, a lost lease, a drain).
    By(Stop),
    /// Its health check failed too often, for this reason.
    Unhealthy(String),
}

/// Runs one claimed instance to its end and records the outcome.
pub(super) async fn run_instance(
    context: Arc<Context>,
    claimed: Claimed,
    job: Result<Job, JobUnread>,
    release: CancellationToken,
) {
    let Claimed { execution, lease } = claimed;
    if let Err(JobUnread::StoreDown(err)) = &job {
        tracing::warn!(execution = %execution.id, %err, "its service could not be read; putting the instance back");
        release_execution(&context, &execution, &lease).await;
        return;
    }
    let service = job
        .as_ref()
        .ok()
        .and_then(|job| job.spec.service.clone())
        .unwrap_or_default();
    let (runtime, spec) = match prepare(&context, &execution, job).await {
        Ok(ready) => ready,
        Err(reason) => {
            tracing::warn!(execution = %execution.id, service = %execution.job_name, %reason, "cannot run the instance");
            let finish = Finish {
                execution_id: execution.id,
                token: lease.token,
                outcome: Outcome::Rejected,
                exit_code: None,
                reason: Some(reason),
                image_digest: None,
            };
            record(&context, &execution, finish).await;
            return;
        }
    };
    let logs = LogSink::new(
        Arc::clone(&context.store) as Arc<dyn panda_store::LogStore>,
        execution.id,
        context.config.log,
        spec.secret_env.values(),
    )
    .starting_at(first_log_seq(&context, &execution).await);
    logs.system(&format!(
        "instance {} of revision {} on {} (start {})",
        execution.instance.unwrap_or_default(),
        execution.revision.unwrap_or_default(),
        context.config.worker_id,
        execution.attempt
    ));
    tracing::info!(
        execution = %execution.id,
        service = %execution.job_name,
        instance = execution.instance.unwrap_or_default(),
        revision = execution.revision.unwrap_or_default(),
        "instance starting"
    );

    let cancel = CancellationToken::new();
    let (verdict_tx, mut verdicts) = mpsc::channel(1);
    let watch = tokio::spawn(health::watch(
        Arc::clone(&context),
        Arc::clone(&runtime),
        spec.clone(),
        lease,
        service.health.clone(),
        verdict_tx,
    ));
    let run = runtime.run(&spec, logs, cancel.clone());
    tokio::pin!(run);
    let mut beats = heartbeat::ticks(&context);
    let mut trims =
        tokio::time::interval_at(tokio::time::Instant::now() + LOG_TRIM_EVERY, LOG_TRIM_EVERY);
    trims.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trimming: Option<tokio::task::JoinHandle<()>> = None;
    let mut watching = true;
    let mut stopped: Option<Stopped> = None;
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            _ = beats.tick() => {
                match heartbeat::beat(&context, &lease, &mut beats).await {
                    Some(Stop::LeaseLost) => {
                        // Another node runs it now: this copy goes at once, whatever it was
                        // doing (even a stop under way).
                        spec.kill.cancel();
                        cancel.cancel();
                        stopped = Some(Stopped::By(Stop::LeaseLost));
                    }
                    Some(why) if stopped.is_none() => {
                        stopped = Some(Stopped::By(why));
                        cancel.cancel();
                    }
                    _ => {}
                }
            }
            () = release.cancelled(), if stopped.is_none() => {
                stopped = Some(Stopped::By(Stop::Release));
                cancel.cancel();
            }
            verdict = verdicts.recv(), if watching => match verdict {
                Some(Verdict::LeaseLost) => {
                    spec.kill.cancel();
                    cancel.cancel();
                    stopped = Some(Stopped::By(Stop::LeaseLost));
                }
                Some(Verdict::Failed(reason)) if stopped.is_none() => {
                    tracing::warn!(execution = %execution.id, service = %execution.job_name, %reason, "stopping an unhealthy instance");
                    stopped = Some(Stopped::Unhealthy(reason));
                    cancel.cancel();
                }
                Some(Verdict::Failed(_)) => {}
                None => watching = false,
            },
            _ = trims.tick() => {
                if trimming.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
                    trimming = Some(tokio::spawn(trim_log(
                        Arc::clone(&context),
                        execution.id,
                        service.log_keep_bytes,
                    )));
                }
            }
        }
    };
    watch.abort();
    match (stopped, result) {
        (Some(Stopped::By(Stop::LeaseLost)), _) => {
            tracing::warn!(
                execution = %execution.id,
                service = %execution.job_name,
                "the instance's lease moved on to another node: this copy was killed and its end is not recorded"
            );
        }
        (
            Some(Stopped::By(Stop::Release)),
            Ok(RunReport {
                outcome: RunOutcome::Cancelled,
                ..
            }),
        ) => {
            release_execution(&context, &execution, &lease).await;
        }
        (Some(Stopped::Unhealthy(reason)), result) => {
            let mut finish = finish_of(&execution, &lease, &spec, result);
            if matches!(finish.outcome, Outcome::Cancelled | Outcome::Succeeded) {
                finish.outcome = Outcome::Failed;
            }
            finish.reason = Some(match finish.reason.take() {
                Some(more) if !more.starts_with("cancelled") => format!("{reason}; {more}"),
                _ => reason,
            });
            record(&context, &execution, finish).await;
        }
        (Some(Stopped::By(Stop::Cancelled)), result) => {
            let mut finish = finish_of(&execution, &lease, &spec, result);
            if finish.outcome == Outcome::Cancelled {
                finish.reason = Some("stopped by request".to_owned());
            }
            record(&context, &execution, finish).await;
        }
        (_, result) => {
            let finish = finish_of(&execution, &lease, &spec, result);
            record(&context, &execution, finish).await;
        }
    }
}

/// Cuts an instance's log down to the newest `keep` bytes, in a task of its own.
async fn trim_log(context: Arc<Context>, execution: panda_core::ExecutionId, keep: u64) {
    match context.store.service_log_trim(execution, keep).await {
        Ok(0) => {}
        Ok(dropped) => {
            tracing::debug!(%execution, dropped, "the instance's oldest log was dropped");
        }
        Err(err) => tracing::warn!(%execution, %err, "the instance's log could not be trimmed"),
    }
}
