//! Rewards: each epoch, the fees of the answers recorded on chain since the last epoch are
//! split by a policy (platform / model owner / stakers / data contributors) and paid out
//! through a Merkle tree of `(account, amount)` claims.
//!
//! The contributors' part of an answer is divided by the credit serving recorded for it
//! (`tributary_models::attribute`'s one definition: every positive share, the shares past the
//! listed contributions summed per contributor; a merge's answers carry their parents'
//! held-out credit). Settlement computes no credit of its own. A contribution revoked on chain
//! since the answer is paid nothing: its share is divided among the answer's other credited
//! contributions in proportion (a contributor's summed credit past the listed contributions
//! cannot be told apart by contribution and is paid as recorded). An answer with no credited
//! contribution at all pays its contributors' part to the platform, and says so in the row's
//! reason.
//!
//! Amounts are integers. Every row's exact amount is a fraction with the common
//! denominator `10_000 × 10⁹` (basis points × share parts); rows get the floor, and the
//! units left over (fewer than the rows) go one each to the rows with the largest
//! remainders, ties broken by account, role, adapter and contribution. So the allocations
//! sum exactly to the pool, and the result does not depend on the order of the answers (both
//! property-tested).
//!
//! [`settle`] gathers the unsettled batches the chain recorded (`InferencesRecorded`), each
//! paid as its lake manifest lists it once checked against the chain's root (a batch whose
//! manifest is missing or differs is left unsettled and named), adapter owners as the
//! registry records them (`publisherOf`; from a registry deployed before it, the sender of
//! the `AdapterPublished` transaction) and contributors from snapshot manifests,
//! writes `rewards/epoch-N.json`, then the
//! `reward_allocations` rows (idempotent per epoch) and `allocateEpoch` (`EpochExists` counts
//! as done). An epoch whose manifest is written but not on chain is resumed, never
//! recomputed. The indexer checks each `EpochAllocated` against that manifest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use arrow::array::{Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tributary_chain::bindings::{InferenceLedger, RewardDistributor};
use tributary_chain::{Chain, send};
use tributary_lake::Lake;
use tributary_schemas::lineage::hex_lower;
use tributary_schemas::merkle::{MerkleTree, leaf_account_amount};
use tributary_schemas::tables::{self, names};

use crate::{Error, Result};

/// Share parts per answer: attribution shares are turned into integers summing to this.
const PARTS: u128 = 1_000_000_000;
/// Basis points in a whole.
const BPS: u128 = 10_000;

/// How an answer's fee is split, in basis points (they sum to 10,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// To the platform.
    pub platform: u32,
    /// To the adapter's publisher.
    pub owner: u32,
    /// To the stakers' account.
    pub stakers: u32,
    /// To the contributors, by attribution.
    pub contributors: u32,
}

impl Default for Policy {
    /// 10 / 20 / 20 / 50.
    fn default() -> Self {
        Policy {
            platform: 1_000,
            owner: 2_000,
            stakers: 2_000,
            contributors: 5_000,
        }
    }
}

impl FromStr for Policy {
    type Err = Error;

    /// `platform=10,owner=20,stakers=20,contributors=50`, in percent (two decimals at most);
    /// the parts must sum to 100.
    fn from_str(s: &str) -> Result<Self> {
        let mut p = Policy {
            platform: 0,
            owner: 0,
            stakers: 0,
            contributors: 0,
        };
        for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::InvalidInput(format!(
                    "policy part {part:?} is not NAME=PERCENT: write e.g. platform=10,owner=20,stakers=20,contributors=50"
                ))
            })?;
            let pct: f64 = v.trim().parse().map_err(|_| {
                Error::InvalidInput(format!("policy part {part:?}: {v:?} is not a percentage"))
            })?;
            let bps = pct * 100.0;
            if !(0.0..=10_000.0).contains(&bps) || (bps - bps.round()).abs() > 1e-6 {
                return Err(Error::InvalidInput(format!(
                    "policy part {part:?}: give a percentage from 0 to 100 with at most two decimals"
                )));
            }
            let slot = match k.trim() {
                "platform" => &mut p.platform,
                "owner" => &mut p.owner,
                "stakers" => &mut p.stakers,
                "contributors" => &mut p.contributors,
                other => {
                    return Err(Error::InvalidInput(format!(
                        "unknown policy part {other:?}: use platform, owner, stakers and contributors"
                    )));
                }
            };
            *slot = bps.round() as u32;
        }
        let sum = p.platform + p.owner + p.stakers + p.contributors;
        if sum != 10_000 {
            return Err(Error::InvalidInput(format!(
                "the policy's parts sum to {}%, not 100%: adjust them",
                sum as f64 / 100.0
            )));
        }
        Ok(p)
    }
}

/// Who receives the platform's and the stakers' parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounts {
    /// The platform's account.
    pub platform: Address,
    /// The stakers' pool account.
    pub stakers: Address,
}

/// One paid answer, as settlement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Paid {
    /// The adapter that answered.
    pub adapter: B256,
    /// Its publisher.
    pub owner: Address,
    /// The fee, in integer token units.
    pub fee: u128,
    /// `(contribution, contributor, share)`: the answer's attribution (or its fallback).
    pub shares: Vec<(B256, Address, f64)>,
}

/// Whom a row pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The platform.
    Platform,
    /// The adapter's publisher.
    ModelOwner,
    /// The stakers' pool.
    Stakers,
    /// A data contributor.
    Contributor,
}

impl Role {
    /// Its name in the `reward_allocations` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Platform => "platform",
            Role::ModelOwner => "model_owner",
            Role::Stakers => "stakers",
            Role::Contributor => "contributor",
        }
    }
}

/// What one account earned in one role, for one adapter (and contribution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Who is paid.
    pub account: Address,
    /// In what role.
    pub role: Role,
    /// Through which adapter's answers.
    pub adapter: B256,
    /// For which contribution (contributors only).
    pub contribution: Option<B256>,
    /// Answers that paid into this row.
    pub inferences: u64,
    /// Integer token units (a decimal string in JSON: amounts pass 2^64).
    #[serde(with = "decimal")]
    pub amount: u128,
    /// Why, in words.
    pub reason: String,
}

type Key = (Address, Role, B256, Option<B256>);

/// `u128` as a decimal string, exact in any JSON reader.
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An answer's positive, unrevoked shares as integer parts summing to [`PARTS`] (largest
/// remainder, ties by contribution id and account); empty when none is positive. A share
/// under contribution zero is a contributor's summed credit past the listed contributions.
fn parts(shares: &[(B256, Address, f64)], revoked: &HashSet<B256>) -> Vec<(B256, Address, u128)> {
    let mut live: BTreeMap<(B256, Address), f64> = BTreeMap::new();
    for &(c, a, s) in shares {
        if s > 0.0 && s.is_finite() && !revoked.contains(&c) {
            *live.entry((c, a)).or_default() += s;
        }
    }
    let total: f64 = live.values().sum();
    if live.is_empty() || total <= 0.0 {
        return vec![];
    }
    let mut out: Vec<(B256, Address, u128, f64)> = live
        .iter()
        .map(|(&(c, a), &s)| {
            let exact = s / total * PARTS as f64;
            (c, a, exact.floor() as u128, exact - exact.floor())
        })
        .collect();
    let given: u128 = out.iter().map(|x| x.2).sum();
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&i, &j| {
        out[j]
            .3
            .total_cmp(&out[i].3)
            .then(out[i].0.cmp(&out[j].0))
            .then(out[i].1.cmp(&out[j].1))
    });
    for &i in order
        .iter()
        .cycle()
        .take(PARTS.saturating_sub(given) as usize)
    {
        out[i].2 += 1;
    }
    out.into_iter().map(|(c, a, p, _)| (c, a, p)).collect()
}

/// Splits the answers' fees by `policy`: rows that sum exactly to the pool (see the module
/// docs), sorted by account, role, adapter and contribution.
pub fn allocate(
    policy: &Policy,
    accounts: &Accounts,
    paid: &[Paid],
    revoked: &HashSet<B256>,
) -> Vec<Allocation> {
    // Exact amounts as numerators over BPS × PARTS (in U256: a fee times 10^13 overflows
    // u128 from about 3.4 × 10^25 units).
    let mut rows: BTreeMap<Key, (U256, u64, Option<f64>)> = BTreeMap::new();
    let mut add = |k: Key, w: U256, share: Option<f64>| {
        let r = rows.entry(k).or_insert((U256::ZERO, 0, share));
        r.0 += w;
        r.1 += 1;
    };
    let bps = |b: u32| U256::from(b);
    for p in paid {
        let whole = U256::from(p.fee) * U256::from(PARTS);
        add(
            (accounts.platform, Role::Platform, p.adapter, None),
            whole * bps(policy.platform),
            None,
        );
        // An adapter not published on this chain has no owner to pay: the platform holds
        // that part (the zero address could never claim it).
        let owner = if p.owner.is_zero() {
            accounts.platform
        } else {
            p.owner
        };
        add(
            (owner, Role::ModelOwner, p.adapter, None),
            whole * bps(policy.owner),
            None,
        );
        add(
            (accounts.stakers, Role::Stakers, p.adapter, None),
            whole * bps(policy.stakers),
            None,
        );
        // A contribution whose contributor is unknown here (an adapter whose manifest this
        // lake lacks) is paid to no one: the platform holds its part.
        let (split, unknown): (Vec<_>, Vec<_>) = parts(&p.shares, revoked)
            .into_iter()
            .partition(|(_, a, _)| !a.is_zero());
        let unknown: u128 = unknown.iter().map(|(_, _, n)| n).sum();
        if unknown > 0 {
            add(
                (
                    accounts.platform,
                    Role::Platform,
                    p.adapter,
                    Some(B256::ZERO),
                ),
                U256::from(p.fee) * bps(policy.contributors) * U256::from(unknown),
                None,
            );
        }
        if split.is_empty() && unknown == 0 {
            // Nobody to credit: the contributors' part goes to the platform.
            add(
                (
                    accounts.platform,
                    Role::Platform,
                    p.adapter,
                    Some(B256::ZERO),
                ),
                whole * bps(policy.contributors),
                None,
            );
        }
        for (c, a, n) in split {
            add(
                (a, Role::Contributor, p.adapter, Some(c)),
                U256::from(p.fee) * bps(policy.contributors) * U256::from(n),
                None,
            );
        }
    }
    let denom = U256::from(BPS * PARTS);
    let pool: U256 = paid.iter().map(|p| U256::from(p.fee)).sum();
    let mut out: Vec<(Key, U256, U256, u64)> = rows
        .into_iter()
        .map(|(k, (w, n, _))| (k, w / denom, w % denom, n))
        .collect();
    let given: U256 = out.iter().map(|r| r.1).sum();
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&i, &j| out[j].2.cmp(&out[i].2).then(out[i].0.cmp(&out[j].0)));
    // Fewer units are left over than there are rows.
    for &i in order.iter().take((pool - given).to::<usize>()) {
        out[i].1 += U256::from(1);
    }
    out.into_iter()
        .filter(|r| r.1 > U256::ZERO)
        .map(|((account, role, adapter, contribution), amount, _, n)| {
            // At most the pool, which settle keeps within MAX_AMOUNT.
            let amount = amount.to::<u128>();
            let pct = |bps: u32| bps as f64 / 100.0;
            let reason = match (role, contribution) {
                (Role::Platform, Some(_)) => format!(
                    "the contributors' {}% of {n} answer(s) that credited no live contribution, \
                     or one whose contributor is unknown here",
                    pct(policy.contributors)
                ),
                (Role::Platform, None) => format!("the platform's {}% of {n} answer(s)", pct(policy.platform)),
                (Role::ModelOwner, _) => format!("the model owner's {}% of {n} answer(s)", pct(policy.owner)),
                (Role::Stakers, _) => format!("the stakers' {}% of {n} answer(s)", pct(policy.stakers)),
                (Role::Contributor, _) => format!(
                    "the contributors' {}% of {n} answer(s), by this contribution's attribution share",
                    pct(policy.contributors)
                ),
            };
            Allocation {
                account,
                role,
                adapter,
                contribution: contribution.filter(|c| *c != B256::ZERO),
                inferences: n,
                amount,
                reason,
            }
        })
        .collect()
}

/// Per-account totals: the leaves of the epoch's Merkle tree.
pub fn totals(rows: &[Allocation]) -> BTreeMap<Address, u128> {
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry(r.account).or_default() += r.amount;
    }
    out
}

/// The Merkle tree over `(account, amount)` leaves.
pub fn tree(totals: &BTreeMap<Address, u128>) -> MerkleTree {
    MerkleTree::new(
        totals
            .iter()
            .map(|(a, n)| leaf_account_amount(*a, U256::from(*n)))
            .collect(),
    )
}

/// What an epoch settled, as kept in the lake at [`EpochManifest::key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochManifest {
    /// Epoch number (from 1).
    pub epoch: u64,
    /// The policy applied.
    pub policy: Policy,
    /// Platform and stakers accounts.
    pub accounts: Accounts,
    /// Inference batches settled (recorded on chain), sorted.
    pub batches: Vec<B256>,
    /// Sum of their fees.
    pub pool: String,
    /// The allocation rows.
    pub allocations: Vec<Allocation>,
    /// Merkle root over the per-account totals.
    pub root: B256,
    /// Posted straight to the distributor by someone else (an airdrop, say) and recorded so
    /// by [`record_foreign`]: Tributary settled nothing in it. `root` and `pool` are the
    /// chain's; it has no batches and no allocations, and its policy and accounts are
    /// defaults that mean nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
}

impl EpochManifest {
    /// Where epoch `n`'s manifest lies, relative to the lake root.
    pub fn key(n: u64) -> String {
        format!("rewards/epoch-{n}.json")
    }

    /// The account's claim: amount and proof.
    pub fn claim(&self, account: Address) -> Option<(u128, Vec<B256>)> {
        let totals = totals(&self.allocations);
        let amount = *totals.get(&account)?;
        let proof = tree(&totals).proof(&leaf_account_amount(account, U256::from(amount)))?;
        Some((amount, proof))
    }
}

async fn manifest(lake: &Lake, n: u64) -> Result<Option<EpochManifest>> {
    let uri = lake
        .root()
        .join(&EpochManifest::key(n))
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    match lake.get(uri.as_str()).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::InvalidInput(format!("{uri}: not an epoch manifest: {e}"))),
        Err(e) if e.is_not_found() => Ok(None),
        // Not "never settled": taken so, `settle` would write this epoch again over the
        // manifest its claims are proven against.
        Err(e) => Err(Error::InvalidInput(format!(
            "reward epoch {n}'s manifest could not be read ({e}): nothing was settled or \
             paid; fix the lake's access and run the command again"
        ))),
    }
}

/// Epoch `n`'s manifest; an error naming the fix when it was never settled.
pub async fn epoch(lake: &Lake, n: u64) -> Result<EpochManifest> {
    manifest(lake, n).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "reward epoch {n} was never settled: run `tributary rewards settle` first"
        ))
    })
}

/// The settled epochs' manifests, in order.
pub async fn epochs(lake: &Lake) -> Result<Vec<EpochManifest>> {
    let mut out = Vec::new();
    while let Some(m) = manifest(lake, out.len() as u64 + 1).await? {
        out.push(m);
    }
    Ok(out)
}

/// What [`settle`] did.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The epoch's manifest.
    pub manifest: EpochManifest,
    /// The pool.
    pub pool: u128,
    /// The `EpochAllocated` transaction (`None` when an earlier run had posted it).
    pub tx: Option<B256>,
    /// Batches the chain recorded that this epoch leaves unsettled, and why: their manifest
    /// is missing from the lake or differs from what the chain recorded. Settled with a later
    /// epoch once the manifest is restored.
    pub unverified: Vec<(B256, String)>,
    /// Answers this epoch's batches list that an earlier batch listed (this epoch's or one
    /// settled before): paid there, not again.
    pub repeated: Vec<Repeated>,
    /// Batches settled before whose manifests could not be read now (missing from the lake,
    /// or no longer what the chain recorded), and why: an answer they paid, listed again by
    /// a new batch, cannot be recognised as a repeat. Restore them and settle again.
    pub unread: Vec<(B256, String)>,
}

/// An answer listed by more than one recorded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeated {
    /// The answer's id.
    pub answer: B256,
    /// The batch that listed it again.
    pub batch: B256,
    /// The batch it is paid in.
    pub paid_in: B256,
}

/// Settles the next epoch: the fees of every inference batch recorded on chain and not yet
/// settled. Resumes an epoch whose manifest was written but not posted (a crash between
/// the steps), so a rerun never settles a batch twice.
pub async fn settle(
    chain: &Chain,
    lake: &Lake,
    policy: Policy,
    accounts: Accounts,
) -> Result<Settled> {
    let done = epochs(lake).await?;
    if let Some(last) = done.last() {
        let (root, total) = posted(chain, last.epoch).await?;
        if root != last.root {
            // Not posted yet (resumed), or posted with another root (refused).
            return publish(chain, lake, last.clone()).await;
        }
        // Posted by hand with another total: nothing on chain can change it, so it is said
        // on every run and the next epochs are settled all the same.
        let pool = last.pool.parse().unwrap_or(u128::MAX);
        if let Err(e) = check_posted(last, pool, root, total) {
            tracing::warn!(epoch = last.epoch, "{e}");
        }
    }
    let settled: HashSet<B256> = done
        .iter()
        .flat_map(|m| m.batches.iter().copied())
        .collect();
    let epoch_no = done.len() as u64 + 1;
    // The lake's epochs must be the chain's: an epoch posted whose manifest this lake lacks
    // (restored from an older backup, or a copy) is never settled anew over the one its
    // claims are proven against.
    let (on_chain, _) = posted(chain, epoch_no).await?;
    if on_chain != B256::ZERO {
        // Another settle run may have written and posted it since this one listed the epochs.
        if let Some(m) = manifest(lake, epoch_no).await? {
            if m.foreign {
                return Err(Error::InvalidInput(format!(
                    "epoch {epoch_no} was recorded as someone else's meanwhile: settle again"
                )));
            }
            return publish(chain, lake, m).await;
        }
        return Err(Error::InvalidInput(format!(
            "epoch {epoch_no} is settled on chain (root {on_chain}) but this lake has no {}: \
             restore it from the lake it was settled in (claims are proven against it; is --lake \
             right?); or, if someone else posted it straight to the distributor (an airdrop), \
             record it as theirs with `tributary rewards settle --foreign-epoch {epoch_no}`",
            EpochManifest::key(epoch_no)
        )));
    }

    // The batches the chain recorded and no epoch settled, each paid as its manifest lists
    // it once checked against the chain (never from the `inferences` rows: rows copied,
    // appended twice or altered by another engine would change what is paid).
    let ledger = chain.inference_ledger();
    let recorded = chain
        .events::<InferenceLedger::InferencesRecorded>(&ledger.InferencesRecorded_filter().filter)
        .await?;
    // The ledger records a batch id once (`BatchAlreadyRecorded`), not an answer: one listed
    // again under another batch id (a recorder that regrouped its journal, or another
    // recorder) is paid once, where it was first settled. So the answers of every batch
    // settled before are read too (one manifest per batch, 16 at a time).
    let checked: Vec<_> = futures::stream::iter(recorded.into_iter().map(|(e, _)| e))
        .map(|e| async move { (e.batchId, crate::inferences::check(&e, lake).await) })
        .buffered(16)
        .collect()
        .await;
    let mut paid_in: HashMap<B256, B256> = HashMap::new();
    let mut manifests = Vec::new();
    let mut unverified = Vec::new();
    let mut unread = Vec::new();
    for (batch, checked) in checked {
        match (checked?, settled.contains(&batch)) {
            (Ok(m), true) => {
                for answer in m.inferences.iter().filter(|a| !a.nonce.is_zero()) {
                    paid_in.entry(answer.id()).or_insert(batch);
                }
            }
            (Err(reason), true) => unread.push((batch, reason)),
            (Ok(m), false) => manifests.push(m),
            (Err(reason), false) => unverified.push((batch, reason)),
        }
    }
    let left_out = || {
        unverified
            .iter()
            .map(|(b, why)| format!("; batch {b} left unsettled: {why}"))
            .collect::<String>()
    };
    if manifests.is_empty() {
        return Err(Error::InvalidInput(format!(
            "no inference batch was recorded on chain since epoch {}: serve some answers (the \
             ledger posts them) and settle again{}",
            epoch_no - 1,
            left_out()
        )));
    }
    let context = Context::load(chain, lake).await?;
    let mut paid = Vec::new();
    let mut batches: Vec<B256> = Vec::new();
    let mut repeated = Vec::new();
    for m in &manifests {
        batches.push(m.batch_id);
        for answer in &m.inferences {
            // An answer recorded before answers had a nonce has no id of its own (identical
            // answers share one, each paid): those are never taken for repeats.
            if !answer.nonce.is_zero() {
                if let Some(first) = paid_in.get(&answer.id()) {
                    repeated.push(Repeated {
                        answer: answer.id(),
                        batch: m.batch_id,
                        paid_in: *first,
                    });
                    continue;
                }
                paid_in.insert(answer.id(), m.batch_id);
            }
            let shares: Vec<(B256, Address, f64)> = answer
                .attribution
                .iter()
                .map(|a| {
                    let who = match a.contributor {
                        Some(who) if a.is_rest() => who,
                        _ => context.contributor(a.contribution),
                    };
                    (a.contribution, who, a.share)
                })
                .collect();
            paid.push(Paid {
                adapter: answer.adapter_id,
                owner: context.owner(answer.adapter_id),
                fee: answer.fee,
                shares,
            });
        }
    }
    batches.sort();
    batches.dedup();
    let pool = paid
        .iter()
        .try_fold(0u128, |sum, p| sum.checked_add(p.fee))
        .filter(|&pool| pool <= tables::MAX_AMOUNT)
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "epoch {epoch_no}'s fees add up to more than {} units (10^20 tokens), the \
                 most an epoch pays exactly: the inferences' fees are not plausible amounts; \
                 check the fee serving charges",
                tables::MAX_AMOUNT
            ))
        })?;
    let allocations = allocate(&policy, &accounts, &paid, &context.revoked);
    let root = tree(&totals(&allocations)).root();
    if pool == 0 || root == B256::ZERO {
        // Nothing to mint or claim (the distributor refuses a zero root); the batches stay
        // unsettled and are paid with the next epoch that has fees.
        return Err(Error::InvalidInput(format!(
            "the {} answer(s) recorded since epoch {} pay no fees (served with \
             --fee-per-token 0): nothing to settle; they are settled with the next answers \
             that pay{}{}",
            paid.len(),
            epoch_no - 1,
            if repeated.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} more were listed again and paid in earlier batches",
                    repeated.len()
                )
            },
            left_out()
        )));
    }
    let m = EpochManifest {
        epoch: epoch_no,
        policy,
        accounts,
        batches,
        pool: pool.to_string(),
        root,
        allocations,
        foreign: false,
    };
    let written = lake
        .put_new(
            &EpochManifest::key(epoch_no),
            serde_json::to_vec_pretty(&m).expect("serialises"),
        )
        .await?;
    let mut out = if written {
        publish(chain, lake, m).await?
    } else {
        // Another settle run wrote this epoch first: its manifest is the epoch (posted or
        // about to be), never overwritten; finish it as a resumed run would.
        publish(chain, lake, epoch(lake, epoch_no).await?).await?
    };
    out.unverified = unverified;
    for (batch, reason) in &unread {
        tracing::warn!(%batch, %reason, "a settled batch's answers cannot be read: an answer it paid, listed again in a new batch, is paid again");
    }
    out.unread = unread;
    for r in &repeated {
        tracing::warn!(answer = %r.answer, batch = %r.batch, paid_in = %r.paid_in, "answer listed again in another batch: paid once");
    }
    out.repeated = repeated;
    Ok(out)
}

/// Records epoch `n`, posted on chain by someone else (straight to the distributor: an
/// airdrop, say), as foreign, so that [`settle`] goes on with epoch `n + 1` instead of
/// stopping there. Only the next epoch this lake has not settled, posted on chain, qualifies,
/// and only a signer that may post epochs (`DISTRIBUTOR_ROLE`) may say so. An epoch Tributary
/// settled whose manifest was lost must be restored instead: recorded as foreign, its
/// batches would be paid again.
pub async fn record_foreign(chain: &Chain, lake: &Lake, n: u64) -> Result<EpochManifest> {
    let distributor = chain.reward_distributor();
    let role = distributor
        .DISTRIBUTOR_ROLE()
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    let signer = chain.signer();
    let may = distributor
        .hasRole(role, signer)
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    if !may {
        return Err(Error::InvalidInput(format!(
            "{signer} may not record reward epochs: only a holder of the RewardDistributor's \
             DISTRIBUTOR_ROLE may (the key that settles)"
        )));
    }
    let (root, total) = posted(chain, n).await?;
    if let Some(m) = manifest(lake, n).await? {
        // Recorded by an earlier run of this command (whose settle then stopped).
        if m.foreign && m.root == root {
            return Ok(m);
        }
        return Err(Error::InvalidInput(format!(
            "epoch {n} was settled by Tributary in this lake ({}): it is not someone else's",
            EpochManifest::key(n)
        )));
    }
    let next = epochs(lake).await?.len() as u64 + 1;
    if n != next {
        return Err(Error::InvalidInput(format!(
            "epoch {n} is not the next one to settle in this lake ({next}): only that one can \
             be recorded as posted by someone else"
        )));
    }
    if root == B256::ZERO {
        return Err(Error::InvalidInput(format!(
            "epoch {n} is not posted on chain: there is nothing foreign to record; \
             `tributary rewards settle` settles it"
        )));
    }
    // A settle run writes the epoch's allocation rows before it posts the root: rows of
    // epoch `n` mean Tributary settled it and its manifest was lost.
    if lake
        .app_ids(names::REWARD_ALLOCATIONS)
        .await?
        .contains(&allocations_txn(n))
    {
        return Err(Error::InvalidInput(format!(
            "epoch {n} was settled by Tributary (the lake's reward_allocations hold its rows) and \
             its manifest is lost: restore {} from a backup; recorded as foreign, its batches \
             would be paid again",
            EpochManifest::key(n)
        )));
    }
    let m = EpochManifest {
        epoch: n,
        policy: Policy::default(),
        accounts: Accounts {
            platform: Address::ZERO,
            stakers: Address::ZERO,
        },
        batches: vec![],
        pool: total.to_string(),
        allocations: vec![],
        root,
        foreign: true,
    };
    let bytes = serde_json::to_vec_pretty(&m).expect("serialises");
    if !lake.put_new(&EpochManifest::key(n), bytes).await? {
        return Err(Error::InvalidInput(format!(
            "epoch {n}'s manifest was written meanwhile (a settle run): nothing recorded; \
             run `tributary rewards settle` again"
        )));
    }
    tracing::info!(epoch = n, %root, %total, "epoch recorded as posted by someone else");
    Ok(m)
}

/// The Delta transaction id epoch `n`'s `reward_allocations` rows are appended under.
fn allocations_txn(n: u64) -> String {
    format!("tributary-rewards-{n}")
}

/// The Merkle root epoch `n` was posted with (zero when it was not).
/// Epoch `n` as posted: its root (zero while not posted) and the total minted for it.
async fn posted(chain: &Chain, n: u64) -> Result<(B256, U256)> {
    let e = chain
        .reward_distributor()
        .epochs(U256::from(n))
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    Ok((e.merkleRoot, e.total))
}

/// Checks epoch `m`, posted with `root` and `total`, against its manifest: the root, and the
/// total minted against the pool the allocations share (an epoch posted by hand, say from a
/// multisig when the settling key lacks the role, with another total: its last claims would
/// fail on `ExceedsEpochTotal`, or tokens beyond the allocations would be minted).
fn check_posted(m: &EpochManifest, pool: u128, root: B256, total: U256) -> Result<()> {
    if root != m.root {
        return Err(posted_otherwise(m, root));
    }
    if total != U256::from(pool) {
        let pool = U256::from(pool);
        return Err(Error::InvalidInput(format!(
            "epoch {} was posted with this manifest's root but a total of {total}, not its pool \
             of {pool}: {}",
            m.epoch,
            if total < pool {
                format!(
                    "its claims fail (ExceedsEpochTotal) once {total} is claimed; pay the {} \
                     short in a later epoch",
                    pool - total
                )
            } else {
                format!(
                    "{} more was minted than its allocations hand out",
                    total - pool
                )
            }
        )));
    }
    Ok(())
}

/// Epoch `m` was posted with another root than its manifest's.
fn posted_otherwise(m: &EpochManifest, posted: B256) -> Error {
    Error::InvalidInput(format!(
        "epoch {} was posted with root {posted}, not this manifest's {}: the lake's {} is not \
         the one settled (another settle run, or another lake); restore the settled manifest",
        m.epoch,
        m.root,
        EpochManifest::key(m.epoch)
    ))
}

/// Writes the epoch's rows (once) and posts `EpochAllocated` (once); `settle` calls it, and
/// it resumes an epoch whose manifest is in the lake. A manifest whose root is not the one
/// posted for its epoch is refused before anything is written.
pub async fn publish(chain: &Chain, lake: &Lake, m: EpochManifest) -> Result<Settled> {
    let pool: u128 = m
        .pool
        .parse()
        .map_err(|_| Error::InvalidInput("epoch manifest: bad pool".into()))?;
    let (root, total) = posted(chain, m.epoch).await?;
    if root != B256::ZERO {
        check_posted(&m, pool, root, total)?;
    }
    let n = m.allocations.len();
    let rows = &m.allocations;
    // Every amount is within the pool, which settle kept within MAX_AMOUNT.
    let amounts = tables::amounts(rows.iter().map(|r| r.amount)).map_err(|a| {
        Error::InvalidInput(format!(
            "epoch {}: amount {a} is above {}, the most the lake stores exactly",
            m.epoch,
            tables::MAX_AMOUNT
        ))
    })?;
    let batch = RecordBatch::try_new(
        tables::reward_allocations(),
        vec![
            Arc::new(Int64Array::from(vec![m.epoch as i64; n])),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| hex_lower(r.account.as_slice()))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.role.as_str()).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.adapter.to_string())
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.contribution.map(|c| c.to_string()))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.inferences as i64).collect::<Vec<_>>(),
            )),
            Arc::new(amounts),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.reason.clone()).collect::<Vec<_>>(),
            )),
        ],
    )?;
    lake.append(names::REWARD_ALLOCATIONS)
        .batches(vec![batch])
        .idempotent(allocations_txn(m.epoch), 0)
        .commit()
        .await?;
    let distributor = chain.reward_distributor();
    let tx = if root != B256::ZERO {
        None // posted by an earlier run
    } else {
        let call = distributor.allocateEpoch(U256::from(m.epoch), m.root, U256::from(pool));
        match send(call).await {
            Ok(r) => Some(r.transaction_hash),
            Err(e)
                if matches!(
                    e.revert::<RewardDistributor::RewardDistributorErrors>(),
                    Some(RewardDistributor::RewardDistributorErrors::EpochExists(_))
                ) =>
            {
                // Posted meanwhile, by another run: of this manifest, or the lakes differ.
                let (root, total) = posted(chain, m.epoch).await?;
                check_posted(&m, pool, root, total)?;
                None
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(Settled {
        manifest: m,
        pool,
        tx,
        unverified: Vec::new(),
        repeated: Vec::new(),
        unread: Vec::new(),
    })
}

/// What settlement needs to know about adapters and contributions.
struct Context {
    contributors: HashMap<B256, Address>,
    owners: HashMap<B256, Address>,
    revoked: HashSet<B256>,
}

impl Context {
    async fn load(chain: &Chain, lake: &Lake) -> Result<Self> {
        // Adapter publishers: as the registry records them (`publisherOf`), or, from a
        // registry deployed before it recorded them, the sender of the AdapterPublished
        // transaction.
        let mut owners = HashMap::new();
        let mut contributors = HashMap::new();
        let mut snapshots = HashSet::new();
        for e in crate::chain_state::published_adapters(chain).await? {
            if let Some(publisher) = chain.publisher_of(e.id).await? {
                owners.insert(e.id, publisher);
            } else if e.tx != B256::ZERO {
                use alloy::providers::Provider;
                let t = chain
                    .provider()
                    .get_transaction_by_hash(e.tx)
                    .await
                    .map_err(tributary_chain::Error::from)?;
                // Without it the owner's part would go to no one (the zero address, which
                // can never claim): refused, naming the fix.
                let t = t.ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "the node does not return transaction {} that published adapter {} \
                         (pruned, or not yet indexed): its sender is the adapter's owner; use a \
                         node that keeps every transaction (an archive node, or one with the full \
                         transaction index) and settle again",
                        e.tx, e.version
                    ))
                })?;
                owners.insert(e.id, t.inner.signer());
            }
            // Contributors by the snapshot the chain says the adapter was trained on, from its
            // manifest checked against the chain's record. One this lake lacks, or that is not
            // the chain's record, has no known contributors (their part goes to the platform);
            // a lake or chain that does not answer stops settlement.
            if e.snapshot.is_zero() || !snapshots.insert(e.snapshot) {
                continue;
            }
            match crate::snapshot::vouched(chain, lake, e.snapshot).await? {
                Ok(m) => {
                    for c in m.contributions {
                        contributors.insert(c.id, c.contributor);
                    }
                }
                Err(reason) => tracing::warn!(
                    adapter = %e.id,
                    snapshot = %e.snapshot,
                    %reason,
                    "the adapter's contributors are unknown: their part goes to the platform"
                ),
            }
        }
        let revoked = crate::chain_state::ChainState::read(chain).await?.revoked;
        Ok(Context {
            contributors,
            owners,
            revoked,
        })
    }

    fn contributor(&self, c: B256) -> Address {
        self.contributors.get(&c).copied().unwrap_or_default()
    }

    fn owner(&self, adapter: B256) -> Address {
        self.owners.get(&adapter).copied().unwrap_or_default()
    }
}

/// A claim of one epoch's reward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Token units paid to the account.
    pub amount: u128,
    /// The claiming transaction.
    pub tx: B256,
    /// False when the account had claimed already (an earlier run, or anyone's transaction).
    pub newly_claimed: bool,
}

/// Claims `account`'s reward of epoch `n` (anyone may send the claim; the token goes to the
/// account). Claiming again finds the earlier claim on chain and returns it, as after a run
/// that died before it could report its transaction.
pub async fn claim(chain: &Chain, lake: &Lake, n: u64, account: Address) -> Result<Claimed> {
    let m = epoch(lake, n).await?;
    if m.foreign {
        return Err(Error::NotFound(format!(
            "epoch {n} was posted straight to the distributor by someone else (recorded as \
             foreign): its claims and proofs are theirs, not Tributary's"
        )));
    }
    let (amount, proof) = m.claim(account).ok_or_else(|| {
        Error::NotFound(format!(
            "{account} has nothing to claim in epoch {n}: `tributary rewards show --contributor {account}` lists what it earned"
        ))
    })?;
    let distributor = chain.reward_distributor();
    let call = distributor.claim(U256::from(n), account, U256::from(amount), proof);
    match send(call).await {
        Ok(r) => Ok(Claimed {
            amount,
            tx: r.transaction_hash,
            newly_claimed: true,
        }),
        Err(e) => match e.revert::<RewardDistributor::RewardDistributorErrors>() {
            Some(RewardDistributor::RewardDistributorErrors::AlreadyClaimed(_)) => {
                let filter = distributor
                    .Claimed_filter()
                    .topic1(U256::from(n))
                    .topic2(account.into_word())
                    .filter;
                let found = chain.events::<RewardDistributor::Claimed>(&filter).await?;
                let (paid, log) = found.first().ok_or_else(|| {
                    Error::NotFound(format!("the Claimed event of {account} in epoch {n}"))
                })?;
                Ok(Claimed {
                    amount: paid.amount.saturating_to(),
                    tx: log.transaction_hash.unwrap_or_default(),
                    newly_claimed: false,
                })
            }
            _ => Err(e.into()),
        },
    }
}

/// One row of what an account earned, with whether its epoch was claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct Earned {
    /// Epoch.
    pub epoch: u64,
    /// The allocation.
    pub allocation: Allocation,
    /// Whether the account claimed that epoch.
    pub claimed: bool,
}

/// Everything `account` earned, epoch by epoch, and its token balance on chain.
pub async fn show(chain: &Chain, lake: &Lake, account: Address) -> Result<(Vec<Earned>, u128)> {
    let mut out = Vec::new();
    for m in epochs(lake).await? {
        let claimed = chain
            .reward_distributor()
            .hasClaimed(U256::from(m.epoch), account)
            .call()
            .await
            .map_err(tributary_chain::Error::from)?;
        out.extend(
            m.allocations
                .iter()
                .filter(|a| a.account == account)
                .map(|a| Earned {
                    epoch: m.epoch,
                    allocation: a.clone(),
                    claimed,
                }),
        );
    }
    let balance = chain
        .reward_token()
        .balanceOf(account)
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    Ok((out, balance.to::<u128>()))
}
