//! Cron slots: each (job, instant) recorded once, with the execution it fired or skipped.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{Execution, JobId};
use uuid::Uuid;

use crate::dialect::{Backend, Column, Conn, Record, Tx, query};
use crate::ends::insert_executions;
use crate::lifecycle::{self, SlotPlan};
use crate::model::{NewSlot, Slot, SlotDecision, SlotRecord};
use crate::records::{self, all};
use crate::{StoreError, StoreResult};

/// Cron slots.
#[async_trait]
pub trait SlotStore: Send + Sync + std::fmt::Debug {
    /// Records slots and, in the same transaction, their executions: queued when fired,
    /// `skipped` with the reason otherwise. A slot already recorded (by this batch, an earlier
    /// call, or another node) is left as it is and answered with [`SlotRecord::Duplicate`].
    /// One result per item, in order: an item that fails (its job was deleted) does not stop
    /// the others. The job as stored decides over the caller's view: a slot to fire of a job
    /// suspended since is recorded skipped as `suspended`, and one of a job whose schedule was
    /// removed is recorded skipped with that reason.
    async fn slot_record_many(
        &self,
        slots: &[NewSlot],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<SlotRecord>>>;

    /// [`SlotStore::slot_record_many`] for one slot.
    async fn slot_record(
        &self,
        job_id: JobId,
        scheduled_at: DateTime<Utc>,
        decision: &SlotDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<SlotRecord> {
        let slot = NewSlot {
            job_id,
            scheduled_at,
            decision: decision.clone(),
        };
        self.slot_record_many(std::slice::from_ref(&slot), now)
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("slot record returned no result".into())))
    }

    /// A job's recorded slots, newest first.
    async fn slot_list(&self, job_id: JobId, limit: u32) -> StoreResult<Vec<Slot>>;
}

/// The statements of [`SlotStore`], in each backend's dialect.
#[derive(Debug)]
pub struct SlotSql {
    /// Live jobs among `(ids)`, locked against a delete.
    pub live_jobs: &'static str,
    /// The slots recorded among the keys `table of (job_id, scheduled_at)`.
    pub recorded: &'static str,
    /// Inserts slots unless recorded: `(recorded_at, table of (job_id, scheduled_at,
    /// execution_id, fired))`, `RETURNING job_id, scheduled_at` of those inserted.
    pub insert: &'static str,
    /// One slot: `(job_id, scheduled_at, execution_id, recorded_at)`, unless recorded; fired.
    pub insert_fired: &'static str,
    /// `(job_id, scheduled_at)`.
    pub get: &'static str,
    /// `(job_id, limit)`, newest first.
    pub list: &'static str,
}

type SlotKey = (JobId, DateTime<Utc>);

/// The slots already recorded among `keys`.
async fn recorded<B: Backend>(
    tx: &mut B::Tx,
    keys: &[SlotKey],
) -> StoreResult<HashMap<SlotKey, Slot>> {
    let rows = tx
        .fetch_all(query(B::SQL.slots.recorded).table(vec![
            Column::Uuids(Column::of(keys, |(job, _)| Some(job.as_uuid()))),
            Column::Times(Column::of(keys, |(_, at)| Some(*at))),
        ]))
        .await?;
    rows.iter()
        .map(|row| records::slot(row).map(|slot| ((slot.job_id, slot.scheduled_at), slot)))
        .collect()
}

#[async_trait]
impl<B: Backend> SlotStore for B {
    async fn slot_record_many(
        &self,
        slots: &[NewSlot],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<SlotRecord>>> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<SlotKey> = slots.iter().map(|s| (s.job_id, s.scheduled_at)).collect();
        let mut job_ids: Vec<Uuid> = slots.iter().map(|s| s.job_id.as_uuid()).collect();
        job_ids.sort();
        job_ids.dedup();
        let mut tx = self.begin().await?;
        let mut jobs = HashMap::new();
        for row in tx
            .fetch_all(query(B::SQL.slots.live_jobs).uuids(job_ids))
            .await?
        {
            let job = records::job(&row)?;
            jobs.insert(job.id, job);
        }
        let mut plans =
            lifecycle::plan_slots(slots, &jobs, &recorded::<B>(&mut tx, &keys).await?, now);

        // The slots first: of racing recorders, one inserts each; the others wait for it to
        // commit, insert nothing, and answer with the slot it recorded. In key order, so that
        // two batches wait for each other instead of deadlocking.
        let mut new: Vec<(&Execution, &Slot)> = plans
            .iter()
            .filter_map(|plan| match plan {
                SlotPlan::New(execution, slot) => Some((&**execution, slot)),
                _ => None,
            })
            .collect();
        new.sort_by_key(|(_, slot)| (slot.job_id, slot.scheduled_at));
        let inserted: HashSet<SlotKey> = if new.is_empty() {
            HashSet::new()
        } else {
            let rows = tx
                .fetch_all(query(B::SQL.slots.insert).time(now).table(vec![
                    Column::Uuids(Column::of(&new, |(_, s)| Some(s.job_id.as_uuid()))),
                    Column::Times(Column::of(&new, |(_, s)| Some(s.scheduled_at))),
                    Column::Uuids(Column::of(&new, |(e, _)| Some(e.id.as_uuid()))),
                    Column::Bools(Column::of(&new, |(_, s)| s.fired)),
                ]))
                .await?;
            all(&rows, |row| {
                Ok((
                    JobId::from_uuid(row.uuid("job_id")?),
                    row.time("scheduled_at")?,
                ))
            })?
            .into_iter()
            .collect()
        };
        let ours = |slot: &Slot| inserted.contains(&(slot.job_id, slot.scheduled_at));
        let executions: Vec<Execution> = new
            .iter()
            .filter(|(_, s)| ours(s))
            .map(|(e, _)| (*e).clone())
            .collect();
        insert_executions::<B>(&mut tx, &executions).await?;
        for (execution, _) in new.iter().filter(|(_, s)| s.fired && ours(s)) {
            tx.wake(&execution.queue);
        }

        // Slots another recorder inserted first are theirs: answer with what they recorded.
        if plans
            .iter()
            .any(|plan| matches!(plan, SlotPlan::New(_, s) if !ours(s)))
        {
            let mut theirs = recorded::<B>(&mut tx, &keys).await?;
            for plan in &mut plans {
                if let SlotPlan::New(_, slot) = plan
                    && !ours(slot)
                {
                    *plan = match theirs.remove(&(slot.job_id, slot.scheduled_at)) {
                        Some(recorded) => SlotPlan::Recorded(recorded),
                        None => SlotPlan::Refused(StoreError::Corrupt(format!(
                            "slot of job {} at {} neither inserted nor found",
                            slot.job_id, slot.scheduled_at
                        ))),
                    };
                }
            }
        }
        tx.commit().await?;
        Ok(plans
            .into_iter()
            .map(|plan| match plan {
                SlotPlan::Refused(err) => Err(err),
                SlotPlan::Recorded(slot) => Ok(SlotRecord::Duplicate(slot)),
                SlotPlan::New(_, slot) => Ok(SlotRecord::Inserted(slot)),
            })
            .collect())
    }

    async fn slot_list(&self, job_id: JobId, limit: u32) -> StoreResult<Vec<Slot>> {
        let rows = self
            .reader()
            .fetch_all(query(B::SQL.slots.list).uuid(job_id).i64(i64::from(limit)))
            .await?;
        all(&rows, records::slot)
    }
}
