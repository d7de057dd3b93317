//! Registering Datanets on chain.

use alloy::primitives::{B256, U256, keccak256};
use alloy::sol_types::SolEvent;
use tributary_chain::bindings::DatanetRegistry;
use tributary_chain::{Chain, send};

use crate::{Error, Result};

/// A Datanet to register.
#[derive(Debug, Clone)]
pub struct DatanetSpec {
    /// Unique name.
    pub name: String,
    /// Domain (free text, e.g. `cooking`).
    pub domain: String,
    /// Hash of the canonical manifest (record schema, rules, licenses).
    pub schema_hash: B256,
    /// Where the manifest can be read.
    pub metadata_uri: String,
}

/// Registers `spec` and returns its id; when a Datanet of that name exists, returns its id
/// (so a re-run is harmless).
pub async fn create(chain: &Chain, spec: &DatanetSpec) -> Result<u64> {
    let registry = chain.datanet_registry();
    let existing = registry
        .datanetIdByName(keccak256(spec.name.as_bytes()))
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    if existing != U256::ZERO {
        return Ok(existing.to::<u64>());
    }
    let receipt = send(registry.createDatanet(
        spec.name.clone(),
        spec.domain.clone(),
        spec.schema_hash,
        spec.metadata_uri.clone(),
    ))
    .await?;
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| DatanetRegistry::DatanetCreated::decode_log(&log.inner).ok())
        .map(|ev| ev.data.id.to::<u64>())
        .ok_or_else(|| Error::InvalidInput("createDatanet emitted no DatanetCreated event".into()))
}
