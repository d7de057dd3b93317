//! The ModelFactory: training jobs made and started through GraphQL. Reads stay public; the
//! mutations need the server's API token (`Authorization: Bearer …`) and record which token
//! made each job and asked for each run. Checking a job and previewing its snapshot need the
//! trainer's rules, the chain and the lake, which the server that runs the API brings as a
//! [`Factory`].

use std::sync::Arc;

use async_graphql::{Context, Object, SimpleObject};

use super::jobs::{Job, now_ms};
use super::load::{graph, internal};
use crate::v1::ApiToken;

/// A job checked as a scheduler worker checks it.
#[derive(Debug, Clone)]
pub struct CheckedJob {
    /// Its name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// Its next occurrence after now (ms since the epoch).
    pub first_due_ms: i64,
    /// Its full definition, as the scheduler stores it.
    pub spec: serde_json::Value,
    /// The Datanets it trains on.
    pub datanets: Vec<String>,
    /// Its target use, if it names one.
    pub usage: Option<String>,
}

/// What the server that runs the API brings for the ModelFactory.
#[async_trait::async_trait]
pub trait Factory: Send + Sync {
    /// Parses and checks a job written as the body of a `[[jobs]]` table (TOML).
    fn check(&self, toml: &str) -> Result<CheckedJob, String>;
    /// What a snapshot of `datanets` would hold now, and which of its licenses `usage` (if
    /// given) does not allow.
    async fn preview(
        &self,
        datanets: &[String],
        usage: Option<&str>,
    ) -> Result<SnapshotPreview, String>;
}

/// The ModelFactory's writes: who may make them, and the server's [`Factory`].
#[derive(Clone)]
pub struct Writes {
    /// The token the mutations require.
    pub token: ApiToken,
    /// Checks and previews.
    pub factory: Arc<dyn Factory>,
}

/// The `Authorization` header a GraphQL request came with.
#[derive(Clone, Default)]
pub(crate) struct Authorization(pub(crate) Option<axum::http::HeaderValue>);

/// What a snapshot of some Datanets would hold if frozen now.
#[derive(SimpleObject, Debug, Clone)]
pub struct SnapshotPreview {
    /// The Datanets (on-chain ids).
    pub datanets: Vec<u64>,
    /// Contributions it would hold (anchored, not rejected, not revoked).
    pub contributions: u64,
    /// Their distinct contributors.
    pub contributors: u64,
    /// Contributions per license, and whether the target use allows each.
    pub licenses: Vec<LicenseCount>,
    /// False when the target use does not allow a license in it: a job for that use is
    /// refused.
    pub allowed: bool,
    /// Why not, when not allowed: the licenses and the fix.
    pub refusal: Option<String>,
}

/// Contributions under one license.
#[derive(SimpleObject, Debug, Clone)]
pub struct LicenseCount {
    /// The SPDX id.
    pub license: String,
    /// Contributions under it.
    pub contributions: u64,
    /// Whether the target use allows it (true when no use was given).
    pub allowed: bool,
    /// Why not, when not allowed.
    pub reason: Option<String>,
}

fn writes<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Writes> {
    ctx.data_opt::<Writes>().ok_or_else(|| {
        "this server has no ModelFactory (it takes no writes and previews no snapshots): `tributary serve`, which runs the API with its chain and lake, has one".into()
    })
}

/// The credential a mutation runs under (`token:` and a fingerprint of the token), or the
/// refusal.
fn caller(ctx: &Context<'_>) -> async_graphql::Result<String> {
    let w = writes(ctx)?;
    let header = ctx.data_opt::<Authorization>().and_then(|a| a.0.as_ref());
    if !w.token.admits(header) {
        return Err(if header.is_none() {
            "mutations need the server's API token: send `Authorization: Bearer <token>` (the token is TRIBUTARY_API_TOKEN, or the api-token file in the server's data directory)".into()
        } else {
            "the API token given is not this server's: send `Authorization: Bearer <token>` with the server's token".into()
        });
    }
    Ok(w.token.fingerprint())
}

/// What a job would train on now; errors name the problem.
pub(crate) async fn preview(
    ctx: &Context<'_>,
    datanets: &[String],
    usage: Option<&str>,
) -> async_graphql::Result<SnapshotPreview> {
    Ok(writes(ctx)?.factory.preview(datanets, usage).await?)
}

/// Root mutation: the ModelFactory's writes.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates a training job from `spec`, the body of a `[[jobs]]` table of tributary.toml
    /// (TOML: name, cron, line, datanets, use, base_model, [lora], [train], …), checked as a
    /// scheduler worker checks it; every worker of the store takes it up. With `start`, its
    /// first run is asked for at once. Refused when a job of that name exists, or when the
    /// snapshot it would freeze now holds a license its `use` does not allow. Needs the API
    /// token; the job records which token made it.
    async fn create_job(
        &self,
        ctx: &Context<'_>,
        spec: String,
        #[graphql(default = false)] start: bool,
    ) -> async_graphql::Result<Job> {
        let by = caller(ctx)?;
        let factory = &writes(ctx)?.factory;
        let job = factory.check(&spec)?;
        let preview = factory.preview(&job.datanets, job.usage.as_deref()).await?;
        if let Some(why) = preview.refusal {
            return Err(why.into());
        }
        let store = &graph(ctx).store;
        let now = now_ms();
        let made = store
            .create_job(&job.name, &job.cron, &job.spec, job.first_due_ms, now, &by)
            .await
            .map_err(internal)?;
        if !made {
            return Err(format!(
                "a job named {:?} exists already: pick another name",
                job.name
            )
            .into());
        }
        if start {
            store
                .request_run(&job.name, &by, now)
                .await
                .map_err(internal)?;
        }
        load_job(ctx, &job.name).await
    }

    /// Asks for a run of the job `name` now, whatever its schedule, threshold or pause say:
    /// a scheduler worker starts it on its next sweep (`Job.requested` until then; its run's
    /// trigger is `request`). Asking again before it starts changes nothing. Needs the API
    /// token; the run records which token asked for it.
    async fn run_job(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Job> {
        let by = caller(ctx)?;
        let found = graph(ctx)
            .store
            .request_run(&name, &by, now_ms())
            .await
            .map_err(internal)?;
        if !found {
            return Err(format!("no job named {name:?}: `jobs` lists them").into());
        }
        load_job(ctx, &name).await
    }
}

async fn load_job(ctx: &Context<'_>, name: &str) -> async_graphql::Result<Job> {
    let row = graph(ctx).store.job(name).await.map_err(internal)?;
    Ok(Job(row.ok_or_else(|| {
        format!("job {name:?} was removed from the store meanwhile")
    })?))
}
