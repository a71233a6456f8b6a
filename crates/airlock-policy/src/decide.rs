//! Policy decisions: may this user, with this tool at this version, call this model?
//!
//! Order: the company's rules (first match wins; an `allow` rule can relax an advisory), then
//! advisories at or above `deny_advisory_severity`, then the default for unknown tools, then
//! allow. A refusal carries a message written for the person at the keyboard: what is blocked,
//! why, and what to use instead.

use crate::advisories::{Advisories, AdvisorySeverity};
use crate::catalogue::{Identity, UNKNOWN, parse_version};
use crate::config::{Config, PolicyConfig, PolicyRule, RuleAction, UnknownTools};
use crate::error::PolicyError;

/// Who is asking for what.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: Option<&'a str>,
    pub team: Option<&'a str>,
    pub identity: &'a Identity,
    pub model: Option<&'a str>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// What decided: a rule id, an advisory id, `unknown_tools` or `default`.
    pub rule: String,
    /// For the person: empty when allowed by default.
    pub message: String,
    /// The advisory behind the decision, if any.
    pub advisory: Option<String>,
}

impl Decision {
    fn allow(rule: &str) -> Self {
        Self {
            allow: true,
            rule: rule.to_string(),
            message: String::new(),
            advisory: None,
        }
    }
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    rules: Vec<(PolicyRule, Option<semver::VersionReq>)>,
    advisories: Advisories,
    threshold: Option<AdvisorySeverity>,
}

impl Policy {
    /// Compile the `[policy]` section of a configuration, with the built-in advisories plus the
    /// configured extra advisories file.
    pub fn from_config(config: &Config) -> Result<Policy, PolicyError> {
        let mut advisories = Advisories::embedded_clone();
        if let Some(path) = &config.policy.advisories_file {
            let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
                path: path.display().to_string(),
                source,
            })?;
            advisories.extend(Advisories::from_toml(&text, &path.display().to_string())?);
        }
        config.validate()?;
        Ok(Self::new(config.policy.clone(), advisories))
    }

    /// Compile from parts (the config is assumed validated; invalid version ranges never match).
    pub fn new(config: PolicyConfig, advisories: Advisories) -> Policy {
        let rules = config
            .rules
            .iter()
            .map(|r| {
                let req = r
                    .versions
                    .as_deref()
                    .and_then(|v| semver::VersionReq::parse(v).ok());
                (r.clone(), req)
            })
            .collect();
        let threshold = match config.deny_advisory_severity.as_str() {
            "low" => Some(AdvisorySeverity::Low),
            "medium" => Some(AdvisorySeverity::Medium),
            "high" => Some(AdvisorySeverity::High),
            "critical" => Some(AdvisorySeverity::Critical),
            _ => None,
        };
        Policy {
            config,
            rules,
            advisories,
            threshold,
        }
    }

    /// The built-in default policy.
    pub fn embedded_default() -> Policy {
        let cfg = Config::embedded_default();
        Self::new(cfg.policy, Advisories::embedded_clone())
    }

    pub fn advisories(&self) -> &Advisories {
        &self.advisories
    }

    /// Decide.
    pub fn decide(&self, s: &Subject<'_>) -> Decision {
        let tool = s.identity.agent_id();
        let version = s.identity.version.as_deref().and_then(parse_version);
        let who = s.identity.display();
        for (rule, req) in &self.rules {
            if !rule_matches(rule, req.as_ref(), s, tool, version.as_ref()) {
                continue;
            }
            return match rule.action {
                RuleAction::Allow => Decision::allow(&rule.id),
                RuleAction::Deny => {
                    let what = if !rule.models.is_empty() && rule.tools.is_empty() {
                        format!("Model {}", s.model.unwrap_or("(none)"))
                    } else if !rule.models.is_empty() {
                        format!("{who} with model {}", s.model.unwrap_or("(none)"))
                    } else {
                        capitalise(&who)
                    };
                    let mut msg = format!("{what} is blocked by company policy");
                    if let Some(reason) = &rule.reason {
                        msg.push_str(": ");
                        msg.push_str(reason.trim_end_matches('.'));
                    }
                    msg.push('.');
                    self.append_alternative(&mut msg, rule.alternative.as_deref(), None);
                    Decision {
                        allow: false,
                        rule: rule.id.clone(),
                        message: msg,
                        advisory: None,
                    }
                }
            };
        }
        if let (Some(threshold), Some(v)) = (self.threshold, s.identity.version.as_deref())
            && tool != UNKNOWN
        {
            let mut hits = self.advisories.matching(tool, v);
            hits.sort_by_key(|a| std::cmp::Reverse(a.severity));
            if let Some(adv) = hits.into_iter().find(|a| a.severity >= threshold) {
                let mut msg = format!(
                    "{} is blocked by company policy: {} in versions {} ({}).",
                    capitalise(&who),
                    adv.summary,
                    adv.range_text(),
                    adv.id
                );
                let update = adv
                    .fixed
                    .as_deref()
                    .map(|f| format!("Update to {f} or later"));
                self.append_alternative(&mut msg, None, update);
                return Decision {
                    allow: false,
                    rule: adv.id.clone(),
                    message: msg,
                    advisory: Some(adv.id.clone()),
                };
            }
        }
        if tool == UNKNOWN && self.config.unknown_tools == UnknownTools::Deny {
            let mut msg = "This tool is not recognised, and unrecognised tools are blocked by company policy.".to_string();
            self.append_alternative(&mut msg, None, None);
            return Decision {
                allow: false,
                rule: "unknown_tools".into(),
                message: msg,
                advisory: None,
            };
        }
        Decision::allow("default")
    }

    fn append_alternative(
        &self,
        msg: &mut String,
        alternative: Option<&str>,
        update: Option<String>,
    ) {
        let alts: Vec<&str> = match alternative {
            Some(a) => vec![a],
            None => self
                .config
                .approved_alternatives
                .iter()
                .map(String::as_str)
                .collect(),
        };
        let use_alt = (!alts.is_empty()).then(|| format!("use {}", alts.join(" or ")));
        match (update, use_alt) {
            (Some(u), Some(a)) => msg.push_str(&format!(" {u}, or {a}.")),
            (Some(u), None) => msg.push_str(&format!(" {u}.")),
            (None, Some(a)) => msg.push_str(&format!(" Please {a} instead.")),
            (None, None) => {}
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn rule_matches(
    rule: &PolicyRule,
    req: Option<&semver::VersionReq>,
    s: &Subject<'_>,
    tool: &str,
    version: Option<&semver::Version>,
) -> bool {
    if !rule.tools.is_empty() && !rule.tools.iter().any(|t| t == "*" || t == tool) {
        return false;
    }
    if rule.versions.is_some() {
        match (req, version) {
            (Some(req), Some(v)) => {
                let core = semver::Version::new(v.major, v.minor, v.patch);
                if !req.matches(&core) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    if !rule.models.is_empty() {
        match s.model {
            Some(m) if rule.models.iter().any(|p| crate::glob::matches(p, m)) => {}
            _ => return false,
        }
    }
    if !rule.teams.is_empty() && !s.team.is_some_and(|t| rule.teams.iter().any(|x| x == t)) {
        return false;
    }
    if !rule.users.is_empty() && !s.user.is_some_and(|u| rule.users.iter().any(|x| x == u)) {
        return false;
    }
    true
}
