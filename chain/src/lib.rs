//! The only Tributary code that talks to an EVM node.
//!
//! - [`anvil`]: a local anvil started as a child process on a free port (the embedded default),
//!   its state kept in the data directory, stopped with SIGTERM when dropped (so it dumps its
//!   state) and when the process that started it dies (`PR_SET_PDEATHSIG`).
//! - [`bindings`]: alloy `sol!` bindings generated from the committed artifacts in
//!   `contracts/out` (ABI + bytecode).
//! - [`deployment`]: deploy all contracts once and record where (addresses, chain id, start
//!   block and its hash).
//! - [`keys`]: signing keys from the environment, a file, or anvil's development keys.
//! - [`Chain`]: a connected provider with a signer, retries with backoff, and typed calls that
//!   return receipts ([`send`]).
//!
//! Requests that fail transiently (429 with or without `Retry-After`, other 5xx, timeouts,
//! dropped connections, bodies cut short) are retried with a jittered backoff; a request
//! times out after 30 s by default. Under the retry layer an optional rate limit
//! (`--rpc-rate`) spaces every attempt. `ws://` URLs use alloy's WebSocket transport for
//! everything, and [`Chain::new_heads`] subscribes to `newHeads` there (over HTTP it is
//! `None` and callers poll). [`Chain::connect`] uses a configured deployment as given, deploys
//! only on the embedded anvil, a dev chain (31337) or when asked (`tributary deploy`), and
//! connects read-only without a key. The nonce is read from the node for every transaction,
//! and [`send`] retries a nonce another process took and returns a receipt or a decodable
//! revert.
//!
//! ```no_run
//! # async fn f() -> tributary_chain::Result<()> {
//! use tributary_chain::{Chain, ChainConfig};
//! let chain = Chain::connect(ChainConfig::embedded("./.tributary")).await?;
//! println!("chain {} at block {}", chain.chain_id(), chain.head().await?);
//! # Ok(()) }
//! ```

pub mod anvil;
pub mod bindings;
mod client;
pub mod deployment;
pub mod keys;
mod ratelimit;
mod resend;

pub use client::{Chain, ChainConfig, LOG_SPAN, send};
pub use deployment::Deployment;

/// Errors from talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's configuration is wrong; the message says how to fix it.
    #[error("{0}")]
    Config(String),
    /// The local anvil could not be started or stopped.
    #[error("anvil: {0}")]
    Anvil(String),
    /// A contract call reverted or could not be sent. A revert with one of Tributary's
    /// contract errors reads as that error, by name and arguments; [`Error::revert`] decodes
    /// it for matching.
    #[error("contract call failed: {}", named(.0))]
    Contract(#[from] alloy::contract::Error),
    /// A transaction was mined but reverted.
    #[error("transaction {0} reverted")]
    Reverted(alloy::primitives::TxHash),
    /// A sent transaction was not mined within the receipt timeout (seconds).
    #[error(
        "transaction {0} was not mined within {1} s: is the chain producing blocks (or is a \
         transaction of this account stuck ahead of it, or its gas price too low)? Wait longer \
         with TRIBUTARY_RECEIPT_TIMEOUT=SECONDS"
    )]
    ReceiptTimeout(alloy::primitives::TxHash, u64),
    /// The RPC endpoint failed (after retries).
    #[error("rpc: {0}")]
    Rpc(#[from] alloy::transports::TransportError),
    /// Reading or writing the deployment record failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The deployment record is not valid JSON.
    #[error("deployment record: {0}")]
    Json(#[from] serde_json::Error),
    /// A contract's log did not decode as the event it was filtered for.
    #[error("event log does not decode: {0}")]
    Event(#[from] alloy::sol_types::Error),
}

impl Error {
    /// The contract's custom error, when this is a revert of a call to a contract with error
    /// enum `E` (for example `DatanetRegistry::DatanetRegistryErrors`).
    pub fn revert<E: alloy::sol_types::SolInterface>(&self) -> Option<E> {
        match self {
            Error::Contract(e) => e.as_decoded_interface_error::<E>(),
            _ => None,
        }
    }
}

/// A contract call's failure, with a revert decoded against every Tributary contract's
/// errors (their selectors do not collide except where two contracts declare the same error,
/// which then reads the same either way).
fn named(e: &alloy::contract::Error) -> String {
    use bindings::*;
    fn as_<E: alloy::sol_types::SolInterface + std::fmt::Debug>(
        e: &alloy::contract::Error,
    ) -> Option<String> {
        e.as_decoded_interface_error::<E>()
            .map(|x| format!("reverted with {x:?}"))
    }
    if let Some(m) = e.as_decoded_error::<ModelRegistry::MissingRole>() {
        return missing_role(m.role, m.account);
    }
    as_::<DatanetRegistry::DatanetRegistryErrors>(e)
        .or_else(|| as_::<ModelRegistry::ModelRegistryErrors>(e))
        .or_else(|| as_::<InferenceLedger::InferenceLedgerErrors>(e))
        .or_else(|| as_::<RewardDistributor::RewardDistributorErrors>(e))
        .or_else(|| as_::<RewardToken::RewardTokenErrors>(e))
        .unwrap_or_else(|| e.to_string())
}

/// `MissingRole` (every contract's roles revert with it) by the role's name, the contract
/// that holds it and how it is granted.
fn missing_role(role: alloy::primitives::B256, account: alloy::primitives::Address) -> String {
    let (name, contract) = [
        ("PUBLISHER_ROLE", "the ModelRegistry"),
        ("RECORDER_ROLE", "the InferenceLedger"),
        ("DISTRIBUTOR_ROLE", "the RewardDistributor"),
        ("MINTER_ROLE", "the RewardToken"),
        ("ADMIN_ROLE", "the contract"),
    ]
    .into_iter()
    .find(|(name, _)| alloy::primitives::keccak256(name) == role)
    .unwrap_or(("an unknown role", "the contract"));
    format!(
        "reverted with MissingRole({role}, {account}): {account} lacks {name} on {contract}; an \
         account with ADMIN_ROLE there grants it: grantRole(keccak256(\"{name}\"), {account})"
    )
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
