//! Local processes: argv run directly (no shell), a clean environment plus the job's, in a
//! process group of its own, so that a timeout, a cancel or the end of the job takes every
//! process it started with it.
//!
//! A server or a worker runs each job under a supervisor ([`crate::supervise`]): the `panda`
//! binary re-run as a small process that owns the job's group and its strays and kills them
//! when the node dies, by any signal. [`ProcessRuntime::default`] spawns the job directly,
//! which is the same but for that: a library user or a test with no `panda` binary at hand.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use panda_core::LogStream;
use panda_core::human;
use panda_core::{Probe, RuntimeSpec};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use crate::supervise::{Records, SUPERVISE_COMMAND};
use crate::{LogSink, RunOutcome, RunReport, RunSpec, Runtime, RuntimeError};

/// The `PATH` of the clean environment a process starts from.
const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Bytes read from a pipe at a time.
const READ_BUFFER: usize = 64 * 1024;

/// How long the output is still read after the job's process group is gone. A descendant that
/// left the group (`setsid`) can hold the pipes open forever; its output after this is not
/// collected, and the run ends anyway.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Runs jobs as local processes. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct ProcessRuntime {
    supervisor: Option<Supervision>,
}

/// How a supervised job is started and recorded.
#[derive(Debug, Clone)]
struct Supervision {
    program: PathBuf,
    records: Option<Records>,
}

/// The running `panda` binary, even once its file has been replaced by an upgrade.
pub const SELF_EXE: &str = "/proc/self/exe";

impl ProcessRuntime {
    /// Runs each job under the supervisor `program` (a `panda` binary: [`SELF_EXE`] in the
    /// server), so the job dies with this process.
    #[must_use]
    pub fn supervised(program: impl Into<PathBuf>) -> Self {
        Self {
            supervisor: Some(Supervision {
                program: program.into(),
                records: None,
            }),
        }
    }

    /// Keeps a record of each running job in `records`, for [`Records::reap`] after a crash
    /// of its supervisor. Only a supervised runtime keeps records.
    #[must_use]
    pub fn with_records(mut self, records: Records) -> Self {
        if let Some(supervisor) = &mut self.supervisor {
            supervisor.records = Some(records);
        }
        self
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    async fn run(
        &self,
        spec: &RunSpec,
        logs: LogSink,
        cancel: CancellationToken,
    ) -> Result<RunReport, RuntimeError> {
        let RuntimeSpec::Process { argv } = &spec.runtime else {
            return Err(RuntimeError::Permanent(
                "this job runs an image; the process runtime runs local programs (--exec)".into(),
            ));
        };
        let Some((program, args)) = argv.split_first() else {
            return Err(RuntimeError::Permanent("the job's argv is empty".into()));
        };
        let mut job = match &self.supervisor {
            None => Job::direct(program, args, spec)?,
            Some(supervisor) => Job::supervised(supervisor, program, args, spec).await?,
        };
        let readers = [
            job.stdout()
                .map(|out| tokio::spawn(pump(out, logs.clone(), LogStream::Stdout))),
            job.stderr()
                .map(|err| tokio::spawn(pump(err, logs.clone(), LogStream::Stderr))),
        ];

        let outcome = tokio::select! {
            status = job.wait() => Ended::Exited(status),
            () = sleep_or_never(spec.timeout) => Ended::Stopped(RunOutcome::TimedOut),
            () = cancel.cancelled() => Ended::Stopped(RunOutcome::Cancelled),
            () = spec.kill.cancelled() => Ended::Stopped(RunOutcome::Cancelled),
        };
        let outcome = match outcome {
            Ended::Exited(status) => exit_outcome(status, &logs),
            Ended::Stopped(outcome) => {
                let why = match spec.timeout {
                    Some(timeout) if outcome == RunOutcome::TimedOut => {
                        format!("timed out after {}", human::exact(timeout))
                    }
                    _ => "cancelled".to_owned(),
                };
                let signal = Signal::try_from(spec.stop_signal.number()).unwrap_or(Signal::SIGTERM);
                if spec.kill.is_cancelled() {
                    logs.system("killed at once: this copy must not run any longer");
                } else {
                    logs.system(&format!(
                        "{why}: sending {signal}, then SIGKILL after {}",
                        human::exact(spec.kill_grace)
                    ));
                }
                job.stop(signal, spec.kill_grace, &spec.kill).await;
                Ok(outcome)
            }
        };
        // Whatever the job left running goes with it; this also closes the pipes those
        // processes held, so the readers see their end.
        job.kill_rest().await;
        let deadline = tokio::time::Instant::now() + OUTPUT_DRAIN;
        let mut held_open = false;
        for mut reader in readers.into_iter().flatten() {
            match tokio::time::timeout_at(deadline, &mut reader).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(%err, "a log reader failed"),
                Err(_) => {
                    reader.abort();
                    held_open = true;
                }
            }
        }
        if held_open {
            logs.system(
                "output after the job ended was not collected: a process it started outside \
                 its process group (setsid) still holds the output open",
            );
        }
        let log_error = logs.finish().await.err().map(|err| {
            tracing::warn!(execution = %spec.execution_id, %err, "the run's logs could not all be stored");
            format!("some output could not be stored: {err}")
        });
        Ok(RunReport {
            outcome: outcome?,
            image_digest: None,
            log_error,
        })
    }

    async fn probe(&self, spec: &RunSpec, probe: &Probe, timeout: Duration) -> Result<(), String> {
        match probe {
            Probe::Http { url } => crate::probe_http(url, timeout).await,
            Probe::Command { command } => {
                crate::probe::probe_command(spec, command, timeout, CLEAN_PATH).await
            }
        }
    }
}

/// Sleeps for `timeout`, or forever when there is none.
pub(crate) async fn sleep_or_never(timeout: Option<Duration>) {
    match timeout {
        Some(timeout) => tokio::time::sleep(timeout).await,
        None => std::future::pending().await,
    }
}

enum Ended {
    Exited(std::io::Result<ExitStatus>),
    Stopped(RunOutcome),
}

/// Reads a pipe to its end into the sink.
async fn pump(mut pipe: impl AsyncRead + Unpin, logs: LogSink, stream: LogStream) {
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) => return,
            Ok(n) => logs.write(stream, &buffer[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => {
                logs.system(&format!("reading the job's {stream:?} failed: {err}"));
                return;
            }
        }
    }
}

/// A started job: its own process (direct), or the supervisor that runs it.
enum Job {
    Direct {
        child: Child,
        group: Option<Pid>,
    },
    Supervised {
        supervisor: Child,
        replies: Lines<BufReader<OwnedReadHalf>>,
        requests: OwnedWriteHalf,
        leader: Pid,
        ended: Option<ExitStatus>,
        record: Option<PathBuf>,
    },
}

impl Job {
    fn direct(program: &str, args: &[String], spec: &RunSpec) -> Result<Self, RuntimeError> {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", CLEAN_PATH)
            .envs(&spec.env)
            .envs(&spec.secret_env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &spec.workdir {
            command.current_dir(dir);
        }
        let child = command
            .spawn()
            .map_err(|err| spawn_error(program, spec.workdir.as_deref(), &err))?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Ok(Self::Direct { child, group })
    }

    /// Starts the supervisor, which starts the job, and waits for word of the job's start.
    async fn supervised(
        supervision: &Supervision,
        program: &str,
        args: &[String],
        spec: &RunSpec,
    ) -> Result<Self, RuntimeError> {
        let cannot = |what: &str, err: &dyn std::fmt::Display| {
            RuntimeError::Transient(format!(
                "cannot start {program:?}: {what} the process supervisor {}: {err}",
                supervision.program.display()
            ))
        };
        // The node's end is close-on-exec: no other child inherits it, so its end of file
        // tells the supervisor that this process is gone.
        let (node_end, supervisor_end) =
            std::os::unix::net::UnixStream::pair().map_err(|err| cannot("connecting", &err))?;
        let mut command = Command::new(&supervision.program);
        command
            .arg0("panda")
            .arg(SUPERVISE_COMMAND)
            .env_clear()
            .env("PATH", CLEAN_PATH)
            .envs(&spec.env)
            .envs(&spec.secret_env)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(supervisor_end)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Not in the node's group: a Ctrl-C at the node's terminal is the node's to
            // handle (it drains), not a signal to every job.
            .process_group(0);
        if let Some(dir) = &spec.workdir {
            command.arg("--workdir").arg(dir);
        }
        command.arg("--").arg(program).args(args);
        let mut supervisor = command.spawn().map_err(|err| cannot("starting", &err))?;
        node_end
            .set_nonblocking(true)
            .map_err(|err| cannot("connecting", &err))?;
        let (replies, requests) = tokio::net::UnixStream::from_std(node_end)
            .map_err(|err| cannot("connecting", &err))?
            .into_split();
        let mut replies = BufReader::new(replies).lines();
        let first = replies.next_line().await.ok().flatten().unwrap_or_default();
        let (word, rest) = first.split_once(' ').unwrap_or((first.as_str(), ""));
        match word {
            "started" => {
                let leader: i32 = rest
                    .parse()
                    .map_err(|_| cannot("a bad answer from", &first))?;
                let record = supervision.records.as_ref().and_then(|records| {
                    records.write(
                        &spec.execution_id.to_string(),
                        supervisor.id().unwrap_or(0),
                        leader.unsigned_abs(),
                    )
                });
                Ok(Self::Supervised {
                    supervisor,
                    replies,
                    requests,
                    leader: Pid::from_raw(leader),
                    ended: None,
                    record,
                })
            }
            "spawn-error" => {
                let _ = supervisor.wait().await;
                let (errno, message) = rest.split_once(' ').unwrap_or((rest, ""));
                let err = match errno.parse::<i32>() {
                    Ok(errno) if errno > 0 => std::io::Error::from_raw_os_error(errno),
                    _ => std::io::Error::other(message.to_owned()),
                };
                Err(spawn_error(program, spec.workdir.as_deref(), &err))
            }
            "error" => {
                let _ = supervisor.wait().await;
                Err(cannot("an error in", &rest))
            }
            _ => {
                let status = supervisor.wait().await;
                Err(cannot(
                    "no answer from",
                    &status.map_or_else(|err| err.to_string(), |s| s.to_string()),
                ))
            }
        }
    }

    fn stdout(&mut self) -> Option<ChildStdout> {
        match self {
            Self::Direct { child, .. } => child.stdout.take(),
            Self::Supervised { supervisor, .. } => supervisor.stdout.take(),
        }
    }

    fn stderr(&mut self) -> Option<ChildStderr> {
        match self {
            Self::Direct { child, .. } => child.stderr.take(),
            Self::Supervised { supervisor, .. } => supervisor.stderr.take(),
        }
    }

    /// Waits for the job's first process to exit. Cancel-safe.
    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Self::Direct { child, .. } => child.wait().await,
            Self::Supervised {
                replies,
                leader,
                ended,
                record,
                ..
            } => {
                if let Some(status) = ended {
                    return Ok(*status);
                }
                while let Some(line) = replies.next_line().await? {
                    if let Some(status) = exit_status(&line) {
                        *ended = Some(status);
                        return Ok(status);
                    }
                }
                // The supervisor is gone without a word (killed on its own): the job must
                // not outlive it unwatched, nor what it left outside its group.
                signal_group(Some(*leader), Signal::SIGKILL);
                if let Some(path) = record.take() {
                    for process in crate::supervise::kill_recorded(&path) {
                        tracing::warn!(%process, "killed a process whose supervisor died");
                    }
                }
                Err(std::io::Error::other(
                    "the job's process supervisor ended before the job",
                ))
            }
        }
    }

    /// `signal` to the group, then SIGKILL once the grace has passed, or at once when `kill`
    /// fires.
    async fn stop(&mut self, signal: Signal, grace: Duration, kill: &CancellationToken) {
        if !kill.is_cancelled() {
            self.signal(signal).await;
        }
        let ended = tokio::select! {
            ended = tokio::time::timeout(grace, self.wait()) => ended.is_ok(),
            () = kill.cancelled() => false,
        };
        if !ended {
            self.signal(Signal::SIGKILL).await;
        }
        // Reaps the leader (it is dead or dying by now).
        let _ = self.wait().await;
    }

    async fn signal(&mut self, signal: Signal) {
        match self {
            Self::Direct { group, .. } => signal_group(*group, signal),
            Self::Supervised { requests, .. } => {
                let request = match signal {
                    Signal::SIGKILL => "kill\n".to_owned(),
                    Signal::SIGTERM => "term\n".to_owned(),
                    other => format!("signal {}\n", other as i32),
                };
                // A supervisor that is gone has killed the job already.
                let _ = requests.write_all(request.as_bytes()).await;
            }
        }
    }

    /// Kills what the job left running once its first process has ended.
    async fn kill_rest(&mut self) {
        match self {
            Self::Direct { group, .. } => signal_group(*group, Signal::SIGKILL),
            Self::Supervised {
                supervisor, record, ..
            } => {
                // The supervisor has killed the rest before it reported the end, and exits.
                let _ = supervisor.wait().await;
                if let Some(path) = record.take() {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// The job's end from the supervisor's `exited code N` or `exited signal N`.
fn exit_status(line: &str) -> Option<ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    let rest = line.strip_prefix("exited ")?;
    if let Some(code) = rest.strip_prefix("code ") {
        return Some(ExitStatus::from_raw(
            (code.parse::<i32>().ok()? & 0xff) << 8,
        ));
    }
    let signal = rest.strip_prefix("signal ")?.parse::<i32>().ok()?;
    Some(ExitStatus::from_raw(signal & 0x7f))
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        // ESRCH: the group is already gone, which is the point.
        let _ = killpg(group, signal);
    }
}

fn exit_outcome(
    status: std::io::Result<ExitStatus>,
    logs: &LogSink,
) -> Result<RunOutcome, RuntimeError> {
    use std::os::unix::process::ExitStatusExt;
    let status =
        status.map_err(|err| RuntimeError::Transient(format!("waiting for the job: {err}")))?;
    if let Some(code) = status.code() {
        return Ok(if code == 0 {
            RunOutcome::Succeeded
        } else {
            RunOutcome::Failed { exit_code: code }
        });
    }
    let signal = status.signal().unwrap_or_default();
    let name =
        Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.to_string());
    logs.system(&format!("killed by {name}"));
    Ok(RunOutcome::Failed {
        exit_code: 128 + signal,
    })
}

fn spawn_error(program: &str, workdir: Option<&str>, err: &std::io::Error) -> RuntimeError {
    match err.kind() {
        ErrorKind::NotFound if workdir.is_some_and(|d| !std::path::Path::new(d).is_dir()) => {
            RuntimeError::Permanent(format!(
                "cannot start {program:?}: the working directory {:?} does not exist",
                workdir.unwrap_or_default()
            ))
        }
        ErrorKind::NotFound => RuntimeError::Permanent(format!(
            "cannot start {program:?}: no such program ({err}); give a path, or a program on \
             PATH={CLEAN_PATH}"
        )),
        ErrorKind::PermissionDenied => {
            RuntimeError::Permanent(format!("cannot start {program:?}: {err}"))
        }
        _ => RuntimeError::Transient(format!("cannot start {program:?}: {err}")),
    }
}
