//! Enqueue: the first attempt it creates, and idempotency keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use panda_core::{ConcurrencyPolicy, ExecutionId, Status, Trigger};
use panda_store::{NewExecution, Outcome, Store};

use super::support::*;

pub async fn enqueue_returns_a_queued_first_attempt_with_the_jobs_queue_and_priority(
    store: Arc<dyn Store>,
) {
    let mut spec = job_spec_with("send-email", ConcurrencyPolicy::Forbid);
    spec.queue = "emails".into();
    spec.priority = 5;
    spec.retry = retry_policy(4);
    let job = create_job_from(&store, spec).await;

    let mut request = NewExecution::api("send-email");
    request.trigger = Trigger::Manual;
    request.payload = Some(serde_json::json!({"to": "ada@example.com", "n": 3}));
    request.env.insert("LOCALE".into(), "en".into());
    let enqueued = store
        .execution_enqueue(&request, at(7))
        .await
        .expect("enqueue");
    assert!(enqueued.created);
    let e = enqueued.execution;

    assert_eq!(e.root_id, e.id, "a first attempt is its own root");
    assert_eq!((e.job_id, e.job_name.as_str()), (job.id, "send-email"));
    assert_eq!((e.queue.as_str(), e.priority), ("emails", 5));
    assert_eq!(
        (e.status, e.trigger, e.attempt),
        (Status::Queued, Trigger::Manual, 1)
    );
    assert_eq!(
        (e.retry, e.concurrency),
        (retry_policy(4), ConcurrencyPolicy::Forbid)
    );
    assert_eq!(
        (e.run_at, e.created_at),
        (at(7), at(7)),
        "due now by default"
    );
    assert_eq!(e.payload, request.payload);
    assert_eq!(e.env, request.env);
    assert_eq!((e.idempotency_key.as_deref(), e.scheduled_at), (None, None));
    assert_eq!(
        (e.started_at, e.finished_at, e.lease_expires_at),
        (None, None, None)
    );
    assert_eq!((e.worker_id.as_deref(), e.cancel_requested), (None, false));
    assert_eq!(
        (e.exit_code, e.reason.as_deref(), e.image_digest.as_deref()),
        (None, None, None)
    );

    assert_eq!(
        store.execution_get(e.id).await.expect("get"),
        e,
        "stored as returned"
    );
}

pub async fn enqueue_applies_priority_run_at_and_scheduled_at_overrides(store: Arc<dyn Store>) {
    // Hourly, so that an hour before `base` is a slot the run can stand for.
    let mut spec = cronjob_spec("send-email", "0 * * * *");
    spec.priority = 5;
    create_job_from(&store, spec).await;

    let mut request = NewExecution::api("send-email");
    request.priority = Some(-2);
    request.run_at = Some(at(600));
    request.scheduled_at = Some(at(-3600));
    let e = enqueue_request(&store, request, base()).await;
    assert_eq!(e.priority, -2);
    assert_eq!((e.run_at, e.created_at), (at(600), base()));
    assert_eq!(e.scheduled_at, Some(at(-3600)));
    assert_eq!(store.execution_get(e.id).await.expect("get"), e);
}

pub async fn enqueue_with_a_seen_idempotency_key_returns_the_first_execution(
    store: Arc<dyn Store>,
) {
    create_job(&store, "charge").await;
    let mut request = NewExecution::api("charge");
    request.idempotency_key = Some("order-42".into());
    request.payload = Some(serde_json::json!({"amount": 100}));
    let first = enqueue_request(&store, request.clone(), base()).await;

    request.payload = Some(serde_json::json!({"amount": 999}));
    let again = store
        .execution_enqueue(&request, at(5))
        .await
        .expect("second enqueue");
    assert!(!again.created);
    assert_eq!(again.execution, first, "the first execution, unchanged");
    assert_eq!(executions_of(&store, "charge").await, [first]);
}

pub async fn idempotency_key_still_matches_after_the_first_execution_finished(
    store: Arc<dyn Store>,
) {
    create_job(&store, "charge").await;
    let mut request = NewExecution::api("charge");
    request.idempotency_key = Some("order-42".into());
    let first = enqueue_request(&store, request.clone(), base()).await;
    let claimed = claim_one(&store, at(1)).await;
    finish(&store, &claimed, Outcome::Succeeded, at(2)).await;

    let again = store
        .execution_enqueue(&request, at(3))
        .await
        .expect("enqueue again");
    assert!(!again.created);
    assert_eq!(again.execution.id, first.id);
    assert_eq!(again.execution.status, Status::Succeeded);
    assert_eq!(executions_of(&store, "charge").await.len(), 1);
}

pub async fn idempotency_keys_are_per_job(store: Arc<dyn Store>) {
    create_job(&store, "charge").await;
    create_job(&store, "refund").await;
    let mut charge = NewExecution::api("charge");
    charge.idempotency_key = Some("order-42".into());
    let mut refund = charge.clone();
    refund.job = "refund".into();

    let charged = enqueue_request(&store, charge, base()).await;
    let refunded = enqueue_request(&store, refund, at(1)).await;
    assert_ne!(charged.id, refunded.id);
    assert_eq!(refunded.job_name, "refund");
}

pub async fn concurrent_enqueues_with_one_idempotency_key_create_one_execution(
    store: Arc<dyn Store>,
) {
    create_job(&store, "charge").await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut request = NewExecution::api("charge");
                request.idempotency_key = Some("order-42".into());
                store.execution_enqueue(&request, base()).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(
            task.await
                .expect("enqueue task")
                .expect("every racing enqueue gets an answer, not an error"),
        );
    }

    let stored = executions_of(&store, "charge").await;
    assert_eq!(stored.len(), 1, "exactly one execution: {stored:?}");
    let answered: BTreeSet<_> = answers.iter().map(|a| a.execution.id).collect();
    assert_eq!(answered, ids(&stored), "every answer carries its id");
    assert_eq!(
        answers.iter().filter(|a| a.created).count(),
        1,
        "exactly one enqueue created it"
    );
}

/// `NewExecution::api(job)` with `key`, and a payload naming `n`.
fn keyed(job: &str, n: u32, key: Option<&str>) -> NewExecution {
    let mut request = NewExecution::api(job);
    request.payload = Some(serde_json::json!({ "n": n }));
    request.idempotency_key = key.map(str::to_owned);
    request
}

pub async fn enqueue_many_answers_each_item_in_its_place_in_one_transaction(store: Arc<dyn Store>) {
    create_job(&store, "resize-image").await;
    let mut service = job_spec("web");
    service.service = Some(serde_json::from_value(serde_json::json!({})).expect("a service"));
    service.retry = retry_policy(1);
    create_job_from(&store, service).await;
    let earlier = store
        .execution_enqueue(&keyed("resize-image", 0, Some("seen")), at(1))
        .await
        .expect("an earlier enqueue")
        .execution;

    let mut bad_priority = keyed("resize-image", 5, None);
    bad_priority.priority = Some(5000);
    let mut backfill = keyed("resize-image", 8, None);
    backfill.scheduled_at = Some(at(0));
    let batch = vec![
        keyed("resize-image", 1, None),
        keyed("resize-image", 2, Some("seen")),
        keyed("resize-image", 3, Some("twice")),
        keyed("resize-image", 4, Some("twice")),
        bad_priority,
        keyed("no-such-job", 6, None),
        keyed("web", 7, None),
        backfill,
        keyed("resize-image", 9, None),
    ];
    let answers = store
        .execution_enqueue_many(&batch, at(2))
        .await
        .expect("the batch");
    assert_eq!(answers.len(), batch.len(), "one answer per item");

    let created = |i: usize| -> panda_core::Execution {
        match &answers[i] {
            Ok(enqueued) if enqueued.created => enqueued.execution.clone(),
            other => panic!("item {i} should be created: {other:?}"),
        }
    };
    let first = created(0);
    assert_eq!(first.payload, Some(serde_json::json!({"n": 1})));
    assert_eq!((first.status, first.attempt), (Status::Queued, 1));
    match &answers[1] {
        Ok(enqueued) => {
            assert!(!enqueued.created, "a key seen before is a duplicate");
            assert_eq!(enqueued.execution.id, earlier.id);
        }
        Err(err) => panic!("item 1: {err}"),
    }
    let twice = created(2);
    match &answers[3] {
        Ok(enqueued) => {
            assert!(
                !enqueued.created,
                "a key seen earlier in the batch is a duplicate"
            );
            assert_eq!(enqueued.execution.id, twice.id);
        }
        Err(err) => panic!("item 3: {err}"),
    }
    assert!(
        matches!(answers[4], Err(panda_store::StoreError::Invalid(_))),
        "{:?}",
        answers[4]
    );
    assert!(
        matches!(answers[5], Err(panda_store::StoreError::NotFound { .. })),
        "{:?}",
        answers[5]
    );
    assert!(
        matches!(answers[6], Err(panda_store::StoreError::Invalid(_))),
        "a service is not enqueued: {:?}",
        answers[6]
    );
    assert!(
        matches!(answers[7], Err(panda_store::StoreError::Invalid(_))),
        "a backfill is enqueued alone: {:?}",
        answers[7]
    );
    let last = created(8);

    // What was queued is what the answers say, stored as returned, and nothing else.
    for execution in [&first, &twice, &last] {
        assert_eq!(
            &store.execution_get(execution.id).await.expect("get"),
            execution
        );
    }
    let claimed: BTreeSet<_> = claim(&store, 100, at(3))
        .await
        .into_iter()
        .map(|c| c.execution.id)
        .collect();
    let expected: BTreeSet<_> = [earlier.id, first.id, twice.id, last.id].into();
    assert_eq!(claimed, expected);
}

pub async fn enqueue_many_of_nothing_but_refusals_queues_nothing(store: Arc<dyn Store>) {
    create_job(&store, "resize-image").await;
    let mut bad = keyed("resize-image", 1, None);
    bad.idempotency_key = Some(String::new());
    let answers = store
        .execution_enqueue_many(&[bad, keyed("gone", 2, None)], at(1))
        .await
        .expect("the batch");
    assert!(answers.iter().all(Result::is_err), "{answers:?}");
    let empty = store
        .execution_enqueue_many(&[], at(1))
        .await
        .expect("an empty batch");
    assert!(empty.is_empty());
    assert!(claim(&store, 10, at(2)).await.is_empty());
}

pub async fn concurrent_batches_with_the_same_keys_in_any_order_each_get_one_execution_per_key(
    store: Arc<dyn Store>,
) {
    // Group commits in flight side by side, each holding the same idempotency keys in its own
    // order: none may fail (two batches waiting for each other's keys in a cycle would be a
    // deadlock, and its batch refused), and each key is one execution, the same for all.
    const KEYS: usize = 40;
    const BATCHES: usize = 6;
    create_job(&store, "mail").await;
    let tasks: Vec<_> = (0..BATCHES)
        .map(|b| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut keys: Vec<usize> = (0..KEYS).collect();
                // A different order per batch: rotated, and every other one reversed.
                keys.rotate_left(b * 7 % KEYS);
                if b % 2 == 1 {
                    keys.reverse();
                }
                let requests: Vec<NewExecution> = keys
                    .iter()
                    .map(|k| NewExecution {
                        idempotency_key: Some(format!("key-{k}")),
                        ..NewExecution::api("mail")
                    })
                    .collect();
                let results = store
                    .execution_enqueue_many(&requests, at(0))
                    .await
                    .expect("a batch is never refused as a whole");
                keys.into_iter()
                    .zip(results)
                    .map(|(k, result)| (k, result.expect("each item queued").execution.id))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut by_key: BTreeMap<usize, BTreeSet<ExecutionId>> = BTreeMap::new();
    for task in tasks {
        for (key, id) in task.await.expect("a batch task") {
            by_key.entry(key).or_default().insert(id);
        }
    }
    assert_eq!(by_key.len(), KEYS);
    assert!(
        by_key.values().all(|ids| ids.len() == 1),
        "one execution per key, whichever batch made it: {by_key:?}"
    );
    assert_eq!(executions_of(&store, "mail").await.len(), KEYS);
}
