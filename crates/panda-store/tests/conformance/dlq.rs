//! The dead-letter queue: dead executions wait there until they are retried or discarded, and
//! stay `dead` in the history either way.

use std::sync::Arc;

use panda_core::{ExecutionId, Status, Trigger};
use panda_store::{ExecutionFilter, NewExecution, Outcome, Store, StoreError};

use super::support::*;

/// A job whose executions have one attempt, so a failure is dead at once.
async fn one_shot_job(store: &Arc<dyn Store>, name: &str) {
    let mut spec = job_spec(name);
    spec.retry = retry_policy(1);
    create_job_from(store, spec).await;
}

/// Enqueues an execution of `job` (with an idempotency key) and fails it on its only attempt.
async fn dead_one(store: &Arc<dyn Store>, job: &str, key: &str) -> panda_core::Execution {
    let mut request = NewExecution::api(job);
    request.idempotency_key = Some(key.into());
    store
        .execution_enqueue(&request, base())
        .await
        .expect("enqueue");
    let claimed = claim_one(store, at(1)).await;
    let finished = finish(store, &claimed, Outcome::Failed, at(2)).await;
    assert_eq!(finished.execution.status, Status::Dead);
    finished.execution
}

async fn dead_letter_ids(store: &Arc<dyn Store>, job: Option<&str>) -> Vec<ExecutionId> {
    list_every(
        store,
        ExecutionFilter {
            job: job.map(str::to_owned),
            dead_letter: true,
            ..ExecutionFilter::default()
        },
    )
    .await
    .iter()
    .map(|e| e.id)
    .collect()
}

pub async fn dlq_holds_dead_executions_until_retried_or_discarded(store: Arc<dyn Store>) {
    one_shot_job(&store, "mail").await;
    let first = dead_one(&store, "mail", "a").await;
    let second = dead_one(&store, "mail", "b").await;
    run_to_success(&store, "mail", at(3)).await;
    assert_eq!(dead_letter_ids(&store, None).await, [second.id, first.id]);

    store.dlq_discard(first.id, at(4)).await.expect("discard");
    assert_eq!(dead_letter_ids(&store, Some("mail")).await, [second.id]);
    let discarded = store.execution_get(first.id).await.expect("get");
    assert_eq!(discarded.status, Status::Dead, "history keeps it dead");

    let retry = store.dlq_retry(second.id, at(5)).await.expect("retry");
    assert_eq!(
        (retry.status, retry.trigger, retry.attempt, retry.run_at),
        (Status::Queued, Trigger::Retry, 2, at(5))
    );
    assert_eq!(retry.root_id, second.root_id);
    assert_eq!(retry.idempotency_key.as_deref(), Some("b"));
    assert_ne!(retry.id, second.id);
    assert!(dead_letter_ids(&store, None).await.is_empty());
    assert_eq!(
        store.execution_get(retry.id).await.expect("get"),
        retry,
        "what it answers is what it stored"
    );
    let claimed = claim_one(&store, at(5)).await;
    assert_eq!(claimed.execution.id, retry.id, "the new attempt runs");
}

pub async fn a_dead_letter_retry_that_fails_again_is_dead_again(store: Arc<dyn Store>) {
    one_shot_job(&store, "mail").await;
    let dead = dead_one(&store, "mail", "a").await;
    let retry = store.dlq_retry(dead.id, at(3)).await.expect("retry");
    let claimed = claim_one(&store, at(3)).await;
    assert_eq!(claimed.execution.id, retry.id);
    let finished = finish(&store, &claimed, Outcome::Failed, at(4)).await;
    assert_eq!(finished.execution.status, Status::Dead);
    assert_eq!(
        finished.retry, None,
        "no attempts left: one more is all a retry gives"
    );
    assert_eq!(dead_letter_ids(&store, None).await, [retry.id]);
}

pub async fn dlq_operations_refuse_what_is_not_in_the_queue(store: Arc<dyn Store>) {
    one_shot_job(&store, "mail").await;
    let succeeded = run_to_success(&store, "mail", at(1)).await;
    let queued = enqueue(&store, "mail", at(2)).await;
    for id in [succeeded.id, queued.id] {
        let retried = store.dlq_retry(id, at(3)).await;
        assert!(
            matches!(retried, Err(StoreError::Conflict(_))),
            "{retried:?}"
        );
        let discarded = store.dlq_discard(id, at(3)).await;
        assert!(
            matches!(discarded, Err(StoreError::Conflict(_))),
            "{discarded:?}"
        );
    }
    let missing = store.dlq_retry(ExecutionId::new(), at(3)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );

    // Claim and cancel the queued one so the queue is clear for the dead one below.
    store
        .execution_cancel(queued.id, at(3))
        .await
        .expect("cancel");
    let dead = dead_one(&store, "mail", "a").await;
    store.dlq_retry(dead.id, at(4)).await.expect("retry");
    let again = store.dlq_retry(dead.id, at(5)).await;
    match again {
        Err(StoreError::Conflict(message)) => assert!(message.contains("retried"), "{message}"),
        other => panic!("a second retry is a conflict, got {other:?}"),
    }
    let discarded = store.dlq_discard(dead.id, at(5)).await;
    assert!(
        matches!(discarded, Err(StoreError::Conflict(_))),
        "{discarded:?}"
    );
}

pub async fn dlq_retry_job_retries_every_dead_execution_of_that_job_only(store: Arc<dyn Store>) {
    one_shot_job(&store, "mail").await;
    one_shot_job(&store, "sms").await;
    let mut dead = Vec::new();
    for key in ["a", "b", "c"] {
        dead.push(dead_one(&store, "mail", key).await.id);
    }
    let sms = dead_one(&store, "sms", "a").await;

    let retries = store.dlq_retry_job("mail", at(5)).await.expect("retry all");
    let mut roots: Vec<ExecutionId> = retries.iter().map(|r| r.root_id).collect();
    roots.sort();
    dead.sort();
    assert_eq!(roots, dead);
    assert!(
        retries
            .iter()
            .all(|r| r.status == Status::Queued && r.attempt == 2)
    );
    assert_eq!(dead_letter_ids(&store, None).await, [sms.id]);
    assert!(
        store
            .dlq_retry_job("mail", at(6))
            .await
            .expect("nothing left")
            .is_empty()
    );
    let unknown = store.dlq_retry_job("nope", at(6)).await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );
}

pub async fn dlq_retry_of_a_deleted_jobs_execution_is_a_conflict(store: Arc<dyn Store>) {
    one_shot_job(&store, "mail").await;
    let dead = dead_one(&store, "mail", "a").await;
    store.job_delete("mail", at(3)).await.expect("delete");
    let retried = store.dlq_retry(dead.id, at(4)).await;
    match retried {
        Err(StoreError::Conflict(message)) => assert!(message.contains("deleted"), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // It can still be set aside.
    store.dlq_discard(dead.id, at(4)).await.expect("discard");
}

pub async fn concurrent_dlq_retries_of_one_execution_make_one_attempt(store: Arc<dyn Store>) {
    one_shot_job(&store, "mail").await;
    let dead = dead_one(&store, "mail", "a").await;
    let tries = (0..8).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.dlq_retry(dead.id, at(5)).await })
    });
    let mut made = 0;
    for result in futures::future::join_all(tries).await {
        match result.expect("task") {
            Ok(_) => made += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(made, 1);
    assert_eq!(executions_of(&store, "mail").await.len(), 2);
}

/// A refused retry or discard holds no lock once it has answered: the queued execution it read
/// is claimed by the very next claim. (Found by the state-machine test: a transaction that was
/// only dropped was rolled back when its connection was next used, and until then PostgreSQL's
/// claim skipped the row it had locked. A race, so the case tries many times.)
pub async fn a_refused_dlq_operation_leaves_the_execution_claimable_at_once(store: Arc<dyn Store>) {
    create_job(&store, "mail").await;
    for i in 0..100 {
        let queued = enqueue(&store, "mail", at(i)).await;
        assert_err!(
            store.dlq_retry(queued.id, at(i)).await,
            StoreError::Conflict(_)
        );
        assert_err!(
            store.dlq_discard(queued.id, at(i)).await,
            StoreError::Conflict(_)
        );
        let claimed = claim_one(&store, at(i)).await;
        assert_eq!(claimed.execution.id, queued.id, "round {i}");
        finish(&store, &claimed, Outcome::Succeeded, at(i)).await;
    }
}
