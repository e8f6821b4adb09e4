-- Log chunks may be stored compressed: `codec` says how (`none` or `lz4`, the LZ4 block format
-- with the uncompressed length first). Rows written before keep their bytes as they were.
ALTER TABLE log_chunks ADD COLUMN codec text NOT NULL DEFAULT 'none';

-- Panda compresses what compresses; TOAST's own compression would only try again, in vain, on
-- the rest. Applies to rows written from now on.
ALTER TABLE log_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
