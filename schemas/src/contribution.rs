//! The EIP-712 typed data a contributor signs.
//!
//! Domain: `{ name: "Tributary", version: "1", chainId, verifyingContract: DatanetRegistry }`.
//! Type (any EIP-712 wallet can sign it with `eth_signTypedData_v4`):
//!
//! ```text
//! Contribution(uint256 datanetId,address contributor,bytes32 contentHash,string license,
//!              uint64 timestamp,uint64 nonce,uint64 deadline)
//! ```
//!
//! The contribution id is the struct hash; the signer must be `contributor`.
//! [`Contribution::verify`] refuses high-s (malleable) signatures and recovers the signer with
//! libsecp256k1.

use alloy::primitives::{Address, B256, Signature, U256};
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct, eip712_domain};

use crate::{Error, Result};

sol! {
    /// A contribution as signed by its contributor (EIP-712 struct).
    #[derive(Debug, PartialEq, Eq)]
    struct Contribution {
        uint256 datanetId;
        address contributor;
        bytes32 contentHash;
        string license;
        uint64 timestamp;
        uint64 nonce;
        uint64 deadline;
    }
}

/// Half the secp256k1 group order: signatures with a larger `s` are malleable and refused.
const SECP256K1_HALF_N: U256 = U256::from_limbs([
    0xDFE92F46681B20A0,
    0x5D576E7357A4501D,
    0xFFFFFFFFFFFFFFFF,
    0x7FFFFFFFFFFFFFFF,
]);

/// The address that signed `prehash`, recovered with libsecp256k1 (about 5x faster than the
/// pure-Rust k256 here, see BENCHMARKS.md).
pub fn recover(prehash: &B256, signature: &Signature) -> Result<Address> {
    use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
    let bad = |e: secp256k1::Error| Error::InvalidSignature(e.to_string());
    let id = RecoveryId::try_from(signature.v() as i32).map_err(bad)?;
    let mut rs = [0u8; 64];
    rs[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
    rs[32..].copy_from_slice(&signature.s().to_be_bytes::<32>());
    let sig = RecoverableSignature::from_compact(&rs, id).map_err(bad)?;
    let key = secp256k1::global::SECP256K1
        .recover_ecdsa(secp256k1::Message::from_digest(prehash.0), &sig)
        .map_err(bad)?;
    let uncompressed = key.serialize_uncompressed();
    Ok(Address::from_slice(
        &alloy::primitives::keccak256(&uncompressed[1..])[12..],
    ))
}

/// The EIP-712 domain of contributions to the registry at `registry` on chain `chain_id`.
pub fn domain(chain_id: u64, registry: Address) -> Eip712Domain {
    eip712_domain! {
        name: "Tributary",
        version: "1",
        chain_id: chain_id,
        verifying_contract: registry,
    }
}

impl Contribution {
    /// The contribution id: the EIP-712 struct hash.
    pub fn id(&self) -> B256 {
        self.eip712_hash_struct()
    }

    /// The digest a wallet signs under `domain`.
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        self.eip712_signing_hash(domain)
    }

    /// Checks that `signature` is a low-s signature by `self.contributor` under `domain`.
    pub fn verify(&self, domain: &Eip712Domain, signature: &Signature) -> Result<()> {
        self.verify_prehashed(self.id(), domain.separator(), signature)
    }

    /// [`Contribution::verify`] with the struct hash (`id`, which must be [`Contribution::id`])
    /// and the domain separator already computed: the hot path of ingest hashes each once.
    pub fn verify_prehashed(
        &self,
        id: B256,
        domain_separator: B256,
        signature: &Signature,
    ) -> Result<()> {
        if signature.s() > SECP256K1_HALF_N {
            return Err(Error::InvalidSignature(
                "high-s (malleable) signature; normalise s to the lower half".into(),
            ));
        }
        let mut digest = [0u8; 66];
        digest[..2].copy_from_slice(&[0x19, 0x01]);
        digest[2..34].copy_from_slice(domain_separator.as_slice());
        digest[34..].copy_from_slice(id.as_slice());
        let signer = recover(&alloy::primitives::keccak256(digest), signature)?;
        if signer != self.contributor {
            return Err(Error::InvalidSignature(format!(
                "signed by {signer}, but the contribution names {} as contributor",
                self.contributor
            )));
        }
        Ok(())
    }
}
