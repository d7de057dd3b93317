//! Integration tests of the pure types.

mod contribution;
mod datanet;
mod merkle;
