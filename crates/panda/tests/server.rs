//! `panda server` run as a user runs it: the real binary, a temp data dir, real signals.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::{Home, Server, Start, stderr};

fn start_server(data_dir: &Path) -> Server {
    Start::server().data_dir(data_dir).start()
}

#[test]
fn first_start_writes_an_owner_only_admin_token_that_later_starts_keep() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_path = dir.path().join("admin.token");

    let server = start_server(dir.path());
    let token = std::fs::read_to_string(&token_path).expect("read the admin token");
    server.stop();

    assert!(token.starts_with("panda_"), "{token:?}");
    let mode = std::fs::metadata(&token_path)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    assert!(
        dir.path().join("panda.db").exists(),
        "SQLite in the data dir"
    );

    // The store knows the token, so the second start leaves the file alone.
    let again = start_server(dir.path());
    assert_eq!(std::fs::read_to_string(&token_path).expect("read"), token);
    again.stop();

    // A token file the store does not know (say, copied from elsewhere) is replaced.
    std::fs::write(&token_path, "panda_0000\n").expect("overwrite the token");
    let replaced = start_server(dir.path());
    let fresh = std::fs::read_to_string(&token_path).expect("read");
    replaced.stop();
    assert_ne!(fresh, "panda_0000\n");
    assert_ne!(fresh, token);
    assert!(fresh.starts_with("panda_"));
}

#[test]
fn an_unsupported_database_url_is_one_error_line_with_a_hint() {
    let home = Home::new();
    let output = home
        .panda()
        .args([
            "server",
            "--database-url",
            "mysql://root:hunter2@db/panda",
            "--data-dir",
        ])
        .arg(home.data_dir())
        .output()
        .expect("run panda");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("error: unsupported database URL"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password is never printed: {stderr}"
    );
    assert!(lines[1].starts_with("hint: "), "{stderr}");
}

/// The server runs the scheduler: a cronjob already in the store gets its slots recorded, on
/// the real clock, and a restart picks up where the last run stopped.
#[test]
fn the_server_records_the_slots_of_a_cronjob_in_its_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let db = dir.path().join("panda.db");
    let job = runtime.block_on(async {
        let store = panda_store::SqliteStore::open(&db).await.expect("open");
        let mut spec = panda_core::JobSpec::new(
            panda_core::JobName::new("every-second").expect("name"),
            panda_core::RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        spec.schedule = Some(panda_core::Schedule::new("* * * * * *"));
        panda_store::JobStore::job_create(&store, &spec, chrono::Utc::now())
            .await
            .expect("create")
    });

    let slots = |at_least: usize| {
        runtime.block_on(async {
            let store = panda_store::SqliteStore::open(&db).await.expect("open");
            // Waiting for the real clock: up to 30 s for slots that come every second.
            for _ in 0..300 {
                let slots = panda_store::SlotStore::slot_list(&store, job.id, 1000)
                    .await
                    .expect("slots");
                if slots.len() >= at_least {
                    return slots;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("fewer than {at_least} slots recorded in 30 s");
        })
    };

    let server = start_server(dir.path());
    let first = slots(2);
    server.stop();
    assert!(first.iter().all(|s| s.fired));

    let server = start_server(dir.path());
    let later = slots(first.len() + 2);
    server.stop();
    let mut instants: Vec<_> = later.iter().map(|s| s.scheduled_at).collect();
    instants.sort();
    instants.dedup();
    assert_eq!(instants.len(), later.len(), "no slot recorded twice");
}

#[test]
fn log_format_json_writes_one_json_object_a_line() {
    let server = Start::server().global(["--log-format", "json"]).start();
    let log = server.stop();
    for line in &log {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert!(
            value["level"].is_string() && value["fields"]["message"].is_string(),
            "{line}"
        );
    }
    assert!(log.len() >= 3, "the start-up lines came: {log:#?}");
    assert!(
        log.iter().any(|line| line.contains("workers running")),
        "{log:#?}"
    );
}

/// Each mistake in the configuration is reported as itself, before anything is bound or
/// opened: with the listening address taken (as when another server runs on the default
/// port), the error is still the mistake, and no data dir is made.
#[test]
fn invalid_configuration_is_one_error_line_before_anything_is_bound_or_opened() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = taken.local_addr().expect("the held address").to_string();
    let home = Home::new();
    let not_a_dir = home.path().join("a-file");
    std::fs::write(&not_a_dir, "").expect("write a file");
    let not_a_dir = not_a_dir.to_str().expect("a UTF-8 path").to_owned();
    let nowhere = home.path().join("missing/ready");
    let nowhere = nowhere.to_str().expect("a UTF-8 path").to_owned();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--database-url", "mysql://root:hunter2@db/panda"],
            "error: unsupported database URL",
        ),
        (
            &["--heartbeat-interval", "20s", "--lease-ttl", "15s"],
            "error: --heartbeat-interval 20s must be above 0 and shorter than --lease-ttl 15s",
        ),
        (
            &["--prune-interval", "0s"],
            "error: --prune-interval must be above 0",
        ),
        (
            &["--max-age", "10ms"],
            "error: --max-age must be at least 1s",
        ),
        (
            &["--alert-webhook", "hooks.example.com/panda"],
            "error: --alert-webhook/--alert-slack:",
        ),
        (
            &["--public-url", "panda.example.com"],
            "error: --public-url \"panda.example.com\" is not an http:// or https:// URL",
        ),
        (
            &["--metrics-bind", "localhost"],
            "error: --metrics-bind \"localhost\" is not an address with a port",
        ),
        (&["--ready-file", &nowhere], "error: --ready-file"),
    ];
    for (args, error) in cases {
        let data_dir = home.path().join("data");
        let output = home
            .panda()
            .args(["server", "--bind", &taken, "--data-dir"])
            .arg(&data_dir)
            .args(*args)
            .output()
            .expect("run panda");
        let err = one_error(&output, error);
        assert!(
            !err.contains("hunter2"),
            "the password is never printed: {err}"
        );
        assert!(!data_dir.exists(), "{args:?}: the data dir was made");
    }

    // A bad --bind, and a data dir that is a file, with the metrics address taken.
    let data_dir = home.data_dir().to_string_lossy().into_owned();
    for (args, error) in [
        (
            ["--bind", "nonsense", "--data-dir", &data_dir],
            "error: --bind \"nonsense\" is not an address with a port",
        ),
        (
            ["--bind", "127.0.0.1:0", "--data-dir", &not_a_dir],
            "error: the data directory",
        ),
    ] {
        let output = home
            .panda()
            .arg("server")
            .args(args)
            .args(["--metrics-bind", &taken])
            .output()
            .expect("run panda");
        one_error(&output, error);
    }
}

/// Asserts that `output` failed with one line that starts with `error` and one hint; returns
/// its stderr.
#[track_caller]
fn one_error(output: &std::process::Output, error: &str) -> String {
    let err = stderr(output);
    let lines: Vec<&str> = err.lines().collect();
    assert!(!output.status.success(), "{err}");
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with(error), "{err}");
    assert!(lines[1].starts_with("hint: "), "{err}");
    err
}
