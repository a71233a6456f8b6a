//! The detection engine: finds secrets, personal data, an organisation's own confidential
//! markers and covert Unicode in text.
//!
//! What it does: compiles rule packs (TOML data, the built-in ones embedded at build time from
//! `rules/*.toml`) into one [`Engine`] that scans `&str` or `&[u8]` and returns [`Finding`]s with
//! byte ranges, line/column, a redacted preview and a stable fingerprint. Clean text costs
//! little: one pass over the rules' keywords (a small DFA over their first bytes, then a
//! comparison at each rare hit), one pass over digit runs for numeric personal data, and one
//! pass over non-ASCII characters for covert Unicode; each rule's regex only runs in small
//! windows around those anchors.
//!
//! What it does not do: no I/O (callers read files and config), no async, no network (checksums
//! are validated offline, providers are never contacted), no logging of values. Every input is
//! treated as hostile: no panics on any input, bounded time (regexes are finite automata run in
//! bounded windows) and bounded memory.

mod config;
pub mod covert;
mod engine;
mod gate;
mod keywords;
mod rules;
pub mod validate;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use config::{CustomConfig, CustomPattern, DEFAULT_MAX_FILE_SIZE, DetectConfig};
pub use engine::{Engine, EngineBuilder, MAX_FINDINGS};
pub use rules::{Anchor, BUILTIN_PACKS, Rule, RuleDef, RuleFile, Validator};

/// What kind of thing a rule finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Credentials: API keys, tokens, private keys, passwords.
    Secret,
    /// Personal data: e-mail addresses, phone numbers, card numbers, national ids.
    Pii,
    /// Hidden or look-alike Unicode used to smuggle instructions or data.
    Covert,
    /// An organisation's own markers from config.
    Custom,
}

impl Category {
    /// All categories, in display order.
    pub const ALL: [Category; 4] = [
        Category::Secret,
        Category::Pii,
        Category::Covert,
        Category::Custom,
    ];

    /// The snake_case name used in config, JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Pii => "pii",
            Category::Covert => "covert",
            Category::Custom => "custom",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Category {
    type Err = DetectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "secret" | "secrets" => Ok(Category::Secret),
            "pii" => Ok(Category::Pii),
            "covert" => Ok(Category::Covert),
            "custom" => Ok(Category::Custom),
            _ => Err(DetectError::UnknownName {
                kind: "category",
                name: s.to_string(),
                expected: "secret, pii, covert, custom",
            }),
        }
    }
}

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = DetectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(DetectError::UnknownName {
                kind: "severity",
                name: s.to_string(),
                expected: "info, low, medium, high, critical",
            }),
        }
    }
}

/// How sure the engine is that a finding is real. Ordered: `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

impl std::fmt::Display for Confidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing found. Never holds the sensitive value itself: only its byte range, a redacted
/// preview and a fingerprint (a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The id of the rule that matched, e.g. `github-pat`.
    pub rule_id: Arc<str>,
    pub category: Category,
    pub severity: Severity,
    pub confidence: Confidence,
    /// Byte offset where the sensitive value starts (what a redactor must replace).
    pub start: usize,
    /// Byte offset one past the end of the sensitive value.
    pub end: usize,
    /// 1-based line number of `start`.
    pub line: u32,
    /// 1-based column of `start`, counted in Unicode scalar values (characters) from the start
    /// of the line; an invalid UTF-8 byte counts as one character.
    pub column: u32,
    /// Redacted preview, e.g. `ghp_…x9Qa (40 chars)`. Never the whole value.
    pub preview: String,
    /// Extra information, e.g. the decoded hidden ASCII of a tag-character run.
    pub detail: Option<String>,
    /// Stable hash of (rule id, value) for baselines: 32 hex characters.
    pub fingerprint: String,
    /// Label used to build placeholders, e.g. `GITHUB_TOKEN` for `[REDACTED_GITHUB_TOKEN_1]`.
    pub placeholder_label: Arc<str>,
}

/// What one scan found ([`Engine::scan_all`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Sorted by start offset.
    pub findings: Vec<Finding>,
    /// The scan stopped at [`MAX_FINDINGS`]: the text may hold more than `findings`, anywhere
    /// (rules are searched one after another), so a caller that must act on everything cannot
    /// vouch for this text.
    pub truncated: bool,
}

/// Errors building an engine or reading rules/config. Scanning itself never fails.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{origin}: invalid rule file: {message}")]
    RuleFile { origin: String, message: String },
    #[error("{origin}: rule \"{id}\": {message}")]
    Rule {
        origin: String,
        id: String,
        message: String,
    },
    #[error("{origin}: duplicate rule id \"{id}\" in the same file")]
    DuplicateId { origin: String, id: String },
    #[error("unknown {kind} \"{name}\" (expected one of: {expected})")]
    UnknownName {
        kind: &'static str,
        name: String,
        expected: &'static str,
    },
    #[error("disable: \"{0}\" matches no rule id, set or category")]
    UnknownDisable(String),
    #[error("building the keyword prefilter failed: {0}")]
    Prefilter(String),
    #[error("detection config: {0}")]
    Config(String),
}
