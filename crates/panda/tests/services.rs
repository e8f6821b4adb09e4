//! Long-running services end to end: the real binary runs them from `panda service …` as a
//! user types it, and what happened is read from the instances themselves (each appends its
//! start, its heartbeats and its stop to a witness file, and its pid is looked up in `/proc`;
//! see `support::instances`), with the store's record of each run beside it.
//!
//! Each case runs on SQLite (a temp data dir) and on PostgreSQL (a schema of its own; skipped
//! without `PANDA_TEST_DATABASE_URL` unless `PANDA_REQUIRE_ALL_BACKENDS=1`), on the process
//! runtime (`--exec`); one runs containers on the Docker engine.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use panda_core::{Execution, InstanceState, RolloutState, ServiceStatus, Status, Trigger};
use support::backend::Backend;
use support::instances::{Line, Witness, kill, now_ms};
use support::runs::{all_of, wait_until};
use support::webhooks::Receiver;
use support::{Server, Start, stderr, succeeded};

/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(90);

/// Flags that make a dead node's lease expire in 2 s.
const FAST_LEASES: [&str; 4] = ["--lease-ttl", "2s", "--heartbeat-interval", "500ms"];

/// A `panda server` on `backend` running local processes, as `node`.
fn server(backend: &Backend, node: &str, extra: &[&str]) -> Server {
    let mut args = FAST_LEASES.to_vec();
    args.extend(extra);
    backend.node(Start::server(), node, &args)
}

/// `panda service create --name NAME --exec WITNESS FLAGS…`; asserts it said so.
fn create(server: &Server, name: &str, witness: &Witness, flags: &[&str]) {
    let exec = witness.exec();
    let mut args = vec!["service", "create", "--name", name, "--exec", &exec];
    args.extend(flags);
    let out = succeeded(&server.panda(&args));
    assert!(out.contains(name), "create says what it made: {out}");
}

/// `panda service ARGS…`, which must succeed; its stdout.
fn service(server: &Server, args: &[&str]) -> String {
    let mut all = vec!["service"];
    all.extend(args);
    succeeded(&server.panda(&all))
}

/// `panda service get NAME -o json`.
fn status(server: &Server, name: &str) -> ServiceStatus {
    let out = service(server, &["get", name, "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|err| panic!("service get -o json: {err}: {out}"))
}

/// Polls `panda service get` until `done` holds; returns that status.
fn wait_for_status(
    server: &Server,
    name: &str,
    what: &str,
    done: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    let started = Instant::now();
    loop {
        let status = status(server, name);
        if done(&status) {
            return status;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{name}: never {what}: {status:#?}\nnode log: {:#?}",
            tail(&server.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tail(log: &[String], n: usize) -> &[String] {
    &log[log.len().saturating_sub(n)..]
}

/// The runs of instance `instance`, oldest first.
fn runs_of(all: &[Execution], instance: u32) -> Vec<Execution> {
    let mut runs: Vec<Execution> = all
        .iter()
        .filter(|e| e.instance == Some(instance))
        .cloned()
        .collect();
    runs.sort_by_key(|e| (e.created_at, e.id));
    runs
}

fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

// ---- an instance killed from outside is restarted, after its backoff ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_instance_killed_from_outside_is_restarted_after_its_backoff() {
    killed_instance_restarts(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_instance_killed_from_outside_is_restarted_after_its_backoff() {
    if let Some(backend) = Backend::postgres("panda_services").await {
        killed_instance_restarts(backend).await;
    }
}

async fn killed_instance_restarts(backend: Backend) {
    const KILLS: usize = 4;
    let witness = Witness::new(backend.dir.path());
    let node = server(&backend, "node-a", &[]);
    create(
        &node,
        "event-processor",
        &witness,
        &[
            "--replicas",
            "2",
            "--restart-delay",
            "300ms",
            "--restart-delay-max",
            "1s",
        ],
    );
    let first = witness.wait_for_one_copy_each(2);
    let bystander = first[1].clone();

    let mut killed = Vec::new();
    for round in 0..KILLS {
        let copy = witness.wait_for_one_copy_each(2).remove(0);
        assert!(
            !killed.iter().any(|(pid, _)| *pid == copy.pid),
            "round {round}: a new process runs instance 0"
        );
        kill("KILL", copy.pid);
        killed.push((copy.pid, now_ms()));
        witness.wait_until("the killed copy is gone", |w| !w.alive(copy.pid));
    }
    witness.wait_until("instance 0 started after the last kill", |w| {
        w.starts_of(0).len() == KILLS + 1 && w.live().iter().any(|l| l.instance == 0)
    });
    let starts = witness.starts_of(0);
    let pids: BTreeSet<u32> = starts.iter().map(|l| l.pid).collect();
    assert_eq!(
        pids.len(),
        KILLS + 1,
        "each start is a new process: {starts:?}"
    );
    for (i, (pid, killed_at)) in killed.iter().enumerate() {
        assert!(!witness.alive(*pid), "killed copy {pid} stays dead");
        assert!(
            starts[i + 1].at_ms >= *killed_at,
            "restart {} began after kill {}: {starts:?}",
            i + 1,
            i + 1
        );
    }
    assert_eq!(
        witness.starts_of(1),
        vec![bystander.clone()],
        "instance 1 was left alone"
    );
    assert!(witness.alive(bystander.pid), "instance 1 runs on");

    // The store's record: a run per start, each restart waiting its backoff after the end
    // before it, and each copy starting no earlier than its run was due.
    let name = "event-processor";
    let all = wait_until(
        backend.store.as_ref(),
        name,
        "the last restart running",
        |all| {
            let runs = runs_of(all, 0);
            runs.len() == KILLS + 1 && runs[KILLS].status == Status::Running
        },
    )
    .await;
    let spec = status(&node, name)
        .job
        .spec
        .service
        .clone()
        .expect("a service");
    let runs = runs_of(&all, 0);
    assert_eq!(runs[0].trigger, Trigger::Service, "{runs:#?}");
    for (n, run) in runs.iter().enumerate().skip(1) {
        let before = &runs[n - 1];
        assert_eq!(
            (run.trigger, run.attempt, run.revision),
            (Trigger::Restart, before.attempt + 1, Some(1)),
            "{runs:#?}"
        );
        assert_eq!(
            before.status,
            Status::Failed,
            "a SIGKILL is a failure: {before:#?}"
        );
        let ended = before.finished_at.expect("the killed run ended");
        let ceiling =
            chrono::Duration::from_std(spec.restart_ceiling(before.attempt)).expect("a ceiling");
        assert!(
            run.run_at >= ended && run.run_at <= ended + ceiling,
            "restart {n} due within {ceiling} of the end before it (full jitter): {runs:#?}"
        );
        // The process' clock reads in whole milliseconds.
        assert!(
            starts[n].at_ms + 1 >= ms(run.run_at),
            "copy {n} started no earlier than due: {:?} vs {}",
            starts[n],
            run.run_at
        );
    }
    let shown = status(&node, name);
    let zero = shown
        .instances
        .iter()
        .find(|i| i.index == 0 && i.execution.is_some())
        .expect("instance 0");
    assert_eq!(zero.restarts, KILLS as u32, "{shown:#?}");
    assert_eq!(shown.restarts, KILLS as u64, "{shown:#?}");
    node.stop();
    backend.close().await;
}

// ---- a failing health check restarts the instance after its retries ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failing_health_check_restarts_the_instance_after_its_retries() {
    failing_health_restarts(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failing_health_check_restarts_the_instance_after_its_retries() {
    if let Some(backend) = Backend::postgres("panda_services").await {
        failing_health_restarts(backend).await;
    }
}

async fn failing_health_restarts(backend: Backend) {
    let witness = Witness::new(backend.dir.path());
    let node = server(&backend, "node-a", &[]);
    let health = witness.health_cmd();
    create(
        &node,
        "api",
        &witness,
        &[
            "--health-cmd",
            &health,
            "--health-interval",
            "1s",
            "--health-timeout",
            "1s",
            "--health-retries",
            "2",
            "--start-period",
            "0s",
            "--restart-delay",
            "100ms",
        ],
    );
    let copy = witness.wait_for_one_copy_each(1).remove(0);
    wait_for_status(&node, "api", "healthy", |s| {
        s.healthy == 1
            && s.instances
                .iter()
                .any(|i| i.state == InstanceState::Healthy)
    });
    // The check starts failing: the file it tests is gone.
    std::fs::remove_file(witness.healthy_file(0, 1)).expect("remove the healthy file");
    let failing_since = now_ms();
    witness.wait_until("a new copy of instance 0", |w| {
        w.starts_of(0).len() == 2 && w.live().len() == 1
    });
    assert!(!witness.alive(copy.pid), "the unhealthy copy was stopped");
    let lines = witness.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.what == "stop" && l.pid == copy.pid && l.at_ms >= failing_since),
        "it was stopped with its stop signal, after the check failed: {lines:#?}"
    );
    // The new copy creates the file again: it becomes healthy and stays.
    let status = wait_for_status(&node, "api", "healthy again", |s| s.healthy == 1);
    assert_eq!(status.restarts, 1, "{status:#?}");
    let all = all_of(backend.store.as_ref(), "api").await;
    let runs = runs_of(&all, 0);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_ne!(runs[0].status, Status::Succeeded, "{runs:#?}");
    assert!(
        runs[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("health")),
        "the end says the health check failed: {:#?}",
        runs[0]
    );
    assert_eq!(runs[1].trigger, Trigger::Restart);
    assert_eq!(witness.starts_of(0).len(), 2, "one restart only");
    node.stop();
    backend.close().await;
}

// ---- a crash loop: one crash_loop alert, then one recovered ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_crash_loop_raises_one_crash_loop_alert_and_one_recovered() {
    crash_loop_alerts(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_crash_loop_raises_one_crash_loop_alert_and_one_recovered() {
    if let Some(backend) = Backend::postgres("panda_services").await {
        crash_loop_alerts(backend).await;
    }
}

fn events<'a>(bodies: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    bodies.iter().filter(|b| b["event"] == event).collect()
}

async fn crash_loop_alerts(backend: Backend) {
    let receiver = Receiver::start();
    let witness = Witness::new(backend.dir.path());
    let stay = backend.dir.path().join("stay");
    let node = server(&backend, "node-a", &["--alert-webhook", &receiver.url]);
    let exit_unless = format!("EXIT_UNLESS={}", stay.display());
    create(
        &node,
        "flaky",
        &witness,
        &[
            "--env",
            &exit_unless,
            "--restart-delay",
            "100ms",
            "--restart-delay-max",
            "200ms",
            "--healthy-after",
            "2s",
        ],
    );
    let bodies = receiver.wait_until("a crash_loop alert", |b| {
        !events(b, "crash_loop").is_empty()
    });
    let alert = events(&bodies, "crash_loop")[0].clone();
    assert_eq!(alert["job"], "flaky", "{alert:#}");
    let at_alert = witness.starts_of(0).len();
    // Raised as the third restart in a row is written: its copy may not have started yet.
    assert!(
        at_alert >= panda_core::CRASH_LOOP_RESTARTS as usize,
        "the alert came after {} restarts in a row: {at_alert} starts",
        panda_core::CRASH_LOOP_RESTARTS
    );
    // It goes on crashing, more than another crash loop's worth: still one alert.
    witness.wait_until("more crashes", |w| {
        w.starts_of(0).len() > at_alert + 2 * panda_core::CRASH_LOOP_RESTARTS as usize
    });
    std::fs::write(&stay, "").expect("create the file that ends the crashes");
    let bodies = receiver.wait_until("a recovered alert", |b| !events(b, "recovered").is_empty());
    let recovered = events(&bodies, "recovered")[0];
    assert_eq!(recovered["job"], "flaky", "{recovered:#}");
    let copy = witness.wait_for_one_copy_each(1).remove(0);
    assert!(witness.beats_of(copy.pid) > 0, "the recovered copy runs on");
    let bodies = receiver.bodies();
    assert_eq!(events(&bodies, "crash_loop").len(), 1, "{bodies:#?}");
    assert_eq!(events(&bodies, "recovered").len(), 1, "{bodies:#?}");
    let crash = bodies
        .iter()
        .position(|b| b["event"] == "crash_loop")
        .expect("crash_loop");
    let back = bodies
        .iter()
        .position(|b| b["event"] == "recovered")
        .expect("recovered");
    assert!(crash < back, "crash_loop, then recovered: {bodies:#?}");
    node.stop();
    backend.close().await;
}

// ---- rolling updates: a bad one reverts while the old revision serves; a good one lands ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_rollout_that_never_becomes_healthy_reverts_and_a_good_one_replaces_every_instance()
 {
    rolling_updates(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_rollout_that_never_becomes_healthy_reverts_and_a_good_one_replaces_every_instance()
 {
    if let Some(backend) = Backend::postgres("panda_services").await {
        rolling_updates(backend).await;
    }
}

/// Fails unless each of the `old` copies still runs.
#[track_caller]
fn assert_serving(witness: &Witness, old: &[(Line, usize)], when: &str) {
    for (copy, _) in old {
        assert!(
            witness.alive(copy.pid),
            "{when}: old copy {copy:?} still runs"
        );
    }
}

async fn rolling_updates(backend: Backend) {
    let witness = Witness::new(backend.dir.path());
    let node = server(&backend, "node-a", &[]);
    let health = witness.health_cmd();
    create(
        &node,
        "events",
        &witness,
        &[
            "--replicas",
            "2",
            "--health-cmd",
            &health,
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "--start-period",
            "0s",
            "--min-healthy",
            "1s",
            "--healthy-deadline",
            "6s",
            "--max-parallel",
            "1",
            "--update-order",
            "start-first",
            "--restart-delay",
            "200ms",
        ],
    );
    let old = witness.wait_for_one_copy_each(2);
    wait_for_status(&node, "events", "both healthy", |s| s.healthy == 2);
    let old: Vec<(Line, usize)> = old
        .into_iter()
        .map(|l| {
            let beats = witness.beats_of(l.pid);
            (l, beats)
        })
        .collect();

    // A definition that never becomes healthy: its instance starts beside the old ones, never
    // passes, and past the healthy deadline the rollout reverts.
    service(&node, &["update", "events", "--env", "HEALTHY=no"]);
    let reverted = {
        let started = Instant::now();
        loop {
            assert_serving(&witness, &old, "during the bad rollout");
            let status = status(&node, "events");
            if status
                .rollout
                .as_ref()
                .is_some_and(|r| r.state == RolloutState::Reverted)
            {
                break status;
            }
            assert!(started.elapsed() < PATIENCE, "never reverted: {status:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let rollout = reverted.rollout.clone().expect("a rollout");
    assert_eq!((rollout.from_revision, rollout.to_revision), (1, 2));
    assert_eq!(reverted.revision, 1, "{reverted:#?}");
    assert!(
        witness.starts().iter().any(|l| l.revision == 2),
        "the bad revision did run: {:?}",
        witness.starts()
    );
    witness.wait_until("the bad revision's copies gone", |w| {
        w.live().iter().all(|l| l.revision == 1)
    });
    assert_serving(&witness, &old, "after the revert");
    let reverted_at = old
        .iter()
        .map(|(l, _)| witness.beats_of(l.pid))
        .collect::<Vec<_>>();
    witness.wait_until("the old copies beat on", |w| {
        old.iter()
            .zip(&reverted_at)
            .all(|((l, _), n)| w.beats_of(l.pid) > *n)
    });
    for ((copy, before), after) in old.iter().zip(&reverted_at) {
        assert!(
            after > before,
            "{copy:?} wrote its witness throughout the bad rollout"
        );
    }
    assert_eq!(
        witness.copies().values().copied().collect::<Vec<_>>(),
        [1, 1],
        "one copy of each instance, of revision 1"
    );

    // A good change: every instance is replaced, one at a time, never below one running.
    service(
        &node,
        &[
            "update",
            "events",
            "--env",
            "HEALTHY=yes",
            "--env",
            "VERSION=3",
        ],
    );
    let done = {
        let started = Instant::now();
        loop {
            let live = witness.live();
            assert!(
                !live.is_empty(),
                "something serves throughout the good rollout"
            );
            let status = status(&node, "events");
            if status
                .rollout
                .as_ref()
                .is_some_and(|r| r.state == RolloutState::Succeeded)
                && live.len() == 2
                && live.iter().all(|l| l.revision == status.revision)
            {
                break status;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the good rollout never finished: {status:#?}, live {live:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(done.revision > 2, "a new revision: {done:#?}");
    for (copy, _) in &old {
        assert!(!witness.alive(copy.pid), "old copy {copy:?} was replaced");
    }
    let live = witness.wait_for_one_copy_each(2);
    assert!(live.iter().all(|l| l.revision == done.revision), "{live:?}");
    assert_eq!(done.healthy, 2, "{done:#?}");
    node.stop();
    backend.close().await;
}

// ---- scale, suspend, resume and delete move real processes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scale_suspend_resume_and_delete_start_and_stop_the_processes() {
    scale_suspend_delete(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scale_suspend_resume_and_delete_start_and_stop_the_processes() {
    if let Some(backend) = Backend::postgres("panda_services").await {
        scale_suspend_delete(backend).await;
    }
}

fn pids(lines: &[Line]) -> BTreeSet<u32> {
    lines.iter().map(|l| l.pid).collect()
}

async fn scale_suspend_delete(backend: Backend) {
    let witness = Witness::new(backend.dir.path());
    let node = server(&backend, "node-a", &["--concurrency", "8"]);
    create(&node, "workers", &witness, &["--stop-timeout", "5s"]);
    let one = witness.wait_for_one_copy_each(1);

    service(&node, &["scale", "workers", "3"]);
    let three = witness.wait_for_one_copy_each(3);
    assert_eq!(three[0], one[0], "scaling up leaves instance 0 running");
    let listed = service(&node, &["list"]);
    assert!(
        listed.lines().any(|l| l.contains("workers")),
        "list shows it: {listed}"
    );

    service(&node, &["scale", "workers", "1"]);
    witness.wait_until("instances 1 and 2 stopped", |w| {
        !w.alive(three[1].pid) && !w.alive(three[2].pid)
    });
    assert_eq!(witness.wait_for_one_copy_each(1), one, "instance 0 runs on");
    let lines = witness.lines();
    for gone in &three[1..] {
        assert!(
            lines.iter().any(|l| l.what == "stop" && l.pid == gone.pid),
            "{gone:?} got its stop signal: {lines:#?}"
        );
    }
    wait_for_status(&node, "workers", "one running", |s| {
        s.desired == 1 && s.running == 1
    });

    service(&node, &["suspend", "workers"]);
    witness.wait_until("every copy stopped", |w| w.live().is_empty());
    let suspended = wait_for_status(&node, "workers", "nothing running", |s| s.running == 0);
    assert_eq!(suspended.desired, 0, "{suspended:#?}");
    let starts = witness.starts().len();

    service(&node, &["resume", "workers"]);
    let resumed = witness.wait_for_one_copy_each(1);
    assert!(
        !pids(&three).contains(&resumed[0].pid),
        "resume starts a new process"
    );
    assert_eq!(witness.starts().len(), starts + 1);

    service(&node, &["delete", "workers"]);
    witness.wait_until("every copy gone", |w| w.live().is_empty());
    let out = node.panda(&["service", "get", "workers"]);
    assert!(!out.status.success(), "a deleted service is not found");
    assert!(
        stderr(&out).starts_with("error:"),
        "one error line: {}",
        stderr(&out)
    );
    // The reconcile runs every 500 ms: several passes later nothing came back.
    let starts = witness.starts().len();
    let all = wait_until(
        backend.store.as_ref(),
        "workers",
        "every run ended",
        |all| all.iter().all(|e| e.status.is_terminal()),
    )
    .await;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(witness.starts().len(), starts, "nothing started again");
    assert!(witness.live().is_empty());
    assert!(all.iter().all(|e| e.status != Status::Running), "{all:#?}");
    node.stop();
    backend.close().await;
}

// ---- SIGTERM drains a node: its instances stop there and run on the other ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_drained_node_stops_its_instances_and_the_other_node_runs_them() {
    drain(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_drained_node_stops_its_instances_and_the_other_node_runs_them() {
    if let Some(backend) = Backend::postgres("panda_services").await {
        drain(backend).await;
    }
}

async fn drain(backend: Backend) {
    let witness = Witness::new(backend.dir.path());
    let a = server(&backend, "node-a", &[]);
    let mut worker_args = FAST_LEASES.to_vec();
    worker_args.extend(["--concurrency", "4"]);
    let b = backend.node(Start::worker(), "node-b", &worker_args);
    create(
        &a,
        "consumers",
        &witness,
        &["--replicas", "2", "--stop-timeout", "10s"],
    );
    let before = witness.wait_for_one_copy_each(2);
    // Instances spread over the nodes serving them; the drained node is one that runs some.
    let running = wait_until(backend.store.as_ref(), "consumers", "both running", |all| {
        all.iter().filter(|e| e.status == Status::Running).count() == 2
    })
    .await;
    let on_b: Vec<u32> = running
        .iter()
        .filter(|e| e.status == Status::Running && e.worker_id.as_deref() == Some("node-b"))
        .filter_map(|e| e.instance)
        .collect();
    let (drained, drained_name, survivor, moved) = if on_b.is_empty() {
        (a, "node-a", b, vec![0, 1])
    } else {
        (b, "node-b", a, on_b)
    };
    let log = drained.stop();
    // Its copies got their stop signal, and were gone once it exited.
    let lines = witness.lines();
    for copy in before.iter().filter(|l| moved.contains(&l.instance)) {
        assert!(
            lines.iter().any(|l| l.what == "stop" && l.pid == copy.pid),
            "{copy:?} was stopped with its signal: {lines:#?}\n{log:#?}"
        );
        assert!(!witness.alive(copy.pid), "{copy:?} is gone");
    }
    for copy in before.iter().filter(|l| !moved.contains(&l.instance)) {
        assert!(witness.alive(copy.pid), "{copy:?} on the other node ran on");
    }
    let after = witness.wait_for_one_copy_each(2);
    for copy in after.iter().filter(|l| moved.contains(&l.instance)) {
        assert!(
            !pids(&before).contains(&copy.pid),
            "instance {} runs again, a new copy",
            copy.instance
        );
    }
    let all = wait_until(
        backend.store.as_ref(),
        "consumers",
        "both running on the survivor",
        |all| {
            all.iter()
                .filter(|e| e.status == Status::Running)
                .filter(|e| e.worker_id.as_deref() != Some(drained_name))
                .count()
                == 2
        },
    )
    .await;
    assert!(
        all.iter().all(|e| e.status != Status::Lost),
        "a drain hands its instances over; none waited out its lease as lost: {all:#?}"
    );
    survivor.stop();
    backend.close().await;
}

// ---- containers: a killed one is restarted, and deleting the service removes them ----

/// The ids of running containers of `job`'s executions, through the engine's API.
async fn containers(docker: &bollard::Docker, executions: &[Execution]) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in executions {
        let label = format!("{}={}", panda_runtime::EXECUTION_LABEL, e.id);
        let filters = std::collections::HashMap::from([("label", vec![label.as_str()])]);
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .filters(&filters)
            .build();
        for c in docker
            .list_containers(Some(options))
            .await
            .expect("list containers")
        {
            if let (Some(id), Some(instance)) = (c.id, e.instance) {
                found.push((instance, id));
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_a_killed_container_is_restarted_and_delete_removes_every_container() {
    const IMAGE: &str = "panda-services-busybox:latest";
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
        return;
    }
    let docker = bollard::Docker::connect_with_defaults().expect("the Docker engine");
    let backend = Backend::sqlite().await;
    let store = backend.store.clone();
    let node = Start::server()
        .data_dir(backend.node_dir("node-a"))
        .args(["--runtime", "docker", "--worker-id", "node-a"])
        .args(FAST_LEASES)
        .start();
    succeeded(&node.panda(&[
        "service",
        "create",
        "--name",
        "boxed",
        "--image",
        IMAGE,
        "--replicas",
        "2",
        "--restart-delay",
        "100ms",
        "--stop-timeout",
        "2s",
        "--",
        "sh",
        "-c",
        "while true; do sleep 1; done",
    ]));
    let live = |all: &[Execution]| -> Vec<Execution> {
        all.iter()
            .filter(|e| e.status == Status::Running)
            .cloned()
            .collect()
    };
    let started = Instant::now();
    let first = loop {
        let all = all_of(store.as_ref(), "boxed").await;
        let found = containers(&docker, &live(&all)).await;
        if found.len() == 2 {
            break found;
        }
        assert!(started.elapsed() < PATIENCE, "two containers never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Killed from outside, as an OOM kill or an operator would.
    docker
        .kill_container(
            &first[0].1,
            Some(
                bollard::query_parameters::KillContainerOptionsBuilder::new()
                    .signal("SIGKILL")
                    .build(),
            ),
        )
        .await
        .expect("kill the container");
    let started = Instant::now();
    let second = loop {
        let all = all_of(store.as_ref(), "boxed").await;
        let found = containers(&docker, &live(&all)).await;
        if found.len() == 2 && found[0].1 != first[0].1 {
            let restarted = runs_of(&all, 0);
            assert_eq!(restarted.len(), 2, "{restarted:#?}");
            assert_eq!(restarted[1].trigger, Trigger::Restart);
            break found;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "instance 0 never ran again: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second[1], first[1], "instance 1's container ran on");

    succeeded(&node.panda(&["service", "delete", "boxed"]));
    let started = Instant::now();
    loop {
        let all = all_of(store.as_ref(), "boxed").await;
        let label =
            std::collections::HashMap::from([("label", vec![panda_runtime::EXECUTION_LABEL])]);
        let ours: Vec<String> = all.iter().map(|e| e.id.to_string()).collect();
        let left: Vec<_> = docker
            .list_containers(Some(
                bollard::query_parameters::ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&label)
                    .build(),
            ))
            .await
            .expect("list containers")
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(panda_runtime::EXECUTION_LABEL))
                    .is_some_and(|id| ours.contains(id))
            })
            .collect();
        if left.is_empty() && all.iter().all(|e| e.status.is_terminal()) {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the deleted service's containers are still there: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop();
    backend.close().await;
}
