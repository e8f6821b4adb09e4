//! Runtimes run one execution each: a local process ([`ProcessRuntime`]) or a Docker container
//! ([`DockerRuntime`]). Both stream the output into a [`LogSink`], which batches it into the store, caps
//! it, masks secrets and broadcasts it live; both honour a timeout and cancellation.
//!
//! A job that fails is an outcome ([`RunOutcome::Failed`], [`RunOutcome::TimedOut`], …), not an
//! error: a [`RuntimeError`] means the execution could not run at all, and says whether trying
//! again can help.
//!
//! A service's instance runs with no timeout and is stopped with its own signal and stop
//! timeout (both in [`RunSpec`]); while it runs, [`Runtime::probe`] checks its health beside it
//! (a command next to the process or in the container, or an HTTP GET from the node).
//!
//! A node's work dies with the node: a local process runs under a small supervisor process
//! (`panda __supervise`, see `supervise.rs`) that kills the job's whole process tree when the
//! node dies by any signal, and a restarted node kills what survived even that ([`Records`]).
//! A node's containers are removed by its watcher (`panda __watch`, see `watch.rs`) when it
//! dies.

mod docker;
mod logs;
mod probe;
mod process;
mod supervise;
mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use panda_core::{ExecutionId, JobSpec, Limits, Probe, RuntimeSpec, StopSignal};
use tokio_util::sync::CancellationToken;

pub use docker::{
    DockerRuntime, EXECUTION_LABEL, INSTANCE_LABEL, NODE_LABEL, PullPolicy, host_name,
};
pub use logs::{DEFAULT_LOG_CAP, LogConfig, LogSink, LogSummary};
pub use probe::probe_http;
pub use process::{ProcessRuntime, SELF_EXE};
pub use supervise::{Reaped, Records, SUPERVISE_COMMAND, supervise};
pub use watch::{WATCH_COMMAND, watch};

/// How long a job asked to stop (timeout, cancel) gets before it is killed.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// Everything a runtime needs to run one execution.
#[derive(Clone)]
pub struct RunSpec {
    /// The execution, for labels and log lines.
    pub execution_id: ExecutionId,
    /// What to run.
    pub runtime: RuntimeSpec,
    /// The environment, on top of a clean one: the job's, the execution's overrides and the
    /// `PANDA_*` variables.
    pub env: BTreeMap<String, String>,
    /// Secret environment: set like `env`, and masked in the logs.
    pub secret_env: BTreeMap<String, String>,
    /// The working directory; `None` for the runtime's default.
    pub workdir: Option<String>,
    /// Resource limits (containers).
    pub limits: Limits,
    /// Stopped after this long, as [`RunOutcome::TimedOut`]; `None` runs it until it ends or
    /// is cancelled (a service's instance).
    pub timeout: Option<Duration>,
    /// Sent to the whole process group or container to ask it to stop (timeout, cancel).
    pub stop_signal: StopSignal,
    /// How long a stop request is given before the kill.
    pub kill_grace: Duration,
    /// Fired to kill the run at once, without the stop signal's grace: a copy of a service
    /// instance whose lease moved on to another node must not run a moment longer. A run
    /// ends as [`RunOutcome::Cancelled`] either way.
    pub kill: CancellationToken,
}

impl fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunSpec")
            .field("execution_id", &self.execution_id)
            .field("runtime", &self.runtime)
            .field("env", &self.env)
            .field("secret_env", &self.secret_env.keys().collect::<Vec<_>>())
            .field("workdir", &self.workdir)
            .field("limits", &self.limits)
            .field("timeout", &self.timeout)
            .field("stop_signal", &self.stop_signal)
            .field("kill_grace", &self.kill_grace)
            .field("killed", &self.kill.is_cancelled())
            .finish()
    }
}

impl RunSpec {
    /// The run of `job` as execution `execution_id`, with `env` added to the job's own. A
    /// service's instance has no timeout and stops with the service's signal and stop timeout.
    pub fn for_job(
        job: &JobSpec,
        execution_id: ExecutionId,
        env: &BTreeMap<String, String>,
    ) -> Self {
        let mut all = job.env.clone();
        all.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self {
            execution_id,
            runtime: job.runtime.clone(),
            env: all,
            secret_env: job.secret_env.clone(),
            workdir: job.workdir.clone(),
            limits: job.limits,
            timeout: job.service.is_none().then_some(job.timeout),
            stop_signal: job
                .service
                .as_ref()
                .map_or(StopSignal::TERM, |s| s.stop_signal.clone()),
            kill_grace: job
                .service
                .as_ref()
                .map_or(DEFAULT_KILL_GRACE, |s| s.stop_timeout),
            kill: CancellationToken::new(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Exit code 0.
    Succeeded,
    /// A non-zero exit; a process killed by a signal reports 128 + the signal's number, as a
    /// shell does (and a log line names the signal).
    Failed {
        /// The exit code.
        exit_code: i32,
    },
    /// Stopped at its timeout.
    TimedOut,
    /// Killed by the kernel for using more memory than its limit.
    OomKilled,
    /// Stopped on request.
    Cancelled,
}

/// What a run reports besides its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// How it ended.
    pub outcome: RunOutcome,
    /// The image digest that ran (containers).
    pub image_digest: Option<String>,
    /// Set when some of the output could not be stored (the store failed past every retry):
    /// the run itself ended as `outcome`, and must not be run again for this.
    pub log_error: Option<String>,
}

/// Why an execution could not run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// Trying again will not help: a bad spec, a missing image or program. The message is the
    /// engine's or the system's own.
    #[error("{0}")]
    Permanent(String),
    /// Trying again may help: the engine is down or out of resources.
    #[error("{0}")]
    Transient(String),
}

impl RuntimeError {
    /// Whether a retry may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Runs executions. See the crate docs.
#[async_trait]
pub trait Runtime: Send + Sync + fmt::Debug {
    /// Runs `spec` to its end, its output into `logs`, stopping it when `cancel` fires. The
    /// logs are flushed to the store before this returns.
    async fn run(
        &self,
        spec: &RunSpec,
        logs: LogSink,
        cancel: CancellationToken,
    ) -> Result<RunReport, RuntimeError>;

    /// Checks once, within `timeout`, whether the running `spec` is healthy: `Ok` when the
    /// probe passed, `Err` with what went wrong otherwise. A command that outlives the
    /// timeout is killed. The default runs HTTP probes from the node and refuses command
    /// probes; the process and Docker runtimes run those beside the process or in the
    /// container.
    async fn probe(&self, spec: &RunSpec, probe: &Probe, timeout: Duration) -> Result<(), String> {
        let _ = spec;
        match probe {
            Probe::Http { url } => probe_http(url, timeout).await,
            Probe::Command { .. } => {
                Err("this runtime cannot run a command health check; use an HTTP check".into())
            }
        }
    }
}
