//! Flow control through real nodes: two nodes on one PostgreSQL database share a per-key limit
//! and a rate limit. The jobs write when they start and end; what they wrote shows that no key
//! ever ran twice at once, and that no key started more than its rate allows in any window,
//! whichever node ran it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::Utc;
use panda_core::{ConcurrencyPolicy, JobName, JobSpec, RateLimit, RuntimeSpec, Status};
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

/// Creates `spec`, runs `requests` of it on two real nodes (a server and a worker, two places
/// each: fewer than the work may run at once, so one node alone cannot take it all) until every
/// one has succeeded, and checks that both nodes took work: every execution.
async fn run_on_two_nodes(
    backend: &Backend,
    spec: &JobSpec,
    requests: &[NewExecution],
) -> Vec<panda_core::Execution> {
    let store = &backend.store;
    store.job_create(spec, Utc::now()).await.expect("create");
    let a = backend.node(Start::server(), "node-a", &["--concurrency", "2"]);
    let b = backend.node(Start::worker(), "node-b", &["--concurrency", "2"]);
    for result in store
        .execution_enqueue_many(requests, Utc::now())
        .await
        .expect("enqueue")
    {
        result.expect("queued");
    }
    let job = spec.name.as_str();
    let all = wait_until(store.as_ref(), job, "all succeeded", |all| {
        all.len() == requests.len() && all.iter().all(|e| e.status == Status::Succeeded)
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
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_never_run_one_key_twice_at_once() {
    let Some(backend) = Backend::postgres("panda_flow").await else {
        return;
    };
    let witness = backend.dir.path().join("witness");
    // Each customer's executions queued together, ahead of the next customer's.
    let requests: Vec<NewExecution> = (0..KEYS)
        .flat_map(|k| {
            (0..PER_KEY).map(move |_| NewExecution {
                env: BTreeMap::from([("CUSTOMER".to_owned(), format!("c{k}"))]),
                ..NewExecution::api("sync-customer")
            })
        })
        .collect();
    let all = run_on_two_nodes(&backend, &keyed_job(&witness), &requests).await;
    let nodes: BTreeSet<&str> = all.iter().filter_map(|e| e.worker_id.as_deref()).collect();
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

/// The rate of [`rated_job`]: 3 starts per 4 s per customer.
const RATE_STARTS: usize = 3;
const RATE_WINDOW_MS: i64 = 4000;
const RATED_PER_KEY: usize = 9;

/// A job that may start 3 runs per 4 s per `CUSTOMER`, that writes `start KEY NANOS ID`.
fn rated_job(witness: &Path) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new("call-partner").expect("a name"),
        RuntimeSpec::Process {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "echo start $CUSTOMER $(date +%s%N) $PANDA_EXECUTION_ID >> {}",
                    witness.display()
                ),
            ],
        },
    );
    spec.rate_limit = Some(RateLimit {
        key: Some("env.CUSTOMER".into()),
        ..RateLimit::new(
            RATE_STARTS as u32,
            std::time::Duration::from_millis(RATE_WINDOW_MS as u64),
        )
    });
    spec
}

/// The most of `starts` (sorted) in any half-open span of `span`.
fn most_in_any_span(starts: &[i64], span: i64) -> usize {
    starts
        .iter()
        .enumerate()
        .map(|(i, first)| {
            starts[i..]
                .iter()
                .take_while(|at| **at < first + span)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_never_start_more_than_a_keys_rate() {
    let Some(backend) = Backend::postgres("panda_rate").await else {
        return;
    };
    let witness = backend.dir.path().join("witness");
    let requests: Vec<NewExecution> = (0..RATED_PER_KEY)
        .flat_map(|_| {
            (0..2).map(move |k| NewExecution {
                env: BTreeMap::from([("CUSTOMER".to_owned(), format!("c{k}"))]),
                ..NewExecution::api("call-partner")
            })
        })
        .collect();
    let all = run_on_two_nodes(&backend, &rated_job(&witness), &requests).await;
    // What the runs did: each ran once, and in any span a little shorter than the window
    // (by the most a process may take to start after its claim here) a key started at most
    // its rate.
    let text = std::fs::read_to_string(&witness).expect("the witness");
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_, key, at, id] = parts[..] else {
            panic!("a witness line: {line:?}");
        };
        let at: i64 = at.parse().expect("nanoseconds");
        by_key
            .entry(key.to_owned())
            .or_default()
            .push(at / 1_000_000);
        assert!(ids.insert(id.to_owned()), "{id} ran twice: {text}");
    }
    assert_eq!(ids.len(), 2 * RATED_PER_KEY, "every run ran once: {text}");
    const SLACK_MS: i64 = 1500;
    for (key, starts) in &mut by_key {
        starts.sort_unstable();
        let most = most_in_any_span(starts, RATE_WINDOW_MS - SLACK_MS);
        assert!(
            most <= RATE_STARTS,
            "key {key} started {most} runs within {} ms: {starts:?}",
            RATE_WINDOW_MS - SLACK_MS
        );
    }
    // What the store recorded, to the instant each claim started its run: never more than the
    // rate in any window.
    let mut claimed: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in &all {
        claimed
            .entry(e.env.get("CUSTOMER").cloned().unwrap_or_default())
            .or_default()
            .push(e.started_at.expect("started").timestamp_millis());
    }
    for (key, starts) in &mut claimed {
        starts.sort_unstable();
        let most = most_in_any_span(starts, RATE_WINDOW_MS);
        let claims: Vec<String> = all
            .iter()
            .map(|e| {
                format!(
                    "{} {} {:?} {:?}",
                    e.id,
                    e.env.get("CUSTOMER").cloned().unwrap_or_default(),
                    e.started_at,
                    e.worker_id
                )
            })
            .collect();
        assert!(
            most <= RATE_STARTS,
            "key {key} was claimed {most} times in one window: {starts:?}; every claim: \
             {claims:#?}"
        );
        let span = starts.last().expect("a start") - starts.first().expect("a start");
        eprintln!("key {key}: {} starts over {span} ms", starts.len());
    }
    backend.close().await;
}
