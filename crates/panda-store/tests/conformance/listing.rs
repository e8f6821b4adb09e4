//! Reading history: execution_list (newest first, keyset pages), execution_latest and the
//! newest executions of many jobs at once.

use std::sync::Arc;

use panda_core::{ExecutionId, Status, Trigger};
use panda_store::{DEFAULT_PAGE_SIZE, ExecutionFilter, NewExecution, Outcome, SlotDecision, Store};

use super::support::*;

fn id_list(executions: &[panda_core::Execution]) -> Vec<ExecutionId> {
    executions.iter().map(|e| e.id).collect()
}

pub async fn execution_list_is_newest_first(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(enqueue(&store, "resize", at(i)).await);
    }
    let page = store
        .execution_list(&ExecutionFilter::default())
        .await
        .expect("list");
    queued.reverse();
    assert_eq!(page.executions, queued);
    assert_eq!(page.next, None, "one page holds them all");
}

pub async fn execution_list_filters_by_job_and_status(store: Arc<dyn Store>) {
    create_job(&store, "alpha").await;
    create_job(&store, "beta").await;
    let a1 = run_to_success(&store, "alpha", at(0)).await;
    let b1 = enqueue(&store, "beta", at(1)).await;
    let a2 = enqueue(&store, "alpha", at(2)).await;
    store.execution_cancel(a2.id, at(3)).await.expect("cancel");
    let a3 = enqueue(&store, "alpha", at(4)).await;

    let list = |filter: ExecutionFilter| {
        let store = Arc::clone(&store);
        async move {
            let page = store.execution_list(&filter).await.expect("list");
            (id_list(&page.executions), page.next)
        }
    };
    let (all, _) = list(ExecutionFilter::default()).await;
    assert_eq!(all, [a3.id, a2.id, b1.id, a1.id]);

    let (alpha, _) = list(ExecutionFilter {
        job: Some("alpha".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(alpha, [a3.id, a2.id, a1.id]);

    let (queued, _) = list(ExecutionFilter {
        statuses: vec![Status::Queued],
        ..Default::default()
    })
    .await;
    assert_eq!(queued, [a3.id, b1.id]);

    let (ended, _) = list(ExecutionFilter {
        job: Some("alpha".into()),
        statuses: vec![Status::Succeeded, Status::Cancelled],
        ..Default::default()
    })
    .await;
    assert_eq!(ended, [a2.id, a1.id]);

    let (first_two, next) = list(ExecutionFilter {
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(first_two, [a3.id, a2.id]);
    assert!(next.is_some(), "more to come");

    let (none, next) = list(ExecutionFilter {
        job: Some("gamma".into()),
        ..Default::default()
    })
    .await;
    assert_eq!((none, next), (vec![], None));
}

pub async fn execution_list_limit_zero_is_the_default_page_and_huge_limits_are_capped(
    store: Arc<dyn Store>,
) {
    create_job(&store, "resize").await;
    for i in 0..60 {
        enqueue(&store, "resize", at(i)).await;
    }
    let default = store
        .execution_list(&ExecutionFilter::default())
        .await
        .expect("list");
    assert_eq!(default.executions.len(), DEFAULT_PAGE_SIZE as usize);
    assert!(default.next.is_some());

    let huge = store
        .execution_list(&ExecutionFilter {
            limit: u32::MAX,
            ..Default::default()
        })
        .await
        .expect("a huge limit is capped, not refused");
    assert_eq!((huge.executions.len(), huge.next), (60, None));
}

pub async fn execution_list_pages_are_stable_while_new_executions_arrive(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let mut originals = Vec::new();
    for i in 0..120 {
        originals.push(enqueue(&store, "resize", at(i)).await.id);
    }
    originals.reverse();

    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = store
            .execution_list(&ExecutionFilter {
                job: Some("resize".into()),
                before,
                limit: 25,
                ..Default::default()
            })
            .await
            .expect("list a page");
        pages += 1;
        assert!(page.executions.len() <= 25);
        seen.extend(id_list(&page.executions));
        // Newcomers are newer than the cursor, so they must not appear on later pages.
        enqueue(&store, "resize", at(1000 + pages)).await;
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(seen, originals, "every original once, in order");
    assert_eq!(pages, 5, "25 + 25 + 25 + 25 + 20");
}

pub async fn execution_latest_is_none_for_a_job_without_executions(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    create_job(&store, "other").await;
    enqueue(&store, "other", base()).await;
    assert_eq!(
        store.execution_latest("resize").await.expect("latest"),
        None
    );
}

pub async fn execution_latest_returns_the_newest_execution_that_was_not_skipped(
    store: Arc<dyn Store>,
) {
    let job = create_job_from(&store, cronjob_spec("nightly", "* * * * *")).await;
    let manual = run_to_success(&store, "nightly", base()).await;
    assert_eq!(
        store.execution_latest("nightly").await.expect("latest"),
        Some(manual)
    );

    let fired = store
        .slot_record(job.id, at(60), &SlotDecision::Fire, at(60))
        .await
        .expect("fire");
    store
        .slot_record(
            job.id,
            at(120),
            &SlotDecision::Skip {
                reason: "suspended".into(),
            },
            at(120),
        )
        .await
        .expect("skip");
    let latest = store
        .execution_latest("nightly")
        .await
        .expect("latest")
        .expect("one");
    assert_eq!(latest.id, fired.slot().execution_id);
    assert_eq!(latest.status, Status::Queued);

    // A retry is a new execution, so it becomes the newest.
    let claimed = claim_one(&store, at(121)).await;
    finish(&store, &claimed, Outcome::Failed, at(122)).await;
    let retry = executions_of(&store, "nightly").await[0].clone();
    assert_eq!(retry.attempt, 2);
    assert_eq!(
        store.execution_latest("nightly").await.expect("latest"),
        Some(retry)
    );
}

pub async fn execution_list_filters_by_trigger_and_by_run(store: Arc<dyn Store>) {
    create_job(&store, "flaky").await;
    let api = enqueue(&store, "flaky", at(0)).await;
    let manual = enqueue_request(
        &store,
        NewExecution {
            trigger: Trigger::Manual,
            ..NewExecution::api("flaky")
        },
        at(1),
    )
    .await;
    // The API execution fails once and is retried: two attempts of one run.
    let claimed = claim_one(&store, at(2)).await;
    assert_eq!(claimed.execution.id, api.id);
    let retry = finish(&store, &claimed, Outcome::Failed, at(3))
        .await
        .retry
        .expect("a second attempt");

    let list = |filter: ExecutionFilter| {
        let store = Arc::clone(&store);
        async move {
            id_list(
                &store
                    .execution_list(&filter)
                    .await
                    .expect("list")
                    .executions,
            )
        }
    };
    let only = |trigger| ExecutionFilter {
        job: Some("flaky".into()),
        trigger: Some(trigger),
        ..Default::default()
    };
    assert_eq!(list(only(Trigger::Api)).await, [api.id]);
    assert_eq!(list(only(Trigger::Manual)).await, [manual.id]);
    assert_eq!(list(only(Trigger::Retry)).await, [retry.id]);
    assert_eq!(list(only(Trigger::Schedule)).await, []);

    let run = ExecutionFilter {
        root: Some(api.id),
        ..Default::default()
    };
    assert_eq!(list(run).await, [retry.id, api.id], "newest attempt first");
    let lone = ExecutionFilter {
        root: Some(manual.id),
        ..Default::default()
    };
    assert_eq!(list(lone).await, [manual.id]);
}

pub async fn execution_recent_per_job_gives_each_jobs_newest_in_one_call(store: Arc<dyn Store>) {
    create_job_from(&store, cronjob_spec("alpha", "* * * * *")).await;
    create_job_from(&store, cronjob_spec("beta", "* * * * *")).await;
    create_job_from(&store, cronjob_spec("idle", "* * * * *")).await;
    create_job(&store, "queued-only").await;
    create_job_from(&store, cronjob_spec("gone", "* * * * *")).await;

    let mut alpha = Vec::new();
    for i in 0..5 {
        alpha.push(run_to_success(&store, "alpha", at(i)).await.id);
    }
    let beta = enqueue(&store, "beta", at(10)).await;
    enqueue(&store, "queued-only", at(11)).await;
    enqueue(&store, "gone", at(12)).await;
    store.job_delete("gone", at(13)).await.expect("delete");

    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let recent = store
        .execution_recent_per_job(&names(&["beta", "idle", "alpha", "nobody", "alpha"]), 3)
        .await
        .expect("recent");
    let got: Vec<(&str, ExecutionId, Status)> = recent
        .iter()
        .map(|e| (e.job_name.as_str(), e.id, e.status))
        .collect();
    assert_eq!(
        got,
        [
            ("alpha", alpha[4], Status::Succeeded),
            ("alpha", alpha[3], Status::Succeeded),
            ("alpha", alpha[2], Status::Succeeded),
            ("beta", beta.id, Status::Queued),
        ],
        "by job name, newest first, at most 3 a job; only the jobs asked for, each once"
    );
    let newest = &recent[0];
    assert_eq!(newest.trigger, Trigger::Api);
    assert_eq!(newest.attempt, 1);
    assert_eq!(newest.started_at, Some(at(4)));
    assert_eq!(newest.finished_at, Some(at(4)));

    let all = store
        .execution_recent_per_job(&names(&["alpha", "beta", "queued-only"]), 100)
        .await
        .expect("recent of three jobs");
    assert_eq!(all.len(), 7, "every execution of the three: 5 + 1 + 1");
    assert!(
        store
            .execution_recent_per_job(&[], 30)
            .await
            .expect("recent of no job")
            .is_empty(),
        "no job asked for, nothing"
    );
}

pub async fn execution_latest_per_job_gives_each_jobs_newest_run_skipping_skipped_slots(
    store: Arc<dyn Store>,
) {
    let nightly = create_job_from(&store, cronjob_spec("nightly", "* * * * *")).await;
    create_job_from(&store, cronjob_spec("idle", "* * * * *")).await;
    let suspended = create_job_from(&store, cronjob_spec("suspended", "* * * * *")).await;
    create_job(&store, "mailer").await;

    run_to_success(&store, "nightly", base()).await;
    let mailer = run_to_success(&store, "mailer", at(30)).await;
    let fired = store
        .slot_record(nightly.id, at(60), &SlotDecision::Fire, at(60))
        .await
        .expect("fire");
    let skip = SlotDecision::Skip {
        reason: "suspended".into(),
    };
    store
        .slot_record(nightly.id, at(120), &skip, at(120))
        .await
        .expect("skip");
    store
        .slot_record(suspended.id, at(120), &skip, at(120))
        .await
        .expect("skip");

    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let latest = store
        .execution_latest_per_job(&names(&[
            "nightly",
            "mailer",
            "idle",
            "suspended",
            "nobody",
            "nightly",
        ]))
        .await
        .expect("latest per job");
    let got: Vec<(&str, ExecutionId, Status)> = latest
        .iter()
        .map(|e| (e.job_name.as_str(), e.id, e.status))
        .collect();
    assert_eq!(
        got,
        [
            ("mailer", mailer.id, Status::Succeeded),
            ("nightly", fired.slot().execution_id, Status::Queued),
        ],
        "by job name, one each: the newest not skipped; nothing for a job that only skipped, \
         never ran or does not exist"
    );
    assert_eq!(latest[0].started_at, Some(at(30)));
    assert_eq!(latest[0].finished_at, Some(at(30)));
    assert_eq!(latest[1].started_at, None);
    for (name, brief) in ["mailer", "nightly"].iter().zip(&latest) {
        let one = store
            .execution_latest(name)
            .await
            .expect("latest")
            .expect("one");
        assert_eq!(one.id, brief.id, "what execution_latest gives for {name}");
    }
    assert!(
        store
            .execution_latest_per_job(&[])
            .await
            .expect("latest of no job")
            .is_empty(),
        "no job asked for, nothing"
    );
}

pub async fn queue_stats_count_due_waiting_and_running_per_queue(store: Arc<dyn Store>) {
    assert!(
        store.queue_stats(at(0)).await.expect("stats").is_empty(),
        "no work, no queues"
    );
    create_job(&store, "resize").await;
    let mut mail = job_spec("send");
    mail.queue = "mail".into();
    create_job_from(&store, mail).await;

    let done = run_to_success(&store, "resize", at(5)).await;
    assert_eq!(
        done.status,
        Status::Succeeded,
        "finished work is in no queue"
    );
    let first = enqueue(&store, "resize", at(10)).await;
    enqueue(&store, "resize", at(20)).await;
    let mut later = panda_store::NewExecution::api("resize");
    later.run_at = Some(at(500));
    enqueue_request(&store, later, at(21)).await;
    enqueue(&store, "send", at(30)).await;

    // One of the two due `resize` runs is claimed: it is running, not due.
    let claimed = claim_one(&store, at(40)).await;
    assert_eq!(
        claimed.execution.id, first.id,
        "the oldest due run goes first"
    );

    let stats = store.queue_stats(at(100)).await.expect("stats");
    let by_name: Vec<(&str, u64, u64, u64)> = stats
        .iter()
        .map(|q| (q.queue.as_str(), q.due, q.waiting, q.running))
        .collect();
    assert_eq!(by_name, vec![("default", 1, 1, 1), ("mail", 1, 0, 0)]);
    assert_eq!(stats[0].oldest_due_at, Some(at(20)));
    assert_eq!(stats[1].oldest_due_at, Some(at(30)));

    // Once the delayed run's time has come it is due, and the oldest due is still the older one.
    let stats = store.queue_stats(at(600)).await.expect("stats");
    assert_eq!((stats[0].due, stats[0].waiting), (2, 0));
    assert_eq!(stats[0].oldest_due_at, Some(at(20)));
}
