//! PgStore (stub while it is written).
#![allow(unused_variables, unused_imports)]

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{Execution, ExecutionId, Job, JobId, JobSpec};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::*;

/// Stub.
#[derive(Debug)]
pub struct PgStore;

impl PgStore {
    /// Stub.
    pub async fn connect_in_schema(_url: &str, _schema: &str, _max: u32) -> StoreResult<Self> {
        todo!()
    }
}

#[async_trait]
impl Store for PgStore {
    async fn job_create(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job> {
        todo!()
    }

    async fn job_get(&self, name: &str) -> StoreResult<Job> {
        todo!()
    }

    async fn job_get_by_id(&self, id: JobId) -> StoreResult<Job> {
        todo!()
    }

    async fn job_list(&self, kind: JobKind) -> StoreResult<Vec<Job>> {
        todo!()
    }

    async fn job_update(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job> {
        todo!()
    }

    async fn job_delete(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()> {
        todo!()
    }

    async fn execution_enqueue(
        &self,
        request: &NewExecution,
        now: DateTime<Utc>,
    ) -> StoreResult<Enqueued> {
        todo!()
    }

    async fn execution_claim(
        &self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Claimed>> {
        todo!()
    }

    async fn execution_heartbeat(
        &self,
        execution_id: ExecutionId,
        token: Uuid,
        lease_ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<Heartbeat> {
        todo!()
    }

    async fn execution_finish_many(
        &self,
        batch: &[Finish],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<StoreResult<Finished>>> {
        todo!()
    }

    async fn execution_cancel(&self, id: ExecutionId, now: DateTime<Utc>) -> StoreResult<Execution> {
        todo!()
    }

    async fn execution_rescue(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Finished>> {
        todo!()
    }

    async fn execution_get(&self, id: ExecutionId) -> StoreResult<Execution> {
        todo!()
    }

    async fn execution_list(&self, filter: &ExecutionFilter) -> StoreResult<ExecutionPage> {
        todo!()
    }

    async fn execution_latest(&self, job: &str) -> StoreResult<Option<Execution>> {
        todo!()
    }

    async fn slot_record(
        &self,
        job_id: JobId,
        scheduled_at: DateTime<Utc>,
        decision: &SlotDecision,
        now: DateTime<Utc>,
    ) -> StoreResult<SlotRecord> {
        todo!()
    }

    async fn slot_list(&self, job_id: JobId, limit: u32) -> StoreResult<Vec<Slot>> {
        todo!()
    }

    async fn log_append(&self, execution_id: ExecutionId, chunks: &[LogChunk]) -> StoreResult<()> {
        todo!()
    }

    async fn log_read(
        &self,
        execution_id: ExecutionId,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<LogChunk>> {
        todo!()
    }

    async fn log_tail(&self, execution_id: ExecutionId, n: u32) -> StoreResult<Vec<LogChunk>> {
        todo!()
    }

    async fn token_create(
        &self,
        name: &str,
        scope: TokenScope,
        now: DateTime<Utc>,
    ) -> StoreResult<(ApiToken, String)> {
        todo!()
    }

    async fn token_verify(&self, secret: &str, now: DateTime<Utc>) -> StoreResult<Option<ApiToken>> {
        todo!()
    }

    async fn token_list(&self) -> StoreResult<Vec<ApiToken>> {
        todo!()
    }

    async fn token_revoke(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()> {
        todo!()
    }

    async fn retention_prune(&self, retention: &Retention, now: DateTime<Utc>) -> StoreResult<Pruned> {
        todo!()
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        todo!()
    }
}
