//! Monitors end to end, on both backends: the real binary as the server and the CLI, a cron
//! elsewhere played by a thread that calls the ping URL with no API token, and a real HTTP
//! receiver for the server's alerts. Pings that stop raise exactly one `missed`; pings that
//! resume, one `recovered`; a `/fail`, `failed`. The URL is shown once and redacted after.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::backend::Backend;
use support::webhooks::Receiver;
use support::{Server, Start, http_get, stderr, succeeded};

/// The path and status line of a `GET` of `url` (`http://HOST:PORT/ping/…`).
fn ping(url: &str) -> String {
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').expect("a path");
    let answer = http_get(&format!("http://{host}"), &format!("/{path}"), &[]);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Pings `url` every `every` while `on` holds, on a thread of its own: a cron elsewhere.
fn pinger(url: String, on: Arc<AtomicBool>, every: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while on.load(Ordering::Relaxed) {
            let status = ping(&url);
            assert!(status.contains(" 200 "), "a ping: {status}");
            std::thread::sleep(every);
        }
    })
}

fn events(bodies: &[serde_json::Value], event: &str) -> usize {
    bodies.iter().filter(|b| b["event"] == event).count()
}

/// The URL `monitor create` printed.
fn url_in(out: &str) -> String {
    out.lines()
        .find_map(|line| line.strip_prefix("ping URL "))
        .expect("a ping URL line")
        .trim()
        .to_owned()
}

fn start(backend: &Backend, receiver: &Receiver) -> Server {
    backend.node(
        Start::server(),
        "a",
        &[
            "--alert-webhook",
            &receiver.url,
            "--alert-watch-interval",
            "200ms",
            "--alert-watch-delay",
            "0s",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_monitor_whose_pings_stop_alerts_missed_once_then_recovered_once() {
    pings_stop_and_resume(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_monitor_whose_pings_stop_alerts_missed_once_then_recovered_once() {
    if let Some(backend) = Backend::postgres("panda_monitors").await {
        pings_stop_and_resume(backend).await;
    }
}

async fn pings_stop_and_resume(backend: Backend) {
    let receiver = Receiver::start();
    let server = start(&backend, &receiver);
    // Every 3 seconds (the six-field form has seconds), 2 seconds of grace.
    let created = succeeded(&server.panda(&[
        "monitor",
        "create",
        "--name",
        "heartbeat",
        "--schedule",
        "*/3 * * * * *",
        "--grace",
        "2s",
    ]));
    let url = url_in(&created);
    let token = url.rsplit('/').next().expect("a token").to_owned();
    assert!(token.starts_with("png_"), "{created}");

    // The cron runs and pings: no alert.
    let on = Arc::new(AtomicBool::new(true));
    let beating = pinger(url.clone(), Arc::clone(&on), Duration::from_millis(700));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(receiver.bodies(), Vec::<serde_json::Value>::new());

    // It stops: one `missed`, however many slots pass without a ping.
    on.store(false, Ordering::Relaxed);
    beating.join().expect("the pinger");
    let bodies = receiver.wait_until("a missed alert", |b| events(b, "missed") == 1);
    assert_eq!(bodies[0]["job"], "heartbeat", "{bodies:#?}");
    // Three more slots, each judged missed, none alerted again (one alert per incident).
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(receiver.bodies().len(), 1, "{:#?}", receiver.bodies());

    // It pings again: one `recovered`, however many pings follow.
    on.store(true, Ordering::Relaxed);
    let beating = pinger(url.clone(), Arc::clone(&on), Duration::from_millis(700));
    receiver.wait_until("a recovery", |b| events(b, "recovered") == 1);
    std::thread::sleep(Duration::from_secs(4));
    on.store(false, Ordering::Relaxed);
    beating.join().expect("the pinger");

    // A run that says it failed, with its exit code.
    assert!(ping(&format!("{url}/4")).contains(" 200 "));
    let bodies = receiver.wait_until("a failed alert", |b| events(b, "failed") == 1);
    let counts: Vec<usize> = ["missed", "recovered", "failed"]
        .iter()
        .map(|e| events(&bodies, e))
        .collect();
    assert_eq!(counts, vec![1, 1, 1], "{bodies:#?}");
    let failed = bodies.iter().find(|b| b["event"] == "failed").expect("one");
    assert!(
        failed.to_string().contains("exited with code 4"),
        "the alert says how it failed: {failed}"
    );

    // The pings are the monitor's executions, trigger `ping`.
    let pings: Vec<serde_json::Value> = serde_json::from_str(&succeeded(&server.panda(&[
        "monitor",
        "pings",
        "heartbeat",
        "--limit",
        "100",
        "-o",
        "json",
    ])))
    .expect("json");
    assert!(pings.len() >= 4, "{pings:#?}");
    assert!(pings.iter().all(|p| p["trigger"] == "ping"), "{pings:#?}");
    assert_eq!(pings[0]["status"], "failed");
    assert_eq!(pings[0]["exit_code"], 4);

    // After creation the URL is never shown again.
    for args in [
        vec!["monitor", "get", "heartbeat"],
        vec!["monitor", "get", "heartbeat", "-o", "json"],
        vec!["monitor", "list"],
        vec!["monitor", "list", "-o", "json"],
        vec!["cronjob", "get", "heartbeat"],
        vec!["export"],
    ] {
        let out = succeeded(&server.panda(&args));
        assert!(!out.contains(&token), "{args:?} shows the token: {out}");
    }
    let got = succeeded(&server.panda(&["monitor", "get", "heartbeat"]));
    assert!(got.contains("/ping/********"), "{got}");
    let exported = succeeded(&server.panda(&["export"]));
    assert!(
        exported.contains("[[monitor]]") && exported.contains("grace = \"2s\""),
        "{exported}"
    );
    // A rotation: the old URL opens nothing, and says nothing about why.
    let rotated = url_in(&succeeded(&server.panda(&[
        "monitor",
        "rotate",
        "heartbeat",
    ])));
    assert_ne!(rotated, url);
    assert!(ping(&url).contains(" 404 "));
    assert!(ping(&format!("{url}/start")).contains(" 404 "));
    assert!(ping(&rotated).contains(" 200 "));
    drop(server);
    backend.close().await;
}

#[test]
fn bad_monitor_input_is_one_error_line_and_a_hint_and_creates_nothing() {
    let server = Server::start();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--name", "m", "--schedule", "0 3 * * *", "--grace", "0s"],
            "--grace",
        ),
        (
            vec!["--name", "m", "--schedule", "0 3 * * *", "--grace", "soon"],
            "--grace",
        ),
        (
            vec!["--name", "m", "--schedule", "0 3 * *", "--grace", "30m"],
            "--schedule",
        ),
        (
            vec!["--name", "m", "--schedule", "61 3 * * *", "--grace", "30m"],
            "--schedule",
        ),
        (
            vec![
                "--name",
                "m",
                "--schedule",
                "0 3 * * *",
                "--grace",
                "30m",
                "--timezone",
                "Mars/Olympus",
            ],
            "--timezone \"Mars/Olympus\"",
        ),
        (
            vec!["--name", "M!", "--schedule", "0 3 * * *", "--grace", "30m"],
            "M!",
        ),
    ];
    for (args, mentions) in cases {
        let mut full = vec!["monitor", "create"];
        full.extend(args.iter().copied());
        let out = server.panda(&full);
        assert!(!out.status.success(), "{full:?} succeeded");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            (1..=2).contains(&lines.len()) && lines[0].starts_with("error: "),
            "{full:?}: {err}"
        );
        assert!(lines[0].contains(mentions), "{full:?}: {err}");
        if lines.len() == 2 {
            assert!(lines[1].starts_with("hint: "), "{full:?}: {err}");
        }
    }
    let listed = succeeded(&server.panda(&["monitor", "list", "-o", "json"]));
    assert_eq!(listed.trim(), "[]", "nothing was created");

    // Unknown monitors, and jobs that are not monitors.
    succeeded(&server.panda(&[
        "monitor",
        "create",
        "--name",
        "nightly-backup",
        "--schedule",
        "0 3 * * *",
        "--grace",
        "30m",
    ]));
    succeeded(&server.panda(&["job", "create", "--name", "plain", "--exec", "true"]));
    for (args, mentions) in [
        (vec!["monitor", "get", "nightly-bakup"], "did you mean"),
        (vec!["monitor", "rotate", "nope"], "no job named \"nope\""),
        (
            vec!["monitor", "delete", "plain"],
            "plain is a job, not a monitor",
        ),
        (
            vec!["job", "trigger", "nightly-backup"],
            "nightly-backup is a monitor",
        ),
    ] {
        let out = server.panda(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            (1..=2).contains(&lines.len()) && lines[0].starts_with("error: "),
            "{args:?}: {err}"
        );
        assert!(err.contains(mentions), "{args:?}: {err}");
    }
    // A ping URL that opens nothing: 404, the same for any guess.
    let guess = http_get(server.url(), "/ping/png_guess", &[]);
    assert!(guess.starts_with("HTTP/1.1 404"), "{guess}");
    let bad_code = http_get(server.url(), "/ping/png_guess/999", &[]);
    assert!(bad_code.starts_with("HTTP/1.1 404"), "{bad_code}");
    let listed = succeeded(&server.panda(&["monitor", "list"]));
    assert!(
        listed.contains("nightly-backup") && !listed.contains("plain"),
        "{listed}"
    );
}

#[test]
fn apply_creates_a_monitor_once_showing_its_url_and_export_gives_it_back_without() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[monitor]]\nname = \"nightly-backup\"\ngrace = \"30m\"\ntimeout = \"2h\"\n\
         schedule = { cron = \"0 3 * * *\", timezone = \"Europe/Berlin\" }\n",
    )
    .expect("write");
    let path = file.to_str().expect("a UTF-8 path");
    let created = succeeded(&server.panda(&["apply", "-f", path]));
    let token = created
        .split("/ping/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the URL, once")
        .to_owned();
    assert!(
        created.starts_with("monitor/nightly-backup created: ping URL http://")
            && token.starts_with("png_"),
        "{created}"
    );
    let again = succeeded(&server.panda(&["apply", "-f", path]));
    assert_eq!(again.trim(), "monitor/nightly-backup unchanged");
    let exported = succeeded(&server.panda(&["export"]));
    assert!(!exported.contains(&token), "{exported}");
    std::fs::write(&file, &exported).expect("write the export");
    let round = succeeded(&server.panda(&["apply", "-f", path]));
    assert_eq!(
        round.trim(),
        "monitor/nightly-backup unchanged",
        "{exported}"
    );
    // The URL made at creation is the one that works.
    let answer = http_get(server.url(), &format!("/ping/{token}"), &[]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    std::fs::write(
        &file,
        "[[monitor]]\nname = \"other\"\ngrace = \"0s\"\nschedule = { cron = \"0 3 * * *\" }\n",
    )
    .expect("write");
    let out = server.panda(&["apply", "-f", path]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.lines().count() <= 2 && err.starts_with("error: ") && err.contains("grace"),
        "{err}"
    );
    let listed = succeeded(&server.panda(&["monitor", "list", "-o", "json"]));
    assert!(!listed.contains("\"other\""), "nothing created: {listed}");
}
