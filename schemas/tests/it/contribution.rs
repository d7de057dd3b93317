use alloy::primitives::{Address, B256, U256, address};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use tributary_schemas::contribution::{Contribution, domain};

const REGISTRY: Address = address!("0x5FbDB2315678afecb367f032d93F642f64180aa3");

fn sample(contributor: Address) -> Contribution {
    Contribution {
        datanetId: U256::from(1),
        contributor,
        contentHash: B256::repeat_byte(0xab),
        license: "CC-BY-4.0".into(),
        timestamp: 1_700_000_000,
        nonce: 1,
        deadline: 1_900_000_000,
    }
}

#[test]
fn a_signature_by_the_contributor_verifies() {
    let key = PrivateKeySigner::random();
    let c = sample(key.address());
    let d = domain(31337, REGISTRY);
    let sig = key.sign_hash_sync(&c.signing_hash(&d)).unwrap();
    c.verify(&d, &sig).unwrap();
}

#[test]
fn foreign_chain_contract_signer_and_high_s_are_refused() {
    let key = PrivateKeySigner::random();
    let c = sample(key.address());
    let d = domain(31337, REGISTRY);
    let sig = key.sign_hash_sync(&c.signing_hash(&d)).unwrap();

    let other_chain = domain(1, REGISTRY);
    assert!(
        c.verify(&other_chain, &sig).is_err(),
        "replay from another chain"
    );
    let other_contract = domain(31337, Address::repeat_byte(1));
    assert!(
        c.verify(&other_contract, &sig).is_err(),
        "replay to another registry"
    );

    let other = PrivateKeySigner::random();
    let forged = other.sign_hash_sync(&c.signing_hash(&d)).unwrap();
    let err = c.verify(&d, &forged).unwrap_err().to_string();
    assert!(err.contains("signed by"), "{err}");

    // the same signature with s' = n - s and the parity flipped recovers the same key: refused
    let n = U256::from_str_radix(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        16,
    )
    .unwrap();
    let high = alloy::primitives::Signature::new(sig.r(), n - sig.s(), !sig.v());
    let err = c.verify(&d, &high).unwrap_err().to_string();
    assert!(err.contains("high-s"), "{err}");
}

#[test]
fn the_id_is_the_struct_hash_and_changes_with_any_field() {
    let c = sample(Address::repeat_byte(2));
    let mut d = c.clone();
    d.nonce += 1;
    assert_ne!(c.id(), d.id());
    assert_eq!(c.id(), sample(Address::repeat_byte(2)).id());
}

/// A manifest entry is checked from the manifest alone: its fields with the batch's Datanet
/// and its proof give back its id, and the signature is its contributor's. An anchorer cannot
/// list a contribution under another Datanet, alter it, or name someone who did not sign it.
#[test]
fn a_manifest_entry_proves_its_contributor_signed_it_for_this_datanet() {
    use tributary_schemas::manifest::{BatchManifest, EntryProof, ManifestEntry};

    let key = PrivateKeySigner::random();
    let c = sample(key.address());
    let d = domain(31337, REGISTRY);
    let sig = key.sign_hash_sync(&c.signing_hash(&d)).unwrap();
    let entry = ManifestEntry {
        id: c.id(),
        contributor: c.contributor,
        content_hash: c.contentHash,
        license: c.license.clone(),
        timestamp: c.timestamp,
        proof: Some(EntryProof {
            nonce: c.nonce,
            deadline: c.deadline,
            signature: sig.as_bytes().to_vec().into(),
        }),
    };
    let proof = entry.proof.clone().unwrap();
    let sep = d.separator();
    entry.check(1, &proof, sep).unwrap();

    let err = entry.check(2, &proof, sep).unwrap_err();
    assert!(err.contains("not a contribution to Datanet 2"), "{err}");
    let altered = ManifestEntry {
        license: "MIT".into(),
        ..entry.clone()
    };
    assert!(
        altered
            .check(1, &proof, sep)
            .unwrap_err()
            .contains("hash to")
    );
    let other_nonce = EntryProof {
        nonce: 2,
        ..proof.clone()
    };
    assert!(entry.check(1, &other_nonce, sep).is_err());

    // Someone else's signature over the same contribution, naming `key` as contributor.
    let other = PrivateKeySigner::random();
    let forged = EntryProof {
        signature: other
            .sign_hash_sync(&c.signing_hash(&d))
            .unwrap()
            .as_bytes()
            .to_vec()
            .into(),
        ..proof.clone()
    };
    let err = entry.check(1, &forged, sep).unwrap_err();
    assert!(err.contains("not signed by its contributor"), "{err}");
    let garbled = EntryProof {
        signature: vec![1u8; 3].into(),
        ..proof.clone()
    };
    assert!(
        entry
            .check(1, &garbled, sep)
            .unwrap_err()
            .contains("malformed")
    );
    // Another registry's domain.
    let elsewhere = domain(31337, Address::repeat_byte(1)).separator();
    assert!(entry.check(1, &proof, elsewhere).is_err());

    // An entry without its proof serialises as before proofs existed, byte for byte.
    let legacy = ManifestEntry {
        proof: None,
        ..entry.clone()
    };
    let m = BatchManifest {
        datanet_id: 1,
        batch_id: B256::ZERO,
        table: "contributions".into(),
        lake_version: 0,
        contributions: vec![entry],
    };
    let text = String::from_utf8(m.without_proofs().to_bytes()).unwrap();
    assert!(!text.contains("proof"), "{text}");
    assert_eq!(m.without_proofs().contributions, vec![legacy]);
    let back: BatchManifest = serde_json::from_slice(&m.to_bytes()).unwrap();
    assert_eq!(back, m);
}
