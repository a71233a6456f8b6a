//! The report model: every field name here is part of the JSON output and documented in
//! docs/review.md.

use serde::{Deserialize, Serialize};

/// Report format version; bump when a field changes meaning.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Where something was seen: a file inside the reviewed artefact and a 1-based line/column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Path inside the artefact; `binary!/embedded/path` for files extracted from executables.
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// Byte offset in the file.
    pub offset: u64,
    /// A bounded, secret-redacted excerpt of the code.
    pub snippet: String,
}

/// A capability the software has (informational: an agent legitimately has most of them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capability {
    /// Stable id, e.g. `network.fetch`, `process.exec`, `env.timezone`.
    pub id: String,
    pub description: String,
    /// How many places use it.
    pub count: u64,
    /// The first few places (bounded).
    pub evidence: Vec<Evidence>,
}

/// One host the software talks to or names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    pub host: String,
    /// Class from rules/hosts.toml: model_api, telemetry, feature_flags, updates, source_hosting,
    /// package_registry, docs, local, unknown ...
    pub class: String,
    /// Organisation or product named by the hosts file, when known.
    pub owner: Option<String>,
    pub count: u64,
    /// True when the host was only seen inside a decoded (obfuscated) string.
    pub only_decoded: bool,
    pub evidence: Vec<Evidence>,
}

/// A string recovered by evaluating an obfuscated constant expression.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decoded {
    /// The decoding steps, e.g. `base64 → xor(0x2a) → fromCharCode`.
    pub method: String,
    /// The decoded text (bounded, secret-redacted, control characters escaped).
    pub text: String,
    pub evidence: Evidence,
}

/// Something a reviewer must look at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id, e.g. `chain.env_to_lookalike_text`, `hidden_text.invisible`, `secret.embedded`.
    pub id: String,
    pub severity: Severity,
    pub title: String,
    /// Why it matters, and what was found (never a secret value).
    pub detail: String,
    pub evidence: Vec<Evidence>,
}

/// One package or executable that was reviewed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    /// `npm`, `tarball`, `directory`, `executable`, `file`.
    pub kind: String,
    pub name: String,
    pub version: Option<String>,
    /// Where it came from (spec, path).
    pub source: String,
    /// SHA-256 of the artefact, when it is one file.
    pub sha256: Option<String>,
    pub files: u64,
    pub bytes: u64,
    /// npm install scripts (`preinstall`, `install`, `postinstall`, `prepare`): never run.
    pub install_scripts: Vec<(String, String)>,
    /// `optionalDependencies` from package.json (platform packages live here).
    pub optional_dependencies: Vec<(String, String)>,
    /// For executables: `bun`, `node-sea`, `strings`.
    pub embedded_format: Option<String>,
}

/// approve / review / ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Review,
    Ban,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Review => "review",
            Decision::Ban => "ban",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub decision: Decision,
    /// The rules that fired, with their reasons.
    pub reasons: Vec<String>,
}

/// Totals, for the summary line and the benchmarks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub files_total: u64,
    pub js_files_parsed: u64,
    pub js_parse_failures: u64,
    pub bytes_analysed: u64,
    pub string_literals: u64,
    pub elapsed_ms: u64,
}

/// The whole review.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: String,
    pub target: String,
    pub components: Vec<Component>,
    pub capabilities: Vec<Capability>,
    pub hosts: Vec<Host>,
    pub decoded: Vec<Decoded>,
    pub findings: Vec<Finding>,
    /// Things that could not be done fully (parse failures, caps reached), never silent.
    pub notes: Vec<String>,
    pub stats: Stats,
    pub verdict: Verdict,
}

impl Report {
    /// The highest finding severity, if any.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Number of findings at or above a severity.
    pub fn count_at_least(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity >= s).count()
    }
}
