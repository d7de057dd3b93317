//! Contract behaviour against a real anvil, and the artifacts against their sources.

mod artifacts;
mod common;
mod datanet_registry;
mod model_registry;
mod rewards;
mod startup;
