//! Local processes: argv run directly (no shell), a clean environment plus the job's, in a
//! process group of its own, so that a timeout, a cancel or the end of the job takes every
//! process it started with it.

use std::io::ErrorKind;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use panda_core::LogStream;
use panda_core::RuntimeSpec;
use panda_core::human;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

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
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessRuntime;

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
        let mut child = command
            .spawn()
            .map_err(|err| spawn_error(program, spec.workdir.as_deref(), &err))?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let readers = [
            child
                .stdout
                .take()
                .map(|out| tokio::spawn(pump(out, logs.clone(), LogStream::Stdout))),
            child
                .stderr
                .take()
                .map(|err| tokio::spawn(pump(err, logs.clone(), LogStream::Stderr))),
        ];

        let outcome = tokio::select! {
            status = child.wait() => Ended::Exited(status),
            () = tokio::time::sleep(spec.timeout) => Ended::Stopped(RunOutcome::TimedOut),
            () = cancel.cancelled() => Ended::Stopped(RunOutcome::Cancelled),
        };
        let outcome = match outcome {
            Ended::Exited(status) => exit_outcome(status, &logs),
            Ended::Stopped(outcome) => {
                let why = if outcome == RunOutcome::TimedOut {
                    format!("timed out after {}", human::exact(spec.timeout))
                } else {
                    "cancelled".to_owned()
                };
                logs.system(&format!(
                    "{why}: sending SIGTERM, then SIGKILL after {}",
                    human::exact(spec.kill_grace)
                ));
                stop(&mut child, group, spec.kill_grace).await;
                Ok(outcome)
            }
        };
        // Whatever the job left running in its group goes with it; this also closes the
        // pipes those processes held, so the readers see their end.
        signal_group(group, Signal::SIGKILL);
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

/// SIGTERM to the group, then SIGKILL once the grace has passed.
async fn stop(child: &mut Child, group: Option<Pid>, grace: Duration) {
    signal_group(group, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(group, Signal::SIGKILL);
    }
    // Reaps the leader (it is dead or dying by now).
    let _ = child.wait().await;
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
