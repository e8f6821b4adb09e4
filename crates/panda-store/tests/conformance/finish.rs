//! Finish and the retry policy: how an attempt ends, and which attempt follows.

use std::sync::Arc;

use panda_core::{Execution, Status, Trigger};
use panda_store::{Claimed, NewExecution, Outcome, Store};

use super::support::*;

/// Creates a job with `max_attempts`, enqueues one execution and claims it at `at(1)`.
async fn one_running(store: &Arc<dyn Store>, max_attempts: u32) -> (Execution, Claimed) {
    let mut spec = job_spec("resize");
    spec.retry = retry_policy(max_attempts);
    create_job_from(store, spec).await;
    let queued = enqueue(store, "resize", base()).await;
    let claimed = claim_one(store, at(1)).await;
    assert_eq!(claimed.execution.id, queued.id);
    (queued, claimed)
}

pub async fn finish_succeeded_records_the_result_without_retry(store: Arc<dyn Store>) {
    let (queued, claimed) = one_running(&store, 3).await;
    let mut report = finish_of(&claimed, Outcome::Succeeded);
    report.image_digest = Some("sha256:4b825dc642cb6eb9a060e54bf8d69288fbee4904".into());

    let finished = store
        .execution_finish(&report, at(9))
        .await
        .expect("finish");
    let e = &finished.execution;
    assert_eq!((e.id, e.status), (queued.id, Status::Succeeded));
    assert_eq!((e.started_at, e.finished_at), (Some(at(1)), Some(at(9))));
    assert_eq!(e.exit_code, Some(0));
    assert_eq!(e.image_digest, report.image_digest);
    assert_eq!(
        e.worker_id.as_deref(),
        Some(WORKER),
        "the worker that ran it"
    );
    assert_eq!(e.lease_expires_at, None, "a lease only while running");
    assert_eq!(finished.retry, None);
    assert_eq!(store.execution_get(queued.id).await.expect("get"), *e);
    assert_eq!(executions_of(&store, "resize").await.len(), 1);
}

pub async fn finish_failed_with_attempts_left_queues_a_retry_with_backoff(store: Arc<dyn Store>) {
    let (queued, claimed) = one_running(&store, 3).await;
    let mut report = finish_of(&claimed, Outcome::Failed);
    report.exit_code = Some(2);
    report.reason = Some("exit status 2".into());
    report.image_digest = Some("sha256:abc".into());

    let finished = store
        .execution_finish(&report, at(5))
        .await
        .expect("finish");
    let e = &finished.execution;
    assert_eq!((e.status, e.finished_at), (Status::Failed, Some(at(5))));
    assert_eq!(e.exit_code, Some(2));
    assert_eq!(e.reason.as_deref(), Some("exit status 2"));
    assert_eq!(e.image_digest.as_deref(), Some("sha256:abc"));

    let retry = finished.retry.expect("a retry");
    assert_ne!(retry.id, queued.id);
    assert_eq!(
        (retry.status, retry.trigger, retry.attempt),
        (Status::Queued, Trigger::Retry, 2)
    );
    assert_eq!(retry.root_id, queued.id);
    assert_eq!(
        (retry.job_id, retry.queue.as_str()),
        (queued.job_id, "default")
    );
    assert_eq!((retry.retry, retry.created_at), (queued.retry, at(5)));
    assert_within(retry.run_at, at(5), plus(at(5), BACKOFF_BASE));
    assert_eq!(
        (retry.started_at, retry.finished_at, retry.exit_code),
        (None, None, None)
    );
    assert_eq!(
        store.execution_get(retry.id).await.expect("get retry"),
        retry
    );
    assert_eq!(store.execution_get(queued.id).await.expect("get"), *e);
}

pub async fn retry_backoff_ceiling_doubles_with_each_attempt(store: Arc<dyn Store>) {
    let (queued, claimed) = one_running(&store, 3).await;
    let first = finish(&store, &claimed, Outcome::Failed, at(5)).await;
    let second = first.retry.expect("a second attempt");

    // Due within 10 s; claimed once due.
    let claimed = claim_one(&store, plus(at(5), BACKOFF_BASE)).await;
    assert_eq!(claimed.execution.id, second.id);
    let now = at(20);
    let finished = finish(&store, &claimed, Outcome::Failed, now).await;
    assert_eq!(finished.execution.status, Status::Failed);
    let third = finished.retry.expect("a third attempt");
    assert_eq!((third.attempt, third.root_id), (3, queued.id));
    assert_within(third.run_at, now, plus(now, BACKOFF_BASE * 2));
}

pub async fn finish_failed_on_the_last_attempt_is_dead_without_retry(store: Arc<dyn Store>) {
    let (queued, claimed) = one_running(&store, 1).await;
    let mut report = finish_of(&claimed, Outcome::Failed);
    report.exit_code = Some(137);
    report.reason = Some("OOMKilled".into());

    let finished = store
        .execution_finish(&report, at(5))
        .await
        .expect("finish");
    let e = &finished.execution;
    assert_eq!((e.id, e.status), (queued.id, Status::Dead));
    assert_eq!((e.exit_code, e.finished_at), (Some(137), Some(at(5))));
    let reason = e.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("OOMKilled"),
        "the worker's reason is kept: {reason:?}"
    );
    assert_eq!(finished.retry, None);
    assert_eq!(executions_of(&store, "resize").await.len(), 1);
}

pub async fn finish_timed_out_with_attempts_left_queues_a_retry(store: Arc<dyn Store>) {
    let (queued, claimed) = one_running(&store, 2).await;
    let finished = finish(&store, &claimed, Outcome::TimedOut, at(5)).await;
    assert_eq!(finished.execution.status, Status::TimedOut);
    assert_eq!(finished.execution.exit_code, None);
    let retry = finished.retry.expect("a retry");
    assert_eq!(
        (retry.attempt, retry.root_id, retry.trigger),
        (2, queued.id, Trigger::Retry)
    );
    assert_within(retry.run_at, at(5), plus(at(5), BACKOFF_BASE));
}

pub async fn finish_timed_out_on_the_last_attempt_is_dead_without_retry(store: Arc<dyn Store>) {
    let (_, claimed) = one_running(&store, 1).await;
    let finished = finish(&store, &claimed, Outcome::TimedOut, at(5)).await;
    assert_eq!(finished.execution.status, Status::Dead);
    assert_eq!(finished.retry, None);
    let reason = finished.execution.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("timed out"),
        "the reason says it timed out: {reason:?}"
    );
    assert_eq!(executions_of(&store, "resize").await.len(), 1);
}

pub async fn finish_rejected_is_dead_at_once_with_its_cause(store: Arc<dyn Store>) {
    let (_, claimed) = one_running(&store, 3).await;
    let mut report = finish_of(&claimed, Outcome::Rejected);
    report.reason = Some("no such image: acme/report:latest".into());
    let finished = store
        .execution_finish(&report, at(5))
        .await
        .expect("finish");
    assert_eq!(finished.execution.status, Status::Dead);
    assert_eq!(
        finished.execution.reason.as_deref(),
        Some("could not run (not retried): no such image: acme/report:latest")
    );
    assert_eq!(
        finished.retry, None,
        "attempts were left, but retrying cannot help"
    );
    assert_eq!(executions_of(&store, "resize").await.len(), 1);
}

pub async fn finish_cancelled_is_never_retried(store: Arc<dyn Store>) {
    let (_, claimed) = one_running(&store, 3).await;
    let mut report = finish_of(&claimed, Outcome::Cancelled);
    report.reason = Some("cancelled by ada".into());
    let finished = store
        .execution_finish(&report, at(5))
        .await
        .expect("finish");
    assert_eq!(finished.execution.status, Status::Cancelled);
    assert_eq!(
        finished.execution.reason.as_deref(),
        Some("cancelled by ada")
    );
    assert_eq!(finished.retry, None);
    assert_eq!(executions_of(&store, "resize").await.len(), 1);
}

pub async fn retries_keep_the_idempotency_key_payload_and_env_of_the_first_attempt(
    store: Arc<dyn Store>,
) {
    create_job(&store, "charge").await;
    let mut request = NewExecution::api("charge");
    request.idempotency_key = Some("order-42".into());
    request.payload = Some(serde_json::json!({"amount": 100, "currency": "EUR"}));
    request.env.insert("MODE".into(), "live".into());
    request.priority = Some(4);
    let first = enqueue_request(&store, request.clone(), base()).await;
    let claimed = claim_one(&store, at(1)).await;
    let retry = finish(&store, &claimed, Outcome::Failed, at(2))
        .await
        .retry
        .expect("a retry");

    assert_eq!(retry.idempotency_key, first.idempotency_key);
    assert_eq!(retry.payload, first.payload);
    assert_eq!(retry.env, first.env);
    assert_eq!(retry.priority, 4);
    assert_eq!(
        retry.run_key(),
        first.run_key(),
        "PANDA_IDEMPOTENCY_KEY is stable"
    );

    // The key still names the first execution, not its retry.
    let again = store
        .execution_enqueue(&request, at(3))
        .await
        .expect("enqueue again");
    assert!(!again.created);
    assert_eq!(again.execution.id, first.id);
}
