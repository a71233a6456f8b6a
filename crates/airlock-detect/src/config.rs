//! The `[detection]` section of airlock.toml and its `[detection.custom]` markers.

use std::path::PathBuf;

use serde::Deserialize;

use crate::rules::{Anchor, RuleDef};
use crate::{Category, Confidence, DetectError, Severity};

/// Default largest file `airlock scan` reads: 10 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

fn default_max_file_size() -> u64 {
    DEFAULT_MAX_FILE_SIZE
}

/// `[detection]`: which rules run and on what.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Extra rule files (TOML, same format as `rules/*.toml`). A rule whose id equals a
    /// built-in one replaces it. Relative paths are relative to the config file.
    #[serde(default)]
    pub rule_files: Vec<PathBuf>,
    /// Rule ids, tags, categories (`pii`) or id prefixes ending in `*` (`slack-*`) to turn off.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Files larger than this are skipped by `airlock scan` (bytes).
    #[serde(default = "default_max_file_size")]
    pub max_file_size: u64,
    /// The organisation's own markers.
    #[serde(default)]
    pub custom: CustomConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            rule_files: Vec::new(),
            disable: Vec::new(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            custom: CustomConfig::default(),
        }
    }
}

impl DetectConfig {
    /// Report every problem at once.
    pub fn validate(&self) -> Result<(), DetectError> {
        let mut problems = Vec::new();
        if self.max_file_size == 0 {
            problems.push("detection.max_file_size must be greater than 0".to_string());
        }
        if let Err(e) = self.custom.to_rule_defs() {
            problems.push(e.to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DetectError::Config(problems.join("; ")))
        }
    }
}

fn default_custom_severity() -> Severity {
    Severity::High
}

/// `[detection.custom]`: an organisation's own confidential markers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomConfig {
    /// Severity for keywords, code names, domains and headers.
    #[serde(default = "default_custom_severity")]
    pub severity: Severity,
    /// Words that must not leave the company (whole words, case-insensitive).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Project code names (whole words, case-insensitive).
    #[serde(default)]
    pub code_names: Vec<String>,
    /// Internal domain suffixes, e.g. `corp.example.com`: host names ending in them match.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Header lines such as `CONFIDENTIAL – INTERNAL` (case-insensitive; any dash and any run
    /// of spaces match).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Own regexes, each with its own id and severity.
    #[serde(default)]
    pub patterns: Vec<CustomPattern>,
}

impl Default for CustomConfig {
    fn default() -> Self {
        CustomConfig {
            severity: default_custom_severity(),
            keywords: Vec::new(),
            code_names: Vec::new(),
            domains: Vec::new(),
            headers: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// One custom regex marker.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomPattern {
    /// Rule id; `custom-` is prefixed when missing.
    pub id: String,
    /// Regex; a named capture `value` marks the sensitive part.
    pub pattern: String,
    /// Literal strings one of which every match contains (case-insensitive). Without keywords
    /// the regex runs over all text, which is slower.
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default = "default_custom_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
}

fn escape_words(words: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|w| w.trim())
        .filter(|w| !w.is_empty())
        .map(regex_syntax::escape)
        .collect()
}

impl CustomConfig {
    /// Whether any marker is configured.
    pub fn is_empty(&self) -> bool {
        self.keywords.is_empty()
            && self.code_names.is_empty()
            && self.domains.is_empty()
            && self.headers.is_empty()
            && self.patterns.is_empty()
    }

    /// The markers as rule definitions (category `custom`).
    pub fn to_rule_defs(&self) -> Result<Vec<RuleDef>, DetectError> {
        let mut out = Vec::new();
        let base = |id: &str,
                    description: String,
                    pattern: String,
                    keywords: Vec<String>,
                    severity: Severity,
                    label: &str| RuleDef {
            id: id.to_string(),
            category: Category::Custom,
            description,
            pattern: Some(pattern),
            detector: None,
            keywords,
            anchor: Anchor::Keywords,
            validator: None,
            severity,
            confidence: Confidence::High,
            label: Some(label.to_string()),
            min_entropy: None,
            window_before: Some(64),
            window_after: Some(256),
            placeholder_check: Some(false),
            generic: false,
            examples: Vec::new(),
            negative_examples: Vec::new(),
            references: Vec::new(),
            tags: vec!["custom".into()],
        };
        for (id, words, what, label) in [
            (
                "custom-keyword",
                &self.keywords,
                "confidential keyword",
                "CONFIDENTIAL",
            ),
            (
                "custom-code-name",
                &self.code_names,
                "project code name",
                "CODE_NAME",
            ),
        ] {
            let esc = escape_words(words);
            if esc.is_empty() {
                continue;
            }
            let pattern = format!(r"(?i)\b(?P<value>{})\b", esc.join("|"));
            let kws = words
                .iter()
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty())
                .collect();
            out.push(base(
                id,
                format!("Organisation {what} from config"),
                pattern,
                kws,
                self.severity,
                label,
            ));
        }
        let domains: Vec<String> = self
            .domains
            .iter()
            .map(|d| d.trim().trim_start_matches('.').to_string())
            .filter(|d| !d.is_empty())
            .collect();
        if !domains.is_empty() {
            let alt: Vec<String> = domains.iter().map(|d| regex_syntax::escape(d)).collect();
            let pattern = format!(
                r"(?i)\b(?P<value>(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)*(?:{}))\b",
                alt.join("|")
            );
            out.push(base(
                "custom-internal-domain",
                "Internal host name from config".into(),
                pattern,
                domains,
                self.severity,
                "INTERNAL_HOST",
            ));
        }
        let mut headers = Vec::new();
        let mut header_kws = Vec::new();
        for h in &self.headers {
            let words: Vec<&str> = h
                .split(|c: char| c.is_whitespace() || is_dash(c))
                .filter(|w| !w.is_empty())
                .collect();
            if words.is_empty() {
                continue;
            }
            let Some(longest) = words.iter().max_by_key(|w| w.len()) else {
                continue;
            };
            header_kws.push((*longest).to_string());
            let parts: Vec<String> = words.iter().map(|w| regex_syntax::escape(w)).collect();
            headers.push(parts.join(r"[\s\-\x{2010}-\x{2015}\x{2212}:|/]+"));
        }
        if !headers.is_empty() {
            let pattern = format!(r"(?i)(?P<value>{})", headers.join("|"));
            out.push(base(
                "custom-header",
                "Confidentiality header line from config".into(),
                pattern,
                header_kws,
                self.severity,
                "CONFIDENTIAL",
            ));
        }
        for p in &self.patterns {
            let id = if p.id.starts_with("custom-") {
                p.id.clone()
            } else {
                format!("custom-{}", p.id)
            };
            let mut def = base(
                &id,
                p.description
                    .clone()
                    .unwrap_or_else(|| "Custom pattern from config".into()),
                p.pattern.clone(),
                p.keywords.clone(),
                p.severity,
                p.label.as_deref().unwrap_or("CUSTOM"),
            );
            if p.keywords.iter().all(|k| k.is_empty()) {
                def.anchor = Anchor::Always;
            }
            out.push(def);
        }
        // Compile once here so config errors surface with the marker's id.
        for d in &out {
            crate::Rule::compile(d.clone(), "config [detection.custom]")?;
        }
        Ok(out)
    }
}

fn is_dash(c: char) -> bool {
    c == '-' || ('\u{2010}'..='\u{2015}').contains(&c) || c == '\u{2212}'
}
