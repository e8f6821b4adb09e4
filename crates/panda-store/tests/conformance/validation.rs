//! Bad input: every refusal is a typed error, never a panic or a database error.

use std::sync::Arc;
use std::time::Duration;

use panda_core::{
    ExecutionId, JobId, JobName, JobSpec, MAX_IDEMPOTENCY_KEY_BYTES, MAX_PAYLOAD_BYTES,
    RuntimeSpec, Status, Trigger, ValidationError,
};
use panda_store::{
    Finish, JobKind, LogChunk, LogStream, NewExecution, Outcome, SlotDecision, Store, StoreError,
};
use uuid::Uuid;

use super::support::*;

pub async fn invalid_job_names_cannot_reach_the_store(store: Arc<dyn Store>) {
    let too_long = "a".repeat(64);
    for name in [
        too_long.as_str(),
        "reports/daily",
        "Reports",
        "",
        "-reports",
    ] {
        assert_err!(JobName::new(name), ValidationError::Name { .. });
        // A spec that arrives as JSON cannot smuggle the name in either.
        let json = serde_json::json!({
            "name": name,
            "runtime": {"kind": "process", "argv": ["true"]},
            "retry": {"max_attempts": 1, "backoff_base_ms": 1000, "backoff_cap_ms": 1000},
        });
        assert!(
            serde_json::from_value::<JobSpec>(json).is_err(),
            "{name:?} is refused when deserialized"
        );
        // Looking such a name up is an ordinary miss. (`Invalid` is also an honest answer: the
        // contract only asks for a typed error.)
        assert_err!(
            store.job_get(name).await,
            StoreError::NotFound { .. } | StoreError::Invalid(_)
        );
        assert_err!(
            store.job_delete(name, base()).await,
            StoreError::NotFound { .. } | StoreError::Invalid(_)
        );
        assert_err!(
            store
                .execution_enqueue(&NewExecution::api(name), base())
                .await,
            StoreError::NotFound { .. } | StoreError::Invalid(_)
        );
    }
}

pub async fn job_create_with_an_invalid_spec_is_invalid_and_stores_nothing(store: Arc<dyn Store>) {
    let mut no_attempts = job_spec("no-attempts");
    no_attempts.retry.max_attempts = 0;
    let mut empty_image = job_spec("empty-image");
    empty_image.runtime = RuntimeSpec::Image {
        image: String::new(),
        command: None,
    };
    let mut empty_argv = job_spec("empty-argv");
    empty_argv.runtime = RuntimeSpec::Process { argv: vec![] };
    let mut bad_queue = job_spec("bad-queue");
    bad_queue.queue = "Not A Queue".into();
    let mut no_timeout = job_spec("no-timeout");
    no_timeout.timeout = Duration::ZERO;
    let mut bad_env = job_spec("bad-env");
    bad_env.env.insert("A=B".into(), "x".into());

    for spec in [
        no_attempts,
        empty_image,
        empty_argv,
        bad_queue,
        no_timeout,
        bad_env,
    ] {
        assert_err!(
            store.job_create(&spec, base()).await,
            StoreError::Invalid(_)
        );
        assert_err!(
            store.job_get(spec.name.as_str()).await,
            StoreError::NotFound { .. }
        );
    }
    assert!(store.job_list(JobKind::All).await.expect("list").is_empty());
}

pub async fn job_update_with_an_invalid_spec_is_invalid_and_changes_nothing(store: Arc<dyn Store>) {
    let job = create_job(&store, "reports").await;
    let mut broken = job_spec("reports");
    broken.retry.max_attempts = 0;
    assert_err!(
        store.job_update(&broken, at(1)).await,
        StoreError::Invalid(_)
    );
    assert_eq!(store.job_get("reports").await.expect("get"), job);
}

pub async fn enqueue_with_a_payload_over_the_limit_is_payload_too_large(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    // A JSON string of n characters serializes to n + 2 bytes (the quotes).
    let mut over = NewExecution::api("resize");
    over.payload = Some(serde_json::Value::String("x".repeat(MAX_PAYLOAD_BYTES)));
    match store.execution_enqueue(&over, base()).await {
        Err(StoreError::Invalid(ValidationError::PayloadTooLarge { size, limit })) => {
            assert_eq!((size, limit), (MAX_PAYLOAD_BYTES + 2, MAX_PAYLOAD_BYTES));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert!(executions_of(&store, "resize").await.is_empty());

    let mut fits = NewExecution::api("resize");
    fits.payload = Some(serde_json::Value::String("x".repeat(MAX_PAYLOAD_BYTES - 2)));
    let queued = enqueue_request(&store, fits.clone(), at(1)).await;
    assert_eq!(
        queued.payload, fits.payload,
        "a payload at the limit is kept whole"
    );
}

pub async fn enqueue_with_an_over_long_idempotency_key_is_invalid(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let mut over = NewExecution::api("resize");
    over.idempotency_key = Some("k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1));
    assert_err!(
        store.execution_enqueue(&over, base()).await,
        StoreError::Invalid(_)
    );
    assert!(executions_of(&store, "resize").await.is_empty());

    let mut longest = NewExecution::api("resize");
    longest.idempotency_key = Some("k".repeat(MAX_IDEMPOTENCY_KEY_BYTES));
    let queued = enqueue_request(&store, longest.clone(), at(1)).await;
    assert_eq!(queued.idempotency_key, longest.idempotency_key);
}

pub async fn enqueue_of_a_malformed_request_is_invalid_and_queues_nothing(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let mut retry = NewExecution::api("resize");
    retry.trigger = Trigger::Retry;
    let mut schedule = NewExecution::api("resize");
    schedule.trigger = Trigger::Schedule;
    let mut empty_key = NewExecution::api("resize");
    empty_key.idempotency_key = Some(String::new());
    let mut bad_env = NewExecution::api("resize");
    bad_env.env.insert("A=B".into(), "x".into());

    for request in [retry, schedule, empty_key, bad_env] {
        assert_err!(
            store.execution_enqueue(&request, base()).await,
            StoreError::Invalid(_)
        );
    }
    assert!(executions_of(&store, "resize").await.is_empty());
}

pub async fn enqueue_for_an_unknown_or_deleted_job_is_not_found(store: Arc<dyn Store>) {
    assert_err!(
        store
            .execution_enqueue(&NewExecution::api("never"), base())
            .await,
        StoreError::NotFound { .. }
    );
    create_job(&store, "gone").await;
    store.job_delete("gone", at(1)).await.expect("delete");
    assert_err!(
        store
            .execution_enqueue(&NewExecution::api("gone"), at(2))
            .await,
        StoreError::NotFound { .. }
    );
}

pub async fn execution_get_of_an_unknown_execution_is_not_found(store: Arc<dyn Store>) {
    assert_err!(
        store.execution_get(ExecutionId::new()).await,
        StoreError::NotFound { .. }
    );
}

pub async fn heartbeat_of_an_unknown_execution_is_not_found(store: Arc<dyn Store>) {
    assert_err!(
        store
            .execution_heartbeat(ExecutionId::new(), Uuid::now_v7(), LEASE_TTL, base())
            .await,
        StoreError::NotFound { .. }
    );
}

/// The doc promises one result per item and `Stale` for an item whose lease moved on; for an
/// id that never existed it says nothing more, so either `NotFound` or `Stale` is accepted for
/// that item. The batch itself must succeed and the other item must be applied.
pub async fn finish_of_an_unknown_execution_fails_that_item_only(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let queued = enqueue(&store, "resize", base()).await;
    let claimed = claim_one(&store, at(1)).await;
    let unknown = Finish {
        execution_id: ExecutionId::new(),
        token: Uuid::now_v7(),
        outcome: Outcome::Succeeded,
        exit_code: Some(0),
        reason: None,
        image_digest: None,
    };

    let results = store
        .execution_finish_many(
            &[unknown.clone(), finish_of(&claimed, Outcome::Succeeded)],
            at(2),
        )
        .await
        .expect("the batch itself succeeds");
    assert_eq!(results.len(), 2, "one result per item");
    let mut results = results.into_iter();
    assert_err!(
        results.next().expect("first result"),
        StoreError::NotFound { .. } | StoreError::Stale
    );
    let known = results
        .next()
        .expect("second result")
        .expect("the known item");
    assert_eq!(known.execution.id, queued.id);
    assert_eq!(known.execution.status, Status::Succeeded);

    assert_err!(
        store.execution_finish(&unknown, at(3)).await,
        StoreError::NotFound { .. } | StoreError::Stale
    );
}

pub async fn cancel_of_an_unknown_execution_is_not_found(store: Arc<dyn Store>) {
    assert_err!(
        store.execution_cancel(ExecutionId::new(), base()).await,
        StoreError::NotFound { .. }
    );
}

pub async fn log_append_to_an_unknown_execution_is_not_found(store: Arc<dyn Store>) {
    let chunk = LogChunk {
        seq: 0,
        stream: LogStream::Stdout,
        at: base(),
        data: b"hello\n".to_vec(),
    };
    assert_err!(
        store.log_append(ExecutionId::new(), &[chunk]).await,
        StoreError::NotFound { .. }
    );
}

pub async fn slot_record_for_an_unknown_job_is_not_found(store: Arc<dyn Store>) {
    assert_err!(
        store
            .slot_record(JobId::new(), base(), &SlotDecision::Fire, base())
            .await,
        StoreError::NotFound { .. }
    );
}

/// U+0000 cannot reach a process (argv and environment strings end at it) and PostgreSQL cannot
/// store it, so every backend refuses it the same way, wherever it hides.
pub async fn nul_characters_are_invalid_on_every_backend_and_store_nothing(store: Arc<dyn Store>) {
    let mut in_env = job_spec("nul-env");
    in_env.env.insert("A".into(), "x\0y".into());
    let mut in_secret = job_spec("nul-secret");
    in_secret.secret_env.insert("TOKEN".into(), "\0".into());
    let mut in_argv = job_spec("nul-argv");
    in_argv.runtime = RuntimeSpec::Process {
        argv: vec!["echo".into(), "a\0b".into()],
    };
    for spec in [in_env, in_secret, in_argv] {
        assert_err!(
            store.job_create(&spec, base()).await,
            StoreError::Invalid(ValidationError::Field { .. })
        );
    }
    assert!(store.job_list(JobKind::All).await.expect("list").is_empty());

    let job = create_job(&store, "resize").await;
    let mut broken = job_spec("resize");
    broken.env.insert("A".into(), "\0".into());
    assert_err!(
        store.job_update(&broken, at(1)).await,
        StoreError::Invalid(ValidationError::Field { .. })
    );
    assert_eq!(store.job_get("resize").await.expect("get"), job);

    let mut in_payload = NewExecution::api("resize");
    in_payload.payload = Some(serde_json::json!({"path": ["a", "b\u{0}"]}));
    let mut in_key = NewExecution::api("resize");
    in_key.idempotency_key = Some("key\0".into());
    let mut in_override = NewExecution::api("resize");
    in_override.env.insert("A".into(), "\0".into());
    for request in [in_payload, in_key, in_override] {
        assert_err!(
            store.execution_enqueue(&request, at(2)).await,
            StoreError::Invalid(ValidationError::Field { .. })
        );
    }
    assert!(executions_of(&store, "resize").await.is_empty());

    let skip = SlotDecision::Skip {
        reason: "suspended\0".into(),
    };
    assert_err!(
        store.slot_record(job.id, base(), &skip, at(3)).await,
        StoreError::Invalid(ValidationError::Field { .. })
    );
    assert!(store.slot_list(job.id, 10).await.expect("slots").is_empty());
}
