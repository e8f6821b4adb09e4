//! The run of one claimed execution: picks its runtime, runs it while the lease is renewed,
//! and hands its end to be written.

use std::collections::BTreeMap;
use std::sync::Arc;

use panda_core::{Execution, Job};
use panda_runtime::{LogSink, RunOutcome, RunReport, RunSpec, Runtime, RuntimeError};
use panda_store::{Claimed, Finish, Lease, Outcome};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::finish::{record, release_execution};
use super::heartbeat;

/// Why a run was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Someone cancelled the execution.
    Cancelled,
    /// The lease moved on (rescued as lost): the result is no longer ours to write.
    LeaseLost,
    /// The node is shutting down: put the execution back in the queue.
    Release,
}

/// Why a claimed execution's job could not be read.
#[derive(Debug, Clone)]
pub(super) enum JobUnread {
    /// The store is unreachable or full for now: the execution goes back to the queue.
    StoreDown(String),
    /// Anything else (the job is gone, a row does not decode): the execution cannot run.
    Failed(String),
}

/// Runs one claimed execution to its end and records the outcome.
pub(super) async fn execute(
    context: Arc<Context>,
    claimed: Claimed,
    job: Result<Job, JobUnread>,
    release: CancellationToken,
) {
    let Claimed { execution, lease } = claimed;
    if let Err(JobUnread::StoreDown(err)) = &job {
        // Not the execution's fault: it has not run, so it keeps its attempt.
        tracing::warn!(execution = %execution.id, %err, "its job could not be read; putting it back in the queue");
        release_execution(&context, &execution, &lease).await;
        return;
    }
    let started = prepare(&context, &execution, job).await;
    let (runtime, spec) = match started {
        Ok(ready) => ready,
        Err(reason) => {
            tracing::warn!(execution = %execution.id, job = %execution.job_name, %reason, "cannot run");
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
    if execution.attempt > 1 {
        // Said of retries only: a first attempt's log holds the job's own output alone, and
        // costs no write when the job prints nothing.
        logs.system(&format!(
            "attempt {} of {} on {}",
            execution.attempt, execution.retry.max_attempts, context.config.worker_id
        ));
    }
    let cancel = CancellationToken::new();
    let run = runtime.run(&spec, logs, cancel.clone());
    tokio::pin!(run);
    let mut beats = heartbeat::ticks(&context);
    let mut stop = None;
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            _ = beats.tick() => {
                if let Some(why) = heartbeat::beat(&context, &lease, &mut beats).await
                    && stop.is_none()
                {
                    stop = Some(why);
                    cancel.cancel();
                }
            }
            () = release.cancelled(), if stop.is_none() => {
                stop = Some(Stop::Release);
                cancel.cancel();
            }
        }
    };
    match (stop, &result) {
        (Some(Stop::LeaseLost), _) => {
            tracing::warn!(
                execution = %execution.id,
                "the lease moved on while this ran (the execution was rescued): its result is not recorded"
            );
        }
        (
            Some(Stop::Release),
            Ok(RunReport {
                outcome: RunOutcome::Cancelled,
                ..
            }),
        ) => {
            release_execution(&context, &execution, &lease).await;
        }
        _ => {
            let finish = finish_of(&execution, &lease, &spec, result);
            record(&context, &execution, finish).await;
        }
    }
}

/// Where this run's log starts: after the chunks of an earlier run of the same execution. Only
/// a released execution ran before, and only a released one comes to a claim with a reason.
pub(super) async fn first_log_seq(context: &Context, execution: &Execution) -> u64 {
    if execution.reason.is_none() {
        return 0;
    }
    match context.store.log_tail(execution.id, 1).await {
        Ok(last) => last.last().map_or(0, |chunk| chunk.seq + 1),
        Err(err) => {
            // A clash only loses the new run's first lines to the old ones; running matters more.
            tracing::warn!(execution = %execution.id, %err, "could not read the log's end");
            0
        }
    }
}

/// Picks the runtime and builds what it runs; `Err` with the reason when the execution cannot
/// run on this node at all.
pub(super) async fn prepare(
    context: &Context,
    execution: &Execution,
    job: Result<Job, JobUnread>,
) -> Result<(Arc<dyn Runtime>, RunSpec), String> {
    let job = job.map_err(|err| {
        let (JobUnread::StoreDown(err) | JobUnread::Failed(err)) = err;
        format!("its job could not be read: {err}")
    })?;
    let runtime = context.runtimes.for_spec(&job.spec.runtime)?;
    let spec = RunSpec::for_job(&job.spec, execution.id, &execution_env(execution));
    Ok((Arc::clone(runtime), spec))
}

/// The environment an execution adds to its job's: its own overrides, then the `PANDA_*`
/// variables a job uses to know which run it is (they win over anything else); a service's
/// instance also gets `PANDA_INSTANCE` and `PANDA_REVISION`. A run a chain started has
/// `PANDA_UPSTREAM_EXECUTION_ID`, `PANDA_UPSTREAM_JOB` and `PANDA_UPSTREAM_STATUS` among its
/// own overrides, where the store put them.
pub fn execution_env(execution: &Execution) -> BTreeMap<String, String> {
    let mut env = execution.env.clone();
    env.insert("PANDA_JOB".into(), execution.job_name.clone());
    env.insert("PANDA_EXECUTION_ID".into(), execution.id.to_string());
    env.insert("PANDA_ATTEMPT".into(), execution.attempt.to_string());
    env.insert("PANDA_TRIGGER".into(), execution.trigger.to_string());
    env.insert("PANDA_IDEMPOTENCY_KEY".into(), execution.run_key());
    if let Some(at) = execution.scheduled_at {
        env.insert(
            "PANDA_SCHEDULED_AT".into(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    if let Some(payload) = &execution.payload {
        env.insert("PANDA_PAYLOAD".into(), payload.to_string());
    }
    if let Some(instance) = execution.instance {
        env.insert("PANDA_INSTANCE".into(), instance.to_string());
    }
    if let Some(revision) = execution.revision {
        env.insert("PANDA_REVISION".into(), revision.to_string());
    }
    env
}

/// The report a run's result makes.
pub(super) fn finish_of(
    execution: &Execution,
    lease: &Lease,
    spec: &RunSpec,
    result: Result<RunReport, RuntimeError>,
) -> Finish {
    let mut finish = Finish {
        execution_id: execution.id,
        token: lease.token,
        outcome: Outcome::Succeeded,
        exit_code: None,
        reason: None,
        image_digest: None,
    };
    match result {
        Ok(report) => {
            finish.image_digest = report.image_digest;
            // Said in the reason, which a success otherwise leaves empty.
            finish.reason = report.log_error;
            match report.outcome {
                RunOutcome::Succeeded => finish.exit_code = Some(0),
                RunOutcome::Failed { exit_code } => {
                    finish.outcome = Outcome::Failed;
                    finish.exit_code = Some(exit_code);
                }
                RunOutcome::TimedOut => {
                    finish.outcome = Outcome::TimedOut;
                    let after = spec.timeout.map_or_else(String::new, |t| {
                        format!(" after {}", panda_core::human::exact(t))
                    });
                    finish.reason = joined(format!("timed out{after}"), finish.reason);
                }
                RunOutcome::OomKilled => {
                    finish.outcome = Outcome::Failed;
                    finish.exit_code = Some(137);
                    finish.reason = joined("OOMKilled".to_owned(), finish.reason);
                }
                RunOutcome::Cancelled => {
                    finish.outcome = Outcome::Cancelled;
                    finish.reason = joined("cancelled by request".to_owned(), finish.reason);
                }
            }
        }
        Err(RuntimeError::Permanent(message)) => {
            finish.outcome = Outcome::Rejected;
            finish.reason = Some(message);
        }
        Err(RuntimeError::Transient(message)) => {
            finish.outcome = Outcome::Failed;
            finish.reason = Some(format!("could not run: {message}"));
        }
    }
    finish
}

/// `first`, then `more` when there is more to say.
fn joined(first: String, more: Option<String>) -> Option<String> {
    Some(match more {
        Some(more) => format!("{first}; {more}"),
        None => first,
    })
}
