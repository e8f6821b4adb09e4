//! Monitors: a cron that runs elsewhere pings a secret URL, kept only as a hash; each ping is
//! an execution of the monitor (trigger `ping`), and what pings may add is bounded.

use std::sync::Arc;
use std::time::Duration;

use panda_core::{JobName, JobSpec, Schedule, Status, Trigger};
use panda_store::{NewExecution, Ping, PingKind, SigningKey, Store, StoreError};

use super::support::*;

fn monitor_spec(name: &str) -> JobSpec {
    JobSpec::monitor(
        JobName::new(name).expect("a name"),
        Schedule::new("0 3 * * *"),
        Duration::from_secs(1800),
    )
}

fn ping(kind: PingKind) -> Ping {
    Ping { kind, body: None }
}

pub async fn a_monitors_url_is_made_with_it_opens_only_it_and_stops_when_rotated_or_deleted(
    store: Arc<dyn Store>,
) {
    let (job, token, url) = store
        .monitor_create(&monitor_spec("nightly-backup"), at(1))
        .await
        .expect("create");
    assert!(token.starts_with("png_") && token.len() > 60, "{token}");
    assert_eq!(url.created_at, at(1));
    assert_eq!(
        store.monitor_url("nightly-backup").await.expect("url"),
        Some(url)
    );
    assert_eq!(store.job_get("nightly-backup").await.expect("get"), job);
    let recorded = store
        .monitor_ping(&token, &ping(PingKind::Success), at(2))
        .await
        .expect("ping")
        .expect("opens");
    assert_eq!(
        (recorded.trigger, recorded.status, recorded.job_id),
        (Trigger::Ping, Status::Succeeded, job.id)
    );
    assert_eq!(
        store
            .monitor_ping("png_guess", &ping(PingKind::Success), at(2))
            .await
            .expect("ping"),
        None
    );
    // A job that is not a monitor has no URL to rotate; a monitor's old URL stops at once.
    create_job(&store, "plain").await;
    assert!(matches!(
        store.monitor_rotate("plain", at(3)).await,
        Err(StoreError::Invalid(_))
    ));
    let (rotated, _) = store
        .monitor_rotate("nightly-backup", at(3))
        .await
        .expect("rotate");
    assert_eq!(
        store
            .monitor_ping(&token, &ping(PingKind::Success), at(4))
            .await
            .expect("ping"),
        None,
        "the old URL"
    );
    assert!(
        store
            .monitor_ping(&rotated, &ping(PingKind::Success), at(4))
            .await
            .expect("ping")
            .is_some()
    );
    store
        .job_delete("nightly-backup", at(5))
        .await
        .expect("delete");
    assert_eq!(
        store
            .monitor_ping(&rotated, &ping(PingKind::Success), at(6))
            .await
            .expect("ping"),
        None,
        "a deleted monitor's URL opens nothing"
    );
    // Nothing is ever queued for a monitor: no enqueue, no run on a schedule.
    store
        .monitor_create(&monitor_spec("other"), at(7))
        .await
        .expect("create");
    assert!(matches!(
        store
            .execution_enqueue(&NewExecution::api("other"), at(8))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.webhook_rotate("other", SigningKey::Keep, at(8)).await,
        Err(StoreError::Invalid(_))
    ));
    // A zero grace is refused and nothing is created.
    let zero = JobSpec::monitor(
        JobName::new("zero").expect("a name"),
        Schedule::new("0 3 * * *"),
        Duration::ZERO,
    );
    assert!(matches!(
        store.monitor_create(&zero, at(9)).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.job_get("zero").await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn a_start_ping_opens_a_run_that_the_end_ping_finishes_with_its_duration(
    store: Arc<dyn Store>,
) {
    let (job, token, _) = store
        .monitor_create(&monitor_spec("backup"), at(0))
        .await
        .expect("create");
    let started = store
        .monitor_ping(
            &token,
            &Ping {
                kind: PingKind::Start,
                body: Some(b"starting\n".to_vec()),
            },
            at(10),
        )
        .await
        .expect("start")
        .expect("opens");
    assert_eq!(started.status, Status::Running);
    assert_eq!(started.started_at, Some(at(10)));
    // A second start while the run is open adds nothing.
    let again = store
        .monitor_ping(&token, &ping(PingKind::Start), at(11))
        .await
        .expect("start")
        .expect("opens");
    assert_eq!(again.id, started.id);
    let ended = store
        .monitor_ping(
            &token,
            &Ping {
                kind: PingKind::Exit(0),
                body: Some(b"done: 3 GiB\n".to_vec()),
            },
            at(70),
        )
        .await
        .expect("end")
        .expect("opens");
    assert_eq!(ended.id, started.id, "the end finishes the open run");
    assert_eq!(
        (ended.status, ended.exit_code, ended.finished_at),
        (Status::Succeeded, Some(0), Some(at(70)))
    );
    let history = executions_of(&store, "backup").await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(
        (history[0].started_at, history[0].finished_at),
        (Some(at(10)), Some(at(70)))
    );
    let log = store.log_read(started.id, None, 10).await.expect("log");
    let text: Vec<u8> = log.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(text, b"starting\ndone: 3 GiB\n");
    assert!(
        store.alert_inbox(10).await.expect("inbox").is_empty(),
        "a success is no failure"
    );
    let _ = job;
}

pub async fn a_failed_ping_goes_to_the_alert_inbox_and_repeats_within_a_second_are_one_run(
    store: Arc<dyn Store>,
) {
    let (_, token, _) = store
        .monitor_create(&monitor_spec("sync"), at(0))
        .await
        .expect("create");
    let failed = store
        .monitor_ping(&token, &ping(PingKind::Exit(3)), at(10))
        .await
        .expect("fail")
        .expect("opens");
    assert_eq!((failed.status, failed.exit_code), (Status::Failed, Some(3)));
    assert_eq!(
        failed.started_at, failed.finished_at,
        "no start: no duration"
    );
    let inbox = store.alert_inbox(10).await.expect("inbox");
    assert_eq!(
        inbox.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![failed.id]
    );
    // A caller that loops on its URL: the same outcome within a second is the same run.
    let mut ids = std::collections::BTreeSet::new();
    for ms in [0, 200, 400, 999] {
        let now = plus(at(20), Duration::from_millis(ms));
        let fail = store
            .monitor_ping(&token, &ping(PingKind::Fail), now)
            .await
            .expect("fail")
            .expect("opens");
        ids.insert(fail.id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let success = store
        .monitor_ping(
            &token,
            &ping(PingKind::Success),
            plus(at(20), Duration::from_millis(500)),
        )
        .await
        .expect("success")
        .expect("opens");
    assert_eq!(
        success.status,
        Status::Succeeded,
        "another outcome is another run"
    );
    assert_eq!(executions_of(&store, "sync").await.len(), 3);
}

pub async fn a_run_whose_end_never_came_times_out_after_the_monitors_timeout(
    store: Arc<dyn Store>,
) {
    let mut spec = monitor_spec("report");
    spec.timeout = Duration::from_secs(60);
    let (_, token, _) = store.monitor_create(&spec, at(0)).await.expect("create");
    let started = store
        .monitor_ping(&token, &ping(PingKind::Start), at(10))
        .await
        .expect("start")
        .expect("opens");
    assert!(
        store
            .monitor_close_stale(at(60))
            .await
            .expect("close")
            .is_empty(),
        "within its timeout"
    );
    let closed = store.monitor_close_stale(at(71)).await.expect("close");
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (closed[0].id, closed[0].status),
        (started.id, Status::TimedOut)
    );
    assert_eq!(
        store
            .alert_inbox(10)
            .await
            .expect("inbox")
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![started.id],
        "a timed-out run is a failure for the alerter"
    );
    // A start after a stale open run: that run times out, a new one opens.
    let second = store
        .monitor_ping(&token, &ping(PingKind::Start), at(100))
        .await
        .expect("start")
        .expect("opens");
    let third = store
        .monitor_ping(&token, &ping(PingKind::Start), at(200))
        .await
        .expect("start")
        .expect("opens");
    assert_ne!(second.id, third.id);
    assert_eq!(
        store.execution_get(second.id).await.expect("get").status,
        Status::TimedOut
    );
    // A deleted monitor's open run is cancelled.
    store.job_delete("report", at(210)).await.expect("delete");
    let closed = store.monitor_close_stale(at(211)).await.expect("close");
    assert_eq!(
        closed.iter().map(|e| (e.id, e.status)).collect::<Vec<_>>(),
        vec![(third.id, Status::Cancelled)]
    );
}

pub async fn start_pings_that_race_open_one_run(store: Arc<dyn Store>) {
    let (_, token, _) = store
        .monitor_create(&monitor_spec("racy"), at(0))
        .await
        .expect("create");
    let pings = (0..8).map(|i| {
        let store = Arc::clone(&store);
        let token = token.clone();
        tokio::spawn(async move {
            store
                .monitor_ping(&token, &ping(PingKind::Start), at(10 + i))
                .await
                .expect("start")
                .expect("opens")
                .id
        })
    });
    let mut ids = std::collections::BTreeSet::new();
    for ping in pings {
        ids.insert(ping.await.expect("joined"));
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(executions_of(&store, "racy").await.len(), 1);
}
