//! Ingest and contribute against a real anvil and a Delta lake on disk.

mod common;
mod contribute;
mod ingest;
mod layout;
mod public_rpc;
mod rewards;
mod snapshot;
