//! `GET /metrics`: the node's metrics in the Prometheus text format, behind a bearer token like
//! the API (a read-only token is enough).
//!
//! The counters and histograms are recorded where things happen (see
//! [`panda_engine::metrics`]); the queue gauges are read from the store at each scrape, so they
//! are as fresh as the scrape and the same on every node.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use panda_engine::metrics::QueueGauges;

use crate::{AppState, Failure};

/// The media type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/metrics` renders from.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// The installed recorder's handle.
    pub(crate) handle: PrometheusHandle,
    /// The queues seen at earlier scrapes, so an emptied one drops to 0.
    pub(crate) queues: Arc<QueueGauges>,
}

/// Refreshes the queue gauges from the store, then renders every metric.
pub(crate) async fn render(State(state): State<AppState>) -> Result<impl IntoResponse, Failure> {
    let metrics = state.metrics.as_ref().ok_or_else(|| {
        Failure::not_found("this server keeps no metrics")
            .hint("`panda server` records metrics; an embedded API needs AppState::with_metrics")
    })?;
    let now = state.clock.now();
    let stats = state.store.queue_stats(now).await?;
    metrics.queues.set(&stats, now);
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.handle.render(),
    ))
}

/// How often histogram samples are folded into their buckets between scrapes, so memory stays
/// flat however rarely Prometheus comes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the Prometheus recorder every metric in this process goes to, with the buckets
/// [`panda_engine::metrics::HISTOGRAM_BUCKETS`] gives each histogram, and starts its upkeep,
/// which ends with `shutdown`. Once per process, before any service starts.
///
/// # Errors
///
/// When a recorder is already installed in this process.
pub fn install_recorder(
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    for (name, buckets) in panda_engine::metrics::HISTOGRAM_BUCKETS {
        builder = builder.set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full((*name).to_owned()),
            buckets,
        )?;
    }
    let handle = builder.install_recorder()?;
    panda_engine::metrics::describe();
    let upkeep = handle.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => upkeep.run_upkeep(),
            }
        }
    });
    Ok(handle)
}
