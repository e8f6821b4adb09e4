//! Histories of executions, under filters and in pages (a job's, the queues'), and the
//! executions page that lists every job's.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use panda_core::{Execution, ExecutionId, Status, Trigger, human};
use panda_store::ExecutionFilter;
use serde::Deserialize;

use super::session::Session;
use super::view::{self, StatusView};
use super::{Nav, Page};
use crate::AppState;

/// Executions on one page of a history.
pub(super) const HISTORY_PAGE: u32 = 50;

/// One execution in a history table.
#[derive(Debug)]
pub(super) struct ExecRow {
    pub(super) id: ExecutionId,
    pub(super) job: String,
    pub(super) status: StatusView,
    pub(super) trigger: &'static str,
    pub(super) attempt: u32,
    pub(super) when: String,
    pub(super) when_abs: String,
    pub(super) took: String,
    pub(super) exit: String,
    pub(super) reason: String,
}

impl ExecRow {
    pub(super) fn of(e: &Execution, now: DateTime<Utc>) -> Self {
        let at = e.started_at.or(e.scheduled_at).unwrap_or(e.created_at);
        Self {
            id: e.id,
            job: e.job_name.clone(),
            status: StatusView::of(e.status),
            trigger: e.trigger.as_str(),
            attempt: e.attempt,
            when: human::relative(at, now),
            when_abs: view::absolute(at),
            took: view::ran_for(e, now)
                .map(human::elapsed)
                .unwrap_or_default(),
            exit: e.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
        }
    }
}

/// A history's filters, from the query string.
#[derive(Debug, Default, Deserialize)]
pub(super) struct HistoryQuery {
    status: Option<String>,
    trigger: Option<String>,
    before: Option<String>,
}

/// The filters as the page shows them (the selected values), and links to other pages.
#[derive(Debug, Default)]
pub(super) struct History {
    pub(super) rows: Vec<ExecRow>,
    pub(super) status: String,
    pub(super) trigger: String,
    /// The next (older) page's link.
    pub(super) older: Option<String>,
    /// The first page's link, when this is not it.
    pub(super) newest: Option<String>,
    pub(super) statuses: Vec<&'static str>,
    pub(super) triggers: Vec<&'static str>,
}

/// Reads one page of history for `job` (or every job) under the query's filters.
pub(super) async fn history(
    state: &AppState,
    job: Option<&str>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
    base: &str,
) -> Result<(History, Vec<Execution>), Page> {
    let Query(query) = query.map_err(|err| {
        Page::error(
            StatusCode::BAD_REQUEST,
            &format!(
                "The address's query string is not valid: {}",
                err.body_text()
            ),
            "Use the filters on the page.",
        )
    })?;
    let bad = |message: String| {
        Page::error(
            StatusCode::BAD_REQUEST,
            &message,
            "Use the filters on the page.",
        )
    };
    let status_text = query.status.as_deref().unwrap_or("").trim();
    let status = (!status_text.is_empty())
        .then(|| status_text.parse::<Status>())
        .transpose()
        .map_err(|err| bad(err.to_string()))?;
    let trigger_text = query.trigger.as_deref().unwrap_or("").trim();
    let trigger = (!trigger_text.is_empty())
        .then(|| trigger_text.parse::<Trigger>())
        .transpose()
        .map_err(|err| bad(err.to_string()))?;
    let before_text = query.before.as_deref().unwrap_or("").trim();
    let before = (!before_text.is_empty())
        .then(|| before_text.parse::<ExecutionId>())
        .transpose()
        .map_err(|_| bad(format!("{before_text:?} is not an execution id")))?;
    let page = state
        .store
        .execution_list(&ExecutionFilter {
            job: job.map(str::to_owned),
            statuses: status.into_iter().collect(),
            trigger,
            before,
            limit: HISTORY_PAGE,
            ..ExecutionFilter::default()
        })
        .await?;
    let now = state.clock.now();
    let filters = |before: Option<ExecutionId>| {
        let mut parts = Vec::new();
        if let Some(status) = status {
            parts.push(format!("status={status}"));
        }
        if let Some(trigger) = trigger {
            parts.push(format!("trigger={trigger}"));
        }
        if let Some(before) = before {
            parts.push(format!("before={before}"));
        }
        if parts.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", parts.join("&"))
        }
    };
    let history = History {
        rows: page
            .executions
            .iter()
            .map(|e| ExecRow::of(e, now))
            .collect(),
        status: status.map(|s| s.as_str()).unwrap_or("").to_owned(),
        trigger: trigger.map(|t| t.as_str()).unwrap_or("").to_owned(),
        older: page.next.map(|next| filters(Some(next))),
        newest: before.map(|_| filters(None)),
        statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
        triggers: Trigger::ALL.iter().map(|t| t.as_str()).collect(),
    };
    Ok((history, page.executions))
}

#[derive(Template)]
#[template(path = "executions.html")]
struct ExecutionsPage {
    nav: Nav,
    action: String,
    history: History,
}

pub(super) async fn executions(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Page, Page> {
    let (history, _) = history(&state, None, query, "/executions").await?;
    Ok(Page::render(&ExecutionsPage {
        nav: Nav::new(&session, "executions"),
        action: "/executions".to_owned(),
        history,
    }))
}
