//! The queues' depths and ages, and the dead-letter queue with its retry and discard buttons.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::Redirect;
use panda_core::{Status, human};
use panda_store::ExecutionFilter;
use serde::Deserialize;

use super::history::{ExecRow, HISTORY_PAGE};
use super::session::Session;

use super::{CsrfForm, Nav, Page};
use crate::AppState;
use crate::executions::execution_id;

/// A queue's depth and age.
#[derive(Debug)]
struct QueueRow {
    name: String,
    due: u64,
    waiting: u64,
    running: u64,
    oldest: String,
    /// Since when it is paused, as the page says it.
    paused: Option<String>,
}

#[derive(Template)]
#[template(path = "queues.html")]
struct QueuesPage {
    nav: Nav,
    queues: Vec<QueueRow>,
    running: Vec<ExecRow>,
    dead: Vec<ExecRow>,
    dead_older: Option<String>,
    dead_newest: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct DlqQuery {
    before: Option<String>,
}

pub(super) async fn queues(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<DlqQuery>, QueryRejection>,
) -> Result<Page, Page> {
    let Query(query) = query.unwrap_or_default();
    let before_text = query.before.as_deref().unwrap_or("").trim();
    let before = (!before_text.is_empty())
        .then(|| execution_id(before_text))
        .transpose()?;
    let now = state.clock.now();
    let running = ExecutionFilter {
        statuses: vec![Status::Running],
        limit: 100,
        ..ExecutionFilter::default()
    };
    let dead = ExecutionFilter {
        dead_letter: true,
        before,
        limit: HISTORY_PAGE,
        ..ExecutionFilter::default()
    };
    let (stats, running, dead) = tokio::try_join!(
        state.store.queue_stats(now),
        state.store.execution_list(&running),
        state.store.execution_list(&dead),
    )?;
    let queues = stats
        .into_iter()
        .map(|q| QueueRow {
            name: q.queue,
            due: q.due,
            waiting: q.waiting,
            running: q.running,
            oldest: q
                .oldest_due_at
                .map(|at| human::relative(at, now))
                .unwrap_or_default(),
            paused: q.paused_at.map(|at| human::relative(at, now)),
        })
        .collect();
    Ok(Page::render(&QueuesPage {
        nav: Nav::new(&session, "queues"),
        queues,
        running: running
            .executions
            .iter()
            .map(|e| ExecRow::of(e, now))
            .collect(),
        dead: dead
            .executions
            .iter()
            .map(|e| ExecRow::of(e, now))
            .collect(),
        dead_older: dead
            .next
            .map(|next| format!("/queues?before={next}#dead-letters")),
        dead_newest: before.is_some(),
    }))
}

pub(super) async fn dlq_retry(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    session.check(&CsrfForm::of(form).csrf)?;
    let id = execution_id(&id)?;
    let retry = state.store.dlq_retry(id, state.clock.now()).await?;
    Ok(Redirect::to(&format!("/executions/{}", retry.id)))
}

pub(super) async fn dlq_discard(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    let form = CsrfForm::of(form);
    session.check(&form.csrf)?;
    let id = execution_id(&id)?;
    state.store.dlq_discard(id, state.clock.now()).await?;
    Ok(Redirect::to(
        &form.back_or("/queues#dead-letters".to_owned()),
    ))
}

pub(super) async fn pause(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    session.check(&CsrfForm::of(form).csrf)?;
    panda_core::validate_queue_name(&name).map_err(|err| {
        Page::error(
            axum::http::StatusCode::BAD_REQUEST,
            &err.to_string(),
            "a queue is named like a job: lowercase letters, digits and dashes, up to 63",
        )
    })?;
    state.store.queue_pause(&name, state.clock.now()).await?;
    state.jobs_changed();
    Ok(Redirect::to("/queues"))
}

pub(super) async fn resume(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    session.check(&CsrfForm::of(form).csrf)?;
    state.store.queue_resume(&name).await?;
    state.jobs_changed();
    Ok(Redirect::to("/queues"))
}
