use alloy::primitives::Address;
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolEvent, SolInterface};
use tributary_chain::{Chain, ChainConfig};

/// anvil's default accounts #1 and #2 (funded on every anvil).
pub(crate) const ALICE: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
pub(crate) const BOB: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

pub(crate) struct Env {
    pub(crate) chain: Chain,
    pub(crate) dir: tempfile::TempDir,
}

/// A fresh anvil with the contracts deployed.
pub(crate) async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::connect(ChainConfig::embedded(dir.path()))
        .await
        .expect("anvil starts and contracts deploy");
    Env { chain, dir }
}

pub(crate) fn key(hex: &str) -> PrivateKeySigner {
    hex.parse().unwrap()
}

impl Env {
    /// A provider signing as `hex`.
    pub(crate) fn as_key(&self, hex: &str) -> (DynProvider, Address) {
        let k = key(hex);
        let a = k.address();
        (self.chain.with_signer(k), a)
    }
}

/// The single event of type `E` in `receipt`.
pub(crate) fn event<E: SolEvent>(receipt: &TransactionReceipt) -> E {
    let mut found: Vec<E> = receipt
        .inner
        .logs()
        .iter()
        .filter_map(|l| E::decode_log(&l.inner).ok().map(|l| l.data))
        .collect();
    assert_eq!(found.len(), 1, "expected one {} event", E::SIGNATURE);
    found.pop().unwrap()
}

/// The custom error a call reverted with.
pub(crate) fn revert<E: SolInterface + std::fmt::Debug, T: std::fmt::Debug>(
    r: tributary_chain::Result<T>,
) -> E {
    let err = r.expect_err("the call should revert");
    let decoded = err
        .revert::<E>()
        .unwrap_or_else(|| panic!("not a decodable revert: {err}"));
    // The error's message names the contract error, not its raw bytes.
    let debug = format!("{decoded:?}");
    let name = debug.split('(').next().unwrap();
    assert!(
        err.to_string().contains(&format!("reverted with {name}(")),
        "{err} does not name {name}"
    );
    decoded
}
