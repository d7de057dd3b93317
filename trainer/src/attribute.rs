//! Scoring one answer of an adapter against its training data: gradient influence (TracIn)
//! over the contributions it was trained on, and the answer's spans found in them.
//!
//! Contributions are named by the indexes' own id strings; who contributed each is the
//! caller's knowledge (`tributary-models` maps ids to contributors and Datanets).

use std::collections::HashSet;
use std::path::Path;

use tch::Tensor;

use crate::Result;
use crate::influence::{InfluenceIndex, shares};
use crate::lora::Lora;
use crate::model::Model;
use crate::spans::SpanIndex;
use crate::tokenizer::Tokenizer;

/// One contribution's score for an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Contribution id, as the influence index names it.
    pub id: String,
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
    /// (contribution id, occurrences in it), most first (at most 5).
    pub contributions: Vec<(String, u64)>,
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
    /// Loads an adapter folder with its indexes (`influence.*`, `spans.*`; either may be
    /// absent).
    pub fn load(model: &Model, dir: &Path) -> Result<Self> {
        let lora = Lora::load_peft(model, dir)?;
        let influence = if dir.join("influence.safetensors").exists() {
            Some(InfluenceIndex::load(dir)?)
        } else {
            None
        };
        let spans = if dir.join("spans.bin").exists() {
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

/// One answer to score and how.
pub struct Answer<'a> {
    /// The prompt.
    pub prompt: &'a str,
    /// The answer.
    pub output: &'a str,
    /// Contribution ids revoked so far: they keep their score but get no share.
    pub revoked: &'a HashSet<String>,
    /// Shortest span reported, in tokens.
    pub min_span: usize,
    /// Whether to compute gradient influence (the costly part); spans are always matched.
    pub influence: bool,
}

/// What [`score`] found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Every indexed contribution's score, in the index's order (empty when influence was
    /// not asked for or not indexed).
    pub scored: Vec<Scored>,
    /// Spans of the answer found in the training data.
    pub spans: Vec<MatchedSpan>,
}

/// Scores one answer: gradient influence over the adapter's training contributions (when
/// asked and indexed), and the answer's spans found in its training data.
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
        found.scored = ids
            .iter()
            .zip(&scores)
            .zip(shares(&live))
            .map(|((id, &score), share)| Scored {
                id: id.clone(),
                score,
                share,
                revoked: a.revoked.contains(id),
            })
            .collect();
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
                        .map(|&(d, n)| (ix.ids[d].clone(), n))
                        .collect(),
                })
            })
            .collect::<Result<_>>()?;
    }
    Ok(found)
}
