//! Why a record was refused. Every refusal is kept (the `rejections` table) with its code, a
//! message that names the problem and the fix, and where the record came from.

use alloy::primitives::{Address, B256};

/// Reason codes, stable strings in the `rejections` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not parseable in its format (bad JSON line, bad CSV row, bad envelope).
    Malformed,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// Larger than the manifest's `max_record_bytes`.
    TooLarge,
    /// A required field is missing or null.
    MissingField,
    /// A field the manifest does not declare.
    UnknownField,
    /// A field of the wrong type.
    WrongType,
    /// Text shorter or longer than its bounds.
    LengthOutOfBounds,
    /// A label outside the allowed set.
    LabelNotAllowed,
    /// Text that does not match the field's pattern.
    PatternMismatch,
    /// A license the Datanet does not accept.
    LicenseNotAccepted,
    /// A signature that does not verify for this chain and registry (foreign chain or
    /// contract, malformed, high-s, or by another key than the named contributor).
    BadSignature,
    /// A record without a signature, and no key was given to sign it.
    Unsigned,
    /// Signed for another Datanet.
    WrongDatanet,
    /// The contributor may not submit to this Datanet.
    NotASubmitter,
    /// The contributor already used this nonce for another contribution.
    NonceReused,
    /// The signature's deadline has passed.
    Expired,
    /// The same content is already in the Datanet or earlier in the batch.
    DuplicateExact,
    /// Nearly the same text is already in the Datanet or earlier in the batch.
    DuplicateNear,
}

impl Reason {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::TooLarge => "too_large",
            Reason::MissingField => "missing_field",
            Reason::UnknownField => "unknown_field",
            Reason::WrongType => "wrong_type",
            Reason::LengthOutOfBounds => "length_out_of_bounds",
            Reason::LabelNotAllowed => "label_not_allowed",
            Reason::PatternMismatch => "pattern_mismatch",
            Reason::LicenseNotAccepted => "license_not_accepted",
            Reason::BadSignature => "bad_signature",
            Reason::Unsigned => "unsigned",
            Reason::WrongDatanet => "wrong_datanet",
            Reason::NotASubmitter => "not_a_submitter",
            Reason::NonceReused => "nonce_reused",
            Reason::Expired => "expired",
            Reason::DuplicateExact => "duplicate_exact",
            Reason::DuplicateNear => "duplicate_near",
        }
    }
}

/// A refused input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The input file (or `-`).
    pub source: String,
    /// Where in it: `line 12`, `row 3`, a file name.
    pub locator: String,
    /// The code.
    pub reason: Reason,
    /// What is wrong and how to fix it.
    pub message: String,
    /// The raw input (at most [`RAW_EXCERPT`] bytes).
    pub raw: String,
    /// The signer, when known.
    pub contributor: Option<Address>,
    /// The contribution id, when known.
    pub contribution_id: Option<B256>,
}

impl Rejection {
    /// A stable id: the same refusal of the same input record always gets the same id, so
    /// re-running an input never stores a refusal twice.
    pub fn id(&self, datanet_id: u64) -> B256 {
        let key = format!(
            "{datanet_id}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.source,
            self.locator,
            self.reason.code(),
            self.raw
        );
        alloy::primitives::keccak256(key.as_bytes())
    }
}

/// How much of a refused record's raw input is kept.
pub const RAW_EXCERPT: usize = 2048;

/// The first [`RAW_EXCERPT`] bytes of `raw`, cut at a character boundary.
pub fn excerpt(raw: &str) -> String {
    if raw.len() <= RAW_EXCERPT {
        return raw.to_string();
    }
    let mut end = RAW_EXCERPT;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}
