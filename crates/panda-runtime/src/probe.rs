//! Health probes of a running service instance: an HTTP GET from the node (the same for every
//! runtime), and a command run beside a local process. The Docker runtime runs its command
//! probes in the container (see `docker.rs`).

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use panda_core::human;
use tokio::process::Command;

use crate::RunSpec;

/// The most of a failing probe's output its error repeats.
const OUTPUT_SAID: usize = 200;

/// The client every HTTP probe of this process shares: no redirects are followed, since a
/// 3xx answer is healthy in itself.
fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // `https://` checks: rustls with ring (reqwest is built without a provider of its
            // own). Installing it twice is harmless; the first one stays.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!(
                    "panda/",
                    env!("CARGO_PKG_VERSION"),
                    " health check"
                ))
                .build()
                .map_err(|err| format!("cannot set up the HTTP client for health checks: {err}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// An HTTP GET of `url` from this node: healthy when it answers 2xx or 3xx within `timeout`.
///
/// # Errors
///
/// What went wrong, in words: the status, the connection error, or the timeout.
pub async fn probe_http(url: &str, timeout: Duration) -> Result<(), String> {
    let client = client()?;
    let request = client.get(url).timeout(timeout).send();
    match tokio::time::timeout(timeout, request).await {
        Err(_) => Err(format!(
            "GET {url} did not answer within {}",
            human::exact(timeout)
        )),
        Ok(Err(err)) if err.is_timeout() => Err(format!(
            "GET {url} did not answer within {}",
            human::exact(timeout)
        )),
        Ok(Err(err)) => Err(format!("GET {url}: {}", error_chain(&err))),
        Ok(Ok(response)) => {
            let status = response.status();
            if status.is_success() || status.is_redirection() {
                Ok(())
            } else {
                Err(format!("GET {url} answered {status}"))
            }
        }
    }
}

/// An error and its sources, which say what reqwest's own message leaves out (refused, reset).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `sh -c command` beside the local process of `spec`: the same clean environment, the same
/// working directory, a process group of its own that is killed whole once `timeout` has
/// passed. Exit 0 is healthy.
pub(crate) async fn probe_command(
    spec: &RunSpec,
    command: &str,
    timeout: Duration,
    clean_path: &str,
) -> Result<(), String> {
    let mut probe = Command::new("sh");
    probe
        .arg("-c")
        .arg(command)
        .env_clear()
        .env("PATH", clean_path)
        .envs(&spec.env)
        .envs(&spec.secret_env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.workdir {
        probe.current_dir(dir);
    }
    let child = probe
        .spawn()
        .map_err(|err| format!("cannot start the health check `sh -c {command:?}`: {err}"))?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let ended = tokio::time::timeout(timeout, child.wait_with_output()).await;
    // Whatever the check started goes with it, whether it ended or ran out of time.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    match ended {
        Err(_) => Err(format!(
            "the health check did not end within {} and was killed",
            human::exact(timeout)
        )),
        Ok(Err(err)) => Err(format!("waiting for the health check: {err}")),
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => Err(failed_command(
            output.status.code(),
            &output.stdout,
            &output.stderr,
        )),
    }
}

/// A failed check command, in words: its exit and the end of what it said.
pub(crate) fn failed_command(code: Option<i32>, stdout: &[u8], stderr: &[u8]) -> String {
    let how = code.map_or_else(
        || "the health check was killed by a signal".to_owned(),
        |code| format!("the health check exited with code {code}"),
    );
    let said = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    };
    let said = String::from_utf8_lossy(said);
    let said = said.trim();
    if said.is_empty() {
        return how;
    }
    let start = said
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| said.len() - i <= OUTPUT_SAID)
        .unwrap_or(0);
    format!("{how}: {}", &said[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_says_its_code_and_the_end_of_its_output() {
        assert_eq!(
            failed_command(Some(3), b"", b""),
            "the health check exited with code 3"
        );
        assert_eq!(
            failed_command(Some(1), b"out\n", b"  no such file\n"),
            "the health check exited with code 1: no such file"
        );
        assert_eq!(
            failed_command(Some(1), b"only stdout", b"\n"),
            "the health check exited with code 1: only stdout"
        );
        let long = "x".repeat(1000);
        let said = failed_command(None, long.as_bytes(), b"");
        assert!(said.starts_with("the health check was killed by a signal: "));
        assert!(said.len() <= 41 + OUTPUT_SAID + 2, "{said}");
    }
}
