//! What a test reads back from the store: every execution of a job, and a poll until they are
//! as the test expects.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use panda_core::{Execution, Status};
use panda_store::{ExecutionFilter, Store, StoreResult};

/// How long a wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Every execution of `job`, page by page.
pub async fn all_of(store: &dyn Store, job: &str) -> Vec<Execution> {
    try_all_of(store, job).await.expect("list")
}

async fn try_all_of(store: &dyn Store, job: &str) -> StoreResult<Vec<Execution>> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .execution_list(&ExecutionFilter {
                job: Some(job.into()),
                before,
                limit: 1000,
                ..ExecutionFilter::default()
            })
            .await?;
        all.extend(page.executions);
        match page.next {
            Some(next) => before = Some(next),
            None => return Ok(all),
        }
    }
}

/// Polls until `done` holds for the executions of `job`, and returns them. A store that fails
/// or stalls (one that is restarting) is one more poll; the test fails after [`PATIENCE`],
/// saying `what` never happened and how the executions stood.
pub async fn wait_until(
    store: &dyn Store,
    job: &str,
    what: &str,
    done: impl Fn(&[Execution]) -> bool,
) -> Vec<Execution> {
    let started = Instant::now();
    let mut last = Vec::new();
    loop {
        if let Ok(Ok(all)) =
            tokio::time::timeout(Duration::from_secs(10), try_all_of(store, job)).await
        {
            if done(&all) {
                return all;
            }
            last = all;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{job}: never {what}; statuses {:?}",
            status_counts(&last)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many executions are in each status.
pub fn status_counts(all: &[Execution]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for e in all {
        *counts.entry(e.status.as_str()).or_insert(0) += 1;
    }
    counts
}

/// How many executions are in `status`.
pub fn count(all: &[Execution], status: Status) -> usize {
    all.iter().filter(|e| e.status == status).count()
}
