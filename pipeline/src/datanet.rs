//! Registering Datanets on chain: from a manifest ([`create_from_manifest`]: the canonical
//! manifest in the lake, its schema hash on chain, its validators), and loading them back
//! ([`load`]), refusing a manifest that does not hash to the schema hash on chain.

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
/// (so a re-run is harmless), also when it was created between our read and our send.
pub async fn create(chain: &Chain, spec: &DatanetSpec) -> Result<u64> {
    if let Some(id) = by_name(chain, &spec.name).await? {
        return Ok(id);
    }
    let registry = chain.datanet_registry();
    let receipt = match send(registry.createDatanet(
        spec.name.clone(),
        spec.domain.clone(),
        spec.schema_hash,
        spec.metadata_uri.clone(),
    ))
    .await
    {
        Ok(r) => r,
        Err(e)
            if matches!(
                e.revert::<DatanetRegistry::DatanetRegistryErrors>(),
                Some(DatanetRegistry::DatanetRegistryErrors::NameTaken(_))
            ) =>
        {
            return by_name(chain, &spec.name).await?.ok_or_else(|| e.into());
        }
        Err(e) => return Err(e.into()),
    };
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| DatanetRegistry::DatanetCreated::decode_log(&log.inner).ok())
        .map(|ev| ev.data.id.to::<u64>())
        .ok_or_else(|| Error::InvalidInput("createDatanet emitted no DatanetCreated event".into()))
}

/// The id of the Datanet named `name`, when there is one.
async fn by_name(chain: &Chain, name: &str) -> Result<Option<u64>> {
    let id = chain
        .datanet_registry()
        .datanetIdByName(keccak256(name.as_bytes()))
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    Ok((id != U256::ZERO).then(|| id.saturating_to()))
}

/// Where a Datanet's manifest lives in the lake.
pub fn manifest_key(name: &str) -> String {
    tributary_schemas::datanet::DatanetManifest::key(name)
}

/// Registers the Datanet a manifest describes (idempotent by name): stores the canonical
/// manifest in the lake, registers it on chain with its schema hash, appoints its validators,
/// and creates the lake's tables. Returns the id.
pub async fn create_from_manifest(
    chain: &Chain,
    lake: &tributary_lake::Lake,
    manifest: &tributary_schemas::datanet::DatanetManifest,
) -> Result<u64> {
    manifest.check()?;
    // Recorded on chain by its key, relative to the lake root.
    let key = manifest_key(&manifest.name);
    let spec = DatanetSpec {
        name: manifest.name.clone(),
        domain: manifest.domain.clone(),
        schema_hash: manifest.schema_hash(),
        metadata_uri: key.clone(),
    };
    // A Datanet of that name with other rules is refused before anything is written (its
    // manifest in a shared lake is not overwritten); with these rules, this is a rerun.
    let other_rules = |id: u64, owner| {
        Error::InvalidInput(format!(
            "a Datanet named {:?} already exists (id {id}, owned by {owner}) with other rules; \
             choose another name",
            manifest.name
        ))
    };
    if let Some(id) = by_name(chain, &manifest.name).await? {
        let (owner, on_chain_hash, _) = registered(chain, id).await?;
        if on_chain_hash != spec.schema_hash {
            return Err(other_rules(id, owner));
        }
    }
    let id = create(chain, &spec).await?;
    let (owner, on_chain_hash, _) = registered(chain, id).await?;
    if on_chain_hash != spec.schema_hash {
        // Created by someone else between the check above and ours.
        return Err(other_rules(id, owner));
    }
    // Written once the chain holds these rules under this name (a crash before it is
    // repaired by a rerun, which finds the same rules).
    lake.put(&key, manifest.to_canonical_json().into_bytes())
        .await?;
    let registry = chain.datanet_registry();
    for v in &manifest.access.validators {
        if !registry
            .isValidator(U256::from(id), *v)
            .call()
            .await
            .map_err(tributary_chain::Error::from)?
        {
            if owner != chain.signer() {
                return Err(Error::InvalidInput(format!(
                    "Datanet {:?} (id {id}) is owned by {owner}, and only its owner appoints \
                     validators ({v} is not one yet): sign with the owner's key",
                    manifest.name
                )));
            }
            send(registry.setValidator(U256::from(id), *v, true)).await?;
        }
    }
    for table in tributary_schemas::tables::names::ALL {
        lake.table(table).await?;
    }
    Ok(id)
}

/// A registered Datanet with its manifest, checked against the schema hash on chain.
#[derive(Debug, Clone)]
pub struct Registered {
    /// On-chain id.
    pub id: u64,
    /// Owner address.
    pub owner: alloy::primitives::Address,
    /// The manifest.
    pub manifest: tributary_schemas::datanet::DatanetManifest,
}

/// Finds a Datanet by name or numeric id and loads its manifest from the lake, refusing one
/// whose manifest does not hash to the schema hash registered on chain.
pub async fn load(
    chain: &Chain,
    lake: &tributary_lake::Lake,
    name_or_id: &str,
) -> Result<Registered> {
    let registry = chain.datanet_registry();
    let id = match name_or_id.parse::<u64>() {
        Ok(id) => id,
        Err(_) => registry
            .datanetIdByName(keccak256(name_or_id.as_bytes()))
            .call()
            .await
            .map_err(tributary_chain::Error::from)?
            .to::<u64>(),
    };
    if id == 0 {
        return Err(Error::InvalidInput(format!(
            "no Datanet named {name_or_id:?}: create it with `tributary datanet create MANIFEST.toml`"
        )));
    }
    let (owner, schema_hash, name) = registered(chain, id).await?;
    let bytes = lake.get(&manifest_key(&name)).await.map_err(|e| {
        Error::InvalidInput(format!(
            "Datanet {name:?} has no manifest in this lake ({e}): is --data-dir right?"
        ))
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidInput(format!("manifest of {name:?}: {e}")))?;
    let manifest: tributary_schemas::datanet::DatanetManifest = serde_json::from_value(value)
        .map_err(|e| Error::InvalidInput(format!("manifest of {name:?}: {e}")))?;
    if manifest.schema_hash() != schema_hash {
        return Err(Error::InvalidInput(format!(
            "the manifest of {name:?} in the lake does not match its schema hash on chain: it was altered"
        )));
    }
    Ok(Registered {
        id,
        owner,
        manifest,
    })
}

/// (owner, schema hash, name) of Datanet `id` on chain.
async fn registered(chain: &Chain, id: u64) -> Result<(alloy::primitives::Address, B256, String)> {
    let registry = chain.datanet_registry();
    let d = registry.datanet(U256::from(id)).call().await.map_err(|e| {
        let e = tributary_chain::Error::from(e);
        match e.revert::<DatanetRegistry::DatanetRegistryErrors>() {
            Some(_) => Error::InvalidInput(format!("no Datanet with id {id}")),
            None => e.into(),
        }
    })?;
    Ok((d.owner, d.schemaHash, d.name))
}
