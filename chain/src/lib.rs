//! The only Tributary code that talks to an EVM node.
//!
//! - [`anvil`]: a local anvil started as a child process on a free port (the embedded default),
//!   its state kept in the data directory, stopped when dropped.
//! - [`bindings`]: alloy `sol!` bindings generated from the committed artifacts in
//!   `contracts/out` (ABI + bytecode).
//! - [`deployment`]: deploy all contracts once and record where (addresses, chain id, block).
//! - [`Chain`]: a connected provider with a signer, retries with backoff, and typed calls that
//!   return receipts ([`send`]).
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

pub use client::{Chain, ChainConfig, send};
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
    /// A contract call reverted or could not be sent. Use [`Error::revert`] to decode it.
    #[error("contract call failed: {0}")]
    Contract(#[from] alloy::contract::Error),
    /// A transaction was mined but reverted.
    #[error("transaction {0} reverted")]
    Reverted(alloy::primitives::TxHash),
    /// A sent transaction was not mined in time.
    #[error("transaction {0} was not mined within 5 minutes")]
    ReceiptTimeout(alloy::primitives::TxHash),
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

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
