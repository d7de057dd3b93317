//! A record against its Datanet manifest: fields, types, bounds, labels, patterns, size.

use regex::Regex;
use serde_json::Value;
use tributary_schemas::datanet::{DatanetManifest, FieldType};

use crate::reject::Reason;

/// A manifest's rules, with patterns compiled once.
#[derive(Debug, Clone)]
pub struct Rules {
    manifest: DatanetManifest,
    patterns: Vec<(String, Regex)>,
}

impl Rules {
    /// Compiles the manifest's patterns (checked valid by `DatanetManifest::check`).
    pub fn new(manifest: DatanetManifest) -> crate::Result<Self> {
        let mut patterns = Vec::new();
        for (name, f) in &manifest.fields {
            if let Some(p) = &f.pattern {
                let re = Regex::new(p).map_err(|e| {
                    crate::Error::InvalidInput(format!("field `{name}`: bad pattern: {e}"))
                })?;
                patterns.push((name.clone(), re));
            }
        }
        Ok(Self { manifest, patterns })
    }

    /// The manifest.
    pub fn manifest(&self) -> &DatanetManifest {
        &self.manifest
    }

    /// Checks `record` (its canonical JSON is `canonical_len` bytes long).
    pub fn check(&self, record: &Value, canonical_len: usize) -> Result<(), (Reason, String)> {
        let m = &self.manifest;
        if canonical_len > m.max_record_bytes {
            return Err((
                Reason::TooLarge,
                format!(
                    "record is {canonical_len} bytes; this Datanet accepts at most {}",
                    m.max_record_bytes
                ),
            ));
        }
        let Some(obj) = record.as_object() else {
            return Err((
                Reason::WrongType,
                "a record must be a JSON object of fields".into(),
            ));
        };
        if let Some(unknown) = obj.keys().find(|k| !m.fields.contains_key(*k)) {
            let known: Vec<&str> = m.fields.keys().map(String::as_str).collect();
            return Err((
                Reason::UnknownField,
                format!("unknown field `{unknown}`; this Datanet has {known:?}"),
            ));
        }
        for (name, spec) in &m.fields {
            let value = obj.get(name).filter(|v| !v.is_null());
            let Some(value) = value else {
                if spec.required {
                    return Err((
                        Reason::MissingField,
                        format!("required field `{name}` is missing"),
                    ));
                }
                continue;
            };
            let type_err = |want: &str| {
                (
                    Reason::WrongType,
                    format!("field `{name}` must be {want}, got {value}"),
                )
            };
            match spec.kind {
                FieldType::Number if !value.is_number() => return Err(type_err("a number")),
                FieldType::Text | FieldType::Label if !value.is_string() => {
                    return Err(type_err("a string"));
                }
                _ => {}
            }
            if let Some(text) = value
                .as_str()
                .filter(|_| matches!(spec.kind, FieldType::Text | FieldType::Label))
            {
                let chars = text.chars().count();
                if spec.min_length.is_some_and(|lo| chars < lo)
                    || spec.max_length.is_some_and(|hi| chars > hi)
                {
                    return Err((
                        Reason::LengthOutOfBounds,
                        format!(
                            "field `{name}` has {chars} characters; allowed {}..={}",
                            spec.min_length.unwrap_or(0),
                            spec.max_length.map_or("∞".to_string(), |h| h.to_string())
                        ),
                    ));
                }
                if spec.kind == FieldType::Label && !spec.labels.iter().any(|l| l == text) {
                    return Err((
                        Reason::LabelNotAllowed,
                        format!("field `{name}` is {text:?}; allowed {:?}", spec.labels),
                    ));
                }
            }
        }
        for (name, re) in &self.patterns {
            if let Some(text) = obj.get(name).and_then(Value::as_str)
                && !re.is_match(text)
            {
                return Err((
                    Reason::PatternMismatch,
                    format!("field `{name}` does not match /{}/", re.as_str()),
                ));
            }
        }
        Ok(())
    }

    /// Checks that `license` is accepted.
    pub fn check_license(&self, license: &str) -> Result<(), (Reason, String)> {
        if self.manifest.licenses.iter().any(|l| l == license) {
            Ok(())
        } else {
            Err((
                Reason::LicenseNotAccepted,
                format!(
                    "license {license:?} is not accepted; use one of {:?}",
                    self.manifest.licenses
                ),
            ))
        }
    }

    /// The record's text for near-duplicate detection: its text fields, in field order.
    pub fn text_of(&self, record: &Value) -> String {
        let mut out = String::new();
        for (name, spec) in &self.manifest.fields {
            if spec.kind == FieldType::Text
                && let Some(t) = record.get(name).and_then(Value::as_str)
            {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(t);
            }
        }
        out
    }
}
