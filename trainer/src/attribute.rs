//! `tributary attribute`: which contributions shaped one answer of a published adapter.
//!
//! The adapter, its base model, its influence and span indexes come from the lake (the base
//! model is cached locally after the first download); contributors and Datanets come from the
//! adapter's snapshot manifest; revocations from the chain (whoever sent them), so a revoked
//! contribution keeps its score for the record but gets no share.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{Address, B256};
use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use tch::{Device, Tensor};
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_pipeline::snapshot;
use tributary_schemas::lineage::hex_lower;
use tributary_schemas::manifest::{AdapterManifest, SnapshotManifest};
use tributary_schemas::tables::{self, names};

use crate::influence::{InfluenceIndex, SetInfluence, group_shares, shares};
use crate::job;
use crate::lora::Lora;
use crate::model::Model;
use crate::spans::{self, SpanIndex};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result, base};

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

/// Greedy decoding of up to `max_new` tokens after `prompt` (stops at `eot`).
pub fn greedy(
    model: &Model,
    lora: Option<&Lora>,
    prompt: &[i64],
    max_new: usize,
    eot: i64,
) -> Result<Vec<i64>> {
    let mut ids = prompt.to_vec();
    let mut out = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for _ in 0..max_new {
            let window = &ids[ids
                .len()
                .saturating_sub(model.config.max_positions as usize)..];
            let t = Tensor::from_slice(window)
                .to_device(model.device())
                .unsqueeze(0);
            let logits = match lora {
                Some(l) => l.logits(model, &t, false)?,
                None => model.logits(&t)?,
            };
            let next = logits
                .get(0)
                .get(window.len() as i64 - 1)
                .argmax(0, false)
                .int64_value(&[]);
            if next == eot {
                break;
            }
            ids.push(next);
            out.push(next);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The base model `id` from the lake, cached in `cache/base-ID` (checked against its id).
pub(crate) async fn base_folder(lake: &Lake, id: B256, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join(format!("base-{id}"));
    // The folder appears whole (renamed from the partial one once checked).
    if dir.join("config.json").exists() {
        return Ok(dir);
    }
    let part = cache.join(format!("base-{id}.partial"));
    std::fs::create_dir_all(&part).map_err(|e| Error::Io(part.display().to_string(), e))?;
    let uri = lake
        .root()
        .join(&format!("models/{id}/"))
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    job::fetch_files(
        lake,
        uri.as_str(),
        &["config.json", "tokenizer.json"],
        &part,
    )
    .await?;
    // One weights file, or a sharded checkpoint's index and then the shards it names.
    match job::fetch_files(lake, uri.as_str(), &["model.safetensors"], &part).await {
        Ok(()) => {}
        Err(Error::Lake(e)) if e.is_not_found() => {
            let index = "model.safetensors.index.json";
            job::fetch_files(lake, uri.as_str(), &[index], &part).await?;
            let text = std::fs::read_to_string(part.join(index))
                .map_err(|e| Error::Io(part.join(index).display().to_string(), e))?;
            let shards = crate::model::shard_names(&text, index)?;
            let names: Vec<&str> = shards.iter().map(String::as_str).collect();
            job::fetch_files(lake, uri.as_str(), &names, &part).await?;
        }
        Err(e) => return Err(e),
    }
    let got = base::checkpoint_hash(&part)?;
    if got != id {
        return Err(Error::InvalidInput(format!(
            "the base model in the lake hashes to {got}, not its id {id}: the lake copy is damaged"
        )));
    }
    std::fs::rename(&part, &dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
    Ok(dir)
}

/// Contribution ids revoked on chain, by whichever wallet (see `tributary_pipeline::chain_state`).
pub(crate) async fn revoked(chain: &Chain) -> Result<HashSet<String>> {
    let state = tributary_pipeline::chain_state::ChainState::read(chain).await?;
    Ok(state.revoked.iter().map(|id| id.to_string()).collect())
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
    let entries: BTreeMap<String, (Address, u64)> = snapshot
        .contributions
        .iter()
        .map(|c| (c.id.to_string(), (c.contributor, c.datanet_id)))
        .collect();
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

/// What attributing answers of one adapter needs, in memory.
pub struct Loaded {
    /// The adapter.
    pub lora: Lora,
    /// Its gradient index (`None` for a merge without training of its own).
    pub influence: Option<InfluenceIndex>,
    /// Its span index (`None` where training wrote none).
    pub spans: Option<SpanIndex>,
}

impl Loaded {
    /// Loads an adapter folder with its indexes (`influence.*`, and `spans.*` when
    /// `with_spans`; either may be absent).
    pub fn load(model: &Model, dir: &Path, with_spans: bool) -> Result<Self> {
        let lora = Lora::load_peft(model, dir)?;
        let influence = if dir.join("influence.safetensors").exists() {
            Some(InfluenceIndex::load(dir)?)
        } else {
            None
        };
        let spans = if with_spans && dir.join("spans.bin").exists() {
            Some(SpanIndex::load(dir)?)
        } else {
            None
        };
        Ok(Loaded {
            lora,
            influence,
            spans,
        })
    }
}

/// One answer to attribute and how.
pub struct Answer<'a> {
    /// The prompt.
    pub prompt: &'a str,
    /// The answer.
    pub output: &'a str,
    /// Contribution id -> (contributor, Datanet), from the adapter's snapshot.
    pub entries: &'a BTreeMap<String, (Address, u64)>,
    /// Contribution ids revoked so far.
    pub revoked: &'a HashSet<String>,
    /// Contributions to list.
    pub top_k: usize,
    /// Shortest span reported, in tokens.
    pub min_span: usize,
    /// Whether to compute gradient influence (the costly part); spans are always matched.
    pub influence: bool,
}

/// What [`score`] found.
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

/// Attributes one answer: gradient influence over the adapter's training contributions
/// (when asked and indexed), and the answer's spans found in its training data.
pub fn score(
    model: &Model,
    tokenizer: &Tokenizer,
    l: &mut Loaded,
    a: &Answer<'_>,
) -> Result<Found> {
    let mut found = Found::default();
    if let (true, Some(influence)) = (a.influence, &l.influence) {
        let query = tokenizer.encode(&format!("{}{}", a.prompt, a.output))?;
        let scores = influence.scores(model, &mut l.lora, &query)?;
        let ids = &influence.meta.ids;
        let live: Vec<f64> = scores
            .iter()
            .zip(ids)
            .map(|(&s, id)| if a.revoked.contains(id) { 0.0 } else { s })
            .collect();
        let share = shares(&live);
        let mut all: Vec<Scored> = ids
            .iter()
            .zip(&scores)
            .zip(&share)
            .map(|((id, &score), &share)| {
                let (contributor, datanet_id) = a.entries.get(id).copied().unwrap_or_default();
                Ok(Scored {
                    contribution: id.parse().map_err(|_| {
                        Error::InvalidInput(format!("influence index lists a bad id {id:?}"))
                    })?,
                    contributor,
                    datanet_id,
                    score,
                    share,
                    revoked: a.revoked.contains(id),
                })
            })
            .collect::<Result<_>>()?;
        let keys: Vec<Address> = all.iter().map(|s| s.contributor).collect();
        let mut contributors: Vec<(Address, f64)> =
            group_shares(&keys, &live).into_iter().collect();
        contributors.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        found.scored = all.len();
        all.sort_by(|x, y| {
            y.score
                .total_cmp(&x.score)
                .then(x.contribution.cmp(&y.contribution))
        });
        all.truncate(a.top_k);
        found.top = all;
        found.contributors = contributors;
    }
    if let Some(ix) = &l.spans {
        let out_ids = tokenizer.encode(a.output)?;
        found.spans = ix
            .find(&out_ids, a.min_span)
            .into_iter()
            .map(|s| {
                Ok(MatchedSpan {
                    text: tokenizer.decode(&out_ids[s.start..s.start + s.len])?,
                    tokens: s.len,
                    occurrences: s.occurrences,
                    contributions: s
                        .contributions
                        .iter()
                        .take(5)
                        .map(|&(d, n)| (ix.ids[d].parse().unwrap_or_default(), n))
                        .collect(),
                })
            })
            .collect::<Result<_>>()?;
    }
    Ok(found)
}

/// Attributes one answer of a published adapter.
pub async fn attribute(chain: &Chain, lake: &Lake, q: &Query, cache: &Path) -> Result<Attribution> {
    let all = job::published(chain).await?;
    let a = job::find(&all, &q.adapter, "adapter")?.clone();
    let manifest = job::load_manifest(lake, a.id).await?;
    if manifest.metrics.is_none() {
        return Err(Error::InvalidInput(format!(
            "{} is a merge without training of its own: attribute its parents instead",
            a.version
        )));
    }
    let folder = base_folder(lake, manifest.base_model_id, cache).await?;
    let files = tempfile::tempdir().map_err(|e| Error::Io("temporary folder".into(), e))?;
    let adapter_folder = job::adapter_folder(lake, a.id)?;
    job::fetch_files(
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
    // Training writes no span index for vocabularies above its u16 tokens.
    let has_spans = tokenizer.vocab_size() <= spans::MAX_VOCAB;
    if has_spans {
        job::fetch_files(
            lake,
            &adapter_folder,
            &["spans.bin", "spans.json"],
            files.path(),
        )
        .await?;
    }
    let snap = snapshot::load(lake, manifest.snapshot_id).await?;
    let entries: BTreeMap<String, (Address, u64)> = snap
        .contributions
        .iter()
        .map(|c| (c.id.to_string(), (c.contributor, c.datanet_id)))
        .collect();
    let gone = revoked(chain).await?;

    let dir = files.path().to_path_buf();
    let q = q.clone();
    tokio::task::spawn_blocking(move || {
        let model = Model::load(&folder, Device::Cpu)?;
        let mut loaded = Loaded::load(&model, &dir, has_spans)?;
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
        let found = score(
            &model,
            &tokenizer,
            &mut loaded,
            &Answer {
                prompt: &q.prompt,
                output: &output,
                entries: &entries,
                revoked: &gone,
                top_k: q.top_k,
                min_span: q.min_span,
                influence: true,
            },
        )?;
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
