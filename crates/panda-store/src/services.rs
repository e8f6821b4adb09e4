//! Long-running services: their revisions, their instances' status, the reconcile that keeps
//! each service at its replicas and moves its rollouts, and the claim that hands instances to
//! nodes.
//!
//! A service is a job with a `service` part; an instance's run is an execution carrying the
//! instance's number and revision. The restart of an instance that ended is written with its
//! end, as a retry is (see `lifecycle::end_attempt`); everything else a service needs (a
//! missing instance, a surplus one, the next step of a rollout) is planned by the pure
//! [`plan_service`] over what is stored, and applied by [`ServiceStore::service_reconcile`],
//! which every node calls on a short period.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, Instance, InstanceState, Job, JobId, JobSpec,
    RestartPolicy, Revision, Rollout, RolloutState, ServiceSpec, ServiceStatus, Status, Trigger,
    UpdateOrder, ValidationError,
};
use rand::Rng;
use uuid::Uuid;

use crate::dialect::{Backend, Conn, Record, Tx, query};
use crate::ends::insert_executions;
use crate::jobs::{JobLock, live_job};
use crate::lifecycle::first_attempt;
use crate::model::{ClaimRequest, Claimed, JobKind};
use crate::records::{self, all};
use crate::{JobStore, MAX_PAGE_SIZE, StoreError, StoreResult, to_json};

/// What one reconcile pass did, for the node's log and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Instances queued to start (missing, scaled up, or of a new revision).
    pub started: u32,
    /// Running instances asked to stop, and queued ones cancelled (surplus, suspended,
    /// replaced).
    pub stopped: u32,
    /// Rollouts that succeeded in this pass: `(service, revision)`.
    pub rolled_out: Vec<(String, u32)>,
    /// Rollouts reverted in this pass: `(service, reason)`.
    pub reverted: Vec<(String, String)>,
}

/// Services: their status, revisions and rollouts, and their instances' claim and health.
///
/// A service is created, changed and deleted as a job ([`JobStore`](crate::JobStore)): a
/// create stores revision 1, an update that changes what runs stores the next revision and
/// starts a rollout (`Conflict` while one is progressing), and an update of anything else
/// (replicas, restart policy, health check, suspended) applies in place at the next reconcile.
#[async_trait]
pub trait ServiceStore: Send + Sync + std::fmt::Debug {
    /// Every live service's status, by name.
    async fn service_list(&self, now: DateTime<Utc>) -> StoreResult<Vec<ServiceStatus>>;

    /// One live service's status, with each instance. `NotFound` if no service has that name.
    async fn service_get(&self, name: &str, now: DateTime<Utc>) -> StoreResult<ServiceStatus>;

    /// A service's kept revisions, newest first.
    async fn service_revisions(&self, name: &str) -> StoreResult<Vec<Revision>>;

    /// One revision of a service, deleted or not: what an instance of that revision runs.
    async fn service_revision(&self, job_id: JobId, revision: u32) -> StoreResult<Revision>;

    /// Brings every live service one step toward its definition, each in its own transaction
    /// with its job locked (so nodes reconciling at once take turns): queues the instances
    /// that are missing, stops the ones past the replicas (or all, while suspended), and moves
    /// a progressing rollout on, to success or, past its healthy deadline, back to the
    /// previous revision.
    async fn service_reconcile(&self, now: DateTime<Utc>) -> StoreResult<Reconciled>;

    /// Claims up to `request.limit` due instances for the worker, at most one per service in
    /// a claim, and an instance of a service this worker already runs only once it has waited
    /// a little (so instances spread over the nodes that serve their queue).
    async fn service_claim(
        &self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Claimed>>;

    /// Records a running instance's health, fenced by its lease (`Stale` once it moved on):
    /// healthy sets `healthy_at` (if unset), unhealthy clears it.
    async fn service_health(
        &self,
        execution_id: ExecutionId,
        token: Uuid,
        healthy: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Goes back one revision: a rollout from the current revision to the one before it.
    /// `Conflict` while a rollout progresses or when there is no earlier revision.
    async fn service_rollback(&self, name: &str, now: DateTime<Utc>) -> StoreResult<ServiceStatus>;

    /// Replaces every instance, as a rollout of the current definition (a new revision that
    /// runs the same thing). `Conflict` while a rollout progresses.
    async fn service_restart(&self, name: &str, now: DateTime<Utc>) -> StoreResult<ServiceStatus>;

    /// Drops the oldest log chunks of an execution until at most `keep_bytes` of its log are
    /// kept; returns the bytes dropped.
    async fn service_log_trim(
        &self,
        execution_id: ExecutionId,
        keep_bytes: u64,
    ) -> StoreResult<u64>;
}

/// The statements of [`ServiceStore`], in each backend's dialect.
#[derive(Debug)]
pub struct ServiceSql {
    /// `(job_id, revision, spec, created_at)`.
    pub revision_insert: &'static str,
    /// A service's revisions, newest first: `(job_id)`.
    pub revisions: &'static str,
    /// One revision: `(job_id, revision)`.
    pub revision: &'static str,
    /// The newest revision number, `revision` (NULL without one): `(job_id)`.
    pub newest_revision: &'static str,
    /// Sets a service's current revision and rollout: `(job_id, revision, rollout)`.
    pub upsert: &'static str,
    /// `revision`, `rollout` of `(job_id)`.
    pub current: &'static str,
    /// A service's queued and running instances: `(job_id)`.
    pub live: &'static str,
    /// A service's newest instance executions, live or ended: `(job_id, limit)`.
    pub recent: &'static str,
    /// The newest ended execution of one instance: `(job_id, instance)`.
    pub last_ended: &'static str,
    /// `n`, the restarts a service's kept history holds: `(job_id, job_name)`.
    pub restarts: &'static str,
    /// Cancels queued instances: `(finished_at, reason, ids)`.
    pub cancel: &'static str,
    /// Asks running instances to stop: `(ids)`.
    pub stop: &'static str,
    /// Records health, fenced: `(healthy, now, id, token)`, `RETURNING id`.
    pub health: &'static str,
    /// `job_id`, `n` of the instances a worker runs: `(worker_id)`.
    pub running_by_worker: &'static str,
    /// Due instances in claim order, locked where the backend locks: `(now, queues, limit)`
    /// (no queues: every queue).
    pub candidates: &'static str,
    /// `seq`, `bytes` of an execution's log chunks, newest first: `(execution_id)`.
    pub log_sizes: &'static str,
    /// Drops an execution's chunks up to a sequence number: `(execution_id, seq)`.
    pub log_drop: &'static str,
    /// Deletes a deleted job's service row: `(job_id)`.
    pub forget: &'static str,
}

/// The parts of a definition that make a revision: what runs, and with what.
fn same_revision(a: &JobSpec, b: &JobSpec) -> bool {
    a.runtime == b.runtime
        && a.env == b.env
        && a.secret_env == b.secret_env
        && a.workdir == b.workdir
        && a.limits == b.limits
}

/// `base` running what `revision` runs.
fn with_revision_part(base: &JobSpec, revision: &JobSpec) -> JobSpec {
    JobSpec {
        runtime: revision.runtime.clone(),
        env: revision.env.clone(),
        secret_env: revision.secret_env.clone(),
        workdir: revision.workdir.clone(),
        limits: revision.limits,
        ..base.clone()
    }
}

fn as_u32(what: &str, value: i32) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

fn as_i32(value: u32) -> i64 {
    i64::from(value)
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn not_a_service(name: &str) -> StoreError {
    StoreError::not_found(format!("service {name:?}"))
}

/// A service's current revision and latest rollout, as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Current {
    pub(crate) revision: u32,
    pub(crate) rollout: Option<Rollout>,
}

impl Current {
    fn progressing(&self) -> Option<&Rollout> {
        self.rollout
            .as_ref()
            .filter(|r| r.state == RolloutState::Progressing)
    }
}

async fn current<B: Backend>(
    conn: &mut impl Conn<Row = B::Row>,
    job_id: JobId,
) -> StoreResult<Option<Current>> {
    let Some(row) = conn
        .fetch_optional(query(B::SQL.services.current).uuid(job_id))
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Current {
        revision: as_u32("revision", row.i32("revision")?)?,
        rollout: row.opt_json("rollout")?,
    }))
}

async fn set_current<B: Backend>(
    tx: &mut B::Tx,
    job_id: JobId,
    current: &Current,
) -> StoreResult<()> {
    let rollout = current.rollout.as_ref().map(to_json).transpose()?;
    tx.execute(
        query(B::SQL.services.upsert)
            .uuid(job_id)
            .i64(as_i32(current.revision))
            .opt_json(rollout),
    )
    .await?;
    Ok(())
}

async fn insert_revision<B: Backend>(
    tx: &mut B::Tx,
    job_id: JobId,
    revision: u32,
    spec: &JobSpec,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    tx.execute(
        query(B::SQL.services.revision_insert)
            .uuid(job_id)
            .i64(as_i32(revision))
            .json(to_json(spec)?)
            .time(now),
    )
    .await?;
    Ok(())
}

async fn newest_revision<B: Backend>(tx: &mut B::Tx, job_id: JobId) -> StoreResult<u32> {
    let row = tx
        .fetch_optional(query(B::SQL.services.newest_revision).uuid(job_id))
        .await?;
    match row {
        Some(row) => Ok(row
            .opt_i32("revision")?
            .map(|v| as_u32("revision", v))
            .transpose()?
            .unwrap_or(0)),
        None => Ok(0),
    }
}

async fn revision_spec<B: Backend>(
    conn: &mut impl Conn<Row = B::Row>,
    job_id: JobId,
    revision: u32,
) -> StoreResult<Option<(JobSpec, DateTime<Utc>)>> {
    let row = conn
        .fetch_optional(
            query(B::SQL.services.revision)
                .uuid(job_id)
                .i64(as_i32(revision)),
        )
        .await?;
    row.map(|row| Ok((row.json("spec")?, row.time("created_at")?)))
        .transpose()
}

/// Stores revision 1 of a service created as `job`, in the transaction that creates it.
pub(crate) async fn created<B: Backend>(
    tx: &mut B::Tx,
    job: &Job,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    insert_revision::<B>(tx, job.id, 1, &job.spec, now).await?;
    set_current::<B>(
        tx,
        job.id,
        &Current {
            revision: 1,
            rollout: None,
        },
    )
    .await
}

/// The refusal of a change while a rollout progresses, naming it.
fn rollout_conflict(name: &str, rollout: &Rollout) -> StoreError {
    StoreError::Conflict(format!(
        "a rollout of {name} from revision {} to {} is in progress; follow it with \
         `panda service rollout {name}` and try again when it ends",
        rollout.from_revision, rollout.to_revision
    ))
}

/// Applies an update of a service's definition (its job locked, `old` as stored) in the
/// transaction that writes it: a change of what runs is a new revision and a rollout to it;
/// anything else applies in place.
pub(crate) async fn updated<B: Backend>(
    tx: &mut B::Tx,
    old: &Job,
    spec: &JobSpec,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    match (&old.spec.service, &spec.service) {
        (None, None) => return Ok(()),
        (Some(_), Some(_)) => {}
        (None, Some(_)) => {
            return Err(StoreError::Invalid(ValidationError::Field {
                field: "service",
                message: format!(
                    "{} is a job, not a service; create a service under a new name",
                    old.spec.name
                ),
            }));
        }
        (Some(_), None) => {
            return Err(StoreError::Invalid(ValidationError::Field {
                field: "service",
                message: format!(
                    "{} is a service; delete it and create a job to run it another way",
                    old.spec.name
                ),
            }));
        }
    }
    if same_revision(&old.spec, spec) {
        return Ok(());
    }
    let current = match current::<B>(tx, old.id).await? {
        Some(current) => current,
        None => Current {
            revision: 1,
            rollout: None,
        },
    };
    if let Some(rollout) = current.progressing() {
        return Err(rollout_conflict(old.spec.name.as_str(), rollout));
    }
    let next = newest_revision::<B>(tx, old.id)
        .await?
        .max(current.revision)
        + 1;
    insert_revision::<B>(tx, old.id, next, spec, now).await?;
    set_current::<B>(tx, old.id, &rollout_to(current.revision, next, now)).await
}

fn rollout_to(from: u32, to: u32, now: DateTime<Utc>) -> Current {
    Current {
        revision: to,
        rollout: Some(Rollout {
            from_revision: from,
            to_revision: to,
            state: RolloutState::Progressing,
            started_at: now,
            step_started_at: None,
            finished_at: None,
            reason: None,
        }),
    }
}

/// What one reconcile of one service does.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ServicePlan {
    /// Instances to queue: `(instance, revision)`.
    pub(crate) start: Vec<(u32, u32)>,
    /// Running instances to ask to stop.
    pub(crate) stop: Vec<ExecutionId>,
    /// Queued instances to cancel.
    pub(crate) cancel: Vec<ExecutionId>,
    /// The rollout as it now stands, when it changed.
    pub(crate) rollout: Option<Rollout>,
    /// The revision the service goes back to (a reverted rollout).
    pub(crate) revert_to: Option<u32>,
}

impl ServicePlan {
    fn is_empty(&self) -> bool {
        self.start.is_empty()
            && self.stop.is_empty()
            && self.cancel.is_empty()
            && self.rollout.is_none()
            && self.revert_to.is_none()
    }

    /// Stops a live instance execution: cancels it while queued, asks it to stop while
    /// running (once).
    fn drop(&mut self, execution: &Execution) {
        match execution.status {
            Status::Queued => self.cancel.push(execution.id),
            Status::Running if !execution.cancel_requested => self.stop.push(execution.id),
            _ => {}
        }
    }
}

/// Whether an instance that is not running should be started: not when its last run of this
/// revision exited 0 under `on_failure` (it completed).
fn wants_start(service: &ServiceSpec, revision: u32, last_ended: Option<&Execution>) -> bool {
    !matches!(last_ended, Some(e) if service.restart == RestartPolicy::OnFailure
        && e.status == Status::Succeeded
        && e.revision == Some(revision))
}

/// Whether a new instance has been healthy (or running, without a health check, which the
/// node reports as healthy at once) for `min_healthy`.
fn ready(execution: &Execution, min_healthy: Duration, now: DateTime<Utc>) -> bool {
    execution.status == Status::Running
        && !execution.cancel_requested
        && execution
            .healthy_at
            .is_some_and(|at| now - at >= chrono_of(min_healthy))
}

/// Plans one reconcile of a service: `live` are its queued and running instance executions,
/// `last_ended` the newest ended execution of each instance that has none live.
pub(crate) fn plan_service(
    job: &Job,
    current: &Current,
    live: &[Execution],
    last_ended: &HashMap<u32, Execution>,
    now: DateTime<Utc>,
) -> ServicePlan {
    let mut plan = ServicePlan::default();
    let Some(service) = &job.spec.service else {
        for execution in live {
            plan.drop(execution);
        }
        return plan;
    };
    let desired = if job.spec.suspended {
        0
    } else {
        service.replicas
    };
    let mut by_instance: BTreeMap<u32, Vec<&Execution>> = BTreeMap::new();
    for execution in live {
        match execution.instance {
            Some(i) if i < desired => by_instance.entry(i).or_default().push(execution),
            _ => plan.drop(execution),
        }
    }
    match current.progressing() {
        None => {
            for i in 0..desired {
                let execs = by_instance.get(&i).map(Vec::as_slice).unwrap_or_default();
                let (mut mine, other): (Vec<&Execution>, Vec<&Execution>) = execs
                    .iter()
                    .partition(|e| e.revision == Some(current.revision));
                for execution in other {
                    plan.drop(execution);
                }
                mine.sort_by_key(|e| std::cmp::Reverse(e.id));
                if let Some((_, extra)) = mine.split_first() {
                    for execution in extra {
                        plan.drop(execution);
                    }
                } else if wants_start(service, current.revision, last_ended.get(&i)) {
                    plan.start.push((i, current.revision));
                }
            }
        }
        Some(rollout) => plan_rollout(&mut plan, service, rollout, desired, &by_instance, now),
    }
    plan
}

/// One step of a progressing rollout: replaces instances `max_parallel` at a time, each new
/// one ready (healthy for `min_healthy`) before its old one stops (start-first) or started
/// once its old one stopped (stop-first); reverts when a step outlasts `healthy_deadline`.
fn plan_rollout(
    plan: &mut ServicePlan,
    service: &ServiceSpec,
    rollout: &Rollout,
    desired: u32,
    by_instance: &BTreeMap<u32, Vec<&Execution>>,
    now: DateTime<Utc>,
) {
    let policy = &service.rollout;
    let to = rollout.to_revision;
    let mut done = 0;
    let mut in_flight: Vec<u32> = Vec::new();
    let mut pending: Vec<u32> = Vec::new();
    let mut empty: Vec<u32> = Vec::new();
    for i in 0..desired {
        let execs = by_instance.get(&i).map(Vec::as_slice).unwrap_or_default();
        let new = execs
            .iter()
            .filter(|e| e.revision == Some(to) && !e.cancel_requested)
            .max_by_key(|e| e.id);
        let old: Vec<&Execution> = execs
            .iter()
            .copied()
            .filter(|e| e.revision != Some(to))
            .collect();
        match new {
            Some(new) if ready(new, policy.min_healthy, now) => {
                if old.is_empty() {
                    done += 1;
                } else {
                    for execution in &old {
                        plan.drop(execution);
                    }
                }
            }
            Some(_) => in_flight.push(i),
            None if old.is_empty() => empty.push(i),
            None if old.iter().all(|e| e.cancel_requested) => in_flight.push(i),
            None => pending.push(i),
        }
    }
    let step_started = rollout.step_started_at.unwrap_or(rollout.started_at);
    if let Some(&late) = in_flight.first()
        && now - step_started > chrono_of(policy.healthy_deadline)
    {
        let reason = format!(
            "instance {late} of revision {to} was not healthy for {} within {}",
            panda_core::human::exact(policy.min_healthy),
            panda_core::human::exact(policy.healthy_deadline)
        );
        for execs in by_instance.values() {
            for execution in execs.iter().filter(|e| e.revision == Some(to)) {
                plan.drop(execution);
            }
        }
        plan.revert_to = Some(rollout.from_revision);
        plan.rollout = Some(Rollout {
            state: RolloutState::Reverted,
            finished_at: Some(now),
            reason: Some(reason),
            ..rollout.clone()
        });
        return;
    }
    for &i in &empty {
        plan.start.push((i, to));
    }
    if in_flight.is_empty() && pending.is_empty() && empty.is_empty() && done == desired {
        plan.rollout = Some(Rollout {
            state: RolloutState::Succeeded,
            finished_at: Some(now),
            ..rollout.clone()
        });
        return;
    }
    if in_flight.is_empty() && !pending.is_empty() {
        let batch = usize::try_from(policy.max_parallel.max(1)).unwrap_or(usize::MAX);
        for &i in pending.iter().take(batch) {
            match policy.order {
                UpdateOrder::StartFirst => plan.start.push((i, to)),
                UpdateOrder::StopFirst => {
                    for execution in by_instance.get(&i).into_iter().flatten() {
                        plan.drop(execution);
                    }
                }
            }
        }
        plan.rollout = Some(Rollout {
            step_started_at: Some(now),
            ..rollout.clone()
        });
    }
}

/// The restart of an instance whose run ended, as its service's restart policy says: `None`
/// when it stays stopped (asked to stop, exited 0 under `on_failure`, no longer wanted). The
/// wait doubles from `restart_delay` with each restart, with full jitter, up to
/// `restart_delay_max`; a run that was healthy for `healthy_after` resets the count; an
/// instance whose node was lost starts again at once.
pub(crate) fn restart_of(
    ended: &Execution,
    job: &Job,
    current: &Current,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Option<Execution> {
    let service = job.spec.service.as_ref()?;
    let instance = ended.instance?;
    if ended.cancel_requested || ended.status == Status::Cancelled || job.spec.suspended {
        return None;
    }
    if instance >= service.replicas {
        return None;
    }
    if ended.revision != Some(current.revision) && current.progressing().is_none() {
        return None;
    }
    if service.restart == RestartPolicy::OnFailure && ended.status == Status::Succeeded {
        return None;
    }
    let (attempt, wait) = if ended.status == Status::Lost {
        (ended.attempt, Duration::ZERO)
    } else {
        let healthy_long = ended
            .healthy_at
            .is_some_and(|at| now - at >= chrono_of(service.healthy_after));
        let restarts = if healthy_long { 1 } else { ended.attempt };
        let ceiling = service.restart_ceiling(restarts);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        (
            restarts.saturating_add(1),
            Duration::from_millis(rng.random_range(0..=ms)),
        )
    };
    Some(Execution {
        id: ExecutionId::new(),
        status: Status::Queued,
        trigger: Trigger::Restart,
        attempt,
        run_at: now
            .checked_add_signed(chrono_of(wait))
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
        healthy_at: None,
        ..ended.clone()
    })
}

/// The restarts of the instance runs among `ended`, read against their services as stored.
pub(crate) async fn restarts<B: Backend>(
    tx: &mut B::Tx,
    ended: &[&Execution],
    now: DateTime<Utc>,
) -> StoreResult<HashMap<ExecutionId, Execution>> {
    let mut services: HashMap<JobId, Option<(Job, Current)>> = HashMap::new();
    let mut restarts = HashMap::new();
    for execution in ended.iter().filter(|e| e.instance.is_some()) {
        if let std::collections::hash_map::Entry::Vacant(entry) = services.entry(execution.job_id) {
            let row = tx
                .fetch_optional(query(B::SQL.jobs.by_id).uuid(execution.job_id))
                .await?;
            let service = match row {
                Some(row) if row.opt_time("deleted_at")?.is_none() => {
                    let job = records::job(&row)?;
                    current::<B>(tx, job.id)
                        .await?
                        .map(|current| (job, current))
                }
                _ => None,
            };
            entry.insert(service);
        }
        if let Some(Some((job, current))) = services.get(&execution.job_id)
            && let Some(restart) = restart_of(execution, job, current, now, &mut rand::rng())
        {
            restarts.insert(execution.id, restart);
        }
    }
    Ok(restarts)
}

/// A new instance execution of `job`, due now.
fn instance_execution(job: &Job, instance: u32, revision: u32, now: DateTime<Utc>) -> Execution {
    let mut execution = first_attempt(job, Trigger::Service, Status::Queued, now, now);
    execution.instance = Some(instance);
    execution.revision = Some(revision);
    execution.concurrency = ConcurrencyPolicy::Allow;
    execution.max_running = None;
    execution
}

/// Reads what a reconcile of `job` plans over.
async fn reconcile_view<B: Backend>(
    conn: &mut impl Conn<Row = B::Row>,
    job: &Job,
) -> StoreResult<(Vec<Execution>, HashMap<u32, Execution>)> {
    let live = all(
        &conn
            .fetch_all(query(B::SQL.services.live).uuid(job.id))
            .await?,
        records::execution,
    )?;
    let mut last_ended = HashMap::new();
    if let Some(service) = &job.spec.service {
        let running: BTreeSet<u32> = live.iter().filter_map(|e| e.instance).collect();
        let desired = if job.spec.suspended {
            0
        } else {
            service.replicas
        };
        for i in (0..desired).filter(|i| !running.contains(i)) {
            if let Some(row) = conn
                .fetch_optional(
                    query(B::SQL.services.last_ended)
                        .uuid(job.id)
                        .i64(as_i32(i)),
                )
                .await?
            {
                last_ended.insert(i, records::execution(&row)?);
            }
        }
    }
    Ok((live, last_ended))
}

/// Reconciles one service: plans over an unlocked read first, so that a service at rest
/// costs no write; then again with the job locked, and applies that plan.
async fn reconcile_one<B: Backend>(
    backend: &B,
    name: &str,
    now: DateTime<Utc>,
    done: &mut crate::Reconciled,
) -> StoreResult<()> {
    {
        let mut reader = backend.reader();
        let Some(row) = reader
            .fetch_optional(query(B::SQL.jobs.by_name).text(name))
            .await?
        else {
            return Ok(());
        };
        let job = records::job(&row)?;
        let Some(current) = current::<B>(&mut reader, job.id).await? else {
            return Ok(());
        };
        let (live, last_ended) = reconcile_view::<B>(&mut reader, &job).await?;
        if plan_service(&job, &current, &live, &last_ended, now).is_empty() {
            return Ok(());
        }
    }
    let mut tx = backend.begin().await?;
    let job = match live_job::<B>(&mut tx, name, JobLock::Update).await {
        Ok(job) => job,
        Err(StoreError::NotFound { .. }) => return tx.rollback().await,
        Err(err) => return Err(err),
    };
    let Some(mut current) = current::<B>(&mut tx, job.id).await? else {
        return tx.rollback().await;
    };
    let (live, last_ended) = reconcile_view::<B>(&mut tx, &job).await?;
    let plan = plan_service(&job, &current, &live, &last_ended, now);
    if plan.is_empty() {
        return tx.rollback().await;
    }
    if !plan.cancel.is_empty() {
        tx.execute(
            query(B::SQL.services.cancel)
                .time(now)
                .text("stopped: the instance is no longer wanted (scaled down, suspended or replaced)")
                .uuids(plan.cancel.iter().map(|id| id.as_uuid()).collect()),
        )
        .await?;
    }
    if !plan.stop.is_empty() {
        tx.execute(
            query(B::SQL.services.stop).uuids(plan.stop.iter().map(|id| id.as_uuid()).collect()),
        )
        .await?;
    }
    let mut job_now = job.clone();
    if let Some(revision) = plan.revert_to {
        if let Some((spec, _)) = revision_spec::<B>(&mut tx, job.id, revision).await? {
            job_now.spec = with_revision_part(&job.spec, &spec);
            tx.execute(
                query(B::SQL.jobs.update)
                    .json(to_json(&job_now.spec)?)
                    .bool(false)
                    .time(now)
                    .uuid(job.id),
            )
            .await?;
        }
        current.revision = revision;
    }
    if let Some(rollout) = &plan.rollout {
        match rollout.state {
            RolloutState::Succeeded => done
                .rolled_out
                .push((job.spec.name.to_string(), rollout.to_revision)),
            RolloutState::Reverted => done.reverted.push((
                job.spec.name.to_string(),
                rollout.reason.clone().unwrap_or_default(),
            )),
            RolloutState::Progressing => {}
        }
        current.rollout = Some(rollout.clone());
    }
    if plan.rollout.is_some() || plan.revert_to.is_some() {
        set_current::<B>(&mut tx, job.id, &current).await?;
    }
    let starts: Vec<Execution> = plan
        .start
        .iter()
        .map(|&(i, revision)| instance_execution(&job_now, i, revision, now))
        .collect();
    if !starts.is_empty() {
        insert_executions::<B>(&mut tx, &starts).await?;
        tx.wake(&job_now.spec.queue);
    }
    tx.commit().await?;
    done.started += u32::try_from(plan.start.len()).unwrap_or(u32::MAX);
    done.stopped += u32::try_from(plan.stop.len() + plan.cancel.len()).unwrap_or(u32::MAX);
    Ok(())
}

/// Where an instance is, from its live execution (or, without one, its last run).
fn instance_state(
    service: &ServiceSpec,
    live: Option<&Execution>,
    last: Option<&Execution>,
    now: DateTime<Utc>,
) -> InstanceState {
    match live {
        Some(e) if e.status == Status::Queued => {
            if e.trigger == Trigger::Restart && e.run_at > now {
                InstanceState::BackingOff
            } else {
                InstanceState::Pending
            }
        }
        Some(e) if e.cancel_requested => InstanceState::Stopping,
        Some(e) if e.healthy_at.is_some() => InstanceState::Healthy,
        Some(e) => match &service.health {
            Some(health)
                if e.started_at
                    .is_some_and(|at| now - at > chrono_of(health.start_period)) =>
            {
                InstanceState::Unhealthy
            }
            _ => InstanceState::Starting,
        },
        None if last.is_some_and(|e| e.status == Status::Succeeded) => InstanceState::Completed,
        None => InstanceState::Pending,
    }
}

/// A service's status from what is stored: `recent` are its newest instance executions
/// (live ones among them), `restarts` the restarts its kept history holds.
pub(crate) fn status_of(
    job: Job,
    current: Current,
    live: &[Execution],
    recent: &[Execution],
    restarts: u64,
    now: DateTime<Utc>,
) -> ServiceStatus {
    let service = job.spec.service.clone().unwrap_or_default();
    let desired = if job.spec.suspended {
        0
    } else {
        service.replicas
    };
    let mut indexes: BTreeSet<u32> = (0..desired).collect();
    indexes.extend(live.iter().filter_map(|e| e.instance));
    let mut instances = Vec::new();
    for index in indexes {
        let mut mine: Vec<&Execution> = live.iter().filter(|e| e.instance == Some(index)).collect();
        // The one that counts: the current revision's, else the newest.
        mine.sort_by_key(|e| (e.revision == Some(current.revision), e.id));
        let last_exit = recent
            .iter()
            .filter(|e| e.instance == Some(index) && e.status.is_terminal())
            .max_by_key(|e| e.id);
        if mine.is_empty() {
            let state = instance_state(&service, None, last_exit, now);
            if index >= desired || (state == InstanceState::Pending && job.spec.suspended) {
                continue;
            }
            instances.push(Instance {
                index,
                revision: last_exit
                    .and_then(|e| e.revision)
                    .unwrap_or(current.revision),
                state,
                node: None,
                started_at: None,
                next_start_at: None,
                restarts: 0,
                execution: None,
                last_exit: last_exit.cloned(),
            });
            continue;
        }
        for execution in mine.iter().rev() {
            let state = if index >= desired {
                InstanceState::Stopping
            } else {
                instance_state(&service, Some(execution), last_exit, now)
            };
            instances.push(Instance {
                index,
                revision: execution.revision.unwrap_or(current.revision),
                state,
                node: execution.worker_id.clone(),
                started_at: execution.started_at,
                next_start_at: (state == InstanceState::BackingOff).then_some(execution.run_at),
                restarts: execution.attempt.saturating_sub(1),
                execution: Some((*execution).clone()),
                last_exit: last_exit.cloned(),
            });
        }
    }
    let wanted: Vec<&Instance> = instances
        .iter()
        .filter(|i| i.index < desired && i.state != InstanceState::Stopping)
        .collect();
    let running = wanted
        .iter()
        .filter(|i| {
            matches!(
                i.state,
                InstanceState::Starting | InstanceState::Healthy | InstanceState::Unhealthy
            )
        })
        .map(|i| i.index)
        .collect::<BTreeSet<_>>();
    let healthy = wanted
        .iter()
        .filter(|i| i.state == InstanceState::Healthy)
        .map(|i| i.index)
        .collect::<BTreeSet<_>>();
    let running_count = u32::try_from(running.len()).unwrap_or(u32::MAX);
    let up_since = if desired > 0 && running_count == desired {
        wanted
            .iter()
            .filter(|i| running.contains(&i.index))
            .filter_map(|i| i.started_at)
            .max()
    } else {
        None
    };
    ServiceStatus {
        revision: current.revision,
        rollout: current.rollout,
        desired,
        running: running_count,
        healthy: u32::try_from(healthy.len()).unwrap_or(u32::MAX),
        restarts,
        up_since,
        instances,
        job,
    }
}

/// How many of a service's newest executions a status reads.
const STATUS_HISTORY: i64 = 200;

async fn status<B: Backend>(
    conn: &mut impl Conn<Row = B::Row>,
    job: Job,
    now: DateTime<Utc>,
) -> StoreResult<ServiceStatus> {
    let current = current::<B>(conn, job.id).await?.unwrap_or(Current {
        revision: 1,
        rollout: None,
    });
    let live = all(
        &conn
            .fetch_all(query(B::SQL.services.live).uuid(job.id))
            .await?,
        records::execution,
    )?;
    let recent = all(
        &conn
            .fetch_all(
                query(B::SQL.services.recent)
                    .uuid(job.id)
                    .i64(STATUS_HISTORY),
            )
            .await?,
        records::execution,
    )?;
    let restarts = conn
        .fetch_optional(
            query(B::SQL.services.restarts)
                .uuid(job.id)
                .text(job.spec.name.as_str()),
        )
        .await?
        .map(|row| row.i64("n"))
        .transpose()?
        .map_or(0, records::count);
    Ok(status_of(job, current, &live, &recent, restarts, now))
}

async fn live_service<B: Backend>(
    conn: &mut impl Conn<Row = B::Row>,
    name: &str,
) -> StoreResult<Job> {
    let row = conn
        .fetch_optional(query(B::SQL.jobs.by_name).text(name))
        .await?
        .ok_or_else(|| not_a_service(name))?;
    let job = records::job(&row)?;
    if job.spec.service.is_none() {
        return Err(StoreError::not_found(format!(
            "service {name:?} ({name} is a job; see `panda job get {name}`)"
        )));
    }
    Ok(job)
}

/// Starts a rollout of `name` to the revision `pick` chooses from its current one and its
/// newest, with the job locked: `Conflict` while one progresses.
async fn roll_to<B: Backend>(
    backend: &B,
    name: &str,
    now: DateTime<Utc>,
    restart: bool,
) -> StoreResult<ServiceStatus> {
    let mut tx = backend.begin().await?;
    let mut job = live_job::<B>(&mut tx, name, JobLock::Update).await?;
    if job.spec.service.is_none() {
        return Err(not_a_service(name));
    }
    let current = current::<B>(&mut tx, job.id).await?.unwrap_or(Current {
        revision: 1,
        rollout: None,
    });
    if let Some(rollout) = current.progressing() {
        return Err(rollout_conflict(name, rollout));
    }
    let target = if restart {
        let next = newest_revision::<B>(&mut tx, job.id)
            .await?
            .max(current.revision)
            + 1;
        insert_revision::<B>(&mut tx, job.id, next, &job.spec, now).await?;
        next
    } else {
        let previous = current.revision.saturating_sub(1);
        let Some((spec, _)) = (if previous == 0 {
            None
        } else {
            revision_spec::<B>(&mut tx, job.id, previous).await?
        }) else {
            return Err(StoreError::Conflict(format!(
                "{name} is at revision {}, which has no earlier revision to go back to",
                current.revision
            )));
        };
        job.spec = with_revision_part(&job.spec, &spec);
        job.updated_at = now;
        tx.execute(
            query(B::SQL.jobs.update)
                .json(to_json(&job.spec)?)
                .bool(false)
                .time(now)
                .uuid(job.id),
        )
        .await?;
        previous
    };
    set_current::<B>(&mut tx, job.id, &rollout_to(current.revision, target, now)).await?;
    let status = status::<B>(&mut tx, job, now).await?;
    tx.commit().await?;
    Ok(status)
}

/// Claims due instances: one per service per claim, and one of a service the worker already
/// runs `k` instances of only after it waited `k` × [`SPREAD_WAIT`], so that another node that
/// serves the queue takes it first.
pub(crate) fn spread(
    candidates: Vec<Execution>,
    running: &HashMap<JobId, u32>,
    limit: usize,
    now: DateTime<Utc>,
) -> Vec<Execution> {
    let mut taken: BTreeSet<JobId> = BTreeSet::new();
    let mut claimed = Vec::new();
    for execution in candidates {
        if claimed.len() >= limit {
            break;
        }
        if taken.contains(&execution.job_id) {
            continue;
        }
        let k = running.get(&execution.job_id).copied().unwrap_or(0);
        let wait = chrono_of(SPREAD_WAIT * k);
        if now - execution.run_at < wait {
            continue;
        }
        taken.insert(execution.job_id);
        claimed.push(execution);
    }
    claimed
}

/// How long an instance waits per instance of its service that a node already runs before
/// that node takes it.
pub const SPREAD_WAIT: Duration = Duration::from_millis(500);

#[async_trait]
impl<B: Backend> ServiceStore for B {
    async fn service_list(&self, now: DateTime<Utc>) -> StoreResult<Vec<ServiceStatus>> {
        let jobs = self.job_list(JobKind::Service).await?;
        let mut reader = self.reader();
        let mut statuses = Vec::with_capacity(jobs.len());
        for job in jobs {
            statuses.push(status::<B>(&mut reader, job, now).await?);
        }
        Ok(statuses)
    }

    async fn service_get(&self, name: &str, now: DateTime<Utc>) -> StoreResult<ServiceStatus> {
        let mut reader = self.reader();
        let job = live_service::<B>(&mut reader, name).await?;
        status::<B>(&mut reader, job, now).await
    }

    async fn service_revisions(&self, name: &str) -> StoreResult<Vec<Revision>> {
        let mut reader = self.reader();
        let job = live_service::<B>(&mut reader, name).await?;
        let rows = reader
            .fetch_all(query(B::SQL.services.revisions).uuid(job.id))
            .await?;
        all(&rows, |row| {
            Ok(Revision {
                revision: as_u32("revision", row.i32("revision")?)?,
                job: Job {
                    spec: row.json("spec")?,
                    ..job.clone()
                },
                created_at: row.time("created_at")?,
            })
        })
    }

    async fn service_revision(&self, job_id: JobId, revision: u32) -> StoreResult<Revision> {
        let mut reader = self.reader();
        let row = reader
            .fetch_optional(query(B::SQL.jobs.by_id).uuid(job_id))
            .await?
            .ok_or_else(|| StoreError::not_found(format!("job {job_id}")))?;
        let job = records::job(&row)?;
        let (spec, created_at) = revision_spec::<B>(&mut reader, job_id, revision)
            .await?
            .ok_or_else(|| {
                StoreError::not_found(format!("revision {revision} of {}", job.spec.name))
            })?;
        Ok(Revision {
            revision,
            job: Job { spec, ..job },
            created_at,
        })
    }

    async fn service_reconcile(&self, now: DateTime<Utc>) -> StoreResult<crate::Reconciled> {
        let mut done = crate::Reconciled::default();
        for job in self.job_list(JobKind::Service).await? {
            reconcile_one(self, job.spec.name.as_str(), now, &mut done).await?;
        }
        Ok(done)
    }

    async fn service_claim(
        &self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Claimed>> {
        let limit = request.limit.min(MAX_PAGE_SIZE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let queues: Vec<String> = request
            .queues
            .iter()
            .filter(|q| !q.contains('\0'))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if queues.is_empty() && !request.queues.is_empty() {
            return Ok(Vec::new());
        }
        let ttl = chrono::Duration::from_std(request.lease_ttl)
            .map_err(|_| StoreError::Corrupt("lease ttl out of range".into()))?;
        let expires_at = now + ttl;
        let worker_id = B::without_nul(&request.worker_id).into_owned();
        // Nodes look often and usually find nothing: that costs a read, not a transaction.
        let due = self
            .reader()
            .fetch_all(
                query(B::SQL.services.candidates)
                    .time(now)
                    .texts(queues.clone())
                    .i64(1),
            )
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let candidates = all(
            &tx.fetch_all(
                query(B::SQL.services.candidates)
                    .time(now)
                    .texts(queues)
                    .i64(i64::from(limit) * 4),
            )
            .await?,
            records::execution,
        )?;
        if candidates.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut running = HashMap::new();
        for row in tx
            .fetch_all(query(B::SQL.services.running_by_worker).text(worker_id.clone()))
            .await?
        {
            let n = u32::try_from(row.i64("n")?).unwrap_or(u32::MAX);
            running.insert(JobId::from_uuid(row.uuid("job_id")?), n);
        }
        let claimed = spread(
            candidates,
            &running,
            usize::try_from(limit).unwrap_or(usize::MAX),
            now,
        );
        if claimed.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let claimed =
            crate::claim::start::<B>(&mut tx, claimed, &worker_id, expires_at, now).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn service_health(
        &self,
        execution_id: ExecutionId,
        token: Uuid,
        healthy: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut writer = self.writer();
        let written = writer
            .fetch_optional(
                query(B::SQL.services.health)
                    .bool(healthy)
                    .time(now)
                    .uuid(execution_id)
                    .uuid(token),
            )
            .await?;
        if written.is_some() {
            return Ok(());
        }
        let exists = writer
            .fetch_optional(query(B::SQL.queue.exists).uuid(execution_id))
            .await?;
        match exists {
            None => Err(StoreError::not_found(format!("execution {execution_id}"))),
            Some(_) => Err(StoreError::Stale),
        }
    }

    async fn service_rollback(&self, name: &str, now: DateTime<Utc>) -> StoreResult<ServiceStatus> {
        roll_to(self, name, now, false).await
    }

    async fn service_restart(&self, name: &str, now: DateTime<Utc>) -> StoreResult<ServiceStatus> {
        roll_to(self, name, now, true).await
    }

    async fn service_log_trim(
        &self,
        execution_id: ExecutionId,
        keep_bytes: u64,
    ) -> StoreResult<u64> {
        let rows = self
            .reader()
            .fetch_all(query(B::SQL.services.log_sizes).uuid(execution_id))
            .await?;
        let mut kept: u64 = 0;
        let mut dropped: u64 = 0;
        let mut cut: Option<i64> = None;
        for row in &rows {
            let bytes = records::count(row.i64("bytes")?);
            if cut.is_some() || kept + bytes > keep_bytes {
                cut.get_or_insert(row.i64("seq")?);
                dropped += bytes;
            } else {
                kept += bytes;
            }
        }
        if let Some(seq) = cut {
            self.writer()
                .execute(query(B::SQL.services.log_drop).uuid(execution_id).i64(seq))
                .await?;
        }
        Ok(dropped)
    }
}
