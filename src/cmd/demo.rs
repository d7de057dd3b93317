//! `tributary demo`: the whole slice on embedded defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tributary_chain::keys::dev_contributor;
use tributary_indexer::Indexer;
use tributary_pipeline::contribute::{ContributeConfig, ContributeReport, WINDOW, contribute};
use tributary_pipeline::datanet;
use tributary_pipeline::rules::Rules;
use tributary_pipeline::sample;
use tributary_pipeline::sign::Signed;
use tributary_pipeline::sign::{Terms, sign};
use tributary_schemas::contribution::domain;
use tributary_schemas::datanet::DatanetManifest;

use crate::Common;

/// Marks a directory the demo created, so it only ever wipes its own.
const MARKER: &str = ".tributary-demo";

/// The sample Datanet's manifest.
const MANIFEST: &str = include_str!("../../examples/kitchen-conversions.toml");

/// The demo's training job.
const TRAIN: &str = include_str!("../../examples/kitchen-train.toml");

/// The demo's tributary.toml (written into its data dir): a training schedule.
const DEMO_CONFIG: &str = include_str!("../../examples/tributary.toml");

/// The lineage query the demo prints after training: adapter -> snapshot -> contributions
/// -> contributors.
pub(crate) const LINEAGE_QUERY: &str = "{ adapter(version: \"kitchen-assistant@1.0.0\") { id version uri \
     baseModel { id architecture } training { steps baseEvalLoss evalLoss perplexity device } \
     snapshot { id count datanets { name } contributions(first: 3) { nodes { id by { address } } } } } }";

/// The query whose answer the demo prints.
pub(crate) const QUERY: &str = "{ datanet(name: \"kitchen-conversions\") { id name domain owner \
     contributions(first: 1000) { nodes { id contributor contentHash license batch txHash block } } } }";

/// Flags of `tributary demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Demo data directory; emptied at start (only if empty or made by an earlier demo).
    #[arg(long, default_value = ".tributary/demo")]
    data_dir: PathBuf,
    /// Stop after printing the answer instead of serving GraphQL until Ctrl-C.
    #[arg(long)]
    exit: bool,
    /// Number of sample records (at most 288).
    #[arg(long, default_value_t = 240)]
    records: usize,
    /// Number of dev contributors signing them.
    #[arg(long, default_value_t = 6)]
    contributors: usize,
    /// Address to serve GraphQL and HTTP SQL on (a free port is used when this one is taken).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address to serve SQL over the PostgreSQL wire protocol on, for psql and BI tools (a
    /// free port is used when this one is taken).
    #[arg(long, default_value = "127.0.0.1:5433")]
    pg_listen: SocketAddr,
}

/// What every step of the demo works on.
struct Demo {
    args: Args,
    chain: std::sync::Arc<tributary_chain::Chain>,
    lake: tributary_lake::Lake,
    store: tributary_sql::Store,
    manifest: DatanetManifest,
    datanet_id: u64,
    analyst: tributary_api::analyst::Analyst,
    schema: tributary_api::TributarySchema,
}

/// The demo's fixed signing clock, 2026-01-01T00:00:00Z: every contribution is signed at
/// this time with a deadline [`DEMO_VALIDITY`] later, so the same commit signs the same
/// records into the same contribution ids (and so the same snapshot, held-out split and
/// adapter) on every run.
const DEMO_CLOCK: u64 = 1_767_225_600;

/// How long the demo's signatures stay valid: ten years from [`DEMO_CLOCK`].
const DEMO_VALIDITY: u64 = 10 * 365 * 86_400;

/// The demo, step by step: a chain, a lake and a store; a Datanet with signed contributions,
/// indexed and queried; an adapter trained, attributed and serving one answer that settles
/// and pays; a scheduled run after a second wave of contributions; then every API served
/// until Ctrl-C (unless `--exit`).
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if args.contributors == 0 {
        bail!("--contributors must be at least 1");
    }
    fresh_dir(&args.data_dir)?;
    let demo = Demo::start(args).await?;
    demo.contribute_first_wave().await?;
    demo.train_and_attribute().await?;
    let (v1, token_from, paid) = demo.serve_one_answer_and_pay().await?;
    demo.train_on_schedule().await?;
    if demo.args.exit {
        return Ok(());
    }
    demo.serve(v1, &token_from, &tour(&paid)).await
}

/// What the demo's answer and payment made: the answer's id and the contributor who claimed.
struct Paid {
    answer: String,
    contributor: tributary_schemas::Address,
}

/// The tour's GraphQL queries, opened as GraphiQL tabs by the link the demo prints: the
/// Datanet's contributions, the adapter's lineage, the answer's recorded credit, what the
/// contributor who claimed was paid, and the first page of where the answer came from.
fn tour(paid: &Paid) -> Vec<String> {
    vec![
        "{ datanet(name: \"kitchen-conversions\") { name contributions(first: 5) { nodes { id contributor txHash block } } } }".into(),
        LINEAGE_QUERY.into(),
        format!(
            "{{ answer(id: \"{}\") {{ tokens fee adapter {{ version }} batch {{ id }} attribution {{ method contributors {{ address share }} contributions {{ id share }} }} }} }}",
            paid.answer
        ),
        format!(
            "{{ contributor(address: \"{}\") {{ influence rewards {{ epoch amount share }} }} }}",
            tributary_schemas::lineage::hex_lower(paid.contributor.as_slice())
        ),
        format!(
            "{{ ancestry(id: \"answer:{}\", depth: 6, first: 10) {{ totalCount edgeCount summary {{ byKind {{ kind count }} topContributors {{ address contributions share }} }} nodes {{ id kind depth via {{ kind }} }} pageInfo {{ hasNextPage endCursor }} }} }}",
            paid.answer
        ),
    ]
}

impl Demo {
    /// The embedded chain (contracts deployed), lake and store, and the demo's Datanet.
    async fn start(args: Args) -> anyhow::Result<Self> {
        let common = Common {
            data_dir: args.data_dir.clone(),
            rpc_url: None,
            rpc_rate: None,
            key_file: None,
            lake: None,
            store: None,
            deployment: None,
        };
        let chain = std::sync::Arc::new(super::chain(&common).await?);
        let d = chain.deployment();
        println!(
            "chain {} at {} (anvil); contracts deployed in block {}",
            d.chain_id,
            chain.url(),
            d.start_block
        );
        println!(
            "  DatanetRegistry {}  ModelRegistry {}",
            d.datanet_registry, d.model_registry
        );
        println!(
            "  InferenceLedger {}  RewardDistributor {}  RewardToken {}",
            d.inference_ledger, d.reward_distributor, d.reward_token
        );
        let lake = super::lake(&common).await?;
        let store = super::store(&common).await?;

        // The Datanet's manifest: its schema hash goes on chain, the document into the lake.
        let manifest = DatanetManifest::from_toml(MANIFEST)?;
        let datanet_id = datanet::create_from_manifest(&chain, &lake, &manifest).await?;
        println!(
            "Datanet {} ({}) created with id {datanet_id}",
            manifest.name, manifest.domain
        );
        // One lineage index for GraphQL's walks and SQL's `ancestry()`.
        let index = tributary_sql::LineageIndex::new(
            store.clone(),
            chain.chain_id(),
            None,
            tributary_api::REORG_WINDOW,
        );
        let analyst = tributary_api::analyst::Analyst::open_over(
            lake.clone(),
            index.clone(),
            tributary_api::analyst::SqlLimits::default(),
        )
        .await
        .context("opening the SQL session")?;
        // The ModelFactory's mutations take the same API token as the `/v1` routes.
        let (token, _) = super::api_token(None, &args.data_dir)?;
        let writes = tributary_api::Writes {
            token,
            factory: std::sync::Arc::new(crate::factory::ModelFactory::new(
                chain.clone(),
                lake.clone(),
                &args.data_dir,
            )),
        };
        let schema = tributary_api::schema_with(index, Some(lake.clone()), Some(writes));
        Ok(Demo {
            args,
            chain,
            lake,
            store,
            manifest,
            datanet_id,
            analyst,
            schema,
        })
    }

    /// Sample records `from..to`, each signed (EIP-712) by one of the dev contributors in
    /// turn.
    fn signed(&self, from: usize, to: usize) -> anyhow::Result<Vec<Signed>> {
        let eip712 = domain(
            self.chain.chain_id(),
            self.chain.deployment().datanet_registry,
        );
        let keys: Vec<_> = (0..self.args.contributors).map(dev_contributor).collect();
        Ok(sample::records(to)
            .into_iter()
            .enumerate()
            .skip(from)
            .map(|(i, record)| {
                let terms = Terms {
                    datanet_id: self.datanet_id,
                    license: sample::LICENSE.into(),
                    timestamp: DEMO_CLOCK,
                    nonce: (i / keys.len()) as u64,
                    deadline: DEMO_CLOCK + DEMO_VALIDITY,
                };
                sign(&keys[i % keys.len()], &eip712, &terms, record)
            })
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Indexes what the chain recorded so far.
    async fn index(&self) -> anyhow::Result<()> {
        index(&self.chain, &self.store, &self.lake).await
    }

    async fn sql(&self, query: &str) -> anyhow::Result<()> {
        let result = self.analyst.query(query).await?;
        println!("\nSQL: {query}");
        println!(
            "{}",
            arrow::util::pretty::pretty_format_batches(&result.batches)?
        );
        Ok(())
    }

    /// The first wave of contributions through `contribute`, indexed, then queried.
    async fn contribute_first_wave(&self) -> anyhow::Result<()> {
        let signed = self.signed(0, self.args.records)?;
        println!(
            "{} records signed (EIP-712) by {} contributors",
            signed.len(),
            self.args.contributors
        );
        let report = contribute_signed(
            &self.chain,
            &self.lake,
            &self.args.data_dir,
            (self.datanet_id, &self.manifest),
            "first",
            &signed,
        )
        .await?;
        print_contributed(&report);
        self.index().await?;
        self.sql(LEADERBOARD).await?;
        print_answer(&self.schema, QUERY, &self.args.data_dir, "contributions").await?;
        if let Some(first) = answer_first_id(&self.schema).await {
            println!(
                "prove one on chain: tributary verify {first} --data-dir {}",
                self.args.data_dir.display()
            );
        }
        Ok(())
    }

    /// An adapter trained on a snapshot of the Datanet and published; which contributions
    /// shaped one of its answers, and each contributor's influence.
    async fn train_and_attribute(&self) -> anyhow::Result<()> {
        println!(
            "\ntraining (examples/kitchen-train.toml; the tiny base model is pretrained once per machine, about 75 s on two cores)"
        );
        let spec = tributary_models::job::Spec::parse(TRAIN)?;
        let out = self
            .args
            .data_dir
            .join("adapters")
            .join("kitchen-assistant@next");
        let published = super::train::train(
            &self.chain,
            &self.lake,
            &spec,
            tributary_trainer::DeviceChoice::Auto,
            out,
            true,
        )
        .await?;
        super::train::report(&published);
        self.index().await?;
        print_answer(&self.schema, LINEAGE_QUERY, &self.args.data_dir, "lineage").await?;

        println!(
            "\nattribution: tributary attribute --adapter kitchen-assistant@1.0.0 --prompt {ATTRIBUTE_PROMPT:?}"
        );
        let q = tributary_models::attribute::Query {
            adapter: "kitchen-assistant@1.0.0".into(),
            prompt: ATTRIBUTE_PROMPT.into(),
            output: None,
            max_new_tokens: 24,
            top_k: 5,
            min_span: 6,
        };
        let a = tributary_models::attribute::attribute(
            &self.chain,
            &self.lake,
            &q,
            &tributary_trainer::base::default_cache(),
        )
        .await?;
        super::attribute::print(&a, q.min_span);
        self.sql(INFLUENCE).await
    }

    /// One answer over the OpenAI-compatible API: it shows its ancestry and attribution and
    /// is recorded in the ledger; then the epoch is settled and the top contributor claims
    /// their reward. Returns the `/v1` routes, where their token came from, and what was
    /// answered and paid.
    async fn serve_one_answer_and_pay(&self) -> anyhow::Result<(axum::Router, String, Paid)> {
        let inference = tributary_models::serve::Server::start(
            self.chain.clone(),
            self.lake.clone(),
            tributary_models::serve::ServeConfig::new(
                &self.args.data_dir,
                &tributary_trainer::base::default_cache(),
            ),
        )
        .await?;
        let (token, token_from) = super::api_token(None, &self.args.data_dir)?;
        let v1 = crate::inference::router(inference.clone(), token.clone());
        let (answer, who) = infer(&v1, &token, &self.args.data_dir).await?;
        let batches = inference.ledger.flush().await?;
        println!(
            "ledger: the answer is recorded on chain (InferencesRecorded, batch {})",
            batches.first().map(|b| b.to_string()).unwrap_or_default()
        );
        self.index().await?;
        let (chain, lake) = (&self.chain, &self.lake);
        let platform = chain.signer();
        let settled = tributary_pipeline::rewards::settle(
            chain,
            lake,
            tributary_pipeline::rewards::Policy::default(),
            tributary_pipeline::rewards::Accounts {
                platform,
                stakers: platform,
            },
        )
        .await?;
        println!("\nrewards: tributary rewards settle");
        super::rewards::print_settled(&settled);
        let c = tributary_pipeline::rewards::claim(chain, lake, 1, who).await?;
        println!(
            "\nrewards: tributary rewards claim --epoch 1 --account {who}\nclaimed {} tokens for {who} in tx {}",
            super::rewards::tokens(c.amount),
            c.tx
        );
        println!("\nrewards: tributary rewards show --contributor {who}");
        let (rows, balance) = tributary_pipeline::rewards::show(chain, lake, who).await?;
        super::rewards::print_earned(who, &rows, balance);
        self.index().await?;
        let paid = Paid {
            answer,
            contributor: who,
        };
        Ok((v1, token_from, paid))
    }

    /// Training on a schedule: the demo config's job (examples/tributary.toml) runs when
    /// enough new contributions arrived; here, once now, after a second wave of records.
    async fn train_on_schedule(&self) -> anyhow::Result<()> {
        let args = &self.args;
        let config = args.data_dir.join("tributary.toml");
        std::fs::write(&config, DEMO_CONFIG)?;
        let jobs = crate::config::parse(DEMO_CONFIG)?.jobs;
        let wave = self.signed(args.records, (args.records + 48).min(sample::MAX_RECORDS))?;
        if !wave.is_empty() {
            let report = contribute_signed(
                &self.chain,
                &self.lake,
                &args.data_dir,
                (self.datanet_id, &self.manifest),
                "second",
                &wave,
            )
            .await?;
            println!(
                "\nsecond wave: {} more contributions accepted and anchored",
                report.accepted
            );
            print_contributed(&report);
        }
        let mut worker = tributary_models::schedule::WorkerConfig::new(
            &args.data_dir,
            &tributary_trainer::base::default_cache(),
        );
        worker.worker = "demo".into();
        let scheduler = tributary_models::schedule::Scheduler::new(
            self.chain.clone(),
            self.lake.clone(),
            self.store.clone(),
            jobs,
            worker,
            None,
        )?;
        scheduler.register().await?;
        let name = scheduler.jobs()[0].name.clone();
        println!(
            "\nscheduled training: tributary jobs run {name} --config-file {}",
            config.display()
        );
        let run = scheduler.run_now(&name).await?;
        super::jobs::print_run(&run);
        println!(
            "history: tributary jobs list --data-dir {}   (SQL: SELECT * FROM job_runs; GraphQL: {{ jobs {{ name runs {{ status version }} }} }})",
            args.data_dir.display()
        );
        self.index().await
    }

    /// GraphQL, SQL (HTTP and the PostgreSQL wire) and the `/v1` routes, until Ctrl-C.
    async fn serve(
        self,
        v1: axum::Router,
        token_from: &str,
        tour: &[String],
    ) -> anyhow::Result<()> {
        let args = &self.args;
        let chain = &self.chain;
        let listener = bind_or_free(args.listen).await?;
        let pg_listener = bind_or_free(args.pg_listen).await?;
        let http = listener.local_addr()?;
        let pg = pg_listener.local_addr()?;
        println!("GraphQL (GraphiQL in a browser): http://{http}/graphql");
        let link = url::Url::parse_with_params(
            &format!("http://{http}/graphql"),
            tour.iter().map(|q| ("query", q.as_str())),
        )?;
        println!(
            "tour (GraphiQL with the demo's queries in tabs: contributions, lineage, the answer's credit, a contributor's pay, the answer's ancestry): {link}"
        );
        println!("GraphQL subscriptions (graphql-transport-ws): ws://{http}/graphql/ws");
        println!(
            "SQL over HTTP: curl -d 'SELECT * FROM contributor_leaderboard' http://{http}/sql  (or: tributary sql \"…\" --data-dir {})",
            args.data_dir.display()
        );
        println!(
            "SQL with psql: psql -h {} -p {} -U analyst -d tributary -c 'SELECT * FROM contributor_leaderboard'",
            pg.ip(),
            pg.port()
        );
        let bearer = if token_from == "TRIBUTARY_API_TOKEN" {
            "$TRIBUTARY_API_TOKEN".to_string()
        } else {
            format!("$(cat {token_from})")
        };
        println!(
            "Inference (OpenAI-compatible): curl http://{http}/v1/completions -H 'content-type: application/json' -H \"Authorization: Bearer {bearer}\" -d '{{\"model\": \"kitchen-assistant@1.0.0\", \"prompt\": \"question: How many grams is 1 cup of butter?\\nanswer:\", \"temperature\": 0, \"stop\": [\"\\n\"]}}'"
        );
        println!("chain RPC: {}", chain.url());
        println!(
            "ModelFactory (train an adapter from a form; the API token is in {token_from}): http://{http}/#/factory"
        );
        println!("Explorer (lineage, proofs, attribution): http://{http}/");
        println!("Ctrl-C to stop.");
        let _background = self.follow()?;
        let wire = tokio::spawn(tributary_api::pg::serve(
            pg_listener,
            self.analyst.clone(),
            std::future::pending(),
        ));
        let served = tributary_api::serve(
            listener,
            tributary_api::router(self.schema.clone(), &tributary_api::Limits::default())
                .merge(tributary_api::explorer(super::explorer_chain(chain, None)))
                .merge(tributary_api::sql_http::router(self.analyst.clone()))
                .merge(v1),
            super::shutdown_signal(),
        )
        .await;
        wire.abort();
        served?;
        Ok(())
    }
}

impl Demo {
    /// While the demo serves: the indexer following the chain, and a scheduler worker running
    /// the demo's job and the jobs made in the ModelFactory (what they publish is indexed and
    /// shown). Both stop when the returned set is dropped.
    fn follow(&self) -> anyhow::Result<tokio::task::JoinSet<()>> {
        let mut tasks = tokio::task::JoinSet::new();
        let (chain, store, lake) = (self.chain.clone(), self.store.clone(), self.lake.clone());
        tasks.spawn(async move {
            let indexer = Indexer::new(&chain, &store, &lake);
            if let Err(e) = indexer.follow(std::future::pending()).await {
                eprintln!("demo: the indexer stopped: {e}");
            }
        });
        let mut worker = tributary_models::schedule::WorkerConfig::new(
            &self.args.data_dir,
            &tributary_trainer::base::default_cache(),
        );
        worker.worker = "demo".into();
        let scheduler = std::sync::Arc::new(tributary_models::schedule::Scheduler::new(
            self.chain.clone(),
            self.lake.clone(),
            self.store.clone(),
            crate::config::parse(DEMO_CONFIG)?.jobs,
            worker,
            None,
        )?);
        tasks.spawn(async move {
            let run = scheduler.run(std::future::pending(), std::time::Duration::ZERO);
            if let Err(e) = run.await {
                eprintln!("demo: the scheduler stopped: {e}");
            }
        });
        Ok(tasks)
    }
}

/// Asks the demo adapter one question through the inference routes, prints the answer
/// with its ancestry and top attribution (the full response goes to
/// `DATA_DIR/answers/inference.json`), and returns its id and the contributor of its top
/// contribution.
async fn infer(
    v1: &axum::Router,
    token: &tributary_api::v1::ApiToken,
    data_dir: &Path,
) -> anyhow::Result<(String, tributary_schemas::Address)> {
    use tower::ServiceExt;
    let body = serde_json::json!({
        "model": "kitchen-assistant@1.0.0",
        "prompt": ATTRIBUTE_PROMPT,
        "max_tokens": 24,
        "temperature": 0,
        "stop": ["\n"],
    });
    println!("\ninference: POST /v1/completions {body}");
    let request = axum::http::Request::post("/v1/completions")
        .header("content-type", "application/json")
        .header("authorization", token.header())
        .body(axum::body::Body::from(body.to_string()))?;
    let response = v1.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    if !status.is_success() {
        bail!("the inference failed ({status}): {v}");
    }
    let top: Vec<serde_json::Value> = v["attribution"]["top"]
        .as_array()
        .into_iter()
        .flatten()
        .take(3)
        .cloned()
        .collect();
    let shown = serde_json::json!({
        "text": v["choices"][0]["text"],
        "ancestry": v["ancestry"],
        "attribution": {
            "method": v["attribution"]["method"],
            "top": top,
            "contributors": v["attribution"]["contributors"],
        },
        "inference": v["inference"],
    });
    let path = save_answer(data_dir, "inference", &v)?;
    println!(
        "--- inference answer ---\n{}\n--- end ---\nfull answer: {}",
        serde_json::to_string_pretty(&shown)?,
        path.display()
    );
    // The contributor of the top contribution: the ledger pays the answer's listed
    // contributions, so they have a reward to claim.
    let who = v["attribution"]["top"][0]["contributor"]
        .as_str()
        .context("the answer names no contributor")?;
    let id = v["inference"]["id"]
        .as_str()
        .context("the answer has no inference id")?;
    Ok((id.to_string(), who.parse()?))
}

/// Indexes to the head and prints the summary line tests compare with `tributary index`.
async fn index(
    chain: &tributary_chain::Chain,
    store: &tributary_sql::Store,
    lake: &tributary_lake::Lake,
) -> anyhow::Result<()> {
    let stats = Indexer::new(chain, store, lake).run_to_head().await?;
    let (nodes, edges) = store.counts(chain.chain_id()).await?;
    println!(
        "indexed blocks {}..={}: {} events, {} reorgs rolled back; graph has {nodes} nodes, {edges} edges",
        stats.from_block, stats.to_block, stats.events, stats.reorgs
    );
    Ok(())
}

/// Runs `query`, writes its full answer to `DATA_DIR/answers/NAME.json` and prints the query,
/// the answer abridged (lists cut to their first three items) and the file's path.
async fn print_answer(
    schema: &tributary_api::TributarySchema,
    query: &str,
    data_dir: &Path,
    name: &str,
) -> anyhow::Result<()> {
    let answer = schema.execute(query).await;
    if !answer.errors.is_empty() {
        bail!("GraphQL query failed: {:?}", answer.errors);
    }
    let full = answer.data.into_json()?;
    let path = save_answer(data_dir, name, &full)?;
    println!("\nGraphQL: {query}");
    println!("{}", serde_json::to_string_pretty(&abridged(&full))?);
    println!("full answer: {}", path.display());
    Ok(())
}

/// Writes a full answer as `DATA_DIR/answers/NAME.json` and returns its path.
fn save_answer(data_dir: &Path, name: &str, v: &serde_json::Value) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("answers");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `v` with every list cut to its first three items and a note of how many were left out.
fn abridged(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Array(items) => {
            let mut out: Vec<Value> = items.iter().take(3).map(abridged).collect();
            if items.len() > 3 {
                out.push(Value::String(format!("… {} more", items.len() - 3)));
            }
            Value::Array(out)
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), abridged(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Listens on `addr`, or on a free port of the same interface when `addr` is taken.
async fn bind_or_free(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) => {
            eprintln!("note: {addr} is unavailable ({e}); using a free port");
            tokio::net::TcpListener::bind((addr.ip(), 0))
                .await
                .context("binding a free port")
        }
    }
}

/// The SQL the demo runs over the lake.
/// The prompt whose answer the demo attributes.
const ATTRIBUTE_PROMPT: &str = "question: How many grams is 1 cup of butter?\nanswer:";

/// The contributors' influence on the demo's adapter (over its held-out set).
const INFLUENCE: &str = "SELECT contributor, contributions, ROUND(influence, 4) AS influence, \
     ROUND(share, 4) AS share, negative_contributions FROM contributor_influence ORDER BY share DESC LIMIT 5";

const LEADERBOARD: &str = "SELECT contributor, contributions, datanets FROM contributor_leaderboard ORDER BY contributions DESC, contributor LIMIT 5";

/// The id of the first contribution the demo's query returns.
async fn answer_first_id(schema: &tributary_api::TributarySchema) -> Option<String> {
    let r = schema
        .execute("{ datanet(id: 1) { contributions(first: 1) { nodes { id } } } }")
        .await;
    let v = r.data.into_json().ok()?;
    v["datanet"]["contributions"]["nodes"][0]["id"]
        .as_str()
        .map(str::to_string)
}

/// Empties `dir` if the demo made it (or it is empty), and marks it as the demo's.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        let empty = entries.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} is not empty and was not made by `tributary demo`: pass an empty or new --data-dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        b"made by tributary demo; emptied by the next one\n",
    )?;
    Ok(())
}

/// Contributes `signed` the way `tributary contribute` does: as pre-signed envelopes in a JSON
/// Lines file in the data directory (`demo-NAME.jsonl`), every record checked against the
/// Datanet's manifest, committed and anchored in batches, refusals kept in `rejections`.
async fn contribute_signed(
    chain: &tributary_chain::Chain,
    lake: &tributary_lake::Lake,
    data_dir: &Path,
    (datanet_id, manifest): (u64, &DatanetManifest),
    name: &str,
    signed: &[Signed],
) -> anyhow::Result<ContributeReport> {
    let path = data_dir.join(format!("demo-{name}.jsonl"));
    let mut lines = String::new();
    for s in signed {
        lines.push_str(&s.envelope().to_string());
        lines.push('\n');
    }
    std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    let config = ContributeConfig {
        datanet_id,
        rules: Rules::new(manifest.clone())?,
        signer: None,
        license: None,
        batch_size: 10_000,
        validity_secs: 0,
        window: WINDOW,
    };
    Ok(contribute(chain, lake, &config, &[path], &|_| {}).await?)
}

/// One line per committed batch, and the refusals by reason.
fn print_contributed(report: &ContributeReport) {
    for b in &report.batches {
        println!(
            "batch {}: {} accepted; Delta version {}; Merkle root {} anchored in tx {} (block {})",
            b.batch_id, b.count, b.lake_version, b.merkle_root, b.anchor_tx, b.anchor_block
        );
    }
    for (reason, n) in &report.rejected {
        println!("  {n} rejected: {reason} (rows in the `rejections` table)");
    }
}
