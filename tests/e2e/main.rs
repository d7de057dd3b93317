//! End-to-end tests of the `tributary` binary against the real parts it starts.

mod availability;
mod cli;
mod datanets;
mod demo;
mod deployment;
mod factory;
mod index;
mod jobs;
mod s3;
mod serve;
mod train;
mod wait;
