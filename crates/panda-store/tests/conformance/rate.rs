//! Rate limits (`rate_limit`): at most N starts in any window, per job or per key, across
//! claims and claimers; the executions over it wait with the reason and never fail, and they
//! hold back no other work.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use panda_core::{ExecutionId, JobSpec, RateLimit, Status};
use panda_store::{Outcome, Store, StoreError};

use super::support::*;

fn limited(name: &str, starts: u32, per_secs: u64, key: Option<&str>) -> JobSpec {
    let mut spec = job_spec(name);
    spec.rate_limit = Some(RateLimit {
        key: key.map(str::to_owned),
        ..RateLimit::new(starts, Duration::from_secs(per_secs))
    });
    spec
}

fn started(claimed: &[panda_store::Claimed]) -> Vec<ExecutionId> {
    claimed.iter().map(|c| c.execution.id).collect()
}

pub async fn a_rate_limit_starts_at_most_n_per_window_and_the_rest_wait_with_the_reason(
    store: Arc<dyn Store>,
) {
    create_job_from(&store, limited("mail", 3, 60, None)).await;
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(enqueue(&store, "mail", at(n)).await.id);
    }

    // At t = 10: three start, in claim order; the other four wait, none failed.
    let first = claim(&store, 10, at(10)).await;
    assert_eq!(started(&first), ids[..3]);
    for id in &ids[3..6] {
        let waiting = store.execution_get(*id).await.expect("get");
        assert_eq!(waiting.status, Status::Queued, "over the limit: it waits");
        assert_eq!(
            waiting.run_at,
            at(70),
            "until the first start leaves the window"
        );
        assert_eq!(
            waiting.reason.as_deref(),
            Some(
                "rate limited until 05:01:10 UTC: its job has started 3 in the last 1m, its limit"
            )
        );
    }
    let last = store.execution_get(ids[6]).await.expect("get");
    assert_eq!(
        last.run_at,
        at(130),
        "the fourth waits a window after the first three that wait"
    );

    // Ends do not matter: a rate limit counts starts.
    for c in &first {
        finish(&store, c, Outcome::Succeeded, at(11)).await;
    }
    assert!(
        claim(&store, 10, at(69)).await.is_empty(),
        "the window still holds three starts at t = 69"
    );
    let second = claim(&store, 10, at(70)).await;
    assert_eq!(started(&second), ids[3..6], "three more as the first leave");
    for c in &second {
        assert_eq!(
            c.execution.reason, None,
            "no longer waiting: the reason goes"
        );
        let stored = store.execution_get(c.execution.id).await.expect("get");
        assert_eq!(stored.reason, None);
    }
    assert!(claim(&store, 10, at(129)).await.is_empty());
    assert_eq!(started(&claim(&store, 10, at(130)).await), ids[6..]);
}

pub async fn a_rate_limit_per_key_counts_each_key_apart(store: Arc<dyn Store>) {
    create_job_from(&store, limited("sync", 2, 60, Some("payload.customer"))).await;
    let a: Vec<ExecutionId> = {
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(enqueue_for(&store, "sync", serde_json::json!({"customer": "a"}), n).await);
        }
        ids
    };
    let b1 = enqueue_for(&store, "sync", serde_json::json!({"customer": "b"}), 3).await;
    let b2 = enqueue_for(&store, "sync", serde_json::json!({"customer": "b"}), 4).await;
    let none = enqueue_for(&store, "sync", serde_json::json!({}), 5).await;

    let first = claim(&store, 10, at(10)).await;
    assert_eq!(
        started(&first),
        [a[0], a[1], b1, b2, none],
        "two per key; no such field is the empty key"
    );
    let waiting = store.execution_get(a[2]).await.expect("get");
    assert_eq!(
        waiting.reason.as_deref(),
        Some("rate limited until 05:01:10 UTC: key \"a\" has started 2 in the last 1m, its limit")
    );
    let b3 = enqueue_for(&store, "sync", serde_json::json!({"customer": "b"}), 20).await;
    let c1 = enqueue_for(&store, "sync", serde_json::json!({"customer": "c"}), 20).await;
    assert_eq!(
        started(&claim(&store, 10, at(30)).await),
        [c1],
        "b is full too; c is not"
    );
    assert_eq!(
        store.execution_get(b3).await.expect("get").run_at,
        at(70),
        "b's next waits for b's first start to leave"
    );
}

pub async fn a_rate_limited_backlog_holds_back_no_other_work(store: Arc<dyn Store>) {
    create_job_from(&store, limited("slow", 1, 3600, None)).await;
    create_job(&store, "fast").await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(enqueue(&store, "slow", at(0)).await.id);
    }
    let mut fast = BTreeSet::new();
    for _ in 0..4 {
        fast.insert(enqueue(&store, "fast", at(1)).await.id);
    }
    // One claim of 5: the first of the backlog starts, the rest of it is moved an hour on,
    // and the claim reads on past it to the other job's work.
    let batch = claim(&store, 5, at(10)).await;
    let got: BTreeSet<ExecutionId> = started(&batch).into_iter().collect();
    let mut want = fast.clone();
    want.insert(slow[0]);
    assert_eq!(got, want, "one of the limited job, then the others' work");
    assert_eq!(
        store.execution_get(slow[49]).await.expect("get").status,
        Status::Queued,
        "never failed"
    );
}

pub async fn a_changed_rate_limit_applies_to_the_work_already_waiting(store: Arc<dyn Store>) {
    create_job_from(&store, limited("report", 1, 3600, None)).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(enqueue(&store, "report", at(n)).await.id);
    }
    assert_eq!(started(&claim(&store, 10, at(10)).await), ids[..1]);
    assert!(claim(&store, 10, at(20)).await.is_empty());

    // Raised to 2 an hour: one more may start now, and does, though the waiting ones had
    // been moved an hour on.
    store
        .job_update(&limited("report", 2, 3600, None), at(30))
        .await
        .expect("update");
    assert_eq!(started(&claim(&store, 10, at(31)).await), ids[1..2]);

    // No limit at all: the rest start at once.
    store
        .job_update(&job_spec("report"), at(40))
        .await
        .expect("update");
    let rest = claim(&store, 10, at(41)).await;
    assert_eq!(started(&rest), ids[2..]);
    assert!(rest.iter().all(|c| c.execution.reason.is_none()));
}

pub async fn a_zero_or_out_of_range_rate_limit_is_refused_and_nothing_is_created(
    store: Arc<dyn Store>,
) {
    for spec in [
        limited("bad", 0, 60, None),
        limited("bad", 1, 0, None),
        limited("bad", 1, 60, Some("customer")),
    ] {
        assert_err!(store.job_create(&spec, at(0)).await, StoreError::Invalid(_));
    }
    assert_err!(store.job_get("bad").await, StoreError::NotFound { .. });
}

pub async fn concurrent_claims_never_start_more_than_the_limit_per_window(store: Arc<dyn Store>) {
    const STARTS: usize = 3;
    const KEYS: usize = 2;
    const ROUNDS: i64 = 4;
    const TASKS: usize = 6;
    create_job_from(
        &store,
        limited("crawl", STARTS as u32, 60, Some("payload.site")),
    )
    .await;
    for i in 0..STARTS * KEYS * ROUNDS as usize + 5 {
        let site = format!("site-{}", i % KEYS);
        enqueue_for(
            &store,
            "crawl",
            serde_json::json!({ "site": site }),
            (i % 7) as i64,
        )
        .await;
    }
    // Each round is one instant a window after the last: six claimers race at it, and each
    // key must have started exactly its limit in it, by what the claimers got.
    let mut ran = BTreeSet::new();
    for round in 0..ROUNDS {
        let now = at(10 + 60 * round);
        let got: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let claimed = race_claimers(&store, TASKS, 2, now, 10, {
            let got = Arc::clone(&got);
            move |batch| {
                for claimed in &batch {
                    let site = claimed.execution.payload.as_ref().expect("payload")["site"]
                        .as_str()
                        .expect("a site")
                        .to_owned();
                    *got.lock().expect("lock").entry(site).or_default() += 1;
                }
                std::future::ready(())
            }
        })
        .await;
        for claimed in claimed {
            assert!(ran.insert(claimed.execution.id), "started twice");
            finish(&store, &claimed, Outcome::Succeeded, now).await;
        }
        let got = got.lock().expect("lock").clone();
        let want: BTreeMap<String, usize> =
            (0..KEYS).map(|k| (format!("site-{k}"), STARTS)).collect();
        assert_eq!(
            got, want,
            "round {round}: each key started its limit, no more"
        );
    }
}

pub async fn a_claim_whose_instant_is_behind_the_rescuers_still_counts_the_starts_it_sees_live(
    store: Arc<dyn Store>,
) {
    // A claim reads its `now` before it waits for its key's lock; the rescuer's pass may run in
    // between with a later `now`, and must not have deleted a start that the claim, by its own
    // `now`, still has in the window.
    create_job_from(&store, limited("mail", 1, 60, None)).await;
    let first = enqueue(&store, "mail", at(0)).await.id;
    assert_eq!(started(&claim(&store, 10, at(10)).await), [first]);
    store
        .execution_rescue(at(71), 100)
        .await
        .expect("the rescuer's pass, a second after the start left its window");
    let late = enqueue(&store, "mail", at(68)).await.id;
    assert!(
        claim(&store, 10, at(69)).await.is_empty(),
        "at t = 69 the start of t = 10 is still in the window"
    );
    assert_eq!(store.execution_get(late).await.expect("get").run_at, at(70));
}
