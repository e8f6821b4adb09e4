//! `/metrics` on the real binary: the recorder is global to a process, so it is tested in the
//! process that installs it, scraped over HTTP as Prometheus would.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Server, succeeded};

/// What these tests do with a node: the CLI, and scrapes of its `/metrics`.
trait Scrape {
    /// Runs `panda ARGS` against this server with the admin token from its data dir.
    fn run(&self, args: &[&str]) -> String;

    /// `GET /metrics` with `token`: the status code, the content type and the body.
    fn scrape(&self, token: Option<&str>) -> (u16, String, String);

    /// Scrapes until the body has every one of `lines` (the engine counts a result just after
    /// the store has it, so a client can see an execution end a moment before its count).
    fn scrape_until(&self, token: &str, lines: &[&str]) -> String;
}

impl Scrape for Server {
    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        succeeded(&self.panda(args))
    }

    fn scrape(&self, token: Option<&str>) -> (u16, String, String) {
        let url = self.metrics_url();
        let address = url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        let mut stream = TcpStream::connect(address).expect("connect");
        let authorization = token
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n",
        )
        .expect("send the request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status code");
        let content_type = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        (status, content_type, body.to_owned())
    }

    fn scrape_until(&self, token: &str, lines: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let (status, _, body) = self.scrape(Some(token));
            assert_eq!(status, 200, "{body}");
            if lines.iter().all(|line| body.lines().any(|l| l == *line)) {
                return body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never all of {lines:#?} in:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The body's lines that start with `prefix`.
fn lines_of<'a>(body: &'a str, prefix: &str) -> Vec<&'a str> {
    body.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn metrics_count_executions_by_job_and_status_time_them_in_buckets_and_show_queues() {
    let server = Server::start();
    server.run(&["job", "create", "--name", "fine", "--exec", "true"]);
    server.run(&[
        "job",
        "create",
        "--name",
        "broken",
        "--exec",
        "false",
        "--max-attempts",
        "1",
    ]);
    server.run(&[
        "job", "create", "--name", "nightly", "--exec", "true", "--queue", "reports",
    ]);
    server.run(&["job", "enqueue", "fine", "--wait"]);
    let failed = server.panda(&["job", "enqueue", "broken", "--wait"]);
    assert!(!failed.status.success(), "--wait fails with the job");
    let later = server.run(&["job", "enqueue", "nightly", "--delay", "1h"]);
    let later = later.trim();
    let viewer = server.run(&["token", "create", "scraper", "--read-only"]);
    let viewer = viewer.trim();

    let (status, _, body) = server.scrape(None);
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = server.scrape(Some("panda_not_a_token"));
    assert_eq!(status, 401, "{body}");
    let (status, content_type, _) = server.scrape(Some(viewer));
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");

    let body = server.scrape_until(
        viewer,
        &[
            r#"panda_executions_finished_total{job="fine",status="succeeded"} 1"#,
            r#"panda_executions_finished_total{job="broken",status="dead"} 1"#,
        ],
    );
    let mut counted = lines_of(&body, "panda_executions_finished_total{");
    counted.sort_unstable();
    assert_eq!(
        counted,
        [
            r#"panda_executions_finished_total{job="broken",status="dead"} 1"#,
            r#"panda_executions_finished_total{job="fine",status="succeeded"} 1"#,
        ],
        "no other job or status counted"
    );

    // A histogram with the buckets Panda sets, not a summary.
    assert!(
        body.contains("# TYPE panda_execution_duration_seconds histogram"),
        "{body}"
    );
    assert!(!body.contains("quantile="), "{body}");
    let buckets = lines_of(
        &body,
        r#"panda_execution_duration_seconds_bucket{job="fine","#,
    );
    assert_eq!(
        buckets.len(),
        panda_engine::metrics::DURATION_BUCKETS.len() + 1,
        "{body}"
    );
    assert!(
        buckets[0].starts_with(r#"panda_execution_duration_seconds_bucket{job="fine",le="0.01"} "#),
        "{buckets:#?}"
    );
    assert!(
        buckets.contains(&r#"panda_execution_duration_seconds_bucket{job="fine",le="3600"} 1"#),
        "{buckets:#?}"
    );
    assert!(
        buckets.contains(&r#"panda_execution_duration_seconds_bucket{job="fine",le="+Inf"} 1"#),
        "{buckets:#?}"
    );
    assert!(
        body.lines()
            .any(|l| l == r#"panda_execution_duration_seconds_count{job="fine"} 1"#),
        "{body}"
    );

    // The queue gauges, read from the store at the scrape: the delayed run waits.
    for line in [
        r#"panda_queue_depth{queue="reports"} 0"#,
        r#"panda_queue_waiting{queue="reports"} 1"#,
        r#"panda_queue_running{queue="reports"} 0"#,
        r#"panda_queue_oldest_age_seconds{queue="reports"} 0"#,
        "# TYPE panda_queue_depth gauge",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in:\n{body}");
    }
    // Once the queue empties, its gauges drop to 0 instead of keeping their last value.
    server.run(&["execution", "cancel", later]);
    server.scrape_until(viewer, &[r#"panda_queue_waiting{queue="reports"} 0"#]);
}

#[test]
fn metrics_time_how_late_each_cron_slot_fired() {
    let server = Server::start();
    server.run(&[
        "cronjob",
        "create",
        "--name",
        "every-second",
        "--exec",
        "true",
        "--schedule",
        "* * * * * *",
    ]);
    let token = std::fs::read_to_string(server.data_dir().join("admin.token")).expect("token");
    let started = Instant::now();
    let body = loop {
        let (status, _, body) = server.scrape(Some(token.trim()));
        assert_eq!(status, 200, "{body}");
        if body
            .contains(r#"panda_executions_finished_total{job="every-second",status="succeeded"}"#)
        {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        body.contains("# TYPE panda_schedule_lag_seconds histogram"),
        "{body}"
    );
    let count: u64 = lines_of(&body, "panda_schedule_lag_seconds_count ")
        .first()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in:\n{body}"));
    assert!(count >= 1, "{body}");
    assert!(
        body.lines()
            .any(|l| l == format!(r#"panda_schedule_lag_seconds_bucket{{le="+Inf"}} {count}"#)),
        "{body}"
    );
}

/// A `panda worker` serves no API; `--metrics-bind` is where the executions it ran are counted.
#[test]
fn a_worker_serves_its_own_metrics_behind_a_token() {
    let server = Server::start_with(&["--queues", "default"]);
    server.run(&[
        "job", "create", "--name", "far-away", "--exec", "true", "--queue", "edge",
    ]);
    let viewer = server.run(&["token", "create", "scraper", "--read-only"]);
    let viewer = viewer.trim();
    let worker = server
        .worker()
        .args(["--metrics-bind", "127.0.0.1:0", "--queues", "edge"])
        .start();
    server.run(&["job", "enqueue", "far-away", "--wait"]);

    let (status, _, body) = worker.scrape(None);
    assert_eq!(status, 401, "{body}");
    let body = worker.scrape_until(
        viewer,
        &[r#"panda_executions_finished_total{job="far-away",status="succeeded"} 1"#],
    );
    assert!(
        body.contains(r#"panda_execution_duration_seconds_count{job="far-away"} 1"#),
        "{body}"
    );
    // Counted where it ran, not on the server.
    let (_, _, body) = server.scrape(Some(viewer));
    assert!(!body.contains(r#"job="far-away""#), "{body}");
}
