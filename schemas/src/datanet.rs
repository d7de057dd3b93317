//! The Datanet manifest: what a Datanet accepts, written by its community as TOML.
//!
//! ```toml
//! name = "kitchen-conversions"
//! domain = "cooking"
//! licenses = ["CC-BY-4.0", "CC0-1.0"]
//! max_record_bytes = 4096
//!
//! [fields.question]
//! type = "text"
//! required = true
//! min_length = 8
//! max_length = 300
//!
//! [fields.answer]
//! type = "text"
//! required = true
//! pattern = "\\.$"
//!
//! [fields.unit]
//! type = "label"
//! labels = ["metric", "imperial"]
//!
//! [dedup]
//! exact = true
//! near_threshold = 0.8
//!
//! [access]
//! submitters = "anyone"            # or a list of addresses
//! validators = ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]
//! ```
//!
//! The schema hash registered on chain is `keccak256` of the manifest's canonical JSON, so the
//! same rules hash the same way whatever the TOML's layout.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use crate::canonical::content_hash;
use crate::{Error, Result};

/// Types a record field may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Free text (a JSON string).
    Text,
    /// One of a fixed set of strings (`labels`).
    Label,
    /// A JSON number.
    Number,
    /// Any JSON value.
    Json,
}

/// One field of the record schema and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The field's type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// The field must be present and not null.
    #[serde(default)]
    pub required: bool,
    /// Least characters (text and label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<usize>,
    /// Most characters (text and label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Allowed values (label).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// A regular expression the text must match somewhere (use `^…$` to anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// How duplicates are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupPolicy {
    /// Refuse a record whose content hash is already in the Datanet or earlier in the batch.
    #[serde(default = "yes")]
    pub exact: bool,
    /// Refuse a record whose text has estimated Jaccard similarity at least this high (over
    /// word 3-shingles, MinHash) with one already in the Datanet or the batch; `None` is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_threshold: Option<f64>,
}

fn yes() -> bool {
    true
}

impl Default for DedupPolicy {
    fn default() -> Self {
        Self {
            exact: true,
            near_threshold: None,
        }
    }
}

/// Who may do what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Allowed {
    /// `"anyone"`.
    Anyone(AnyoneTag),
    /// A list of addresses.
    Only(Vec<Address>),
}

/// The literal `"anyone"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnyoneTag {
    /// Everyone is allowed.
    Anyone,
}

impl Allowed {
    /// True when `who` is allowed.
    pub fn allows(&self, who: Address) -> bool {
        match self {
            Allowed::Anyone(_) => true,
            Allowed::Only(list) => list.contains(&who),
        }
    }
}

/// Who may submit and who may validate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    /// Contributors whose signed records are accepted.
    #[serde(default = "anyone")]
    pub submitters: Allowed,
    /// Accounts that may attest to batches.
    #[serde(default)]
    pub validators: Vec<Address>,
}

fn anyone() -> Allowed {
    Allowed::Anyone(AnyoneTag::Anyone)
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            submitters: anyone(),
            validators: Vec::new(),
        }
    }
}

/// A Datanet manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatanetManifest {
    /// Unique name (registered on chain).
    pub name: String,
    /// Domain, e.g. `cooking`.
    pub domain: String,
    /// What the Datanet is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Accepted licenses (SPDX ids).
    pub licenses: Vec<String>,
    /// Largest accepted record, in bytes of canonical JSON.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// The record schema: field name to type and rules.
    pub fields: BTreeMap<String, FieldSpec>,
    /// Duplicate policy.
    #[serde(default)]
    pub dedup: DedupPolicy,
    /// Who may submit and validate.
    #[serde(default)]
    pub access: AccessPolicy,
}

fn default_max_record_bytes() -> usize {
    64 * 1024
}

impl DatanetManifest {
    /// Parses and checks a TOML manifest.
    pub fn from_toml(text: &str) -> Result<Self> {
        let m: Self = toml::from_str(text).map_err(|e| Error::InvalidManifest(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Checks the manifest's own consistency (not a record against it).
    pub fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidManifest(msg));
        if self.name.trim().is_empty() || self.name.len() > 100 {
            return bad("`name` must be 1 to 100 characters".into());
        }
        if self.fields.is_empty() {
            return bad("declare at least one field under [fields.NAME]".into());
        }
        if self.licenses.is_empty() {
            return bad("`licenses` must list at least one SPDX id, e.g. [\"CC-BY-4.0\"]".into());
        }
        for (name, f) in &self.fields {
            if f.kind == FieldType::Label && f.labels.is_empty() {
                return bad(format!(
                    "field `{name}` is a label: give its allowed `labels`"
                ));
            }
            if f.kind != FieldType::Label && !f.labels.is_empty() {
                return bad(format!(
                    "field `{name}` has `labels` but is not of type \"label\""
                ));
            }
            if let (Some(lo), Some(hi)) = (f.min_length, f.max_length)
                && lo > hi
            {
                return bad(format!(
                    "field `{name}`: min_length {lo} exceeds max_length {hi}"
                ));
            }
            if let Some(p) = &f.pattern
                && let Err(e) = regex::Regex::new(p)
            {
                return bad(format!("field `{name}`: pattern is not a valid regex: {e}"));
            }
        }
        if let Some(t) = self.dedup.near_threshold
            && !(t > 0.0 && t <= 1.0)
        {
            return bad(format!("dedup.near_threshold is {t}; it must be in (0, 1]"));
        }
        Ok(())
    }

    /// The manifest as canonical JSON (the form that is hashed and stored).
    pub fn to_canonical_json(&self) -> String {
        crate::canonical::to_canonical_json(
            &serde_json::to_value(self).expect("manifest serialises"),
        )
    }

    /// `keccak256` of the canonical JSON: the `schemaHash` registered on chain.
    pub fn schema_hash(&self) -> B256 {
        content_hash(&serde_json::to_value(self).expect("manifest serialises"))
    }

    /// Where the manifest of the Datanet `name` lives, relative to the lake root (under
    /// [`crate::manifest::ARTIFACTS`]).
    pub fn key(name: &str) -> String {
        format!("{}datanets/{name}.json", crate::manifest::ARTIFACTS)
    }
}
