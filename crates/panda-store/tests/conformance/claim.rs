//! Claim: which executions a worker gets, and that each is handed out once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use panda_core::{ConcurrencyPolicy, Status};
use panda_store::{ClaimRequest, ExecutionFilter, Finish, NewExecution, Outcome, Store};

use super::support::*;

pub async fn claim_returns_running_executions_with_a_lease(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    let queued = enqueue(&store, "resize", base()).await;
    let request = ClaimRequest {
        worker_id: "worker-7".into(),
        queues: vec!["default".into()],
        limit: 1,
        lease_ttl: Duration::from_secs(45),
    };

    let mut claimed = store.execution_claim(&request, at(5)).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    let claimed = claimed.pop().expect("one");
    let e = &claimed.execution;
    assert_eq!((e.id, e.status, e.attempt), (queued.id, Status::Running, 1));
    assert_eq!(e.started_at, Some(at(5)));
    assert_eq!(e.worker_id.as_deref(), Some("worker-7"));
    assert_eq!(e.lease_expires_at, Some(at(50)));
    assert!(!e.cancel_requested);
    assert_eq!(claimed.lease.execution_id, queued.id);
    assert_eq!(claimed.lease.expires_at, at(50));
    assert_eq!(store.execution_get(queued.id).await.expect("get"), *e);

    enqueue(&store, "resize", at(6)).await;
    let other = claim_one(&store, at(7)).await;
    assert_ne!(
        other.lease.token, claimed.lease.token,
        "each lease has its own token"
    );
}

pub async fn claim_takes_at_most_limit_executions(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    for i in 0..5 {
        enqueue(&store, "resize", at(i)).await;
    }
    assert_eq!(claim(&store, 3, at(10)).await.len(), 3);
    assert_eq!(claim(&store, 3, at(10)).await.len(), 2);
    assert!(claim(&store, 3, at(10)).await.is_empty());
}

pub async fn claim_takes_only_from_the_requested_queues(store: Arc<dyn Store>) {
    let mut by_queue = Vec::new();
    for queue in ["alpha", "beta", "gamma"] {
        let mut spec = job_spec(&format!("job-{queue}"));
        spec.queue = queue.into();
        create_job_from(&store, spec).await;
        by_queue.push(enqueue(&store, &format!("job-{queue}"), base()).await);
    }
    let request = |queues: &[&str]| ClaimRequest {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        ..claim_request(10)
    };

    let claimed = store
        .execution_claim(&request(&["alpha", "gamma"]), at(1))
        .await
        .expect("claim");
    let claimed: BTreeSet<_> = claimed.iter().map(|c| c.execution.id).collect();
    assert_eq!(claimed, BTreeSet::from([by_queue[0].id, by_queue[2].id]));
    assert_eq!(
        store
            .execution_get(by_queue[1].id)
            .await
            .expect("get")
            .status,
        Status::Queued
    );
    assert!(
        claim(&store, 10, at(1)).await.is_empty(),
        "nothing in default"
    );

    let beta = store
        .execution_claim(&request(&["beta"]), at(2))
        .await
        .expect("claim");
    assert_eq!(
        beta.iter().map(|c| c.execution.id).collect::<Vec<_>>(),
        [by_queue[1].id]
    );
}

pub async fn claim_skips_executions_scheduled_in_the_future(store: Arc<dyn Store>) {
    create_job(&store, "reminder").await;
    let mut request = NewExecution::api("reminder");
    request.run_at = Some(at(60));
    let later = enqueue_request(&store, request, base()).await;

    assert!(claim(&store, 10, base()).await.is_empty());
    assert!(claim(&store, 10, at(59)).await.is_empty());
    let claimed = claim_one(&store, at(60)).await;
    assert_eq!(claimed.execution.id, later.id, "due at its run_at");
}

pub async fn claim_orders_by_priority_then_run_at(store: Arc<dyn Store>) {
    create_job(&store, "work").await;
    let mut urgent = job_spec("urgent");
    urgent.priority = 3;
    create_job_from(&store, urgent).await;
    let with_priority = |priority| NewExecution {
        priority: Some(priority),
        ..NewExecution::api("work")
    };

    let low = enqueue_request(&store, with_priority(-1), at(0)).await;
    let normal = enqueue_request(&store, with_priority(0), at(10)).await;
    let high_early = enqueue_request(&store, with_priority(5), at(20)).await;
    let high_late = enqueue_request(&store, with_priority(5), at(30)).await;
    let from_job = enqueue(&store, "urgent", at(40)).await;

    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(claim_one(&store, at(100)).await.execution.id);
    }
    assert_eq!(
        order,
        [high_early.id, high_late.id, from_job.id, normal.id, low.id]
    );
}

pub async fn claimed_executions_are_not_claimed_again(store: Arc<dyn Store>) {
    create_job(&store, "resize").await;
    enqueue(&store, "resize", base()).await;
    claim_one(&store, at(1)).await;
    assert!(claim(&store, 10, at(2)).await.is_empty());
    assert!(
        claim(&store, 10, at(30)).await.is_empty(),
        "not while its lease holds"
    );
}

pub async fn concurrent_claims_take_every_execution_exactly_once(store: Arc<dyn Store>) {
    const TOTAL: usize = 2000;
    const TASKS: usize = 8;
    create_job(&store, "bulk").await;

    // Enqueue from several tasks too, so the set-up is not 2,000 round trips in a row.
    let enqueuers: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut queued = Vec::new();
                for _ in 0..TOTAL / TASKS {
                    queued.push(enqueue(&store, "bulk", base()).await.id);
                }
                queued
            })
        })
        .collect();
    let mut queued = BTreeSet::new();
    for task in enqueuers {
        queued.extend(task.await.expect("enqueue task"));
    }
    assert_eq!(queued.len(), TOTAL);

    let claimers: Vec<_> = (0..TASKS)
        .map(|worker| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let request = ClaimRequest {
                    worker_id: format!("worker-{worker}"),
                    limit: 25,
                    ..claim_request(25)
                };
                let mut claimed = Vec::new();
                loop {
                    let batch = store
                        .execution_claim(&request, at(1))
                        .await
                        .expect("a concurrent claim succeeds");
                    if batch.is_empty() {
                        return claimed;
                    }
                    assert!(batch.len() <= 25, "limit respected");
                    for c in &batch {
                        assert_eq!(c.execution.status, Status::Running);
                        assert_eq!(c.execution.worker_id.as_ref(), Some(&request.worker_id));
                    }
                    claimed.extend(batch);
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in claimers {
        claimed.extend(task.await.expect("claim task"));
    }

    let mut seen = BTreeSet::new();
    for c in &claimed {
        assert!(
            seen.insert(c.execution.id),
            "claimed twice: {}",
            c.execution.id
        );
    }
    assert_eq!(seen.len(), TOTAL, "none lost");
    assert_eq!(seen, queued);

    for chunk in claimed.chunks(100) {
        let batch: Vec<Finish> = chunk
            .iter()
            .map(|c| finish_of(c, Outcome::Succeeded))
            .collect();
        let results = store
            .execution_finish_many(&batch, at(2))
            .await
            .expect("finish a batch");
        assert_eq!(results.len(), batch.len());
        for result in results {
            let finished = result.expect("each finish is accepted");
            assert_eq!(finished.execution.status, Status::Succeeded);
            assert_eq!(finished.retry, None);
        }
    }
    let succeeded = list_every(
        &store,
        ExecutionFilter {
            job: Some("bulk".into()),
            statuses: vec![Status::Succeeded],
            ..ExecutionFilter::default()
        },
    )
    .await;
    assert_eq!(ids(&succeeded), queued, "all {TOTAL} succeeded");
    assert_eq!(executions_of(&store, "bulk").await.len(), TOTAL);
}

pub async fn a_claim_from_several_queues_takes_them_in_claim_order_across_them(
    store: Arc<dyn Store>,
) {
    // Two queues served, one not: the served ones' executions interleave by priority and due
    // time, and the claim takes the best `limit` of them whichever queue they wait in.
    let mut ids = std::collections::BTreeMap::new();
    for (queue, priority, due) in [
        ("alpha", 0, 1),
        ("beta", 5, 3),
        ("alpha", 5, 2),
        ("beta", 0, 0),
        ("gamma", 9, 0),
        ("alpha", 1, 4),
    ] {
        let name = format!("job-{queue}-{priority}-{due}");
        let mut spec = job_spec(&name);
        spec.queue = queue.into();
        spec.priority = priority;
        create_job_from(&store, spec).await;
        let mut request = NewExecution::api(&name);
        request.run_at = Some(at(due));
        let e = enqueue_request(&store, request, base()).await;
        ids.insert(e.id, name);
    }
    let request = ClaimRequest {
        queues: vec!["alpha".into(), "beta".into()],
        ..claim_request(4)
    };
    let claimed = store
        .execution_claim(&request, at(10))
        .await
        .expect("claim");
    let names: Vec<&str> = claimed
        .iter()
        .map(|c| ids[&c.execution.id].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "job-alpha-5-2",
            "job-beta-5-3",
            "job-alpha-1-4",
            "job-beta-0-0"
        ],
        "priority first, then due time, across the served queues; gamma untouched"
    );
}

pub async fn a_claim_passes_over_work_not_yet_due_at_every_priority(store: Arc<dyn Store>) {
    // At each priority, work due later waits beside work due now, and the highest priority
    // holds only work due later: the claim takes the due work, in claim order, whether it
    // claims from one queue, from several or from every queue, and whether its candidates
    // allow overlap (the one-statement claim) or include a `forbid` job (the full claim).
    for policy in [ConcurrencyPolicy::Allow, ConcurrencyPolicy::Forbid] {
        let (alpha, beta) = match policy {
            ConcurrencyPolicy::Forbid => ("alpha-forbid", "beta-forbid"),
            _ => ("alpha-allow", "beta-allow"),
        };
        let mut names = std::collections::BTreeMap::new();
        for (queue, priority, due) in [
            (alpha, 9, 20),
            (alpha, 9, 30),
            (alpha, 4, 25),
            (alpha, 4, 2),
            (beta, 4, 40),
            (beta, 4, 1),
            (alpha, 0, 50),
            (alpha, 0, 3),
            (beta, -2, 0),
            (beta, -2, 60),
        ] {
            let name = format!("job-{queue}-{priority}-{due}");
            let mut spec = job_spec_with(&name, policy);
            spec.queue = queue.into();
            spec.priority = priority;
            create_job_from(&store, spec).await;
            let mut request = NewExecution::api(&name);
            request.run_at = Some(at(due));
            let e = enqueue_request(&store, request, base()).await;
            names.insert(e.id, name);
        }
        // The claim from every queue comes last, when only the lowest priority's due work is
        // left (the previous round's due work is running by then).
        let claims: [(Vec<String>, u32, Vec<String>); 3] = [
            (
                vec![alpha.into()],
                2,
                vec![format!("job-{alpha}-4-2"), format!("job-{alpha}-0-3")],
            ),
            (vec![beta.into()], 1, vec![format!("job-{beta}-4-1")]),
            (Vec::new(), 5, vec![format!("job-{beta}--2-0")]),
        ];
        for (queues, limit, expected) in claims {
            let request = ClaimRequest {
                queues: queues.clone(),
                ..claim_request(limit)
            };
            let claimed = store
                .execution_claim(&request, at(10))
                .await
                .expect("claim");
            let got: Vec<String> = claimed
                .iter()
                .map(|c| names[&c.execution.id].clone())
                .collect();
            assert_eq!(got, expected, "{policy:?}, queues {queues:?}");
        }
        let left: Vec<String> = list_every(&store, ExecutionFilter::default())
            .await
            .into_iter()
            .filter(|e| e.status == Status::Queued && names.contains_key(&e.id))
            .map(|e| names[&e.id].clone())
            .collect();
        assert_eq!(
            left.len(),
            6,
            "{policy:?}: only the work due later is left queued, got {left:?}"
        );
        assert!(
            left.iter().all(|name| {
                let due = name.rsplit('-').next().and_then(|d| d.parse::<i64>().ok());
                due.is_some_and(|due| due >= 20)
            }),
            "{policy:?}: {left:?}"
        );
    }
}
