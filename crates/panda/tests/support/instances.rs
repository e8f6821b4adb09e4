//! What a service's instances did, read from the instances themselves.
//!
//! Each instance is a shell running the script [`Witness::new`] writes: it appends `start
//! INSTANCE REVISION PID MILLIS` to the witness file when it starts, `beat …` every 200 ms while
//! it runs and `stop …` when it gets SIGTERM (then exits 0). A copy of an instance is running
//! when the pid of its `start` line is alive in `/proc` and still runs the script (a pid the
//! kernel gave to something else is not counted).
//!
//! The script reads its instance's environment: with `EXIT_UNLESS=PATH` it exits 1 right after
//! its start while `PATH` does not exist (a crash loop the test ends by creating the file), and
//! with `HEALTHY=no` it never creates the file [`Witness::health_cmd`] tests (a revision that
//! never becomes healthy); otherwise it creates it at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long any one wait on the instances may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// One line of the witness file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `start`, `beat` or `stop`.
    pub what: String,
    pub instance: u32,
    pub revision: u32,
    pub pid: u32,
    /// The process' wall clock, Unix milliseconds.
    pub at_ms: i64,
}

/// An instance script and the file its copies write.
#[derive(Debug, Clone)]
pub struct Witness {
    dir: PathBuf,
    script: PathBuf,
    file: PathBuf,
}

impl Witness {
    /// Writes the script into `dir` (one witness per directory).
    pub fn new(dir: &Path) -> Self {
        let script = dir.join("instance.sh");
        let file = dir.join("witness");
        let w = file.display();
        let d = dir.display();
        let body = format!(
            r#"me="${{PANDA_INSTANCE:-x}} ${{PANDA_REVISION:-x}} $$"
echo "start $me $(date +%s%3N)" >> {w}
if [ -n "$EXIT_UNLESS" ] && [ ! -e "$EXIT_UNLESS" ]; then exit 1; fi
if [ "$HEALTHY" != no ]; then : > "{d}/healthy-$PANDA_INSTANCE-$PANDA_REVISION"; fi
trap 'echo "stop $me $(date +%s%3N)" >> {w}; exit 0' TERM
while :; do
  echo "beat $me $(date +%s%3N)" >> {w}
  sleep 0.2 &
  wait $!
done
"#
        );
        std::fs::write(&script, body).expect("write the instance script");
        Self {
            dir: dir.to_path_buf(),
            script,
            file,
        }
    }

    /// The `--exec` that runs the script.
    pub fn exec(&self) -> String {
        format!("sh {}", self.script.display())
    }

    /// The argv that runs the script (a `RuntimeSpec::Process`).
    pub fn argv(&self) -> Vec<String> {
        vec!["sh".into(), self.script.display().to_string()]
    }

    /// A `--health-cmd` that passes while the instance's healthy file exists.
    pub fn health_cmd(&self) -> String {
        format!(
            "test -f {}/healthy-$PANDA_INSTANCE-$PANDA_REVISION",
            self.dir.display()
        )
    }

    /// The file that makes instance `instance` of `revision` healthy.
    pub fn healthy_file(&self, instance: u32, revision: u32) -> PathBuf {
        self.dir.join(format!("healthy-{instance}-{revision}"))
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Line> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                Some(Line {
                    what: words.next()?.to_owned(),
                    instance: words.next()?.parse().ok()?,
                    revision: words.next()?.parse().ok()?,
                    pid: words.next()?.parse().ok()?,
                    at_ms: words.next()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// The `start` lines, oldest first.
    pub fn starts(&self) -> Vec<Line> {
        self.lines()
            .into_iter()
            .filter(|l| l.what == "start")
            .collect()
    }

    /// The `start` lines of instance `instance`, oldest first.
    pub fn starts_of(&self, instance: u32) -> Vec<Line> {
        self.starts()
            .into_iter()
            .filter(|l| l.instance == instance)
            .collect()
    }

    /// The copies running now: the `start` lines whose process is alive.
    pub fn live(&self) -> Vec<Line> {
        self.starts()
            .into_iter()
            .filter(|l| self.alive(l.pid))
            .collect()
    }

    /// How many copies of each instance run now.
    pub fn copies(&self) -> BTreeMap<u32, usize> {
        let mut copies = BTreeMap::new();
        for line in self.live() {
            *copies.entry(line.instance).or_insert(0) += 1;
        }
        copies
    }

    /// The `beat` lines of the copy `pid`.
    pub fn beats_of(&self, pid: u32) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.what == "beat" && l.pid == pid)
            .count()
    }

    /// Whether `pid` is alive and runs this script (not a zombie, not a reused pid).
    pub fn alive(&self, pid: u32) -> bool {
        let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        running
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| {
                    cmdline
                        .split(|&b| b == 0)
                        .any(|arg| arg == self.script.as_os_str().as_encoded_bytes())
                })
                .unwrap_or(false)
    }

    /// Polls until `done` holds for the lines; fails after [`PATIENCE`] saying `what` never
    /// happened.
    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(
                started.elapsed() < PATIENCE,
                "never {what}: live {:?}, lines {:#?}",
                self.copies(),
                self.tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until exactly one copy of each of `0..replicas` runs (and nothing else), each
    /// having beaten at least once; returns them by instance.
    pub fn wait_for_one_copy_each(&self, replicas: u32) -> Vec<Line> {
        let mut found = Vec::new();
        self.wait_until(&format!("one copy of each of {replicas} instances"), |w| {
            let mut live = w.live();
            live.sort_by_key(|l| l.instance);
            let one_each = live.len() == replicas as usize
                && live.iter().enumerate().all(|(i, l)| l.instance == i as u32)
                && live.iter().all(|l| w.beats_of(l.pid) > 0);
            if one_each {
                found = live;
            }
            one_each
        });
        found
    }

    /// The newest `n` lines, for a failure message.
    pub fn tail(&self, n: usize) -> Vec<Line> {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sends `signal` (`KILL`, `TERM`) to `pid` from outside, as an operator or the OOM killer.
pub fn kill(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}
