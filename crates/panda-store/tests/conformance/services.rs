//! Services: instances started by the reconcile, restarted with their end, claimed apart from
//! job executions, stopped when no longer wanted, and rolled from revision to revision.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use panda_core::{
    Execution, InstanceState, Job, JobSpec, RestartPolicy, RolloutState, RuntimeSpec, ServiceSpec,
    Status, StoreError, Trigger, UpdateOrder,
};
use panda_store::{ClaimRequest, Claimed, NewExecution, Outcome, Store};

use super::support::*;

/// A service of `replicas` that runs `true`, restarting after 1 s doubling to 8 s, healthy
/// runs resetting that after 60 s, and rollouts one instance at a time, each healthy for 10 s
/// within 60 s.
fn service_spec(name: &str, replicas: u32) -> JobSpec {
    let mut spec = job_spec(name);
    spec.service = Some(ServiceSpec {
        replicas,
        restart_delay: Duration::from_secs(1),
        restart_delay_max: Duration::from_secs(8),
        healthy_after: Duration::from_secs(60),
        ..ServiceSpec::default()
    });
    spec.service
        .as_mut()
        .map(|s| {
            s.rollout.max_parallel = 1;
            s.rollout.min_healthy = Duration::from_secs(10);
            s.rollout.healthy_deadline = Duration::from_secs(60);
        })
        .expect("a service");
    spec
}

fn service_of(spec: &mut JobSpec) -> &mut ServiceSpec {
    spec.service.as_mut().expect("a service")
}

fn instance_claim(worker: &str, limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        ..claim_request(limit)
    }
}

async fn claim_instances(
    store: &Arc<dyn Store>,
    worker: &str,
    limit: u32,
    now: DateTime<Utc>,
) -> Vec<Claimed> {
    store
        .service_claim(&instance_claim(worker, limit), now)
        .await
        .expect("service claim")
}

async fn live(store: &Arc<dyn Store>, name: &str) -> Vec<Execution> {
    let mut live: Vec<Execution> = executions_of(store, name)
        .await
        .into_iter()
        .filter(|e| !e.status.is_terminal())
        .collect();
    live.sort_by_key(|e| (e.instance, e.id));
    live
}

/// Creates the service, reconciles at `now` and claims each of its instances (one claim per
/// instance, as a claim takes one per service), from workers `w0`, `w1`, …; returns them by
/// instance.
async fn running(store: &Arc<dyn Store>, spec: JobSpec, now: DateTime<Utc>) -> (Job, Vec<Claimed>) {
    let job = create_job_from(store, spec).await;
    store.service_reconcile(now).await.expect("reconcile");
    let replicas = job.spec.service.as_ref().map_or(0, |s| s.replicas);
    let mut claimed = Vec::new();
    for i in 0..replicas {
        let mut got = claim_instances(store, &format!("w{i}"), 10, now).await;
        assert_eq!(got.len(), 1, "one instance per claim: {got:?}");
        claimed.push(got.remove(0));
    }
    claimed.sort_by_key(|c| c.execution.instance);
    (job, claimed)
}

async fn update(store: &Arc<dyn Store>, spec: &JobSpec, now: DateTime<Utc>) -> Job {
    store.job_update(spec, now).await.expect("update")
}

async fn healthy(store: &Arc<dyn Store>, claimed: &Claimed, now: DateTime<Utc>) {
    store
        .service_health(claimed.execution.id, claimed.lease.token, true, now)
        .await
        .expect("health");
}

pub async fn service_reconcile_starts_each_replica_once_as_an_instance_of_revision_one(
    store: Arc<dyn Store>,
) {
    create_job_from(&store, service_spec("events", 3)).await;
    let done = store.service_reconcile(at(1)).await.expect("reconcile");
    assert_eq!(done.started, 3);
    let again = store.service_reconcile(at(2)).await.expect("reconcile");
    assert_eq!(again.started, 0, "a service at its replicas is left alone");
    let queued = live(&store, "events").await;
    let instances: Vec<_> = queued
        .iter()
        .map(|e| (e.instance, e.revision, e.trigger, e.status))
        .collect();
    assert_eq!(
        instances,
        (0..3)
            .map(|i| (Some(i), Some(1), Trigger::Service, Status::Queued))
            .collect::<Vec<_>>()
    );
    let revisions = store.service_revisions("events").await.expect("revisions");
    assert_eq!(
        revisions.iter().map(|r| r.revision).collect::<Vec<_>>(),
        [1]
    );
    let status = store.service_get("events", at(2)).await.expect("get");
    assert_eq!((status.desired, status.running, status.revision), (3, 0, 1));
    assert!(
        status
            .instances
            .iter()
            .all(|i| i.state == InstanceState::Pending)
    );
}

pub async fn service_instances_are_claimed_apart_from_jobs_one_per_service_per_claim(
    store: Arc<dyn Store>,
) {
    create_job_from(&store, service_spec("events", 2)).await;
    store.service_reconcile(at(0)).await.expect("reconcile");
    assert!(
        claim(&store, 10, at(0)).await.is_empty(),
        "a job claim never takes an instance"
    );
    let first = claim_instances(&store, WORKER, 10, at(0)).await;
    assert_eq!(first.len(), 1, "one instance of a service per claim");
    assert!(
        claim_instances(&store, WORKER, 10, at(0)).await.is_empty(),
        "a node that runs one instance leaves the next to another node for a moment"
    );
    let other = claim_instances(&store, "worker-2", 10, at(0)).await;
    assert_eq!(other.len(), 1, "another node takes it at once");
    assert_ne!(first[0].execution.instance, other[0].execution.instance);
    assert_eq!(other[0].execution.status, Status::Running);
}

pub async fn service_claim_by_the_same_node_takes_the_next_instance_after_the_spread_wait(
    store: Arc<dyn Store>,
) {
    create_job_from(&store, service_spec("events", 2)).await;
    store.service_reconcile(at(0)).await.expect("reconcile");
    assert_eq!(claim_instances(&store, WORKER, 10, at(0)).await.len(), 1);
    let later = plus(at(0), panda_store::SPREAD_WAIT);
    assert_eq!(claim_instances(&store, WORKER, 10, later).await.len(), 1);
}

pub async fn service_instance_that_fails_restarts_with_doubling_jittered_backoff(
    store: Arc<dyn Store>,
) {
    let (_, claimed) = running(&store, service_spec("events", 1), at(0)).await;
    let finished = finish(&store, &claimed[0], Outcome::Failed, at(5)).await;
    assert_eq!(finished.execution.status, Status::Failed, "never dead");
    let restart = finished.retry.expect("restarted");
    assert_eq!(
        (
            restart.trigger,
            restart.attempt,
            restart.instance,
            restart.revision
        ),
        (Trigger::Restart, 2, Some(0), Some(1))
    );
    assert_within(restart.run_at, at(5), at(6));

    let mut now = restart.run_at;
    let mut attempt = restart.attempt;
    for ceiling in [2, 4, 8, 8] {
        let c = claim_instances(&store, WORKER, 1, now).await.remove(0);
        assert_eq!(c.execution.attempt, attempt);
        let next = finish(
            &store,
            &c,
            Outcome::Succeeded,
            plus(now, Duration::from_secs(1)),
        )
        .await
        .retry
        .unwrap_or_else(|| panic!("always restarts, even after exit 0: {:?}", c.execution));
        let ended = plus(now, Duration::from_secs(1));
        assert_within(
            next.run_at,
            ended,
            ended + chrono::Duration::seconds(ceiling),
        );
        assert_eq!(next.attempt, attempt + 1);
        attempt = next.attempt;
        now = next.run_at;
    }
    let status = store.service_get("events", now).await.expect("get");
    assert!(status.restarts >= 5, "{status:?}");
}

pub async fn service_instance_healthy_for_healthy_after_restarts_its_backoff_count(
    store: Arc<dyn Store>,
) {
    let (_, claimed) = running(&store, service_spec("events", 1), at(0)).await;
    let first = finish(&store, &claimed[0], Outcome::Failed, at(1)).await;
    let c = claim_instances(&store, WORKER, 1, at(10)).await.remove(0);
    assert_eq!(c.execution.attempt, first.retry.expect("restart").attempt);
    healthy(&store, &c, at(11)).await;
    let ended = finish(&store, &c, Outcome::Failed, at(100)).await;
    let restart = ended.retry.expect("restarted");
    assert_eq!(
        restart.attempt, 2,
        "a healthy run resets the count: {restart:?}"
    );
    assert_within(restart.run_at, at(100), at(101));
}

pub async fn service_on_failure_instance_that_exits_zero_stays_completed(store: Arc<dyn Store>) {
    let mut spec = service_spec("migrate", 1);
    service_of(&mut spec).restart = RestartPolicy::OnFailure;
    let (_, claimed) = running(&store, spec, at(0)).await;
    let finished = finish(&store, &claimed[0], Outcome::Succeeded, at(3)).await;
    assert_eq!(
        finished.retry, None,
        "exit 0 under on_failure is not restarted"
    );
    store.service_reconcile(at(4)).await.expect("reconcile");
    assert!(
        live(&store, "migrate").await.is_empty(),
        "nor started again"
    );
    let status = store.service_get("migrate", at(4)).await.expect("get");
    assert_eq!(status.instances.len(), 1);
    assert_eq!(status.instances[0].state, InstanceState::Completed);
}

pub async fn service_instance_whose_node_is_lost_restarts_at_once(store: Arc<dyn Store>) {
    let (_, claimed) = running(&store, service_spec("events", 1), at(0)).await;
    let rescued = store
        .execution_rescue(plus(at(0), LEASE_TTL + Duration::from_secs(1)), 10)
        .await
        .expect("rescue");
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].execution.status, Status::Lost);
    let restart = rescued[0].retry.clone().expect("restarted");
    assert_eq!(
        restart.run_at,
        plus(at(0), LEASE_TTL + Duration::from_secs(1))
    );
    assert_eq!(
        restart.attempt, claimed[0].execution.attempt,
        "a lost node is not its fault"
    );
    let again = claim_instances(&store, "worker-2", 1, restart.run_at).await;
    assert_eq!(again[0].execution.instance, Some(0));
}

pub async fn service_scaled_down_stops_its_surplus_and_scaled_up_starts_more(
    store: Arc<dyn Store>,
) {
    let (job, claimed) = running(&store, service_spec("events", 2), at(0)).await;
    let mut spec = job.spec.clone();
    service_of(&mut spec).replicas = 1;
    update(&store, &spec, at(1)).await;
    let done = store.service_reconcile(at(2)).await.expect("reconcile");
    assert_eq!(done.stopped, 1);
    let beat = store
        .execution_heartbeat(
            claimed[1].execution.id,
            claimed[1].lease.token,
            LEASE_TTL,
            at(3),
        )
        .await
        .expect("heartbeat");
    assert!(beat.cancel_requested, "instance 1 is asked to stop");
    let ended = finish(&store, &claimed[1], Outcome::Cancelled, at(4)).await;
    assert_eq!(ended.retry, None, "a stopped instance is not restarted");
    let beat0 = store
        .execution_heartbeat(
            claimed[0].execution.id,
            claimed[0].lease.token,
            LEASE_TTL,
            at(3),
        )
        .await
        .expect("heartbeat");
    assert!(!beat0.cancel_requested, "instance 0 keeps running");

    service_of(&mut spec).replicas = 3;
    update(&store, &spec, at(5)).await;
    assert_eq!(
        store
            .service_reconcile(at(6))
            .await
            .expect("reconcile")
            .started,
        2
    );
    let instances: Vec<_> = live(&store, "events")
        .await
        .iter()
        .map(|e| e.instance)
        .collect();
    assert_eq!(instances, [Some(0), Some(1), Some(2)]);
}

pub async fn service_suspended_stops_every_instance_and_resumed_starts_them(store: Arc<dyn Store>) {
    let (job, claimed) = running(&store, service_spec("events", 2), at(0)).await;
    let mut spec = job.spec.clone();
    spec.suspended = true;
    update(&store, &spec, at(1)).await;
    store.service_reconcile(at(2)).await.expect("reconcile");
    for c in &claimed {
        let finished = finish(&store, c, Outcome::Cancelled, at(3)).await;
        assert_eq!(finished.retry, None);
    }
    let status = store.service_get("events", at(3)).await.expect("get");
    assert_eq!((status.desired, status.running), (0, 0));
    assert!(live(&store, "events").await.is_empty());
    spec.suspended = false;
    update(&store, &spec, at(4)).await;
    assert_eq!(
        store
            .service_reconcile(at(5))
            .await
            .expect("reconcile")
            .started,
        2
    );
}

pub async fn service_delete_stops_its_instances_for_good(store: Arc<dyn Store>) {
    let (_, claimed) = running(&store, service_spec("events", 1), at(0)).await;
    store.job_delete("events", at(1)).await.expect("delete");
    let finished = finish(&store, &claimed[0], Outcome::Cancelled, at(2)).await;
    assert_eq!(finished.retry, None);
    let failed_late = store.service_reconcile(at(3)).await.expect("reconcile");
    assert_eq!(failed_late.started, 0);
    assert_err!(
        store.service_get("events", at(3)).await,
        StoreError::NotFound { .. }
    );
}

pub async fn service_instance_of_a_deleted_service_that_fails_is_not_restarted(
    store: Arc<dyn Store>,
) {
    let (_, claimed) = running(&store, service_spec("events", 1), at(0)).await;
    store.job_delete("events", at(1)).await.expect("delete");
    let finished = finish(&store, &claimed[0], Outcome::Failed, at(2)).await;
    assert_eq!(finished.retry, None);
}

pub async fn service_enqueue_is_refused_with_a_hint(store: Arc<dyn Store>) {
    create_job_from(&store, service_spec("events", 1)).await;
    let err = store
        .execution_enqueue(&NewExecution::api("events"), at(0))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("panda service scale"),
        "the error says what to do: {err}"
    );
    assert!(executions_of(&store, "events").await.is_empty());
}

pub async fn service_schedule_or_bad_replicas_are_refused_and_nothing_is_created(
    store: Arc<dyn Store>,
) {
    let mut scheduled = service_spec("events", 1);
    scheduled.schedule = cronjob_spec("x", "0 5 * * *").schedule;
    assert_err!(
        store.job_create(&scheduled, at(0)).await,
        StoreError::Invalid(_)
    );
    let mut many = service_spec("events", 1);
    service_of(&mut many).replicas = 1001;
    assert_err!(store.job_create(&many, at(0)).await, StoreError::Invalid(_));
    assert_err!(store.job_get("events").await, StoreError::NotFound { .. });
}

pub async fn service_health_is_fenced_by_the_lease(store: Arc<dyn Store>) {
    let (_, claimed) = running(&store, service_spec("events", 1), at(0)).await;
    healthy(&store, &claimed[0], at(1)).await;
    healthy(&store, &claimed[0], at(5)).await;
    let status = store.service_get("events", at(6)).await.expect("get");
    assert_eq!(status.healthy, 1);
    let e = status.instances[0].execution.clone().expect("live");
    assert_eq!(e.healthy_at, Some(at(1)), "the first healthy report stands");
    assert_err!(
        store
            .service_health(claimed[0].execution.id, uuid::Uuid::new_v4(), true, at(7))
            .await,
        StoreError::Stale
    );
    store
        .service_health(
            claimed[0].execution.id,
            claimed[0].lease.token,
            false,
            at(8),
        )
        .await
        .expect("unhealthy");
    let status = store.service_get("events", at(8)).await.expect("get");
    assert_eq!(status.healthy, 0);
}

fn with_image(spec: &JobSpec, image: &str) -> JobSpec {
    JobSpec {
        runtime: RuntimeSpec::Image {
            image: image.into(),
            command: None,
        },
        ..spec.clone()
    }
}

pub async fn service_update_of_what_runs_rolls_out_one_instance_at_a_time(store: Arc<dyn Store>) {
    let (job, old) = running(&store, service_spec("events", 2), at(0)).await;
    for c in &old {
        healthy(&store, c, at(1)).await;
    }
    let v2 = with_image(&job.spec, "events:2");
    update(&store, &v2, at(10)).await;
    let status = store.service_get("events", at(10)).await.expect("get");
    let rollout = status.rollout.expect("a rollout");
    assert_eq!(
        (rollout.from_revision, rollout.to_revision, rollout.state),
        (1, 2, RolloutState::Progressing)
    );
    // A second change while it runs is refused, naming the rollout.
    let err = store
        .job_update(&with_image(&job.spec, "events:3"), at(11))
        .await
        .expect_err("conflict");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("from revision 1 to 2"), "{err}");
    // In-place changes still apply.
    let mut labelled = v2.clone();
    labelled.labels.insert("team".into(), "data".into());
    update(&store, &labelled, at(11)).await;

    // Step 1: instance 0 of revision 2 starts beside the old one (start-first).
    store.service_reconcile(at(12)).await.expect("reconcile");
    let new0 = claim_instances(&store, "w9", 10, at(12)).await.remove(0);
    assert_eq!(
        (new0.execution.instance, new0.execution.revision),
        (Some(0), Some(2))
    );
    assert!(
        claim_instances(&store, "w8", 10, at(12)).await.is_empty(),
        "one at a time"
    );
    healthy(&store, &new0, at(13)).await;
    store.service_reconcile(at(20)).await.expect("reconcile");
    let status = store.service_get("events", at(20)).await.expect("get");
    assert_eq!(
        status.healthy, 2,
        "never fewer than replicas - max_parallel healthy"
    );
    // Healthy for min_healthy: the old instance 0 stops and instance 1 is replaced.
    store.service_reconcile(at(24)).await.expect("reconcile");
    assert!(
        store
            .execution_heartbeat(old[0].execution.id, old[0].lease.token, LEASE_TTL, at(24))
            .await
            .expect("beat")
            .cancel_requested
    );
    finish(&store, &old[0], Outcome::Cancelled, at(25)).await;
    store.service_reconcile(at(25)).await.expect("reconcile");
    let new1 = claim_instances(&store, "w7", 10, at(25)).await.remove(0);
    assert_eq!(
        (new1.execution.instance, new1.execution.revision),
        (Some(1), Some(2))
    );
    healthy(&store, &new1, at(26)).await;
    store.service_reconcile(at(40)).await.expect("reconcile");
    finish(&store, &old[1], Outcome::Cancelled, at(41)).await;
    let done = store.service_reconcile(at(42)).await.expect("reconcile");
    assert_eq!(done.rolled_out, [("events".to_owned(), 2)]);
    let status = store.service_get("events", at(42)).await.expect("get");
    assert_eq!(
        status.rollout.expect("rollout").state,
        RolloutState::Succeeded
    );
    assert_eq!((status.revision, status.healthy), (2, 2));
    assert_eq!(
        status.job.spec.labels.get("team").map(String::as_str),
        Some("data")
    );
}

pub async fn service_rollout_not_healthy_in_time_reverts_and_the_old_revision_keeps_serving(
    store: Arc<dyn Store>,
) {
    let (job, old) = running(&store, service_spec("events", 2), at(0)).await;
    for c in &old {
        healthy(&store, c, at(1)).await;
    }
    update(&store, &with_image(&job.spec, "events:bad"), at(10)).await;
    store.service_reconcile(at(11)).await.expect("reconcile");
    let bad = claim_instances(&store, "w9", 10, at(11)).await.remove(0);
    // It crashes and restarts, never healthy.
    let restart = finish(&store, &bad, Outcome::Failed, at(12))
        .await
        .retry
        .expect("restart");
    assert_eq!(restart.revision, Some(2));
    for t in [20, 40, 60] {
        store.service_reconcile(at(t)).await.expect("reconcile");
        let status = store.service_get("events", at(t)).await.expect("get");
        assert_eq!(status.healthy, 2, "the old revision serves throughout");
    }
    let done = store.service_reconcile(at(72)).await.expect("reconcile");
    assert_eq!(done.reverted.len(), 1, "{done:?}");
    assert!(
        done.reverted[0].1.contains("instance 0 of revision 2"),
        "{done:?}"
    );
    let status = store.service_get("events", at(72)).await.expect("get");
    let rollout = status.rollout.clone().expect("rollout");
    assert_eq!(rollout.state, RolloutState::Reverted);
    assert_eq!(status.revision, 1);
    assert_eq!(
        status.job.spec.runtime, job.spec.runtime,
        "the old definition is back"
    );
    assert_eq!(status.healthy, 2);
    assert!(
        live(&store, "events")
            .await
            .iter()
            .all(|e| e.revision == Some(1)),
        "the new revision's queued restart is cancelled"
    );
    // A new update is allowed again.
    update(&store, &with_image(&job.spec, "events:3"), at(80)).await;
}

pub async fn service_rollback_goes_back_one_revision(store: Arc<dyn Store>) {
    let (job, old) = running(&store, service_spec("events", 1), at(0)).await;
    healthy(&store, &old[0], at(1)).await;
    assert_err!(
        store.service_rollback("events", at(2)).await,
        StoreError::Conflict(_)
    );
    update(&store, &with_image(&job.spec, "events:2"), at(3)).await;
    assert_err!(
        store.service_rollback("events", at(4)).await,
        StoreError::Conflict(_)
    );
    // Let the rollout finish.
    store.service_reconcile(at(5)).await.expect("reconcile");
    let new = claim_instances(&store, "w9", 1, at(5)).await.remove(0);
    healthy(&store, &new, at(6)).await;
    store.service_reconcile(at(20)).await.expect("reconcile");
    finish(&store, &old[0], Outcome::Cancelled, at(21)).await;
    store.service_reconcile(at(22)).await.expect("reconcile");
    let status = store
        .service_rollback("events", at(30))
        .await
        .expect("rollback");
    let rollout = status.rollout.expect("rollout");
    assert_eq!((rollout.from_revision, rollout.to_revision), (2, 1));
    assert_eq!(status.job.spec.runtime, job.spec.runtime);
    store.service_reconcile(at(31)).await.expect("reconcile");
    let back = claim_instances(&store, "w8", 1, at(31)).await.remove(0);
    assert_eq!(back.execution.revision, Some(1));
}

pub async fn service_restart_replaces_every_instance_as_a_rollout(store: Arc<dyn Store>) {
    let (_, old) = running(&store, service_spec("events", 1), at(0)).await;
    healthy(&store, &old[0], at(1)).await;
    let status = store
        .service_restart("events", at(2))
        .await
        .expect("restart");
    assert_eq!(status.rollout.expect("rollout").to_revision, 2);
    store.service_reconcile(at(3)).await.expect("reconcile");
    let new = claim_instances(&store, "w9", 1, at(3)).await.remove(0);
    assert_eq!(new.execution.revision, Some(2));
    let revisions = store.service_revisions("events").await.expect("revisions");
    assert_eq!(revisions[0].job.spec.runtime, revisions[1].job.spec.runtime);
}

pub async fn service_stop_first_rollout_stops_the_old_instance_before_the_new_one_starts(
    store: Arc<dyn Store>,
) {
    let mut spec = service_spec("events", 1);
    service_of(&mut spec).rollout.order = UpdateOrder::StopFirst;
    let (job, old) = running(&store, spec, at(0)).await;
    update(&store, &with_image(&job.spec, "events:2"), at(1)).await;
    store.service_reconcile(at(2)).await.expect("reconcile");
    assert!(
        claim_instances(&store, "w9", 1, at(2)).await.is_empty(),
        "nothing new yet"
    );
    finish(&store, &old[0], Outcome::Cancelled, at(3)).await;
    store.service_reconcile(at(4)).await.expect("reconcile");
    let new = claim_instances(&store, "w9", 1, at(4)).await.remove(0);
    assert_eq!(new.execution.revision, Some(2));
}

pub async fn service_log_trim_keeps_the_newest_bytes(store: Arc<dyn Store>) {
    let (_, claimed) = running(&store, service_spec("events", 1), at(0)).await;
    let id = claimed[0].execution.id;
    let chunks: Vec<panda_core::LogChunk> = (0..10)
        .map(|seq| panda_core::LogChunk {
            seq,
            stream: panda_core::LogStream::Stdout,
            at: at(1),
            // Bytes that do not compress, so the stored size is the log's.
            data: (0..1000u64)
                .map(|i| {
                    let x = (seq * 1000 + i).wrapping_mul(6_364_136_223_846_793_005) >> 33;
                    u8::try_from(x & 0xff).expect("a byte")
                })
                .collect(),
        })
        .collect();
    store.log_append(id, &chunks).await.expect("append");
    let dropped = store.service_log_trim(id, 5000).await.expect("trim");
    assert!(dropped > 0, "something dropped");
    let kept = store.log_read(id, None, 100).await.expect("read");
    assert!(
        !kept.is_empty() && kept.len() < 10,
        "{} chunks kept",
        kept.len()
    );
    assert_eq!(kept.last().map(|c| c.seq), Some(9), "the newest stay");
}
