//! The process supervisor: one small process per execution, between the node and the job, so
//! that the job dies with the node however the node dies (SIGKILL included).
//!
//! A job's processes are not the node's threads: when the node is killed they are re-parented
//! to init and run on, while the execution's lease expires and another node runs it again. The
//! supervisor closes that gap. It is the `panda` binary itself, re-run as `panda __supervise`
//! (an internal command, not in `--help`), and it:
//!
//! - makes itself a *child subreaper*, so whatever the job starts and leaves behind (a
//!   double fork, `setsid`, a daemon) is re-parented to it rather than to init;
//! - starts the job (argv, the environment it was given, the working dir, stdin `/dev/null`,
//!   stdout and stderr inherited: the node's log pipes) in a process group of its own;
//! - reads its stdin, one end of a Unix socket pair whose other end only the node holds
//!   (close-on-exec, so no other child inherits it). End of file there means the node is gone:
//!   the supervisor SIGKILLs the job's group and every descendant it has, reaps them, and
//!   exits. The kernel closes the node's end the moment the node dies, for any reason, so this
//!   needs no polling and no timer;
//! - takes the node's requests on the same socket (`term`: SIGTERM the group, for a timeout or
//!   a cancel; `signal N`: signal N to the group, a service's stop signal; `kill`: SIGKILL
//!   everything) and reports the job's start (`started PID`, or
//!   `spawn-error ERRNO MESSAGE` so "no such program" stays the system's own message) and its
//!   end (`exited code N` or `exited signal N`);
//! - once the job's first process exits, kills what it left behind, group and strays, so the
//!   log pipes close and nothing of the run outlives it.
//!
//! Why this and not the alternatives: a parent-death signal (`PR_SET_PDEATHSIG`) reaches one
//! process only, is tied to the thread that forked it (a tokio blocking thread that ends kills
//! the job), and is cleared by exec of a set-uid program; cgroups need a delegated hierarchy a
//! plain user does not have. A subreaper plus a socket costs one small process per run and works
//! unprivileged.
//!
//! What it cannot do alone: survive its own SIGKILL. For that the node writes a record per
//! running execution ([`Records`]) and a restarted node kills whatever still matches one.

use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The internal command that runs the supervisor: `panda __supervise [--workdir DIR] -- ARGV…`.
pub const SUPERVISE_COMMAND: &str = "__supervise";

/// Runs the supervisor; `args` are those after [`SUPERVISE_COMMAND`]. Call it before anything
/// else in `main` (no async runtime, no logging: stdout and stderr belong to the job).
pub fn supervise(args: Vec<OsString>) -> ExitCode {
    let channel = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(err) => return refuse(&format!("cannot use stdin: {err}")),
    };
    if channel.local_addr().is_err() {
        return refuse("stdin is not the node's socket");
    }
    let Some((workdir, argv)) = parse(args) else {
        return refuse("usage: panda __supervise [--workdir DIR] -- PROGRAM [ARGS…]");
    };
    let mut supervisor = Supervisor {
        channel,
        leader: None,
    };
    match supervisor.run(workdir, &argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            supervisor.say(&format!("error {err}"));
            ExitCode::FAILURE
        }
    }
}

/// For a person who ran the internal command by hand.
fn refuse(why: &str) -> ExitCode {
    eprintln!(
        "error: {why}\nhint: `panda {SUPERVISE_COMMAND}` is run by `panda server` and `panda worker` for each local process; it is not a command to run yourself"
    );
    ExitCode::from(2)
}

fn parse(args: Vec<OsString>) -> Option<(Option<OsString>, Vec<OsString>)> {
    let mut args = args.into_iter();
    let mut workdir = None;
    loop {
        let arg = args.next()?;
        if arg == "--workdir" {
            workdir = Some(args.next()?);
        } else if arg == "--" {
            break;
        } else {
            return None;
        }
    }
    let argv: Vec<OsString> = args.collect();
    (!argv.is_empty()).then_some((workdir, argv))
}

struct Supervisor {
    channel: UnixStream,
    /// The job's first process, whose pid is also its group's id.
    leader: Option<Pid>,
}

impl Supervisor {
    fn run(&mut self, workdir: Option<OsString>, argv: &[OsString]) -> Result<(), String> {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|err| format!("cannot become a child subreaper: {err}"))?;
        // SIGCHLD is read from a descriptor, beside the socket, so it is blocked here; but a
        // child inherits the signal mask (the standard library does not reset it, nor what the node
        // blocked), and a job
        // with SIGCHLD blocked hangs in its shell's `wait`. So it is blocked only once the job
        // has started, and a job that ended before that is reaped below, before the first poll.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        SigSet::empty()
            .thread_set_mask()
            .map_err(|err| format!("cannot clear the signal mask: {err}"))?;
        let children = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|err| format!("cannot read SIGCHLD: {err}"))?;

        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .process_group(0);
        if let Some(dir) = workdir {
            command.current_dir(dir);
        }
        let leader = match command.spawn() {
            Ok(child) => Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
            Err(err) => {
                let errno = err.raw_os_error().unwrap_or(0);
                self.say(&format!("spawn-error {errno} {err}"));
                return Ok(());
            }
        };
        mask.thread_block()
            .map_err(|err| format!("cannot block SIGCHLD: {err}"))?;
        self.leader = Some(leader);
        self.say(&format!("started {leader}"));
        // A job that ended before SIGCHLD was blocked sent its signal to nobody.
        if let Some(status) = reap_ready(leader) {
            let status = kill_all(leader).or(Some(status));
            if let Some(status) = status {
                self.say(&status);
            }
            return Ok(());
        }

        let mut pending = Vec::new();
        loop {
            let mut fds = [
                PollFd::new(self.channel.as_fd(), PollFlags::POLLIN),
                PollFd::new(children.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(err) => return Err(format!("poll: {err}")),
            }
            let node = fds[0].revents().unwrap_or(PollFlags::empty());
            let child = fds[1].revents().unwrap_or(PollFlags::empty());
            if !node.is_empty() {
                let mut buffer = [0u8; 256];
                match self.channel.read(&mut buffer) {
                    Ok(0) => {
                        // The node is gone: nobody will read the result, and another node will
                        // run this execution again. Nothing of this one may go on.
                        kill_all(leader);
                        return Ok(());
                    }
                    Ok(n) => pending.extend_from_slice(&buffer[..n]),
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        kill_all(leader);
                        return Ok(());
                    }
                }
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let request: Vec<u8> = pending.drain(..=end).collect();
                    match request.as_slice() {
                        b"term\n" => {
                            let _ = killpg(leader, Signal::SIGTERM);
                        }
                        b"kill\n" => signal_all(leader),
                        other => {
                            // `signal N`: a service's own stop signal, to the group.
                            if let Some(signal) = std::str::from_utf8(other)
                                .ok()
                                .and_then(|r| r.trim_end().strip_prefix("signal "))
                                .and_then(|n| n.parse::<i32>().ok())
                                .and_then(|n| Signal::try_from(n).ok())
                            {
                                let _ = killpg(leader, signal);
                            }
                        }
                    }
                }
            }
            if !child.is_empty() {
                while let Ok(Some(_)) = children.read_signal() {}
                if let Some(status) = reap_ready(leader) {
                    // The job has ended: what it left behind goes with it, and only then is
                    // its end reported, so the node's log readers see their pipes close.
                    let status = kill_all(leader).or(Some(status));
                    if let Some(status) = status {
                        self.say(&status);
                    }
                    return Ok(());
                }
            }
        }
    }

    /// One line to the node; a node that is gone cannot be told.
    fn say(&mut self, line: &str) {
        let _ = self.channel.write_all(format!("{line}\n").as_bytes());
    }
}

/// Reaps every child that has ended, without waiting; the leader's end, if it was among them.
fn reap_ready(leader: Pid) -> Option<String> {
    let mut ended = None;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return ended,
            Ok(status) => {
                if let Some(line) = leader_end(leader, status) {
                    ended = Some(line);
                }
            }
        }
    }
}

/// How the leader ended, as the line the node reads; `None` for any other process.
fn leader_end(leader: Pid, status: WaitStatus) -> Option<String> {
    match status {
        WaitStatus::Exited(pid, code) if pid == leader => Some(format!("exited code {code}")),
        WaitStatus::Signaled(pid, signal, _) if pid == leader => {
            Some(format!("exited signal {}", signal as i32))
        }
        _ => None,
    }
}

/// SIGKILL to the job's group and to every child of this process (and each one's group).
fn signal_all(leader: Pid) {
    let _ = killpg(leader, Signal::SIGKILL);
    for pid in children() {
        let _ = kill(pid, Signal::SIGKILL);
        // A child that made a group of its own (setsid, setpgid) leads it: its pid is that
        // group's id, which cannot be reused while the child lives.
        let _ = killpg(pid, Signal::SIGKILL);
    }
}

/// Kills the job's group and every descendant, reaping each, until this process has no child
/// left: a descendant whose parent dies is re-parented here (the subreaper), and the next round
/// kills it. Returns the leader's end if it was reaped here.
fn kill_all(leader: Pid) -> Option<String> {
    let mut ended = None;
    loop {
        signal_all(leader);
        match waitpid(None::<Pid>, None) {
            Ok(status) => {
                if let Some(line) = leader_end(leader, status) {
                    ended = Some(line);
                }
            }
            Err(Errno::EINTR) => {}
            // ECHILD: nothing is left.
            Err(_) => return ended,
        }
    }
}

/// This process' children, from every thread's `children` list, or from a scan of `/proc`
/// where the kernel does not keep those lists.
fn children() -> Vec<Pid> {
    let mut found = Vec::new();
    let mut listed = false;
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(list) = fs::read_to_string(task.path().join("children")) {
                listed = true;
                found.extend(
                    list.split_whitespace()
                        .filter_map(|pid| pid.parse().ok())
                        .map(Pid::from_raw),
                );
            }
        }
    }
    if !listed {
        let me = std::process::id();
        found.extend(
            processes()
                .filter(|&pid| stat(pid).is_some_and(|s| s.parent == me))
                .filter_map(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw),
        );
    }
    found
}

/// Every process id in `/proc`.
fn processes() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    parent: u32,
    /// When it started, in clock ticks since boot: with the pid, it names one process for the
    /// life of the machine (a pid alone is reused).
    started: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]: the parent is field 4, the start time field 22.
    Some(Stat {
        parent: fields.get(1)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

/// The start time of `pid`, if it is alive (a zombie counts as gone).
fn started(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    if rest.trim_start().starts_with('Z') {
        return None;
    }
    stat(pid).map(|s| s.started)
}

/// The record of one running execution: enough for a later start of a node to find and kill
/// what survived of it, and never anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The kernel's boot id: after a reboot nothing of the run is left, and its pids are
    /// meaningless.
    boot: String,
    /// The node that ran it: a record of a node that still runs is that node's business.
    node: (u32, u64),
    supervisor: (u32, u64),
    /// The job's first process, whose pid is its group's id.
    leader: (u32, u64),
    /// The execution: every process of the job carries `PANDA_EXECUTION_ID=<it>` in its
    /// environment unless it cleared it, which finds strays whose group and parent are gone.
    execution: String,
}

impl Record {
    fn to_text(&self) -> String {
        format!(
            "boot {}\nnode {} {}\nsupervisor {} {}\nleader {} {}\nexecution {}\n",
            self.boot,
            self.node.0,
            self.node.1,
            self.supervisor.0,
            self.supervisor.1,
            self.leader.0,
            self.leader.1,
            self.execution
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let mut record = Self {
            boot: String::new(),
            node: (0, 0),
            supervisor: (0, 0),
            leader: (0, 0),
            execution: String::new(),
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let key = words.next()?;
            let mut pair = || -> Option<(u32, u64)> {
                Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
            };
            match key {
                "boot" => record.boot = line["boot ".len()..].trim().to_owned(),
                "node" => record.node = pair()?,
                "supervisor" => record.supervisor = pair()?,
                "leader" => record.leader = pair()?,
                "execution" => record.execution = line["execution ".len()..].trim().to_owned(),
                _ => {}
            }
        }
        (!record.boot.is_empty() && !record.execution.is_empty() && record.leader.0 > 1)
            .then_some(record)
    }
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Where a node keeps one [`Record`] per execution it runs as a local process
/// (`DATA_DIR/running/`): written once the job has started, removed when its run ends.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

/// What [`Records::reap`] killed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Records of dead nodes' runs that were looked at (and removed).
    pub records: usize,
    /// The processes killed, as `pid (command) of execution ID`.
    pub killed: Vec<String>,
}

impl Records {
    /// Records in `dir` (made if missing).
    ///
    /// # Errors
    ///
    /// The directory cannot be made.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Notes a started run; returns the record's path, to remove at its end.
    pub(crate) fn write(&self, execution: &str, supervisor: u32, leader: u32) -> Option<PathBuf> {
        let me = std::process::id();
        let record = Record {
            boot: boot_id(),
            node: (me, started(me)?),
            supervisor: (supervisor, started(supervisor)?),
            leader: (leader, started(leader).unwrap_or(0)),
            execution: execution.to_owned(),
        };
        let path = self.dir.join(execution);
        match fs::write(&path, record.to_text()) {
            Ok(()) => Some(path),
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "could not record a running process; a crash of its supervisor would leave it running");
                None
            }
        }
    }

    /// Kills what is left of the runs of nodes that are gone (this node's earlier life, or
    /// another node that shared the directory and died), and removes their records. Records of
    /// nodes still running are left alone. A process is killed only when it is provably the
    /// run's: its pid *and* start time match the record, or it carries the run's
    /// `PANDA_EXECUTION_ID` and started no earlier than the run.
    ///
    /// # Errors
    ///
    /// The directory cannot be read.
    pub fn reap(&self) -> std::io::Result<Reaped> {
        let mut reaped = Reaped::default();
        let boot = boot_id();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(record) = fs::read_to_string(&path)
                .ok()
                .and_then(|t| Record::parse(&t))
            else {
                let _ = fs::remove_file(&path);
                continue;
            };
            if record.boot == boot {
                if started(record.node.0) == Some(record.node.1) {
                    continue;
                }
                reaped.killed.extend(kill_run(&record));
            }
            reaped.records += 1;
            let _ = fs::remove_file(&path);
        }
        Ok(reaped)
    }
}

/// Kills what is left of the run recorded at `path`, whose supervisor died while its node
/// lives, and removes the record.
pub(crate) fn kill_recorded(path: &Path) -> Vec<String> {
    let killed = fs::read_to_string(path)
        .ok()
        .and_then(|text| Record::parse(&text))
        .map(|record| kill_run(&record))
        .unwrap_or_default();
    let _ = fs::remove_file(path);
    killed
}

/// Kills what matches `record` until a round finds nothing more (a process alive between two
/// rounds may have forked). Returns what was killed.
fn kill_run(record: &Record) -> Vec<String> {
    let mut killed = Vec::new();
    let marker = format!("PANDA_EXECUTION_ID={}", record.execution);
    let of = |pid: u32| {
        let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        format!("{pid} ({}) of execution {}", name.trim(), record.execution)
    };
    for (pid, start) in [record.supervisor, record.leader] {
        if start != 0 && started(pid) == Some(start) {
            killed.push(of(pid));
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    if let Ok(group) = i32::try_from(record.leader.0)
        && record.leader.1 != 0
    {
        // The group outlives its leader while any member lives, and its id is not reused
        // until then: members that started after the leader are the job's.
        for pid in processes() {
            if pgid(pid) == Some(record.leader.0)
                && started(pid).is_some_and(|s| s >= record.leader.1)
            {
                killed.push(of(pid));
                let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
                break;
            }
        }
    }
    for _round in 0..10 {
        let mut found = false;
        for pid in processes() {
            if pid == std::process::id() || started(pid).is_none_or(|s| s < record.leader.1) {
                continue;
            }
            let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if environ
                .split(|&b| b == 0)
                .any(|var| var == marker.as_bytes())
            {
                found = true;
                killed.push(of(pid));
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        if !found {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    killed.sort();
    killed.dedup();
    killed
}

fn pgid(pid: u32) -> Option<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    // Field 5, the process group.
    rest.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let record = Record {
            boot: "b00t".into(),
            node: (10, 100),
            supervisor: (11, 101),
            leader: (12, 102),
            execution: "0190-abc".into(),
        };
        assert_eq!(Record::parse(&record.to_text()), Some(record));
        assert_eq!(Record::parse("garbage"), None);
    }

    #[test]
    fn the_command_line_is_a_workdir_then_argv() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            parse(args(&["--workdir", "/tmp", "--", "sh", "-c", "x"])),
            Some((Some("/tmp".into()), args(&["sh", "-c", "x"])))
        );
        assert_eq!(parse(args(&["--", "true"])), Some((None, args(&["true"]))));
        assert_eq!(parse(args(&["--"])), None);
        assert_eq!(parse(args(&["true"])), None);
    }

    #[test]
    fn this_process_has_a_start_time() {
        assert!(started(std::process::id()).is_some());
    }
}
