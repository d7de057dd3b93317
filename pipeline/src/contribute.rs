//! Contribute: read input files, sign or verify every record, validate it against the Datanet
//! (manifest rules, license, signature for this chain and registry, submitter, nonce, deadline,
//! exact and near duplicates), commit accepted records in batches (one Delta commit and one
//! anchor each) and keep every refusal in `rejections` with its reason.
//!
//! The checks that need no state (parsing, manifest rules, license, EIP-712 signature,
//! submitter, deadline, and the near-duplicate signature) run on every core over windows of
//! [`WINDOW`] records. The checks against the Datanet's state (signing with the next nonce,
//! nonce reuse, exact and near duplicates) then run in input order against two sets: the
//! run's own accepted records, and the Datanet's rows as of the run's start that share a key
//! or a near-duplicate text with the window, found by one streaming, partition-pruned scan per
//! window. Memory follows the input, not the Datanet; rows other writers add during a run are
//! not seen. Refusals are stored once, keyed by what was refused and where.
//!
//! Re-running the same input adds nothing: a contributor's own identical content is "already
//! present" (not a refusal), a batch id is committed and anchored once, and the same refusals
//! land under the same run id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use alloy::primitives::{Address, B256, Bytes, Signature, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::Value;
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_schemas::canonical::{content_hash, to_canonical_json};
use tributary_schemas::contribution::{Contribution, domain};
use tributary_schemas::tables::names;

use crate::ingest::{self, BatchReport};
use crate::minhash::{self, NearDupIndex, signature};
use crate::readers::{self, ReadOptions};
use crate::reject::{Reason, Rejection, excerpt};
use crate::rules::Rules;
use crate::sign::{Signed, Terms, sign};
use crate::{Error, Result};

/// Room for a pre-signed envelope's fields around the record when reading a line.
const ENVELOPE_ALLOWANCE: usize = 4096;

/// How to contribute.
#[derive(Debug, Clone)]
pub struct ContributeConfig {
    /// The Datanet's on-chain id.
    pub datanet_id: u64,
    /// Its rules (from its manifest).
    pub rules: Rules,
    /// Signs records that arrive unsigned; pre-signed envelopes are verified either way.
    pub signer: Option<PrivateKeySigner>,
    /// License for records this process signs (default: the manifest's first).
    pub license: Option<String>,
    /// Records per batch: one Delta commit and one anchor each.
    pub batch_size: usize,
    /// Seconds a signature made here stays valid.
    pub validity_secs: u64,
    /// Records checked together against the Datanet ([`WINDOW`] by default): one streaming
    /// scan of the Datanet's rows per window, so memory follows the window and the batch,
    /// not the Datanet.
    pub window: usize,
}

/// The default [`ContributeConfig::window`].
pub const WINDOW: usize = 8192;

/// What a contribute run did.
#[derive(Debug, Default, Clone)]
pub struct ContributeReport {
    /// Records read.
    pub read: u64,
    /// Records accepted and committed.
    pub accepted: u64,
    /// Records that were already in the Datanet, from the same contributor.
    pub already_present: u64,
    /// Refusals by reason code.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Committed batches, including ones a crash had left unanchored.
    pub batches: Vec<BatchReport>,
}

impl ContributeReport {
    /// Total refusals.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// A pre-signed record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    content: Value,
    contributor: Address,
    license: String,
    timestamp: u64,
    nonce: u64,
    deadline: u64,
    signature: Bytes,
}

/// Contributions a record could collide with: ids, content hashes, (contributor, nonce)
/// pairs and near-duplicate texts. Two of these answer for a run: the run's own accepted
/// records, and, rebuilt for every window of input, the rows the Datanet held when the run
/// started that share a key or a near-duplicate text with a record of the window (one
/// streaming scan of the Datanet's partition as of that version). Memory follows the input
/// and the window, never the Datanet's size.
#[derive(Debug)]
struct Known {
    /// content hash -> contributor of the first contribution with it
    hashes: HashMap<B256, Address>,
    /// (contributor, nonce) -> contribution id
    nonces: HashMap<(Address, u64), B256>,
    ids: HashSet<B256>,
    near: Option<NearDupIndex>,
}

impl Known {
    fn new(rules: &Rules) -> Self {
        Known {
            hashes: HashMap::new(),
            nonces: HashMap::new(),
            ids: HashSet::new(),
            near: rules.manifest().dedup.near_threshold.map(NearDupIndex::new),
        }
    }

    fn add(&mut self, id: B256, c: &Contribution, sig: Option<&minhash::Signature>) {
        self.ids.insert(id);
        self.hashes.entry(c.contentHash).or_insert(c.contributor);
        self.nonces.insert((c.contributor, c.nonce), id);
        if let (Some(near), Some(sig)) = (&mut self.near, sig) {
            near.insert(*sig);
        }
    }
}

/// The rows of the Datanet in `stored` (`contributions` as of the run's start) that the
/// records of `window` could collide with; raises `next_nonce` past every nonce they hold for
/// the signer.
async fn lookup(
    stored: &tributary_lake::Scanner,
    config: &ContributeConfig,
    window: &[(String, Prepared)],
    next_nonce: &mut u64,
) -> Result<Known> {
    let mut known = Known::new(&config.rules);
    // The window's keys, and an index of its texts to test stored texts against.
    let (mut ids, mut hashes, mut nonces) = (HashSet::new(), HashSet::new(), HashSet::new());
    let mut probe = Known::new(&config.rules).near;
    for (_, p) in window {
        let sig = match p {
            Prepared::Refuse(_) => continue,
            Prepared::Plain(value, sig) => {
                hashes.insert(content_hash(value));
                sig
            }
            Prepared::Signed(s, id, sig) => {
                let c = &s.contribution;
                ids.insert(*id);
                hashes.insert(c.contentHash);
                nonces.insert((c.contributor, c.nonce));
                sig
            }
        };
        if let (Some(probe), Some(sig)) = (&mut probe, sig) {
            probe.insert(*sig);
        }
    }
    if hashes.is_empty() {
        return Ok(known);
    }
    let signer = config.signer.as_ref().map(PrivateKeySigner::address);
    let mut columns = vec!["contribution_id", "contributor", "content_hash", "nonce"];
    if probe.is_some() {
        columns.push("content");
    }
    let filter = format!("datanet_id = {}", config.datanet_id);
    let rows = stored.scan(&columns, Some(&filter)).await?;
    let mut rows = std::pin::pin!(rows);
    while let Some(b) = rows.try_next().await? {
        let s = |i: usize| b.column(i).as_string::<i32>();
        let (row_ids, who, row_hashes, row_nonces) =
            (s(0), s(1), s(2), b.column(3).as_primitive::<Int64Type>());
        let bad =
            |i: usize| Error::Internal(format!("unreadable row in the lake: {}", row_ids.value(i)));
        for i in 0..b.num_rows() {
            let hash: B256 = row_hashes.value(i).parse().map_err(|_| bad(i))?;
            let id: B256 = row_ids.value(i).parse().map_err(|_| bad(i))?;
            let who: Address = who.value(i).parse().map_err(|_| bad(i))?;
            let nonce = row_nonces.value(i) as u64;
            if signer == Some(who) {
                *next_nonce = (*next_nonce).max(nonce + 1);
            }
            if ids.contains(&id) {
                known.ids.insert(id);
            }
            if hashes.contains(&hash) {
                known.hashes.entry(hash).or_insert(who);
            }
            if nonces.contains(&(who, nonce)) {
                known.nonces.insert((who, nonce), id);
            }
        }
        // Stored texts near a text of the window: signatures on every core, kept only when
        // they would match.
        if let (Some(probe), Some(near)) = (&probe, &mut known.near) {
            let texts = s(4);
            let sigs = signatures(&config.rules, (0..b.num_rows()).map(|i| texts.value(i)))
                .map_err(bad)?;
            for sig in sigs {
                if probe.find(&sig).is_some() {
                    near.insert(sig);
                }
            }
        }
    }
    Ok(known)
}

/// Near-duplicate signatures of stored contents (canonical JSON), on every core; the index
/// of an unreadable one on error.
fn signatures<'a>(
    rules: &Rules,
    contents: impl Iterator<Item = &'a str>,
) -> std::result::Result<Vec<minhash::Signature>, usize> {
    let contents: Vec<(usize, &str)> = contents.enumerate().collect();
    on_every_core(contents, |(i, c)| {
        serde_json::from_str::<Value>(c)
            .map(|v| signature(&rules.text_of(&v)))
            .map_err(|_| i)
    })
    .into_iter()
    .collect()
}

/// `f` over `items` split across every core (on this thread when there is one core or few
/// items), results in input order.
fn on_every_core<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || items.len() < 256 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items;
    while !rest.is_empty() {
        let tail = rest.split_off(per.min(rest.len()));
        parts.push(std::mem::replace(&mut rest, tail));
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| s.spawn(move || part.into_iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// A refusal, before it is placed in its input.
struct Refusal {
    reason: Reason,
    message: String,
    contributor: Option<Address>,
    id: Option<B256>,
    raw: String,
}

/// Outcome of one record.
enum Verdict {
    Accept(B256, Box<Signed>),
    AlreadyPresent,
    Refuse(Refusal),
}

/// A record after the checks that need no state, with its text's near-duplicate signature
/// when the Datanet checks near duplicates.
enum Prepared {
    /// Refused already.
    Refuse(Refusal),
    /// A valid unsigned record, to be signed here.
    Plain(Value, Option<minhash::Signature>),
    /// A pre-signed record whose content, license, signature, submitter and deadline hold.
    Signed(Box<Signed>, B256, Option<minhash::Signature>),
}

/// Prepared chunks the producer may run ahead of the consumer (bounds memory).
const PREPARED_AHEAD: usize = 8;

/// Runs a contribution: finishes batches a crash left unanchored, then reads `inputs`,
/// validates, and commits. `progress` is called with the number of records read so far.
#[tracing::instrument(name = "contribute", skip_all, fields(datanet = config.datanet_id))]
pub async fn contribute(
    chain: &Chain,
    lake: &Lake,
    config: &ContributeConfig,
    inputs: &[PathBuf],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ContributeReport> {
    let manifest = config.rules.manifest();
    let options = ReadOptions {
        // Readers bound memory; the exact size rule is checked on the record's content.
        max_record_bytes: manifest.max_record_bytes + ENVELOPE_ALLOWANCE,
        text_field: manifest
            .fields
            .iter()
            .find(|(_, f)| f.kind == tributary_schemas::datanet::FieldType::Text)
            .map(|(n, _)| n.clone()),
        numeric_fields: fields_of(config, tributary_schemas::datanet::FieldType::Number),
        json_fields: fields_of(config, tributary_schemas::datanet::FieldType::Json),
    };
    // Open everything first: an unreadable input fails the run before anything is written.
    let mut opened = Vec::new();
    for path in inputs {
        opened.push((path.display().to_string(), readers::open(path, &options)?));
    }
    let license = match &config.license {
        Some(l) => {
            config
                .rules
                .check_license(l)
                .map_err(|(_, m)| Error::InvalidInput(format!("--license: {m}")))?;
            l.clone()
        }
        None => manifest.licenses[0].clone(),
    };

    let mut report = ContributeReport {
        batches: ingest::recover(chain, lake).await?,
        ..Default::default()
    };
    // Rows committed from here on are this run's own, known from memory; the Datanet's
    // earlier rows are looked up window by window as of this version.
    let version = lake.version(names::CONTRIBUTIONS).await?;
    let at_start = lake.scanner(names::CONTRIBUTIONS, version).await?;
    let mut own = Known::new(&config.rules);
    let mut next_nonce = 0;
    let domain = domain(chain.chain_id(), chain.deployment().datanet_registry);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    // The checks that need no state (parsing, rules, signatures) run on every core in a
    // producer thread, a few chunks ahead; the ones against the Datanet's state run here in
    // input order, and the producer keeps going while a batch is committed and anchored.
    let (sources, opened): (Vec<String>, Vec<readers::Items>) = opened.into_iter().unzip();
    let (tx, mut rx) = tokio::sync::mpsc::channel(PREPARED_AHEAD);
    let producer = {
        let (config, domain) = (config.clone(), domain.clone());
        std::thread::spawn(move || {
            for (source, mut items) in opened.into_iter().enumerate() {
                loop {
                    let chunk: Vec<readers::Item> =
                        items.by_ref().take(config.window.max(1)).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    let prepared = prepare_all(&config, &domain, now, chunk);
                    if tx.blocking_send((source, prepared)).is_err() {
                        return; // the consumer stopped on an error
                    }
                }
            }
        })
    };

    let mut accepted: Vec<(B256, Signed)> = Vec::new();
    let mut refused: Vec<Rejection> = Vec::new();
    while let Some((source, prepared)) = rx.recv().await {
        let stored = lookup(&at_start, config, &prepared, &mut next_nonce).await?;
        for (locator, prepared) in prepared {
            report.read += 1;
            progress(report.read);
            let verdict = decide(
                config,
                &license,
                &domain,
                now,
                (&stored, &mut own),
                &mut next_nonce,
                prepared,
            );
            match verdict {
                Verdict::Accept(id, s) => accepted.push((id, *s)),
                Verdict::AlreadyPresent => report.already_present += 1,
                Verdict::Refuse(r) => {
                    *report.rejected.entry(r.reason.code()).or_default() += 1;
                    refused.push(Rejection {
                        source: sources[source].clone(),
                        locator,
                        reason: r.reason,
                        message: r.message,
                        raw: r.raw,
                        contributor: r.contributor,
                        contribution_id: r.id,
                    });
                }
            }
            if accepted.len() >= config.batch_size || refused.len() >= config.batch_size {
                flush(
                    chain,
                    lake,
                    config.datanet_id,
                    &mut accepted,
                    &mut refused,
                    &mut report,
                )
                .await?;
            }
        }
    }
    if producer.join().is_err() {
        return Err(Error::Internal(
            "a reader thread panicked; nothing after the last committed batch was written".into(),
        ));
    }
    flush(
        chain,
        lake,
        config.datanet_id,
        &mut accepted,
        &mut refused,
        &mut report,
    )
    .await?;
    Ok(report)
}

fn fields_of(
    config: &ContributeConfig,
    kind: tributary_schemas::datanet::FieldType,
) -> Vec<String> {
    config
        .rules
        .manifest()
        .fields
        .iter()
        .filter(|(_, f)| f.kind == kind)
        .map(|(n, _)| n.clone())
        .collect()
}

/// Commits the accepted records as one batch, and the refusals not stored before.
async fn flush(
    chain: &Chain,
    lake: &Lake,
    datanet_id: u64,
    accepted: &mut Vec<(B256, Signed)>,
    refused: &mut Vec<Rejection>,
    report: &mut ContributeReport,
) -> Result<()> {
    // Refusals are keyed by what was refused and where, so re-running an input stores none
    // twice; the commit's id is derived from its rows, so a retried commit lands once.
    let mut fresh: Vec<(B256, Rejection)> =
        refused.drain(..).map(|r| (r.id(datanet_id), r)).collect();
    if !fresh.is_empty() {
        let mut seen: HashSet<B256> = HashSet::new();
        let filter = format!("datanet_id = {datanet_id}");
        let columns = ["rejection_id"];
        let stored = lake
            .scan(names::REJECTIONS, None, &columns, Some(&filter))
            .await?;
        let mut stored = std::pin::pin!(stored);
        let wanted: HashSet<B256> = fresh.iter().map(|(id, _)| *id).collect();
        while let Some(b) = stored.try_next().await? {
            let ids = b.column(0).as_string::<i32>();
            seen.extend(
                (0..b.num_rows())
                    .filter_map(|i| ids.value(i).parse::<B256>().ok())
                    .filter(|id| wanted.contains(id)),
            );
        }
        fresh.retain(|(id, _)| seen.insert(*id));
    }
    if !fresh.is_empty() {
        let (ids, rows): (Vec<B256>, Vec<Rejection>) = fresh.into_iter().unzip();
        let key: Vec<u8> = ids.iter().flat_map(|id| id.0).collect();
        lake.append(names::REJECTIONS)
            .batches(vec![ingest::rejection_rows(datanet_id, &ids, &rows)?])
            .idempotent(format!("tributary-rejections-{}", keccak256(&key)), 0)
            .commit()
            .await?;
    }
    if !accepted.is_empty() {
        let batch = ingest::commit_keyed(chain, lake, datanet_id, std::mem::take(accepted)).await?;
        report.accepted += batch.count as u64;
        report.batches.push(batch);
    }
    Ok(())
}

/// [`prepare`] over `chunk` on every core, results in input order.
fn prepare_all(
    config: &ContributeConfig,
    domain: &Eip712Domain,
    now: u64,
    chunk: Vec<readers::Item>,
) -> Vec<(String, Prepared)> {
    let separator = domain.separator();
    on_every_core(chunk, |it| {
        (it.locator, prepare(config, separator, now, it.body))
    })
}

fn refusal(
    reason: Reason,
    message: String,
    who: Option<Address>,
    id: Option<B256>,
    raw: String,
) -> Refusal {
    Refusal {
        reason,
        message,
        contributor: who,
        id,
        raw,
    }
}

/// The checks of one record that need no state: parse, manifest rules, license, signature
/// (for this chain, registry and Datanet), submitter, deadline.
fn prepare(
    config: &ContributeConfig,
    domain_separator: B256,
    now: u64,
    body: std::result::Result<Value, readers::Unreadable>,
) -> Prepared {
    let rules = &config.rules;
    let value = match body {
        Ok(v) => v,
        Err(u) => return Prepared::Refuse(refusal(u.reason, u.message, None, None, u.raw)),
    };
    if value.get("signature").is_none() {
        if config.signer.is_none() {
            let m = "record has no signature: pre-sign it or pass --key to sign here".to_string();
            return Prepared::Refuse(refusal(
                Reason::Unsigned,
                m,
                None,
                None,
                excerpt(&value.to_string()),
            ));
        }
        let len = to_canonical_json(&value).len();
        if let Err((r, m)) = rules.check(&value, len) {
            return Prepared::Refuse(refusal(r, m, None, None, excerpt(&value.to_string())));
        }
        let sig = near_signature(rules, &value);
        return Prepared::Plain(value, sig);
    }
    let raw = || excerpt(&value.to_string());
    let env = match Envelope::deserialize(&value) {
        Ok(e) => e,
        Err(e) => {
            let m = format!("not a valid pre-signed envelope: {e}");
            return Prepared::Refuse(refusal(Reason::Malformed, m, None, None, raw()));
        }
    };
    let Ok(signature) = Signature::try_from(env.signature.as_ref()) else {
        let m = "signature must be 65 bytes (r, s, v)".to_string();
        return Prepared::Refuse(refusal(
            Reason::BadSignature,
            m,
            Some(env.contributor),
            None,
            raw(),
        ));
    };
    let canonical = to_canonical_json(&env.content);
    let content_len = canonical.len();
    let contribution = Contribution {
        datanetId: U256::from(config.datanet_id),
        contributor: env.contributor,
        contentHash: keccak256(canonical.as_bytes()),
        license: env.license,
        timestamp: env.timestamp,
        nonce: env.nonce,
        deadline: env.deadline,
    };
    let (who, id) = (contribution.contributor, contribution.id());
    let refuse = |r, m| Prepared::Refuse(refusal(r, m, Some(who), Some(id), raw()));
    if let Err((r, m)) = rules.check(&env.content, content_len) {
        return refuse(r, m);
    }
    if let Err((r, m)) = rules.check_license(&contribution.license) {
        return refuse(r, m);
    }
    if let Err(e) = contribution.verify_prehashed(id, domain_separator, &signature) {
        let m = format!("{e} (signatures are bound to this chain, registry and Datanet)");
        return refuse(Reason::BadSignature, m);
    }
    if !rules.manifest().access.submitters.allows(who) {
        return refuse(
            Reason::NotASubmitter,
            format!("{who} may not submit to this Datanet"),
        );
    }
    if contribution.deadline < now {
        let m = format!(
            "signature deadline {} has passed (now {now}); sign again",
            contribution.deadline
        );
        return refuse(Reason::Expired, m);
    }
    let sig = near_signature(rules, &env.content);
    Prepared::Signed(
        Box::new(Signed {
            contribution,
            content: env.content,
            signature,
        }),
        id,
        sig,
    )
}

/// The near-duplicate signature of a record's text, when its Datanet checks near duplicates.
fn near_signature(rules: &Rules, record: &Value) -> Option<minhash::Signature> {
    rules.manifest().dedup.near_threshold?;
    Some(signature(&rules.text_of(record)))
}

/// The checks against the Datanet's state, in input order: sign unsigned records (taking the
/// next nonce), then nonce reuse, exact and near duplicates; accepted records join the state.
fn decide(
    config: &ContributeConfig,
    license: &str,
    domain: &Eip712Domain,
    now: u64,
    (stored, own): (&Known, &mut Known),
    next_nonce: &mut u64,
    prepared: Prepared,
) -> Verdict {
    let (signed, id, sig) = match prepared {
        Prepared::Refuse(r) => return Verdict::Refuse(r),
        Prepared::Signed(s, id, sig) => (*s, id, sig),
        Prepared::Plain(value, sig) => {
            let key = config
                .signer
                .as_ref()
                .expect("prepare refuses unsigned records without a key");
            let me = key.address();
            let h = content_hash(&value);
            if stored.hashes.get(&h).or_else(|| own.hashes.get(&h)) == Some(&me) {
                return Verdict::AlreadyPresent;
            }
            if !config.rules.manifest().access.submitters.allows(me) {
                let m = format!("{me} may not submit to this Datanet");
                return Verdict::Refuse(refusal(
                    Reason::NotASubmitter,
                    m,
                    Some(me),
                    None,
                    excerpt(&value.to_string()),
                ));
            }
            let terms = Terms {
                datanet_id: config.datanet_id,
                license: license.to_string(),
                timestamp: now,
                nonce: *next_nonce,
                deadline: now + config.validity_secs,
            };
            match sign(key, domain, &terms, value) {
                Ok(s) => {
                    let id = s.contribution.id();
                    (s, id, sig)
                }
                Err(e) => {
                    return Verdict::Refuse(refusal(
                        Reason::BadSignature,
                        e.to_string(),
                        Some(me),
                        None,
                        String::new(),
                    ));
                }
            }
        }
    };
    if stored.ids.contains(&id) || own.ids.contains(&id) {
        return Verdict::AlreadyPresent;
    }
    let c = &signed.contribution;
    let who = c.contributor;
    let refuse = |r, m| {
        Verdict::Refuse(refusal(
            r,
            m,
            Some(who),
            Some(id),
            excerpt(&to_canonical_json(&signed.content)),
        ))
    };
    let pair = (who, c.nonce);
    if let Some(other) = stored.nonces.get(&pair).or_else(|| own.nonces.get(&pair)) {
        return refuse(
            Reason::NonceReused,
            format!(
                "nonce {} of {who} was used by contribution {other}",
                c.nonce
            ),
        );
    }
    let h = &c.contentHash;
    if config.rules.manifest().dedup.exact
        && (stored.hashes.contains_key(h) || own.hashes.contains_key(h))
    {
        return refuse(
            Reason::DuplicateExact,
            format!("content {} is already in the Datanet", c.contentHash),
        );
    }
    let similar = |k: &Known| {
        k.near
            .as_ref()
            .zip(sig.as_ref())
            .and_then(|(n, s)| n.find(s))
    };
    if let Some(sim) = similar(stored).or_else(|| similar(own)) {
        let m = format!(
            "text is {:.0}% similar to a record already in the Datanet",
            sim * 100.0
        );
        return refuse(Reason::DuplicateNear, m);
    }
    if config.signer.as_ref().map(PrivateKeySigner::address) == Some(who) {
        *next_nonce = (*next_nonce).max(c.nonce + 1);
    }
    own.add(id, c, sig.as_ref());
    Verdict::Accept(id, Box::new(signed))
}

#[cfg(test)]
mod tests {
    #[test]
    fn work_on_every_core_comes_back_in_input_order() {
        for n in [0, 5, 255, 256, 1001] {
            let out = super::on_every_core((0..n).collect(), |i: usize| i * 2);
            assert_eq!(out, (0..n).map(|i| i * 2).collect::<Vec<_>>(), "{n} items");
        }
    }
}
