//! Long-running services: a service is a job with a `service` part, created, changed and
//! deleted through the job store, and shown with its instances through the service store.
//!
//! A request body is a [`JobSpec`], as for jobs; the service routes fill in what a service
//! needs and a job body may lack (the `service` part itself, the retry policy that a service
//! does not use), so the smallest body is a name and a runtime.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use panda_core::api::{ErrorBody, redacted};
use panda_core::{Job, JobSpec, MAX_REPLICAS, Revision, ServiceStatus};
use panda_store::{JobKind, StoreError};
use serde::Deserialize;

use crate::jobs::{SpecBody, replace};
use crate::{AppState, Failure};

/// A service as the API shows it: secret values and alert endpoints hidden (an execution keeps
/// no secret value of its own).
fn shown(mut status: ServiceStatus) -> ServiceStatus {
    status.job = redacted(status.job);
    status
}

#[utoipa::path(
    get,
    path = "/services",
    tag = "services",
    summary = "List services: desired, running and healthy instances, restarts, revision, rollout",
    responses(
        (status = 200, description = "Services by name", body = Vec<ServiceStatus>),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<ServiceStatus>>, Failure> {
    let services = state.store.service_list(state.clock.now()).await?;
    Ok(Json(services.into_iter().map(shown).collect()))
}

#[utoipa::path(
    post,
    path = "/services",
    tag = "services",
    summary = "Create a service",
    description = "The body is a job definition; without a `service` part it gets the defaults \
                   (1 replica, restart always), and without `retry` the one-attempt policy. A \
                   service has no schedule.",
    request_body = JobSpec,
    responses(
        (status = 201, description = "Created, with its instances (none started yet)", body = ServiceStatus),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    ServiceBody { spec, .. }: ServiceBody,
) -> Result<(StatusCode, Json<ServiceStatus>), Failure> {
    check_service(&spec)?;
    if let Some(why) = panda_core::api::redacted_endpoint_left(&spec) {
        return Err(Failure::invalid(why));
    }
    let job = match state.store.job_create(&spec, state.clock.now()).await {
        Ok(job) => job,
        Err(err @ StoreError::Conflict(_)) => {
            return Err(Failure::from(err).hint(format!(
                "change it with `panda service update {}`, or pick another name",
                spec.name
            )));
        }
        Err(err) => return Err(err.into()),
    };
    state.jobs_changed();
    Ok((StatusCode::CREATED, Json(status_after(&state, job).await?)))
}

#[utoipa::path(
    get,
    path = "/services/{name}",
    tag = "services",
    summary = "One service, with each instance: node, state, started, restarts, last exit",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, description = "The service, secret values as ********", body = ServiceStatus),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceStatus>, Failure> {
    Ok(Json(shown(service_named(&state, &name).await?)))
}

#[utoipa::path(
    put,
    path = "/services/{name}",
    tag = "services",
    summary = "Replace a service's definition; a change of what runs is rolled out as a new revision",
    description = "A secret sent as ******** keeps its stored value. A body without a `service` \
                   part keeps the stored one. While a rollout progresses, a change of what runs \
                   answers 409 conflict.",
    params(("name" = String, Path, description = "The service's name")),
    request_body = JobSpec,
    responses(
        (status = 200, description = "Replaced", body = ServiceStatus),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ServiceBody {
        mut spec,
        service_given,
    }: ServiceBody,
) -> Result<Json<ServiceStatus>, Failure> {
    let current = service_job(&state, &name).await?;
    if !service_given {
        spec.service.clone_from(&current.spec.service);
    }
    check_service(&spec)?;
    let job = replace(&state, &name, spec, &current).await?;
    Ok(Json(status_after(&state, job).await?))
}

#[utoipa::path(
    delete,
    path = "/services/{name}",
    tag = "services",
    summary = "Delete a service: its instances are stopped; its history stays",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    service_job(&state, &name).await?;
    match state.store.job_delete(&name, state.clock.now()).await {
        Ok(()) => {}
        Err(StoreError::NotFound { .. }) => return Err(no_service(&state, &name).await),
        Err(err) => return Err(err.into()),
    }
    state.jobs_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// How many instances a service should run.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScaleRequest {
    /// Instances to keep running, `0..=1000`.
    #[schema(maximum = 1000)]
    replicas: u32,
}

#[utoipa::path(
    post,
    path = "/services/{name}/scale",
    tag = "services",
    summary = "Change how many instances a service runs (applies in place, no rollout)",
    params(("name" = String, Path, description = "The service's name")),
    request_body = ScaleRequest,
    responses(
        (status = 200, description = "Scaled", body = ServiceStatus),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn scale(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<ScaleRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ServiceStatus>, Failure> {
    let Json(request) = body?;
    if request.replicas > MAX_REPLICAS {
        return Err(Failure::invalid(format!(
            "replicas must be from 0 to {MAX_REPLICAS}, not {}",
            request.replicas
        ))
        .hint("scale to 0 to stop every instance and keep the service"));
    }
    change(&state, &name, |spec| {
        if let Some(service) = spec.service.as_mut() {
            service.replicas = request.replicas;
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/services/{name}/suspend",
    tag = "services",
    summary = "Stop every instance of a service, keeping its definition",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, description = "Suspended", body = ServiceStatus),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn suspend(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceStatus>, Failure> {
    change(&state, &name, |spec| spec.suspended = true).await
}

#[utoipa::path(
    post,
    path = "/services/{name}/resume",
    tag = "services",
    summary = "Start a suspended service's instances again",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, description = "Resumed", body = ServiceStatus),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceStatus>, Failure> {
    change(&state, &name, |spec| spec.suspended = false).await
}

#[utoipa::path(
    post,
    path = "/services/{name}/restart",
    tag = "services",
    summary = "Replace every instance, as a rollout of the current definition",
    description = "409 conflict while a rollout progresses.",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, description = "The rollout began", body = ServiceStatus),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn restart(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceStatus>, Failure> {
    service_job(&state, &name).await?;
    let status = state
        .store
        .service_restart(&name, state.clock.now())
        .await
        .map_err(|err| rollout_failure(err, &name))?;
    state.jobs_changed();
    Ok(Json(shown(status)))
}

#[utoipa::path(
    post,
    path = "/services/{name}/rollback",
    tag = "services",
    summary = "Go back one revision, rolled out like any change",
    description = "409 conflict while a rollout progresses, or when there is no earlier revision.",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, description = "The rollout back began", body = ServiceStatus),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceStatus>, Failure> {
    service_job(&state, &name).await?;
    let status = state
        .store
        .service_rollback(&name, state.clock.now())
        .await
        .map_err(|err| rollout_failure(err, &name))?;
    state.jobs_changed();
    Ok(Json(shown(status)))
}

#[utoipa::path(
    get,
    path = "/services/{name}/revisions",
    tag = "services",
    summary = "A service's kept revisions, newest first",
    params(("name" = String, Path, description = "The service's name")),
    responses(
        (status = 200, description = "Revisions, secret values as ********", body = Vec<Revision>),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn revisions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Revision>>, Failure> {
    service_job(&state, &name).await?;
    let revisions = match state.store.service_revisions(&name).await {
        Ok(revisions) => revisions,
        Err(StoreError::NotFound { .. }) => return Err(no_service(&state, &name).await),
        Err(err) => return Err(err.into()),
    };
    Ok(Json(
        revisions
            .into_iter()
            .map(|mut revision| {
                revision.job = redacted(revision.job);
                revision
            })
            .collect(),
    ))
}

/// A request body for the service routes: a job definition, as [`SpecBody`] reads one, whose
/// `service` part may be left out (it takes the defaults, and so do the fields whose default
/// depends on the kind of job).
pub(crate) struct ServiceBody {
    spec: JobSpec,
    /// Whether the body gave the `service` part.
    service_given: bool,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for ServiceBody {
    type Rejection = Failure;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Failure> {
        let mut service_given = true;
        let SpecBody(spec) = SpecBody::read(request, state, |fields| {
            fields.entry("service").or_insert_with(|| {
                service_given = false;
                serde_json::json!({})
            });
        })
        .await?;
        Ok(Self {
            spec,
            service_given,
        })
    }
}

/// Refuses what a service cannot be: one with a schedule, or a service part out of bounds.
fn check_service(spec: &JobSpec) -> Result<(), Failure> {
    if spec.schedule.is_some() {
        return Err(
            Failure::invalid("a service runs until stopped and has no schedule")
                .hint("leave the schedule out; a job on a schedule is a cronjob"),
        );
    }
    spec.validate()
        .map_err(|err| Failure::invalid(err.to_string()))
}

/// The stored job of the service `name`, or a not-found that says what `name` is instead.
async fn service_job(state: &AppState, name: &str) -> Result<Job, Failure> {
    let job = match state.store.job_get(name).await {
        Ok(job) => job,
        Err(StoreError::NotFound { .. }) => return Err(no_service(state, name).await),
        Err(err) => return Err(err.into()),
    };
    if job.spec.service.is_none() {
        let kind = if job.spec.schedule.is_some() {
            "cronjob"
        } else {
            "job"
        };
        return Err(
            Failure::not_found(format!("no service named {name:?}")).hint(format!(
                "{name} is a {kind}; see it with `panda {kind} get {name}`"
            )),
        );
    }
    Ok(job)
}

/// A live service's status by name, or a not-found that suggests the closest name.
pub(crate) async fn service_named(state: &AppState, name: &str) -> Result<ServiceStatus, Failure> {
    // A job of that name that is not a service says so.
    let job = service_job(state, name).await?;
    status_after(state, job).await
}

/// `no service named "x"`, with the closest service's name as a hint when one is close.
pub(crate) async fn no_service(state: &AppState, name: &str) -> Failure {
    let failure = Failure::not_found(format!("no service named {name:?}"));
    let names: Vec<String> = state
        .store
        .job_list(JobKind::Service)
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
        None if names.is_empty() => {
            failure.hint("there are no services yet; create one with `panda service create`")
        }
        None => failure.hint("list them with `panda service list`"),
    }
}

/// Changes a service's stored definition in place with `edit`, and answers its status.
async fn change(
    state: &AppState,
    name: &str,
    edit: impl FnOnce(&mut JobSpec),
) -> Result<Json<ServiceStatus>, Failure> {
    let current = service_job(state, name).await?;
    let mut spec = current.spec.clone();
    edit(&mut spec);
    let job = state
        .store
        .job_update(&spec, state.clock.now())
        .await
        .map_err(|err| rollout_failure(err, name))?;
    state.jobs_changed();
    Ok(Json(status_after(state, job).await?))
}

/// The status of a service just written, as the store reports it.
async fn status_after(state: &AppState, job: Job) -> Result<ServiceStatus, Failure> {
    let name = job.spec.name.to_string();
    match state.store.service_get(&name, state.clock.now()).await {
        Ok(status) => Ok(shown(status)),
        Err(StoreError::NotFound { .. }) => Err(no_service(state, &name).await),
        Err(err) => Err(err.into()),
    }
}

/// A conflict of a rollout (one progresses, or there is nothing to go back to), with what to
/// do about it when the store's message does not say.
fn rollout_failure(err: StoreError, name: &str) -> Failure {
    match err {
        StoreError::Conflict(ref message) if message.contains("no earlier revision") => {
            Failure::from(err).hint(format!(
                "a rollback needs an earlier revision; see them with `panda service revisions {name}`"
            ))
        }
        other => other.into(),
    }
}
