//! Monitors: crons that run elsewhere and report each run by calling a secret ping URL.
//!
//! A monitor is created like any job (`POST /api/v1/jobs` with a `monitor` part and the
//! `ping` runtime); the answer holds its ping URL, shown that once. `GET /ping/{token}` (or
//! `POST`, with an optional body kept as the run's log) records a successful run,
//! `/ping/{token}/start` a run that started, `/ping/{token}/fail` a failed one, and
//! `/ping/{token}/{exit code}` a run that ended so (0 is a success). These take no API token:
//! the URL is the credential, stored only as a hash and looked up by it, and a URL that opens
//! nothing answers 404 and says nothing more.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use panda_core::api::{ErrorBody, PingUrlView, Pinged};
use panda_store::{Ping, PingKind, PingUrl, StoreError};

use crate::jobs::no_job;
use crate::{AppState, Failure};

/// Where pings go, under the server's root.
const PINGS: &str = "/ping";

/// The view of a ping URL: the whole of it when `token` is given (the answer that made it),
/// else redacted.
pub(crate) fn view(url: &PingUrl, token: Option<&str>, headers: &HeaderMap) -> PingUrlView {
    let path = format!(
        "{PINGS}/{}",
        token.unwrap_or(panda_core::api::SECRET_PLACEHOLDER)
    );
    let full = token.and_then(|_| {
        let host = headers.get(header::HOST)?.to_str().ok()?;
        Some(format!("http://{host}{path}"))
    });
    PingUrlView {
        path,
        url: full,
        created_at: url.created_at,
    }
}

async fn store_failure(state: &AppState, name: &str, err: StoreError) -> Failure {
    match err {
        StoreError::NotFound { what } if what.starts_with("job") => no_job(state, name).await,
        StoreError::NotFound { .. } => {
            Failure::not_found(format!("monitor {name} has no ping URL"))
                .hint(format!("make one with `panda monitor rotate {name}`"))
        }
        err => err.into(),
    }
}

#[utoipa::path(
    post,
    path = "/jobs/{name}/ping-url",
    tag = "monitors",
    summary = "Give a monitor a new ping URL (/ping/<token>), replacing the earlier one",
    description = "The answer holds the URL's token: it is shown this once. The earlier URL stops working at once.",
    params(("name" = String, Path, description = "The monitor's name")),
    responses(
        (status = 201, description = "The new URL", body = PingUrlView),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<PingUrlView>), Failure> {
    match state.store.monitor_rotate(&name, state.clock.now()).await {
        Ok((token, url)) => Ok((
            StatusCode::CREATED,
            Json(view(&url, Some(&token), &headers)),
        )),
        Err(err) => Err(store_failure(&state, &name, err).await),
    }
}

#[utoipa::path(
    get,
    path = "/jobs/{name}/ping-url",
    tag = "monitors",
    summary = "A monitor's ping URL, its token redacted",
    params(("name" = String, Path, description = "The monitor's name")),
    responses(
        (status = 200, description = "The URL, as /ping/********", body = PingUrlView),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<PingUrlView>, Failure> {
    match state.store.monitor_url(&name).await {
        Ok(Some(url)) => Ok(Json(view(&url, None, &headers))),
        Ok(None) => Err(store_failure(&state, &name, StoreError::not_found("ping URL")).await),
        Err(err) => Err(store_failure(&state, &name, err).await),
    }
}

/// What the last part of `/ping/{token}/{what}` says.
fn kind_of(what: &str) -> Result<PingKind, Failure> {
    match what {
        "start" => Ok(PingKind::Start),
        "fail" => Ok(PingKind::Fail),
        code => code
            .parse::<u8>()
            .map(|code| PingKind::Exit(i32::from(code)))
            .map_err(|_| {
                Failure::not_found(format!("no such ping: /{what}")).hint(
                    "ping /ping/<token> for a success, or add /start, /fail or an exit code \
                     from 0 to 255",
                )
            }),
    }
}

async fn record(
    state: &AppState,
    token: &str,
    kind: PingKind,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Pinged>, Failure> {
    let body = body.map_err(|err| Failure::invalid(format!("the request body: {err}")))?;
    let ping = Ping {
        kind,
        body: (!body.is_empty()).then(|| body.to_vec()),
    };
    let Some(execution) = state
        .store
        .monitor_ping(token, &ping, state.clock.now())
        .await?
    else {
        return Err(Failure::not_found("no monitor has this URL").hint(
            "the URL may have been rotated or its monitor deleted; its owner can make a new \
             one with `panda monitor rotate NAME`",
        ));
    };
    Ok(Json(Pinged {
        execution_id: execution.id,
        status: execution.status,
    }))
}

/// `GET|POST /ping/{token}`: a run succeeded.
#[utoipa::path(
    method(get, post),
    path = "/ping/{token}",
    tag = "monitors",
    summary = "Ping a monitor: a run succeeded",
    description = "Outside `/api/v1`, with no API token: the URL's token is the credential (`panda monitor create` shows it once). A body, if any, is kept as the run's log (JSON or text).",
    params(("token" = String, Path, description = "The ping URL's token")),
    request_body(content = String, description = "Optional: what the run said", content_type = "text/plain"),
    responses(
        (status = 200, description = "The execution it recorded", body = Pinged),
        (status = 404, description = "No monitor has this URL", body = ErrorBody),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    ),
    security()
)]
pub(crate) async fn success(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Pinged>, Failure> {
    record(&state, &token, PingKind::Success, body).await
}

/// `GET|POST /ping/{token}/{start|fail|exit code}`.
#[utoipa::path(
    method(get, post),
    path = "/ping/{token}/{what}",
    tag = "monitors",
    summary = "Ping a monitor: a run started, failed or exited with a code",
    description = "Outside `/api/v1`, with no API token: the URL's token is the credential. `start` opens a run (its duration is measured from it), `fail` ends it failed, a number from 0 to 255 ends it with that exit code (0 succeeded).",
    params(
        ("token" = String, Path, description = "The ping URL's token"),
        ("what" = String, Path, description = "`start`, `fail`, or an exit code from 0 to 255"),
    ),
    request_body(content = String, description = "Optional: what the run said", content_type = "text/plain"),
    responses(
        (status = 200, description = "The execution it recorded", body = Pinged),
        (status = 404, description = "No monitor has this URL, or no such ping", body = ErrorBody),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    ),
    security()
)]
pub(crate) async fn signal(
    State(state): State<AppState>,
    Path((token, what)): Path<(String, String)>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Pinged>, Failure> {
    let kind = kind_of(&what)?;
    record(&state, &token, kind, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pings_last_part_names_a_start_a_failure_or_an_exit_code() {
        assert_eq!(kind_of("start").ok(), Some(PingKind::Start));
        assert_eq!(kind_of("fail").ok(), Some(PingKind::Fail));
        assert_eq!(kind_of("0").ok(), Some(PingKind::Exit(0)));
        assert_eq!(kind_of("255").ok(), Some(PingKind::Exit(255)));
        for bad in ["256", "-1", "finish", ""] {
            assert!(kind_of(bad).is_err(), "{bad}");
        }
    }
}
