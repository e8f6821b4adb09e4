//! Runs the real `panda` binary for a test, as a user would, and nothing of the machine's:
//! every process gets a home of its own (`HOME` and the XDG directories in a temp dir, no
//! `PANDA_*` variable from the caller's environment), a data dir in it, and port 0. A node is
//! ready when it writes its `--ready-file` (once every service runs, with the addresses it
//! bound) and, for a server, `/readyz` answers; it is stopped on drop: SIGTERM, a wait, then
//! SIGKILL.
//!
//! Each test binary uses a part of this module.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a node may take to start, or to stop after SIGTERM (past the default 30 s grace for
/// running executions), before the test fails or the node is killed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A temp dir that stands for a user's home: the process' `HOME`, its XDG directories, and by
/// default its data dir.
#[derive(Debug, Clone)]
pub struct Home(Arc<tempfile::TempDir>);

impl Home {
    pub fn new() -> Self {
        Self(Arc::new(tempfile::tempdir().expect("a temp dir")))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// The data dir a node started in this home uses unless told another.
    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// `panda` with this home and none of the caller's `PANDA_*` variables (`PANDA_LOG=info`).
    pub fn panda(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_panda"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PANDA_") {
                command.env_remove(key);
            }
        }
        let home = self.path();
        command
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("share"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("NO_COLOR", "1")
            .env("PANDA_LOG", "info");
        command
    }
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

/// How to start a node: `panda server` or `panda worker`, with its flags.
#[derive(Debug)]
pub struct Start {
    home: Home,
    global: Vec<OsString>,
    command: &'static str,
    bind: Option<String>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
}

impl Start {
    /// `panda server --bind 127.0.0.1:0` in a new home.
    pub fn server() -> Self {
        Self::new(Home::new(), "server", Some("127.0.0.1:0".to_owned()))
    }

    /// `panda worker` in a new home.
    pub fn worker() -> Self {
        Self::new(Home::new(), "worker", None)
    }

    fn new(home: Home, command: &'static str, bind: Option<String>) -> Self {
        Self {
            home,
            global: Vec::new(),
            command,
            bind,
            args: Vec::new(),
            env: Vec::new(),
            data_dir: None,
            database_url: None,
        }
    }

    /// Runs in `home` (shared with another node, say) instead of a new one.
    pub fn home(mut self, home: &Home) -> Self {
        self.home = home.clone();
        self
    }

    /// Flags before the command (`--log-format json`).
    pub fn global<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.global.extend(args.into_iter().map(Into::into));
        self
    }

    /// More flags for the command.
    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `--data-dir`, when not the home's.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// `--database-url`: PostgreSQL instead of SQLite in the data dir.
    pub fn database_url(mut self, url: Option<&str>) -> Self {
        self.database_url = url.map(str::to_owned);
        self
    }

    /// Starts the node and returns once it is ready.
    pub fn start(self) -> Server {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let ready_file = self
            .home
            .path()
            .join(format!("ready-{}", STARTS.fetch_add(1, Ordering::Relaxed)));
        let data_dir = self.data_dir.unwrap_or_else(|| self.home.data_dir());
        let mut command = self.home.panda();
        command.args(&self.global).arg(self.command);
        if let Some(bind) = &self.bind {
            command.args(["--bind", bind]);
        }
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--ready-file")
            .arg(&ready_file)
            .args(&self.args)
            .envs(self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start panda");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::clone(&log);
        // Drained to the end, so the node never blocks on a full pipe.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().expect("the log").push(line);
            }
        });
        let mut server = Server {
            child: Some(child),
            reader: Some(reader),
            log,
            home: self.home,
            data_dir,
            ready_file: ready_file.clone(),
            url: None,
            metrics_url: None,
        };
        let ready = server.wait_for_ready_file(&ready_file);
        for line in ready.lines() {
            match line.split_once('=') {
                Some(("api", url)) => server.url = Some(url.to_owned()),
                Some(("metrics", url)) => server.metrics_url = Some(url.to_owned()),
                _ => {}
            }
        }
        if let Some(url) = &server.url {
            let url = url.clone();
            server.wait_until("/readyz answers", || {
                http_get(&url, "/readyz", &[]).starts_with("HTTP/1.1 200")
            });
        }
        server
    }
}

/// A running `panda server` or `panda worker`, stopped on drop.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    reader: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<String>>>,
    home: Home,
    data_dir: PathBuf,
    ready_file: PathBuf,
    url: Option<String>,
    metrics_url: Option<String>,
}

impl Server {
    /// `panda server` with a home of its own, ready.
    pub fn start() -> Self {
        Start::server().start()
    }

    /// `panda server ARGS` with a home of its own, ready.
    pub fn start_with(args: &[&str]) -> Self {
        Start::server().args(args).start()
    }

    /// A `panda worker` in this server's home, on its data dir.
    pub fn worker(&self) -> Start {
        Start::worker().home(&self.home).data_dir(&self.data_dir)
    }

    /// The API's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        self.url.as_deref().expect("a server's API address")
    }

    /// Where this node serves `/metrics`: on `--metrics-bind`, or else on the API.
    pub fn metrics_url(&self) -> String {
        match &self.metrics_url {
            Some(url) => url.clone(),
            None => format!("{}/metrics", self.url()),
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The admin token the server wrote to its data dir.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("read the admin token")
            .trim()
            .to_owned()
    }

    /// The CLI pointed at this server, as a local user runs it: its home, its URL, and the
    /// admin token found in its data dir.
    pub fn cli(&self) -> Command {
        let mut command = self.home.panda();
        if let Some(url) = &self.url {
            command.env("PANDA_URL", url);
        }
        command.env("PANDA_DATA_DIR", &self.data_dir);
        command
    }

    /// Runs `panda ARGS` with [`Server::cli`].
    pub fn panda(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().expect("run panda")
    }

    /// The lines the node has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("the log").clone()
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) to the node.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("a running node");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGKILL, as a crash.
    pub fn kill(mut self) {
        self.signal("KILL");
        self.wait();
    }

    /// SIGTERM; asserts a clean exit and returns everything the node logged.
    pub fn stop(mut self) -> Vec<String> {
        self.signal("TERM");
        let status = self.wait();
        let log = self.log();
        assert!(
            status.success(),
            "SIGTERM is a clean stop, got {status}: {log:#?}"
        );
        assert!(
            !self.ready_file.exists(),
            "a clean stop removes the ready file"
        );
        log
    }

    /// Waits for the node to exit and for the last of its log.
    fn wait(&mut self) -> ExitStatus {
        let status = self
            .child
            .take()
            .expect("a running node")
            .wait()
            .expect("wait for panda");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }

    fn wait_for_ready_file(&mut self, path: &Path) -> String {
        let started = Instant::now();
        loop {
            if let Ok(ready) = std::fs::read_to_string(path) {
                return ready;
            }
            let child = self.child.as_mut().expect("a running node");
            if let Some(status) = child.try_wait().expect("poll panda") {
                self.child = None;
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                panic!(
                    "panda stopped ({status}) before it was ready: {:#?}",
                    self.log()
                );
            }
            assert!(
                started.elapsed() < PATIENCE,
                "panda not ready in {PATIENCE:?}: {:#?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < PATIENCE,
                "never {what}: {:#?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The output's stdout, once it is known to have succeeded.
#[track_caller]
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\nstdout: {}",
        stderr(output),
        stdout(output)
    );
    stdout(output)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A plain HTTP/1.1 GET of `path` on `base` (`http://HOST:PORT`) with extra header lines; the
/// whole answer, head and body.
pub fn http_get(base: &str, path: &str, headers: &[&str]) -> String {
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let address = address.split_once('/').map_or(address, |(host, _)| host);
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

pub mod backend;
pub mod instances;
pub mod runs;
pub mod webhooks;
