//! A job's limit of running executions (`max_running`, with concurrency allow): enforced by
//! the numbered job slots the claim takes, across claims and claimers.

use std::sync::Arc;

use panda_core::{ConcurrencyPolicy, JobSpec, Status};
use panda_store::{NewExecution, Outcome, Store};

use super::support::*;

fn limited(name: &str, max_running: u32) -> JobSpec {
    let mut spec = job_spec_with(name, ConcurrencyPolicy::Allow);
    spec.max_running = Some(max_running);
    spec
}

/// How many executions of `job` are running now.
async fn running(store: &Arc<dyn Store>, job: &str) -> usize {
    executions_of(store, job)
        .await
        .iter()
        .filter(|e| e.status == Status::Running)
        .count()
}

pub async fn a_job_limit_caps_its_running_executions_and_others_fill_the_batch(
    store: Arc<dyn Store>,
) {
    create_job_from(&store, limited("resize", 2)).await;
    create_job(&store, "mail").await;
    let mut resize = Vec::new();
    for i in 0..5 {
        resize.push(enqueue(&store, "resize", at(i)).await);
    }
    assert_eq!(
        resize[0].max_running,
        Some(2),
        "the limit travels with the execution"
    );
    let mail = enqueue(&store, "mail", at(10)).await;

    let claimed = claim(&store, 10, at(20)).await;
    let got: Vec<_> = claimed.iter().map(|c| c.execution.id).collect();
    assert_eq!(
        got,
        [resize[0].id, resize[1].id, mail.id],
        "two of the limited job, oldest first; the batch goes on past the rest"
    );
    assert!(
        claim(&store, 10, at(21)).await.is_empty(),
        "the other three wait while two run"
    );
    assert_eq!(
        store.execution_get(resize[2].id).await.expect("get").status,
        Status::Queued,
        "waiting, not skipped"
    );

    finish(&store, &claimed[0], Outcome::Succeeded, at(22)).await;
    let next = claim(&store, 10, at(23)).await;
    assert_eq!(
        next.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [resize[2].id],
        "a finished run frees one slot"
    );
    assert_eq!(running(&store, "resize").await, 2);

    // A failed run frees its slot too, and its retry waits its turn under the same limit.
    finish(&store, &claimed[1], Outcome::Failed, at(24)).await;
    assert_eq!(claim(&store, 10, at(25)).await.len(), 1);
    assert_eq!(running(&store, "resize").await, 2);
}

pub async fn a_job_limit_slot_is_given_back_by_a_rescue_and_a_release(store: Arc<dyn Store>) {
    let mut spec = limited("sync", 1);
    spec.retry = retry_policy(1);
    create_job_from(&store, spec).await;
    let first = enqueue(&store, "sync", base()).await;
    let second = enqueue(&store, "sync", at(1)).await;
    let third = enqueue(&store, "sync", at(2)).await;

    let claimed = claim(&store, 10, at(3)).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].execution.id, first.id);
    let rescued = store.execution_rescue(at(60), 10).await.expect("rescue");
    assert_eq!(rescued.len(), 1, "the lease expired");

    let next = claim(&store, 10, at(61)).await;
    assert_eq!(
        next.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [second.id],
        "the rescued run's slot is free again"
    );
    let released = store
        .execution_release_many(&[(next[0].execution.id, next[0].lease.token)], at(62))
        .await
        .expect("release");
    assert!(released[0].is_ok(), "{released:?}");
    let after = claim(&store, 10, at(63)).await;
    assert_eq!(
        after.len(),
        1,
        "a released run gives its slot back at once: {after:?}"
    );
    assert!(
        [second.id, third.id].contains(&after[0].execution.id),
        "one of the waiting two"
    );
}

pub async fn a_forced_run_is_outside_its_jobs_limit(store: Arc<dyn Store>) {
    create_job_from(&store, limited("report", 1)).await;
    enqueue(&store, "report", base()).await;
    let waiting = enqueue(&store, "report", at(1)).await;
    assert_eq!(claim(&store, 10, at(2)).await.len(), 1);

    let forced = enqueue_request(
        &store,
        NewExecution {
            force: true,
            ..NewExecution::api("report")
        },
        at(3),
    )
    .await;
    assert_eq!(forced.max_running, None, "a forced run carries no limit");
    let claimed = claim(&store, 10, at(4)).await;
    assert_eq!(
        claimed.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [forced.id],
        "the forced run starts beside the running one; the other still waits"
    );
    assert_eq!(
        store.execution_get(waiting.id).await.expect("get").status,
        Status::Queued
    );
}

pub async fn a_raised_job_limit_applies_to_runs_enqueued_after_it(store: Arc<dyn Store>) {
    create_job_from(&store, limited("thumbs", 1)).await;
    enqueue(&store, "thumbs", base()).await;
    enqueue(&store, "thumbs", at(1)).await;
    assert_eq!(claim(&store, 10, at(2)).await.len(), 1);

    store
        .job_update(&limited("thumbs", 3), at(3))
        .await
        .expect("raise the limit");
    let later = enqueue(&store, "thumbs", at(4)).await;
    assert_eq!(later.max_running, Some(3));
    let claimed = claim(&store, 10, at(5)).await;
    assert_eq!(
        claimed.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [later.id],
        "the run enqueued under the old limit of 1 still waits; the new one may start"
    );
}

pub async fn concurrent_claims_never_run_more_than_a_jobs_limit(store: Arc<dyn Store>) {
    const LIMIT: usize = 3;
    const TOTAL: usize = 60;
    const TASKS: usize = 6;
    create_job_from(&store, limited("crawl", LIMIT as u32)).await;
    create_job(&store, "free").await;
    for i in 0..TOTAL {
        enqueue(&store, "crawl", at(i as i64 % 10)).await;
        enqueue(&store, "free", at(i as i64 % 10)).await;
    }

    // Each claimer takes a batch, checks the running count, and finishes what it took, over and
    // over, racing the others; a claim that saw a free slot another claimer filled must wait.
    let claimed = race_claimers(&store, TASKS, 4, at(20), 20, {
        let store = Arc::clone(&store);
        move |batch| {
            let store = Arc::clone(&store);
            async move {
                let now_running = running(&store, "crawl").await;
                assert!(
                    now_running <= LIMIT,
                    "{now_running} executions of a job limited to {LIMIT} running"
                );
                for claimed in &batch {
                    finish(&store, claimed, Outcome::Succeeded, at(21)).await;
                }
            }
        }
    })
    .await;
    let crawl = executions_of(&store, "crawl").await;
    assert!(
        crawl.iter().all(|e| e.status == Status::Succeeded),
        "every limited run ran in the end"
    );
    assert_eq!(claimed.len(), 2 * TOTAL, "and every other one");
}
