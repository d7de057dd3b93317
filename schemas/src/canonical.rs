//! Canonical JSON: object keys sorted, no insignificant whitespace. The content hash of a
//! record is `keccak256` of its canonical JSON bytes, so the same record hashes the same way
//! whatever tool wrote it.

use alloy::primitives::{B256, keccak256};
use serde_json::Value;

/// Canonical JSON text of `value`: keys sorted (serde_json's map is ordered), compact.
pub fn to_canonical_json(value: &Value) -> String {
    // serde_json without `preserve_order` keeps object keys in a BTreeMap: sorted already.
    serde_json::to_string(value).expect("serialising a serde_json::Value cannot fail")
}

/// `keccak256` of the canonical JSON of `value`.
pub fn content_hash(value: &Value) -> B256 {
    keccak256(to_canonical_json(value).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_hash() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1,2], "x": "t"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"t","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(to_canonical_json(&a), r#"{"a":{"x":"t","y":[1,2]},"b":1}"#);
        assert_eq!(content_hash(&a), content_hash(&b));
    }
}
