//! The runtime conformance suite: every case runs against every runtime, stamped as
//! `<runtime>::<case>`. A case describes its job as a shell script, which each runtime runs its
//! own way (`sh -c` as a local process; in a container, the same through the image's `sh`).
//!
//! Logs go into a real SQLite store; a case reads them back from there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use panda_core::{ExecutionId, JobName, JobSpec, RuntimeSpec};
use panda_runtime::{
    LogConfig, LogSink, ProcessRuntime, RunOutcome, RunReport, RunSpec, Runtime, RuntimeError,
};
use panda_store::testing::TestStore;
use panda_store::{LogChunk, LogStore, LogStream, NewExecution, StoreError, StoreResult};
use tokio_util::sync::CancellationToken;

/// Which runtime a case runs under, where the two differ in what they can observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Process,
    Docker,
}

/// A store with one execution to log into, and the runtime's way of running a script.
struct Kit {
    test: TestStore,
    execution: ExecutionId,
    /// Turns a script into what the runtime runs.
    wrap: fn(&str) -> RuntimeSpec,
    kind: Kind,
}

impl Kit {
    async fn new(wrap: fn(&str) -> RuntimeSpec) -> Self {
        Self::of(Kind::Process, wrap).await
    }

    async fn of(kind: Kind, wrap: fn(&str) -> RuntimeSpec) -> Self {
        let test = panda_store::testing::sqlite().await;
        let spec = JobSpec::new(
            JobName::new("conformance").expect("name"),
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        test.store.job_create(&spec, Utc::now()).await.expect("job");
        let execution = test
            .store
            .execution_enqueue(&NewExecution::api("conformance"), Utc::now())
            .await
            .expect("enqueue")
            .execution
            .id;
        Self {
            test,
            execution,
            wrap,
            kind,
        }
    }

    /// Whether the job left nothing running: the process `pid` (as the job saw it) is gone,
    /// or for a container, no container of this execution exists any more (it is removed in
    /// the background once the run has reported, so within a few seconds).
    async fn nothing_left_behind(&self, pid: u32) -> bool {
        match self.kind {
            Kind::Process => process_is_gone(pid),
            Kind::Docker => docker::containers_gone(self.execution).await,
        }
    }

    /// For a container, whether it is gone (removed in the background after the run); a
    /// process leaves no such thing.
    async fn container_removed(&self) -> bool {
        match self.kind {
            Kind::Process => true,
            Kind::Docker => docker::containers_gone(self.execution).await,
        }
    }

    fn spec(&self, script: &str) -> RunSpec {
        RunSpec {
            execution_id: self.execution,
            runtime: (self.wrap)(script),
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            workdir: None,
            limits: panda_core::Limits::default(),
            timeout: Some(Duration::from_secs(60)),
            stop_signal: panda_core::StopSignal::TERM,
            kill_grace: Duration::from_secs(2),
            kill: CancellationToken::new(),
        }
    }

    fn sink(&self, config: LogConfig, spec: &RunSpec) -> LogSink {
        LogSink::new(
            Arc::clone(&self.test.store) as Arc<dyn LogStore>,
            self.execution,
            config,
            spec.secret_env.values(),
        )
    }

    async fn run_with(
        &self,
        runtime: &dyn Runtime,
        spec: &RunSpec,
        config: LogConfig,
    ) -> Result<RunReport, RuntimeError> {
        let sink = self.sink(config, spec);
        let result = tokio::time::timeout(
            Duration::from_secs(120),
            runtime.run(spec, sink, CancellationToken::new()),
        )
        .await
        .expect("the run ends (hang guard)");
        // Removed in the background once the run has reported: soon, and before the test's
        // runtime (and with it that task) ends.
        assert!(
            self.container_removed().await,
            "the run's container is removed"
        );
        result
    }

    async fn run(&self, runtime: &dyn Runtime, spec: &RunSpec) -> RunReport {
        self.run_with(runtime, spec, LogConfig::default())
            .await
            .expect("the run starts")
    }

    /// Every stored chunk, in order.
    async fn chunks(&self) -> Vec<LogChunk> {
        let mut all: Vec<LogChunk> = Vec::new();
        loop {
            let after = all.last().map(|c| c.seq);
            let page = self
                .test
                .store
                .log_read(self.execution, after, 1000)
                .await
                .expect("read logs");
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }

    /// The stored output of one stream, as text.
    async fn output(&self, stream: LogStream) -> String {
        let bytes: Vec<u8> = self
            .chunks()
            .await
            .into_iter()
            .filter(|c| c.stream == stream)
            .flat_map(|c| c.data)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Whether a live process on this machine (a container's too) runs `sleep LENGTH`.
fn sleeping(length: &str) -> bool {
    let wanted = format!("sleep\0{length}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .any(|entry| {
            let path = entry.path();
            std::fs::read(path.join("cmdline")).is_ok_and(|c| c.ends_with(wanted.as_bytes()))
                && !process_is_gone(
                    entry
                        .file_name()
                        .to_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                )
        })
}

/// Whether a process is gone (or a zombie nobody reaps, which runs nothing).
fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The `panda` binary of this build (`target/<profile>/panda`, beside `deps/` where this test
/// runs), if it has been built.
fn panda_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let panda = exe.parent()?.parent()?.join("panda");
    if panda.is_file() {
        Some(panda)
    } else {
        eprintln!(
            "skipped: no panda binary at {} to supervise with (cargo build -p panda)",
            panda.display()
        );
        None
    }
}

macro_rules! runtimes {
    ($($case:ident),* $(,)?) => {
        /// Local processes: the script runs as `sh -c SCRIPT`.
        mod process {
            use super::*;
            fn wrap(script: &str) -> RuntimeSpec {
                RuntimeSpec::Process {
                    argv: vec!["sh".into(), "-c".into(), script.into()],
                }
            }
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let kit = Kit::of(Kind::Process, wrap).await;
                    super::$case(&ProcessRuntime::default(), &kit).await;
                    kit.test.close().await;
                }
            )*
        }

        /// Local processes under the supervisor of the `panda` binary built beside these tests
        /// (`panda __supervise`), as a server runs them; skipped with a reason when that binary
        /// has not been built (`cargo build -p panda`).
        mod supervised_process {
            use super::*;
            fn wrap(script: &str) -> RuntimeSpec {
                RuntimeSpec::Process {
                    argv: vec!["sh".into(), "-c".into(), script.into()],
                }
            }
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(panda) = super::panda_binary() else {
                        return;
                    };
                    let kit = Kit::of(Kind::Process, wrap).await;
                    super::$case(&ProcessRuntime::supervised(panda), &kit).await;
                    kit.test.close().await;
                }
            )*
        }

        /// Containers on the real engine: the script runs as `sh -c SCRIPT` in a busybox image
        /// built for the tests.
        mod docker_runtime {
            use super::*;
            fn wrap(script: &str) -> RuntimeSpec {
                RuntimeSpec::Image {
                    image: docker::TEST_IMAGE.into(),
                    command: Some(vec!["sh".into(), "-c".into(), script.into()]),
                }
            }
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(runtime) = docker::runtime().await else { return };
                    let _shared = docker::LOCK.read().await;
                    let kit = Kit::of(Kind::Docker, wrap).await;
                    super::$case(&runtime, &kit).await;
                    kit.test.close().await;
                }
            )*
        }
    };
}

runtimes! {
    success_is_succeeded_and_its_output_is_stored,
    a_non_zero_exit_is_failed_with_its_code,
    stdout_and_stderr_are_told_apart_and_kept_in_order,
    env_is_clean_plus_the_jobs_and_workdir_is_honoured,
    secret_values_are_masked_in_the_logs,
    a_secret_across_a_cut_at_the_line_bound_is_masked,
    a_secret_over_several_lines_and_reads_is_masked,
    a_partial_last_line_is_kept,
    an_over_long_line_is_split_at_the_bound,
    output_over_the_cap_is_cut_exactly_at_the_cap_with_a_marker,
    a_hundred_megabytes_arrive_complete_under_a_raised_cap,
    timeout_kills_the_job_and_everything_it_started,
    a_background_process_is_not_left_behind_when_the_job_exits,
    a_job_that_waits_for_its_own_background_process_finishes,
    cancel_stops_the_job_as_cancelled,
    live_followers_see_the_output_as_it_comes,
    a_command_probe_runs_beside_the_job_with_its_environment,
    a_command_probe_that_outlives_its_timeout_fails_and_is_killed,
    an_http_probe_is_healthy_on_2xx_and_3xx_only,
    a_service_is_stopped_with_its_own_signal_before_the_kill,
    a_kill_ends_the_run_at_once_without_the_stop_grace,
    a_job_starts_with_no_signal_blocked,
}

/// Beside `a_job_that_waits_for_its_own_background_process_finishes`: the form of `wait` that
/// hung under the old supervisor whatever the timing (dash, after a command substitution,
/// waits for a SIGCHLD that a blocked mask holds back).
async fn a_job_starts_with_no_signal_blocked(runtime: &dyn Runtime, kit: &Kit) {
    let script = "x=$(true); sleep 0.1 & wait $!; echo waited";
    let mut spec = kit.spec(script);
    spec.timeout = Some(Duration::from_secs(10));
    let report = kit.run(runtime, &spec).await;
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(kit.output(LogStream::Stdout).await, "waited\n");
}

async fn success_is_succeeded_and_its_output_is_stored(runtime: &dyn Runtime, kit: &Kit) {
    let report = kit.run(runtime, &kit.spec("echo hello; echo world")).await;
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(kit.output(LogStream::Stdout).await, "hello\nworld\n");
}

async fn a_non_zero_exit_is_failed_with_its_code(runtime: &dyn Runtime, kit: &Kit) {
    let report = kit
        .run(runtime, &kit.spec("echo about to fail; exit 3"))
        .await;
    assert_eq!(report.outcome, RunOutcome::Failed { exit_code: 3 });
    assert_eq!(kit.output(LogStream::Stdout).await, "about to fail\n");
}

async fn stdout_and_stderr_are_told_apart_and_kept_in_order(runtime: &dyn Runtime, kit: &Kit) {
    let script = "echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo out2; sleep 0.1; \
                  echo err2 >&2";
    kit.run(runtime, &kit.spec(script)).await;
    let lines: Vec<(LogStream, String)> = kit
        .chunks()
        .await
        .into_iter()
        .map(|c| (c.stream, String::from_utf8_lossy(&c.data).into_owned()))
        .collect();
    assert_eq!(
        lines,
        [
            (LogStream::Stdout, "out1\n".to_owned()),
            (LogStream::Stderr, "err1\n".to_owned()),
            (LogStream::Stdout, "out2\n".to_owned()),
            (LogStream::Stderr, "err2\n".to_owned()),
        ]
    );
}

async fn env_is_clean_plus_the_jobs_and_workdir_is_honoured(runtime: &dyn Runtime, kit: &Kit) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = kit.spec("echo \"$GREETING|${HOME:-unset}|$PATH|$(pwd)\"");
    spec.env.insert("GREETING".into(), "hi there".into());
    // A container has its own file system: the engine makes the directory there.
    let (workdir, home) = match kit.kind {
        Kind::Process => (
            dir.path()
                .canonicalize()
                .expect("canonical")
                .display()
                .to_string(),
            "unset",
        ),
        Kind::Docker => ("/srv/work".to_owned(), "/"),
    };
    spec.workdir = Some(workdir.clone());
    let report = kit.run(runtime, &spec).await;
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(
        kit.output(LogStream::Stdout).await,
        format!(
            "hi there|{home}|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|{workdir}\n"
        ),
        "the server's own environment (its HOME, its PATH) does not leak in"
    );
}

async fn secret_values_are_masked_in_the_logs(runtime: &dyn Runtime, kit: &Kit) {
    let mut spec = kit.spec("echo \"token=$API_TOKEN\"; echo \"$API_TOKEN\" >&2");
    spec.secret_env
        .insert("API_TOKEN".into(), "s3cr3t-value".into());
    kit.run(runtime, &spec).await;
    assert_eq!(kit.output(LogStream::Stdout).await, "token=****\n");
    assert_eq!(kit.output(LogStream::Stderr).await, "****\n");
}

async fn a_secret_across_a_cut_at_the_line_bound_is_masked(runtime: &dyn Runtime, kit: &Kit) {
    // A 16-byte secret starting at byte 2 of a line cut every 8 bytes: it spans three pieces.
    let mut spec = kit.spec("printf 'ab%scd\\n' \"$API_TOKEN\"");
    spec.secret_env
        .insert("API_TOKEN".into(), "supersecretvalue".into());
    let config = LogConfig {
        max_line: 8,
        ..LogConfig::default()
    };
    kit.run_with(runtime, &spec, config).await.expect("runs");
    let chunks: Vec<String> = kit
        .chunks()
        .await
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.data).into_owned())
        .collect();
    assert_eq!(chunks.concat(), "ab****cd\n", "{chunks:?}");
}

async fn a_secret_over_several_lines_and_reads_is_masked(runtime: &dyn Runtime, kit: &Kit) {
    // Written in two reads, a line at a time, with a pause between.
    let mut spec = kit.spec("echo before; echo BEGIN-KEY; sleep 0.3; echo END-KEY; echo after");
    spec.secret_env
        .insert("PRIVATE_KEY".into(), "BEGIN-KEY\nEND-KEY".into());
    kit.run(runtime, &spec).await;
    assert_eq!(kit.output(LogStream::Stdout).await, "before\n****\nafter\n");
}

async fn a_partial_last_line_is_kept(runtime: &dyn Runtime, kit: &Kit) {
    kit.run(runtime, &kit.spec("printf 'one\\ntwo'")).await;
    assert_eq!(kit.output(LogStream::Stdout).await, "one\ntwo");
}

async fn an_over_long_line_is_split_at_the_bound(runtime: &dyn Runtime, kit: &Kit) {
    let spec = kit.spec("printf '%s\\n' abcdefghijklmnopqrstuvwxy");
    let config = LogConfig {
        max_line: 10,
        ..LogConfig::default()
    };
    kit.run_with(runtime, &spec, config).await.expect("runs");
    let chunks: Vec<String> = kit
        .chunks()
        .await
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.data).into_owned())
        .collect();
    assert_eq!(chunks.concat(), "abcdefghijklmnopqrstuvwxy\n");
    assert!(chunks.iter().all(|c| c.len() <= 10), "{chunks:?}");
}

async fn output_over_the_cap_is_cut_exactly_at_the_cap_with_a_marker(
    runtime: &dyn Runtime,
    kit: &Kit,
) {
    // 5,000 lines of 10 bytes on stdout; a cap of 1,234 bytes.
    let spec = kit.spec("i=0; while [ $i -lt 5000 ]; do echo 123456789; i=$((i+1)); done");
    let config = LogConfig {
        cap_bytes: 1234,
        ..LogConfig::default()
    };
    let report = kit.run_with(runtime, &spec, config).await.expect("runs");
    assert_eq!(
        report.outcome,
        RunOutcome::Succeeded,
        "the job is not stopped"
    );
    let stdout = kit.output(LogStream::Stdout).await;
    assert_eq!(stdout.len(), 1234);
    assert_eq!(stdout, "123456789\n".repeat(124)[..1234]);
    let system = kit.output(LogStream::System).await;
    assert!(
        system.contains("output truncated at the cap of 1234 bytes"),
        "{system}"
    );
    assert!(
        system.contains(&format!(
            "{} more bytes of output were discarded",
            50_000 - 1234
        )),
        "{system}"
    );
}

async fn a_hundred_megabytes_arrive_complete_under_a_raised_cap(runtime: &dyn Runtime, kit: &Kit) {
    // 100,000,000 bytes: 1,000,000 lines of 99 characters and a newline.
    let spec = kit.spec(
        "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 \
         | head -n 1000000",
    );
    let config = LogConfig {
        cap_bytes: 200_000_000,
        ..LogConfig::default()
    };
    let report = kit.run_with(runtime, &spec, config).await.expect("runs");
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    let chunks = kit.chunks().await;
    let total: usize = chunks
        .iter()
        .filter(|c| c.stream == LogStream::Stdout)
        .map(|c| c.data.len())
        .sum();
    assert_eq!(total, 100_000_000);
    assert!(
        chunks.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "no gap"
    );
    assert!(
        chunks.iter().all(|c| c.stream != LogStream::System),
        "nothing truncated"
    );
}

async fn timeout_kills_the_job_and_everything_it_started(runtime: &dyn Runtime, kit: &Kit) {
    let mut spec = kit.spec("sleep 1000 & echo $!; sleep 1000");
    spec.timeout = Some(Duration::from_millis(500));
    spec.kill_grace = Duration::from_millis(500);
    let report = kit.run(runtime, &spec).await;
    assert_eq!(report.outcome, RunOutcome::TimedOut);
    let stdout = kit.output(LogStream::Stdout).await;
    let background: u32 = stdout.trim().parse().expect("the background pid");
    assert!(
        kit.nothing_left_behind(background).await,
        "pid {background} is still running"
    );
    let system = kit.output(LogStream::System).await;
    assert!(system.contains("timed out after"), "{system}");
}

/// A shell's `wait` needs SIGCHLD: a job started with it blocked would hang here.
async fn a_job_that_waits_for_its_own_background_process_finishes(
    runtime: &dyn Runtime,
    kit: &Kit,
) {
    let report = kit
        .run(
            runtime,
            &kit.spec("sleep 0.1 & wait $!; sleep 0.1 & wait $!; echo done"),
        )
        .await;
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    assert_eq!(kit.output(LogStream::Stdout).await.trim(), "done");
}

async fn a_background_process_is_not_left_behind_when_the_job_exits(
    runtime: &dyn Runtime,
    kit: &Kit,
) {
    let report = kit.run(runtime, &kit.spec("sleep 1000 & echo $!")).await;
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    let background: u32 = kit
        .output(LogStream::Stdout)
        .await
        .trim()
        .parse()
        .expect("the background pid");
    assert!(
        kit.nothing_left_behind(background).await,
        "pid {background} is still running"
    );
}

async fn cancel_stops_the_job_as_cancelled(runtime: &dyn Runtime, kit: &Kit) {
    let spec = kit.spec("echo started; sleep 1000");
    let sink = kit.sink(LogConfig::default(), &spec);
    let cancel = CancellationToken::new();
    let mut follow = sink.subscribe();
    let run = runtime.run(&spec, sink, cancel.clone());
    let cancel_once_started = async {
        // Cancel once the job has visibly started.
        let chunk = follow.recv().await.expect("a first chunk");
        assert_eq!(chunk.data, b"started\n");
        cancel.cancel();
    };
    let (report, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(run, cancel_once_started)
    })
    .await
    .expect("the run ends (hang guard)");
    assert_eq!(report.expect("runs").outcome, RunOutcome::Cancelled);
    assert!(
        kit.container_removed().await,
        "the cancelled container is removed"
    );
}

/// Runs `spec` until its first output, then `during` beside it, then cancels it; returns
/// what `during` returned and the run's report.
async fn while_running<T>(
    runtime: &dyn Runtime,
    kit: &Kit,
    spec: &RunSpec,
    during: impl std::future::Future<Output = T>,
) -> (T, RunReport) {
    let sink = kit.sink(LogConfig::default(), spec);
    let cancel = CancellationToken::new();
    let mut follow = sink.subscribe();
    let run = runtime.run(spec, sink, cancel.clone());
    let beside = async {
        follow.recv().await.expect("a first chunk");
        let result = during.await;
        cancel.cancel();
        result
    };
    let (report, result) =
        tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(run, beside) })
            .await
            .expect("the run ends (hang guard)");
    (result, report.expect("runs"))
}

async fn a_command_probe_runs_beside_the_job_with_its_environment(
    runtime: &dyn Runtime,
    kit: &Kit,
) {
    let mut spec = kit.spec("echo started; sleep 1000");
    spec.env.insert("PROBE_WANTS".into(), "ready".into());
    let probe = |command: &str| panda_core::Probe::Command {
        command: command.to_owned(),
    };
    let timeout = Duration::from_secs(20);
    let ((healthy, failing), report) = while_running(runtime, kit, &spec, async {
        let healthy = runtime
            .probe(&spec, &probe("test \"$PROBE_WANTS\" = ready"), timeout)
            .await;
        let failing = runtime
            .probe(&spec, &probe("echo not yet >&2; exit 3"), timeout)
            .await;
        (healthy, failing)
    })
    .await;
    assert_eq!(healthy, Ok(()));
    let failing = failing.expect_err("exit 3 is unhealthy");
    assert!(
        failing.contains("code 3") && failing.contains("not yet"),
        "{failing}"
    );
    assert_eq!(report.outcome, RunOutcome::Cancelled);
}

async fn a_command_probe_that_outlives_its_timeout_fails_and_is_killed(
    runtime: &dyn Runtime,
    kit: &Kit,
) {
    let spec = kit.spec("echo started; sleep 1000");
    // A length no other test sleeps, to find the probe's process by.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let length = format!("30.{nanos:09}");
    let probe = panda_core::Probe::Command {
        command: format!("sleep {length}"),
    };
    let started = std::time::Instant::now();
    let (result, _) = while_running(runtime, kit, &spec, async {
        let result = runtime
            .probe(&spec, &probe, Duration::from_millis(500))
            .await;
        // Killed while the job itself goes on.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sleeping(&length) {
            assert!(
                std::time::Instant::now() < deadline,
                "the probe's `sleep {length}` still runs"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        result
    })
    .await;
    let err = result.expect_err("a probe past its timeout is unhealthy");
    assert!(err.contains("did not end within"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the probe was not waited for to its end"
    );
}

async fn an_http_probe_is_healthy_on_2xx_and_3xx_only(runtime: &dyn Runtime, kit: &Kit) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    // Answers each request with the status its path names: GET /204 gets 204.
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = vec![0u8; 1024];
            let n = socket.read(&mut request).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            let status = request
                .split_whitespace()
                .nth(1)
                .and_then(|path| path.trim_start_matches('/').parse::<u16>().ok())
                .unwrap_or(404);
            if status == 999 {
                // Never answers.
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
            let answer = format!(
                "HTTP/1.1 {status} X\r\nlocation: /200\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let spec = kit.spec("true");
    let probe = |status: u16| panda_core::Probe::Http {
        url: format!("http://{address}/{status}"),
    };
    let timeout = Duration::from_secs(5);
    for healthy in [200, 204, 302] {
        assert_eq!(
            runtime.probe(&spec, &probe(healthy), timeout).await,
            Ok(()),
            "{healthy} is healthy"
        );
    }
    let err = runtime
        .probe(&spec, &probe(503), timeout)
        .await
        .expect_err("503 is unhealthy");
    assert!(err.contains("503"), "{err}");
    let err = runtime
        .probe(&spec, &probe(999), Duration::from_millis(300))
        .await
        .expect_err("no answer is unhealthy");
    assert!(err.contains("did not answer within"), "{err}");
    server.abort();
    let closed = panda_core::Probe::Http {
        url: "http://127.0.0.1:9/".into(),
    };
    assert!(runtime.probe(&spec, &closed, timeout).await.is_err());
}

async fn a_service_is_stopped_with_its_own_signal_before_the_kill(
    runtime: &dyn Runtime,
    kit: &Kit,
) {
    let mut spec =
        kit.spec("trap 'echo got USR1; exit 0' USR1; echo started; while true; do sleep 0.1; done");
    spec.timeout = None;
    spec.stop_signal = "SIGUSR1".parse().expect("a signal");
    spec.kill_grace = Duration::from_secs(20);
    let started = std::time::Instant::now();
    let ((), report) = while_running(runtime, kit, &spec, async {}).await;
    assert_eq!(report.outcome, RunOutcome::Cancelled);
    let stdout = kit.output(LogStream::Stdout).await;
    assert!(stdout.contains("got USR1"), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it ended on the signal, not at the kill"
    );
    let system = kit.output(LogStream::System).await;
    assert!(system.contains("SIGUSR1"), "{system}");
}

async fn a_kill_ends_the_run_at_once_without_the_stop_grace(runtime: &dyn Runtime, kit: &Kit) {
    let mut spec = kit.spec("trap '' TERM; echo started; while true; do sleep 0.1; done");
    spec.timeout = None;
    spec.kill_grace = Duration::from_secs(60);
    let sink = kit.sink(LogConfig::default(), &spec);
    let mut follow = sink.subscribe();
    let run = runtime.run(&spec, sink, CancellationToken::new());
    let started = std::time::Instant::now();
    let kill = async {
        follow.recv().await.expect("a first chunk");
        spec.kill.cancel();
    };
    let (report, ()) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(run, kill) })
            .await
            .expect("the kill ends the run well before the grace (hang guard)");
    assert_eq!(report.expect("runs").outcome, RunOutcome::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(30));
}

async fn live_followers_see_the_output_as_it_comes(runtime: &dyn Runtime, kit: &Kit) {
    let spec = kit.spec("for i in 1 2 3; do echo line $i; sleep 0.05; done");
    let sink = kit.sink(LogConfig::default(), &spec);
    let mut follow = sink.subscribe();
    let report = runtime
        .run(&spec, sink, CancellationToken::new())
        .await
        .expect("runs");
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    let mut seen = Vec::new();
    while let Ok(chunk) = follow.try_recv() {
        seen.push(String::from_utf8_lossy(&chunk.data).into_owned());
    }
    assert_eq!(seen, ["line 1\n", "line 2\n", "line 3\n"]);
    assert!(kit.container_removed().await, "the container is removed");
}

// ---- errors, which need no script ----

#[tokio::test]
async fn process_a_missing_program_is_a_permanent_error_naming_it() {
    let kit = Kit::new(|_| RuntimeSpec::Process {
        argv: vec!["/nonexistent/panda-no-such-program".into()],
    })
    .await;
    let spec = kit.spec("");
    let err = kit
        .run_with(&ProcessRuntime::default(), &spec, LogConfig::default())
        .await
        .expect_err("cannot start");
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains("/nonexistent/panda-no-such-program") && message.contains("No such file"),
        "{message}"
    );
    kit.test.close().await;
}

#[tokio::test]
async fn process_an_image_job_is_a_permanent_error() {
    let kit = Kit::new(|_| RuntimeSpec::Image {
        image: "busybox".into(),
        command: None,
    })
    .await;
    let err = kit
        .run_with(
            &ProcessRuntime::default(),
            &kit.spec(""),
            LogConfig::default(),
        )
        .await
        .expect_err("not a process");
    assert!(!err.is_transient(), "{err}");
    kit.test.close().await;
}

// ---- what only the process runtime can get wrong ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_a_descendant_that_leaves_the_group_does_not_hold_the_run_open() {
    let kit = Kit::new(|script| RuntimeSpec::Process {
        argv: vec!["sh".into(), "-c".into(), script.into()],
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("escaped.pid");
    // The descendant starts a session of its own (out of reach of the group kill) and keeps
    // the output pipes open for 60 s.
    let script = format!(
        "setsid sh -c 'echo $$ > {pid}; exec sleep 60' & \
         while [ ! -s {pid} ]; do sleep 0.01; done; echo started",
        pid = pid_file.display()
    );
    let started = std::time::Instant::now();
    let report = kit
        .run(&ProcessRuntime::default(), &kit.spec(&script))
        .await;
    let took = started.elapsed();
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    assert_eq!(
        report.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        kit.chunks().await
    );
    assert!(
        took < Duration::from_secs(30),
        "the run ended without waiting for the escaped sleep 60: {took:?}"
    );
    assert_eq!(kit.output(LogStream::Stdout).await, "started\n");
    let system = kit.output(LogStream::System).await;
    assert!(
        system.contains("setsid"),
        "the log says why output stopped ({took:?}): {system}"
    );
    kit.test.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_log_sink_dropped_without_finish_stops_its_flusher_and_keeps_its_lines() {
    let kit = Kit::new(|_| RuntimeSpec::Process { argv: vec![] }).await;
    let (dropped, flusher_ended) = tokio::sync::oneshot::channel();
    // Only the sink's flusher holds this store, so it is dropped when the flusher ends.
    let store = Arc::new(HeldLogs {
        inner: Arc::clone(&kit.test.store) as Arc<dyn LogStore>,
        dropped: Some(dropped),
    });
    let held = Arc::downgrade(&store);
    let config = LogConfig {
        flush_every: Duration::from_millis(20),
        ..LogConfig::default()
    };
    let sink = LogSink::new(store, kit.execution, config, []);
    assert!(held.upgrade().is_some(), "the flusher runs");
    sink.write(LogStream::Stdout, b"kept\n");
    drop(sink);
    tokio::time::timeout(Duration::from_secs(10), flusher_ended)
        .await
        .expect("the flusher ended (hang guard)")
        .expect("the store said it was dropped");
    assert_eq!(kit.output(LogStream::Stdout).await, "kept\n");
    kit.test.close().await;
}

/// A log store that says when it is dropped: when whoever held it last is gone.
struct HeldLogs {
    inner: Arc<dyn LogStore>,
    dropped: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for HeldLogs {
    fn drop(&mut self) {
        if let Some(dropped) = self.dropped.take() {
            let _ = dropped.send(());
        }
    }
}

#[async_trait::async_trait]
impl LogStore for HeldLogs {
    async fn log_append(&self, execution: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()> {
        self.inner.log_append(execution, chunks).await
    }

    async fn log_read(
        &self,
        execution: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<LogChunk>> {
        self.inner.log_read(execution, after, limit).await
    }

    async fn log_tail(&self, execution: ExecutionId, lines: u32) -> StoreResult<Vec<LogChunk>> {
        self.inner.log_tail(execution, lines).await
    }
}

/// A log store every write to fails, as a broken disk would make it.
struct FailingLogs;

#[async_trait::async_trait]
impl LogStore for FailingLogs {
    async fn log_append(&self, _: ExecutionId, _: &[LogChunk]) -> StoreResult<()> {
        Err(StoreError::Unavailable("the disk is gone".into()))
    }

    async fn log_read(&self, _: ExecutionId, _: Option<u64>, _: u32) -> StoreResult<Vec<LogChunk>> {
        Ok(Vec::new())
    }

    async fn log_tail(&self, _: ExecutionId, _: u32) -> StoreResult<Vec<LogChunk>> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_store_failure_is_reported_beside_the_outcome_not_instead_of_it() {
    let kit = Kit::new(|script| RuntimeSpec::Process {
        argv: vec!["sh".into(), "-c".into(), script.into()],
    })
    .await;
    let config = LogConfig {
        store_patience: Duration::from_millis(300),
        ..LogConfig::default()
    };
    let spec = kit.spec("echo lost; exit 4");
    let sink = LogSink::new(Arc::new(FailingLogs), kit.execution, config, []);
    let report = ProcessRuntime::default()
        .run(&spec, sink, CancellationToken::new())
        .await
        .expect("the run itself ran");
    assert_eq!(report.outcome, RunOutcome::Failed { exit_code: 4 });
    let error = report.log_error.expect("the log failure is reported");
    assert!(error.contains("the disk is gone"), "{error}");
    kit.test.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_an_execution_appends_after_the_first_runs_output() {
    let kit = Kit::new(|script| RuntimeSpec::Process {
        argv: vec!["sh".into(), "-c".into(), script.into()],
    })
    .await;
    kit.run(&ProcessRuntime::default(), &kit.spec("echo first"))
        .await;
    let last = kit.chunks().await.last().map(|c| c.seq).expect("a chunk");
    let spec = kit.spec("echo second");
    let sink = kit.sink(LogConfig::default(), &spec).starting_at(last + 1);
    ProcessRuntime::default()
        .run(&spec, sink, CancellationToken::new())
        .await
        .expect("runs");
    assert_eq!(kit.output(LogStream::Stdout).await, "first\nsecond\n");
    kit.test.close().await;
}

// ---- Docker: the test image, and what only a container runtime has ----

mod docker {
    use std::collections::HashMap;

    use bollard::Docker;
    use bollard::query_parameters::{CreateContainerOptionsBuilder, ListContainersOptionsBuilder};
    use panda_core::ExecutionId;
    use panda_runtime::{DockerRuntime, EXECUTION_LABEL, NODE_LABEL, PullPolicy};
    use tokio::sync::{OnceCell, RwLock};

    /// A busybox image built from Debian's static busybox; nothing can be pulled here.
    pub const TEST_IMAGE: &str = "panda-test/busybox:latest";

    /// Cases hold it shared; the reaping case, which removes every Panda container on the
    /// engine, holds it alone.
    pub static LOCK: RwLock<()> = RwLock::const_new(());

    static BUILT: OnceCell<()> = OnceCell::const_new();

    async fn engine() -> Docker {
        Docker::connect_with_local_defaults()
            .expect("the local Docker socket")
            .negotiate_version()
            .await
            .expect("the Docker engine answers")
    }

    /// The runtime, with the test image built; `None` (with the reason printed) when there is
    /// no engine here, and a failure when all backends are required.
    pub async fn runtime() -> Option<DockerRuntime> {
        match DockerRuntime::connect().await {
            Ok(runtime) => {
                BUILT
                    .get_or_init(|| async {
                        runtime
                            .build_busybox_image(TEST_IMAGE, std::path::Path::new("/bin/busybox"))
                            .await
                            .expect("build the test image (apt-get install busybox-static)");
                    })
                    .await;
                Some(runtime.with_pull_policy(PullPolicy::Never))
            }
            Err(err) if std::env::var("PANDA_REQUIRE_ALL_BACKENDS").as_deref() == Ok("1") => {
                panic!("PANDA_REQUIRE_ALL_BACKENDS=1 but Docker is not available: {err}")
            }
            Err(err) => {
                eprintln!("skipped: Docker is not available: {err}");
                None
            }
        }
    }

    /// Whether every container of an execution is gone within 10 s.
    pub async fn containers_gone(execution: ExecutionId) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if containers_of(execution).await.is_empty() {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The containers of an execution that still exist.
    pub async fn containers_of(execution: ExecutionId) -> Vec<String> {
        let label = format!("{EXECUTION_LABEL}={execution}");
        let filters = HashMap::from([("label", vec![label.as_str()])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        engine()
            .await
            .list_containers(Some(options))
            .await
            .expect("list containers")
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    }

    #[tokio::test]
    async fn an_image_that_is_not_there_is_a_permanent_error_with_the_engines_message() {
        let Some(runtime) = runtime().await else {
            return;
        };
        let _shared = LOCK.read().await;
        let kit = super::Kit::of(super::Kind::Docker, |_| panda_core::RuntimeSpec::Image {
            image: "panda-test/no-such-image:latest".into(),
            command: None,
        })
        .await;
        let err = kit
            .run_with(&runtime, &kit.spec(""), panda_runtime::LogConfig::default())
            .await
            .expect_err("no such image");
        assert!(!err.is_transient(), "{err}");
        assert!(err.to_string().contains("No such image"), "{err}");
        kit.test.close().await;
    }

    /// A 200 MB buffer, filled, far over the cases' 32 MiB, a second after the start: the
    /// engine watches a container for OOM kills only once it has started it, so a process
    /// killed in its first milliseconds may be reported as a plain SIGKILL (docs: limits).
    fn over_the_limit() -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            "sleep 1; exec dd if=/dev/zero of=/dev/null bs=200M count=1".into(),
        ]
    }

    /// The engine's `OOMKilled` flag stays false when its OOM event comes after the exit, which
    /// happens when many containers are killed at once (5 of 30 here, with `docker run`
    /// alone): each is reported OOM-killed all the same, from the engine's log of events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn containers_oom_killed_together_are_each_reported_oom_killed() {
        let Some(runtime) = runtime().await else {
            return;
        };
        let _shared = LOCK.read().await;
        let mut kits = Vec::new();
        for _ in 0..16 {
            kits.push(
                super::Kit::of(super::Kind::Docker, |_| panda_core::RuntimeSpec::Image {
                    image: TEST_IMAGE.into(),
                    command: Some(over_the_limit()),
                })
                .await,
            );
        }
        let outcomes = futures::future::join_all(kits.iter().map(|kit| {
            let runtime = &runtime;
            async move {
                let mut spec = kit.spec("");
                spec.limits.memory_bytes = Some(32 * 1024 * 1024);
                kit.run(runtime, &spec).await.outcome
            }
        }))
        .await;
        assert!(
            outcomes
                .iter()
                .all(|o| *o == panda_runtime::RunOutcome::OomKilled),
            "{outcomes:?}"
        );
        for kit in kits {
            kit.test.close().await;
        }
    }

    #[tokio::test]
    async fn a_container_over_its_memory_limit_is_oom_killed() {
        let Some(runtime) = runtime().await else {
            return;
        };
        let _shared = LOCK.read().await;
        let kit = super::Kit::of(super::Kind::Docker, |_| panda_core::RuntimeSpec::Image {
            image: TEST_IMAGE.into(),
            command: Some(over_the_limit()),
        })
        .await;
        let mut spec = kit.spec("");
        spec.limits.memory_bytes = Some(32 * 1024 * 1024);
        let report = kit.run(&runtime, &spec).await;
        assert_eq!(report.outcome, panda_runtime::RunOutcome::OomKilled);
        assert!(
            report
                .image_digest
                .is_some_and(|d| d.starts_with("sha256:")),
            "the image that ran is recorded"
        );
        let system = kit.output(panda_store::LogStream::System).await;
        assert!(system.contains("OOMKilled"), "{system}");
        kit.test.close().await;
    }

    #[tokio::test]
    async fn a_container_an_earlier_run_of_the_execution_left_is_replaced() {
        let Some(runtime) = runtime().await else {
            return;
        };
        let _shared = LOCK.read().await;
        let kit = super::Kit::of(super::Kind::Docker, |script| {
            panda_core::RuntimeSpec::Image {
                image: TEST_IMAGE.into(),
                command: Some(vec!["sh".into(), "-c".into(), script.into()]),
            }
        })
        .await;
        // What a run given up during its start leaves: a container under the execution's name.
        let body = bollard::models::ContainerCreateBody {
            image: Some(TEST_IMAGE.into()),
            cmd: Some(vec!["sleep".into(), "1000".into()]),
            labels: Some(HashMap::from([(
                EXECUTION_LABEL.to_owned(),
                kit.execution.to_string(),
            )])),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&format!("panda-{}", kit.execution))
            .build();
        engine()
            .await
            .create_container(Some(options), body)
            .await
            .expect("create the leftover");
        let report = kit.run(&runtime, &kit.spec("echo again")).await;
        assert_eq!(report.outcome, panda_runtime::RunOutcome::Succeeded);
        assert_eq!(kit.output(panda_store::LogStream::Stdout).await, "again\n");
        assert!(containers_gone(kit.execution).await, "both are gone");
        kit.test.close().await;
    }

    #[tokio::test]
    async fn an_unreachable_engine_is_a_transient_error() {
        // A local port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let err = DockerRuntime::connect_to(&format!("tcp://127.0.0.1:{port}"))
            .await
            .expect_err("nothing listens there");
        assert!(err.is_transient(), "{err}");
    }

    #[tokio::test]
    async fn containers_this_node_left_behind_are_reaped_and_other_nodes_kept() {
        let Some(runtime) = runtime().await else {
            return;
        };
        let runtime = runtime.with_node("reaper-test-node-a");
        let _alone = LOCK.write().await;
        let docker = engine().await;
        let mut of_node = HashMap::new();
        for node in ["reaper-test-node-a", "reaper-test-node-b"] {
            let execution = ExecutionId::new();
            let body = bollard::models::ContainerCreateBody {
                image: Some(TEST_IMAGE.into()),
                cmd: Some(vec!["sleep".into(), "1000".into()]),
                labels: Some(HashMap::from([
                    (EXECUTION_LABEL.to_owned(), execution.to_string()),
                    (NODE_LABEL.to_owned(), node.to_owned()),
                ])),
                ..Default::default()
            };
            let created = docker
                .create_container(Some(CreateContainerOptionsBuilder::new().build()), body)
                .await
                .expect("create");
            docker
                .start_container(&created.id, None)
                .await
                .expect("start");
            of_node.insert(node, execution);
        }
        let reaped = runtime.reap_leftovers().await.expect("reap");
        assert_eq!(reaped, 1, "only this node's");
        assert!(
            containers_of(of_node["reaper-test-node-a"])
                .await
                .is_empty()
        );
        let kept = containers_of(of_node["reaper-test-node-b"]).await;
        assert_eq!(kept.len(), 1, "another node's running container stays");
        let remove = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
            .force(true)
            .build();
        docker
            .remove_container(&kept[0], Some(remove))
            .await
            .expect("clean up");
    }
}
