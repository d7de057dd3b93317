//! The serving engine: adapters batched together decode exactly as each alone, the KV cache
//! matches full recomputation, sampling is reproducible per seed, the adapter cache
//! evicts under its budget and reloads, and a pass that fails (decoding or attributing)
//! fails only its own requests.

use std::collections::HashSet;
use tch::{Device, Tensor};

use tributary_trainer::attribute::{Answer, Loaded, greedy, score_batch};
use tributary_trainer::engine::AdapterId;
use tributary_trainer::engine::{Engine, Event, Finish, Request, Sampling};
use tributary_trainer::influence::{self, InfluenceConfig};
use tributary_trainer::lora::{Lora, LoraConfig};
use tributary_trainer::model::Model;
use tributary_trainer::tokenizer::Tokenizer;
use tributary_trainer::train::Checkpoint;

use crate::base::tiny;

/// A random adapter with non-zero `B`, so it changes what the model says.
fn adapter(model: &Model, seed: i64, rank: i64, targets: &[&str]) -> Lora {
    let config = LoraConfig {
        rank,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        ..LoraConfig::default()
    };
    let mut lora = Lora::new(model, config, seed).unwrap();
    tch::manual_seed(seed + 1000);
    let w: Vec<Tensor> = lora
        .weights()
        .into_iter()
        .map(|t| Tensor::randn(t.size(), (tch::Kind::Float, Device::Cpu)) * 0.3)
        .collect();
    lora.set_weights(&w);
    lora
}

fn id(n: u8) -> AdapterId {
    [n; 32]
}

/// A sink that writes into a shared vector, so a test reads events after the engine ran.
#[derive(Clone, Default)]
struct Shared(std::rc::Rc<std::cell::RefCell<Vec<Event>>>);

impl tributary_trainer::engine::Sink for Shared {
    fn send(&mut self, e: Event) -> bool {
        self.0.borrow_mut().push(e);
        true
    }
}

fn tokens(events: &[Event]) -> (Vec<i64>, Option<Finish>) {
    let mut out = Vec::new();
    let mut fin = None;
    for e in events {
        match e {
            Event::Token(t) => out.push(*t),
            Event::Done(f) => fin = Some(*f),
            Event::Failed(m) | Event::Refused(m) => panic!("request failed: {m}"),
        }
    }
    (out, fin)
}

struct Job {
    adapter: Option<(AdapterId, std::path::PathBuf)>,
    prompt: Vec<i64>,
    sampling: Sampling,
}

fn generate(engine: &mut Engine<Shared>, jobs: &[Job], max_tokens: usize) -> Vec<Vec<i64>> {
    let sinks: Vec<Shared> = jobs.iter().map(|_| Shared::default()).collect();
    for (j, sink) in jobs.iter().zip(&sinks) {
        engine.submit(Request {
            adapter: j.adapter.clone().map(|(i, d)| (i, Some(d))),
            prompt: j.prompt.clone(),
            max_tokens,
            sampling: j.sampling,
            sink: sink.clone(),
        });
    }
    engine.run_to_end().unwrap();
    sinks
        .iter()
        .map(|s| {
            let (t, fin) = tokens(&s.0.borrow());
            assert!(fin.is_some(), "every request ends");
            t
        })
        .collect()
}

#[test]
fn adapters_batched_together_decode_as_each_alone() {
    let dir = tiny();
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let files = tempfile::tempdir().unwrap();
    // Two adapters of different ranks and targets, saved as PEFT folders.
    let a = adapter(&model, 1, 8, &["q", "v", "o", "up", "down"]);
    let b = adapter(&model, 2, 4, &["q", "k", "gate"]);
    let (da, db) = (files.path().join("a"), files.path().join("b"));
    for (l, d) in [(&a, &da), (&b, &db)] {
        std::fs::create_dir_all(d).unwrap();
        l.save_peft(&model, d, "tiny").unwrap();
    }
    let p1 = tok
        .encode("question: How many cups in a pint?\nanswer:")
        .unwrap();
    let p2 = tok.encode("The cat sat on the").unwrap();
    let max = 24;

    // The reference: full recomputation, no cache, one adapter at a time.
    let ref_a = greedy(&model, Some(&a), &p1, max, -1).unwrap();
    let ref_b = greedy(&model, Some(&b), &p2, max, -1).unwrap();
    let ref_base = greedy(&model, None, &p2, max, -1).unwrap();
    assert_ne!(
        ref_a,
        greedy(&model, None, &p1, max, -1).unwrap(),
        "the adapter changes the answer"
    );

    let eot = -1; // never produced: every request runs to max_tokens
    let mut engine: Engine<Shared> =
        Engine::new(Model::load(&dir, Device::Cpu).unwrap(), eot, 8, 1 << 30);
    let job = |ad: Option<(AdapterId, &std::path::Path)>, p: &Vec<i64>| Job {
        adapter: ad.map(|(i, d)| (i, d.to_path_buf())),
        prompt: p.clone(),
        sampling: Sampling::GREEDY,
    };
    let alone_a = generate(&mut engine, &[job(Some((id(1), &da)), &p1)], max);
    let alone_b = generate(&mut engine, &[job(Some((id(2), &db)), &p2)], max);
    assert_eq!(
        alone_a[0], ref_a,
        "cached decoding equals full recomputation (adapter a)"
    );
    assert_eq!(
        alone_b[0], ref_b,
        "cached decoding equals full recomputation (adapter b)"
    );

    // Together, with the base model in the same batch, and with different prompt lengths.
    let mixed = [
        job(Some((id(1), &da)), &p1),
        job(Some((id(2), &db)), &p2),
        job(None, &p2),
        job(Some((id(2), &db)), &p2),
    ];
    let together = generate(&mut engine, &mixed, max);
    assert_eq!(together[0], ref_a);
    assert_eq!(together[1], ref_b);
    assert_eq!(together[2], ref_base);
    assert_eq!(together[3], ref_b);
    assert_eq!(engine.adapters.loads, 2, "each adapter loaded once");

    // The same batch through the per-row gather (the path for many distinct adapters).
    engine.group_limit = 0;
    let gathered = generate(&mut engine, &mixed, max);
    assert_eq!(
        gathered, together,
        "per-row gather and per-adapter groups agree"
    );

    // Each prompt prefilled alone (the four above were prefilled in one padded pass).
    engine.group_limit = 8;
    engine.prefill_tokens = 1;
    let alone = generate(&mut engine, &mixed, max);
    assert_eq!(
        alone, together,
        "padded prefill and one prompt at a time agree"
    );

    // Nothing to generate: done at once, no slot taken, the others unaffected.
    let empty = Shared::default();
    engine.submit(Request {
        adapter: Some((id(1), Some(da.clone()))),
        prompt: p1.clone(),
        max_tokens: 0,
        sampling: Sampling::GREEDY,
        sink: empty.clone(),
    });
    let after = generate(&mut engine, &[job(Some((id(2), &db)), &p2)], max);
    assert_eq!(*empty.0.borrow(), [Event::Done(Finish::Length)]);
    assert_eq!(after[0], ref_b);
}

#[test]
fn sampling_is_reproducible_per_seed_and_requests_join_a_running_batch() {
    let dir = tiny();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let mut engine: Engine<Shared> =
        Engine::new(Model::load(&dir, Device::Cpu).unwrap(), -1, 4, 1 << 30);
    let p = tok.encode("Once upon a time").unwrap();
    let s = |seed| Sampling {
        temperature: 0.9,
        top_p: 0.95,
        seed,
    };
    let job = |seed| Job {
        adapter: None,
        prompt: p.clone(),
        sampling: s(seed),
    };
    let alone = generate(&mut engine, &[job(7)], 20);
    let mixed = generate(
        &mut engine,
        &[job(3), job(7), job(9), job(7), job(11), job(7)],
        20,
    );
    assert_eq!(
        mixed[1], alone[0],
        "the same seed gives the same tokens in any batch"
    );
    assert_eq!(mixed[3], alone[0]);
    assert_eq!(
        mixed[5], alone[0],
        "a request that waited for a free slot too"
    );
    assert!(
        mixed[0] != alone[0] || mixed[2] != alone[0],
        "other seeds sample other tokens"
    );

    // A request submitted while others decode joins at the next step.
    let first = Shared::default();
    engine.submit(Request {
        adapter: None,
        prompt: p.clone(),
        max_tokens: 20,
        sampling: s(7),
        sink: first.clone(),
    });
    engine.step().unwrap();
    engine.step().unwrap();
    assert_eq!(engine.running(), 1);
    let late = Shared::default();
    engine.submit(Request {
        adapter: None,
        prompt: p.clone(),
        max_tokens: 20,
        sampling: s(7),
        sink: late.clone(),
    });
    engine.step().unwrap();
    assert_eq!(
        engine.running(),
        2,
        "the late request joined the running batch"
    );
    engine.run_to_end().unwrap();
    assert_eq!(tokens(&first.0.borrow()).0, alone[0]);
    assert_eq!(tokens(&late.0.borrow()).0, alone[0]);
}

#[test]
fn the_adapter_cache_evicts_under_its_budget_and_reloads() {
    let dir = tiny();
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    let mut refs = Vec::new();
    let p = tok
        .encode("question: How many grams is 1 cup of butter?\nanswer:")
        .unwrap();
    for i in 0..3u8 {
        let l = adapter(&model, 10 + i as i64, 8, &["q", "v", "o", "up", "down"]);
        let d = files.path().join(format!("a{i}"));
        std::fs::create_dir_all(&d).unwrap();
        l.save_peft(&model, &d, "tiny").unwrap();
        refs.push(greedy(&model, Some(&l), &p, 12, -1).unwrap());
        dirs.push(d);
    }
    let one = tributary_trainer::engine::ServedAdapter::load(&model, id(1), &dirs[0])
        .unwrap()
        .bytes();
    // Room for two adapters.
    let mut engine: Engine<Shared> = Engine::new(
        Model::load(&dir, Device::Cpu).unwrap(),
        -1,
        4,
        2 * one + one / 2,
    );
    let job = |i: usize| Job {
        adapter: Some((id(i as u8 + 1), dirs[i].clone())),
        prompt: p.clone(),
        sampling: Sampling::GREEDY,
    };
    for i in [0, 1, 2, 0] {
        let got = generate(&mut engine, &[job(i)], 12);
        assert_eq!(
            got[0], refs[i],
            "adapter {i} answers as itself after loads and evictions"
        );
        assert!(
            engine.adapters.bytes() <= 2 * one + one / 2,
            "within budget"
        );
    }
    assert_eq!(
        engine.adapters.loads, 4,
        "adapter 0 was evicted by adapter 2 and reloaded"
    );
    assert_eq!(engine.adapters.evictions, 2);
    assert_eq!(engine.adapters.ids(), vec![id(3), id(1)]);

    // An adapter in use is not dropped from under its sequence when evicted.
    let got = generate(&mut engine, &[job(1), job(2), job(0)], 12);
    assert_eq!(got, vec![refs[1].clone(), refs[2].clone(), refs[0].clone()]);
}

#[test]
fn a_failed_pass_fails_only_its_requests_and_the_engine_goes_on() {
    let dir = tiny();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let (p, q) = (
        tok.encode("Once upon a time").unwrap(),
        tok.encode("question: what is bread?\nanswer:").unwrap(),
    );
    // Two slots.
    let mut engine: Engine<Shared> =
        Engine::new(Model::load(&dir, Device::Cpu).unwrap(), -1, 2, i64::MAX);
    let job = || Job {
        adapter: None,
        prompt: p.clone(),
        sampling: Sampling::GREEDY,
    };
    let reference = generate(&mut engine, &[job()], 8).remove(0);
    let submit = |engine: &mut Engine<Shared>, prompt: &[i64]| {
        let sink = Shared::default();
        engine.submit(Request {
            adapter: None,
            prompt: prompt.to_vec(),
            max_tokens: 8,
            sampling: Sampling::GREEDY,
            sink: sink.clone(),
        });
        sink
    };
    let failure = |sink: &Shared| match sink.0.borrow().as_slice() {
        [.., Event::Failed(m)] => m.clone(),
        other => panic!("expected a failure, got {other:?}"),
    };

    // A token id outside the vocabulary is refused at admission, naming it.
    let vocab = engine.model().config.vocab_size;
    let refused = submit(&mut engine, &[p[0], vocab + 5]);
    engine.run_to_end().unwrap();
    match refused.0.borrow().as_slice() {
        [Event::Refused(m)] => assert!(m.contains(&format!("token id {}", vocab + 5)), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // libtorch throws inside the passes ([`Fault`]): the running sequence fails in its decoding step, the request
    // admitted in the same step fails in its prefill, the request waiting for a slot stays
    // waiting, and nothing panics out of the engine.
    let running = submit(&mut engine, &q);
    engine.step().unwrap();
    assert_eq!(engine.running(), 1);
    let fault = Fault::inject(engine.model());
    let starting = submit(&mut engine, &q);
    let waiting = submit(&mut engine, &p);
    let err = engine.step().unwrap_err().to_string();
    assert!(err.contains("the pass stopped"), "{err}");
    assert!(failure(&running).starts_with("decoding failed"));
    assert!(failure(&starting).starts_with("prefill failed"));
    assert!(
        waiting.0.borrow().is_empty(),
        "the waiting request is untouched"
    );
    assert_eq!(engine.running(), 0);

    // Mended, the engine serves the waiting request, and every slot is free again.
    fault.mend();
    engine.run_to_end().unwrap();
    assert_eq!(tokens(&waiting.0.borrow()).0, reference);
    let sinks = [submit(&mut engine, &p), submit(&mut engine, &p)];
    engine.step().unwrap();
    assert_eq!(engine.running(), 2, "both slots were freed");
    engine.run_to_end().unwrap();
    for sink in &sinks {
        assert_eq!(tokens(&sink.0.borrow()).0, reference);
    }
}

/// Block 0's `up` projection given a weight of the wrong shape, in place, so libtorch throws
/// inside any pass over the model (as a CUDA out-of-memory would); [`Fault::mend`] puts the
/// weight back.
struct Fault {
    weight: Tensor,
    good: Tensor,
}

impl Fault {
    fn inject(model: &Model) -> Fault {
        let mut weight = model.blocks[0].mlp["up"].weight.shallow_clone();
        let good = weight.copy();
        weight.set_data(&Tensor::zeros([3, 3], (tch::Kind::Float, Device::Cpu)));
        Fault { weight, good }
    }

    fn mend(mut self) {
        self.weight.set_data(&self.good);
    }
}

#[test]
fn a_failed_attribution_pass_fails_its_answers_and_scoring_goes_on() {
    let dir = tiny();
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let lora = adapter(&model, 5, 8, &["q", "v"]);
    let docs: Vec<(String, Vec<i64>)> = ["bread needs flour", "soup needs water"]
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("doc{i}"), tok.encode(t).unwrap()))
        .collect();
    let checkpoints = vec![Checkpoint {
        step: 1,
        learning_rate: 1e-3,
        weights: lora.weights(),
    }];
    let index = influence::build(
        &model,
        &lora,
        checkpoints,
        &docs,
        &InfluenceConfig::default(),
    )
    .unwrap();
    let loaded = Loaded {
        lora,
        influence: Some(index),
        spans: None,
    };
    let revoked = HashSet::new();
    let answer = |output| Answer {
        prompt: "question: what does bread need?\nanswer:",
        output,
        revoked: &revoked,
        min_span: 4,
        influence: true,
    };
    let answers = [answer(" flour"), answer(" water")];
    let pairs: Vec<(&Loaded, &Answer<'_>)> = answers.iter().map(|a| (&loaded, a)).collect();

    // The pass throws inside libtorch: each answer of the batch gets the error, and the
    // caller (serving's attribution thread) is not unwound.
    let fault = Fault::inject(&model);
    for found in score_batch(&model, &tok, &pairs) {
        let e = found.unwrap_err().to_string();
        assert!(
            e.contains("attribution failed") && e.contains("the pass stopped"),
            "{e}"
        );
    }

    // Mended, the same answers score every contribution.
    fault.mend();
    for found in score_batch(&model, &tok, &pairs) {
        assert_eq!(found.unwrap().scored.len(), docs.len());
    }
}
