//! One execution: its details and its log (followed live while it runs), the raw log, and
//! the cancel button.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use panda_core::api::SECRET_PLACEHOLDER;
use panda_core::{ExecutionId, Status, human};
use panda_store::ExecutionFilter;

use super::history::ExecRow;
use super::session::Session;
use super::view::{self, StatusView};
use super::{CsrfForm, Nav, Page};
use crate::AppState;
use crate::executions::execution_id;

/// Log lines an execution page shows; the raw download has them all.
const LOG_LINES: u32 = 5000;

/// A log line as the page shows it.
#[derive(Debug)]
struct LineView {
    number: u64,
    stream: &'static str,
    at: String,
    text: String,
}

/// The upstream run of a chained execution, as its page links it.
#[derive(Debug)]
struct UpstreamView {
    id: ExecutionId,
    /// `generate-reports, succeeded`; empty once pruned from the history.
    what: String,
}

#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    nav: Nav,
    id: ExecutionId,
    job: String,
    /// The job is a service: the crumb leads to its service page.
    service: bool,
    status: StatusView,
    live: bool,
    facts: Vec<(&'static str, String)>,
    /// For a run a chain started: the upstream attempt whose end started it, with its job's
    /// name and status when it is still in the history.
    upstream: Option<UpstreamView>,
    attempts: Vec<ExecRow>,
    env: Vec<(String, String)>,
    lines: Vec<LineView>,
    /// The last seq shown, for the live stream to continue after.
    after: Option<u64>,
    /// The log's beginning is not shown (only its last [`LOG_LINES`]).
    cut: bool,
    can_cancel: bool,
    is_dead: bool,
}

pub(super) async fn execution(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Result<Page, Page> {
    let id = execution_id(&id)?;
    // Status before lines: a terminal status read first means the lines are all there is.
    let e = state.store.execution_get(id).await?;
    let run = ExecutionFilter {
        root: Some(e.root_id),
        limit: 100,
        ..ExecutionFilter::default()
    };
    let (chunks, attempts, job) = tokio::try_join!(
        state.store.log_tail(id, LOG_LINES),
        state.store.execution_list(&run),
        state.store.job_get_by_id(e.job_id),
    )?;
    let now = state.clock.now();
    let mut facts = vec![
        ("Trigger", e.trigger.as_str().to_owned()),
        (
            "Attempt",
            format!("{} of {}", e.attempt, e.retry.max_attempts),
        ),
        ("Queue", e.queue.clone()),
        ("Created", view::absolute(e.created_at)),
    ];
    if let Some(instance) = e.instance {
        // A service's run: which instance and revision, instead of an attempt of a retry.
        let revision = e
            .revision
            .map_or_else(String::new, |r| format!(", revision {r}"));
        facts.retain(|(label, _)| *label != "Attempt");
        facts.insert(1, ("Instance", format!("{instance}{revision}")));
    }
    if let Some(at) = e.healthy_at {
        facts.push(("Healthy since", view::absolute(at)));
    }
    if let Some(at) = e.scheduled_at {
        facts.push(("Scheduled for", view::absolute(at)));
    }
    if e.status == Status::Queued {
        facts.push(("Due", view::absolute(e.run_at)));
    }
    if let Some(at) = e.started_at {
        facts.push(("Started", view::absolute(at)));
    }
    if let Some(at) = e.finished_at {
        facts.push(("Finished", view::absolute(at)));
    }
    if let Some(took) = view::ran_for(&e, now) {
        facts.push(("Duration", human::elapsed(took)));
    }
    if let Some(code) = e.exit_code {
        facts.push(("Exit code", code.to_string()));
    }
    if let Some(reason) = &e.reason {
        facts.push(("Reason", reason.clone()));
    }
    if let Some(digest) = &e.image_digest {
        facts.push(("Image digest", digest.clone()));
    }
    if let Some(worker) = &e.worker_id {
        facts.push(("Worker", worker.clone()));
    }
    if e.cancel_requested && !e.status.is_terminal() {
        facts.push(("Cancel", "requested".to_owned()));
    }
    // The job's environment with this execution's overrides; secret values hidden.
    let mut env: BTreeMap<String, String> = job.spec.env.clone();
    for key in job.spec.secret_env.keys() {
        env.insert(key.clone(), SECRET_PLACEHOLDER.to_owned());
    }
    for (key, value) in &e.env {
        let value = if job.spec.secret_env.contains_key(key) {
            SECRET_PLACEHOLDER.to_owned()
        } else {
            value.clone()
        };
        env.insert(key.clone(), value);
    }
    let upstream = match e.upstream_id() {
        None => None,
        Some(upstream) => Some(UpstreamView {
            id: upstream,
            what: match state.store.execution_get(upstream).await {
                Ok(u) => format!("{}, {}", u.job_name, u.status),
                Err(panda_store::StoreError::NotFound { .. }) => String::new(),
                Err(err) => return Err(err.into()),
            },
        }),
    };
    let cut = chunks.first().is_some_and(|c| c.seq > 0);
    let after = chunks.last().map(|c| c.seq);
    let lines = chunks
        .into_iter()
        .map(|chunk| {
            let text = String::from_utf8_lossy(&chunk.data);
            LineView {
                number: chunk.seq + 1,
                stream: chunk.stream.as_str(),
                at: chunk.at.format("%H:%M:%S%.3f").to_string(),
                text: text.strip_suffix('\n').unwrap_or(&text).to_owned(),
            }
        })
        .collect();
    let mut attempts: Vec<ExecRow> = attempts
        .executions
        .iter()
        .map(|a| ExecRow::of(a, now))
        .collect();
    attempts.reverse();
    Ok(Page::render(&ExecutionPage {
        nav: Nav::new(&session, "executions"),
        id: e.id,
        job: e.job_name.clone(),
        service: job.spec.is_service(),
        status: StatusView::of(e.status),
        live: !e.status.is_terminal(),
        facts,
        upstream,
        attempts,
        env: env.into_iter().collect(),
        lines,
        after,
        cut,
        can_cancel: !e.status.is_terminal(),
        is_dead: e.status == Status::Dead,
    }))
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    session.check(&CsrfForm::of(form).csrf)?;
    let id = execution_id(&id)?;
    state.store.execution_cancel(id, state.clock.now()).await?;
    Ok(Redirect::to(&format!("/executions/{id}")))
}

/// The whole log as plain text.
pub(super) async fn raw_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Page> {
    let id = execution_id(&id)?;
    state.store.execution_get(id).await?;
    let mut text = Vec::new();
    let mut after = None;
    loop {
        let chunks = state.store.log_read(id, after, 1000).await?;
        let Some(last) = chunks.last() else { break };
        after = Some(last.seq);
        for chunk in &chunks {
            text.extend_from_slice(&chunk.data);
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{id}.log\""),
            ),
        ],
        text,
    )
        .into_response())
}
