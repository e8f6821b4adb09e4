//! The one error shape every route answers with.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use panda_core::api::{ApiError, ErrorBody};
use panda_store::StoreError;

/// An error a route answers with: a status, a code, a message and a hint.
#[derive(Debug, Clone)]
pub struct Failure {
    status: StatusCode,
    error: ApiError,
    /// Sent as `Retry-After`, in seconds: when asking again may succeed.
    retry_after: Option<Duration>,
}

/// What a client is told to wait before asking again while the store is unreachable: the pool
/// gives up on a connection after 2 s, so a retry sooner than that meets the same outage.
pub const STORE_RETRY_AFTER: Duration = Duration::from_secs(2);

/// A run of failures of one kind (the store unreachable, the disk full), for logging each once:
/// failures less than [`EPISODE_GAP`] apart belong to one episode.
#[derive(Debug)]
struct Episode {
    last: Mutex<Option<Instant>>,
}

/// A quiet spell that ends an episode: the next failure is logged again.
const EPISODE_GAP: Duration = Duration::from_secs(60);

impl Episode {
    const fn new() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }

    /// Whether this failure begins an episode (and so is logged).
    fn begins(&self) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let begins = last.is_none_or(|at| now.duration_since(at) > EPISODE_GAP);
        *last = Some(now);
        begins
    }
}

static UNAVAILABLE: Episode = Episode::new();
static FULL: Episode = Episode::new();

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
            retry_after: None,
        }
    }

    /// Adds a `Retry-After`: when asking again may succeed.
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
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
            StoreError::Invalid(invalid) => match invalid.hint() {
                Some(hint) => Self::invalid(invalid.to_string()).hint(hint),
                None => Self::invalid(invalid.to_string()),
            },
            StoreError::Unavailable(_) => {
                if UNAVAILABLE.begins() {
                    tracing::error!(%err, "the store is unreachable: requests answer 503 store_unavailable until it is back (logged once per outage)");
                }
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the server cannot reach its database right now",
                )
                .hint("nothing was changed; try again in a few seconds (the server's log names the database error)")
                .retry_after(STORE_RETRY_AFTER)
            }
            StoreError::Full(_) => {
                if FULL.begins() {
                    tracing::error!(%err, "the storage is full: writes answer 507 storage_full until space is freed (logged once per episode)");
                }
                Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
                    "the server's database has no space left for this",
                )
                .hint("free space on the volume holding the database (SQLite: the data dir) and try again; nothing was lost")
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
        let mut response = (self.status, Json(ErrorBody { error: self.error })).into_response();
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        response
    }
}
