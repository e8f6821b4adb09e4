//! Job definitions: create, read, update, delete.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::{Job, JobId, JobSpec};

use crate::dialect::{Backend, Conn, Tx, query, settle};
use crate::error::is_unique_violation;
use crate::model::JobKind;
use crate::records::{self, all};
use crate::{StoreError, StoreResult, to_json};

/// Job definitions.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Creates a job. `Conflict` if a live job has that name; `Invalid` if the spec is.
    async fn job_create(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job>;

    /// A live job by name.
    async fn job_get(&self, name: &str) -> StoreResult<Job>;

    /// A job by id, deleted ones included (a worker may still be running its execution).
    async fn job_get_by_id(&self, id: JobId) -> StoreResult<Job>;

    /// Live jobs, by name.
    async fn job_list(&self, kind: JobKind) -> StoreResult<Vec<Job>>;

    /// Replaces the definition of the live job named `spec.name`. Executions already created
    /// keep the retry and overlap rules they were created with.
    async fn job_update(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job>;

    /// Deletes a live job: its name is free again, its queued executions are cancelled, its
    /// running ones are asked to stop, and its history stays readable.
    async fn job_delete(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()>;
}

/// The statements of [`JobStore`], in each backend's dialect.
#[derive(Debug)]
pub struct JobSql {
    /// `(id, name, scheduled, spec, created_at, updated_at)`.
    pub insert: &'static str,
    /// A live job by `name`.
    pub by_name: &'static str,
    /// A live job by `name`, locked against a delete while executions are added.
    pub by_name_share: &'static str,
    /// A live job by `name`, locked before it changes.
    pub by_name_update: &'static str,
    /// A job by `id`, deleted or not.
    pub by_id: &'static str,
    /// Live jobs by name; `?1`: scheduled (`NULL`: both kinds).
    pub list: &'static str,
    /// `(spec, scheduled, updated_at, id)`.
    pub update: &'static str,
    /// `(deleted_at, id)`.
    pub delete: &'static str,
    /// Cancels a job's queued executions: `(finished_at, job_id)`.
    pub cancel_queued: &'static str,
    /// Asks a job's running executions to stop: `(job_id)`.
    pub stop_running: &'static str,
}

/// How a job row is locked while a transaction depends on it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum JobLock {
    /// Adding executions: concurrent adds are fine, a delete waits.
    Share,
    /// Changing or deleting the job.
    Update,
}

/// A live job by name, locked as `lock` says.
pub(crate) async fn live_job<B: Backend>(
    conn: &mut impl Conn<Row = B::Row>,
    name: &str,
    lock: JobLock,
) -> StoreResult<Job> {
    let sql = match lock {
        JobLock::Share => B::SQL.jobs.by_name_share,
        JobLock::Update => B::SQL.jobs.by_name_update,
    };
    let row = conn
        .fetch_optional(query(sql).text(name))
        .await?
        .ok_or_else(|| StoreError::not_found(format!("job {name:?}")))?;
    records::job(&row)
}

/// Inserts a new job in `tx` (with its service's rows, for a service). `Conflict` if a live
/// job has that name; `Invalid` if the spec is.
pub(crate) async fn insert_job<B: Backend>(
    tx: &mut B::Tx,
    spec: &JobSpec,
    now: DateTime<Utc>,
) -> StoreResult<Job> {
    spec.validate()?;
    let job = Job {
        id: JobId::new(),
        spec: spec.clone(),
        created_at: now,
        updated_at: now,
    };
    let inserted = tx
        .execute(
            query(B::SQL.jobs.insert)
                .uuid(job.id)
                .text(job.spec.name.as_str())
                .bool(job.spec.schedule.is_some())
                .json(to_json(spec)?)
                .time(now)
                .time(now),
        )
        .await;
    match inserted {
        Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!(
            "a job named {:?} already exists",
            spec.name.as_str()
        ))),
        Err(err) => Err(err),
        Ok(_) => {
            if job.spec.service.is_some() {
                crate::services::created::<B>(tx, &job, now).await?;
            }
            if job.spec.rate_limit.is_some() {
                crate::rate::store::<B>(tx, &job).await?;
            }
            Ok(job)
        }
    }
}

#[async_trait]
impl<B: Backend> JobStore for B {
    async fn job_create(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job> {
        let mut tx = self.begin().await?;
        let created = async {
            crate::chains::serialize::<B>(&mut tx, spec).await?;
            let job = insert_job::<B>(&mut tx, spec, now).await?;
            crate::chains::link::<B>(&mut tx, &job, false).await?;
            Ok(job)
        }
        .await;
        settle(tx, created).await
    }

    async fn job_get(&self, name: &str) -> StoreResult<Job> {
        let row = self
            .reader()
            .fetch_optional(query(B::SQL.jobs.by_name).text(name))
            .await?
            .ok_or_else(|| StoreError::not_found(format!("job {name:?}")))?;
        records::job(&row)
    }

    async fn job_get_by_id(&self, id: JobId) -> StoreResult<Job> {
        let row = self
            .reader()
            .fetch_optional(query(B::SQL.jobs.by_id).uuid(id))
            .await?
            .ok_or_else(|| StoreError::not_found(format!("job {id}")))?;
        records::job(&row)
    }

    async fn job_list(&self, kind: JobKind) -> StoreResult<Vec<Job>> {
        let scheduled = match kind {
            JobKind::All => None,
            JobKind::Scheduled | JobKind::Monitor => Some(true),
            JobKind::Triggered | JobKind::Service => Some(false),
        };
        let rows = self
            .reader()
            .fetch_all(query(B::SQL.jobs.list).opt_bool(scheduled))
            .await?;
        let mut jobs = all(&rows, records::job)?;
        // Services are few; they are told apart by their spec rather than a column.
        match kind {
            JobKind::Triggered => jobs.retain(|job| job.spec.service.is_none()),
            JobKind::Service => jobs.retain(|job| job.spec.service.is_some()),
            // Monitors have schedules that Panda does not run: they are listed on their own.
            JobKind::Scheduled => jobs.retain(|job| job.spec.monitor.is_none()),
            JobKind::Monitor => jobs.retain(|job| job.spec.monitor.is_some()),
            JobKind::All => {}
        }
        Ok(jobs)
    }

    async fn job_update(&self, spec: &JobSpec, now: DateTime<Utc>) -> StoreResult<Job> {
        spec.validate()?;
        let spec_json = to_json(spec)?;
        let mut tx = self.begin().await?;
        crate::chains::serialize::<B>(&mut tx, spec).await?;
        let mut job = live_job::<B>(&mut tx, spec.name.as_str(), JobLock::Update).await?;
        crate::services::updated::<B>(&mut tx, &job, spec, now).await?;
        let rate_changed = job.spec.rate_limit != spec.rate_limit;
        job.spec = spec.clone();
        job.updated_at = now;
        tx.execute(
            query(B::SQL.jobs.update)
                .json(spec_json)
                .bool(job.spec.schedule.is_some())
                .time(now)
                .uuid(job.id),
        )
        .await?;
        if rate_changed {
            crate::rate::store::<B>(&mut tx, &job).await?;
            crate::rate::release::<B>(&mut tx, &job, now).await?;
        }
        let linked = crate::chains::link::<B>(&mut tx, &job, true).await;
        settle(tx, linked.map(|()| job)).await
    }

    async fn job_delete(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let job = live_job::<B>(&mut tx, name, JobLock::Update).await?;
        let unlinked = crate::chains::unlink::<B>(&mut tx, &job).await;
        if unlinked.is_err() {
            return settle(tx, unlinked).await;
        }
        tx.execute(query(B::SQL.jobs.delete).time(now).uuid(job.id))
            .await?;
        crate::rate::forget::<B>(&mut tx, &job).await?;
        if job.spec.service.is_some() {
            tx.execute(query(B::SQL.services.forget).uuid(job.id))
                .await?;
        }
        tx.execute(query(B::SQL.jobs.cancel_queued).time(now).uuid(job.id))
            .await?;
        tx.execute(query(B::SQL.jobs.stop_running).uuid(job.id))
            .await?;
        tx.commit().await
    }
}
