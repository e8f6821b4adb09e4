//! A node's work dies with the node. The real binary runs jobs that write a witness file (a
//! line when they start and one when they end, with their run's idempotency key and attempt);
//! the node is SIGKILLed or SIGSTOPped mid-run, and the witness and a scan of `/proc` show that
//! nothing of its runs goes on and nothing runs twice, and the store that nothing is lost.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, JobName, JobSpec, RetryPolicy, RuntimeSpec, Status,
};
use panda_store::{NewExecution, Store};
use support::Start;
use support::backend::Backend;
use support::runs::{all_of, wait_until};

/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(90);

/// Flags that make a dead node's lease expire in 2 s.
const FAST_LEASES: [&str; 4] = ["--lease-ttl", "2s", "--heartbeat-interval", "500ms"];

/// A job that runs `sh -c` with `marker` in its environment (to find its processes in
/// `/proc`): it writes `start KEY ATTEMPT` to `witness`, sleeps (a child process: `sleep` is
/// not exec'd) `first` seconds on its first attempt and `retry` on later ones, then writes
/// `end KEY ATTEMPT`. With `stray`, it also starts a process that leaves its group and parent
/// (`setsid` in a subshell that exits), which writes `stray-end KEY ATTEMPT` after the same
/// sleep, just before its leader ends.
fn witness_job(
    name: &str,
    witness: &Path,
    marker: &str,
    first: u32,
    retry: u32,
    stray: bool,
) -> JobSpec {
    let w = witness.display();
    // The stray ends before its leader, which waits for it a little: only a kill stops it.
    let (stray, wait) = if stray {
        (
            format!(
                "(setsid sh -c 'sleep $T; echo \"stray-end $PANDA_IDEMPOTENCY_KEY $PANDA_ATTEMPT\" >> {w}' &); "
            ),
            "sleep 0.5; ",
        )
    } else {
        (String::new(), "")
    };
    let script = format!(
        "if [ \"$PANDA_ATTEMPT\" = 1 ]; then T={first}; else T={retry}; fi; export T; \
         echo \"start $PANDA_IDEMPOTENCY_KEY $PANDA_ATTEMPT\" >> {w}; {stray}\
         sleep $T; {wait}echo \"end $PANDA_IDEMPOTENCY_KEY $PANDA_ATTEMPT\" >> {w}"
    );
    let mut spec = JobSpec::new(
        JobName::new(name).expect("name"),
        RuntimeSpec::Process {
            argv: vec!["sh".into(), "-c".into(), script],
        },
    );
    spec.env.insert("FAULT_MARKER".into(), marker.into());
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.retry = RetryPolicy {
        max_attempts: 3,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(200),
    };
    spec
}

/// The witness's lines as (what, run key, attempt).
fn witness(path: &Path) -> Vec<(String, String, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((
                words.next()?.to_owned(),
                words.next()?.to_owned(),
                words.next()?.parse().ok()?,
            ))
        })
        .collect()
}

fn lines_of<'a>(
    lines: &'a [(String, String, u32)],
    what: &'a str,
) -> impl Iterator<Item = &'a (String, String, u32)> {
    lines.iter().filter(move |(w, _, _)| w == what)
}

/// The live processes whose environment holds `var`.
fn processes_with(var: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if zombie {
            continue;
        }
        if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ"))
            && environ.split(|&b| b == 0).any(|v| v == var.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// The processes of the runs marked `marker` alive 0.5 s and 1 s after `killed_at`.
fn survivors(marker: &str, killed_at: Instant) -> (usize, usize) {
    let var = format!("FAULT_MARKER={marker}");
    std::thread::sleep(
        (killed_at + Duration::from_millis(500)).saturating_duration_since(Instant::now()),
    );
    let half = processes_with(&var).len();
    std::thread::sleep(
        (killed_at + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );
    let one = processes_with(&var).len();
    (half, one)
}

fn wait_for_witness(path: &Path, what: &str, done: impl Fn(&[(String, String, u32)]) -> bool) {
    let started = Instant::now();
    loop {
        let lines = witness(path);
        if done(&lines) {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "never {what}: {lines:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn enqueue(store: &Arc<dyn Store>, job: &str, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for _ in 0..n {
        let e = store
            .execution_enqueue(&NewExecution::api(job), Utc::now())
            .await
            .expect("enqueue")
            .execution;
        keys.push(e.run_key());
    }
    keys
}

/// Every run ended succeeded exactly once, by the witness and by the store.
fn assert_each_ran_to_its_end_once(
    lines: &[(String, String, u32)],
    keys: &[String],
    all: &[Execution],
) {
    for key in keys {
        let ends = lines_of(lines, "end").filter(|(_, k, _)| k == key).count();
        assert_eq!(ends, 1, "run {key} ran to its end exactly once: {lines:?}");
        let succeeded = all
            .iter()
            .filter(|e| e.run_key() == *key && e.status == Status::Succeeded)
            .count();
        assert_eq!(succeeded, 1, "run {key} succeeded once in the store");
    }
}

fn marker() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

// ---- a single SQLite server SIGKILLed with 20 runs going ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_sigkilled_takes_its_runs_and_their_strays_with_it() {
    const N: usize = 18;
    const STRAYS: usize = 2;
    let backend = Backend::sqlite().await;
    let store = &backend.store;
    let witness_path = backend.dir.path().join("witness");
    let marker = marker();
    store
        .job_create(
            &witness_job("work", &witness_path, &marker, 4, 1, false),
            Utc::now(),
        )
        .await
        .expect("create");
    store
        .job_create(
            &witness_job("escape", &witness_path, &marker, 4, 1, true),
            Utc::now(),
        )
        .await
        .expect("create");
    let mut keys = enqueue(store, "work", N).await;
    let strays = enqueue(store, "escape", STRAYS).await;
    keys.extend(strays.iter().cloned());
    let mut args = vec!["--concurrency", "32"];
    args.extend(FAST_LEASES);
    let server = backend.node(Start::server(), "node-a", &args);
    wait_for_witness(&witness_path, "every run started", |lines| {
        lines_of(lines, "start").count() == N + STRAYS
    });
    // The strays have left their group and their parent by now (they start first).
    std::thread::sleep(Duration::from_millis(200));
    let var = format!("FAULT_MARKER={marker}");
    let before = processes_with(&var).len();
    assert!(
        before >= 2 * (N + STRAYS),
        "each run is a shell and a sleep, and the strays: {before}"
    );
    server.kill();
    let killed_at = Instant::now();
    let (half, one) = survivors(&marker, killed_at);
    eprintln!("{before} job processes; alive 0.5 s after the SIGKILL: {half}, 1 s after: {one}");
    assert_eq!(one, 0, "no job process outlives its node by 1 s");
    // Past the first attempts' sleep: had anything survived, it would have written its end.
    std::thread::sleep(Duration::from_secs(4));
    let lines = witness(&witness_path);
    assert_eq!(
        lines.iter().filter(|(w, _, _)| w != "start").count(),
        0,
        "nothing of the killed runs went on: {lines:?}"
    );

    let server = backend.node(Start::server(), "node-a", &args);
    let log = server.log();
    let all = wait_until(store.as_ref(), "work", "all succeeded", |all| {
        all.iter().filter(|e| e.status == Status::Succeeded).count() == N
            && all.iter().all(|e| e.status.is_terminal())
    })
    .await;
    let mut all_escape = wait_until(store.as_ref(), "escape", "all succeeded", |all| {
        all.iter().filter(|e| e.status == Status::Succeeded).count() == STRAYS
            && all.iter().all(|e| e.status.is_terminal())
    })
    .await;
    wait_for_witness(&witness_path, "the strays of the retries ended", |lines| {
        lines_of(lines, "stray-end").count() == STRAYS
    });
    let log = [log, server.stop()].concat();
    assert!(
        log.iter()
            .any(|l| l.contains("cleared the records of runs a dead node left")),
        "the restarted node looked at what the dead one left: {log:#?}"
    );
    let lines = witness(&witness_path);
    all_escape.extend(all);
    assert_each_ran_to_its_end_once(&lines, &keys, &all_escape);
    for key in &strays {
        let ends: Vec<_> = lines_of(&lines, "stray-end")
            .filter(|(_, k, _)| k == key)
            .collect();
        assert_eq!(
            ends.len(),
            1,
            "the stray of {key} ran once, in the retry: {lines:?}"
        );
        assert!(
            ends[0].2 > 1,
            "the killed attempt's stray never ended: {lines:?}"
        );
    }
    for (_, key, attempt) in lines_of(&lines, "end") {
        assert!(*attempt > 1, "run {key}: only the retry ended");
    }
    backend.close().await;
}

// ---- two nodes on PostgreSQL, one SIGKILLed mid-run ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_nodes_runs_stop_before_the_other_node_reruns_them() {
    let Some(backend) = Backend::postgres("panda_faults").await else {
        return;
    };
    let store = &backend.store;
    let witness_path = backend.dir.path().join("witness");
    let marker = marker();
    store
        .job_create(
            &witness_job("work", &witness_path, &marker, 5, 1, false),
            Utc::now(),
        )
        .await
        .expect("create");
    let mut args = vec!["--concurrency", "4"];
    args.extend(FAST_LEASES);
    let a = backend.node(Start::server(), "node-a", &args);
    let b = backend.node(Start::worker(), "node-b", &args);
    let keys = enqueue(store, "work", 8).await;
    let running = wait_until(store.as_ref(), "work", "running on both nodes", |all| {
        let on = |node: &str| {
            all.iter()
                .filter(|e| e.status == Status::Running && e.worker_id.as_deref() == Some(node))
                .count()
        };
        on("node-a") == 4 && on("node-b") == 4
    })
    .await;
    wait_for_witness(&witness_path, "all eight started", |lines| {
        lines_of(lines, "start").count() == 8
    });
    let held_by_a: Vec<&Execution> = running
        .iter()
        .filter(|e| e.worker_id.as_deref() == Some("node-a"))
        .collect();
    a.kill();
    let killed_at = Instant::now();
    let on_a = |e: &&Execution| format!("PANDA_EXECUTION_ID={}", e.id);
    std::thread::sleep(Duration::from_secs(1));
    let alive: usize = held_by_a
        .iter()
        .map(|e| processes_with(&on_a(e)).len())
        .sum();
    let lines = witness(&witness_path);
    eprintln!(
        "node-a's job processes alive 1 s after its SIGKILL: {alive} ({:?} after the kill)",
        killed_at.elapsed()
    );
    assert_eq!(alive, 0, "node-a's runs died with it");
    assert!(
        lines.iter().all(|(_, _, attempt)| *attempt == 1),
        "nothing was rerun before node-a's runs were gone: {lines:?}"
    );
    let all = wait_until(store.as_ref(), "work", "all succeeded", |all| {
        all.iter().filter(|e| e.status == Status::Succeeded).count() == 8
            && all.iter().all(|e| e.status.is_terminal())
    })
    .await;
    b.stop();
    let lines = witness(&witness_path);
    assert_each_ran_to_its_end_once(&lines, &keys, &all);
    for e in &held_by_a {
        let key = e.run_key();
        assert!(
            !lines.contains(&("end".to_owned(), key.clone(), 1)),
            "node-a's copy of {key} never ended: {lines:?}"
        );
        let retry = all
            .iter()
            .find(|r| r.run_key() == key && r.attempt == 2)
            .expect("a retry");
        assert_eq!(
            (retry.status, retry.worker_id.as_deref()),
            (Status::Succeeded, Some("node-b"))
        );
    }
    backend.close().await;
}

// ---- a zombie: a node SIGSTOPped past its lease ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_zombie_stops_its_copy_when_its_heartbeat_is_refused() {
    let Some(backend) = Backend::postgres("panda_faults").await else {
        return;
    };
    let store = &backend.store;
    let witness_path = backend.dir.path().join("witness");
    let marker = marker();
    // The zombie's copies would run 60 s; the rescued ones 1 s.
    store
        .job_create(
            &witness_job("work", &witness_path, &marker, 60, 1, false),
            Utc::now(),
        )
        .await
        .expect("create");
    let mut args = vec!["--concurrency", "2"];
    args.extend(FAST_LEASES);
    let zombie = backend.node(Start::server(), "zombie", &args);
    let keys = enqueue(store, "work", 2).await;
    wait_for_witness(&witness_path, "both started on the zombie", |lines| {
        lines_of(lines, "start").count() == 2
    });
    let held: Vec<Execution> = all_of(store.as_ref(), "work").await;
    zombie.signal("STOP");
    let other = backend.node(Start::worker(), "other", &args);
    let all = wait_until(store.as_ref(), "work", "rescued and succeeded", |all| {
        all.iter().filter(|e| e.status == Status::Succeeded).count() == 2
    })
    .await;
    for e in &all {
        if e.status == Status::Succeeded {
            assert_eq!(e.worker_id.as_deref(), Some("other"));
        }
    }
    let copies = |held: &[Execution]| -> usize {
        held.iter()
            .map(|e| processes_with(&format!("PANDA_EXECUTION_ID={}", e.id)).len())
            .sum()
    };
    assert!(
        copies(&held) > 0,
        "the zombie's copies ran on while it was stopped"
    );
    zombie.signal("CONT");
    let resumed = Instant::now();
    while copies(&held) > 0 {
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "the zombie's copies still run {:?} after it resumed: {:#?}",
            resumed.elapsed(),
            zombie.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "the zombie's copies stopped {:?} after SIGCONT",
        resumed.elapsed()
    );
    let log = zombie.stop();
    assert!(
        log.iter().any(|l| l.contains("the lease moved on")),
        "the zombie says why it stopped its copies: {log:#?}"
    );
    other.stop();
    let lines = witness(&witness_path);
    let all = all_of(store.as_ref(), "work").await;
    assert_each_ran_to_its_end_once(&lines, &keys, &all);
    for e in &held {
        assert!(
            !lines.contains(&("end".to_owned(), e.run_key(), 1)),
            "the zombie's copy never wrote its end: {lines:?}"
        );
    }
    let ids: HashSet<_> = held.iter().map(|e| e.id).collect();
    for e in all.iter().filter(|e| ids.contains(&e.id)) {
        assert_eq!(
            e.status,
            Status::Lost,
            "the zombie's late result is refused: {e:#?}"
        );
    }
    backend.close().await;
}

// ---- a supervisor killed with its node: the restarted node reaps what survived ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_kills_what_survived_its_dead_supervisors() {
    let backend = Backend::sqlite().await;
    let store = &backend.store;
    let witness_path = backend.dir.path().join("witness");
    let marker = marker();
    store
        .job_create(
            &witness_job("escape", &witness_path, &marker, 30, 1, true),
            Utc::now(),
        )
        .await
        .expect("create");
    let keys = enqueue(store, "escape", 2).await;
    let mut args = vec!["--concurrency", "4"];
    args.extend(FAST_LEASES);
    let server = backend.node(Start::server(), "node-a", &args);
    wait_for_witness(&witness_path, "both started", |lines| {
        lines_of(lines, "start").count() == 2
    });
    std::thread::sleep(Duration::from_millis(200));
    let var = format!("FAULT_MARKER={marker}");
    let supervisor = |pid: &u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|&b| b == 0)
            .nth(1)
            == Some(b"__supervise".as_slice())
    };
    // The node cannot react while stopped: its supervisors die first, then it does.
    server.signal("STOP");
    let supervisors: Vec<u32> = processes_with(&var)
        .into_iter()
        .filter(supervisor)
        .collect();
    assert_eq!(supervisors.len(), 2, "one supervisor per run");
    for pid in &supervisors {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
    server.kill();
    std::thread::sleep(Duration::from_millis(500));
    let orphans = processes_with(&var);
    assert!(
        orphans.len() >= 4,
        "with its supervisor and its node killed at once, a job runs on (leader and stray, each \
         a shell and a sleep): {orphans:?}"
    );

    let server = backend.node(Start::server(), "node-a", &args);
    let gone_after = Instant::now();
    let left = processes_with(&var);
    assert_eq!(
        left,
        Vec::<u32>::new(),
        "the restarted node killed them before it was ready ({:?})",
        gone_after.elapsed()
    );
    let all = wait_until(store.as_ref(), "escape", "all succeeded", |all| {
        all.iter().filter(|e| e.status == Status::Succeeded).count() == 2
            && all.iter().all(|e| e.status.is_terminal())
    })
    .await;
    let log = server.stop();
    let reaped: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("killed a process a dead node's run left behind"))
        .collect();
    // Every kill is logged, naming one of the processes left behind; a short-lived helper of a
    // shell may have ended by itself in the meantime, so the log holds at least the leader and
    // the stray of each run (and their sleeps), not always every process counted above.
    let killed: Vec<u32> = reaped
        .iter()
        .filter_map(|l| {
            l.split("process=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(
        killed.len(),
        reaped.len(),
        "each kill names its process: {reaped:#?}"
    );
    assert!(
        killed.iter().all(|pid| orphans.contains(pid)),
        "only what the dead node's runs left is killed: {killed:?} of {orphans:?}"
    );
    assert!(
        killed.len() >= 4,
        "the leader and the stray of each run are killed and logged: {log:#?}"
    );
    let lines = witness(&witness_path);
    assert_each_ran_to_its_end_once(&lines, &keys, &all);
    assert!(
        lines
            .iter()
            .all(|(what, _, attempt)| what == "start" || *attempt > 1),
        "nothing of the killed attempts ended: {lines:?}"
    );
    backend.close().await;
}

// ---- a node SIGKILLed with a container running: its watcher removes the container ----

/// The ids of running containers labelled `panda.execution=ID`, through the engine's API.
async fn containers_of(docker: &bollard::Docker, execution: &str) -> Vec<String> {
    let label = format!("{}={execution}", panda_runtime::EXECUTION_LABEL);
    let filters = std::collections::HashMap::from([("label", vec![label.as_str()])]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .expect("list containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// The busybox image the Docker cases run, built here; `None` (the case skipped, with the
/// reason printed) when there is no engine and not every backend is required.
async fn busybox_image() -> Option<&'static str> {
    const IMAGE: &str = "panda-faults-busybox:latest";
    let built = match panda_runtime::DockerRuntime::connect().await {
        Ok(docker) => docker
            .build_busybox_image(IMAGE, Path::new("/bin/busybox"))
            .await
            .map_err(|err| err.to_string()),
        Err(err) => Err(err.to_string()),
    };
    if let Err(err) = built {
        assert!(
            std::env::var("PANDA_REQUIRE_ALL_BACKENDS").as_deref() != Ok("1"),
            "Docker is required: {err}"
        );
        eprintln!("skipped: Docker is not available: {err}");
        return None;
    }
    Some(IMAGE)
}

/// A job `boxed` in `store` whose container sleeps a minute.
async fn create_boxed_job(store: &Arc<dyn Store>, image: &str) {
    let mut spec = JobSpec::new(
        JobName::new("boxed").expect("name"),
        RuntimeSpec::Image {
            image: image.into(),
            command: Some(vec!["sh".into(), "-c".into(), "sleep 60".into()]),
        },
    );
    spec.retry.max_attempts = 2;
    store.job_create(&spec, Utc::now()).await.expect("create");
}

/// Enqueues a run of `boxed` and waits until a node has started its container.
async fn run_boxed(store: &Arc<dyn Store>, docker: &bollard::Docker) -> ExecutionId {
    let execution = store
        .execution_enqueue(&NewExecution::api("boxed"), Utc::now())
        .await
        .expect("enqueue")
        .execution
        .id;
    let started = Instant::now();
    while containers_of(docker, &execution.to_string())
        .await
        .is_empty()
    {
        assert!(started.elapsed() < PATIENCE, "the container never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    execution
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_container_is_removed_by_its_watcher() {
    let Some(image) = busybox_image().await else {
        return;
    };
    let docker = bollard::Docker::connect_with_defaults().expect("the Docker engine");
    let backend = Backend::sqlite().await;
    let store = &backend.store;
    create_boxed_job(store, image).await;
    let server = Start::server()
        .data_dir(backend.node_dir("node-a"))
        .args(["--runtime", "docker", "--worker-id", "node-a"])
        .args(FAST_LEASES)
        .start();
    let execution = run_boxed(store, &docker).await.to_string();
    let killed_at = Instant::now();
    server.kill();
    // The watcher acts within a second or two; the bound leaves room for a machine loaded by
    // parallel builds (a container that is never removed still fails).
    while !containers_of(&docker, &execution).await.is_empty() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "the dead node's container is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the killed node's container was gone {:?} after the SIGKILL",
        killed_at.elapsed()
    );
    backend.close().await;
}

/// Two servers on one host, each on a data dir of its own and neither with `--worker-id`: the
/// second one's start clears only what its own data dir's last run left behind, so the first
/// one's running container is not taken for a leftover (with the host name alone as the
/// containers' node, it was removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_host_leaves_the_first_ones_containers_running() {
    let Some(image) = busybox_image().await else {
        return;
    };
    let docker = bollard::Docker::connect_with_defaults().expect("the Docker engine");
    let first = Backend::sqlite().await;
    create_boxed_job(&first.store, image).await;
    // Stopped at the end of the case without waiting out its running container.
    let _first_server = Start::server()
        .data_dir(first.node_dir("node-a"))
        .args(["--runtime", "docker", "--shutdown-grace", "1s"])
        .start();
    let execution = run_boxed(&first.store, &docker).await;

    let second = Backend::sqlite().await;
    let second_server = Start::server()
        .data_dir(second.node_dir("node-b"))
        .args(["--runtime", "docker"])
        .start();
    // The second server is ready: its start-up clearing is done.
    drop(second_server);
    let left = containers_of(&docker, &execution.to_string()).await;
    assert_eq!(left.len(), 1, "the first server's container is still there");
    let running = docker
        .inspect_container(&left[0], None)
        .await
        .expect("inspect")
        .state
        .and_then(|state| state.running);
    assert_eq!(running, Some(true), "and still running");
    let seen = first
        .store
        .execution_get(execution)
        .await
        .expect("the execution");
    assert_eq!(seen.status, Status::Running, "{seen:?}");
    first.close().await;
    second.close().await;
}
