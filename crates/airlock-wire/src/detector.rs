//! The seam between the wire layer and the detection engine.

use std::sync::Arc;

use serde::Serialize;

/// What kind of sensitive content a detection is; actions are configured per category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Secret,
    Pii,
    Covert,
    Custom,
}

/// One match reported by a [`Detector`]. `start..end` is the byte range of the sensitive value
/// in the text that was scanned. Never holds the value itself.
#[derive(Debug, Clone)]
pub struct Detection {
    pub rule_id: Arc<str>,
    pub category: Category,
    pub severity: Arc<str>,
    pub start: usize,
    pub end: usize,
    /// Redacted preview from the engine (safe to log).
    pub preview: String,
    /// Label used in placeholders, e.g. `GITHUB_TOKEN`.
    pub label: Arc<str>,
    /// Stable, non-reversible fingerprint of the value (safe to log).
    pub fingerprint: String,
}

/// A covert-Unicode fix: put `text` in place of `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Whether a [`Detector::detect`] call looked at all of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Coverage {
    /// Every detection in the text was reported.
    Whole,
    /// The detector stopped early (the engine's cap on findings per scan,
    /// `airlock_detect::MAX_FINDINGS`): the text may hold more, anywhere. The wire layer
    /// refuses to vouch for such a request (see [`crate::MAX_REQUEST_FINDINGS`]).
    Partial,
}

/// Anything that can find sensitive content in text. Implemented for the detection engine
/// (`airlock_detect::Engine`); tests and embedders may supply their own.
pub trait Detector: Send + Sync {
    /// Append every detection in `text` to `out`; say whether that is all of them.
    fn detect(&self, text: &str, out: &mut Vec<Detection>) -> Coverage;
    /// Append the covert-Unicode normalisation of `text` as replacements (invisible, tag and
    /// bidi characters removed, look-alikes mapped to ASCII where the surrounding text is
    /// ASCII). Called only for texts with a covert detection whose action is `normalize`; the
    /// replacements inside that detection's range are applied.
    fn normalize(&self, text: &str, out: &mut Vec<Replacement>);
    /// Whether a JSON string literal with exactly these raw (still escaped) bytes is known to
    /// hold nothing this detector finds, so the caller may skip decoding and scanning it.
    /// Agents resend the whole conversation every turn: on a long conversation nearly every
    /// literal was seen on the previous turn. Default: never known.
    fn known_clean(&self, _raw: &[u8]) -> bool {
        false
    }
    /// Remember that the JSON string literal with these raw bytes held no detection at all.
    fn note_clean(&self, _raw: &[u8]) {}
    /// An identity under which this detector's results may be remembered across requests: the
    /// same id promises the same detections for the same text (so a detector built from other
    /// rules must have another id). `None` (the default): nothing is remembered.
    fn memo_id(&self) -> Option<u64> {
        None
    }
}
