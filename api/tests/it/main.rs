//! The GraphQL router over a real SQLite store.

mod graphql;
