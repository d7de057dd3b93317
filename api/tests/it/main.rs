//! The GraphQL router over a real SQLite store; SQL over a Delta lake on disk.

mod explorer;
mod graphql;
mod objects;
mod psql;
mod slt;
mod sql;
