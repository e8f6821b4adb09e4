//! The cronjobs, monitors and jobs lists: each job with its schedule, its next run (for a
//! monitor, the next ping due) and a strip of its recent executions.

use std::collections::HashMap;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use panda_core::{ExecutionId, Job, RuntimeSpec, Status, human};
use panda_store::{ExecutionBrief, JobKind};
use serde::Deserialize;

use super::session::Session;
use super::view::{self, StatusView};
use super::{Nav, Page};
use crate::AppState;

/// Executions in a job's strip on the cronjobs page.
const STRIP: u32 = 30;
/// Jobs on one page of the cronjobs (or jobs) list.
const JOBS_PAGE: usize = 100;

/// One row of the cronjobs (or jobs) page.
#[derive(Debug)]
struct JobRow {
    name: String,
    /// What runs: the image, or the command.
    runs: String,
    cron: Option<String>,
    words: Option<String>,
    timezone: Option<String>,
    next: Option<(String, String)>,
    suspended: bool,
    last: Option<(StatusView, ExecutionId)>,
    strip: String,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    nav: Nav,
    scheduled: bool,
    /// The monitors' list: their runs happen elsewhere, so nothing to trigger.
    monitors: bool,
    /// The list's own address.
    base: &'static str,
    rows: Vec<JobRow>,
    /// The name filter, as typed.
    q: String,
    /// Jobs of this kind in all, and those the filter kept.
    total: usize,
    matching: usize,
    /// The rank of the first and last row shown, from 1.
    first: usize,
    last: usize,
    page: usize,
    pages: usize,
    previous: Option<String>,
    next: Option<String>,
    /// This page's own address, where its buttons come back to.
    here: String,
}

/// The cronjobs (or jobs) list's filter and page, from the query string.
#[derive(Debug, Default, Deserialize)]
pub(super) struct JobsQuery {
    q: Option<String>,
    page: Option<String>,
}

pub(super) async fn cronjobs(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Page, Page> {
    job_list(&state, &session, JobKind::Scheduled, query).await
}

pub(super) async fn monitors(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Page, Page> {
    job_list(&state, &session, JobKind::Monitor, query).await
}

pub(super) async fn jobs(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Page, Page> {
    job_list(&state, &session, JobKind::Triggered, query).await
}

/// One page of the jobs of `kind` whose names contain the filter, each with its strip of
/// recent executions: two store calls in all, the second only for the page's jobs.
async fn job_list(
    state: &AppState,
    session: &Session,
    kind: JobKind,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Page, Page> {
    let bad = |message: String| {
        Page::error(
            StatusCode::BAD_REQUEST,
            &message,
            "Use the links and the filter on the page.",
        )
    };
    let Query(query) = query.map_err(|err| {
        bad(format!(
            "The address's query string is not valid: {}",
            err.body_text()
        ))
    })?;
    let q = query.q.as_deref().unwrap_or("").trim().to_owned();
    let page_text = query.page.as_deref().unwrap_or("").trim();
    let page: usize = if page_text.is_empty() {
        1
    } else {
        page_text
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| bad(format!("page {page_text:?} is not a page number (1, 2, …)")))?
    };
    let now = state.clock.now();
    let all = state.store.job_list(kind).await?;
    let total = all.len();
    let needle = q.to_lowercase();
    let matching: Vec<Job> = all
        .into_iter()
        .filter(|job| needle.is_empty() || job.spec.name.as_str().to_lowercase().contains(&needle))
        .collect();
    let pages = matching.len().div_ceil(JOBS_PAGE).max(1);
    // A page past the end (the list shrank since the link was made) shows the last one.
    let page = page.min(pages);
    let start = (page - 1) * JOBS_PAGE;
    let count = matching.len();
    let shown: Vec<Job> = matching.into_iter().skip(start).take(JOBS_PAGE).collect();
    let names: Vec<String> = shown.iter().map(|job| job.spec.name.to_string()).collect();
    let recent = state.store.execution_recent_per_job(&names, STRIP).await?;
    let mut by_job: HashMap<String, Vec<ExecutionBrief>> = HashMap::new();
    for brief in recent {
        by_job
            .entry(brief.job_name.clone())
            .or_default()
            .push(brief);
    }
    let scheduled = matches!(kind, JobKind::Scheduled | JobKind::Monitor);
    let monitors = kind == JobKind::Monitor;
    let (base, section) = match kind {
        JobKind::Monitor => ("/monitors", "monitors"),
        JobKind::Scheduled => ("/", "cronjobs"),
        _ => ("/jobs", "jobs"),
    };
    let link = |page: usize| -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if !q.is_empty() {
            pairs.push(("q", q.clone()));
        }
        if page > 1 {
            pairs.push(("page", page.to_string()));
        }
        match serde_urlencoded::to_string(&pairs) {
            Ok(query) if !query.is_empty() => format!("{base}?{query}"),
            _ => base.to_owned(),
        }
    };
    let rows: Vec<JobRow> = shown
        .into_iter()
        .map(|job| {
            let recent = by_job.remove(job.spec.name.as_str()).unwrap_or_default();
            let last = recent
                .iter()
                .find(|e| e.status != Status::Skipped)
                .or(recent.first())
                .map(|e| (StatusView::of(e.status), e.id));
            let next = state
                .next_run(&job)
                .map(|at| (human::relative(at, now), view::absolute(at)));
            let schedule = job.spec.schedule.as_ref();
            JobRow {
                name: job.spec.name.to_string(),
                runs: runs(&job),
                cron: schedule.map(|s| s.cron.clone()),
                words: schedule.and_then(|s| view::schedule_in_words(&s.cron)),
                timezone: schedule.map(|s| s.timezone.clone()),
                next,
                suspended: job.spec.suspended,
                last,
                strip: view::strip_svg(&recent, now, STRIP as usize),
            }
        })
        .collect();
    Ok(Page::render(&JobsPage {
        nav: Nav::new(session, section),
        scheduled,
        monitors,
        base,
        first: if rows.is_empty() { 0 } else { start + 1 },
        last: start + rows.len(),
        rows,
        total,
        matching: count,
        page,
        pages,
        previous: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        here: link(page),
        q,
    }))
}

/// What a job runs, in one line.
fn runs(job: &Job) -> String {
    match &job.spec.runtime {
        RuntimeSpec::Image { image, command } => match command {
            Some(command) => format!("{image} -- {}", command.join(" ")),
            None => image.clone(),
        },
        RuntimeSpec::Process { argv } => argv.join(" "),
        RuntimeSpec::Ping => "pings from elsewhere".to_owned(),
    }
}
