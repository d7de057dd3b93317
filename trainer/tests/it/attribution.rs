//! Attribution against ground truth on a planted Datanet: eight contributors, each owning a
//! sub-domain with its own vocabulary and generated facts. An adapter trained on all of it
//! attributes held-out text of sub-domain i to contributor i in at least 90% of queries
//! (gradient method), a passage
//! copied verbatim from one contribution is found in that contribution (span method), and
//! shares are non-negative, sum to 1 and do not depend on the order of contributions.

use std::collections::BTreeMap;

use tch::Device;
use tributary_trainer::influence::{self, InfluenceConfig, shares};
use tributary_trainer::lora::LoraConfig;
use tributary_trainer::model::Model;
use tributary_trainer::spans::SpanIndex;
use tributary_trainer::tokenizer::Tokenizer;
use tributary_trainer::train::{TrainConfig, held_out, train_with_checkpoints};

use crate::base::tiny;

const K: usize = 8;

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, v: &'a [String]) -> &'a str {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// Sub-domain `i`: its own nouns and qualities, shared with no other sub-domain.
fn vocabulary(i: usize) -> (Vec<String>, Vec<String>) {
    const DOMAINS: [(&str, &str); K] = [
        (
            "star planet orbit comet nebula telescope",
            "bright distant icy silent",
        ),
        (
            "leaf root seed petal stem blossom",
            "green fragrant tender wild",
        ),
        (
            "drum chord tempo violin melody chorus",
            "loud minor rhythmic sweet",
        ),
        (
            "mast hull anchor sail harbor rudder",
            "salty sturdy windward anchored",
        ),
        (
            "pawn rook bishop knight castle gambit",
            "checkered clever pinned doubled",
        ),
        (
            "cloud storm rain frost thunder breeze",
            "stormy humid chilly foggy",
        ),
        (
            "rock quartz lava fossil crystal granite",
            "volcanic ancient layered porous",
        ),
        (
            "nurse fever pill wound bandage clinic",
            "sterile feverish healing sore",
        ),
    ];
    let (nouns, qualities) = DOMAINS[i];
    let words = |s: &str| s.split(' ').map(String::from).collect();
    (words(nouns), words(qualities))
}

/// One fact of a sub-domain: the sentence shape is the same everywhere, only the words differ.
fn sentence(g: &mut Gen, (nouns, qualities): &(Vec<String>, Vec<String>)) -> String {
    let (a, b, q) = (g.pick(nouns), g.pick(nouns), g.pick(qualities));
    format!("The {a} of the {b} is {q}.")
}

fn document(g: &mut Gen, v: &(Vec<String>, Vec<String>)) -> String {
    (0..3).map(|_| sentence(g, v)).collect::<Vec<_>>().join(" ")
}

#[test]
fn planted_sub_domains_are_attributed_to_their_contributors() {
    let dir = tiny();
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let vocab: Vec<_> = (0..K).map(vocabulary).collect();
    // 40 contributions per contributor, interleaved; ids name the owner. (With 12 each the
    // adapter learns the sub-domains too little: 27 of 40 queries right instead of 34.)
    let mut g = Gen(7);
    let mut docs: Vec<(String, usize, Vec<i64>)> = Vec::new();
    for n in 0..40 {
        for (owner, v) in vocab.iter().enumerate() {
            let text = document(&mut g, v);
            docs.push((format!("c{owner}-{n}"), owner, tok.encode(&text).unwrap()));
        }
    }
    let cfg = TrainConfig {
        lora: LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: ["q", "v", "o", "up", "down"].map(String::from).to_vec(),
        },
        learning_rate: 1e-2,
        weight_decay: 0.0,
        warmup_steps: 10,
        max_steps: 500,
        batch_size: 8,
        grad_accum: 1,
        clip_norm: 1.0,
        seq_len: 48,
        eval_fraction: 0.1,
        eval_every: 25,
        patience: 0,
        seed: 0,
    };
    let ids: Vec<Vec<i64>> = docs.iter().map(|d| d.2.clone()).collect();
    let (mut lora, report, checkpoints) =
        train_with_checkpoints(&model, &ids, tok.eot(), &cfg, None, &mut |_| {}).unwrap();
    eprintln!(
        "held-out loss {:.3} -> {:.3} in {:.1} s",
        report.base_eval_loss, report.eval_loss_best, report.seconds
    );
    let trained: Vec<(String, Vec<i64>)> = docs
        .iter()
        .enumerate()
        .filter(|(i, _)| !held_out(*i, cfg.eval_fraction))
        .map(|(_, d)| (d.0.clone(), d.2.clone()))
        .collect();
    let owner = |id: &str| id[1..id.find('-').unwrap()].parse::<usize>().unwrap();
    let icfg = InfluenceConfig::default();
    let picked = influence::pick(checkpoints, report.best_step, icfg.checkpoints);
    let index = influence::build(&model, &mut lora, picked, &trained, &icfg).unwrap();

    // Gradient method: held-out queries of each sub-domain, top-1 contributor by summed share.
    let mut q = Gen(99);
    let (mut hits, mut total) = (0, 0);
    for (i, v) in vocab.iter().enumerate() {
        for _ in 0..5 {
            let query = tok.encode(&document(&mut q, v)).unwrap();
            let scores = index.scores(&model, &mut lora, &query).unwrap();
            let s = shares(&scores);
            assert!(s.iter().all(|x| *x >= 0.0));
            assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let mut by: BTreeMap<usize, f64> = BTreeMap::new();
            for (id, x) in index.meta.ids.iter().zip(&s) {
                *by.entry(owner(id)).or_default() += x;
            }
            let top = by.iter().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            hits += usize::from(*top == i);
            total += 1;
        }
    }
    // The goal is 90% (chance: 1 in 8); with the curvature correction it is 40 of 40 here.
    eprintln!("top-1 contributor accuracy {hits}/{total}");
    assert!(hits * 10 >= total * 9, "top-1 {hits}/{total}");

    // The same scores whatever the order of contributions.
    let mut reversed = trained.clone();
    reversed.reverse();
    let query = tok.encode(&document(&mut q, &vocab[3])).unwrap();
    let a = index.scores(&model, &mut lora, &query).unwrap();
    let picked_again: Vec<_> = index
        .meta
        .checkpoints
        .iter()
        .map(|&(step, learning_rate)| influence::Checkpoint {
            step,
            learning_rate,
            weights: index.weights_at(step).unwrap(),
        })
        .collect();
    let rev = influence::build(&model, &mut lora, picked_again, &reversed, &icfg).unwrap();
    let b = rev.scores(&model, &mut lora, &query).unwrap();
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
