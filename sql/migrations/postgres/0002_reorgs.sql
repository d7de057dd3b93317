-- Reorg safety. `indexed_blocks` remembers the hashes of recently indexed blocks (those with
-- events, and each range's last block) so a fork point can be found; `index_ops` numbers every
-- change to the graph (a block range applied, or a rollback above a block) so the Delta mirror
-- in the lake can replay exactly what it has not seen, once.

CREATE TABLE indexed_blocks (
    chain_id     BIGINT NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash   TEXT   NOT NULL,
    PRIMARY KEY (chain_id, block_number)
);

CREATE TABLE index_ops (
    chain_id   BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    op         TEXT   NOT NULL,
    from_block BIGINT NOT NULL,
    to_block   BIGINT NOT NULL,
    PRIMARY KEY (chain_id, seq)
);

-- How far each mirrored Delta table has replayed `index_ops`.
CREATE TABLE mirror_progress (
    chain_id   BIGINT NOT NULL,
    table_name TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (chain_id, table_name)
);

-- This store's identity: the lake mirror's Delta transactions are named after it, so a store
-- rebuilt from scratch replaces the mirror's rows instead of being mistaken for the old one.
CREATE TABLE store_meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
