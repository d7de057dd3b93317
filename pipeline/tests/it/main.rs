//! Ingest against a real anvil and a Delta lake on disk.

mod ingest;
