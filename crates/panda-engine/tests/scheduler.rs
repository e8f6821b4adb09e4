//! The Scheduler against both store backends, over simulated days driven by a `TestClock`
//! (no sleeping): every slot fires exactly once however many schedulers run and however often
//! one restarts; missed and suspended slots are recorded as skipped, with their reason.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use panda_core::{
    CatchUp, Clock, ConcurrencyPolicy, Job, JobName, JobSpec, RuntimeSpec, Schedule, Status,
    TestClock, Trigger,
};
use panda_engine::Scheduler;
use panda_store::testing::TestStore;
use panda_store::{ExecutionFilter, Store};

panda_store::backends! {
    every_slot_fires_exactly_once_while_one_scheduler_restarts_again_and_again,
    every_slot_fires_exactly_once_with_two_schedulers_on_one_database,
    missed_slots_after_downtime_are_recorded_as_skipped_and_the_latest_fires,
    suspended_slots_are_recorded_as_skipped_and_resume_fires_again,
    a_paused_queues_cronjobs_miss_their_slots_under_their_catch_up_policy,
    a_deleted_cronjob_stops_firing,
    a_monitors_slots_are_never_run_nor_recorded,
}

/// 2026-03-08 is spring-forward day in New York: one of the jobs crosses it.
fn day_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 8, 0, 0, 0)
        .single()
        .expect("a valid instant")
}

fn cronjob(name: &str, cron: &str, timezone: &str) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("a valid name"),
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.schedule = Some(Schedule {
        timezone: timezone.into(),
        ..Schedule::new(cron)
    });
    spec
}

async fn create(store: &Arc<dyn Store>, spec: JobSpec, at: DateTime<Utc>) -> Job {
    store
        .job_create(&spec, at)
        .await
        .expect("create the cronjob")
}

/// Three cronjobs in three zones, one of them across a DST change.
async fn create_jobs(store: &Arc<dyn Store>) -> Vec<Job> {
    let mut jobs = Vec::new();
    for spec in [
        cronjob("every-minute", "* * * * *", "UTC"),
        cronjob("every-seven", "*/7 * * * *", "America/New_York"),
        cronjob("daily-0230", "30 2 * * *", "America/New_York"),
        cronjob("hourly", "@hourly", "Europe/Berlin"),
        jittered("every-ten-spread", "*/10 * * * *", Duration::from_secs(420)),
    ] {
        jobs.push(create(store, spec, day_start()).await);
    }
    jobs
}

/// A cronjob in UTC whose slots move by its offset within `jitter`.
fn jittered(name: &str, cron: &str, jitter: Duration) -> JobSpec {
    let mut spec = cronjob(name, cron, "UTC");
    if let Some(schedule) = spec.schedule.as_mut() {
        schedule.jitter = Some(jitter);
    }
    spec
}

/// A jittered job's slots are its expression's fire times moved by its own offset (from its
/// id: 0 to 419 s here).
fn assert_moved_by_offset(job: &Job, slots: &BTreeSet<DateTime<Utc>>) {
    let schedule = job.spec.schedule.as_ref().expect("a cronjob");
    let offset = chrono::Duration::from_std(schedule.offset(job.id)).expect("offset");
    let grid = panda_core::CronSchedule::parse(&schedule.cron, &schedule.timezone).expect("parse");
    for slot in slots {
        assert_eq!(
            grid.latest_at_or_before(*slot),
            Some(*slot - offset),
            "{slot} is its expression's time plus {offset}"
        );
    }
}

/// The slots a job should have fired in `(day_start, until]`.
fn expected_slots(job: &Job, until: DateTime<Utc>) -> BTreeSet<DateTime<Utc>> {
    let schedule = job.spec.schedule.as_ref().expect("a cronjob");
    schedule
        .fire_times(job.id)
        .expect("parse")
        .slots_between(day_start(), until, 10_000)
        .instants
        .into_iter()
        .collect()
}

/// Every execution of a job, all pages.
async fn executions(store: &Arc<dyn Store>, job: &str) -> Vec<panda_core::Execution> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .execution_list(&ExecutionFilter {
                job: Some(job.into()),
                before,
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("list executions");
        all.extend(page.executions);
        match page.next {
            Some(next) => before = Some(next),
            None => return all,
        }
    }
}

/// Each job fired each of its expected slots exactly once: one slot row and one scheduled
/// execution per instant, none missing, none doubled, none skipped.
async fn assert_fired_exactly_once(store: &Arc<dyn Store>, jobs: &[Job], until: DateTime<Utc>) {
    for job in jobs {
        let name = job.spec.name.as_str();
        let expected = expected_slots(job, until);
        assert!(!expected.is_empty(), "{name}: the day has slots");

        let slots = store.slot_list(job.id, 5000).await.expect("slots");
        let instants: BTreeSet<_> = slots.iter().map(|s| s.scheduled_at).collect();
        assert_eq!(slots.len(), instants.len(), "{name}: a slot recorded twice");
        assert_eq!(instants, expected, "{name}: slots missing or extra");
        assert!(slots.iter().all(|s| s.fired), "{name}: a slot was skipped");

        let runs = executions(store, name).await;
        assert!(runs.iter().all(|e| e.trigger == Trigger::Schedule));
        let scheduled: Vec<_> = runs.iter().filter_map(|e| e.scheduled_at).collect();
        let distinct: BTreeSet<_> = scheduled.iter().copied().collect();
        assert_eq!(scheduled.len(), distinct.len(), "{name}: a slot ran twice");
        assert_eq!(distinct, expected, "{name}: executions missing or extra");
        assert!(runs.iter().all(|e| e.status == Status::Queued));
        if job
            .spec
            .schedule
            .as_ref()
            .is_some_and(|s| s.jitter.is_some())
        {
            assert_moved_by_offset(job, &instants);
        }
    }
}

/// A deterministic spread of tick instants: about one a minute, at varying seconds into the
/// minute (always within the on-time grace), sometimes twice in one minute.
fn tick_offsets() -> impl Iterator<Item = chrono::Duration> {
    (0..1440i64).flat_map(|minute| {
        let second = (minute * 37) % 50;
        let twice = minute % 11 == 0;
        let first = chrono::Duration::seconds(minute * 60 + 60 + second);
        let again = twice.then(|| first + chrono::Duration::seconds(3));
        std::iter::once(first).chain(again)
    })
}

async fn every_slot_fires_exactly_once_while_one_scheduler_restarts_again_and_again(
    test: &TestStore,
) {
    let jobs = create_jobs(&test.store).await;
    let clock = TestClock::new(day_start());
    let mut scheduler = None;
    let mut restarts = 0;
    for (i, offset) in tick_offsets().enumerate() {
        clock.set(day_start() + offset);
        // A new process every few ticks: only the store remembers anything.
        if i % 7 == 0 {
            scheduler = None;
            restarts += 1;
        }
        let scheduler = match &mut scheduler {
            Some(s) => s,
            None => scheduler.insert(Scheduler::new(test.reopen().await, Arc::new(clock.clone()))),
        };
        scheduler.tick().await.expect("tick");
    }
    assert!(restarts > 200);
    assert_fired_exactly_once(&test.store, &jobs, clock.now()).await;
}

async fn every_slot_fires_exactly_once_with_two_schedulers_on_one_database(test: &TestStore) {
    let jobs = create_jobs(&test.store).await;
    let clock = TestClock::new(day_start());
    let mut a = Scheduler::new(Arc::clone(&test.store), Arc::new(clock.clone()));
    let mut b = Scheduler::new(test.reopen().await, Arc::new(clock.clone()));
    let mut duplicates = 0;
    for offset in tick_offsets() {
        clock.set(day_start() + offset);
        // Both at the same instant, racing for the same slots.
        let (ta, tb) = tokio::join!(a.tick(), b.tick());
        let (ta, tb) = (ta.expect("tick a"), tb.expect("tick b"));
        duplicates += ta.duplicates + tb.duplicates;
    }
    assert!(duplicates > 0, "the two schedulers did race for slots");
    assert_fired_exactly_once(&test.store, &jobs, clock.now()).await;
}

async fn missed_slots_after_downtime_are_recorded_as_skipped_and_the_latest_fires(
    test: &TestStore,
) {
    let mut spec = cronjob("every-five", "*/5 * * * *", "UTC");
    if let Some(schedule) = &mut spec.schedule {
        schedule.catch_up = CatchUp::Latest;
        schedule.starting_deadline = Duration::from_secs(600);
    }
    let job = create(&test.store, spec, day_start()).await;
    let clock = TestClock::new(day_start() + chrono::Duration::seconds(301));
    Scheduler::new(Arc::clone(&test.store), Arc::new(clock.clone()))
        .tick()
        .await
        .expect("tick");
    // Down from 00:05 to 00:32; then a new process starts.
    clock.set(day_start() + chrono::Duration::minutes(32));
    let tick = Scheduler::new(test.reopen().await, Arc::new(clock.clone()))
        .tick()
        .await
        .expect("tick after downtime");
    assert_eq!((tick.fired, tick.skipped), (1, 4));
    assert_eq!(
        tick.wake_at,
        Some(day_start() + chrono::Duration::minutes(35))
    );

    let runs = executions(&test.store, "every-five").await;
    let mut by_slot: Vec<(u32, Status, Option<String>)> = runs
        .iter()
        .map(|e| {
            let at = e.scheduled_at.expect("a slot");
            let minute = u32::try_from((at - day_start()).num_minutes()).expect("minutes");
            (minute, e.status, e.reason.clone())
        })
        .collect();
    by_slot.sort_by_key(|(minute, ..)| *minute);
    let deadline = "missed starting deadline: found more than 10m after its time";
    let superseded = "missed: catch-up latest runs only the most recent missed slot";
    let expected: Vec<(u32, Status, Option<&str>)> = vec![
        (5, Status::Queued, None),
        (10, Status::Skipped, Some(deadline)),
        (15, Status::Skipped, Some(deadline)),
        (20, Status::Skipped, Some(deadline)),
        (25, Status::Skipped, Some(superseded)),
        (30, Status::Queued, None),
    ];
    let got: Vec<(u32, Status, Option<&str>)> = by_slot
        .iter()
        .map(|(m, s, r)| (*m, *s, r.as_deref()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        test.store
            .slot_list(job.id, 100)
            .await
            .expect("slots")
            .len(),
        6
    );
}

async fn suspended_slots_are_recorded_as_skipped_and_resume_fires_again(test: &TestStore) {
    let spec = cronjob("every-minute", "* * * * *", "UTC");
    create(&test.store, spec.clone(), day_start()).await;
    let clock = TestClock::new(day_start());
    let mut scheduler = Scheduler::new(Arc::clone(&test.store), Arc::new(clock.clone()))
        .with_resync_interval(Duration::ZERO);
    let mut suspended = spec.clone();
    suspended.suspended = true;
    for minute in 1..=6 {
        clock.set(day_start() + chrono::Duration::minutes(minute) + chrono::Duration::seconds(1));
        match minute {
            2 => {
                test.store
                    .job_update(&suspended, clock.now())
                    .await
                    .expect("suspend");
            }
            5 => {
                test.store
                    .job_update(&spec, clock.now())
                    .await
                    .expect("resume");
            }
            _ => {}
        }
        scheduler.tick().await.expect("tick");
    }
    let mut runs = executions(&test.store, "every-minute").await;
    runs.sort_by_key(|e| e.scheduled_at);
    let got: Vec<(Status, Option<&str>)> = runs
        .iter()
        .map(|e| (e.status, e.reason.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (Status::Queued, None),
            (Status::Skipped, Some("suspended")),
            (Status::Skipped, Some("suspended")),
            (Status::Skipped, Some("suspended")),
            (Status::Queued, None),
            (Status::Queued, None),
        ]
    );
}

async fn a_paused_queues_cronjobs_miss_their_slots_under_their_catch_up_policy(test: &TestStore) {
    // Three cronjobs on one queue, every five minutes with a 10-minute deadline, paused from
    // 00:01 to 00:32: as if their node were down, each catch-up policy decides what runs.
    for (name, catch_up) in [
        ("catch-none", CatchUp::None),
        ("catch-latest", CatchUp::Latest),
        ("catch-all", CatchUp::All),
    ] {
        let mut spec = cronjob(name, "*/5 * * * *", "UTC");
        spec.queue = "reports".into();
        if let Some(schedule) = &mut spec.schedule {
            schedule.catch_up = catch_up;
            schedule.starting_deadline = Duration::from_secs(600);
        }
        create(&test.store, spec, day_start()).await;
    }
    let clock = TestClock::new(day_start());
    let mut scheduler = Scheduler::new(Arc::clone(&test.store), Arc::new(clock.clone()));
    test.store
        .queue_pause("reports", day_start() + chrono::Duration::minutes(1))
        .await
        .expect("pause");
    for minute in 5..=31 {
        let now = day_start() + chrono::Duration::minutes(minute) + chrono::Duration::seconds(1);
        clock.set(now);
        let pass = scheduler.tick().await.expect("tick");
        if minute == 31 {
            assert_eq!(
                pass.wake_at,
                Some(now + chrono::Duration::seconds(1)),
                "held slots are decided again a second later"
            );
        }
    }
    assert!(test.store.queue_resume("reports").await.expect("resume"));
    clock.set(day_start() + chrono::Duration::minutes(32) + chrono::Duration::seconds(1));
    scheduler.tick().await.expect("tick after resume");

    let paused = "its queue was paused";
    let superseded = "missed: catch-up latest runs only the most recent missed slot";
    let skipped = |minutes: &[u32]| -> Vec<(u32, Status, Option<&str>)> {
        minutes
            .iter()
            .map(|m| (*m, Status::Skipped, Some(paused)))
            .collect()
    };
    let mut latest = skipped(&[5, 10, 15, 20]);
    latest.extend([
        (25, Status::Skipped, Some(superseded)),
        (30, Status::Queued, None),
    ]);
    let mut all = skipped(&[5, 10, 15, 20]);
    all.extend([(25, Status::Queued, None), (30, Status::Queued, None)]);
    for (name, expected) in [
        ("catch-none", skipped(&[5, 10, 15, 20, 25, 30])),
        ("catch-latest", latest),
        ("catch-all", all),
    ] {
        let mut runs = executions(&test.store, name).await;
        runs.sort_by_key(|e| e.scheduled_at);
        let got: Vec<(u32, Status, Option<&str>)> = runs
            .iter()
            .map(|e| {
                let at = e.scheduled_at.expect("a slot");
                let minute = u32::try_from((at - day_start()).num_minutes()).expect("minutes");
                (minute, e.status, e.reason.as_deref())
            })
            .collect();
        assert_eq!(got, expected, "{name}");
    }
}

async fn a_deleted_cronjob_stops_firing(test: &TestStore) {
    create(
        &test.store,
        cronjob("every-minute", "* * * * *", "UTC"),
        day_start(),
    )
    .await;
    let clock = TestClock::new(day_start() + chrono::Duration::seconds(61));
    let mut scheduler = Scheduler::new(Arc::clone(&test.store), Arc::new(clock.clone()));
    assert_eq!(scheduler.tick().await.expect("tick").fired, 1);
    test.store
        .job_delete("every-minute", clock.now())
        .await
        .expect("delete");
    // The next pass re-reads the jobs (the resync interval has passed) and drops it.
    clock.set(day_start() + chrono::Duration::seconds(121));
    let tick = scheduler.tick().await.expect("tick");
    assert_eq!((tick.fired, tick.wake_at), (0, None));
    assert_eq!(executions(&test.store, "every-minute").await.len(), 1);
}

async fn a_monitors_slots_are_never_run_nor_recorded(test: &TestStore) {
    let clock = TestClock::new(day_start());
    let monitor = JobSpec::monitor(
        JobName::new("nightly-backup").expect("a valid name"),
        Schedule::new("* * * * *"),
        Duration::from_secs(60),
    );
    let (job, _, _) = test
        .store
        .monitor_create(&monitor, clock.now())
        .await
        .expect("create");
    create(
        &test.store,
        cronjob("beside", "* * * * *", "UTC"),
        clock.now(),
    )
    .await;
    let mut scheduler = Scheduler::new(test.reopen().await, Arc::new(clock.clone()));
    for minute in 1..=5 {
        clock.set(day_start() + chrono::Duration::seconds(minute * 60 + 5));
        scheduler.tick().await.expect("tick");
    }
    assert!(
        executions(&test.store, "nightly-backup").await.is_empty(),
        "its runs happen elsewhere"
    );
    assert!(
        test.store
            .slot_list(job.id, 50)
            .await
            .expect("slots")
            .is_empty()
    );
    assert_eq!(
        executions(&test.store, "beside").await.len(),
        5,
        "the cronjob beside it fired"
    );
}
