//! OpenLineage run events (spec 2-0-2): START when a run begins, COMPLETE or FAIL (with the
//! error) when it ends, each with the run's input and output datasets, so Marquez, DataHub
//! and other OpenLineage consumers see Tributary's ingest, snapshot, training and settlement
//! runs. Events go to an HTTP endpoint (`POST URL/api/v1/lineage`, as Marquez takes them)
//! and/or a JSON-lines file, as `TRIBUTARY_OPENLINEAGE_URL` / `TRIBUTARY_OPENLINEAGE_FILE`
//! (or `[openlineage]` in tributary.toml) say. Delivery never fails the run it describes: a
//! failed delivery is logged as a warning.
//!
//! [`observe`] wraps a run in START and COMPLETE/FAIL; the CLI wraps ingest, snapshot, train
//! and settle, and `tributary-models`' scheduler sends its runs' events itself.
//! `tests/python/OpenLineage.json` is the spec the tests validate events against.

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

/// The RunEvent schema the events follow.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const ERROR_FACET: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";

/// A dataset a run reads or writes: `namespace` is where it lives (the lake's root URL, or
/// `file` for local input files), `name` the table or object in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Where the dataset lives.
    pub namespace: String,
    /// Its name there.
    pub name: String,
}

impl Dataset {
    /// A dataset named `name` under `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({ "namespace": self.namespace, "name": self.name, "facets": {} })
    }
}

/// Where events go.
#[derive(Debug, Clone)]
pub struct Emitter {
    url: Option<url::Url>,
    file: Option<PathBuf>,
    namespace: String,
    http: reqwest::Client,
}

/// The `producer` of every event: this code, by repository and version.
fn producer() -> String {
    format!(
        "https://github.com/tributary-ai/tributary/tree/v{}",
        env!("CARGO_PKG_VERSION")
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Emitter {
    /// An emitter to `url` (the consumer's base URL) and/or `file`, naming jobs under
    /// `namespace`; `None` when neither is given.
    pub fn new(url: Option<url::Url>, file: Option<PathBuf>, namespace: &str) -> Option<Self> {
        if url.is_none() && file.is_none() {
            return None;
        }
        Some(Self {
            url,
            file,
            namespace: namespace.to_string(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        })
    }

    /// The emitter `TRIBUTARY_OPENLINEAGE_URL`, `_FILE` and `_NAMESPACE` (default
    /// `tributary`) describe, if any. A URL that does not parse is an error naming the fix.
    pub fn from_env() -> crate::Result<Option<Self>> {
        let url = match std::env::var("TRIBUTARY_OPENLINEAGE_URL") {
            Ok(u) if !u.is_empty() => Some(url::Url::parse(&u).map_err(|e| {
                crate::Error::InvalidInput(format!(
                    "TRIBUTARY_OPENLINEAGE_URL {u:?} is not a URL ({e}): use e.g. http://localhost:5000"
                ))
            })?),
            _ => None,
        };
        let file = std::env::var_os("TRIBUTARY_OPENLINEAGE_FILE")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from);
        let namespace =
            std::env::var("TRIBUTARY_OPENLINEAGE_NAMESPACE").unwrap_or_else(|_| "tributary".into());
        Ok(Self::new(url, file, &namespace))
    }

    /// The RunEvent JSON of one event.
    pub fn event(
        &self,
        event_type: &str,
        run_id: &str,
        job: &str,
        inputs: &[Dataset],
        outputs: &[Dataset],
        error: Option<&str>,
    ) -> Value {
        let mut run_facets = json!({});
        if let Some(message) = error {
            run_facets["errorMessage"] = json!({
                "_producer": producer(),
                "_schemaURL": ERROR_FACET,
                "message": message,
                "programmingLanguage": "Rust",
            });
        }
        json!({
            "eventType": event_type,
            "eventTime": now(),
            "producer": producer(),
            "schemaURL": SCHEMA_URL,
            "run": { "runId": run_id, "facets": run_facets },
            "job": { "namespace": self.namespace, "name": job, "facets": {} },
            "inputs": inputs.iter().map(Dataset::to_json).collect::<Vec<_>>(),
            "outputs": outputs.iter().map(Dataset::to_json).collect::<Vec<_>>(),
        })
    }

    /// Sends one event to each destination; failures are warnings.
    pub async fn send(&self, event: &Value) {
        if let Some(path) = &self.file {
            let line = format!("{event}\n");
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                tracing::warn!("OpenLineage event not written to {}: {e}", path.display());
            }
        }
        if let Some(url) = &self.url {
            let endpoint = format!("{}/api/v1/lineage", url.as_str().trim_end_matches('/'));
            match self.http.post(&endpoint).json(event).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!("OpenLineage endpoint {endpoint} answered {}", r.status()),
                Err(e) => tracing::warn!("OpenLineage event not delivered to {endpoint}: {e}"),
            }
        }
    }

    /// Runs `work` as the OpenLineage job `job`: START before, COMPLETE (with the outputs
    /// `outputs` derives from the result) or FAIL (with the error) after.
    pub async fn observe<T, E: std::fmt::Display>(
        &self,
        job: &str,
        inputs: Vec<Dataset>,
        outputs: impl FnOnce(&T) -> Vec<Dataset>,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let run_id = uuid::Uuid::new_v4().to_string();
        self.send(&self.event("START", &run_id, job, &inputs, &[], None))
            .await;
        let result = work.await;
        let event = match &result {
            Ok(t) => self.event("COMPLETE", &run_id, job, &inputs, &outputs(t), None),
            Err(e) => self.event("FAIL", &run_id, job, &inputs, &[], Some(&e.to_string())),
        };
        self.send(&event).await;
        result
    }
}

/// Runs `work` observed by `emitter` when there is one, else just runs it.
pub async fn observe<T, E: std::fmt::Display>(
    emitter: Option<&Emitter>,
    job: &str,
    inputs: Vec<Dataset>,
    outputs: impl FnOnce(&T) -> Vec<Dataset>,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match emitter {
        Some(e) => e.observe(job, inputs, outputs, work).await,
        None => work.await,
    }
}
