//! The Alerter against both store backends and a real HTTP receiver (wiremock): a scripted
//! sequence of outcomes raises exactly the expected alerts, a receiver that fails once gets the
//! alert once after a retry, a receiver that hangs holds nothing up, and missed slots and long
//! runs are noticed. Time is a [`TestClock`]; the store calls are the real ones.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use panda_core::api::DeliveryState;
use panda_core::{
    AlertKind, AlertPolicy, Clock, ConcurrencyPolicy, Execution, JobName, JobSpec, RetryPolicy,
    RuntimeSpec, Schedule, Status, TestClock,
};
use panda_engine::{Alerter, AlerterConfig, SIGNATURE_HEADER, signature};
use panda_store::testing::TestStore;
use panda_store::{
    ClaimRequest, Finish, LogChunk, LogStream, NewExecution, Outcome, Ping, PingKind, SlotDecision,
    Store,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

panda_store::backends! {
    three_failures_in_a_row_raise_one_alert_and_a_success_one_recovery,
    a_receiver_that_fails_once_gets_the_alert_once_after_a_retry,
    a_receiver_that_hangs_holds_up_nothing,
    a_missed_cron_slot_and_a_long_run_are_noticed,
    a_monitor_whose_pings_stop_raises_one_missed_then_recovered_and_a_failed_ping_failed,
}

const SECRET: &str = "s3cret";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("a valid instant")
}

fn job(name: &str, alerts: AlertPolicy) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("a valid name"),
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.retry = RetryPolicy {
        max_attempts: 3,
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(2),
    };
    spec.alerts = alerts;
    spec
}

fn config(hook: &str) -> AlerterConfig {
    AlerterConfig {
        webhooks: vec![hook.to_owned()],
        signing_secret: Some(SECRET.into()),
        dashboard_url: Some("http://panda.example".into()),
        request_timeout: Duration::from_millis(500),
        ..AlerterConfig::default()
    }
}

fn alerter(store: &Arc<dyn Store>, clock: &Arc<TestClock>, config: AlerterConfig) -> Alerter {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Alerter::new(
        Arc::clone(store),
        Arc::clone(clock) as Arc<dyn Clock>,
        config,
    )
    .expect("client")
}

/// Claims the one due execution and ends it as `outcome`, `exit_code` 3 when it failed; the
/// clock then moves on far enough for any retry to be due.
async fn run_once(store: &Arc<dyn Store>, clock: &TestClock, outcome: Outcome) -> Execution {
    let now = clock.now();
    let claimed = store
        .execution_claim(
            &ClaimRequest {
                worker_id: "w1".into(),
                queues: vec!["default".into()],
                limit: 1,
                lease_ttl: Duration::from_secs(60),
            },
            now,
        )
        .await
        .expect("claim")
        .pop()
        .expect("one execution due");
    store
        .log_append(
            claimed.execution.id,
            &[LogChunk {
                seq: 0,
                stream: LogStream::Stderr,
                at: now,
                data: format!("attempt {} says hello\n", claimed.execution.attempt).into_bytes(),
            }],
        )
        .await
        .expect("log");
    clock.advance(chrono::Duration::seconds(1));
    let finished = store
        .execution_finish(
            &Finish {
                execution_id: claimed.execution.id,
                token: claimed.lease.token,
                outcome,
                exit_code: (outcome == Outcome::Failed).then_some(3),
                reason: None,
                image_digest: None,
            },
            clock.now(),
        )
        .await
        .expect("finish");
    clock.advance(chrono::Duration::seconds(10));
    finished.execution
}

async fn enqueue(store: &Arc<dyn Store>, clock: &TestClock, job: &str) -> Execution {
    store
        .execution_enqueue(&NewExecution::api(job), clock.now())
        .await
        .expect("enqueue")
        .execution
}

/// Judges, then delivers what is due and waits for the attempts.
async fn judge_and_deliver(alerter: &mut Alerter) -> Vec<AlertKind> {
    let raised = alerter.judge().await.expect("judge");
    alerter.deliver().await.expect("deliver");
    alerter.wait_for_deliveries().await;
    raised.iter().map(|a| a.kind).collect()
}

/// The bodies the receiver got, checking each one's signature.
async fn received(server: &MockServer) -> Vec<serde_json::Value> {
    let requests = server.received_requests().await.expect("recording is on");
    requests
        .iter()
        .map(|r| {
            let signed = r
                .headers
                .get(SIGNATURE_HEADER)
                .expect("a signed body")
                .to_str()
                .expect("ASCII");
            assert_eq!(signed, signature(SECRET, &r.body), "the signature matches");
            serde_json::from_slice(&r.body).expect("a JSON body")
        })
        .collect()
}

async fn three_failures_in_a_row_raise_one_alert_and_a_success_one_recovery(test: &TestStore) {
    let store = Arc::clone(&test.store);
    let clock = Arc::new(TestClock::new(start()));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let policy = AlertPolicy {
        after_failures: Some(3),
        ..AlertPolicy::default()
    };
    store
        .job_create(&job("reports", policy), clock.now())
        .await
        .expect("create");
    let mut alerter = alerter(&store, &clock, config(&format!("{}/hook", server.uri())));

    // One run, three attempts, each failing: one alert, when the third fails.
    let first = enqueue(&store, &clock, "reports").await;
    for attempt in 1..=3 {
        let ended = run_once(&store, &clock, Outcome::Failed).await;
        assert_eq!(ended.attempt, attempt);
        let raised = judge_and_deliver(&mut alerter).await;
        if attempt < 3 {
            assert_eq!(raised, vec![], "attempt {attempt} is below the threshold");
        } else {
            assert_eq!(ended.status, Status::Dead);
            assert_eq!(raised, vec![AlertKind::Dead], "the third failure in a row");
        }
    }
    // Another failing run while the incident is open: nothing new.
    enqueue(&store, &clock, "reports").await;
    run_once(&store, &clock, Outcome::Failed).await;
    assert_eq!(judge_and_deliver(&mut alerter).await, vec![]);
    // Its retry succeeds: one recovery.
    let success = run_once(&store, &clock, Outcome::Succeeded).await;
    assert_eq!(success.status, Status::Succeeded);
    assert_eq!(
        judge_and_deliver(&mut alerter).await,
        vec![AlertKind::Recovered]
    );
    assert_eq!(
        judge_and_deliver(&mut alerter).await,
        vec![],
        "recovered once"
    );
    // Two failures after the recovery are below the threshold again.
    enqueue(&store, &clock, "reports").await;
    run_once(&store, &clock, Outcome::Failed).await;
    run_once(&store, &clock, Outcome::Failed).await;
    assert_eq!(judge_and_deliver(&mut alerter).await, vec![]);

    let bodies = received(&server).await;
    let events: Vec<&str> = bodies
        .iter()
        .map(|b| b["event"].as_str().expect("an event"))
        .collect();
    assert_eq!(events, vec!["dead", "recovered"], "exactly these webhooks");
    let dead = &bodies[0];
    assert_eq!(dead["job"], "reports");
    assert_eq!(dead["execution"]["attempt"], 3);
    assert_eq!(dead["execution"]["exit_code"], 3);
    assert_eq!(dead["execution"]["status"], "dead");
    assert_ne!(dead["execution"]["id"], serde_json::json!(first.id));
    assert_eq!(
        dead["log_tail"],
        serde_json::json!(["attempt 3 says hello"])
    );
    assert_eq!(
        dead["dashboard_url"],
        format!(
            "http://panda.example/executions/{}",
            dead["execution"]["id"].as_str().expect("id")
        )
    );
    assert_eq!(bodies[1]["execution"]["status"], "succeeded");

    let listed = store.alert_list(Some("reports"), 0).await.expect("list");
    let states: Vec<(AlertKind, DeliveryState)> = listed
        .iter()
        .map(|a| (a.kind, a.deliveries[0].state))
        .collect();
    assert_eq!(
        states,
        vec![
            (AlertKind::Recovered, DeliveryState::Delivered),
            (AlertKind::Dead, DeliveryState::Delivered)
        ]
    );
}

async fn a_receiver_that_fails_once_gets_the_alert_once_after_a_retry(test: &TestStore) {
    let store = Arc::clone(&test.store);
    let clock = Arc::new(TestClock::new(start()));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    let mut spec = job("sync", AlertPolicy::default());
    spec.retry.max_attempts = 1;
    store.job_create(&spec, clock.now()).await.expect("create");
    let mut alerter = alerter(&store, &clock, config(&format!("{}/hook", server.uri())));

    enqueue(&store, &clock, "sync").await;
    run_once(&store, &clock, Outcome::Failed).await;
    assert_eq!(judge_and_deliver(&mut alerter).await, vec![AlertKind::Dead]);
    let listed = store.alert_list(None, 0).await.expect("list");
    let delivery = &listed[0].deliveries[0];
    assert_eq!(delivery.state, DeliveryState::Pending, "{delivery:?}");
    assert_eq!(
        delivery.last_error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    let retry_at = delivery.next_attempt_at.expect("a retry time");
    assert!(
        retry_at <= clock.now() + chrono::Duration::seconds(2),
        "backoff starts at 2s"
    );

    // Not before its time...
    assert_eq!(
        alerter.deliver().await.expect("deliver"),
        usize::from(retry_at <= clock.now())
    );
    alerter.wait_for_deliveries().await;
    // ...and once it is due, it goes through.
    clock.advance(chrono::Duration::seconds(3));
    alerter.deliver().await.expect("deliver");
    alerter.wait_for_deliveries().await;
    let listed = store.alert_list(None, 0).await.expect("list");
    assert_eq!(listed.len(), 1, "one alert");
    let delivery = &listed[0].deliveries[0];
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!(delivery.attempts, 2);
    let requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), 2, "one refused, one accepted");
    assert_eq!(
        requests[0].body, requests[1].body,
        "the same alert both times"
    );
    clock.advance(chrono::Duration::seconds(3600));
    alerter.deliver().await.expect("deliver");
    alerter.wait_for_deliveries().await;
    assert_eq!(
        server.received_requests().await.expect("on").len(),
        2,
        "never again"
    );
}

async fn a_receiver_that_hangs_holds_up_nothing(test: &TestStore) {
    let store = Arc::clone(&test.store);
    let clock = Arc::new(TestClock::new(start()));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&server)
        .await;
    let mut spec = job("sync", AlertPolicy::default());
    spec.retry.max_attempts = 1;
    store.job_create(&spec, clock.now()).await.expect("create");
    let mut alerter = alerter(&store, &clock, config(&format!("{}/hook", server.uri())));

    enqueue(&store, &clock, "sync").await;
    run_once(&store, &clock, Outcome::Failed).await;
    // A hang guard, not a timing assertion: deliver() only starts the attempt.
    let raised = tokio::time::timeout(Duration::from_secs(5), async {
        let raised = alerter.judge().await.expect("judge");
        assert_eq!(alerter.deliver().await.expect("deliver"), 1);
        raised
    })
    .await
    .expect("judging and starting a delivery do not wait for the receiver");
    assert_eq!(raised.len(), 1);
    alerter.wait_for_deliveries().await;
    let listed = store.alert_list(None, 0).await.expect("list");
    let delivery = &listed[0].deliveries[0];
    assert_eq!(delivery.state, DeliveryState::Pending);
    assert!(
        delivery
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("no answer within")),
        "{delivery:?}"
    );
}

async fn a_missed_cron_slot_and_a_long_run_are_noticed(test: &TestStore) {
    let store = Arc::clone(&test.store);
    let clock = Arc::new(TestClock::new(start()));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let mut cron = job(
        "nightly",
        AlertPolicy {
            late_after: Some(Duration::from_secs(60)),
            ..AlertPolicy::default()
        },
    );
    cron.schedule = Some(Schedule::new("*/5 * * * *"));
    store.job_create(&cron, clock.now()).await.expect("create");
    let mut long = job(
        "slow",
        AlertPolicy {
            running_longer_than: Some(Duration::from_secs(600)),
            ..AlertPolicy::default()
        },
    );
    long.retry.max_attempts = 1;
    store.job_create(&long, clock.now()).await.expect("create");
    let mut queued = cron.clone();
    queued.name = JobName::new("queued-cron").expect("a valid name");
    queued.queue = "cron".into();
    let queued = store
        .job_create(&queued, clock.now())
        .await
        .expect("create");
    let mut alerter = alerter(&store, &clock, config(&format!("{}/hook", server.uri())));

    // 12:05 comes and goes: no node records `nightly`'s slot; `queued-cron`'s is recorded and
    // queued, but nothing starts it.
    clock.advance(chrono::Duration::seconds(5 * 60));
    store
        .slot_record(queued.id, clock.now(), &SlotDecision::Fire, clock.now())
        .await
        .expect("record the slot");
    clock.advance(chrono::Duration::seconds(30));
    assert_eq!(
        alerter.watch().await.expect("watch"),
        vec![],
        "within its grace"
    );
    clock.advance(chrono::Duration::seconds(60));
    let raised = alerter.watch().await.expect("watch");
    let mut seen: Vec<(String, AlertKind)> =
        raised.iter().map(|a| (a.job.clone(), a.kind)).collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            ("nightly".to_owned(), AlertKind::Missed),
            ("queued-cron".to_owned(), AlertKind::Late)
        ]
    );
    for alert in &raised {
        assert!(alert.message.contains("12:05:00"), "{}", alert.message);
    }
    assert_eq!(
        alerter.watch().await.expect("watch"),
        vec![],
        "each slot is judged once"
    );

    // A run that goes on and on.
    enqueue(&store, &clock, "slow").await;
    store
        .execution_claim(
            &ClaimRequest {
                worker_id: "w1".into(),
                queues: vec!["default".into()],
                limit: 1,
                lease_ttl: Duration::from_secs(3600),
            },
            clock.now(),
        )
        .await
        .expect("claim");
    clock.advance(chrono::Duration::seconds(300));
    assert_eq!(alerter.watch().await.expect("watch"), vec![]);
    clock.advance(chrono::Duration::seconds(301));
    let raised = alerter.watch().await.expect("watch");
    assert_eq!(
        raised.iter().map(|a| a.kind).collect::<Vec<_>>(),
        vec![AlertKind::LongRunning]
    );
    assert_eq!(
        alerter.watch().await.expect("watch"),
        vec![],
        "one per incident"
    );

    alerter.deliver().await.expect("deliver");
    alerter.wait_for_deliveries().await;
    let bodies: Vec<String> = received(&server)
        .await
        .iter()
        .map(|b| b["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut bodies = bodies;
    bodies.sort();
    assert_eq!(bodies, vec!["late", "long_running", "missed"]);
}

async fn a_monitor_whose_pings_stop_raises_one_missed_then_recovered_and_a_failed_ping_failed(
    test: &TestStore,
) {
    let store = Arc::clone(&test.store);
    let clock = Arc::new(TestClock::new(start()));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let spec = JobSpec::monitor(
        JobName::new("nightly-backup").expect("a valid name"),
        Schedule::new("*/5 * * * *"),
        Duration::from_secs(60),
    );
    let (_, token, _) = store
        .monitor_create(&spec, clock.now())
        .await
        .expect("create");
    let mut alerter = alerter(&store, &clock, config(&format!("{}/hook", server.uri())));
    let ping = |kind| Ping { kind, body: None };
    let minutes = |m: i64| start() + chrono::Duration::seconds(m * 60);

    // 12:05's run pings 10 s late: within its grace.
    clock.set(minutes(5) + chrono::Duration::seconds(10));
    store
        .monitor_ping(&token, &ping(PingKind::Success), clock.now())
        .await
        .expect("ping")
        .expect("opens");
    clock.set(minutes(6) + chrono::Duration::seconds(30));
    assert_eq!(alerter.watch().await.expect("watch"), vec![], "pinged");

    // The pings stop: 12:10's slot is missed, once, and so is every later one, silently.
    for minute in [10, 15, 20] {
        clock.set(minutes(minute) + chrono::Duration::seconds(59));
        assert_eq!(
            alerter.watch().await.expect("watch"),
            vec![],
            "within the grace of {minute}"
        );
        clock.set(minutes(minute + 1) + chrono::Duration::seconds(1));
        let raised: Vec<AlertKind> = alerter
            .watch()
            .await
            .expect("watch")
            .iter()
            .map(|a| a.kind)
            .collect();
        let expected = if minute == 10 {
            vec![AlertKind::Missed]
        } else {
            vec![]
        };
        assert_eq!(raised, expected, "the slot of 12:{minute}");
    }
    let alerts = store
        .alert_list(Some("nightly-backup"), 10)
        .await
        .expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let missed = &alerts[0].message;
    assert!(
        missed
            .contains("no ping for the run due at 2026-03-01 12:10:00 UTC within its grace of 1m"),
        "{missed}"
    );
    assert_eq!(judge_and_deliver(&mut alerter).await, vec![]);

    // They resume: one recovery.
    clock.set(minutes(25) + chrono::Duration::seconds(5));
    store
        .monitor_ping(&token, &ping(PingKind::Start), clock.now())
        .await
        .expect("start")
        .expect("opens");
    assert_eq!(
        judge_and_deliver(&mut alerter).await,
        vec![],
        "a start is no success"
    );
    clock.advance(chrono::Duration::seconds(40));
    store
        .monitor_ping(&token, &ping(PingKind::Exit(0)), clock.now())
        .await
        .expect("end")
        .expect("opens");
    assert_eq!(
        judge_and_deliver(&mut alerter).await,
        vec![AlertKind::Recovered]
    );
    clock.set(minutes(26) + chrono::Duration::seconds(30));
    assert_eq!(
        alerter.watch().await.expect("watch"),
        vec![],
        "12:25 pinged"
    );

    // A run that says it failed.
    clock.set(minutes(30) + chrono::Duration::seconds(3));
    store
        .monitor_ping(&token, &ping(PingKind::Fail), clock.now())
        .await
        .expect("fail")
        .expect("opens");
    assert_eq!(
        judge_and_deliver(&mut alerter).await,
        vec![AlertKind::Failed]
    );
    clock.set(minutes(31) + chrono::Duration::seconds(30));
    assert_eq!(
        alerter.watch().await.expect("watch"),
        vec![],
        "a failed ping is a ping: the slot is not missed too"
    );

    let events: Vec<String> = received(&server)
        .await
        .iter()
        .map(|b| b["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(events, vec!["missed", "recovered", "failed"]);
}
