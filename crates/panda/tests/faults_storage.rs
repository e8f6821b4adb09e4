//! Storage faults through the real binary: PostgreSQL restarted, stopped for longer than the
//! lease, and its backends terminated over and over, all under load; SQLite on a full
//! filesystem. What is checked:
//!
//! - no panda process exits;
//! - API requests while the store is away answer 503 `store_unavailable` with `Retry-After`,
//!   soon (the answers are timed and the slowest printed; the bound asserted is a hang guard),
//!   and no other 5xx; a full disk answers 507 `storage_full` with a hint, logged once;
//! - nothing that finished during an outage runs again and nothing is lost, from a witness
//!   file each run appends to itself (its run key, execution id and attempt, at its start and
//!   at its end), not only from the store.
//!
//! PostgreSQL cases run on a private cluster (`support/postgres.rs`), never the shared one.

#[path = "support/postgres.rs"]
mod pg;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, JobName, JobSpec, RetryPolicy, RuntimeSpec, Status,
};
use panda_store::{JobStore, NewExecution, PgStore, Store};
use pg::PgCluster;
use support::runs::{count, wait_until};
use support::{Server, Start};

/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(90);
/// A hang guard for one API answer while the store is away (the pool gives up after 2 s).
const ANSWER_GUARD: Duration = Duration::from_secs(6);

/// Short leases, so an outage of a few seconds outlasts several of them.
const NODE_ARGS: [&str; 8] = [
    "--runtime",
    "process",
    "--concurrency",
    "8",
    "--lease-ttl",
    "2s",
    "--heartbeat-interval",
    "500ms",
];

fn job(name: &str, witness: &Path, seconds: f64) -> JobSpec {
    let line = |what: &str| {
        format!(
            "echo \"$PANDA_IDEMPOTENCY_KEY $PANDA_EXECUTION_ID $PANDA_ATTEMPT {what}\" >> {}",
            witness.display()
        )
    };
    let script = format!("{}; sleep {seconds}; {}", line("start"), line("end"));
    let mut spec = JobSpec::new(
        JobName::new(name).expect("name"),
        RuntimeSpec::Process {
            argv: vec!["sh".into(), "-c".into(), script],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.retry = RetryPolicy {
        max_attempts: 3,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(500),
    };
    spec
}

/// The witness file's lines: `(run key, execution id, attempt, "start" | "end")`.
fn witness(path: &Path) -> Vec<(String, String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().map(str::to_owned);
            Some((words.next()?, words.next()?, words.next()?, words.next()?))
        })
        .collect()
}

/// How many runs of each run key ended, from the witness.
fn ends_per_run(lines: &[(String, String, String, String)]) -> HashMap<String, usize> {
    let mut ends = HashMap::new();
    for (key, _, _, what) in lines {
        if what == "end" {
            *ends.entry(key.clone()).or_insert(0) += 1;
        }
    }
    ends
}

fn starts_per_run(lines: &[(String, String, String, String)]) -> HashMap<String, usize> {
    let mut starts = HashMap::new();
    for (key, _, _, what) in lines {
        if what == "start" {
            *starts.entry(key.clone()).or_insert(0) += 1;
        }
    }
    starts
}

/// One API answer, timed.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    code: Option<String>,
    hint: Option<String>,
    retry_after: Option<String>,
    took: Duration,
}

/// The API as a client sees it.
#[derive(Debug, Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn of(server: &Server) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            base: format!("{}/api/v1", server.url()),
            token: server.admin_token(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let started = Instant::now();
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let text = |field: &str| {
            body.pointer(&format!("/error/{field}"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        Answer {
            status,
            code: text("code"),
            hint: text("hint"),
            retry_after,
            took: started.elapsed(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn enqueue(&self, job: &str) -> Answer {
        self.send(
            self.http
                .post(format!("{}/jobs/{job}/executions", self.base))
                .json(&serde_json::json!({})),
        )
        .await
    }
}

/// Asks the API a read and an enqueue (of `job`, whose queue no node takes) every 100 ms until
/// `stop`; every answer.
fn probe(
    api: Api,
    job: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    tokio::spawn(async move {
        let mut answers = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            answers.push(api.get("/jobs?kind=all").await);
            answers.push(api.enqueue(job).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answers
    })
}

/// Asserts every answer is a success or 503 `store_unavailable` with `Retry-After`, within the
/// hang guard; returns (503s, the slowest 503).
#[track_caller]
fn only_store_unavailable(answers: &[Answer]) -> (usize, Duration) {
    let mut unavailable = 0;
    let mut slowest = Duration::ZERO;
    let mut others = BTreeMap::new();
    for answer in answers {
        match answer.status {
            200..=299 => {}
            503 if answer.code.as_deref() == Some("store_unavailable")
                && answer.retry_after.is_some()
                && answer.hint.is_some() =>
            {
                unavailable += 1;
                slowest = slowest.max(answer.took);
            }
            _ => {
                *others
                    .entry(format!("{} {:?}", answer.status, answer.code))
                    .or_insert(0) += 1
            }
        }
        assert!(
            answer.took < ANSWER_GUARD,
            "an answer took {:?}: {answer:?}",
            answer.took
        );
    }
    assert!(
        others.is_empty(),
        "answers other than 2xx and 503 store_unavailable: {others:?}"
    );
    (unavailable, slowest)
}

/// A job whose queue no node takes: enqueues of it stay queued.
fn parked(witness: &Path) -> JobSpec {
    let mut spec = job("parked", witness, 0.0);
    spec.queue = "parked".into();
    spec
}

struct PgSetup {
    cluster: PgCluster,
    store: Arc<PgStore>,
    server: Server,
    dir: tempfile::TempDir,
}

/// Creates the job `work` (each run takes `seconds`, witnessed in `DIR/ran.log`) and the
/// `parked` job the API is probed with, and enqueues `runs` of `work`: the witness's path and
/// the executions.
async fn load(
    store: &PgStore,
    dir: &Path,
    seconds: f64,
    runs: usize,
) -> (PathBuf, HashSet<ExecutionId>) {
    let witness_path = dir.join("ran.log");
    store
        .job_create(&job("work", &witness_path, seconds), Utc::now())
        .await
        .expect("create");
    store
        .job_create(&parked(&witness_path), Utc::now())
        .await
        .expect("create parked");
    let roots = enqueue_many(store, "work", runs).await;
    (witness_path, roots)
}

/// A private cluster, a server on it (taking the `default` queue only), and a store handle.
async fn pg_setup() -> Option<PgSetup> {
    let cluster = PgCluster::start()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Start::server()
        .data_dir(dir.path().join("node"))
        .database_url(Some(&cluster.url()))
        .args(NODE_ARGS)
        .args(["--queues", "default", "--worker-id", "node-a"])
        .start();
    let store = Arc::new(PgStore::connect(&cluster.url(), 2).await.expect("connect"));
    Some(PgSetup {
        cluster,
        store,
        server,
        dir,
    })
}

/// Enqueues `n` runs of `job`; their ids.
async fn enqueue_many(store: &dyn Store, job: &str, n: usize) -> HashSet<ExecutionId> {
    let mut ids = HashSet::new();
    for _ in 0..n {
        let enqueued = store
            .execution_enqueue(&NewExecution::api(job), Utc::now())
            .await
            .expect("enqueue");
        ids.insert(enqueued.execution.id);
    }
    ids
}

/// Each run succeeded once in the store and ended once by the witness; no attempt was lost.
#[track_caller]
fn each_ran_once(all: &[Execution], roots: &HashSet<ExecutionId>, witness_path: &Path) {
    let by_root: HashSet<ExecutionId> = all.iter().map(|e| e.root_id).collect();
    assert_eq!(&by_root, roots, "no run lost, none made up");
    let lost: Vec<&Execution> = all
        .iter()
        .filter(|e| e.status != Status::Succeeded)
        .collect();
    assert!(
        lost.is_empty(),
        "every attempt succeeded, none lost or re-run: {lost:#?}"
    );
    let lines = witness(witness_path);
    let ends = ends_per_run(&lines);
    let starts = starts_per_run(&lines);
    for root in roots {
        let key = root.to_string();
        assert_eq!(ends.get(&key), Some(&1), "run {key} ended once: {lines:?}");
        assert_eq!(starts.get(&key), Some(&1), "run {key} started once");
    }
}

// ---- PostgreSQL stopped for longer than the lease, under load ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_longer_than_the_lease_reruns_nothing_and_answers_503_fast() {
    let Some(PgSetup {
        cluster,
        store,
        server,
        dir,
    }) = pg_setup().await
    else {
        return;
    };
    let (witness_path, roots) = load(&store, dir.path(), 1.5, 24).await;
    wait_until(store.as_ref(), "work", "running", |all| {
        count(all, Status::Running) >= 4
    })
    .await;

    // Down for four lease lengths, with runs going.
    let api = Api::of(&server);
    let stop = Arc::new(AtomicBool::new(false));
    cluster.stop();
    let before = witness(&witness_path).len();
    let down_at = Instant::now();
    let probing = probe(api.clone(), "parked", Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let during = probing.await.expect("probe");
    let after = witness(&witness_path);
    cluster.start_again();
    let back_at = Instant::now();

    let (unavailable, slowest) = only_store_unavailable(&during);
    assert!(unavailable > 0, "the outage was seen: {during:?}");
    let ended_during: Vec<String> = after[before..]
        .iter()
        .filter(|(_, _, _, what)| what == "end")
        .map(|(key, ..)| key.clone())
        .collect();
    assert!(!ended_during.is_empty(), "runs ended during the outage");

    // The store comes back; the first API answer that works.
    let recovered = loop {
        if api.get("/jobs?kind=all").await.status == 200 {
            break back_at.elapsed();
        }
        assert!(back_at.elapsed() < PATIENCE, "the API never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all = wait_until(store.as_ref(), "work", "all ended", |all| {
        all.iter().all(|e| e.status.is_terminal()) && count(all, Status::Succeeded) >= roots.len()
    })
    .await;
    eprintln!(
        "outage of {:?}: {unavailable} answers 503 store_unavailable, the slowest in {slowest:?}; \
         {} runs ended during it; API back {recovered:?} after PostgreSQL",
        back_at - down_at,
        ended_during.len()
    );
    each_ran_once(&all, &roots, &witness_path);
    let log = server.stop();
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("store is unreachable"))
            .count(),
        1,
        "the outage is logged once by the API: {log:#?}"
    );
}

// ---- PostgreSQL restarted under load ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing_and_runs_nothing_twice() {
    let Some(PgSetup {
        cluster,
        store,
        server,
        dir,
    }) = pg_setup().await
    else {
        return;
    };
    let (witness_path, roots) = load(&store, dir.path(), 0.5, 60).await;
    wait_until(store.as_ref(), "work", "running", |all| {
        count(all, Status::Running) >= 4
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let probing = probe(Api::of(&server), "parked", Arc::clone(&stop));
    for _ in 0..2 {
        cluster.stop();
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.start_again();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let answers = probing.await.expect("probe");
    let (unavailable, slowest) = only_store_unavailable(&answers);
    let all = wait_until(store.as_ref(), "work", "all ended", |all| {
        all.iter().all(|e| e.status.is_terminal()) && count(all, Status::Succeeded) >= roots.len()
    })
    .await;
    eprintln!(
        "two restarts: {unavailable} answers 503 store_unavailable, the slowest in {slowest:?}"
    );
    each_ran_once(&all, &roots, &witness_path);
    server.stop();
}

// ---- every panda connection terminated, over and over ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend_termination_storm_loses_nothing_and_answers_only_503() {
    let Some(PgSetup {
        cluster,
        store,
        server,
        dir,
    }) = pg_setup().await
    else {
        return;
    };
    let (witness_path, roots) = load(&store, dir.path(), 0.3, 80).await;
    let stop = Arc::new(AtomicBool::new(false));
    let probing = probe(Api::of(&server), "parked", Arc::clone(&stop));
    let storm_started = Instant::now();
    let mut terminated = 0;
    while storm_started.elapsed() < Duration::from_secs(4) {
        let killed = cluster.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        );
        terminated += killed.trim().parse::<usize>().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let answers = probing.await.expect("probe");
    let (unavailable, _) = only_store_unavailable(&answers);
    let all = wait_until(store.as_ref(), "work", "all ended", |all| {
        all.iter().all(|e| e.status.is_terminal()) && count(all, Status::Succeeded) >= roots.len()
    })
    .await;
    eprintln!(
        "{terminated} backends terminated in 4 s: {} answers, {unavailable} of them 503 store_unavailable",
        answers.len()
    );
    assert!(
        terminated > 20,
        "the storm terminated backends: {terminated}"
    );
    // A claim whose commit was cut off may have been written without its worker hearing of
    // it: that attempt is lost (it never ran) and its run goes on as the next attempt.
    let by_root: HashSet<ExecutionId> = all.iter().map(|e| e.root_id).collect();
    assert_eq!(by_root, roots, "no run lost, none made up");
    let lines = witness(&witness_path);
    let ends = ends_per_run(&lines);
    for root in &roots {
        let key = root.to_string();
        let succeeded = all
            .iter()
            .filter(|e| e.root_id == *root && e.status == Status::Succeeded)
            .count();
        assert_eq!(succeeded, 1, "run {key} succeeded once");
        assert_eq!(
            ends.get(&key),
            Some(&1),
            "run {key} ran to its end once: {lines:?}"
        );
    }
    for e in all.iter().filter(|e| e.status != Status::Succeeded) {
        assert_eq!(e.status, Status::Lost, "{e:#?}");
        let ran = lines.iter().any(|(_, id, ..)| *id == e.id.to_string());
        assert!(!ran, "a lost attempt never ran: {e:#?}");
    }
    server.stop();
}

// ---- SQLite on a full filesystem ----

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where this machine does not let the test mount one.
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("mount point");
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        output.status.success().then(|| Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes `path` until the filesystem has no room left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create the filler");
    let block = vec![0x5a_u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let small = [0x5a_u8; 512];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
}

/// The job of the full-disk case: its first attempt waits for `go`, then fails (so its end is
/// a write of a failure and of the retry it queues, larger than any enqueue); the second
/// succeeds. Each attempt writes the witness at its start and end.
fn gated(witness: &Path, go: &Path) -> JobSpec {
    let line = |what: &str| {
        format!(
            "echo \"$PANDA_IDEMPOTENCY_KEY $PANDA_EXECUTION_ID $PANDA_ATTEMPT {what}\" >> {}",
            witness.display()
        )
    };
    let script = format!(
        "{}; while [ \"$PANDA_ATTEMPT\" = 1 ] && [ ! -e {} ]; do sleep 0.05; done; {}; \
         [ \"$PANDA_ATTEMPT\" = 1 ] && exit 3; exit 0",
        line("start"),
        go.display(),
        line("end")
    );
    let mut spec = job("gated", witness, 0.0);
    spec.runtime = RuntimeSpec::Process {
        argv: vec!["sh".into(), "-c".into(), script],
    };
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_answers_507_and_writes_the_result_once_there_is_space() {
    let outside = tempfile::tempdir().expect("temp dir");
    let Some(tmpfs) = Tmpfs::mount(&outside.path().join("volume"), "16m") else {
        assert!(
            std::env::var("PANDA_REQUIRE_ALL_BACKENDS").as_deref() != Ok("1"),
            "PANDA_REQUIRE_ALL_BACKENDS=1 but a tmpfs cannot be mounted here (the test needs root)"
        );
        eprintln!("skipped: cannot mount a tmpfs (the test needs root)");
        return;
    };
    eprintln!("SQLite's data dir is on a 16 MiB tmpfs");
    let witness_path = outside.path().join("ran.log");
    let go = outside.path().join("go");
    let filler = tmpfs.0.join("filler");
    let server = Start::server()
        .data_dir(tmpfs.0.join("data"))
        .args(NODE_ARGS)
        .args(["--queues", "default"])
        .start();
    let api = Api::of(&server);
    let token = server.admin_token();
    let spec = serde_json::to_value(gated(&witness_path, &go)).expect("spec");
    let parked_spec = serde_json::to_value(parked(&witness_path)).expect("spec");
    for spec in [spec, parked_spec] {
        let answer = api
            .send(api.http.post(format!("{}/jobs", api.base)).json(&spec))
            .await;
        assert_eq!(answer.status, 201, "create a job: {answer:?}");
    }
    let triggered: serde_json::Value = api
        .http
        .post(format!("{}/jobs/gated/executions", api.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("enqueue")
        .json()
        .await
        .expect("the execution");
    let id = triggered["execution"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let started = Instant::now();
    while witness(&witness_path).is_empty() {
        assert!(started.elapsed() < PATIENCE, "the run never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A reader that holds its snapshot (a backup, a long report) keeps the WAL from starting
    // over, so that every write needs new space, which is what a full disk refuses (a WAL that
    // could start over would take writes in the space it already has).
    use sqlx::Connection;
    let db = tmpfs.0.join("data").join("panda.db");
    let mut reader = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("a reader");
    sqlx::query("BEGIN")
        .execute(&mut reader)
        .await
        .expect("begin");
    sqlx::query("SELECT count(*) FROM executions")
        .fetch_one(&mut reader)
        .await
        .expect("a read that holds its snapshot");

    // The volume fills while the run goes on; enqueues work until SQLite needs a page more.
    fill(&filler);
    let mut full = None;
    for _ in 0..5000 {
        let answer = api.enqueue("parked").await;
        if answer.status != 201 {
            full = Some(answer);
            break;
        }
    }
    let full = full.expect("enqueues fail once the disk is full");
    assert_eq!(full.status, 507, "{full:?}");
    assert_eq!(full.code.as_deref(), Some("storage_full"));
    assert!(
        full.hint
            .as_deref()
            .is_some_and(|h| h.contains("free space")),
        "{full:?}"
    );
    for _ in 0..5 {
        assert_eq!(api.enqueue("parked").await.status, 507);
    }
    let cli = server.panda(&["job", "enqueue", "parked"]);
    let said = support::stderr(&cli);
    assert!(!cli.status.success(), "the CLI fails: {said}");
    assert!(
        said.contains("no space left") && said.contains("free space"),
        "{said}"
    );
    assert_eq!(
        said.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{said}"
    );

    // The run ends while the disk is full: its result waits, and says so.
    std::fs::write(&go, "").expect("let the run end");
    let metrics = loop {
        let text = api
            .http
            .get(server.metrics_url())
            .bearer_auth(&token)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        if text.lines().any(|l| l == "panda_finishes_pending 1") {
            break text;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the result never showed as pending: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metrics.contains("panda_finishes_pending 1"), "{metrics}");
    // Several lease lengths pass while it waits; reads still work.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = api.get(&format!("/executions/{id}")).await;
    assert_eq!(still.status, 200, "reads work on a full disk: {still:?}");

    assert!(
        server
            .log()
            .iter()
            .any(|l| l.contains("results wait to be written")),
        "the node's log says a result waits"
    );

    // Space comes back: the result is written, once, and the retry its policy asks for runs.
    std::fs::remove_file(&filler).expect("free the space");
    sqlx::query("COMMIT")
        .execute(&mut reader)
        .await
        .expect("the reader lets go");
    reader.close().await.expect("close the reader");
    let freed_at = Instant::now();
    let runs = loop {
        let runs: Vec<serde_json::Value> = api
            .http
            .get(format!("{}/jobs/gated/executions?limit=10", api.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("list")
            .json::<serde_json::Value>()
            .await
            .expect("json")["executions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ended = |r: &serde_json::Value| r["status"] != "running" && r["status"] != "queued";
        if runs.len() == 2 && runs.iter().all(ended) {
            break runs;
        }
        assert!(
            freed_at.elapsed() < PATIENCE,
            "the result was never written: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // SQLite may find room for a small write on a full disk once its checkpoint lets the WAL
    // start over: the waiting result is then written before space is freed. Either way it is
    // written as soon as the store takes it, as the attempt's own result.
    let written = server
        .log()
        .iter()
        .any(|l| l.contains("results that waited for the store are written"));
    eprintln!(
        "the waiting result was written (the log says so: {written}); all done {:?} after space was freed",
        freed_at.elapsed()
    );
    assert!(
        written,
        "the node's log says the waiting result was written"
    );
    let status_of = |attempt: u64| {
        runs.iter()
            .find(|r| r["attempt"] == attempt)
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        status_of(1).as_deref(),
        Some("failed"),
        "the first attempt's own result, not lost: {runs:#?}"
    );
    assert_eq!(status_of(2).as_deref(), Some("succeeded"), "{runs:#?}");
    assert_eq!(api.enqueue("parked").await.status, 201, "writes work again");
    let lines = witness(&witness_path);
    let attempts: Vec<&str> = lines.iter().map(|(_, _, a, _)| a.as_str()).collect();
    assert_eq!(
        attempts,
        ["1", "1", "2", "2"],
        "each attempt ran once: {lines:?}"
    );
    let log = server.stop();
    assert_eq!(
        log.iter().filter(|l| l.contains("storage is full")).count(),
        1,
        "the full disk is logged once by the API: {log:#?}"
    );
    drop(tmpfs);
}
