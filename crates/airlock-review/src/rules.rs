//! Data-driven parts of the review: host classes (rules/hosts.toml), capability markers and
//! verdict rules (rules/review.toml). Built-ins are embedded at build time.

use std::collections::HashMap;

use aho_corasick::AhoCorasick;
use serde::Deserialize;

use crate::ReviewError;
use crate::model::{Decision, Report, Severity, Verdict};

/// The embedded host classification file.
pub const BUILTIN_HOSTS: &str = include_str!("../../../rules/hosts.toml");
/// The embedded capability markers and verdict rules.
pub const BUILTIN_RULES: &str = include_str!("../../../rules/review.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    schema_version: u32,
    #[serde(default)]
    host: Vec<HostEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    suffix: String,
    class: String,
    #[serde(default)]
    owner: Option<String>,
}

/// Classifies hosts by longest matching domain suffix.
#[derive(Debug, Clone)]
pub struct HostClasses {
    by_suffix: HashMap<String, (String, Option<String>)>,
}

impl HostClasses {
    pub fn builtin() -> Result<Self, ReviewError> {
        Self::parse(BUILTIN_HOSTS, "rules/hosts.toml")
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ReviewError> {
        let f: HostsFile = toml::from_str(text).map_err(|e| ReviewError::Rules {
            file: origin.to_string(),
            message: e.to_string(),
        })?;
        if f.schema_version != 1 {
            return Err(ReviewError::Rules {
                file: origin.to_string(),
                message: format!("unsupported schema_version {}", f.schema_version),
            });
        }
        let mut by_suffix = HashMap::new();
        for h in f.host {
            let s = h.suffix.trim().trim_start_matches('.').to_ascii_lowercase();
            if s.is_empty() {
                return Err(ReviewError::Rules {
                    file: origin.to_string(),
                    message: "empty host suffix".into(),
                });
            }
            by_suffix.insert(s, (h.class, h.owner));
        }
        Ok(Self { by_suffix })
    }

    /// `(class, owner)`; `unknown` when nothing matches.
    pub fn classify(&self, host: &str) -> (String, Option<String>) {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.parse::<std::net::IpAddr>().is_ok() {
            let local = host.starts_with("127.") || host == "::1" || host == "0.0.0.0";
            return (if local { "local" } else { "ip_address" }.to_string(), None);
        }
        // Walk from the full host to shorter suffixes: the first hit is the longest.
        let mut rest = host.as_str();
        loop {
            if let Some((c, o)) = self.by_suffix.get(rest) {
                return (c.clone(), o.clone());
            }
            match rest.find('.') {
                Some(i) => rest = &rest[i + 1..],
                None => return ("unknown".to_string(), None),
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    schema_version: u32,
    #[serde(default)]
    marker: Vec<MarkerEntry>,
    #[serde(default)]
    verdict: Vec<VerdictRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkerEntry {
    capability: String,
    description: String,
    #[serde(default)]
    modules: Vec<String>,
    #[serde(default)]
    strings: Vec<String>,
}

/// One verdict rule (see rules/review.toml for the semantics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictRule {
    pub id: String,
    pub decision: Decision,
    #[serde(default)]
    pub findings: Vec<String>,
    #[serde(default)]
    pub min_severity: Option<Severity>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub host_classes: Vec<String>,
    pub reason: String,
}

/// Capability markers and verdict rules.
#[derive(Debug, Clone)]
pub struct ReviewRules {
    /// capability id → description
    pub descriptions: HashMap<String, String>,
    modules: Vec<(String, usize)>,
    marker_caps: Vec<String>,
    strings: Option<AhoCorasick>,
    string_caps: Vec<usize>,
    pub verdicts: Vec<VerdictRule>,
}

fn glob_match(pat: &str, s: &str) -> bool {
    match pat.strip_suffix('*') {
        Some(p) => s.starts_with(p),
        None => pat == s,
    }
}

impl ReviewRules {
    pub fn builtin() -> Result<Self, ReviewError> {
        Self::parse(BUILTIN_RULES, "rules/review.toml")
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ReviewError> {
        let err = |message: String| ReviewError::Rules {
            file: origin.to_string(),
            message,
        };
        let f: RulesFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if f.schema_version != 1 {
            return Err(err(format!(
                "unsupported schema_version {}",
                f.schema_version
            )));
        }
        let mut problems = Vec::new();
        let mut descriptions = HashMap::new();
        let mut modules = Vec::new();
        let mut marker_caps = Vec::new();
        let mut pats = Vec::new();
        let mut string_caps = Vec::new();
        for (i, m) in f.marker.iter().enumerate() {
            if m.modules.is_empty() && m.strings.is_empty() {
                problems.push(format!(
                    "marker {} has neither modules nor strings",
                    m.capability
                ));
            }
            descriptions.insert(m.capability.clone(), m.description.clone());
            marker_caps.push(m.capability.clone());
            for md in &m.modules {
                modules.push((md.clone(), i));
            }
            for s in &m.strings {
                if s.is_empty() {
                    problems.push(format!("marker {} has an empty string", m.capability));
                }
                pats.push(s.clone());
                string_caps.push(i);
            }
        }
        let mut ids = std::collections::HashSet::new();
        for v in &f.verdict {
            if !ids.insert(v.id.clone()) {
                problems.push(format!("duplicate verdict id {}", v.id));
            }
            if v.findings.is_empty()
                && v.min_severity.is_none()
                && v.capabilities.is_empty()
                && v.host_classes.is_empty()
            {
                problems.push(format!("verdict {} has no condition", v.id));
            }
        }
        if !problems.is_empty() {
            return Err(err(problems.join("; ")));
        }
        let strings = if pats.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(&pats).map_err(|e| err(e.to_string()))?)
        };
        Ok(Self {
            descriptions,
            modules,
            marker_caps,
            strings,
            string_caps,
            verdicts: f.verdict,
        })
    }

    /// Capabilities implied by importing/requiring `module`.
    pub fn module_capabilities(&self, module: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (m, i) in &self.modules {
            let hit = if m.ends_with('/') || m.ends_with('-') {
                module.starts_with(m.as_str())
            } else {
                module == m || module.starts_with(&format!("{m}/"))
            };
            if hit {
                let c = self.marker_caps[*i].as_str();
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Capabilities implied by a string literal's content.
    pub fn string_capabilities(&self, s: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        if let Some(ac) = &self.strings {
            for m in ac.find_overlapping_iter(s) {
                let c = self.marker_caps[self.string_caps[m.pattern().as_usize()]].as_str();
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Apply the verdict rules to a finished report.
    pub fn decide(&self, report: &Report) -> Verdict {
        let mut decision = Decision::Approve;
        let mut reasons = Vec::new();
        for r in &self.verdicts {
            let mut ok = true;
            if !r.findings.is_empty() {
                ok &= report
                    .findings
                    .iter()
                    .any(|f| r.findings.iter().any(|p| glob_match(p, &f.id)));
            }
            if let Some(min) = r.min_severity {
                ok &= report.findings.iter().any(|f| f.severity >= min);
            }
            for c in &r.capabilities {
                ok &= report.capabilities.iter().any(|k| glob_match(c, &k.id));
            }
            if !r.host_classes.is_empty() {
                ok &= report
                    .hosts
                    .iter()
                    .any(|h| r.host_classes.contains(&h.class));
            }
            if ok {
                decision = decision.max(r.decision);
                reasons.push(format!("{} ({}): {}", r.decision.as_str(), r.id, r.reason));
            }
        }
        if reasons.is_empty() {
            reasons.push("approve: no verdict rule fired".into());
        }
        Verdict { decision, reasons }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_load() {
        let h = HostClasses::builtin().unwrap();
        assert_eq!(h.classify("api.anthropic.com").0, "model_api");
        assert_eq!(h.classify("statsig.anthropic.com").0, "telemetry");
        assert_eq!(h.classify("o1.ingest.sentry.io").0, "telemetry");
        assert_eq!(h.classify("notsentry.io").0, "unknown");
        assert_eq!(h.classify("127.0.0.1").0, "local");
        let r = ReviewRules::builtin().unwrap();
        assert!(
            r.module_capabilities("@sentry/node")
                .contains(&"telemetry.sentry")
        );
        assert!(
            r.module_capabilities("dd-trace")
                .contains(&"telemetry.datadog")
        );
        assert!(r.module_capabilities("lodash").is_empty());
        assert!(
            r.string_capabilities("/home/u/.aws/credentials")
                .contains(&"credentials.cloud")
        );
    }

    #[test]
    fn bad_rules_are_reported() {
        let e = ReviewRules::parse(
            "schema_version = 1\n[[verdict]]\nid='x'\ndecision='ban'\nreason='r'\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no condition"), "{e}");
        assert!(
            ReviewRules::parse(
                "schema_version = 1\n[[marker]]\ncapability='a'\ndescription='d'\nbogus=1\n",
                "t"
            )
            .is_err()
        );
    }
}
