//! A typed client of Panda's HTTP API (`/api/v1`), used by the CLI and the end-to-end tests.
//! It shares only `panda_core`'s types with the server, never the server itself.
//!
//! Every call returns [`ClientError`]: the server's own error (its code, message and hint), or
//! the server could not be reached (with a hint on how to start it).

use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use panda_core::api::{
    ApiError, BatchRequest, BatchResponse, CreatedJob, ErrorBody, ExecutionList, JobView, LogEnd,
    LogLine, LogPage, PingUrlView, TriggerRequest, Triggered, WebhookView,
};
use panda_core::{Execution, ExecutionId, Job, JobSpec, Revision, ServiceStatus};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
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
        /// The server's `Retry-After`: when asking again may succeed.
        retry_after: Option<Duration>,
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

    /// How long the server asked to wait before trying again (its `Retry-After`, in seconds),
    /// as it does while its database is unreachable (`store_unavailable`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            Self::Transport { .. } => None,
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
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
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
            retry_after,
        })
    }

    /// Jobs, by name, with their next fire time: `kind` is `scheduled`, `triggered`,
    /// `monitor` or `all`.
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

    /// The jobs that follow the job `name` (their `after` names it), by name.
    pub async fn job_followers(
        &self,
        name: &str,
    ) -> Result<Vec<panda_core::api::Follower>, ClientError> {
        self.call(
            Method::GET,
            &format!("/jobs/{}/followers", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// Creates a job.
    pub async fn job_create(&self, spec: &JobSpec) -> Result<Job, ClientError> {
        self.call(Method::POST, "/jobs", Some(spec)).await
    }

    /// Creates a job and returns it with, for a monitor, its ping URL: shown this once.
    pub async fn job_create_full(&self, spec: &JobSpec) -> Result<CreatedJob, ClientError> {
        self.call(Method::POST, "/jobs", Some(spec)).await
    }

    /// Gives a monitor a new ping URL, replacing the earlier one; the answer holds its token,
    /// shown this once.
    pub async fn ping_url_rotate(&self, name: &str) -> Result<PingUrlView, ClientError> {
        self.call(
            Method::POST,
            &format!("/jobs/{}/ping-url", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// A monitor's ping URL, its token redacted.
    pub async fn ping_url(&self, name: &str) -> Result<PingUrlView, ClientError> {
        self.call(
            Method::GET,
            &format!("/jobs/{}/ping-url", segment(name)),
            None::<&()>,
        )
        .await
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

    /// Gives a job a new webhook URL, replacing any earlier one; the answer holds its token,
    /// shown this once. `secret`: `None` keeps the signing key, `Some(None)` takes unsigned
    /// deliveries, `Some(Some(key))` requires deliveries signed with `key`.
    pub async fn webhook_rotate(
        &self,
        name: &str,
        secret: Option<Option<&str>>,
    ) -> Result<WebhookView, ClientError> {
        let body = match secret {
            None => serde_json::json!({}),
            Some(key) => serde_json::json!({ "secret": key }),
        };
        self.call(
            Method::POST,
            &format!("/jobs/{}/webhook", segment(name)),
            Some(&body),
        )
        .await
    }

    /// A job's webhook, its token redacted.
    pub async fn webhook(&self, name: &str) -> Result<WebhookView, ClientError> {
        self.call(
            Method::GET,
            &format!("/jobs/{}/webhook", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// Removes a job's webhook; its URL stops working.
    pub async fn webhook_delete(&self, name: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &format!("/jobs/{}/webhook", segment(name)),
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

    /// Enqueues up to 1,000 executions of a job in one transaction, each answered in its place.
    pub async fn trigger_batch(
        &self,
        name: &str,
        request: &BatchRequest,
    ) -> Result<BatchResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/jobs/{}/executions/batch", segment(name)),
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

    /// Every queue that holds work or is paused, by name.
    pub async fn queues(&self) -> Result<panda_core::api::QueueList, ClientError> {
        self.call(Method::GET, "/queues", None::<&()>).await
    }

    /// Pauses (`true`) or resumes a queue; returns it as it is now.
    pub async fn queue_pause(
        &self,
        name: &str,
        pause: bool,
    ) -> Result<panda_core::api::QueueView, ClientError> {
        let verb = if pause { "pause" } else { "resume" };
        self.call(
            Method::POST,
            &format!("/queues/{}/{verb}", segment(name)),
            None::<&()>,
        )
        .await
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

    /// Every service, by name, with its instances' counts, revision and rollout.
    pub async fn services(&self) -> Result<Vec<ServiceStatus>, ClientError> {
        self.call(Method::GET, "/services", None::<&()>).await
    }

    /// One service, with each instance.
    pub async fn service(&self, name: &str) -> Result<ServiceStatus, ClientError> {
        self.call(
            Method::GET,
            &format!("/services/{}", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// Creates a service (a job definition with a service part).
    pub async fn service_create(&self, spec: &JobSpec) -> Result<ServiceStatus, ClientError> {
        self.call(Method::POST, "/services", Some(spec)).await
    }

    /// Replaces a service's definition; a change of what runs is rolled out.
    pub async fn service_update(&self, spec: &JobSpec) -> Result<ServiceStatus, ClientError> {
        let path = format!("/services/{}", segment(spec.name.as_str()));
        self.call(Method::PUT, &path, Some(spec)).await
    }

    /// Deletes a service: its instances stop; its history stays.
    pub async fn service_delete(&self, name: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &format!("/services/{}", segment(name)),
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Sets how many instances a service runs.
    pub async fn service_scale(
        &self,
        name: &str,
        replicas: u32,
    ) -> Result<ServiceStatus, ClientError> {
        let body = serde_json::json!({ "replicas": replicas });
        self.call(
            Method::POST,
            &format!("/services/{}/scale", segment(name)),
            Some(&body),
        )
        .await
    }

    /// One of a service's actions: `suspend`, `resume`, `restart` or `rollback`.
    pub async fn service_action(
        &self,
        name: &str,
        action: &str,
    ) -> Result<ServiceStatus, ClientError> {
        self.call(
            Method::POST,
            &format!("/services/{}/{}", segment(name), segment(action)),
            None::<&()>,
        )
        .await
    }

    /// A service's kept revisions, newest first.
    pub async fn service_revisions(&self, name: &str) -> Result<Vec<Revision>, ClientError> {
        self.call(
            Method::GET,
            &format!("/services/{}/revisions", segment(name)),
            None::<&()>,
        )
        .await
    }

    /// Takes a dead execution out of the dead-letter queue.
    pub async fn dlq_discard(&self, id: ExecutionId) -> Result<(), ClientError> {
        self.send(Method::POST, &format!("/dlq/{id}/discard"), None::<&()>)
            .await
            .map(drop)
    }
}

/// Parses a `text/event-stream` body into log events. The framing (LF, CRLF or CR line ends,
/// comments, `id:` and `retry:` fields, events split across chunks) is eventsource-stream's;
/// this reads Panda's two events, `log` and `end`, and stops after `end`.
fn sse_events(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
    base: String,
) -> impl Stream<Item = Result<LogEvent, ClientError>> {
    let state = (Box::pin(bytes.eventsource()), base, false);
    futures::stream::unfold(state, |(mut events, base, done)| async move {
        if done {
            return None;
        }
        loop {
            match events.next().await? {
                Ok(event) => match log_event(&event) {
                    Some(Ok(LogEvent::End(execution))) => {
                        return Some((Ok(LogEvent::End(execution)), (events, base, true)));
                    }
                    Some(item) => return Some((item, (events, base, false))),
                    None => {}
                },
                Err(EventStreamError::Transport(err)) => {
                    return Some((Err(transport(&err, &base)), (events, base, true)));
                }
                Err(err) => {
                    let err = ClientError::Transport {
                        message: format!("the log stream from {base} could not be read: {err}"),
                        hint: None,
                    };
                    return Some((Err(err), (events, base, true)));
                }
            }
        }
    })
}

/// One event as a log event; events of other names, and events without data, give `None`.
fn log_event(event: &Event) -> Option<Result<LogEvent, ClientError>> {
    if event.data.is_empty() {
        return None;
    }
    let unreadable = |err: serde_json::Error| ClientError::Transport {
        message: format!("a log event could not be read: {err}"),
        hint: None,
    };
    Some(match event.event.as_str() {
        "log" => serde_json::from_str::<LogLine>(&event.data)
            .map(LogEvent::Line)
            .map_err(unreadable),
        "end" => serde_json::from_str::<LogEnd>(&event.data)
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
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::INSUFFICIENT_STORAGE => "storage_full",
        s if s.is_client_error() => "invalid",
        _ => "internal",
    }
}

/// What [`segment`] leaves as it is: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path or query value.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"seq":3,"stream":"stdout","at":"2026-11-28T00:00:00Z","text":"hi\n"}"#;

    /// The events `sse_events` reads from `chunks`, as they arrive.
    async fn events_of(chunks: &[&str]) -> Vec<Result<LogEvent, ClientError>> {
        let chunks: Vec<reqwest::Result<bytes::Bytes>> = chunks
            .iter()
            .map(|chunk| Ok(bytes::Bytes::from(chunk.to_string())))
            .collect();
        sse_events(futures::stream::iter(chunks), "http://test".into())
            .collect()
            .await
    }

    fn line_of(event: &Result<LogEvent, ClientError>) -> (u64, &str, &str) {
        match event {
            Ok(LogEvent::Line(line)) => (line.seq, line.stream.as_str(), line.text.as_str()),
            other => panic!("not a log line: {other:?}"),
        }
    }

    #[tokio::test]
    async fn sse_log_events_are_read_across_chunks() {
        let block = format!("event: log\ndata: {LOG}\n\n");
        let (head, tail) = block.split_at(20);
        let events = events_of(&[": keep-alive\n\n", head, tail]).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(line_of(&events[0]), (3, "stdout", "hi\n"));
    }

    #[tokio::test]
    async fn sse_streams_with_crlf_line_ends_are_read() {
        let block = format!("event: log\r\ndata: {LOG}\r\n\r\n");
        // The second event's CRLF is cut between two chunks.
        let (head, tail) = block.split_at(block.len() - 3);
        let other = "event: other\r\ndata: {}\r\n\r\n";
        let events = events_of(&[&block, head, tail, other]).await;
        assert_eq!(events.len(), 2, "{events:?}");
        for event in &events {
            assert_eq!(line_of(event), (3, "stdout", "hi\n"));
        }
    }

    #[tokio::test]
    async fn sse_id_and_retry_fields_and_comments_are_ignored() {
        let body = format!(
            ": the server says hello\nid: 41\nretry: 3000\nevent: log\ndata: {LOG}\n\nid: 42\n\n"
        );
        let events = events_of(&[&body]).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(line_of(&events[0]), (3, "stdout", "hi\n"));
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
