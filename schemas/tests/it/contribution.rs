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
