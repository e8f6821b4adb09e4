//! Panda's HTTP API: JSON under `/api/v1`, for the CLI, the dashboard and applications.
//!
//! Two decisions a newcomer must know:
//!
//! - **Every `/api` route needs a bearer token**, checked against the store (which keeps only
//!   its hash). A read-only token may `GET`; anything else needs an admin token. `/healthz`
//!   and `/readyz` are open.
//! - **Errors have one shape**: `{"error": {"code", "message", "hint"}}`, made in one place
//!   ([`Failure`]) from the store's typed errors, and logged there once.
//!
//! Live logs are an SSE stream that replays the stored log from a cursor, then follows it as
//! the workers write it (wherever they run), and ends with the execution's final state. It
//! reads the store, so a follower never touches, let alone slows, the job.

mod auth;
mod error;
mod executions;
mod jobs;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};
use panda_core::Clock;
use panda_engine::SchedulerHandle;
use panda_store::Store;
use tokio_util::sync::CancellationToken;

pub use error::Failure;

/// Parsed schedules, `None` for one that does not parse.
type ScheduleCache = Arc<
    std::sync::Mutex<std::collections::HashMap<(String, String), Option<panda_core::CronSchedule>>>,
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
        }
    }

    /// When an active cronjob fires next (after now).
    fn next_run(&self, job: &panda_core::Job) -> Option<chrono::DateTime<chrono::Utc>> {
        let schedule = job.spec.schedule.as_ref().filter(|_| !job.spec.suspended)?;
        let key = (schedule.cron.clone(), schedule.timezone.clone());
        let mut cache = self
            .schedules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let parsed = cache.entry(key).or_insert_with(|| {
            panda_core::CronSchedule::parse(&schedule.cron, &schedule.timezone).ok()
        });
        parsed.as_ref()?.next_after(self.clock.now())
    }

    fn jobs_changed(&self) {
        if let Some(scheduler) = &self.scheduler {
            scheduler.jobs_changed();
        }
    }
}

/// Every route, with auth on `/api`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/jobs", get(jobs::list).post(jobs::create))
        .route(
            "/jobs/{name}",
            get(jobs::get).put(jobs::update).delete(jobs::delete),
        )
        .route("/jobs/{name}/suspend", post(jobs::suspend))
        .route("/jobs/{name}/resume", post(jobs::resume))
        .route(
            "/jobs/{name}/executions",
            get(executions::list_of_job).post(executions::trigger),
        )
        .route("/jobs/{name}/executions/latest", get(executions::latest))
        .route("/jobs/{name}/slots", get(jobs::slots))
        .route("/executions/{id}", get(executions::get))
        .route("/executions/{id}/cancel", post(executions::cancel))
        .route("/executions/{id}/logs", get(executions::logs))
        .route("/executions/{id}/logs/stream", get(executions::stream))
        .route("/dlq", get(executions::dead_letters))
        .route("/dlq/{id}/retry", post(executions::dlq_retry))
        .route("/dlq/{id}/discard", post(executions::dlq_discard))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{name}", delete(tokens::revoke))
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
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .nest("/api/v1", api)
        .with_state(state)
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

/// Serves the API on `listener` until `state.shutdown` fires.
///
/// # Errors
///
/// When the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
