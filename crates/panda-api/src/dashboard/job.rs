//! One job: its definition, its history and skipped slots, and the buttons that trigger,
//! suspend and resume it.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::Redirect;
use panda_core::api::{SECRET_PLACEHOLDER, redacted};
use panda_core::{ExecutionId, Job, RuntimeSpec, Status, Trigger, human};
use panda_store::{ExecutionFilter, NewExecution, StoreError};

use super::history::{History, HistoryQuery, history};
use super::session::Session;
use super::view;
use super::{CsrfForm, Nav, Page};
use crate::AppState;
use crate::jobs::{job_named, no_job, set_suspended};

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
    /// A monitor: its runs ping it, nothing to trigger.
    monitor: bool,
    suspended: bool,
    definition: Vec<(&'static str, String)>,
    /// The jobs it follows, and how a run of each must end: (name, end).
    after: Vec<(String, String)>,
    /// The jobs that follow it, and how a run of it must end for each: (name, end).
    followers: Vec<(String, String)>,
    next_runs: Vec<String>,
    chart: Option<String>,
    skipped: Vec<SkippedRow>,
    action: String,
    history: History,
}

pub(super) async fn job(
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
                slot: human::relative(slot, now),
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
            .and_then(|s| s.fire_times(job.id).ok())
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
        .map(|at| format!("{} ({})", view::absolute(at), human::relative(at, now)))
        .collect();
    let mut definition = definition(&job);
    // The URL is a credential: its token is never shown again.
    if let Some(hook) = state.store.webhook_get(&name).await.map_err(Page::from)? {
        definition.push((
            "Webhook",
            format!(
                "POST /hooks/{SECRET_PLACEHOLDER} ({}; rotate with `panda job webhook {name} --rotate`)",
                if hook.signed { "signed deliveries only" } else { "unsigned" }
            ),
        ));
    }
    let after = job
        .spec
        .after
        .iter()
        .map(|u| (u.job.to_string(), u.on.to_string()))
        .collect();
    let followers = crate::jobs::followers_of(&state, &job)
        .await?
        .into_iter()
        .map(|f| (f.job.to_string(), f.on.to_string()))
        .collect();
    // So is a monitor's ping URL.
    if job.spec.monitor.is_some() {
        let ping = match state.store.monitor_url(&name).await.map_err(Page::from)? {
            Some(url) => format!(
                "/ping/{SECRET_PLACEHOLDER} (made {}; add /start, /fail or /<exit code>; a new \
                 one with `panda monitor rotate {name}`)",
                view::absolute(url.created_at)
            ),
            None => format!("none yet: make one with `panda monitor rotate {name}`"),
        };
        definition.insert(1, ("Ping URL", ping));
    }
    let section = match (&job.spec.monitor, &job.spec.schedule) {
        (Some(_), _) => "monitors",
        (None, Some(_)) => "cronjobs",
        (None, None) => "jobs",
    };
    Ok(Page::render(&JobPage {
        nav: Nav::new(&session, section),
        name: name.clone(),
        scheduled: job.spec.schedule.is_some(),
        monitor: job.spec.monitor.is_some(),
        suspended: job.spec.suspended,
        definition,
        after,
        followers,
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
        RuntimeSpec::Ping => rows.push((
            "Runs",
            "elsewhere: a monitor records each run from its pings".to_owned(),
        )),
    }
    if let Some(monitor) = &spec.monitor {
        rows.push((
            "Grace",
            format!(
                "{}: a slot with no ping by then raises `missed`",
                human::exact(monitor.grace)
            ),
        ));
    }
    if let Some(schedule) = &spec.schedule {
        let words = view::schedule_in_words(&schedule.cron)
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        rows.push(("Schedule", format!("{}{words}", schedule.cron)));
        rows.push(("Time zone", schedule.timezone.clone()));
        if spec.monitor.is_none() {
            rows.push((
                "Catch-up",
                format!(
                    "{}, starting deadline {}",
                    serde_json::to_value(schedule.catch_up)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    human::exact(schedule.starting_deadline)
                ),
            ));
        }
        if let Some(jitter) = schedule.jitter {
            rows.push((
                "Jitter",
                format!(
                    "{}: each slot starts {} after its time",
                    human::exact(jitter),
                    human::exact(schedule.offset(job.id))
                ),
            ));
        }
    }
    if spec.monitor.is_some() {
        rows.push((
            "Timeout",
            format!(
                "{}: a run started by /start and not ended by then is timed out",
                human::exact(spec.timeout)
            ),
        ));
    } else {
        rows.push(("Timeout", human::exact(spec.timeout)));
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
                human::exact(spec.retry.backoff_base),
                human::exact(spec.retry.backoff_cap)
            ),
        ));
        rows.push((
            "Queue",
            format!("{} (priority {})", spec.queue, spec.priority),
        ));
        rows.push(("Concurrency", panda_core::human::concurrency(spec)));
        if let Some(rate) = panda_core::human::rate_limit(spec) {
            rows.push(("Rate limit", rate));
        }
    }
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

pub(super) async fn trigger(
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

pub(super) async fn suspend(
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

pub(super) async fn resume(
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
