//! Leases and fencing: heartbeats, the rescuer, and writes from a worker whose lease moved on.

use std::sync::Arc;
use std::time::Duration;

use panda_core::{ConcurrencyPolicy, ExecutionId, Status, Trigger};
use panda_store::{ClaimRequest, Finish, Outcome, Store, StoreError};
use uuid::Uuid;

use super::support::*;

pub async fn heartbeat_extends_the_lease(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;
    assert_eq!(claimed.lease.expires_at, at(31));

    let beat = store
        .execution_heartbeat(claimed.execution.id, claimed.lease.token, LEASE_TTL, at(20))
        .await
        .expect("heartbeat");
    assert_eq!(beat.expires_at, at(50));
    assert!(!beat.cancel_requested);
    let stored = store
        .execution_get(claimed.execution.id)
        .await
        .expect("get");
    assert_eq!(stored.lease_expires_at, Some(at(50)));

    // The renewed lease is what the rescuer goes by.
    assert!(
        store
            .execution_rescue(at(40), 10)
            .await
            .expect("rescue")
            .is_empty()
    );
}

pub async fn heartbeat_with_a_wrong_token_is_stale(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;

    assert_err!(
        store
            .execution_heartbeat(claimed.execution.id, Uuid::now_v7(), LEASE_TTL, at(10))
            .await,
        StoreError::Stale
    );
    let stored = store
        .execution_get(claimed.execution.id)
        .await
        .expect("get");
    assert_eq!(
        stored.lease_expires_at,
        Some(at(31)),
        "the lease is unchanged"
    );
}

pub async fn finish_with_a_wrong_token_is_stale_and_changes_nothing(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;

    let forged = Finish {
        token: Uuid::now_v7(),
        ..finish_of(&claimed, Outcome::Failed)
    };
    assert_err!(
        store.execution_finish(&forged, at(2)).await,
        StoreError::Stale
    );
    assert_eq!(
        store
            .execution_get(claimed.execution.id)
            .await
            .expect("get"),
        claimed.execution,
        "still running under its lease"
    );
    assert_eq!(executions_of(&store, "resize").await.len(), 1, "no retry");
    // The real holder can still finish it.
    let done = finish(&store, &claimed, Outcome::Succeeded, at(3)).await;
    assert_eq!(done.execution.status, Status::Succeeded);
}

pub async fn rescue_leaves_leases_that_have_not_expired(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;

    assert!(
        store
            .execution_rescue(at(30), 10)
            .await
            .expect("rescue")
            .is_empty()
    );
    let stored = store
        .execution_get(claimed.execution.id)
        .await
        .expect("get");
    assert_eq!(stored.status, Status::Running);
}

/// Fencing is by token, not by clock: a heartbeat that comes late, before the rescuer, still
/// holds the lease, and renews it so the rescuer leaves it alone.
pub async fn heartbeat_after_expiry_but_before_rescue_renews_the_lease(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;
    assert_eq!(claimed.lease.expires_at, at(31));

    let beat = store
        .execution_heartbeat(claimed.execution.id, claimed.lease.token, LEASE_TTL, at(40))
        .await
        .expect("a late heartbeat before any rescue");
    assert_eq!(beat.expires_at, at(70));
    assert!(
        store
            .execution_rescue(at(45), 10)
            .await
            .expect("rescue")
            .is_empty(),
        "the renewed lease is not rescued"
    );
    let finished = store
        .execution_finish(&finish_of(&claimed, Outcome::Succeeded), at(50))
        .await
        .expect("finish under the renewed lease");
    assert_eq!(finished.execution.status, Status::Succeeded);
}

/// A result from the lease holder is accepted as long as no one took the lease, however long
/// after its expiry it comes: a worker that kept its result through a store outage records it
/// once the store is back, before the rescuer, and nothing runs again.
pub async fn finish_long_after_expiry_but_before_rescue_is_accepted(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;
    assert_eq!(claimed.lease.expires_at, at(31));

    // Ten lease lengths later, without a heartbeat in between.
    let finished = store
        .execution_finish(&finish_of(&claimed, Outcome::Succeeded), at(301))
        .await
        .expect("the holder's late result is accepted");
    assert_eq!(finished.execution.status, Status::Succeeded);
    assert!(finished.retry.is_none());
    assert!(
        store
            .execution_rescue(at(302), 10)
            .await
            .expect("rescue")
            .is_empty(),
        "nothing left to rescue"
    );
}

pub async fn rescue_marks_an_expired_lease_lost_and_queues_a_retry(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let first = enqueue(&store, "resize", base()).await;
    claim_one(&store, at(1)).await;

    let now = at(32);
    let mut rescued = store.execution_rescue(now, 10).await.expect("rescue");
    assert_eq!(rescued.len(), 1);
    let rescued = rescued.pop().expect("one");
    assert_eq!(rescued.execution.id, first.id);
    assert_eq!(rescued.execution.status, Status::Lost);
    assert_eq!(rescued.execution.finished_at, Some(now));

    let retry = rescued.retry.expect("a retry");
    assert_eq!(
        (retry.status, retry.trigger, retry.attempt),
        (Status::Queued, Trigger::Retry, 2)
    );
    assert_eq!(retry.root_id, first.id);
    assert_ne!(retry.id, first.id);
    assert_eq!(
        retry.run_at, now,
        "a lost attempt is retried at once: the worker died, not the job"
    );
    assert_eq!(
        store.execution_get(first.id).await.expect("get"),
        rescued.execution
    );
    assert_eq!(
        store.execution_get(retry.id).await.expect("get retry"),
        retry
    );
    assert_eq!(executions_of(&store, "resize").await.len(), 2);
}

pub async fn rescue_marks_the_last_attempt_dead_without_retry(store: Arc<dyn Store>) {
    let mut spec = job_spec("resize");
    spec.retry = retry_policy(1);
    create_job_from(&store, spec).await;
    let first = enqueue(&store, "resize", base()).await;
    claim_one(&store, at(1)).await;

    let mut rescued = store.execution_rescue(at(32), 10).await.expect("rescue");
    assert_eq!(rescued.len(), 1);
    let rescued = rescued.pop().expect("one");
    assert_eq!(rescued.execution.id, first.id);
    assert_eq!(rescued.execution.status, Status::Dead);
    assert_eq!(rescued.retry, None);
    let reason = rescued.execution.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("lost"),
        "the reason says it was lost: {reason:?}"
    );
    assert_eq!(executions_of(&store, "resize").await.len(), 1);
}

pub async fn rescue_of_an_execution_asked_to_cancel_ends_it_cancelled_without_retry(
    store: Arc<dyn Store>,
) {
    create_job(&store, "resize").await;
    let first = enqueue(&store, "resize", base()).await;
    claim_one(&store, at(1)).await;
    store
        .execution_cancel(first.id, at(2))
        .await
        .expect("cancel asks the worker to stop");

    // The worker dies before it confirms: the user's cancel stands, nothing is retried.
    let mut rescued = store.execution_rescue(at(40), 10).await.expect("rescue");
    assert_eq!(rescued.len(), 1);
    let rescued = rescued.pop().expect("one");
    assert_eq!(rescued.execution.status, Status::Cancelled);
    assert_eq!(rescued.retry, None);
    assert_eq!(executions_of(&store, "resize").await.len(), 1);
    assert!(
        claim(&store, 10, at(400)).await.is_empty(),
        "no retry appears later"
    );
}

pub async fn rescue_takes_at_most_limit_executions(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    for i in 0..3 {
        enqueue(&store, "resize", at(i)).await;
    }
    assert_eq!(claim(&store, 3, at(5)).await.len(), 3);

    assert_eq!(
        store
            .execution_rescue(at(40), 2)
            .await
            .expect("rescue")
            .len(),
        2
    );
    assert_eq!(
        store
            .execution_rescue(at(40), 2)
            .await
            .expect("rescue")
            .len(),
        1
    );
    assert!(
        store
            .execution_rescue(at(40), 2)
            .await
            .expect("rescue")
            .is_empty()
    );
}

pub async fn rescued_executions_old_worker_is_fenced_off(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;
    let rescued = store.execution_rescue(at(32), 10).await.expect("rescue");
    assert_eq!(rescued.len(), 1);
    let lost = store
        .execution_get(claimed.execution.id)
        .await
        .expect("get");

    let mut late = finish_of(&claimed, Outcome::Failed);
    late.exit_code = Some(3);
    late.reason = Some("came back from a network partition".into());
    assert_err!(
        store.execution_finish(&late, at(33)).await,
        StoreError::Stale
    );
    assert_err!(
        store
            .execution_heartbeat(claimed.execution.id, claimed.lease.token, LEASE_TTL, at(33))
            .await,
        StoreError::Stale
    );

    let after = store
        .execution_get(claimed.execution.id)
        .await
        .expect("get");
    assert_eq!(after, lost, "the stale writes changed nothing");
    assert_eq!((after.status, after.exit_code), (Status::Lost, None));
    assert_eq!(
        executions_of(&store, "resize").await.len(),
        2,
        "only the rescuer's retry, no second one"
    );
}

pub async fn finish_many_fences_each_item_separately(store: Arc<dyn Store>) {
    create_job_from(&store, job_spec_with("resize", ConcurrencyPolicy::Allow)).await;
    let short = enqueue(&store, "resize", base()).await;
    let long = enqueue(&store, "resize", at(1)).await;
    let short_lease = store
        .execution_claim(
            &ClaimRequest {
                lease_ttl: Duration::from_secs(10),
                ..claim_request(1)
            },
            at(2),
        )
        .await
        .expect("claim")
        .pop()
        .expect("one");
    assert_eq!(short_lease.execution.id, short.id);
    let long_lease = claim_one(&store, at(2)).await;
    assert_eq!(long_lease.execution.id, long.id);
    assert_eq!(
        store
            .execution_rescue(at(13), 10)
            .await
            .expect("rescue")
            .len(),
        1
    );

    let results = store
        .execution_finish_many(
            &[
                finish_of(&short_lease, Outcome::Succeeded),
                finish_of(&long_lease, Outcome::Succeeded),
            ],
            at(14),
        )
        .await
        .expect("the batch itself succeeds");
    assert_eq!(results.len(), 2);
    let mut results = results.into_iter();
    assert_err!(results.next().expect("first"), StoreError::Stale);
    let ok = results.next().expect("second").expect("the valid item");
    assert_eq!(
        (ok.execution.id, ok.execution.status),
        (long.id, Status::Succeeded)
    );

    assert_eq!(
        store.execution_get(short.id).await.expect("get").status,
        Status::Lost
    );
    assert_eq!(
        store.execution_get(long.id).await.expect("get").status,
        Status::Succeeded
    );
}

/// A finish whose lease is gone because the execution already ended: the doc calls the write
/// `Stale`, and `Conflict` ("a finished execution") is the other honest answer; either way the
/// first result stands.
pub async fn finished_execution_cannot_be_finished_again(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;
    let done = finish(&store, &claimed, Outcome::Succeeded, at(2)).await;

    assert_err!(
        store
            .execution_finish(&finish_of(&claimed, Outcome::Failed), at(3))
            .await,
        StoreError::Stale | StoreError::Conflict(_)
    );
    assert_err!(
        store
            .execution_heartbeat(claimed.execution.id, claimed.lease.token, LEASE_TTL, at(3))
            .await,
        StoreError::Stale
    );
    assert_eq!(
        store
            .execution_get(claimed.execution.id)
            .await
            .expect("get"),
        done.execution
    );
    assert_eq!(executions_of(&store, "resize").await.len(), 1, "no retry");
}

/// A batch of successes (PostgreSQL writes those in one statement): each item answered in its
/// place, a second item for one execution and an unknown one refused, and the job slots of
/// the ones written given back.
pub async fn finish_many_of_successes_answers_each_item_in_its_place(store: Arc<dyn Store>) {
    let mut spec = job_spec_with("resize", ConcurrencyPolicy::Allow);
    spec.max_running = Some(2);
    create_job_from(&store, spec).await;
    let first = enqueue(&store, "resize", base()).await;
    let second = enqueue(&store, "resize", at(1)).await;
    let waiting = enqueue(&store, "resize", at(2)).await;
    let claimed = claim(&store, 10, at(3)).await;
    assert_eq!(claimed.len(), 2, "the job's limit");

    let mut unknown = finish_of(&claimed[0], Outcome::Succeeded);
    unknown.execution_id = ExecutionId::new();
    let mut reported = finish_of(&claimed[1], Outcome::Succeeded);
    reported.exit_code = Some(0);
    reported.reason = Some("all good".into());
    reported.image_digest = Some("sha256:abc".into());
    let results = store
        .execution_finish_many(
            &[
                reported.clone(),
                unknown,
                finish_of(&claimed[0], Outcome::Succeeded),
                reported,
            ],
            at(4),
        )
        .await
        .expect("the batch itself succeeds");
    assert_eq!(results.len(), 4);
    let mut results = results.into_iter();
    let done = results
        .next()
        .expect("1")
        .expect("the first item is written");
    assert_eq!(done.execution.id, second.id);
    assert_eq!(done.execution.status, Status::Succeeded);
    assert_eq!(done.execution.reason.as_deref(), Some("all good"));
    assert_eq!(done.execution.image_digest.as_deref(), Some("sha256:abc"));
    assert_eq!(done.execution.finished_at, Some(at(4)));
    assert!(done.retry.is_none());
    assert_err!(results.next().expect("2"), StoreError::NotFound { .. });
    let other = results
        .next()
        .expect("3")
        .expect("the third item is written");
    assert_eq!(other.execution.id, first.id);
    assert_err!(results.next().expect("4"), StoreError::Stale);

    let stored = store.execution_get(second.id).await.expect("get");
    assert_eq!(stored.status, Status::Succeeded);
    assert_eq!(stored.exit_code, Some(0));
    assert_eq!(stored.lease_expires_at, None);
    let next = claim(&store, 10, at(5)).await;
    assert_eq!(
        next.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [waiting.id],
        "both slots were given back"
    );
}
