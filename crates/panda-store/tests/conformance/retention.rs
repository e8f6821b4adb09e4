//! Retention: finished history is pruned by count and age, in bounded batches; work that has
//! not ended is never touched.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use panda_core::{Execution, ExecutionId, Status};
use panda_store::{
    LogChunk, LogStream, NewExecution, Outcome, Pruned, Retention, SlotDecision, Store, StoreError,
};

use super::support::*;

/// Keeps `keep_per_job` per job, no age limit, a batch large enough for any case here.
fn keep(keep_per_job: u32) -> Retention {
    Retention {
        max_age: None,
        keep_per_job,
        batch: 1000,
    }
}

/// Gives `execution` a log of `n` chunks.
async fn write_log(store: &Arc<dyn Store>, execution: ExecutionId, n: u64) {
    let chunks: Vec<LogChunk> = (0..n)
        .map(|seq| LogChunk {
            seq,
            stream: LogStream::Stdout,
            at: base(),
            data: b"line\n".to_vec(),
        })
        .collect();
    store.log_append(execution, &chunks).await.expect("append");
}

/// Asserts the execution and its log are gone.
async fn assert_pruned(store: &Arc<dyn Store>, execution: ExecutionId) {
    assert_err!(
        store.execution_get(execution).await,
        StoreError::NotFound { .. }
    );
    match store.log_read(execution, None, 100).await {
        Ok(chunks) => assert!(chunks.is_empty(), "its log went with it: {chunks:?}"),
        Err(StoreError::NotFound { .. }) => {}
        Err(err) => panic!("read a pruned execution's log: {err}"),
    }
}

pub async fn retention_keeps_the_newest_finished_executions_of_each_job(store: Arc<dyn Store>) {
    create_job(&store, "reports").await;
    create_job(&store, "other").await;
    let mut finished = Vec::new();
    for i in 0..6 {
        let e = run_to_success(&store, "reports", at(i * 10)).await;
        write_log(&store, e.id, 2).await;
        finished.push(e);
    }
    let others: Vec<Execution> = {
        let mut others = Vec::new();
        for i in 0..3 {
            others.push(run_to_success(&store, "other", at(100 + i)).await);
        }
        others
    };
    let running = enqueue(&store, "reports", at(200)).await;
    claim_one(&store, at(200)).await;
    let queued = enqueue_request(
        &store,
        NewExecution {
            run_at: Some(at(100_000)),
            ..NewExecution::api("reports")
        },
        at(201),
    )
    .await;

    let pruned = store
        .retention_prune(&keep(3), at(300))
        .await
        .expect("prune");
    assert_eq!((pruned.executions, pruned.log_chunks), (3, 6));
    for old in &finished[..3] {
        assert_pruned(&store, old.id).await;
    }
    let mut kept = ids(&finished[3..]);
    kept.extend([running.id, queued.id]);
    assert_eq!(ids(&executions_of(&store, "reports").await), kept);
    for e in &finished[3..] {
        assert_eq!(
            store.log_read(e.id, None, 100).await.expect("read").len(),
            2
        );
    }
    assert_eq!(
        ids(&executions_of(&store, "other").await),
        ids(&others),
        "another job's three are within its own count"
    );

    let again = store
        .retention_prune(&keep(3), at(301))
        .await
        .expect("prune");
    assert_eq!(again.executions, 0, "nothing more to prune");
}

pub async fn retention_honours_a_jobs_own_keep_count(store: Arc<dyn Store>) {
    let mut spec = job_spec("terse");
    spec.keep = Some(1);
    create_job_from(&store, spec).await;
    create_job(&store, "default-keep").await;
    let mut terse = Vec::new();
    for i in 0..3 {
        terse.push(run_to_success(&store, "terse", at(i)).await);
        run_to_success(&store, "default-keep", at(10 + i)).await;
    }

    let pruned = store
        .retention_prune(&keep(10), at(100))
        .await
        .expect("prune");
    assert_eq!(pruned.executions, 2);
    assert_eq!(
        ids(&executions_of(&store, "terse").await),
        BTreeSet::from([terse[2].id])
    );
    assert_eq!(executions_of(&store, "default-keep").await.len(), 3);
}

pub async fn retention_removes_finished_executions_older_than_max_age(store: Arc<dyn Store>) {
    create_job(&store, "reports").await;
    let mut old = Vec::new();
    for i in 0..3 {
        old.push(run_to_success(&store, "reports", at(i * 10)).await);
    }
    // Old but not ended: never pruned.
    let running = enqueue(&store, "reports", at(30)).await;
    claim_one(&store, at(30)).await;
    let waiting = enqueue_request(
        &store,
        NewExecution {
            run_at: Some(at(1_000_000)),
            ..NewExecution::api("reports")
        },
        at(40),
    )
    .await;
    let recent = run_to_success(&store, "reports", at(90 * 60)).await;

    let retention = Retention {
        max_age: Some(Duration::from_secs(3600)),
        keep_per_job: 100,
        batch: 1000,
    };
    let pruned = store
        .retention_prune(&retention, at(2 * 3600))
        .await
        .expect("prune");
    assert_eq!(pruned.executions, 3);
    for e in &old {
        assert_pruned(&store, e.id).await;
    }
    assert_eq!(
        ids(&executions_of(&store, "reports").await),
        BTreeSet::from([running.id, waiting.id, recent.id])
    );
}

pub async fn retention_removes_slots_older_than_max_age(store: Arc<dyn Store>) {
    let job = create_job_from(&store, cronjob_spec("nightly", "* * * * *")).await;
    let skip = SlotDecision::Skip {
        reason: "suspended".into(),
    };
    for instant in [at(0), at(60), at(2 * 3600)] {
        store
            .slot_record(job.id, instant, &skip, instant)
            .await
            .expect("record");
    }

    let retention = Retention {
        max_age: Some(Duration::from_secs(3600)),
        keep_per_job: 100,
        batch: 1000,
    };
    let pruned = store
        .retention_prune(&retention, at(2 * 3600 + 10))
        .await
        .expect("prune");
    assert_eq!(pruned.slots, 2);
    assert_eq!(pruned.executions, 2, "their skipped executions are old too");
    let slots = store.slot_list(job.id, 10).await.expect("slots");
    assert_eq!(
        slots.iter().map(|s| s.scheduled_at).collect::<Vec<_>>(),
        [at(2 * 3600)]
    );
}

pub async fn retention_deletes_at_most_a_batch_per_call_and_drains(store: Arc<dyn Store>) {
    create_job(&store, "chatty").await;
    let mut finished = Vec::new();
    for i in 0..26 {
        finished.push(run_to_success(&store, "chatty", at(i)).await);
    }
    let retention = Retention {
        max_age: None,
        keep_per_job: 1,
        batch: 10,
    };

    let mut counts = Vec::new();
    loop {
        let Pruned { executions, .. } = store
            .retention_prune(&retention, at(100))
            .await
            .expect("prune");
        assert!(executions <= 10, "a call deletes at most a batch");
        counts.push(executions);
        if executions < 10 {
            break;
        }
        assert!(counts.len() < 10, "pruning never drains");
    }
    assert_eq!(counts, [10, 10, 5]);
    let again = store
        .retention_prune(&retention, at(101))
        .await
        .expect("prune");
    assert_eq!(again.executions, 0);
    assert_eq!(
        ids(&executions_of(&store, "chatty").await),
        BTreeSet::from([finished[25].id])
    );
}

/// Enqueues, claims and finishes one execution of `job` as `outcome`, all at `now`, with a
/// log of two chunks. Nothing else may be due in the default queue.
async fn run_with_log(
    store: &Arc<dyn Store>,
    job: &str,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Execution {
    enqueue(store, job, now).await;
    let claimed = claim_one(store, now).await;
    write_log(store, claimed.execution.id, 2).await;
    finish(store, &claimed, outcome, now).await.execution
}

pub async fn retention_keeps_exactly_the_configured_history(store: Arc<dyn Store>) {
    let mut alpha = job_spec("alpha");
    alpha.keep = Some(3);
    alpha.retry = retry_policy(1);
    create_job_from(&store, alpha).await;
    create_job(&store, "beta").await;
    let mut gamma = job_spec("gamma");
    gamma.keep = Some(5);
    create_job_from(&store, gamma).await;

    // The oldest executions of all, but not ended: never touched, whatever the counts.
    let running = enqueue(&store, "alpha", at(0)).await;
    let lease = claim_one(&store, at(0)).await.lease;
    let waiting = enqueue_request(
        &store,
        NewExecution {
            run_at: Some(at(1_000_000)),
            ..NewExecution::api("alpha")
        },
        at(0),
    )
    .await;
    // In the dead-letter queue: kept until it ages out, and not counted.
    let dead = run_with_log(&store, "alpha", Outcome::Rejected, at(1)).await;
    assert_eq!(dead.status, Status::Dead);

    let mut alphas = Vec::new();
    let mut betas = Vec::new();
    let mut gammas = Vec::new();
    for i in 0..9 {
        let outcome = if i % 2 == 0 {
            Outcome::Succeeded
        } else {
            Outcome::Cancelled
        };
        alphas.push(run_with_log(&store, "alpha", outcome, at(10 + i * 10)).await);
        if i < 7 {
            betas.push(run_with_log(&store, "beta", Outcome::Succeeded, at(11 + i * 10)).await);
        }
        if i < 2 {
            gammas.push(run_with_log(&store, "gamma", Outcome::Succeeded, at(12 + i * 10)).await);
        }
    }

    // Small batches, as the Pruner calls it: the total is the same however it is cut.
    let retention = Retention {
        max_age: None,
        keep_per_job: 4,
        batch: 4,
    };
    let mut total = Pruned::default();
    for call in 0.. {
        assert!(call < 10, "pruning never drains");
        let pruned = store
            .retention_prune(&retention, at(1000))
            .await
            .expect("prune");
        total.executions += pruned.executions;
        total.log_chunks += pruned.log_chunks;
        if !pruned.is_full(retention.batch) {
            break;
        }
    }
    assert_eq!(
        (total.executions, total.log_chunks),
        (6 + 3, 2 * (6 + 3)),
        "alpha keeps 3 of 9, beta the default 4 of 7, gamma both of its 2"
    );

    let mut kept_alpha = ids(&alphas[6..]);
    kept_alpha.extend([running.id, waiting.id, dead.id]);
    assert_eq!(ids(&executions_of(&store, "alpha").await), kept_alpha);
    assert_eq!(ids(&executions_of(&store, "beta").await), ids(&betas[3..]));
    assert_eq!(ids(&executions_of(&store, "gamma").await), ids(&gammas));
    for gone in alphas[..6].iter().chain(&betas[..3]) {
        assert_pruned(&store, gone.id).await;
    }
    for survivor in alphas[6..]
        .iter()
        .chain(&betas[3..])
        .chain(&gammas)
        .chain([&dead])
    {
        let log = store.log_read(survivor.id, None, 100).await.expect("read");
        assert_eq!(log.len(), 2, "the log of {} is intact", survivor.id);
    }
    let running_now = store.execution_get(running.id).await.expect("running");
    assert_eq!(running_now.status, Status::Running);
    store
        .execution_heartbeat(running.id, lease.token, LEASE_TTL, at(1000))
        .await
        .expect("its lease still holds");
    let waiting_now = store.execution_get(waiting.id).await.expect("waiting");
    assert_eq!(waiting_now.status, Status::Queued);

    let again = store
        .retention_prune(&retention, at(1001))
        .await
        .expect("prune");
    assert_eq!(
        again,
        Pruned::default(),
        "exactly the configured history is left"
    );
}

pub async fn retention_honours_a_jobs_own_max_age(store: Arc<dyn Store>) {
    const HOUR: i64 = 3600;
    const DAY: i64 = 24 * HOUR;
    let now = at(2 * DAY);
    let mut short = job_spec("short");
    short.max_age = Some(Duration::from_secs(3600));
    short.retry = retry_policy(1);
    create_job_from(&store, short).await;
    let mut long = job_spec("long");
    long.max_age = Some(Duration::from_secs(30 * 86_400));
    create_job_from(&store, long).await;
    create_job(&store, "plain").await;

    let mut runs = std::collections::BTreeMap::<&str, Vec<Execution>>::new();
    for (offset, when) in [
        (0, at(0)),
        (1, at(2 * DAY - 3 * HOUR)),
        (2, at(2 * DAY - 1800)),
    ] {
        for job in ["short", "long", "plain"] {
            let e = run_with_log(&store, job, Outcome::Succeeded, plus_secs(when, offset)).await;
            runs.entry(job).or_default().push(e);
        }
    }
    // Dead executions age out like the rest.
    let dead = run_with_log(&store, "short", Outcome::Rejected, at(5)).await;
    assert_eq!(dead.status, Status::Dead);

    let retention = Retention {
        max_age: Some(Duration::from_secs(86_400)),
        keep_per_job: 100,
        batch: 1000,
    };
    let pruned = store.retention_prune(&retention, now).await.expect("prune");
    assert_eq!(
        pruned.executions,
        3 + 1,
        "short: 2 and its dead one; plain: 1"
    );
    assert_eq!(
        ids(&executions_of(&store, "short").await),
        ids(&runs["short"][2..]),
        "older than the job's own hour"
    );
    assert_eq!(
        ids(&executions_of(&store, "plain").await),
        ids(&runs["plain"][1..]),
        "older than the default day"
    );
    assert_eq!(
        ids(&executions_of(&store, "long").await),
        ids(&runs["long"]),
        "a job's longer age wins over the default"
    );
    assert_pruned(&store, dead.id).await;

    // With no default age, a job's own still applies.
    let no_default = Retention {
        max_age: None,
        ..retention
    };
    let later = store
        .retention_prune(&no_default, at(3 * DAY))
        .await
        .expect("prune");
    assert_eq!(
        later.executions, 1,
        "short's last one is now older than an hour"
    );
    assert!(executions_of(&store, "short").await.is_empty());
    assert_eq!(executions_of(&store, "plain").await.len(), 2);
}

/// `instant` moved forward by `seconds`.
fn plus_secs(instant: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    instant + chrono::Duration::seconds(seconds)
}
