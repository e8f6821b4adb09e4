//! The Prometheus recorder: installed once per process, before any service starts, and kept
//! tidy by an upkeep task. `/metrics` renders it (see `panda_api`).

use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// How often histogram samples are folded into their buckets between scrapes, so memory stays
/// flat however rarely Prometheus comes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the recorder every metric in this process goes to, with Panda's histogram buckets,
/// and starts its upkeep, which ends with `shutdown`.
///
/// # Errors
///
/// When a recorder is already installed in this process.
pub(crate) fn install(shutdown: &CancellationToken) -> anyhow::Result<PrometheusHandle> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in panda_engine::metrics::HISTOGRAM_BUCKETS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .with_context(|| format!("the buckets of {name}"))?;
    }
    let handle = builder
        .install_recorder()
        .context("install the metrics recorder")?;
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
