//! Service instances when nodes go away: the real binary on PostgreSQL, two nodes. A node that
//! drains hands its instance over at once, and a node paused past its lease (a zombie) kills its
//! copy the moment its heartbeat is refused: at most one copy runs.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use panda_core::{Execution, JobName, JobSpec, RuntimeSpec, ServiceSpec, Status};
use support::Start;
use support::backend::Backend;
use support::runs::{all_of, wait_until};

/// A service of one instance that ignores SIGTERM and runs until killed, its processes marked
/// with `marker` in their environment; its stop timeout is a minute, so only a kill ends it
/// quickly.
fn stubborn_service(name: &str, marker: &str) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("name"),
        RuntimeSpec::Process {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "trap '' TERM; while true; do sleep 0.1; done".into(),
            ],
        },
    );
    spec.env.insert("FAULT_MARKER".into(), marker.into());
    spec.service = Some(ServiceSpec {
        stop_timeout: Duration::from_secs(60),
        restart_delay: Duration::from_millis(100),
        restart_delay_max: Duration::from_millis(200),
        ..ServiceSpec::default()
    });
    spec
}

/// A service of one instance that stops at once on SIGTERM.
fn service(name: &str, marker: &str) -> JobSpec {
    let mut spec = stubborn_service(name, marker);
    spec.runtime = RuntimeSpec::Process {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "while true; do sleep 0.1; done".into(),
        ],
    };
    spec
}

fn marker() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Live processes whose environment holds `var` (`NAME=value`): a supervised run's
/// supervisor, its shell and the shell's children.
fn processes_with(var: &str) -> usize {
    let mut found = 0;
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
            found += 1;
        }
    }
    found
}

fn copies_of(execution: &Execution) -> usize {
    processes_with(&format!("PANDA_EXECUTION_ID={}", execution.id))
}

fn running_on<'a>(all: &'a [Execution], node: &str) -> Option<&'a Execution> {
    all.iter()
        .find(|e| e.status == Status::Running && e.worker_id.as_deref() == Some(node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_draining_node_hands_its_instance_over_at_once() {
    let Some(backend) = Backend::postgres("panda_svc_faults").await else {
        return;
    };
    let store = &backend.store;
    store
        .job_create(&service("shipper", &marker()), Utc::now())
        .await
        .expect("create");
    // A lease of a minute: only the release can hand the instance over sooner.
    let args = ["--lease-ttl", "60s", "--heartbeat-interval", "5s"];
    let a = backend.node(Start::server(), "a", &args);
    let all = wait_until(store.as_ref(), "shipper", "running on a", |all| {
        running_on(all, "a").is_some()
    })
    .await;
    let on_a = running_on(&all, "a").expect("running on a").clone();
    let stopping = Instant::now();
    let log = a.stop();
    // Checked before another node starts: a released instance keeps its execution.
    assert_eq!(copies_of(&on_a), 0, "a's copy is stopped: {log:#?}");
    assert!(
        log.iter().any(|l| l.contains("released to the queue")),
        "a released the instance: {log:#?}"
    );
    let b = backend.node(Start::worker(), "b", &args);
    wait_until(store.as_ref(), "shipper", "running on b", |all| {
        running_on(all, "b").is_some()
    })
    .await;
    assert!(
        stopping.elapsed() < Duration::from_secs(40),
        "b took it over after {:?}, not at the lease's expiry",
        stopping.elapsed()
    );
    b.stop();
    backend.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_zombie_kills_its_instance_copy_when_its_heartbeat_is_refused() {
    let Some(backend) = Backend::postgres("panda_svc_faults").await else {
        return;
    };
    let store = &backend.store;
    store
        .job_create(&stubborn_service("consumer", &marker()), Utc::now())
        .await
        .expect("create");
    let args = ["--lease-ttl", "2s", "--heartbeat-interval", "500ms"];
    let zombie = backend.node(Start::server(), "zombie", &args);
    // The store says running when the claim commits, a moment before the process starts; on
    // a loaded machine the 2 s lease may even lapse once and the instance start again. So:
    // the execution running on the zombie whose copy is seen running.
    let started = Instant::now();
    let held = loop {
        let all = all_of(store.as_ref(), "consumer").await;
        if let Some(e) = running_on(&all, "zombie")
            && copies_of(e) > 0
        {
            break e.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no copy ever ran on the zombie: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    zombie.signal("STOP");
    let other = backend.node(Start::worker(), "other", &args);
    wait_until(
        store.as_ref(),
        "consumer",
        "restarted on the other node",
        |all| running_on(all, "other").is_some(),
    )
    .await;
    assert!(
        copies_of(&held) > 0,
        "the zombie's copy ran on while it was paused"
    );
    let paused = Instant::now();
    zombie.signal("CONT");
    let resumed = Instant::now();
    while copies_of(&held) > 0 {
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "the zombie's copy still runs {:?} after it resumed: {:#?}",
            resumed.elapsed(),
            zombie.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "the other node restarted it; the zombie's copy stopped {:?} after SIGCONT ({:?} paused)",
        resumed.elapsed(),
        resumed - paused
    );
    let log = zombie.stop();
    assert!(
        log.iter().any(|l| l.contains("lease moved on")),
        "the zombie says why it killed its copy: {log:#?}"
    );
    let all = all_of(store.as_ref(), "consumer").await;
    let lost = all
        .iter()
        .find(|e| e.id == held.id)
        .expect("the zombie's run");
    assert_eq!(lost.status, Status::Lost, "{lost:#?}");
    assert_eq!(
        all.iter().filter(|e| e.status == Status::Running).count(),
        1,
        "one copy runs: {all:#?}"
    );
    // Its copy ignores SIGTERM for the minute of its stop timeout: no need to wait for that.
    other.kill();
    backend.close().await;
}
