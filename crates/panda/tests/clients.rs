//! The client libraries' own test suites (`clients/python`, `clients/js`), run against a real
//! `panda server` started here. The server runs local processes on PostgreSQL when
//! `PANDA_TEST_DATABASE_URL` is set (so the suites can also try the transactional enqueue over
//! the same database), on SQLite otherwise.
//!
//! A suite whose tool is missing (python3 with pytest, node) is skipped with a printed reason,
//! unless `PANDA_REQUIRE_ALL_BACKENDS=1`, when it fails as a skipped backend does. A suite that
//! reports a skipped test fails under `PANDA_REQUIRE_ALL_BACKENDS=1` too: every test must run.
//!
//! What a suite is given, in its environment:
//! - `PANDA_URL`, `PANDA_TOKEN`: the server and an admin token;
//! - `PANDA_TEST_DIR`: a scratch directory its jobs may write to (they run as local processes);
//! - `PANDA_TEST_PG_URL` and `PANDA_TEST_PG_SCHEMA` when the server is on PostgreSQL: a plain
//!   connection URL (no search path) and the schema holding Panda's tables and its `enqueue`
//!   function.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use panda_store::testing::REQUIRE_ALL_ENV;
use support::{Start, backend::Backend};

fn required() -> bool {
    std::env::var(REQUIRE_ALL_ENV).as_deref() == Ok("1")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the repository root")
        .to_path_buf()
}

/// Whether `program args` runs and exits 0; the reason when it does not.
fn available(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(err) => Err(format!("`{program}` cannot run: {err}")),
    }
}

/// Skips (returns false) or, when every backend is required, fails.
fn tool_ready(program: &str, args: &[&str]) -> bool {
    match available(program, args) {
        Ok(()) => true,
        Err(reason) => {
            assert!(!required(), "{REQUIRE_ALL_ENV}=1 but {reason}");
            eprintln!("skipped: {reason}");
            false
        }
    }
}

/// A server for one suite, on PostgreSQL when configured, and the environment the suite gets.
struct Target {
    backend: Backend,
    server: support::Server,
    scratch: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl Target {
    async fn start(prefix: &str) -> Self {
        let (backend, pg) = match Backend::postgres(prefix).await {
            Some(backend) => {
                let url = std::env::var(panda_store::testing::DATABASE_URL_ENV)
                    .expect("the PostgreSQL URL");
                let schema = backend
                    .pg
                    .as_ref()
                    .and_then(|pg| pg.schema())
                    .expect("a schema of its own")
                    .to_owned();
                (backend, Some((url, schema)))
            }
            None => (Backend::sqlite().await, None),
        };
        let server = backend.node(Start::server(), "client-tests", &[]);
        Self {
            backend,
            server,
            scratch: tempfile::tempdir().expect("a scratch dir"),
            pg,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("PANDA_URL", self.server.url())
            .env("PANDA_TOKEN", self.server.admin_token())
            .env("PANDA_TEST_DIR", self.scratch.path());
        if let Some((url, schema)) = &self.pg {
            command
                .env("PANDA_TEST_PG_URL", url)
                .env("PANDA_TEST_PG_SCHEMA", schema);
        }
        command
    }

    async fn close(self) {
        drop(self.server);
        self.backend.close().await;
    }
}

/// Runs a suite, prints its output, and fails unless it passed with nothing skipped (when
/// every backend is required).
fn run_suite(name: &str, mut command: Command, skipped: impl Fn(&str) -> usize) {
    let output = command.output().expect("run the suite");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    println!("{out}");
    eprintln!("{err}");
    assert!(output.status.success(), "the {name} suite failed");
    record_summary(name, &out);
    let skips = skipped(&out);
    assert!(
        skips == 0 || !required(),
        "{REQUIRE_ALL_ENV}=1 but the {name} suite skipped {skips} test(s)"
    );
}

/// Keeps a passed suite's summary lines (pytest's last line, node's `# tests/pass/fail/…`
/// counts) in `target/tmp/client-suites/`, where `.ci/run` prints them after the tests, since
/// cargo shows nothing of a passing test's output.
fn record_summary(name: &str, out: &str) {
    let summary: Vec<&str> = out
        .lines()
        .filter(|line| {
            let line = line.trim();
            (line.starts_with("==") && line.contains(" in ") && line.ends_with("=="))
                || [
                    "# tests ",
                    "# pass ",
                    "# fail ",
                    "# skip",
                    "# todo ",
                    "# cancelled ",
                ]
                .iter()
                .any(|prefix| line.starts_with(prefix))
        })
        .collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-suites");
    std::fs::create_dir_all(&dir).expect("create the client suites' summary dir");
    let text = format!("{name} suite: {}\n", summary.join(" | "));
    std::fs::write(dir.join(format!("{name}.txt")), text).expect("write the suite's summary");
}

/// A count from a summary line such as pytest's `3 passed, 1 skipped in 0.5s` or node's
/// `# skip 1`.
fn count_before(text: &str, word: &str) -> usize {
    text.lines()
        .flat_map(|line| {
            let words: Vec<&str> = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .collect();
            words
                .windows(2)
                .filter(|pair| pair[1] == word)
                .filter_map(|pair| pair[0].parse::<usize>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_suite_passes_against_a_real_server() {
    if !tool_ready("python3", &["-m", "pytest", "--version"]) {
        return;
    }
    let root = repo_root().join("clients/python");
    let target = Target::start("clients_py").await;
    let mut command = target.command("python3");
    command
        .current_dir(&root)
        .env("PYTHONPATH", root.join("src"))
        .args(["-m", "pytest", "-rs", "-p", "no:cacheprovider", "tests"]);
    run_suite("Python client", command, |out| count_before(out, "skipped"));
    target.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn js_client_suite_passes_against_a_real_server() {
    if !tool_ready("node", &["--version"]) {
        return;
    }
    let root = repo_root().join("clients/js");
    let target = Target::start("clients_js").await;
    let mut command = target.command("node");
    command
        .current_dir(&root)
        .args(["--test", "--test-reporter=tap", "test/"]);
    run_suite("JavaScript client", command, |out| {
        // TAP's summary: `# skipped N` (node 20 and later) or `# skip N` (node 18).
        out.lines()
            .filter_map(|line| {
                line.strip_prefix("# skipped ")
                    .or_else(|| line.strip_prefix("# skip "))
            })
            .filter_map(|n| n.trim().parse::<usize>().ok())
            .sum()
    });
    target.close().await;
}

#[test]
fn counts_are_read_from_summary_lines() {
    assert_eq!(
        count_before("==== 3 passed, 2 skipped in 0.5s ====", "skipped"),
        2
    );
    assert_eq!(count_before("==== 3 passed in 0.5s ====", "skipped"), 0);
}
