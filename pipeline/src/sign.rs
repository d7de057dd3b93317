//! EIP-712 signing of contributions (the typed data is documented in
//! `tributary_schemas::contribution`).

use alloy::primitives::{Address, Signature, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;
use serde_json::Value;
use tributary_schemas::canonical::content_hash;
use tributary_schemas::contribution::Contribution;

use crate::{Error, Result};

/// A contribution with its content and its contributor's signature.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The signed struct.
    pub contribution: Contribution,
    /// The record itself (its canonical JSON hashes to `contentHash`).
    pub content: Value,
    /// The contributor's signature over the EIP-712 digest.
    pub signature: Signature,
}

/// What a contributor signs besides the content.
#[derive(Debug, Clone)]
pub struct Terms {
    /// Datanet id.
    pub datanet_id: u64,
    /// SPDX license id.
    pub license: String,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    /// Per-contributor nonce.
    pub nonce: u64,
    /// The signature is void after this time (seconds since the Unix epoch).
    pub deadline: u64,
}

/// Signs `content` as `key`'s contribution under `domain`.
pub fn sign(
    key: &PrivateKeySigner,
    domain: &Eip712Domain,
    terms: &Terms,
    content: Value,
) -> Result<Signed> {
    let contribution = Contribution {
        datanetId: U256::from(terms.datanet_id),
        contributor: key.address(),
        contentHash: content_hash(&content),
        license: terms.license.clone(),
        timestamp: terms.timestamp,
        nonce: terms.nonce,
        deadline: terms.deadline,
    };
    let signature = key
        .sign_hash_sync(&contribution.signing_hash(domain))
        .map_err(|e| Error::InvalidInput(format!("cannot sign: {e}")))?;
    Ok(Signed {
        contribution,
        content,
        signature,
    })
}

impl Signed {
    /// The contributor.
    pub fn contributor(&self) -> Address {
        self.contribution.contributor
    }

    /// The pre-signed envelope `contribute` reads (one JSON Lines line): the content, the
    /// signed fields and the signature.
    pub fn envelope(&self) -> Value {
        let c = &self.contribution;
        serde_json::json!({
            "content": self.content,
            "contributor": c.contributor,
            "license": c.license,
            "timestamp": c.timestamp,
            "nonce": c.nonce,
            "deadline": c.deadline,
            "signature": alloy::primitives::Bytes::from(self.signature.as_bytes().to_vec()),
        })
    }
}
