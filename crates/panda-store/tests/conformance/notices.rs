//! Wake-ups: subscribers hear that work may be claimable.

use std::sync::Arc;
use std::time::Duration;

use panda_store::{Notice, Store};
use tokio::sync::broadcast;

use super::support::*;

/// Waits for a `Queued` notice for `queue`, skipping others.
async fn next_queued(notices: &mut broadcast::Receiver<Notice>, queue: &str) {
    loop {
        match notices.recv().await {
            Ok(Notice::Queued { queue: q }) if q == queue => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => panic!("the notice channel closed"),
        }
    }
}

/// Notices are lossy by design (a PostgreSQL listener may still be connecting when the first
/// one is sent), so the case enqueues again, a few times, until one is heard. The timeout is a
/// hang guard, not a timing assertion.
pub async fn enqueue_notifies_subscribers_of_its_queue(store: Arc<dyn Store>) {
    let mut notices = store.subscribe();
    let mut spec = job_spec("send-email");
    spec.queue = "emails".into();
    create_job_from(&store, spec).await;

    for attempt in 0..10 {
        enqueue(&store, "send-email", at(attempt)).await;
        let heard =
            tokio::time::timeout(Duration::from_secs(1), next_queued(&mut notices, "emails")).await;
        if heard.is_ok() {
            return;
        }
    }
    panic!("no Notice::Queued {{ queue: \"emails\" }} after 10 enqueues");
}
