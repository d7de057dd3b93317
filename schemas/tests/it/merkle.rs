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

/// The same roots and proofs as OpenZeppelin's own `@openzeppelin/merkle-tree` (installed by
/// `scripts/setup.sh`), for `bytes32` leaves and `(address, uint256)` leaves.
#[test]
fn matches_openzeppelin_merkle_tree_js() {
    use alloy::primitives::{Address, U256};
    let modules = std::env::var("TRIBUTARY_NODE_MODULES")
        .expect("TRIBUTARY_NODE_MODULES is set by `make test` (scripts/setup.sh)");
    let script = r#"
        const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
        const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
        const out = input.map(({ types, values }) => {
            const t = StandardMerkleTree.of(values, types);
            return { root: t.root, proofs: values.map((_, i) => t.getProof(i)) };
        });
        console.log(JSON.stringify(out));
    "#;
    let sizes = [1usize, 2, 3, 5, 8, 13, 100];
    let ids: Vec<Vec<B256>> = sizes
        .iter()
        .map(|&n| (0..n).map(|i| keccak256(format!("oz{n}/{i}"))).collect())
        .collect();
    let pays: Vec<(Address, U256)> = (0..7u8)
        .map(|i| {
            (
                Address::repeat_byte(i + 1),
                U256::from(1000u64 * (i as u64 + 1)),
            )
        })
        .collect();
    let mut input: Vec<serde_json::Value> = ids
        .iter()
        .map(|v| serde_json::json!({ "types": ["bytes32"], "values": v.iter().map(|id| vec![id.to_string()]).collect::<Vec<_>>() }))
        .collect();
    input.push(serde_json::json!({
        "types": ["address", "uint256"],
        "values": pays.iter().map(|(a, v)| vec![a.to_string(), v.to_string()]).collect::<Vec<_>>(),
    }));

    let mut child = std::process::Command::new("node")
        .args(["-e", script])
        .env("NODE_PATH", &modules)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node failed");
    let oz: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();

    let check = |tree: &MerkleTree, leaves: &[B256], oz: &serde_json::Value| {
        assert_eq!(tree.root().to_string(), oz["root"].as_str().unwrap());
        for (i, leaf) in leaves.iter().enumerate() {
            let ours: Vec<String> = tree
                .proof(leaf)
                .unwrap()
                .iter()
                .map(|h| h.to_string())
                .collect();
            let theirs: Vec<String> = serde_json::from_value(oz["proofs"][i].clone()).unwrap();
            assert_eq!(ours, theirs, "proof {i}");
        }
    };
    for (k, v) in ids.iter().enumerate() {
        let leaves: Vec<B256> = v.iter().map(|id| leaf_bytes32(*id)).collect();
        check(&MerkleTree::new(leaves.clone()), &leaves, &oz[k]);
    }
    let leaves: Vec<B256> = pays
        .iter()
        .map(|(a, v)| tributary_schemas::merkle::leaf_account_amount(*a, *v))
        .collect();
    check(&MerkleTree::new(leaves.clone()), &leaves, &oz[ids.len()]);
}
