//! The one error shape every route answers with.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use panda_core::api::{ApiError, ErrorBody};
use panda_store::StoreError;

/// An error a route answers with: a status, a code, a message and a hint.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    error: ApiError,
}

impl Failure {
    /// A failure with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: ApiError {
                code: code.to_owned(),
                message: message.into(),
                hint: None,
            },
        }
    }

    /// Adds what to do about it.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.error.hint = Some(hint.into());
        self
    }

    /// `400 invalid`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    /// The HTTP status and the error, for the dashboard's error page.
    pub(crate) fn parts(&self) -> (StatusCode, &ApiError) {
        (self.status, &self.error)
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { .. } => Self::not_found(err.to_string()),
            StoreError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Stale => Self::new(StatusCode::CONFLICT, "conflict", err.to_string()),
            StoreError::Invalid(invalid) => Self::invalid(invalid.to_string()),
            StoreError::Unavailable(_) => {
                tracing::warn!(%err, "the store is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable",
                )
                .hint("try again in a moment; the server's log says more")
            }
            other => {
                tracing::error!(err = %other, "store error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed to do this",
                )
                .hint("the server's log has the details")
            }
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for Failure {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        let text = rejection.body_text();
        if let Some(unknown) = panda_core::UnknownField::from_serde_message(&text) {
            return Self::invalid(format!("{}{unknown}", parent_path(&text, &unknown.name))).hint(
                "leave out what the API does not know; /api/v1/openapi.json lists every field",
            );
        }
        Self::invalid(format!("the request body: {text}"))
            .hint("send a JSON body with Content-Type: application/json")
    }
}

/// `retry: ` for a field `retry.max_atempts` of the body, as axum's message names its path
/// (`…target type: retry.max_atempts: unknown field…`); empty at the top level.
fn parent_path(message: &str, field: &str) -> String {
    let path = message
        .split_once(": unknown ")
        .map(|(before, _)| before.rsplit(": ").next().unwrap_or(before))
        .unwrap_or_default();
    match path.strip_suffix(field).and_then(|p| p.strip_suffix('.')) {
        Some(parent) if !parent.is_empty() => format!("{parent}: "),
        _ => String::new(),
    }
}

impl From<axum::extract::rejection::QueryRejection> for Failure {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::invalid(format!("the query string: {}", rejection.body_text()))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.error })).into_response()
    }
}
