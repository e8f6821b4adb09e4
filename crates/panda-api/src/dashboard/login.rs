//! The login form, which opens a session with an API token, and the logout.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Session;
use super::{CsrfForm, Page, session};
use crate::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
}

pub(super) async fn login_form() -> Page {
    Page::render(&LoginPage { error: None })
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// Opens a session with a token that the store knows.
pub(super) async fn login(
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
    match state.verify_token(secret).await {
        Ok(Some(_)) => (
            [(header::SET_COOKIE, session::open_cookie(secret))],
            Redirect::to("/"),
        )
            .into_response(),
        Ok(None) => refused("That token is not valid (unknown or revoked)."),
        Err(err) => Page::from(err).into_response(),
    }
}

pub(super) async fn logout(
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
