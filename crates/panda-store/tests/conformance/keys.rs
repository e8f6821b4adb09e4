//! Per-key limits (`concurrency_key` with `max_running`): at most N running per key, across
//! claims and claimers, and a full key's waiting work parked so that it holds back no other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use panda_core::{ConcurrencyPolicy, ExecutionId, JobSpec, Status};
use panda_store::{NewExecution, Outcome, Store};

use super::support::*;

fn keyed(name: &str, key: &str, max_running: u32) -> JobSpec {
    let mut spec = job_spec_with(name, ConcurrencyPolicy::Allow);
    spec.max_running = Some(max_running);
    spec.concurrency_key = Some(key.into());
    spec
}

pub async fn a_key_limit_runs_at_most_n_per_key_while_other_keys_run(store: Arc<dyn Store>) {
    create_job_from(&store, keyed("sync", "payload.customer.id", 1)).await;
    let a1 = enqueue_for(
        &store,
        "sync",
        serde_json::json!({"customer": {"id": "a"}}),
        0,
    )
    .await;
    let a2 = enqueue_for(
        &store,
        "sync",
        serde_json::json!({"customer": {"id": "a"}}),
        1,
    )
    .await;
    let a3 = enqueue_for(
        &store,
        "sync",
        serde_json::json!({"customer": {"id": "a"}}),
        2,
    )
    .await;
    let b1 = enqueue_for(
        &store,
        "sync",
        serde_json::json!({"customer": {"id": 7}}),
        3,
    )
    .await;
    let none = enqueue_for(&store, "sync", serde_json::json!({"other": 1}), 4).await;
    let stored = store.execution_get(b1).await.expect("get");
    assert_eq!(
        stored.concurrency_key.as_deref(),
        Some("7"),
        "the key is read at enqueue; a number as JSON"
    );
    assert_eq!(
        store
            .execution_get(none)
            .await
            .expect("get")
            .concurrency_key
            .as_deref(),
        Some(""),
        "no such field: the empty key"
    );

    let claimed = claim(&store, 10, at(10)).await;
    let got: Vec<ExecutionId> = claimed.iter().map(|c| c.execution.id).collect();
    assert_eq!(got, [a1, b1, none], "one per key, in claim order");
    assert!(
        claim(&store, 10, at(11)).await.is_empty(),
        "a's others wait"
    );
    let running = store.execution_get(a1).await.expect("get");
    assert_eq!(
        (running.status, running.reason),
        (Status::Running, None),
        "the run the claim started is not parked with the rest of its key"
    );
    for id in [a2, a3] {
        let waiting = store.execution_get(id).await.expect("get");
        assert_eq!(
            (waiting.status, waiting.reason.as_deref()),
            (
                Status::Queued,
                Some("waiting: key \"a\" has 1 running, its limit; it starts when one ends")
            ),
            "it waits, and says why"
        );
    }

    // The end of a1 frees a's slot: the next of a (parked meanwhile) starts, and only it.
    finish(&store, &claimed[0], Outcome::Succeeded, at(12)).await;
    let next = claim(&store, 10, at(13)).await;
    assert_eq!(
        next.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [a2]
    );
    assert_eq!(next[0].execution.reason, None, "no longer waiting");
    // A failure with a retry left frees the slot too; its retry waits in line with a3.
    finish(&store, &next[0], Outcome::Failed, at(14)).await;
    let after = claim(&store, 10, at(15)).await;
    assert_eq!(
        after.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [a3]
    );
    finish(&store, &after[0], Outcome::Succeeded, at(16)).await;
    // The retry of a2 is due after its backoff.
    let retry = claim(&store, 10, at(1000)).await;
    assert_eq!(retry.len(), 1);
    assert_eq!(
        retry[0].execution.root_id, a2,
        "a2's retry, under the same key"
    );
    assert_eq!(retry[0].execution.concurrency_key.as_deref(), Some("a"));
}

pub async fn a_full_keys_backlog_holds_back_no_other_work_and_gets_its_turn(store: Arc<dyn Store>) {
    // A hot key with many waiting, queued ahead of other keys' work: every claim goes past
    // it, and each end of the hot key's run lets exactly its next one start.
    create_job_from(&store, keyed("sync", "env.TENANT", 2)).await;
    let hot: Vec<ExecutionId> = {
        let mut ids = Vec::new();
        for i in 0..40 {
            let request = NewExecution {
                env: BTreeMap::from([("TENANT".to_owned(), "hot".to_owned())]),
                ..NewExecution::api("sync")
            };
            ids.push(enqueue_request(&store, request, at(i % 5)).await.id);
        }
        ids
    };
    let mut others = BTreeSet::new();
    for i in 0..10 {
        let request = NewExecution {
            env: BTreeMap::from([("TENANT".to_owned(), format!("t{i}"))]),
            ..NewExecution::api("sync")
        };
        others.insert(enqueue_request(&store, request, at(10)).await.id);
    }
    // The first claim starts two of the hot key, parks the rest of it, and reads on past
    // them: the batch is filled with other keys' work.
    let first = claim(&store, 3, at(20)).await;
    let (first, mut started): (Vec<_>, Vec<_>) = first
        .into_iter()
        .partition(|c| hot.contains(&c.execution.id));
    assert_eq!(
        (first.len(), started.len()),
        (2, 1),
        "two of the hot key, one other"
    );
    let mut started: BTreeSet<ExecutionId> = started.drain(..).map(|c| c.execution.id).collect();
    loop {
        let batch = claim(&store, 3, at(21)).await;
        if batch.is_empty() {
            break;
        }
        started.extend(batch.iter().map(|c| c.execution.id));
    }
    assert_eq!(
        started, others,
        "every other key's work started past the hot key's"
    );

    // The hot key drains two at a time, each end starting one more, until all 40 have run.
    let mut running: Vec<_> = first;
    let mut ran = 0;
    while let Some(done) = running.pop() {
        finish(&store, &done, Outcome::Succeeded, at(22)).await;
        ran += 1;
        let next = claim(&store, 10, at(23)).await;
        assert!(next.len() <= 1, "one slot freed, one start: {next:?}");
        running.extend(next);
        assert!(running.len() <= 2);
    }
    assert_eq!(ran, hot.len(), "every hot run ran");
}

pub async fn concurrent_claims_never_run_more_than_a_keys_limit(store: Arc<dyn Store>) {
    const LIMIT: usize = 2;
    const KEYS: usize = 4;
    const PER_KEY: usize = 15;
    const TASKS: usize = 6;
    create_job_from(&store, keyed("crawl", "payload.site", LIMIT as u32)).await;
    for i in 0..PER_KEY * KEYS {
        let site = format!("site-{}", i % KEYS);
        enqueue_for(
            &store,
            "crawl",
            serde_json::json!({ "site": site }),
            (i % 7) as i64,
        )
        .await;
    }
    // Each claimer counts what it holds per key in a shared tally before it finishes it; a
    // key over its limit at any moment is two claimers holding more than the store allows.
    let holding: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let claimed = race_claimers(&store, TASKS, 3, at(20), 30, {
        let store = Arc::clone(&store);
        move |batch| {
            let store = Arc::clone(&store);
            let holding = Arc::clone(&holding);
            async move {
                for claimed in &batch {
                    let key = claimed.execution.concurrency_key.clone().expect("a key");
                    let mut h = holding.lock().expect("lock");
                    let n = h.entry(key.clone()).or_default();
                    *n += 1;
                    assert!(*n <= LIMIT, "{n} running of key {key} limited to {LIMIT}");
                }
                tokio::task::yield_now().await;
                for claimed in &batch {
                    let key = claimed.execution.concurrency_key.clone().expect("a key");
                    *holding.lock().expect("lock").entry(key).or_default() -= 1;
                    finish(&store, claimed, Outcome::Succeeded, at(21)).await;
                }
            }
        }
    })
    .await;
    assert_eq!(
        claimed.len(),
        PER_KEY * KEYS,
        "every run ran once, none left parked"
    );
}
