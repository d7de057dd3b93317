//! Deploying Tributary's contracts once and recording where they are.

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use serde::{Deserialize, Serialize};

use crate::bindings::{
    DatanetRegistry, InferenceLedger, ModelRegistry, RewardDistributor, RewardToken,
};
use crate::{Error, Result, send};

/// Where Tributary's contracts live on one chain. Saved as `deployment.json` in the data
/// directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Hash of `start_block`: tells two chains with the same id apart (a fresh anvil, say).
    /// (Not block 0: anvil gives a reloaded chain a new genesis block.)
    pub start_block_hash: B256,
    /// The account that deployed and administers the contracts.
    pub deployer: Address,
    /// The block of the first deployment transaction: indexers start here.
    pub start_block: u64,
    /// DatanetRegistry.
    pub datanet_registry: Address,
    /// ModelRegistry.
    pub model_registry: Address,
    /// InferenceLedger.
    pub inference_ledger: Address,
    /// RewardToken.
    pub reward_token: Address,
    /// RewardDistributor.
    pub reward_distributor: Address,
}

impl Deployment {
    /// The record's path in a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("deployment.json")
    }

    /// Reads the record, or `None` when there is none.
    pub fn load(data_dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Writes the record atomically (temp file + rename).
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = Self::path(data_dir);
        let tmp = path.with_extension("json.tmp");
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// All contract addresses, for log filters.
    pub fn addresses(&self) -> [Address; 5] {
        [
            self.datanet_registry,
            self.model_registry,
            self.inference_ledger,
            self.reward_token,
            self.reward_distributor,
        ]
    }

    /// True when this record describes `provider`'s chain and the registry's code is there.
    /// A zero chain id or start block hash (a deployment named by configuration, which may
    /// leave them out) is not checked.
    pub async fn is_live_on(&self, provider: &DynProvider) -> Result<bool> {
        if self.chain_id != 0 && provider.get_chain_id().await? != self.chain_id {
            return Ok(false);
        }
        if self.start_block_hash != B256::ZERO
            && block_hash(provider, self.start_block).await? != Some(self.start_block_hash)
        {
            return Ok(false);
        }
        Ok(!provider
            .get_code_at(self.datanet_registry)
            .await?
            .is_empty())
    }
}

/// Hash of block `number` of `provider`'s chain, if it has one.
async fn block_hash(provider: &DynProvider, number: u64) -> Result<Option<B256>> {
    let block = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Number(number))
        .await?;
    Ok(block.map(|b| b.header.hash))
}

/// Deploys all contracts from `provider`'s signer, wires roles (the distributor may mint the
/// token), and returns the record.
pub async fn deploy_all(provider: &DynProvider, deployer: Address) -> Result<Deployment> {
    let chain_id = provider.get_chain_id().await?;

    // Each deployment waits for its receipt as `send` does, so a chain that mines nothing
    // fails within the receipt timeout instead of hanging.
    let deployed = |receipt: alloy::rpc::types::TransactionReceipt| {
        receipt.contract_address.ok_or_else(|| {
            Error::Config(format!(
                "transaction {} deployed no contract",
                receipt.transaction_hash
            ))
        })
    };
    let registry = deployed(send(DatanetRegistry::deploy_builder(provider.clone())).await?)?;
    let start_block = provider.get_block_number().await?;
    let start_block_hash = block_hash(provider, start_block)
        .await?
        .ok_or_else(|| Error::Config(format!("the node has no block {start_block}")))?;
    let models = deployed(send(ModelRegistry::deploy_builder(provider.clone(), deployer)).await?)?;
    let ledger =
        deployed(send(InferenceLedger::deploy_builder(provider.clone(), deployer)).await?)?;
    let token = RewardToken::new(
        deployed(send(RewardToken::deploy_builder(provider.clone(), deployer)).await?)?,
        provider.clone(),
    );
    let distributor = deployed(
        send(RewardDistributor::deploy_builder(
            provider.clone(),
            deployer,
            *token.address(),
        ))
        .await?,
    )?;
    let minter = token.MINTER_ROLE().call().await?;
    send(token.grantRole(minter, distributor)).await?;

    let d = Deployment {
        chain_id,
        start_block_hash,
        deployer,
        start_block,
        datanet_registry: registry,
        model_registry: models,
        inference_ledger: ledger,
        reward_token: *token.address(),
        reward_distributor: distributor,
    };
    tracing::info!(chain_id, registry = %d.datanet_registry, "contracts deployed");
    Ok(d)
}
