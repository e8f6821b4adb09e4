//! What the cases share: fixed instants, a job spec that runs `true`, and short forms of the
//! calls most cases make.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use panda_core::{
    ConcurrencyPolicy, Execution, ExecutionId, Job, JobName, JobSpec, RetryPolicy, RuntimeSpec,
};
use panda_store::{
    ClaimRequest, Claimed, ExecutionFilter, Finish, Finished, MAX_PAGE_SIZE, NewExecution, Outcome,
    Store,
};

/// Asserts that a result is an error matching `pattern`, printing what it was otherwise.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(,)?) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected Err({}), got {:?}", stringify!($pattern), other),
        }
    };
}

/// The worker most cases claim as.
pub const WORKER: &str = "worker-1";
/// The lease most cases claim with.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// The base of the retry policy of [`job_spec`]; the cap is six times as long.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);

/// The instant every case starts from.
pub fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0)
        .single()
        .expect("a valid instant")
}

/// `seconds` after [`base`].
pub fn at(seconds: i64) -> DateTime<Utc> {
    base() + chrono::Duration::seconds(seconds)
}

/// `instant` moved forward by a std duration.
pub fn plus(instant: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    instant + chrono::Duration::from_std(by).expect("a short duration")
}

/// Exponential backoff from 10 s, capped at 60 s, with `max_attempts` attempts.
pub fn retry_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_base: BACKOFF_BASE,
        backoff_cap: BACKOFF_BASE * 6,
    }
}

/// A job that runs `true` in the default queue, with three attempts and executions that may
/// overlap (cases about the overlap rules set `concurrency` themselves).
pub fn job_spec(name: &str) -> JobSpec {
    let mut spec = JobSpec::new(
        JobName::new(name).expect("a valid job name"),
        RuntimeSpec::Process {
            argv: vec!["true".into()],
        },
    );
    spec.retry = retry_policy(3);
    spec.concurrency = ConcurrencyPolicy::Allow;
    spec
}

/// [`job_spec`] with the overlap rule `concurrency`.
pub fn job_spec_with(name: &str, concurrency: ConcurrencyPolicy) -> JobSpec {
    let mut spec = job_spec(name);
    spec.concurrency = concurrency;
    spec
}

/// [`job_spec`] with a schedule: a cronjob.
pub fn cronjob_spec(name: &str, cron: &str) -> JobSpec {
    let mut spec = job_spec(name);
    // Built from JSON so the case does not depend on where panda-core exports `Schedule`.
    spec.schedule = Some(
        serde_json::from_value(serde_json::json!({ "cron": cron })).expect("a valid schedule"),
    );
    spec
}

/// Creates the job `spec` describes, at [`base`].
pub async fn create_job_from(store: &Arc<dyn Store>, spec: JobSpec) -> Job {
    store
        .job_create(&spec, base())
        .await
        .unwrap_or_else(|err| panic!("create job {}: {err}", spec.name))
}

/// Creates a [`job_spec`] job.
pub async fn create_job(store: &Arc<dyn Store>, name: &str) -> Job {
    create_job_from(store, job_spec(name)).await
}

/// Enqueues `request` and checks that it made a new execution.
pub async fn enqueue_request(
    store: &Arc<dyn Store>,
    request: NewExecution,
    now: DateTime<Utc>,
) -> Execution {
    let enqueued = store
        .execution_enqueue(&request, now)
        .await
        .unwrap_or_else(|err| panic!("enqueue {}: {err}", request.job));
    assert!(enqueued.created, "a new execution, not a deduplicated one");
    enqueued.execution
}

/// Enqueues an API execution of `job` with `payload`, due `seconds` after [`base`]; its id.
pub async fn enqueue_for(
    store: &Arc<dyn Store>,
    job: &str,
    payload: serde_json::Value,
    seconds: i64,
) -> ExecutionId {
    let request = NewExecution {
        payload: Some(payload),
        ..NewExecution::api(job)
    };
    enqueue_request(store, request, at(seconds)).await.id
}

/// Enqueues a plain API execution of `job`, due at `now`.
pub async fn enqueue(store: &Arc<dyn Store>, job: &str, now: DateTime<Utc>) -> Execution {
    enqueue_request(store, NewExecution::api(job), now).await
}

/// A claim by [`WORKER`] from the default queue with a [`LEASE_TTL`] lease.
pub fn claim_request(limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: WORKER.into(),
        queues: vec!["default".into()],
        limit,
        lease_ttl: LEASE_TTL,
    }
}

/// `tasks` claimers racing each other, each its own worker (`worker-N`) claiming up to
/// `places` at `now` until `patience` claims in a row come back empty, yielding after each
/// empty one. Each claim's batch, empty or not, goes through `on_batch` before that claimer
/// claims again. Returns every execution claimed, each once (two claims of one execution
/// fail the case).
pub async fn race_claimers<F, Fut>(
    store: &Arc<dyn Store>,
    tasks: usize,
    places: u32,
    now: DateTime<Utc>,
    patience: u32,
    on_batch: F,
) -> Vec<Claimed>
where
    F: Fn(Vec<Claimed>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let claimers: Vec<_> = (0..tasks)
        .map(|worker| {
            let store = Arc::clone(store);
            let on_batch = on_batch.clone();
            tokio::spawn(async move {
                let request = ClaimRequest {
                    worker_id: format!("worker-{worker}"),
                    ..claim_request(places)
                };
                let mut mine = Vec::new();
                let mut idle = 0;
                while idle < patience {
                    let batch = store
                        .execution_claim(&request, now)
                        .await
                        .expect("a concurrent claim succeeds");
                    let empty = batch.is_empty();
                    on_batch(batch.clone()).await;
                    if empty {
                        idle += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    idle = 0;
                    mine.extend(batch);
                }
                mine
            })
        })
        .collect();
    let mut claimed = Vec::new();
    let mut seen = BTreeSet::new();
    for task in claimers {
        for one in task.await.expect("claim task") {
            let id = one.execution.id;
            assert!(seen.insert(id), "{id} was claimed twice");
            claimed.push(one);
        }
    }
    claimed
}

/// Claims up to `limit` executions with [`claim_request`].
pub async fn claim(store: &Arc<dyn Store>, limit: u32, now: DateTime<Utc>) -> Vec<Claimed> {
    store
        .execution_claim(&claim_request(limit), now)
        .await
        .expect("claim")
}

/// Claims with a limit of one and checks that it got one.
pub async fn claim_one(store: &Arc<dyn Store>, now: DateTime<Utc>) -> Claimed {
    let mut claimed = claim(store, 1, now).await;
    assert_eq!(claimed.len(), 1, "one execution claimed: {claimed:?}");
    claimed.pop().expect("one execution")
}

/// The report of a run under `claimed`'s lease that ended as `outcome` (exit code 0 for
/// success, 1 for failure, none otherwise).
pub fn finish_of(claimed: &Claimed, outcome: Outcome) -> Finish {
    Finish {
        execution_id: claimed.execution.id,
        token: claimed.lease.token,
        outcome,
        exit_code: match outcome {
            Outcome::Succeeded => Some(0),
            Outcome::Failed => Some(1),
            Outcome::TimedOut | Outcome::Cancelled | Outcome::Rejected => None,
        },
        reason: None,
        image_digest: None,
    }
}

/// Finishes `claimed` as `outcome` and checks that the store accepted it.
pub async fn finish(
    store: &Arc<dyn Store>,
    claimed: &Claimed,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Finished {
    store
        .execution_finish(&finish_of(claimed, outcome), now)
        .await
        .unwrap_or_else(|err| panic!("finish {} as {outcome:?}: {err}", claimed.execution.id))
}

/// Enqueues, claims and finishes one execution of `job` as succeeded, all at `now`. Nothing
/// else may be due in the default queue.
pub async fn run_to_success(store: &Arc<dyn Store>, job: &str, now: DateTime<Utc>) -> Execution {
    let queued = enqueue(store, job, now).await;
    let claimed = claim_one(store, now).await;
    assert_eq!(
        claimed.execution.id, queued.id,
        "claimed the one just queued"
    );
    finish(store, &claimed, Outcome::Succeeded, now)
        .await
        .execution
}

/// Every execution `filter` selects, following `next` through all pages.
pub async fn list_every(store: &Arc<dyn Store>, filter: ExecutionFilter) -> Vec<Execution> {
    let mut filter = ExecutionFilter {
        limit: MAX_PAGE_SIZE,
        ..filter
    };
    let mut all = Vec::new();
    loop {
        let page = store
            .execution_list(&filter)
            .await
            .expect("list executions");
        all.extend(page.executions);
        match page.next {
            Some(next) => filter.before = Some(next),
            None => return all,
        }
    }
}

/// Every execution of `job` (by name), newest first.
pub async fn executions_of(store: &Arc<dyn Store>, job: &str) -> Vec<Execution> {
    list_every(
        store,
        ExecutionFilter {
            job: Some(job.into()),
            ..ExecutionFilter::default()
        },
    )
    .await
}

/// The ids of `executions`, as a set.
pub fn ids(executions: &[Execution]) -> BTreeSet<ExecutionId> {
    executions.iter().map(|e| e.id).collect()
}

/// Asserts `from <= instant <= to`.
#[track_caller]
pub fn assert_within(instant: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) {
    assert!(
        from <= instant && instant <= to,
        "{instant} is not within [{from}, {to}]"
    );
}
