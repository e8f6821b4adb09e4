//! How an attempt's end is written, once for the finish, the release and the rescue: the new
//! executions a batch inserts, the writes of ended attempts fenced by each lease, and the finish
//! planned item by item over the stored rows.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use panda_core::{Execution, ExecutionId, Status};
use uuid::Uuid;

use crate::dialect::{Backend, Column, Conn, Record, Tx, query};
use crate::lifecycle;
use crate::model::{Finish, Finished};
use crate::records::{self, all};
use crate::{StoreError, StoreResult, to_json};

/// Inserts executions in one statement; returns the ids inserted (a first attempt whose
/// idempotency key its job has seen is left out, not an error).
pub(crate) async fn insert_executions<B: Backend>(
    tx: &mut B::Tx,
    executions: &[Execution],
) -> StoreResult<Vec<Uuid>> {
    if executions.is_empty() {
        return Ok(Vec::new());
    }
    // In idempotency-key order: two transactions inserting the same keys at once (concurrent
    // group commits, say) wait for each other's keys in one order, never in a cycle.
    let mut sorted: Vec<&Execution> = executions.iter().collect();
    sorted.sort_by(|a, b| {
        (a.job_id, &a.idempotency_key, a.id).cmp(&(b.job_id, &b.idempotency_key, b.id))
    });
    let es = sorted.as_slice();
    let to_i32 = |v: u32| Some(i32::try_from(v).unwrap_or(i32::MAX));
    let ms = |d: Duration| Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let envs = es
        .iter()
        .map(|e| to_json(&e.env).map(Some))
        .collect::<StoreResult<Vec<_>>>()?;
    let table = vec![
        Column::Uuids(Column::of(es, |e| Some(e.id.as_uuid()))),
        Column::Uuids(Column::of(es, |e| Some(e.root_id.as_uuid()))),
        Column::Uuids(Column::of(es, |e| Some(e.job_id.as_uuid()))),
        Column::Texts(Column::of(es, |e| Some(e.job_name.clone()))),
        Column::Texts(Column::of(es, |e| Some(e.queue.clone()))),
        Column::I32s(Column::of(es, |e| Some(e.priority))),
        Column::Texts(Column::of(es, |e| Some(e.status.as_str().to_owned()))),
        Column::Texts(Column::of(es, |e| Some(e.trigger.as_str().to_owned()))),
        Column::I32s(Column::of(es, |e| to_i32(e.attempt))),
        Column::I32s(Column::of(es, |e| to_i32(e.retry.max_attempts))),
        Column::I64s(Column::of(es, |e| ms(e.retry.backoff_base))),
        Column::I64s(Column::of(es, |e| ms(e.retry.backoff_cap))),
        Column::Texts(Column::of(es, |e| Some(e.concurrency.as_str().to_owned()))),
        Column::Texts(Column::of(es, |e| e.idempotency_key.clone())),
        Column::Jsons(Column::of(es, |e| e.payload.clone())),
        Column::Jsons(envs),
        Column::Times(Column::of(es, |e| e.scheduled_at)),
        Column::Times(Column::of(es, |e| Some(e.run_at))),
        Column::Times(Column::of(es, |e| Some(e.created_at))),
        Column::Times(Column::of(es, |e| e.started_at)),
        Column::Times(Column::of(es, |e| e.finished_at)),
        Column::Texts(Column::of(es, |e| e.worker_id.clone())),
        Column::Times(Column::of(es, |e| e.lease_expires_at)),
        Column::Bools(Column::of(es, |e| e.cancel_requested)),
        Column::I32s(Column::of(es, |e| e.exit_code)),
        Column::Texts(Column::of(es, |e| e.reason.clone())),
        Column::Texts(Column::of(es, |e| e.image_digest.clone())),
        Column::I32s(Column::of(es, |e| e.max_running.and_then(to_i32))),
        Column::I32s(Column::of(es, |e| e.instance.and_then(to_i32))),
        Column::I32s(Column::of(es, |e| e.revision.and_then(to_i32))),
        Column::Times(Column::of(es, |e| e.healthy_at)),
        Column::Texts(Column::of(es, |e| e.concurrency_key.clone())),
        Column::Uuids(Column::of(es, |e| e.upstream_id().map(|id| id.as_uuid()))),
    ];
    let rows = tx
        .fetch_all(query(B::SQL.queue.insert).table(table))
        .await?;
    all(&rows, |row| row.uuid("id"))
}

/// An attempt that ended (or was lost), ended by [`lifecycle::end_attempt`], and the lease its
/// write is fenced by: the lease must still hold when the row is written.
#[derive(Debug)]
pub(crate) struct FencedEnd {
    pub(crate) finished: Finished,
    pub(crate) token: Uuid,
}

/// Writes the terminal status each attempt ended in, puts the failed ones in the alerter's
/// inbox, releases their job locks and queues their next attempts (waking their queues), with
/// one statement each for the whole batch.
///
/// Each write is fenced: an attempt whose row is no longer running under its token (its lease
/// moved on since it was read) is left as it is and answered with `None`, in its place.
pub(crate) async fn write_ends<B: Backend>(
    tx: &mut B::Tx,
    items: Vec<FencedEnd>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Option<Finished>>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    // Rows are written in id order, as every batch write is, so that two transactions that
    // touch the same rows wait for each other instead of deadlocking.
    let mut order: Vec<&FencedEnd> = items.iter().collect();
    order.sort_by_key(|s| s.finished.execution.id);
    let rows = tx
        .fetch_all(query(B::SQL.queue.write_ends).time(now).table(vec![
            Column::Uuids(Column::of(&order, |s| {
                Some(s.finished.execution.id.as_uuid())
            })),
            Column::Uuids(Column::of(&order, |s| Some(s.token))),
            Column::Texts(Column::of(&order, |s| {
                Some(s.finished.execution.status.as_str().to_owned())
            })),
            Column::Texts(Column::of(&order, |s| s.finished.execution.reason.clone())),
            Column::I32s(Column::of(&order, |s| s.finished.execution.exit_code)),
            Column::Texts(Column::of(&order, |s| {
                s.finished.execution.image_digest.clone()
            })),
        ]))
        .await?;
    let mut written: HashMap<Uuid, bool> = HashMap::with_capacity(rows.len());
    for row in &rows {
        written.insert(row.uuid("id")?, row.bool("cancel_requested")?);
    }
    let written: Vec<Option<Finished>> = items
        .into_iter()
        .map(|item| {
            let mut finished = item.finished;
            finished.execution.cancel_requested = *written.get(&finished.execution.id.as_uuid())?;
            Some(finished)
        })
        .collect();
    let mut written = written;
    // Instances of services are restarted as their service says, read as it is now.
    let ended: Vec<&Execution> = written.iter().flatten().map(|f| &f.execution).collect();
    let mut restarts = crate::services::restarts::<B>(tx, &ended, now).await?;
    for finished in written.iter_mut().flatten() {
        if let Some(restart) = restarts.remove(&finished.execution.id) {
            finished.retry = Some(restart);
        }
    }
    let done: Vec<&Finished> = written.iter().flatten().collect();

    // The alerter judges failed attempts, and every instance run that ended and restarts (a
    // crash loop is told from those).
    let failures: Vec<&&Finished> = done
        .iter()
        .filter(|f| match f.execution.instance {
            None => lifecycle::alertable(f.execution.status),
            Some(_) => f.retry.is_some(),
        })
        .collect();
    if !failures.is_empty() {
        tx.execute(query(B::SQL.queue.inbox).table(vec![
            Column::Uuids(Column::of(&failures, |f| Some(f.execution.id.as_uuid()))),
            Column::Times(Column::of(&failures, |f| {
                Some(f.execution.finished_at.unwrap_or(now))
            })),
        ]))
        .await?;
    }
    // Only a `forbid` execution or one of a limited job ever holds a job lock.
    let holders: Vec<Uuid> = done
        .iter()
        .filter(|f| f.execution.holds_job_slot())
        .map(|f| f.execution.id.as_uuid())
        .collect();
    if !holders.is_empty() {
        tx.execute(query(B::SQL.queue.unlock).uuids(holders))
            .await?;
        let ended: Vec<&Execution> = done.iter().map(|f| &f.execution).collect();
        crate::claim::unpark::<B>(tx, &ended).await?;
    }
    // A run that ended for good starts the jobs that follow its job, in this transaction.
    let ended: Vec<(&Execution, bool)> = done
        .iter()
        .map(|f| (&f.execution, f.retry.is_some()))
        .collect();
    crate::chains::start_followers::<B>(tx, &ended, now).await?;
    let retries: Vec<Execution> = done.iter().filter_map(|f| f.retry.clone()).collect();
    if !retries.is_empty() {
        let inserted = insert_executions::<B>(tx, &retries).await?;
        if inserted.len() != retries.len() {
            return Err(StoreError::Corrupt(format!(
                "queued {} of {} retries",
                inserted.len(),
                retries.len()
            )));
        }
        for retry in &retries {
            tx.wake(&retry.queue);
        }
    }
    Ok(written)
}

/// The worker's report with the text the backend cannot store made without_nul.
pub(crate) fn without_nul_report<B: Backend>(report: &Finish) -> Finish {
    let without_nul =
        |text: &Option<String>| text.as_deref().map(|t| B::without_nul(t).into_owned());
    Finish {
        reason: without_nul(&report.reason),
        image_digest: without_nul(&report.image_digest),
        ..report.clone()
    }
}

/// Plans a finish batch item by item, as if one at a time, over each item's stored row and
/// lease token: an execution finished earlier in the batch has ended, so a second item for it
/// is stale. Returns each item's answer (stale until its write says otherwise) and what to
/// write, with the item's place.
fn plan_finishes<B: Backend>(
    batch: &[Finish],
    mut current: HashMap<ExecutionId, (Execution, Option<Uuid>)>,
    now: DateTime<Utc>,
) -> (Vec<StoreResult<Finished>>, Vec<(usize, FencedEnd)>) {
    let mut results = Vec::with_capacity(batch.len());
    let mut ends = Vec::new();
    for (i, finish) in batch.iter().enumerate() {
        let Some((execution, lease_token)) = current.get_mut(&finish.execution_id) else {
            results.push(Err(StoreError::not_found(format!(
                "execution {}",
                finish.execution_id
            ))));
            continue;
        };
        results.push(Err(StoreError::Stale));
        if execution.status != Status::Running || *lease_token != Some(finish.token) {
            continue;
        }
        let finished = lifecycle::end_attempt(
            execution.clone(),
            Some(&without_nul_report::<B>(finish)),
            now,
        );
        execution.status = finished.execution.status;
        *lease_token = None;
        ends.push((
            i,
            FencedEnd {
                finished,
                token: finish.token,
            },
        ));
    }
    (results, ends)
}

/// A finish batch item by item, from the stored rows: retries, dead letters, alerts.
pub(crate) async fn finish_in_full<B: Backend>(
    backend: &B,
    batch: &[Finish],
    now: DateTime<Utc>,
) -> StoreResult<Vec<StoreResult<Finished>>> {
    let mut tx = backend.begin().await?;
    // Every item's row at once, unlocked: the writes are fenced by the lease, so an item whose
    // lease moves on in between is refused as stale then.
    let ids = batch.iter().map(|f| f.execution_id.as_uuid()).collect();
    let rows = tx
        .fetch_all(query(B::SQL.queue.leased_many).uuids(ids))
        .await?;
    let mut current = HashMap::with_capacity(rows.len());
    for row in &rows {
        let (execution, token) = records::leased_execution(row)?;
        current.insert(execution.id, (execution, token));
    }
    let (mut results, ends) = plan_finishes::<B>(batch, current, now);
    let (places, ends): (Vec<usize>, Vec<FencedEnd>) = ends.into_iter().unzip();
    let written = write_ends::<B>(&mut tx, ends, now).await?;
    for (i, finished) in places.into_iter().zip(written) {
        if let Some(finished) = finished {
            results[i] = Ok(finished);
        }
    }
    tx.commit().await?;
    Ok(results)
}
