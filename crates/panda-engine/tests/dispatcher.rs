//! The Dispatcher and the Rescuer against both store backends, running real local processes:
//! executions run once with their `PANDA_*` environment, failures retry with backoff and end in
//! the dead-letter queue, permanent errors do not retry, timeouts and cancellation stop the
//! run, an expired lease is rescued at once, a worker whose lease was rescued records nothing,
//! queue limits hold, and a drain finishes what it can and releases the rest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, JobName, JobSpec, RetryPolicy, RuntimeSpec, Status,
    SystemClock, Trigger,
};
use panda_engine::{Dispatcher, DispatcherConfig, DrainReport, QueueLimit, Rescuer, Runtimes};
use panda_runtime::ProcessRuntime;
use panda_store::testing::TestStore;
use panda_store::{ClaimRequest, ExecutionFilter, LogStream, NewExecution, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

panda_store::backends! {
    an_execution_runs_once_and_sees_its_panda_environment,
    a_failing_execution_retries_with_backoff_and_ends_dead,
    a_permanent_runtime_error_goes_to_the_dead_letter_queue_without_retrying,
    a_timeout_stops_the_run_as_timed_out,
    cancelling_a_running_execution_stops_its_process,
    an_expired_lease_is_rescued_and_its_retry_runs_at_once,
    a_worker_whose_lease_was_rescued_stops_and_records_nothing,
    a_queue_limit_caps_how_many_of_its_executions_run_at_once,
    a_job_limit_holds_across_two_nodes,
    a_jobs_next_execution_is_claimed_once_the_slot_it_waits_for_is_written_free,
    a_delayed_execution_does_not_start_before_its_time,
    drain_lets_short_runs_finish_and_releases_the_rest,
    a_job_for_a_runtime_this_node_lacks_is_rejected_with_the_reason,
}

/// How long any single wait in these tests may take before the case fails.
const PATIENCE: Duration = Duration::from_secs(30);

fn job(name: &str, script: &str) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("a valid name"),
        RuntimeSpec::Process {
            argv: vec!["sh".into(), "-c".into(), script.into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.retry = RetryPolicy {
        max_attempts: 1,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(200),
    };
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

fn process_only() -> Runtimes {
    Runtimes {
        docker: None,
        process: Some(Arc::new(ProcessRuntime::default())),
    }
}

/// A running dispatcher and how to stop it.
struct Node {
    shutdown: CancellationToken,
    dispatcher: JoinHandle<DrainReport>,
}

impl Node {
    fn start(store: &Arc<dyn Store>, config: DispatcherConfig) -> Self {
        let shutdown = CancellationToken::new();
        let dispatcher = Dispatcher::new(
            Arc::clone(store),
            Arc::new(SystemClock),
            process_only(),
            config,
        );
        let dispatcher = tokio::spawn(dispatcher.run(shutdown.clone()));
        Self {
            shutdown,
            dispatcher,
        }
    }

    async fn stop(self) -> DrainReport {
        self.shutdown.cancel();
        self.dispatcher.await.expect("the dispatcher ends cleanly")
    }
}

fn start_rescuer(store: &Arc<dyn Store>) -> (CancellationToken, JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let rescuer = Rescuer::new(store.clone(), Arc::new(SystemClock))
        .with_interval(Duration::from_millis(100));
    (shutdown.clone(), tokio::spawn(rescuer.run(shutdown)))
}

async fn enqueue(store: &Arc<dyn Store>, request: NewExecution) -> Execution {
    store
        .execution_enqueue(&request, Utc::now())
        .await
        .expect("enqueue")
        .execution
}

/// Polls until `id` satisfies `done`, and returns it.
async fn wait_for(
    store: &Arc<dyn Store>,
    id: ExecutionId,
    what: &str,
    done: impl Fn(&Execution) -> bool,
) -> Execution {
    let started = Instant::now();
    loop {
        let execution = store.execution_get(id).await.expect("get the execution");
        if done(&execution) {
            return execution;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "execution {id} never became {what}; it is {execution:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every attempt of `job`, first attempt first.
async fn attempts(store: &Arc<dyn Store>, job: &str) -> Vec<Execution> {
    let page = store
        .execution_list(&ExecutionFilter {
            job: Some(job.into()),
            limit: 1000,
            ..ExecutionFilter::default()
        })
        .await
        .expect("list");
    let mut all = page.executions;
    all.sort_by_key(|e| (e.created_at, e.attempt));
    all
}

/// Polls until the newest attempt of `job`'s run is terminal and not retried, and returns the
/// whole chain.
async fn wait_for_chain_end(store: &Arc<dyn Store>, job: &str, attempts_expected: usize) {
    let started = Instant::now();
    loop {
        let all = attempts(store, job).await;
        if all.len() == attempts_expected && all.iter().all(|e| e.status.is_terminal()) {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{job} never reached {attempts_expected} finished attempts: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn output(store: &Arc<dyn Store>, id: ExecutionId, stream: LogStream) -> String {
    let chunks = store.log_read(id, None, 10_000).await.expect("read logs");
    chunks
        .iter()
        .filter(|c| c.stream == stream)
        .map(|c| String::from_utf8_lossy(&c.data).into_owned())
        .collect()
}

async fn an_execution_runs_once_and_sees_its_panda_environment(test: &TestStore) {
    let store = &test.store;
    store
        .job_create(
            &job(
                "env",
                "echo \"$PANDA_JOB|$PANDA_ATTEMPT|$PANDA_TRIGGER|$PANDA_IDEMPOTENCY_KEY|$PANDA_PAYLOAD|$PANDA_EXECUTION_ID|$REGION\"",
            ),
            Utc::now(),
        )
        .await
        .expect("create");
    let mut request = NewExecution::api("env");
    request.payload = Some(serde_json::json!({"user": 42}));
    request.idempotency_key = Some("signup-42".into());
    request.env = BTreeMap::from([("REGION".to_owned(), "eu".to_owned())]);
    let queued = enqueue(store, request).await;

    let node = Node::start(store, config("node-a"));
    let done = wait_for(store, queued.id, "terminal", |e| e.status.is_terminal()).await;
    node.stop().await;

    assert_eq!(done.status, Status::Succeeded, "{done:#?}");
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.worker_id.as_deref(), Some("node-a"));
    let stdout = output(store, done.id, LogStream::Stdout).await;
    assert_eq!(
        stdout.trim_end(),
        format!("env|1|api|signup-42|{{\"user\":42}}|{}|eu", done.id)
    );
    assert_eq!(attempts(store, "env").await.len(), 1, "ran once");
}

async fn a_failing_execution_retries_with_backoff_and_ends_dead(test: &TestStore) {
    let store = &test.store;
    let mut spec = job("flaky", "echo attempt $PANDA_ATTEMPT; exit 3");
    spec.retry.max_attempts = 3;
    store.job_create(&spec, Utc::now()).await.expect("create");
    let first = enqueue(store, NewExecution::api("flaky")).await;

    let node = Node::start(store, config("node-a"));
    wait_for_chain_end(store, "flaky", 3).await;
    node.stop().await;

    let chain = attempts(store, "flaky").await;
    let seen: Vec<_> = chain
        .iter()
        .map(|e| (e.attempt, e.status, e.trigger, e.exit_code, e.root_id))
        .collect();
    assert_eq!(
        seen,
        [
            (1, Status::Failed, Trigger::Api, Some(3), first.id),
            (2, Status::Failed, Trigger::Retry, Some(3), first.id),
            (3, Status::Dead, Trigger::Retry, Some(3), first.id),
        ]
    );
    for pair in chain.windows(2) {
        let (failed, retry) = (&pair[0], &pair[1]);
        let finished = failed.finished_at.expect("finished");
        let started = retry.started_at.expect("started");
        assert!(
            started >= finished,
            "a retry starts after the attempt before it"
        );
    }
    let stdout = output(store, chain[2].id, LogStream::Stdout).await;
    assert_eq!(
        stdout.trim_end(),
        "attempt 3",
        "each attempt has its own logs"
    );
}

async fn a_permanent_runtime_error_goes_to_the_dead_letter_queue_without_retrying(
    test: &TestStore,
) {
    let store = &test.store;
    let mut spec = JobSpec::new(
        JobName::new("missing").expect("name"),
        RuntimeSpec::Process {
            argv: vec!["/nonexistent/panda-test-binary".into()],
        },
    );
    spec.retry.max_attempts = 3;
    store.job_create(&spec, Utc::now()).await.expect("create");
    let queued = enqueue(store, NewExecution::api("missing")).await;

    let node = Node::start(store, config("node-a"));
    let done = wait_for(store, queued.id, "terminal", |e| e.status.is_terminal()).await;
    // No wait for a retry: the store queues an attempt's retry in the transaction that records
    // the attempt's end, so once the end reads back, a retry would be there to count.
    node.stop().await;

    assert_eq!(done.status, Status::Dead, "{done:#?}");
    let reason = done.reason.unwrap_or_default();
    assert!(
        reason.contains("not retried") && reason.contains("/nonexistent/panda-test-binary"),
        "the reason names the cause: {reason}"
    );
    assert_eq!(attempts(store, "missing").await.len(), 1, "no retry");
}

async fn a_timeout_stops_the_run_as_timed_out(test: &TestStore) {
    let store = &test.store;
    let mut spec = job("slow", "echo started; exec sleep 30");
    spec.timeout = Duration::from_secs(1);
    store.job_create(&spec, Utc::now()).await.expect("create");
    let queued = enqueue(store, NewExecution::api("slow")).await;

    let node = Node::start(store, config("node-a"));
    let done = wait_for(store, queued.id, "terminal", |e| e.status.is_terminal()).await;
    node.stop().await;

    // One attempt only: the last attempt's timeout puts the run in the dead-letter queue.
    assert_eq!(done.status, Status::Dead, "{done:#?}");
    let reason = done.reason.unwrap_or_default();
    assert!(reason.contains("timed out"), "{reason}");
    let ran = done.finished_at.expect("finished") - done.started_at.expect("started");
    assert!(
        ran < chrono::Duration::seconds(15),
        "stopped at the timeout, not at the end of sleep 30: {ran}"
    );
}

async fn cancelling_a_running_execution_stops_its_process(test: &TestStore) {
    let store = &test.store;
    store
        .job_create(&job("long", "echo started; exec sleep 30"), Utc::now())
        .await
        .expect("create");
    let queued = enqueue(store, NewExecution::api("long")).await;

    let node = Node::start(store, config("node-a"));
    wait_for(store, queued.id, "running", |e| e.status == Status::Running).await;
    store
        .execution_cancel(queued.id, Utc::now())
        .await
        .expect("cancel");
    let asked = Instant::now();
    let done = wait_for(store, queued.id, "terminal", |e| e.status.is_terminal()).await;
    node.stop().await;

    assert_eq!(done.status, Status::Cancelled, "{done:#?}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopped within a heartbeat and the kill grace, not after sleep 30"
    );
    assert_eq!(
        attempts(store, "long").await.len(),
        1,
        "a cancel is not retried"
    );
}

async fn an_expired_lease_is_rescued_and_its_retry_runs_at_once(test: &TestStore) {
    let store = &test.store;
    let mut spec = job("rescued", "echo ran");
    spec.retry.max_attempts = 2;
    spec.retry.backoff_base = Duration::from_secs(600);
    spec.retry.backoff_cap = Duration::from_secs(600);
    store.job_create(&spec, Utc::now()).await.expect("create");
    let first = enqueue(store, NewExecution::api("rescued")).await;
    // A worker that claims it and dies at once: no heartbeat ever comes.
    let claimed = store
        .execution_claim(
            &ClaimRequest {
                worker_id: "ghost".into(),
                queues: Vec::new(),
                limit: 1,
                lease_ttl: Duration::from_millis(500),
            },
            Utc::now(),
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);

    let node = Node::start(store, config("node-a"));
    let (stop_rescuer, rescuer) = start_rescuer(store);
    wait_for_chain_end(store, "rescued", 2).await;
    node.stop().await;
    stop_rescuer.cancel();
    rescuer.await.expect("rescuer");

    let chain = attempts(store, "rescued").await;
    let lost = &chain[0];
    assert_eq!((lost.id, lost.status), (first.id, Status::Lost));
    assert_eq!(
        lost.exit_code, None,
        "nobody wrote a result for the lost attempt"
    );
    let retry = &chain[1];
    assert_eq!(
        (retry.status, retry.attempt, retry.worker_id.as_deref()),
        (Status::Succeeded, 2, Some("node-a"))
    );
    // The retry of a lost attempt is due at once, not after the 10-minute backoff.
    assert!(retry.run_at <= lost.finished_at.expect("lost at"));
}

async fn a_worker_whose_lease_was_rescued_stops_and_records_nothing(test: &TestStore) {
    let store = &test.store;
    let mut spec = job("paused", "echo started; exec sleep 30");
    spec.retry.max_attempts = 1;
    store.job_create(&spec, Utc::now()).await.expect("create");
    let queued = enqueue(store, NewExecution::api("paused")).await;

    // Heartbeats slower than the lease: the lease expires while the run goes on, as when a
    // worker is cut off from the database.
    let mut cut_off = config("node-a");
    cut_off.lease_ttl = Duration::from_millis(500);
    cut_off.heartbeat_every = Duration::from_secs(2);
    let node = Node::start(store, cut_off);
    wait_for(store, queued.id, "running", |e| e.status == Status::Running).await;
    let (stop_rescuer, rescuer) = start_rescuer(store);
    let lost = wait_for(store, queued.id, "rescued", |e| e.status.is_terminal()).await;
    stop_rescuer.cancel();
    rescuer.await.expect("rescuer");
    assert_eq!(
        lost.status,
        Status::Dead,
        "lost on its only attempt: {lost:#?}"
    );

    // The next heartbeat is refused as stale: the worker stops the run and writes nothing.
    let report = tokio::time::timeout(Duration::from_secs(20), node.stop())
        .await
        .expect("the run was stopped, not left to sleep 30");
    assert_eq!(
        report.released, 0,
        "a rescued execution is not the node's to release"
    );
    let after = store.execution_get(queued.id).await.expect("get");
    assert_eq!(
        after, lost,
        "the old worker's result did not overwrite the rescue"
    );
}

async fn a_queue_limit_caps_how_many_of_its_executions_run_at_once(test: &TestStore) {
    let store = &test.store;
    let mut spec = job("report", "sleep 0.3");
    spec.queue = "reports".into();
    store.job_create(&spec, Utc::now()).await.expect("create");
    let mut other = job("email", "sleep 0.3");
    other.queue = "mail".into();
    store.job_create(&other, Utc::now()).await.expect("create");
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(enqueue(store, NewExecution::api("report")).await.id);
        ids.push(enqueue(store, NewExecution::api("email")).await.id);
    }

    let mut limited = config("node-a");
    limited.concurrency = 8;
    limited.queues = vec![
        "reports=1".parse::<QueueLimit>().expect("queue"),
        "mail".parse::<QueueLimit>().expect("queue"),
    ];
    let node = Node::start(store, limited);
    let mut most = (0, 0);
    let started = Instant::now();
    loop {
        let all = [
            attempts(store, "report").await,
            attempts(store, "email").await,
        ];
        let running = |i: usize| {
            all[i]
                .iter()
                .filter(|e| e.status == Status::Running)
                .count()
        };
        most = (most.0.max(running(0)), most.1.max(running(1)));
        if all.iter().flatten().all(|e| e.status.is_terminal()) {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "never finished: {all:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;

    assert_eq!(most.0, 1, "the reports queue runs one at a time");
    assert!(
        most.1 > 1,
        "the mail queue, unlimited, runs several at once"
    );
    for id in ids {
        let done = store.execution_get(id).await.expect("get");
        assert_eq!(done.status, Status::Succeeded);
    }
}

async fn a_job_limit_holds_across_two_nodes(test: &TestStore) {
    let store = &test.store;
    let mut spec = job("crawl", "sleep 0.3");
    spec.max_running = Some(2);
    store.job_create(&spec, Utc::now()).await.expect("create");
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(enqueue(store, NewExecution::api("crawl")).await.id);
    }

    // Two nodes with room for eight each, both claiming (whichever wakes first takes the free
    // slots): only the job's limit holds them back.
    let mut roomy = config("node-a");
    roomy.concurrency = 8;
    let a = Node::start(store, roomy.clone());
    roomy.worker_id = "node-b".into();
    let b = Node::start(store, roomy);
    let mut most = 0;
    let started = Instant::now();
    loop {
        let all = attempts(store, "crawl").await;
        let running: Vec<_> = all.iter().filter(|e| e.status == Status::Running).collect();
        most = most.max(running.len());
        if all.iter().all(|e| e.status.is_terminal()) {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "never finished: {all:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;

    assert_eq!(most, 2, "two at a time, never more, across both nodes");
    for id in ids {
        let done = store.execution_get(id).await.expect("get");
        assert_eq!(done.status, Status::Succeeded);
    }
}

async fn a_jobs_next_execution_is_claimed_once_the_slot_it_waits_for_is_written_free(
    test: &TestStore,
) {
    let store = &test.store;
    let mut one_at_a_time = job("sync", "true");
    one_at_a_time.concurrency = ConcurrencyPolicy::Forbid;
    let mut limited = job("crawl", "true");
    limited.max_running = Some(1);
    for spec in [&one_at_a_time, &limited] {
        store.job_create(spec, Utc::now()).await.expect("create");
    }
    let mut ids = Vec::new();
    for _ in 0..4 {
        for name in ["sync", "crawl"] {
            ids.push(enqueue(store, NewExecution::api(name)).await.id);
        }
    }

    // No poll during the case: each next execution is claimed because the write of the finish
    // before it released the job's slot. Waiting for a poll instead, the case runs out of time.
    let mut patient = config("node-a");
    patient.poll_every = Duration::from_secs(3600);
    let node = Node::start(store, patient);
    for id in ids {
        let done = wait_for(store, id, "terminal", |e| e.status.is_terminal()).await;
        assert_eq!(done.status, Status::Succeeded, "{done:#?}");
    }
    node.stop().await;
}

async fn a_delayed_execution_does_not_start_before_its_time(test: &TestStore) {
    let store = &test.store;
    store
        .job_create(&job("later", "true"), Utc::now())
        .await
        .expect("create");
    let node = Node::start(store, config("node-a"));
    let mut request = NewExecution::api("later");
    let due = Utc::now() + chrono::Duration::milliseconds(1500);
    request.run_at = Some(due);
    let queued = enqueue(store, request).await;
    let done = wait_for(store, queued.id, "terminal", |e| e.status.is_terminal()).await;
    node.stop().await;

    assert_eq!(done.status, Status::Succeeded);
    let started = done.started_at.expect("started");
    assert!(started >= due, "started {started}, due {due}");
}

async fn drain_lets_short_runs_finish_and_releases_the_rest(test: &TestStore) {
    let store = &test.store;
    store
        .job_create(&job("short", "sleep 0.5; echo done"), Utc::now())
        .await
        .expect("create");
    store
        .job_create(
            &job("long", "echo \"run on $PANDA_EXECUTION_ID\"; exec sleep 30"),
            Utc::now(),
        )
        .await
        .expect("create");
    let short = enqueue(store, NewExecution::api("short")).await;
    let long = enqueue(store, NewExecution::api("long")).await;

    let node = Node::start(store, config("node-a"));
    wait_for(store, short.id, "running", |e| e.status == Status::Running).await;
    wait_for(store, long.id, "running", |e| e.status == Status::Running).await;
    let report = node.stop().await;

    assert_eq!(
        report,
        DrainReport {
            finished: 1,
            released: 1,
            instances: 0
        }
    );
    let short = store.execution_get(short.id).await.expect("get");
    assert_eq!(short.status, Status::Succeeded);
    let released = store.execution_get(long.id).await.expect("get");
    assert_eq!(
        (
            released.status,
            released.attempt,
            released.worker_id.as_deref()
        ),
        (Status::Queued, 1, None),
        "back in the queue, its attempt not used up"
    );
    assert!(released.run_at <= Utc::now(), "due at once");

    // Another node takes it at once, and its log goes on after the first run's.
    let node = Node::start(store, config("node-b"));
    let again = wait_for(store, long.id, "running again", |e| {
        e.status == Status::Running && e.worker_id.as_deref() == Some("node-b")
    })
    .await;
    assert_eq!(again.attempt, 1);
    store
        .execution_cancel(long.id, Utc::now())
        .await
        .expect("cancel");
    wait_for(store, long.id, "terminal", |e| e.status.is_terminal()).await;
    node.stop().await;
    let stdout = output(store, long.id, LogStream::Stdout).await;
    let line = format!("run on {}\n", long.id);
    assert_eq!(stdout, line.repeat(2), "both runs' output is kept");
}

async fn a_job_for_a_runtime_this_node_lacks_is_rejected_with_the_reason(test: &TestStore) {
    let store = &test.store;
    let mut spec = JobSpec::new(
        JobName::new("container").expect("name"),
        RuntimeSpec::Image {
            image: "busybox:latest".into(),
            command: None,
        },
    );
    spec.retry.max_attempts = 3;
    store.job_create(&spec, Utc::now()).await.expect("create");
    let queued = enqueue(store, NewExecution::api("container")).await;

    let node = Node::start(store, config("node-a"));
    let done = wait_for(store, queued.id, "terminal", |e| e.status.is_terminal()).await;
    node.stop().await;

    assert_eq!(done.status, Status::Dead);
    let reason = done.reason.unwrap_or_default();
    assert!(reason.contains("no Docker engine"), "{reason}");
}
