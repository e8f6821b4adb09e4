//! The recording functions, each against a Prometheus recorder of its own (local to the
//! test's thread, so the tests do not share one).

use chrono::{Duration, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use panda_engine::metrics::{self, QueueGauges};
use panda_store::QueueStats;

fn recorder() -> PrometheusRecorder {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in metrics::HISTOGRAM_BUCKETS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .expect("buckets");
    }
    builder.build_recorder()
}

fn has(body: &str, line: &str) -> bool {
    body.lines().any(|l| l == line)
}

#[test]
fn a_queue_that_empties_reads_zero_instead_of_its_last_value() {
    let recorder = recorder();
    let gauges = QueueGauges::new();
    let now = Utc::now();
    let busy = QueueStats {
        queue: "reports".into(),
        due: 3,
        waiting: 1,
        running: 2,
        oldest_due_at: Some(now - Duration::seconds(90)),
        paused_at: Some(now),
    };
    ::metrics::with_local_recorder(&recorder, || gauges.set(&[busy], now));
    let body = recorder.handle().render();
    for line in [
        r#"panda_queue_depth{queue="reports"} 3"#,
        r#"panda_queue_waiting{queue="reports"} 1"#,
        r#"panda_queue_running{queue="reports"} 2"#,
        r#"panda_queue_paused{queue="reports"} 1"#,
        r#"panda_queue_oldest_age_seconds{queue="reports"} 90"#,
    ] {
        assert!(has(&body, line), "{line} in:\n{body}");
    }

    ::metrics::with_local_recorder(&recorder, || gauges.set(&[], now));
    let body = recorder.handle().render();
    for line in [
        r#"panda_queue_depth{queue="reports"} 0"#,
        r#"panda_queue_waiting{queue="reports"} 0"#,
        r#"panda_queue_running{queue="reports"} 0"#,
        r#"panda_queue_paused{queue="reports"} 0"#,
        r#"panda_queue_oldest_age_seconds{queue="reports"} 0"#,
    ] {
        assert!(has(&body, line), "{line} in:\n{body}");
    }
}

#[test]
fn alert_deliveries_are_counted_by_kind_and_result() {
    let recorder = recorder();
    ::metrics::with_local_recorder(&recorder, || {
        metrics::alert_delivery("webhook", true);
        metrics::alert_delivery("webhook", true);
        metrics::alert_delivery("slack", false);
    });
    let body = recorder.handle().render();
    assert!(
        has(
            &body,
            r#"panda_alert_deliveries_total{kind="webhook",result="delivered"} 2"#
        ),
        "{body}"
    );
    assert!(
        has(
            &body,
            r#"panda_alert_deliveries_total{kind="slack",result="failed"} 1"#
        ),
        "{body}"
    );
}

#[test]
fn schedule_lag_is_a_histogram_in_seconds() {
    let recorder = recorder();
    let now = Utc::now();
    ::metrics::with_local_recorder(&recorder, || {
        metrics::slot_fired(now - Duration::milliseconds(300), now);
    });
    let body = recorder.handle().render();
    assert!(
        has(&body, r#"panda_schedule_lag_seconds_bucket{le="0.25"} 0"#),
        "{body}"
    );
    assert!(
        has(&body, r#"panda_schedule_lag_seconds_bucket{le="0.5"} 1"#),
        "{body}"
    );
    assert!(has(&body, "panda_schedule_lag_seconds_sum 0.3"), "{body}");
}

#[test]
fn a_rescued_lease_counts_as_a_rescue_and_as_an_execution_finished_lost() {
    let recorder = recorder();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // A current-thread runtime runs the rescue on this thread, where the recorder is.
    ::metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let test = panda_store::testing::sqlite().await;
            let store = &test.store;
            let mut spec = panda_core::JobSpec::new(
                panda_core::JobName::new("ghosted").expect("name"),
                panda_core::RuntimeSpec::Process {
                    argv: vec!["true".into()],
                },
            );
            spec.retry.max_attempts = 2;
            store.job_create(&spec, Utc::now()).await.expect("create");
            store
                .execution_enqueue(&panda_store::NewExecution::api("ghosted"), Utc::now())
                .await
                .expect("enqueue");
            // A worker that claims it and dies at once: no heartbeat ever comes.
            let request = panda_store::ClaimRequest {
                worker_id: "ghost".into(),
                queues: Vec::new(),
                limit: 1,
                lease_ttl: std::time::Duration::from_millis(1),
            };
            let claimed = store
                .execution_claim(&request, Utc::now())
                .await
                .expect("claim");
            assert_eq!(claimed.len(), 1);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let rescuer = panda_engine::Rescuer::new(
                store.clone(),
                std::sync::Arc::new(panda_core::SystemClock),
            );
            let rescued = rescuer.tick().await.expect("rescue");
            assert_eq!(rescued.len(), 1);
            test.close().await;
        });
    });
    let body = recorder.handle().render();
    assert!(has(&body, "panda_lease_rescues_total 1"), "{body}");
    assert!(
        has(
            &body,
            r#"panda_executions_finished_total{job="ghosted",status="lost"} 1"#
        ),
        "{body}"
    );
    assert!(
        !body.contains("panda_execution_duration_seconds"),
        "a lost execution is not timed: {body}"
    );
}
