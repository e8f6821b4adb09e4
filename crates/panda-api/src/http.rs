//! How the server holds its connections: every client is bounded in time and in size, so no
//! number of slow or stalled clients can starve the others or keep the server from stopping.
//!
//! - A request's header must arrive whole within [`HttpLimits::header_read_timeout`] (also how
//!   long an idle keep-alive connection stays open); its body within
//!   [`HttpLimits::body_read_timeout`] of the header, however it trickles in.
//! - At most [`HttpLimits::max_connections`] connections are served at once; the next ones
//!   wait in the listen backlog until one closes (they are not refused).
//! - A body over [`HttpLimits::max_body_bytes`] is answered `413 payload_too_large`.
//! - On shutdown the listener closes, idle connections close at once, and requests in flight
//!   get [`HttpLimits::shutdown_grace`]; whatever is still open then is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::Failure;

/// Bounds on what one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's header must arrive whole within this long; an idle keep-alive connection is
    /// closed after it too.
    pub header_read_timeout: Duration,
    /// A request's body must arrive whole within this long of its header.
    pub body_read_timeout: Duration,
    /// Connections served at once; the next ones wait in the listen backlog.
    pub max_connections: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// On shutdown, how long requests in flight may take before their connections are closed.
    pub shutdown_grace: Duration,
}

impl HttpLimits {
    /// The default header read timeout.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default body read timeout.
    pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default cap on open connections: well under the usual limit of 1,024 open files,
    /// which the store's connections, the Docker engine and the jobs' pipes share.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
    /// The largest request body: a job definition or an enqueue (whose payload is at most
    /// 64 KiB) is far smaller.
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    /// The largest body of a batch enqueue (`/executions/batch`): 1,000 enqueues of up to
    /// 16 KiB each.
    pub const MAX_BATCH_BODY_BYTES: usize = 16 * 1024 * 1024;
    /// The default grace on shutdown.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: Self::DEFAULT_BODY_READ_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_body_bytes: Self::MAX_BODY_BYTES,
            shutdown_grace: Self::DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` fires, then for at most the
/// shutdown grace.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    // Fired once the grace is over: every connection still open is closed.
    let cut = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        // A connection is accepted only once there is room for it: until then it waits in the
        // kernel's backlog, and costs the server no descriptor.
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_failed(&err).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let service = TowerToHyperService::new(
            ServiceExt::<hyper::Request<hyper::body::Incoming>>::map_future(router.clone(), {
                let in_flight = Arc::clone(&in_flight);
                move |answer| {
                    // Held from the request's start until its response is sent whole (or dropped).
                    let guard = InFlight::enter(&in_flight);
                    async move {
                        let response: Response = answer.await?;
                        Ok::<_, std::convert::Infallible>(response.map(|body| {
                            Body::new(body.map_frame(move |frame| {
                                let _ = &guard;
                                frame
                            }))
                        }))
                    }
                }
            }),
        );
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        let cut = cut.clone();
        connections.spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = shutdown.cancelled() => {}
            }
            // A connection with no answer on its way is closed now, even one halfway through
            // sending a request's header; one whose answer is on its way may finish until the
            // cut.
            if in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                () = cut.cancelled() => {}
            }
        });
    }
    // New connections are refused from here on.
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            grace = %panda_core::human::exact(limits.shutdown_grace),
            "closing the HTTP connections still open after the shutdown grace"
        );
        cut.cancel();
        connections.wait().await;
    }
}

/// Counts a response on its way while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// After a failed accept: a connection that went away before it was taken is nothing; anything
/// else (out of descriptors) is logged, and accepting pauses a moment so as not to spin.
async fn accept_failed(err: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%err, "cannot accept a connection; trying again in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Middleware: reads the request's body whole, within the size and time limits, before any
/// route sees it. A body too large is `413 payload_too_large`, one too slow `408
/// request_timeout`, one still coming when the server stops `503 unavailable`; each closes the
/// connection.
pub(crate) async fn read_body(
    State((limits, shutdown)): State<(HttpLimits, CancellationToken)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let limit = if parts.uri.path().ends_with("/executions/batch") {
        limits.max_body_bytes.max(HttpLimits::MAX_BATCH_BODY_BYTES)
    } else {
        limits.max_body_bytes
    };
    if declared.is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return too_large(limit);
    }
    let read = tokio::select! {
        read = tokio::time::timeout(limits.body_read_timeout, Limited::new(body, limit).collect()) => read,
        // A body still on its way when the server stops will not be served.
        () = shutdown.cancelled() => {
            return closing(
                Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the server is shutting down",
                )
                .hint("send the request again in a moment, to this server or another"),
            );
        }
    };
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(limit);
        }
        Ok(Err(err)) => {
            return closing(
                Failure::invalid(format!("the request body could not be read: {err}"))
                    .hint("send the whole body its Content-Length announces"),
            );
        }
        Err(_) => {
            return closing(
                Failure::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the request body did not arrive within {}",
                        panda_core::human::exact(limits.body_read_timeout)
                    ),
                )
                .hint("send the whole body at once, as its Content-Length announces"),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(limit: usize) -> Response {
    closing(
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
        .hint(
            "a job definition or an enqueue is far smaller: pass large data by reference (an \
             id or a URL) in the payload",
        ),
    )
}

/// The failure, with the connection closed after it: what is left of the body is not read.
fn closing(failure: Failure) -> Response {
    let mut response = failure.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
