-- Log chunks may be stored compressed: `codec` says how (`none` or `lz4`, the LZ4 block format
-- with the uncompressed length first). Rows written before keep their bytes as they were.
ALTER TABLE log_chunks ADD COLUMN codec TEXT NOT NULL DEFAULT 'none';
