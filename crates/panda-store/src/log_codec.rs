//! How a log chunk's bytes are kept: as they are, or compressed with LZ4.
//!
//! Job output repeats itself (timestamps, levels, the same message with another id), and a
//! chunk is up to a read of a pipe, so LZ4 usually shrinks it several times at a cost of about a
//! millisecond per MiB. A chunk that does not shrink by at least an eighth (random or already
//! compressed output, or a short line) is kept as it is, so reading it costs nothing more.
//! Both backends store the codec beside the bytes; rows written before it existed read as
//! [`Codec::None`].

use std::borrow::Cow;

use crate::{StoreError, StoreResult};

/// The codec a chunk was stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// The bytes as they were captured.
    None,
    /// LZ4 block format, the uncompressed length first (little-endian u32).
    Lz4,
}

/// Chunks shorter than this are not worth compressing.
const MIN_COMPRESSED_LEN: usize = 256;

/// The largest chunk a stored LZ4 header may announce. Chunks are cut at reads of a pipe and
/// at the longest line (64 KiB by default), so a larger length means the row is damaged; it
/// is refused before anything is allocated for it.
const MAX_CHUNK_LEN: usize = 64 * 1024 * 1024;

impl Codec {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
        }
    }

    pub(crate) fn parse(name: &str) -> StoreResult<Self> {
        match name {
            "none" => Ok(Self::None),
            "lz4" => Ok(Self::Lz4),
            other => Err(StoreError::Corrupt(format!(
                "a log chunk's codec is {other:?}, which this version of Panda does not know"
            ))),
        }
    }
}

/// The bytes to store for `data`, and their codec.
pub(crate) fn encode(data: &[u8]) -> (Codec, Cow<'_, [u8]>) {
    if data.len() >= MIN_COMPRESSED_LEN && data.len() <= MAX_CHUNK_LEN {
        let compressed = lz4_flex::block::compress_prepend_size(data);
        if compressed.len() <= data.len() - data.len() / 8 {
            return (Codec::Lz4, Cow::Owned(compressed));
        }
    }
    (Codec::None, Cow::Borrowed(data))
}

/// The captured bytes of a stored chunk.
pub(crate) fn decode(codec: Codec, stored: Vec<u8>) -> StoreResult<Vec<u8>> {
    match codec {
        Codec::None => Ok(stored),
        Codec::Lz4 => {
            let announced = stored
                .get(..4)
                .map(|head| u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
            match announced {
                Some(len) if usize::try_from(len).is_ok_and(|len| len <= MAX_CHUNK_LEN) => {
                    let data =
                        lz4_flex::block::decompress_size_prepended(&stored).map_err(|err| {
                            StoreError::Corrupt(format!("a compressed log chunk is damaged: {err}"))
                        })?;
                    // A cut-short block can decode to fewer bytes than its header announced.
                    if u32::try_from(data.len()).ok() != Some(len) {
                        return Err(StoreError::Corrupt(format!(
                            "a compressed log chunk is damaged: it holds {} bytes of the {len} \
                             its header announces",
                            data.len()
                        )));
                    }
                    Ok(data)
                }
                _ => Err(StoreError::Corrupt(
                    "a compressed log chunk is damaged: its length header is missing or too large"
                        .into(),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetitive_output_is_compressed_and_reads_back_the_same() {
        let data =
            b"2026-11-29T10:00:00Z INFO sent the report to someone@example.com\n".repeat(500);
        let (codec, stored) = encode(&data);
        assert_eq!(codec, Codec::Lz4);
        assert!(
            stored.len() < data.len() / 4,
            "{} of {}",
            stored.len(),
            data.len()
        );
        assert_eq!(decode(codec, stored.into_owned()).expect("decode"), data);
    }

    #[test]
    fn short_or_incompressible_chunks_are_kept_as_they_are() {
        let short = b"hello\n".to_vec();
        let (codec, stored) = encode(&short);
        assert_eq!(codec, Codec::None);
        assert!(matches!(stored, Cow::Borrowed(_)));

        // A xorshift stream: no repeats for LZ4 to find.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        let (codec, stored) = encode(&noise);
        assert_eq!(codec, Codec::None);
        assert_eq!(decode(codec, stored.into_owned()).expect("decode"), noise);
    }

    #[test]
    fn a_damaged_chunk_is_an_error_not_a_panic_or_a_huge_allocation() {
        let data = b"abcdefgh".repeat(100);
        let (_, stored) = encode(&data);
        let mut cut = stored.into_owned();
        cut.truncate(cut.len() / 2);
        assert!(matches!(
            decode(Codec::Lz4, cut),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode(Codec::Lz4, vec![0xff, 0xff, 0xff, 0xff, 0]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode(Codec::Lz4, vec![1]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(Codec::parse("zstd"), Err(StoreError::Corrupt(_))));
        assert_eq!(Codec::parse("lz4").expect("lz4"), Codec::Lz4);
    }
}
