//! Jobs: create, get, list, update, delete.

use std::sync::Arc;
use std::time::Duration;

use panda_core::{ConcurrencyPolicy, Job, JobId, Limits, Status};
use panda_store::{JobKind, Outcome, Store, StoreError};

use super::support::*;

fn names_of(jobs: Vec<Job>) -> Vec<String> {
    jobs.into_iter().map(|j| j.spec.name.to_string()).collect()
}

pub async fn job_create_then_get_returns_the_stored_definition(store: Arc<dyn Store>) {
    let mut spec = cronjob_spec("generate-reports", "0 5 * * *");
    spec.env.insert("REPORT_FORMAT".into(), "pdf".into());
    spec.secret_env
        .insert("SMTP_PASSWORD".into(), "hunter2".into());
    spec.labels.insert("team".into(), "billing".into());
    spec.workdir = Some("/srv/reports".into());
    spec.limits = Limits {
        memory_bytes: Some(512 * 1024 * 1024),
        cpus: Some(1.5),
    };
    spec.timeout = Duration::from_secs(30 * 60);
    spec.queue = "reports".into();
    spec.priority = -4;
    spec.concurrency = ConcurrencyPolicy::Replace;
    spec.keep = Some(20);
    spec.suspended = true;

    let job = store.job_create(&spec, base()).await.expect("create");
    assert_eq!(
        job.spec, spec,
        "the whole spec is kept, secret env included"
    );
    assert_eq!((job.created_at, job.updated_at), (base(), base()));

    assert_eq!(store.job_get("generate-reports").await.expect("get"), job);
    assert_eq!(store.job_get_by_id(job.id).await.expect("get by id"), job);
}

pub async fn job_name_of_63_characters_is_stored_in_full(store: Arc<dyn Store>) {
    let name = format!("a{}z", "-".repeat(61));
    let job = create_job(&store, &name).await;
    assert_eq!(job.spec.name.as_str(), name);
    assert_eq!(store.job_get(&name).await.expect("get").id, job.id);
}

pub async fn job_create_with_a_taken_live_name_is_a_conflict(store: Arc<dyn Store>) {
    let first = create_job(&store, "reports").await;
    let mut again = job_spec("reports");
    again.priority = 9;
    assert_err!(
        store.job_create(&again, at(1)).await,
        StoreError::Conflict(_)
    );
    assert_eq!(
        store.job_get("reports").await.expect("get"),
        first,
        "the first job is untouched"
    );
}

pub async fn job_get_of_an_unknown_job_is_not_found(store: Arc<dyn Store>) {
    create_job(&store, "reports").await;
    assert_err!(store.job_get("report").await, StoreError::NotFound { .. });
    assert_err!(
        store.job_get_by_id(JobId::new()).await,
        StoreError::NotFound { .. }
    );
}

pub async fn job_list_filters_by_kind_and_sorts_by_name(store: Arc<dyn Store>) {
    create_job_from(&store, cronjob_spec("nightly", "0 3 * * *")).await;
    create_job(&store, "send-email").await;
    create_job_from(&store, cronjob_spec("hourly", "@hourly")).await;
    create_job(&store, "resize-image").await;
    create_job(&store, "gone").await;
    store.job_delete("gone", at(1)).await.expect("delete");

    assert_eq!(
        names_of(store.job_list(JobKind::All).await.expect("list all")),
        ["hourly", "nightly", "resize-image", "send-email"]
    );
    assert_eq!(
        names_of(
            store
                .job_list(JobKind::Scheduled)
                .await
                .expect("list scheduled")
        ),
        ["hourly", "nightly"]
    );
    assert_eq!(
        names_of(
            store
                .job_list(JobKind::Triggered)
                .await
                .expect("list triggered")
        ),
        ["resize-image", "send-email"]
    );
}

pub async fn job_update_replaces_the_definition_and_keeps_id_and_created_at(store: Arc<dyn Store>) {
    let job = create_job(&store, "reports").await;
    let mut spec = cronjob_spec("reports", "*/5 * * * *");
    spec.queue = "slow".into();
    spec.priority = 3;
    spec.env.insert("MODE".into(), "full".into());
    spec.retry = retry_policy(5);

    let updated = store.job_update(&spec, at(60)).await.expect("update");
    assert_eq!(updated.spec, spec);
    assert_eq!(updated.id, job.id);
    assert_eq!((updated.created_at, updated.updated_at), (base(), at(60)));
    assert_eq!(store.job_get("reports").await.expect("get"), updated);
    assert_eq!(
        names_of(store.job_list(JobKind::Scheduled).await.expect("list")),
        ["reports"],
        "a schedule added by an update makes it a cronjob"
    );
}

pub async fn job_update_of_an_unknown_or_deleted_job_is_not_found(store: Arc<dyn Store>) {
    assert_err!(
        store.job_update(&job_spec("never"), base()).await,
        StoreError::NotFound { .. }
    );
    create_job(&store, "gone").await;
    store.job_delete("gone", at(1)).await.expect("delete");
    assert_err!(
        store.job_update(&job_spec("gone"), at(2)).await,
        StoreError::NotFound { .. }
    );
}

pub async fn job_update_leaves_existing_executions_on_their_retry_policy(store: Arc<dyn Store>) {
    let mut spec = job_spec("flaky");
    spec.retry = retry_policy(2);
    create_job_from(&store, spec).await;
    let before = enqueue(&store, "flaky", base()).await;

    let mut spec = job_spec("flaky");
    spec.retry = retry_policy(1);
    spec.priority = 9;
    store.job_update(&spec, at(1)).await.expect("update");

    let stored = store.execution_get(before.id).await.expect("get");
    assert_eq!((stored.retry, stored.priority), (retry_policy(2), 0));

    // The old policy still allows a second attempt, and the retry inherits it.
    let claimed = claim_one(&store, at(2)).await;
    assert_eq!(claimed.execution.id, before.id);
    let finished = finish(&store, &claimed, Outcome::Failed, at(3)).await;
    assert_eq!(finished.execution.status, Status::Failed);
    let retry = finished
        .retry
        .expect("a second attempt under the old policy");
    assert_eq!(retry.retry, retry_policy(2));

    let after = enqueue(&store, "flaky", at(4)).await;
    assert_eq!((after.retry, after.priority), (retry_policy(1), 9));
}

pub async fn job_update_leaves_existing_executions_on_their_overlap_rule(store: Arc<dyn Store>) {
    create_job_from(&store, job_spec_with("report", ConcurrencyPolicy::Forbid)).await;
    let first = enqueue(&store, "report", base()).await;
    let second = enqueue(&store, "report", at(1)).await;
    store
        .job_update(&job_spec_with("report", ConcurrencyPolicy::Allow), at(2))
        .await
        .expect("update");

    // Both were created under `forbid`, so they still run one at a time.
    let claimed = claim(&store, 10, at(3)).await;
    assert_eq!(
        claimed.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [first.id]
    );
    let waiting = store.execution_get(second.id).await.expect("get");
    assert_eq!(waiting.status, Status::Queued);
    assert_eq!(waiting.concurrency, ConcurrencyPolicy::Forbid);
}

pub async fn job_delete_frees_the_name_for_a_new_job(store: Arc<dyn Store>) {
    let old = create_job(&store, "reports").await;
    store.job_delete("reports", at(1)).await.expect("delete");
    assert_err!(store.job_get("reports").await, StoreError::NotFound { .. });

    let mut spec = job_spec("reports");
    spec.priority = 2;
    let new = store.job_create(&spec, at(2)).await.expect("re-create");
    assert_ne!(new.id, old.id);
    assert_eq!(store.job_get("reports").await.expect("get"), new);
    assert_eq!(
        store.job_get_by_id(old.id).await.expect("old by id").spec,
        old.spec,
        "the deleted job is still there by id"
    );
}

pub async fn job_delete_keeps_history_readable(store: Arc<dyn Store>) {
    let job = create_job(&store, "reports").await;
    let ran = run_to_success(&store, "reports", base()).await;
    store.job_delete("reports", at(10)).await.expect("delete");

    assert_err!(store.job_get("reports").await, StoreError::NotFound { .. });
    assert!(
        store.job_list(JobKind::All).await.expect("list").is_empty(),
        "a deleted job is not listed"
    );
    assert_eq!(
        store.job_get_by_id(job.id).await.expect("get by id"),
        job,
        "a worker may still need the deleted job's definition"
    );
    assert_eq!(store.execution_get(ran.id).await.expect("get"), ran);
    assert_eq!(executions_of(&store, "reports").await, [ran]);
}

pub async fn job_delete_cancels_queued_executions_and_asks_running_ones_to_stop(
    store: Arc<dyn Store>,
) {
    create_job(&store, "reports").await;
    let running = enqueue(&store, "reports", base()).await;
    let queued = enqueue(&store, "reports", at(1)).await;
    let claimed = claim_one(&store, at(2)).await;
    assert_eq!(claimed.execution.id, running.id);

    store.job_delete("reports", at(3)).await.expect("delete");

    let cancelled = store.execution_get(queued.id).await.expect("get queued");
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(cancelled.finished_at, Some(at(3)));
    assert!(
        claim(&store, 10, at(4)).await.is_empty(),
        "nothing to claim"
    );

    let asked = store.execution_get(running.id).await.expect("get running");
    assert_eq!(asked.status, Status::Running, "its worker stops it");
    assert!(asked.cancel_requested);
    let beat = store
        .execution_heartbeat(running.id, claimed.lease.token, LEASE_TTL, at(5))
        .await
        .expect("heartbeat");
    assert!(beat.cancel_requested);
    let finished = finish(&store, &claimed, Outcome::Cancelled, at(6)).await;
    assert_eq!(finished.execution.status, Status::Cancelled);
    assert_eq!(finished.retry, None);
}

pub async fn job_delete_of_an_unknown_job_is_not_found(store: Arc<dyn Store>) {
    assert_err!(
        store.job_delete("never", base()).await,
        StoreError::NotFound { .. }
    );
    create_job(&store, "once").await;
    store.job_delete("once", at(1)).await.expect("delete");
    assert_err!(
        store.job_delete("once", at(2)).await,
        StoreError::NotFound { .. }
    );
}
