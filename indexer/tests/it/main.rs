//! The indexer against a real anvil, a Delta lake on disk and SQLite.

mod lineage;
