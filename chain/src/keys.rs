//! Signing keys: from the environment or a file, or well-known development keys.

use std::path::Path;

use alloy::primitives::{B256, keccak256};
use alloy::signers::local::PrivateKeySigner;

use crate::{Error, Result};

/// Anvil's first default account (public knowledge; only for local chains).
pub const ANVIL_DEV_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// Parses a hex private key (with or without `0x`).
pub fn parse_key(text: &str) -> Result<PrivateKeySigner> {
    text.trim().parse::<PrivateKeySigner>().map_err(|e| {
        Error::Config(format!(
            "not a private key ({e}): expected 64 hex digits, optionally prefixed with 0x"
        ))
    })
}

/// Reads a hex private key from a file.
pub fn key_from_file(path: &Path) -> Result<PrivateKeySigner> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    parse_key(&text)
}

/// The `i`-th development contributor key: `keccak256("tributary-dev-contributor-{i}")`.
/// Deterministic, so demo runs and tests name the same contributors; never for real funds.
pub fn dev_contributor(i: usize) -> PrivateKeySigner {
    let secret: B256 = keccak256(format!("tributary-dev-contributor-{i}"));
    PrivateKeySigner::from_bytes(&secret).expect("a keccak output is a valid secp256k1 key")
}
