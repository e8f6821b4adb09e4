//! The heartbeat: renews a running execution's lease, and says when the run must stop
//! because the execution was cancelled or its lease moved on. A heartbeat the store fails
//! (unreachable, full) never stops the run: it is tried again after a quarter of the interval,
//! so once the store is back the lease is renewed well within the heartbeat interval the
//! Rescuer waits before it treats leases as expired.

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

/// Renews the lease; says why the run must stop, if it must. After a failure, the next tick of
/// `ticks` comes sooner.
pub(super) async fn beat(
    context: &Context,
    lease: &Lease,
    ticks: &mut tokio::time::Interval,
) -> Option<Stop> {
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
            // The lease outlives a few missed heartbeats, and even an expired one is renewed
            // as long as no one took it: keep running, and try again soon.
            tracing::warn!(execution = %lease.execution_id, %err, "heartbeat failed; the run goes on");
            ticks.reset_after(context.config.heartbeat_every / 4);
            None
        }
    }
}
