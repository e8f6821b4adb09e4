//! The Pruner against both store backends: one pass drains a backlog larger than a batch, a
//! batch at a time, and leaves exactly each job's configured history; the service stops
//! promptly on shutdown.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use panda_core::{ConcurrencyPolicy, JobName, JobSpec, RuntimeSpec, TestClock};
use panda_engine::Pruner;
use panda_store::testing::TestStore;
use panda_store::{
    ClaimRequest, ExecutionFilter, Finish, LogChunk, LogStream, NewExecution, Outcome, Retention,
    Store,
};
use tokio_util::sync::CancellationToken;

panda_store::backends! {
    one_pass_drains_a_backlog_larger_than_a_batch,
    the_service_prunes_on_its_interval_and_stops_on_shutdown,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0)
        .single()
        .expect("a valid instant")
}

/// A job that runs `true`, whose executions may overlap, keeping `keep` of them.
async fn create_job(store: &Arc<dyn Store>, name: &str, keep: Option<u32>) {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("a valid name"),
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.keep = keep;
    store.job_create(&spec, start()).await.expect("create job");
}

/// `n` succeeded executions of `job`, each with a one-line log.
async fn run_many(store: &Arc<dyn Store>, job: &str, n: usize) {
    for _ in 0..n {
        store
            .execution_enqueue(&NewExecution::api(job), start())
            .await
            .expect("enqueue");
        let claimed = store
            .execution_claim(
                &ClaimRequest {
                    worker_id: "worker-1".into(),
                    queues: Vec::new(),
                    limit: 1,
                    lease_ttl: Duration::from_secs(30),
                },
                start(),
            )
            .await
            .expect("claim")
            .pop()
            .expect("one claimed");
        let chunk = LogChunk {
            seq: 0,
            stream: LogStream::Stdout,
            at: start(),
            data: b"done\n".to_vec(),
        };
        store
            .log_append(claimed.execution.id, &[chunk])
            .await
            .expect("log");
        store
            .execution_finish(
                &Finish {
                    execution_id: claimed.execution.id,
                    token: claimed.lease.token,
                    outcome: Outcome::Succeeded,
                    exit_code: Some(0),
                    reason: None,
                    image_digest: None,
                },
                start(),
            )
            .await
            .expect("finish");
    }
}

async fn count(store: &Arc<dyn Store>, job: &str) -> usize {
    store
        .execution_list(&ExecutionFilter {
            job: Some(job.into()),
            limit: 1000,
            ..ExecutionFilter::default()
        })
        .await
        .expect("list")
        .executions
        .len()
}

async fn one_pass_drains_a_backlog_larger_than_a_batch(test: &TestStore) {
    let store = Arc::clone(&test.store);
    create_job(&store, "chatty", Some(2)).await;
    create_job(&store, "quiet", None).await;
    run_many(&store, "chatty", 27).await;
    run_many(&store, "quiet", 8).await;
    let clock = Arc::new(TestClock::new(start() + chrono::Duration::minutes(1)));
    let retention = Retention {
        max_age: None,
        keep_per_job: 5,
        batch: 4,
    };
    let pruner = Pruner::new(store.clone(), clock, retention).with_pause(Duration::ZERO);

    let pruned = pruner.tick(&CancellationToken::new()).await.expect("prune");
    assert_eq!(
        (pruned.executions, pruned.log_chunks),
        (25 + 3, 25 + 3),
        "28 to delete, 4 a batch: one pass takes them all"
    );
    assert_eq!(count(&store, "chatty").await, 2);
    assert_eq!(count(&store, "quiet").await, 5);
    let again = pruner.tick(&CancellationToken::new()).await.expect("prune");
    assert_eq!(again.executions, 0);
}

async fn the_service_prunes_on_its_interval_and_stops_on_shutdown(test: &TestStore) {
    let store = Arc::clone(&test.store);
    create_job(&store, "chatty", Some(1)).await;
    run_many(&store, "chatty", 12).await;
    let clock = Arc::new(TestClock::new(start() + chrono::Duration::minutes(1)));
    let retention = Retention {
        max_age: None,
        keep_per_job: 1000,
        batch: 5,
    };
    let pruner = Pruner::new(store.clone(), clock, retention)
        .with_interval(Duration::from_millis(20))
        .with_pause(Duration::from_millis(1));
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(pruner.run(shutdown.clone()));

    // The first pass runs at once; later ones find nothing more.
    tokio::time::timeout(Duration::from_secs(10), async {
        while count(&store, "chatty").await > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the backlog is pruned");
    run_many(&store, "chatty", 3).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while count(&store, "chatty").await > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("later history is pruned at the next interval");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), service)
        .await
        .expect("stops promptly on shutdown")
        .expect("the service task");
}
