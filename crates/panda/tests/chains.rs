//! Chains through the real binary on both backends, as a user sets them up with the CLI: each
//! job appends a line to a file, and the file says what ran and how often.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::{Server, Start, stderr, succeeded};

/// The lines `file` holds, none when it does not exist yet.
fn lines_of(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `panda job executions NAME -o json`, newest first.
fn executions(server: &Server, name: &str) -> Vec<serde_json::Value> {
    let out = succeeded(&server.panda(&["job", "executions", name, "-o", "json"]));
    serde_json::from_str(&out).expect("json")
}

fn ended(execution: &serde_json::Value) -> bool {
    !matches!(
        execution["status"].as_str().unwrap_or_default(),
        "queued" | "running"
    )
}

async fn a_chain_of_three_runs_the_third_once_when_the_middle_one_fails_once(backend: Backend) {
    let server = backend.node(Start::server(), "node-a", &[]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let log = dir.path().join("runs");
    let failed_once = dir.path().join("failed-once");
    let (log_path, marker) = (log.display(), failed_once.display());
    succeeded(&server.panda(&[
        "job",
        "create",
        "--name",
        "extract",
        "--exec",
        &format!("sh -c 'echo extract $PANDA_PAYLOAD >> {log_path}'"),
    ]));
    // The middle job fails on its first run, then succeeds on its retry.
    succeeded(&server.panda(&[
        "job",
        "create",
        "--name",
        "transform",
        "--after",
        "extract",
        "--max-attempts",
        "3",
        "--backoff",
        "100ms",
        "--backoff-max",
        "200ms",
        "--exec",
        &format!(
            "sh -c 'echo transform $PANDA_ATTEMPT $PANDA_UPSTREAM_JOB >> {log_path}; \
             if [ ! -e {marker} ]; then touch {marker}; exit 1; fi'"
        ),
    ]));
    succeeded(&server.panda(&[
        "job",
        "create",
        "--name",
        "load",
        "--after",
        "transform",
        "--exec",
        &format!(
            "sh -c 'echo load $PANDA_UPSTREAM_JOB $PANDA_UPSTREAM_STATUS $PANDA_PAYLOAD >> {log_path}'"
        ),
    ]));
    let shown = succeeded(&server.panda(&["job", "get", "transform"]));
    assert!(
        shown.contains("After:         extract (succeeded)"),
        "{shown}"
    );
    assert!(shown.contains("Followed by:   load (succeeded)"), "{shown}");

    succeeded(&server.panda(&[
        "job",
        "enqueue",
        "extract",
        "--payload",
        "{\"day\":\"2026-12-04\"}",
    ]));
    // A follower is queued in the write that ends its upstream's run: once every execution of
    // the three has ended and load has one, no more can come.
    let started = Instant::now();
    loop {
        let all: Vec<serde_json::Value> = ["extract", "transform", "load"]
            .iter()
            .flat_map(|name| executions(&server, name))
            .collect();
        if !executions(&server, "load").is_empty() && all.iter().all(ended) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the chain never ended: {:?}",
            lines_of(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        lines_of(&log),
        [
            "extract {\"day\":\"2026-12-04\"}",
            "transform 1 extract",
            "transform 2 extract",
            "load transform succeeded {\"day\":\"2026-12-04\"}",
        ],
        "the third ran once, after the middle one's retry"
    );

    let transform = executions(&server, "transform");
    let load = executions(&server, "load");
    assert_eq!(load.len(), 1);
    assert_eq!(load[0]["trigger"], "upstream");
    assert_eq!(load[0]["status"], "succeeded");
    let retry = transform
        .iter()
        .find(|e| e["attempt"] == 2)
        .expect("the retry");
    assert_eq!(
        load[0]["env"]["PANDA_UPSTREAM_EXECUTION_ID"], retry["id"],
        "load names the attempt that ended transform's run"
    );
    let load_id = load[0]["id"].as_str().expect("an id");
    let shown = succeeded(&server.panda(&["execution", "get", load_id]));
    let retry_id = retry["id"].as_str().expect("an id");
    assert!(
        shown.contains(&format!("Upstream: {retry_id} (transform)")),
        "{shown}"
    );

    // A job that others follow stays until they let go of it.
    let refused = server.panda(&["job", "delete", "transform"]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.starts_with("error: job \"transform\" is followed by \"load\""),
        "{err}"
    );
    assert!(err.contains("hint:") && err.contains("--no-after"), "{err}");
    succeeded(&server.panda(&["job", "update", "load", "--no-after"]));
    succeeded(&server.panda(&["job", "delete", "transform"]));
    drop(server);
    backend.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_a_chain_of_three_runs_the_third_once_when_the_middle_one_fails_once() {
    a_chain_of_three_runs_the_third_once_when_the_middle_one_fails_once(Backend::sqlite().await)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_chain_of_three_runs_the_third_once_when_the_middle_one_fails_once() {
    if let Some(backend) = Backend::postgres("chain_three").await {
        a_chain_of_three_runs_the_third_once_when_the_middle_one_fails_once(backend).await;
    }
}

/// The jobs' names as `job list -o json` gives them.
fn job_names(server: &Server) -> Vec<String> {
    let out = succeeded(&server.panda(&["job", "list", "-o", "json"]));
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    jobs.iter()
        .filter_map(|j| j["name"].as_str().map(str::to_owned))
        .collect()
}

/// Checks that `out` failed with one `error:` line naming `what` and one `hint:` line.
#[track_caller]
fn one_error_with_a_hint(out: &std::process::Output, what: &str) {
    assert!(!out.status.success(), "refused");
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "an error and a hint: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(what),
        "{err}"
    );
    assert!(lines[1].starts_with("hint: "), "{err}");
}

#[test]
fn a_chain_to_an_unknown_job_or_around_a_cycle_is_one_error_and_changes_nothing() {
    let server = Server::start();
    let create = |name: &str, after: &str| {
        server.panda(&[
            "job", "create", "--name", name, "--exec", "true", "--after", after,
        ])
    };
    succeeded(&server.panda(&["job", "create", "--name", "extract", "--exec", "true"]));

    let unknown = create("transform", "extrct");
    one_error_with_a_hint(&unknown, "no job named \"extrct\"");
    assert!(
        stderr(&unknown).contains("hint: did you mean \"extract\"?"),
        "{}",
        stderr(&unknown)
    );
    let itself = create("transform", "transform");
    one_error_with_a_hint(&itself, "cannot follow itself");
    let bad_end = create("transform", "extract:sometimes");
    assert!(!bad_end.status.success());
    assert!(
        stderr(&bad_end).contains("\"sometimes\" is not how a run ends"),
        "{}",
        stderr(&bad_end)
    );
    assert_eq!(job_names(&server), ["extract"], "nothing was created");

    succeeded(&create("transform", "extract"));
    succeeded(&create("load", "transform:any"));
    let cycle = server.panda(&["job", "update", "extract", "--after", "load"]);
    one_error_with_a_hint(&cycle, "extract → load → transform → extract");
    let shown = succeeded(&server.panda(&["job", "get", "extract", "-o", "json"]));
    let extract: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert!(extract.get("after").is_none(), "unchanged: {extract}");
    assert_eq!(job_names(&server), ["extract", "load", "transform"]);
}

#[test]
fn apply_creates_a_chain_in_its_order_and_export_writes_it_back() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("panda.toml");
    // The follower comes first in the file: apply creates what it follows before it.
    std::fs::write(
        &file,
        r#"
[[job]]
name = "send-report"
runtime = { kind = "process", argv = ["true"] }
after = ["generate-reports", "audit:failed"]

[[job]]
name = "generate-reports"
runtime = { kind = "process", argv = ["true"] }

[[job]]
name = "audit"
runtime = { kind = "process", argv = ["true"] }
"#,
    )
    .expect("write");
    let applied = succeeded(&server.panda(&["apply", "-f", file.to_str().expect("utf-8")]));
    let order: Vec<&str> = applied.lines().collect();
    assert_eq!(
        order,
        [
            "job/generate-reports created",
            "job/audit created",
            "job/send-report created"
        ],
        "{applied}"
    );
    let exported = succeeded(&server.panda(&["export"]));
    assert!(
        exported.contains(r#"after = ["generate-reports", "audit:failed"]"#),
        "{exported}"
    );
    std::fs::write(&file, &exported).expect("write");
    let again = succeeded(&server.panda(&["apply", "-f", file.to_str().expect("utf-8")]));
    assert!(
        again.lines().all(|l| l.ends_with("unchanged")),
        "round trip: {again}"
    );

    // A cycle within a file is refused before anything changes.
    std::fs::write(
        &file,
        r#"
[[job]]
name = "ping"
runtime = { kind = "process", argv = ["true"] }
after = ["pong"]

[[job]]
name = "pong"
runtime = { kind = "process", argv = ["true"] }
after = ["ping"]
"#,
    )
    .expect("write");
    let refused = server.panda(&["apply", "-f", file.to_str().expect("utf-8")]);
    one_error_with_a_hint(&refused, "ping → pong → ping");
    assert_eq!(
        job_names(&server),
        ["audit", "generate-reports", "send-report"]
    );
}
