//! The container watcher: one small process per node that removes the node's running
//! containers the moment the node dies.
//!
//! A container is the engine's child, not the node's: when a node dies its containers run on,
//! and another node runs the same executions again once their leases expire. The node starts
//! `panda __watch --instance ID` (an internal command, not in `--help`) with its stdin one end
//! of a Unix socket pair whose other end only the node holds (close-on-exec). The kernel closes
//! the node's end when the node dies, by any signal; the watcher reads end of file, removes
//! (kills) every container labelled with the node's instance ([`crate::INSTANCE_LABEL`]), and
//! exits. On the same engine that takes about as long as the engine takes to kill a container.
//!
//! The window that remains: a watcher killed with its node (an OOM kill of both, a `kill -9` of
//! the whole process group, the machine itself dying) or an engine on another host that the
//! watcher cannot reach. Then the containers run to their end, or until the node restarts and
//! reaps them ([`crate::DockerRuntime::reap_leftovers`]); their executions' leases expire and
//! they run again elsewhere meanwhile.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use crate::{DockerRuntime, RuntimeError};

/// The internal command that runs the watcher: `panda __watch --instance ID`.
pub const WATCH_COMMAND: &str = "__watch";

/// A running watcher, held by the node: dropping it (or the node's death) sets the watcher off.
#[derive(Debug)]
pub(crate) struct Watcher {
    instance: String,
    _channel: UnixStream,
    _child: std::process::Child,
}

impl Watcher {
    /// Starts `program __watch` for a new instance id.
    pub(crate) fn start(program: &Path) -> Result<Self, RuntimeError> {
        let instance = instance_id();
        let cannot = |err: std::io::Error| {
            RuntimeError::Transient(format!(
                "cannot start the container watcher {}: {err}",
                program.display()
            ))
        };
        let (node_end, watcher_end) = UnixStream::pair().map_err(cannot)?;
        let child = Command::new(program)
            .arg0("panda")
            .args([WATCH_COMMAND, "--instance", &instance])
            .stdin(Stdio::from(OwnedFd::from(watcher_end)))
            .stdout(Stdio::null())
            // Not in the node's group: a Ctrl-C at the node's terminal must not stop it first.
            .process_group(0)
            .spawn()
            .map_err(cannot)?;
        Ok(Self {
            instance,
            _channel: node_end,
            _child: child,
        })
    }

    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }
}

/// This process' life: the host, the pid and the time it started, unique on the engine.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{host}-{}-{nanos:x}", std::process::id())
}

/// Runs the watcher; `args` are those after [`WATCH_COMMAND`].
pub fn watch(args: Vec<OsString>) -> ExitCode {
    let instance = match args.as_slice() {
        [flag, id] if flag == "--instance" => id.to_string_lossy().into_owned(),
        _ => {
            eprintln!(
                "error: usage: panda {WATCH_COMMAND} --instance ID\nhint: it is run by `panda server` and `panda worker` to watch their containers; it is not a command to run yourself"
            );
            return ExitCode::from(2);
        }
    };
    let mut channel = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(err) => {
            eprintln!("error: cannot use stdin: {err}");
            return ExitCode::from(2);
        }
    };
    if channel.local_addr().is_err() {
        eprintln!(
            "error: stdin is not the node's socket\nhint: `panda {WATCH_COMMAND}` is started by `panda server` and `panda worker`"
        );
        return ExitCode::from(2);
    }
    let mut buffer = [0u8; 64];
    loop {
        match channel.read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("panda watcher: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let removed = runtime.block_on(async {
        DockerRuntime::connect()
            .await?
            .remove_instance(&instance)
            .await
    });
    match removed {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!(
                "panda watcher: the node {instance} is gone; removed its {n} running containers"
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!(
                "panda watcher: the node {instance} is gone, but its containers could not be removed: {err}"
            );
            ExitCode::FAILURE
        }
    }
}
