//! Log capture shared by the runtimes.
//!
//! A runtime hands each read of a stream to [`LogSink::write`], which never waits: it cuts the
//! bytes into chunks that end at line boundaries (an over-long line is split at
//! [`LogConfig::max_line`]; a partial last line is kept until more comes, or the end), masks
//! secret values, enforces the per-execution cap (cutting exactly at it, then one truncation
//! line), numbers the chunks, broadcasts them to live followers and queues them. A flusher task
//! writes the queue to the store in batches; a slow store delays only the flusher, never the
//! job. [`LogSink::finish`] flushes the rest.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use chrono::Utc;
use memchr::memmem::Finder;
use panda_core::ExecutionId;
use panda_core::{LogChunk, LogStore, LogStream, StoreError, StoreResult};
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
    secrets: Vec<Finder<'static>>,
    state: Mutex<State>,
    queued: Notify,
    /// Made by the first follower: its 1,024 slots are about 100 KiB, which most runs, followed
    /// by nobody, never need.
    live: OnceLock<broadcast::Sender<LogChunk>>,
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

/// How many chunks a live follower may fall behind before it misses some.
const LIVE_CAPACITY: usize = 1024;

/// The shortest secret value that is masked: masking one or two characters would hide every
/// occurrence of them in the output instead of a secret.
const MIN_MASKED_LEN: usize = 3;
const MASK: &[u8] = b"****";

impl LogSink {
    /// A sink for `execution_id` writing into `store`, masking the values of `secrets`.
    /// Spawns its flusher on the current tokio runtime.
    pub fn new<'a>(
        store: Arc<dyn LogStore>,
        execution_id: ExecutionId,
        config: LogConfig,
        secrets: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let mut secrets: Vec<Finder<'static>> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_MASKED_LEN)
            .map(|s| Finder::new(s.as_bytes()).into_owned())
            .collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.needle().len()));
        let shared = Arc::new(Shared {
            execution_id,
            config,
            secrets,
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            live: OnceLock::new(),
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
        self.shared
            .live
            .get_or_init(|| broadcast::channel(LIVE_CAPACITY).0)
            .subscribe()
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
        let mut pending = mask(pending, &self.shared.secrets);
        let safe = pending.len() - secret_prefix_at_end(&pending, &self.shared.secrets);
        let (pieces, out_end) = cut(&pending[..safe], max_line);
        state.partial[index] = pending.split_off(out_end);
        // Usually one piece, all of it: it goes out without a copy.
        if let [piece] = pieces.as_slice()
            && piece.start == 0
        {
            pending.truncate(piece.end);
            self.push(&mut state, stream, pending);
            return;
        }
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
            flusher
                .await
                .map_err(|err| StoreError::Corrupt(format!("the log flusher failed: {err}")))??;
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
        if let Some(live) = self.shared.live.get()
            && live.receiver_count() > 0
        {
            let _ = live.send(chunk.clone());
        }
        state.queue.push(chunk);
        if state.queued_bytes >= self.shared.config.flush_bytes {
            self.shared.queued.notify_one();
        }
    }
}

/// Where captured bytes are cut into chunks: complete lines go out together; a line longer than
/// `max_line` goes out alone, in pieces of that size (before its newline); what follows the
/// last of those is an unfinished line, which waits for more. Returns the pieces and where the
/// unfinished rest starts.
fn cut(bytes: &[u8], max_line: usize) -> (Vec<Range<usize>>, usize) {
    let mut cutter = Cutter {
        max_line,
        pieces: Vec::new(),
        chunk_start: 0,
        line_start: 0,
    };
    for newline in memchr::memchr_iter(b'\n', bytes) {
        cutter.split_long_line(newline);
        cutter.line_start = newline + 1;
    }
    cutter.split_long_line(bytes.len());
    let Cutter {
        mut pieces,
        chunk_start,
        line_start,
        ..
    } = cutter;
    if line_start > chunk_start {
        pieces.push(chunk_start..line_start);
    }
    (pieces, line_start)
}

struct Cutter {
    max_line: usize,
    pieces: Vec<Range<usize>>,
    /// Where the lines not yet in a piece start.
    chunk_start: usize,
    /// Where the current line starts.
    line_start: usize,
}

impl Cutter {
    /// Cuts the current line, whose text runs to `text_end` (its newline or the end of what was
    /// read), into pieces of `max_line` while it is that long.
    fn split_long_line(&mut self, text_end: usize) {
        while text_end - self.line_start >= self.max_line {
            if self.line_start > self.chunk_start {
                self.pieces.push(self.chunk_start..self.line_start);
            }
            let end = self.line_start + self.max_line;
            self.pieces.push(self.line_start..end);
            self.line_start = end;
            self.chunk_start = end;
        }
    }
}

/// Replaces every occurrence of each secret with `****`.
fn mask(bytes: Vec<u8>, secrets: &[Finder<'static>]) -> Vec<u8> {
    let mut bytes = bytes;
    for secret in secrets {
        let mut found = secret.find_iter(&bytes).peekable();
        if found.peek().is_none() {
            continue;
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut copied = 0;
        for at in found {
            out.extend_from_slice(&bytes[copied..at]);
            out.extend_from_slice(MASK);
            copied = at + secret.needle().len();
        }
        out.extend_from_slice(&bytes[copied..]);
        bytes = out;
    }
    bytes
}

/// How many bytes at the end of `bytes` could be the start of a secret (a proper prefix of
/// one): they are held back until what follows shows whether to mask them.
fn secret_prefix_at_end(bytes: &[u8], secrets: &[Finder<'static>]) -> usize {
    secrets
        .iter()
        .filter_map(|secret| {
            let secret = secret.needle();
            (1..secret.len().min(bytes.len() + 1))
                .rev()
                .find(|&n| bytes.ends_with(&secret[..n]))
        })
        .max()
        .unwrap_or(0)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the queue to the store until the sink is finished and the queue empty. A failed
/// write is retried (the store ignores a seq it has), with a growing pause.
async fn flush_loop(shared: Arc<Shared>, store: Arc<dyn LogStore>) -> StoreResult<()> {
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
    store: &Arc<dyn LogStore>,
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

    fn finders(secrets: &[&str]) -> Vec<Finder<'static>> {
        secrets
            .iter()
            .map(|s| Finder::new(s.as_bytes()).into_owned())
            .collect()
    }

    /// The cut as it was first written, a byte at a time: the reference for [`cut`].
    fn cut_bytewise(bytes: &[u8], max_line: usize) -> (Vec<Range<usize>>, usize) {
        let mut pieces = Vec::new();
        let (mut chunk_start, mut line_start, mut out_end) = (0, 0, 0);
        for (i, byte) in bytes.iter().enumerate() {
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
        (pieces, out_end)
    }

    #[test]
    fn lines_are_cut_at_newlines_and_at_the_bound() {
        assert_eq!(cut(b"a\nbb\ncc", 10), (vec![Range { start: 0, end: 5 }], 5));
        assert_eq!(cut(b"", 10), (vec![], 0));
        assert_eq!(cut(b"partial", 10), (vec![], 0));
        // A 7-byte line with a bound of 3: two pieces alone, then its last byte and newline.
        assert_eq!(
            cut(b"x\nabcdefg\ny\n", 3),
            (vec![0..2, 2..5, 5..8, 8..12], 12)
        );
        // A line of exactly the bound's length, newline included, is not cut.
        assert_eq!(cut(b"ab\n", 3), (vec![Range { start: 0, end: 3 }], 3));
        // The unfinished rest may itself be cut at the bound.
        assert_eq!(cut(b"a\nbcdef", 2), (vec![0..2, 2..4, 4..6], 6));
    }

    #[test]
    fn the_cut_matches_the_bytewise_reference_on_every_small_input() {
        // Every string of up to 9 bytes over {a, newline}, under bounds 1 to 4.
        for len in 0..=9u32 {
            for bits in 0..(1u32 << len) {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| if bits >> i & 1 == 1 { b'\n' } else { b'a' })
                    .collect();
                for max_line in 1..=4 {
                    assert_eq!(
                        cut(&bytes, max_line),
                        cut_bytewise(&bytes, max_line),
                        "{:?} at {max_line}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
            }
        }
    }

    #[test]
    fn masking_replaces_every_occurrence_longest_first() {
        let secrets = finders(&["hunter2-long", "hunter2"]);
        assert_eq!(
            mask(b"a hunter2 b hunter2-long c\n".to_vec(), &secrets),
            b"a **** b **** c\n".to_vec()
        );
        assert_eq!(mask(b"nothing\n".to_vec(), &secrets), b"nothing\n".to_vec());
    }

    #[test]
    fn the_tail_that_could_start_a_secret_is_held_back() {
        let secrets = finders(&["hunter2", "abc"]);
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
