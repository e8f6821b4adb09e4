//! Logs: chunks numbered by their writer, read by cursor or from the end.

use std::sync::Arc;

use panda_core::ExecutionId;
use panda_store::{LogChunk, LogStream, Store};

use super::support::*;

fn chunk(seq: u64, data: &[u8]) -> LogChunk {
    LogChunk {
        seq,
        stream: LogStream::Stdout,
        at: at(i64::try_from(seq).expect("a small seq")),
        data: data.to_vec(),
    }
}

fn lines(range: std::ops::Range<u64>) -> Vec<LogChunk> {
    range
        .map(|seq| chunk(seq, format!("line {seq}\n").as_bytes()))
        .collect()
}

fn seqs(chunks: &[LogChunk]) -> Vec<u64> {
    chunks.iter().map(|c| c.seq).collect()
}

/// A running execution to write logs for.
async fn running(store: &Arc<dyn Store>) -> ExecutionId {
    create_job(store, "chatty").await;
    enqueue(store, "chatty", base()).await;
    claim_one(store, at(1)).await.execution.id
}

pub async fn log_read_returns_chunks_in_seq_order_after_a_cursor(store: Arc<dyn Store>) {
    let id = running(&store).await;
    let all = lines(0..10);
    // Appended out of order, in two calls.
    store.log_append(id, &all[5..]).await.expect("append");
    store.log_append(id, &all[..5]).await.expect("append");

    assert_eq!(store.log_read(id, None, 100).await.expect("read"), all);
    let page = store.log_read(id, Some(3), 4).await.expect("read");
    assert_eq!(page, all[4..8]);
    assert_eq!(
        seqs(&store.log_read(id, None, 2).await.expect("read")),
        [0, 1]
    );
    assert!(
        store
            .log_read(id, Some(9), 100)
            .await
            .expect("read")
            .is_empty()
    );
}

pub async fn log_tail_returns_the_last_chunks_in_order(store: Arc<dyn Store>) {
    let id = running(&store).await;
    let all = lines(0..10);
    store.log_append(id, &all).await.expect("append");

    assert_eq!(store.log_tail(id, 3).await.expect("tail"), all[7..]);
    assert_eq!(store.log_tail(id, 100).await.expect("tail"), all);
}

pub async fn log_append_keeps_the_first_copy_of_a_seq(store: Arc<dyn Store>) {
    let id = running(&store).await;
    store
        .log_append(id, &[chunk(0, b"first\n")])
        .await
        .expect("append");
    store
        .log_append(id, &[chunk(0, b"resent\n"), chunk(1, b"second\n")])
        .await
        .expect("a resend is not an error");

    let read = store.log_read(id, None, 100).await.expect("read");
    assert_eq!(read, [chunk(0, b"first\n"), chunk(1, b"second\n")]);
}

pub async fn log_chunks_round_trip_binary_data_and_streams(store: Arc<dyn Store>) {
    let id = running(&store).await;
    let chunks = vec![
        LogChunk {
            seq: 0,
            stream: LogStream::Stdout,
            at: at(1),
            data: vec![0xff, 0xfe, 0x00, b'\n', 0xc3, 0x28],
        },
        LogChunk {
            seq: 1,
            stream: LogStream::Stderr,
            at: at(2),
            data: "grüße ✓\r\n".as_bytes().to_vec(),
        },
        LogChunk {
            seq: 2,
            stream: LogStream::System,
            at: at(3),
            data: Vec::new(),
        },
    ];
    store.log_append(id, &chunks).await.expect("append");
    assert_eq!(store.log_read(id, None, 100).await.expect("read"), chunks);
}

pub async fn logs_of_different_executions_are_kept_apart(store: Arc<dyn Store>) {
    let first = running(&store).await;
    enqueue(&store, "chatty", at(2)).await;
    let second = claim_one(&store, at(3)).await.execution.id;
    store
        .log_append(first, &[chunk(0, b"first\n")])
        .await
        .expect("append");
    store
        .log_append(second, &[chunk(0, b"second\n"), chunk(1, b"more\n")])
        .await
        .expect("append");

    assert_eq!(
        store.log_read(first, None, 100).await.expect("read"),
        [chunk(0, b"first\n")]
    );
    assert_eq!(
        seqs(&store.log_tail(second, 10).await.expect("tail")),
        [0, 1]
    );
}

/// Chunks that compress and chunks that do not, of every size around where the store starts to
/// compress, read back byte for byte, by cursor and from the end.
pub async fn log_chunks_compressed_or_not_read_back_exactly(store: Arc<dyn Store>) {
    let id = running(&store).await;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect()
    };
    let repeated = |len: usize| -> Vec<u8> {
        b"2026-11-29T10:00:00Z INFO report sent\n"
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    };
    let datas = [
        repeated(64 * 1024),
        noise(64 * 1024),
        repeated(255),
        repeated(256),
        repeated(257),
        noise(300),
        repeated(1024 * 1024),
        [repeated(1000), noise(1000), repeated(1000)].concat(),
    ];
    let chunks: Vec<LogChunk> = datas
        .iter()
        .enumerate()
        .map(|(seq, data)| chunk(seq as u64, data))
        .collect();
    store.log_append(id, &chunks[..4]).await.expect("append");
    store.log_append(id, &chunks[4..]).await.expect("append");
    assert_eq!(store.log_read(id, None, 100).await.expect("read"), chunks);
    assert_eq!(
        store.log_read(id, Some(5), 2).await.expect("read"),
        chunks[6..8]
    );
    assert_eq!(store.log_tail(id, 3).await.expect("tail"), chunks[5..]);
}
