//! Cancel: at once when queued, by asking the worker when running, refused once ended.

use std::sync::Arc;

use panda_core::Status;
use panda_store::{Outcome, SlotDecision, SlotRecord, Store, StoreError};

use super::support::*;

pub async fn cancel_of_a_queued_execution_cancels_it_at_once(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let queued = enqueue(&store, "resize", base()).await;

    let cancelled = store
        .execution_cancel(queued.id, at(1))
        .await
        .expect("cancel");
    assert_eq!(
        (cancelled.id, cancelled.status),
        (queued.id, Status::Cancelled)
    );
    assert_eq!(cancelled.finished_at, Some(at(1)));
    assert_eq!(
        store.execution_get(queued.id).await.expect("get"),
        cancelled
    );
    assert!(claim(&store, 10, at(2)).await.is_empty(), "not claimable");
}

pub async fn cancel_of_a_running_execution_asks_its_worker_to_stop(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;

    let asked = store
        .execution_cancel(claimed.execution.id, at(2))
        .await
        .expect("cancel");
    assert_eq!(
        asked.status,
        Status::Running,
        "it runs until its worker stops it"
    );
    assert!(asked.cancel_requested);
    assert_eq!(asked.finished_at, None);

    let beat = store
        .execution_heartbeat(claimed.execution.id, claimed.lease.token, LEASE_TTL, at(3))
        .await
        .expect("heartbeat");
    assert!(beat.cancel_requested, "the next heartbeat tells the worker");

    let finished = finish(&store, &claimed, Outcome::Cancelled, at(4)).await;
    assert_eq!(finished.execution.status, Status::Cancelled);
    assert_eq!(finished.retry, None);
}

pub async fn cancel_of_a_finished_execution_is_a_conflict(store: Arc<dyn Store>) {
    let job = create_job_from(&store, cronjob_spec("resize", "* * * * *")).await;
    let succeeded = run_to_success(&store, "resize", base()).await;
    let cancelled = enqueue(&store, "resize", at(1)).await;
    store
        .execution_cancel(cancelled.id, at(2))
        .await
        .expect("first cancel");
    let SlotRecord::Inserted(skipped) = store
        .slot_record(
            job.id,
            at(60),
            &SlotDecision::Skip {
                reason: "suspended".into(),
            },
            at(60),
        )
        .await
        .expect("record a skipped slot")
    else {
        panic!("a new slot")
    };

    for id in [succeeded.id, cancelled.id, skipped.execution_id] {
        let before = store.execution_get(id).await.expect("get");
        assert_err!(
            store.execution_cancel(id, at(61)).await,
            StoreError::Conflict(_)
        );
        assert_eq!(store.execution_get(id).await.expect("get"), before);
    }
}
