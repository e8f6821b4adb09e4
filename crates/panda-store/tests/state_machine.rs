//! The store as a state machine, on both backends: random sequences of enqueue, claim (by one of
//! three nodes), heartbeat, clock advance, finish, release, cancel, rescue and the dead-letter
//! queue's retry and discard, each checked against a small reference model written here.
//!
//! After every step the store's whole state (the case's executions, its dead-letter queue and
//! its queue's counts) must be the model's: no execution lost or made from nothing, never two
//! live attempts (let alone two leases) of one run, no terminal status ever changed, every write
//! under a lease that moved on refused as `Stale` and changing nothing, an execution in the
//! dead-letter queue exactly when its attempts ran out (or it could not run at all), and at
//! most `max_running` executions of a limited job running.
//!
//! Nodes keep every lease they were ever given, so they often write with one that moved on
//! (rescued, finished, released): that is how stale writes are exercised.
//!
//! One store per backend serves every case: each case has jobs and a queue of its own, and its
//! own stretch of time, a day after the previous case's start, so anything an earlier case left
//! running has expired by then and is swept before the case starts.
//!
//! `PANDA_PROPTEST_CASES` sets the number of cases (200 by default); a failure is reported
//! shrunk, as the list of steps the model and the store disagreed on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, JobName, JobSpec, RetryPolicy, RuntimeSpec, Status,
    Trigger,
};
use panda_store::{
    ClaimRequest, ExecutionFilter, Finish, MAX_PAGE_SIZE, NewExecution, Outcome, Store, StoreError,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use uuid::Uuid;

/// How long a lease lasts without a heartbeat.
const TTL: Duration = Duration::from_secs(10);
/// The nodes that claim.
const NODES: usize = 3;

/// One job of each kind a case uses: how many attempts, and how many of its executions may run
/// at once (`forbid` is one).
#[derive(Debug, Clone, Copy)]
struct JobKind {
    max_attempts: u32,
    concurrency: ConcurrencyPolicy,
    max_running: Option<u32>,
}

const JOBS: [JobKind; 3] = [
    JobKind {
        max_attempts: 1,
        concurrency: ConcurrencyPolicy::Allow,
        max_running: None,
    },
    JobKind {
        max_attempts: 2,
        concurrency: ConcurrencyPolicy::Forbid,
        max_running: None,
    },
    JobKind {
        max_attempts: 3,
        concurrency: ConcurrencyPolicy::Allow,
        max_running: Some(2),
    },
];

impl JobKind {
    /// How many of its executions (forced ones aside) may run at once.
    fn limit(self) -> Option<u32> {
        match self.concurrency {
            ConcurrencyPolicy::Forbid => Some(1),
            _ => self.max_running,
        }
    }

    fn retry(self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(5),
        }
    }
}

/// One step. Picks (`lease`, `execution`) are taken modulo what there is to pick from when the
/// step runs, so every sequence is valid and shrinks to a valid one.
#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        job: usize,
        key: Option<u8>,
        priority: Option<i32>,
        delay_secs: Option<u8>,
        force: bool,
    },
    Claim {
        node: usize,
        limit: u32,
    },
    Heartbeat {
        node: usize,
        lease: u8,
    },
    Advance {
        secs: u32,
    },
    Finish {
        node: usize,
        lease: u8,
        outcome: Outcome,
    },
    Release {
        node: usize,
        lease: u8,
    },
    Cancel {
        execution: u8,
    },
    Rescue {
        limit: u32,
    },
    DlqRetry {
        execution: u8,
    },
    DlqDiscard {
        execution: u8,
    },
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Succeeded),
        4 => Just(Outcome::Failed),
        1 => Just(Outcome::TimedOut),
        1 => Just(Outcome::Cancelled),
        1 => Just(Outcome::Rejected),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    prop_oneof![
        4 => (
            0..JOBS.len(),
            proptest::option::weighted(0.3, 0u8..3),
            proptest::option::weighted(0.2, 0i32..3),
            proptest::option::weighted(0.2, 1u8..20),
            proptest::bool::weighted(0.15),
        )
            .prop_map(|(job, key, priority, delay_secs, force)| Op::Enqueue {
                job,
                key,
                priority,
                delay_secs,
                force,
            }),
        4 => (node.clone(), 1u32..4).prop_map(|(node, limit)| Op::Claim { node, limit }),
        3 => (node.clone(), any::<u8>()).prop_map(|(node, lease)| Op::Heartbeat { node, lease }),
        3 => prop_oneof![1u32..6, 8u32..14, 20u32..60].prop_map(|secs| Op::Advance { secs }),
        4 => (node.clone(), any::<u8>(), outcome())
            .prop_map(|(node, lease, outcome)| Op::Finish { node, lease, outcome }),
        2 => (node, any::<u8>()).prop_map(|(node, lease)| Op::Release { node, lease }),
        1 => any::<u8>().prop_map(|execution| Op::Cancel { execution }),
        2 => prop_oneof![Just(100u32), 1u32..3].prop_map(|limit| Op::Rescue { limit }),
        1 => any::<u8>().prop_map(|execution| Op::DlqRetry { execution }),
        1 => any::<u8>().prop_map(|execution| Op::DlqDiscard { execution }),
    ]
}

/// A run's lease as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelLease {
    token: Uuid,
    expires_at: DateTime<Utc>,
    node: usize,
}

/// One execution as the model knows it.
#[derive(Debug, Clone)]
struct ModelExecution {
    id: ExecutionId,
    /// Its number in this case, in order of creation: how the steps name it.
    label: usize,
    job: usize,
    root: ExecutionId,
    attempt: u32,
    status: Status,
    run_at: DateTime<Utc>,
    priority: i32,
    /// Takes one of its job's running places (not forced, and the job is limited).
    limited: bool,
    key: Option<String>,
    lease: Option<ModelLease>,
    cancel_requested: bool,
    /// Dead and not yet retried or discarded from the dead-letter queue.
    in_dlq: bool,
    /// Ended by a `Rejected` report: dead at once, whatever its attempts.
    rejected: bool,
}

/// The reference model of one case's executions.
#[derive(Debug)]
struct Model {
    now: DateTime<Utc>,
    executions: Vec<ModelExecution>,
    by_id: HashMap<ExecutionId, usize>,
    /// Every lease each node was ever given, oldest first: `(execution label, token)`.
    leases: [Vec<(usize, Uuid)>; NODES],
}

impl Model {
    fn get(&self, id: ExecutionId) -> Option<&ModelExecution> {
        self.by_id.get(&id).map(|&i| &self.executions[i])
    }

    fn add(&mut self, e: ModelExecution) {
        self.by_id.insert(e.id, self.executions.len());
        self.executions.push(e);
    }

    /// Limited executions of `job` running now: the places it has taken.
    fn places_taken(&self, job: usize) -> usize {
        self.executions
            .iter()
            .filter(|e| e.job == job && e.limited && e.status == Status::Running)
            .count()
    }

    /// How an attempt under a lease ends, as the retry policy says: its status, whether another
    /// attempt follows, and whether it is a dead letter.
    fn end(&self, e: &ModelExecution, outcome: Option<Outcome>) -> (Status, bool) {
        let max = JOBS[e.job].max_attempts;
        let failed = match outcome {
            Some(Outcome::Succeeded) => return (Status::Succeeded, false),
            Some(Outcome::Cancelled) => return (Status::Cancelled, false),
            Some(Outcome::Rejected) => return (Status::Dead, false),
            None if e.cancel_requested => return (Status::Cancelled, false),
            Some(Outcome::Failed) => Status::Failed,
            Some(Outcome::TimedOut) => Status::TimedOut,
            None => Status::Lost,
        };
        if e.attempt >= max {
            (Status::Dead, false)
        } else {
            (failed, true)
        }
    }
}

/// What a case works on.
struct Case {
    store: Arc<dyn Store>,
    jobs: Vec<String>,
    queue: String,
    nodes: Vec<String>,
}

type Step = Result<(), String>;

macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

fn label(model: &Model, id: ExecutionId) -> String {
    model
        .get(id)
        .map_or_else(|| format!("unknown {id}"), |e| format!("#{}", e.label))
}

/// The next attempt a finish, a rescue or a dead-letter retry queued, checked and added.
fn add_retry(
    model: &mut Model,
    failed: &ModelExecution,
    retry: &Execution,
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
) -> Step {
    check!(
        retry.root_id == failed.root
            && retry.attempt == failed.attempt + 1
            && retry.status == Status::Queued
            && retry.trigger == Trigger::Retry
            && retry.priority == failed.priority,
        "the retry of #{} is {retry:?}",
        failed.label
    );
    check!(
        earliest <= retry.run_at && retry.run_at <= latest,
        "the retry of #{} is due at {}, outside [{earliest}, {latest}]",
        failed.label,
        retry.run_at
    );
    let label = model.executions.len();
    model.add(ModelExecution {
        id: retry.id,
        label,
        job: failed.job,
        root: failed.root,
        attempt: failed.attempt + 1,
        status: Status::Queued,
        run_at: retry.run_at,
        priority: failed.priority,
        limited: failed.limited,
        key: failed.key.clone(),
        lease: None,
        cancel_requested: false,
        in_dlq: false,
        rejected: false,
    });
    Ok(())
}

/// The latest instant a retry after `attempt` failed may be due: its backoff's ceiling.
fn backoff_ceiling(job: usize, attempt: u32, now: DateTime<Utc>) -> DateTime<Utc> {
    let ceiling = JOBS[job].retry().backoff_ceiling(attempt);
    now + chrono::Duration::from_std(ceiling).expect("a short backoff")
}

/// A lease a node holds (or held), picked: `(execution index, token)`. Half the picks are among
/// the leases of executions still live (running, or queued again after a release), where a
/// write must tell the current lease from an old one by its token alone.
fn pick_lease(model: &Model, node: usize, pick: u8) -> Option<(usize, Uuid)> {
    let all = &model.leases[node];
    let live: Vec<(usize, Uuid)> = all
        .iter()
        .copied()
        .filter(|(i, _)| !model.executions[*i].status.is_terminal())
        .collect();
    let leases = if pick >= 128 && !live.is_empty() {
        live.as_slice()
    } else {
        all.as_slice()
    };
    if leases.is_empty() {
        return None;
    }
    Some(leases[usize::from(pick % 128) % leases.len()])
}

fn pick_execution(model: &Model, pick: u8) -> Option<usize> {
    if model.executions.is_empty() {
        return None;
    }
    Some(usize::from(pick) % model.executions.len())
}

fn describe_lease(model: &Model, i: usize, token: Uuid) -> String {
    let e = &model.executions[i];
    let held = e.lease.is_some_and(|l| l.token == token);
    format!(
        "#{} (attempt {}, {}) under {} lease",
        e.label,
        e.attempt,
        e.status,
        if held { "its current" } else { "an old" }
    )
}

/// Runs one step against the store and the model, checking the store's answer. Returns what
/// the step did, in words, for the report.
async fn step(case: &Case, model: &mut Model, op: &Op) -> Result<String, String> {
    let store = &case.store;
    let now = model.now;
    match *op {
        Op::Enqueue {
            job,
            key,
            priority,
            delay_secs,
            force,
        } => {
            let kind = JOBS[job];
            let key = key.map(|k| format!("key-{k}"));
            let force = force && kind.limit().is_some();
            let run_at = delay_secs.map(|d| now + chrono::Duration::seconds(i64::from(d)));
            let request = NewExecution {
                idempotency_key: key.clone(),
                priority,
                run_at,
                force,
                ..NewExecution::api(case.jobs[job].clone())
            };
            let enqueued = store
                .execution_enqueue(&request, now)
                .await
                .map_err(|err| format!("enqueue: {err}"))?;
            let seen = key.as_ref().and_then(|key| {
                model
                    .executions
                    .iter()
                    .find(|e| e.job == job && e.attempt == 1 && e.key.as_ref() == Some(key))
            });
            if let Some(first) = seen {
                check!(
                    !enqueued.created && enqueued.execution.id == first.id,
                    "an enqueue with the seen key {key:?} made {:?} instead of returning #{}",
                    enqueued.execution.id,
                    first.label
                );
                return Ok(format!(
                    "enqueue job {job} with key {key:?}: returns #{}",
                    first.label
                ));
            }
            let e = &enqueued.execution;
            let due = run_at.unwrap_or(now);
            check!(
                enqueued.created
                    && e.status == Status::Queued
                    && e.attempt == 1
                    && e.root_id == e.id
                    && e.run_at == due
                    && e.priority == priority.unwrap_or(0),
                "enqueue made {enqueued:?}"
            );
            let label = model.executions.len();
            model.add(ModelExecution {
                id: e.id,
                label,
                job,
                root: e.id,
                attempt: 1,
                status: Status::Queued,
                run_at: due,
                priority: priority.unwrap_or(0),
                limited: kind.limit().is_some() && !force,
                key: key.clone(),
                lease: None,
                cancel_requested: false,
                in_dlq: false,
                rejected: false,
            });
            Ok(format!(
                "enqueue job {job}{}{}{}{}: #{label}",
                key.map(|k| format!(" with key {k:?}")).unwrap_or_default(),
                priority
                    .map(|p| format!(" at priority {p}"))
                    .unwrap_or_default(),
                delay_secs
                    .map(|d| format!(" due in {d}s"))
                    .unwrap_or_default(),
                if force { " forced" } else { "" },
            ))
        }
        Op::Claim { node, limit } => {
            let request = ClaimRequest {
                worker_id: case.nodes[node].clone(),
                queues: vec![case.queue.clone()],
                limit,
                lease_ttl: TTL,
            };
            let claimed = store
                .execution_claim(&request, now)
                .await
                .map_err(|err| format!("claim: {err}"))?;
            // The model's claim, in rounds as the store's: due executions in claim order, those
            // of full jobs left out, up to what is left of `limit`; each limited one takes a
            // free place of its job or waits. When one of a job limited by `max_running` waits
            // (its job filled up in this batch), the store parks its job's due work and reads
            // on past it: another round, with that job now full.
            let mut free: HashMap<usize, usize> = HashMap::new();
            let places_left = |job: usize, free: &mut HashMap<usize, usize>| -> usize {
                *free.entry(job).or_insert_with(|| {
                    (JOBS[job].limit().unwrap_or(0) as usize)
                        .saturating_sub(model.places_taken(job))
                })
            };
            let mut expected: Vec<ExecutionId> = Vec::new();
            for _ in 0..64 {
                let left = (limit as usize).saturating_sub(expected.len());
                if left == 0 {
                    break;
                }
                let mut due: Vec<&ModelExecution> = model
                    .executions
                    .iter()
                    .filter(|e| e.status == Status::Queued && e.run_at <= now)
                    .filter(|e| !expected.contains(&e.id))
                    .filter(|e| !e.limited || places_left(e.job, &mut free) > 0)
                    .collect();
                due.sort_by(|a, b| {
                    b.priority
                        .cmp(&a.priority)
                        .then(a.run_at.cmp(&b.run_at))
                        .then(a.id.cmp(&b.id))
                });
                due.truncate(left);
                let mut parked = false;
                for e in due {
                    if !e.limited {
                        expected.push(e.id);
                        continue;
                    }
                    let f = free.get_mut(&e.job).expect("counted above");
                    if *f == 0 {
                        parked |= JOBS[e.job].max_running.is_some();
                        continue;
                    }
                    *f -= 1;
                    expected.push(e.id);
                }
                if !parked {
                    break;
                }
            }
            let got: Vec<ExecutionId> = claimed.iter().map(|c| c.execution.id).collect();
            // Which of a limited job's due executions start may differ from claim order (the
            // store parks a full job's waiting work and un-parks one per freed place, so a run
            // put back in the queue meanwhile can start before older parked ones); how many of
            // each job start, and which unlimited ones, may not.
            let shape = |ids: &[ExecutionId]| {
                let mut unlimited = Vec::new();
                let mut per_job: BTreeMap<usize, usize> = BTreeMap::new();
                for id in ids {
                    let e = &model.executions[model.by_id[id]];
                    if e.limited {
                        *per_job.entry(e.job).or_default() += 1;
                    } else {
                        unlimited.push(*id);
                    }
                }
                unlimited.sort();
                (unlimited, per_job)
            };
            let all_due = got.iter().all(|id| {
                model.by_id.get(id).is_some_and(|i| {
                    let e = &model.executions[*i];
                    e.status == Status::Queued && e.run_at <= now
                })
            });
            check!(
                got == expected || (all_due && shape(&got) == shape(&expected)),
                "node {node} claimed {:?} (limit {limit}), the model expected {:?}",
                got.iter().map(|id| label(model, *id)).collect::<Vec<_>>(),
                expected
                    .iter()
                    .map(|id| label(model, *id))
                    .collect::<Vec<_>>()
            );
            let expires_at = now + chrono::Duration::from_std(TTL).expect("a short TTL");
            let mut words = Vec::new();
            for c in &claimed {
                let i = model.by_id[&c.execution.id];
                let e = &mut model.executions[i];
                check!(
                    c.execution.status == Status::Running
                        && c.execution.attempt == e.attempt
                        && c.lease.expires_at == expires_at
                        && c.lease.execution_id == e.id,
                    "claimed #{} as {c:?}",
                    e.label
                );
                e.status = Status::Running;
                e.lease = Some(ModelLease {
                    token: c.lease.token,
                    expires_at,
                    node,
                });
                model.leases[node].push((i, c.lease.token));
                words.push(format!("#{}", e.label));
            }
            Ok(format!(
                "node {node} claims up to {limit}: [{}]",
                words.join(", ")
            ))
        }
        Op::Heartbeat { node, lease } => {
            let Some((i, token)) = pick_lease(model, node, lease) else {
                return Ok(format!("node {node} has no lease to heartbeat"));
            };
            let what = describe_lease(model, i, token);
            let e = &model.executions[i];
            let answer = store.execution_heartbeat(e.id, token, TTL, now).await;
            let holds = e.status == Status::Running && e.lease.is_some_and(|l| l.token == token);
            if holds {
                let beat = answer.map_err(|err| format!("heartbeat of {what}: {err}"))?;
                let expires_at = now + chrono::Duration::from_std(TTL).expect("a short TTL");
                check!(
                    beat.expires_at == expires_at && beat.cancel_requested == e.cancel_requested,
                    "heartbeat of {what} answered {beat:?}"
                );
                if let Some(l) = &mut model.executions[i].lease {
                    l.expires_at = expires_at;
                }
            } else {
                check!(
                    matches!(answer, Err(StoreError::Stale)),
                    "heartbeat of {what} answered {answer:?}, not Stale"
                );
            }
            Ok(format!("node {node} heartbeats {what}"))
        }
        Op::Advance { secs } => {
            model.now = now + chrono::Duration::seconds(i64::from(secs));
            Ok(format!("clock +{secs}s"))
        }
        Op::Finish {
            node,
            lease,
            outcome,
        } => {
            let Some((i, token)) = pick_lease(model, node, lease) else {
                return Ok(format!("node {node} has no lease to finish"));
            };
            let what = describe_lease(model, i, token);
            let e = model.executions[i].clone();
            let report = Finish {
                execution_id: e.id,
                token,
                outcome,
                exit_code: (outcome == Outcome::Failed).then_some(1),
                reason: None,
                image_digest: None,
            };
            let answer = store.execution_finish(&report, now).await;
            let holds = e.status == Status::Running && e.lease.is_some_and(|l| l.token == token);
            if !holds {
                check!(
                    matches!(answer, Err(StoreError::Stale)),
                    "finish of {what} as {outcome:?} answered {answer:?}, not Stale"
                );
                return Ok(format!("node {node} finishes {what} as {outcome:?}: stale"));
            }
            let finished = answer.map_err(|err| format!("finish of {what}: {err}"))?;
            let (status, retried) = model.end(&e, Some(outcome));
            check!(
                finished.execution.status == status && finished.retry.is_some() == retried,
                "finish of {what} as {outcome:?} made {:?} with retry {:?}, the model expected \
                 {status} with{} a retry",
                finished.execution.status,
                finished.retry.as_ref().map(|r| r.id),
                if retried { "" } else { "out" }
            );
            let m = &mut model.executions[i];
            m.status = status;
            m.lease = None;
            m.in_dlq = status == Status::Dead;
            m.rejected = outcome == Outcome::Rejected;
            if let Some(retry) = &finished.retry {
                add_retry(
                    model,
                    &e,
                    retry,
                    now,
                    backoff_ceiling(e.job, e.attempt, now),
                )?;
            }
            Ok(format!(
                "node {node} finishes {what} as {outcome:?}: {status}"
            ))
        }
        Op::Release { node, lease } => {
            let Some((i, token)) = pick_lease(model, node, lease) else {
                return Ok(format!("node {node} has no lease to release"));
            };
            let what = describe_lease(model, i, token);
            let e = model.executions[i].clone();
            let mut answers = store
                .execution_release_many(&[(e.id, token)], now)
                .await
                .map_err(|err| format!("release of {what}: {err}"))?;
            check!(answers.len() == 1, "release answered {answers:?}");
            let answer = answers.remove(0);
            let holds = e.status == Status::Running && e.lease.is_some_and(|l| l.token == token);
            if !holds {
                check!(
                    matches!(answer, Err(StoreError::Stale)),
                    "release of {what} answered {answer:?}, not Stale"
                );
                return Ok(format!("node {node} releases {what}: stale"));
            }
            let released = answer.map_err(|err| format!("release of {what}: {err}"))?;
            let m = &mut model.executions[i];
            m.lease = None;
            if e.cancel_requested {
                m.status = Status::Cancelled;
            } else {
                m.status = Status::Queued;
                m.run_at = now;
            }
            check!(
                released.status == m.status && released.attempt == e.attempt,
                "release of {what} made {released:?}"
            );
            Ok(format!("node {node} releases {what}: {}", m.status))
        }
        Op::Cancel { execution } => {
            let Some(i) = pick_execution(model, execution) else {
                return Ok("nothing to cancel".into());
            };
            let e = model.executions[i].clone();
            let answer = store.execution_cancel(e.id, now).await;
            match e.status {
                Status::Queued | Status::Running => {
                    let cancelled = answer.map_err(|err| format!("cancel #{}: {err}", e.label))?;
                    let m = &mut model.executions[i];
                    if e.status == Status::Queued {
                        m.status = Status::Cancelled;
                    } else {
                        m.cancel_requested = true;
                    }
                    check!(
                        cancelled.status == m.status
                            && cancelled.cancel_requested == m.cancel_requested,
                        "cancel of #{} made {cancelled:?}",
                        e.label
                    );
                }
                _ => check!(
                    matches!(answer, Err(StoreError::Conflict(_))),
                    "cancel of #{} ({}) answered {answer:?}, not Conflict",
                    e.label,
                    e.status
                ),
            }
            Ok(format!("cancel #{} ({})", e.label, e.status))
        }
        Op::Rescue { limit } => {
            let rescued = store
                .execution_rescue(now, limit)
                .await
                .map_err(|err| format!("rescue: {err}"))?;
            let expired: Vec<&ModelExecution> = model
                .executions
                .iter()
                .filter(|e| {
                    e.status == Status::Running && e.lease.is_some_and(|l| l.expires_at < now)
                })
                .collect();
            let got: HashSet<ExecutionId> = rescued.iter().map(|f| f.execution.id).collect();
            check!(
                got.len() == rescued.len() && got.len() == expired.len().min(limit as usize),
                "rescue (limit {limit}) took {:?}; expired: {:?}",
                got.iter().map(|id| label(model, *id)).collect::<Vec<_>>(),
                expired
                    .iter()
                    .map(|e| format!("#{}", e.label))
                    .collect::<Vec<_>>()
            );
            let expiry = |e: &ModelExecution| e.lease.map(|l| l.expires_at);
            let taken_latest = expired
                .iter()
                .filter(|e| got.contains(&e.id))
                .map(|e| expiry(e))
                .max();
            let left_earliest = expired
                .iter()
                .filter(|e| !got.contains(&e.id))
                .map(|e| expiry(e))
                .min();
            check!(
                got.iter().all(|id| expired.iter().any(|e| e.id == *id)),
                "rescue took {:?}, of which some had not expired",
                got.iter().map(|id| label(model, *id)).collect::<Vec<_>>()
            );
            check!(
                match (taken_latest, left_earliest) {
                    (Some(taken), Some(left)) => taken <= left,
                    _ => true,
                },
                "rescue did not take the longest expired leases first"
            );
            let mut words = Vec::new();
            for finished in &rescued {
                let i = model.by_id[&finished.execution.id];
                let e = model.executions[i].clone();
                let (status, retried) = model.end(&e, None);
                check!(
                    finished.execution.status == status && finished.retry.is_some() == retried,
                    "rescue of #{} made {:?} with retry {:?}, the model expected {status}",
                    e.label,
                    finished.execution.status,
                    finished.retry.as_ref().map(|r| r.id)
                );
                let m = &mut model.executions[i];
                m.status = status;
                m.lease = None;
                m.in_dlq = status == Status::Dead;
                if let Some(retry) = &finished.retry {
                    add_retry(model, &e, retry, now, now)?;
                }
                words.push(format!("#{} {status}", e.label));
            }
            Ok(format!("rescue up to {limit}: [{}]", words.join(", ")))
        }
        Op::DlqRetry { execution } => {
            let Some(i) = pick_execution(model, execution) else {
                return Ok("nothing to retry".into());
            };
            let e = model.executions[i].clone();
            let answer = store.dlq_retry(e.id, now).await;
            if e.in_dlq {
                let retry = answer.map_err(|err| format!("DLQ retry of #{}: {err}", e.label))?;
                model.executions[i].in_dlq = false;
                add_retry(model, &e, &retry, now, now)?;
                Ok(format!(
                    "DLQ retry #{}: #{}",
                    e.label,
                    model.executions.len() - 1
                ))
            } else {
                check!(
                    matches!(answer, Err(StoreError::Conflict(_))),
                    "DLQ retry of #{} ({}, not in the DLQ) answered {answer:?}, not Conflict",
                    e.label,
                    e.status
                );
                Ok(format!("DLQ retry #{} ({}): refused", e.label, e.status))
            }
        }
        Op::DlqDiscard { execution } => {
            let Some(i) = pick_execution(model, execution) else {
                return Ok("nothing to discard".into());
            };
            let e = model.executions[i].clone();
            let answer = store.dlq_discard(e.id, now).await;
            if e.in_dlq {
                answer.map_err(|err| format!("DLQ discard of #{}: {err}", e.label))?;
                model.executions[i].in_dlq = false;
                Ok(format!("DLQ discard #{}", e.label))
            } else {
                check!(
                    matches!(answer, Err(StoreError::Conflict(_))),
                    "DLQ discard of #{} ({}, not in the DLQ) answered {answer:?}, not Conflict",
                    e.label,
                    e.status
                );
                Ok(format!("DLQ discard #{} ({}): refused", e.label, e.status))
            }
        }
    }
}

/// Every execution of the case's jobs as the store has them, by id.
async fn snapshot(case: &Case) -> Result<BTreeMap<ExecutionId, Execution>, String> {
    let mut all = BTreeMap::new();
    for job in &case.jobs {
        for e in list(case, job, false).await? {
            all.insert(e.id, e);
        }
    }
    Ok(all)
}

async fn list(case: &Case, job: &str, dead_letter: bool) -> Result<Vec<Execution>, String> {
    let mut filter = ExecutionFilter {
        job: Some(job.to_owned()),
        dead_letter,
        limit: MAX_PAGE_SIZE,
        ..ExecutionFilter::default()
    };
    let mut out = Vec::new();
    loop {
        let page = case
            .store
            .execution_list(&filter)
            .await
            .map_err(|err| format!("list: {err}"))?;
        out.extend(page.executions);
        match page.next {
            Some(next) => filter.before = Some(next),
            None => return Ok(out),
        }
    }
}

/// Checks the store's state against the model and against the invariants that hold whatever
/// the model says, `previous` being the state before the step.
async fn check_state(
    case: &Case,
    model: &Model,
    previous: &BTreeMap<ExecutionId, Execution>,
    dead_letters_may_change: bool,
) -> Result<BTreeMap<ExecutionId, Execution>, String> {
    let stored = snapshot(case).await?;

    // No execution lost, none from nowhere.
    let model_ids: HashSet<ExecutionId> = model.executions.iter().map(|e| e.id).collect();
    let stored_ids: HashSet<ExecutionId> = stored.keys().copied().collect();
    check!(
        model_ids == stored_ids,
        "the store holds {} executions, the model {}: only in the store {:?}, only in the model \
         {:?}",
        stored_ids.len(),
        model_ids.len(),
        stored_ids.difference(&model_ids).collect::<Vec<_>>(),
        model_ids
            .difference(&stored_ids)
            .map(|id| label(model, *id))
            .collect::<Vec<_>>()
    );

    // Each execution as the model has it.
    for m in &model.executions {
        let s = &stored[&m.id];
        let lease_expiry = m.lease.map(|l| l.expires_at);
        check!(
            s.status == m.status
                && s.attempt == m.attempt
                && s.root_id == m.root
                && s.lease_expires_at == lease_expiry
                && s.cancel_requested == m.cancel_requested,
            "#{} is stored as {} attempt {} lease until {:?} cancel {}; the model has {} attempt \
             {} lease until {lease_expiry:?} cancel {}",
            m.label,
            s.status,
            s.attempt,
            s.lease_expires_at,
            s.cancel_requested,
            m.status,
            m.attempt,
            m.cancel_requested
        );
        if m.status == Status::Queued {
            check!(
                s.run_at == m.run_at,
                "#{} is due at {}, the model says {}",
                m.label,
                s.run_at,
                m.run_at
            );
        }
        if let Some(lease) = m.lease {
            check!(
                s.worker_id.as_deref() == Some(case.nodes[lease.node].as_str()),
                "#{} runs on {:?}, the model says node {}",
                m.label,
                s.worker_id,
                lease.node
            );
        }
    }

    // Terminal states are final.
    for (id, before) in previous {
        if before.status.is_terminal() {
            let now = &stored[id];
            check!(
                now.status == before.status && now.finished_at == before.finished_at,
                "{} was {} and is now {} (finished at {:?}, then {:?})",
                label(model, *id),
                before.status,
                now.status,
                before.finished_at,
                now.finished_at
            );
        }
    }

    // One live attempt per run, so never two leases on one run.
    let mut live: HashMap<ExecutionId, ExecutionId> = HashMap::new();
    for e in stored.values() {
        if !e.status.is_terminal()
            && let Some(other) = live.insert(e.root_id, e.id)
        {
            return Err(format!(
                "run {} has two live attempts: {} and {}",
                e.root_id,
                label(model, other),
                label(model, e.id)
            ));
        }
    }

    // A failed, timed-out or lost attempt has its next attempt; a dead one ran out of
    // attempts or could not run at all.
    for e in stored.values() {
        let m = model.get(e.id).expect("checked above");
        match e.status {
            Status::Failed | Status::TimedOut | Status::Lost => check!(
                stored
                    .values()
                    .any(|r| r.root_id == e.root_id && r.attempt == e.attempt + 1),
                "#{} is {} but has no next attempt",
                m.label,
                e.status
            ),
            Status::Dead => check!(
                e.attempt >= e.retry.max_attempts || m.rejected,
                "#{} is dead at attempt {} of {}",
                m.label,
                e.attempt,
                e.retry.max_attempts
            ),
            _ => {}
        }
    }

    // A limited job runs at most its limit.
    for (j, kind) in JOBS.iter().enumerate() {
        if let Some(limit) = kind.limit() {
            let running = stored
                .values()
                .filter(|e| {
                    e.status == Status::Running
                        && model.get(e.id).is_some_and(|m| m.job == j && m.limited)
                })
                .count();
            check!(
                running <= limit as usize,
                "job {j} runs {running} executions; its limit is {limit}"
            );
        }
    }

    // The dead-letter queue is exactly the model's (read after the steps that can change it:
    // the rest are checked not to change any execution's status).
    if dead_letters_may_change {
        check_dead_letters(case, model).await?;
    }

    // The queue's counts agree.
    let stats = case
        .store
        .queue_stats(model.now)
        .await
        .map_err(|err| format!("queue stats: {err}"))?;
    let ours = stats.iter().find(|s| s.queue == case.queue);
    let count = |f: &dyn Fn(&ModelExecution) -> bool| {
        model.executions.iter().filter(|e| f(e)).count() as u64
    };
    let due = count(&|e| e.status == Status::Queued && e.run_at <= model.now);
    let waiting = count(&|e| e.status == Status::Queued && e.run_at > model.now);
    let running = count(&|e| e.status == Status::Running);
    let got = ours.map_or((0, 0, 0), |s| (s.due, s.waiting, s.running));
    check!(
        got == (due, waiting, running),
        "queue stats (due, waiting, running) are {got:?}, the model's {:?}",
        (due, waiting, running)
    );
    Ok(stored)
}

/// Checks the dead-letter queue against the model's.
async fn check_dead_letters(case: &Case, model: &Model) -> Result<(), String> {
    let mut dlq = HashSet::new();
    for job in &case.jobs {
        dlq.extend(list(case, job, true).await?.into_iter().map(|e| e.id));
    }
    let expected: HashSet<ExecutionId> = model
        .executions
        .iter()
        .filter(|e| e.in_dlq)
        .map(|e| e.id)
        .collect();
    check!(
        dlq == expected,
        "the dead-letter queue holds {:?}, the model {:?}",
        dlq.iter().map(|id| label(model, *id)).collect::<Vec<_>>(),
        expected
            .iter()
            .map(|id| label(model, *id))
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// The steps after which the dead-letter queue may hold something else.
fn moves_dead_letters(op: &Op) -> bool {
    matches!(
        op,
        Op::Finish { .. } | Op::Rescue { .. } | Op::DlqRetry { .. } | Op::DlqDiscard { .. }
    )
}

/// Numbers the cases: each has its own names and its own stretch of time.
static CASES: AtomicU64 = AtomicU64::new(0);

fn start_of(case: u64) -> DateTime<Utc> {
    let base = Utc
        .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid instant");
    base + chrono::Duration::days(i64::try_from(case).expect("few cases"))
}

async fn run_case(store: &Arc<dyn Store>, ops: &[Op]) -> Result<(), String> {
    let n = CASES.fetch_add(1, Ordering::Relaxed);
    let now = start_of(n);
    // What earlier cases left running expired long ago: sweep it, so that this case's rescues
    // see only its own.
    while !store
        .execution_rescue(now, 1000)
        .await
        .map_err(|err| format!("sweep: {err}"))?
        .is_empty()
    {}
    let queue = format!("sm-{n}");
    let mut jobs = Vec::new();
    for (j, kind) in JOBS.iter().enumerate() {
        let name = format!("sm-{n}-{j}");
        let mut spec = JobSpec::new(
            JobName::new(&name).map_err(|err| err.to_string())?,
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        spec.queue = queue.clone();
        spec.retry = kind.retry();
        spec.concurrency = kind.concurrency;
        spec.max_running = kind.max_running;
        store
            .job_create(&spec, now)
            .await
            .map_err(|err| format!("create {name}: {err}"))?;
        jobs.push(name);
    }
    let case = Case {
        store: Arc::clone(store),
        jobs,
        queue,
        nodes: (0..NODES).map(|i| format!("node-{i}")).collect(),
    };
    let mut model = Model {
        now,
        executions: Vec::new(),
        by_id: HashMap::new(),
        leases: Default::default(),
    };
    let mut trace = Vec::new();
    let mut state = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let outcome = match step(&case, &mut model, op).await {
            Ok(words) => {
                trace.push(format!("{i:>3}. {words}"));
                check_state(&case, &model, &state, moves_dead_letters(op)).await
            }
            Err(err) => Err(err),
        };
        match outcome {
            Ok(next) => state = next,
            Err(err) => {
                trace.push(format!("{i:>3}. {op:?}"));
                return Err(format!(
                    "step {i} broke the model: {err}\nsteps:\n{}",
                    trace.join("\n")
                ));
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    match std::env::var("PANDA_PROPTEST_CASES") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("PANDA_PROPTEST_CASES={n:?} is not a number of cases")),
        Err(_) => 200,
    }
}

/// Runs the property against `store`; panics with the shrunk failing sequence.
fn follows_the_model(rt: &tokio::runtime::Runtime, store: Arc<dyn Store>) {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let sequences = proptest::collection::vec(op(), 1..32);
    let result = runner.run(&sequences, |ops| {
        rt.block_on(run_case(&store, &ops))
            .map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!(
            "the store disagreed with the model; shrunk to {} steps:\n{ops:#?}\n{reason}",
            ops.len()
        ),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[test]
fn sqlite_store_follows_the_model() {
    let rt = runtime();
    let test = rt.block_on(panda_store::testing::sqlite());
    follows_the_model(&rt, Arc::clone(&test.store));
    rt.block_on(test.close());
}

#[test]
fn postgres_store_follows_the_model() {
    let rt = runtime();
    let Some(test) = rt.block_on(panda_store::testing::postgres()) else {
        return;
    };
    follows_the_model(&rt, Arc::clone(&test.store));
    rt.block_on(test.close());
}
