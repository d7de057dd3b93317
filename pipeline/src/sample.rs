//! The demo's sample Datanet: kitchen unit conversions, generated deterministically.
//!
//! Each record is a question and its answer about converting a quantity of an ingredient
//! between kitchen units. The text is small, regular and learnable, which is what the demo's
//! tiny models need.

use serde_json::{Value, json};

/// Name of the sample Datanet.
pub const NAME: &str = "kitchen-conversions";
/// Its domain.
pub const DOMAIN: &str = "cooking";
/// The license every sample record is given under.
pub const LICENSE: &str = "CC-BY-4.0";

/// (ingredient, grams per US cup)
const INGREDIENTS: &[(&str, f64)] = &[
    ("all-purpose flour", 125.0),
    ("granulated sugar", 200.0),
    ("brown sugar", 220.0),
    ("butter", 227.0),
    ("water", 237.0),
    ("milk", 245.0),
    ("rolled oats", 90.0),
    ("rice", 185.0),
    ("honey", 340.0),
    ("cocoa powder", 85.0),
    ("powdered sugar", 120.0),
    ("olive oil", 216.0),
];

const AMOUNTS: &[(f64, &str)] = &[
    (0.25, "1/4 cup"),
    (0.5, "1/2 cup"),
    (0.75, "3/4 cup"),
    (1.0, "1 cup"),
    (1.5, "1 1/2 cups"),
    (2.0, "2 cups"),
    (3.0, "3 cups"),
    (4.0, "4 cups"),
];

/// How many distinct sample records there are (12 × 8 × 3).
pub const MAX_RECORDS: usize = 288;

/// The first `n` sample records (at most [`MAX_RECORDS`] distinct ones). Each
/// (ingredient, amount) gives three: its weight in grams, its volume in tablespoons, and the
/// amount back from the grams. Questions come in one of three wordings (as different
/// contributors would ask them); answers in one form per kind.
pub fn records(n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, (ingredient, per_cup)) in INGREDIENTS.iter().enumerate() {
        for (a, (cups, label)) in AMOUNTS.iter().enumerate() {
            let grams = (per_cup * cups).round();
            let tbsp = cups * 16.0;
            let wording = (i + a) % 3;
            let grams_q = match wording {
                0 => format!("How many grams is {label} of {ingredient}?"),
                1 => format!("What does {label} of {ingredient} weigh?"),
                _ => format!("How heavy is {label} of {ingredient} in grams?"),
            };
            let tbsp_q = match wording {
                0 => format!("How many tablespoons are in {label} of {ingredient}?"),
                1 => format!("How many tablespoons is {label} of {ingredient}?"),
                _ => format!("{label} of {ingredient} is how many tablespoons?"),
            };
            let cups_q = match wording {
                0 => format!("I have {grams} grams of {ingredient}. How many cups is that?"),
                1 => format!("How many cups is {grams} grams of {ingredient}?"),
                _ => format!("{grams} grams of {ingredient} is how many cups?"),
            };
            out.push(json!({
                "question": grams_q,
                "answer": format!("{label} of {ingredient} weighs about {grams} grams."),
            }));
            out.push(json!({
                "question": tbsp_q,
                "answer": format!("{label} of {ingredient} is {tbsp} tablespoons."),
            }));
            out.push(json!({
                "question": cups_q,
                "answer": format!("{grams} grams of {ingredient} is about {label}."),
            }));
        }
    }
    out.truncate(n);
    out
}
