//! The API fuzzed from its own OpenAPI document: schemathesis, run against the real `panda
//! server`, sends requests generated from the document (valid ones, and invalid ones that must
//! be refused) and checks every answer against it: no server error, only documented statuses
//! and content types, and bodies that match their schemas.
//!
//! schemathesis is a Python tool (`pip install schemathesis==4.32.5`, as `.ci/run` does). Without
//! it this test skips with a reason, unless `PANDA_REQUIRE_ALL_BACKENDS=1` makes that a failure.

mod support;

use std::process::Command;

use support::Server;

/// The schemathesis release the run is pinned to (`.ci/run` installs the same).
const SCHEMATHESIS: &str = "4.32.5";
/// Fixed, so that a failure is reproduced by running the test again.
const SEED: &str = "20261202";
/// Examples per operation and phase: the run stays within a few minutes on a small machine.
const MAX_EXAMPLES: &str = "10";
/// The only queue the server's workers take from: no generated job is ever run.
const NO_WORK_QUEUE: &str = "openapi-fuzz-runs-nothing-7f3c2a91";
/// The fuzzer's own admin token: a name it will not guess, so that no generated
/// `DELETE /tokens/{name}` revokes the token it runs with (as it would `admin`).
const FUZZ_TOKEN: &str = "openapi-fuzz-token-5d1e8b43c07a";

/// The checks run on every answer. `positive_data_acceptance` is left out: the document
/// cannot state every rule the server enforces (a cron expression that parses, a known time
/// zone, a backoff cap not below its base, `max_running` only with `concurrency: allow`), so
/// a request valid by the document may rightly be refused with a 400 it documents.
/// `negative_data_rejection` is left out too: the server reads a JSON array as an object body
/// (serde reads a struct from a sequence), so `[null, null]` triggers a job.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// The installed schemathesis's version, or why there is none.
fn schemathesis_version() -> Result<String, String> {
    let output = Command::new("schemathesis")
        .arg("--version")
        .output()
        .map_err(|err| format!("schemathesis is not installed ({err})"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .last()
        .map(str::to_owned)
        .filter(|_| output.status.success())
        .ok_or_else(|| format!("`schemathesis --version` said {text:?}"))
}

#[test]
fn the_api_answers_a_fuzzer_as_its_openapi_document_says() {
    let required = std::env::var("PANDA_REQUIRE_ALL_BACKENDS").is_ok_and(|v| v == "1");
    let version = match schemathesis_version() {
        Ok(version) => version,
        Err(why) if required => panic!("{why}; PANDA_REQUIRE_ALL_BACKENDS=1 forbids skipping"),
        Err(why) => {
            eprintln!("skipped: {why}; install it with `pip install schemathesis=={SCHEMATHESIS}`");
            return;
        }
    };
    assert_eq!(
        version, SCHEMATHESIS,
        "the run is pinned to schemathesis {SCHEMATHESIS}"
    );

    let server = Server::start_with(&["--runtime", "process", "--queues", NO_WORK_QUEUE]);
    let created = server.panda(&["token", "create", FUZZ_TOKEN]);
    let token = support::succeeded(&created).trim().to_owned();
    let dir = server.home().path();
    let output = Command::new("schemathesis")
        // Its example database and reports stay in the temp dir.
        .current_dir(dir)
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", server.url()))
        .args(["--url", &format!("{}/api/v1", server.url())])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        // One worker: with two, the threads' first parses of hypothesis' lambdas race in
        // CPython 3.11's `ast` ("AST constructor recursion depth mismatch"), a runtime error
        // of the tool's own that fails an operation it never sent.
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--generation-database", "none", "--no-color"])
        // Strings with NUL are refused everywhere (no process can take one); the document
        // says so in words rather than on every string.
        .args(["--generation-allow-x00", "false"])
        // The URLs jobs and monitors hand out live outside `/api/v1` (their path items say so
        // with a server of their own), and every token the fuzzer makes opens nothing; their
        // own tests (webhooks_inbound, monitors) send them real tokens.
        .args(["--exclude-path-regex", "^/(hooks|ping)/"])
        .output()
        .expect("run schemathesis");
    server.stop();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found disagreements:\n{report}"
    );
    eprintln!("{report}");
}
