//! Known-bad agent releases (`rules/advisories.toml`): data, so that a security team can add an
//! advisory the day a problem is found, without a new Airlock release.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::catalogue::parse_version;
use crate::error::{ConfigError, ConfigIssue, PolicyError, issue_from_toml};

/// The advisories shipped with Airlock.
pub const EMBEDDED_ADVISORIES: &str = include_str!("../../../rules/advisories.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AdvisorySeverity {
    Low,
    Medium,
    High,
    Critical,
}

impl AdvisorySeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvisoryFile {
    schema_version: u32,
    #[serde(default, rename = "advisory")]
    advisories: Vec<RawAdvisory>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdvisory {
    id: String,
    agent: String,
    affected: Vec<String>,
    #[serde(default)]
    fixed: Option<String>,
    severity: AdvisorySeverity,
    summary: String,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    references: Vec<String>,
}

/// One advisory.
#[derive(Debug, Clone)]
pub struct Advisory {
    pub id: String,
    pub agent: String,
    /// The affected ranges as written, e.g. `>=2.1.91, <=2.1.197`.
    pub affected_text: Vec<String>,
    affected: Vec<semver::VersionReq>,
    pub fixed: Option<String>,
    pub severity: AdvisorySeverity,
    pub summary: String,
    pub details: Option<String>,
    pub references: Vec<String>,
}

impl Advisory {
    /// Whether this advisory covers `version` (pre-release versions included).
    pub fn covers(&self, version: &semver::Version) -> bool {
        // Compare on the release triple so that a pre-release such as 2.1.150-beta is covered
        // by `>=2.1.91, <=2.1.197` too (semver's own rule would exclude it).
        let core = semver::Version::new(version.major, version.minor, version.patch);
        self.affected.iter().any(|r| r.matches(&core))
    }

    /// "2.1.91–2.1.197" style text for messages.
    pub fn range_text(&self) -> String {
        self.affected_text
            .iter()
            .map(|r| pretty_range(r))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn pretty_range(r: &str) -> String {
    let parts: Vec<&str> = r.split(',').map(str::trim).collect();
    if let [lo, hi] = parts.as_slice()
        && let (Some(lo), Some(hi)) = (lo.strip_prefix(">="), hi.strip_prefix("<="))
    {
        return format!("{}–{}", lo.trim(), hi.trim());
    }
    r.to_string()
}

/// The loaded advisories.
#[derive(Debug, Default)]
pub struct Advisories {
    items: Vec<Advisory>,
}

impl Advisories {
    pub fn embedded() -> &'static Advisories {
        static ADV: OnceLock<Advisories> = OnceLock::new();
        ADV.get_or_init(|| {
            Advisories::from_toml(EMBEDDED_ADVISORIES, "<embedded>/rules/advisories.toml")
                .unwrap_or_else(|e| {
                    eprintln!("error: the embedded advisories are invalid (a build defect): {e}");
                    Advisories::default()
                })
        })
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Advisories, PolicyError> {
        let file: AdvisoryFile = toml::from_str(text).map_err(|e| ConfigError {
            issues: vec![issue_from_toml(origin, text, &e, &[])],
        })?;
        let mut issues = Vec::new();
        if file.schema_version != 1 {
            issues.push(ConfigIssue {
                origin: origin.into(),
                line: None,
                key: Some("schema_version".into()),
                message: format!("unsupported schema_version {}", file.schema_version),
            });
        }
        let mut items = Vec::new();
        for (i, a) in file.advisories.into_iter().enumerate() {
            let mut affected = Vec::new();
            for r in &a.affected {
                match semver::VersionReq::parse(r) {
                    Ok(req) => affected.push(req),
                    Err(e) => issues.push(ConfigIssue {
                        origin: origin.into(),
                        line: None,
                        key: Some(format!("advisory[{i}].affected")),
                        message: format!("invalid version range \"{r}\": {e}"),
                    }),
                }
            }
            items.push(Advisory {
                id: a.id,
                agent: a.agent,
                affected_text: a.affected,
                affected,
                fixed: a.fixed,
                severity: a.severity,
                summary: a.summary,
                details: a.details,
                references: a.references,
            });
        }
        if !issues.is_empty() {
            return Err(ConfigError { issues }.into());
        }
        Ok(Advisories { items })
    }

    pub fn all(&self) -> &[Advisory] {
        &self.items
    }

    /// Advisories that cover this agent at this version (as sent; parsed leniently).
    pub fn matching(&self, agent: &str, version: &str) -> Vec<&Advisory> {
        let Some(v) = parse_version(version) else {
            return Vec::new();
        };
        self.items
            .iter()
            .filter(|a| a.agent == agent && a.covers(&v))
            .collect()
    }

    /// Merge extra advisories (from a company's own file) after the built-in ones.
    pub fn extend(&mut self, other: Advisories) {
        self.items.extend(other.items);
    }

    /// A copy of the embedded advisories, to extend.
    pub fn embedded_clone() -> Advisories {
        Advisories {
            items: Self::embedded().items.clone(),
        }
    }
}
