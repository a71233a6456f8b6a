//! What to do with each finding: the `[redaction]` section of airlock.toml.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::detector::Category;

/// Action for secrets, personal data and custom markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace the value with a reversible placeholder such as `[REDACTED_GITHUB_TOKEN_1]`.
    Redact,
    /// Refuse the request (answered in the API's error shape, naming rule and location).
    Block,
    /// Record the finding, forward unchanged.
    Log,
    /// Ignore the finding completely.
    Off,
}

/// Action for covert Unicode (invisible, tag, bidi-control and look-alike characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CovertAction {
    /// Remove invisible characters and map look-alikes back to ASCII.
    Normalize,
    Block,
    Log,
    Off,
}

/// Per-rule override. `redact` on a covert rule means `normalize` and `normalize` on any other
/// rule means `redact`: each is "make the outbound text safe" for its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Redact,
    Normalize,
    Block,
    Log,
    Off,
}

/// The action actually taken for one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolved {
    Redact,
    Normalize,
    Block,
    Log,
    Off,
}

pub const DEFAULT_SECRET: Action = Action::Redact;
pub const DEFAULT_PII: Action = Action::Log;
pub const DEFAULT_COVERT: CovertAction = CovertAction::Normalize;
pub const DEFAULT_CUSTOM: Action = Action::Redact;

/// Redaction policy: an action per category, overrides per rule id, and dry-run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct Actions {
    /// Record what would have happened, change and block nothing.
    pub dry_run: bool,
    pub secret: Action,
    pub pii: Action,
    pub covert: CovertAction,
    pub custom: Action,
    /// Overrides by rule id, e.g. `aws-access-key-id = "block"`.
    pub rules: BTreeMap<String, RuleAction>,
    /// Most findings one request may hold before it is refused whole
    /// ([`crate::MAX_REQUEST_FINDINGS`] by default; 1 to [`MAX_FINDINGS_SETTING`]). Set in the
    /// base `[redaction]` table only; tool and team overrides inherit it.
    pub max_findings: usize,
}

/// The largest `[redaction] max_findings` accepted: each finding holds about a kilobyte while
/// its request is inspected.
pub const MAX_FINDINGS_SETTING: usize = 1_000_000;

impl Default for Actions {
    fn default() -> Self {
        Actions {
            dry_run: false,
            secret: DEFAULT_SECRET,
            pii: DEFAULT_PII,
            covert: DEFAULT_COVERT,
            custom: DEFAULT_CUSTOM,
            rules: BTreeMap::new(),
            max_findings: crate::MAX_REQUEST_FINDINGS,
        }
    }
}

/// A partial [`Actions`] for a team or a tool; unset fields keep the base value, rule entries
/// are added to (and replace) the base's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct ActionsOverride {
    pub dry_run: Option<bool>,
    pub secret: Option<Action>,
    pub pii: Option<Action>,
    pub covert: Option<CovertAction>,
    pub custom: Option<Action>,
    pub rules: BTreeMap<String, RuleAction>,
}

impl Actions {
    /// The same action for secrets, personal data and custom markers; covert keeps its default.
    pub fn all(action: Action) -> Self {
        Actions {
            secret: action,
            pii: action,
            custom: action,
            ..Actions::default()
        }
    }

    /// This policy with an override layered on top.
    pub fn with(&self, o: &ActionsOverride) -> Actions {
        let mut a = self.clone();
        if let Some(v) = o.dry_run {
            a.dry_run = v;
        }
        if let Some(v) = o.secret {
            a.secret = v;
        }
        if let Some(v) = o.pii {
            a.pii = v;
        }
        if let Some(v) = o.covert {
            a.covert = v;
        }
        if let Some(v) = o.custom {
            a.custom = v;
        }
        for (k, v) in &o.rules {
            a.rules.insert(k.clone(), *v);
        }
        a
    }

    /// Whether some finding could change or block a request under this policy (not a dry run,
    /// and some category or rule is set to `redact`, `normalize` or `block`).
    pub fn acts(&self) -> bool {
        let acts = |a: Action| matches!(a, Action::Redact | Action::Block);
        !self.dry_run
            && (acts(self.secret)
                || acts(self.pii)
                || acts(self.custom)
                || matches!(self.covert, CovertAction::Normalize | CovertAction::Block)
                || self.rules.values().any(|r| {
                    matches!(
                        r,
                        RuleAction::Redact | RuleAction::Normalize | RuleAction::Block
                    )
                }))
    }

    /// The action for a finding of `rule_id` in `category`.
    pub fn resolve(&self, rule_id: &str, category: Category) -> Resolved {
        if let Some(r) = self.rules.get(rule_id) {
            return match (r, category) {
                (RuleAction::Redact | RuleAction::Normalize, Category::Covert) => {
                    Resolved::Normalize
                }
                (RuleAction::Redact | RuleAction::Normalize, _) => Resolved::Redact,
                (RuleAction::Block, _) => Resolved::Block,
                (RuleAction::Log, _) => Resolved::Log,
                (RuleAction::Off, _) => Resolved::Off,
            };
        }
        let a = match category {
            Category::Secret => self.secret,
            Category::Pii => self.pii,
            Category::Custom => self.custom,
            Category::Covert => {
                return match self.covert {
                    CovertAction::Normalize => Resolved::Normalize,
                    CovertAction::Block => Resolved::Block,
                    CovertAction::Log => Resolved::Log,
                    CovertAction::Off => Resolved::Off,
                };
            }
        };
        match a {
            Action::Redact => Resolved::Redact,
            Action::Block => Resolved::Block,
            Action::Log => Resolved::Log,
            Action::Off => Resolved::Off,
        }
    }
}

/// The whole `[redaction]` section: the base [`Actions`], then overrides by tool
/// (`[redaction.tool.<agent id>]`) and by team (`[redaction.team.<name>]`), applied in that
/// order, so a team's choice wins over a tool's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionPolicy {
    pub base: Actions,
    pub tool: BTreeMap<String, ActionsOverride>,
    pub team: BTreeMap<String, ActionsOverride>,
}

impl RedactionPolicy {
    /// Parse the `[redaction]` table. Errors name the offending key (`team.payments.pii`).
    pub fn from_table(table: &toml::Table) -> Result<RedactionPolicy, String> {
        let mut base = table.clone();
        let tool = base.remove("tool");
        let team = base.remove("team");
        let base: Actions = toml::Value::Table(base)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        if !(1..=MAX_FINDINGS_SETTING).contains(&base.max_findings) {
            return Err(format!(
                "max_findings: {} is out of range (1 to {MAX_FINDINGS_SETTING})",
                base.max_findings
            ));
        }
        let overrides = |name: &str, v: Option<toml::Value>| {
            let mut out = BTreeMap::new();
            let Some(v) = v else { return Ok(out) };
            let toml::Value::Table(t) = v else {
                return Err(format!(
                    "{name}: expected a table of tables, e.g. [redaction.{name}.NAME]"
                ));
            };
            for (k, v) in t {
                let o: ActionsOverride = v
                    .try_into()
                    .map_err(|e: toml::de::Error| format!("{name}.{k}: {}", e.message()))?;
                out.insert(k, o);
            }
            Ok(out)
        };
        Ok(RedactionPolicy {
            base,
            tool: overrides("tool", tool)?,
            team: overrides("team", team)?,
        })
    }

    /// The actions for a request from `team` (if any) with tool `tool`. Borrowed when no
    /// override applies (the common case costs nothing).
    pub fn for_subject(&self, team: Option<&str>, tool: &str) -> std::borrow::Cow<'_, Actions> {
        let by_tool = self.tool.get(tool);
        let by_team = team.and_then(|t| self.team.get(t));
        if by_tool.is_none() && by_team.is_none() {
            return std::borrow::Cow::Borrowed(&self.base);
        }
        let mut a = self.base.clone();
        if let Some(o) = by_tool {
            a = a.with(o);
        }
        if let Some(o) = by_team {
            a = a.with(o);
        }
        std::borrow::Cow::Owned(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max_findings` is read from the base table, bounded, inherited by overrides and refused
    /// in them.
    #[test]
    fn max_findings_is_a_bounded_base_setting() {
        let parse = |text: &str| RedactionPolicy::from_table(&toml::from_str(text).unwrap());
        assert_eq!(
            parse("").unwrap().base.max_findings,
            crate::MAX_REQUEST_FINDINGS
        );
        let p = parse("max_findings = 5000\n[team.payments]\npii = \"block\"").unwrap();
        assert_eq!(p.base.max_findings, 5000);
        assert_eq!(p.for_subject(Some("payments"), "x").max_findings, 5000);
        for bad in ["max_findings = 0", "max_findings = 1000001"] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.contains("max_findings") && e.contains("out of range"),
                "{e}"
            );
        }
        assert!(parse("max_findings = -1").is_err());
        let e = parse("[team.payments]\nmax_findings = 10").unwrap_err();
        assert!(
            e.contains("team.payments") && e.contains("max_findings"),
            "{e}"
        );
    }

    #[test]
    fn policy_with_team_and_tool_overrides() {
        let t: toml::Table = toml::from_str(
            r#"
            pii = "log"
            [rules]
            email = "log"
            [tool.qwen-code]
            secret = "block"
            pii = "redact"
            [team.payments]
            pii = "block"
            dry_run = true
            "#,
        )
        .unwrap();
        let p = RedactionPolicy::from_table(&t).unwrap();
        assert!(matches!(
            p.for_subject(None, "claude-code"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            p.for_subject(None, "claude-code")
                .resolve("x", Category::Pii),
            Resolved::Log
        );
        let q = p.for_subject(None, "qwen-code");
        assert_eq!(q.resolve("x", Category::Secret), Resolved::Block);
        assert_eq!(q.resolve("x", Category::Pii), Resolved::Redact);
        // The base's rule override still applies under a tool override.
        assert_eq!(q.resolve("email", Category::Pii), Resolved::Log);
        // Team wins over tool.
        let both = p.for_subject(Some("payments"), "qwen-code");
        assert_eq!(both.resolve("x", Category::Pii), Resolved::Block);
        assert_eq!(both.resolve("x", Category::Secret), Resolved::Block);
        assert!(both.dry_run);
        assert!(!p.for_subject(Some("other"), "qwen-code").dry_run);
    }

    #[test]
    fn policy_errors_name_the_key() {
        let bad: toml::Table = toml::from_str("[team.payments]\npii = \"maybe\"\n").unwrap();
        let e = RedactionPolicy::from_table(&bad).unwrap_err();
        assert!(e.starts_with("team.payments:"), "{e}");
        let bad: toml::Table = toml::from_str("[tool.x]\nsecrets = \"redact\"\n").unwrap();
        let e = RedactionPolicy::from_table(&bad).unwrap_err();
        assert!(e.contains("tool.x") && e.contains("secrets"), "{e}");
        let bad: toml::Table = toml::from_str("tool = 3\n").unwrap();
        assert!(RedactionPolicy::from_table(&bad).is_err());
        let bad: toml::Table = toml::from_str("secrt = \"redact\"\n").unwrap();
        assert!(
            RedactionPolicy::from_table(&bad)
                .unwrap_err()
                .contains("secrt")
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let a = Actions::default();
        assert_eq!(a.resolve("x", Category::Secret), Resolved::Redact);
        assert_eq!(a.resolve("x", Category::Pii), Resolved::Log);
        assert_eq!(a.resolve("x", Category::Covert), Resolved::Normalize);
        let o: ActionsOverride =
            serde_json::from_str(r#"{"pii":"redact","rules":{"aws-key":"block","zw":"redact"}}"#)
                .unwrap();
        let b = a.with(&o);
        assert_eq!(b.resolve("y", Category::Pii), Resolved::Redact);
        assert_eq!(b.resolve("aws-key", Category::Secret), Resolved::Block);
        assert_eq!(b.resolve("zw", Category::Covert), Resolved::Normalize);
        assert!(serde_json::from_str::<Actions>(r#"{"secrets":"redact"}"#).is_err());
        assert!(serde_json::from_str::<Actions>(r#"{"covert":"redact"}"#).is_err());
    }
}
