//! `/metrics` on the real binary: the recorder is global to a process, so it is tested in the
//! process that installs it, scraped over HTTP as Prometheus would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `panda server` (or `panda worker`) on a port of its own, with its data dir.
struct Server {
    child: Child,
    /// `127.0.0.1:PORT` of the API, or of the metrics listener of a worker.
    address: String,
    dir: std::sync::Arc<tempfile::TempDir>,
}

impl Server {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Self {
        let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut all = vec!["server", "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::launch(&all, dir, "API listening on http://")
    }

    /// `panda worker ARGS` on this server's store, with its metrics on a port of their own.
    fn worker(&self, args: &[&str]) -> Self {
        let mut all = vec!["worker", "--metrics-bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::launch(&all, std::sync::Arc::clone(&self.dir), "metrics on http://")
    }

    /// Starts `panda ARGS` and reads its address from the log line that says `listening`.
    fn launch(args: &[&str], dir: std::sync::Arc<tempfile::TempDir>, listening: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_panda"))
            .env_remove("PANDA_DATABASE_URL")
            .env("PANDA_LOG", "info")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start panda");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut address = None;
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(at) = line.find(listening) {
                        let rest = &line[at + listening.len()..];
                        address = rest
                            .split_whitespace()
                            .next()
                            .map(|a| a.trim_end_matches("/metrics").to_owned());
                    }
                    if line.contains("workers running") {
                        break;
                    }
                    seen.push(line);
                }
                _ => panic!("panda stopped before it was ready: {seen:#?}"),
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        let address = address.unwrap_or_else(|| panic!("no listening address in {seen:#?}"));
        Self {
            child,
            address,
            dir,
        }
    }

    /// Runs `panda ARGS` against this server with the admin token from its data dir.
    #[track_caller]
    fn panda(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_panda"))
            .env_remove("PANDA_TOKEN")
            .env("PANDA_URL", format!("http://{}", self.address))
            .env("PANDA_DATA_DIR", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .expect("run panda");
        succeeded(&output)
    }

    /// `GET /metrics` with `token`: the status code, the content type and the body.
    fn scrape(&self, token: Option<&str>) -> (u16, String, String) {
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        let authorization = token
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\n{authorization}Connection: close\r\n\r\n",
            self.address
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

    /// Scrapes until the body has every one of `lines` (the engine counts a result just after
    /// the store has it, so a client can see an execution end a moment before its count).
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\nstdout: {}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The body's lines that start with `prefix`.
fn lines_of<'a>(body: &'a str, prefix: &str) -> Vec<&'a str> {
    body.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn metrics_count_executions_by_job_and_status_time_them_in_buckets_and_show_queues() {
    let server = Server::start();
    server.panda(&["job", "create", "--name", "fine", "--exec", "true"]);
    server.panda(&[
        "job",
        "create",
        "--name",
        "broken",
        "--exec",
        "false",
        "--max-attempts",
        "1",
    ]);
    server.panda(&[
        "job", "create", "--name", "nightly", "--exec", "true", "--queue", "reports",
    ]);
    server.panda(&["job", "enqueue", "fine", "--wait"]);
    let failed = Command::new(env!("CARGO_BIN_EXE_panda"))
        .env_remove("PANDA_TOKEN")
        .env("PANDA_URL", format!("http://{}", server.address))
        .env("PANDA_DATA_DIR", server.dir.path())
        .env("XDG_CONFIG_HOME", server.dir.path().join("config"))
        .args(["job", "enqueue", "broken", "--wait"])
        .output()
        .expect("run panda");
    assert!(!failed.status.success(), "--wait fails with the job");
    let later = server.panda(&["job", "enqueue", "nightly", "--delay", "1h"]);
    let later = later.trim();
    let viewer = server.panda(&["token", "create", "scraper", "--read-only"]);
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
    server.panda(&["execution", "cancel", later]);
    server.scrape_until(viewer, &[r#"panda_queue_waiting{queue="reports"} 0"#]);
}

#[test]
fn metrics_time_how_late_each_cron_slot_fired() {
    let server = Server::start();
    server.panda(&[
        "cronjob",
        "create",
        "--name",
        "every-second",
        "--exec",
        "true",
        "--schedule",
        "* * * * * *",
    ]);
    let token = std::fs::read_to_string(server.dir.path().join("admin.token")).expect("token");
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
    server.panda(&[
        "job", "create", "--name", "far-away", "--exec", "true", "--queue", "edge",
    ]);
    let viewer = server.panda(&["token", "create", "scraper", "--read-only"]);
    let viewer = viewer.trim();
    let worker = server.worker(&["--queues", "edge"]);
    server.panda(&["job", "enqueue", "far-away", "--wait"]);

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
