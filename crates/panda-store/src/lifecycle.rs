//! The backend-neutral half of every state change: which rows a request creates and which
//! status a finished attempt ends in. Each backend only says how to read and write them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, Job, JobId, JobSpec, MAX_IDEMPOTENCY_KEY_BYTES,
    RetryPolicy, Status, Trigger, ValidationError, reject_nul, validate_payload, validate_priority,
};

use crate::StoreError;
use crate::model::{
    ExecutionFilter, Finish, Finished, NewExecution, NewSlot, Outcome, Retention, Slot,
    SlotDecision,
};

/// The status ranges an execution listing reads, one per status asked for, each once: an
/// equality can be read newest first from `(job_name, status, id)`, `status IN (…)` cannot.
/// `[None]` when no status is asked for (one range, any status).
pub(crate) fn status_ranges(filter: &ExecutionFilter) -> Vec<Option<&'static str>> {
    if filter.statuses.is_empty() {
        return vec![None];
    }
    filter
        .statuses
        .iter()
        .map(|s| Some(s.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Whether an attempt that ended so goes to the alerter's inbox: the ones that failed.
pub(crate) fn alertable(status: Status) -> bool {
    matches!(status, Status::Failed | Status::TimedOut | Status::Dead)
}

/// Checks an enqueue request before anything is read or written.
pub(crate) fn validate_new_execution(request: &NewExecution) -> Result<(), ValidationError> {
    if let Some(payload) = &request.payload {
        validate_payload(payload)?;
    }
    if let Some(key) = &request.idempotency_key {
        reject_nul("idempotency_key", key)?;
    }
    for value in request.env.values() {
        reject_nul("env", value)?;
    }
    if let Some(priority) = request.priority {
        validate_priority(priority)?;
    }
    if let Some(key) = &request.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES)
    {
        return Err(ValidationError::Field {
            field: "idempotency_key",
            message: format!(
                "must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes, got {}",
                key.len()
            ),
        });
    }
    if matches!(
        request.trigger,
        Trigger::Retry | Trigger::Schedule | Trigger::Upstream | Trigger::Ping
    ) {
        return Err(ValidationError::Field {
            field: "trigger",
            message: format!(
                "{} executions are created by Panda itself; enqueue as api or manual",
                request.trigger
            ),
        });
    }
    if request.env.contains_key(panda_core::UPSTREAM_EXECUTION_ENV) {
        return Err(ValidationError::Field {
            field: "env",
            message: format!(
                "{} is set by Panda on a run a chain started; leave it out",
                panda_core::UPSTREAM_EXECUTION_ENV
            ),
        });
    }
    if let Some(key) = request
        .env
        .keys()
        .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
    {
        return Err(ValidationError::Field {
            field: "env",
            message: format!("{key:?} is not a valid variable name"),
        });
    }
    Ok(())
}

/// Checks a slot decision before anything is read or written.
pub(crate) fn validate_slot_decision(decision: &SlotDecision) -> Result<(), ValidationError> {
    match decision {
        SlotDecision::Fire => Ok(()),
        SlotDecision::Skip { reason } => reject_nul("reason", reason),
    }
}

/// The execution a cron slot of `job` at `scheduled_at` records, `queued` when it fires and
/// `skipped` (with the reason) when it does not, and the slot row that points at it.
pub(crate) fn slot_execution(
    job: &Job,
    scheduled_at: DateTime<Utc>,
    decision: &SlotDecision,
    now: DateTime<Utc>,
) -> (Execution, Slot) {
    let (status, reason) = match decision {
        SlotDecision::Fire => (Status::Queued, None),
        SlotDecision::Skip { reason } => (Status::Skipped, Some(reason.clone())),
    };
    let mut execution = first_attempt(job, Trigger::Schedule, status, now, now);
    execution.scheduled_at = Some(scheduled_at);
    execution.reason = reason;
    execution.concurrency_key = concurrency_key(job, &execution);
    let slot = Slot {
        job_id: job.id,
        scheduled_at,
        execution_id: execution.id,
        fired: status == Status::Queued,
        recorded_at: now,
    };
    (execution, slot)
}

/// What recording one item of a slot batch comes to, before anything is written.
#[derive(Debug)]
pub(crate) enum SlotPlan {
    /// Refused: bad input, or its job does not exist (any more).
    Refused(StoreError),
    /// Already recorded (before this batch, or earlier in it): nothing to write.
    Recorded(Slot),
    /// New: write the slot and its execution.
    New(Box<Execution>, Slot),
}

/// Plans a batch of slots, item by item as if recorded one at a time: `jobs` holds the live
/// jobs among the items', `recorded` the slots already stored among theirs.
pub(crate) fn plan_slots(
    items: &[NewSlot],
    jobs: &HashMap<JobId, Job>,
    recorded: &HashMap<(JobId, DateTime<Utc>), Slot>,
    now: DateTime<Utc>,
) -> Vec<SlotPlan> {
    let mut planned: HashMap<(JobId, DateTime<Utc>), Slot> = HashMap::new();
    items
        .iter()
        .map(|item| {
            let key = (item.job_id, item.scheduled_at);
            if let Err(err) = validate_slot_decision(&item.decision) {
                return SlotPlan::Refused(err.into());
            }
            if let Some(slot) = recorded.get(&key).or_else(|| planned.get(&key)) {
                return SlotPlan::Recorded(slot.clone());
            }
            let Some(job) = jobs.get(&item.job_id) else {
                return SlotPlan::Refused(StoreError::not_found(format!("job {}", item.job_id)));
            };
            // The job as it is now, locked, decides over the scheduler's view of it, which may
            // be seconds old: a job suspended or unscheduled since does not fire.
            let decision = match (&item.decision, &job.spec.schedule) {
                (SlotDecision::Fire, None) => SlotDecision::Skip {
                    reason: "schedule removed: the job no longer runs on a schedule".to_owned(),
                },
                (SlotDecision::Fire, Some(_)) if job.spec.monitor.is_some() => SlotDecision::Skip {
                    reason: "a monitor: its runs happen elsewhere and ping it".to_owned(),
                },
                (SlotDecision::Fire, Some(_)) if job.spec.suspended => SlotDecision::Skip {
                    reason: panda_core::SkipReason::Suspended.to_string(),
                },
                (decision, _) => decision.clone(),
            };
            let (execution, slot) = slot_execution(job, item.scheduled_at, &decision, now);
            planned.insert(key, slot.clone());
            SlotPlan::New(Box::new(execution), slot)
        })
        .collect()
}

/// A first attempt of `job` in `status`, as of `now`.
pub(crate) fn first_attempt(
    job: &Job,
    trigger: Trigger,
    status: Status,
    run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Execution {
    let id = ExecutionId::new();
    Execution {
        id,
        root_id: id,
        job_id: job.id,
        job_name: job.spec.name.to_string(),
        queue: job.spec.queue.clone(),
        priority: job.spec.priority,
        status,
        trigger,
        attempt: 1,
        retry: job.spec.retry,
        concurrency: job.spec.concurrency,
        max_running: job.spec.max_running,
        concurrency_key: None,
        idempotency_key: None,
        payload: None,
        env: BTreeMap::new(),
        scheduled_at: None,
        run_at,
        created_at: now,
        started_at: None,
        finished_at: if status.is_terminal() {
            Some(now)
        } else {
            None
        },
        worker_id: None,
        lease_expires_at: None,
        cancel_requested: false,
        exit_code: None,
        reason: None,
        image_digest: None,
        instance: None,
        revision: None,
        healthy_at: None,
    }
}

/// The execution an enqueue request creates.
pub(crate) fn enqueued(job: &Job, request: &NewExecution, now: DateTime<Utc>) -> Execution {
    let mut execution = first_attempt(
        job,
        request.trigger,
        Status::Queued,
        request.run_at.unwrap_or(now),
        now,
    );
    execution.priority = request.priority.unwrap_or(job.spec.priority);
    execution.idempotency_key = request.idempotency_key.clone();
    execution.payload = request.payload.clone();
    execution.env = request.env.clone();
    execution.scheduled_at = request.scheduled_at;
    if request.force {
        execution.concurrency = ConcurrencyPolicy::Allow;
        execution.max_running = None;
    }
    execution.concurrency_key = concurrency_key(job, &execution);
    execution
}

/// The key a new execution of `job` counts against under its job's per-key limit (see
/// [`panda_core::JobSpec::concurrency_key`]): read from its payload, its environment (its own
/// over its job's) or its idempotency key. `None` when the job has no per-key limit or the
/// execution runs outside the limit (forced).
pub(crate) fn concurrency_key(job: &Job, execution: &Execution) -> Option<String> {
    execution.max_running?;
    let expr = panda_core::KeyExpr::parse(job.spec.concurrency_key.as_deref()?).ok()?;
    Some(expr.key_of(
        execution.payload.as_ref(),
        |name| {
            execution
                .env
                .get(name)
                .or_else(|| job.spec.env.get(name))
                .cloned()
        },
        execution.idempotency_key.as_deref(),
    ))
}

/// Checks that `at` is a past slot of `job`'s schedule, which a run may stand for.
pub(crate) fn validate_backfill(
    job: &Job,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), ValidationError> {
    let refuse = |message: String| ValidationError::Field {
        field: "scheduled_at",
        message,
    };
    let Some(schedule) = &job.spec.schedule else {
        return Err(refuse(format!(
            "job {} has no schedule; only a cronjob's slot can be backfilled",
            job.spec.name
        )));
    };
    if at > now {
        return Err(refuse(format!(
            "{at} is in the future; a backfill stands for a past slot"
        )));
    }
    let cron = schedule.fire_times(job.id)?;
    match cron.latest_at_or_before(at) {
        Some(slot) if slot == at => Ok(()),
        Some(slot) => Err(refuse(format!(
            "{at} is not a slot of {:?} in {}; the slot before it is {slot}",
            schedule.cron, schedule.timezone
        ))),
        None => Err(refuse(format!(
            "{at} is not a slot of {:?} in {}",
            schedule.cron, schedule.timezone
        ))),
    }
}

/// The error for a backfill of a slot that was already recorded.
pub(crate) fn slot_taken(job: &Job, slot: &Slot) -> StoreError {
    StoreError::Conflict(format!(
        "slot {} of {} was already recorded (execution {}); a slot runs once",
        slot.scheduled_at, job.spec.name, slot.execution_id
    ))
}

/// How an attempt that ended (or was lost) ends: its final status, and whether another
/// attempt follows after a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndStatus {
    pub(crate) status: Status,
    pub(crate) retry_in: Option<std::time::Duration>,
}

/// Applies the retry policy. `None` as outcome means the lease expired (the attempt is lost);
/// a lost attempt with attempts left is retried at once, without backoff.
pub(crate) fn end_status(execution: &Execution, outcome: Option<Outcome>) -> EndStatus {
    // An instance of a service is never retried nor dead: its service restarts it (see
    // `services::restart_of`), and a run that could not start is a failure like any other.
    if execution.instance.is_some() {
        return final_status(match outcome {
            Some(Outcome::Succeeded) => Status::Succeeded,
            Some(Outcome::Cancelled) => Status::Cancelled,
            Some(Outcome::Failed | Outcome::Rejected) => Status::Failed,
            Some(Outcome::TimedOut) => Status::TimedOut,
            None if execution.cancel_requested => Status::Cancelled,
            None => Status::Lost,
        });
    }
    let failed_status = match outcome {
        Some(Outcome::Succeeded) => return final_status(Status::Succeeded),
        Some(Outcome::Cancelled) => return final_status(Status::Cancelled),
        Some(Outcome::Failed) => Status::Failed,
        Some(Outcome::TimedOut) => Status::TimedOut,
        Some(Outcome::Rejected) => return final_status(Status::Dead),
        // Asked to stop, then its worker vanished: the user's wish stands, no retry.
        None if execution.cancel_requested => return final_status(Status::Cancelled),
        None => Status::Lost,
    };
    match execution
        .retry
        .retry_after(execution.attempt, &mut rand::rng())
    {
        // A lost attempt is retried at once: its worker died, not the job, and a crash already
        // cost the lease expiry; a backoff on top would only delay the rescue.
        Some(_) if failed_status == Status::Lost => EndStatus {
            status: failed_status,
            retry_in: Some(std::time::Duration::ZERO),
        },
        Some(wait) => EndStatus {
            status: failed_status,
            retry_in: Some(wait),
        },
        None => final_status(Status::Dead),
    }
}

fn final_status(status: Status) -> EndStatus {
    EndStatus {
        status,
        retry_in: None,
    }
}

/// The attempt as it ends, and the next attempt when the policy allows one: applies
/// [`end_status`] and the worker's report (`None` when the lease expired) to the execution.
pub(crate) fn end_attempt(
    mut execution: Execution,
    report: Option<&Finish>,
    now: DateTime<Utc>,
) -> Finished {
    let outcome = report.map(|f| f.outcome);
    let end = end_status(&execution, outcome);
    let given_reason = report.and_then(|f| f.reason.as_deref());
    execution.status = end.status;
    execution.finished_at = Some(now);
    execution.lease_expires_at = None;
    execution.reason = end_reason(end.status, outcome, given_reason);
    if let Some(report) = report {
        execution.exit_code = report.exit_code;
        execution.image_digest = report.image_digest.clone();
    }
    let retry = end.retry_in.map(|wait| next_attempt(&execution, wait, now));
    Finished { execution, retry }
}

/// The reason recorded on an attempt that ended in `status`: the worker's own words, or what
/// the store knows when the worker said nothing (it was lost).
pub(crate) fn end_reason(
    status: Status,
    outcome: Option<Outcome>,
    given: Option<&str>,
) -> Option<String> {
    match (status, outcome) {
        (Status::Dead, _) => Some(dead_reason(outcome, given)),
        (Status::Lost, _) => Some("lease expired: the worker stopped heartbeating".to_owned()),
        (Status::Cancelled, None) => Some(
            "cancelled by request; the worker stopped heartbeating before it confirmed".to_owned(),
        ),
        _ => given.map(str::to_owned),
    }
}

/// The reason recorded on a dead execution, keeping what actually happened to the last attempt.
fn dead_reason(outcome: Option<Outcome>, reason: Option<&str>) -> String {
    let what = match outcome {
        Some(Outcome::Rejected) => {
            return match reason {
                Some(reason) if !reason.is_empty() => {
                    format!("could not run (not retried): {reason}")
                }
                _ => "could not run (not retried)".to_owned(),
            };
        }
        Some(Outcome::TimedOut) => "timed out",
        None => "lost: lease expired",
        _ => "failed",
    };
    match reason {
        Some(reason) if !reason.is_empty() => format!("{what} on the last attempt: {reason}"),
        _ => format!("{what} on the last attempt"),
    }
}

/// The next attempt after `failed`, due `retry_in` from `now`.
///
/// A policy's backoff is at most [`RetryPolicy::MAX_BACKOFF`] (validation refuses more), so the
/// wait is clamped to it; and should the sum still not fit, the attempt is due at the latest
/// instant there is, never earlier than asked (and never at once).
pub(crate) fn next_attempt(
    failed: &Execution,
    retry_in: std::time::Duration,
    now: DateTime<Utc>,
) -> Execution {
    let wait = chrono::Duration::from_std(retry_in.min(RetryPolicy::MAX_BACKOFF))
        .unwrap_or(chrono::Duration::MAX);
    Execution {
        id: ExecutionId::new(),
        status: Status::Queued,
        trigger: Trigger::Retry,
        attempt: failed.attempt + 1,
        run_at: now
            .checked_add_signed(wait)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
        created_at: now,
        started_at: None,
        finished_at: None,
        worker_id: None,
        lease_expires_at: None,
        cancel_requested: false,
        exit_code: None,
        reason: None,
        image_digest: None,
        ..failed.clone()
    }
}

/// The reason a released execution carries while it waits to run again (the next run's
/// outcome replaces it).
pub const RELEASED: &str = "released: its worker shut down before it finished; it runs again";

/// A running execution put back in the queue by its worker (see
/// [`Store::execution_release_many`](crate::Store::execution_release_many)): queued again, due
/// at `now`, the same attempt, as if never claimed.
pub(crate) fn released(execution: &Execution, now: DateTime<Utc>) -> Execution {
    Execution {
        status: Status::Queued,
        reason: Some(RELEASED.to_owned()),
        run_at: now,
        started_at: None,
        worker_id: None,
        lease_expires_at: None,
        ..execution.clone()
    }
}

/// The report that ends a released execution whose cancellation was asked for: it is not
/// queued again.
pub(crate) fn released_cancelled(execution_id: ExecutionId, token: uuid::Uuid) -> Finish {
    Finish {
        execution_id,
        token,
        outcome: Outcome::Cancelled,
        exit_code: None,
        reason: Some("cancelled by request while its worker shut down".to_owned()),
        image_digest: None,
    }
}

/// How a dead execution left the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DlqResolution {
    Retried,
    Discarded,
}

impl DlqResolution {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Retried => "retried",
            Self::Discarded => "discarded",
        }
    }
}

/// Checks that `execution` is in the dead-letter queue: dead, and not yet retried or discarded
/// (`resolved` is how it left, when it did).
pub(crate) fn check_dead_letter(
    execution: &Execution,
    resolved: Option<&str>,
) -> Result<(), StoreError> {
    if execution.status != Status::Dead {
        return Err(StoreError::Conflict(format!(
            "execution {} is {}, not dead; only the dead-letter queue can be retried or discarded",
            execution.id, execution.status
        )));
    }
    if let Some(how) = resolved {
        return Err(StoreError::Conflict(format!(
            "execution {} already left the dead-letter queue: it was {how}",
            execution.id
        )));
    }
    Ok(())
}

/// The attempt that runs a dead execution again, due at `now`: the next attempt of its run,
/// under the same retry policy (so failing again makes it dead again).
pub(crate) fn dead_letter_retry(dead: &Execution, now: DateTime<Utc>) -> Execution {
    next_attempt(dead, std::time::Duration::ZERO, now)
}

/// The reason given to a scheduled execution skipped because its job was already running.
pub(crate) fn overlap_reason(running: &str) -> String {
    format!("overlap forbidden: execution {running} was still running")
}

/// One job's retention: its own keep count and maximum age, or the store-wide defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobRetention {
    /// Finished executions (the dead-letter queue aside) kept, newest first.
    pub keep: u32,
    /// Finished executions (dead ones too) that finished before this go, whatever the count;
    /// so do the job's slots scheduled before it.
    pub cutoff: Option<DateTime<Utc>>,
}

/// The rule pruning applies to the job `spec` at `now`: the job's own `keep` and `max_age`
/// where it sets them, `defaults` otherwise.
pub(crate) fn job_retention(
    spec: &JobSpec,
    defaults: &Retention,
    now: DateTime<Utc>,
) -> JobRetention {
    let keep = spec.keep.unwrap_or(defaults.keep_per_job).max(1);
    let cutoff = spec
        .max_age
        .or(defaults.max_age)
        .and_then(|age| chrono::Duration::from_std(age).ok())
        .and_then(|age| now.checked_sub_signed(age));
    JobRetention { keep, cutoff }
}

#[cfg(test)]
mod tests {
    use super::*;
    use panda_core::{JobName, JobSpec, RetryPolicy, RuntimeSpec};
    use std::time::Duration;

    fn job(max_attempts: u32) -> Job {
        let mut spec = JobSpec::new(
            JobName::new("j").expect("valid"),
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        spec.retry = RetryPolicy {
            max_attempts,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(4),
        };
        Job {
            id: panda_core::JobId::new(),
            spec,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn end_status_table() {
        let now = Utc::now();
        let first = first_attempt(&job(2), Trigger::Api, Status::Running, now, now);
        let last = Execution {
            attempt: 2,
            ..first.clone()
        };
        let cancelling = Execution {
            cancel_requested: true,
            ..first.clone()
        };
        let cases = [
            (&first, Some(Outcome::Succeeded), Status::Succeeded, false),
            (&first, Some(Outcome::Cancelled), Status::Cancelled, false),
            (&first, Some(Outcome::Failed), Status::Failed, true),
            (&first, Some(Outcome::TimedOut), Status::TimedOut, true),
            (&first, Some(Outcome::Rejected), Status::Dead, false),
            (&first, None, Status::Lost, true),
            (&cancelling, None, Status::Cancelled, false),
            (&last, Some(Outcome::Succeeded), Status::Succeeded, false),
            (&last, Some(Outcome::Failed), Status::Dead, false),
            (&last, Some(Outcome::TimedOut), Status::Dead, false),
            (&last, None, Status::Dead, false),
        ];
        for (execution, outcome, status, retries) in cases {
            let s = end_status(execution, outcome);
            assert_eq!(
                s.status, status,
                "attempt {} {outcome:?}",
                execution.attempt
            );
            assert_eq!(
                s.retry_in.is_some(),
                retries,
                "attempt {} {outcome:?}",
                execution.attempt
            );
            assert!(s.retry_in.is_none_or(|w| w <= Duration::from_secs(1)));
        }
    }

    #[test]
    fn next_attempt_keeps_the_run_and_resets_the_attempt_state() {
        let now = Utc::now();
        let mut first = first_attempt(&job(3), Trigger::Schedule, Status::Failed, now, now);
        first.idempotency_key = Some("k".into());
        first.exit_code = Some(1);
        let next = next_attempt(&first, Duration::from_millis(1500), now);
        assert_ne!(next.id, first.id);
        assert_eq!(next.root_id, first.id);
        assert_eq!(
            (next.attempt, next.trigger, next.status),
            (2, Trigger::Retry, Status::Queued)
        );
        assert_eq!(next.run_at, now + chrono::Duration::milliseconds(1500));
        assert_eq!(next.run_key(), first.run_key());
        assert_eq!(next.exit_code, None);
    }

    #[test]
    fn a_wait_too_long_for_the_clock_never_makes_a_retry_due_at_once() {
        let now = Utc::now();
        let first = first_attempt(&job(3), Trigger::Api, Status::Failed, now, now);
        let next = next_attempt(&first, Duration::MAX, now);
        assert_eq!(
            next.run_at,
            now + chrono::Duration::from_std(RetryPolicy::MAX_BACKOFF).expect("fits"),
            "clamped to the longest backoff"
        );
        let at_the_end = DateTime::<Utc>::MAX_UTC - chrono::Duration::seconds(1);
        let next = next_attempt(&first, Duration::from_secs(60), at_the_end);
        assert_eq!(next.run_at, DateTime::<Utc>::MAX_UTC, "not `now`");
    }

    #[test]
    fn enqueue_requests_are_validated() {
        let ok = NewExecution::api("j");
        assert_eq!(validate_new_execution(&ok), Ok(()));
        let mut retry = ok.clone();
        retry.trigger = Trigger::Retry;
        assert!(validate_new_execution(&retry).is_err());
        let mut chained = ok.clone();
        chained.trigger = Trigger::Upstream;
        assert!(
            validate_new_execution(&chained).is_err(),
            "only a chain starts one"
        );
        let mut posing = ok.clone();
        posing
            .env
            .insert(panda_core::UPSTREAM_EXECUTION_ENV.into(), "x".into());
        assert!(
            validate_new_execution(&posing).is_err(),
            "set by Panda only"
        );
        let mut long_key = ok.clone();
        long_key.idempotency_key = Some("k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1));
        assert!(validate_new_execution(&long_key).is_err());
        let mut urgent = ok.clone();
        urgent.priority = Some(i32::MAX);
        assert!(validate_new_execution(&urgent).is_err());
        let mut big = ok;
        big.payload = Some(serde_json::Value::String(
            "x".repeat(panda_core::MAX_PAYLOAD_BYTES),
        ));
        assert!(matches!(
            validate_new_execution(&big),
            Err(ValidationError::PayloadTooLarge { .. })
        ));
    }
}
