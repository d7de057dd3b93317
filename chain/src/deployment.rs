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
        save_json(data_dir, &Self::path(data_dir), self)
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

/// Writes `value` as pretty JSON to `path` in `data_dir` atomically (temp file + rename).
fn save_json(data_dir: &Path, path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Hash of block `number` of `provider`'s chain, if it has one.
async fn block_hash(provider: &DynProvider, number: u64) -> Result<Option<B256>> {
    let block = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Number(number))
        .await?;
    Ok(block.map(|b| b.header.hash))
}

/// A deployment under way (`deployment.partial.json` in the data directory): the contracts
/// deployed so far, in deployment order, recorded as each receipt comes in, so a rerun after a
/// kill or a failure goes on from there instead of deploying them again. Removed once the
/// deployment record is saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Partial {
    chain_id: u64,
    deployer: Address,
    /// The block of the first contract (the registry) and its hash.
    start_block: u64,
    start_block_hash: B256,
    /// DatanetRegistry, ModelRegistry, InferenceLedger, RewardToken, RewardDistributor: the
    /// ones deployed so far.
    contracts: Vec<Address>,
}

impl Partial {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("deployment.partial.json")
    }

    /// The record of a deployment `deployer` left unfinished on `provider`'s chain, when every
    /// contract it lists is there (not on a chain since reset, say).
    async fn resumable(
        data_dir: &Path,
        provider: &DynProvider,
        chain_id: u64,
        deployer: Address,
    ) -> Result<Option<Self>> {
        let path = Self::path(data_dir);
        let p: Self = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "an unreadable record of an unfinished deployment: deploying afresh");
                    return Ok(None);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        if p.chain_id != chain_id
            || p.deployer != deployer
            || block_hash(provider, p.start_block).await? != Some(p.start_block_hash)
        {
            return Ok(None);
        }
        for address in &p.contracts {
            if provider.get_code_at(*address).await?.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(p))
    }

    fn save(&self, data_dir: &Path) -> Result<()> {
        save_json(data_dir, &Self::path(data_dir), self)
    }
}

/// Deploys all contracts from `provider`'s signer, wires roles (the distributor may mint the
/// token), saves the record in `data_dir` and returns it. A deployment stopped part way by the
/// same signer on the same chain (killed, or a receipt that timed out) is taken up where it
/// stopped: the contracts already deployed are kept, so a rerun deploys only the rest (and at
/// most the one whose receipt was awaited when it stopped, again).
pub async fn deploy_all(
    provider: &DynProvider,
    deployer: Address,
    data_dir: &Path,
) -> Result<Deployment> {
    let chain_id = provider.get_chain_id().await?;
    let resumed = Partial::resumable(data_dir, provider, chain_id, deployer).await?;
    if let Some(p) = &resumed {
        tracing::info!(
            done = p.contracts.len(),
            "taking up a deployment stopped part way: its contracts are kept"
        );
    }
    let mut partial = resumed.unwrap_or(Partial {
        chain_id,
        deployer,
        start_block: 0,
        start_block_hash: B256::ZERO,
        contracts: Vec::new(),
    });

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
    if partial.contracts.is_empty() {
        let receipt = send(DatanetRegistry::deploy_builder(provider.clone())).await?;
        let block = receipt.block_number.ok_or_else(|| {
            Error::Config(format!(
                "the receipt of {} names no block",
                receipt.transaction_hash
            ))
        })?;
        partial.start_block = block;
        partial.start_block_hash = block_hash(provider, block)
            .await?
            .ok_or_else(|| Error::Config(format!("the node has no block {block}")))?;
        partial.contracts.push(deployed(receipt)?);
        partial.save(data_dir)?;
    }
    // The rest, in order, each recorded once deployed.
    while partial.contracts.len() < 5 {
        let receipt = match partial.contracts.len() {
            1 => send(ModelRegistry::deploy_builder(provider.clone(), deployer)).await?,
            2 => send(InferenceLedger::deploy_builder(provider.clone(), deployer)).await?,
            3 => send(RewardToken::deploy_builder(provider.clone(), deployer)).await?,
            _ => {
                let token = partial.contracts[3];
                send(RewardDistributor::deploy_builder(
                    provider.clone(),
                    deployer,
                    token,
                ))
                .await?
            }
        };
        partial.contracts.push(deployed(receipt)?);
        partial.save(data_dir)?;
    }
    let [registry, models, ledger, token, distributor] = partial.contracts[..] else {
        unreachable!("five contracts recorded above");
    };
    let token = RewardToken::new(token, provider.clone());
    let minter = token.MINTER_ROLE().call().await?;
    if !token.hasRole(minter, distributor).call().await? {
        send(token.grantRole(minter, distributor)).await?;
    }

    let d = Deployment {
        chain_id,
        start_block_hash: partial.start_block_hash,
        deployer,
        start_block: partial.start_block,
        datanet_registry: registry,
        model_registry: models,
        inference_ledger: ledger,
        reward_token: *token.address(),
        reward_distributor: distributor,
    };
    d.save(data_dir)?;
    let path = Partial::path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::Io { path, source }),
    }
    tracing::info!(chain_id, registry = %d.datanet_registry, "contracts deployed");
    Ok(d)
}
