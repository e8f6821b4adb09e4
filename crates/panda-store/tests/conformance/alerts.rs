//! Alerts: failed attempts reach the alerter's inbox with their outcome, an incident is raised
//! once, and deliveries are claimed, retried and recorded.

use std::sync::Arc;
use std::time::Duration;

use panda_core::api::DeliveryState;
use panda_core::{AlertKind, NotifierKind, Status};
use panda_store::{DeliveryOutcome, NewAlert, Outcome, Store, StoreError};

use super::support::*;

/// Enqueues one execution of `job`, claims it and ends it as `outcome`.
async fn run_as(
    store: &Arc<dyn Store>,
    job: &str,
    outcome: Outcome,
    now: chrono::DateTime<chrono::Utc>,
) -> panda_core::Execution {
    let queued = enqueue(store, job, now).await;
    let claimed = claim_one(store, now).await;
    assert_eq!(claimed.execution.id, queued.id);
    finish(store, &claimed, outcome, now).await.execution
}

fn new_alert(job: &panda_core::Job, incident: &str, kind: AlertKind) -> NewAlert {
    NewAlert {
        incident: incident.into(),
        job_id: job.id,
        job: job.spec.name.to_string(),
        kind,
        execution_id: None,
        message: format!("{} {kind}", job.spec.name),
        body: serde_json::json!({"event": kind.as_str()}),
        notifiers: vec![
            (NotifierKind::Webhook, "http://127.0.0.1:9/hook".into()),
            (NotifierKind::Slack, "http://127.0.0.1:9/slack".into()),
        ],
    }
}

pub async fn failed_attempts_reach_the_alert_inbox_and_successes_do_not(store: Arc<dyn Store>) {
    create_job(&store, "sync").await;
    let ok = run_as(&store, "sync", Outcome::Succeeded, at(0)).await;
    let failed = run_as(&store, "sync", Outcome::Failed, at(10)).await;
    assert_eq!(failed.status, Status::Failed);
    // The retry of the failed run is due later; time it out.
    let retry = claim_one(&store, at(1000)).await;
    let timed_out = finish(&store, &retry, Outcome::TimedOut, at(1010));
    let third = timed_out.await;
    let timed_out = third.execution;
    assert_eq!(timed_out.status, Status::TimedOut);
    let cancelled = store
        .execution_cancel(third.retry.expect("a third attempt").id, at(1015))
        .await
        .expect("cancel");
    let rejected = run_as(&store, "sync", Outcome::Rejected, at(1030)).await;
    assert_eq!(rejected.status, Status::Dead);

    let inbox = store.alert_inbox(100).await.expect("inbox");
    let ids: Vec<_> = inbox.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        vec![failed.id, timed_out.id, rejected.id],
        "failures, oldest first; not {} (succeeded) nor {} (cancelled)",
        ok.id,
        cancelled.id
    );
    assert_eq!(store.alert_inbox(1).await.expect("inbox").len(), 1);

    store
        .alert_inbox_done(&[failed.id, timed_out.id])
        .await
        .expect("done");
    let left: Vec<_> = store
        .alert_inbox(100)
        .await
        .expect("inbox")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec![rejected.id]);
    store.alert_inbox_done(&[]).await.expect("nothing to do");
}

/// What `alert_raise` returns is what the store reads back later, to the microsecond both
/// backends keep, deliveries included.
pub async fn a_raised_alert_reads_back_as_it_was_returned(store: Arc<dyn Store>) {
    let job = create_job(&store, "sync").await;
    let now = at(5) + chrono::Duration::nanoseconds(123_456);
    let raised = store
        .alert_raise(&new_alert(&job, "sync:1", AlertKind::Failed), now)
        .await
        .expect("raise")
        .expect("a new alert");
    let listed = store.alert_list(Some("sync"), 0).await.expect("list");
    assert_eq!(listed, vec![raised.clone()]);
    let mut latest = store
        .alert_latest(job.id)
        .await
        .expect("latest")
        .expect("an alert");
    latest.deliveries = raised.deliveries.clone();
    assert_eq!(latest, raised);
}

pub async fn an_incident_is_raised_once_and_a_recovery_closes_it(store: Arc<dyn Store>) {
    let job = create_job(&store, "sync").await;
    let other = create_job(&store, "other").await;
    assert!(store.alert_latest(job.id).await.expect("latest").is_none());
    assert!(store.alert_open().await.expect("open").is_empty());

    let raised = store
        .alert_raise(&new_alert(&job, "sync:1", AlertKind::Failed), at(5))
        .await
        .expect("raise")
        .expect("a new alert");
    assert_eq!(raised.kind, AlertKind::Failed);
    assert_eq!(raised.deliveries.len(), 2);
    assert!(
        raised
            .deliveries
            .iter()
            .all(|d| d.state == DeliveryState::Pending && d.next_attempt_at == Some(at(5)))
    );
    let again = store
        .alert_raise(&new_alert(&job, "sync:1", AlertKind::Dead), at(6))
        .await
        .expect("raise");
    assert_eq!(again, None, "the same incident is not raised twice");

    store
        .alert_raise(&new_alert(&other, "other:1", AlertKind::Late), at(7))
        .await
        .expect("raise")
        .expect("a new alert");
    let open: Vec<(String, AlertKind)> = store
        .alert_open()
        .await
        .expect("open")
        .into_iter()
        .map(|a| (a.job, a.kind))
        .collect();
    assert_eq!(
        open,
        vec![
            ("sync".to_owned(), AlertKind::Failed),
            ("other".to_owned(), AlertKind::Late)
        ]
    );

    store
        .alert_raise(&new_alert(&job, "sync:2", AlertKind::Recovered), at(8))
        .await
        .expect("raise")
        .expect("a new alert");
    let latest = store
        .alert_latest(job.id)
        .await
        .expect("latest")
        .expect("one");
    assert_eq!(latest.kind, AlertKind::Recovered);
    let open: Vec<String> = store
        .alert_open()
        .await
        .expect("open")
        .into_iter()
        .map(|a| a.job)
        .collect();
    assert_eq!(
        open,
        vec!["other".to_owned()],
        "the recovery closed sync's incident"
    );

    let listed = store.alert_list(Some("sync"), 0).await.expect("list");
    let kinds: Vec<AlertKind> = listed.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        vec![AlertKind::Recovered, AlertKind::Failed],
        "newest first"
    );
    assert_eq!(listed[1].deliveries.len(), 2);
    assert_eq!(listed[1].body, serde_json::json!({"event": "failed"}));
    assert_eq!(store.alert_list(None, 0).await.expect("list").len(), 3);
    assert_eq!(store.alert_list(None, 1).await.expect("list").len(), 1);
}

pub async fn deliveries_are_claimed_retried_and_recorded(store: Arc<dyn Store>) {
    let job = create_job(&store, "sync").await;
    let mut alert = new_alert(&job, "sync:1", AlertKind::Failed);
    alert.notifiers.truncate(1);
    store
        .alert_raise(&alert, at(0))
        .await
        .expect("raise")
        .expect("a new alert");
    let hold = Duration::from_secs(60);

    let due = store
        .alert_deliveries_due(at(1), 10, hold)
        .await
        .expect("due");
    assert_eq!(due.len(), 1);
    let delivery = due[0].delivery.clone();
    assert_eq!(
        delivery.attempts, 1,
        "counts the attempt it was claimed for"
    );
    assert_eq!(due[0].alert.kind, AlertKind::Failed);
    assert_eq!(due[0].alert.job, "sync");
    assert!(
        store
            .alert_deliveries_due(at(2), 10, hold)
            .await
            .expect("due")
            .is_empty(),
        "held while one attempt is under way"
    );

    store
        .alert_delivery_record(
            delivery.id,
            &DeliveryOutcome::Retry {
                error: "HTTP 500".into(),
                at: at(30),
            },
            at(3),
        )
        .await
        .expect("record");
    assert!(
        store
            .alert_deliveries_due(at(29), 10, hold)
            .await
            .expect("due")
            .is_empty()
    );
    let due = store
        .alert_deliveries_due(at(30), 10, hold)
        .await
        .expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].delivery.attempts, 2);
    assert_eq!(due[0].delivery.last_error.as_deref(), Some("HTTP 500"));
    store
        .alert_delivery_record(delivery.id, &DeliveryOutcome::Delivered, at(31))
        .await
        .expect("record");

    let listed = store.alert_list(None, 0).await.expect("list");
    let recorded = &listed[0].deliveries[0];
    assert_eq!(recorded.state, DeliveryState::Delivered);
    assert_eq!(recorded.delivered_at, Some(at(31)));
    assert_eq!(recorded.attempts, 2);
    assert!(
        store
            .alert_deliveries_due(at(999), 10, hold)
            .await
            .expect("due")
            .is_empty()
    );

    // One that keeps failing is given up, and stays listed as failed.
    let mut second = new_alert(&job, "sync:2", AlertKind::Dead);
    second.notifiers.truncate(1);
    store.alert_raise(&second, at(40)).await.expect("raise");
    let due = store
        .alert_deliveries_due(at(40), 10, hold)
        .await
        .expect("due");
    store
        .alert_delivery_record(
            due[0].delivery.id,
            &DeliveryOutcome::GaveUp {
                error: "connection refused".into(),
            },
            at(41),
        )
        .await
        .expect("record");
    let listed = store.alert_list(None, 1).await.expect("list");
    assert_eq!(listed[0].deliveries[0].state, DeliveryState::Failed);
    assert!(
        store
            .alert_deliveries_due(at(9999), 10, hold)
            .await
            .expect("due")
            .is_empty()
    );

    assert_err!(
        store
            .alert_delivery_record(uuid::Uuid::now_v7(), &DeliveryOutcome::Delivered, at(50))
            .await,
        StoreError::NotFound { .. }
    );
}
