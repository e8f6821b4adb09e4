//! Job definitions: a cronjob is a job with a schedule.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use panda_core::api::{
    JobView, SECRET_PLACEHOLDER, redacted, redacted_endpoint_left, restore_redacted_urls,
};
use panda_core::{Job, JobSpec};
use panda_store::{JobKind, Slot};
use serde::Deserialize;

use crate::{AppState, Failure};

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    /// `scheduled` (cronjobs), `triggered`, or all when absent.
    kind: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<JobView>>, Failure> {
    let Query(query) = query?;
    let kind = match query.kind.as_deref() {
        None | Some("all") => JobKind::All,
        Some("scheduled") => JobKind::Scheduled,
        Some("triggered") => JobKind::Triggered,
        Some(other) => {
            return Err(Failure::invalid(format!(
                "kind {other:?} is not one of scheduled, triggered, all"
            )));
        }
    };
    let jobs = state.store.job_list(kind).await?;
    Ok(Json(
        jobs.into_iter()
            .map(|job| JobView {
                next_run_at: state.next_run(&job),
                job: redacted(job),
            })
            .collect(),
    ))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    spec: Result<Json<JobSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<Job>), Failure> {
    let Json(spec) = spec?;
    if let Some(why) = redacted_endpoint_left(&spec) {
        return Err(Failure::invalid(why));
    }
    let job = state.store.job_create(&spec, state.clock.now()).await?;
    state.jobs_changed();
    Ok((StatusCode::CREATED, Json(redacted(job))))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Job>, Failure> {
    Ok(Json(redacted(job_named(&state, &name).await?)))
}

/// Replaces a job's definition. A secret sent back as the placeholder keeps its stored value,
/// so a definition read from the API can be changed and put back.
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    spec: Result<Json<JobSpec>, JsonRejection>,
) -> Result<Json<Job>, Failure> {
    let Json(mut spec) = spec?;
    if spec.name.as_str() != name {
        return Err(Failure::invalid(format!(
            "the body names job {:?}, the path {name:?}; a job cannot be renamed",
            spec.name.as_str()
        )));
    }
    let current = job_named(&state, &name).await?;
    for (key, value) in &mut spec.secret_env {
        if value == SECRET_PLACEHOLDER
            && let Some(stored) = current.spec.secret_env.get(key)
        {
            value.clone_from(stored);
        }
    }
    restore_redacted_urls(&mut spec.alerts.webhooks, &current.spec.alerts.webhooks);
    restore_redacted_urls(&mut spec.alerts.slack, &current.spec.alerts.slack);
    if let Some(why) = redacted_endpoint_left(&spec) {
        return Err(Failure::invalid(why));
    }
    let job = state.store.job_update(&spec, state.clock.now()).await?;
    state.jobs_changed();
    Ok(Json(redacted(job)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    match state.store.job_delete(&name, state.clock.now()).await {
        Ok(()) => {}
        Err(panda_store::StoreError::NotFound { .. }) => return Err(no_job(&state, &name).await),
        Err(err) => return Err(err.into()),
    }
    state.jobs_changed();
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn suspend(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Job>, Failure> {
    set_suspended(&state, &name, true).await
}

pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Job>, Failure> {
    set_suspended(&state, &name, false).await
}

pub(crate) async fn set_suspended(
    state: &AppState,
    name: &str,
    suspended: bool,
) -> Result<Json<Job>, Failure> {
    let mut spec = job_named(state, name).await?.spec;
    if spec.schedule.is_none() {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("job {name:?} has no schedule to suspend or resume"),
        ));
    }
    spec.suspended = suspended;
    let job = state.store.job_update(&spec, state.clock.now()).await?;
    state.jobs_changed();
    Ok(Json(redacted(job)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SlotsQuery {
    limit: Option<u32>,
}

/// A cronjob's recorded slots, newest first: fired, or skipped with the reason on their
/// execution.
pub(crate) async fn slots(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<SlotsQuery>, QueryRejection>,
) -> Result<Json<Vec<SlotView>>, Failure> {
    let Query(query) = query?;
    let job = job_named(&state, &name).await?;
    let slots = state
        .store
        .slot_list(job.id, query.limit.unwrap_or(50).min(1000))
        .await?;
    Ok(Json(slots.into_iter().map(SlotView::from).collect()))
}

/// A slot as the API shows it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct SlotView {
    scheduled_at: chrono::DateTime<chrono::Utc>,
    execution_id: panda_core::ExecutionId,
    fired: bool,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

impl From<Slot> for SlotView {
    fn from(slot: Slot) -> Self {
        Self {
            scheduled_at: slot.scheduled_at,
            execution_id: slot.execution_id,
            fired: slot.fired,
            recorded_at: slot.recorded_at,
        }
    }
}

/// A live job by name, or a not-found that suggests the closest name.
pub(crate) async fn job_named(state: &AppState, name: &str) -> Result<Job, Failure> {
    match state.store.job_get(name).await {
        Ok(job) => Ok(job),
        Err(panda_store::StoreError::NotFound { .. }) => Err(no_job(state, name).await),
        Err(err) => Err(err.into()),
    }
}

/// `no job named "x"`, with the closest live name as a hint when one is close.
pub(crate) async fn no_job(state: &AppState, name: &str) -> Failure {
    let failure = Failure::not_found(format!("no job named {name:?}"));
    let names: Vec<String> = state
        .store
        .job_list(JobKind::All)
        .await
        .map(|jobs| jobs.into_iter().map(|j| j.spec.name.to_string()).collect())
        .unwrap_or_default();
    let closest = names
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 3.max(candidate.len() / 4))
        .min();
    match closest {
        Some((_, candidate)) => failure.hint(format!("did you mean {candidate:?}?")),
        None if names.is_empty() => failure.hint("there are no jobs yet; create one first"),
        None => failure.hint("list them with `panda cronjob list` or `panda job list`"),
    }
}
