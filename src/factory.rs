//! The ModelFactory's checks and previews for the API ([`tributary_api::Factory`]): a job is
//! parsed and checked as a scheduler worker checks a `[[jobs]]` table, and a snapshot is
//! previewed from the chain and the lake as a run would freeze it. A job made through the API
//! must say what it is for (`use`), and its base model is `tiny` or a folder under the data
//! directory's `models/`: a token holder names no other path on the workers.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use tributary_api::{CheckedJob, Factory, LicenseCount, SnapshotPreview};
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_models::schedule::{self, Cron, JobSpec, license_refusal, now_ms, plain_name};
use tributary_models::usage::{self, Use};

/// Checks and previews over one chain and lake.
pub(crate) struct ModelFactory {
    chain: Arc<Chain>,
    lake: Lake,
    /// The folder base models other than `tiny` must be in (`DATA_DIR/models`).
    models: PathBuf,
}

impl ModelFactory {
    pub(crate) fn new(chain: Arc<Chain>, lake: Lake, data_dir: &std::path::Path) -> Self {
        Self {
            chain,
            lake,
            models: data_dir.join("models"),
        }
    }
}

#[async_trait::async_trait]
impl Factory for ModelFactory {
    fn check(&self, toml: &str) -> Result<CheckedJob, String> {
        let mut spec: JobSpec = toml::from_str(toml)
            .map_err(|e| format!("the job spec is not a valid [[jobs]] table: {e}"))?;
        spec.check().map_err(|e| e.to_string())?;
        if spec.usage.is_none() {
            return Err(format!(
                "job {:?}: say what its adapters are for, use = \"commercial\" or \"research\": the ModelFactory checks the snapshot's licenses against it",
                spec.name
            ));
        }
        if spec.base_model != "tiny" {
            let name = spec.base_model.clone();
            let folder = self.models.join(&name);
            if plain_name(&name).is_err() || !folder.join("config.json").is_file() {
                return Err(format!(
                    "base_model {name:?}: give \"tiny\", or the name of a Hugging Face checkpoint folder in {} (config.json, model.safetensors, tokenizer.json)",
                    self.models.display()
                ));
            }
            spec.base_model = folder.display().to_string();
        }
        let cron = Cron::parse(&spec.cron)?;
        Ok(CheckedJob {
            name: spec.name.clone(),
            cron: spec.cron.clone(),
            first_due_ms: cron.next_after(now_ms()),
            spec: serde_json::to_value(&spec).map_err(|e| e.to_string())?,
            datanets: spec.datanets.clone(),
            usage: spec.usage.map(|u| u.as_str().to_string()),
        })
    }

    async fn preview(
        &self,
        datanets: &[String],
        usage: Option<&str>,
    ) -> Result<SnapshotPreview, String> {
        let usage = usage.map(Use::parse).transpose()?;
        if datanets.is_empty() {
            return Err("no Datanet given: name at least one to train on".into());
        }
        let p = schedule::preview(&self.chain, &self.lake, datanets)
            .await
            .map_err(|e| e.to_string())?;
        let contributors: HashSet<_> = p
            .manifest
            .contributions
            .iter()
            .map(|e| e.contributor)
            .collect();
        let licenses = p
            .licenses
            .iter()
            .map(|(license, n)| {
                let reason = usage.and_then(|u| u.allows(license).err());
                LicenseCount {
                    license: license.clone(),
                    contributions: *n,
                    allowed: reason.is_none(),
                    reason,
                }
            })
            .collect();
        let refusal = usage.and_then(|u| {
            let refused = usage::refused(u, &p.licenses);
            (!refused.is_empty()).then(|| license_refusal(u, &refused))
        });
        Ok(SnapshotPreview {
            datanets: p.manifest.datanet_ids.clone(),
            contributions: p.manifest.contributions.len() as u64,
            contributors: contributors.len() as u64,
            licenses,
            allowed: refusal.is_none(),
            refusal,
        })
    }
}
