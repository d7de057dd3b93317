//! `tributary attribute`: which contributions shaped one answer of a published adapter.
//!
//! The adapter, its base model, its influence and span indexes come from the lake (the base
//! model is cached locally after the first download); contributors and Datanets come from the
//! adapter's snapshot manifest; revocations from the chain (whoever sent them), so a revoked
//! contribution keeps its score for the record but gets no share.

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
use tributary_schemas::manifest::{AdapterManifest, SnapshotManifest};
use tributary_schemas::tables::{self, names};

use tributary_trainer::attribute::{self as scoring, Loaded, greedy};
use tributary_trainer::influence::{SetInfluence, group_shares, shares};
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
    /// Every contributor's share (their unrevoked contributions' scores summed, then shares
    /// over the positive totals), largest first.
    pub contributors: Vec<(Address, f64)>,
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

/// What attributing one answer found, in contributors' terms.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The top contributions by score.
    pub top: Vec<Scored>,
    /// Contributor shares, largest first.
    pub contributors: Vec<(Address, f64)>,
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
/// and every contributor's share (their unrevoked contributions' shares summed).
pub fn credit(
    found: scoring::Found,
    entries: &BTreeMap<String, (Address, u64)>,
    top_k: usize,
) -> Result<Found> {
    let mut all: Vec<Scored> = found
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
    let keys: Vec<Address> = all.iter().map(|s| s.contributor).collect();
    let live: Vec<f64> = found
        .scored
        .iter()
        .map(|s| if s.revoked { 0.0 } else { s.score })
        .collect();
    let mut contributors: Vec<(Address, f64)> = group_shares(&keys, &live).into_iter().collect();
    contributors.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    let scored = all.len();
    all.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then(x.contribution.cmp(&y.contribution))
    });
    all.truncate(top_k);
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
    Ok(Found {
        top: all,
        contributors,
        scored,
        spans,
    })
}

/// Attributes one answer of a published adapter.
pub async fn attribute(chain: &Chain, lake: &Lake, q: &Query, cache: &Path) -> Result<Attribution> {
    let all = catalog::published(chain).await?;
    let a = catalog::find(&all, &q.adapter, "adapter")?.clone();
    let manifest = catalog::load_manifest(lake, a.id).await?;
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
    let snap = snapshot::load(lake, manifest.snapshot_id).await?;
    let entries = entries(&snap);
    let gone = catalog::revoked(chain).await?;

    let dir = files.path().to_path_buf();
    let q = q.clone();
    tokio::task::spawn_blocking(move || {
        let model = Model::load(&folder, Device::Cpu)?;
        let mut loaded = Loaded::load(&model, &dir)?;
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
            &mut loaded,
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
            scored: found.scored,
            spans: found.spans,
        })
    })
    .await
    .map_err(crate::Error::joined)?
}
