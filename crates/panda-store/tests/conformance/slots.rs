//! Cron slots: each (job, instant) is recorded once, with its execution.

use std::sync::Arc;

use panda_core::{JobId, Status, Trigger};
use panda_store::{NewSlot, SlotDecision, SlotRecord, Store, StoreError};

use super::support::*;

pub async fn slot_fire_queues_a_schedule_execution_for_the_slot(store: Arc<dyn Store>) {
    let job = create_job_from(&store, cronjob_spec("nightly", "0 5 * * *")).await;
    let record = store
        .slot_record(job.id, base(), &SlotDecision::Fire, at(2))
        .await
        .expect("record");
    let SlotRecord::Inserted(slot) = record else {
        panic!("a new slot, got {record:?}")
    };
    assert_eq!((slot.job_id, slot.scheduled_at), (job.id, base()));
    assert_eq!((slot.fired, slot.recorded_at), (true, at(2)));

    let e = store.execution_get(slot.execution_id).await.expect("get");
    assert_eq!(
        (e.status, e.trigger, e.attempt),
        (Status::Queued, Trigger::Schedule, 1)
    );
    assert_eq!((e.job_id, e.root_id), (job.id, e.id));
    assert_eq!(e.scheduled_at, Some(base()));
    assert_eq!(e.run_at, at(2), "due at once");

    let claimed = claim_one(&store, at(3)).await;
    assert_eq!(claimed.execution.id, slot.execution_id);
}

pub async fn slot_skip_records_a_skipped_execution_with_the_reason(store: Arc<dyn Store>) {
    let job = create_job_from(&store, cronjob_spec("nightly", "0 5 * * *")).await;
    let decision = SlotDecision::Skip {
        reason: "missed starting deadline".into(),
    };
    let record = store
        .slot_record(job.id, base(), &decision, at(900))
        .await
        .expect("record");
    let SlotRecord::Inserted(slot) = record else {
        panic!("a new slot, got {record:?}")
    };
    assert!(!slot.fired);

    let e = store.execution_get(slot.execution_id).await.expect("get");
    assert_eq!((e.status, e.trigger), (Status::Skipped, Trigger::Schedule));
    assert_eq!(e.reason.as_deref(), Some("missed starting deadline"));
    assert_eq!(e.scheduled_at, Some(base()));
    assert_eq!(e.finished_at, Some(at(900)));
    assert!(claim(&store, 10, at(901)).await.is_empty(), "never runs");
    assert_eq!(
        executions_of(&store, "nightly").await,
        [e],
        "but is in the history"
    );
}

pub async fn slot_recorded_twice_is_a_duplicate_and_creates_nothing(store: Arc<dyn Store>) {
    let job = create_job_from(&store, cronjob_spec("nightly", "0 5 * * *")).await;
    let first = store
        .slot_record(job.id, base(), &SlotDecision::Fire, at(1))
        .await
        .expect("first record");
    let SlotRecord::Inserted(slot) = first else {
        panic!("a new slot, got {first:?}")
    };

    let skip = SlotDecision::Skip {
        reason: "suspended".into(),
    };
    for (decision, now) in [(&SlotDecision::Fire, at(2)), (&skip, at(3))] {
        let again = store
            .slot_record(job.id, base(), decision, now)
            .await
            .expect("record again");
        assert_eq!(
            again,
            SlotRecord::Duplicate(slot.clone()),
            "the original slot"
        );
    }

    let executions = executions_of(&store, "nightly").await;
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].status, Status::Queued, "left as it was");
    assert_eq!(store.slot_list(job.id, 10).await.expect("slots"), [slot]);
}

pub async fn concurrent_slot_records_insert_the_slot_once(store: Arc<dyn Store>) {
    let job = create_job_from(&store, cronjob_spec("nightly", "0 5 * * *")).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .slot_record(job.id, base(), &SlotDecision::Fire, at(1))
                    .await
            })
        })
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        records.push(
            task.await
                .expect("record task")
                .expect("every racing record gets an answer, not an error"),
        );
    }

    let inserted: Vec<_> = records
        .iter()
        .filter(|r| matches!(r, SlotRecord::Inserted(_)))
        .collect();
    assert_eq!(inserted.len(), 1, "exactly one inserted: {records:?}");
    let slot = inserted[0].slot();
    assert!(
        records.iter().all(|r| r.slot() == slot),
        "all name the same slot"
    );
    assert_eq!(
        store.slot_list(job.id, 10).await.expect("slots"),
        std::slice::from_ref(slot)
    );
    let executions = executions_of(&store, "nightly").await;
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].id, slot.execution_id);
}

pub async fn slot_list_is_newest_first_and_limited(store: Arc<dyn Store>) {
    let job = create_job_from(&store, cronjob_spec("minutely", "* * * * *")).await;
    let other = create_job_from(&store, cronjob_spec("other", "* * * * *")).await;
    // Recorded out of order, so the order comes from the instants.
    for minute in [2, 0, 4, 1, 3] {
        store
            .slot_record(job.id, at(minute * 60), &SlotDecision::Fire, at(300))
            .await
            .expect("record");
    }
    store
        .slot_record(other.id, at(600), &SlotDecision::Fire, at(600))
        .await
        .expect("record other");

    let slots = store.slot_list(job.id, 3).await.expect("slots");
    let instants: Vec<_> = slots.iter().map(|s| s.scheduled_at).collect();
    assert_eq!(instants, [at(240), at(180), at(120)]);
    assert!(slots.iter().all(|s| s.job_id == job.id));
    assert_eq!(store.slot_list(job.id, 10).await.expect("slots").len(), 5);
}

/// A batch answers item by item, as if recorded one at a time: new slots are inserted, a slot
/// recorded before or earlier in the batch is a duplicate, and a refused item (unknown job,
/// bad reason) fails alone.
pub async fn slot_record_many_answers_each_item_as_if_recorded_one_at_a_time(
    store: Arc<dyn Store>,
) {
    let job = create_job_from(&store, cronjob_spec("nightly", "0 5 * * *")).await;
    let earlier = store
        .slot_record(job.id, base(), &SlotDecision::Fire, at(1))
        .await
        .expect("record")
        .slot()
        .clone();
    let item = |job_id, scheduled_at, decision| NewSlot {
        job_id,
        scheduled_at,
        decision,
    };
    let skip = SlotDecision::Skip {
        reason: "suspended".into(),
    };
    let batch = [
        item(job.id, base(), SlotDecision::Fire),
        item(job.id, at(60), SlotDecision::Fire),
        item(JobId::new(), at(60), SlotDecision::Fire),
        item(job.id, at(120), skip.clone()),
        item(job.id, at(60), skip),
        item(
            job.id,
            at(180),
            SlotDecision::Skip {
                reason: "bad\0".into(),
            },
        ),
    ];
    let results = store
        .slot_record_many(&batch, at(200))
        .await
        .expect("batch");
    assert_eq!(results.len(), batch.len());
    let mut results = results.into_iter();
    let mut next = || results.next().expect("one result per item");

    assert_eq!(next().expect("duplicate"), SlotRecord::Duplicate(earlier));
    let SlotRecord::Inserted(fired) = next().expect("new") else {
        panic!("a new slot")
    };
    assert!(fired.fired);
    assert_err!(next(), StoreError::NotFound { .. });
    let SlotRecord::Inserted(skipped) = next().expect("new") else {
        panic!("a new skipped slot")
    };
    assert!(!skipped.fired);
    assert_eq!(
        next().expect("duplicate within the batch"),
        SlotRecord::Duplicate(fired.clone())
    );
    assert_err!(next(), StoreError::Invalid(_));

    let recorded: Vec<_> = store
        .slot_list(job.id, 10)
        .await
        .expect("slots")
        .into_iter()
        .map(|s| (s.scheduled_at, s.fired))
        .collect();
    assert_eq!(recorded, [(at(120), false), (at(60), true), (base(), true)]);
    let runs = executions_of(&store, "nightly").await;
    assert_eq!(runs.len(), 3, "one execution per recorded slot");
    let fired_run = store.execution_get(fired.execution_id).await.expect("get");
    assert_eq!(fired_run.status, Status::Queued);
    let skipped_run = store
        .execution_get(skipped.execution_id)
        .await
        .expect("get");
    assert_eq!(
        (skipped_run.status, skipped_run.reason.as_deref()),
        (Status::Skipped, Some("suspended"))
    );
}

pub async fn a_slot_to_fire_of_a_job_suspended_or_unscheduled_since_is_skipped(
    store: Arc<dyn Store>,
) {
    let paused = create_job_from(&store, cronjob_spec("paused", "0 5 * * *")).await;
    let plain = create_job_from(&store, cronjob_spec("plain", "0 5 * * *")).await;
    // Changed after the scheduler read them: one suspended, one no longer a cronjob.
    let mut spec = cronjob_spec("paused", "0 5 * * *");
    spec.suspended = true;
    store.job_update(&spec, at(1)).await.expect("suspend");
    let mut spec = cronjob_spec("plain", "0 5 * * *");
    spec.schedule = None;
    store.job_update(&spec, at(1)).await.expect("unschedule");

    for (job, reason) in [(paused.id, "suspended"), (plain.id, "schedule removed")] {
        let record = store
            .slot_record(job, base(), &SlotDecision::Fire, at(2))
            .await
            .expect("record");
        let slot = record.slot();
        assert!(!slot.fired, "not fired: {record:?}");
        let e = store.execution_get(slot.execution_id).await.expect("get");
        assert_eq!(e.status, Status::Skipped);
        let said = e.reason.unwrap_or_default();
        assert!(said.starts_with(reason), "{said}");
    }
    assert!(claim(&store, 10, at(3)).await.is_empty(), "nothing runs");
}
