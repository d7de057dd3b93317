//! The index store against real SQLite and PostgreSQL.

mod index;
mod pg;
mod store;
