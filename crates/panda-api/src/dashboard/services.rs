//! The services list and one service's page: its instances, each linking to the execution
//! that runs it (where its log is followed live), and the buttons that suspend, resume and
//! restart it.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Path, State};
use axum::response::Redirect;
use panda_core::api::SECRET_PLACEHOLDER;
use panda_core::{ExecutionId, Instance, InstanceState, Probe, ServiceStatus, human};

use super::session::Session;
use super::view::{self, StatusView};
use super::{CsrfForm, Nav, Page};
use crate::AppState;
use crate::services::service_named;

/// An instance state as the dashboard shows it: a symbol and the word, and the class of the
/// status it looks like (healthy as succeeded, backing off as failed).
#[derive(Debug, Clone)]
struct StateView {
    symbol: &'static str,
    word: &'static str,
    class: &'static str,
}

impl StateView {
    fn of(state: InstanceState) -> Self {
        let (symbol, word, class) = match state {
            InstanceState::Pending => ("○", "pending", "s-queued"),
            InstanceState::Starting => ("◐", "starting", "s-running"),
            InstanceState::Healthy => ("●", "healthy", "s-succeeded"),
            InstanceState::Unhealthy => ("✗", "unhealthy", "s-failed"),
            InstanceState::BackingOff => ("⏱", "backing off", "s-failed"),
            InstanceState::Completed => ("✓", "completed", "s-skipped"),
            InstanceState::Stopping => ("◌", "stopping", "s-cancelled"),
        };
        Self {
            symbol,
            word,
            class,
        }
    }
}

/// One row of the services page.
#[derive(Debug)]
struct ServiceRow {
    name: String,
    runs: String,
    desired: u32,
    running: u32,
    healthy: u32,
    restarts: u64,
    /// Uptime, relative and absolute.
    up: Option<(String, String)>,
    revision: u32,
    rollout: Option<String>,
    suspended: bool,
    /// Fewer healthy than wanted: the row is marked.
    degraded: bool,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    nav: Nav,
    rows: Vec<ServiceRow>,
}

pub(super) async fn services(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Page, Page> {
    let now = state.clock.now();
    let services = state.store.service_list(now).await?;
    let rows = services
        .iter()
        .map(|status| ServiceRow {
            name: status.job.spec.name.to_string(),
            runs: runs(status),
            desired: status.desired,
            running: status.running,
            healthy: status.healthy,
            restarts: status.restarts,
            up: status
                .up_since
                .map(|at| (human::elapsed(now - at), view::absolute(at))),
            revision: status.revision,
            rollout: rollout_words(status),
            suspended: status.job.spec.suspended,
            degraded: status.healthy < status.desired,
        })
        .collect();
    Ok(Page::render(&ServicesPage {
        nav: Nav::new(&session, "services"),
        rows,
    }))
}

/// One instance on the service's page.
#[derive(Debug)]
struct InstanceRow {
    index: u32,
    revision: u32,
    state: StateView,
    node: String,
    started: Option<(String, String)>,
    restarts: u32,
    next_start: Option<(String, String)>,
    execution: Option<(StatusView, ExecutionId)>,
    last_exit: Option<(StatusView, ExecutionId, String)>,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    nav: Nav,
    name: String,
    suspended: bool,
    counts: String,
    definition: Vec<(&'static str, String)>,
    rollout: Option<String>,
    instances: Vec<InstanceRow>,
    action: String,
}

pub(super) async fn service(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Result<Page, Page> {
    let status = service_named(&state, &name).await?;
    let now = state.clock.now();
    let when = |at: chrono::DateTime<chrono::Utc>| (human::relative(at, now), view::absolute(at));
    let instances = status
        .instances
        .iter()
        .map(|instance: &Instance| InstanceRow {
            index: instance.index,
            revision: instance.revision,
            state: StateView::of(instance.state),
            node: instance.node.clone().unwrap_or_else(|| "–".to_owned()),
            started: instance.started_at.map(when),
            restarts: instance.restarts,
            next_start: instance.next_start_at.map(when),
            execution: instance
                .execution
                .as_ref()
                .map(|e| (StatusView::of(e.status), e.id)),
            last_exit: instance.last_exit.as_ref().map(|e| {
                let mut text = e
                    .exit_code
                    .map(|code| format!("exit code {code}"))
                    .unwrap_or_default();
                if let Some(reason) = &e.reason {
                    if !text.is_empty() {
                        text.push_str(": ");
                    }
                    text.push_str(reason);
                }
                if let Some(at) = e.finished_at {
                    text.push_str(&format!(" ({})", human::relative(at, now)));
                }
                (StatusView::of(e.status), e.id, text)
            }),
        })
        .collect();
    let counts = format!(
        "{} desired · {} running · {} healthy · {} restarts · revision {}",
        status.desired, status.running, status.healthy, status.restarts, status.revision
    );
    Ok(Page::render(&ServicePage {
        nav: Nav::new(&session, "services"),
        name: name.clone(),
        suspended: status.job.spec.suspended,
        counts,
        definition: definition(&status),
        rollout: status.rollout.as_ref().map(|rollout| {
            let mut text = format!(
                "revision {} → {}: {}, began {}",
                rollout.from_revision,
                rollout.to_revision,
                rollout.state.as_str(),
                human::relative(rollout.started_at, now)
            );
            if let Some(reason) = &rollout.reason {
                text.push_str(&format!(" ({reason})"));
            }
            text
        }),
        instances,
        action: format!("/services/{name}"),
    }))
}

/// What a service runs, in one cell.
fn runs(status: &ServiceStatus) -> String {
    match &status.job.spec.runtime {
        panda_core::RuntimeSpec::Image { image, .. } => image.clone(),
        panda_core::RuntimeSpec::Process { argv } => argv.join(" "),
        panda_core::RuntimeSpec::Ping => String::new(),
    }
}

/// `progressing 1 → 2`, for a rollout that is not long done.
fn rollout_words(status: &ServiceStatus) -> Option<String> {
    status.rollout.as_ref().map(|rollout| {
        format!(
            "{} {} → {}",
            rollout.state.as_str(),
            rollout.from_revision,
            rollout.to_revision
        )
    })
}

/// A service's definition as label/value rows (secret values hidden).
fn definition(status: &ServiceStatus) -> Vec<(&'static str, String)> {
    let spec = &status.job.spec;
    let mut rows = vec![("Runs", runs(status))];
    if let Some(service) = &spec.service {
        rows.push(("Replicas", service.replicas.to_string()));
        rows.push((
            "Restart",
            format!(
                "{}, backoff {} up to {}",
                service.restart.as_str().replace('_', " "),
                human::exact(service.restart_delay),
                human::exact(service.restart_delay_max)
            ),
        ));
        rows.push((
            "Health check",
            match &service.health {
                Some(health) => match &health.probe {
                    Probe::Command { command } => {
                        format!("{command} every {}", human::exact(health.interval))
                    }
                    Probe::Http { url } => {
                        format!("GET {url} every {}", human::exact(health.interval))
                    }
                },
                None => "none (running is healthy)".to_owned(),
            },
        ));
        rows.push((
            "Rollout",
            format!(
                "{} at a time, {}",
                service.rollout.max_parallel,
                service.rollout.order.as_str().replace('_', " ")
            ),
        ));
    }
    rows.push(("Queue", spec.queue.clone()));
    for (key, value) in &spec.env {
        rows.push(("Env", format!("{key}={value}")));
    }
    for key in spec.secret_env.keys() {
        rows.push(("Secret env", format!("{key}={SECRET_PLACEHOLDER}")));
    }
    rows
}

/// The service's buttons: `suspend`, `resume` or `restart`.
async fn act(
    state: &AppState,
    session: &Session,
    name: &str,
    form: Result<Form<CsrfForm>, FormRejection>,
    act: &str,
) -> Result<Redirect, Page> {
    let form = CsrfForm::of(form);
    session.check(&form.csrf)?;
    let name = name.to_owned();
    match act {
        "restart" => {
            let _status =
                crate::services::restart(State(state.clone()), Path(name.clone())).await?;
        }
        "suspend" => {
            let _status =
                crate::services::suspend(State(state.clone()), Path(name.clone())).await?;
        }
        _ => {
            let _status = crate::services::resume(State(state.clone()), Path(name.clone())).await?;
        }
    }
    Ok(Redirect::to(&form.back_or(format!("/services/{name}"))))
}

pub(super) async fn suspend(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    act(&state, &session, &name, form, "suspend").await
}

pub(super) async fn resume(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    act(&state, &session, &name, form, "resume").await
}

pub(super) async fn restart(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Redirect, Page> {
    act(&state, &session, &name, form, "restart").await
}
