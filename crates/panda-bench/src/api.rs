//! `panda-bench api`: the server as a user meets it, on its embedded defaults (SQLite), each
//! figure next to its floor in the same run.
//!
//! - `panda cronjob list` with `--jobs` cronjobs (each a different daily time, none due
//!   during the run): the whole CLI process, against `curl` of the same endpoint with the same
//!   token (the floor: a process and one HTTP request).
//! - The executions endpoint with `--executions` stored for one job: `--requests` pages of 50,
//!   newest first, each following the last one's cursor, through one keep-alive connection.
//! - A fresh server: its resident memory once idle, and the time from its start to `/readyz`
//!   answering.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{TimeZone, Utc};
use clap::Args;
use panda_client::Client;
use panda_core::{ConcurrencyPolicy, JobName, JobSpec, RuntimeSpec, Schedule};
use panda_store::{JobStore, NewSlot, SlotDecision, SlotStore, SqliteStore};

use super::runtime::{Row, print_table};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench api
  panda-bench api --jobs 1000 --executions 1000000 --requests 1000")]
pub(crate) struct ApiBench {
    /// Cronjobs listed
    #[arg(long, default_value_t = 1000)]
    jobs: u32,
    /// Executions stored for the paged listing
    #[arg(long, default_value_t = 1_000_000)]
    executions: u32,
    /// Pages requested
    #[arg(long, default_value_t = 1000)]
    requests: u32,
    /// Times each command is run for the list measurement
    #[arg(long, default_value_t = 20)]
    runs: u32,
    /// The `panda` binary measured [default: the one beside this binary, as cargo builds it]
    #[arg(long, value_name = "PATH")]
    panda: Option<PathBuf>,
}

pub(super) async fn run(args: ApiBench) -> anyhow::Result<()> {
    if args.jobs == 0 || args.requests == 0 || args.runs == 0 {
        bail!("--jobs, --requests and --runs must be at least 1");
    }
    let exe = match &args.panda {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("find this binary")?
            .with_file_name("panda"),
    };
    ensure!(
        exe.is_file(),
        "no panda binary at {} (build it with `cargo build --release -p panda`, or pass --panda PATH)",
        exe.display()
    );
    let mut rows = Vec::new();

    // A fresh server: memory once idle, and start to ready.
    let mut starts = Vec::new();
    let mut rss_kib = 0;
    for _ in 0..5 {
        let dir = tempfile::tempdir()?;
        let started = Instant::now();
        let server = Server::start(&exe, dir.path())?;
        server.wait_ready().await?;
        starts.push(started.elapsed());
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss_kib = rss_kib.max(server.rss_kib()?);
    }
    starts.sort();
    rows.push(Row {
        what: "cold start to ready, median of 5".into(),
        value: ms(starts[2]),
        unit: "ms",
        baseline: None,
        target: "<= 200 ms",
    });
    rows.push(Row {
        what: "idle server RSS, max of 5".into(),
        value: rss_kib as f64 / 1024.0,
        unit: "MiB",
        baseline: None,
        target: "<= 30 MB",
    });

    let dir = tempfile::tempdir()?;
    let server = Server::start(&exe, dir.path())?;
    server.wait_ready().await?;
    let token = std::fs::read_to_string(dir.path().join("admin.token"))?
        .trim()
        .to_owned();
    let client = Client::new(&server.url, Some(token.clone()))?;

    eprintln!("creating {} cronjobs", args.jobs);
    for i in 0..args.jobs {
        let mut spec = JobSpec::new(
            JobName::new(format!("report-{i:05}"))?,
            RuntimeSpec::Process {
                argv: vec!["true".into()],
            },
        );
        // A thousand different schedules, as a real list has: none shares a parse.
        spec.schedule = Some(Schedule::new(format!("{} {} * * *", i % 60, (i / 60) % 24)));
        client
            .job_create(&spec)
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    let cli = timed_runs(args.runs, || {
        Command::new(&exe)
            .args(["cronjob", "list"])
            .env("PANDA_URL", &server.url)
            .env("PANDA_TOKEN", &token)
            .stdout(Stdio::null())
            .status()
    })?;
    let url = format!("{}/api/v1/jobs?kind=scheduled", server.url);
    let curl = timed_runs(args.runs, || {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(&url)
            .status()
    })?;
    rows.push(Row {
        what: format!("`panda cronjob list`, {} cronjobs, median", args.jobs),
        value: ms(cli),
        unit: "ms",
        baseline: Some(ms(curl)),
        target: "<= 30 ms (baseline: curl)",
    });

    eprintln!("storing {} executions", args.executions);
    let listed = fill_history(dir.path(), args.executions).await?;
    let mut latencies = Vec::with_capacity(args.requests as usize);
    let mut before = None;
    for _ in 0..args.requests {
        let started = Instant::now();
        let page = client
            .executions(&listed, "", 50, before)
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        latencies.push(started.elapsed());
        ensure!(page.executions.len() == 50, "a short page before the end");
        before = page.next;
    }
    latencies.sort();
    let p = |q: f64| {
        let rank = ((q / 100.0) * latencies.len() as f64).ceil() as usize;
        ms(latencies[rank.clamp(1, latencies.len()) - 1])
    };
    rows.push(Row {
        what: format!("executions endpoint, {} stored, p50", args.executions),
        value: p(50.0),
        unit: "ms",
        baseline: None,
        target: "",
    });
    rows.push(Row {
        what: format!(
            "executions endpoint, {} stored, p99 of {}",
            args.executions, args.requests
        ),
        value: p(99.0),
        unit: "ms",
        baseline: None,
        target: "<= 10 ms",
    });
    drop(server);
    print_table(&rows);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs a command `runs` times; the median wall time.
fn timed_runs(
    runs: u32,
    mut command: impl FnMut() -> std::io::Result<std::process::ExitStatus>,
) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let status = command()?;
        ensure!(status.success(), "a measured command failed: {status}");
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Records `n` slots of a new, suspended every-second cronjob (each a skipped execution)
/// straight into the server's database, 2,000 a transaction; returns the job's name.
async fn fill_history(dir: &Path, n: u32) -> anyhow::Result<String> {
    let store = SqliteStore::open(&dir.join("panda.db")).await?;
    let mut spec = JobSpec::new(
        JobName::new("history")?,
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec.schedule = Some(Schedule::new("* * * * * *"));
    // Suspended, so that neither the server's scheduler nor its workers touch it: the slots
    // recorded here become skipped executions, rows like any other in the history.
    spec.suspended = true;
    let job = store.job_create(&spec, Utc::now()).await?;
    let start = Utc
        .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .context("a start instant")?;
    let mut done = 0u32;
    while done < n {
        let batch: Vec<NewSlot> = (done..n.min(done + 2000))
            .map(|i| NewSlot {
                job_id: job.id,
                scheduled_at: start + chrono::Duration::seconds(i64::from(i)),
                decision: SlotDecision::Fire,
            })
            .collect();
        let count = batch.len() as u32;
        for result in store.slot_record_many(&batch, Utc::now()).await? {
            result?;
        }
        done += count;
    }
    Ok("history".to_owned())
}

/// A `panda server` on a port of its own, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    fn start(exe: &Path, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(exe, dir, &[])
    }

    /// Starts it with `dir` as its data dir and `more` flags of `panda server` after the
    /// usual ones (`--database-url URL` for PostgreSQL, `--queues …`).
    pub(crate) fn start_with(exe: &Path, dir: &Path, more: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(exe);
        command
            .args([
                "server",
                "--bind",
                "127.0.0.1:0",
                "--runtime",
                "process",
                "--data-dir",
            ])
            .arg(dir)
            .args(more);
        let mut child = command
            .env("PANDA_LOG", "info")
            .env("PANDA_LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start panda server")?;
        let stderr = child.stderr.take().context("its stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut last = String::new();
        let url = loop {
            let Some(line) = lines.next() else {
                bail!("the server stopped before it listened; it said last: {last}");
            };
            let line = line?;
            if let Some(at) = line.find("API listening on ") {
                let rest = &line[at + "API listening on ".len()..];
                break rest
                    .split_whitespace()
                    .next()
                    .context("an address")?
                    .to_owned();
            }
            last = line;
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, url })
    }

    /// Polls `/readyz` until it answers 200.
    pub(crate) async fn wait_ready(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(response) = http.get(format!("{}/readyz", self.url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the server was not ready in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS in /proc")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
