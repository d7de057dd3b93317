//! Contribute: read input files, sign or verify every record, validate it against the Datanet
//! (manifest rules, license, signature for this chain and registry, submitter, nonce, deadline,
//! exact and near duplicates), commit accepted records in batches (one Delta commit and one
//! anchor each) and keep every refusal in `rejections` with its reason.
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
use serde::Deserialize;
use serde_json::Value;
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_schemas::canonical::{content_hash, to_canonical_json};
use tributary_schemas::contribution::{Contribution, domain};
use tributary_schemas::tables::names;

use crate::ingest::{self, BatchReport};
use crate::minhash::{NearDupIndex, signature};
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
}

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

/// What the Datanet already holds: for duplicates, nonces and near-duplicates.
#[derive(Debug, Default)]
struct Known {
    /// content hash -> contributor of the first contribution with it
    hashes: HashMap<B256, Address>,
    /// (contributor, nonce) -> contribution id
    nonces: HashMap<(Address, u64), B256>,
    ids: HashSet<B256>,
    near: Option<NearDupIndex>,
    /// ids of refusals already stored
    rejections: HashSet<B256>,
}

impl Known {
    async fn load(lake: &Lake, datanet_id: u64, rules: &Rules) -> Result<Self> {
        let mut k = Known {
            near: rules.manifest().dedup.near_threshold.map(NearDupIndex::new),
            ..Default::default()
        };
        for b in lake.read(names::CONTRIBUTIONS, None).await? {
            let s = |name: &str| {
                b.column_by_name(name)
                    .expect("contributions schema")
                    .as_string::<i32>()
                    .clone()
            };
            let p = |name: &str| {
                b.column_by_name(name)
                    .expect("contributions schema")
                    .as_primitive::<Int64Type>()
                    .clone()
            };
            let (dn, ids, who, hashes, nonces, content) = (
                p("datanet_id"),
                s("contribution_id"),
                s("contributor"),
                s("content_hash"),
                p("nonce"),
                s("content"),
            );
            for i in (0..b.num_rows()).filter(|&i| dn.value(i) as u64 == datanet_id) {
                let bad =
                    || Error::InvalidInput(format!("unreadable row in the lake: {}", ids.value(i)));
                let id: B256 = ids.value(i).parse().map_err(|_| bad())?;
                let who: Address = who.value(i).parse().map_err(|_| bad())?;
                k.ids.insert(id);
                k.hashes
                    .entry(hashes.value(i).parse().map_err(|_| bad())?)
                    .or_insert(who);
                k.nonces.insert((who, nonces.value(i) as u64), id);
                if let Some(near) = &mut k.near {
                    let v: Value = serde_json::from_str(content.value(i)).map_err(|_| bad())?;
                    near.insert(signature(&rules.text_of(&v)));
                }
            }
        }
        for b in lake.read(names::REJECTIONS, None).await? {
            let dn = b
                .column_by_name("datanet_id")
                .expect("rejections schema")
                .as_primitive::<Int64Type>()
                .clone();
            let ids = b
                .column_by_name("rejection_id")
                .expect("rejections schema")
                .as_string::<i32>()
                .clone();
            for i in (0..b.num_rows()).filter(|&i| dn.value(i) as u64 == datanet_id) {
                if let Ok(id) = ids.value(i).parse() {
                    k.rejections.insert(id);
                }
            }
        }
        Ok(k)
    }

    fn next_nonce(&self, who: Address) -> u64 {
        self.nonces
            .keys()
            .filter(|(a, _)| *a == who)
            .map(|(_, n)| n + 1)
            .max()
            .unwrap_or(0)
    }
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

/// A record after the checks that need no state.
enum Prepared {
    /// Refused already.
    Refuse(Refusal),
    /// A valid unsigned record, to be signed here.
    Plain(Value),
    /// A pre-signed record whose content, license, signature, submitter and deadline hold.
    Signed(Box<Signed>, B256),
}

/// Records checked per parallel step.
const PREPARE_CHUNK: usize = 8192;
/// Prepared chunks the producer may run ahead of the consumer (bounds memory).
const PREPARED_AHEAD: usize = 8;

/// Runs a contribution: finishes batches a crash left unanchored, then reads `inputs`,
/// validates, and commits. `progress` is called with the number of records read so far.
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
    let mut known = Known::load(lake, config.datanet_id, &config.rules).await?;
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
                    let chunk: Vec<readers::Item> = items.by_ref().take(PREPARE_CHUNK).collect();
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
        for (locator, prepared) in prepared {
            report.read += 1;
            progress(report.read);
            match decide(config, &license, &domain, now, &mut known, prepared) {
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
                    &mut known,
                    &mut accepted,
                    &mut refused,
                    &mut report,
                )
                .await?;
            }
        }
    }
    if producer.join().is_err() {
        return Err(Error::InvalidInput(
            "a reader thread panicked; nothing after the last committed batch was written".into(),
        ));
    }
    flush(
        chain,
        lake,
        config.datanet_id,
        &mut known,
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
    known: &mut Known,
    accepted: &mut Vec<(B256, Signed)>,
    refused: &mut Vec<Rejection>,
    report: &mut ContributeReport,
) -> Result<()> {
    // Refusals are keyed by what was refused and where, so re-running an input stores none
    // twice; the commit's id is derived from its rows, so a retried commit lands once.
    let fresh: Vec<(B256, Rejection)> = refused
        .drain(..)
        .map(|r| (r.id(datanet_id), r))
        .filter(|(id, _)| known.rejections.insert(*id))
        .collect();
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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let separator = domain.separator();
    let one = |it: readers::Item| (it.locator, prepare(config, separator, now, it.body));
    if threads == 1 || chunk.len() < 256 {
        return chunk.into_iter().map(one).collect();
    }
    let per = chunk.len().div_ceil(threads);
    let mut parts: Vec<Vec<readers::Item>> = Vec::with_capacity(threads);
    let mut rest = chunk;
    while !rest.is_empty() {
        let tail = rest.split_off(per.min(rest.len()));
        parts.push(std::mem::replace(&mut rest, tail));
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| s.spawn(move || part.into_iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a prepare thread panicked"))
            .collect()
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
        return Prepared::Plain(value);
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
    Prepared::Signed(
        Box::new(Signed {
            contribution,
            content: env.content,
            signature,
        }),
        id,
    )
}

/// The checks against the Datanet's state, in input order: sign unsigned records (taking the
/// next nonce), then nonce reuse, exact and near duplicates; accepted records join the state.
fn decide(
    config: &ContributeConfig,
    license: &str,
    domain: &Eip712Domain,
    now: u64,
    known: &mut Known,
    prepared: Prepared,
) -> Verdict {
    let rules = &config.rules;
    let (signed, id) = match prepared {
        Prepared::Refuse(r) => return Verdict::Refuse(r),
        Prepared::Signed(s, id) => (*s, id),
        Prepared::Plain(value) => {
            let key = config
                .signer
                .as_ref()
                .expect("prepare refuses unsigned records without a key");
            let me = key.address();
            if known.hashes.get(&content_hash(&value)) == Some(&me) {
                return Verdict::AlreadyPresent;
            }
            if !rules.manifest().access.submitters.allows(me) {
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
                nonce: known.next_nonce(me),
                deadline: now + config.validity_secs,
            };
            match sign(key, domain, &terms, value) {
                Ok(s) => {
                    let id = s.contribution.id();
                    (s, id)
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
    if known.ids.contains(&id) {
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
    if let Some(other) = known.nonces.get(&(who, c.nonce)) {
        return refuse(
            Reason::NonceReused,
            format!(
                "nonce {} of {who} was used by contribution {other}",
                c.nonce
            ),
        );
    }
    if rules.manifest().dedup.exact && known.hashes.contains_key(&c.contentHash) {
        return refuse(
            Reason::DuplicateExact,
            format!("content {} is already in the Datanet", c.contentHash),
        );
    }
    let sig = known
        .near
        .as_ref()
        .map(|_| signature(&rules.text_of(&signed.content)));
    if let (Some(near), Some(sig)) = (&known.near, &sig)
        && let Some(sim) = near.find(sig)
    {
        let m = format!(
            "text is {:.0}% similar to a record already in the Datanet",
            sim * 100.0
        );
        return refuse(Reason::DuplicateNear, m);
    }
    known.ids.insert(id);
    known.hashes.insert(c.contentHash, who);
    known.nonces.insert((who, c.nonce), id);
    if let (Some(near), Some(sig)) = (&mut known.near, sig) {
        near.insert(sig);
    }
    Verdict::Accept(id, Box::new(signed))
}
