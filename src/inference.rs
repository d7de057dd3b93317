//! The `/v1` routes' model server: `tributary-api`'s [`Models`] over `tributary-models`'
//! [`Server`]. The routes speak HTTP; this decodes tokens, and sorts failures by whose
//! fault they are.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tributary_api::v1::{self, Answer, Failure, Generated, Generation, ModelCard, Models};
use tributary_models::serve::Server;
use tributary_models::serve::answer::Finished;
use tributary_trainer::engine::{self, Event, Finish};

/// The routes over `server`.
pub(crate) fn router(server: Arc<Server>, token: v1::ApiToken) -> axum::Router {
    v1::router(Arc::new(Inference(server)), token)
}

struct Inference(Arc<Server>);

/// The caller's mistakes keep their message; the chain or the lake failing is upstream;
/// anything else is internal.
fn failure(e: tributary_models::Error) -> Failure {
    use tributary_models::Error as E;
    match e {
        E::InvalidInput(m) => Failure::Invalid(m),
        E::NotFound(m) => Failure::NotFound(m),
        e @ (E::Chain(_) | E::Lake(_) | E::Pipeline(_)) => Failure::Upstream(e.to_string()),
        e => Failure::Internal(e.to_string()),
    }
}

#[async_trait::async_trait]
impl Models for Inference {
    async fn list(&self) -> Result<Vec<ModelCard>, Failure> {
        let all = self.0.models().await.map_err(failure)?;
        Ok(all
            .into_iter()
            .map(|a| ModelCard {
                name: a.version,
                adapter_id: a.id.to_string(),
                block: a.block,
            })
            .collect())
    }

    async fn resolve(&self, name: &str) -> Result<String, Failure> {
        Ok(self
            .0
            .adapter(name)
            .await
            .map_err(failure)?
            .on_chain
            .version)
    }

    async fn generate(
        &self,
        name: &str,
        prompt: &str,
        max_tokens: usize,
        s: v1::Sampling,
    ) -> Result<Generation, Failure> {
        let served = self.0.adapter(name).await.map_err(failure)?;
        let sampling = engine::Sampling {
            temperature: s.temperature,
            top_p: s.top_p,
            seed: s.seed,
        };
        let (tokenizer, prompt_tokens, mut rx) = self
            .0
            .generate(&served, prompt, max_tokens, sampling)
            .await
            .map_err(failure)?;
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(event) = rx.recv().await {
                let out = match event {
                    Event::Token(t) => {
                        ids.push(t);
                        Generated::Text(tokenizer.decode(&ids).unwrap_or_default())
                    }
                    Event::Done(f) => Generated::Done {
                        stop: f == Finish::Stop,
                    },
                    Event::Refused(m) => Generated::Refused(m),
                    Event::Failed(m) => Generated::Failed(m),
                };
                // The routes let go (a stop string matched, the client left): dropping `rx`
                // cancels the sequence in the engine.
                if tx.send(out).is_err() {
                    break;
                }
            }
        });
        Ok(Generation {
            prompt_tokens,
            events,
        })
    }

    async fn account(&self, name: &str, a: Answer<'_>) -> Result<Value, Failure> {
        let served = self.0.adapter(name).await.map_err(failure)?;
        let finished = Finished {
            request: a.request,
            prompt: a.prompt,
            text: a.text,
            prompt_tokens: a.prompt_tokens,
            completion_tokens: a.completion_tokens,
            attribution: a.attribution,
        };
        self.0.account(&served, finished).await.map_err(failure)
    }

    fn finished(&self, seconds: f64, tokens: usize) {
        let metrics = &self.0.config().metrics;
        metrics.latency.observe(seconds);
        metrics.tokens.inc_by(tokens as u64);
    }
}
