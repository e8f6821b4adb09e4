//! `/queues`: each queue's depth, and pausing and resuming one.

use axum::Json;
use axum::extract::{Path, State};
use panda_core::api::{ErrorBody, QueueList, QueueView};
use panda_store::QueueStats;

use crate::{AppState, Failure};

/// A queue's stats as the API shows them.
pub(crate) fn view(stats: QueueStats) -> QueueView {
    QueueView {
        name: stats.queue,
        due: stats.due,
        waiting: stats.waiting,
        running: stats.running,
        oldest_due_at: stats.oldest_due_at,
        paused: stats.paused_at.is_some(),
        paused_at: stats.paused_at,
    }
}

#[utoipa::path(
    get,
    path = "/queues",
    tag = "queues",
    summary = "Every queue that holds work or is paused, with its depth",
    responses(
        (status = 200, description = "The queues, by name", body = QueueList),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<QueueList>, Failure> {
    let stats = state.store.queue_stats(state.clock.now()).await?;
    Ok(Json(QueueList {
        queues: stats.into_iter().map(view).collect(),
    }))
}

/// The queue `name` as it is now (empty when it holds nothing).
async fn one(state: &AppState, name: &str) -> Result<QueueView, Failure> {
    let stats = state.store.queue_stats(state.clock.now()).await?;
    Ok(stats.into_iter().find(|q| q.queue == name).map_or_else(
        || QueueView {
            name: name.to_owned(),
            due: 0,
            waiting: 0,
            running: 0,
            oldest_due_at: None,
            paused: false,
            paused_at: None,
        },
        view,
    ))
}

#[utoipa::path(
    post,
    path = "/queues/{name}/pause",
    tag = "queues",
    summary = "Pause a queue on every node: it keeps accepting work and starts none",
    description = "What is running runs on. Cronjobs on a paused queue miss their slots: with `catch_up = none` each slot is recorded as skipped; otherwise a slot waits for the queue within its starting deadline, and is skipped once that passes. Pausing a paused queue changes nothing.",
    params(("name" = String, Path, description = "The queue's name (it need not hold work)")),
    responses(
        (status = 200, description = "Paused", body = QueueView),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<QueueView>, Failure> {
    panda_core::validate_queue_name(&name).map_err(|err| {
        Failure::invalid(err.to_string())
            .hint("a queue is named like a job: lowercase letters, digits and dashes, up to 63")
    })?;
    state.store.queue_pause(&name, state.clock.now()).await?;
    state.jobs_changed();
    Ok(Json(one(&state, &name).await?))
}

#[utoipa::path(
    post,
    path = "/queues/{name}/resume",
    tag = "queues",
    summary = "Resume a paused queue: its due work starts at once",
    description = "Resuming a queue that is not paused changes nothing.",
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "Running", body = QueueView),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<QueueView>, Failure> {
    state.store.queue_resume(&name).await?;
    state.jobs_changed();
    Ok(Json(one(&state, &name).await?))
}
