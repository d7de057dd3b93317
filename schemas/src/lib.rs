//! Tributary's pure types: the shapes every other crate agrees on.
//!
//! - [`contribution`]: the EIP-712 `Contribution` a contributor signs; its struct hash is the
//!   contribution id, its signer the contributor.
//! - [`merkle`]: OpenZeppelin-compatible Merkle trees (double-hashed leaves, sorted pairs), so a
//!   proof made here verifies in `MerkleProof.verify` of any standard contract.
//! - [`datanet`]: the Datanet manifest (record schema, rules, licenses, dedup, access).
//! - [`tables`]: Arrow schemas of the lake's Delta tables.
//! - [`canonical`]: canonical JSON and content hashes.
//! - [`manifest`]: the manifests the chain commits to by hash (batches, inferences, snapshots,
//!   adapters).
//! - [`lineage`]: nodes and edges of the lineage graph, each with its chain position.
//!
//! No IO and no async here.
//!
//! ```
//! use tributary_schemas::merkle::{MerkleTree, leaf_bytes32};
//! use alloy::primitives::B256;
//!
//! let leaves: Vec<B256> = (0u8..5).map(|i| leaf_bytes32(B256::repeat_byte(i))).collect();
//! let tree = MerkleTree::new(leaves.clone());
//! let proof = tree.proof(&leaves[3]).unwrap();
//! assert!(tributary_schemas::merkle::verify(&proof, tree.root(), leaves[3]));
//! ```

pub mod canonical;
pub mod contribution;
pub mod datanet;
pub mod lineage;
pub mod manifest;
pub mod merkle;
pub mod tables;

pub use alloy::primitives::{Address, B256, U256};

/// Errors from building or checking Tributary's types.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A signature did not parse, was malleable, or recovered to another address.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// Content that cannot be made canonical (for example, not a JSON object).
    #[error("invalid content: {0}")]
    InvalidContent(String),
    /// A Datanet manifest is not valid; the message says what to change.
    #[error("invalid Datanet manifest: {0}")]
    InvalidManifest(String),
    /// JSON (de)serialisation failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Arrow failed to build a batch; this is a bug in Tributary.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
