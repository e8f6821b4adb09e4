//! The claim: due executions leased to a worker, with the job locks that keep `forbid` jobs
//! and limited jobs (`--max-running`) within their bounds on every node.
//!
//! Read, plan, apply: the backend reads the candidates in claim order (PostgreSQL locks them
//! and skips rows another claimer holds; SQLite has one writer), the pure functions below
//! decide which job locks to ask for and what each candidate's verdict is, and the writes are
//! one statement each for the whole batch. The job lock's primary key `(job, slot)` is what
//! keeps two claimers apart: a lock insert that conflicts takes nothing, and its execution
//! waits for the next claim.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use panda_core::{ConcurrencyPolicy, Execution, JobId, Status, Trigger};
use uuid::Uuid;

use crate::dialect::{Backend, Column, Conn, Record, Tx, query, uuid_set};
use crate::lifecycle;
use crate::model::{ClaimRequest, Claimed, Lease};
use crate::records::{self, all};
use crate::{MAX_PAGE_SIZE, StoreError, StoreResult};

/// The statements of the claim that both backends write the same way (the candidates and
/// the overlap pre-pass are each backend's own: see [`Backend::candidates`]).
#[derive(Debug)]
pub struct ClaimSql {
    /// Takes job slot 0 of `forbid` jobs, in job order: `(table of (job_id, execution_id))`,
    /// `RETURNING job_id` of those taken.
    pub lock: &'static str,
    /// Who holds the locks of these jobs: `job_id`, `execution_id`; `(job ids)`.
    pub holders: &'static str,
    /// The taken slots of these jobs: `job_id`, `key`, `slot`; `(job ids)`.
    pub slots_taken: &'static str,
    /// Takes numbered slots of limited jobs' keys, in key order: `(table of (job_id, key,
    /// slot, execution_id))`, `RETURNING execution_id` of those taken.
    pub take_slots: &'static str,
    /// The slots held of these keys, locked against a release (`FOR SHARE`) where the backend
    /// locks rows: `job_id`, `key`; `(table of (job_id, key))`.
    pub key_holders: &'static str,
    /// Parks queued executions (out of the claim's indexes) with the reason they wait:
    /// `(table of (id, reason))`.
    pub park: &'static str,
    /// Parks up to `limit` due executions of a full key: `(job_id, key, now, limit, reason)`.
    pub park_key: &'static str,
    /// Un-parks the next `n` parked executions of a key, in claim order: `(job_id, key, n)`.
    pub unpark_key: &'static str,
    /// Un-parks the next `n` parked executions of a job limited per job: `(job_id, n)`.
    pub unpark_job: &'static str,
    /// Un-parks up to `limit` parked executions whose key has a free slot: `(limit)`.
    pub unpark_free: &'static str,
    /// Skips queued executions: `(finished_at, table of (id, reason))`.
    pub skip: &'static str,
    /// Asks the running executions of these jobs to stop: `(job ids)`.
    pub replace: &'static str,
    /// Starts the claimed executions: `(started_at, worker_id, lease_expires_at, table of
    /// (id, lease_token, cancel_requested))`.
    pub start: &'static str,
    /// The queues that hold queued executions, one index seek each: `name`.
    pub queues_present: &'static str,
}

/// What a claim does with one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start it.
    Claim,
    /// Its job has no free slot: it stays queued.
    Wait,
    /// Its `forbid` job is running and a schedule fired it: skipped, naming the holder.
    Skip(Uuid),
}

/// The executions a one-statement claim returned (each with its `lease_token`), as leases
/// expiring at `expires_at`, in claim order as the full claim returns them: a statement's
/// `RETURNING` keeps no order.
pub(crate) fn claimed_in_order<R: Record>(
    rows: &[R],
    expires_at: DateTime<Utc>,
) -> StoreResult<Vec<Claimed>> {
    let mut claimed = all(rows, |row| {
        let execution = records::execution(row)?;
        Ok(Claimed {
            lease: Lease {
                execution_id: execution.id,
                token: row.uuid("lease_token")?,
                expires_at,
            },
            execution,
        })
    })?;
    claimed.sort_by(|a, b| {
        b.execution
            .priority
            .cmp(&a.execution.priority)
            .then(a.execution.run_at.cmp(&b.execution.run_at))
            .then(a.execution.id.cmp(&b.execution.id))
    });
    Ok(claimed)
}

/// The job lock each `forbid` job's first candidate asks for: execution by job, in job order
/// (the order the locks are taken in, so two claimers never wait on each other in a cycle).
pub(crate) fn lock_requests(candidates: &[Execution]) -> BTreeMap<Uuid, Uuid> {
    let mut requests = BTreeMap::new();
    for e in candidates {
        if e.concurrency == ConcurrencyPolicy::Forbid {
            requests.entry(e.job_id.as_uuid()).or_insert(e.id.as_uuid());
        }
    }
    requests
}

/// The jobs whose lock another claimer took since this claim read its candidates, and whose
/// scheduled candidates are therefore skipped: who holds them must be read.
pub(crate) fn foreign_jobs(candidates: &[Execution], locked: &HashSet<Uuid>) -> Vec<Uuid> {
    candidates
        .iter()
        .filter(|e| {
            e.trigger == Trigger::Schedule
                && e.concurrency == ConcurrencyPolicy::Forbid
                && !locked.contains(&e.job_id.as_uuid())
        })
        .map(|e| e.job_id.as_uuid())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The candidates of limited jobs (`max_running`, per job or per key).
fn limited(candidates: &[Execution]) -> impl Iterator<Item = &Execution> {
    candidates
        .iter()
        .filter(|e| e.concurrency == ConcurrencyPolicy::Allow && e.max_running.is_some())
}

/// The key whose slots a limited execution takes: its job and its key (empty when the limit is
/// per job).
pub(crate) type SlotKey = (Uuid, String);

fn slot_key(e: &Execution) -> SlotKey {
    (
        e.job_id.as_uuid(),
        e.concurrency_key.clone().unwrap_or_default(),
    )
}

/// The slots the candidates of limited jobs ask for: each key's lowest free slots, in
/// candidate order, as many as are free; `(job, key, slot, execution)` in key order.
pub(crate) fn slot_requests(
    candidates: &[Execution],
    mut taken: HashMap<SlotKey, BTreeSet<i32>>,
) -> Vec<(Uuid, String, i32, Uuid)> {
    let mut requests = Vec::new();
    for e in limited(candidates) {
        let limit = e
            .max_running
            .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX));
        let key = slot_key(e);
        let slots = taken.entry(key.clone()).or_default();
        if let Some(slot) = (0..limit).find(|s| !slots.contains(s)) {
            slots.insert(slot);
            requests.push((key.0, key.1, slot, e.id.as_uuid()));
        }
    }
    requests.sort();
    requests
}

/// Each candidate's verdict, given the job locks this claim asked for and got, who holds the
/// ones it did not get, and the limited candidates that got a slot.
pub(crate) fn verdicts(
    candidates: &[Execution],
    requested: &BTreeMap<Uuid, Uuid>,
    locked: &HashSet<Uuid>,
    foreign_holders: &HashMap<Uuid, Uuid>,
    granted: &HashSet<Uuid>,
) -> Vec<Verdict> {
    candidates
        .iter()
        .map(|e| {
            if e.concurrency != ConcurrencyPolicy::Forbid {
                return if e.max_running.is_none() || granted.contains(&e.id.as_uuid()) {
                    Verdict::Claim
                } else {
                    Verdict::Wait
                };
            }
            let job = e.job_id.as_uuid();
            let holder = if locked.contains(&job) {
                match requested.get(&job) {
                    Some(first) if *first == e.id.as_uuid() => return Verdict::Claim,
                    // Behind another execution of its job claimed earlier in this batch: the
                    // same rule as the pre-pass, whatever the batch size.
                    first => first.copied(),
                }
            } else {
                foreign_holders.get(&job).copied()
            };
            match holder {
                Some(holder) if e.trigger == Trigger::Schedule => Verdict::Skip(holder),
                _ => Verdict::Wait,
            }
        })
        .collect()
}

/// Replace: every execution this batch starts before a later `replace` execution of the same
/// job is asked to stop, as if the batch were claimed one at a time. Returns the jobs whose
/// running executions are asked to stop.
pub(crate) fn replace_within_batch(claimed: &mut [Execution]) -> Vec<Uuid> {
    let mut replaced_later: HashSet<JobId> = HashSet::new();
    for e in claimed.iter_mut().rev() {
        if replaced_later.contains(&e.job_id) {
            e.cancel_requested = true;
        }
        if e.concurrency == ConcurrencyPolicy::Replace {
            replaced_later.insert(e.job_id);
        }
    }
    replaced_later
        .into_iter()
        .map(|job| job.as_uuid())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The slots of limited jobs this claim takes: the executions that got one (the rest wait).
/// A slot another claimer took since the read is a conflict, and its execution waits too.
async fn take_limited_slots<B: Backend>(
    tx: &mut B::Tx,
    candidates: &[Execution],
) -> StoreResult<HashSet<Uuid>> {
    let jobs: Vec<Uuid> = limited(candidates)
        .map(|e| e.job_id.as_uuid())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if jobs.is_empty() {
        return Ok(HashSet::new());
    }
    let mut taken: HashMap<SlotKey, BTreeSet<i32>> = HashMap::new();
    for row in tx
        .fetch_all(query(B::SQL.claim.slots_taken).uuids(jobs))
        .await?
    {
        taken
            .entry((row.uuid("job_id")?, row.text("key")?))
            .or_default()
            .insert(row.i32("slot")?);
    }
    let requests = slot_requests(candidates, taken);
    if requests.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = tx
        .fetch_all(query(B::SQL.claim.take_slots).table(vec![
            Column::Uuids(Column::of(&requests, |(job, ..)| Some(*job))),
            Column::Texts(Column::of(&requests, |(_, key, ..)| Some(key.clone()))),
            Column::I32s(Column::of(&requests, |(_, _, slot, _)| Some(*slot))),
            Column::Uuids(Column::of(&requests, |(.., e)| Some(*e))),
        ]))
        .await?;
    uuid_set(&rows, "execution_id")
}

/// Parks the limited candidates that wait because their key has no free slot: out of the
/// claim's indexes, so that a key with thousands waiting does not cost the claim of other work
/// (the end of a run that frees one of its slots un-parks the next, see [`unpark`]).
///
/// A key is parked only if it is full once its holders' slots are locked against a release
/// (on PostgreSQL, `FOR SHARE`: a release that deletes a slot waits until this claim commits,
/// and then un-parks what it parked; a release that committed first is not counted). A
/// candidate that waits for another reason (a slot another claimer took since the read) and
/// whose key is not full stays queued for the next claim.
async fn park_full_keys<B: Backend>(
    tx: &mut B::Tx,
    candidates: &[Execution],
    verdicts: &[Verdict],
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let waiting: Vec<&Execution> = candidates
        .iter()
        .zip(verdicts)
        .filter(|(e, v)| {
            **v == Verdict::Wait
                && e.concurrency == ConcurrencyPolicy::Allow
                && e.max_running.is_some()
        })
        .map(|(e, _)| e)
        .collect();
    if waiting.is_empty() {
        return Ok(0);
    }
    let keys: Vec<SlotKey> = waiting
        .iter()
        .map(|e| slot_key(e))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut held: HashMap<SlotKey, u32> = HashMap::new();
    for row in tx
        .fetch_all(query(B::SQL.claim.key_holders).table(vec![
            Column::Uuids(Column::of(&keys, |(job, _)| Some(*job))),
            Column::Texts(Column::of(&keys, |(_, key)| Some(key.clone()))),
        ]))
        .await?
    {
        *held
            .entry((row.uuid("job_id")?, row.text("key")?))
            .or_default() += 1;
    }
    let full: Vec<&Execution> = waiting
        .iter()
        .filter(|e| {
            let running = held.get(&slot_key(e)).copied().unwrap_or(0);
            e.max_running.is_some_and(|limit| running >= limit)
        })
        .copied()
        .collect();
    if full.is_empty() {
        return Ok(0);
    }
    let mut parked = tx
        .execute(query(B::SQL.claim.park).table(vec![
            Column::Uuids(Column::of(&full, |e| Some(e.id.as_uuid()))),
            Column::Texts(Column::of(&full, |e| Some(waiting_reason(e)))),
        ]))
        .await?;
    // The rest of a full key's due work would only be read and parked by the next claims, a
    // batch at a time: park it now, in bulk.
    let full_keys: BTreeMap<(Uuid, &str), &Execution> = full
        .iter()
        .filter_map(|e| Some(((e.job_id.as_uuid(), e.concurrency_key.as_deref()?), *e)))
        .collect();
    for ((job, key), e) in full_keys {
        parked += tx
            .execute(
                query(B::SQL.claim.park_key)
                    .uuid(job)
                    .text(key)
                    .time(now)
                    .i64(PARK_BATCH)
                    .text(waiting_reason(e)),
            )
            .await?;
    }
    Ok(parked)
}

/// What a parked execution's `reason` says while it waits for a slot of its key.
pub(crate) fn waiting_reason(e: &Execution) -> String {
    let limit = e.max_running.unwrap_or_default();
    match e.concurrency_key.as_deref() {
        Some(key) => {
            format!("waiting: key {key:?} has {limit} running, its limit; it starts when one ends")
        }
        None => format!("waiting: its job has {limit} running, its limit; it starts when one ends"),
    }
}

/// The most of a full key's due executions one claim parks in bulk.
const PARK_BATCH: i64 = 5000;

/// Un-parks, for each slot these ended runs free, the next parked execution of its key, in
/// claim order. Runs after the slots' release in the same transaction, as a later statement,
/// so that it sees what a claim that held those slots (see [`park_full_keys`]) parked.
pub(crate) async fn unpark<B: Backend>(tx: &mut B::Tx, ended: &[&Execution]) -> StoreResult<()> {
    let mut freed: BTreeMap<(Uuid, Option<String>), i64> = BTreeMap::new();
    for e in ended {
        if e.concurrency == ConcurrencyPolicy::Allow && e.max_running.is_some() {
            *freed
                .entry((e.job_id.as_uuid(), e.concurrency_key.clone()))
                .or_default() += 1;
        }
    }
    for ((job, key), n) in freed {
        let q = match key {
            Some(key) => query(B::SQL.claim.unpark_key).uuid(job).text(key).i64(n),
            None => query(B::SQL.claim.unpark_job).uuid(job).i64(n),
        };
        tx.execute(q).await?;
    }
    Ok(())
}

/// Claims up to `request.limit` due executions (see [`crate::QueueStore::execution_claim`]).
pub(crate) async fn claim<B: Backend>(
    backend: &B,
    request: &ClaimRequest,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Claimed>> {
    let limit = i64::from(request.limit.min(MAX_PAGE_SIZE));
    if limit == 0 {
        return Ok(Vec::new());
    }
    let ttl = chrono::Duration::from_std(request.lease_ttl)
        .map_err(|_| StoreError::Corrupt("lease ttl out of range".into()))?;
    let expires_at = now + ttl;
    let worker_id = B::without_nul(&request.worker_id).into_owned();
    // Each queue once: a queue named twice must not yield its rows twice. A name with a NUL
    // character names no queue (queue names are validated); when nothing else is left, there
    // is nothing to claim (not everything: no queues at all means every queue).
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
    if let Some(claimed) = backend
        .claim_unrestricted(&queues, now, limit, &worker_id, expires_at)
        .await?
        && !claimed.is_empty()
    {
        return Ok(claimed);
    }
    // A claim whose candidates were the waiting work of full keys (or over their rate limit)
    // parked them (or moved them later) and may have started little: it reads again, past
    // them, so that they hold back no other work.
    let mut claimed = Vec::new();
    for _ in 0..PARKING_ROUNDS {
        let left = limit - i64::try_from(claimed.len()).unwrap_or(limit);
        let (more, parked) =
            claim_full(backend, queues.clone(), now, left, &worker_id, expires_at).await?;
        claimed.extend(more);
        if parked == 0 || i64::try_from(claimed.len()).unwrap_or(limit) >= limit {
            break;
        }
    }
    Ok(claimed)
}

/// The most times one claim reads again past work it parked.
const PARKING_ROUNDS: usize = 64;

/// The full claim, in one transaction: what it started, and how many executions it parked.
async fn claim_full<B: Backend>(
    backend: &B,
    queues: Vec<String>,
    now: DateTime<Utc>,
    limit: i64,
    worker_id: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<(Vec<Claimed>, u64)> {
    let sql = &B::SQL.claim;
    let mut tx = backend.begin().await?;
    // A paused queue starts nothing. The claim's statements leave paused queues out of a claim
    // from named queues, and claim nothing from every queue while any queue is paused; such a
    // claim then reads from every queue that holds work, one at a time, but the paused ones
    // (walking every queue's rows, it would pass over a paused queue's backlog each time).
    let paused = crate::queue::pauses::<B>(&mut tx).await?;
    let queues = if paused.is_empty() {
        queues
    } else {
        let serving = if queues.is_empty() {
            all(&tx.fetch_all(query(sql.queues_present)).await?, |row| {
                row.text("name")
            })?
        } else {
            queues
        };
        let open: Vec<String> = serving
            .into_iter()
            .filter(|q| !paused.iter().any(|p| p.queue == *q))
            .collect();
        if open.is_empty() {
            tx.commit().await?;
            return Ok((Vec::new(), 0));
        }
        open
    };

    // Scheduled runs of forbid jobs that are still running are skipped, not delayed: the next
    // slot will come. Driven by the (usually empty) lock table, so it costs nothing while no
    // forbid job runs.
    let mut skips: Vec<(Uuid, Uuid)> =
        all(&tx.fetch_all(B::overlapping(&queues, now)).await?, |row| {
            Ok((row.uuid("id")?, row.uuid("holder")?))
        })?;
    let candidates = all(
        &tx.fetch_all(B::candidates(&queues, now, limit)).await?,
        records::execution,
    )?;
    // Rate limits first, before any other lock of the claim (see `crate::rate::admit`): the
    // candidates over their limit wait, moved to when they may start.
    let rules = crate::rate::rules::<B>(&mut tx, &candidates).await?;
    let admission = crate::rate::admit::<B>(&mut tx, &candidates, &rules, now).await?;
    let candidates: Vec<Execution> = if admission.delayed == 0 {
        candidates
    } else {
        candidates
            .into_iter()
            .filter(|e| admission.allows(e, &rules))
            .collect()
    };

    let requested = lock_requests(&candidates);
    let locked: HashSet<Uuid> = if requested.is_empty() {
        HashSet::new()
    } else {
        let rows = tx
            .fetch_all(query(sql.lock).table(vec![
                Column::Uuids(requested.keys().map(|j| Some(*j)).collect()),
                Column::Uuids(requested.values().map(|e| Some(*e)).collect()),
            ]))
            .await?;
        uuid_set(&rows, "job_id")?
    };
    let foreign = foreign_jobs(&candidates, &locked);
    let mut foreign_holders: HashMap<Uuid, Uuid> = HashMap::new();
    if !foreign.is_empty() {
        for row in tx.fetch_all(query(sql.holders).uuids(foreign)).await? {
            foreign_holders.insert(row.uuid("job_id")?, row.uuid("execution_id")?);
        }
    }
    let granted = take_limited_slots::<B>(&mut tx, &candidates).await?;

    let verdicts = verdicts(&candidates, &requested, &locked, &foreign_holders, &granted);
    skips.extend(
        candidates
            .iter()
            .zip(&verdicts)
            .filter_map(|(e, v)| match v {
                Verdict::Skip(holder) => Some((e.id.as_uuid(), *holder)),
                _ => None,
            }),
    );
    if !skips.is_empty() {
        tx.execute(query(sql.skip).time(now).table(vec![
            Column::Uuids(Column::of(&skips, |(id, _)| Some(*id))),
            Column::Texts(Column::of(&skips, |(_, holder)| {
                Some(lifecycle::overlap_reason(&holder.to_string()))
            })),
        ]))
        .await?;
    }

    let mut claimed: Vec<Execution> = candidates
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| **v == Verdict::Claim)
        .map(|(e, _)| e.clone())
        .collect();
    let claimed = if claimed.is_empty() {
        Vec::new()
    } else {
        // Replace: the executions of the job that were already running are asked to stop.
        let replaced = replace_within_batch(&mut claimed);
        if !replaced.is_empty() {
            tx.execute(query(sql.replace).uuids(replaced)).await?;
        }
        crate::rate::record::<B>(&mut tx, &mut claimed, &admission).await?;
        start::<B>(&mut tx, claimed, worker_id, expires_at, now).await?
    };
    // After the start: a full key's bulk park takes only its executions still queued, never
    // the one this claim just started.
    let parked = park_full_keys::<B>(&mut tx, &candidates, &verdicts, now).await?;
    tx.commit().await?;
    // Work moved later by its rate limit has left the due range, as parked work has.
    Ok((claimed, parked + admission.delayed))
}

/// Starts the claimed executions under fresh leases for the worker, in one statement, and
/// returns them as they now are (a claim of jobs and a claim of service instances alike).
pub(crate) async fn start<B: Backend>(
    tx: &mut B::Tx,
    claimed: Vec<Execution>,
    worker_id: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Claimed>> {
    let tokens: Vec<Uuid> = claimed.iter().map(|_| Uuid::new_v4()).collect();
    tx.execute(
        query(B::SQL.claim.start)
            .time(now)
            .text(worker_id.to_owned())
            .time(expires_at)
            .table(vec![
                Column::Uuids(Column::of(&claimed, |e| Some(e.id.as_uuid()))),
                Column::Uuids(tokens.iter().map(|t| Some(*t)).collect()),
                Column::Bools(Column::of(&claimed, |e| e.cancel_requested)),
            ]),
    )
    .await?;
    Ok(claimed
        .into_iter()
        .zip(tokens)
        .map(|(mut execution, token)| {
            execution.status = Status::Running;
            execution.started_at = Some(now);
            execution.worker_id = Some(worker_id.to_owned());
            execution.lease_expires_at = Some(expires_at);
            Claimed {
                lease: Lease {
                    execution_id: execution.id,
                    token,
                    expires_at,
                },
                execution,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use panda_core::{ExecutionId, RetryPolicy};

    fn candidate(job: JobId, concurrency: ConcurrencyPolicy, trigger: Trigger) -> Execution {
        let id = ExecutionId::new();
        Execution {
            id,
            root_id: id,
            job_id: job,
            job_name: "job".into(),
            queue: "default".into(),
            priority: 0,
            status: Status::Queued,
            trigger,
            attempt: 1,
            retry: RetryPolicy::default(),
            concurrency,
            max_running: None,
            concurrency_key: None,
            idempotency_key: None,
            payload: None,
            env: Default::default(),
            scheduled_at: None,
            run_at: DateTime::UNIX_EPOCH,
            created_at: DateTime::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
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

    #[test]
    fn a_forbid_job_starts_its_first_candidate_and_skips_later_scheduled_ones() {
        let job = JobId::new();
        let first = candidate(job, ConcurrencyPolicy::Forbid, Trigger::Api);
        let scheduled = candidate(job, ConcurrencyPolicy::Forbid, Trigger::Schedule);
        let manual = candidate(job, ConcurrencyPolicy::Forbid, Trigger::Manual);
        let candidates = vec![first.clone(), scheduled, manual];
        let requested = lock_requests(&candidates);
        assert_eq!(requested.len(), 1);
        let locked: HashSet<Uuid> = requested.keys().copied().collect();
        let v = verdicts(
            &candidates,
            &requested,
            &locked,
            &HashMap::new(),
            &HashSet::new(),
        );
        assert_eq!(
            v,
            vec![
                Verdict::Claim,
                Verdict::Skip(first.id.as_uuid()),
                Verdict::Wait
            ]
        );
    }

    #[test]
    fn a_lock_taken_by_another_claimer_skips_scheduled_runs_and_holds_back_the_rest() {
        let job = JobId::new();
        let scheduled = candidate(job, ConcurrencyPolicy::Forbid, Trigger::Schedule);
        let api = candidate(job, ConcurrencyPolicy::Forbid, Trigger::Api);
        let candidates = vec![scheduled, api];
        let requested = lock_requests(&candidates);
        let locked = HashSet::new();
        assert_eq!(foreign_jobs(&candidates, &locked), vec![job.as_uuid()]);
        let holder = Uuid::new_v4();
        let holders = HashMap::from([(job.as_uuid(), holder)]);
        let v = verdicts(&candidates, &requested, &locked, &holders, &HashSet::new());
        assert_eq!(v, vec![Verdict::Skip(holder), Verdict::Wait]);
    }

    #[test]
    fn limited_jobs_take_their_lowest_free_slots_in_candidate_order() {
        let job = JobId::new();
        let mut candidates: Vec<Execution> = (0..4)
            .map(|_| candidate(job, ConcurrencyPolicy::Allow, Trigger::Api))
            .collect();
        for e in &mut candidates {
            e.max_running = Some(3);
        }
        let taken = HashMap::from([((job.as_uuid(), String::new()), BTreeSet::from([1]))]);
        let requests = slot_requests(&candidates, taken);
        let j = job.as_uuid();
        assert_eq!(
            requests,
            vec![
                (j, String::new(), 0, candidates[0].id.as_uuid()),
                (j, String::new(), 2, candidates[1].id.as_uuid())
            ]
        );
        let granted: HashSet<Uuid> = requests.iter().map(|(.., e)| *e).collect();
        let v = verdicts(
            &candidates,
            &BTreeMap::new(),
            &HashSet::new(),
            &HashMap::new(),
            &granted,
        );
        assert_eq!(
            v,
            vec![Verdict::Claim, Verdict::Claim, Verdict::Wait, Verdict::Wait]
        );
    }

    #[test]
    fn a_replace_execution_stops_those_of_its_job_started_before_it_in_the_batch() {
        let job = JobId::new();
        let other = JobId::new();
        let mut claimed = vec![
            candidate(job, ConcurrencyPolicy::Replace, Trigger::Api),
            candidate(other, ConcurrencyPolicy::Allow, Trigger::Api),
            candidate(job, ConcurrencyPolicy::Replace, Trigger::Api),
        ];
        assert_eq!(replace_within_batch(&mut claimed), vec![job.as_uuid()]);
        let stopped: Vec<bool> = claimed.iter().map(|e| e.cancel_requested).collect();
        assert_eq!(stopped, vec![true, false, false]);
    }
}
