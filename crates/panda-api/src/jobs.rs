//! Job definitions: a cronjob is a job with a schedule.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use panda_core::api::{
    CreatedJob, ErrorBody, ExecutionSummary, Follower, JobView, SECRET_PLACEHOLDER, redacted,
    redacted_endpoint_left, restore_redacted_urls,
};
use panda_core::{Job, JobSpec};
use panda_store::{ExecutionBrief, JobKind, Slot};
use serde::Deserialize;

use crate::{AppState, Failure};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// `scheduled` (cronjobs), `triggered`, `monitor`, or all when absent.
    #[param(schema_with = kind_schema)]
    kind: Option<String>,
}

fn kind_schema() -> utoipa::openapi::schema::Schema {
    panda_core::api::schema::one_of(
        &["scheduled", "triggered", "monitor", "all"],
        "scheduled, triggered, monitor or all (default)",
    )
}

#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    summary = "List jobs, each active cronjob with its next fire time, each with its last run",
    params(ListQuery),
    responses(
        (status = 200, description = "Jobs by name", body = Vec<JobView>),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<JobView>>, Failure> {
    let Query(query) = query?;
    let kind = match query.kind.as_deref() {
        None | Some("all") => JobKind::All,
        Some("scheduled") => JobKind::Scheduled,
        Some("triggered") => JobKind::Triggered,
        Some("monitor") => JobKind::Monitor,
        Some(other) => {
            return Err(Failure::invalid(format!(
                "kind {other:?} is not one of scheduled, triggered, monitor, all"
            )));
        }
    };
    let jobs = state.store.job_list(kind).await?;
    let names: Vec<String> = jobs.iter().map(|job| job.spec.name.to_string()).collect();
    let mut last_runs: HashMap<String, ExecutionSummary> = state
        .store
        .execution_latest_per_job(&names)
        .await?
        .into_iter()
        .map(|brief| (brief.job_name.clone(), summary(brief)))
        .collect();
    Ok(Json(
        jobs.into_iter()
            .map(|job| JobView {
                next_run_at: state.next_run(&job),
                last_run: last_runs.remove(job.spec.name.as_str()),
                job: redacted(job),
            })
            .collect(),
    ))
}

/// An execution in brief, as the API shows it.
fn summary(brief: ExecutionBrief) -> ExecutionSummary {
    ExecutionSummary {
        id: brief.id,
        status: brief.status,
        trigger: brief.trigger,
        attempt: brief.attempt,
        created_at: brief.created_at,
        started_at: brief.started_at,
        finished_at: brief.finished_at,
    }
}

#[utoipa::path(
    post,
    path = "/jobs",
    tag = "jobs",
    summary = "Create a job (a cronjob when it has a schedule, a monitor when it has a monitor part)",
    description = "A monitor's answer holds its ping URL (`ping`), shown this once.",
    request_body = JobSpec,
    responses(
        (status = 201, description = "Created", body = CreatedJob),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    SpecBody(spec): SpecBody,
) -> Result<(StatusCode, Json<CreatedJob>), Failure> {
    if let Some(why) = redacted_endpoint_left(&spec) {
        return Err(Failure::invalid(why));
    }
    let now = state.clock.now();
    let (job, ping) = if spec.monitor.is_some() {
        let (job, token, url) = state.store.monitor_create(&spec, now).await?;
        let ping = crate::monitors::view(&url, Some(&token), &headers);
        (job, Some(ping))
    } else {
        match state.store.job_create(&spec, now).await {
            Ok(job) => (job, None),
            Err(err) => return Err(chain_failure(&state, &spec, err).await),
        }
    };
    state.jobs_changed();
    Ok((
        StatusCode::CREATED,
        Json(CreatedJob {
            job: redacted(job),
            ping,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/jobs/{name}",
    tag = "jobs",
    summary = "One job",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "The job, secret values as ********", body = Job),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Job>, Failure> {
    Ok(Json(redacted(job_named(&state, &name).await?)))
}

/// Replaces a job's definition. A secret sent back as the placeholder keeps its stored value,
/// so a definition read from the API can be changed and put back.
#[utoipa::path(
    put,
    path = "/jobs/{name}",
    tag = "jobs",
    summary = "Replace a job's definition; a secret sent as ******** keeps its stored value",
    description = "The body's name must be the path's: a job cannot be renamed.",
    params(("name" = String, Path, description = "The job's name")),
    request_body = JobSpec,
    responses(
        (status = 200, description = "Replaced", body = Job),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    SpecBody(spec): SpecBody,
) -> Result<Json<Job>, Failure> {
    let current = job_named(&state, &name).await?;
    Ok(Json(redacted(
        replace(&state, &name, spec, &current).await?,
    )))
}

/// Stores `spec` as the definition of the job `name` (now `current`): a secret sent back as the
/// placeholder, and an alert endpoint sent back redacted, keep their stored values.
pub(crate) async fn replace(
    state: &AppState,
    name: &str,
    mut spec: JobSpec,
    current: &Job,
) -> Result<Job, Failure> {
    if spec.name.as_str() != name {
        return Err(Failure::invalid(format!(
            "the body names {:?}, the path {name:?}; a job cannot be renamed",
            spec.name.as_str()
        )));
    }
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
    let job = match state.store.job_update(&spec, state.clock.now()).await {
        Ok(job) => job,
        Err(err) => return Err(chain_failure(state, &spec, err).await),
    };
    state.jobs_changed();
    Ok(job)
}

/// The answer to a refused create or update of `spec`: for a link to a job that does not
/// exist, the hint names the closest live name when one is close (a typo), as `no_job` does.
async fn chain_failure(state: &AppState, spec: &JobSpec, err: panda_store::StoreError) -> Failure {
    let failure = Failure::from(err);
    let (_, error) = failure.parts();
    if !error.message.starts_with("invalid after: no job named") {
        return failure;
    }
    for upstream in &spec.after {
        let name = upstream.job.as_str();
        if let Err(panda_store::StoreError::NotFound { .. }) = state.store.job_get(name).await {
            let suggestion = no_job(state, name).await;
            let (_, suggested) = suggestion.parts();
            if let Some(hint) = suggested
                .hint
                .as_deref()
                .filter(|h| h.starts_with("did you mean"))
            {
                return Failure::invalid(error.message.clone()).hint(format!(
                    "{hint} A job can follow only a job that exists: create {name:?} first if \
                     it is new"
                ));
            }
            break;
        }
    }
    failure
}

#[utoipa::path(
    delete,
    path = "/jobs/{name}",
    tag = "jobs",
    summary = "Delete a job; its history stays",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    match state.store.job_delete(&name, state.clock.now()).await {
        Ok(()) => {}
        Err(panda_store::StoreError::NotFound { .. }) => return Err(no_job(&state, &name).await),
        // The one conflict of a delete: other jobs follow this one.
        Err(err @ panda_store::StoreError::Conflict(_)) => {
            return Err(Failure::from(err).hint(
                "delete the jobs that follow it first, or drop it from their after \
                 (`panda job update NAME --no-after`)",
            ));
        }
        Err(err) => return Err(err.into()),
    }
    state.jobs_changed();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/jobs/{name}/suspend",
    tag = "jobs",
    summary = "Stop a cronjob's schedule firing",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "Suspended", body = Job),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn suspend(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Job>, Failure> {
    set_suspended(&state, &name, true).await
}

#[utoipa::path(
    post,
    path = "/jobs/{name}/resume",
    tag = "jobs",
    summary = "Let a suspended cronjob fire again",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "Resumed", body = Job),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
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

/// The live jobs that follow a job (their `after` names it), by name.
#[utoipa::path(
    get,
    path = "/jobs/{name}/followers",
    tag = "jobs",
    summary = "The jobs that follow this one, by name",
    description = "Each starts when a run of this job ends as its `on` says (its own `after` \
                   names this job); the jobs this one follows are its own `after`.",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "Followers by name", body = Vec<Follower>),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn followers(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Follower>>, Failure> {
    let job = job_named(&state, &name).await?;
    Ok(Json(followers_of(&state, &job).await?))
}

/// The live jobs whose `after` names `job`, by name.
pub(crate) async fn followers_of(state: &AppState, job: &Job) -> Result<Vec<Follower>, Failure> {
    let jobs = state.store.job_list(JobKind::All).await?;
    Ok(jobs
        .into_iter()
        .filter_map(|follower| {
            let on = follower
                .spec
                .after
                .iter()
                .find(|upstream| upstream.job == job.spec.name)?
                .on;
            Some(Follower {
                job: follower.spec.name,
                on,
            })
        })
        .collect())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SlotsQuery {
    /// At most this many (default 50; more than 1000 reads 1000).
    #[param(maximum = 4_294_967_295_u32)]
    limit: Option<u32>,
}

/// A cronjob's recorded slots, newest first: fired, or skipped with the reason on their
/// execution.
#[utoipa::path(
    get,
    path = "/jobs/{name}/slots",
    tag = "jobs",
    summary = "A cronjob's recorded slots, newest first",
    description = "Each slot fired, or was skipped with the reason on its execution.",
    params(("name" = String, Path, description = "The job's name"), SlotsQuery),
    responses(
        (status = 200, description = "Slots", body = Vec<SlotView>),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
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

/// A cron slot as recorded: when it was due, and the execution that ran it or records why not.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Slot)]
pub(crate) struct SlotView {
    /// The slot's instant.
    scheduled_at: chrono::DateTime<chrono::Utc>,
    /// The execution it made: queued when it fired, skipped (with the reason) when not.
    execution_id: panda_core::ExecutionId,
    /// Whether it fired.
    fired: bool,
    /// When the scheduler recorded it.
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
        None => failure
            .hint("list them with `panda cronjob list`, `panda job list` or `panda monitor list`"),
    }
}

/// A job definition in a request body: a [`JobSpec`], or a job as the API shows it, whose
/// `id`, `created_at`, `updated_at` and `next_run_at` are read-only and left out, so that what
/// was read can be changed and put back. Any other field the definition does not have is
/// refused, with the closest one it does.
pub(crate) struct SpecBody(pub(crate) JobSpec);

impl<S: Send + Sync> axum::extract::FromRequest<S> for SpecBody {
    type Rejection = Failure;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Failure> {
        Self::read(request, state, |_| {}).await
    }
}

impl SpecBody {
    /// Reads the body, with `fill` given its fields (the read-only ones left out) first.
    pub(crate) async fn read<S: Send + Sync>(
        request: axum::extract::Request,
        state: &S,
        fill: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> Result<Self, Failure> {
        use axum::extract::FromRequest;
        let Json(mut body) = Json::<serde_json::Value>::from_request(request, state).await?;
        if let Some(fields) = body.as_object_mut() {
            for shown in ["id", "created_at", "updated_at", "next_run_at"] {
                fields.remove(shown);
            }
            fill(fields);
        }
        let bytes = serde_json::to_vec(&body)
            .map_err(|err| Failure::invalid(format!("the request body: {err}")))?;
        let Json(spec) = Json::<JobSpec>::from_bytes(&bytes)?;
        Ok(Self(spec))
    }
}
