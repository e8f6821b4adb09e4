//! A typed client of Panda's HTTP API (`/api/v1`), used by the CLI and the end-to-end tests.
//! It shares only `panda_core`'s types with the server, never the server itself.
//!
//! Every call returns [`ClientError`]: the server's own error (its code, message and hint), or
//! the server could not be reached (with a hint on how to start it).

use std::time::Duration;

use futures::{Stream, StreamExt};
use panda_core::api::{
    ApiError, ErrorBody, ExecutionList, JobView, LogEnd, LogLine, LogPage, TriggerRequest,
    Triggered,
};
use panda_core::{Execution, ExecutionId, Job, JobSpec};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The server's address when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{}", .error.message)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's error.
        error: ApiError,
    },
    /// The server could not be reached, or its answer could not be read.
    #[error("{message}")]
    Transport {
        /// What happened.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
}

impl ClientError {
    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Self::Api { error, .. } => error.hint.as_deref(),
            Self::Transport { hint, .. } => hint.as_deref(),
        }
    }

    /// The server's error code (`not_found`, `conflict`, …), for a server error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { error, .. } => Some(&error.code),
            Self::Transport { .. } => None,
        }
    }
}

/// One event of a live log stream.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// A piece of output.
    Line(LogLine),
    /// The execution ended; nothing follows.
    End(Box<Execution>),
}

/// A client of one Panda server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`), sending `token`.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        // `https://` servers: rustls with ring (reqwest is built without a provider of its
        // own). Installing it twice is harmless; the first one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if !base.starts_with("https://") {
            // Plain HTTP needs no certificate roots; loading the system's costs a few
            // milliseconds on every command.
            builder = builder.tls_certs_only([]);
        }
        let http = builder.build().map_err(|err| transport(&err, base))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// The server's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|err| transport(&err, &self.base))?;
        serde_json::from_slice(&bytes).map_err(|err| ClientError::Transport {
            message: format!("the server's answer could not be read: {err}"),
            hint: Some("is the server the same version of Panda as this CLI?".into()),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| transport(&err, &self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        let error = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|body| body.error)
            .unwrap_or_else(|_| ApiError {
                code: status_code(status).to_owned(),
                message: format!(
                    "the server answered {status}: {}",
                    String::from_utf8_lossy(&bytes).trim()
                ),
                hint: None,
            });
        Err(ClientError::Api {
            status: status.as_u16(),
            error,
        })
    }

    /// Jobs, by name, with their next fire time: `kind` is `scheduled`, `triggered` or `all`.
    pub async fn jobs(&self, kind: &str) -> Result<Vec<JobView>, ClientError> {
        self.call(Method::GET, &format!("/jobs?kind={kind}"), None::<&()>)
            .await
    }

    /// One job.
    pub async fn job(&self, name: &str) -> Result<Job, ClientError> {
        self.call(
            Method::GET,
            &format!("/jobs/{}", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// Creates a job.
    pub async fn job_create(&self, spec: &JobSpec) -> Result<Job, ClientError> {
        self.call(Method::POST, "/jobs", Some(spec)).await
    }

    /// Replaces a job's definition.
    pub async fn job_update(&self, spec: &JobSpec) -> Result<Job, ClientError> {
        let path = format!("/jobs/{}", segment(spec.name.as_str()));
        self.call(Method::PUT, &path, Some(spec)).await
    }

    /// Deletes a job (its history stays).
    pub async fn job_delete(&self, name: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &format!("/jobs/{}", segment(name)),
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Suspends (`true`) or resumes a cronjob.
    pub async fn job_suspend(&self, name: &str, suspend: bool) -> Result<Job, ClientError> {
        let verb = if suspend { "suspend" } else { "resume" };
        self.call(
            Method::POST,
            &format!("/jobs/{}/{verb}", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// Runs a job now (or later), as `request` says.
    pub async fn trigger(
        &self,
        name: &str,
        request: &TriggerRequest,
    ) -> Result<Triggered, ClientError> {
        self.call(
            Method::POST,
            &format!("/jobs/{}/executions", segment(name)),
            Some(request),
        )
        .await
    }

    /// A job's executions, newest first; `status` is comma-separated statuses or empty.
    pub async fn executions(
        &self,
        name: &str,
        status: &str,
        limit: u32,
        before: Option<ExecutionId>,
    ) -> Result<ExecutionList, ClientError> {
        let mut path = format!(
            "/jobs/{}/executions?limit={limit}&status={}",
            segment(name),
            segment(status)
        );
        if let Some(before) = before {
            path.push_str(&format!("&before={before}"));
        }
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// A job's newest execution that was not skipped.
    pub async fn latest(&self, name: &str) -> Result<Execution, ClientError> {
        self.call(
            Method::GET,
            &format!("/jobs/{}/executions/latest", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// One execution.
    pub async fn execution(&self, id: ExecutionId) -> Result<Execution, ClientError> {
        self.call(Method::GET, &format!("/executions/{id}"), None::<&()>)
            .await
    }

    /// Cancels an execution (a running one is stopped by its worker).
    pub async fn cancel(&self, id: ExecutionId) -> Result<Execution, ClientError> {
        self.call(
            Method::POST,
            &format!("/executions/{id}/cancel"),
            None::<&()>,
        )
        .await
    }

    /// A page of an execution's log: after `after`, or the last `tail` lines.
    pub async fn logs(
        &self,
        id: ExecutionId,
        after: Option<u64>,
        tail: Option<u32>,
    ) -> Result<LogPage, ClientError> {
        let mut path = format!("/executions/{id}/logs?");
        if let Some(after) = after {
            path.push_str(&format!("after={after}&"));
        }
        if let Some(tail) = tail {
            path.push_str(&format!("tail={tail}"));
        }
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// Follows an execution's log live from after `after` until it ends.
    ///
    /// # Errors
    ///
    /// When the stream cannot be opened; later failures end the stream with an error item.
    pub async fn follow(
        &self,
        id: ExecutionId,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<LogEvent, ClientError>> + use<>, ClientError> {
        let mut path = format!("/executions/{id}/logs/stream");
        if let Some(after) = after {
            path.push_str(&format!("?after={after}"));
        }
        let response = self.send(Method::GET, &path, None::<&()>).await?;
        let base = self.base.clone();
        let bytes = response.bytes_stream();
        Ok(sse_events(bytes, base))
    }

    /// The dead-letter queue, newest first, of one job or all.
    pub async fn dead_letters(&self, job: Option<&str>) -> Result<ExecutionList, ClientError> {
        let path = match job {
            Some(job) => format!("/dlq?job={}", segment(job)),
            None => "/dlq".to_owned(),
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// Alerts, newest first, with their deliveries; only `job`'s when given.
    pub async fn alerts(
        &self,
        job: Option<&str>,
        limit: u32,
    ) -> Result<panda_core::api::AlertList, ClientError> {
        let mut path = format!("/alerts?limit={limit}");
        if let Some(job) = job {
            path.push_str(&format!("&job={}", segment(job)));
        }
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// Runs a dead execution again; returns the new attempt.
    pub async fn dlq_retry(&self, id: ExecutionId) -> Result<Execution, ClientError> {
        self.call(Method::POST, &format!("/dlq/{id}/retry"), None::<&()>)
            .await
    }

    /// Creates an API token (`admin` or `read_only`); the answer holds its secret, shown once.
    pub async fn token_create(
        &self,
        name: &str,
        scope: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({"name": name, "scope": scope});
        self.call(Method::POST, "/tokens", Some(&body)).await
    }

    /// Live API tokens, by name (never their secrets).
    pub async fn tokens(&self) -> Result<Vec<serde_json::Value>, ClientError> {
        self.call(Method::GET, "/tokens", None::<&()>).await
    }

    /// Revokes a token by name; it stops working at once.
    pub async fn token_revoke(&self, name: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &format!("/tokens/{}", segment(name)),
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Takes a dead execution out of the dead-letter queue.
    pub async fn dlq_discard(&self, id: ExecutionId) -> Result<(), ClientError> {
        self.send(Method::POST, &format!("/dlq/{id}/discard"), None::<&()>)
            .await
            .map(drop)
    }
}

/// Parses a `text/event-stream` body into log events.
fn sse_events(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
    base: String,
) -> impl Stream<Item = Result<LogEvent, ClientError>> {
    let state = (Box::pin(bytes), Vec::<u8>::new(), base, false);
    futures::stream::unfold(state, |(mut bytes, mut buffer, base, done)| async move {
        if done {
            return None;
        }
        loop {
            // One event ends at a blank line.
            if let Some(end) = find_blank_line(&buffer) {
                let block: Vec<u8> = buffer.drain(..end).collect();
                let event = parse_block(&String::from_utf8_lossy(&block));
                match event {
                    Some(Ok(LogEvent::End(execution))) => {
                        return Some((Ok(LogEvent::End(execution)), (bytes, buffer, base, true)));
                    }
                    Some(item) => return Some((item, (bytes, buffer, base, false))),
                    None => continue,
                }
            }
            match bytes.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(err)) => {
                    return Some((Err(transport(&err, &base)), (bytes, buffer, base, true)));
                }
                None => return None,
            }
        }
    })
}

/// Where the first event block ends (after its blank line), if a whole one is buffered.
fn find_blank_line(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// One event block: `event:` and `data:` lines (keep-alive comments give `None`).
fn parse_block(block: &str) -> Option<Result<LogEvent, ClientError>> {
    let mut name = "message";
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = value.trim();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if data.is_empty() {
        return None;
    }
    let unreadable = |err: serde_json::Error| ClientError::Transport {
        message: format!("a log event could not be read: {err}"),
        hint: None,
    };
    Some(match name {
        "log" => serde_json::from_str::<LogLine>(&data)
            .map(LogEvent::Line)
            .map_err(unreadable),
        "end" => serde_json::from_str::<LogEnd>(&data)
            .map(|end| LogEvent::End(Box::new(end.execution)))
            .map_err(unreadable),
        _ => return None,
    })
}

fn transport(err: &reqwest::Error, base: &str) -> ClientError {
    if err.is_connect() {
        // The innermost cause says why: refused, unresolvable, a failed TLS handshake.
        let mut cause: &dyn std::error::Error = err;
        while let Some(source) = cause.source() {
            cause = source;
        }
        return ClientError::Transport {
            message: format!("cannot reach the Panda server at {base}: {cause}"),
            hint: Some(
                "start it with `panda server` (or point --server / PANDA_URL at a running one)"
                    .into(),
            ),
        };
    }
    if err.is_timeout() {
        return ClientError::Transport {
            message: format!("the Panda server at {base} did not answer in time"),
            hint: None,
        };
    }
    ClientError::Transport {
        message: format!("talking to the Panda server at {base}: {err}"),
        hint: None,
    }
}

fn status_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        s if s.is_client_error() => "invalid",
        _ => "internal",
    }
}

/// Percent-encodes one path or query value.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_parse_into_log_events() {
        let line = parse_block(
            "event: log\ndata: {\"seq\":3,\"stream\":\"stdout\",\"at\":\"2026-11-28T00:00:00Z\",\"text\":\"hi\\n\"}\n",
        );
        match line {
            Some(Ok(LogEvent::Line(line))) => {
                assert_eq!(
                    (line.seq, line.stream.as_str(), line.text.as_str()),
                    (3, "stdout", "hi\n")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_block(": keep-alive\n").is_none());
        assert_eq!(find_blank_line(b"event: a\ndata: 1\n\nrest"), Some(18));
    }

    #[tokio::test]
    async fn https_servers_are_spoken_to() {
        // A listener that answers a TLS hello with garbage: the client must try a handshake
        // (and fail at it), not refuse the scheme.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut stream, _)) = listener.accept() {
                let mut hello = [0u8; 5];
                let _ = stream.read_exact(&mut hello);
                let _ = stream.write_all(b"HTTP/1.1 400 not tls\r\n\r\n");
            }
        });
        let client = Client::new(&format!("https://127.0.0.1:{port}"), None).expect("client");
        let err = client.jobs("all").await.expect_err("not a TLS server");
        // A client without TLS says "scheme is not http"; this one got as far as the handshake.
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach the Panda server") && !text.contains("scheme"),
            "{text}"
        );
    }

    #[test]
    fn path_values_are_encoded() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("generate-reports"), "generate-reports");
    }
}
