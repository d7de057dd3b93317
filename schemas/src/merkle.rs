//! Merkle trees in OpenZeppelin's `StandardMerkleTree` layout.
//!
//! Leaves are double-hashed (`keccak256(keccak256(abi.encode(value)))`), pairs are hashed in
//! sorted order, and the tree is the same complete binary tree that
//! `@openzeppelin/merkle-tree` builds from sorted leaves, so roots and proofs match it and
//! verify with OpenZeppelin's (or our) `MerkleProof.verify`.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;

/// Leaf for a `bytes32` value (a contribution id, an inference id).
pub fn leaf_bytes32(value: B256) -> B256 {
    keccak256(keccak256(value.abi_encode()))
}

/// Leaf for an `(address, uint256)` pair (a reward claim).
pub fn leaf_account_amount(account: Address, amount: U256) -> B256 {
    keccak256(keccak256((account, amount).abi_encode()))
}

/// `keccak256` of the two nodes in ascending order.
pub fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// Folds `proof` into `leaf` and compares with `root`.
pub fn verify(proof: &[B256], root: B256, leaf: B256) -> bool {
    proof
        .iter()
        .fold(leaf, |node, sibling| hash_pair(node, *sibling))
        == root
}

/// A complete Merkle tree over hashed leaves, stored as an array (root at 0).
#[derive(Debug, Clone)]
pub struct MerkleTree {
    nodes: Vec<B256>,
    leaves: usize,
}

impl MerkleTree {
    /// Builds the tree over `leaves` (already leaf-hashed), sorted as OpenZeppelin does.
    /// An empty list gives the zero root.
    pub fn new(mut leaves: Vec<B256>) -> Self {
        leaves.sort_unstable();
        let n = leaves.len();
        if n == 0 {
            return Self {
                nodes: vec![B256::ZERO],
                leaves: 0,
            };
        }
        let len = 2 * n - 1;
        let mut nodes = vec![B256::ZERO; len];
        for (i, leaf) in leaves.into_iter().enumerate() {
            nodes[len - 1 - i] = leaf;
        }
        for i in (0..len - n).rev() {
            nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2]);
        }
        Self { nodes, leaves: n }
    }

    /// The root.
    pub fn root(&self) -> B256 {
        self.nodes[0]
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.leaves
    }

    /// True when the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.leaves == 0
    }

    /// The proof for `leaf`, or `None` when it is not in the tree.
    pub fn proof(&self, leaf: &B256) -> Option<Vec<B256>> {
        let first_leaf = self.nodes.len() - self.leaves;
        let at = first_leaf + self.nodes[first_leaf..].iter().position(|n| n == leaf)?;
        Some(self.proof_at(at))
    }

    fn proof_at(&self, mut i: usize) -> Vec<B256> {
        let mut proof = Vec::new();
        while i > 0 {
            let sibling = if i % 2 == 1 { i + 1 } else { i - 1 };
            proof.push(self.nodes[sibling]);
            i = (i - 1) / 2;
        }
        proof
    }
}
