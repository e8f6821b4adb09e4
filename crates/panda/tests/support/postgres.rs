//! A private PostgreSQL cluster for a test that stops, restarts or storms its database: never
//! the shared one `PANDA_TEST_DATABASE_URL` names.
//!
//! `initdb` into a temp dir, a port of its own, `pg_ctl start`/`stop`. The server binaries come
//! from `PANDA_TEST_PG_BIN` or else the newest `/usr/lib/postgresql/*/bin`. PostgreSQL refuses
//! to run as root, so as root every command runs as the `postgres` user (`runuser -u
//! postgres --`), which owns the temp dir. Without binaries the test skips, unless
//! `PANDA_REQUIRE_ALL_BACKENDS=1`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the server binaries are, when not under `/usr/lib/postgresql/*/bin`.
pub const PG_BIN_ENV: &str = "PANDA_TEST_PG_BIN";

/// A running cluster of the test's own; stopped (immediately) and deleted on drop.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    /// The temp dir holding the data dir, the socket and the log.
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl PgCluster {
    /// A new cluster, started; `None` (the test skips) when there are no server binaries and
    /// skipping is allowed.
    pub fn start() -> Option<Self> {
        let Some(bin) = pg_bin() else {
            assert!(
                std::env::var("PANDA_REQUIRE_ALL_BACKENDS").as_deref() != Ok("1"),
                "PANDA_REQUIRE_ALL_BACKENDS=1 but no PostgreSQL server binaries: set {PG_BIN_ENV} \
                 or install Debian's postgresql"
            );
            eprintln!(
                "skipped: no PostgreSQL server binaries ({PG_BIN_ENV} or /usr/lib/postgresql/*/bin)"
            );
            return None;
        };
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0)
            == 0;
        // Under /tmp, short: a socket path is limited to about 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("panda-pg-")
            .tempdir_in("/tmp")
            .expect("a temp dir");
        let port = free_port();
        let cluster = Self {
            bin,
            dir,
            port,
            as_postgres,
        };
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(cluster.dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown the cluster's dir to postgres");
        }
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n",
            cluster.dir.path().display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        std::io::Write::write_all(&mut file, conf.as_bytes()).expect("write postgresql.conf");
        cluster.start_again();
        Some(cluster)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server, disconnecting every client at once (`-m fast`).
    pub fn stop(&self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-D",
                &data.to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
            ],
        );
    }

    /// Starts the server (again), and waits until it takes connections.
    pub fn start_again(&self) {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
            ],
        );
    }

    /// Runs `sql` with `psql` on its `postgres` database; its output, unaligned.
    pub fn psql(&self, sql: &str) -> String {
        let output = self.output(
            "psql",
            &["-X", "-q", "-A", "-t", "-d", &self.url(), "-c", sql],
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let path = if program == "psql" && !path.exists() {
            PathBuf::from("psql")
        } else {
            path
        };
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        // A directory the postgres user can read: the test's own may not be.
        command.current_dir(self.dir.path());
        command
    }

    fn output(&self, program: &str, args: &[&str]) -> Output {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("run {program}: {err}"));
        assert!(
            output.status.success(),
            "{program} {args:?}: {}\n{}\nserver log: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
        output
    }

    fn run(&self, program: &str, args: &[&str]) {
        self.output(program, args);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        if data.join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .args([
                    "stop",
                    "-D",
                    &data.to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                ])
                .output();
        }
    }
}

/// `PANDA_TEST_PG_BIN`, or the newest `/usr/lib/postgresql/N/bin` with an `initdb`.
fn pg_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os(PG_BIN_ENV).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.join("initdb").exists(),
            "{PG_BIN_ENV}={} has no initdb",
            bin.display()
        );
        return Some(bin);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            Path::new(&bin)
                .join("initdb")
                .exists()
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
