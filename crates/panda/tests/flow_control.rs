//! Flow control through real nodes: two nodes on one PostgreSQL database share a per-key limit.
//! The jobs write when they start and end; what they wrote shows that no key ever ran twice at
//! once, whichever node ran it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::Utc;
use panda_core::{ConcurrencyPolicy, JobName, JobSpec, RuntimeSpec, Status};
use panda_store::NewExecution;
use support::Start;
use support::backend::Backend;
use support::runs::wait_until;

const KEYS: usize = 4;
const PER_KEY: usize = 6;

/// A job limited to one running execution per `CUSTOMER`, that writes `start KEY NANOS` and
/// `end KEY NANOS` around a short sleep.
fn keyed_job(witness: &Path) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new("sync-customer").expect("a name"),
        RuntimeSpec::Process {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "echo start $CUSTOMER $(date +%s%N) >> {w}; sleep 0.3; \
                     echo end $CUSTOMER $(date +%s%N) >> {w}",
                    w = witness.display()
                ),
            ],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.max_running = Some(1);
    spec.concurrency_key = Some("env.CUSTOMER".into());
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_never_run_one_key_twice_at_once() {
    let Some(backend) = Backend::postgres("panda_flow").await else {
        return;
    };
    let store = &backend.store;
    let witness = backend.dir.path().join("witness");
    store
        .job_create(&keyed_job(&witness), Utc::now())
        .await
        .expect("create");
    let a = backend.node(Start::server(), "node-a", &["--concurrency", "4"]);
    let b = backend.node(Start::worker(), "node-b", &["--concurrency", "4"]);
    // Each customer's executions queued together, ahead of the next customer's.
    let requests: Vec<NewExecution> = (0..KEYS)
        .flat_map(|k| {
            (0..PER_KEY).map(move |_| NewExecution {
                env: BTreeMap::from([("CUSTOMER".to_owned(), format!("c{k}"))]),
                ..NewExecution::api("sync-customer")
            })
        })
        .collect();
    for result in store
        .execution_enqueue_many(&requests, Utc::now())
        .await
        .expect("enqueue")
    {
        result.expect("queued");
    }
    let all = wait_until(store.as_ref(), "sync-customer", "all succeeded", |all| {
        all.len() == KEYS * PER_KEY && all.iter().all(|e| e.status == Status::Succeeded)
    })
    .await;
    a.stop();
    b.stop();

    let nodes: BTreeSet<&str> = all.iter().filter_map(|e| e.worker_id.as_deref()).collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["node-a", "node-b"]),
        "both nodes took work"
    );
    let text = std::fs::read_to_string(&witness).expect("the witness");
    let mut runs: BTreeMap<String, Vec<(u128, u128)>> = BTreeMap::new();
    let mut open: BTreeMap<String, Vec<u128>> = BTreeMap::new();
    let mut lines: Vec<(u128, &str, &str)> = text
        .lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let what = parts.next().expect("what");
            let key = parts.next().expect("key");
            let at: u128 = parts.next().expect("time").parse().expect("nanoseconds");
            (at, what, key)
        })
        .collect();
    lines.sort_unstable();
    let mut running: BTreeMap<&str, usize> = BTreeMap::new();
    let mut most_at_once = 0;
    for (at, what, key) in &lines {
        let n = running.entry(key).or_default();
        if *what == "start" {
            *n += 1;
            assert_eq!(*n, 1, "key {key} ran twice at once: {text}");
            open.entry((*key).to_owned()).or_default().push(*at);
        } else {
            *n -= 1;
            let started = open.get_mut(*key).and_then(Vec::pop).expect("a start");
            runs.entry((*key).to_owned())
                .or_default()
                .push((started, *at));
        }
        most_at_once = most_at_once.max(running.values().sum::<usize>());
    }
    assert_eq!(runs.len(), KEYS);
    assert!(
        runs.values().all(|r| r.len() == PER_KEY),
        "every run ran once: {runs:?}"
    );
    assert!(
        most_at_once > 1,
        "different keys ran side by side (at most {most_at_once} at once)"
    );
    eprintln!("at most {most_at_once} of {KEYS} keys ran at once, on {nodes:?}");
    backend.close().await;
}
