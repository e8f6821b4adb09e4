//! Panda's HTTP API: JSON under `/api/v1`, for the CLI, the dashboard and applications.
//!
//! Two decisions a newcomer must know:
//!
//! - **Every `/api` route needs a bearer token**, checked against the store (which keeps only
//!   its hash), and taken for a second without asking again. A read-only token may `GET`;
//!   anything else needs an admin token. `/metrics` (Prometheus) takes the same tokens;
//!   `/healthz` and `/readyz` are open.
//! - **Errors have one shape**: `{"error": {"code", "message", "hint"}}`, made in one place
//!   ([`Failure`]) from the store's typed errors, and logged there once.
//!
//! The web dashboard (`dashboard`, mounted at `/`) is server-rendered HTML over the same store
//! and helpers; it logs in with a token kept in an `HttpOnly`, `SameSite=Strict` cookie.
//!
//! Live logs are an SSE stream that replays the stored log from a cursor, then follows it as
//! the workers write it (wherever they run), and ends with the execution's final state. It
//! reads the store, so a follower never touches, let alone slows, the job.

mod alerts;
mod auth;
mod dashboard;
mod enqueue;
mod error;
mod executions;
mod http;
mod jobs;
mod metrics;
mod monitors;
mod openapi;
mod queues;
mod services;
mod tokens;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, delete, get, post, put};
use panda_core::Clock;
use panda_engine::SchedulerHandle;
use panda_store::Store;
use tokio_util::sync::CancellationToken;

pub use error::Failure;
pub use http::HttpLimits;
pub use metrics::install_recorder as install_metrics_recorder;

/// Parsed schedules by expression, time zone and jitter offset, `None` for one that does not
/// parse.
type ScheduleCache = Arc<
    std::sync::Mutex<
        std::collections::HashMap<
            (String, String, std::time::Duration),
            Option<panda_core::CronSchedule>,
        >,
    >,
>;

/// What every route shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// All state.
    pub store: Arc<dyn Store>,
    /// The time every change is recorded at.
    pub clock: Arc<dyn Clock>,
    /// Told when jobs change, so the scheduler re-reads them at once; `None` on a node that
    /// runs no scheduler.
    pub scheduler: Option<SchedulerHandle>,
    /// Fired when the server stops: open log streams end.
    pub shutdown: CancellationToken,
    /// Parsed schedules by (expression, time zone): parsing is the costly part of "when does
    /// it fire next", and a server sees the same schedules again and again.
    schedules: ScheduleCache,
    /// What `/metrics` renders; `None` answers 404 there.
    metrics: Option<metrics::Metrics>,
    /// What one client may hold of the server.
    limits: HttpLimits,
    /// The enqueue writer (group commit), started by the first enqueue.
    enqueuer: Arc<std::sync::OnceLock<enqueue::Enqueuer>>,
    /// Tokens verified in the last second.
    verified: Arc<auth::Verified>,
}

impl AppState {
    /// A state over `store` with nothing cached yet.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        scheduler: Option<SchedulerHandle>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            clock,
            scheduler,
            shutdown,
            schedules: Arc::default(),
            metrics: None,
            limits: HttpLimits::default(),
            enqueuer: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// The enqueue writer, started on first use (on the runtime serving the request).
    fn enqueuer(&self) -> &enqueue::Enqueuer {
        self.enqueuer.get_or_init(|| {
            enqueue::Enqueuer::start(Arc::clone(&self.store), Arc::clone(&self.clock))
        })
    }

    /// Serves within `limits` instead of [`HttpLimits::default`].
    #[must_use]
    pub fn with_http_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves `/metrics` from `handle`, the installed Prometheus recorder's. The queue gauges
    /// are refreshed from the store at each scrape.
    #[must_use]
    pub fn with_metrics(mut self, handle: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        self.metrics = Some(metrics::Metrics {
            handle,
            queues: Arc::default(),
        });
        self
    }

    /// When an active cronjob fires next (after now).
    fn next_run(&self, job: &panda_core::Job) -> Option<chrono::DateTime<chrono::Utc>> {
        let schedule = job.spec.schedule.as_ref().filter(|_| !job.spec.suspended)?;
        let key = (
            schedule.cron.clone(),
            schedule.timezone.clone(),
            schedule.offset(job.id),
        );
        let mut cache = self
            .schedules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let parsed = cache
            .entry(key)
            .or_insert_with(|| schedule.fire_times(job.id).ok());
        parsed.as_ref()?.next_after(self.clock.now())
    }

    fn jobs_changed(&self) {
        if let Some(scheduler) = &self.scheduler {
            scheduler.jobs_changed();
        }
    }
}

/// Every `/api/v1` route: its method, its path and its handler. The router is built from this
/// list, and the OpenAPI document is tested against it.
fn api_routes() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("GET", "/jobs", get(jobs::list)),
        ("POST", "/jobs", post(jobs::create)),
        ("GET", "/jobs/{name}", get(jobs::get)),
        ("PUT", "/jobs/{name}", put(jobs::update)),
        ("DELETE", "/jobs/{name}", delete(jobs::delete)),
        ("POST", "/jobs/{name}/suspend", post(jobs::suspend)),
        ("POST", "/jobs/{name}/resume", post(jobs::resume)),
        (
            "GET",
            "/jobs/{name}/executions",
            get(executions::list_of_job),
        ),
        ("POST", "/jobs/{name}/executions", post(executions::trigger)),
        (
            "POST",
            "/jobs/{name}/executions/batch",
            post(executions::batch),
        ),
        (
            "GET",
            "/jobs/{name}/executions/latest",
            get(executions::latest),
        ),
        ("GET", "/jobs/{name}/slots", get(jobs::slots)),
        ("GET", "/jobs/{name}/followers", get(jobs::followers)),
        ("POST", "/jobs/{name}/webhook", post(webhooks::rotate)),
        ("GET", "/jobs/{name}/webhook", get(webhooks::get)),
        ("DELETE", "/jobs/{name}/webhook", delete(webhooks::delete)),
        ("POST", "/jobs/{name}/ping-url", post(monitors::rotate)),
        ("GET", "/jobs/{name}/ping-url", get(monitors::get)),
        ("GET", "/executions/{id}", get(executions::get)),
        ("POST", "/executions/{id}/cancel", post(executions::cancel)),
        ("GET", "/executions/{id}/logs", get(executions::logs)),
        (
            "GET",
            "/executions/{id}/logs/stream",
            get(executions::stream),
        ),
        ("GET", "/services", get(services::list)),
        ("POST", "/services", post(services::create)),
        ("GET", "/services/{name}", get(services::get)),
        ("PUT", "/services/{name}", put(services::update)),
        ("DELETE", "/services/{name}", delete(services::delete)),
        ("POST", "/services/{name}/scale", post(services::scale)),
        ("POST", "/services/{name}/suspend", post(services::suspend)),
        ("POST", "/services/{name}/resume", post(services::resume)),
        ("POST", "/services/{name}/restart", post(services::restart)),
        (
            "POST",
            "/services/{name}/rollback",
            post(services::rollback),
        ),
        (
            "GET",
            "/services/{name}/revisions",
            get(services::revisions),
        ),
        ("GET", "/dlq", get(executions::dead_letters)),
        ("POST", "/dlq/{id}/retry", post(executions::dlq_retry)),
        ("POST", "/dlq/{id}/discard", post(executions::dlq_discard)),
        ("GET", "/queues", get(queues::list)),
        ("POST", "/queues/{name}/pause", post(queues::pause)),
        ("POST", "/queues/{name}/resume", post(queues::resume)),
        ("GET", "/alerts", get(alerts::list)),
        ("GET", "/tokens", get(tokens::list)),
        ("POST", "/tokens", post(tokens::create)),
        ("DELETE", "/tokens/{name}", delete(tokens::revoke)),
    ]
}

/// The `/api/v1` routes as (method, path): what the OpenAPI document must describe.
pub fn api_route_list() -> Vec<(&'static str, &'static str)> {
    api_routes()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The URLs jobs and monitors hand out, served at the root with no API token (their own token
/// is the credential), as `(method, path)`; the OpenAPI document describes them too.
fn outside_routes() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("POST", "/hooks/{token}", post(webhooks::deliver)),
        ("GET", "/ping/{token}", get(monitors::success)),
        ("POST", "/ping/{token}", post(monitors::success)),
        ("GET", "/ping/{token}/{what}", get(monitors::signal)),
        ("POST", "/ping/{token}/{what}", post(monitors::signal)),
    ]
}

/// The routes outside `/api/v1` that the OpenAPI document describes, as `(method, path)`.
pub fn outside_route_list() -> Vec<(&'static str, &'static str)> {
    outside_routes()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

pub use openapi::document as openapi_document;

/// Every route: the API under `/api/v1` and `/metrics` (bearer tokens), the dashboard at `/`
/// (a session cookie), and the health checks.
pub fn router(state: AppState) -> Router {
    let body_limits = (state.limits, state.shutdown.clone());
    let mut api = Router::new();
    for (_, path, handler) in api_routes() {
        api = api.route(path, handler);
    }
    let api = api
        .fallback(|| async { Failure::not_found("no such API route") })
        .method_not_allowed_fallback(|| async {
            Failure::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // The document is public, like the API's shape.
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi::JSON.as_str(),
                )
            }),
        );
    let mut root = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready));
    // A webhook's URL and a monitor's ping URL are their own credentials: no API token.
    for (_, path, handler) in outside_routes() {
        root = root.route(path, handler);
    }
    root.nest("/api/v1", api)
        .merge(metrics_routes(&state))
        .merge(dashboard::router(state.clone()))
        .fallback(dashboard::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            body_limits,
            http::read_body,
        ))
}

/// `/metrics`, behind a token.
fn metrics_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics::render))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
}

/// Ready when the store answers.
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<&'static str, Failure> {
    state
        .store
        .job_list(panda_store::JobKind::Scheduled)
        .await
        .map(|_| "ready")
        .map_err(Failure::from)
}

/// Serves `/metrics` (behind a token), `/healthz` and `/readyz` alone on `listener` until
/// `state.shutdown` fires: how a node without the API is scraped. The same [`HttpLimits`] hold
/// as on the API.
///
/// # Errors
///
/// None so far: a failed accept is logged and retried.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let limits = state.limits;
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(metrics_routes(&state))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            (limits, shutdown.clone()),
            http::read_body,
        ));
    http::serve(listener, router, limits, shutdown).await;
    Ok(())
}

/// Serves the API on `listener` within the state's [`HttpLimits`] until `state.shutdown`
/// fires; then requests in flight get the limits' shutdown grace.
///
/// # Errors
///
/// None so far: a failed accept is logged and retried.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let limits = state.limits;
    http::serve(listener, router(state), limits, shutdown).await;
    Ok(())
}
