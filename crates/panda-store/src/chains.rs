//! Chains (`after`): the links a definition's `after` makes, checked and kept in `job_chains`
//! in the transaction that stores the definition, and the followers a run's end queues, in the
//! transaction that writes the end. The semantics are `panda_core::chain`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use panda_core::{
    Execution, ExecutionId, Job, JobId, RunEnd, Status, Trigger, UPSTREAM_EXECUTION_ENV,
    UPSTREAM_JOB_ENV, UPSTREAM_STATUS_ENV, ValidationError, cycle_error, find_cycle,
};
use uuid::Uuid;

use crate::dialect::{Backend, Conn, Record, Tx, query};
use crate::ends::insert_executions;
use crate::jobs::{JobLock, live_job};
use crate::lifecycle::first_attempt;
use crate::records;
use crate::{StoreError, StoreResult};

/// The statements of chains, in each backend's dialect.
#[derive(Debug)]
pub struct ChainSql {
    /// Serializes the changes of links, so two that together would close a cycle cannot both
    /// pass the check (SQLite has one writer already).
    pub lock: &'static str,
    /// Every link between live jobs, by name: `job`, `upstream`.
    pub graph: &'static str,
    /// `(upstream_id, job_id, on_end)`.
    pub insert: &'static str,
    /// Drops a job's own links: `(job_id)`.
    pub forget: &'static str,
    /// The names of the live jobs that follow a job: `(upstream_id)` → `name`.
    pub followers_of: &'static str,
    /// The live followers of the given jobs (a list of ids), each locked against a delete
    /// while its execution is queued: `upstream_id`, `on_end` and the job's columns.
    pub followers: &'static str,
}

/// Stores the links of `job`'s definition, replacing any it had: each upstream a live job that
/// is not a service (locked against a delete until the transaction ends), and no chain leading
/// back to `job`. Refused with `Invalid` (a [`ValidationError::Chain`], with a hint) otherwise.
///
/// A transaction that stores links takes [`serialize`] first.
pub(crate) async fn link<B: Backend>(tx: &mut B::Tx, job: &Job, updating: bool) -> StoreResult<()> {
    if job.spec.after.is_empty() && !updating {
        return Ok(());
    }
    tx.execute(query(B::SQL.chains.forget).uuid(job.id)).await?;
    if job.spec.after.is_empty() {
        return Ok(());
    }
    let mut upstreams = Vec::with_capacity(job.spec.after.len());
    for upstream in &job.spec.after {
        let name = upstream.job.as_str();
        let found = match live_job::<B>(tx, name, JobLock::Share).await {
            Ok(found) => found,
            Err(StoreError::NotFound { .. }) => {
                return Err(ValidationError::Chain {
                    message: format!("no job named {name:?} to follow"),
                    hint: format!(
                        "create {name:?} first, then the job that follows it \
                         (`panda job list` and `panda cronjob list` show the jobs there are)"
                    ),
                }
                .into());
            }
            Err(err) => return Err(err),
        };
        if found.spec.is_service() {
            return Err(ValidationError::Chain {
                message: format!(
                    "{name:?} is a service: its instances run until stopped, and no run of it \
                     ends for a job to follow"
                ),
                hint: "follow a job or a cronjob".into(),
            }
            .into());
        }
        upstreams.push((found.id, upstream.on));
    }
    if updating {
        let rows = tx.fetch_all(query(B::SQL.chains.graph)).await?;
        let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in &rows {
            graph
                .entry(row.text("job")?)
                .or_default()
                .push(row.text("upstream")?);
        }
        graph.insert(
            job.spec.name.to_string(),
            job.spec.after.iter().map(|u| u.job.to_string()).collect(),
        );
        if let Some(cycle) = find_cycle(&graph, job.spec.name.as_str()) {
            return Err(cycle_error(&cycle).into());
        }
    }
    for (upstream_id, on) in upstreams {
        tx.execute(
            query(B::SQL.chains.insert)
                .uuid(upstream_id)
                .uuid(job.id)
                .text(on.as_str()),
        )
        .await?;
    }
    Ok(())
}

/// Serializes the transactions that store links, when `spec` has any (dropping links never
/// closes a cycle): taken first thing, before any job row is locked, so that two of them wait
/// for each other instead of deadlocking over the rows they lock.
pub(crate) async fn serialize<B: Backend>(
    tx: &mut B::Tx,
    spec: &panda_core::JobSpec,
) -> StoreResult<()> {
    if !spec.after.is_empty() {
        tx.execute(query(B::SQL.chains.lock)).await?;
    }
    Ok(())
}

/// Refuses to delete `job` while live jobs follow it, naming them; otherwise drops its own
/// links.
pub(crate) async fn unlink<B: Backend>(tx: &mut B::Tx, job: &Job) -> StoreResult<()> {
    let rows = tx
        .fetch_all(query(B::SQL.chains.followers_of).uuid(job.id))
        .await?;
    let names = records::all(&rows, |row| row.text("name"))?;
    if !names.is_empty() {
        let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        return Err(StoreError::Conflict(format!(
            "job {:?} is followed by {}: deleting it would leave their chains pointing at \
             nothing",
            job.spec.name.as_str(),
            quoted.join(", ")
        )));
    }
    tx.execute(query(B::SQL.chains.forget).uuid(job.id)).await?;
    Ok(())
}

/// A live follower of an upstream job, as the finish reads it.
#[derive(Debug, Clone)]
pub(crate) struct Follower {
    pub(crate) upstream: JobId,
    pub(crate) on: RunEnd,
    pub(crate) job: Job,
}

/// The idempotency key of the execution a chain starts after the run whose first attempt is
/// `root`: one per run and follower, whatever attempt ended it and however often.
pub(crate) fn chain_key(root: ExecutionId) -> String {
    format!("after:{root}")
}

/// The executions the runs that ended in `ended` start: for each attempt that ended its run
/// (no attempt after it, not a service's instance) in a way a follower of its job waits for,
/// a first attempt of the follower, due at `now`, with the run's payload and the chain's key.
pub(crate) fn plan_followers(
    ended: &[(&Execution, bool)],
    followers: &[Follower],
    now: DateTime<Utc>,
) -> Vec<Execution> {
    let mut by_upstream: HashMap<JobId, Vec<&Follower>> = HashMap::new();
    for follower in followers {
        by_upstream
            .entry(follower.upstream)
            .or_default()
            .push(follower);
    }
    let mut planned = Vec::new();
    for (upstream, retried) in ended {
        if *retried || upstream.instance.is_some() {
            continue;
        }
        let Some(end) = RunEnd::of_final(upstream.status) else {
            continue;
        };
        for follower in by_upstream.get(&upstream.job_id).into_iter().flatten() {
            if !follower.on.starts_on(end) {
                continue;
            }
            let mut execution =
                first_attempt(&follower.job, Trigger::Upstream, Status::Queued, now, now);
            execution.idempotency_key = Some(chain_key(upstream.root_id));
            execution.payload.clone_from(&upstream.payload);
            execution.env = BTreeMap::from([
                (UPSTREAM_EXECUTION_ENV.to_owned(), upstream.id.to_string()),
                (UPSTREAM_JOB_ENV.to_owned(), upstream.job_name.clone()),
                (UPSTREAM_STATUS_ENV.to_owned(), upstream.status.to_string()),
            ]);
            planned.push(execution);
        }
    }
    planned
}

/// Queues the executions the runs in `ended` start (see [`plan_followers`]) in `tx`, the
/// transaction that writes those ends; a chain's key already taken (a finish written twice, a
/// dead run retried from the dead-letter queue and ended again) queues nothing.
pub(crate) async fn start_followers<B: Backend>(
    tx: &mut B::Tx,
    ended: &[(&Execution, bool)],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let upstream_jobs: BTreeSet<Uuid> = ended
        .iter()
        .filter(|(e, retried)| {
            !retried && e.instance.is_none() && RunEnd::of_final(e.status).is_some()
        })
        .map(|(e, _)| e.job_id.as_uuid())
        .collect();
    if upstream_jobs.is_empty() {
        return Ok(());
    }
    let rows = tx
        .fetch_all(query(B::SQL.chains.followers).uuids(upstream_jobs.into_iter().collect()))
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut followers = Vec::with_capacity(rows.len());
    for row in &rows {
        followers.push(Follower {
            upstream: JobId::from_uuid(row.uuid("upstream_id")?),
            on: records::parse("chain end", row.word("on_end")?)?,
            job: records::job(row)?,
        });
    }
    let planned = plan_followers(ended, &followers, now);
    let inserted: BTreeSet<Uuid> = insert_executions::<B>(tx, &planned)
        .await?
        .into_iter()
        .collect();
    for execution in &planned {
        if inserted.contains(&execution.id.as_uuid()) {
            tx.wake(&execution.queue);
        }
    }
    Ok(())
}
