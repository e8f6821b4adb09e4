//! The web dashboard: server-rendered HTML (askama templates in `templates/`, CSS and one small
//! script embedded from `assets/`), a client of the same store and helpers as the API.
//!
//! Pages read; forms change things. Every form is a `POST` carrying a CSRF token, and only an
//! admin session may send one (a read-only session sees no such buttons, and gets 403 if it
//! posts anyway). Filters and page cursors live in the query string, so a view can be shared.
//! The only script follows a running execution's log over the same SSE stream the CLI uses.
//!
//! This module holds the router and what every page shares (the page, its top bar, the CSRF
//! form); each page has a module of its own, beside the assets, the login and the session.

mod alerts;
mod assets;
mod execution;
mod history;
mod job;
mod jobs;
mod login;
mod queues;
mod services;
mod session;
mod view;

use askama::Template;
use axum::Router;
use axum::extract::Form;
use axum::extract::rejection::FormRejection;
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use panda_store::StoreError;
use serde::Deserialize;

use crate::{AppState, Failure};
use session::Session;

/// The dashboard's routes, mounted at `/`.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(jobs::cronjobs))
        .route("/jobs", get(jobs::jobs))
        .route("/monitors", get(jobs::monitors))
        .route("/jobs/{name}", get(job::job))
        .route("/jobs/{name}/trigger", post(job::trigger))
        .route("/jobs/{name}/suspend", post(job::suspend))
        .route("/jobs/{name}/resume", post(job::resume))
        .route("/executions", get(history::executions))
        .route("/executions/{id}", get(execution::execution))
        .route("/executions/{id}/cancel", post(execution::cancel))
        .route("/executions/{id}/log.txt", get(execution::raw_log))
        .route(
            "/executions/{id}/log/stream",
            get(crate::executions::stream),
        )
        .route("/services", get(services::services))
        .route("/services/{name}", get(services::service))
        .route("/services/{name}/suspend", post(services::suspend))
        .route("/services/{name}/resume", post(services::resume))
        .route("/services/{name}/restart", post(services::restart))
        .route("/queues", get(queues::queues))
        .route("/alerts", get(alerts::alerts))
        .route("/queues/{name}/pause", post(queues::pause))
        .route("/queues/{name}/resume", post(queues::resume))
        .route("/dlq/{id}/retry", post(queues::dlq_retry))
        .route("/dlq/{id}/discard", post(queues::dlq_discard))
        .route("/logout", post(login::logout))
        .layer(from_fn_with_state(state, session::require_session));
    Router::new()
        .route("/login", get(login::login_form).post(login::login))
        .route("/assets/{file}", get(assets::asset))
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

/// The page for an address that is not one.
pub(crate) async fn not_found() -> Page {
    Page::error(
        StatusCode::NOT_FOUND,
        "There is no page at this address.",
        "Start from the cronjobs list.",
    )
}
