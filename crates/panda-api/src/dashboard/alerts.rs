//! The alerts raised, newest first, with how their deliveries went.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use chrono::{DateTime, Utc};
use panda_core::{ExecutionId, human};
use serde::Deserialize;

use super::session::Session;
use super::view;
use super::{Nav, Page};
use crate::AppState;

/// One alert as the alerts page shows it.
struct AlertRow {
    when: String,
    when_abs: String,
    job: String,
    kind: &'static str,
    symbol: &'static str,
    class: &'static str,
    execution: Option<ExecutionId>,
    delivered: String,
    deliveries: Vec<String>,
    message: String,
}

impl AlertRow {
    fn of(alert: &panda_store::AlertRecord, now: DateTime<Utc>) -> Self {
        use panda_core::AlertKind;
        use panda_core::api::DeliveryState;
        let (symbol, class) = match alert.kind {
            AlertKind::Recovered => ("✓", "s-succeeded"),
            AlertKind::Late | AlertKind::LongRunning => ("⏱", "s-running"),
            AlertKind::Dead => ("☠", "s-dead"),
            _ => ("✗", "s-failed"),
        };
        let delivered = alert
            .deliveries
            .iter()
            .filter(|d| d.state == DeliveryState::Delivered)
            .count();
        Self {
            when: human::relative(alert.created_at, now),
            when_abs: view::absolute(alert.created_at),
            job: alert.job.clone(),
            kind: alert.kind.as_str(),
            symbol,
            class,
            execution: alert.execution_id,
            delivered: if alert.deliveries.is_empty() {
                "no notifier".to_owned()
            } else {
                format!("{delivered} of {}", alert.deliveries.len())
            },
            deliveries: alert
                .deliveries
                .iter()
                .filter(|d| d.state != DeliveryState::Delivered)
                .map(|d| {
                    let mut line = format!("{} {}", d.notifier.as_str(), d.state.as_str());
                    if let Some(error) = &d.last_error {
                        line.push_str(&format!(" after {} attempts: {error}", d.attempts));
                    }
                    line
                })
                .collect(),
            message: alert.message.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    nav: Nav,
    job: Option<String>,
    alerts: Vec<AlertRow>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AlertQuery {
    job: Option<String>,
}

/// Alerts, newest first, with how their deliveries went.
pub(super) async fn alerts(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Page, Page> {
    let Query(query) = query.unwrap_or_default();
    let job = query.job.filter(|j| !j.trim().is_empty());
    let now = state.clock.now();
    let listed = state.store.alert_list(job.as_deref(), 100).await?;
    Ok(Page::render(&AlertsPage {
        nav: Nav::new(&session, "alerts"),
        job,
        alerts: listed.iter().map(|a| AlertRow::of(a, now)).collect(),
    }))
}
