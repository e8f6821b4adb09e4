//! Paused queues: they keep accepting work and start none, on every claim path.

use std::collections::BTreeSet;
use std::sync::Arc;

use panda_core::{ConcurrencyPolicy, ExecutionId, Status};
use panda_store::{ClaimRequest, Store, StoreError};

use super::support::*;

/// Enqueues one execution of a job of `policy` on `queue` (the job is made on first use).
async fn queued_on(
    store: &Arc<dyn Store>,
    queue: &str,
    policy: ConcurrencyPolicy,
    n: i64,
) -> ExecutionId {
    let name = format!("on-{queue}-{}", policy.as_str());
    if store.job_get(&name).await.is_err() {
        let mut spec = job_spec_with(&name, policy);
        spec.queue = queue.into();
        create_job_from(store, spec).await;
    }
    enqueue(store, &name, at(n)).await.id
}

/// Claims from `queues` (none: every queue) until nothing more comes; the ids claimed.
async fn claim_all(store: &Arc<dyn Store>, queues: &[&str], now: i64) -> BTreeSet<ExecutionId> {
    let request = ClaimRequest {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        ..claim_request(100)
    };
    let mut ids = BTreeSet::new();
    loop {
        let claimed = store
            .execution_claim(&request, at(now))
            .await
            .expect("claim");
        if claimed.is_empty() {
            return ids;
        }
        ids.extend(claimed.into_iter().map(|c| c.execution.id));
    }
}

pub async fn a_paused_queue_accepts_work_and_starts_none_until_resumed(store: Arc<dyn Store>) {
    // Both claim paths: jobs that allow overlap (the one-statement claim) and `forbid` jobs
    // (the full claim), from every queue, from the paused queue alone and from a list of both.
    let pause = store.queue_pause("reports", at(1)).await.expect("pause");
    assert_eq!((pause.queue.as_str(), pause.paused_at), ("reports", at(1)));
    let again = store
        .queue_pause("reports", at(2))
        .await
        .expect("pause again");
    assert_eq!(
        again.paused_at,
        at(1),
        "a second pause keeps the first one's time"
    );

    let mut paused = BTreeSet::new();
    let mut open = BTreeSet::new();
    for policy in [ConcurrencyPolicy::Allow, ConcurrencyPolicy::Forbid] {
        paused.insert(queued_on(&store, "reports", policy, 3).await);
        open.insert(queued_on(&store, "default", policy, 4).await);
        open.insert(queued_on(&store, "emails", policy, 5).await);
    }
    assert!(claim_all(&store, &["reports"], 10).await.is_empty());
    let from_both = claim_all(&store, &["reports", "default"], 10).await;
    let from_every = claim_all(&store, &[], 10).await;
    assert!(from_both.is_disjoint(&paused) && from_every.is_disjoint(&paused));
    let started: BTreeSet<_> = from_both.union(&from_every).copied().collect();
    assert_eq!(started, open, "every open queue's work started, once");

    let stats = store.queue_stats(at(10)).await.expect("stats");
    let reports = stats.iter().find(|q| q.queue == "reports").expect("listed");
    assert_eq!((reports.due, reports.paused_at), (2, Some(at(1))));
    assert!(
        stats
            .iter()
            .filter(|q| q.queue != "reports")
            .all(|q| q.paused_at.is_none())
    );

    for id in &paused {
        let e = store.execution_get(*id).await.expect("get");
        assert_eq!(e.status, Status::Queued, "work on a paused queue waits");
    }
    assert!(store.queue_resume("reports").await.expect("resume"));
    assert!(!store.queue_resume("reports").await.expect("resume again"));
    assert!(store.queue_pauses().await.expect("pauses").is_empty());
    assert_eq!(
        claim_all(&store, &[], 11).await,
        paused,
        "resumed: its work starts"
    );
}

pub async fn a_paused_queue_is_listed_when_empty_and_a_bad_name_pauses_nothing(
    store: Arc<dyn Store>,
) {
    store.queue_pause("nightly", at(0)).await.expect("pause");
    let stats = store.queue_stats(at(1)).await.expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].queue.as_str(), stats[0].due, stats[0].paused_at),
        ("nightly", 0, Some(at(0)))
    );
    for bad in ["", "Reports", "a b", "-x", &"q".repeat(64), "nul\0"] {
        let err = store.queue_pause(bad, at(2)).await.expect_err(bad);
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
    }
    let names: Vec<String> = store
        .queue_pauses()
        .await
        .expect("pauses")
        .into_iter()
        .map(|p| p.queue)
        .collect();
    assert_eq!(names, vec!["nightly".to_owned()]);
}
