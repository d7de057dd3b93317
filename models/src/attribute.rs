//! `tributary attribute`: which contributions shaped one answer of a published adapter.
//!
//! The adapter, its base model, its influence and span indexes come from the lake (the base
//! model is cached locally after the first download); contributors and Datanets come from the
//! adapter's snapshot manifest; revocations from the chain (whoever sent them), so a revoked
//! contribution keeps its score for the record but gets no share.
//!
//! # Credit
//!
//! One definition, computed once per answer (when it is served) and once per adapter (over
//! its held-out set, when it is trained), and stored per contribution: a contribution's
//! **share** is its TracIn score over the positive scores of the contributions not revoked,
//! 0 when its score is not positive or it is revoked; a contributor's share is the sum of
//! their contributions' shares. An answer records every contribution with a share, largest
//! first, up to [`LISTED`]; past that, the remaining shares are summed per contributor and
//! recorded under the contributor (contribution id zero), so the credit recorded always sums
//! to 1 (or 0 when nothing is positive). The `/v1` answer, the ledger, the graph (`answer`
//! nodes), SQL (`attributions`, `contribution_influence`), GraphQL and settlement read these
//! stored shares; none recomputes them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use alloy::primitives::{Address, B256};
use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use tch::Device;
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_pipeline::snapshot;
use tributary_schemas::lineage::hex_lower;
use tributary_schemas::manifest::{AdapterManifest, AttributionShare, SnapshotManifest};
use tributary_schemas::tables::{self, names};

use tributary_trainer::attribute::{self as scoring, Loaded, greedy};
use tributary_trainer::influence::{SetInfluence, shares};
use tributary_trainer::model::Model;
use tributary_trainer::tokenizer::Tokenizer;

use crate::catalog;
use crate::{Error, Result};

/// What to attribute.
#[derive(Debug, Clone)]
pub struct Query {
    /// Adapter id or `line@version`.
    pub adapter: String,
    /// The prompt.
    pub prompt: String,
    /// The answer; generated greedily by the adapter when absent.
    pub output: Option<String>,
    /// Tokens to generate when `output` is absent.
    pub max_new_tokens: usize,
    /// Contributions to list.
    pub top_k: usize,
    /// Shortest span reported, in tokens.
    pub min_span: usize,
}

/// One contribution's part in an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Contribution id.
    pub contribution: B256,
    /// Its contributor.
    pub contributor: Address,
    /// Its Datanet.
    pub datanet_id: u64,
    /// TracIn score.
    pub score: f64,
    /// Share of the positive scores of unrevoked contributions (0 when revoked).
    pub share: f64,
    /// Whether it has been revoked.
    pub revoked: bool,
}

/// A span of the answer found in the training data.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedSpan {
    /// Its text.
    pub text: String,
    /// Length in tokens.
    pub tokens: usize,
    /// Occurrences in the training data.
    pub occurrences: u64,
    /// (contribution, occurrences in it), most first (at most 5).
    pub contributions: Vec<(B256, u64)>,
}

/// The attribution of one answer.
#[derive(Debug, Clone)]
pub struct Attribution {
    /// The adapter's manifest.
    pub adapter: AdapterManifest,
    /// The answer attributed (given or generated).
    pub output: String,
    /// Whether the answer was generated here.
    pub generated: bool,
    /// The top contributions by score.
    pub top: Vec<Scored>,
    /// Every contributor's share (their contributions' shares summed), largest first.
    pub contributors: Vec<(Address, f64)>,
    /// The answer's credit as serving records it (see the module docs).
    pub credit: Vec<AttributionShare>,
    /// Contributions scored in all.
    pub scored: usize,
    /// Spans of the answer found in the training data.
    pub spans: Vec<MatchedSpan>,
}

/// Writes the adapter's attribution over its held-out set to the lake's `attributions`
/// table (`subject_kind = 'adapter'`, method `tracin`), once per adapter.
pub(crate) async fn record_adapter(
    lake: &Lake,
    adapter: B256,
    snapshot: &SnapshotManifest,
    ids: &[String],
    on: &SetInfluence,
) -> Result<()> {
    let entries = entries(snapshot);
    let share = shares(&on.score);
    let n = ids.len();
    let mut datanet = Vec::with_capacity(n);
    let mut contributor = Vec::with_capacity(n);
    for id in ids {
        let (who, d) = entries.get(id).copied().ok_or_else(|| {
            Error::InvalidInput(format!(
                "contribution {id} is not in snapshot {}",
                snapshot.snapshot_id
            ))
        })?;
        datanet.push(d as i64);
        contributor.push(hex_lower(who.as_slice()));
    }
    let same = |v: String| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let batch = RecordBatch::try_new(
        tables::attributions(),
        vec![
            Arc::new(Int64Array::from(datanet)),
            same("adapter".into()),
            same(adapter.to_string()),
            same(adapter.to_string()),
            Arc::new(StringArray::from(ids.to_vec())),
            Arc::new(StringArray::from(contributor)),
            same("tracin".into()),
            Arc::new(Float64Array::from(on.score.clone())),
            Arc::new(Float64Array::from(share)),
            Arc::new(Float64Array::from(on.negative_fraction.clone())),
            Arc::new(Int64Array::from(vec![on.queries as i64; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        ],
    )
    .map_err(|e| Error::InvalidInput(format!("attributions batch: {e}")))?;
    lake.append(names::ATTRIBUTIONS)
        .batches(vec![batch])
        .idempotent(format!("tributary-attribution-{adapter}"), 0)
        .commit()
        .await?;
    Ok(())
}

/// Contributions an answer's recorded credit names one by one (the rest is summed per
/// contributor).
pub const LISTED: usize = 1024;

/// What attributing one answer found, in contributors' terms.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The top contributions by score.
    pub top: Vec<Scored>,
    /// Contributor shares (the sums of their contributions' shares), largest first.
    pub contributors: Vec<(Address, f64)>,
    /// The answer's credit as recorded: every positive share (see the module docs).
    pub credit: Vec<AttributionShare>,
    /// Contributions scored.
    pub scored: usize,
    /// Spans of the answer found in the training data.
    pub spans: Vec<MatchedSpan>,
}

/// Contribution id -> (contributor, Datanet), from an adapter's snapshot manifest.
pub fn entries(snapshot: &SnapshotManifest) -> BTreeMap<String, (Address, u64)> {
    snapshot
        .contributions
        .iter()
        .map(|c| (c.id.to_string(), (c.contributor, c.datanet_id)))
        .collect()
}

fn contribution_id(id: &str) -> Result<B256> {
    id.parse().map_err(|_| {
        Error::Internal(format!(
            "an adapter's index lists a bad contribution id {id:?}"
        ))
    })
}

/// Names the contributors behind the trainer's scores: the `top_k` contributions by score,
/// every contributor's share (their contributions' shares summed) and the credit to record.
pub fn credit(
    found: scoring::Found,
    entries: &BTreeMap<String, (Address, u64)>,
    top_k: usize,
) -> Result<Found> {
    let all: Vec<Scored> = found
        .scored
        .iter()
        .map(|s| {
            let (contributor, datanet_id) = entries.get(&s.id).copied().unwrap_or_default();
            Ok(Scored {
                contribution: contribution_id(&s.id)?,
                contributor,
                datanet_id,
                score: s.score,
                share: s.share,
                revoked: s.revoked,
            })
        })
        .collect::<Result<_>>()?;
    let spans = found
        .spans
        .into_iter()
        .map(|s| MatchedSpan {
            text: s.text,
            tokens: s.tokens,
            occurrences: s.occurrences,
            contributions: s
                .contributions
                .iter()
                .map(|(id, n)| (id.parse().unwrap_or_default(), *n))
                .collect(),
        })
        .collect();
    Ok(finish(all, spans, top_k))
}

/// Sorts scored contributions (largest score first) into what an answer shows and records.
fn finish(mut all: Vec<Scored>, spans: Vec<MatchedSpan>, top_k: usize) -> Found {
    let scored = all.len();
    all.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then(x.contribution.cmp(&y.contribution))
    });
    let (credit, contributors) = recorded(&all);
    all.truncate(top_k);
    Found {
        top: all,
        contributors,
        credit,
        scored,
        spans,
    }
}

/// The credit of an answer of a merge (an adapter without training of its own): its parents'
/// held-out credit (the `attributions` rows written when each was trained; a parent that is a
/// merge, its own parents'), weighted by the positive merge weights, as scores; shares over
/// the contributions not revoked now, as for any answer.
pub fn merged(
    prior: &[Scored],
    revoked: &std::collections::HashSet<String>,
    top_k: usize,
) -> Found {
    let gone: Vec<bool> = prior
        .iter()
        .map(|p| revoked.contains(&p.contribution.to_string()))
        .collect();
    let live: Vec<f64> = prior
        .iter()
        .zip(&gone)
        .map(|(p, &g)| if g { 0.0 } else { p.score })
        .collect();
    let all = prior
        .iter()
        .zip(shares(&live))
        .zip(gone)
        .map(|((p, share), revoked)| Scored {
            share,
            revoked,
            ..p.clone()
        })
        .collect();
    finish(all, vec![], top_k)
}

/// A merge's prior credit for [`merged`]: per contribution, its trained ancestors' held-out
/// shares times their part of the merge ([`Lake::credit_of`]), as scores.
pub async fn merge_prior(lake: &Lake, m: &AdapterManifest) -> Result<Vec<Scored>> {
    let bad = || {
        Error::Internal(format!(
            "adapter {} has a bad attributions row",
            m.adapter_id
        ))
    };
    lake.credit_of(m)
        .await?
        .into_iter()
        .map(|(c, who, d, weight)| {
            Ok(Scored {
                contribution: c.parse().map_err(|_| bad())?,
                contributor: who.parse().map_err(|_| bad())?,
                datanet_id: d as u64,
                score: weight,
                share: 0.0,
                revoked: false,
            })
        })
        .collect()
}

/// The credit to record from contributions sorted largest score first: every positive share
/// (up to [`LISTED`] by contribution, the rest per contributor), and the contributors' shares,
/// largest first.
pub fn recorded(sorted: &[Scored]) -> (Vec<AttributionShare>, Vec<(Address, f64)>) {
    let positive = sorted.iter().filter(|s| s.share > 0.0);
    let mut credit: Vec<AttributionShare> = positive
        .clone()
        .take(LISTED)
        .map(|c| AttributionShare {
            contribution: c.contribution,
            share: c.share,
            contributor: Some(c.contributor),
            datanet_id: Some(c.datanet_id),
            score: Some(c.score),
        })
        .collect();
    let mut rest: BTreeMap<Address, f64> = BTreeMap::new();
    for c in positive.clone().skip(LISTED) {
        *rest.entry(c.contributor).or_default() += c.share;
    }
    credit.extend(rest.into_iter().map(|(who, share)| AttributionShare {
        contribution: B256::ZERO,
        share,
        contributor: Some(who),
        datanet_id: None,
        score: None,
    }));
    let mut by: BTreeMap<Address, f64> = BTreeMap::new();
    for c in positive {
        *by.entry(c.contributor).or_default() += c.share;
    }
    let mut contributors: Vec<(Address, f64)> = by.into_iter().collect();
    contributors.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    (credit, contributors)
}

/// Attributes one answer of a published adapter.
pub async fn attribute(chain: &Chain, lake: &Lake, q: &Query, cache: &Path) -> Result<Attribution> {
    let all = catalog::published(chain).await?;
    let a = catalog::find(&all, &q.adapter, "adapter")?.clone();
    let manifest = catalog::load_manifest(lake, &a).await?;
    if manifest.metrics.is_none() {
        return Err(Error::InvalidInput(format!(
            "{} is a merge without training of its own: attribute its parents instead",
            a.version
        )));
    }
    let folder = catalog::base_folder(lake, manifest.base_model_id, cache).await?;
    let files = tempfile::tempdir().map_err(|e| Error::Io("temporary folder".into(), e))?;
    let adapter_folder = catalog::adapter_folder(lake, a.id)?;
    catalog::fetch_files(
        lake,
        &adapter_folder,
        &[
            "adapter_model.safetensors",
            "adapter_config.json",
            "influence.safetensors",
            "influence.json",
        ],
        files.path(),
    )
    .await?;
    let tokenizer = Tokenizer::load(&folder.join("tokenizer.json"))?;
    catalog::fetch_spans(lake, &adapter_folder, files.path()).await?;
    let snap = snapshot::load_committed(chain, lake, manifest.snapshot_id).await?;
    let entries = entries(&snap);
    let gone = catalog::revoked(chain).await?;

    let dir = files.path().to_path_buf();
    let q = q.clone();
    tokio::task::spawn_blocking(move || {
        let model = Model::load(&folder, Device::Cpu)?;
        let loaded = Loaded::load(&model, &dir)?;
        let (output, generated) = match &q.output {
            Some(o) => (o.clone(), false),
            None => {
                let prompt = tokenizer.encode(&q.prompt)?;
                let ids = greedy(
                    &model,
                    Some(&loaded.lora),
                    &prompt,
                    q.max_new_tokens,
                    tokenizer.eot(),
                )?;
                (tokenizer.decode(&ids)?, true)
            }
        };
        let scores = scoring::score(
            &model,
            &tokenizer,
            &loaded,
            &scoring::Answer {
                prompt: &q.prompt,
                output: &output,
                revoked: &gone,
                min_span: q.min_span,
                influence: true,
            },
        )?;
        let found = credit(scores, &entries, q.top_k)?;
        Ok(Attribution {
            adapter: manifest,
            output,
            generated,
            top: found.top,
            contributors: found.contributors,
            credit: found.credit,
            scored: found.scored,
            spans: found.spans,
        })
    })
    .await
    .map_err(crate::Error::joined)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(i: u32, owner: u8, score: f64) -> Scored {
        Scored {
            contribution: B256::from(alloy::primitives::U256::from(i + 1)),
            contributor: Address::repeat_byte(owner),
            datanet_id: 1,
            score,
            share: 0.0,
            revoked: false,
        }
    }

    /// Past LISTED contributions the rest is summed per contributor, and nothing is lost.
    #[test]
    fn recorded_credit_lists_then_sums_the_rest_per_contributor() {
        let n = LISTED as u32 + 6;
        let prior: Vec<Scored> = (0..n)
            .map(|i| scored(i, (i % 3) as u8, 1.0 + i as f64))
            .collect();
        let found = merged(&prior, &Default::default(), 5);
        let (listed, rest): (Vec<_>, Vec<_>) = found.credit.iter().partition(|c| !c.is_rest());
        assert_eq!(listed.len(), LISTED);
        assert_eq!(rest.len(), 3, "one sum per contributor of the tail");
        let total: f64 = found.credit.iter().map(|c| c.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert!(listed.windows(2).all(|w| w[0].share >= w[1].share));
        for (who, share) in &found.contributors {
            let theirs: f64 = found
                .credit
                .iter()
                .filter(|c| c.contributor == Some(*who))
                .map(|c| c.share)
                .sum();
            assert!((theirs - share).abs() < 1e-9);
        }
        assert_eq!(found.top.len(), 5);
    }

    /// A merge's credit leaves out what is revoked now and shares the rest.
    #[test]
    fn a_merge_credits_its_prior_less_revocations() {
        let prior = vec![scored(0, 1, 0.5), scored(1, 2, 0.3), scored(2, 3, 0.2)];
        let gone = std::collections::HashSet::from([prior[0].contribution.to_string()]);
        let found = merged(&prior, &gone, 10);
        let shares: Vec<(Address, f64)> = found
            .credit
            .iter()
            .map(|c| (c.contributor.unwrap(), c.share))
            .collect();
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].0, Address::repeat_byte(2));
        assert!((shares[0].1 - 0.6).abs() < 1e-9 && (shares[1].1 - 0.4).abs() < 1e-9);
        assert!(found.top.iter().any(|t| t.revoked && t.share == 0.0));
    }
}
