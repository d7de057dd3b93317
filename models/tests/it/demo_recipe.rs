//! The demo's adapter recipe (examples/kitchen-train.toml) on the 240 sample records the demo
//! contributes, asked greedily, an answer right when its number is within 10% of the true one.
//!
//! - Run in `make test`: the Datanet's own questions (the records trained on) are answered
//!   right, the demo's question among them, and no answer repeats itself.
//! - Issue 22's goal, not met yet and so ignored (`cargo test -p tributary-models --test it
//!   demo_recipe -- --ignored --nocapture`): at least 80% of 30 held-out questions right. The
//!   questions ask facts the adapter trained on in wordings the Datanet never uses ("Convert
//!   3 cups of butter to grams."); the records held out of training are printed beside them
//!   but are not the measure: their facts are in no training record (a table of conversions,
//!   one fact per record), so answering them takes arithmetic or reading a fact backwards,
//!   which a two-million-parameter model does not do.

use tch::Device;
use tributary_models::job::Spec;
use tributary_pipeline::sample;
use tributary_trainer::attribute::greedy;
use tributary_trainer::base::{self, Recipe};
use tributary_trainer::lora::Lora;
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

/// The demo's adapter, trained as the demo trains it.
struct Trained {
    model: Model,
    lora: Lora,
    tok: Tokenizer,
    /// The records' (question, answer, held out of training).
    records: Vec<(String, String, bool)>,
}

fn trained() -> Trained {
    let dir = base::build_cached(&Recipe::tiny(), &base::default_cache(), &mut |_| {}).unwrap();
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let spec = Spec::parse(include_str!("../../../examples/kitchen-train.toml")).unwrap();
    let cfg = spec.train_config();
    let records: Vec<(String, String, bool)> = sample::records(240)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                r["question"].as_str().unwrap().to_string(),
                r["answer"].as_str().unwrap().to_string(),
                held_out(i, cfg.eval_fraction),
            )
        })
        .collect();
    let ids: Vec<Vec<i64>> = records
        .iter()
        .map(|(q, a, _)| tok.encode(&format!("question: {q}\nanswer: {a}")).unwrap())
        .collect();
    let started = std::time::Instant::now();
    let (lora, report, _) =
        train_with_checkpoints(&model, &ids, tok.eot(), &cfg, None, &mut |_| {}).unwrap();
    eprintln!(
        "trained {} steps in {:.1} s, held-out loss {:.3} (base {:.3})",
        report.steps,
        started.elapsed().as_secs_f64(),
        report.eval_loss_best,
        report.base_eval_loss
    );
    Trained {
        model,
        lora,
        tok,
        records,
    }
}

/// Right answers, questions asked and answers repeating a word three times in a row.
#[derive(Debug, Default)]
struct Score {
    right: usize,
    asked: usize,
    repeating: usize,
}

impl Trained {
    /// The adapter's greedy answer to `question` (up to the end of its line).
    fn answer(&self, question: &str) -> String {
        let prompt = self
            .tok
            .encode(&format!("question: {question}\nanswer:"))
            .unwrap();
        let out = greedy(&self.model, Some(&self.lora), &prompt, 32, self.tok.eot()).unwrap();
        let newline = self.tok.encode("\n").unwrap();
        let end = out
            .iter()
            .position(|t| newline.contains(t))
            .unwrap_or(out.len());
        self.tok.decode(&out[..end]).unwrap()
    }

    /// Asks each (question, true answer) and scores the numbers.
    fn score<'a>(&self, name: &str, asked: impl Iterator<Item = (String, &'a str)>) -> Score {
        let mut s = Score::default();
        for (q, a) in asked {
            let text = self.answer(&q);
            let want = last_quantity(a).unwrap();
            let ok = last_quantity(&text).is_some_and(|g| (g - want).abs() <= 0.1 * want);
            let words: Vec<&str> = text.split_whitespace().collect();
            s.right += usize::from(ok);
            s.asked += 1;
            s.repeating += usize::from(words.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]));
            if !ok {
                eprintln!("[{name}] {q} -> {text:?} (want {want})");
            }
        }
        eprintln!(
            "{name}: {} of {} right, {} repeating",
            s.right, s.asked, s.repeating
        );
        s
    }
}

impl Score {
    /// Issue 22's measure: at least 80% right, none repeating.
    fn meets_the_goal(&self, what: &str) {
        assert!(
            self.right * 5 >= self.asked * 4,
            "{} of {} {what} right",
            self.right,
            self.asked
        );
        assert_eq!(self.repeating, 0, "answers repeat themselves");
    }
}

/// `answer`'s fact asked in a wording no sample record uses (two per kind, by `k`).
fn reworded(answer: &str, k: usize) -> String {
    let subject = |sep: &str| answer.split_once(sep).unwrap().0.to_string();
    let (subject, unit) = if answer.contains(" weighs about ") {
        (subject(" weighs about "), "grams")
    } else if answer.ends_with(" tablespoons.") {
        (subject(" is "), "tablespoons")
    } else {
        (subject(" is about "), "cups")
    };
    if k.is_multiple_of(2) {
        format!("Convert {subject} to {unit}.")
    } else {
        format!("What is {subject} in {unit}?")
    }
}

#[test]
fn the_demo_adapter_answers_its_datanets_questions() {
    let t = trained();
    let trained_on = t
        .records
        .iter()
        .filter(|r| !r.2)
        .map(|(q, a, _)| (q.clone(), a.as_str()));
    t.score("trained", trained_on)
        .meets_the_goal("of the Datanet's own questions");
    // The question the demo asks and prints.
    let demo = t.answer("How many grams is 1 cup of butter?");
    assert_eq!(last_quantity(&demo), Some(227.0), "{demo:?}");
}

#[test]
#[ignore = "issue 22: 13 of 30 held-out questions right, measured 2026-12-06 (goal 24)"]
fn the_demo_adapter_answers_held_out_conversions() {
    let t = trained();
    let trained_on: Vec<&(String, String, bool)> = t.records.iter().filter(|r| !r.2).collect();
    // 30 facts spread over the Datanet, each asked in a new wording.
    let step = trained_on.len() / 30;
    let new_wording = (0..30).map(|k| {
        let a = &trained_on[k * step].1;
        (reworded(a, k), a.as_str())
    });
    let s = t.score("new wording", new_wording);
    let unseen = t
        .records
        .iter()
        .filter(|r| r.2)
        .map(|(q, a, _)| (q.clone(), a.as_str()));
    t.score("records held out (not the measure)", unseen);
    s.meets_the_goal("held-out questions");
}
