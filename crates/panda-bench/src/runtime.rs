//! `panda-bench runtime`: each runtime against its baseline, in one run. The Docker and process
//! measurements alternate the baseline and Panda over `--rounds` and compare the medians.
//!
//! - Docker: busybox `true` containers through [`DockerRuntime`] vs `docker run --rm` of the
//!   same image, `--parallel` at a time.
//! - Process: `/bin/true` through [`ProcessRuntime`] vs a plain spawn-and-wait, `--parallel` at
//!   a time.
//! - Logs: a process writing `--log-mib` MiB to stdout, captured into a SQLite store vs the same
//!   command writing to `/dev/null`, and vs the same command piped into `cat` (what any reader
//!   of a pipe pays); once with lines that compress well and once with random ones; and the
//!   latency from a line's write to a live follower.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::Utc;
use clap::Args;
use comfy_table::{CellAlignment, Table, presets};
use panda_core::{ExecutionId, JobName, JobSpec, Limits, RuntimeSpec};
use panda_runtime::{
    DockerRuntime, LogConfig, LogSink, ProcessRuntime, PullPolicy, RunOutcome, RunSpec, Runtime,
};
use panda_store::{LogStore, NewExecution, Store};
use tokio_util::sync::CancellationToken;

use super::{Backend, Scratch, median};

/// The image the Docker half runs, built from Debian's static busybox.
const BENCH_IMAGE: &str = "panda-bench/busybox:latest";

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench runtime
  panda-bench runtime --runs 200 --parallel 4 --log-mib 1024")]
pub(crate) struct RuntimeBench {
    /// Executions per measurement (each runtime and each baseline)
    #[arg(long, default_value_t = 100)]
    runs: u32,
    /// Executions at a time
    #[arg(long, default_value_t = 4)]
    parallel: u32,
    /// Rounds of the Docker and process measurements, each baseline then Panda; the medians
    /// are compared
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// MiB the log measurement writes
    #[arg(long, default_value_t = 1024)]
    log_mib: u64,
    /// Lines for the follower latency
    #[arg(long, default_value_t = 200)]
    lines: u32,
    /// Skip the Docker half (when no engine is running)
    #[arg(long)]
    no_docker: bool,
}

/// One line of a benchmark's table.
pub(super) struct Row {
    pub(super) what: String,
    pub(super) value: f64,
    pub(super) unit: &'static str,
    pub(super) baseline: Option<f64>,
    pub(super) target: &'static str,
}

pub(super) async fn run(args: RuntimeBench) -> anyhow::Result<()> {
    if args.runs == 0
        || args.rounds == 0
        || args.parallel == 0
        || args.log_mib == 0
        || args.lines == 0
    {
        bail!("--runs, --rounds, --parallel, --log-mib and --lines must be at least 1");
    }
    let scratch = Scratch::open(Backend::Sqlite, None, 1).await?;
    let store = scratch.store();
    let mut rows = Vec::new();

    if !args.no_docker {
        let docker = DockerRuntime::connect()
            .await
            .context("connect to Docker (or pass --no-docker)")?
            .with_pull_policy(PullPolicy::Never);
        eprintln!("building {BENCH_IMAGE} from /bin/busybox");
        docker
            .build_busybox_image(BENCH_IMAGE, Path::new("/bin/busybox"))
            .await?;
        let spec = RuntimeSpec::Image {
            image: BENCH_IMAGE.into(),
            command: Some(vec!["true".into()]),
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 1..=args.rounds {
            eprintln!("docker: {} `docker run --rm`, round {round}", args.runs);
            theirs.push(
                commands_per_second(&["docker", "run", "--rm", BENCH_IMAGE, "true"], &args).await?,
            );
            eprintln!(
                "docker: {} containers through the API, round {round}",
                args.runs
            );
            ours.push(runs_per_second(&docker, &store, &spec, &args).await?);
            eprintln!(
                "docker: round {round}: {:.2}x",
                ours[ours.len() - 1] / theirs[theirs.len() - 1]
            );
        }
        rows.push(Row {
            what: format!(
                "docker: busybox true, {} at a time, median of {}",
                args.parallel, args.rounds
            ),
            value: median(&mut ours),
            unit: "runs/s",
            baseline: Some(median(&mut theirs)),
            target: ">= 1.2x docker run --rm",
        });
    }

    let spec = RuntimeSpec::Process {
        argv: vec!["/bin/true".into()],
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        eprintln!("process: {} runs of /bin/true, round {round}", args.runs);
        theirs.push(commands_per_second(&["/bin/true"], &args).await?);
        ours.push(runs_per_second(&ProcessRuntime::default(), &store, &spec, &args).await?);
        eprintln!(
            "process: round {round}: {:.2}x",
            ours[ours.len() - 1] / theirs[theirs.len() - 1]
        );
    }
    rows.push(Row {
        what: format!(
            "process: /bin/true, {} at a time, median of {}",
            args.parallel, args.rounds
        ),
        value: median(&mut ours),
        unit: "runs/s",
        baseline: Some(median(&mut theirs)),
        target: ">= 0.9x spawn and wait",
    });

    let bytes = args.log_mib * 1024 * 1024;
    let mib = args.log_mib as f64;
    // 100-byte lines, the same line again and again: output that compresses well.
    let repetitive = format!(
        "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c {bytes}"
    );
    // 100-byte lines of random base64: output nothing compresses. The 64 MiB are written once
    // and repeated, which the capture cannot exploit (it compresses each chunk on its own).
    let random_dir = tempfile::tempdir()?;
    let random_file = random_dir.path().join("random-lines");
    let random_file = random_file.display();
    command_seconds(&[
        "sh",
        "-c",
        &format!("head -c 48M /dev/urandom | base64 -w 99 > '{random_file}'"),
    ])
    .await?;
    // The file is a little over 64 MiB (48 MiB of base64 with a newline every 99 bytes).
    let copies = bytes / (64 * 1024 * 1024) + 1;
    let random = format!(
        "i=0; while [ $i -lt {copies} ]; do cat '{random_file}'; i=$((i+1)); done | head -c {bytes}"
    );
    for (what, writer) in [("repetitive", &repetitive), ("random", &random)] {
        eprintln!("logs: {} MiB of {what} lines captured", args.log_mib);
        let captured =
            capture_seconds(&store, &format!("bench-logs-{what}"), writer, bytes).await?;
        eprintln!("logs: {} MiB of {what} lines to /dev/null", args.log_mib);
        let discarded = command_seconds(&["sh", "-c", &format!("{writer} > /dev/null")]).await?;
        eprintln!("logs: {} MiB of {what} lines read by cat", args.log_mib);
        let piped = command_seconds(&["sh", "-c", &format!("{writer} | cat > /dev/null")]).await?;
        rows.push(Row {
            what: format!("logs: {} MiB of {what} lines captured", args.log_mib),
            value: mib / captured,
            unit: "MiB/s",
            baseline: Some(mib / discarded),
            target: ">= 0.5x /dev/null and >= 200 MB/s",
        });
        rows.push(Row {
            what: "logs: the same vs a pipe read by cat".into(),
            value: mib / captured,
            unit: "MiB/s",
            baseline: Some(mib / piped),
            target: "",
        });
    }

    eprintln!("logs: {} lines to a live follower", args.lines);
    let mut latencies = follower_latencies(&store, args.lines).await?;
    latencies.sort();
    let p = |q: f64| {
        let rank = ((q / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1].as_secs_f64() * 1000.0
    };
    rows.push(Row {
        what: "logs: write to live follower, p50".into(),
        value: p(50.0),
        unit: "ms",
        baseline: None,
        target: "",
    });
    rows.push(Row {
        what: "logs: write to live follower, p99".into(),
        value: p(99.0),
        unit: "ms",
        baseline: None,
        target: "<= 50 ms",
    });
    scratch.close().await?;
    print_table(&rows);
    Ok(())
}

/// A job and an execution to log into; every run of the measurement logs into it.
async fn execution(store: &Arc<dyn Store>, name: &str) -> anyhow::Result<ExecutionId> {
    let spec = JobSpec::new(
        JobName::new(name)?,
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    store.job_create(&spec, Utc::now()).await?;
    Ok(store
        .execution_enqueue(&NewExecution::api(name), Utc::now())
        .await?
        .execution
        .id)
}

fn run_spec(execution: ExecutionId, runtime: RuntimeSpec) -> RunSpec {
    RunSpec {
        execution_id: execution,
        runtime,
        env: BTreeMap::new(),
        secret_env: BTreeMap::new(),
        workdir: None,
        limits: Limits::default(),
        timeout: Some(Duration::from_secs(600)),
        stop_signal: panda_core::StopSignal::TERM,
        kill_grace: Duration::from_secs(5),
        kill: tokio_util::sync::CancellationToken::new(),
    }
}

/// Runs `args.runs` executions of `spec`, `args.parallel` at a time, each with its own
/// execution and log sink, as a worker would.
async fn runs_per_second(
    runtime: &dyn Runtime,
    store: &Arc<dyn Store>,
    spec: &RuntimeSpec,
    args: &RuntimeBench,
) -> anyhow::Result<f64> {
    let name = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let name = &name[..30];
    let job = JobSpec::new(JobName::new(name)?, spec.clone());
    store.job_create(&job, Utc::now()).await?;
    let mut executions = Vec::new();
    for _ in 0..args.runs {
        executions.push(
            store
                .execution_enqueue(&NewExecution::api(name), Utc::now())
                .await?
                .execution
                .id,
        );
    }
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(executions));
    let workers = (0..args.parallel).map(|_| {
        let queue = Arc::clone(&queue);
        async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(execution) = next else {
                    return anyhow::Ok(());
                };
                let run = run_spec(execution, spec.clone());
                let sink = LogSink::new(
                    Arc::clone(store) as Arc<dyn LogStore>,
                    execution,
                    LogConfig::default(),
                    [],
                );
                let report = runtime.run(&run, sink, CancellationToken::new()).await?;
                ensure!(
                    report.outcome == RunOutcome::Succeeded,
                    "a run ended {:?}",
                    report.outcome
                );
            }
        }
    });
    for result in futures::future::join_all(workers).await {
        result?;
    }
    Ok(f64::from(args.runs) / started.elapsed().as_secs_f64())
}

/// Runs `argv` `args.runs` times, `args.parallel` at a time: spawn and wait, nothing else.
async fn commands_per_second(argv: &[&str], args: &RuntimeBench) -> anyhow::Result<f64> {
    let left = Arc::new(std::sync::atomic::AtomicU32::new(args.runs));
    let started = Instant::now();
    let workers = (0..args.parallel).map(|_| {
        let left = Arc::clone(&left);
        async move {
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                let status = tokio::process::Command::new(argv[0])
                    .args(&argv[1..])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .await?;
                ensure!(status.success(), "{argv:?} failed: {status}");
            }
            anyhow::Ok(())
        }
    });
    for result in futures::future::join_all(workers).await {
        result?;
    }
    Ok(f64::from(args.runs) / started.elapsed().as_secs_f64())
}

async fn command_seconds(argv: &[&str]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = tokio::process::Command::new(argv[0])
        .args(&argv[1..])
        .status()
        .await?;
    ensure!(status.success(), "{argv:?} failed: {status}");
    Ok(started.elapsed().as_secs_f64())
}

/// Runs the writer under the process runtime with its output captured into the store (under a
/// cap above its size), and checks every byte arrived.
async fn capture_seconds(
    store: &Arc<dyn Store>,
    job: &str,
    writer: &str,
    bytes: u64,
) -> anyhow::Result<f64> {
    let execution = execution(store, job).await?;
    let spec = run_spec(
        execution,
        RuntimeSpec::Process {
            argv: vec!["sh".into(), "-c".into(), writer.into()],
        },
    );
    let config = LogConfig {
        cap_bytes: bytes + 1,
        ..LogConfig::default()
    };
    let started = Instant::now();
    let sink = LogSink::new(
        Arc::clone(store) as Arc<dyn LogStore>,
        execution,
        config,
        [],
    );
    let report = ProcessRuntime::default()
        .run(&spec, sink, CancellationToken::new())
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        report.outcome == RunOutcome::Succeeded,
        "{:?}",
        report.outcome
    );
    let mut stored = 0u64;
    let mut after = None;
    loop {
        let page = store.log_read(execution, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        stored += page.iter().map(|c| c.data.len() as u64).sum::<u64>();
    }
    ensure!(stored == bytes, "stored {stored} bytes of {bytes}");
    Ok(seconds)
}

/// A process that writes a line with its own clock every 10 ms; for each line, from that
/// instant until a live follower of the sink receives it.
async fn follower_latencies(store: &Arc<dyn Store>, lines: u32) -> anyhow::Result<Vec<Duration>> {
    let execution = execution(store, "bench-follow").await?;
    let script =
        format!("i=0; while [ $i -lt {lines} ]; do date +%s%N; sleep 0.01; i=$((i+1)); done");
    let spec = run_spec(
        execution,
        RuntimeSpec::Process {
            argv: vec!["sh".into(), "-c".into(), script],
        },
    );
    let sink = LogSink::new(
        Arc::clone(store) as Arc<dyn LogStore>,
        execution,
        LogConfig::default(),
        [],
    );
    let mut follow = sink.subscribe();
    let collect = async {
        let mut latencies = Vec::new();
        while latencies.len() < lines as usize {
            let Ok(chunk) = follow.recv().await else {
                break;
            };
            let received = Utc::now();
            for line in String::from_utf8_lossy(&chunk.data).lines() {
                if let Ok(nanos) = line.trim().parse::<i64>() {
                    let written = chrono::DateTime::from_timestamp_nanos(nanos);
                    latencies.push((received - written).to_std().unwrap_or_default());
                }
            }
        }
        latencies
    };
    let runtime = ProcessRuntime::default();
    let (report, latencies) =
        tokio::join!(runtime.run(&spec, sink, CancellationToken::new()), collect);
    ensure!(
        report?.outcome == RunOutcome::Succeeded,
        "the writer failed"
    );
    ensure!(
        latencies.len() == lines as usize,
        "followed {} of {lines} lines",
        latencies.len()
    );
    Ok(latencies)
}

/// Prints the rows with each value's ratio to its baseline.
pub(super) fn print_table(rows: &[Row]) {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["MEASURE", "VALUE", "UNIT", "BASELINE", "RATIO", "TARGET"]);
    for row in rows {
        table.add_row([
            row.what.clone(),
            format!("{:.1}", row.value),
            row.unit.to_owned(),
            row.baseline.map_or_else(String::new, |b| format!("{b:.1}")),
            row.baseline
                .map_or_else(String::new, |b| format!("{:.2}x", row.value / b)),
            row.target.to_owned(),
        ]);
    }
    for column in [1, 3, 4] {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!("{table}");
}
