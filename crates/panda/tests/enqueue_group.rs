//! Group commit of the API's enqueues, through the real binary: concurrent requests are
//! written together and each is answered in its place; a node killed while requests are in
//! flight loses none that it acknowledged. What ran is read from what the job itself wrote.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use panda_client::Client;
use panda_core::api::TriggerRequest;
use support::backend::Backend;
use support::runs::all_of;
use support::{Start, succeeded};

/// The keys the job has run with, one line each.
fn ran(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn keyed(key: &str, priority: Option<i32>) -> TriggerRequest {
    TriggerRequest {
        payload: Some(serde_json::json!({ "key": key })),
        idempotency_key: Some(key.to_owned()),
        priority,
        ..TriggerRequest::default()
    }
}

/// Creates the job `record`, which appends its payload (holding its key) to `file`.
fn create_recording_job(server: &support::Server, file: &Path) {
    let exec = format!("sh -c 'echo \"$PANDA_PAYLOAD\" >> {}'", file.display());
    succeeded(&server.panda(&["job", "create", "--name", "record", "--exec", &exec]));
}

async fn concurrent_enqueues_are_each_answered_in_their_place(backend: Backend) {
    let server = backend.node(Start::server(), "group-a", &[]);
    let work = tempfile::tempdir().expect("a temp dir");
    let file = work.path().join("ran");
    create_recording_job(&server, &file);
    let client = Arc::new(Client::new(server.url(), Some(server.admin_token())).expect("client"));

    // 32 clients at once: each sends 10 enqueues; every key is sent twice (by two clients),
    // and one request in ten asks for a priority out of range.
    let mut tasks = Vec::new();
    for c in 0..32u32 {
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..10u32 {
                let key = format!("k{}", (c / 2) * 10 + i);
                let priority = (i == 7).then_some(5000);
                let answer = client.trigger("record", &keyed(&key, priority)).await;
                answers.push((key, priority.is_some(), answer));
            }
            answers
        }));
    }
    let mut created: BTreeMap<String, String> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        for (key, refused, answer) in task.await.expect("a client") {
            match (refused, answer) {
                (true, Err(err)) => assert_eq!(err.code(), Some("invalid"), "{err}"),
                (true, Ok(t)) => panic!("an out-of-range priority was queued: {t:?}"),
                (false, Ok(t)) if t.created => {
                    let earlier = created.insert(key.clone(), t.execution.id.to_string());
                    assert!(earlier.is_none(), "{key} created twice");
                }
                (false, Ok(t)) => duplicates.push((key, t.execution.id.to_string())),
                (false, Err(err)) => panic!("{key}: {err}"),
            }
        }
    }
    assert_eq!(created.len(), 16 * 9, "each key's first request created it");
    assert_eq!(duplicates.len(), 16 * 9, "each key's second one found it");
    for (key, id) in &duplicates {
        assert_eq!(
            created.get(key),
            Some(id),
            "{key}: the duplicate names the first"
        );
    }

    let expected: BTreeSet<String> = created.keys().cloned().collect();
    let started = Instant::now();
    loop {
        let keys: Vec<String> = ran(&file)
            .iter()
            .map(|line| {
                let json: serde_json::Value = serde_json::from_str(line).expect("a payload");
                json["key"].as_str().expect("a key").to_owned()
            })
            .collect();
        let distinct: BTreeSet<String> = keys.iter().cloned().collect();
        if distinct == expected {
            assert_eq!(keys.len(), expected.len(), "each ran once");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "ran {} of {}",
            distinct.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        all_of(&*backend.store, "record").await.len(),
        expected.len()
    );
    drop(server);
    backend.close().await;
}

async fn a_node_killed_mid_enqueue_loses_nothing_it_acknowledged(backend: Backend) {
    let server = backend.node(Start::server(), "group-b", &[]);
    let work = tempfile::tempdir().expect("a temp dir");
    let file = work.path().join("ran");
    create_recording_job(&server, &file);
    let client = Arc::new(Client::new(server.url(), Some(server.admin_token())).expect("client"));

    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..16u32 {
        let (client, acknowledged, stop) = (
            Arc::clone(&client),
            Arc::clone(&acknowledged),
            Arc::clone(&stop),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("c{c}-{i}");
                i += 1;
                if let Ok(t) = client.trigger("record", &keyed(&key, None)).await {
                    assert!(t.created);
                    acknowledged.lock().expect("the set").insert(key);
                }
            }
        }));
    }
    // Let the writer batch for a while, then kill the node with requests in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a client");
    }
    let acknowledged = acknowledged.lock().expect("the set").clone();
    assert!(
        acknowledged.len() > 50,
        "only {} acknowledged",
        acknowledged.len()
    );

    // Every acknowledged enqueue is stored, once, and runs once the node is back.
    let stored: BTreeSet<String> = all_of(&*backend.store, "record")
        .await
        .into_iter()
        .filter(|e| e.attempt == 1)
        .filter_map(|e| e.idempotency_key)
        .collect();
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");

    let _server = backend.node(Start::server(), "group-b", &[]);
    let started = Instant::now();
    loop {
        let keys: BTreeSet<String> = ran(&file)
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|json| json["key"].as_str().map(str::to_owned))
            .collect();
        if acknowledged.is_subset(&keys) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} acknowledged enqueues never ran",
            acknowledged.difference(&keys).count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(_server);
    backend.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_concurrent_enqueues_are_each_answered_in_their_place() {
    concurrent_enqueues_are_each_answered_in_their_place(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_concurrent_enqueues_are_each_answered_in_their_place() {
    if let Some(backend) = Backend::postgres("group_a").await {
        concurrent_enqueues_are_each_answered_in_their_place(backend).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_a_node_killed_mid_enqueue_loses_nothing_it_acknowledged() {
    a_node_killed_mid_enqueue_loses_nothing_it_acknowledged(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_node_killed_mid_enqueue_loses_nothing_it_acknowledged() {
    if let Some(backend) = Backend::postgres("group_b").await {
        a_node_killed_mid_enqueue_loses_nothing_it_acknowledged(backend).await;
    }
}
