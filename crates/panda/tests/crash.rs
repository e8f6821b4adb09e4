//! Crash tests through the real binary: `panda server` is killed with SIGKILL (or stopped with
//! SIGTERM) while it runs executions, and the store is checked for what the queue promises:
//! nothing lost, the interrupted runs run again, no stale worker writes a result, and a drain
//! leaves nothing `running`.
//!
//! Each test runs on SQLite (a temp data dir) and on PostgreSQL (a schema of its own in the
//! database `PANDA_TEST_DATABASE_URL` names; the case skips without it unless
//! `PANDA_REQUIRE_ALL_BACKENDS=1`).

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, JobName, JobSpec, RetryPolicy, RuntimeSpec, Status,
};
use panda_store::{NewExecution, Store};
use support::backend::Backend;
use support::runs::{all_of, count, wait_until};
use support::{Server, Start};

/// Starts a server node on `backend` and returns once its workers run.
fn start_server(backend: &Backend, node: &str, extra: &[&str]) -> Server {
    start_node(Start::server(), backend, node, extra)
}

/// Starts a `panda worker` node (no API, no scheduler) on `backend`.
fn start_worker(backend: &Backend, node: &str, extra: &[&str]) -> Server {
    start_node(Start::worker(), backend, node, extra)
}

fn start_node(start: Start, backend: &Backend, node: &str, extra: &[&str]) -> Server {
    backend.node(start, node, extra)
}

fn job(name: &str, script: &str, max_attempts: u32) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("name"),
        RuntimeSpec::Process {
            argv: vec!["sh".into(), "-c".into(), script.into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.retry = RetryPolicy {
        max_attempts,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(500),
    };
    spec
}

async fn enqueue_many(store: &Arc<dyn Store>, job: &str, n: usize) -> Vec<ExecutionId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let enqueued = store
            .execution_enqueue(&NewExecution::api(job), Utc::now())
            .await
            .expect("enqueue");
        ids.push(enqueued.execution.id);
    }
    ids
}

// ---- a: SIGKILL mid-batch, then restart ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_mid_batch_loses_nothing_and_reruns_the_interrupted() {
    sigkill_mid_batch(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigkill_mid_batch_loses_nothing_and_reruns_the_interrupted() {
    if let Some(backend) = Backend::postgres("panda_crash").await {
        sigkill_mid_batch(backend).await;
    }
}

async fn sigkill_mid_batch(backend: Backend) {
    const N: usize = 500;
    let store = &backend.store;
    let ran = backend.dir.path().join("ran.log");
    // Each run appends its execution id (one short O_APPEND write, so lines never interleave).
    let script = format!(
        "sleep 0.05; echo \"$PANDA_EXECUTION_ID\" >> {}",
        ran.display()
    );
    store
        .job_create(&job("batch", &script, 3), Utc::now())
        .await
        .expect("create");
    let roots: HashSet<ExecutionId> = enqueue_many(store, "batch", N).await.into_iter().collect();
    let node_args = [
        "--concurrency",
        "8",
        "--lease-ttl",
        "2s",
        "--heartbeat-interval",
        "500ms",
    ];

    let server = start_server(&backend, "node-a", &node_args);
    let before_kill = wait_until(store.as_ref(), "batch", "half done", |all| {
        count(all, Status::Succeeded) >= N / 2 && count(all, Status::Running) > 0
    })
    .await;
    server.kill();
    let killed_at = Utc::now();
    assert!(before_kill.iter().any(|e| e.status == Status::Running));

    let server = start_server(&backend, "node-a", &node_args);
    let all = wait_until(store.as_ref(), "batch", "all succeeded", |all| {
        count(all, Status::Succeeded) >= N && all.iter().all(|e| e.status.is_terminal())
    })
    .await;
    server.stop();

    // Every run ended succeeded, exactly once; the only other attempts are lost ones.
    let mut by_root: HashMap<ExecutionId, Vec<&Execution>> = HashMap::new();
    for e in &all {
        by_root.entry(e.root_id).or_default().push(e);
    }
    assert_eq!(
        by_root.keys().copied().collect::<HashSet<_>>(),
        roots,
        "no run lost, none made up"
    );
    for (root, attempts) in &by_root {
        let succeeded = attempts
            .iter()
            .filter(|e| e.status == Status::Succeeded)
            .count();
        assert_eq!(succeeded, 1, "run {root}: {attempts:#?}");
        for e in attempts.iter().filter(|e| e.status != Status::Succeeded) {
            assert_eq!(e.status, Status::Lost, "run {root}: {attempts:#?}");
            // Fenced: nothing the killed worker had in flight was written after the rescue.
            assert_eq!(e.exit_code, None, "a lost attempt has no result: {e:#?}");
        }
    }
    // The executions the kill interrupted were lost, and each ran again.
    let lost: Vec<&Execution> = all.iter().filter(|e| e.status == Status::Lost).collect();
    assert!(!lost.is_empty(), "the kill interrupted running executions");
    for lost in lost {
        let id = lost.id;
        assert!(
            lost.started_at.expect("started") < killed_at,
            "only executions the killed server held were lost: {lost:#?}"
        );
        assert!(
            all.iter().any(|e| e.root_id == lost.root_id
                && e.attempt == lost.attempt + 1
                && e.status == Status::Succeeded),
            "lost {id} ran again and succeeded"
        );
    }
    // Each succeeded execution's process really ran.
    let log = std::fs::read_to_string(&ran).expect("read the run log");
    let ran_ids: HashSet<&str> = log.lines().collect();
    for e in all.iter().filter(|e| e.status == Status::Succeeded) {
        assert!(ran_ids.contains(e.id.to_string().as_str()), "{} ran", e.id);
    }
    backend.close().await;
}

// ---- b: two nodes on PostgreSQL, SIGKILL one ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_worker_node_finishes_the_killed_servers_work() {
    let Some(backend) = Backend::postgres("panda_crash").await else {
        return;
    };
    let store = &backend.store;
    store
        .job_create(&job("work", "sleep 2", 3), Utc::now())
        .await
        .expect("create");
    let lease_ttl = chrono::Duration::seconds(3);
    let node_args = [
        "--concurrency",
        "4",
        "--lease-ttl",
        "3s",
        "--heartbeat-interval",
        "1s",
    ];
    let a = start_server(&backend, "node-a", &node_args);
    // The survivor is a worker-only node, as an extra machine runs `panda worker`.
    let b = start_worker(&backend, "node-b", &node_args);
    // As much work as both nodes run at once: each holds four executions.
    enqueue_many(store, "work", 8).await;
    let running = wait_until(store.as_ref(), "work", "running on both nodes", |all| {
        let on = |node: &str| {
            all.iter()
                .filter(|e| e.status == Status::Running && e.worker_id.as_deref() == Some(node))
                .count()
        };
        on("node-a") == 4 && on("node-b") == 4
    })
    .await;
    a.kill();
    let killed_at = Utc::now();
    let held_by_a: Vec<ExecutionId> = running
        .iter()
        .filter(|e| e.worker_id.as_deref() == Some("node-a"))
        .map(|e| e.id)
        .collect();

    let all = wait_until(store.as_ref(), "work", "all succeeded", |all| {
        count(all, Status::Succeeded) == 8 && all.iter().all(|e| e.status.is_terminal())
    })
    .await;
    b.stop();

    assert_eq!(held_by_a.len(), 4);
    for id in held_by_a {
        let lost = all.iter().find(|e| e.id == id).expect("listed");
        assert_eq!(lost.status, Status::Lost, "{lost:#?}");
        let retry = all
            .iter()
            .find(|e| e.root_id == lost.root_id && e.attempt == lost.attempt + 1)
            .expect("a retry");
        assert_eq!(
            (retry.status, retry.worker_id.as_deref()),
            (Status::Succeeded, Some("node-b"))
        );
        let restarted = retry.started_at.expect("started") - killed_at;
        eprintln!(
            "execution {id}: restarted on node-b {} ms after the kill (lease {} ms)",
            restarted.num_milliseconds(),
            lease_ttl.num_milliseconds()
        );
        // Not before A's last lease could expire (A heartbeat at most 1 s before the kill)...
        assert!(
            restarted >= lease_ttl - chrono::Duration::seconds(1),
            "taken while node-a's lease still held: {restarted}"
        );
        // ...and soon after: a liveness bound with room for a loaded machine. The tight figure
        // (lease + 1 s) is measured by `panda-bench queue`.
        assert!(
            restarted <= lease_ttl + chrono::Duration::seconds(10),
            "node-b took {restarted} to take over"
        );
    }
    backend.close().await;
}

// ---- c: SIGTERM drains ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigterm_drains_and_leaves_nothing_running() {
    sigterm_drains(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigterm_drains_and_leaves_nothing_running() {
    if let Some(backend) = Backend::postgres("panda_crash").await {
        sigterm_drains(backend).await;
    }
}

async fn sigterm_drains(backend: Backend) {
    let store = &backend.store;
    store
        .job_create(&job("short", "sleep 0.5", 1), Utc::now())
        .await
        .expect("create");
    store
        .job_create(&job("long", "exec sleep 60", 1), Utc::now())
        .await
        .expect("create");
    let server = start_server(
        &backend,
        "node-a",
        &["--concurrency", "6", "--shutdown-grace", "2s"],
    );
    let short = enqueue_many(store, "short", 3).await;
    let long = enqueue_many(store, "long", 3).await;
    wait_until(store.as_ref(), "long", "running", |all| {
        count(all, Status::Running) == 3
    })
    .await;
    wait_until(store.as_ref(), "short", "running or done", |all| {
        all.iter().all(|e| e.status != Status::Queued)
    })
    .await;
    let asked = Instant::now();
    server.stop();
    let took = asked.elapsed();

    for id in short {
        let e = store.execution_get(id).await.expect("get");
        assert_eq!(
            e.status,
            Status::Succeeded,
            "finished within the grace: {e:#?}"
        );
    }
    for id in long {
        let e = store.execution_get(id).await.expect("get");
        assert_eq!(
            (e.status, e.attempt, e.worker_id.as_deref()),
            (Status::Queued, 1, None),
            "released at the end of the grace, its attempt not used up: {e:#?}"
        );
    }
    assert!(
        took < Duration::from_secs(50),
        "the drain ended the sleeps, it did not wait for them: {took:?}"
    );
    let leftovers = all_of(store.as_ref(), "long").await;
    assert_eq!(count(&leftovers, Status::Running), 0);
    backend.close().await;
}
