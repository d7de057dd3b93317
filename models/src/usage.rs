//! What a trained adapter may be used for, and which contributions' licenses allow it.
//!
//! A job names its target use (`use = "commercial"` or `"research"`); before a run freezes its
//! snapshot, every license in it is checked against that use, and a run whose snapshot holds a
//! license the use does not allow fails, naming the licenses and how many contributions carry
//! each. The rules are deliberately plain, and any license not listed here is refused:
//! - No-derivatives licenses (`-ND`) are refused for any use: an adapter trained on the data is
//!   a derivative of it.
//! - Non-commercial licenses (`-NC`) allow research use only.
//! - The permissive and share-alike licenses listed in [`OPEN`] allow any use (share-alike
//!   terms still bind what is published from the adapter).
//!
//! This is a guard against the obvious mistakes, not legal advice: a Datanet's own `licenses`
//! list decides what contributors may choose.

use serde::{Deserialize, Serialize};

/// The use a job's adapters are trained for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Use {
    /// Serving or selling answers, or shipping the adapter in a product.
    Commercial,
    /// Research and evaluation, not commercial.
    Research,
}

impl Use {
    /// Its name in specs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commercial => "commercial",
            Self::Research => "research",
        }
    }

    /// Parses `commercial` or `research`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "commercial" => Ok(Self::Commercial),
            "research" => Ok(Self::Research),
            other => Err(format!(
                "use {other:?} is not known: give \"commercial\" or \"research\""
            )),
        }
    }

    /// Whether `license` (an SPDX id) allows training adapters for this use; the error says
    /// why not.
    pub fn allows(self, license: &str) -> Result<(), String> {
        let upper = license.to_ascii_uppercase();
        let has = |part: &str| upper.split('-').any(|p| p == part);
        if has("ND") {
            return Err(format!(
                "{license} forbids derivatives, and an adapter trained on the data is one"
            ));
        }
        if has("NC") {
            return match self {
                Self::Research => Ok(()),
                Self::Commercial => Err(format!(
                    "{license} allows non-commercial use only: train for research, or leave these contributions out"
                )),
            };
        }
        if OPEN.iter().any(|l| l.eq_ignore_ascii_case(license)) {
            return Ok(());
        }
        Err(format!(
            "{license} is not a license Tributary knows (models/src/usage.rs lists them): its terms are unchecked"
        ))
    }
}

/// Licenses that allow training for any use.
pub const OPEN: &[&str] = &[
    "CC0-1.0",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "PDDL-1.0",
    "ODC-By-1.0",
    "ODbL-1.0",
    "CDLA-Permissive-1.0",
    "CDLA-Permissive-2.0",
    "CDLA-Sharing-1.0",
    "MIT",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Unlicense",
];

/// The licenses among `counts` (license, contributions) that `usage` refuses, each with its
/// count and why.
pub fn refused<'a>(
    usage: Use,
    counts: impl IntoIterator<Item = (&'a String, &'a u64)>,
) -> Vec<(String, u64, String)> {
    counts
        .into_iter()
        .filter_map(|(l, n)| usage.allows(l).err().map(|why| (l.clone(), *n, why)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_use_takes_the_licenses_it_may() {
        use Use::*;
        for l in ["CC-BY-4.0", "cc0-1.0", "Apache-2.0", "CC-BY-SA-4.0"] {
            assert_eq!(Commercial.allows(l), Ok(()), "{l}");
            assert_eq!(Research.allows(l), Ok(()), "{l}");
        }
        assert_eq!(Research.allows("CC-BY-NC-4.0"), Ok(()));
        assert_eq!(Research.allows("CC-BY-NC-SA-4.0"), Ok(()));
        let nc = Commercial.allows("CC-BY-NC-4.0").unwrap_err();
        assert!(nc.contains("non-commercial"), "{nc}");
        for u in [Commercial, Research] {
            let nd = u.allows("CC-BY-NC-ND-4.0").unwrap_err();
            assert!(nd.contains("derivatives"), "{nd}");
            let unknown = u.allows("Proprietary-1.0").unwrap_err();
            assert!(
                unknown.contains("not a license Tributary knows"),
                "{unknown}"
            );
        }
        // "-NC" is a part of the id, not any substring.
        assert!(
            Commercial.allows("NCSA").is_err(),
            "unknown, not non-commercial"
        );
        assert!(
            !Commercial
                .allows("NCSA")
                .unwrap_err()
                .contains("non-commercial")
        );
    }

    #[test]
    fn refused_names_each_license_with_its_count() {
        let counts = std::collections::BTreeMap::from([
            ("CC-BY-4.0".to_string(), 40u64),
            ("CC-BY-NC-4.0".to_string(), 3u64),
        ]);
        let out = refused(Use::Commercial, &counts);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.as_str(), out[0].1), ("CC-BY-NC-4.0", 3));
        assert!(refused(Use::Research, &counts).is_empty());
        assert_eq!(Use::parse(" Research "), Ok(Use::Research));
        assert!(Use::parse("personal").unwrap_err().contains("commercial"));
    }
}
