//! `/alerts`: what was raised and how its deliveries went.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use panda_core::api::{AlertList, redacted_url};
use serde::Deserialize;

use crate::{AppState, Failure};

#[derive(Debug, Deserialize)]
pub(crate) struct AlertQuery {
    job: Option<String>,
    limit: Option<u32>,
}

/// Alerts, newest first, with their deliveries.
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
