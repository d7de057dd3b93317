//! The demo's adapter recipe (examples/kitchen-train.toml) on the sample Datanet: greedy
//! answers to held-out conversion questions get the number right (issue 22's goal: at least
//! 80% within 10% of the true value, none repeating itself).
//!
//! Not met yet, so the test is ignored in `make test`; run it with `cargo test -p
//! tributary-models --test it demo_recipe -- --ignored --nocapture`. Measured 2026-12-05 on the
//! tiny base model: 0 of 18 held-out questions right, 14 answers repeating ("1 1 1 1 …");
//! with 1,000 steps, rank 16 on every projection and learning rate 3e-3 still 0 of 18 (6
//! repeating): the base model does not copy a question's quantity reliably, so the recipe
//! alone cannot fix it.

use tch::Device;
use tributary_models::job::Spec;
use tributary_pipeline::sample;
use tributary_trainer::attribute::greedy;
use tributary_trainer::base::{self, Recipe};
use tributary_trainer::model::Model;
use tributary_trainer::tokenizer::Tokenizer;
use tributary_trainer::train::{held_out, train_with_checkpoints};

/// The last quantity in `text`: `3`, `93.5`, `3/4` or `1 1/2`.
fn last_quantity(text: &str) -> Option<f64> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace())
        .map(|w| w.trim_end_matches(['.', ',', '?']))
        .collect();
    let value = |w: &str| -> Option<f64> {
        match w.split_once('/') {
            Some((a, b)) => Some(a.parse::<f64>().ok()? / b.parse::<f64>().ok()?),
            None => w.parse().ok(),
        }
    };
    for i in (0..words.len()).rev() {
        if let Some(v) = value(words[i]) {
            // "1 1/2": a whole number before a fraction.
            if words[i].contains('/')
                && let Some(whole) = i.checked_sub(1).and_then(|j| words[j].parse::<f64>().ok())
            {
                return Some(whole + v);
            }
            return Some(v);
        }
    }
    None
}

#[test]
#[ignore = "issue 22: the demo recipe answers 0 of 18 held-out conversions (goal 80%)"]
fn the_demo_adapter_answers_held_out_conversions() {
    let dir = base::build_cached(&Recipe::tiny(), &base::default_cache(), &mut |_| {}).unwrap();
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let spec = Spec::parse(include_str!("../../../examples/kitchen-train.toml")).unwrap();
    let cfg = spec.train_config();
    let records = sample::records(240);
    let qa: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["question"].as_str().unwrap().to_string(),
                r["answer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ids: Vec<Vec<i64>> = qa
        .iter()
        .map(|(q, a)| tok.encode(&format!("question: {q}\nanswer: {a}")).unwrap())
        .collect();
    let started = std::time::Instant::now();
    let (lora, report, _) =
        train_with_checkpoints(&model, &ids, tok.eot(), &cfg, None, &mut |_| {}).unwrap();
    eprintln!(
        "trained {} steps in {:.1} s, held-out loss {:.3}",
        cfg.max_steps,
        started.elapsed().as_secs_f64(),
        report.eval_loss_best
    );
    let newline = tok.encode("\n").unwrap();
    let (mut right, mut asked, mut repeating) = (0, 0, 0);
    for (i, (q, a)) in qa.iter().enumerate() {
        if !held_out(i, cfg.eval_fraction) {
            continue;
        }
        let prompt = tok.encode(&format!("question: {q}\nanswer:")).unwrap();
        let out = greedy(&model, Some(&lora), &prompt, 24, tok.eot()).unwrap();
        let end = out
            .iter()
            .position(|t| newline.contains(t))
            .unwrap_or(out.len());
        let text = tok.decode(&out[..end]).unwrap();
        let want = last_quantity(a).unwrap();
        let got = last_quantity(&text);
        let ok = got.is_some_and(|g| (g - want).abs() <= 0.1 * want);
        right += usize::from(ok);
        asked += 1;
        let words: Vec<&str> = text.split_whitespace().collect();
        repeating += usize::from(words.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]));
        eprintln!(
            "{} {q} -> {text:?} (want {want})",
            if ok { "ok " } else { "BAD" }
        );
    }
    eprintln!("{right}/{asked} right, {repeating} repeating");
    assert!(
        right * 5 >= asked * 4,
        "{right} of {asked} held-out answers right"
    );
    assert_eq!(repeating, 0, "answers repeat themselves");
}
