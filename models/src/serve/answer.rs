//! What Tributary adds to every answer: its ancestry, its attribution, and its record in the
//! inference ledger (request and response hashes, fee, attribution root).

use alloy::primitives::{B256, keccak256};
use serde_json::{Value, json};
use tributary_schemas::manifest::{AttributionShare, InferenceEntry};

use super::{Served, Server};
use crate::attribute;
use crate::{Error, Result};

/// A finished answer to account for.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// The request as received (its hash is recorded).
    pub request: &'a Value,
    /// The prompt the model saw.
    pub prompt: &'a str,
    /// The answer's text.
    pub text: &'a str,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Whether the response lists the attribution (the credit is measured and recorded
    /// either way, so the same answer is paid the same).
    pub attribution: bool,
}

impl Server {
    /// Attributes a finished answer and records it in the inference ledger: the answer's
    /// `ancestry`, `attribution` and `inference` fields, as JSON.
    pub async fn account(&self, s: &Served, a: Finished<'_>) -> Result<Value> {
        let mut found = match &s.prior {
            // A merge: its parents' held-out credit (see `attribute::merged`).
            Some(prior) => attribute::merged(prior, &*self.revoked().await?, self.config().top_k),
            None => self.attribute(s, a.prompt, a.text).await?,
        };
        let shares = std::mem::take(&mut found.credit);
        let tokens = (a.prompt_tokens + a.completion_tokens) as u128;
        let fee = tokens
            .checked_mul(self.config().fee_per_token)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{tokens} tokens at {} units each overflow 128 bits: lower the fee per token",
                    self.config().fee_per_token
                ))
            })?;
        let entry = InferenceEntry {
            adapter_id: s.on_chain.id,
            request_hash: keccak256(serde_json::to_vec(a.request).unwrap_or_default()),
            response_hash: keccak256(a.text.as_bytes()),
            attribution_root: AttributionShare::root(&shares),
            tokens: a.completion_tokens as u64,
            fee,
            attribution: shares,
            nonce: B256::random(),
        };
        let id = entry.id();
        self.ledger.record(entry.clone()).await?;
        let method = if s.prior.is_some() {
            "merge: its parents' held-out credit by merge weight"
        } else {
            "tracin"
        };
        let mut v = json!({
            "ancestry": s.ancestry,
            "attribution": {
                "method": method,
                "contributions_scored": found.scored,
                "contributions_credited": entry.attribution.iter().filter(|c| !c.is_rest()).count(),
                "top": found.top.iter().map(|c| json!({
                    "contribution": c.contribution.to_string(),
                    "contributor": c.contributor.to_string(),
                    "datanet_id": c.datanet_id,
                    "score": c.score,
                    "share": c.share,
                    "revoked": c.revoked,
                    "spans": found.spans.iter()
                        .filter(|sp| sp.contributions.iter().any(|(id, _)| *id == c.contribution))
                        .map(|sp| sp.text.clone())
                        .collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "contributors": found.contributors.iter()
                    .map(|(a, sh)| json!({"address": a.to_string(), "share": sh}))
                    .collect::<Vec<_>>(),
                "spans": found.spans.iter().map(|sp| json!({
                    "text": sp.text,
                    "tokens": sp.tokens,
                    "occurrences": sp.occurrences,
                    "contributions": sp.contributions.iter()
                        .map(|(id, n)| json!({"id": id.to_string(), "occurrences": n}))
                        .collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            },
            "inference": {
                "id": id.to_string(),
                "request_hash": entry.request_hash.to_string(),
                "response_hash": entry.response_hash.to_string(),
                "attribution_root": entry.attribution_root.to_string(),
                "fee": entry.fee.to_string(),
                "nonce": entry.nonce.to_string(),
            },
        });
        if !a.attribution {
            v.as_object_mut().expect("an object").remove("attribution");
        }
        Ok(v)
    }
}
