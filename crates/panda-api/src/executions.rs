//! Executions: triggering, listing, cancelling, their logs (a page, or a live stream), and
//! the dead-letter queue.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use panda_core::api::{
    BatchItem, BatchRequest, BatchResponse, ErrorBody, ExecutionList, LogEnd, LogLine, LogPage,
    MAX_BATCH_ITEMS, TriggerRequest, Triggered,
};
use panda_core::{Execution, ExecutionId, Status, Trigger};
use panda_store::{ExecutionFilter, LogChunk, NewExecution, StoreError};
use serde::Deserialize;

use crate::enqueue::Refused;
use crate::jobs::{job_named, no_job};
use crate::{AppState, Failure};

/// How often a live log stream looks for new output. The workers write theirs every 200 ms.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// Chunks read per store call.
const LOG_PAGE: u32 = 1000;

#[utoipa::path(
    post,
    path = "/jobs/{name}/executions",
    tag = "executions",
    summary = "Run a job now or later (an idempotency key seen before returns the first execution, with 200)",
    params(("name" = String, Path, description = "The job's name")),
    request_body = TriggerRequest,
    responses(
        (status = 201, description = "Created", body = Triggered),
        (status = 200, description = "An earlier execution with the same key", body = Triggered),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Result<Json<TriggerRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Triggered>), Failure> {
    let Json(request) = request?;
    let new = new_execution(&name, request)?;
    // A backfill records its slot with its execution, alone; every other enqueue shares the
    // writer's next transaction.
    let enqueued = if new.scheduled_at.is_some() {
        state
            .store
            .execution_enqueue(&new, state.clock.now())
            .await
            .map_err(Refused::Store)
    } else {
        state.enqueuer().enqueue(new).await
    };
    let enqueued = match enqueued {
        Ok(enqueued) => enqueued,
        Err(Refused::Store(StoreError::NotFound { .. })) => return Err(no_job(&state, &name).await),
        Err(Refused::Store(err)) => return Err(err.into()),
        Err(Refused::Batch(failure)) => return Err(failure),
    };
    let status = if enqueued.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Triggered {
            execution: enqueued.execution,
            created: enqueued.created,
        }),
    ))
}

/// What the store is asked for one enqueue of `job`.
fn new_execution(job: &str, request: TriggerRequest) -> Result<NewExecution, Failure> {
    let trigger = match request.trigger.as_deref() {
        None | Some("api") => Trigger::Api,
        Some("manual") => Trigger::Manual,
        Some(other) => {
            return Err(Failure::invalid(format!(
                "trigger {other:?} is not api or manual"
            )));
        }
    };
    Ok(NewExecution {
        job: job.to_owned(),
        trigger,
        payload: request.payload,
        env: request.env,
        idempotency_key: request.idempotency_key,
        run_at: request.run_at,
        priority: request.priority,
        scheduled_at: request.scheduled_for,
        force: request.force,
    })
}

#[utoipa::path(
    post,
    path = "/jobs/{name}/executions/batch",
    tag = "executions",
    summary = "Enqueue up to 1,000 executions of a job in one transaction",
    description = "Each item is answered in its place: `created`, `duplicate` (its idempotency key was seen before, or earlier in the batch) or `invalid` (refused as the single enqueue would refuse it; nothing queued for it). The body may be up to 16 MiB.",
    params(("name" = String, Path, description = "The job's name")),
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Every item answered", body = BatchResponse),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn batch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Json<BatchResponse>, Failure> {
    let Json(request) = request?;
    let count = request.items.len();
    if count == 0 || count > MAX_BATCH_ITEMS {
        return Err(Failure::invalid(format!(
            "a batch holds 1 to {MAX_BATCH_ITEMS} items, not {count}"
        ))
        .hint("split a longer list into batches of 1,000"));
    }
    // An item refused before the store sees it keeps its place.
    let mut refused: Vec<Option<Failure>> = Vec::with_capacity(count);
    let mut news = Vec::with_capacity(count);
    for item in request.items {
        match new_execution(&name, item) {
            Ok(new) => {
                refused.push(None);
                news.push(new);
            }
            Err(failure) => refused.push(Some(failure)),
        }
    }
    let mut answers = state
        .store
        .execution_enqueue_many(&news, state.clock.now())
        .await?
        .into_iter();
    let mut response = BatchResponse {
        items: Vec::with_capacity(count),
        created: 0,
        duplicates: 0,
        invalid: 0,
    };
    for refusal in refused {
        let answer = match refusal {
            Some(failure) => Err(failure),
            None => match answers.next() {
                Some(Err(StoreError::NotFound { .. })) => return Err(no_job(&state, &name).await),
                Some(answer) => answer.map_err(Failure::from),
                None => {
                    return Err(Failure::from(StoreError::Corrupt(
                        "a batch item left unanswered".into(),
                    )));
                }
            },
        };
        let item = match answer {
            Ok(enqueued) if enqueued.created => {
                response.created += 1;
                BatchItem::Created {
                    execution: enqueued.execution,
                }
            }
            Ok(enqueued) => {
                response.duplicates += 1;
                BatchItem::Duplicate {
                    execution: enqueued.execution,
                }
            }
            Err(failure) => {
                if failure.parts().0.is_server_error() {
                    return Err(failure);
                }
                response.invalid += 1;
                BatchItem::Invalid {
                    error: failure.parts().1.clone(),
                }
            }
        };
        response.items.push(item);
    }
    Ok(Json(response))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Comma-separated statuses.
    #[param(schema_with = statuses_schema)]
    status: Option<String>,
    /// Only executions with this trigger.
    #[param(schema_with = trigger_schema)]
    trigger: Option<String>,
    /// Page size, at most 1000 (0 or absent: the default).
    #[param(maximum = 4_294_967_295_u32)]
    limit: Option<u32>,
    /// Cursor: the previous page's next.
    #[param(value_type = Option<String>, format = Uuid)]
    before: Option<ExecutionId>,
}

/// A comma-separated list of statuses, blanks around each ignored.
fn statuses_schema() -> utoipa::openapi::schema::Schema {
    let one = Status::ALL.map(Status::as_str).join("|");
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(format!(r"^\s*({one})?\s*(,\s*({one})?\s*)*$")))
        .description(Some("Comma-separated statuses"))
        .into()
}

fn trigger_schema() -> utoipa::openapi::schema::Schema {
    panda_core::api::schema::one_of(
        &Trigger::ALL.map(Trigger::as_str),
        "Only executions with this trigger",
    )
}

impl ListQuery {
    fn filter(&self, job: Option<String>) -> Result<ExecutionFilter, Failure> {
        let statuses = self
            .status
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Status>()
                    .map_err(|err| Failure::invalid(err.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let trigger = self
            .trigger
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<Trigger>()
                    .map_err(|err| Failure::invalid(err.to_string()))
            })
            .transpose()?;
        Ok(ExecutionFilter {
            job,
            statuses,
            trigger,
            root: None,
            dead_letter: false,
            before: self.before,
            limit: self.limit.unwrap_or(0),
        })
    }
}

#[utoipa::path(
    get,
    path = "/jobs/{name}/executions",
    tag = "executions",
    summary = "A job's executions, newest first",
    params(("name" = String, Path, description = "The job's name"), ListQuery),
    responses(
        (status = 200, description = "A page", body = ExecutionList),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn list_of_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ExecutionList>, Failure> {
    let Query(query) = query?;
    let filter = query.filter(Some(name.clone()))?;
    let page = state.store.execution_list(&filter).await?;
    if page.executions.is_empty() && query.before.is_none() {
        // An empty history of a job that exists is an answer; of one that does not, an error
        // (with a did-you-mean). A deleted job's history stays listable.
        if state.store.job_get(&name).await.is_err() && !had_history(&state, &name).await? {
            return Err(no_job(&state, &name).await);
        }
    }
    Ok(Json(ExecutionList {
        executions: page.executions,
        next: page.next,
    }))
}

async fn had_history(state: &AppState, name: &str) -> Result<bool, Failure> {
    let any = state
        .store
        .execution_list(&ExecutionFilter {
            job: Some(name.to_owned()),
            limit: 1,
            ..ExecutionFilter::default()
        })
        .await?;
    Ok(!any.executions.is_empty())
}

#[utoipa::path(
    get,
    path = "/jobs/{name}/executions/latest",
    tag = "executions",
    summary = "The newest execution that was not skipped",
    params(("name" = String, Path, description = "The job's name")),
    responses(
        (status = 200, description = "The execution", body = Execution),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn latest(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Execution>, Failure> {
    match state.store.execution_latest(&name).await? {
        Some(execution) => Ok(Json(execution)),
        None => {
            job_named(&state, &name).await?;
            Err(Failure::not_found(format!("job {name:?} has not run yet"))
                .hint(format!("run it now with `panda cronjob trigger {name}`")))
        }
    }
}

#[utoipa::path(
    get,
    path = "/executions/{id}",
    tag = "executions",
    summary = "One execution",
    params(("id" = ExecutionId, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "The execution", body = Execution),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Execution>, Failure> {
    let id = execution_id(&id)?;
    Ok(Json(state.store.execution_get(id).await?))
}

#[utoipa::path(
    post,
    path = "/executions/{id}/cancel",
    tag = "executions",
    summary = "Cancel: a queued execution at once, a running one through its worker",
    params(("id" = ExecutionId, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "The execution", body = Execution),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Execution>, Failure> {
    let id = execution_id(&id)?;
    Ok(Json(
        state.store.execution_cancel(id, state.clock.now()).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Only lines after this seq.
    after: Option<u64>,
    /// Only the last N lines (ignores `after`; more than 10000 reads 10000).
    #[param(maximum = 4_294_967_295_u32)]
    tail: Option<u32>,
    /// Page size (default 1000; more than 10000 reads 10000).
    #[param(maximum = 4_294_967_295_u32)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/executions/{id}/logs",
    tag = "logs",
    summary = "A page of an execution's log",
    params(("id" = ExecutionId, Path, description = "The execution's id"), LogQuery),
    responses(
        (status = 200, description = "Lines and the execution's status", body = LogPage),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<LogPage>, Failure> {
    let Query(query) = query?;
    let id = execution_id(&id)?;
    // The status first: a terminal status read before the lines means the lines are all.
    let status = state.store.execution_get(id).await?.status;
    let chunks = match query.tail {
        Some(n) => state.store.log_tail(id, n.min(10_000)).await?,
        None => {
            state
                .store
                .log_read(id, query.after, query.limit.unwrap_or(LOG_PAGE).min(10_000))
                .await?
        }
    };
    Ok(Json(LogPage {
        lines: chunks.into_iter().map(line_of).collect(),
        status,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Only lines after this seq.
    after: Option<u64>,
}

/// One event of a log stream, as its fields arrive on the wire: the document's description of
/// `text/event-stream`, which the server writes with axum's `Event`, not with this type.
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "describes the stream's events; the handler writes them with Event"
)]
struct StreamEvent {
    /// What the data is.
    event: StreamEventName,
    /// JSON: `{"status"}` for `status`, a LogLine for `log`, `{"execution"}` for `end`.
    data: String,
}

/// The names a log stream's events carry.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[expect(
    dead_code,
    reason = "describes the stream's events; the handler writes them with Event"
)]
enum StreamEventName {
    Status,
    Log,
    End,
}

/// Replays the log after `after`, then follows it until the execution ends: `log` events
/// (a [`LogLine`] each), then one `end` event (a [`LogEnd`]). Ends early, without `end`, when
/// the server stops.
#[utoipa::path(
    get,
    path = "/executions/{id}/logs/stream",
    tag = "logs",
    summary = "Server-sent events: `log` events (a LogLine each) from after `after`, live until the execution ends, then one `end` event (a LogEnd)",
    params(("id" = ExecutionId, Path, description = "The execution's id"), StreamQuery),
    responses(
        (
            status = 200,
            description = "An event stream: `status` ({\"status\"}) when the execution's status changes while it runs (queued to running), `log` (a LogLine) for each line, and `end` ({\"execution\"}) once it has ended and every line was sent",
            content_type = "text/event-stream",
            body = StreamEvent,
        ),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Failure> {
    let Query(query) = query?;
    let id = execution_id(&id)?;
    state.store.execution_get(id).await?;
    let shutdown = state.shutdown.clone();
    let follow = Follow {
        state,
        id,
        after: query.after,
        status: None,
        done: false,
    };
    let events = futures::stream::unfold(follow, |mut follow| async move {
        let events = follow.next_events().await;
        events.map(|events| (futures::stream::iter(events), follow))
    });
    let events = futures::StreamExt::flatten(events);
    let events = futures::StreamExt::take_until(events, async move { shutdown.cancelled().await });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// A live log stream's position.
struct Follow {
    state: AppState,
    id: ExecutionId,
    after: Option<u64>,
    /// The status last sent, so that a change (queued to running) is sent once.
    status: Option<panda_core::Status>,
    done: bool,
}

impl Follow {
    /// The next events: a change of status while it runs, new lines, or the end. `None` once
    /// the end was sent.
    async fn next_events(&mut self) -> Option<Vec<Result<Event, Infallible>>> {
        if self.done {
            return None;
        }
        loop {
            // Status before lines: lines read after a terminal status are all there will be.
            let execution = match self.state.store.execution_get(self.id).await {
                Ok(execution) => execution,
                Err(err) => {
                    tracing::warn!(execution = %self.id, %err, "a log stream lost its execution");
                    self.done = true;
                    return Some(Vec::new());
                }
            };
            let chunks = match self
                .state
                .store
                .log_read(self.id, self.after, LOG_PAGE)
                .await
            {
                Ok(chunks) => chunks,
                Err(err) => {
                    tracing::warn!(execution = %self.id, %err, "reading logs for a stream failed");
                    Vec::new()
                }
            };
            let mut events = Vec::new();
            if !execution.status.is_terminal() && self.status != Some(execution.status) {
                self.status = Some(execution.status);
                events.push(Ok(json_event(
                    "status",
                    &serde_json::json!({ "status": execution.status }),
                )));
            }
            if let Some(last) = chunks.last() {
                self.after = Some(last.seq);
                events.extend(
                    chunks
                        .into_iter()
                        .map(|chunk| Ok(json_event("log", &line_of(chunk)))),
                );
            }
            if !events.is_empty() {
                return Some(events);
            }
            if execution.status.is_terminal() {
                self.done = true;
                return Some(vec![Ok(json_event("end", &LogEnd { execution }))]);
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|_| Event::default().event(name))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DlqQuery {
    /// Only this job's.
    job: Option<String>,
    /// Page size, at most 1000 (0 or absent: the default).
    #[param(maximum = 4_294_967_295_u32)]
    limit: Option<u32>,
    /// Cursor: the previous page's next.
    #[param(value_type = Option<String>, format = Uuid)]
    before: Option<ExecutionId>,
}

#[utoipa::path(
    get,
    path = "/dlq",
    tag = "dead letters",
    summary = "The dead-letter queue: dead executions not yet retried or discarded",
    params(DlqQuery),
    responses(
        (status = 200, description = "A page", body = ExecutionList),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    query: Result<Query<DlqQuery>, QueryRejection>,
) -> Result<Json<ExecutionList>, Failure> {
    let Query(query) = query?;
    let page = state
        .store
        .execution_list(&ExecutionFilter {
            job: query.job,
            dead_letter: true,
            before: query.before,
            limit: query.limit.unwrap_or(0),
            ..ExecutionFilter::default()
        })
        .await?;
    Ok(Json(ExecutionList {
        executions: page.executions,
        next: page.next,
    }))
}

#[utoipa::path(
    post,
    path = "/dlq/{id}/retry",
    tag = "dead letters",
    summary = "Run a dead execution again as the next attempt of its run",
    params(("id" = ExecutionId, Path, description = "The execution's id")),
    responses(
        (status = 201, description = "The new attempt", body = Execution),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn dlq_retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Execution>), Failure> {
    let id = execution_id(&id)?;
    let retry = state.store.dlq_retry(id, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(retry)))
}

#[utoipa::path(
    post,
    path = "/dlq/{id}/discard",
    tag = "dead letters",
    summary = "Take a dead execution out of the queue; its history stays",
    params(("id" = ExecutionId, Path, description = "The execution's id")),
    responses(
        (status = 204, description = "Discarded"),
        (status = "default", description = "An error: `{\"error\": {code, message, hint}}`", body = ErrorBody),
    )
)]
pub(crate) async fn dlq_discard(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Failure> {
    let id = execution_id(&id)?;
    state.store.dlq_discard(id, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn execution_id(text: &str) -> Result<ExecutionId, Failure> {
    text.parse()
        .map_err(|_| Failure::invalid(format!("{text:?} is not an execution id")))
}

fn line_of(chunk: LogChunk) -> LogLine {
    LogLine {
        seq: chunk.seq,
        stream: chunk.stream.as_str().to_owned(),
        at: chunk.at,
        text: String::from_utf8_lossy(&chunk.data).into_owned(),
    }
}
