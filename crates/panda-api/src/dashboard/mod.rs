//! The web dashboard: server-rendered HTML (askama templates in `templates/`, CSS and one small
//! script embedded from `assets/`), a client of the same store and helpers as the API.
//!
//! Pages read; forms change things. Every form is a `POST` carrying a CSRF token, and only an
//! admin session may send one (a read-only session sees no such buttons, and gets 403 if it
//! posts anyway). Filters and page cursors live in the query string, so a view can be shared.
//! The only script follows a running execution's log over the same SSE stream the CLI uses.

mod session;
mod view;

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use panda_core::api::{SECRET_PLACEHOLDER, redacted};
use panda_core::{Execution, ExecutionId, Job, RuntimeSpec, Status, Trigger};
use panda_store::{ExecutionBrief, ExecutionFilter, JobKind, NewExecution, StoreError};
use rust_embed::RustEmbed;
use serde::Deserialize;

use crate::executions::execution_id;
use crate::jobs::{job_named, no_job, set_suspended};
use crate::{AppState, Failure};
use session::Session;
use view::StatusView;

/// Executions in a job's strip on the cronjobs page.
const STRIP: u32 = 30;
/// Executions on one page of a history.
const HISTORY_PAGE: u32 = 50;
/// Jobs on one page of the cronjobs (or jobs) list.
const JOBS_PAGE: usize = 100;
/// Log lines an execution page shows; the raw download has them all.
const LOG_LINES: u32 = 5000;

/// The stylesheet and the script, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The dashboard's routes, mounted at `/`.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(cronjobs))
        .route("/jobs", get(jobs))
        .route("/jobs/{name}", get(job))
        .route("/jobs/{name}/trigger", post(trigger))
        .route("/jobs/{name}/suspend", post(suspend))
        .route("/jobs/{name}/resume", post(resume))
        .route("/executions", get(executions))
        .route("/executions/{id}", get(execution))
        .route("/executions/{id}/cancel", post(cancel))
        .route("/executions/{id}/log.txt", get(raw_log))
        .route(
            "/executions/{id}/log/stream",
            get(crate::executions::stream),
        )
        .route("/queues", get(queues))
        .route("/alerts", get(alerts))
        .route("/dlq/{id}/retry", post(dlq_retry))
        .route("/dlq/{id}/discard", post(dlq_discard))
        .route("/logout", post(logout))
        .layer(from_fn_with_state(state, session::require_session));
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/assets/{file}", get(asset))
        .merge(pages)
}

/// A rendered page (or error page) with its status.
#[derive(Debug)]
pub(crate) struct Page {
    status: StatusCode,
    html: String,
}

impl Page {
    fn render(template: &impl Template) -> Self {
        match template.render() {
            Ok(html) => Self {
                status: StatusCode::OK,
                html,
            },
            Err(err) => {
                tracing::error!(%err, "a dashboard template failed to render");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    html: "<!doctype html><title>Panda</title><p>This page failed to render; \
                           the server's log has the details.</p>"
                        .to_owned(),
                }
            }
        }
    }

    /// An error page: what went wrong and what to do about it.
    pub(crate) fn error(status: StatusCode, message: &str, hint: &str) -> Self {
        let mut page = Self::render(&ErrorPage {
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: message.to_owned(),
            hint: hint.to_owned(),
        });
        page.status = status;
        page
    }
}

impl From<Failure> for Page {
    fn from(failure: Failure) -> Self {
        let (status, error) = failure.parts();
        Self::error(status, &error.message, error.hint.as_deref().unwrap_or(""))
    }
}

impl From<StoreError> for Page {
    fn from(err: StoreError) -> Self {
        Failure::from(err).into()
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (
            self.status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
                ),
            ],
            self.html,
        )
            .into_response()
    }
}

/// The error page's template.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    message: String,
    hint: String,
}

/// What the top bar needs: who is logged in, and the logout form's CSRF token.
#[derive(Debug)]
struct Nav {
    token: String,
    csrf: String,
    can_write: bool,
    /// The section the page belongs to, to mark its link.
    section: &'static str,
}

impl Nav {
    fn new(session: &Session, section: &'static str) -> Self {
        Self {
            token: session.token.name.clone(),
            csrf: session.csrf.clone(),
            can_write: session.can_write(),
            section,
        }
    }
}

// ---- assets and login ----

async fn asset(Path(file): Path<String>) -> Response {
    let Some(content) = Assets::get(&file) else {
        return Page::error(StatusCode::NOT_FOUND, "No such file.", "").into_response();
    };
    let kind = match file.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        content.data.into_owned(),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
}

async fn login_form() -> Page {
    Page::render(&LoginPage { error: None })
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// Opens a session with a token that the store knows.
async fn login(
    State(state): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let secret = form.map(|Form(f)| f.token).unwrap_or_default();
    let secret = secret.trim();
    let refused = |message: &str| {
        let mut page = Page::render(&LoginPage {
            error: Some(message.to_owned()),
        });
        page.status = StatusCode::UNAUTHORIZED;
        page.into_response()
    };
    if secret.is_empty() || secret.contains([';', ',', ' ', '\n', '\r']) {
        return refused("Paste an API token, such as the one in DATA_DIR/admin.token.");
    }
    match state.store.token_verify(secret, state.clock.now()).await {
        Ok(Some(_)) => (
            [(header::SET_COOKIE, session::open_cookie(secret))],
            Redirect::to("/"),
        )
            .into_response(),
        Ok(None) => refused("That token is not valid (unknown or revoked)."),
        Err(err) => Page::from(err).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    /// Where to go afterwards: a path on this dashboard.
    #[serde(default)]
    back: String,
}

impl CsrfForm {
    fn of(form: Result<Form<CsrfForm>, FormRejection>) -> Self {
        form.map(|Form(f)| f).unwrap_or(CsrfForm {
            csrf: String::new(),
            back: String::new(),
        })
    }

    /// `back` when it is a path here, else `fallback`.
    fn back_or(&self, fallback: String) -> String {
        let local = self.back.starts_with('/')
            && !self.back.starts_with("//")
            && !self.back.contains(['\\', '\r', '\n']);
        if local { self.back.clone() } else { fallback }
    }
}

async fn logout(
    Extension(session): Extension<Session>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, Page> {
    session.check(&CsrfForm::of(form).csrf)?;
    Ok((
        [(header::SET_COOKIE, session::close_cookie())],
        Redirect::to("/login"),
    )
        .into_response())
}

// ---- the job lists ----

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
struct JobsQuery {
    q: Option<String>,
    page: Option<String>,
}

async fn cronjobs(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Page, Page> {
    job_list(&state, &session, JobKind::Scheduled, query).await
}

async fn jobs(
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
    let scheduled = kind == JobKind::Scheduled;
    let base = if scheduled { "/" } else { "/jobs" };
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
                .map(|at| (view::relative(at, now), view::absolute(at)));
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
        nav: Nav::new(session, if scheduled { "cronjobs" } else { "jobs" }),
        scheduled,
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
    }
}

// ---- histories ----

/// One execution in a history table.
#[derive(Debug)]
struct ExecRow {
    id: ExecutionId,
    job: String,
    status: StatusView,
    trigger: &'static str,
    attempt: u32,
    when: String,
    when_abs: String,
    took: String,
    exit: String,
    reason: String,
}

impl ExecRow {
    fn of(e: &Execution, now: DateTime<Utc>) -> Self {
        let at = e.started_at.or(e.scheduled_at).unwrap_or(e.created_at);
        Self {
            id: e.id,
            job: e.job_name.clone(),
            status: StatusView::of(e.status),
            trigger: e.trigger.as_str(),
            attempt: e.attempt,
            when: view::relative(at, now),
            when_abs: view::absolute(at),
            took: view::ran_for(e, now)
                .map(view::duration)
                .unwrap_or_default(),
            exit: e.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
        }
    }
}

/// A history's filters, from the query string.
#[derive(Debug, Default, Deserialize)]
struct HistoryQuery {
    status: Option<String>,
    trigger: Option<String>,
    before: Option<String>,
}

/// The filters as the page shows them (the selected values), and links to other pages.
#[derive(Debug, Default)]
struct History {
    rows: Vec<ExecRow>,
    status: String,
    trigger: String,
    /// The next (older) page's link.
    older: Option<String>,
    /// The first page's link, when this is not it.
    newest: Option<String>,
    statuses: Vec<&'static str>,
    triggers: Vec<&'static str>,
}

/// Reads one page of history for `job` (or every job) under the query's filters.
async fn history(
    state: &AppState,
    job: Option<&str>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
    base: &str,
) -> Result<(History, Vec<Execution>), Page> {
    let Query(query) = query.map_err(|err| {
        Page::error(
            StatusCode::BAD_REQUEST,
            &format!(
                "The address's query string is not valid: {}",
                err.body_text()
            ),
            "Use the filters on the page.",
        )
    })?;
    let bad = |message: String| {
        Page::error(
            StatusCode::BAD_REQUEST,
            &message,
            "Use the filters on the page.",
        )
    };
    let status_text = query.status.as_deref().unwrap_or("").trim();
    let status = (!status_text.is_empty())
        .then(|| status_text.parse::<Status>())
        .transpose()
        .map_err(|err| bad(err.to_string()))?;
    let trigger_text = query.trigger.as_deref().unwrap_or("").trim();
    let trigger = (!trigger_text.is_empty())
        .then(|| trigger_text.parse::<Trigger>())
        .transpose()
        .map_err(|err| bad(err.to_string()))?;
    let before_text = query.before.as_deref().unwrap_or("").trim();
    let before = (!before_text.is_empty())
        .then(|| before_text.parse::<ExecutionId>())
        .transpose()
        .map_err(|_| bad(format!("{before_text:?} is not an execution id")))?;
    let page = state
        .store
        .execution_list(&ExecutionFilter {
            job: job.map(str::to_owned),
            statuses: status.into_iter().collect(),
            trigger,
            before,
            limit: HISTORY_PAGE,
            ..ExecutionFilter::default()
        })
        .await?;
    let now = state.clock.now();
    let filters = |before: Option<ExecutionId>| {
        let mut parts = Vec::new();
        if let Some(status) = status {
            parts.push(format!("status={status}"));
        }
        if let Some(trigger) = trigger {
            parts.push(format!("trigger={trigger}"));
        }
        if let Some(before) = before {
            parts.push(format!("before={before}"));
        }
        if parts.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", parts.join("&"))
        }
    };
    let history = History {
        rows: page
            .executions
            .iter()
            .map(|e| ExecRow::of(e, now))
            .collect(),
        status: status.map(|s| s.as_str()).unwrap_or("").to_owned(),
        trigger: trigger.map(|t| t.as_str()).unwrap_or("").to_owned(),
        older: page.next.map(|next| filters(Some(next))),
        newest: before.map(|_| filters(None)),
        statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
        triggers: Trigger::ALL.iter().map(|t| t.as_str()).collect(),
    };
    Ok((history, page.executions))
}

#[derive(Template)]
#[template(path = "executions.html")]
struct ExecutionsPage {
    nav: Nav,
    action: String,
    history: History,
}

async fn executions(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Page, Page> {
    let (history, _) = history(&state, None, query, "/executions").await?;
    Ok(Page::render(&ExecutionsPage {
        nav: Nav::new(&session, "executions"),
        action: "/executions".to_owned(),
        history,
    }))
}

// ---- one job ----

/// A skipped slot and why.
#[derive(Debug)]
struct SkippedRow {
    id: ExecutionId,
    slot: String,
    slot_abs: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Nav,
    name: String,
    scheduled: bool,
    suspended: bool,
    definition: Vec<(&'static str, String)>,
    next_runs: Vec<String>,
    chart: Option<String>,
    skipped: Vec<SkippedRow>,
    action: String,
    history: History,
}

async fn job(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Page, Page> {
    let job = redacted(job_named(&state, &name).await?);
    let base = format!("/jobs/{name}");
    let now = state.clock.now();
    let skipped_filter = ExecutionFilter {
        job: Some(name.clone()),
        statuses: vec![Status::Skipped],
        limit: 10,
        ..ExecutionFilter::default()
    };
    let ((history, executions), skipped) =
        tokio::try_join!(history(&state, Some(&name), query, &base), async {
            state
                .store
                .execution_list(&skipped_filter)
                .await
                .map_err(Page::from)
        },)?;
    let skipped = skipped
        .executions
        .iter()
        .map(|e| {
            let slot = e.scheduled_at.unwrap_or(e.created_at);
            SkippedRow {
                id: e.id,
                slot: view::relative(slot, now),
                slot_abs: view::absolute(slot),
                reason: e.reason.clone().unwrap_or_default(),
            }
        })
        .collect();
    let mut next_runs = Vec::new();
    if let Some(mut at) = state.next_run(&job) {
        next_runs.push(at);
        if let Some(schedule) = job
            .spec
            .schedule
            .as_ref()
            .and_then(|s| panda_core::CronSchedule::parse(&s.cron, &s.timezone).ok())
        {
            while next_runs.len() < 3 {
                match schedule.next_after(at) {
                    Some(next) => {
                        next_runs.push(next);
                        at = next;
                    }
                    None => break,
                }
            }
        }
    }
    let next_runs = next_runs
        .into_iter()
        .map(|at| format!("{} ({})", view::absolute(at), view::relative(at, now)))
        .collect();
    Ok(Page::render(&JobPage {
        nav: Nav::new(
            &session,
            if job.spec.schedule.is_some() {
                "cronjobs"
            } else {
                "jobs"
            },
        ),
        name: name.clone(),
        scheduled: job.spec.schedule.is_some(),
        suspended: job.spec.suspended,
        definition: definition(&job),
        next_runs,
        chart: view::duration_chart_svg(&executions, now),
        skipped,
        action: base,
        history,
    }))
}

/// A job's definition as label/value rows (secret values already redacted).
fn definition(job: &Job) -> Vec<(&'static str, String)> {
    let spec = &job.spec;
    let mut rows = Vec::new();
    match &spec.runtime {
        RuntimeSpec::Image { image, command } => {
            rows.push(("Image", image.clone()));
            if let Some(command) = command {
                rows.push(("Command", command.join(" ")));
            }
        }
        RuntimeSpec::Process { argv } => rows.push(("Command", argv.join(" "))),
    }
    if let Some(schedule) = &spec.schedule {
        let words = view::schedule_in_words(&schedule.cron)
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        rows.push(("Schedule", format!("{}{words}", schedule.cron)));
        rows.push(("Time zone", schedule.timezone.clone()));
        rows.push((
            "Catch-up",
            format!(
                "{}, starting deadline {}",
                serde_json::to_value(schedule.catch_up)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                humanize(schedule.starting_deadline)
            ),
        ));
    }
    rows.push(("Timeout", humanize(spec.timeout)));
    rows.push((
        "Retries",
        format!(
            "{} attempt{}, backoff {} up to {}",
            spec.retry.max_attempts,
            if spec.retry.max_attempts == 1 {
                ""
            } else {
                "s"
            },
            humanize(spec.retry.backoff_base),
            humanize(spec.retry.backoff_cap)
        ),
    ));
    rows.push((
        "Queue",
        format!("{} (priority {})", spec.queue, spec.priority),
    ));
    rows.push((
        "Concurrency",
        match spec.max_running {
            Some(n) => format!("{}, at most {n} running", spec.concurrency.as_str()),
            None => spec.concurrency.as_str().to_owned(),
        },
    ));
    if let Some(workdir) = &spec.workdir {
        rows.push(("Working dir", workdir.clone()));
    }
    if let Some(memory) = spec.limits.memory_bytes {
        rows.push(("Memory", format!("{} MiB", memory / (1024 * 1024))));
    }
    if let Some(cpus) = spec.limits.cpus {
        rows.push(("CPUs", cpus.to_string()));
    }
    for (key, value) in &spec.env {
        rows.push(("Env", format!("{key}={value}")));
    }
    for key in spec.secret_env.keys() {
        rows.push(("Secret env", format!("{key}={SECRET_PLACEHOLDER}")));
    }
    for (key, value) in &spec.labels {
        rows.push(("Label", format!("{key}={value}")));
    }
    if let Some(keep) = spec.keep {
        rows.push(("History kept", format!("{keep} executions")));
    }
    rows
}

/// `1h`, `10m`, `30s`: a definition's durations.
fn humanize(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

async fn trigger(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    session.check(&CsrfForm::of(form).csrf)?;
    let new = NewExecution {
        trigger: Trigger::Manual,
        ..NewExecution::api(name.clone())
    };
    match state.store.execution_enqueue(&new, state.clock.now()).await {
        Ok(enqueued) => Ok(Redirect::to(&format!(
            "/executions/{}",
            enqueued.execution.id
        ))),
        Err(StoreError::NotFound { .. }) => Err(no_job(&state, &name).await.into()),
        Err(err) => Err(err.into()),
    }
}

async fn suspend(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    let form = CsrfForm::of(form);
    session.check(&form.csrf)?;
    let _job = set_suspended(&state, &name, true).await?;
    Ok(Redirect::to(&form.back_or(format!("/jobs/{name}"))))
}

async fn resume(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    let form = CsrfForm::of(form);
    session.check(&form.csrf)?;
    let _job = set_suspended(&state, &name, false).await?;
    Ok(Redirect::to(&form.back_or(format!("/jobs/{name}"))))
}

// ---- one execution ----

/// A log line as the page shows it.
#[derive(Debug)]
struct LineView {
    number: u64,
    stream: &'static str,
    at: String,
    text: String,
}

#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    nav: Nav,
    id: ExecutionId,
    job: String,
    status: StatusView,
    live: bool,
    facts: Vec<(&'static str, String)>,
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

async fn execution(
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
        facts.push(("Duration", view::duration(took)));
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
        status: StatusView::of(e.status),
        live: !e.status.is_terminal(),
        facts,
        attempts,
        env: env.into_iter().collect(),
        lines,
        after,
        cut,
        can_cancel: !e.status.is_terminal(),
        is_dead: e.status == Status::Dead,
    }))
}

async fn cancel(
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
async fn raw_log(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Page> {
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

// ---- queues and the dead-letter queue ----

/// A queue's depth and age.
#[derive(Debug)]
struct QueueRow {
    name: String,
    due: u64,
    waiting: u64,
    running: u64,
    oldest: String,
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
struct DlqQuery {
    before: Option<String>,
}

async fn queues(
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
                .map(|at| view::relative(at, now))
                .unwrap_or_default(),
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

/// One alert as the alerts page shows it.
struct AlertRow {
    when: String,
    when_abs: String,
    job: String,
    kind: &'static str,
    symbol: &'static str,
    class: &'static str,
    execution: Option<ExecutionId>,
    delivered: String,
    deliveries: Vec<String>,
    message: String,
}

impl AlertRow {
    fn of(alert: &panda_store::AlertRecord, now: DateTime<Utc>) -> Self {
        use panda_core::AlertKind;
        use panda_core::api::DeliveryState;
        let (symbol, class) = match alert.kind {
            AlertKind::Recovered => ("✓", "s-succeeded"),
            AlertKind::Late | AlertKind::LongRunning => ("⏱", "s-running"),
            AlertKind::Dead => ("☠", "s-dead"),
            _ => ("✗", "s-failed"),
        };
        let delivered = alert
            .deliveries
            .iter()
            .filter(|d| d.state == DeliveryState::Delivered)
            .count();
        Self {
            when: view::relative(alert.created_at, now),
            when_abs: view::absolute(alert.created_at),
            job: alert.job.clone(),
            kind: alert.kind.as_str(),
            symbol,
            class,
            execution: alert.execution_id,
            delivered: if alert.deliveries.is_empty() {
                "no notifier".to_owned()
            } else {
                format!("{delivered} of {}", alert.deliveries.len())
            },
            deliveries: alert
                .deliveries
                .iter()
                .filter(|d| d.state != DeliveryState::Delivered)
                .map(|d| {
                    let mut line = format!("{} {}", d.notifier.as_str(), d.state.as_str());
                    if let Some(error) = &d.last_error {
                        line.push_str(&format!(" after {} attempts: {error}", d.attempts));
                    }
                    line
                })
                .collect(),
            message: alert.message.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    nav: Nav,
    job: Option<String>,
    alerts: Vec<AlertRow>,
}

#[derive(Debug, Default, Deserialize)]
struct AlertQuery {
    job: Option<String>,
}

/// Alerts, newest first, with how their deliveries went.
async fn alerts(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Page, Page> {
    let Query(query) = query.unwrap_or_default();
    let job = query.job.filter(|j| !j.trim().is_empty());
    let now = state.clock.now();
    let listed = state.store.alert_list(job.as_deref(), 100).await?;
    Ok(Page::render(&AlertsPage {
        nav: Nav::new(&session, "alerts"),
        job,
        alerts: listed.iter().map(|a| AlertRow::of(a, now)).collect(),
    }))
}

async fn dlq_retry(
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

async fn dlq_discard(
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

/// The page for an address that is not one.
pub(crate) async fn not_found() -> Page {
    Page::error(
        StatusCode::NOT_FOUND,
        "There is no page at this address.",
        "Start from the cronjobs list.",
    )
}
