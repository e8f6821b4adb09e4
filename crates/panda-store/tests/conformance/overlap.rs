//! Concurrency policies, enforced by the job lock the claim takes.

use std::sync::Arc;

use panda_core::{ConcurrencyPolicy, Status, Trigger};
use panda_store::{NewExecution, Outcome, SlotDecision, SlotRecord, Store};

use super::support::*;

pub async fn forbid_job_runs_one_execution_at_a_time(store: Arc<dyn Store>) {
    create_job_from(&store, job_spec_with("report", ConcurrencyPolicy::Forbid)).await;
    let first = enqueue(&store, "report", base()).await;
    let second = enqueue_request(
        &store,
        NewExecution {
            trigger: Trigger::Manual,
            ..NewExecution::api("report")
        },
        at(1),
    )
    .await;

    let claimed = claim(&store, 10, at(2)).await;
    assert_eq!(
        claimed.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [first.id],
        "one at a time, the earliest first"
    );
    assert!(
        claim(&store, 10, at(3)).await.is_empty(),
        "the second waits"
    );
    let waiting = store.execution_get(second.id).await.expect("get");
    assert_eq!(
        waiting.status,
        Status::Queued,
        "an unscheduled run waits, never skipped"
    );

    finish(&store, &claimed[0], Outcome::Succeeded, at(4)).await;
    let next = claim_one(&store, at(5)).await;
    assert_eq!(next.execution.id, second.id);
}

pub async fn forbid_job_lock_is_released_when_the_execution_is_rescued(store: Arc<dyn Store>) {
    let mut spec = job_spec_with("report", ConcurrencyPolicy::Forbid);
    spec.retry = retry_policy(1);
    create_job_from(&store, spec).await;
    let first = enqueue(&store, "report", base()).await;
    let second = enqueue(&store, "report", at(1)).await;
    let claimed = claim(&store, 10, at(2)).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].execution.id, first.id);

    let rescued = store.execution_rescue(at(40), 10).await.expect("rescue");
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].execution.status, Status::Dead);

    let next = claim_one(&store, at(41)).await;
    assert_eq!(next.execution.id, second.id);
}

pub async fn forbid_job_skips_a_scheduled_execution_that_would_overlap(store: Arc<dyn Store>) {
    let mut spec = cronjob_spec("nightly", "*/5 * * * *");
    spec.concurrency = ConcurrencyPolicy::Forbid;
    let job = create_job_from(&store, spec).await;
    let manual = enqueue_request(
        &store,
        NewExecution {
            trigger: Trigger::Manual,
            ..NewExecution::api("nightly")
        },
        base(),
    )
    .await;
    let running = claim_one(&store, at(1)).await;
    assert_eq!(running.execution.id, manual.id);

    let SlotRecord::Inserted(slot) = store
        .slot_record(job.id, at(300), &SlotDecision::Fire, at(300))
        .await
        .expect("record the slot")
    else {
        panic!("a new slot")
    };
    assert!(
        claim(&store, 10, at(301)).await.is_empty(),
        "nothing to start"
    );

    let skipped = store.execution_get(slot.execution_id).await.expect("get");
    assert_eq!(
        (skipped.status, skipped.trigger),
        (Status::Skipped, Trigger::Schedule)
    );
    let reason = skipped.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("overlap"),
        "the reason says why: {reason:?}"
    );
    assert!(skipped.finished_at.is_some(), "skipped is terminal");

    let still = store.execution_get(manual.id).await.expect("get");
    assert_eq!(
        (still.status, still.cancel_requested),
        (Status::Running, false)
    );

    // The skipped slot stays skipped after the running one ends.
    finish(&store, &running, Outcome::Succeeded, at(302)).await;
    assert!(claim(&store, 10, at(303)).await.is_empty());
}

/// The outcome must not depend on the worker's batch size: claiming one at a time, the second
/// claim finds the job running and skips the scheduled run, so a claim of ten that starts the
/// job earlier in the same transaction must skip it too, not leave it queued to run late.
pub async fn forbid_job_skips_a_scheduled_execution_behind_one_claimed_in_the_same_batch(
    store: Arc<dyn Store>,
) {
    let mut spec = cronjob_spec("nightly", "* * * * *");
    spec.concurrency = ConcurrencyPolicy::Forbid;
    let job = create_job_from(&store, spec).await;
    let manual = enqueue_request(
        &store,
        NewExecution {
            trigger: Trigger::Manual,
            ..NewExecution::api("nightly")
        },
        base(),
    )
    .await;
    let fired = store
        .slot_record(job.id, at(60), &SlotDecision::Fire, at(60))
        .await
        .expect("record the slot");

    let claimed = claim(&store, 10, at(61)).await;
    assert_eq!(
        claimed.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [manual.id]
    );
    let scheduled = store
        .execution_get(fired.slot().execution_id)
        .await
        .expect("get");
    assert_eq!(
        scheduled.status,
        Status::Skipped,
        "skipped for overlap in the claim that started the job"
    );
    let reason = scheduled.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("overlap"),
        "the reason says why: {reason:?}"
    );

    finish(&store, &claimed[0], Outcome::Succeeded, at(62)).await;
    assert!(
        claim(&store, 10, at(63)).await.is_empty(),
        "it never runs late"
    );
}

pub async fn allow_job_runs_executions_side_by_side(store: Arc<dyn Store>) {
    create_job_from(&store, job_spec_with("resize", ConcurrencyPolicy::Allow)).await;
    for i in 0..3 {
        enqueue(&store, "resize", at(i)).await;
    }
    assert_eq!(claim(&store, 10, at(5)).await.len(), 3);
    let running = list_every(
        &store,
        panda_store::ExecutionFilter {
            statuses: vec![Status::Running],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(running.len(), 3);
}

pub async fn replace_job_claim_asks_the_running_execution_to_stop(store: Arc<dyn Store>) {
    create_job_from(&store, job_spec_with("sync", ConcurrencyPolicy::Replace)).await;
    let old = enqueue(&store, "sync", base()).await;
    let old_lease = claim_one(&store, at(1)).await;
    let new = enqueue(&store, "sync", at(10)).await;

    let claimed = claim_one(&store, at(11)).await;
    assert_eq!(claimed.execution.id, new.id, "the new one starts");
    let replaced = store.execution_get(old.id).await.expect("get");
    assert_eq!(
        replaced.status,
        Status::Running,
        "until its worker stops it"
    );
    assert!(replaced.cancel_requested);
    let beat = store
        .execution_heartbeat(old.id, old_lease.lease.token, LEASE_TTL, at(12))
        .await
        .expect("heartbeat");
    assert!(beat.cancel_requested);
    let current = store.execution_get(new.id).await.expect("get");
    assert!(!current.cancel_requested);
}

pub async fn replace_job_claimed_twice_in_one_batch_asks_the_earlier_to_stop(
    store: Arc<dyn Store>,
) {
    create_job_from(&store, job_spec_with("sync", ConcurrencyPolicy::Replace)).await;
    let older = enqueue(&store, "sync", base()).await;
    let newer = enqueue(&store, "sync", at(1)).await;

    let claimed = claim(&store, 10, at(2)).await;
    let flags: Vec<_> = claimed
        .iter()
        .map(|c| (c.execution.id, c.execution.cancel_requested))
        .collect();
    assert_eq!(
        flags,
        [(older.id, true), (newer.id, false)],
        "as if claimed one at a time: the newer replaces the older"
    );
    for (id, asked) in [(older.id, true), (newer.id, false)] {
        let stored = store.execution_get(id).await.expect("get");
        assert_eq!(stored.status, Status::Running);
        assert_eq!(stored.cancel_requested, asked, "stored flag of {id}");
    }
}
