//! `/alerts`: what was raised and how its deliveries went.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use panda_core::api::AlertList;
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
    let alerts = state
        .store
        .alert_list(query.job.as_deref(), query.limit.unwrap_or(0))
        .await?;
    Ok(Json(AlertList { alerts }))
}
