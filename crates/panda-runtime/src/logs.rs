//! Log capture shared by the runtimes.
//!
//! A runtime hands each read of a stream to [`LogSink::write`], which never waits: it cuts the
//! bytes into chunks that end at line boundaries (an over-long line is split at
//! [`LogConfig::max_line`]; a partial last line is kept until more comes, or the end), masks
//! secret values, enforces the per-execution cap (cutting exactly at it, then one truncation
//! line), numbers the chunks, broadcasts them to live followers and queues them. A flusher task
//! writes the queue to the store in batches; a slow store delays only the flusher, never the
//! job. [`LogSink::finish`] flushes the rest.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use panda_core::ExecutionId;
use panda_store::{LogChunk, LogStream, Store, StoreResult};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

/// The default cap on an execution's stored output.
pub const DEFAULT_LOG_CAP: u64 = 16 * 1024 * 1024;

/// How output is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Bytes of output stored per execution, at most; the rest is discarded after a marker.
    pub cap_bytes: u64,
    /// A line longer than this is split into chunks of this size.
    pub max_line: usize,
    /// The flusher writes at least this often while output comes.
    pub flush_every: Duration,
    /// The flusher is woken early once this much is queued.
    pub flush_bytes: usize,
    /// How long a batch of output is retried while the store fails, before it is given up
    /// (and the run reports it in [`RunReport::log_error`](crate::RunReport::log_error)).
    pub store_patience: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            cap_bytes: DEFAULT_LOG_CAP,
            max_line: 64 * 1024,
            flush_every: Duration::from_millis(200),
            flush_bytes: 1024 * 1024,
            store_patience: Duration::from_secs(60),
        }
    }
}

/// What was captured, once the sink is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSummary {
    /// Output bytes stored (without Panda's own lines).
    pub stored_bytes: u64,
    /// Output bytes discarded past the cap.
    pub discarded_bytes: u64,
    /// Chunks written, Panda's own lines included.
    pub chunks: u64,
}

/// The capture of one execution's output. Cheap to clone; see the module docs.
#[derive(Debug, Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    execution_id: ExecutionId,
    config: LogConfig,
    secrets: Vec<Vec<u8>>,
    state: Mutex<State>,
    queued: Notify,
    live: broadcast::Sender<LogChunk>,
    flusher: Mutex<Option<JoinHandle<StoreResult<()>>>>,
}

#[derive(Debug, Default)]
struct State {
    /// The seq of this sink's first chunk: 0, or after an earlier run's chunks.
    first_seq: u64,
    next_seq: u64,
    queue: Vec<LogChunk>,
    queued_bytes: usize,
    stored_bytes: u64,
    discarded_bytes: u64,
    truncated: bool,
    /// The unfinished last line of stdout and of stderr.
    partial: [Vec<u8>; 2],
    finished: bool,
}

/// The shortest secret value that is masked: masking one or two characters would hide every
/// occurrence of them in the output instead of a secret.
const MIN_MASKED_LEN: usize = 3;
const MASK: &[u8] = b"****";

impl LogSink {
    /// A sink for `execution_id` writing into `store`, masking the values of `secrets`.
    /// Spawns its flusher on the current tokio runtime.
    pub fn new<'a>(
        store: Arc<dyn Store>,
        execution_id: ExecutionId,
        config: LogConfig,
        secrets: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_MASKED_LEN)
            .map(|s| s.as_bytes().to_vec())
            .collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let (live, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            execution_id,
            config,
            secrets,
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            live,
            flusher: Mutex::new(None),
        });
        let flusher = tokio::spawn(flush_loop(Arc::clone(&shared), store));
        *lock(&shared.flusher) = Some(flusher);
        Self { shared }
    }

    /// Numbers this sink's chunks from `seq` on instead of 0: for an execution that ran before
    /// (released by a worker that shut down) and runs again under the same id, so its second
    /// run's output follows the first's instead of colliding with it (the store keeps the first
    /// chunk of each seq). Takes effect only before anything is written.
    #[must_use]
    pub fn starting_at(self, seq: u64) -> Self {
        {
            let mut state = lock(&self.shared.state);
            if state.next_seq == state.first_seq && state.queue.is_empty() {
                state.first_seq = seq;
                state.next_seq = seq;
            }
        }
        self
    }

    /// Follows the output live, from now on: every chunk as it is captured. A follower that
    /// falls behind by more than 1,024 chunks misses some (and is told so by the channel); the
    /// store has them all.
    pub fn subscribe(&self) -> broadcast::Receiver<LogChunk> {
        self.shared.live.subscribe()
    }

    /// Captures bytes read from `stream` (stdout or stderr). Never waits.
    pub fn write(&self, stream: LogStream, bytes: &[u8]) {
        let index = match stream {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
            LogStream::System => {
                self.system(&String::from_utf8_lossy(bytes));
                return;
            }
        };
        let max_line = self.shared.config.max_line.max(1);
        let mut state = lock(&self.shared.state);
        if state.finished {
            return;
        }
        let mut pending = std::mem::take(&mut state.partial[index]);
        pending.extend_from_slice(bytes);
        // Secrets are masked in the stream before it is cut, so one that spans lines, reads or
        // a cut at the bound is still caught; the tail that could be the start of a secret waits
        // for the bytes that tell.
        let pending = mask(pending, &self.shared.secrets);
        let safe = pending.len() - secret_prefix_at_end(&pending, &self.shared.secrets);
        // Complete lines go out together; a line cut at the bound goes out alone, piece by
        // piece; the unfinished rest waits for more.
        let mut pieces: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut chunk_start, mut line_start, mut out_end) = (0, 0, 0);
        for (i, byte) in pending[..safe].iter().enumerate() {
            if *byte == b'\n' {
                line_start = i + 1;
                out_end = i + 1;
            } else if i + 1 - line_start >= max_line {
                if line_start > chunk_start {
                    pieces.push(chunk_start..line_start);
                }
                pieces.push(line_start..i + 1);
                chunk_start = i + 1;
                line_start = i + 1;
                out_end = i + 1;
            }
        }
        if out_end > chunk_start {
            pieces.push(chunk_start..out_end);
        }
        state.partial[index] = pending[out_end..].to_vec();
        for piece in pieces {
            self.push(&mut state, stream, pending[piece].to_vec());
        }
    }

    /// Adds one of Panda's own lines (pulling, timeout, truncation) to the log.
    pub fn system(&self, text: &str) {
        let mut state = lock(&self.shared.state);
        if state.finished {
            return;
        }
        let mut line = format!("[panda] {text}").into_bytes();
        line.push(b'\n');
        self.enqueue(&mut state, LogStream::System, line);
    }

    /// Flushes every partial line and everything queued to the store, and stops the flusher.
    ///
    /// # Errors
    ///
    /// The store's, when the last flush fails after its retries.
    pub async fn finish(self) -> StoreResult<LogSummary> {
        {
            let mut state = lock(&self.shared.state);
            for (index, stream) in [(0, LogStream::Stdout), (1, LogStream::Stderr)] {
                let partial = std::mem::take(&mut state.partial[index]);
                if !partial.is_empty() {
                    self.push(&mut state, stream, partial);
                }
            }
            if state.discarded_bytes > 0 {
                let line = format!(
                    "[panda] {} more bytes of output were discarded\n",
                    state.discarded_bytes
                );
                self.enqueue(&mut state, LogStream::System, line.into_bytes());
            }
            state.finished = true;
        }
        self.shared.queued.notify_one();
        let flusher = lock(&self.shared.flusher).take();
        if let Some(flusher) = flusher {
            flusher.await.map_err(|err| {
                panda_store::StoreError::Corrupt(format!("the log flusher failed: {err}"))
            })??;
        }
        let state = lock(&self.shared.state);
        Ok(LogSummary {
            stored_bytes: state.stored_bytes,
            discarded_bytes: state.discarded_bytes,
            chunks: state.next_seq - state.first_seq,
        })
    }

    /// Caps and enqueues output (masked already, by `write`).
    fn push(&self, state: &mut State, stream: LogStream, bytes: Vec<u8>) {
        let mut bytes = bytes;
        let cap = self.shared.config.cap_bytes;
        if state.truncated {
            state.discarded_bytes += bytes.len() as u64;
            return;
        }
        let room = cap.saturating_sub(state.stored_bytes);
        if bytes.len() as u64 > room {
            let keep = usize::try_from(room).unwrap_or(usize::MAX);
            state.discarded_bytes += (bytes.len() - keep) as u64;
            bytes.truncate(keep);
            state.truncated = true;
        }
        state.stored_bytes += bytes.len() as u64;
        if !bytes.is_empty() {
            self.enqueue(state, stream, bytes);
        }
        if state.truncated {
            let line = format!(
                "[panda] output truncated at the cap of {cap} bytes per execution; later \
                 output is discarded\n"
            );
            self.enqueue(state, LogStream::System, line.into_bytes());
        }
    }

    fn enqueue(&self, state: &mut State, stream: LogStream, data: Vec<u8>) {
        let chunk = LogChunk {
            seq: state.next_seq,
            stream,
            at: Utc::now(),
            data,
        };
        state.next_seq += 1;
        state.queued_bytes += chunk.data.len();
        // No follower is fine; a slow one lags, never the job.
        if self.shared.live.receiver_count() > 0 {
            let _ = self.shared.live.send(chunk.clone());
        }
        state.queue.push(chunk);
        if state.queued_bytes >= self.shared.config.flush_bytes {
            self.shared.queued.notify_one();
        }
    }
}

/// Replaces every occurrence of each secret with `****`.
fn mask(bytes: Vec<u8>, secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = bytes;
    for secret in secrets {
        if bytes.len() < secret.len() || !contains(&bytes, secret) {
            continue;
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(secret) {
                out.extend_from_slice(MASK);
                i += secret.len();
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        bytes = out;
    }
    bytes
}

/// How many bytes at the end of `bytes` could be the start of a secret (a proper prefix of
/// one): they are held back until what follows shows whether to mask them.
fn secret_prefix_at_end(bytes: &[u8], secrets: &[Vec<u8>]) -> usize {
    secrets
        .iter()
        .filter_map(|secret| {
            (1..secret.len().min(bytes.len() + 1))
                .rev()
                .find(|&n| bytes.ends_with(&secret[..n]))
        })
        .max()
        .unwrap_or(0)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the queue to the store until the sink is finished and the queue empty. A failed
/// write is retried (the store ignores a seq it has), with a growing pause.
async fn flush_loop(shared: Arc<Shared>, store: Arc<dyn Store>) -> StoreResult<()> {
    loop {
        // Every sink handle gone without `finish` (a runtime that returned early): write what
        // is queued and stop, instead of waiting forever for output that cannot come.
        let abandoned = Arc::strong_count(&shared) == 1;
        let (batch, finished) = {
            let mut state = lock(&shared.state);
            state.queued_bytes = 0;
            (
                std::mem::take(&mut state.queue),
                state.finished || abandoned,
            )
        };
        if !batch.is_empty() {
            append_patiently(
                &store,
                shared.execution_id,
                &batch,
                shared.config.store_patience,
            )
            .await?;
        }
        if finished && lock(&shared.state).queue.is_empty() {
            return Ok(());
        }
        if batch.is_empty() || !finished {
            tokio::select! {
                () = shared.queued.notified() => {}
                () = tokio::time::sleep(shared.config.flush_every) => {}
            }
        }
    }
}

/// Writes one batch, retrying with a growing pause while the store fails (the store ignores a
/// seq it already has, so a retry never doubles a chunk); gives up after `patience`.
async fn append_patiently(
    store: &Arc<dyn Store>,
    execution_id: ExecutionId,
    batch: &[LogChunk],
    patience: Duration,
) -> StoreResult<()> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match store.log_append(execution_id, batch).await {
            Ok(()) => return Ok(()),
            Err(err) if started.elapsed() + pause < patience => {
                tracing::warn!(execution = %execution_id, %err, retry_in = ?pause, "storing logs failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_replaces_every_occurrence_longest_first() {
        let secrets = vec![b"hunter2-long".to_vec(), b"hunter2".to_vec()];
        assert_eq!(
            mask(b"a hunter2 b hunter2-long c\n".to_vec(), &secrets),
            b"a **** b **** c\n".to_vec()
        );
        assert_eq!(mask(b"nothing\n".to_vec(), &secrets), b"nothing\n".to_vec());
    }

    #[test]
    fn the_tail_that_could_start_a_secret_is_held_back() {
        let secrets = vec![b"hunter2".to_vec(), b"abc".to_vec()];
        assert_eq!(secret_prefix_at_end(b"x hunt", &secrets), 4);
        assert_eq!(secret_prefix_at_end(b"x ab", &secrets), 2);
        assert_eq!(
            secret_prefix_at_end(b"x hunter2", &secrets),
            0,
            "whole: masked, not held"
        );
        assert_eq!(secret_prefix_at_end(b"nothing\n", &secrets), 0);
        assert_eq!(secret_prefix_at_end(b"h", &secrets), 1);
        assert_eq!(secret_prefix_at_end(b"", &secrets), 0);
    }
}
