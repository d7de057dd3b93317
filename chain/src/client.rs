//! A connection to a chain with Tributary's contracts deployed on it.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use alloy::contract::CallBuilder;
use alloy::network::{Ethereum, EthereumWallet};
use alloy::primitives::Address;
use alloy::providers::WsConnect;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::ClientBuilder;
use alloy::rpc::types::{Filter, Log, TransactionReceipt};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::layers::RetryBackoffLayer;
use futures::{Stream, StreamExt};
use url::Url;

use crate::anvil::{AnvilOptions, LocalAnvil};
use crate::bindings::{
    DatanetRegistry, InferenceLedger, ModelRegistry, RewardDistributor, RewardToken,
};
use crate::deployment::{Deployment, deploy_all};
use crate::keys::{ANVIL_DEV_KEY, parse_key};
use crate::ratelimit::RateLimitLayer;
use crate::{Error, Result};

/// How to reach the chain.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// JSON-RPC endpoint; `None` starts a local anvil (state kept under `data_dir/anvil`).
    pub rpc_url: Option<Url>,
    /// Where the deployment record (and the embedded anvil's state) live.
    pub data_dir: PathBuf,
    /// The signer; `None` uses anvil's first dev key, and only on a local chain (id 31337).
    pub signer: Option<PrivateKeySigner>,
    /// Retries of a request that failed with a transient error (429, 5xx, timeouts).
    pub max_retries: u32,
    /// Base backoff between retries, in milliseconds (a random jitter of up to as much again
    /// is added; a server's `Retry-After` takes precedence).
    pub backoff_ms: u64,
    /// How long one request may take before it is abandoned and retried (HTTP).
    pub request_timeout: std::time::Duration,
    /// At most this many requests a second, retries included (`None`: no limit).
    pub max_requests_per_second: Option<f64>,
    /// The contracts to use, when configuration names them (`[chain]`, `--deployment`):
    /// checked to be on this chain, never replaced by a fresh deployment.
    pub deployment: Option<Deployment>,
    /// Only reads: no signer key is needed (a given one is still used). Without a signer,
    /// [`Chain::signer`] is the zero address and transactions fail.
    pub read_only: bool,
    /// Deploy a fresh set of contracts when none is known for this chain. Without it, only
    /// the embedded anvil and a local dev chain (id 31337) get one; on any other chain an
    /// unknown deployment is an error, never a silent fresh deployment.
    pub allow_deploy: bool,
}

impl ChainConfig {
    /// The embedded default: a local anvil with its state in `data_dir`.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            rpc_url: None,
            data_dir: data_dir.into(),
            signer: None,
            max_retries: 10,
            backoff_ms: 200,
            request_timeout: std::time::Duration::from_secs(30),
            max_requests_per_second: None,
            deployment: None,
            read_only: false,
            allow_deploy: false,
        }
    }

    /// A remote or already-running node.
    pub fn rpc(url: Url, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            rpc_url: Some(url),
            ..Self::embedded(data_dir)
        }
    }
}

/// A connected chain: provider with signer and retries, and the deployment.
#[derive(Debug)]
pub struct Chain {
    provider: DynProvider,
    client: alloy::rpc::client::RpcClient,
    signer: Address,
    deployment: Deployment,
    url: Url,
    /// The most blocks one `eth_getLogs` asks for now (see [`Chain::logs_matching`]).
    log_span: AtomicU64,
    // Declared last: dropped after the provider, which stops the node.
    anvil: Option<LocalAnvil>,
}

/// The most blocks one `eth_getLogs` request covers at first. Public endpoints cap a
/// request's blocks (some at 1,000) or its results (10,000 logs): a range refused is halved,
/// down to one block, and the span that worked is used from then on.
pub const LOG_SPAN: u64 = 50_000;

impl Chain {
    /// Connects (starting anvil when no URL is given), then uses the configured deployment
    /// (checked to be live on this chain), else the one recorded in the data directory if it is
    /// live, else deploys all contracts and records them where that is allowed (the embedded
    /// anvil, a dev chain with id 31337, or [`ChainConfig::allow_deploy`]); anywhere else an
    /// unknown deployment is an error that says how to name one.
    pub async fn connect(config: ChainConfig) -> Result<Self> {
        // Refused at the start, not at the first transaction (a server would run without
        // recording anything).
        receipt_timeout()?;
        let anvil = match &config.rpc_url {
            Some(_) => None,
            None => {
                let dir = config.data_dir.join("anvil");
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                Some(LocalAnvil::start(&AnvilOptions {
                    state_file: Some(dir.join("state.json")),
                    ..AnvilOptions::default()
                })?)
            }
        };
        let url = match (&config.rpc_url, &anvil) {
            (Some(u), _) => u.clone(),
            (None, Some(a)) => a.url().clone(),
            (None, None) => unreachable!("anvil is started when no URL is given"),
        };

        // Retries outside, the rate limit inside: every attempt waits for its slot. Between
        // them, a resent transaction the node holds already reads as sent (`resend`; its
        // lookups wait for their slots too).
        let layers = ClientBuilder::default()
            .layer(RetryBackoffLayer::new_with_policy(
                config.max_retries,
                config.backoff_ms,
                u64::MAX,
                TransientErrors {
                    backoff_ms: config.backoff_ms,
                },
            ))
            .layer(crate::resend::KnownTxLayer)
            .layer(RateLimitLayer::new(config.max_requests_per_second));
        let client = match url.scheme() {
            "ws" | "wss" => layers.ws(WsConnect::new(url.as_str())).await?,
            "http" | "https" => {
                let http = alloy::transports::http::reqwest::Client::builder()
                    .timeout(config.request_timeout)
                    .build()
                    .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
                layers.transport(
                    alloy::transports::http::Http::with_client(http, url.clone()),
                    false,
                )
            }
            other => {
                return Err(Error::Config(format!(
                    "RPC URL {url} has scheme {other:?}: use http(s):// or ws(s)://"
                )));
            }
        };
        let bare = ProviderBuilder::new()
            .connect_client(client.clone())
            .erased();
        let chain_id = bare.get_chain_id().await?;

        let signer = match config.signer {
            Some(s) => Some(s),
            None if chain_id == 31337 => Some(parse_key(ANVIL_DEV_KEY)?),
            None if config.read_only => None,
            None => {
                return Err(Error::Config(format!(
                    "chain {chain_id} is not a local dev chain: give a signer key with \
                     TRIBUTARY_PRIVATE_KEY or --key-file"
                )));
            }
        };
        let (provider, address) = match signer {
            Some(s) => {
                let a = s.address();
                (signing_provider(s, client.clone()), Some(a))
            }
            None => (bare, None),
        };

        let deployment = match config.deployment {
            Some(mut d) => {
                if !d.is_live_on(&provider).await? {
                    return Err(Error::Config(format!(
                        "the configured deployment ([chain] or --deployment) is not on chain {chain_id} at {url}: \
                         no DatanetRegistry code at {} (or another chain id or start block); fix the addresses or the RPC URL",
                        d.datanet_registry
                    )));
                }
                // `[chain]` may leave the chain id out: it is the node's (the EIP-712 domain
                // of every signature, and the graph's key, need the real one).
                if d.chain_id == 0 {
                    d.chain_id = chain_id;
                }
                d
            }
            None => match Deployment::load(&config.data_dir)? {
                Some(d) if d.is_live_on(&provider).await? => d,
                _ if anvil.is_some() || chain_id == 31337 || config.allow_deploy => {
                    let deployer = address.ok_or_else(|| {
                        Error::Config(
                            "deploying the contracts needs a signer key: TRIBUTARY_PRIVATE_KEY or --key-file".into(),
                        )
                    })?;
                    deploy_all(&provider, deployer, &config.data_dir).await?
                }
                _ => {
                    return Err(Error::Config(format!(
                        "no Tributary deployment is known for chain {chain_id} at {url}: name the contracts \
                         ([chain] in tributary.toml, or --deployment FILE with a deployment.json), or deploy a fresh \
                         set with `tributary deploy` (needs a signer key)"
                    )));
                }
            },
        };
        Ok(Self {
            provider,
            client,
            signer: address.unwrap_or_default(),
            deployment,
            url,
            log_span: AtomicU64::new(LOG_SPAN),
            anvil,
        })
    }

    /// The provider (with the signer, when there is one, and retries).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The signer's address (the zero address on a read-only connection without a key).
    pub fn signer(&self) -> Address {
        self.signer
    }

    /// Where the contracts are.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.deployment.chain_id
    }

    /// The RPC URL (the local anvil's when embedded).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// True when this process started the node.
    pub fn is_embedded(&self) -> bool {
        self.anvil.is_some()
    }

    /// The account that published adapter `id` as the ModelRegistry records it
    /// (`publisherOf`: the contract account itself for a Safe, a forwarder or a smart account,
    /// not whoever relayed the transaction); `None` for an id it does not know, or from a
    /// registry deployed before it recorded publishers (the call reverts there).
    pub async fn publisher_of(&self, id: alloy::primitives::B256) -> Result<Option<Address>> {
        match self.model_registry().publisherOf(id).call().await {
            Ok(a) => Ok((a != Address::ZERO).then_some(a)),
            Err(e) if e.as_revert_data().is_some() || e.to_string().contains("reverted") => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The latest block number.
    pub async fn head(&self) -> Result<u64> {
        Ok(self.provider.get_block_number().await?)
    }

    /// New block numbers as the node announces them, when connected over WebSocket
    /// (`eth_subscribe` to `newHeads`); `None` over HTTP, where callers poll [`Chain::head`].
    pub async fn new_heads(&self) -> Result<Option<impl Stream<Item = u64> + Unpin + use<>>> {
        if !matches!(self.url.scheme(), "ws" | "wss") {
            return Ok(None);
        }
        let sub = self.provider.subscribe_blocks().await?;
        Ok(Some(sub.into_stream().map(|header| header.number)))
    }

    /// The hash of block `number`.
    pub async fn block_hash(&self, number: u64) -> Result<alloy::primitives::B256> {
        let block = self
            .provider
            .get_block_by_number(number.into())
            .await?
            .ok_or_else(|| Error::Config(format!("the node has no block {number}")))?;
        Ok(block.header.hash)
    }

    /// The hash of block `number`, or `None` when the node has no such block (yet, or any
    /// more after a reorg).
    pub async fn block_hash_opt(&self, number: u64) -> Result<Option<alloy::primitives::B256>> {
        Ok(self
            .provider
            .get_block_by_number(number.into())
            .await?
            .map(|b| b.header.hash))
    }

    /// The hash of block `number` and of its parent, or `None` when the node has no such
    /// block. Following parents is how a reader knows blocks read one by one form one chain.
    pub async fn block_link(
        &self,
        number: u64,
    ) -> Result<Option<(alloy::primitives::B256, alloy::primitives::B256)>> {
        Ok(self
            .provider
            .get_block_by_number(number.into())
            .await?
            .map(|b| (b.header.hash, b.header.parent_hash)))
    }

    /// All logs of Tributary's contracts in `from..=to`.
    pub async fn logs(&self, from: u64, to: u64) -> Result<Vec<Log>> {
        let filter = Filter::new()
            .address(self.deployment.addresses().to_vec())
            .from_block(from)
            .to_block(to);
        Ok(self.provider.get_logs(&filter).await?)
    }

    /// The logs matching `filter` (its addresses and topics; its block range is replaced) in
    /// blocks `from..=to`, in chain order, read in ranges the endpoint accepts: at most the
    /// current span per request (first [`LOG_SPAN`] blocks), halved whenever the endpoint
    /// answers a range with a JSON-RPC error (public endpoints cap a request's blocks or
    /// results), down to one block, and doubled again after 8 ranges in a row succeed (so a
    /// refusal for another reason, such as a lagging node, does not shrink it for good).
    /// Failures the retry layer gives up on are returned as they are.
    pub async fn logs_matching(&self, filter: &Filter, mut from: u64, to: u64) -> Result<Vec<Log>> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut logs = Vec::new();
        let mut streak = 0;
        while from <= to {
            let span = self.log_span.load(Relaxed).max(1);
            let end = to.min(from.saturating_add(span - 1));
            let range = filter.clone().from_block(from).to_block(end);
            match self.provider.get_logs(&range).await {
                Ok(found) => {
                    logs.extend(found);
                    from = end + 1;
                    streak += 1;
                    if streak == 8 && span < LOG_SPAN {
                        streak = 0;
                        let _ = self.log_span.compare_exchange(
                            span,
                            (span * 2).min(LOG_SPAN),
                            Relaxed,
                            Relaxed,
                        );
                    }
                }
                Err(alloy::transports::RpcError::ErrorResp(e)) if end > from => {
                    let blocks = end - from + 1;
                    let half = blocks / 2;
                    tracing::info!(from, to = end, half, error = %e, "eth_getLogs refused; halving the range");
                    self.log_span.fetch_min(half, Relaxed);
                    streak = 0;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(logs)
    }

    /// Every event `E` matching `filter` (a contract binding's `*_filter()`, narrowed by
    /// topics) from the deployment's start block to the head, decoded, with its log, in chain
    /// order; read as [`Chain::logs_matching`] reads.
    pub async fn events<E: alloy::sol_types::SolEvent>(
        &self,
        filter: &Filter,
    ) -> Result<Vec<(E, Log)>> {
        let head = self.head().await?;
        self.logs_matching(filter, self.deployment.start_block, head)
            .await?
            .into_iter()
            .map(|log| Ok((E::decode_log(&log.inner)?.data, log)))
            .collect()
    }

    /// DatanetRegistry, called from the signer.
    pub fn datanet_registry(&self) -> DatanetRegistry::DatanetRegistryInstance<DynProvider> {
        DatanetRegistry::new(self.deployment.datanet_registry, self.provider.clone())
    }

    /// ModelRegistry, called from the signer.
    pub fn model_registry(&self) -> ModelRegistry::ModelRegistryInstance<DynProvider> {
        ModelRegistry::new(self.deployment.model_registry, self.provider.clone())
    }

    /// InferenceLedger, called from the signer.
    pub fn inference_ledger(&self) -> InferenceLedger::InferenceLedgerInstance<DynProvider> {
        InferenceLedger::new(self.deployment.inference_ledger, self.provider.clone())
    }

    /// RewardToken, called from the signer.
    pub fn reward_token(&self) -> RewardToken::RewardTokenInstance<DynProvider> {
        RewardToken::new(self.deployment.reward_token, self.provider.clone())
    }

    /// RewardDistributor, called from the signer.
    pub fn reward_distributor(&self) -> RewardDistributor::RewardDistributorInstance<DynProvider> {
        RewardDistributor::new(self.deployment.reward_distributor, self.provider.clone())
    }

    /// The same contracts called from another key (for example a contributor's).
    pub fn with_signer(&self, signer: PrivateKeySigner) -> DynProvider {
        signing_provider(signer, self.client.clone())
    }
}

/// A provider that fills gas, chain id and nonce and signs with `signer`.
///
/// The nonce is read from the node for every transaction: a cached nonce would advance on a
/// call that fails before broadcast (a revert at gas estimation) and leave a gap that stalls
/// every later transaction.
fn signing_provider(
    signer: PrivateKeySigner,
    client: alloy::rpc::client::RpcClient,
) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_client(client)
        .erased()
}

/// Which failed requests are retried: what alloy retries by default (429, 503, a server's
/// `Retry-After`, rate-limit error payloads), and also other 5xx answers, timeouts, dropped
/// connections and bodies cut short; never a well-formed JSON-RPC error such as a revert.
#[derive(Debug, Clone, Copy)]
struct TransientErrors {
    backoff_ms: u64,
}

impl alloy::transports::layers::RetryPolicy for TransientErrors {
    fn should_retry(&self, error: &alloy::transports::TransportError) -> bool {
        use alloy::transports::{RpcError, TransportErrorKind};
        if alloy::transports::layers::RateLimitRetryPolicy::default().should_retry(error) {
            return true;
        }
        match error {
            RpcError::Transport(TransportErrorKind::HttpError(e)) => {
                e.status >= 500 || e.status == 408
            }
            // Connection refused or reset, timeouts, a body that ended early.
            RpcError::Transport(TransportErrorKind::Custom(_)) => true,
            // Not JSON at all: a body cut short by a proxy.
            RpcError::DeserError { text, .. } => {
                serde_json::from_str::<serde_json::Value>(text).is_err()
            }
            _ => false,
        }
    }

    fn backoff_hint(
        &self,
        error: &alloy::transports::TransportError,
    ) -> Option<std::time::Duration> {
        use std::hash::BuildHasher;
        let server = alloy::transports::layers::RateLimitRetryPolicy::default().backoff_hint(error);
        // Jitter spreads the retries of many clients that failed together.
        let jitter = std::collections::hash_map::RandomState::new()
            .hash_one(std::time::Instant::now())
            % (self.backoff_ms + 1);
        Some(
            server.unwrap_or_default() + std::time::Duration::from_millis(self.backoff_ms + jitter),
        )
    }
}

/// True for the node's answers to a nonce that another sender took first (a resend of our
/// own transaction never gets here: `resend` answers it with the hash).
fn is_nonce_race(e: &alloy::contract::Error) -> bool {
    let text = e.to_string();
    crate::resend::is_nonce_used(&text)
        || text
            .to_lowercase()
            .contains("replacement transaction underpriced")
}

/// How long [`send`] waits for a receipt before giving up: `TRIBUTARY_RECEIPT_TIMEOUT`
/// seconds (a congested chain may need longer), 300 by default.
fn receipt_timeout() -> Result<std::time::Duration> {
    match std::env::var("TRIBUTARY_RECEIPT_TIMEOUT") {
        Err(std::env::VarError::NotPresent) => Ok(std::time::Duration::from_secs(300)),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::Config(format!(
            "TRIBUTARY_RECEIPT_TIMEOUT={v:?} is not a whole number of seconds above 0"
        ))),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(s) if s > 0 => Ok(std::time::Duration::from_secs(s)),
            _ => Err(Error::Config(format!(
                "TRIBUTARY_RECEIPT_TIMEOUT={v:?} is not a whole number of seconds above 0 \
                 (how long a sent transaction may wait to be mined; unset, 300)"
            ))),
        },
    }
}

/// Sends a contract call, waits for its receipt, and fails when it reverted.
///
/// The receipt is polled directly (20 ms doubling to 1 s) rather than through a new-block
/// watcher, which can miss a block mined before it starts.
pub async fn send<P, D>(call: CallBuilder<P, D, Ethereum>) -> Result<TransactionReceipt>
where
    P: Provider<Ethereum>,
    D: alloy::contract::CallDecoder,
{
    let timeout = receipt_timeout()?;
    // Several processes may send from one key: a nonce taken by another between our read and
    // our send is retried with a fresh one.
    let mut attempt = 0u32;
    let pending = loop {
        match call.send().await {
            Ok(p) => break p,
            Err(e) if attempt < 8 && is_nonce_race(&e) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt.min(5))).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let hash = *pending.tx_hash();
    let provider = pending.provider().clone();
    let started = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(20);
    loop {
        if let Some(receipt) = provider.get_transaction_receipt(hash).await? {
            if !receipt.status() {
                // A receipt carries no revert data. Another sender's transaction mined first
                // (the usual cause: two processes racing to do the same thing) makes the same
                // call revert now with the contract's own error, which callers can match on.
                return Err(match call.call_raw().await {
                    Err(e) if e.as_revert_data().is_some() => Error::Contract(e),
                    _ => Error::Reverted(hash),
                });
            }
            return Ok(receipt);
        }
        if started.elapsed() > timeout {
            return Err(Error::ReceiptTimeout(hash, timeout.as_secs()));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(1));
    }
}
