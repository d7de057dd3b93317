-- Which Delta table a mirror's progress belongs to: its `metaData.id`, fixed when the table is
-- created and kept by copies. A mirrored table replaced under the indexer (dropped and created
-- again by another engine, or the lake moved to a new root) has another id, so it is refilled
-- from the first op instead of holding only the ops after the old table's progress.
-- NULL: progress recorded before this column; the next sync adopts the table it finds.
ALTER TABLE mirror_progress ADD COLUMN table_id TEXT;
