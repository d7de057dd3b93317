//! The indexer against a real anvil, a Delta lake on disk, SQLite and PostgreSQL.

mod common;
mod faults;
mod lineage;
#[path = "../../../sql/tests/it/pg.rs"]
mod pg;
mod reorgs;
