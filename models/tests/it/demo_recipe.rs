//! The demo's adapter recipe (examples/kitchen-train.toml) on the 240 sample records the demo
//! contributes, asked greedily, an answer right when its number is within 10% of the true one.
//! One adapter, trained once, is asked (issue 22's measure: at least 80% right, no answer
//! repeating itself):
//!
//! - the Datanet's own questions (the records trained on), the demo's question among them;
//! - 30 held-out questions: facts the adapter trained on asked in wordings the Datanet never
//!   uses ("Convert 3 cups of butter to grams.", "What is 340 grams of honey in cups?"). The
//!   base model knows how kitchen conversions are asked, from ingredients of its own (none of
//!   the Datanet's: a test below checks its corpus), so this measures whether the adapter's
//!   facts carry over to the other wordings.
//!
//! The records held out of training are printed beside them but are not the measure: their
//! facts are in no training record (a table of conversions, one fact per record), so answering
//! them takes arithmetic or reading a fact backwards, which a two-million-parameter model does
//! not do.

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
        self.answer_with(Some(&self.lora), question)
    }

    /// The greedy answer of the base model with `lora` (or none) to `question`.
    fn answer_with(&self, lora: Option<&Lora>, question: &str) -> String {
        let prompt = self
            .tok
            .encode(&format!("question: {question}\nanswer:"))
            .unwrap();
        let out = greedy(&self.model, lora, &prompt, 32, self.tok.eot()).unwrap();
        let newline = self.tok.encode("\n").unwrap();
        let end = out
            .iter()
            .position(|t| newline.contains(t))
            .unwrap_or(out.len());
        self.tok.decode(&out[..end]).unwrap()
    }

    /// Asks each (question, true answer) and scores the numbers.
    fn score<'a>(&self, name: &str, asked: impl Iterator<Item = (String, &'a str)>) -> Score {
        self.score_with(Some(&self.lora), name, asked)
    }

    /// [`Trained::score`] of the base model with `lora` (or none).
    fn score_with<'a>(
        &self,
        lora: Option<&Lora>,
        name: &str,
        asked: impl Iterator<Item = (String, &'a str)>,
    ) -> Score {
        let mut s = Score::default();
        for (q, a) in asked {
            let text = self.answer_with(lora, &q);
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

/// The base model learns how kitchen conversions are asked and answered from ingredients of
/// its own ([`base::PANTRY`]). None of them shares a word with one of the sample Datanet's, no
/// weight of theirs is within 10% of one of the Datanet's (so no number the base model knows
/// passes for a Datanet fact), and the corpus states no conversion of a Datanet ingredient: what
/// the adapter answers about them it learnt from the Datanet.
#[test]
fn the_base_model_knows_none_of_the_datanets_facts() {
    // The Datanet's ingredients and grams per cup, from its "1 cup of X weighs about G grams."
    let datanet: Vec<(String, f64)> = sample::records(sample::MAX_RECORDS)
        .iter()
        .filter_map(|r| {
            let a = r["answer"].as_str().unwrap();
            let (food, grams) = a.strip_prefix("1 cup of ")?.split_once(" weighs about ")?;
            Some((food.to_string(), last_quantity(grams)?))
        })
        .collect();
    assert_eq!(datanet.len(), 12, "{datanet:?}");
    for (own, own_per_cup) in base::PANTRY {
        for (food, per_cup) in &datanet {
            let shared: Vec<&str> = own
                .split([' ', '-'])
                .filter(|w| food.split([' ', '-']).any(|v| v == *w))
                .collect();
            assert!(shared.is_empty(), "{own:?} and {food:?} share {shared:?}");
            assert!(
                (own_per_cup - per_cup).abs() > 0.1 * per_cup,
                "{own:?} ({own_per_cup} g) would pass for {food:?} ({per_cup} g)"
            );
        }
    }
    let recipe = Recipe::tiny();
    let corpus = base::corpus(recipe.documents, recipe.seed).join("\n");
    for (food, _) in &datanet {
        for said in [
            format!("grams of {food} "),
            format!("of {food} weighs"),
            format!("of {food} is "),
        ] {
            assert!(!corpus.contains(&said), "the base corpus says {said:?}");
        }
    }
    // It does ask its own ingredients' conversions in the held-out wordings.
    assert!(corpus.contains("question: Convert 1 cup of raisins to grams.\n"));
    assert!(corpus.contains("question: What is 1 cup of raisins in grams?\n"));
}

#[test]
fn the_demo_adapter_answers_its_datanets_questions_also_reworded() {
    let t = trained();
    let trained_on: Vec<&(String, String, bool)> = t.records.iter().filter(|r| !r.2).collect();
    let own = t.score(
        "trained",
        trained_on.iter().map(|(q, a, _)| (q.clone(), a.as_str())),
    );
    // 30 facts spread over the Datanet, each asked in a new wording.
    let step = trained_on.len() / 30;
    let new_wording: Vec<(String, &str)> = (0..30)
        .map(|k| {
            let a = &trained_on[k * step].1;
            (reworded(a, k), a.as_str())
        })
        .collect();
    let reworded = t.score("new wording", new_wording.iter().cloned());
    // The control: the base model alone knows how these are asked and that a cup is 16
    // tablespoons, but not the Datanet's weights, so it must fall well short of the goal.
    let base = t.score_with(
        None,
        "new wording, base model alone",
        new_wording.iter().cloned(),
    );
    let unseen = t
        .records
        .iter()
        .filter(|r| r.2)
        .map(|(q, a, _)| (q.clone(), a.as_str()));
    t.score("records held out (not the measure)", unseen);
    own.meets_the_goal("of the Datanet's own questions");
    reworded.meets_the_goal("held-out questions");
    assert!(
        base.right * 5 < base.asked * 4,
        "the base model alone answers {} of {}: the questions do not measure the adapter",
        base.right,
        base.asked
    );
    // The question the demo asks and prints.
    let demo = t.answer("How many grams is 1 cup of butter?");
    assert_eq!(last_quantity(&demo), Some(227.0), "{demo:?}");
}
