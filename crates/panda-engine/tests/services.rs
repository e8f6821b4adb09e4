//! Services on the Dispatcher and the ServiceController against both store backends, running
//! real local processes: an instance sees its `PANDA_INSTANCE` and is reported healthy once
//! it runs, a killed instance is restarted, a failing health check restarts it, a stop request
//! sends the service's stop signal and finishes it, a drain hands instances over at once, and
//! a copy whose lease moved on is killed, and a crash loop raises one alert, then `recovered`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, HealthCheck, JobName, JobSpec, Probe, RuntimeSpec,
    ServiceSpec, Status, SystemClock, Trigger,
};
use panda_engine::{
    Alerter, AlerterConfig, Dispatcher, DispatcherConfig, DrainReport, Runtimes, ServiceController,
};
use panda_runtime::ProcessRuntime;
use panda_store::testing::TestStore;
use panda_store::{ExecutionFilter, LogStream, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

panda_store::backends! {
    an_instance_runs_with_its_number_and_is_reported_healthy,
    a_killed_instance_process_is_restarted,
    a_failing_health_check_stops_the_instance_and_it_is_restarted,
    a_stop_request_sends_the_stop_signal_and_finishes_the_instance,
    drain_stops_the_instances_and_hands_them_over_at_once,
    a_copy_whose_lease_moved_on_is_killed_at_once,
    a_crash_loop_raises_one_alert_and_recovered_once_the_instance_stays_up,
    the_service_gauges_count_instances_by_state_and_their_restarts,
    an_old_revisions_instance_restarted_during_a_rollout_runs_its_own_definition,
}

/// How long any single wait in these tests may take before the case fails.
const PATIENCE: Duration = Duration::from_secs(40);

/// A service of one instance running `script`, restarting after at most 200 ms.
fn service(name: &str, script: &str) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("a valid name"),
        RuntimeSpec::Process {
            argv: vec!["sh".into(), "-c".into(), script.into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.service = Some(ServiceSpec {
        replicas: 1,
        restart_delay: Duration::from_millis(100),
        restart_delay_max: Duration::from_millis(200),
        stop_timeout: Duration::from_secs(20),
        ..ServiceSpec::default()
    });
    spec
}

fn config(name: &str) -> DispatcherConfig {
    let mut config = DispatcherConfig::new(name, 4);
    config.lease_ttl = Duration::from_secs(3);
    config.heartbeat_every = Duration::from_millis(300);
    config.poll_every = Duration::from_millis(100);
    config.drain_grace = Duration::from_secs(2);
    config
}

/// A node: a dispatcher and a service controller, and how to stop them.
struct Node {
    shutdown: CancellationToken,
    dispatcher: JoinHandle<DrainReport>,
    controller: JoinHandle<()>,
}

impl Node {
    fn start(store: &Arc<dyn Store>, config: DispatcherConfig) -> Self {
        let shutdown = CancellationToken::new();
        let runtimes = Runtimes {
            docker: None,
            process: Some(Arc::new(ProcessRuntime::default())),
        };
        let dispatcher =
            Dispatcher::new(Arc::clone(store), Arc::new(SystemClock), runtimes, config);
        let controller = ServiceController::new(Arc::clone(store), Arc::new(SystemClock))
            .with_interval(Duration::from_millis(100));
        Self {
            controller: tokio::spawn(controller.run(shutdown.clone())),
            dispatcher: tokio::spawn(dispatcher.run(shutdown.clone())),
            shutdown,
        }
    }

    async fn stop(self) -> DrainReport {
        self.shutdown.cancel();
        self.controller.await.expect("the controller ends cleanly");
        tokio::time::timeout(PATIENCE, self.dispatcher)
            .await
            .expect("the drain ends (hang guard)")
            .expect("the dispatcher ends cleanly")
    }
}

/// Every execution of `service`, oldest first.
async fn runs(store: &Arc<dyn Store>, service: &str) -> Vec<Execution> {
    let page = store
        .execution_list(&ExecutionFilter {
            job: Some(service.into()),
            limit: 1000,
            ..ExecutionFilter::default()
        })
        .await
        .expect("list");
    let mut all = page.executions;
    all.sort_by_key(|e| (e.created_at, e.id));
    all
}

/// Polls until the executions of `service` satisfy `done`, and returns them.
async fn wait_until(
    store: &Arc<dyn Store>,
    service: &str,
    what: &str,
    done: impl Fn(&[Execution]) -> bool,
) -> Vec<Execution> {
    let started = Instant::now();
    loop {
        let all = runs(store, service).await;
        if done(&all) {
            return all;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{service}: never {what}; its executions are {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(store: &Arc<dyn Store>, id: ExecutionId) -> Execution {
    store.execution_get(id).await.expect("get the execution")
}

async fn output(store: &Arc<dyn Store>, id: ExecutionId, stream: LogStream) -> String {
    let chunks = store.log_read(id, None, 10_000).await.expect("read logs");
    chunks
        .iter()
        .filter(|c| c.stream == stream)
        .map(|c| String::from_utf8_lossy(&c.data).into_owned())
        .collect()
}

fn running(e: &Execution) -> bool {
    e.status == Status::Running
}

/// The pid an instance wrote into `dir`, once it has.
async fn pid_in(dir: &std::path::Path, execution: ExecutionId) -> i32 {
    let path = dir.join(execution.to_string());
    let started = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(started.elapsed() < PATIENCE, "no pid at {}", path.display());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// A script that writes its pid to `dir/<execution id>`, then runs until stopped.
fn pid_script(dir: &std::path::Path) -> String {
    format!(
        "echo $$ > {}/$PANDA_EXECUTION_ID; echo up $PANDA_INSTANCE $PANDA_REVISION; \
         while true; do sleep 0.1; done",
        dir.display()
    )
}

async fn an_instance_runs_with_its_number_and_is_reported_healthy(test: &TestStore) {
    let store = &test.store;
    let dir = tempfile::tempdir().expect("a temp dir");
    store
        .job_create(&service("web", &pid_script(dir.path())), Utc::now())
        .await
        .expect("create");
    let node = Node::start(store, config("node-a"));
    let all = wait_until(store, "web", "running and healthy", |all| {
        all.iter().any(|e| running(e) && e.healthy_at.is_some())
    })
    .await;
    let instance = all.iter().find(|e| running(e)).expect("running");
    assert_eq!(
        (instance.instance, instance.revision, instance.trigger),
        (Some(0), Some(1), Trigger::Service)
    );
    pid_in(dir.path(), instance.id).await;
    // The log is stored in batches while the instance runs.
    let started = Instant::now();
    loop {
        let stdout = output(store, instance.id, LogStream::Stdout).await;
        if !stdout.is_empty() {
            assert_eq!(stdout, "up 0 1\n");
            break;
        }
        assert!(started.elapsed() < PATIENCE, "no output stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.stop().await;
}

async fn a_killed_instance_process_is_restarted(test: &TestStore) {
    let store = &test.store;
    let dir = tempfile::tempdir().expect("a temp dir");
    store
        .job_create(&service("worker", &pid_script(dir.path())), Utc::now())
        .await
        .expect("create");
    let node = Node::start(store, config("node-a"));
    let all = wait_until(store, "worker", "running", |all| all.iter().any(running)).await;
    let first = all.iter().find(|e| running(e)).expect("running").id;
    let pid = pid_in(dir.path(), first).await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill the instance's process");

    let all = wait_until(store, "worker", "restarted", |all| {
        all.iter()
            .any(|e| e.id != first && running(e) && e.trigger == Trigger::Restart)
    })
    .await;
    let ended = all.iter().find(|e| e.id == first).expect("the first run");
    assert_eq!(
        (ended.status, ended.exit_code),
        (Status::Failed, Some(137)),
        "{ended:#?}"
    );
    let restarted = all.iter().find(|e| running(e)).expect("the restart");
    assert_eq!(restarted.instance, Some(0));
    node.stop().await;
}

async fn a_failing_health_check_stops_the_instance_and_it_is_restarted(test: &TestStore) {
    let store = &test.store;
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut spec = service("flaky", &pid_script(dir.path()));
    if let Some(service) = spec.service.as_mut() {
        service.health = Some(HealthCheck {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            retries: 2,
            start_period: Duration::ZERO,
            ..HealthCheck::new(Probe::Command {
                command: "echo not ready >&2; exit 1".into(),
            })
        });
        // Stopped by the default SIGTERM, which ends the loop at once.
        service.stop_timeout = Duration::from_secs(5);
    }
    store.job_create(&spec, Utc::now()).await.expect("create");
    let node = Node::start(store, config("node-a"));
    let all = wait_until(
        store,
        "flaky",
        "restarted after failing its health check",
        |all| all.iter().any(|e| e.status == Status::Failed) && all.iter().any(running),
    )
    .await;
    let failed = all
        .iter()
        .find(|e| e.status == Status::Failed)
        .expect("the failed run");
    let reason = failed.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("health check failed 2 times in a row") && reason.contains("not ready"),
        "{reason}"
    );
    assert_eq!(failed.healthy_at, None, "it never was healthy");
    let pid = pid_in(dir.path(), failed.id).await;
    assert!(!alive(pid), "the unhealthy instance's process is gone");
    node.stop().await;
}

async fn a_stop_request_sends_the_stop_signal_and_finishes_the_instance(test: &TestStore) {
    let store = &test.store;
    let dir = tempfile::tempdir().expect("a temp dir");
    let said = dir.path().join("said");
    let script = format!(
        "trap 'echo got USR1 > {}; exit 0' USR1; echo up; while true; do sleep 0.1; done",
        said.display()
    );
    let mut spec = service("consumer", &script);
    if let Some(service) = spec.service.as_mut() {
        service.stop_signal = "SIGUSR1".parse().expect("a signal");
    }
    store.job_create(&spec, Utc::now()).await.expect("create");
    let node = Node::start(store, config("node-a"));
    let all = wait_until(store, "consumer", "running", |all| all.iter().any(running)).await;
    let id = all.iter().find(|e| running(e)).expect("running").id;
    // Scaled to zero: the reconcile asks the instance to stop.
    if let Some(service) = spec.service.as_mut() {
        service.replicas = 0;
    }
    store
        .job_update(&spec, Utc::now())
        .await
        .expect("scale to 0");
    let started = Instant::now();
    wait_until(store, "consumer", "stopped", |all| {
        all.iter().all(|e| e.status.is_terminal())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it ended on the signal, well before the stop timeout's kill"
    );
    let stopped = get(store, id).await;
    assert_eq!(stopped.status, Status::Cancelled, "{stopped:#?}");
    assert_eq!(
        std::fs::read_to_string(&said).expect("the trap ran").trim(),
        "got USR1"
    );
    assert_eq!(runs(store, "consumer").await.len(), 1, "not restarted");
    node.stop().await;
}

async fn drain_stops_the_instances_and_hands_them_over_at_once(test: &TestStore) {
    let store = &test.store;
    let dir = tempfile::tempdir().expect("a temp dir");
    store
        .job_create(&service("shipper", &pid_script(dir.path())), Utc::now())
        .await
        .expect("create");
    // A long lease: only the release can hand the instance over in time.
    let long_lease = |name: &str| {
        let mut config = config(name);
        config.lease_ttl = Duration::from_secs(60);
        config.heartbeat_every = Duration::from_secs(1);
        config
    };
    let a = Node::start(store, long_lease("node-a"));
    let all = wait_until(store, "shipper", "running on node-a", |all| {
        all.iter().any(running)
    })
    .await;
    let on_a = all.iter().find(|e| running(e)).expect("running").clone();
    let pid = pid_in(dir.path(), on_a.id).await;
    let report = a.stop().await;
    assert_eq!(report.instances, 1, "{report:?}");
    assert!(!alive(pid), "node-a's copy is stopped");

    let handed_over = Instant::now();
    let b = Node::start(store, long_lease("node-b"));
    let all = wait_until(store, "shipper", "running on node-b", |all| {
        all.iter()
            .any(|e| running(e) && e.worker_id.as_deref() == Some("node-b"))
    })
    .await;
    assert!(
        handed_over.elapsed() < Duration::from_secs(30),
        "taken over well before the lease of 60s expired"
    );
    let on_b = all.iter().find(|e| running(e)).expect("running");
    assert_eq!(on_b.instance, Some(0));
    b.stop().await;
}

async fn a_copy_whose_lease_moved_on_is_killed_at_once(test: &TestStore) {
    let store = &test.store;
    let dir = tempfile::tempdir().expect("a temp dir");
    // It ignores the stop signal: only a kill ends it.
    let script = format!("trap '' TERM; {}", pid_script(dir.path()));
    let mut spec = service("zombie", &script);
    if let Some(service) = spec.service.as_mut() {
        service.stop_timeout = Duration::from_secs(60);
    }
    store.job_create(&spec, Utc::now()).await.expect("create");
    let node = Node::start(store, config("node-a"));
    let all = wait_until(store, "zombie", "running", |all| all.iter().any(running)).await;
    let copy = all.iter().find(|e| running(e)).expect("running").clone();
    let pid = pid_in(dir.path(), copy.id).await;
    // The lease is taken from under it, as a rescue on another node would once this node had
    // been paused past it.
    let lost = store
        .execution_rescue(Utc::now() + chrono::Duration::seconds(3600), 10)
        .await
        .expect("rescue");
    assert!(lost.iter().any(|f| f.execution.id == copy.id), "{lost:#?}");
    let started = Instant::now();
    while alive(pid) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the copy whose lease moved on still runs"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let rescued = get(store, copy.id).await;
    assert_eq!(
        rescued.status,
        Status::Lost,
        "its end is the rescue's, not this node's"
    );
    node.stop().await;
}

async fn a_crash_loop_raises_one_alert_and_recovered_once_the_instance_stays_up(test: &TestStore) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = &test.store;
    let dir = tempfile::tempdir().expect("a temp dir");
    let fixed = dir.path().join("fixed");
    // It exits at once until the file exists, then runs.
    let script = format!(
        "test -f {} || {{ echo broken >&2; exit 3; }}; while true; do sleep 0.1; done",
        fixed.display()
    );
    let mut spec = service("looping", &script);
    if let Some(service) = spec.service.as_mut() {
        service.restart_delay = Duration::from_millis(10);
        service.restart_delay_max = Duration::from_millis(50);
        service.healthy_after = Duration::from_secs(1);
    }
    store.job_create(&spec, Utc::now()).await.expect("create");
    let mut alerter = Alerter::new(
        Arc::clone(store),
        Arc::new(SystemClock),
        AlerterConfig::default(),
    )
    .expect("an HTTP client");
    let node = Node::start(store, config("node-a"));
    let mut raised = Vec::new();
    let started = Instant::now();
    while !raised
        .iter()
        .any(|a: &panda_store::AlertRecord| a.kind == panda_core::AlertKind::CrashLoop)
    {
        assert!(
            started.elapsed() < PATIENCE,
            "no crash_loop alert: {raised:#?}"
        );
        raised.extend(alerter.judge().await.expect("judge"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More exits of the same incident raise nothing more.
    wait_until(store, "looping", "exited a few more times", |all| {
        all.len() >= 8
    })
    .await;
    raised.extend(alerter.judge().await.expect("judge"));
    let kinds: Vec<_> = raised.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [panda_core::AlertKind::CrashLoop], "{raised:#?}");
    assert!(
        raised[0].message.contains("without a healthy run"),
        "{}",
        raised[0].message
    );

    std::fs::write(&fixed, "").expect("fix it");
    let started = Instant::now();
    loop {
        let now = alerter.judge().await.expect("judge");
        if now
            .iter()
            .any(|a| a.kind == panda_core::AlertKind::Recovered)
        {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "no recovered alert");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop().await;
}

async fn the_service_gauges_count_instances_by_state_and_their_restarts(test: &TestStore) {
    let store = &test.store;
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut spec = service("gauged", &pid_script(dir.path()));
    if let Some(service) = spec.service.as_mut() {
        service.replicas = 2;
    }
    store.job_create(&spec, Utc::now()).await.expect("create");
    let node = Node::start(store, config("node-a"));
    wait_until(store, "gauged", "both running and healthy", |all| {
        all.iter()
            .filter(|e| running(e) && e.healthy_at.is_some())
            .count()
            == 2
    })
    .await;
    let services = store.service_list(Utc::now()).await.expect("list");
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let gauges = panda_engine::metrics::ServiceGauges::default();
    ::metrics::with_local_recorder(&recorder, || gauges.set(&services));
    let body = recorder.handle().render();
    for line in [
        r#"panda_service_instances{service="gauged",state="healthy"} 2"#,
        r#"panda_service_instances{service="gauged",state="backing_off"} 0"#,
        r#"panda_service_restarts_total{service="gauged"} 0"#,
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in:\n{body}");
    }
    // A service that is gone reads zero, not its last value.
    ::metrics::with_local_recorder(&recorder, || gauges.set(&[]));
    let body = recorder.handle().render();
    let line = r#"panda_service_instances{service="gauged",state="healthy"} 0"#;
    assert!(body.lines().any(|l| l == line), "{line} in:\n{body}");
    node.stop().await;
}

async fn an_old_revisions_instance_restarted_during_a_rollout_runs_its_own_definition(
    test: &TestStore,
) {
    let store = &test.store;
    let dir = tempfile::tempdir().expect("a temp dir");
    let script = format!(
        "echo $$ > {}/$PANDA_EXECUTION_ID; echo \"$VERSION $PANDA_REVISION\"; \
         while true; do sleep 0.1; done",
        dir.path().display()
    );
    let mut spec = service("rolling", &script);
    spec.env.insert("VERSION".into(), "one".into());
    if let Some(service) = spec.service.as_mut() {
        // Only the first definition ever passes: the rollout to the second stays in progress.
        service.health = Some(HealthCheck {
            interval: Duration::from_secs(1),
            retries: 100,
            start_period: Duration::ZERO,
            ..HealthCheck::new(Probe::Command {
                command: "test \"$VERSION\" = one".into(),
            })
        });
        service.rollout.min_healthy = Duration::ZERO;
        service.rollout.healthy_deadline = Duration::from_secs(600);
        service.stop_timeout = Duration::from_secs(5);
    }
    store.job_create(&spec, Utc::now()).await.expect("create");
    let node = Node::start(store, config("node-a"));
    let all = wait_until(store, "rolling", "running healthy", |all| {
        all.iter().any(|e| running(e) && e.healthy_at.is_some())
    })
    .await;
    let old = all.iter().find(|e| running(e)).expect("running").clone();
    spec.env.insert("VERSION".into(), "two".into());
    store.job_update(&spec, Utc::now()).await.expect("update");
    wait_until(
        store,
        "rolling",
        "running revision 2 beside revision 1",
        |all| all.iter().any(|e| running(e) && e.revision == Some(2)),
    )
    .await;
    let pid = pid_in(dir.path(), old.id).await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let all = wait_until(store, "rolling", "revision 1 restarted", |all| {
        all.iter()
            .any(|e| running(e) && e.revision == Some(1) && e.trigger == Trigger::Restart)
    })
    .await;
    let restarted = all
        .iter()
        .find(|e| running(e) && e.revision == Some(1))
        .expect("the restart");
    let new = all
        .iter()
        .find(|e| running(e) && e.revision == Some(2))
        .expect("the new revision");
    for (run, said) in [(restarted, "one 1\n"), (new, "two 2\n")] {
        let started = Instant::now();
        loop {
            let stdout = output(store, run.id, LogStream::Stdout).await;
            if !stdout.is_empty() {
                assert_eq!(stdout, said, "{run:#?}");
                break;
            }
            assert!(started.elapsed() < PATIENCE, "no output from {}", run.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    node.stop().await;
}

/// A service of an image on the real Docker engine (skipped with a reason when there is none):
/// its health command runs in its container, and a stop sends the service's own signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_an_image_instance_is_probed_in_its_container_and_stopped_with_its_signal() {
    const IMAGE: &str = "panda-test/busybox:latest";
    let docker = match panda_runtime::DockerRuntime::connect().await {
        Ok(docker) => docker,
        Err(err) if std::env::var("PANDA_REQUIRE_ALL_BACKENDS").as_deref() == Ok("1") => {
            panic!("PANDA_REQUIRE_ALL_BACKENDS=1 but Docker is not available: {err}")
        }
        Err(err) => {
            eprintln!("skipped: Docker is not available: {err}");
            return;
        }
    };
    docker
        .build_busybox_image(IMAGE, std::path::Path::new("/bin/busybox"))
        .await
        .expect("build the test image (apt-get install busybox-static)");
    let docker = docker.with_pull_policy(panda_runtime::PullPolicy::Never);
    let test = panda_store::testing::sqlite().await;
    let store = &test.store;
    let mut spec = service("boxed", "unused");
    spec.runtime = RuntimeSpec::Image {
        image: IMAGE.into(),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "trap 'echo got USR1; exit 0' USR1; touch /ready; echo up; \
             while true; do sleep 0.1; done"
                .into(),
        ]),
    };
    if let Some(service) = spec.service.as_mut() {
        service.stop_signal = "SIGUSR1".parse().expect("a signal");
        service.health = Some(HealthCheck {
            interval: Duration::from_secs(1),
            retries: 3,
            start_period: Duration::from_secs(30),
            ..HealthCheck::new(Probe::Command {
                command: "test -f /ready".into(),
            })
        });
    }
    store.job_create(&spec, Utc::now()).await.expect("create");
    let shutdown = CancellationToken::new();
    let runtimes = Runtimes {
        docker: Some(Arc::new(docker)),
        process: None,
    };
    let dispatcher = Dispatcher::new(
        Arc::clone(store),
        Arc::new(SystemClock),
        runtimes,
        config("node-d"),
    );
    let controller = ServiceController::new(Arc::clone(store), Arc::new(SystemClock))
        .with_interval(Duration::from_millis(100));
    let node = Node {
        controller: tokio::spawn(controller.run(shutdown.clone())),
        dispatcher: tokio::spawn(dispatcher.run(shutdown.clone())),
        shutdown,
    };
    let all = wait_until(store, "boxed", "healthy in its container", |all| {
        all.iter().any(|e| running(e) && e.healthy_at.is_some())
    })
    .await;
    let id = all.iter().find(|e| running(e)).expect("running").id;
    if let Some(service) = spec.service.as_mut() {
        service.replicas = 0;
    }
    store
        .job_update(&spec, Utc::now())
        .await
        .expect("scale to 0");
    wait_until(store, "boxed", "stopped", |all| {
        all.iter().all(|e| e.status.is_terminal())
    })
    .await;
    assert_eq!(get(store, id).await.status, Status::Cancelled);
    let stdout = output(store, id, LogStream::Stdout).await;
    assert!(stdout.contains("got USR1"), "{stdout}");
    node.stop().await;
    test.close().await;
}
