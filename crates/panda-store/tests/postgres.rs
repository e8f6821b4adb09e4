//! What only PostgreSQL can get wrong: the conformance suite covers the contract. These run
//! when `PANDA_TEST_DATABASE_URL` is set, each in a schema it drops at the end; each store
//! connects under an `application_name` of its own, so a case can find its own connections.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use panda_core::{ConcurrencyPolicy, ExecutionId, JobId, JobName, JobSpec, RuntimeSpec, Status};
use panda_store::testing::{DATABASE_URL_ENV, REQUIRE_ALL_ENV};
use panda_store::{
    ClaimRequest, Claimed, Finish, HistoryStore, JobStore, NewExecution, Notice, Notifier, Outcome,
    PgStore, QueueStore, StoreError,
};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::broadcast;
use uuid::Uuid;

/// A store in a fresh schema, with a pool of the test's own on the same schema (for what the
/// store does not show) and the application name its connections carry.
struct Case {
    store: PgStore,
    pool: PgPool,
    app: String,
}

async fn case() -> Option<Case> {
    let Some(url) = std::env::var(DATABASE_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert_ne!(
            std::env::var(REQUIRE_ALL_ENV).as_deref(),
            Ok("1"),
            "{DATABASE_URL_ENV} is not set"
        );
        eprintln!("skipped: {DATABASE_URL_ENV} is not set");
        return None;
    };
    let id = Uuid::now_v7().simple().to_string();
    let schema = format!("panda_unit_{id}");
    let app = format!("panda_case_{id}");
    let sep = if url.contains('?') { '&' } else { '?' };
    let store_url = format!("{url}{sep}application_name={app}");
    let store = PgStore::connect_in_schema(&store_url, &schema, 8)
        .await
        .expect("connect");
    let options = PgConnectOptions::from_str(&url)
        .expect("url")
        .options([("search_path", schema.as_str())]);
    let pool = PgPool::connect_with(options).await.expect("connect a pool");
    Some(Case { store, pool, app })
}

/// The pids of this case's `LISTEN` connections.
async fn listeners(case: &Case) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE application_name = $1 AND query = 'LISTEN \"panda_queued\"'",
    )
    .bind(&case.app)
    .fetch_all(&case.pool)
    .await
    .expect("pg_stat_activity")
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0)
        .single()
        .expect("a valid instant")
        + chrono::Duration::seconds(seconds)
}

fn spec(name: &str, concurrency: ConcurrencyPolicy) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("a valid name"),
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    spec.concurrency = concurrency;
    spec
}

fn claim_request(worker: &str, limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        queues: vec![],
        limit,
        lease_ttl: Duration::from_secs(30),
    }
}

fn succeeded(claimed: &Claimed) -> Finish {
    Finish {
        execution_id: claimed.execution.id,
        token: claimed.lease.token,
        outcome: Outcome::Succeeded,
        exit_code: Some(0),
        reason: None,
        image_digest: None,
    }
}

#[tokio::test]
async fn schema_names_are_checked_before_they_reach_sql() {
    for bad in ["", "Public", "a-b", "a\"b", "x;drop", &"a".repeat(64)] {
        let err = PgStore::connect_in_schema("postgres://127.0.0.1:1/none", bad, 1)
            .await
            .expect_err("refused");
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
    }
}

#[tokio::test]
async fn nul_characters_are_refused_or_replaced_never_a_database_error() {
    let Some(case) = case().await else { return };
    let store = &case.store;
    store
        .job_create(&spec("nul", ConcurrencyPolicy::Allow), at(0))
        .await
        .expect("create");
    let mut with_nul = NewExecution::api("nul");
    with_nul.payload = Some(serde_json::json!({ "a": "x\u{0}y" }));
    let err = store.execution_enqueue(&with_nul, at(0)).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    with_nul.payload = None;
    with_nul.idempotency_key = Some("k\0".into());
    let err = store.execution_enqueue(&with_nul, at(0)).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    let mut env_nul = spec("nul-env", ConcurrencyPolicy::Allow);
    env_nul.env.insert("A".into(), "\0".into());
    let err = store.job_create(&env_nul, at(0)).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");

    let err = store.job_get("nu\0l").await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    let err = store
        .execution_enqueue(&NewExecution::api("nu\0l"), at(0))
        .await;
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    assert_eq!(store.execution_latest("nu\0l").await.expect("latest"), None);

    store
        .execution_enqueue(&NewExecution::api("nul"), at(0))
        .await
        .expect("enqueue");
    let nul_queue = ClaimRequest {
        queues: vec!["de\0fault".into()],
        ..claim_request("w", 10)
    };
    assert!(
        store
            .execution_claim(&nul_queue, at(0))
            .await
            .expect("claim")
            .is_empty()
    );
    let mut claimed = store
        .execution_claim(&claim_request("worker\0", 1), at(1))
        .await
        .expect("claim");
    let claimed = claimed.pop().expect("one");
    assert_eq!(
        claimed.execution.worker_id.as_deref(),
        Some("worker\u{FFFD}")
    );
    let finish = Finish {
        reason: Some("engine said \0".into()),
        outcome: Outcome::Cancelled,
        ..succeeded(&claimed)
    };
    let finished = store
        .execution_finish(&finish, at(2))
        .await
        .expect("finish");
    assert_eq!(
        finished.execution.reason.as_deref(),
        Some("engine said \u{FFFD}")
    );
    assert_eq!(
        store
            .execution_get(claimed.execution.id)
            .await
            .expect("get"),
        finished.execution
    );
    store.drop_schema().await.expect("drop");
}

/// A claim from several queues merges them in claim order and stops at its limit; what it
/// did not take stays queued for the next claim.
#[tokio::test]
async fn a_claim_from_several_queues_takes_the_best_across_them() {
    let Some(case) = case().await else { return };
    let store = &case.store;
    let mut expected = Vec::new();
    for (queue, priority) in [("low", 0), ("high", 5), ("mid", 2), ("other", 9)] {
        let mut spec = spec(&format!("job-{queue}"), ConcurrencyPolicy::Allow);
        spec.queue = queue.into();
        spec.priority = priority;
        store.job_create(&spec, at(0)).await.expect("create");
        for i in 0..3 {
            let e = store
                .execution_enqueue(&NewExecution::api(format!("job-{queue}")), at(i))
                .await
                .expect("enqueue")
                .execution;
            expected.push((queue, priority, i, e.id));
        }
    }
    let request = ClaimRequest {
        queues: vec!["low".into(), "mid".into(), "high".into(), "mid".into()],
        ..claim_request("w", 4)
    };
    let first = store
        .execution_claim(&request, at(10))
        .await
        .expect("claim");
    let want: Vec<ExecutionId> = expected
        .iter()
        .filter(|(q, ..)| *q == "high")
        .chain(expected.iter().filter(|(q, ..)| *q == "mid").take(1))
        .map(|(.., id)| *id)
        .collect();
    assert_eq!(
        first.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        want
    );
    let rest = store
        .execution_claim(
            &ClaimRequest {
                limit: 100,
                ..request
            },
            at(10),
        )
        .await
        .expect("claim");
    assert_eq!(rest.len(), 5, "two of mid and three of low, each once");
    store.drop_schema().await.expect("drop");
}

/// Many workers claiming batches from many `forbid` jobs at once: the job locks are taken
/// in one order, so no claim fails with a deadlock, and no job ever runs twice at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_of_forbid_jobs_neither_deadlock_nor_overlap() {
    let Some(case) = case().await else { return };
    let store = &case.store;
    const JOBS: usize = 12;
    const PER_JOB: usize = 15;
    for j in 0..JOBS {
        let name = format!("job-{j}");
        store
            .job_create(&spec(&name, ConcurrencyPolicy::Forbid), at(0))
            .await
            .expect("create");
        for _ in 0..PER_JOB {
            store
                .execution_enqueue(&NewExecution::api(name.clone()), at(0))
                .await
                .expect("enqueue");
        }
    }
    let store = Arc::new(store.clone());
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let store = Arc::clone(&store);
            let pool = case.pool.clone();
            tokio::spawn(async move {
                let mut done = 0;
                let mut idle = 0;
                while idle < 20 {
                    let claimed = store
                        .execution_claim(&claim_request(&format!("w{w}"), 7), at(1))
                        .await
                        .expect("a claim never fails");
                    if claimed.is_empty() {
                        idle += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    idle = 0;
                    let jobs: HashSet<JobId> = claimed.iter().map(|c| c.execution.job_id).collect();
                    assert_eq!(jobs.len(), claimed.len(), "one per job per batch");
                    let overlapping: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM (SELECT job_id FROM executions \
                         WHERE status = 'running' GROUP BY job_id HAVING count(*) > 1) o",
                    )
                    .fetch_one(&pool)
                    .await
                    .expect("count");
                    assert_eq!(overlapping, 0, "a forbid job runs twice");
                    let batch: Vec<Finish> = claimed.iter().map(succeeded).collect();
                    for result in store
                        .execution_finish_many(&batch, at(2))
                        .await
                        .expect("a finish never fails")
                    {
                        result.expect("each finish holds its lease");
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for worker in workers {
        done += worker.await.expect("worker");
    }
    assert_eq!(done, JOBS * PER_JOB);
    let locks: i64 = sqlx::query_scalar("SELECT count(*) FROM job_locks")
        .fetch_one(&case.pool)
        .await
        .expect("count");
    assert_eq!(locks, 0, "every lock released");
    store.drop_schema().await.expect("drop");
}

/// A finish and a rescue of the same expired lease race: exactly one of them settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finish_racing_a_rescue_settles_the_execution_once() {
    let Some(case) = case().await else { return };
    let store = &case.store;
    store
        .job_create(&spec("racy", ConcurrencyPolicy::Allow), at(0))
        .await
        .expect("create");
    let store = Arc::new(store.clone());
    for round in 0..20 {
        store
            .execution_enqueue(&NewExecution::api("racy"), at(round * 100))
            .await
            .expect("enqueue");
        let claimed = store
            .execution_claim(&claim_request("w", 1), at(round * 100))
            .await
            .expect("claim")
            .pop()
            .expect("one");
        let later = at(round * 100 + 60);
        let finisher = {
            let store = Arc::clone(&store);
            let finish = succeeded(&claimed);
            tokio::spawn(async move { store.execution_finish(&finish, later).await })
        };
        let rescuer = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.execution_rescue(later, 10).await })
        };
        let finished = finisher.await.expect("finisher");
        let rescued = rescuer.await.expect("rescuer").expect("rescue");
        let stored = store
            .execution_get(claimed.execution.id)
            .await
            .expect("get");
        match finished {
            Ok(f) => {
                assert!(rescued.is_empty(), "round {round}: both settled it");
                assert_eq!(f.execution, stored);
                assert_eq!(stored.status, Status::Succeeded);
            }
            Err(StoreError::Stale) => {
                assert_eq!(rescued.len(), 1, "round {round}: neither settled it");
                assert_eq!(stored.status, Status::Lost);
                // Its retry is queued; take it out of the way of the next round.
                let retry = rescued[0].retry.as_ref().expect("a retry");
                store
                    .execution_cancel(retry.id, later)
                    .await
                    .expect("cancel the retry");
            }
            Err(err) => panic!("round {round}: {err}"),
        }
    }
    store.drop_schema().await.expect("drop");
}

/// The listener reconnects after its connection is killed, and notices flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_resume_after_the_listen_connection_is_killed() {
    let Some(case) = case().await else { return };
    let store = &case.store;
    store
        .job_create(&spec("wake", ConcurrencyPolicy::Allow), at(0))
        .await
        .expect("create");
    let mut notices = store.subscribe();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND query = 'LISTEN \"panda_queued\"'",
    )
    .bind(&case.app)
    .fetch_all(&case.pool)
    .await
    .expect("terminate the listeners");
    assert!(!killed.is_empty(), "a listener was connected");
    for attempt in 0..40 {
        store
            .execution_enqueue(&NewExecution::api("wake"), at(attempt))
            .await
            .expect("enqueue");
        let heard = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                match notices.recv().await {
                    Ok(Notice::Queued { queue }) if queue == "default" => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => panic!("closed"),
                }
            }
        })
        .await;
        if heard.is_ok() {
            store.drop_schema().await.expect("drop");
            return;
        }
    }
    panic!("no notice after the listener's connection was killed");
}

/// Dropping the store ends its listener: its `LISTEN` connection closes once the last clone
/// is gone, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_ends_the_listener() {
    let Some(case) = case().await else { return };
    assert_eq!(listeners(&case).await.len(), 1, "one listener per store");
    let copy = case.store.clone();
    case.store.drop_schema().await.expect("drop");
    let Case { store, pool, app } = case;
    drop(store);
    let case = Case {
        store: copy,
        pool,
        app,
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        listeners(&case).await.len(),
        1,
        "a clone still holds the store"
    );
    let Case { store, pool, app } = case;
    drop(store);
    for _ in 0..50 {
        let left: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = $1 AND query = 'LISTEN \"panda_queued\"'",
        )
        .bind(&app)
        .fetch_all(&pool)
        .await
        .expect("pg_stat_activity");
        if left.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the listener outlived the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transactional_enqueue_reads_a_per_key_limits_key_as_the_server_does() {
    let Some(case) = case().await else { return };
    let mut keyed = spec("sync", ConcurrencyPolicy::Allow);
    keyed.max_running = Some(1);
    keyed.concurrency_key = Some("payload.customer.id".into());
    case.store.job_create(&keyed, at(0)).await.expect("create");
    for (payload, key) in [
        (r#"{"customer": {"id": "a"}}"#, "a"),
        (r#"{"customer": {"id": 7}}"#, "7"),
        (r#"{"other": 1}"#, ""),
    ] {
        let id: Uuid = sqlx::query_scalar("SELECT enqueue('sync', $1::jsonb)")
            .bind(payload)
            .fetch_one(&case.pool)
            .await
            .expect("enqueue through SQL");
        let through_sql = case
            .store
            .execution_get(ExecutionId::from_uuid(id))
            .await
            .expect("get");
        let through_api = case
            .store
            .execution_enqueue(
                &NewExecution {
                    payload: Some(serde_json::from_str(payload).expect("json")),
                    ..NewExecution::api("sync")
                },
                at(1),
            )
            .await
            .expect("enqueue")
            .execution;
        assert_eq!(
            through_sql.concurrency_key.as_deref(),
            Some(key),
            "{payload}"
        );
        assert_eq!(
            through_api.concurrency_key, through_sql.concurrency_key,
            "{payload}"
        );
    }
}
