//! Group commit for enqueues: the API's single enqueues are written by one task, which takes
//! every request waiting when it is free (up to [`BATCH`]) and writes them in one transaction,
//! with one wake-up per queue, answering each in its place. An idle server writes a lone
//! request at once, so nothing waits for company; under load, the requests that arrive while a
//! transaction commits share the next one, so concurrent enqueues stop queueing behind each
//! other's commits.
//!
//! A request is answered only once its transaction has committed: a crash before that loses
//! only requests whose callers saw no answer (and retry, with an idempotency key if they must
//! not run twice).

use std::sync::Arc;

use panda_core::Clock;
use panda_store::{Enqueued, NewExecution, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

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
        tokio::spawn(write(store, clock, waiting));
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

async fn write(store: Arc<dyn Store>, clock: Arc<dyn Clock>, mut waiting: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    while waiting.recv_many(&mut batch, BATCH).await > 0 {
        let (requests, answers): (Vec<NewExecution>, Vec<_>) = batch
            .drain(..)
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
}
