//! The Prometheus recorder: installed once per process, before any service starts (see
//! [`panda_api::install_metrics_recorder`]). `/metrics` renders it.

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// Installs the recorder every metric in this process goes to, and starts its upkeep, which
/// ends with `shutdown`.
///
/// # Errors
///
/// When a recorder is already installed in this process.
pub(crate) fn install(shutdown: &CancellationToken) -> anyhow::Result<PrometheusHandle> {
    panda_api::install_metrics_recorder(shutdown).context("install the metrics recorder")
}
