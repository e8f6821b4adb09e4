//! Containers through the Docker Engine API (bollard), never the `docker` CLI.
//!
//! A run: make sure the image is there (the pull policy, progress in the logs), create the
//! container (env, limits, working dir, the `panda.execution` label, no TTY so stdout and
//! stderr stay apart), attach to its output and start it within the start deadline, stream the
//! output, wait for it (the end of the log stream is not the exit), map the exit (OOMKilled
//! included), store the logs, then report the outcome and remove the container in the
//! background. A timeout or a cancel stops it with a grace period, then kills it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    EventsOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use panda_core::LogStream;
use panda_core::human;
use panda_core::{Probe, RuntimeSpec};
use tokio_util::sync::CancellationToken;

use crate::{LogSink, RunOutcome, RunReport, RunSpec, Runtime, RuntimeError};

/// A container's attached output.
type Output = std::pin::Pin<Box<dyn futures::Stream<Item = Result<LogOutput, DockerError>> + Send>>;

/// The label every container Panda creates carries, with the execution's id.
pub const EXECUTION_LABEL: &str = "panda.execution";

/// The label naming the node that created a container: a node reaps only its own leftovers,
/// never the running containers of another node that shares the engine.
pub const NODE_LABEL: &str = "panda.node";

/// The label naming the life of the node process that created a container: its watcher
/// (`panda __watch`, see `watch.rs`) removes the containers carrying it when that process dies.
pub const INSTANCE_LABEL: &str = "panda.instance";

/// When an image is pulled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull only when the image is not there.
    #[default]
    IfNotPresent,
    /// Pull before every run.
    Always,
    /// Never pull: an image that is not there is an error.
    Never,
}

/// Runs jobs as Docker containers. See the module docs.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    pull: PullPolicy,
    start_deadline: Duration,
    node: String,
    /// Set once a watcher runs ([`DockerRuntime::watched`]); it lives as long as any clone.
    watcher: Option<std::sync::Arc<crate::watch::Watcher>>,
}

/// Requests that stream for as long as a job runs (logs, wait) must not time out.
const NO_REQUEST_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long after a container's exit the engine may still report its OOM kill.
const OOM_LATE_BY: Duration = Duration::from_secs(1);

impl DockerRuntime {
    /// Connects to the engine `DOCKER_HOST` names (the local socket by default) and agrees on
    /// an API version with it.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Transient`] when the engine does not answer.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        Self::connect_to(&host).await
    }

    /// [`DockerRuntime::connect`] to the engine at `host` (`unix:///…` or `tcp://…`).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Transient`] when the engine does not answer; `Permanent` for an address
    /// that cannot be one.
    pub async fn connect_to(host: &str) -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_host(host)
            .map_err(|err| RuntimeError::Permanent(format!("Docker host {host:?}: {err}")))?
            .with_timeout(NO_REQUEST_TIMEOUT);
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| {
                RuntimeError::Transient(format!(
                    "the Docker engine at {host} did not answer in 10s"
                ))
            })?
            .map_err(|err| {
                RuntimeError::Transient(format!(
                    "the Docker engine at {host} is unreachable: {err}"
                ))
            })?;
        Ok(Self {
            docker,
            pull: PullPolicy::default(),
            start_deadline: Duration::from_secs(300),
            node: host_name(),
            watcher: None,
        })
    }

    /// Labels this node's containers with `node` (default: the host name), the name
    /// [`DockerRuntime::reap_leftovers`] goes by. It must stay the same across restarts.
    #[must_use]
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// Starts a watcher (`program`, a `panda` binary, run as `panda __watch`) that removes this
    /// process' containers the moment this process dies, by any signal; the containers carry
    /// its [`INSTANCE_LABEL`]. Without one, a dead node's containers run on until a restart of
    /// the node reaps them ([`DockerRuntime::reap_leftovers`]).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Transient`] when the watcher cannot be started.
    pub fn watched(mut self, program: &std::path::Path) -> Result<Self, RuntimeError> {
        self.watcher = Some(std::sync::Arc::new(crate::watch::Watcher::start(program)?));
        Ok(self)
    }

    /// Removes (killing) every container carrying [`INSTANCE_LABEL`] `instance`, and returns
    /// how many: the watcher's work once its node has died.
    ///
    /// # Errors
    ///
    /// The engine's, classed.
    pub async fn remove_instance(&self, instance: &str) -> Result<usize, RuntimeError> {
        let label = format!("{INSTANCE_LABEL}={instance}");
        let filters = HashMap::from([("label", vec![label.as_str()])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(classify)?;
        let removals = containers
            .into_iter()
            .filter_map(|c| c.id)
            .map(|id| async move { self.remove(&id).await });
        let results = futures::future::join_all(removals).await;
        let removed = results.iter().filter(|r| r.is_ok()).count();
        results.into_iter().find(Result::is_err).transpose()?;
        Ok(removed)
    }

    /// Sets the pull policy (default [`PullPolicy::IfNotPresent`]).
    #[must_use]
    pub fn with_pull_policy(mut self, pull: PullPolicy) -> Self {
        self.pull = pull;
        self
    }

    /// A container that is not started within this long (pull included) is given up as a
    /// transient error, apart from the run's own timeout. Default 5 minutes.
    #[must_use]
    pub fn with_start_deadline(mut self, deadline: Duration) -> Self {
        self.start_deadline = deadline;
        self
    }

    /// Builds an image tagged `tag` holding only a static busybox (every applet on `/bin`),
    /// from the binary at `busybox`, through the engine's build API: the image the tests and
    /// `panda-bench runtime` run where no registry can be reached. Behind the `testing` feature:
    /// the server never builds images.
    ///
    /// # Errors
    ///
    /// Reading the binary, or the engine's, classed.
    #[cfg(feature = "testing")]
    pub async fn build_busybox_image(
        &self,
        tag: &str,
        busybox: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        self.build_busybox_image_with_cmd(tag, busybox, &[]).await
    }

    /// [`DockerRuntime::build_busybox_image`] with `cmd` as the image's command (none when
    /// empty): an image that does something when run with no command of its own.
    ///
    /// # Errors
    ///
    /// Reading the binary, or the engine's, classed.
    #[cfg(feature = "testing")]
    pub async fn build_busybox_image_with_cmd(
        &self,
        tag: &str,
        busybox: &std::path::Path,
        cmd: &[&str],
    ) -> Result<(), RuntimeError> {
        let binary = std::fs::read(busybox).map_err(|err| {
            RuntimeError::Permanent(format!(
                "reading {} (Debian's busybox-static): {err}",
                busybox.display()
            ))
        })?;
        let mut dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\n\
                              RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
            .to_owned();
        if !cmd.is_empty() {
            let cmd = serde_json::to_string(cmd)
                .map_err(|err| RuntimeError::Permanent(format!("the image's command: {err}")))?;
            dockerfile.push_str(&format!("CMD {cmd}\n"));
        }
        let mut context = tar::Builder::new(Vec::new());
        for (name, bytes, mode) in [
            ("Dockerfile", dockerfile.as_bytes(), 0o644),
            ("busybox", binary.as_slice(), 0o755),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(mode);
            header.set_cksum();
            context
                .append_data(&mut header, name, bytes)
                .map_err(|err| RuntimeError::Permanent(format!("building the context: {err}")))?;
        }
        let context = context
            .into_inner()
            .map_err(|err| RuntimeError::Permanent(format!("building the context: {err}")))?;
        let options = bollard::query_parameters::BuildImageOptionsBuilder::new()
            .t(tag)
            .rm(true)
            .build();
        let mut build =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(step) = build.next().await {
            let step = step.map_err(classify)?;
            if let Some(error) = step.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::Permanent(format!("building {tag}: {error}")));
            }
        }
        Ok(())
    }

    /// Removes the containers this node left behind when it crashed (those carrying
    /// [`EXECUTION_LABEL`] and this node's [`NODE_LABEL`]), and returns how many. Call it at
    /// start-up, before running anything. Other nodes' containers are left alone.
    ///
    /// # Errors
    ///
    /// The engine's, classed.
    pub async fn reap_leftovers(&self) -> Result<usize, RuntimeError> {
        let node = format!("{NODE_LABEL}={}", self.node);
        let filters = HashMap::from([("label", vec![EXECUTION_LABEL, node.as_str()])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let leftovers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(classify)?;
        let mut removed = 0;
        for container in leftovers {
            let Some(id) = container.id else { continue };
            self.remove(&id).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes a container (by id or name) if it exists; a failure is logged and left to the
    /// start-up reaper.
    async fn remove_quietly(&self, id: &str) {
        if let Err(err) = self.remove(id).await {
            tracing::warn!(container = id, %err, "removing a container failed; the next start removes it");
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(err) => Err(classify(err)),
        }
    }

    /// Makes sure `image` is there, under the pull policy, reporting the pull in the logs, and
    /// returns its digest (the digest the registry knows it by, or its own id).
    async fn ensure_image(
        &self,
        image: &str,
        logs: &LogSink,
    ) -> Result<Option<String>, RuntimeError> {
        let present = match self.docker.inspect_image(image).await {
            Ok(inspected) if self.pull != PullPolicy::Always => {
                return Ok(digest_of(inspected));
            }
            Ok(_) => true,
            Err(DockerError::DockerResponseServerError {
                status_code: 404,
                message,
            }) => {
                if self.pull == PullPolicy::Never {
                    return Err(RuntimeError::Permanent(format!(
                        "image {image} is not present and the pull policy is never: {message}"
                    )));
                }
                false
            }
            Err(err) => return Err(classify(err)),
        };
        logs.system(&format!(
            "pulling image {image}{}",
            if present { " (pull policy always)" } else { "" }
        ));
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut progress = self.docker.create_image(Some(options), None, None);
        let mut last_status = String::new();
        let mut bytes = PullProgress::default();
        while let Some(item) = progress.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(pull_error(image, &detail));
                    }
                    let status = info.status.unwrap_or_default();
                    if let Some(line) = bytes.note(
                        info.id.as_deref(),
                        &status,
                        info.progress_detail.as_ref(),
                        std::time::Instant::now(),
                    ) {
                        logs.system(&line);
                    }
                    // One line per change of status, not one per progress tick.
                    if !status.is_empty() && status != last_status {
                        logs.system(&format!("pull: {status}"));
                        last_status = status;
                    }
                }
                Err(DockerError::DockerStreamError { error }) => {
                    return Err(pull_error(image, &error));
                }
                Err(DockerError::DockerResponseServerError { message, .. }) => {
                    return Err(pull_error(image, &message));
                }
                Err(err) => return Err(classify(err)),
            }
        }
        let inspected = self.docker.inspect_image(image).await.map_err(classify)?;
        Ok(digest_of(inspected))
    }

    /// Creates the container, attaches to its output, then starts it: attached before the
    /// start, no output is missed, and the stream comes from the container itself, not from
    /// the engine's log files (which a fast writer can rotate away before they are read).
    async fn create_and_start(
        &self,
        spec: &RunSpec,
        image: &str,
        command: Option<&Vec<String>>,
        logs: &LogSink,
    ) -> Result<(String, Output, Option<String>), RuntimeError> {
        let digest = self.ensure_image(image, logs).await?;
        let env: Vec<String> = spec
            .env
            .iter()
            .chain(&spec.secret_env)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let host_config = HostConfig {
            memory: spec.limits.memory_bytes.and_then(|m| i64::try_from(m).ok()),
            // Whole nano-CPUs: 1.5 cores is 1.5e9.
            #[allow(clippy::cast_possible_truncation)]
            nano_cpus: spec.limits.cpus.map(|c| (c * 1e9) as i64),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: command.cloned(),
            env: Some(env),
            working_dir: spec.workdir.clone(),
            labels: Some(
                [
                    (EXECUTION_LABEL.to_owned(), spec.execution_id.to_string()),
                    (NODE_LABEL.to_owned(), self.node.clone()),
                ]
                .into_iter()
                .chain(
                    self.watcher
                        .as_ref()
                        .map(|w| (INSTANCE_LABEL.to_owned(), w.instance().to_owned())),
                )
                .collect(),
            ),
            tty: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
        let name = container_name(spec);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = match self
            .docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            // A container of this execution is left from an earlier run of it (a node that
            // died, a start given up): it is this execution's own, so it goes.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                logs.system(&format!("removing container {name} left by an earlier run"));
                self.remove(&name).await?;
                self.docker.create_container(Some(options), body).await
            }
            other => other,
        }
        .map_err(classify)?;
        let attach = AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attached = match self
            .docker
            .attach_container(&created.id, Some(attach))
            .await
        {
            Ok(attached) => attached,
            Err(err) => {
                let _ = self.remove(&created.id).await;
                return Err(classify(err));
            }
        };
        if let Err(err) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove(&created.id).await;
            return Err(classify(err));
        }
        Ok((created.id, attached.output, digest))
    }

    /// Waits for the container to stop and returns its exit code.
    async fn wait(&self, id: &str) -> Result<i64, RuntimeError> {
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut wait = self.docker.wait_container(id, Some(options));
        match wait.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit as an error: it is an exit code.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(err)) => Err(classify(err)),
            None => Err(RuntimeError::Transient(format!(
                "the engine stopped answering about container {id}"
            ))),
        }
    }

    /// Whether the container that exited on a SIGKILL was killed for its memory. The engine's
    /// `OOMKilled` flag is not enough: when its OOM event comes after the exit, the flag stays
    /// false for good, though the event is logged (2 of 30 containers OOM-killed at once on a
    /// loaded machine). With a memory limit set, a "no" is checked against the engine's log of
    /// events since the container was created, for up to [`OOM_LATE_BY`].
    async fn oom_killed(&self, id: &str, memory_limit: Option<u64>) -> bool {
        let asked_at = tokio::time::Instant::now();
        loop {
            let state = self.docker.inspect_container(id, None).await.ok();
            let created = state.as_ref().and_then(|c| c.created.clone());
            if state
                .and_then(|c| c.state)
                .and_then(|s| s.oom_killed)
                .unwrap_or(false)
            {
                return true;
            }
            if memory_limit.is_none() {
                return false;
            }
            if self.oom_event_of(id, created.as_deref()).await {
                return true;
            }
            if asked_at.elapsed() >= OOM_LATE_BY {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the engine logged an `oom` event for the container since it was `created`
    /// (RFC 3339, as inspect gives it).
    async fn oom_event_of(&self, id: &str, created: Option<&str>) -> bool {
        let since = created
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map_or_else(
                || chrono::Utc::now() - chrono::TimeDelta::days(1),
                |c| c.to_utc(),
            );
        let unix = |t: chrono::DateTime<chrono::Utc>| {
            format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
        };
        let options = EventsOptionsBuilder::new()
            .since(&unix(since - chrono::TimeDelta::seconds(1)))
            .until(&unix(chrono::Utc::now()))
            .filters(&HashMap::from([
                ("container", vec![id]),
                ("event", vec!["oom"]),
            ]))
            .build();
        let mut events = self.docker.events(Some(options));
        matches!(events.next().await, Some(Ok(_)))
    }

    async fn stop(&self, id: &str, grace: Duration) {
        self.stop_with(id, "SIGTERM", grace, &CancellationToken::new())
            .await;
    }

    /// `signal` to the container's process, then SIGKILL after `grace`, or at once when `kill`
    /// fires. Sent with kill requests and the grace counted here, since engines before API
    /// 1.42 take no signal on stop.
    async fn stop_with(&self, id: &str, signal: &str, grace: Duration, kill: &CancellationToken) {
        if !kill.is_cancelled() {
            let options = KillContainerOptionsBuilder::new().signal(signal).build();
            match self.docker.kill_container(id, Some(options)).await {
                Ok(()) => {
                    let ended = tokio::select! {
                        ended = tokio::time::timeout(grace, self.wait(id)) => ended.is_ok(),
                        () = kill.cancelled() => false,
                    };
                    if ended {
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(container = id, %err, signal, "signalling a container failed; killing it");
                }
            }
        }
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match self.docker.kill_container(id, Some(options)).await {
            // 409: it is not running any more.
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(err) => tracing::warn!(container = id, %err, "killing a container failed"),
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn run(
        &self,
        spec: &RunSpec,
        logs: LogSink,
        cancel: CancellationToken,
    ) -> Result<RunReport, RuntimeError> {
        let RuntimeSpec::Image { image, command } = &spec.runtime else {
            return Err(RuntimeError::Permanent(
                "this job runs a local program; the Docker runtime runs images (--image)".into(),
            ));
        };
        let started = tokio::select! {
            started = tokio::time::timeout(
                self.start_deadline,
                self.create_and_start(spec, image, command.as_ref(), &logs),
            ) => started,
            () = cancel.cancelled() => {
                logs.system("cancelled before the container started");
                // It may have been created already: nothing of it may stay behind.
                self.remove_quietly(&container_name(spec)).await;
                let log_error = finish_logs(logs).await;
                return Ok(RunReport { outcome: RunOutcome::Cancelled, image_digest: None, log_error });
            }
        };
        let (id, mut stream, image_digest) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(err)) => {
                logs.system(&err.to_string());
                finish_logs(logs).await;
                return Err(err);
            }
            Err(_) => {
                let err = RuntimeError::Transient(format!(
                    "the container did not start within the start deadline of {}s",
                    self.start_deadline.as_secs()
                ));
                logs.system(&err.to_string());
                self.remove_quietly(&container_name(spec)).await;
                finish_logs(logs).await;
                return Err(err);
            }
        };

        let reader_logs = logs.clone();
        let reader = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => {
                        reader_logs.write(LogStream::Stdout, &message);
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        reader_logs.write(LogStream::Stderr, &message);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        reader_logs.system(&format!("reading the container's logs failed: {err}"));
                        return;
                    }
                }
            }
        });

        let stopped = tokio::select! {
            code = self.wait(&id) => Ok(code),
            () = crate::process::sleep_or_never(spec.timeout) => Err(RunOutcome::TimedOut),
            () = cancel.cancelled() => Err(RunOutcome::Cancelled),
            () = spec.kill.cancelled() => Err(RunOutcome::Cancelled),
        };
        let outcome = match stopped {
            Ok(Err(err)) => {
                // Lost track of it: stop it, so an error never leaves a job running unwatched.
                logs.system(&format!(
                    "waiting for the container failed: {err}; stopping it"
                ));
                self.stop(&id, spec.kill_grace).await;
                Err(err)
            }
            Ok(Ok(code)) => {
                // The kernel's OOM kill is a SIGKILL: only then is there anything to ask.
                let oom = code == 137 && self.oom_killed(&id, spec.limits.memory_bytes).await;
                if oom {
                    logs.system("killed for using more memory than its limit (OOMKilled)");
                    Ok(RunOutcome::OomKilled)
                } else if code == 137
                    && let Some(limit) = spec.limits.memory_bytes
                {
                    logs.system(&format!(
                        "killed by SIGKILL (exit 137); the engine reported no OOM kill, but \
                         a process that takes more than the memory limit ({} MiB) in its \
                         first moments is killed before the engine watches for it: if the \
                         job needs more memory, raise --memory",
                        limit / (1024 * 1024)
                    ));
                    Ok(RunOutcome::Failed { exit_code: 137 })
                } else if code == 0 {
                    Ok(RunOutcome::Succeeded)
                } else {
                    Ok(RunOutcome::Failed {
                        exit_code: i32::try_from(code).unwrap_or(i32::MAX),
                    })
                }
            }
            Err(outcome) => {
                let why = match spec.timeout {
                    Some(timeout) if outcome == RunOutcome::TimedOut => {
                        format!("timed out after {}", human::exact(timeout))
                    }
                    _ => "cancelled".to_owned(),
                };
                if spec.kill.is_cancelled() {
                    logs.system("killed at once: this copy must not run any longer");
                } else {
                    logs.system(&format!(
                        "{why}: stopping the container ({}, then SIGKILL after {})",
                        spec.stop_signal,
                        human::exact(spec.kill_grace)
                    ));
                }
                self.stop_with(&id, spec.stop_signal.name(), spec.kill_grace, &spec.kill)
                    .await;
                Ok(outcome)
            }
        };
        if let Err(err) = reader.await {
            tracing::warn!(%err, "the container log reader failed");
        }
        let log_error = finish_logs(logs).await;
        // Its logs are stored: the container has nothing left to give. It is removed off the
        // run's path (tens of milliseconds of the engine's time that the next run need not wait
        // for); one that cannot be removed, or a removal cut short by a shutdown, is the
        // start-up reaper's.
        let runtime = self.clone();
        tokio::spawn(async move { runtime.remove_quietly(&id).await });
        Ok(RunReport {
            outcome: outcome?,
            image_digest,
            log_error,
        })
    }

    async fn probe(&self, spec: &RunSpec, probe: &Probe, timeout: Duration) -> Result<(), String> {
        match probe {
            Probe::Http { url } => crate::probe_http(url, timeout).await,
            Probe::Command { command } => {
                let container = container_name(spec);
                match tokio::time::timeout(timeout, self.exec_probe(&container, command)).await {
                    Ok(result) => result,
                    Err(_) => {
                        self.kill_probe(&container).await;
                        Err(format!(
                            "the health check did not end within {} and was killed",
                            human::exact(timeout)
                        ))
                    }
                }
            }
        }
    }
}

/// The name of the file in the container's `/tmp` (or `/`) where a command probe writes its shell's
/// pid: how a probe that outlives its timeout is found and killed (the engine cannot kill an
/// exec).
const PROBE_MARK: &str = "panda-probe-pid";

/// Where that file goes: `/tmp`, or `/` in an image without one (a `FROM scratch` image).
const PROBE_DIR: &str = "d=/tmp; [ -d \"$d\" ] || d=;";

impl DockerRuntime {
    /// Runs `sh -c command` in the container (with the container's environment and working
    /// directory) and waits for its end; exit 0 is healthy.
    async fn exec_probe(&self, container: &str, command: &str) -> Result<(), String> {
        let config = bollard::models::ExecConfig {
            // The shell writes down its pid, then becomes the check: a check that runs too
            // long is killed by that pid, in a later exec.
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "{PROBE_DIR} {{ echo $$ > \"$d/.{PROBE_MARK}\"; }} 2>/dev/null; exec sh -c \"$0\""
                ),
                command.to_owned(),
            ]),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(container, config)
            .await
            .map_err(|err| format!("cannot run the health check in the container: {err}"))?;
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|err| format!("cannot run the health check in the container: {err}"))?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => stdout.extend_from_slice(&message),
                    Ok(LogOutput::StdErr { message }) => stderr.extend_from_slice(&message),
                    Ok(_) => {}
                    Err(err) => return Err(format!("reading the health check's output: {err}")),
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|err| format!("reading the health check's end: {err}"))?;
        match inspected.exit_code {
            Some(0) => Ok(()),
            Some(code) => Err(crate::probe::failed_command(
                i32::try_from(code).ok(),
                &stdout,
                &stderr,
            )),
            None => Err("the health check's end is unknown to the engine".into()),
        }
    }

    /// Kills a probe that outlived its timeout, by the pid it wrote in the container.
    async fn kill_probe(&self, container: &str) {
        let config = bollard::models::ExecConfig {
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "{PROBE_DIR} kill -9 $(cat \"$d/.{PROBE_MARK}\") 2>/dev/null; rm -f \"$d/.{PROBE_MARK}\""
                ),
            ]),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            ..Default::default()
        };
        let killed = async {
            let exec = self.docker.create_exec(container, config).await?;
            self.docker
                .start_exec(
                    &exec.id,
                    Some(bollard::exec::StartExecOptions {
                        detach: true,
                        ..Default::default()
                    }),
                )
                .await
                .map(|_| ())
        };
        if let Err(err) = tokio::time::timeout(Duration::from_secs(10), killed)
            .await
            .unwrap_or_else(|_| Err(DockerError::RequestTimeoutError))
        {
            tracing::warn!(container, %err, "killing a health check that timed out failed");
        }
    }
}

/// The name of an execution's container: one per execution, so a second create of it finds
/// the first.
fn container_name(spec: &RunSpec) -> String {
    format!("panda-{}", spec.execution_id)
}

/// How much of an image pull has arrived, over all its layers, from the engine's progress
/// reports: the pull's progress as log lines (`pull: downloading 12.3 of 45.6 MB (3 layers)`),
/// at most one every [`PullProgress::EVERY`], which `panda … --wait` turns into a bar.
#[derive(Debug, Default)]
struct PullProgress {
    /// Per layer: bytes downloaded, bytes in all.
    layers: HashMap<String, (u64, u64)>,
    said_at: Option<std::time::Instant>,
}

impl PullProgress {
    const EVERY: Duration = Duration::from_millis(500);

    /// Notes one report; returns a line when there is progress to tell and the last line is
    /// old enough.
    fn note(
        &mut self,
        layer: Option<&str>,
        status: &str,
        detail: Option<&bollard::models::ProgressDetail>,
        now: std::time::Instant,
    ) -> Option<String> {
        let layer = layer?;
        match status {
            "Downloading" => {
                let detail = detail?;
                let current = u64::try_from(detail.current?).ok()?;
                let total = u64::try_from(detail.total?).ok()?;
                self.layers.insert(layer.to_owned(), (current, total));
            }
            "Download complete" | "Pull complete" | "Already exists" => {
                if let Some((current, total)) = self.layers.get_mut(layer) {
                    *current = *total;
                }
                return None;
            }
            _ => return None,
        }
        if self
            .said_at
            .is_some_and(|at| now.duration_since(at) < Self::EVERY)
        {
            return None;
        }
        self.said_at = Some(now);
        let (done, total) = self
            .layers
            .values()
            .fold((0, 0), |(d, t), (current, all)| (d + current, t + all));
        #[allow(clippy::cast_precision_loss)]
        let mb = |bytes: u64| bytes as f64 / 1_000_000.0;
        Some(format!(
            "pull: downloading {:.1} of {:.1} MB ({} layers)",
            mb(done),
            mb(total),
            self.layers.len()
        ))
    }
}

/// This machine's host name (`panda` when it has none): the node name when none is given,
/// which a restart keeps.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "panda".to_owned())
}

fn digest_of(inspected: bollard::models::ImageInspect) -> Option<String> {
    inspected
        .repo_digests
        .and_then(|d| d.into_iter().next())
        .or(inspected.id)
}

/// Flushes the logs; says what went wrong when some could not be stored (the run's outcome
/// stands either way).
async fn finish_logs(logs: LogSink) -> Option<String> {
    logs.finish().await.err().map(|err| {
        tracing::warn!(%err, "the run's logs could not all be stored");
        format!("some output could not be stored: {err}")
    })
}

/// An engine error, classed: what the engine refused is permanent (400, 404, 409), what it
/// could not do or a lost connection is transient.
fn classify(err: DockerError) -> RuntimeError {
    match err {
        DockerError::DockerResponseServerError {
            status_code: 400 | 404 | 409,
            message,
        } => RuntimeError::Permanent(message),
        DockerError::DockerResponseServerError { message, .. } => RuntimeError::Transient(message),
        other => RuntimeError::Transient(format!("the Docker engine: {other}")),
    }
}

/// A failed pull: the image does not exist (permanent), or the registry cannot be reached
/// (transient).
fn pull_error(image: &str, message: &str) -> RuntimeError {
    let lower = message.to_lowercase();
    let missing = [
        "not found",
        "does not exist",
        "manifest unknown",
        "pull access denied",
    ]
    .iter()
    .any(|m| lower.contains(m));
    let text = format!("pulling image {image} failed: {message}");
    if missing {
        RuntimeError::Permanent(text)
    } else {
        RuntimeError::Transient(text)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bollard::models::ProgressDetail;

    use super::PullProgress;

    fn detail(current: i64, total: i64) -> Option<ProgressDetail> {
        Some(ProgressDetail {
            current: Some(current),
            total: Some(total),
        })
    }

    #[test]
    fn pull_progress_sums_the_layers_at_most_twice_a_second() {
        let mut progress = PullProgress::default();
        let start = Instant::now();
        let first = progress.note(
            Some("a"),
            "Downloading",
            detail(1_000_000, 4_000_000).as_ref(),
            start,
        );
        assert_eq!(
            first.as_deref(),
            Some("pull: downloading 1.0 of 4.0 MB (1 layers)")
        );
        // Too soon for another line, but counted.
        let soon = start + Duration::from_millis(100);
        assert_eq!(
            progress.note(
                Some("b"),
                "Downloading",
                detail(500_000, 1_000_000).as_ref(),
                soon
            ),
            None
        );
        assert_eq!(
            progress.note(Some("a"), "Download complete", None, soon),
            None
        );
        let later = start + Duration::from_millis(600);
        let line = progress.note(
            Some("b"),
            "Downloading",
            detail(1_000_000, 1_000_000).as_ref(),
            later,
        );
        assert_eq!(
            line.as_deref(),
            Some("pull: downloading 5.0 of 5.0 MB (2 layers)")
        );
        // Reports without a layer or bytes say nothing.
        assert_eq!(
            progress.note(
                None,
                "Pulling fs layer",
                None,
                later + Duration::from_secs(1)
            ),
            None
        );
        assert_eq!(
            progress.note(Some("c"), "Waiting", None, later + Duration::from_secs(1)),
            None
        );
    }
}
