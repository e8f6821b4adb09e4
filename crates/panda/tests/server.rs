//! `panda server` run as a user runs it: the real binary, a temp data dir, real signals.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn panda() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_panda"));
    command
        .env_remove("PANDA_DATABASE_URL")
        .env_remove("PANDA_DATA_DIR")
        .env("PANDA_LOG", "info");
    command
}

/// Starts the server and returns once it says the admin token is in place.
fn start_server(data_dir: &Path) -> Child {
    let mut server = panda()
        .args(["server", "--bind", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start panda server");
    let stderr = server.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("admin token") => break,
            Some(Ok(line)) => seen.push(line),
            _ => panic!("panda server stopped before it was ready: {seen:#?}"),
        }
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    server
}

fn stop(mut server: Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
    let status = server.wait().expect("wait for the server");
    assert!(status.success(), "SIGTERM is a clean stop, got {status}");
}

#[test]
fn first_start_writes_an_owner_only_admin_token_that_later_starts_keep() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_path = dir.path().join("admin.token");

    let server = start_server(dir.path());
    let token = std::fs::read_to_string(&token_path).expect("read the admin token");
    stop(server);

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
    stop(again);

    // A token file the store does not know (say, copied from elsewhere) is replaced.
    std::fs::write(&token_path, "panda_0000\n").expect("overwrite the token");
    let replaced = start_server(dir.path());
    let fresh = std::fs::read_to_string(&token_path).expect("read");
    stop(replaced);
    assert_ne!(fresh, "panda_0000\n");
    assert_ne!(fresh, token);
    assert!(fresh.starts_with("panda_"));
}

#[test]
fn an_unsupported_database_url_is_one_error_line_with_a_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = panda()
        .args([
            "server",
            "--database-url",
            "mysql://root:hunter2@db/panda",
            "--data-dir",
        ])
        .arg(dir.path())
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
    stop(server);
    assert!(first.iter().all(|s| s.fired));

    let server = start_server(dir.path());
    let later = slots(first.len() + 2);
    stop(server);
    let mut instants: Vec<_> = later.iter().map(|s| s.scheduled_at).collect();
    instants.sort();
    instants.dedup();
    assert_eq!(instants.len(), later.len(), "no slot recorded twice");
}

#[test]
fn log_format_json_writes_one_json_object_a_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = panda()
        .args([
            "--log-format",
            "json",
            "server",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start panda server");
    let stderr = server.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = 0;
    while let Some(Ok(line)) = lines.next() {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert!(
            value["level"].is_string() && value["fields"]["message"].is_string(),
            "{line}"
        );
        seen += 1;
        if line.contains("workers running") {
            break;
        }
    }
    assert!(seen >= 3, "the start-up lines came");
    std::thread::spawn(move || lines.for_each(drop));
    stop(server);
}
