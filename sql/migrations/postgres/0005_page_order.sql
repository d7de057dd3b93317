-- Paging lists at any size of graph.
-- `lineage_nodes_order`: nodes of a kind in chain order (block, log index, id); a page of a
-- list, oldest or newest first, reads it from where the last page ended and stops at the
-- page's end. It starts with the columns of `lineage_nodes_kind`, which it replaces.
-- `lineage_edges_dst` gains `src`: the edge into a node (a contribution's `contributed` edge,
-- read for its contributor on every row of a page) is found in the index alone. Without
-- table statistics SQLite otherwise preferred the primary key's `chain_id` prefix, a scan of
-- every edge per row (30 s for a page at a million contributions).
-- Building both takes about 15 s per million contributions on two cores.
CREATE INDEX lineage_nodes_order ON lineage_nodes (chain_id, kind, block_number, log_index, id);
DROP INDEX lineage_nodes_kind;
DROP INDEX lineage_edges_dst;
CREATE INDEX lineage_edges_dst ON lineage_edges (chain_id, dst, kind, src);
