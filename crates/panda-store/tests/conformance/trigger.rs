//! Manual triggers: `--force` past the concurrency policy, and backfills that count as a slot.

use std::sync::Arc;

use panda_core::{ConcurrencyPolicy, Status, Trigger};
use panda_store::{NewExecution, SlotDecision, SlotRecord, Store, StoreError};

use super::support::*;

fn manual(job: &str) -> NewExecution {
    NewExecution {
        trigger: Trigger::Manual,
        ..NewExecution::api(job)
    }
}

pub async fn forced_trigger_runs_beside_a_running_forbid_execution(store: Arc<dyn Store>) {
    create_job_from(&store, job_spec_with("report", ConcurrencyPolicy::Forbid)).await;
    let running = enqueue(&store, "report", base()).await;
    claim_one(&store, at(1)).await;

    let waits = enqueue_request(&store, manual("report"), at(2)).await;
    assert!(
        claim(&store, 10, at(3)).await.is_empty(),
        "unforced, it waits for the running one"
    );
    let forced = enqueue_request(
        &store,
        NewExecution {
            force: true,
            ..manual("report")
        },
        at(4),
    )
    .await;
    assert_eq!(forced.concurrency, ConcurrencyPolicy::Allow);
    let claimed = claim(&store, 10, at(5)).await;
    assert_eq!(
        claimed.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [forced.id],
        "forced, it starts at once; the unforced one still waits"
    );
    let first = store.execution_get(running.id).await.expect("get");
    assert_eq!(first.status, Status::Running);
    assert!(!first.cancel_requested);
    assert_eq!(
        store.execution_get(waits.id).await.expect("get").status,
        Status::Queued
    );
}

pub async fn forced_trigger_does_not_replace_a_running_execution(store: Arc<dyn Store>) {
    create_job_from(&store, job_spec_with("sync", ConcurrencyPolicy::Replace)).await;
    let running = enqueue(&store, "sync", base()).await;
    claim_one(&store, at(1)).await;
    enqueue_request(
        &store,
        NewExecution {
            force: true,
            ..manual("sync")
        },
        at(2),
    )
    .await;
    claim_one(&store, at(3)).await;
    let first = store.execution_get(running.id).await.expect("get");
    assert!(
        !first.cancel_requested,
        "a forced run leaves the running one alone"
    );
}

pub async fn backfill_of_a_past_slot_counts_as_that_slot(store: Arc<dyn Store>) {
    let job = create_job_from(&store, cronjob_spec("nightly", "0 5 * * *")).await;
    let yesterday = at(-86_400);
    let mut request = manual("nightly");
    request.scheduled_at = Some(yesterday);
    request.env.insert("FULL".into(), "1".into());
    let backfill = enqueue_request(&store, request, base()).await;
    assert_eq!(
        (backfill.trigger, backfill.scheduled_at),
        (Trigger::Manual, Some(yesterday))
    );
    assert_eq!(backfill.env.get("FULL").map(String::as_str), Some("1"));

    let slots = store.slot_list(job.id, 10).await.expect("slots");
    assert_eq!(slots.len(), 1);
    assert_eq!(
        (slots[0].scheduled_at, slots[0].execution_id, slots[0].fired),
        (yesterday, backfill.id, true)
    );
    // The scheduler coming to that slot later finds it taken.
    let record = store
        .slot_record(job.id, yesterday, &SlotDecision::Fire, at(1))
        .await
        .expect("record");
    assert!(matches!(record, SlotRecord::Duplicate(s) if s.execution_id == backfill.id));
    assert_eq!(executions_of(&store, "nightly").await.len(), 1);
}

/// A backfill sent again (a client retrying after a timeout) with its idempotency key gets
/// the first run back, not a conflict over the slot that run recorded.
pub async fn backfill_enqueued_again_with_its_idempotency_key_returns_the_first_run(
    store: Arc<dyn Store>,
) {
    create_job_from(&store, cronjob_spec("nightly", "0 5 * * *")).await;
    let mut request = manual("nightly");
    request.scheduled_at = Some(at(-86_400));
    request.idempotency_key = Some("backfill-1".into());
    let first = store
        .execution_enqueue(&request, base())
        .await
        .expect("enqueue");
    assert!(first.created);
    let again = store
        .execution_enqueue(&request, at(1))
        .await
        .expect("enqueue again");
    assert!(!again.created);
    assert_eq!(again.execution, first.execution);
    assert_eq!(executions_of(&store, "nightly").await.len(), 1);
}

pub async fn backfill_of_a_recorded_slot_is_a_conflict_and_queues_nothing(store: Arc<dyn Store>) {
    let job = create_job_from(&store, cronjob_spec("nightly", "0 5 * * *")).await;
    store
        .slot_record(job.id, base(), &SlotDecision::Fire, at(1))
        .await
        .expect("record");
    let mut request = manual("nightly");
    request.scheduled_at = Some(base());
    assert_err!(
        store.execution_enqueue(&request, at(2)).await,
        StoreError::Conflict(_)
    );
    assert_eq!(
        executions_of(&store, "nightly").await.len(),
        1,
        "only the scheduled one"
    );
}

pub async fn backfill_of_a_future_instant_a_non_slot_or_a_plain_job_is_invalid(
    store: Arc<dyn Store>,
) {
    create_job_from(&store, cronjob_spec("nightly", "0 5 * * *")).await;
    create_job(&store, "plain").await;
    for (job, instant) in [
        ("nightly", at(86_400)),
        ("nightly", at(-86_400 + 60)),
        ("plain", at(-86_400)),
    ] {
        let mut request = manual(job);
        request.scheduled_at = Some(instant);
        assert_err!(
            store.execution_enqueue(&request, base()).await,
            StoreError::Invalid(_)
        );
        assert!(
            executions_of(&store, job).await.is_empty(),
            "{job} at {instant}"
        );
    }
}
