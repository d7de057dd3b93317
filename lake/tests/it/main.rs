//! The lake against real Delta tables on disk.

mod tables;
