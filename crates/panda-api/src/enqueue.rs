//! Group commit for enqueues: the API's single enqueues are gathered by one task, which takes
//! every request waiting when a writer is free (up to [`BATCH`]) and writes them in one
//! transaction, with one wake-up per queue, answering each in its place. An idle server writes
//! a lone request at once, so nothing waits for company; under load, the requests that arrive
//! while transactions commit share the next one, so concurrent enqueues stop queueing behind
//! each other's commits.
//!
//! As many transactions are in flight at once as the store finds worth it
//! ([`panda_store::QueueStore::enqueue_writers`]): one on SQLite, whose single writer would
//! only make them wait in turn; several on PostgreSQL, where one batch is written while the
//! ones before it wait for their commit to reach the disk. Batches grow while every writer is
//! busy, so the batching adapts to the load either way.
//!
//! A request is answered only once its transaction has committed: a crash before that loses
//! only requests whose callers saw no answer (and retry, with an idempotency key if they must
//! not run twice).

use std::sync::Arc;

use panda_core::Clock;
use panda_store::{Enqueued, NewExecution, Store, StoreError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::Failure;

/// The most enqueues one transaction takes.
pub(crate) const BATCH: usize = 1000;

/// How an enqueue sent to the writer was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// This request was refused, as a single enqueue would refuse it.
    Store(StoreError),
    /// The batch it was in failed as a whole (the store is down or full): nothing of it was
    /// written.
    Batch(Failure),
}

struct Pending {
    request: NewExecution,
    answer: oneshot::Sender<Result<Enqueued, Refused>>,
}

/// The writer's door: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub(crate) struct Enqueuer {
    requests: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("job", &self.request.job)
            .finish()
    }
}

impl Enqueuer {
    /// Starts the writer on the current runtime; it ends when the last door is dropped.
    pub(crate) fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let (requests, waiting) = mpsc::channel(BATCH * 4);
        tokio::spawn(gather(store, clock, waiting));
        Self { requests }
    }

    /// Enqueues `request` in the next transaction the writer commits.
    pub(crate) async fn enqueue(&self, request: NewExecution) -> Result<Enqueued, Refused> {
        let (answer, answered) = oneshot::channel();
        let gone = || {
            Refused::Batch(
                Failure::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the server is shutting down",
                )
                .hint("send the request again in a moment, to this server or another"),
            )
        };
        self.requests
            .send(Pending { request, answer })
            .await
            .map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }
}

async fn gather(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mut waiting: mpsc::Receiver<Pending>,
) {
    let writers = Arc::new(Semaphore::new(store.enqueue_writers().max(1)));
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // A free writer first: while none is, requests gather into the next batch.
        let Ok(writer) = Arc::clone(&writers).acquire_owned().await else {
            return;
        };
        if waiting.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let pending = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        let store = Arc::clone(&store);
        let clock = Arc::clone(&clock);
        tokio::spawn(async move {
            write(store.as_ref(), clock.as_ref(), pending).await;
            drop(writer);
        });
    }
}

/// Writes one batch in one transaction and answers each request in its place.
async fn write(store: &dyn Store, clock: &dyn Clock, batch: Vec<Pending>) {
    let (requests, answers): (Vec<NewExecution>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.request, pending.answer))
        .unzip();
    match store.execution_enqueue_many(&requests, clock.now()).await {
        Ok(results) => {
            for (answer, result) in answers.into_iter().zip(results) {
                // A caller that went away is answered by nothing; the write stands.
                let _ = answer.send(result.map_err(Refused::Store));
            }
        }
        Err(err) => {
            let failure = Failure::from(err);
            for answer in answers {
                let _ = answer.send(Err(Refused::Batch(failure.clone())));
            }
        }
    }
}
