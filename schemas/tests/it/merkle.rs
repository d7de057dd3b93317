use alloy::primitives::{B256, keccak256};
use proptest::prelude::*;
use tributary_schemas::merkle::{MerkleTree, hash_pair, leaf_bytes32, verify};

fn leaves(n: usize, seed: u64) -> Vec<B256> {
    (0..n)
        .map(|i| leaf_bytes32(keccak256(format!("{seed}:{i}"))))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_proof_verifies_and_tampering_fails(n in 1usize..=1025, seed in any::<u64>(), pick in any::<usize>()) {
        let leaves = leaves(n, seed);
        let tree = MerkleTree::new(leaves.clone());
        let leaf = leaves[pick % n];
        let proof = tree.proof(&leaf).expect("leaf is in the tree");
        prop_assert!(verify(&proof, tree.root(), leaf));

        // a leaf that is not in the tree
        prop_assert!(!verify(&proof, tree.root(), keccak256(leaf)));
        // a wrong root
        prop_assert!(!verify(&proof, keccak256(tree.root()), leaf));
        // a tampered proof element
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = pick % bad.len();
            bad[k] = keccak256(bad[k]);
            prop_assert!(!verify(&bad, tree.root(), leaf));
        }
    }

    #[test]
    fn root_does_not_depend_on_leaf_order(n in 1usize..200, seed in any::<u64>()) {
        let mut l = leaves(n, seed);
        let a = MerkleTree::new(l.clone()).root();
        l.reverse();
        prop_assert_eq!(a, MerkleTree::new(l).root());
    }
}

#[test]
fn matches_openzeppelin_layout_for_three_leaves() {
    // OpenZeppelin's StandardMerkleTree sorts the leaves, stores them at the end of the array
    // in reverse and hashes children 2i+1 and 2i+2: for sorted [a, b, c] the array is
    // [root, n1, c, b, a] with n1 = hash(b, a) and root = hash(n1, c).
    let mut l = leaves(3, 7);
    l.sort();
    let (a, b, c) = (l[0], l[1], l[2]);
    let n1 = hash_pair(b, a);
    let root = hash_pair(n1, c);
    assert_eq!(MerkleTree::new(vec![c, a, b]).root(), root);
    assert_eq!(MerkleTree::new(vec![a]).root(), a);
    assert_eq!(
        MerkleTree::new(vec![a]).proof(&a).unwrap(),
        Vec::<B256>::new()
    );
}
