//! Scoring one answer of an adapter against its training data: gradient influence (TracIn)
//! over the contributions it was trained on, and the answer's spans found in them.
//!
//! Contributions are named by the indexes' own id strings; who contributed each is the
//! caller's knowledge (`tributary-models` maps ids to contributors and Datanets).

use std::collections::HashSet;
use std::path::Path;

use tch::Tensor;

use crate::influence::{self, InfluenceIndex, shares};
use crate::lora::Lora;
use crate::model::Model;
use crate::spans::SpanIndex;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

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
    /// absent). The influence index's checkpoint weights go to `model`'s device, where
    /// answers are scored.
    pub fn load(model: &Model, dir: &Path) -> Result<Self> {
        let lora = Lora::load_peft(model, dir)?;
        let influence = if dir.join("influence.safetensors").exists() {
            Some(InfluenceIndex::load(dir)?.to_device(model.device()))
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

    /// Bytes held in memory (on the model's device for the influence index's checkpoint
    /// weights): the adapter, its influence index and its span index (read whole from its
    /// file; counted as stored).
    pub fn bytes(&self) -> i64 {
        4 * self.lora.num_parameters()
            + self.influence.as_ref().map_or(0, |i| i.bytes())
            + self.spans.as_ref().map_or(0, |s| s.bytes() as i64)
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
pub fn score(model: &Model, tokenizer: &Tokenizer, l: &Loaded, a: &Answer<'_>) -> Result<Found> {
    score_batch(model, tokenizer, &[(l, a)]).remove(0)
}

/// Scores answers together, one result per answer in order: the gradient influence of all of
/// them in batched passes ([`influence::scores_batch`]: answers of one adapter, or of
/// adapters of one layout, share each pass), then each answer's spans. An answer that does
/// not tokenize fails alone; a failed pass fails the answers it held.
pub fn score_batch(
    model: &Model,
    tokenizer: &Tokenizer,
    answers: &[(&Loaded, &Answer<'_>)],
) -> Vec<Result<Found>> {
    let tokens: Vec<Result<Vec<i64>>> = answers
        .iter()
        .map(|(_, a)| tokenizer.encode(&format!("{}{}", a.prompt, a.output)))
        .collect();
    // The answers whose influence is asked for and indexed.
    let asked: Vec<usize> = (0..answers.len())
        .filter(|&i| {
            answers[i].1.influence && answers[i].0.influence.is_some() && tokens[i].is_ok()
        })
        .collect();
    let queries: Vec<influence::Query<'_>> = asked
        .iter()
        .map(|&i| influence::Query {
            index: answers[i].0.influence.as_ref().expect("filtered"),
            lora: &answers[i].0.lora,
            tokens: tokens[i].as_deref().expect("filtered"),
        })
        .collect();
    let mut scores: Vec<Option<Result<Vec<f64>>>> = (0..answers.len()).map(|_| None).collect();
    // A panic inside libtorch (a CUDA out-of-memory) fails these answers, not the caller.
    match crate::guarded(|| influence::scores_batch(model, &queries)) {
        Ok(all) => {
            for (&i, s) in asked.iter().zip(all) {
                scores[i] = Some(Ok(s));
            }
        }
        Err(e) => {
            for &i in &asked {
                scores[i] = Some(Err(Error::Internal(format!("attribution failed: {e}"))));
            }
        }
    }
    answers
        .iter()
        .zip(tokens)
        .zip(scores)
        .map(|(((l, a), tokens), scores)| {
            tokens?;
            let mut found = Found::default();
            if let (Some(scores), Some(ix)) = (scores, &l.influence) {
                found.scored = scored(&ix.meta.ids, &scores?, a.revoked);
            }
            found.spans = spans(tokenizer, l, a)?;
            Ok(found)
        })
        .collect()
}

/// Each contribution's score and its share of the positive scores of the contributions not
/// revoked.
fn scored(ids: &[String], scores: &[f64], revoked: &HashSet<String>) -> Vec<Scored> {
    let live: Vec<f64> = scores
        .iter()
        .zip(ids)
        .map(|(&s, id)| if revoked.contains(id) { 0.0 } else { s })
        .collect();
    ids.iter()
        .zip(scores)
        .zip(shares(&live))
        .map(|((id, &score), share)| Scored {
            id: id.clone(),
            score,
            share,
            revoked: revoked.contains(id),
        })
        .collect()
}

/// The answer's spans found in the adapter's training data.
fn spans(tokenizer: &Tokenizer, l: &Loaded, a: &Answer<'_>) -> Result<Vec<MatchedSpan>> {
    let Some(ix) = &l.spans else {
        return Ok(Vec::new());
    };
    let out_ids = tokenizer.encode(a.output)?;
    ix.find(&out_ids, a.min_span)
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
        .collect()
}
