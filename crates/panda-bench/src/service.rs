//! `panda-bench service`: long-running services through real `panda` nodes, on each store
//! backend in one run.
//!
//! - Exit to restart: one instance (process runtime, restart delay 0) that exits as soon as it
//!   starts, `--restarts` times; from each copy's exit to the next copy's start, as the copies
//!   themselves read the clock (bash's `$EPOCHREALTIME`, no process spawned to read it).
//!   Against the floor, the same script in `while true; do bash SCRIPT; done`.
//! - Node SIGKILL to running elsewhere: one instance on one of two nodes; the node running it
//!   is SIGKILLed, and the time to the instance's next start (on the other node) is taken.
//!   `--failovers` times, alternating nodes (the killed one is started again).
//! - SIGTERM drain to running elsewhere: the same with SIGTERM; the instance stops on its
//!   signal (the stop time: from the SIGTERM to its stop) and runs on the other node.
//!
//! The instance writes `start T`, `end T` and `stop T` lines (Unix seconds, microseconds) to a
//! witness file; nothing is read from the store while it is measured, but which node runs the
//! instance.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::Utc;
use clap::Args;
use panda_core::{JobName, JobSpec, RuntimeSpec, ServiceSpec, Status};
use panda_store::{ExecutionFilter, PgStore, SqliteStore, Store};

use super::Backend;
use super::runtime::{Row, print_table};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  panda-bench service
  panda-bench service --database-url postgres://postgres@127.0.0.1/panda_bench --restarts 200")]
pub(crate) struct ServiceBench {
    /// PostgreSQL database to measure in (a fresh schema is made and dropped); without it only
    /// SQLite is measured
    #[arg(long, env = "PANDA_BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Restarts of an instance that exits at once
    #[arg(long, default_value_t = 200)]
    restarts: u32,
    /// Node failures (SIGKILL, and SIGTERM drains) measured
    #[arg(long, default_value_t = 5)]
    failovers: u32,
    /// The nodes' lease
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    lease_ttl: Duration,
    /// The `panda` binary measured [default: the one beside this binary, as cargo builds it]
    #[arg(long, value_name = "PATH")]
    panda: Option<PathBuf>,
}

pub(super) async fn run(args: ServiceBench) -> anyhow::Result<()> {
    if args.restarts == 0 || args.failovers == 0 {
        bail!("--restarts and --failovers must be at least 1");
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
    let lease_ms = ms(args.lease_ttl);
    let mut rows = Vec::new();

    let floor_dir = tempfile::tempdir()?;
    eprintln!("floor: {} restarts of a shell loop", args.restarts);
    let mut floor = shell_loop_gaps(floor_dir.path(), args.restarts)?;
    let floor_p50 = percentile(&mut floor, 50.0);
    let floor_p99 = percentile(&mut floor, 99.0);

    for backend in Backend::requested(args.database_url.as_deref()) {
        let name = backend.name();
        let bench = Bench {
            exe: exe.clone(),
            lease_ttl: args.lease_ttl,
        };

        eprintln!(
            "{name}: {} restarts of an instance that exits",
            args.restarts
        );
        let scratch = Place::open(backend, args.database_url.as_deref()).await?;
        let mut gaps = bench.restarts(&scratch, args.restarts).await?;
        scratch.close().await?;
        rows.push(Row {
            what: format!("{name}: exit to restarted, p50 of {}", args.restarts),
            value: percentile(&mut gaps, 50.0),
            unit: "ms",
            baseline: Some(floor_p50),
            target: "(baseline: while true; do …; done)",
        });
        rows.push(Row {
            what: format!("{name}: exit to restarted, p99 of {}", args.restarts),
            value: percentile(&mut gaps, 99.0),
            unit: "ms",
            baseline: Some(floor_p99),
            target: "<= 50 ms",
        });

        eprintln!("{name}: {} nodes SIGKILLed", args.failovers);
        let scratch = Place::open(backend, args.database_url.as_deref()).await?;
        let kills = bench
            .failovers(&scratch, args.failovers, Failure::Kill)
            .await?;
        scratch.close().await?;
        let mut moved: Vec<f64> = kills.iter().map(|f| f.moved).collect();
        rows.push(Row {
            what: format!("{name}: node SIGKILL to running on the other, p50"),
            value: percentile(&mut moved, 50.0),
            unit: "ms",
            baseline: Some(lease_ms),
            target: "",
        });
        rows.push(Row {
            what: format!(
                "{name}: node SIGKILL to running on the other, max of {}",
                args.failovers
            ),
            value: percentile(&mut moved, 100.0),
            unit: "ms",
            baseline: Some(lease_ms),
            target: "<= lease + 1000 ms",
        });

        eprintln!("{name}: {} nodes drained with SIGTERM", args.failovers);
        let scratch = Place::open(backend, args.database_url.as_deref()).await?;
        let drains = bench
            .failovers(&scratch, args.failovers, Failure::Drain)
            .await?;
        scratch.close().await?;
        let mut beyond: Vec<f64> = drains.iter().map(|f| f.moved - f.stop).collect();
        let mut stops: Vec<f64> = drains.iter().map(|f| f.stop).collect();
        let mut moved: Vec<f64> = drains.iter().map(|f| f.moved).collect();
        rows.push(Row {
            what: format!(
                "{name}: SIGTERM drain to running on the other, max of {}",
                args.failovers
            ),
            value: percentile(&mut moved, 100.0),
            unit: "ms",
            baseline: None,
            target: "",
        });
        rows.push(Row {
            what: format!("{name}: of which the instance's stop, max"),
            value: percentile(&mut stops, 100.0),
            unit: "ms",
            baseline: None,
            target: "",
        });
        rows.push(Row {
            what: format!("{name}: drain beyond the stop, max"),
            value: percentile(&mut beyond, 100.0),
            unit: "ms",
            baseline: None,
            target: "<= 1000 ms (after the stop)",
        });
    }
    print_table(&rows);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q`th percentile.
fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// The instance: it writes its start and, when told (`EXIT_AT_ONCE=1`), its end and exits;
/// otherwise it runs until SIGTERM, on which it writes its stop and exits.
fn write_script(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let script = dir.join("instance.sh");
    let witness = dir.join("witness");
    let w = witness.display();
    std::fs::write(
        &script,
        format!(
            r#"echo "start $EPOCHREALTIME" >> {w}
if [ "$EXIT_AT_ONCE" = 1 ]; then echo "end $EPOCHREALTIME" >> {w}; exit 0; fi
trap 'echo "stop $EPOCHREALTIME" >> {w}; exit 0' TERM
while :; do sleep 1 & wait $!; done
"#
        ),
    )?;
    Ok((script, witness))
}

/// The witness' lines as (what, Unix seconds).
fn witness(path: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (what, at) = line.split_once(' ')?;
            Some((what.to_owned(), at.trim().replace(',', ".").parse().ok()?))
        })
        .collect()
}

/// From each `end` to the `start` after it, in milliseconds.
fn gaps(lines: &[(String, f64)]) -> Vec<f64> {
    lines
        .windows(2)
        .filter(|pair| pair[0].0 == "end" && pair[1].0 == "start")
        .map(|pair| (pair[1].1 - pair[0].1) * 1000.0)
        .collect()
}

/// The floor: the script restarted by a shell loop as fast as the shell can.
fn shell_loop_gaps(dir: &Path, restarts: u32) -> anyhow::Result<Vec<f64>> {
    let (script, witness_path) = write_script(dir)?;
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -le {restarts} ]; do bash {}; i=$((i+1)); done",
            script.display()
        ))
        .env("EXIT_AT_ONCE", "1")
        .status()
        .context("run bash")?;
    ensure!(status.success(), "the shell loop failed: {status}");
    let gaps = gaps(&witness(&witness_path));
    ensure!(
        gaps.len() >= restarts as usize,
        "the shell loop restarted {} times",
        gaps.len()
    );
    Ok(gaps)
}

/// Where one measurement's nodes keep their state: a SQLite file in a temp dir, or a fresh
/// schema of the PostgreSQL database; the bench's own store on it, to create the service and
/// see which node runs it.
pub(crate) struct Place {
    store: Arc<dyn Store>,
    pg: Option<Arc<PgStore>>,
    /// `--database-url` for the nodes, on PostgreSQL.
    pub(crate) url: Option<String>,
    dir: tempfile::TempDir,
}

impl Place {
    pub(crate) async fn open(backend: Backend, database_url: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        match (backend, database_url) {
            (Backend::Postgres, Some(url)) => {
                let schema = format!("panda_bench_{}", uuid::Uuid::now_v7().simple());
                let pg = Arc::new(
                    PgStore::connect_in_schema(url, &schema, 4)
                        .await
                        .with_context(|| format!("connect to {}", panda_store::redact_url(url)))?,
                );
                let separator = if url.contains('?') { '&' } else { '?' };
                Ok(Self {
                    store: Arc::clone(&pg) as Arc<dyn Store>,
                    pg: Some(pg),
                    url: Some(format!(
                        "{url}{separator}options=-c%20search_path%3D{schema}"
                    )),
                    dir,
                })
            }
            _ => {
                let store = SqliteStore::open(&dir.path().join("panda.db")).await?;
                Ok(Self {
                    store: Arc::new(store),
                    pg: None,
                    url: None,
                    dir,
                })
            }
        }
    }

    /// A node's data dir: the shared one on SQLite (the database file), its own on
    /// PostgreSQL (its admin token).
    pub(crate) fn data_dir(&self, node: &str) -> PathBuf {
        match self.url {
            Some(_) => self.dir.path().join(node),
            None => self.dir.path().to_path_buf(),
        }
    }

    pub(crate) async fn close(self) -> anyhow::Result<()> {
        if let Some(pg) = self.pg {
            pg.drop_schema()
                .await
                .context("drop the benchmark schema")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Kill,
    Drain,
}

/// One failover: from the signal to the instance's start on the other node, and to its stop
/// (a drain only), in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Failover {
    moved: f64,
    stop: f64,
}

struct Bench {
    exe: PathBuf,
    lease_ttl: Duration,
}

impl Bench {
    /// Starts `panda server` or `panda worker` as `node`, and waits for its ready file.
    fn node(&self, place: &Place, command: &str, node: &str) -> anyhow::Result<Node> {
        let data_dir = place.data_dir(node);
        std::fs::create_dir_all(&data_dir)?;
        let ready = place.dir.path().join(format!("ready-{node}"));
        let _ = std::fs::remove_file(&ready);
        let heartbeat = humantime::format_duration(self.lease_ttl / 3).to_string();
        let lease = humantime::format_duration(self.lease_ttl).to_string();
        let mut cmd = Command::new(&self.exe);
        cmd.arg(command);
        if command == "server" {
            cmd.args(["--bind", "127.0.0.1:0"]);
        }
        if let Some(url) = &place.url {
            cmd.arg("--database-url").arg(url);
        }
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(["--runtime", "process", "--worker-id", node])
            .args(["--lease-ttl", &lease, "--heartbeat-interval", &heartbeat])
            .env("PANDA_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().context("start panda")?;
        let started = Instant::now();
        while !ready.exists() {
            if let Some(status) = child.try_wait()? {
                bail!("panda {command} stopped before it was ready: {status}");
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "panda {command} not ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Node {
            child: Some(child),
            name: node.to_owned(),
        })
    }

    async fn create(&self, place: &Place, script: &Path, exit_at_once: bool) -> anyhow::Result<()> {
        let mut spec = JobSpec::new(
            JobName::new("bench-service")?,
            RuntimeSpec::Process {
                argv: vec!["bash".into(), script.display().to_string()],
            },
        );
        if exit_at_once {
            spec.env.insert("EXIT_AT_ONCE".into(), "1".into());
        }
        spec.service = Some(ServiceSpec {
            replicas: 1,
            restart_delay: Duration::ZERO,
            restart_delay_max: Duration::ZERO,
            stop_timeout: Duration::from_secs(10),
            ..ServiceSpec::default()
        });
        place.store.job_create(&spec, Utc::now()).await?;
        Ok(())
    }

    /// Exit to restart on one server node.
    async fn restarts(&self, place: &Place, restarts: u32) -> anyhow::Result<Vec<f64>> {
        let (script, witness_path) = write_script(place.dir.path())?;
        let node = self.node(place, "server", "node-a")?;
        self.create(place, &script, true).await?;
        let started = Instant::now();
        loop {
            let ends = witness(&witness_path)
                .iter()
                .filter(|(what, _)| what == "end")
                .count();
            if ends > restarts as usize {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(600),
                "{ends} of {restarts} restarts in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        node.stop()?;
        let mut gaps = gaps(&witness(&witness_path));
        gaps.truncate(restarts as usize);
        Ok(gaps)
    }

    /// Which node runs the instance now, by the store.
    async fn running_on(&self, place: &Place) -> anyhow::Result<Option<String>> {
        let page = place
            .store
            .execution_list(&ExecutionFilter {
                job: Some("bench-service".into()),
                statuses: vec![Status::Running],
                limit: 10,
                ..ExecutionFilter::default()
            })
            .await?;
        Ok(page.executions.into_iter().find_map(|e| e.worker_id))
    }

    /// `rounds` failures of the node running the instance, alternating between two nodes.
    async fn failovers(
        &self,
        place: &Place,
        rounds: u32,
        failure: Failure,
    ) -> anyhow::Result<Vec<Failover>> {
        let (script, witness_path) = write_script(place.dir.path())?;
        let mut nodes = vec![
            self.node(place, "server", "node-a")?,
            self.node(place, "worker", "node-b")?,
        ];
        self.create(place, &script, false).await?;
        let mut results = Vec::new();
        for round in 0..rounds {
            // Settled: one copy started, running on a node, and the other node up.
            let started = Instant::now();
            let on = loop {
                let starts = count(&witness(&witness_path), "start");
                if starts > round as usize
                    && let Some(on) = self.running_on(place).await?
                {
                    break on;
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(120),
                    "round {round}: the instance is not running"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            // Past the spread wait and a few heartbeats, as a node that has run a while.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let at = nodes
                .iter()
                .position(|n| n.name == on)
                .context("the instance runs on neither node")?;
            let victim = nodes.remove(at);
            let command = if victim.name == "node-a" {
                "server"
            } else {
                "worker"
            };
            let before = witness(&witness_path).len();
            let signalled = unix_now();
            match failure {
                Failure::Kill => victim.kill()?,
                Failure::Drain => victim.stop_nowait()?,
            }
            let started = Instant::now();
            let (moved, stop, victim) = loop {
                let lines = witness(&witness_path);
                if let Some((_, at)) = lines[before..].iter().find(|(w, _)| w == "start") {
                    let stop = lines[before..]
                        .iter()
                        .find(|(w, _)| w == "stop")
                        .map_or(0.0, |(_, t)| (t - signalled) * 1000.0);
                    break ((at - signalled) * 1000.0, stop, victim);
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(120),
                    "round {round}: the instance never ran on the other node"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            eprintln!("round {round}: {moved:.0} ms (stop {stop:.0} ms) from {on}");
            results.push(Failover { moved, stop });
            victim.wait()?;
            nodes.push(self.node(place, command, &on)?);
        }
        for node in nodes {
            node.stop()?;
        }
        Ok(results)
    }
}

fn count(lines: &[(String, f64)], what: &str) -> usize {
    lines.iter().filter(|(w, _)| w == what).count()
}

fn unix_now() -> f64 {
    let now = Utc::now();
    now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6
}

/// A `panda` node, stopped with SIGTERM when dropped.
struct Node {
    child: Option<Child>,
    name: String,
}

impl Node {
    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("a running node")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()?;
        ensure!(status.success(), "kill -{signal}");
        Ok(())
    }

    fn kill(&self) -> anyhow::Result<()> {
        self.signal("KILL")
    }

    fn stop_nowait(&self) -> anyhow::Result<()> {
        self.signal("TERM")
    }

    fn wait(mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }

    fn stop(self) -> anyhow::Result<()> {
        self.signal("TERM")?;
        self.wait()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}
