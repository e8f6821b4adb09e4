//! Rows read back into Panda's types, once for both backends: each column is read through
//! [`Record`], which knows the backend's encoding.

use std::str::FromStr;
use std::time::Duration;

use panda_core::{Execution, ExecutionId, Job, JobId, RetryPolicy};

use crate::dialect::Record;
use crate::log_codec;
use crate::model::{AlertRecord, ApiToken, DeliveryRecord, Slot};
use crate::{StoreError, StoreResult};
use panda_core::LogChunk;

/// The columns every execution read selects, in the order [`execution`] needs none of.
macro_rules! execution_columns {
    () => {
        "id, root_id, job_id, job_name, queue, priority, status, trigger, attempt, max_attempts, \
         backoff_base_ms, backoff_cap_ms, concurrency, idempotency_key, payload, env, \
         scheduled_at, run_at, created_at, started_at, finished_at, worker_id, lease_expires_at, \
         cancel_requested, exit_code, reason, image_digest, max_running, instance, revision, \
         healthy_at, concurrency_key"
    };
}
pub(crate) use execution_columns;

/// Parses a stored word (a status, a trigger, a scope).
pub(crate) fn parse<T: FromStr>(what: &str, text: &str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} {text:?}")))
}

fn as_u32(what: &str, value: i32) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

fn as_ms(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

/// A `COUNT` as a count (never negative).
pub(crate) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn job<R: Record>(row: &R) -> StoreResult<Job> {
    Ok(Job {
        id: JobId::from_uuid(row.uuid("id")?),
        spec: row.json("spec")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn execution<R: Record>(row: &R) -> StoreResult<Execution> {
    Ok(Execution {
        id: ExecutionId::from_uuid(row.uuid("id")?),
        root_id: ExecutionId::from_uuid(row.uuid("root_id")?),
        job_id: JobId::from_uuid(row.uuid("job_id")?),
        job_name: row.text("job_name")?,
        queue: row.text("queue")?,
        priority: row.i32("priority")?,
        status: parse("status", row.word("status")?)?,
        trigger: parse("trigger", row.word("trigger")?)?,
        attempt: as_u32("attempt", row.i32("attempt")?)?,
        retry: RetryPolicy {
            max_attempts: as_u32("max_attempts", row.i32("max_attempts")?)?,
            backoff_base: as_ms(row.i64("backoff_base_ms")?),
            backoff_cap: as_ms(row.i64("backoff_cap_ms")?),
        },
        concurrency: parse("concurrency", row.word("concurrency")?)?,
        max_running: row
            .opt_i32("max_running")?
            .map(|v| as_u32("max_running", v))
            .transpose()?,
        concurrency_key: row.opt_text("concurrency_key")?,
        idempotency_key: row.opt_text("idempotency_key")?,
        payload: row.opt_json("payload")?,
        env: row.json("env")?,
        scheduled_at: row.opt_time("scheduled_at")?,
        run_at: row.time("run_at")?,
        created_at: row.time("created_at")?,
        started_at: row.opt_time("started_at")?,
        finished_at: row.opt_time("finished_at")?,
        worker_id: row.opt_text("worker_id")?,
        lease_expires_at: row.opt_time("lease_expires_at")?,
        cancel_requested: row.bool("cancel_requested")?,
        exit_code: row.opt_i32("exit_code")?,
        reason: row.opt_text("reason")?,
        image_digest: row.opt_text("image_digest")?,
        instance: row
            .opt_i32("instance")?
            .map(|v| as_u32("instance", v))
            .transpose()?,
        revision: row
            .opt_i32("revision")?
            .map(|v| as_u32("revision", v))
            .transpose()?,
        healthy_at: row.opt_time("healthy_at")?,
    })
}

/// An execution read with its lease token (`lease_token` selected beside the columns).
pub(crate) fn leased_execution<R: Record>(row: &R) -> StoreResult<(Execution, Option<uuid::Uuid>)> {
    Ok((execution(row)?, row.opt_uuid("lease_token")?))
}

pub(crate) fn token<R: Record>(row: &R) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: row.uuid("id")?,
        name: row.text("name")?,
        scope: parse("scope", row.word("scope")?)?,
        created_at: row.time("created_at")?,
        last_used_at: row.opt_time("last_used_at")?,
    })
}

pub(crate) fn chunk<R: Record>(row: &R) -> StoreResult<LogChunk> {
    let seq = row.i64("seq")?;
    Ok(LogChunk {
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("seq {seq}")))?,
        stream: parse("stream", row.word("stream")?)?,
        at: row.time("at")?,
        data: log_codec::decode(
            log_codec::Codec::parse(row.word("codec")?)?,
            row.bytes("data")?,
        )?,
    })
}

pub(crate) fn alert<R: Record>(row: &R) -> StoreResult<AlertRecord> {
    Ok(AlertRecord {
        id: row.uuid("id")?,
        job_id: JobId::from_uuid(row.uuid("job_id")?),
        job: row.text("job_name")?,
        kind: parse("alert kind", row.word("kind")?)?,
        execution_id: row.opt_uuid("execution_id")?.map(ExecutionId::from_uuid),
        message: row.text("message")?,
        body: row.json("body")?,
        created_at: row.time("created_at")?,
        deliveries: Vec::new(),
    })
}

pub(crate) fn delivery<R: Record>(row: &R) -> StoreResult<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: row.uuid("id")?,
        notifier: parse("notifier", row.word("notifier")?)?,
        url: row.text("url")?,
        state: parse("delivery state", row.word("state")?)?,
        attempts: u32::try_from(row.i32("attempts")?).unwrap_or(0),
        next_attempt_at: row.opt_time("next_attempt_at")?,
        last_error: row.opt_text("last_error")?,
        delivered_at: row.opt_time("delivered_at")?,
    })
}

pub(crate) fn slot<R: Record>(row: &R) -> StoreResult<Slot> {
    Ok(Slot {
        job_id: JobId::from_uuid(row.uuid("job_id")?),
        scheduled_at: row.time("scheduled_at")?,
        execution_id: ExecutionId::from_uuid(row.uuid("execution_id")?),
        fired: row.bool("fired")?,
        recorded_at: row.time("recorded_at")?,
    })
}

/// Reads every row with `read`.
pub(crate) fn all<R, T>(rows: &[R], read: impl Fn(&R) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(read).collect()
}

/// [`execution_columns`], each taken from the table or alias `table` and named as itself
/// (`e.id AS id, …`): for statements that join another table with columns of the same names.
pub(crate) fn qualified_execution_columns(table: &str) -> String {
    execution_columns!()
        .split(',')
        .map(|column| format!("{table}.{0} AS {0}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
