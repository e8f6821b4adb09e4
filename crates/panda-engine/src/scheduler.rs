//! The Scheduler: turns cron slots into queued (or skipped) executions.
//!
//! It keeps every cronjob's next slot in memory and sleeps until the earliest one, or until it
//! is told that jobs changed; it never scans every job every second. Each due slot goes to the
//! store through the unique (job, instant) slot key, so a slot is recorded once however many
//! schedulers run and however often one restarts. Which slots fire, and why the others are
//! skipped, is [`panda_core::decide`]; this is only the loop around it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use panda_core::{Clock, CronSchedule, Job, JobId, Verdict, decide, decide_paused};
use panda_store::{
    JobKind, JobStore, NewSlot, QueueStore, SlotDecision, SlotRecord, SlotStore, Store, StoreError,
    StoreResult,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the scheduler re-reads the job list when nobody tells it about a change: polling
/// is the truth, a wake-up only makes it sooner.
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(10);

/// How soon a slot held back by a paused queue is decided again.
const HELD_RECHECK: Duration = Duration::from_secs(1);

/// How long the loop waits after a store error before it tries again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Slots recorded per store call (one transaction). Larger batches write each index page once
/// for many slots; 2,000 keep a batch to a few hundred milliseconds on SQLite's one writer.
const RECORD_BATCH: usize = 2000;

/// The Scheduler service. See the module docs. It reads jobs and records slots: any store with
/// a [`JobStore`] and a [`SlotStore`] will do (the server's is its whole [`Store`]).
#[derive(Debug)]
pub struct Scheduler<S: ?Sized = dyn Store> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    jobs: HashMap<JobId, Entry>,
    resync_every: Duration,
    synced_at: Option<DateTime<Utc>>,
    wake: Arc<Notify>,
}

/// What the scheduler knows of one cronjob.
#[derive(Debug)]
struct Entry {
    job: Job,
    /// `None` when the stored expression no longer parses (it was valid when stored, so only a
    /// newer Panda with stricter rules can get here); such a job is reported, not scheduled.
    schedule: Option<CronSchedule>,
    /// The newest slot already recorded, or when the job was created (or its schedule last
    /// changed, as far as this scheduler saw).
    since: DateTime<Utc>,
    /// The first slot after `since`: when this job is next due.
    next: Option<DateTime<Utc>>,
}

impl Entry {
    fn new(job: Job, since: DateTime<Utc>) -> Self {
        let schedule = job.spec.schedule.as_ref().and_then(|s| {
            s.fire_times(job.id)
                .inspect_err(|err| {
                    tracing::error!(job = %job.spec.name, %err, "schedule does not parse; the job is not scheduled");
                })
                .ok()
        });
        let mut entry = Self {
            job,
            schedule,
            since,
            next: None,
        };
        entry.advance_to(since);
        entry
    }

    fn advance_to(&mut self, since: DateTime<Utc>) {
        self.since = since;
        self.next = self.schedule.as_ref().and_then(|s| s.next_after(since));
    }

    fn same_schedule(&self, job: &Job) -> bool {
        self.job
            .spec
            .schedule
            .as_ref()
            .map(|s| (&s.cron, &s.timezone, s.jitter))
            == job
                .spec
                .schedule
                .as_ref()
                .map(|s| (&s.cron, &s.timezone, s.jitter))
    }
}

/// What one scheduler pass ([`Scheduler::tick`]) did: the slots it recorded, and when the
/// next is due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerPass {
    /// Slots recorded as fired (an execution was queued).
    pub fired: usize,
    /// Slots recorded as skipped.
    pub skipped: usize,
    /// Slots another scheduler (or an earlier pass) had already recorded.
    pub duplicates: usize,
    /// The earliest next slot of any job: when to pass again.
    pub wake_at: Option<DateTime<Utc>>,
}

/// Tells a running [`Scheduler`] that jobs changed, so it re-reads them at once.
#[derive(Debug, Clone)]
pub struct SchedulerHandle {
    wake: Arc<Notify>,
}

impl SchedulerHandle {
    /// Jobs were created, changed, suspended, resumed or deleted.
    pub fn jobs_changed(&self) {
        self.wake.notify_one();
    }
}

impl<S: JobStore + SlotStore + QueueStore + ?Sized + 'static> Scheduler<S> {
    /// A scheduler over `store`, reading the time from `clock`.
    pub fn new(store: Arc<S>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            jobs: HashMap::new(),
            resync_every: DEFAULT_RESYNC_INTERVAL,
            synced_at: None,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Re-reads the job list at least this often (default [`DEFAULT_RESYNC_INTERVAL`]).
    #[must_use]
    pub fn with_resync_interval(mut self, every: Duration) -> Self {
        self.resync_every = every;
        self
    }

    /// A handle that wakes this scheduler when jobs change.
    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle {
            wake: Arc::clone(&self.wake),
        }
    }

    /// Re-reads the cronjobs: new ones start from their newest recorded slot (or their
    /// creation), changed ones keep their place, deleted ones are dropped.
    ///
    /// # Errors
    ///
    /// The store's, when it cannot be read; the scheduler's state is then unchanged.
    pub async fn sync(&mut self) -> StoreResult<()> {
        let now = self.clock.now();
        let listed = self.store.job_list(JobKind::Scheduled).await?;
        let mut jobs = HashMap::with_capacity(listed.len());
        for job in listed {
            let entry = match self.jobs.remove(&job.id) {
                Some(entry) if entry.job.updated_at == job.updated_at => entry,
                Some(entry) => {
                    // A new expression counts from the change, not from the old slots.
                    let since = if entry.same_schedule(&job) {
                        entry.since
                    } else {
                        entry.since.max(job.updated_at)
                    };
                    Entry::new(job, since)
                }
                None => {
                    let newest = self.store.slot_list(job.id, 1).await?;
                    let since = newest
                        .first()
                        .map_or(job.created_at, |slot| slot.scheduled_at);
                    Entry::new(job, since)
                }
            };
            jobs.insert(entry.job.id, entry);
        }
        self.jobs = jobs;
        self.synced_at = Some(now);
        Ok(())
    }

    /// One pass at the clock's now: re-reads the jobs when due, then records every due slot of
    /// every job.
    ///
    /// # Errors
    ///
    /// The store's. Slots recorded before the error stay recorded, and a job's place only
    /// moves past slots that were recorded, so the next pass picks up where this one stopped.
    pub async fn tick(&mut self) -> StoreResult<SchedulerPass> {
        let now = self.clock.now();
        let resync_due = self.synced_at.is_none_or(|at| {
            (now - at)
                .to_std()
                .is_ok_and(|since| since >= self.resync_every)
                || at > now
        });
        if resync_due {
            self.sync().await?;
        }

        let mut pass = SchedulerPass::default();
        let due = |entry: &Entry| entry.next.is_some_and(|next| next <= now);
        // Read only when a slot is due: a paused queue's cronjobs miss their slots.
        let paused: HashSet<String> = if self.jobs.values().any(due) {
            self.store
                .queue_pauses()
                .await?
                .into_iter()
                .map(|p| p.queue)
                .collect()
        } else {
            HashSet::new()
        };
        let mut pending: Vec<(NewSlot, bool)> = Vec::new();
        for entry in self.jobs.values() {
            let (Some(schedule), Some(policy)) = (&entry.schedule, &entry.job.spec.schedule) else {
                continue;
            };
            if !due(entry) {
                continue;
            }
            let spec = &entry.job.spec;
            let decision = if !spec.suspended && paused.contains(&spec.queue) {
                decide_paused(schedule, policy, entry.since, now)
            } else {
                decide(schedule, policy, spec.suspended, entry.since, now)
            };
            if decision.older_left_out {
                tracing::warn!(
                    job = %entry.job.spec.name,
                    since = %entry.since,
                    "more slots were missed than one pass records; the oldest are not recorded"
                );
            }
            for (scheduled_at, verdict) in decision.slots {
                let (decision, fired) = match verdict {
                    Verdict::Fire => (SlotDecision::Fire, true),
                    Verdict::Skip(reason) => (
                        SlotDecision::Skip {
                            reason: reason.to_string(),
                        },
                        false,
                    ),
                };
                pending.push((
                    NewSlot {
                        job_id: entry.job.id,
                        scheduled_at,
                        decision,
                    },
                    fired,
                ));
            }
        }

        for batch in pending.chunks(RECORD_BATCH) {
            let slots: Vec<NewSlot> = batch.iter().map(|(slot, _)| slot.clone()).collect();
            let results = self.store.slot_record_many(&slots, now).await?;
            for ((slot, fired), result) in batch.iter().zip(results) {
                match result {
                    Ok(SlotRecord::Inserted(_)) if *fired => {
                        pass.fired += 1;
                        crate::metrics::slot_fired(slot.scheduled_at, now);
                    }
                    Ok(SlotRecord::Inserted(_)) => pass.skipped += 1,
                    Ok(SlotRecord::Duplicate(_)) => pass.duplicates += 1,
                    Err(StoreError::NotFound { .. }) => {
                        // Deleted since the last sync: forget it.
                        self.jobs.remove(&slot.job_id);
                        continue;
                    }
                    Err(err) => return Err(err),
                }
                if let Some(entry) = self.jobs.get_mut(&slot.job_id)
                    && slot.scheduled_at > entry.since
                {
                    entry.advance_to(slot.scheduled_at);
                }
            }
        }
        // A slot still due after the pass was held back (its queue is paused): decide it again
        // a moment later, as the queue may have resumed or its deadline passed.
        pass.wake_at = self
            .jobs
            .values()
            .filter_map(|e| e.next)
            .map(|next| {
                if next <= now {
                    now + chrono_duration(HELD_RECHECK)
                } else {
                    next
                }
            })
            .min();
        if pass.fired + pass.skipped > 0 {
            tracing::debug!(
                fired = pass.fired,
                skipped = pass.skipped,
                duplicates = pass.duplicates,
                "scheduler pass"
            );
        }
        Ok(pass)
    }

    /// Runs until `shutdown`: a pass, then sleep until the next slot, the next re-read, or a
    /// wake-up from a [`SchedulerHandle`], whichever comes first. A store error is logged and
    /// the pass retried a moment later; nothing it had not recorded is lost.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let wake = Arc::clone(&self.wake);
        loop {
            let wake_at = match self.tick().await {
                Ok(pass) => pass.wake_at,
                Err(err) => {
                    tracing::warn!(%err, "scheduler pass failed; retrying");
                    Some(self.clock.now() + chrono_duration(RETRY_AFTER_ERROR))
                }
            };
            let now = self.clock.now();
            let until_resync = self.synced_at.map_or(Duration::ZERO, |at| {
                (at + chrono_duration(self.resync_every) - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            });
            let until_slot = wake_at.map_or(self.resync_every, |at| {
                (at - now).to_std().unwrap_or(Duration::ZERO)
            });
            let sleep_for = until_slot.min(until_resync);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(sleep_for) => {}
                () = wake.notified() => self.synced_at = None,
            }
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
