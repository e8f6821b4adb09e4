//! Chains (`after`): a run that ends for good queues its job's followers once, in the write that
//! ends it; an attempt that is retried queues nothing; links are checked where they are stored.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use panda_core::{Execution, JobSpec, Status, Trigger, Upstream};
use panda_store::{ClaimRequest, Claimed, NewExecution, Outcome, Store, StoreError};

use super::support::*;

/// A job on its own queue (named after it), so that each claim takes exactly the job asked for.
fn spec_on_own_queue(name: &str, after: &[&str]) -> JobSpec {
    let mut spec = job_spec(name);
    spec.queue = name.to_owned();
    spec.after = after
        .iter()
        .map(|a| a.parse::<Upstream>().expect("an upstream"))
        .collect();
    spec
}

async fn create(store: &Arc<dyn Store>, name: &str, after: &[&str]) {
    create_job_from(store, spec_on_own_queue(name, after)).await;
}

/// Claims the one due execution of the job `name` (on its own queue).
async fn claim_of(store: &Arc<dyn Store>, name: &str, now: DateTime<Utc>) -> Claimed {
    let mut claimed = store
        .execution_claim(
            &ClaimRequest {
                worker_id: WORKER.into(),
                queues: vec![name.to_owned()],
                limit: 10,
                lease_ttl: LEASE_TTL,
            },
            now,
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "one execution of {name}: {claimed:?}");
    claimed.pop().expect("one")
}

async fn enqueue_with_payload(store: &Arc<dyn Store>, name: &str) -> Execution {
    enqueue_request(
        store,
        NewExecution {
            payload: Some(serde_json::json!({"report": "2026-12-04"})),
            ..NewExecution::api(name)
        },
        base(),
    )
    .await
}

/// Checks that `follower` is the one execution a chain from `upstream` (the attempt that ended
/// its run) made.
#[track_caller]
fn assert_started_by(follower: &Execution, upstream: &Execution) {
    assert_eq!(
        (follower.trigger, follower.status, follower.attempt),
        (Trigger::Upstream, Status::Queued, 1)
    );
    assert_eq!(follower.payload, upstream.payload, "the upstream's payload");
    assert_eq!(
        follower.idempotency_key.as_deref(),
        Some(format!("after:{}", upstream.root_id).as_str()),
        "keyed by the upstream run"
    );
    assert_eq!(follower.upstream_id(), Some(upstream.id));
    assert_eq!(
        follower.env.get("PANDA_UPSTREAM_JOB"),
        Some(&upstream.job_name)
    );
    assert_eq!(
        follower
            .env
            .get("PANDA_UPSTREAM_STATUS")
            .map(String::as_str),
        Some(upstream.status.as_str())
    );
}

pub async fn a_run_that_succeeds_queues_its_followers_once_in_the_write_that_ends_it(
    store: Arc<dyn Store>,
) {
    create(&store, "generate", &[]).await;
    create(&store, "send", &["generate"]).await;
    create(&store, "page", &["generate:failed"]).await;
    create(&store, "archive", &["generate:any"]).await;
    let queued = enqueue_with_payload(&store, "generate").await;
    let claimed = claim_of(&store, "generate", at(1)).await;
    let report = finish_of(&claimed, Outcome::Succeeded);
    let ended = store
        .execution_finish(&report, at(2))
        .await
        .expect("finish")
        .execution;
    assert_eq!((ended.id, ended.status), (queued.id, Status::Succeeded));

    for follower in ["send", "archive"] {
        let runs = executions_of(&store, follower).await;
        assert_eq!(runs.len(), 1, "{follower}: {runs:?}");
        assert_started_by(&runs[0], &ended);
        assert_eq!(runs[0].created_at, at(2), "queued by the finish itself");
    }
    assert!(executions_of(&store, "page").await.is_empty(), "not failed");

    // The same report again (a writer that retries a batch whose commit it did not hear of)
    // is stale and starts nothing more.
    assert_err!(
        store.execution_finish(&report, at(3)).await,
        StoreError::Stale
    );
    assert_eq!(executions_of(&store, "send").await.len(), 1);
    assert_eq!(executions_of(&store, "archive").await.len(), 1);
}

pub async fn a_batch_of_successes_queues_each_runs_followers_once(store: Arc<dyn Store>) {
    create(&store, "generate", &[]).await;
    create(&store, "plain", &[]).await;
    create(&store, "send", &["generate"]).await;
    let first = enqueue_with_payload(&store, "generate").await;
    let second = enqueue(&store, "generate", base()).await;
    let plain = enqueue(&store, "plain", base()).await;
    let claimed = store
        .execution_claim(
            &ClaimRequest {
                worker_id: WORKER.into(),
                queues: vec!["generate".into(), "plain".into()],
                limit: 10,
                lease_ttl: LEASE_TTL,
            },
            at(1),
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    let batch: Vec<_> = claimed
        .iter()
        .map(|c| finish_of(c, Outcome::Succeeded))
        .collect();
    let results = store
        .execution_finish_many(&batch, at(2))
        .await
        .expect("finish");
    for (result, claimed) in results.iter().zip(&claimed) {
        let finished = result.as_ref().expect("each written");
        assert_eq!(finished.execution.id, claimed.execution.id);
        assert_eq!(finished.execution.status, Status::Succeeded);
    }
    let plain_run = store.execution_get(plain.id).await.expect("get");
    assert_eq!(plain_run.status, Status::Succeeded, "a job nobody follows");
    let sent = executions_of(&store, "send").await;
    assert_eq!(sent.len(), 2, "one per run: {sent:?}");
    let mut upstreams: Vec<_> = sent.iter().filter_map(Execution::upstream_id).collect();
    upstreams.sort();
    let mut expected = vec![first.id, second.id];
    expected.sort();
    assert_eq!(upstreams, expected);
    // The same batch again changes nothing.
    let again = store
        .execution_finish_many(&batch, at(3))
        .await
        .expect("finish");
    assert!(again.iter().all(|r| matches!(r, Err(StoreError::Stale))));
    assert_eq!(executions_of(&store, "send").await.len(), 2);
}

pub async fn an_attempt_that_is_retried_starts_nothing_and_the_final_end_starts_once(
    store: Arc<dyn Store>,
) {
    let mut upstream = spec_on_own_queue("generate", &[]);
    upstream.retry = retry_policy(2);
    create_job_from(&store, upstream).await;
    create(&store, "page", &["generate:failed"]).await;
    create(&store, "send", &["generate"]).await;
    create(&store, "archive", &["generate:any"]).await;
    enqueue_with_payload(&store, "generate").await;

    let first = claim_of(&store, "generate", at(1)).await;
    let retried = finish(&store, &first, Outcome::Failed, at(2)).await;
    assert!(retried.retry.is_some(), "attempt 1 of 2 is retried");
    for follower in ["page", "send", "archive"] {
        assert!(
            executions_of(&store, follower).await.is_empty(),
            "{follower}: a retried attempt starts nothing"
        );
    }

    let second = claim_of(&store, "generate", at(100)).await;
    let dead = finish(&store, &second, Outcome::Failed, at(101)).await;
    assert_eq!(
        (dead.execution.status, dead.retry.is_none()),
        (Status::Dead, true)
    );
    for follower in ["page", "archive"] {
        let runs = executions_of(&store, follower).await;
        assert_eq!(runs.len(), 1, "{follower}: {runs:?}");
        assert_started_by(&runs[0], &dead.execution);
    }
    assert!(
        executions_of(&store, "send").await.is_empty(),
        "not succeeded"
    );

    // Retried from the dead-letter queue, the same run now succeeds: `send` starts, `archive`
    // (any) has started for this run already.
    let again = store
        .dlq_retry(dead.execution.id, at(200))
        .await
        .expect("dlq retry");
    let third = claim_of(&store, "generate", at(201)).await;
    assert_eq!(third.execution.id, again.id);
    let succeeded = finish(&store, &third, Outcome::Succeeded, at(202)).await;
    let sent = executions_of(&store, "send").await;
    assert_eq!(sent.len(), 1);
    assert_started_by(&sent[0], &succeeded.execution);
    assert_eq!(
        executions_of(&store, "archive").await.len(),
        1,
        "once a run"
    );
    assert_eq!(executions_of(&store, "page").await.len(), 1, "once a run");
}

pub async fn a_cancelled_run_starts_nothing_and_a_lost_last_attempt_starts_failed_followers(
    store: Arc<dyn Store>,
) {
    let mut upstream = spec_on_own_queue("generate", &[]);
    upstream.retry = retry_policy(1);
    create_job_from(&store, upstream).await;
    create(&store, "archive", &["generate:any"]).await;
    enqueue(&store, "generate", base()).await;
    let claimed = claim_of(&store, "generate", at(1)).await;
    let cancelled = finish(&store, &claimed, Outcome::Cancelled, at(2)).await;
    assert_eq!(cancelled.execution.status, Status::Cancelled);
    assert!(
        executions_of(&store, "archive").await.is_empty(),
        "a cancelled run starts nothing, not even any"
    );

    // The rescuer ends a lost last attempt as dead: that run failed.
    enqueue(&store, "generate", base()).await;
    let lost = claim_of(&store, "generate", at(10)).await;
    let rescued = store
        .execution_rescue(plus(at(10), LEASE_TTL * 2), 10)
        .await
        .expect("rescue");
    assert_eq!(rescued.len(), 1);
    assert_eq!(
        (rescued[0].execution.id, rescued[0].execution.status),
        (lost.execution.id, Status::Dead)
    );
    let runs = executions_of(&store, "archive").await;
    assert_eq!(runs.len(), 1);
    assert_started_by(&runs[0], &rescued[0].execution);
}

pub async fn a_chain_of_three_runs_the_third_once_when_the_middle_one_is_retried(
    store: Arc<dyn Store>,
) {
    create(&store, "extract", &[]).await;
    create(&store, "transform", &["extract"]).await;
    create(&store, "load", &["transform"]).await;
    enqueue_with_payload(&store, "extract").await;
    let extract = claim_of(&store, "extract", at(1)).await;
    finish(&store, &extract, Outcome::Succeeded, at(2)).await;

    let transform = claim_of(&store, "transform", at(3)).await;
    assert_eq!(transform.execution.trigger, Trigger::Upstream);
    let failed = finish(&store, &transform, Outcome::Failed, at(4)).await;
    assert!(failed.retry.is_some());
    assert!(executions_of(&store, "load").await.is_empty());
    let retry = claim_of(&store, "transform", at(100)).await;
    assert_eq!(retry.execution.attempt, 2);
    assert_eq!(
        retry.execution.upstream_id(),
        Some(extract.execution.id),
        "a retry keeps its upstream"
    );
    let done = finish(&store, &retry, Outcome::Succeeded, at(101)).await;

    let loads = executions_of(&store, "load").await;
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert_started_by(&loads[0], &done.execution);
    assert_eq!(
        loads[0].payload,
        Some(serde_json::json!({"report": "2026-12-04"})),
        "the payload travels down the chain"
    );
    assert_eq!(
        loads[0].idempotency_key.as_deref(),
        Some(format!("after:{}", transform.execution.id).as_str()),
        "keyed by the middle run's first attempt, not the attempt that ended it"
    );
}

pub async fn a_link_names_a_live_job_that_is_not_a_service_and_nothing_is_created_otherwise(
    store: Arc<dyn Store>,
) {
    let unknown = store
        .job_create(&spec_on_own_queue("send", &["generat"]), base())
        .await;
    match unknown {
        Err(StoreError::Invalid(err)) => {
            let text = err.to_string();
            assert!(text.contains("no job named \"generat\""), "{text}");
            assert!(err.hint().is_some_and(|h| h.contains("first")), "{err:?}");
        }
        other => panic!("an unknown upstream is refused: {other:?}"),
    }
    assert_err!(store.job_get("send").await, StoreError::NotFound { .. });

    let mut service = job_spec("shipper");
    service.service = Some(serde_json::from_value(serde_json::json!({})).expect("a service"));
    create_job_from(&store, service).await;
    let after_service = store
        .job_create(&spec_on_own_queue("send", &["shipper"]), base())
        .await;
    assert_err!(after_service, StoreError::Invalid(_));
    assert_err!(store.job_get("send").await, StoreError::NotFound { .. });

    let itself = store
        .job_create(&spec_on_own_queue("send", &["send"]), base())
        .await;
    assert_err!(itself, StoreError::Invalid(_));
    assert_err!(store.job_get("send").await, StoreError::NotFound { .. });
}

pub async fn a_cycle_is_refused_on_update_with_the_cycle_named(store: Arc<dyn Store>) {
    create(&store, "extract", &[]).await;
    create(&store, "transform", &["extract"]).await;
    create(&store, "load", &["transform"]).await;
    let before = store.job_get("extract").await.expect("get");
    let refused = store
        .job_update(&spec_on_own_queue("extract", &["load:any"]), at(5))
        .await;
    match refused {
        Err(StoreError::Invalid(err)) => {
            let text = err.to_string();
            assert!(
                text.contains("extract → load → transform → extract"),
                "{text}"
            );
        }
        other => panic!("a cycle is refused: {other:?}"),
    }
    assert_eq!(
        store.job_get("extract").await.expect("get"),
        before,
        "unchanged"
    );
    // Nothing was linked either: a run of load starts nothing.
    enqueue(&store, "load", base()).await;
    let load = claim_of(&store, "load", at(6)).await;
    finish(&store, &load, Outcome::Succeeded, at(7)).await;
    assert!(executions_of(&store, "extract").await.is_empty());

    // Unlinked first, the other way round is fine.
    store
        .job_update(&spec_on_own_queue("transform", &[]), at(8))
        .await
        .expect("drop the link");
    store
        .job_update(&spec_on_own_queue("extract", &["load"]), at(9))
        .await
        .expect("no cycle now");
}

pub async fn a_followed_job_cannot_be_deleted_until_nothing_follows_it(store: Arc<dyn Store>) {
    let mut upstream = spec_on_own_queue("generate", &[]);
    upstream.retry = retry_policy(1);
    create_job_from(&store, upstream).await;
    create(&store, "send", &["generate"]).await;
    create(&store, "page", &["generate:failed"]).await;
    match store.job_delete("generate", at(1)).await {
        Err(StoreError::Conflict(message)) => {
            assert!(
                message.contains("\"page\", \"send\""),
                "names its followers: {message}"
            );
        }
        other => panic!("a followed job is kept: {other:?}"),
    }
    store.job_get("generate").await.expect("still there");

    // A deleted follower is started no more.
    store
        .job_delete("page", at(2))
        .await
        .expect("a follower goes");
    enqueue(&store, "generate", base()).await;
    let claimed = claim_of(&store, "generate", at(3)).await;
    let dead = finish(&store, &claimed, Outcome::Failed, at(4)).await;
    assert_eq!(dead.execution.status, Status::Dead);
    assert!(executions_of(&store, "page").await.is_empty());

    store
        .job_update(&spec_on_own_queue("send", &[]), at(5))
        .await
        .expect("unlinked");
    store
        .job_delete("generate", at(6))
        .await
        .expect("followed by nothing now");
}

pub async fn two_updates_that_together_close_a_cycle_cannot_both_pass(store: Arc<dyn Store>) {
    for round in 0..8 {
        let (a, b) = (format!("ping-{round}"), format!("pong-{round}"));
        create(&store, &a, &[]).await;
        create(&store, &b, &[]).await;
        let (a_after_b, b_after_a) = (
            spec_on_own_queue(&a, &[b.as_str()]),
            spec_on_own_queue(&b, &[a.as_str()]),
        );
        let (left, right) = tokio::join!(
            store.job_update(&a_after_b, at(1)),
            store.job_update(&b_after_a, at(1))
        );
        let outcomes = [left.is_ok(), right.is_ok()];
        assert_eq!(
            outcomes.iter().filter(|ok| **ok).count(),
            1,
            "round {round}: exactly one link is stored: {left:?} {right:?}"
        );
        for refused in [left, right].into_iter().filter_map(Result::err) {
            match refused {
                StoreError::Invalid(err) => {
                    assert!(err.to_string().contains("lead back"), "{err}");
                }
                other => panic!("round {round}: refused as a cycle, not {other:?}"),
            }
        }
    }
}
