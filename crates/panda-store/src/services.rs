//! Long-running services: their revisions, their instances' status, the reconcile that keeps
//! each service at its replicas and moves its rollouts, and the claim that hands instances to
//! nodes.
//!
//! A service is a job with a `service` part; an instance's run is an execution carrying the
//! instance's number and revision. The restart of an instance that ended is written with its
//! end, as a retry is (see `lifecycle::end_attempt`); everything else a service needs (a
//! missing instance, a surplus one, the next step of a rollout) is planned by the pure
//! [`plan_service`] over what is stored, and applied by [`ServiceStore::service_reconcile`],
//! which every node calls on a short period.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{ExecutionId, Revision, ServiceStatus};
use uuid::Uuid;

use crate::StoreResult;
use crate::model::{ClaimRequest, Claimed};

/// What one reconcile pass did, for the node's log and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Instances queued to start (missing, scaled up, or of a new revision).
    pub started: u32,
    /// Running instances asked to stop, and queued ones cancelled (surplus, suspended,
    /// replaced).
    pub stopped: u32,
    /// Rollouts that succeeded in this pass: `(service, revision)`.
    pub rolled_out: Vec<(String, u32)>,
    /// Rollouts reverted in this pass: `(service, reason)`.
    pub reverted: Vec<(String, String)>,
}

/// Services: their status, revisions and rollouts, and their instances' claim and health.
///
/// A service is created, changed and deleted as a job ([`JobStore`](crate::JobStore)): a
/// create stores revision 1, an update that changes what runs stores the next revision and
/// starts a rollout (`Conflict` while one is progressing), and an update of anything else
/// (replicas, restart policy, health check, suspended) applies in place at the next reconcile.
#[async_trait]
pub trait ServiceStore: Send + Sync + std::fmt::Debug {
    /// Every live service's status, by name.
    async fn service_list(&self, now: DateTime<Utc>) -> StoreResult<Vec<ServiceStatus>>;

    /// One live service's status, with each instance. `NotFound` if no service has that name.
    async fn service_get(&self, name: &str, now: DateTime<Utc>) -> StoreResult<ServiceStatus>;

    /// A service's kept revisions, newest first.
    async fn service_revisions(&self, name: &str) -> StoreResult<Vec<Revision>>;

    /// Brings every live service one step toward its definition, each in its own transaction
    /// with its job locked (so nodes reconciling at once take turns): queues the instances
    /// that are missing, stops the ones past the replicas (or all, while suspended), and moves
    /// a progressing rollout on, to success or, past its healthy deadline, back to the
    /// previous revision.
    async fn service_reconcile(&self, now: DateTime<Utc>) -> StoreResult<Reconciled>;

    /// Claims up to `request.limit` due instances for the worker, at most one per service in
    /// a claim, and an instance of a service this worker already runs only once it has waited
    /// a little (so instances spread over the nodes that serve their queue).
    async fn service_claim(
        &self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Claimed>>;

    /// Records a running instance's health, fenced by its lease (`Stale` once it moved on):
    /// healthy sets `healthy_at` (if unset), unhealthy clears it.
    async fn service_health(
        &self,
        execution_id: ExecutionId,
        token: Uuid,
        healthy: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Goes back one revision: a rollout from the current revision to the one before it.
    /// `Conflict` while a rollout progresses or when there is no earlier revision.
    async fn service_rollback(&self, name: &str, now: DateTime<Utc>) -> StoreResult<ServiceStatus>;

    /// Replaces every instance, as a rollout of the current definition (a new revision that
    /// runs the same thing). `Conflict` while a rollout progresses.
    async fn service_restart(&self, name: &str, now: DateTime<Utc>) -> StoreResult<ServiceStatus>;

    /// Drops the oldest log chunks of an execution until at most `keep_bytes` of its log are
    /// kept; returns the bytes dropped.
    async fn service_log_trim(
        &self,
        execution_id: ExecutionId,
        keep_bytes: u64,
    ) -> StoreResult<u64>;
}

#[async_trait]
impl<B: crate::dialect::Backend> ServiceStore for B {
    async fn service_list(&self, _now: DateTime<Utc>) -> StoreResult<Vec<ServiceStatus>> {
        Err(unbuilt())
    }

    async fn service_get(&self, _name: &str, _now: DateTime<Utc>) -> StoreResult<ServiceStatus> {
        Err(unbuilt())
    }

    async fn service_revisions(&self, _name: &str) -> StoreResult<Vec<Revision>> {
        Err(unbuilt())
    }

    async fn service_reconcile(&self, _now: DateTime<Utc>) -> StoreResult<Reconciled> {
        Err(unbuilt())
    }

    async fn service_claim(
        &self,
        _request: &ClaimRequest,
        _now: DateTime<Utc>,
    ) -> StoreResult<Vec<Claimed>> {
        Err(unbuilt())
    }

    async fn service_health(
        &self,
        _execution_id: ExecutionId,
        _token: Uuid,
        _healthy: bool,
        _now: DateTime<Utc>,
    ) -> StoreResult<()> {
        Err(unbuilt())
    }

    async fn service_rollback(
        &self,
        _name: &str,
        _now: DateTime<Utc>,
    ) -> StoreResult<ServiceStatus> {
        Err(unbuilt())
    }

    async fn service_restart(
        &self,
        _name: &str,
        _now: DateTime<Utc>,
    ) -> StoreResult<ServiceStatus> {
        Err(unbuilt())
    }

    async fn service_log_trim(
        &self,
        _execution_id: ExecutionId,
        _keep_bytes: u64,
    ) -> StoreResult<u64> {
        Err(unbuilt())
    }
}

fn unbuilt() -> crate::StoreError {
    crate::StoreError::Conflict("services are not stored yet".into())
}
