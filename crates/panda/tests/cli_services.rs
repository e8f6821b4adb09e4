//! `panda service …` end to end: the real binary as a server and as the client, as a user
//! types it.

mod support;

use std::process::{Output, Stdio};

use support::{Server, stderr, stdout, succeeded};

/// The service as `service get -o json` shows it.
fn status(server: &Server, name: &str) -> serde_json::Value {
    serde_json::from_str(&succeeded(
        &server.panda(&["service", "get", name, "-o", "json"]),
    ))
    .expect("json")
}

/// A failed command's stderr: one `error:` line, then one `hint:` line.
#[track_caller]
fn one_error_and_a_hint(output: &Output) -> String {
    assert!(!output.status.success(), "it succeeded: {}", stdout(output));
    let text = stderr(output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one error and a hint: {text}");
    assert!(lines[0].starts_with("error: "), "{text}");
    assert!(lines[1].starts_with("hint: "), "{text}");
    text
}

#[test]
fn a_service_is_created_listed_scaled_rolled_out_and_deleted() {
    let server = Server::start();
    let created = succeeded(&server.panda(&[
        "service",
        "create",
        "--name",
        "event-processor",
        "--exec",
        "sleep 1000",
        "--replicas",
        "2",
        "--env",
        "KAFKA_BROKERS=kafka:9092",
        "--secret-env",
        "API_KEY=s3cr3t",
        "--health-cmd",
        "test -f /tmp/healthy",
        "--health-interval",
        "2s",
        "--restart",
        "on-failure",
        "--stop-signal",
        "int",
        "--update-order",
        "stop-first",
        "--log-keep",
        "1MiB",
    ]));
    assert!(
        created.contains("service event-processor created"),
        "{created}"
    );
    let shown = status(&server, "event-processor");
    let service = &shown["job"]["service"];
    assert_eq!(service["replicas"], 2);
    assert_eq!(service["restart"], "on_failure");
    assert_eq!(service["stop_signal"], "SIGINT");
    assert_eq!(
        service["health"]["probe"]["command"],
        "test -f /tmp/healthy"
    );
    assert_eq!(service["health"]["interval_ms"], 2000);
    assert_eq!(service["rollout"]["order"], "stop_first");
    assert_eq!(service["log_keep_bytes"], 1 << 20);
    assert_eq!(shown["job"]["secret_env"]["API_KEY"], "********");

    let list = succeeded(&server.panda(&["service", "list"]));
    let header: Vec<&str> = list
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "DESIRED", "RUNNING", "HEALTHY", "RESTARTS", "UP", "REVISION", "ROLLOUT"
        ],
        "{list}"
    );
    assert!(list.contains("event-processor"), "{list}");
    // A service is not listed among the jobs, nor counted with them.
    let jobs = stderr(&server.panda(&["job", "list"]));
    assert!(jobs.contains("no jobs yet"), "{jobs}");
    let counted = succeeded(&server.panda(&["status"]));
    assert!(
        counted.contains("Jobs:          0") && counted.contains("Services:      1"),
        "{counted}"
    );

    let described = succeeded(&server.panda(&["service", "get", "event-processor"]));
    assert!(
        described.contains("Name:          event-processor"),
        "{described}"
    );
    assert!(described.contains("2 desired"), "{described}");
    assert!(described.contains("API_KEY (hidden)"), "{described}");
    assert!(!described.contains("s3cr3t"), "{described}");

    let scaled = succeeded(&server.panda(&["service", "scale", "event-processor", "3"]));
    assert!(scaled.contains("scaled to 3"), "{scaled}");
    assert_eq!(status(&server, "event-processor")["desired"], 3);

    let updated = succeeded(&server.panda(&[
        "service",
        "update",
        "event-processor",
        "--exec",
        "sleep 2000",
    ]));
    assert!(updated.contains("rolling out revision 2"), "{updated}");
    let after = status(&server, "event-processor");
    assert_eq!(after["revision"], 2);
    assert_eq!(after["job"]["secret_env"]["API_KEY"], "********");

    // A second change of what runs waits for the rollout: one error line, nothing changed.
    let second = server.panda(&[
        "service",
        "update",
        "event-processor",
        "--exec",
        "sleep 3000",
    ]);
    assert!(!second.status.success());
    let said = stderr(&second);
    assert!(
        said.starts_with("error: ") && said.contains("rollout"),
        "{said}"
    );
    assert_eq!(status(&server, "event-processor")["revision"], 2);

    let rollout = succeeded(&server.panda(&["service", "rollout", "event-processor"]));
    assert!(rollout.contains("Revision:      1 → 2"), "{rollout}");
    assert!(rollout.contains("State:         progressing"), "{rollout}");
    assert!(rollout.contains("Progress:"), "{rollout}");

    let revisions = succeeded(&server.panda(&["service", "revisions", "event-processor"]));
    let rows: Vec<&str> = revisions.lines().collect();
    assert!(rows[0].starts_with("REVISION"), "{revisions}");
    assert!(
        rows[1].starts_with('2') && rows[1].contains("sleep 2000"),
        "{revisions}"
    );
    assert!(
        rows[2].starts_with('1') && rows[2].contains("sleep 1000"),
        "{revisions}"
    );

    let suspended = succeeded(&server.panda(&["service", "suspend", "event-processor"]));
    assert!(suspended.contains("suspended"), "{suspended}");
    assert_eq!(status(&server, "event-processor")["desired"], 0);
    succeeded(&server.panda(&["service", "resume", "event-processor"]));
    assert_eq!(status(&server, "event-processor")["desired"], 3);

    let deleted = succeeded(&server.panda(&["service", "delete", "event-processor"]));
    assert!(deleted.contains("deleted"), "{deleted}");
    let gone = one_error_and_a_hint(&server.panda(&["service", "get", "event-processor"]));
    assert!(gone.contains("no service named"), "{gone}");
    let listed: serde_json::Value = serde_json::from_str(&succeeded(
        &server.panda(&["service", "list", "-o", "json"]),
    ))
    .expect("json");
    assert_eq!(listed, serde_json::json!([]));
}

#[test]
fn bad_service_input_is_one_error_line_and_a_hint_and_creates_nothing() {
    let server = Server::start();
    let base = ["service", "create", "--name", "bad", "--exec", "sleep 9"];
    let cases: [(&[&str], &str); 7] = [
        (&["--replicas", "1001"], "replicas must be from 0 to 1000"),
        (&["--replicas", "-1"], "not -1"),
        (&["--stop-signal", "SIGFOO"], "SIGFOO"),
        (&["--restart", "sometimes"], "sometimes"),
        (&["--health-cmd", ""], "--health-cmd"),
        (&["--schedule", "0 5 * * *"], "--schedule"),
        (&["--health-retries", "2"], "health check"),
    ];
    for (extra, says) in cases {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let text = one_error_and_a_hint(&server.panda(&args));
        assert!(text.contains(says), "{extra:?}: {text}");
    }
    let listed = succeeded(&server.panda(&["service", "list", "-o", "json"]));
    assert_eq!(listed.trim(), "[]");
    succeeded(&server.panda(&base));
    let twice = one_error_and_a_hint(&server.panda(&base));
    assert!(
        twice.contains("already exists") && twice.contains("panda service update bad"),
        "{twice}"
    );
    let missing = one_error_and_a_hint(&server.panda(&["service", "scale", "nope", "2"]));
    assert!(missing.contains("no service named \"nope\""), "{missing}");
    let out_of_range = one_error_and_a_hint(&server.panda(&["service", "scale", "nope", "5000"]));
    assert!(out_of_range.contains("0 to 1000"), "{out_of_range}");
}

#[test]
fn a_reader_that_goes_away_does_not_make_the_cli_panic() {
    let server = Server::start();
    for name in ["alpha", "beta"] {
        succeeded(&server.panda(&["service", "create", "--name", name, "--exec", "sleep 9"]));
    }
    for args in [
        &["service", "list"][..],
        &["service", "list", "-o", "yaml"][..],
        &["service", "get", "alpha"][..],
        &["export"][..],
    ] {
        let mut child = server
            .cli()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn panda");
        // The reader is gone before anything is written.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("wait");
        let said = stderr(&output);
        assert!(!said.contains("panicked"), "{args:?}: {said}");
        assert!(output.status.success(), "{args:?}: {said}");
    }
}

#[test]
fn apply_and_export_carry_services() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("panda.toml");
    std::fs::write(
        &file,
        "[[job]]\nname = \"send-email\"\nretry = { max_attempts = 3, backoff_base_ms = 1000, backoff_cap_ms = 60000 }\nruntime = { kind = \"process\", argv = [\"true\"] }\n\n\
         [[service]]\nname = \"log-shipper\"\nruntime = { kind = \"process\", argv = [\"sleep\", \"1000\"] }\n\n\
         [[service]]\nname = \"event-processor\"\nruntime = { kind = \"image\", image = \"your-registry/events:1.4\" }\n\
         [service.service]\nreplicas = 2\nrestart = \"on_failure\"\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf-8 path");
    let applied = succeeded(&server.panda(&["apply", "-f", file]));
    assert_eq!(
        applied,
        "job/send-email created\nservice/log-shipper created\nservice/event-processor created\n"
    );
    assert_eq!(
        status(&server, "event-processor")["job"]["service"]["replicas"],
        2
    );
    let again = succeeded(&server.panda(&["apply", "-f", file]));
    assert_eq!(
        again,
        "job/send-email unchanged\nservice/log-shipper unchanged\nservice/event-processor unchanged\n"
    );

    let exported = succeeded(&server.panda(&["export"]));
    assert!(
        exported.contains("[[job]]") && exported.contains("[[service]]"),
        "{exported}"
    );
    let exported_file = dir.path().join("exported.toml");
    std::fs::write(
        &exported_file,
        exported.replace("replicas = 2", "replicas = 4"),
    )
    .expect("write");
    let applied =
        succeeded(&server.panda(&["apply", "-f", exported_file.to_str().expect("utf-8 path")]));
    assert!(
        applied.contains("service/event-processor updated")
            && applied.contains("service/log-shipper unchanged"),
        "{applied}"
    );
    assert_eq!(status(&server, "event-processor")["desired"], 4);

    std::fs::write(
        file,
        "[[service]]\nname = \"cron-ish\"\nruntime = { kind = \"process\", argv = [\"true\"] }\nschedule = { cron = \"0 5 * * *\" }\n",
    )
    .expect("write");
    let refused = one_error_and_a_hint(&server.panda(&["apply", "-f", file]));
    assert!(refused.contains("no schedule"), "{refused}");
}

/// Writes `lines` to the log of `execution` in the server's store, as the node running it
/// would (from a seq of its own, so that lines a real run wrote are never overwritten).
fn write_log(
    runtime: &tokio::runtime::Runtime,
    store: &panda_store::SqliteStore,
    execution: &str,
    first_seq: u64,
    lines: &[&str],
) {
    let id: panda_core::ExecutionId = execution.parse().expect("an execution id");
    let chunks: Vec<panda_core::LogChunk> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| panda_core::LogChunk {
            seq: first_seq + i as u64,
            stream: panda_core::LogStream::Stdout,
            at: chrono::Utc::now(),
            data: format!("{line}\n").into_bytes(),
        })
        .collect();
    runtime
        .block_on(panda_core::LogStore::log_append(store, id, &chunks))
        .expect("append");
}

#[test]
fn service_logs_interleave_the_instances_prefixed_and_follow_them() {
    use std::io::{BufRead, BufReader};

    let server = Server::start();
    succeeded(&server.panda(&[
        "service",
        "create",
        "--name",
        "event-processor",
        "--exec",
        "sleep 1000",
        "--replicas",
        "2",
    ]));
    // The instances are queued by the store's reconcile, whichever node runs it first.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let store = runtime
        .block_on(panda_store::SqliteStore::open(
            &server.data_dir().join("panda.db"),
        ))
        .expect("open the server's store");
    runtime
        .block_on(panda_store::ServiceStore::service_reconcile(
            &store,
            chrono::Utc::now(),
        ))
        .expect("reconcile");
    let shown = status(&server, "event-processor");
    let mut runs = std::collections::BTreeMap::new();
    for instance in shown["instances"].as_array().expect("instances") {
        if let Some(id) = instance["execution"]["id"].as_str() {
            runs.insert(instance["index"].as_u64().expect("an index"), id.to_owned());
        }
    }
    assert_eq!(runs.len(), 2, "{shown}");
    write_log(&runtime, &store, &runs[&0], 1_000_000, &["zero says hello"]);
    write_log(&runtime, &store, &runs[&1], 1_000_000, &["one says hello"]);

    let all = succeeded(&server.panda(&["service", "logs", "event-processor"]));
    assert!(all.contains("[0] zero says hello\n"), "{all}");
    assert!(all.contains("[1] one says hello\n"), "{all}");
    let one = succeeded(&server.panda(&["service", "logs", "event-processor", "--instance", "1"]));
    assert!(
        one.contains("[1] one says hello") && !one.contains("[0]"),
        "{one}"
    );
    let none = one_error_and_a_hint(&server.panda(&[
        "service",
        "logs",
        "event-processor",
        "--instance",
        "7",
    ]));
    assert!(none.contains("no instance 7"), "{none}");

    // Following: what is written later shows up, from every instance.
    let mut child = server
        .cli()
        .args(["service", "logs", "event-processor", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn panda");
    // A hang guard: a follower that never prints is stopped, and the wait below fails.
    let pid = child.id().to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = std::sync::Arc::clone(&done);
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        if !finished.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = std::process::Command::new("kill").arg(&pid).status();
        }
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let mut wait_for = |wanted: &str, seen: &mut Vec<String>| {
        for line in lines.by_ref() {
            let line = line.expect("a line");
            let found = line == wanted;
            seen.push(line);
            if found {
                return;
            }
        }
        panic!("the follower ended before {wanted:?}: {seen:?}");
    };
    wait_for("[0] zero says hello", &mut seen);
    write_log(&runtime, &store, &runs[&1], 2_000_000, &["one again"]);
    wait_for("[1] one again", &mut seen);
    write_log(&runtime, &store, &runs[&0], 2_000_000, &["zero again"]);
    wait_for("[0] zero again", &mut seen);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    child.kill().expect("stop the follower");
    let _ = child.wait();
}
