//! The CLI end to end: the real binary as a server and as the client, as a user types it.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use support::webhooks::Receiver;
use support::{Home, Server, stderr, stdout, succeeded};

/// Runs `panda ARGS` against `server` with another data dir (no local admin token there) and
/// more environment.
fn panda_with(server: &Server, args: &[&str], data_dir: &Path, env: &[(&str, &str)]) -> Output {
    server
        .cli()
        .env("PANDA_DATA_DIR", data_dir)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run panda")
}

/// Polls `panda cronjob executions NAME -o json` until the newest execution is terminal.
fn wait_for_end(server: &Server, noun: &str, name: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let out = succeeded(&server.panda(&[noun, "executions", name, "-o", "json"]));
        let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
        if let Some(newest) = list.first() {
            let status = newest["status"].as_str().unwrap_or_default();
            if !matches!(status, "queued" | "running") {
                return newest.clone();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} never ended: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_headline_commands_on_the_process_runtime() {
    let server = Server::start();
    let created = succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "generate-reports",
        "--exec",
        // Two streams are read apart; the pause keeps their order in the log certain.
        "sh -c 'echo format=$REPORT_FORMAT; sleep 0.2; echo done >&2'",
        "--schedule",
        "0 5 * * *",
        "--env",
        "REPORT_FORMAT=pdf",
    ]));
    assert!(
        created.contains("cronjob generate-reports created"),
        "{created}"
    );
    let list = succeeded(&server.panda(&["cronjob", "list"]));
    assert!(
        list.contains("generate-reports") && list.contains("0 5 * * *"),
        "{list}"
    );

    let id = succeeded(&server.panda(&["cronjob", "trigger", "generate-reports"]));
    let id = id.trim();
    let ended = wait_for_end(&server, "cronjob", "generate-reports");
    assert_eq!(ended["id"], id);
    assert_eq!(ended["status"], "succeeded", "{ended}");

    let table = succeeded(&server.panda(&["cronjob", "executions", "generate-reports"]));
    assert!(
        table.starts_with("EXECUTION"),
        "a kubectl-like table: {table}"
    );
    assert!(
        table.contains(id) && table.contains("✓ succeeded") && table.contains("manual"),
        "{table}"
    );

    let logs = server.panda(&["cronjob", "logs", "generate-reports", "--latest"]);
    assert_eq!(succeeded(&logs), "format=pdf\ndone\n");
    assert!(
        stderr(&logs).contains("✓ succeeded"),
        "a final status line: {}",
        stderr(&logs)
    );
    let only_err = server.panda(&[
        "cronjob",
        "logs",
        "generate-reports",
        "--latest",
        "--stream",
        "stderr",
    ]);
    assert_eq!(succeeded(&only_err), "done\n");
}

#[test]
fn logs_latest_follows_a_running_execution_until_it_ends() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "job",
        "create",
        "--name",
        "slow",
        "--exec",
        "sh -c 'echo one; sleep 2; echo two; exit 3'",
        "--max-attempts",
        "1",
    ]));
    succeeded(&server.panda(&["job", "enqueue", "slow"]));
    // Wait until it runs, then follow.
    let started = Instant::now();
    loop {
        let out = succeeded(&server.panda(&["job", "executions", "slow", "-o", "json"]));
        if out.contains("\"running\"") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never ran: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let followed = server.panda(&["job", "logs", "slow", "--latest"]);
    assert_eq!(succeeded(&followed), "one\ntwo\n");
    let last = stderr(&followed);
    assert!(
        last.contains("☠ dead") && last.contains("exit code 3"),
        "{last}"
    );

    // --wait: the job's exit code is the command's.
    let waited = server.panda(&["job", "enqueue", "slow", "--wait"]);
    assert_eq!(waited.status.code(), Some(3), "{}", stderr(&waited));
    assert_eq!(stdout(&waited), "one\ntwo\n");
}

/// Runs `panda ARGS` with stdout and stderr into one file, as a terminal shows them; returns
/// what it wrote and whether it succeeded.
fn panda_merged(server: &Server, args: &[&str]) -> (String, bool) {
    let path = server
        .home()
        .path()
        .join(format!("merged-{}", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&path).expect("create the output file");
    let status = server
        .cli()
        .args(args)
        .stdout(file.try_clone().expect("clone the output file"))
        .stderr(file)
        .status()
        .expect("run panda");
    let text = std::fs::read_to_string(&path).expect("read the output file");
    (text, status.success())
}

#[test]
fn the_status_line_starts_its_own_line_after_output_without_a_newline() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "no-newline",
        "--exec",
        "printf done",
        "--schedule",
        "0 5 * * *",
    ]));
    let (waited, ok) = panda_merged(&server, &["cronjob", "trigger", "no-newline", "--wait"]);
    assert!(ok, "{waited}");
    let last = waited.lines().last().unwrap_or_default();
    assert!(
        waited.contains("done\n") && last.starts_with("execution ") && last.contains("✓ succeeded"),
        "the status line on a line of its own: {waited:?}"
    );

    for noun in ["cronjob", "job"] {
        let logs = server.panda(&[noun, "logs", "no-newline", "--latest"]);
        assert_eq!(
            succeeded(&logs),
            "done\n",
            "{noun} logs: stdout ends its line"
        );
        let (merged, ok) = panda_merged(&server, &[noun, "logs", "no-newline", "--latest"]);
        assert!(ok, "{merged}");
        let lines: Vec<&str> = merged.lines().collect();
        assert_eq!(lines.len(), 2, "{noun} logs: {merged:?}");
        assert_eq!(lines[0], "done");
        assert!(
            lines[1].starts_with("execution ") && lines[1].contains("✓ succeeded"),
            "{noun} logs: {merged:?}"
        );
    }
}

#[test]
fn a_jittered_cronjob_shows_its_moved_slots_and_bad_jitter_is_refused() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "spread",
        "--exec",
        "true",
        "--schedule",
        "0 * * * *",
        "--jitter",
        "5m",
    ]));
    let job: serde_json::Value = serde_json::from_str(&succeeded(
        &server.panda(&["cronjob", "get", "spread", "-o", "json"]),
    ))
    .expect("json");
    assert_eq!(job["schedule"]["jitter_ms"], 300_000, "{job}");
    let id: panda_core::JobId = serde_json::from_value(job["id"].clone()).expect("an id");
    let schedule: panda_core::Schedule =
        serde_json::from_value(job["schedule"].clone()).expect("a schedule");
    let offset = chrono::Duration::from_std(schedule.offset(id)).expect("offset");
    assert!(offset < chrono::Duration::minutes(5));

    // `next` shows each hour's slot moved by the job's offset, the same offset every time.
    let next: serde_json::Value = serde_json::from_str(&succeeded(
        &server.panda(&["cronjob", "next", "spread", "-n", "3", "-o", "json"]),
    ))
    .expect("json");
    for time in next.as_array().expect("a list") {
        let utc = chrono::DateTime::parse_from_rfc3339(time["utc"].as_str().expect("utc"))
            .expect("RFC 3339")
            .with_timezone(&chrono::Utc);
        let on_the_hour = utc - offset;
        assert_eq!(
            (
                on_the_hour.timestamp() % 3600,
                on_the_hour.timestamp_subsec_millis()
            ),
            (0, 0),
            "{utc} is a whole hour plus {offset}"
        );
    }
    let described = succeeded(&server.panda(&["cronjob", "get", "spread"]));
    assert!(described.contains("Jitter:        5m"), "{described}");
    let exported = succeeded(&server.panda(&["export"]));
    assert!(
        exported.contains("jitter = \"5m\""),
        "as the flag writes it: {exported}"
    );

    // Bad jitter: one line that says what to do; nothing created or changed.
    let zero = server.panda(&[
        "cronjob",
        "create",
        "--name",
        "zero",
        "--exec",
        "true",
        "--schedule",
        "0 * * * *",
        "--jitter",
        "0s",
    ]);
    assert!(!zero.status.success());
    assert!(
        stderr(&zero).contains("from 1s to 24h"),
        "{}",
        stderr(&zero)
    );
    let wide = server.panda(&[
        "cronjob",
        "create",
        "--name",
        "wide",
        "--exec",
        "true",
        "--schedule",
        "*/5 * * * *",
        "--jitter",
        "10m",
    ]);
    assert!(!wide.status.success());
    assert!(
        stderr(&wide).contains("not shorter than the 5m between two slots"),
        "{}",
        stderr(&wide)
    );
    let job_with = server.panda(&[
        "job", "create", "--name", "plain", "--exec", "true", "--jitter", "1m",
    ]);
    assert!(!job_with.status.success());
    assert!(
        stderr(&job_with).contains("--jitter"),
        "{}",
        stderr(&job_with)
    );
    let list = succeeded(&server.panda(&["job", "list", "-o", "json"]));
    assert!(
        !list.contains("\"zero\"") && !list.contains("\"wide\"") && !list.contains("\"plain\""),
        "{list}"
    );

    // Update: a new window, then none.
    succeeded(&server.panda(&["cronjob", "update", "spread", "--jitter", "2m"]));
    let described = succeeded(&server.panda(&["cronjob", "get", "spread"]));
    assert!(described.contains("Jitter:        2m"), "{described}");
    succeeded(&server.panda(&["cronjob", "update", "spread", "--jitter", "none"]));
    let described = succeeded(&server.panda(&["cronjob", "get", "spread"]));
    assert!(!described.contains("Jitter"), "{described}");
}

#[test]
fn cronjob_next_and_list_give_structured_fields_in_json() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "nightly",
        "--exec",
        "true",
        "--schedule",
        "0 3 * * *",
        "--timezone",
        "America/New_York",
    ]));

    // `next`: each fire time as its local instant with the zone's offset, the UTC instant and
    // the zone, never one preformatted string.
    let next: serde_json::Value = serde_json::from_str(&succeeded(
        &server.panda(&["cronjob", "next", "nightly", "-n", "3", "-o", "json"]),
    ))
    .expect("json");
    let times = next.as_array().expect("a list");
    assert_eq!(times.len(), 3, "{next}");
    for time in times {
        let mut fields: Vec<&String> = time.as_object().expect("an object").keys().collect();
        fields.sort();
        assert_eq!(fields, ["local", "timezone", "utc"], "{time}");
        assert_eq!(time["timezone"], "America/New_York");
        let utc = time["utc"].as_str().expect("utc");
        let local = time["local"].as_str().expect("local");
        assert!(utc.ends_with(":00Z"), "RFC 3339 in UTC: {utc}");
        assert!(
            local.contains("T03:00:00-04:00") || local.contains("T03:00:00-05:00"),
            "03:00 with New York's offset: {local}"
        );
        let utc = chrono::DateTime::parse_from_rfc3339(utc).expect("utc is RFC 3339");
        let local = chrono::DateTime::parse_from_rfc3339(local).expect("local is RFC 3339");
        assert_eq!(local, utc, "one instant");
    }
    let table = succeeded(&server.panda(&["cronjob", "next", "nightly", "-n", "1"]));
    assert!(
        table.contains(" 03:00:00 E") && table.trim_end().ends_with(":00Z)"),
        "people get the local time, its zone and UTC on one line: {table}"
    );

    // `list`: the last run's status and when; in JSON as fields of their own.
    let list = succeeded(&server.panda(&["cronjob", "list"]));
    assert!(
        list.contains("LAST RUN") && list.contains("STATUS"),
        "{list}"
    );
    let never: serde_json::Value = serde_json::from_str(&succeeded(
        &server.panda(&["cronjob", "list", "-o", "json"]),
    ))
    .expect("json");
    assert!(never[0].get("last_run").is_none(), "never ran: {never}");

    let id = succeeded(&server.panda(&["cronjob", "trigger", "nightly"]));
    let ended = wait_for_end(&server, "cronjob", "nightly");
    assert_eq!(ended["status"], "succeeded", "{ended}");
    let list = succeeded(&server.panda(&["cronjob", "list"]));
    let row = list
        .lines()
        .find(|line| line.starts_with("nightly"))
        .expect("a row");
    assert!(
        row.contains("✓ succeeded") && (row.contains(" ago") || row.contains("just now")),
        "{list}"
    );
    let jobs: serde_json::Value = serde_json::from_str(&succeeded(
        &server.panda(&["cronjob", "list", "-o", "json"]),
    ))
    .expect("json");
    let last_run = &jobs[0]["last_run"];
    assert_eq!(last_run["id"], id.trim(), "{jobs}");
    assert_eq!(last_run["status"], "succeeded");
    assert_eq!(last_run["trigger"], "manual");
    for field in ["created_at", "started_at", "finished_at"] {
        let at = last_run[field].as_str().expect(field);
        chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
        assert!(at.ends_with('Z'), "{field} in UTC: {at}");
    }

    // `status`: counts are numbers.
    let status: serde_json::Value =
        serde_json::from_str(&succeeded(&server.panda(&["status", "-o", "json"]))).expect("json");
    assert_eq!(status["dead_letters"], 0, "{status}");
    assert_eq!(status["dead_letters_more"], false, "{status}");

    // What only said a sentence says it in fields.
    let suspended: serde_json::Value = serde_json::from_str(&succeeded(
        &server.panda(&["cronjob", "suspend", "nightly", "-o", "json"]),
    ))
    .expect("json");
    assert_eq!(suspended["suspended"], true, "{suspended}");
    let deleted: serde_json::Value = serde_json::from_str(&succeeded(
        &server.panda(&["cronjob", "delete", "nightly", "-o", "json"]),
    ))
    .expect("json");
    assert_eq!(
        deleted,
        serde_json::json!({"job": "nightly", "deleted": true})
    );
}

#[test]
fn the_headline_commands_verbatim_on_docker() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let built = runtime.block_on(async {
        let docker = match panda_runtime::DockerRuntime::connect().await {
            Ok(docker) => docker,
            Err(err) => return Err(err.to_string()),
        };
        docker
            .build_busybox_image_with_cmd(
                "your-registry/report-job:latest",
                Path::new("/bin/busybox"),
                &["sh", "-c", "echo \"report as $REPORT_FORMAT\""],
            )
            .await
            .map_err(|err| err.to_string())
    });
    if let Err(err) = built {
        assert!(
            std::env::var("PANDA_REQUIRE_ALL_BACKENDS").as_deref() != Ok("1"),
            "Docker is required: {err}"
        );
        eprintln!("skipped: Docker is not available: {err}");
        return;
    }
    let server = Server::start();
    succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "generate-reports",
        "--image",
        "your-registry/report-job:latest",
        "--schedule",
        "0 5 * * *",
        "--env",
        "REPORT_FORMAT=pdf",
    ]));
    let empty = server.panda(&["cronjob", "executions", "generate-reports"]);
    assert!(empty.status.success());
    assert!(
        stderr(&empty).contains("no executions"),
        "{}",
        stderr(&empty)
    );

    let id = succeeded(&server.panda(&["cronjob", "trigger", "generate-reports"]));
    let ended = wait_for_end(&server, "cronjob", "generate-reports");
    assert_eq!(ended["id"], id.trim());
    assert_eq!(ended["status"], "succeeded", "{ended}");
    assert!(
        ended["image_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{ended}"
    );
    let table = succeeded(&server.panda(&["cronjob", "executions", "generate-reports"]));
    assert!(table.contains(id.trim()), "{table}");
    let logs = server.panda(&["cronjob", "logs", "generate-reports", "--latest"]);
    assert_eq!(succeeded(&logs), "report as pdf\n");
}

/// Each bad input: a non-zero exit, one `error:` line and at most one `hint:` line, and no
/// cronjob created.
#[test]
fn bad_input_is_one_error_line_with_a_hint_and_creates_nothing() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "generate-reports",
        "--exec",
        "true",
        "--schedule",
        "@daily",
    ]));
    let long = "a".repeat(200);
    let create = |name: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["cronjob", "create", "--name", name, "--exec", "true"];
        args.extend_from_slice(extra);
        args.iter().map(|s| (*s).to_owned()).collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (create("nightly", &["--schedule", "61 * * * *"]), "61"),
        (
            create(
                "nightly",
                &["--schedule", "0 5 * * *", "--timezone", "Europe/Berln"],
            ),
            "Europe/Berln",
        ),
        (create("bad/name", &["--schedule", "@daily"]), "bad/name"),
        (create(&long, &["--schedule", "@daily"]), "aaaa"),
        (
            create(
                "nightly",
                &["--schedule", "@daily", "--env", "REPORT_FORMAT"],
            ),
            "REPORT_FORMAT",
        ),
        (
            create(
                "nightly",
                &[
                    "--schedule",
                    "@daily",
                    "--concurrency",
                    "forbid",
                    "--max-running",
                    "3",
                ],
            ),
            "max_running",
        ),
        (
            create("nightly", &["--schedule", "@daily", "--max-running", "0"]),
            "max_running",
        ),
        (
            ["cronjob", "executions", "genrate-reports"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            "genrate-reports",
        ),
    ];
    for (args, mentions) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = server.panda(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            (1..=2).contains(&lines.len()) && lines[0].starts_with("error: "),
            "{args:?}: {err}"
        );
        assert!(lines[0].contains(mentions), "{args:?}: {err}");
        if lines.len() == 2 {
            assert!(lines[1].starts_with("hint: "), "{args:?}: {err}");
        }
    }
    let unknown = stderr(&server.panda(&["cronjob", "logs", "genrate-reports", "--latest"]));
    assert!(
        unknown.contains("did you mean \"generate-reports\"?"),
        "{unknown}"
    );
    let list = succeeded(&server.panda(&["cronjob", "list", "-o", "json"]));
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&list).expect("json");
    assert_eq!(jobs.len(), 1, "nothing else was created: {list}");

    // No token (a data dir without one): 401, with how to get one.
    let nowhere = tempfile::tempdir().expect("temp dir");
    let out = panda_with(&server, &["cronjob", "list"], nowhere.path(), &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("error: no API token given"), "{err}");
    assert!(err.contains("hint: "), "{err}");

    // A read-only token may read, not write: 403.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let admin = std::fs::read_to_string(server.data_dir().join("admin.token")).expect("token");
    let created = runtime.block_on(async {
        panda_client::Client::new(server.url(), Some(admin.trim().to_owned()))
            .expect("client")
            .token_create("viewer", "read_only")
            .await
            .expect("create a read-only token")
    });
    let viewer = created["secret"].as_str().expect("secret").to_owned();
    let env = [("PANDA_TOKEN", viewer.as_str())];
    succeeded(&panda_with(
        &server,
        &["cronjob", "list"],
        nowhere.path(),
        &env,
    ));
    let out = panda_with(
        &server,
        &["cronjob", "trigger", "generate-reports"],
        nowhere.path(),
        &env,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
}

#[test]
fn a_server_that_is_not_running_gets_a_hint_to_start_one() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let home = Home::new();
    let out = home
        .panda()
        .env("PANDA_URL", format!("http://127.0.0.1:{port}"))
        .env("PANDA_DATA_DIR", home.data_dir())
        .args(["cronjob", "list"])
        .output()
        .expect("run panda");
    assert!(!out.status.success());
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("error: cannot reach the Panda server"),
        "{err}"
    );
    assert!(lines[1].contains("panda server"), "{err}");
}

#[test]
fn the_dead_letter_queue_tokens_and_completions_from_the_cli() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "job",
        "create",
        "--name",
        "fragile",
        "--exec",
        "sh -c 'exit 2'",
        "--max-attempts",
        "1",
    ]));
    let waited = server.panda(&["job", "enqueue", "fragile", "--wait"]);
    assert_eq!(waited.status.code(), Some(2), "{}", stderr(&waited));

    let dead: Vec<serde_json::Value> =
        serde_json::from_str(&succeeded(&server.panda(&["dlq", "list", "-o", "json"])))
            .expect("json");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead_id = dead[0]["id"].as_str().expect("id").to_owned();
    let table = succeeded(&server.panda(&["dlq", "list"]));
    assert!(
        table.contains("☠ dead") && table.contains(&dead_id),
        "{table}"
    );

    let retry: serde_json::Value = serde_json::from_str(&succeeded(
        &server.panda(&["dlq", "retry", &dead_id, "-o", "json"]),
    ))
    .expect("json");
    assert_eq!(retry["attempt"], 2);
    assert_eq!(retry["root_id"], dead[0]["root_id"]);
    let ended = wait_for_end(&server, "job", "fragile");
    assert_eq!(ended["status"], "dead", "it failed again: {ended}");
    let again = ended["id"].as_str().expect("id").to_owned();
    let shown: serde_json::Value = serde_json::from_str(&succeeded(&server.panda(&[
        "execution",
        "get",
        &again,
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(shown["exit_code"], 2);
    succeeded(&server.panda(&["dlq", "discard", &again]));
    let left = stderr(&server.panda(&["dlq", "list"]));
    assert!(left.contains("empty"), "{left}");
    let twice = server.panda(&["dlq", "discard", &again]);
    assert!(!twice.status.success());
    assert!(
        stderr(&twice).contains("already left"),
        "{}",
        stderr(&twice)
    );

    let secret = succeeded(&server.panda(&["token", "create", "viewer", "--read-only"]));
    assert!(secret.trim().starts_with("panda_"), "{secret}");
    assert!(succeeded(&server.panda(&["token", "list"])).contains("read_only"));
    succeeded(&server.panda(&["token", "revoke", "viewer"]));
    let nowhere = tempfile::tempdir().expect("temp dir");
    let revoked = panda_with(
        &server,
        &["job", "list"],
        nowhere.path(),
        &[("PANDA_TOKEN", secret.trim())],
    );
    assert!(!revoked.status.success());
    assert!(
        stderr(&revoked).contains("not valid"),
        "{}",
        stderr(&revoked)
    );

    let completions = succeeded(&server.panda(&["completions", "bash"]));
    assert!(
        completions.contains("cronjob") && completions.contains("_panda"),
        "bash completion"
    );
}

#[test]
fn export_and_apply_round_trip_and_report_what_changed() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "generate-reports",
        "--exec",
        "true",
        "--schedule",
        "0 5 * * *",
        "--env",
        "REPORT_FORMAT=pdf",
        "--secret-env",
        "API_KEY=s3cr3t-value",
        "--alert-slack",
        "https://hooks.slack.com/services/T1/B2/hook-s3cr3t",
    ]));
    let exported = succeeded(&server.panda(&["export"]));
    assert!(
        exported.contains("https://hooks.slack.com/********") && !exported.contains("hook-s3cr3t"),
        "an alert endpoint is exported redacted: {exported}"
    );
    assert!(
        exported.contains("[[job]]") && exported.contains("generate-reports"),
        "{exported}"
    );
    assert!(
        !exported.contains("s3cr3t-value"),
        "secrets are never exported: {exported}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(&file, &exported).expect("write");
    let file = file.to_str().expect("utf-8 path");

    let again = succeeded(&server.panda(&["apply", "-f", file]));
    assert_eq!(again, "cronjob/generate-reports unchanged\n");

    let changed = exported.replace("0 5 * * *", "30 6 * * *")
        + "\n[[job]]\nname = \"send-email\"\nretry = { max_attempts = 3, backoff_base_ms = 1000, backoff_cap_ms = 60000 }\nruntime = { kind = \"process\", argv = [\"true\"] }\n";
    std::fs::write(file, changed).expect("write");
    let applied = succeeded(&server.panda(&["apply", "-f", file]));
    assert_eq!(
        applied,
        "cronjob/generate-reports updated\njob/send-email created\n"
    );
    let job: serde_json::Value = serde_json::from_str(&succeeded(&server.panda(&[
        "cronjob",
        "get",
        "generate-reports",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(job["schedule"]["cron"], "30 6 * * *");
    assert_eq!(
        job["secret_env"]["API_KEY"], "********",
        "the secret was kept, not shown"
    );
    assert_eq!(
        job["alerts"]["slack"][0], "https://hooks.slack.com/********",
        "the alert endpoint was kept (the API test checks the stored URL), not shown"
    );
    let logs_env = succeeded(&server.panda(&["job", "list"]));
    assert!(logs_env.contains("send-email"), "{logs_env}");

    // A bad file changes nothing and says where.
    std::fs::write(file, "[[job]]\nname = \"Bad Name\"\n").expect("write");
    let out = server.panda(&["apply", "-f", file]);
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
}

#[test]
fn update_changes_only_the_flags_given() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "generate-reports",
        "--exec",
        "sh -c 'echo $REPORT_FORMAT ${#API_KEY}'",
        "--schedule",
        "0 5 * * *",
        "--env",
        "REPORT_FORMAT=pdf",
        "--secret-env",
        "API_KEY=s3cr3t-value",
        "--timeout",
        "10m",
    ]));
    let updated = succeeded(&server.panda(&[
        "cronjob",
        "update",
        "generate-reports",
        "--schedule",
        "30 6 * * *",
        "--timezone",
        "Europe/Berlin",
        "--env",
        "REPORT_FORMAT=csv",
        "--keep",
        "20",
        "--max-age",
        "30d",
        "--max-running",
        "3",
    ]));
    assert_eq!(updated, "cronjob generate-reports updated\n");
    let job: serde_json::Value = serde_json::from_str(&succeeded(&server.panda(&[
        "cronjob",
        "get",
        "generate-reports",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(job["schedule"]["cron"], "30 6 * * *");
    assert_eq!(job["schedule"]["timezone"], "Europe/Berlin");
    assert_eq!(job["timeout_ms"], 600_000, "what was not given stays");
    assert_eq!(job["keep"], 20);
    assert_eq!(job["max_age_ms"], 30_u64 * 86_400_000);
    assert_eq!(job["max_running"], 3);
    assert_eq!(
        job["concurrency"], "allow",
        "--max-running alone implies allow"
    );
    let described = succeeded(&server.panda(&["cronjob", "get", "generate-reports"]));
    assert!(
        described.contains("History:       keep 20, max age 30days"),
        "{described}"
    );
    assert!(
        described.contains("Concurrency:   allow, at most 3 running"),
        "{described}"
    );
    succeeded(&server.panda(&["cronjob", "trigger", "generate-reports"]));
    wait_for_end(&server, "cronjob", "generate-reports");
    let logs = succeeded(&server.panda(&["cronjob", "logs", "generate-reports", "--latest"]));
    assert_eq!(logs, "csv 12\n", "the new env, and the secret kept");
    succeeded(&server.panda(&[
        "cronjob",
        "update",
        "generate-reports",
        "--max-running",
        "none",
    ]));
    let unlimited: serde_json::Value = serde_json::from_str(&succeeded(&server.panda(&[
        "cronjob",
        "get",
        "generate-reports",
        "-o",
        "json",
    ])))
    .expect("json");
    assert!(unlimited.get("max_running").is_none(), "{unlimited}");

    let bad = server.panda(&[
        "cronjob",
        "update",
        "generate-reports",
        "--schedule",
        "61 * * * *",
    ]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).starts_with("error: --schedule \"61 * * * *\""),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn login_saves_a_checked_token_that_later_commands_use() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "cronjob",
        "create",
        "--name",
        "nightly",
        "--exec",
        "true",
        "--schedule",
        "@daily",
    ]));
    let viewer = succeeded(&server.panda(&["token", "create", "viewer", "--read-only"]));
    let viewer = viewer.trim();
    let nowhere = tempfile::tempdir().expect("temp dir");

    let refused = panda_with(
        &server,
        &["login", "--token", "panda_wrong"],
        nowhere.path(),
        &[],
    );
    assert!(!refused.status.success());
    let config = server.home().path().join("config/panda/config.toml");
    assert!(!config.exists(), "a token the server refuses is not saved");

    let out = succeeded(&panda_with(
        &server,
        &["login", "--token", viewer],
        nowhere.path(),
        &[],
    ));
    assert!(out.starts_with("logged in to "), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config)
        .expect("saved")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // No token given and no local admin token: the saved one is used.
    let status = succeeded(&panda_with(&server, &["status"], nowhere.path(), &[]));
    assert!(
        status.contains("Cronjobs:      1 (0 suspended)"),
        "{status}"
    );
    assert!(status.contains("Next run:      nightly"), "{status}");
}

#[test]
fn a_failing_job_alerts_the_servers_webhook_and_the_cli_lists_it() {
    let receiver = Receiver::start();
    let server = Server::start_with(&["--alert-webhook", &receiver.url]);
    succeeded(&server.panda(&[
        "job",
        "create",
        "--name",
        "flaky",
        "--exec",
        "sh -c 'echo about to fail; exit 3'",
        "--max-attempts",
        "1",
    ]));
    let described = succeeded(&server.panda(&["job", "get", "flaky"]));
    assert!(
        described.contains("Alerts:        on failure; to the server's notifiers"),
        "{described}"
    );
    succeeded(&server.panda(&["job", "trigger", "flaky"]));
    let ended = wait_for_end(&server, "job", "flaky");
    assert_eq!(ended["status"], "dead");

    let bodies = receiver.wait_for(1);
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let alert = &bodies[0];
    assert_eq!(alert["event"], "dead");
    assert_eq!(alert["job"], "flaky");
    assert_eq!(alert["execution"]["exit_code"], 3);
    assert_eq!(alert["log_tail"], serde_json::json!(["about to fail"]));
    assert!(
        alert["dashboard_url"]
            .as_str()
            .is_some_and(|u| u.starts_with(server.url()) && u.contains("/executions/")),
        "{alert}"
    );

    // The CLI shows it, delivered once the record is written.
    let started = Instant::now();
    loop {
        let listed: serde_json::Value =
            serde_json::from_str(&succeeded(&server.panda(&["alert", "list", "-o", "json"])))
                .expect("json");
        let delivery = &listed[0]["deliveries"][0];
        if delivery["state"] == "delivered" {
            assert_eq!(listed.as_array().map(Vec::len), Some(1));
            assert_eq!(listed[0]["kind"], "dead");
            assert_eq!(
                delivery["url"],
                panda_core::api::redacted_url(&receiver.url),
                "where it went, without the endpoint's path (a Slack URL's credential)"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{listed:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The dashboard lists it too (its session cookie holds the token).
    let token = std::fs::read_to_string(server.data_dir().join("admin.token")).expect("token");
    let page = support::http_get(
        server.url(),
        "/alerts",
        &[&format!("Cookie: panda_session={}", token.trim())],
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains(">flaky</a>") && page.contains("> dead</span>") && page.contains("1 of 1"),
        "{page}"
    );

    let table = succeeded(&server.panda(&["alert", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("RAISED"), "{table}");
    assert!(
        lines[1].contains("flaky") && lines[1].contains("dead") && lines[1].contains("1/1"),
        "{table}"
    );
}

/// The lines `file` holds, none when it does not exist yet.
fn lines_of(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `n` runs have written their `end` line to `log`.
fn wait_for_ends(log: &Path, n: usize) {
    let started = Instant::now();
    while lines_of(log)
        .iter()
        .filter(|l| l.starts_with("end"))
        .count()
        < n
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{n} runs never ended: {:?}",
            lines_of(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_triggered_job_runs_its_queue_side_by_side_and_takes_payloads_in_bulk() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let log = dir.path().join("runs");
    // Each run says when it starts and when it ends, in the file the test reads.
    let exec = format!(
        "sh -c 'echo start $PANDA_PAYLOAD >> {0}; sleep 1; echo end $PANDA_PAYLOAD >> {0}'",
        log.display()
    );
    succeeded(&server.panda(&["job", "create", "--name", "resize-image", "--exec", &exec]));
    let shown = succeeded(&server.panda(&["job", "get", "resize-image"]));
    assert!(shown.contains("Concurrency:   allow"), "{shown}");

    for i in 1..=6 {
        succeeded(&server.panda(&[
            "job",
            "enqueue",
            "resize-image",
            "--payload",
            &format!("{{\"id\":{i}}}"),
        ]));
    }
    wait_for_ends(&log, 6);
    let lines = lines_of(&log);
    let before_first_end = lines.iter().take_while(|l| l.starts_with("start")).count();
    assert!(
        before_first_end >= 2,
        "the runs overlap: more than one started before the first ended: {lines:?}"
    );

    // One payload per line, sent as batches; a line that is not JSON stops it all up front.
    let file = dir.path().join("items.jsonl");
    std::fs::write(&file, "{\"id\": 7}\n\n{\"id\": 8}\n{\"id\": 9}\n").expect("write");
    let out = succeeded(&server.panda(&[
        "job",
        "enqueue",
        "resize-image",
        "--payload-file",
        file.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(
        out.trim(),
        "3 queued, 0 already queued (same idempotency key), 0 refused"
    );
    std::fs::write(&file, "{\"id\": 10}\nnot json\n").expect("write");
    let refused = server.panda(&[
        "job",
        "enqueue",
        "resize-image",
        "--payload-file",
        file.to_str().expect("utf-8 path"),
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("line 2: not JSON"),
        "{}",
        stderr(&refused)
    );
    wait_for_ends(&log, 9);
    std::thread::sleep(Duration::from_millis(500));
    let ends: Vec<String> = lines_of(&log)
        .into_iter()
        .filter(|l| l.starts_with("end"))
        .collect();
    assert_eq!(
        ends.len(),
        9,
        "each payload ran once, the refused file's none: {ends:?}"
    );
    assert!(!ends.iter().any(|l| l.contains("10")), "{ends:?}");
}

#[test]
fn the_api_creates_a_job_from_a_name_and_what_to_run() {
    let server = Server::start();
    let token = server.admin_token();
    let auth = format!("Authorization: Bearer {token}");
    let create = |body: &str| -> String {
        let output = std::process::Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-X", "POST", "-H", &auth])
            .args(["-H", "Content-Type: application/json", "-d", body])
            .arg(format!("{}/api/v1/jobs", server.url()))
            .output()
            .expect("run curl");
        stdout(&output)
    };
    let job = create(r#"{"name": "send-email", "runtime": {"kind": "process", "argv": ["true"]}}"#);
    assert!(job.ends_with("201"), "{job}");
    let body: serde_json::Value =
        serde_json::from_str(job.rsplit_once('\n').expect("a status").0).expect("json");
    assert_eq!(body["concurrency"], "allow");
    assert_eq!(body["retry"]["max_attempts"], 3);
    assert_eq!(body["timeout_ms"], 3_600_000);
    let cron = create(
        r#"{"name": "nightly", "runtime": {"kind": "process", "argv": ["true"]}, "schedule": {"cron": "0 3 * * *"}}"#,
    );
    assert!(cron.ends_with("201"), "{cron}");
    let body: serde_json::Value =
        serde_json::from_str(cron.rsplit_once('\n').expect("a status").0).expect("json");
    assert_eq!(body["concurrency"], "forbid");
    assert_eq!(body["retry"]["max_attempts"], 1);
}

#[test]
fn a_paused_queue_keeps_its_work_until_resumed_and_a_bad_name_is_refused() {
    let server = Server::start();
    let ran = server.data_dir().join("ran.txt");
    let command = format!("sh -c 'echo ran >> {}'", ran.display());
    succeeded(&server.panda(&[
        "job", "create", "--name", "mail", "--exec", &command, "--queue", "emails",
    ]));
    let paused = succeeded(&server.panda(&["queue", "pause", "emails"]));
    assert!(paused.contains("queue emails paused"), "{paused}");
    let id = succeeded(&server.panda(&["job", "trigger", "mail"]));
    let id = id.trim();
    // The node serves every queue and polls often: the work is taken if it is ever to be.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!ran.exists(), "a paused queue started its work");
    let execution: serde_json::Value = serde_json::from_str(&succeeded(&server.panda(&[
        "execution",
        "get",
        id,
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(execution["status"], "queued", "{execution}");
    let listed = succeeded(&server.panda(&["queue", "list"]));
    let row = listed
        .lines()
        .find(|l| l.starts_with("emails"))
        .unwrap_or_else(|| panic!("emails listed: {listed}"));
    assert!(row.contains("paused"), "{listed}");
    let queues: serde_json::Value =
        serde_json::from_str(&succeeded(&server.panda(&["queue", "list", "-o", "json"])))
            .expect("json");
    assert_eq!(queues[0]["name"], "emails", "{queues}");
    assert_eq!(
        (queues[0]["paused"].as_bool(), queues[0]["due"].as_u64()),
        (Some(true), Some(1))
    );

    let resumed = succeeded(&server.panda(&["queue", "resume", "emails"]));
    assert!(resumed.contains("queue emails running"), "{resumed}");
    let end = wait_for_end(&server, "job", "mail");
    assert_eq!(end["status"], "succeeded", "{end}");
    assert_eq!(std::fs::read_to_string(&ran).expect("ran"), "ran\n");

    // A name that cannot be a queue's: one line that says what names are; nothing paused.
    let bad = server.panda(&["queue", "pause", "Bad_Queue"]);
    assert!(!bad.status.success());
    let err = stderr(&bad);
    assert_eq!(
        err.trim().lines().count(),
        2,
        "an error and its hint: {err}"
    );
    assert!(
        err.contains("lowercase letters, digits and dashes"),
        "{err}"
    );
    let queues = succeeded(&server.panda(&["queue", "list"]));
    assert!(!queues.contains("paused"), "{queues}");
}

#[test]
fn a_per_key_limit_is_shown_and_a_bad_key_is_refused() {
    let server = Server::start();
    succeeded(&server.panda(&[
        "job",
        "create",
        "--name",
        "sync",
        "--exec",
        "true",
        "--max-running",
        "1",
        "--concurrency-key",
        "payload.customer_id",
    ]));
    let described = succeeded(&server.panda(&["job", "get", "sync"]));
    assert!(
        described.contains("allow, at most 1 running per payload.customer_id"),
        "{described}"
    );
    let exported = succeeded(&server.panda(&["export"]));
    assert!(
        exported.contains("concurrency_key = \"payload.customer_id\""),
        "{exported}"
    );
    // A malformed key, or a key without a limit: one line and its hint; nothing created.
    for (args, says) in [
        (
            vec!["--max-running", "1", "--concurrency-key", "customer_id"],
            "payload.FIELD",
        ),
        (
            vec!["--concurrency-key", "payload.customer_id"],
            "needs max_running",
        ),
    ] {
        let mut all = vec!["job", "create", "--name", "bad-key", "--exec", "true"];
        all.extend(args);
        let out = server.panda(&all);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    let listed = succeeded(&server.panda(&["job", "list"]));
    assert!(!listed.contains("bad-key"), "{listed}");
    // update clears the key, leaving the per-job limit.
    succeeded(&server.panda(&["job", "update", "sync", "--concurrency-key", "none"]));
    let described = succeeded(&server.panda(&["job", "get", "sync"]));
    assert!(
        described.contains("allow, at most 1 running\n"),
        "{described}"
    );
}

#[test]
fn a_rate_limited_job_starts_its_limit_the_rest_wait_with_the_reason_and_bad_rates_are_refused() {
    let server = Server::start();
    let log = server.data_dir().join("ran.txt");
    // Each run writes its customer's name: what ran is read from what the runs did.
    let command = format!("sh -c 'echo \"end $PANDA_PAYLOAD\" >> {}'", log.display());
    succeeded(&server.panda(&[
        "job",
        "create",
        "--name",
        "mail",
        "--exec",
        &command,
        "--rate-limit",
        "2/1h",
        "--rate-limit-key",
        "payload.customer",
    ]));
    let described = succeeded(&server.panda(&["job", "get", "mail"]));
    assert!(
        described.contains("Rate limit:    2 starts per 1h per payload.customer"),
        "{described}"
    );
    let exported = succeeded(&server.panda(&["export"]));
    assert!(exported.contains("per = \"1h\""), "{exported}");
    assert!(
        exported.contains("key = \"payload.customer\""),
        "{exported}"
    );

    let mut ids = Vec::new();
    for customer in ["a", "a", "a", "b"] {
        let payload = format!("{{\"customer\":\"{customer}\"}}");
        let id = succeeded(&server.panda(&["job", "trigger", "mail", "--payload", &payload]));
        ids.push(id.trim().to_owned());
    }
    wait_for_ends(&log, 3);
    // The node polls often: a fourth start, if it were to come, comes in this time.
    std::thread::sleep(Duration::from_secs(2));
    let mut ran = lines_of(&log);
    ran.sort();
    assert_eq!(
        ran,
        [
            "end {\"customer\":\"a\"}",
            "end {\"customer\":\"a\"}",
            "end {\"customer\":\"b\"}"
        ],
        "two of a and the one of b ran; a's third waits"
    );
    let waiting: serde_json::Value = serde_json::from_str(&succeeded(&server.panda(&[
        "execution",
        "get",
        &ids[2],
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(waiting["status"], "queued", "{waiting}");
    let reason = waiting["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("rate limited until ")
            && reason.ends_with("key \"a\" has started 2 in the last 1h, its limit"),
        "{waiting}"
    );

    // Without the limit, the waiting run starts at once.
    succeeded(&server.panda(&["job", "update", "mail", "--rate-limit", "none"]));
    wait_for_ends(&log, 4);
    let described = succeeded(&server.panda(&["job", "get", "mail"]));
    assert!(!described.contains("Rate limit"), "{described}");

    // A zero, malformed or out-of-range rate, or a bad key: refused, nothing created.
    for (args, says) in [
        (vec!["--rate-limit", "0/1m"], "allows 0 starts per window"),
        (
            vec!["--rate-limit", "fast"],
            "STARTS/WINDOW, such as 100/1m",
        ),
        (vec!["--rate-limit", "5/500ms"], "use from 1s to 31d"),
        (
            vec!["--rate-limit", "5/1m", "--rate-limit-key", "customer"],
            "rate_limit_key",
        ),
        (
            vec!["--rate-limit-key", "payload.customer"],
            "--rate-limit <STARTS/WINDOW>",
        ),
    ] {
        let mut all = vec!["job", "create", "--name", "bad-rate", "--exec", "true"];
        all.extend(args);
        let out = server.panda(&all);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    let listed = succeeded(&server.panda(&["job", "list"]));
    assert!(!listed.contains("bad-rate"), "{listed}");
    let out = server.panda(&["job", "update", "mail", "--rate-limit-key", "env.X"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("this job has no rate limit"),
        "{}",
        stderr(&out)
    );
}
