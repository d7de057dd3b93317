use tributary_lake::Lake;
use tributary_models::attribute::{Query, attribute};
use tributary_models::catalog;
use tributary_models::job::{self, Options, Spec};
use tributary_models::serve::{ServeConfig, Server};
use tributary_models::{DeviceChoice, Error};
use tributary_trainer::base;
use tributary_trainer::engine::{Event, Sampling};

use crate::env;

const JOB: &str = r#"
line = "pantry"
datanets = ["kitchen-conversions"]
[lora]
rank = 4
targets = ["q", "v", "up"]
[train]
learning_rate = 0.01
warmup_steps = 5
max_steps = 30
batch_size = 8
seq_len = 32
eval_fraction = 0.15
eval_every = 10
patience = 0
[attribution]
dim = 64
checkpoints = 1
"#;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_publishes_once_and_serving_credits_what_attribute_credits() {
    let env = env(60).await;
    let spec = Spec::parse(JOB).unwrap();
    let opts = Options {
        device: DeviceChoice::Cpu,
        out: env.dir.path().join("out"),
        model_cache: base::default_cache(),
    };

    // A signer without the publisher role is refused before anything is trained.
    let alice = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
        .parse()
        .unwrap();
    let as_alice = tributary_chain::Chain::connect(tributary_chain::ChainConfig {
        signer: Some(alice),
        deployment: Some(env.chain.deployment().clone()),
        ..tributary_chain::ChainConfig::rpc(env.chain.url().clone(), env.dir.path().join("alice"))
    })
    .await
    .unwrap();
    let err = job::run(&as_alice, &env.lake, &spec, &opts, Box::new(|_| {}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("may not publish adapters") && err.contains("PUBLISHER_ROLE"),
        "{err}"
    );
    assert!(!opts.out.exists(), "nothing trained");

    // Published once: the same spec on the same Datanet is the same adapter.
    let first = job::run(&env.chain, &env.lake, &spec, &opts, Box::new(|_| {}))
        .await
        .unwrap();
    assert!(first.newly_published);
    assert_eq!(first.manifest.line, "pantry");
    let again = job::run(&env.chain, &env.lake, &spec, &opts, Box::new(|_| {}))
        .await
        .unwrap();
    assert!(!again.newly_published);
    assert_eq!(
        (again.manifest.adapter_id, again.tx),
        (first.manifest.adapter_id, first.tx)
    );

    // The catalog finds it by version and by id, and says plainly what is not published.
    let all = catalog::published(&env.chain).await.unwrap();
    assert_eq!(all.len(), 1);
    let id = first.manifest.adapter_id;
    assert_eq!(
        catalog::find(&all, "pantry@1.0.0", "adapter").unwrap().id,
        id
    );
    assert_eq!(
        catalog::find(&all, &id.to_string(), "adapter")
            .unwrap()
            .version,
        "pantry@1.0.0"
    );
    match catalog::find(&all, "pantry@9.0.0", "adapter") {
        Err(Error::NotFound(m)) => assert!(m.contains("pantry@9.0.0"), "{m}"),
        other => panic!("expected NotFound, got {:?}", other.map(|a| a.id)),
    }
    assert_eq!(
        catalog::latest(&env.lake, &all, "pantry")
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );

    // A copy of the lake elsewhere serves the same manifest: adapters are found by id under
    // the lake's own root, not by the URI published on chain.
    let moved = env.dir.path().join("moved-lake");
    copy_dir(&env.dir.path().join("lake"), &moved);
    let copy = Lake::open(moved.to_str().unwrap()).unwrap();
    let m = catalog::load_manifest(
        &copy,
        catalog::find(&all, &id.to_string(), "adapter").unwrap(),
    )
    .await
    .unwrap();
    // (Compared by its hashes: serde_json reads a float back within one ulp, not exactly.)
    assert_eq!(
        (m.adapter_id, m.weights_hash, m.config_hash, m.snapshot_id),
        (
            id,
            first.manifest.weights_hash,
            first.manifest.config_hash,
            first.manifest.snapshot_id
        )
    );
    assert!(
        catalog::adapter_folder(&copy, id)
            .unwrap()
            .contains("moved-lake")
    );

    // The influence index was built with the spec's `[attribution]` settings.
    let folder = catalog::adapter_folder(&copy, id).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&copy.get(&format!("{folder}/influence.json")).await.unwrap())
            .unwrap();
    assert_eq!(meta["config"]["dim"], 64, "{}", meta["config"]);
    assert_eq!(meta["checkpoints"].as_array().unwrap().len(), 1);
    assert_eq!(
        meta["config"]["damping"], 0.01,
        "unset keys keep their defaults"
    );

    // Serving answers from the copy, with the adapter's ancestry.
    let serve_dir = env.dir.path().join("serve");
    let mut config = ServeConfig::new(&serve_dir, &serve_dir.join("cache"));
    config.top_k = 5;
    let server = Server::start(env.chain.clone(), copy, config)
        .await
        .unwrap();
    let served = server.adapter("pantry@1.0.0").await.unwrap();
    assert_eq!(served.on_chain.id, id);
    let (trained, held_out) = first.manifest.metrics.as_ref().unwrap().documents;
    assert_eq!(served.entries.len() as u64, trained + held_out);
    let prompt = "question: How many grams is 1 cup of flour?\nanswer:";
    let (tokenizer, _, mut events) = server
        .generate(&served, prompt, 12, Sampling::GREEDY)
        .await
        .unwrap();
    let mut tokens = Vec::new();
    while let Some(e) = events.recv().await {
        match e {
            Event::Token(t) => tokens.push(t),
            Event::Done(_) => break,
            other => panic!("serving failed: {other:?}"),
        }
    }
    let output = tokenizer.decode(&tokens).unwrap();

    // Serving's attribution of that answer equals `tributary attribute`'s.
    let served_credit = server.attribute(&served, prompt, &output).await.unwrap();
    let cli = attribute(
        &env.chain,
        &env.lake,
        &Query {
            adapter: "pantry@1.0.0".into(),
            prompt: prompt.into(),
            output: Some(output.clone()),
            max_new_tokens: 12,
            top_k: 5,
            min_span: 4,
        },
        &env.dir.path().join("attribute-cache"),
    )
    .await
    .unwrap();
    assert_eq!(cli.scored, served_credit.scored);
    assert_eq!(
        cli.scored as u64, trained,
        "every trained contribution is scored"
    );
    assert_eq!(cli.top.len(), 5);
    for (a, b) in cli.top.iter().zip(&served_credit.top) {
        assert_eq!(
            (a.contribution, a.contributor),
            (b.contribution, b.contributor)
        );
        assert!(
            (a.share - b.share).abs() < 1e-9,
            "{} vs {}",
            a.share,
            b.share
        );
        assert!(served.entries.contains_key(&a.contribution.to_string()));
    }
    let total: f64 = cli.contributors.iter().map(|(_, s)| s).sum();
    assert!(
        (total - 1.0).abs() < 1e-9,
        "contributor shares sum to {total}"
    );
    assert_eq!(cli.contributors.len(), 3);
    // The credit recorded: every positive share (none dropped), summing to 1, the same from
    // serving and from `attribute`, and each contributor's share is their contributions' sum.
    assert_eq!(cli.credit.len(), served_credit.credit.len());
    assert!(cli.credit.len() > 5, "more than the top 5 are credited");
    for (a, b) in cli.credit.iter().zip(&served_credit.credit) {
        assert_eq!(a.contribution, b.contribution);
        assert!((a.share - b.share).abs() < 1e-9 && a.share > 0.0);
    }
    let credited: f64 = cli.credit.iter().map(|c| c.share).sum();
    assert!((credited - 1.0).abs() < 1e-9, "credit sums to {credited}");
    for (who, share) in &cli.contributors {
        let theirs: f64 = cli
            .credit
            .iter()
            .filter(|c| c.contributor == Some(*who))
            .map(|c| c.share)
            .sum();
        assert!((theirs - share).abs() < 1e-9, "{who}: {theirs} vs {share}");
    }

    // Answers attributed at once (scored in shared batches when they wait together) get
    // the credit each gets alone.
    let answers: Vec<(String, String)> = ["flour", "sugar", "butter", "rice", "milk", "oats"]
        .iter()
        .enumerate()
        .map(|(i, what)| {
            let p = format!(
                "question: How many grams is {} cup of {what}?\nanswer:",
                i + 1
            );
            (p, format!(" {} grams of {what}.", 120 * (i + 1)))
        })
        .collect();
    let mut alone = Vec::new();
    for (p, o) in &answers {
        alone.push(server.attribute(&served, p, o).await.unwrap());
    }
    let metrics = &server.config().metrics;
    let before = (metrics.attributed.get(), metrics.attribution_batches.get());
    let together =
        futures::future::join_all(answers.iter().map(|(p, o)| server.attribute(&served, p, o)))
            .await;
    let after = (metrics.attributed.get(), metrics.attribution_batches.get());
    eprintln!(
        "{} answers attributed together in {} batches",
        after.0 - before.0,
        after.1 - before.1
    );
    assert_eq!(after.0 - before.0, answers.len() as u64);
    for (a, b) in alone.iter().zip(together) {
        let b = b.unwrap();
        assert_eq!(a.credit.len(), b.credit.len());
        for (x, y) in a.credit.iter().zip(&b.credit) {
            assert_eq!(x.contribution, y.contribution);
            assert!((x.share - y.share).abs() < 1e-6, "{x:?} vs {y:?}");
        }
    }

    // A revocation on chain reaches the next answer (the server reads only the new blocks):
    // the revoked contribution keeps its score, gets no share, and is not credited.
    let (prompt, output) = &answers[0];
    let top = alone[0].top[0].contribution;
    let r = tributary_pipeline::revoke::revoke(&env.chain, &env.lake, top, "test")
        .await
        .unwrap();
    assert!(r.newly_revoked);
    let after = server.attribute(&served, prompt, output).await.unwrap();
    let gone = after.top.iter().find(|s| s.contribution == top).unwrap();
    assert!(gone.revoked && gone.share == 0.0, "{gone:?}");
    assert!(after.credit.iter().all(|c| c.contribution != top));
    let credited: f64 = after.credit.iter().map(|c| c.share).sum();
    assert!((credited - 1.0).abs() < 1e-9, "credit sums to {credited}");

    // 100 blocks later that revocation is settled (read once, older than the reorg window)
    // and still counts; a newer one, in the window, counts beside it.
    use alloy::providers::Provider;
    let _: serde_json::Value = env
        .chain
        .provider()
        .raw_request("anvil_mine".into(), (100u64,))
        .await
        .unwrap();
    let next = after.top.iter().find(|s| !s.revoked).unwrap().contribution;
    tributary_pipeline::revoke::revoke(&env.chain, &env.lake, next, "test")
        .await
        .unwrap();
    let later = server.attribute(&served, prompt, output).await.unwrap();
    for id in [top, next] {
        let s = later.top.iter().find(|s| s.contribution == id).unwrap();
        assert!(s.revoked && s.share == 0.0, "{s:?}");
    }
}

/// The registry neither derives adapter ids nor knows which versions have files: an adapter
/// published straight to it by another publisher is never taken for this run's own, nor
/// continued from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_another_publisher_put_on_chain_are_checked_not_trusted() {
    use std::future::Future;
    use std::pin::Pin;

    use alloy::primitives::B256;
    use tributary_schemas::manifest::AdapterManifest;

    let env = env(24).await;
    let text = JOB
        .replace("max_steps = 30", "max_steps = 6")
        .replace("eval_every = 10", "eval_every = 3");
    let spec = Spec::parse(&text).unwrap();
    let opts = Options {
        device: DeviceChoice::Cpu,
        out: env.dir.path().join("out"),
        model_cache: base::default_cache(),
    };
    // Right before this run publishes (its files are in the lake by then), another publisher
    // takes its adapter id with another lineage: no snapshot.
    // Another publisher's transaction, sent right before this run publishes: this run's
    // adapter id under `version`, with its lineage or (`same` false) without a snapshot.
    let front_run = |same: bool, version: &'static str| {
        let (chain, out) = (env.chain.clone(), opts.out.clone());
        move || -> Pin<Box<dyn Future<Output = tributary_models::Result<()>> + Send>> {
            let (chain, out) = (chain.clone(), out.clone());
            Box::pin(async move {
                let m: AdapterManifest =
                    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap())
                        .unwrap();
                tributary_chain::send(chain.model_registry().publishAdapter(
                    m.adapter_id,
                    m.base_model_id,
                    m.parents.iter().map(|p| p.id).collect(),
                    if same { m.snapshot_id } else { B256::ZERO },
                    m.config_hash,
                    m.weights_hash,
                    "elsewhere/".into(),
                    version.into(),
                ))
                .await
                .unwrap();
                Ok(())
            })
        }
    };
    let err = job::run_gated(
        &env.chain,
        &env.lake,
        &spec,
        &opts,
        None,
        Some(&front_run(false, "pantry@7.0.0")),
        Box::new(|_| {}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("other contents") && err.contains("names another snapshot"),
        "{err}"
    );
    // Run again, the id is found published: still not this run's, and said so.
    let err = job::run(&env.chain, &env.lake, &spec, &opts, Box::new(|_| {}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other contents") && err.contains("seed"),
        "{err}"
    );
    // The line's latest is one this lake can continue from: not that one.
    let all = catalog::published(&env.chain).await.unwrap();
    assert!(
        catalog::latest(&env.lake, &all, "pantry")
            .await
            .unwrap()
            .is_none()
    );

    // Nor is it served or attributed: the lake's manifest is not the one the chain records.
    let serve_dir = env.dir.path().join("serve");
    let server = Server::start(
        env.chain.clone(),
        env.lake.clone(),
        ServeConfig::new(&serve_dir, &serve_dir.join("cache")),
    )
    .await
    .unwrap();
    let err = server
        .adapter("pantry@7.0.0")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("names another snapshot") && err.contains("does not vouch"),
        "{err}"
    );

    // Another seed is another adapter: published after the taken version.
    let seeded = Spec::parse(&text.replace("patience = 0", "patience = 0\nseed = 1")).unwrap();
    let ours = job::run(&env.chain, &env.lake, &seeded, &opts, Box::new(|_| {}))
        .await
        .unwrap();
    assert!(ours.newly_published);
    assert_eq!(ours.manifest.version, "7.1.0");
    // A later version published straight to the registry, with no files in this lake, is
    // passed over: the line continues from ours.
    let m = &ours.manifest;
    tributary_chain::send(env.chain.model_registry().publishAdapter(
        B256::repeat_byte(0xbb),
        m.base_model_id,
        vec![],
        m.snapshot_id,
        m.config_hash,
        m.weights_hash,
        "elsewhere/".into(),
        "pantry@7.5.0".into(),
    ))
    .await
    .unwrap();
    let all = catalog::published(&env.chain).await.unwrap();
    assert_eq!(all.len(), 3);
    let latest = catalog::latest(&env.lake, &all, "pantry")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.id, ours.manifest.adapter_id);

    // This run's very adapter published first by another under another version: refused
    // with the version it has, and a rerun reports it as that version (not the manifest's).
    let other = Spec::parse(&text.replace("patience = 0", "patience = 0\nseed = 2")).unwrap();
    let err = job::run_gated(
        &env.chain,
        &env.lake,
        &other,
        &opts,
        None,
        Some(&front_run(true, "pantry@9.0.0")),
        Box::new(|_| {}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("already published as pantry@9.0.0"), "{err}");
    let again = job::run(&env.chain, &env.lake, &other, &opts, Box::new(|_| {}))
        .await
        .unwrap();
    assert!(!again.newly_published);
    assert_eq!(
        (
            again.manifest.line.as_str(),
            again.manifest.version.as_str()
        ),
        ("pantry", "9.0.0")
    );
}

/// A base model id registered first by another publisher with other weights is refused
/// before training, with the transaction that took it: adapters trained on it would name
/// weights the chain does not hold. Before, any registration of the id was taken as this
/// folder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_model_id_registered_with_other_weights_is_refused() {
    use alloy::primitives::B256;

    let env = env(8).await;
    let spec = Spec::parse(JOB).unwrap();
    let opts = Options {
        device: DeviceChoice::Cpu,
        out: env.dir.path().join("out"),
        model_cache: base::default_cache(),
    };
    let folder = job::pretrain_tiny(&spec, &opts.model_cache, Box::new(|_| {}))
        .await
        .unwrap()
        .unwrap();
    let files = base::checkpoint_file_hashes(&folder).unwrap();
    let id = B256::from(base::checkpoint_id(&files));
    assert_eq!(id, B256::from(base::checkpoint_hash(&folder).unwrap()));
    tributary_chain::send(env.chain.model_registry().registerBaseModel(
        id,
        B256::repeat_byte(0xee),
        "llama".into(),
        "elsewhere/".into(),
    ))
    .await
    .unwrap();
    let err = job::run(&env.chain, &env.lake, &spec, &opts, Box::new(|_| {}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("base model {id} was registered"))
            && err.contains("other contents")
            && err.contains(&B256::from(base::weights_hash(&files)).to_string()),
        "{err}"
    );
    assert!(
        !opts.out.join("adapter_model.safetensors").exists(),
        "nothing trained"
    );
}
