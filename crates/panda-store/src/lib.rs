//! Panda's persistent state.
//!
//! Storage is the source of truth: the scheduler, the workers and the API are loops around it.
//! It is one narrow trait per domain ([`JobStore`], [`QueueStore`], [`HistoryStore`],
//! [`SlotStore`], [`LogStore`], [`TokenStore`], [`AlertStore`], [`RetentionStore`],
//! [`ServiceStore`], [`WebhookStore`], [`MonitorStore`], [`Notifier`]), and [`Store`] is their union; each consumer takes the narrowest it needs.
//! [`SqliteStore`] (one machine, embedded) and [`PgStore`] (many machines) implement them all.
//! The conformance suite in `tests/conformance/` runs every case against both.
//!
//! Three decisions a newcomer must know:
//!
//! - **Each method is one atomic unit.** No transaction handle crosses the trait; anything that
//!   must happen together (claim and job lock, finish and retry, slot and execution) happens in
//!   one method.
//! - **`now` comes from the caller.** Every time-dependent call takes the engine's clock reading
//!   instead of the database's `NOW()`, so both backends agree and tests are deterministic.
//! - **Each method is written once.** A domain's module holds its trait, its algorithm over a
//!   [`dialect::Backend`] (decisions in pure functions, as `lifecycle` and `claim` plan), and
//!   the struct of statements that `sqlite/` and `postgres/` each fill in their dialect, a file
//!   per domain. docs/architecture.md says how to add a method.

mod alerts;
mod chains;
mod claim;
pub mod dialect;
mod ends;
mod error;
mod history;
mod jobs;
mod lifecycle;
mod log_codec;
mod logs;
mod model;
mod monitors;
mod postgres;
mod queue;
mod rate;
mod records;
mod retention;
mod services;
mod slots;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod token;
mod tokens;
mod webhooks;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

pub use alerts::{AlertSql, AlertStore};
pub use chains::ChainSql;
pub use claim::ClaimSql;
pub use history::{HistorySql, HistoryStore};
pub use jobs::{JobSql, JobStore};
pub use logs::LogSql;
pub use model::{
    AlertRecord, ApiToken, ClaimRequest, Claimed, DeliveryOutcome, DeliveryRecord, DueDelivery,
    Enqueued, ExecutionBrief, ExecutionFilter, ExecutionPage, Finish, Finished, Heartbeat, JobKind,
    Lease, NewAlert, NewExecution, NewSlot, Notice, Outcome, Pruned, QueuePause, QueueStats,
    Retention, Slot, SlotDecision, SlotRecord, TokenScope,
};
pub use monitors::{
    COALESCE as PING_COALESCE, MAX_PING_LOG_BYTES, MonitorSql, MonitorStore, Ping, PingKind,
    PingUrl,
};
pub use panda_core::{LogChunk, LogStore, LogStream, StoreError, StoreResult};
pub use postgres::{PgStore, redact_url};
pub use queue::{QueueSql, QueueStore};
pub use rate::RateSql;
pub use retention::{RetentionSql, RetentionStore};
pub use services::{Reconciled, SPREAD_WAIT, ServiceSql, ServiceStore};
pub use slots::{SlotSql, SlotStore};
pub use sqlite::SqliteStore;
pub use tokens::{TokenSql, TokenStore};
pub use webhooks::{SigningKey, Webhook, WebhookSql, WebhookStore, WebhookTarget};

/// The default page size of [`HistoryStore::execution_list`].
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page [`HistoryStore::execution_list`] returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A requested page size: 0 means the default, and none is larger than the largest.
pub(crate) fn page_size(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// A value as a JSON document, to store.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

/// An instant as both backends store it: to the microsecond.
pub(crate) fn stored_instant(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Every statement of one backend, by domain: `sqlite/` and `postgres/` each fill one, a file
/// per domain, so that the two dialects of a statement can be read side by side.
#[derive(Debug)]
pub struct Sql {
    /// Jobs.
    pub jobs: JobSql,
    /// The queue.
    pub queue: QueueSql,
    /// The claim.
    pub claim: ClaimSql,
    /// History reads.
    pub history: HistorySql,
    /// Cron slots.
    pub slots: SlotSql,
    /// Logs.
    pub logs: LogSql,
    /// API tokens.
    pub tokens: TokenSql,
    /// Alerts.
    pub alerts: AlertSql,
    /// Retention.
    pub retention: RetentionSql,
    /// Services.
    pub services: ServiceSql,
    /// Inbound webhooks.
    pub webhooks: WebhookSql,
    /// Chains.
    pub chains: ChainSql,
    /// Monitors.
    pub monitors: MonitorSql,
    /// Rate limits.
    pub rate: RateSql,
}

/// The wake-ups: hints that work may be claimable.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Hints that work may be claimable. Lossy by design: a receiver that lags or a listener
    /// that reconnects drops notices, so workers poll as well.
    fn subscribe(&self) -> broadcast::Receiver<Notice>;
}

impl<B: dialect::Backend> Notifier for B {
    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices().subscribe()
    }
}

/// All of Panda's persistent state: the union of the domain traits. Each consumer takes the
/// narrowest it needs (the log sink a [`LogStore`], the rescuer a [`QueueStore`], the pruner a
/// [`RetentionStore`]); the server holds the whole.
///
/// Method names put the noun first. Errors the caller can act on are typed: `NotFound`,
/// `Conflict`, `Stale`, `Invalid`, `Unavailable`.
pub trait Store:
    JobStore
    + QueueStore
    + HistoryStore
    + SlotStore
    + LogStore
    + TokenStore
    + AlertStore
    + RetentionStore
    + ServiceStore
    + WebhookStore
    + MonitorStore
    + Notifier
    + std::fmt::Debug
    + 'static
{
}

impl<T> Store for T where
    T: JobStore
        + QueueStore
        + HistoryStore
        + SlotStore
        + LogStore
        + TokenStore
        + AlertStore
        + RetentionStore
        + ServiceStore
        + WebhookStore
        + MonitorStore
        + Notifier
        + std::fmt::Debug
        + 'static
{
}
