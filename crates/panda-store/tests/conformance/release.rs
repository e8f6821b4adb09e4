//! Release: a worker that shuts down puts its running executions back in the queue.

use std::sync::Arc;

use panda_core::{ConcurrencyPolicy, Status};
use panda_store::{Store, StoreError};
use uuid::Uuid;

use super::support::*;

pub async fn release_puts_a_running_execution_back_with_its_attempt_unused(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let queued = enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;

    let mut results = store
        .execution_release_many(&[(claimed.execution.id, claimed.lease.token)], at(5))
        .await
        .expect("release");
    let released = results.pop().expect("one result").expect("released");
    assert_eq!(
        (
            released.status,
            released.attempt,
            released.run_at,
            released.started_at,
            released.worker_id.as_deref(),
            released.lease_expires_at
        ),
        (Status::Queued, 1, at(5), None, None, None)
    );
    assert!(
        released
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("released")),
        "says why it is queued again: {:?}",
        released.reason
    );
    assert_eq!(
        store.execution_get(queued.id).await.expect("get"),
        released,
        "what it answers is what it stored"
    );

    // Claimable again at once; the old lease no longer holds.
    let again = claim_one(&store, at(5)).await;
    assert_eq!(again.execution.id, queued.id);
    assert_eq!(again.execution.attempt, 1);
    assert_ne!(again.lease.token, claimed.lease.token);
    let stale = store
        .execution_heartbeat(queued.id, claimed.lease.token, LEASE_TTL, at(6))
        .await;
    assert!(matches!(stale, Err(StoreError::Stale)), "{stale:?}");
    assert_eq!(
        executions_of(&store, "resize").await.len(),
        1,
        "no new attempt"
    );
}

pub async fn release_with_a_stale_token_changes_nothing(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;
    let before = store
        .execution_get(claimed.execution.id)
        .await
        .expect("get");

    let results = store
        .execution_release_many(
            &[
                (claimed.execution.id, Uuid::now_v7()),
                (panda_core::ExecutionId::new(), Uuid::now_v7()),
            ],
            at(5),
        )
        .await
        .expect("release");
    assert!(matches!(results[0], Err(StoreError::Stale)), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::NotFound { .. })),
        "{results:?}"
    );
    assert_eq!(
        store
            .execution_get(claimed.execution.id)
            .await
            .expect("get"),
        before
    );
}

pub async fn release_frees_the_job_lock_of_a_forbid_job(store: Arc<dyn Store>) {
    create_job_from(&store, job_spec_with("report", ConcurrencyPolicy::Forbid)).await;
    enqueue(&store, "report", base()).await;
    enqueue(&store, "report", base()).await;
    let claimed = claim_one(&store, at(1)).await;
    assert!(
        claim(&store, 10, at(2)).await.is_empty(),
        "the second waits for the job lock"
    );

    store
        .execution_release_many(&[(claimed.execution.id, claimed.lease.token)], at(3))
        .await
        .expect("release")
        .pop()
        .expect("one")
        .expect("released");
    let next = claim(&store, 10, at(3)).await;
    assert_eq!(next.len(), 1, "the lock is free again, and taken by one");
}

pub async fn release_of_an_execution_asked_to_cancel_ends_it_cancelled(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let queued = enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;
    store
        .execution_cancel(queued.id, at(2))
        .await
        .expect("cancel");

    let ended = store
        .execution_release_many(&[(claimed.execution.id, claimed.lease.token)], at(3))
        .await
        .expect("release")
        .pop()
        .expect("one")
        .expect("ended");
    assert_eq!(ended.status, Status::Cancelled);
    assert_eq!(ended.finished_at, Some(at(3)));
    assert!(
        claim(&store, 10, at(4)).await.is_empty(),
        "not queued again"
    );
    assert_eq!(executions_of(&store, "resize").await.len(), 1, "no retry");
}
