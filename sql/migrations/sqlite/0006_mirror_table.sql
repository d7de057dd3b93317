-- Which Delta table a mirror's progress belongs to, and the application transaction its
-- appends carry. `table_id` is the table's `metaData.id`: fixed when the table is created and
-- kept by copies. A mirrored table replaced under the indexer (dropped and created again by
-- another engine, replaced in place, or the lake moved to a new root) has another id, so it is
-- cleared of the chain's rows and refilled from the first op, under a new `app_id` (a table
-- replaced in place keeps the old one's transactions, which would skip the refill's appends).
-- NULL: progress recorded before these columns; the next check adopts the table it finds, and
-- the appends keep the store's original transaction id.
ALTER TABLE mirror_progress ADD COLUMN table_id TEXT;
ALTER TABLE mirror_progress ADD COLUMN app_id TEXT;
