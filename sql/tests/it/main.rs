//! The index store against real SQLite and PostgreSQL.

mod pg;
mod store;
