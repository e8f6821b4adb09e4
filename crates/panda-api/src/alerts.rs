//! `/alerts`: what was raised and how its deliveries went.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use panda_core::api::{AlertList, ErrorBody, redacted_url};
use serde::Deserialize;

use crate::{AppState, Failure};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertQuery {
    /// Only this job's.
    job: Option<String>,
    /// How many (default 50, at most 1000).
    #[param(maximum = 4_294_967_295_u32)]
    limit: Option<u32>,
}

/// Alerts, newest first, with their deliveries.
#[utoipa::path(
    get,
    path = "/alerts",
    tag = "alerts",
    summary = "Alerts raised, newest first, with how each delivery went",
    params(AlertQuery),
    responses(
        (status = 200, description = "The alerts", body = AlertList),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Json<AlertList>, Failure> {
    let Query(query) = query?;
    let mut alerts = state
        .store
        .alert_list(query.job.as_deref(), query.limit.unwrap_or(0))
        .await?;
    // Where each delivery went, as the job's definition shows it: never a credential.
    for delivery in alerts.iter_mut().flat_map(|a| a.deliveries.iter_mut()) {
        delivery.url = redacted_url(&delivery.url);
    }
    Ok(Json(AlertList {
        alerts: alerts.into_iter().map(Into::into).collect(),
    }))
}
