-- The lineage graph and the indexer's checkpoints. The same logical schema in SQLite and
-- PostgreSQL: chain positions on every row so a reorg can remove what came from a dropped block.

CREATE TABLE lineage_nodes (
    chain_id     BIGINT NOT NULL,
    id           TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    props        TEXT   NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash   TEXT   NOT NULL,
    tx_hash      TEXT   NOT NULL,
    log_index    BIGINT NOT NULL,
    PRIMARY KEY (chain_id, id)
);
CREATE INDEX lineage_nodes_kind ON lineage_nodes (chain_id, kind);
CREATE INDEX lineage_nodes_block ON lineage_nodes (chain_id, block_number);

CREATE TABLE lineage_edges (
    chain_id     BIGINT NOT NULL,
    src          TEXT   NOT NULL,
    dst          TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    weight       DOUBLE PRECISION,
    block_number BIGINT NOT NULL,
    block_hash   TEXT   NOT NULL,
    tx_hash      TEXT   NOT NULL,
    log_index    BIGINT NOT NULL,
    PRIMARY KEY (chain_id, src, dst, kind)
);
CREATE INDEX lineage_edges_dst ON lineage_edges (chain_id, dst, kind);
CREATE INDEX lineage_edges_block ON lineage_edges (chain_id, block_number);

-- Every decoded (or unknown, kept raw) log of Tributary's contracts.
CREATE TABLE chain_events (
    chain_id     BIGINT NOT NULL,
    block_hash   TEXT   NOT NULL,
    log_index    BIGINT NOT NULL,
    block_number BIGINT NOT NULL,
    tx_hash      TEXT   NOT NULL,
    address      TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    data         TEXT   NOT NULL,
    PRIMARY KEY (chain_id, block_hash, log_index)
);
CREATE INDEX chain_events_block ON chain_events (chain_id, block_number);

-- How far each indexer stream has applied, committed with the changes it covers.
CREATE TABLE checkpoints (
    chain_id     BIGINT NOT NULL,
    stream       TEXT   NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash   TEXT   NOT NULL,
    PRIMARY KEY (chain_id, stream)
);
