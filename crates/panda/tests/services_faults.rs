//! Services when a node fails: two real nodes on PostgreSQL, one SIGKILLed or SIGSTOPped past
//! its lease. Each instance is a shell that appends its pid and a heartbeat to a witness file
//! (`support::instances`); the live copies are counted from `/proc`, so "exactly one copy of
//! each instance runs" is checked from the processes themselves, not only from the store.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use panda_core::{JobName, JobSpec, RuntimeSpec, ServiceSpec, Status};
use support::backend::Backend;
use support::instances::Witness;
use support::runs::wait_until;
use support::{Server, Start};

/// Flags that make a dead node's lease expire in 2 s.
const FAST_LEASES: [&str; 4] = ["--lease-ttl", "2s", "--heartbeat-interval", "500ms"];

const REPLICAS: u32 = 2;

/// A service of [`REPLICAS`] instances running the witness script, restarting at once.
fn service(name: &str, witness: &Witness) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("name"),
        RuntimeSpec::Process {
            argv: witness.argv(),
        },
    );
    spec.service = Some(ServiceSpec {
        replicas: REPLICAS,
        restart_delay: Duration::from_millis(100),
        restart_delay_max: Duration::from_secs(1),
        stop_timeout: Duration::from_secs(5),
        ..ServiceSpec::default()
    });
    spec
}

fn node(backend: &Backend, start: Start, name: &str) -> Server {
    backend.node(start, name, &FAST_LEASES)
}

/// Waits until both instances run on `node` in the store; returns their execution ids.
async fn running_on(backend: &Backend, name: &str, node: &str) -> Vec<String> {
    let all = wait_until(
        backend.store.as_ref(),
        name,
        &format!("every instance running on {node}"),
        |all| {
            let on: Vec<_> = all
                .iter()
                .filter(|e| e.status == Status::Running && e.worker_id.as_deref() == Some(node))
                .collect();
            on.len() == REPLICAS as usize
                && all.iter().filter(|e| e.status == Status::Running).count() == REPLICAS as usize
        },
    )
    .await;
    all.iter()
        .filter(|e| e.status == Status::Running)
        .map(|e| e.id.to_string())
        .collect()
}

// ---- a node SIGKILLed: its instances run on the other ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_nodes_instances_run_on_the_other_node() {
    let Some(backend) = Backend::postgres("panda_svc_faults").await else {
        return;
    };
    let witness = Witness::new(backend.dir.path());
    backend
        .store
        .job_create(&service("events", &witness), Utc::now())
        .await
        .expect("create");
    let a = node(&backend, Start::server(), "node-a");
    let before = witness.wait_for_one_copy_each(REPLICAS);
    running_on(&backend, "events", "node-a").await;
    // The other node comes up with nothing left to run.
    let b = node(&backend, Start::worker(), "node-b");
    a.kill();
    let killed_at = Instant::now();
    witness.wait_until("the killed node's copies gone", |w| {
        before.iter().all(|l| !w.alive(l.pid))
    });
    eprintln!(
        "node-a's instances gone {:?} after its SIGKILL",
        killed_at.elapsed()
    );
    let after = witness.wait_for_one_copy_each(REPLICAS);
    eprintln!(
        "both instances running on node-b {:?} after node-a's SIGKILL",
        killed_at.elapsed()
    );
    for copy in &after {
        assert!(
            before.iter().all(|l| l.pid != copy.pid),
            "instance {} is a new copy",
            copy.instance
        );
    }
    running_on(&backend, "events", "node-b").await;
    let all = support::runs::all_of(backend.store.as_ref(), "events").await;
    for e in all
        .iter()
        .filter(|e| e.worker_id.as_deref() == Some("node-a"))
    {
        assert_eq!(e.status, Status::Lost, "{e:#?}");
    }
    // Beats go on: the copies really run, one of each.
    let beats: Vec<usize> = after.iter().map(|l| witness.beats_of(l.pid)).collect();
    witness.wait_until("the new copies beat", |w| {
        after
            .iter()
            .zip(&beats)
            .all(|(l, n)| w.beats_of(l.pid) > *n)
    });
    assert_eq!(
        witness.copies().into_values().collect::<Vec<_>>(),
        [1; REPLICAS as usize]
    );
    b.stop();
    witness.wait_until("nothing runs after the last node stopped", |w| {
        w.live().is_empty()
    });
    backend.close().await;
}

// ---- a zombie: a node SIGSTOPped past its lease, then SIGCONT ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_zombie_node_leaves_exactly_one_copy_of_each_instance() {
    let Some(backend) = Backend::postgres("panda_svc_faults").await else {
        return;
    };
    let witness = Witness::new(backend.dir.path());
    backend
        .store
        .job_create(&service("events", &witness), Utc::now())
        .await
        .expect("create");
    let zombie = node(&backend, Start::server(), "zombie");
    let held = witness.wait_for_one_copy_each(REPLICAS);
    running_on(&backend, "events", "zombie").await;
    let other = node(&backend, Start::worker(), "other");
    zombie.signal("STOP");
    // Past its lease, the other node runs every instance, while the zombie's copies (its
    // children, not stopped with it) run on: two copies of each for now.
    running_on(&backend, "events", "other").await;
    witness.wait_until("two copies of each instance", |w| {
        w.copies().values().all(|n| *n == 2) && w.copies().len() == REPLICAS as usize
    });
    assert!(
        held.iter().all(|l| witness.alive(l.pid)),
        "the zombie's copies ran on while it was stopped"
    );
    zombie.signal("CONT");
    let resumed = Instant::now();
    witness.wait_until("the zombie's copies stopped", |w| {
        held.iter().all(|l| !w.alive(l.pid))
    });
    eprintln!(
        "the zombie's copies stopped {:?} after SIGCONT",
        resumed.elapsed()
    );
    let survivors = witness.wait_for_one_copy_each(REPLICAS);
    // Several of the zombie's reconcile and claim passes later, still one copy each, the
    // same ones, and they beat on.
    let beats: Vec<usize> = survivors.iter().map(|l| witness.beats_of(l.pid)).collect();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(witness.wait_for_one_copy_each(REPLICAS), survivors);
    for (copy, n) in survivors.iter().zip(&beats) {
        assert!(witness.beats_of(copy.pid) > *n, "{copy:?} beats on");
    }
    let all = support::runs::all_of(backend.store.as_ref(), "events").await;
    let running: Vec<_> = all.iter().filter(|e| e.status == Status::Running).collect();
    assert_eq!(running.len(), REPLICAS as usize, "{all:#?}");
    assert!(
        running
            .iter()
            .all(|e| e.worker_id.as_deref() == Some("other")),
        "{running:#?}"
    );
    zombie.stop();
    other.stop();
    witness.wait_until("nothing runs after both nodes stopped", |w| {
        w.live().is_empty()
    });
    backend.close().await;
}
