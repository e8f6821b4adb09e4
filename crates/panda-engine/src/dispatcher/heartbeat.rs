//! The heartbeat: renews a running execution's lease, and says when the run must stop
//! because the execution was cancelled or its lease moved on.

use panda_store::{Lease, StoreError};

use super::Context;
use super::run::Stop;

/// When to renew: every heartbeat period, the first a period from now (the claim has just
/// set the lease).
pub(super) fn ticks(context: &Context) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + context.config.heartbeat_every,
        context.config.heartbeat_every,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// Renews the lease; says why the run must stop, if it must.
pub(super) async fn beat(context: &Context, lease: &Lease) -> Option<Stop> {
    match context
        .store
        .execution_heartbeat(
            lease.execution_id,
            lease.token,
            context.config.lease_ttl,
            context.clock.now(),
        )
        .await
    {
        Ok(heartbeat) if heartbeat.cancel_requested => Some(Stop::Cancelled),
        Ok(_) => None,
        Err(StoreError::Stale) => Some(Stop::LeaseLost),
        Err(err) => {
            // The lease outlives a few missed heartbeats; the next one may get through.
            tracing::warn!(execution = %lease.execution_id, %err, "heartbeat failed");
            None
        }
    }
}
