//! Attribution against ground truth on a planted Datanet ([`tributary_trainer::planted`]):
//! eight contributors, each owning a sub-domain of generated facts that shares vocabulary and
//! sentence shapes with the others. An adapter trained on all of it attributes held-out text
//! of sub-domain i to contributor i in at least 90% of one Datanet's 40 queries (gradient
//! method; over five Datanets, the goal's measure, 95.3%: an ignored test); the plain
//! leave-one-contributor-out check correlates credit with the rise in held-out loss (a reduced
//! run; `make bench` runs the full one); a passage copied verbatim from one contribution is
//! found in that contribution (span method); shares are non-negative, sum to 1 and do not
//! depend on the order of contributions.

use std::collections::BTreeMap;

use tch::Device;
use tributary_trainer::influence::{self, InfluenceConfig, InfluenceIndex, shares};
use tributary_trainer::lora::{Lora, LoraConfig};
use tributary_trainer::model::Model;
use tributary_trainer::planted::{self, Gen};
use tributary_trainer::spans::SpanIndex;
use tributary_trainer::tokenizer::Tokenizer;
use tributary_trainer::train::{TrainConfig, train_with_checkpoints};

use crate::base::tiny;

const K: usize = 8;

fn config(max_steps: usize) -> TrainConfig {
    TrainConfig {
        lora: LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: ["q", "v", "o", "up", "down"].map(String::from).to_vec(),
        },
        learning_rate: 1e-2,
        weight_decay: 0.0,
        warmup_steps: 10,
        max_steps,
        batch_size: 8,
        grad_accum: 1,
        clip_norm: 1.0,
        seq_len: 48,
        eval_fraction: 0.1,
        eval_every: 25,
        patience: 0,
        seed: 0,
        ..TrainConfig::default()
    }
}

struct Trained {
    model: Model,
    tok: Tokenizer,
    /// (id, tokens) of the documents trained on (not held out).
    trained: Vec<(String, Vec<i64>)>,
    lora: Lora,
    index: InfluenceIndex,
}

/// Trains an adapter on `per_contributor` planted documents of each contributor (planted seed
/// `seed`) and builds its influence index.
fn trained(per_contributor: usize, cfg: &TrainConfig, seed: u64) -> Trained {
    let dir = tiny();
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let docs = planted::shared_datanet(&tok, &[per_contributor; K], seed).unwrap();
    let ids: Vec<Vec<i64>> = docs.iter().map(|d| d.tokens.clone()).collect();
    let (lora, report, checkpoints) =
        train_with_checkpoints(&model, &ids, tok.eot(), cfg, None, &mut |_| {}).unwrap();
    eprintln!(
        "held-out loss {:.3} -> {:.3} in {:.1} s",
        report.base_eval_loss, report.eval_loss_best, report.seconds
    );
    let trained = planted::trained(&docs, cfg.eval_fraction);
    let icfg = InfluenceConfig::default();
    let picked = influence::pick(checkpoints, report.best_step, icfg.checkpoints);
    let index = influence::build(&model, &lora, picked, &trained, &icfg).unwrap();
    Trained {
        model,
        tok,
        trained,
        lora,
        index,
    }
}

#[test]
fn planted_sub_domains_are_attributed_to_their_contributors() {
    let Trained {
        model,
        tok,
        trained,
        lora,
        index,
        ..
    } = trained(40, &config(500), 7);

    // Gradient method: held-out documents of each sub-domain, top-1 contributor by credit.
    let acc = planted::accuracy(&model, &lora, &index, &tok, K, 5, 99).unwrap();
    // The goal is 90% (chance: 1 in 8); 40 of 40 here (2026-12-06, base corpus v7, 8
    // checkpoints).
    eprintln!("accuracy {acc:?}");
    assert!(acc.top1 * 10 >= acc.queries * 9, "{acc:?}");

    // The benchmark's 80 queries (10 per sub-domain, the same seed): printed for the
    // record, not the goal's measure here (77 of 80 on 2026-12-06; BENCHMARKS.md).
    let wide = planted::accuracy(&model, &lora, &index, &tok, K, 10, 99).unwrap();
    eprintln!("accuracy over 80 queries {wide:?}");

    // Shares are non-negative, sum to 1, and do not depend on the order of contributions.
    let query = tok.encode(&Gen(5).shared_document(3)).unwrap();
    let a = index.scores(&model, &lora, &query).unwrap();
    let s = shares(&a);
    assert!(s.iter().all(|x| *x >= 0.0));
    assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let mut reversed = trained.clone();
    reversed.reverse();
    let picked_again = index.checkpoints();
    let icfg = InfluenceConfig::default();
    let rev = influence::build(&model, &lora, picked_again, &reversed, &icfg).unwrap();
    let b = rev.scores(&model, &lora, &query).unwrap();
    let by_id: BTreeMap<&String, f64> = rev.meta.ids.iter().zip(b).collect();
    for (id, x) in index.meta.ids.iter().zip(a) {
        assert!((by_id[id] - x).abs() < 1e-6, "{id}: {x} vs {}", by_id[id]);
    }

    // Span method: a contribution copied verbatim inside other text is found in it.
    let spans = SpanIndex::build(&trained, tok.eot()).unwrap();
    for (n, (id, doc)) in trained.iter().enumerate().step_by(9) {
        let mut query = tok.encode("Someone wrote: ").unwrap();
        query.extend(doc);
        query.extend(tok.encode(" and that was all.").unwrap());
        let found = spans.find(&query, 8);
        let best = found.iter().max_by_key(|s| s.len).expect("a span");
        assert!(
            best.len >= doc.len(),
            "{id}: span of {} of {}",
            best.len,
            doc.len()
        );
        assert_eq!(best.contributions[0].0, n, "{id}");
    }
}

/// Top-1 over five planted Datanets (seeds 7 to 11), 80 queries each, as the goal's measure
/// wants it: one Datanet's 40 or 80 queries move by several points from one seed to the next.
/// Measured 2026-12-06 with the index's default 8 checkpoints: 77, 77, 79, 74 and 74 of 80,
/// 381 of 400 (95.3%; goal 90%; 345 with 2 checkpoints). Three and a half minutes, so not in
/// `make test`.
#[test]
#[ignore = "issue 21's measure: 381 of 400 (95.3%) on 2026-12-06, goal 90%; 3.5 minutes"]
fn planted_accuracy_over_five_datanets() {
    let (mut top1, mut top3, mut asked) = (0, 0, 0);
    for (seed, queries) in [(7, 99), (8, 100), (9, 101), (10, 102), (11, 103)] {
        let t = trained(40, &config(500), seed);
        let acc = planted::accuracy(&t.model, &t.lora, &t.index, &t.tok, K, 10, queries).unwrap();
        eprintln!("planted seed {seed}: {acc:?}");
        (top1, top3, asked) = (top1 + acc.top1, top3 + acc.top3, asked + acc.queries);
    }
    eprintln!("top-1 {top1} of {asked}, top-3 {top3} of {asked}");
    assert!(top1 * 10 >= asked * 9, "top-1 {top1} of {asked}");
}

/// The plain validation, reduced (`make bench` runs the full one): contributor i gives
/// 3(i + 1) shared-vocabulary documents; a uniform held-out set of 6 per sub-domain; over three
/// training seeds, the mean Spearman correlation of each contributor's credit (TracIn as
/// Tributary pays it) with the rise of the total held-out loss when retrained without them.
/// Each rise is one retraining here (`TRIBUTARY_LOO_RETRAINS=3` averages three, the figure
/// BENCHMARKS.md quotes: TracIn 0.857, DataInf 0.810, contributor size alone 0.897, six
/// minutes; 150 steps evaluated every 25, so the index keeps at most 6 checkpoints). One
/// retraining's rises are noisy (0.730 here), so what is asserted is a floor against
/// regressions, not the goal of 0.8.
#[test]
fn leaving_a_contributor_out_costs_what_their_credit_says() {
    let dir = tiny();
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let sizes: Vec<usize> = (1..=K).map(|i| 3 * i).collect();
    let retrains: u64 = match std::env::var("TRIBUTARY_LOO_RETRAINS") {
        Err(std::env::VarError::NotPresent) => 1,
        v => v
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n >= 1)
            .expect("TRIBUTARY_LOO_RETRAINS must be a whole number of at least 1"),
    };
    let docs = planted::shared_datanet(&tok, &sizes, 7).unwrap();
    let v = planted::validate(
        &model,
        &tok,
        &docs,
        K,
        &TrainConfig {
            learning_rate: 3e-3,
            ..config(150)
        },
        &InfluenceConfig::default(),
        6,
        11,
        3,
        retrains,
    )
    .unwrap();
    eprintln!("{v:?}");
    let (tracin, net, datainf, size) = (
        v.spearman(&v.tracin),
        v.spearman(&v.tracin_net),
        v.spearman(&v.datainf),
        v.size_spearman(&sizes),
    );
    eprintln!(
        "plain LOCO Spearman, mean of 3 seeds, rises averaged over {retrains} retrainings: TracIn as paid {tracin:.3}, TracIn netted {net:.3}, DataInf {datainf:.3}, contributor size alone {size:.3}"
    );
    assert!(tracin >= 0.6, "{v:?}");
}
