//! The catalogue of known AI coding agents (`rules/agents.toml`) and request identification.
//!
//! The catalogue is data a security team edits; this module only gives it types, checks it, and
//! answers "which agent sent this request, at which version?". Identification order, strongest
//! first: a `user_agent` rule, then a `header` rule, then a `body` fingerprint (a fixed
//! system-prompt preamble) over the first [`BODY_FINGERPRINT_WINDOW`] bytes of the body.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use http::HeaderMap;
use serde::Deserialize;

use crate::error::{ConfigError, ConfigIssue, PolicyError, issue_from_toml};

/// The catalogue shipped with Airlock.
pub const EMBEDDED_AGENTS: &str = include_str!("../../../rules/agents.toml");

/// How much of a request body the body fingerprints look at.
pub const BODY_FINGERPRINT_WINDOW: usize = 64 * 1024;

/// The id reported for a request no catalogue entry recognises.
pub const UNKNOWN: &str = "unknown";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    schema_version: u32,
    #[serde(default, rename = "agent")]
    agents: Vec<Agent>,
}

/// One known agent, as written in `rules/agents.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub vendor: String,
    /// API formats the agent speaks: `anthropic`, `openai-chat`, `openai-responses`, `gemini`.
    #[serde(default)]
    pub apis: Vec<String>,
    #[serde(default)]
    pub npm_packages: Vec<String>,
    /// Per-platform npm packages that carry the native binary, e.g. `linux-x64`.
    #[serde(default)]
    pub platform_packages: BTreeMap<String, String>,
    #[serde(default)]
    pub pip_packages: Vec<String>,
    /// Executable names looked for on PATH.
    #[serde(default)]
    pub binaries: Vec<String>,
    /// Native-installer locations (`~/` = home; a trailing `*` matches one directory level).
    #[serde(default)]
    pub install_paths: Vec<String>,
    #[serde(default)]
    pub config_dirs: Vec<String>,
    #[serde(default)]
    pub config_files: Vec<String>,
    /// Editor extension ids (`publisher.name`), matched case-insensitively.
    #[serde(default)]
    pub editor_extensions: Vec<String>,
    /// JetBrains IDE plugins: the `<id>` of the plugin's `META-INF/plugin.xml` (authoritative
    /// when the descriptor can be read) and/or the plugin's directory or jar name in the IDE's
    /// plugins directory (used only when it cannot). Matched case-insensitively.
    #[serde(default)]
    pub jetbrains_plugins: Vec<String>,
    #[serde(default)]
    pub process_names: Vec<String>,
    /// Arguments that print the version.
    #[serde(default)]
    pub version_args: Vec<String>,
    /// Whether running the binary with `version_args` is known to be side-effect free.
    #[serde(default)]
    pub version_safe: bool,
    #[serde(default)]
    pub base_url_env: Vec<String>,
    #[serde(default)]
    pub api_key_env: Vec<String>,
    /// Hosts the agent reaches when not routed through Airlock.
    #[serde(default)]
    pub vendor_hosts: Vec<String>,
    /// Environment settings that switch its telemetry off.
    #[serde(default)]
    pub telemetry_env_off: BTreeMap<String, String>,
    /// Settings in config files that route traffic (base URLs, proxies, telemetry switches).
    #[serde(default)]
    pub routing: Vec<RoutingSetting>,
    #[serde(default)]
    pub identify: Vec<IdentifyRule>,
    /// Headers that carry the agent's session id.
    #[serde(default)]
    pub session_headers: Vec<String>,
    #[serde(default)]
    pub probe: Option<ProbeSpec>,
}

/// A setting in one of the agent's config files that routes its traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSetting {
    /// The file, `~/` relative to home.
    pub file: String,
    /// Dotted key path inside it (JSON or TOML); `*` matches any one key.
    pub key: String,
    /// `base_url`, `proxy` or `telemetry`.
    pub kind: String,
}

/// One identification rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifyRule {
    /// `user_agent`, `header` or `body`.
    pub kind: String,
    /// Header name for `header` rules.
    #[serde(default)]
    pub name: Option<String>,
    /// Regex; a named group `version` captures the version. Absent on a `header` rule: the
    /// header's presence is enough.
    #[serde(default)]
    pub pattern: Option<String>,
}

/// How `airlock probe` makes the agent do one non-interactive turn against a base URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Arguments; `{prompt}` is replaced by the prompt.
    pub args: Vec<String>,
    /// Environment; `{base_url}` is replaced by the recorder's base URL.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    UserAgent,
    Header,
    Body,
}

#[derive(Debug)]
struct Compiled {
    agent: usize,
    kind: Kind,
    header: Option<http::HeaderName>,
    regex: Option<regex::bytes::Regex>,
}

/// Who sent a request, as far as the catalogue can tell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// Catalogue id, or `None` when unknown.
    pub agent: Option<String>,
    /// Display name from the catalogue.
    pub name: Option<String>,
    /// Version as sent by the agent.
    pub version: Option<String>,
    /// What identified it: `user-agent`, `header:<name>`, `body`, or `none`.
    pub signal: String,
}

impl Identity {
    /// The catalogue id, or `"unknown"`.
    pub fn agent_id(&self) -> &str {
        self.agent.as_deref().unwrap_or(UNKNOWN)
    }

    /// The version parsed as semver, tolerating a missing patch (`2.1` → `2.1.0`).
    pub fn semver(&self) -> Option<semver::Version> {
        self.version.as_deref().and_then(parse_version)
    }

    /// "Claude Code 2.1.150", "Claude Code" or "an unidentified tool".
    pub fn display(&self) -> String {
        match (&self.name, &self.version) {
            (Some(n), Some(v)) => format!("{n} {v}"),
            (Some(n), None) => n.clone(),
            _ => "an unidentified tool".to_string(),
        }
    }
}

/// Parse a version leniently: `2.1.332`, `v2.1.332`, `2.1`.
pub(crate) fn parse_version(v: &str) -> Option<semver::Version> {
    let v = v.trim().trim_start_matches('v');
    if let Ok(parsed) = semver::Version::parse(v) {
        return Some(parsed);
    }
    let core: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let parts: Vec<&str> = core.split('.').filter(|p| !p.is_empty()).collect();
    let num = |i: usize| parts.get(i).and_then(|p| p.parse::<u64>().ok());
    Some(semver::Version::new(
        num(0)?,
        num(1).unwrap_or(0),
        num(2).unwrap_or(0),
    ))
}

/// The agent catalogue with its identification rules compiled.
#[derive(Debug)]
pub struct Catalogue {
    agents: Vec<Agent>,
    rules: Vec<Compiled>,
}

impl Catalogue {
    /// The catalogue compiled into the binary. It is checked by this crate's tests, so a
    /// failure here is a build defect, reported and replaced by an empty catalogue rather than a
    /// panic.
    pub fn embedded() -> &'static Catalogue {
        static CAT: OnceLock<Catalogue> = OnceLock::new();
        CAT.get_or_init(|| {
            Catalogue::from_toml(EMBEDDED_AGENTS, "<embedded>/rules/agents.toml").unwrap_or_else(
                |e| {
                    tracing_fallback(&e);
                    Catalogue {
                        agents: Vec::new(),
                        rules: Vec::new(),
                    }
                },
            )
        })
    }

    /// Parse and check a catalogue. Every problem is reported, with its line.
    pub fn from_toml(text: &str, origin: &str) -> Result<Catalogue, PolicyError> {
        let file: CatalogueFile = toml::from_str(text).map_err(|e| ConfigError {
            issues: vec![issue_from_toml(origin, text, &e, &[])],
        })?;
        let mut issues = Vec::new();
        let issue = |key: String, message: String| ConfigIssue {
            origin: origin.to_string(),
            line: None,
            key: Some(key),
            message,
        };
        if file.schema_version != 1 {
            issues.push(issue(
                "schema_version".into(),
                format!(
                    "unsupported schema_version {} (expected 1)",
                    file.schema_version
                ),
            ));
        }
        let mut rules = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (ai, agent) in file.agents.iter().enumerate() {
            if !seen.insert(agent.id.as_str()) {
                issues.push(issue(
                    format!("agent[{ai}].id"),
                    format!("duplicate id \"{}\"", agent.id),
                ));
            }
            if agent.id.is_empty() || agent.id == UNKNOWN {
                issues.push(issue(
                    format!("agent[{ai}].id"),
                    format!("invalid id \"{}\"", agent.id),
                ));
            }
            for (ri, rule) in agent.identify.iter().enumerate() {
                let key = format!("agent[{ai}].identify[{ri}]");
                let kind = match rule.kind.as_str() {
                    "user_agent" => Kind::UserAgent,
                    "header" => Kind::Header,
                    "body" => Kind::Body,
                    other => {
                        issues.push(issue(
                            key,
                            format!(
                                "unknown kind \"{other}\" (expected user_agent, header or body)"
                            ),
                        ));
                        continue;
                    }
                };
                let header = match (kind, &rule.name) {
                    (Kind::Header, Some(n)) => match http::HeaderName::from_bytes(n.as_bytes()) {
                        Ok(h) => Some(h),
                        Err(_) => {
                            issues.push(issue(key, format!("invalid header name \"{n}\"")));
                            continue;
                        }
                    },
                    (Kind::Header, None) => {
                        issues.push(issue(key, "a header rule needs `name`".into()));
                        continue;
                    }
                    _ => None,
                };
                let regex = match &rule.pattern {
                    Some(p) => match regex::bytes::RegexBuilder::new(p)
                        .size_limit(1 << 20)
                        .build()
                    {
                        Ok(r) => Some(r),
                        Err(e) => {
                            issues.push(issue(key, format!("invalid pattern: {e}")));
                            continue;
                        }
                    },
                    None if kind == Kind::Header => None,
                    None => {
                        issues.push(issue(key, "this rule needs `pattern`".into()));
                        continue;
                    }
                };
                rules.push(Compiled {
                    agent: ai,
                    kind,
                    header,
                    regex,
                });
            }
        }
        if !issues.is_empty() {
            return Err(ConfigError { issues }.into());
        }
        Ok(Catalogue {
            agents: file.agents,
            rules,
        })
    }

    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    pub fn get(&self, id: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The agent that installs an executable of this name.
    pub fn by_binary(&self, name: &str) -> Option<&Agent> {
        self.agents
            .iter()
            .find(|a| a.binaries.iter().any(|b| b == name))
    }

    /// The agent published as this npm package (main or platform package).
    pub fn by_npm_package(&self, package: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| {
            a.npm_packages.iter().any(|p| p == package)
                || a.platform_packages.values().any(|p| p == package)
        })
    }

    /// Identify the agent that sent a request from its headers and body.
    pub fn identify(&self, headers: &HeaderMap, body: &[u8]) -> Identity {
        let ua = headers
            .get(http::header::USER_AGENT)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let window = &body[..body.len().min(BODY_FINGERPRINT_WINDOW)];
        let capture = |re: &regex::bytes::Regex, hay: &[u8]| -> Option<Option<String>> {
            let caps = re.captures(hay)?;
            Some(
                caps.name("version")
                    .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned()),
            )
        };

        let mut found: Option<(usize, Option<String>, String)> = None;
        if !ua.is_empty() {
            for r in self.rules.iter().filter(|r| r.kind == Kind::UserAgent) {
                if let Some(re) = &r.regex
                    && let Some(v) = capture(re, ua)
                {
                    found = Some((r.agent, v, "user-agent".to_string()));
                    break;
                }
            }
        }
        if found.is_none() {
            for r in self.rules.iter().filter(|r| r.kind == Kind::Header) {
                let Some(name) = &r.header else { continue };
                let Some(value) = headers.get(name) else {
                    continue;
                };
                let hit = match &r.regex {
                    Some(re) => capture(re, value.as_bytes()),
                    None => Some(None),
                };
                if let Some(v) = hit {
                    found = Some((r.agent, v, format!("header:{name}")));
                    break;
                }
            }
        }
        if found.is_none() && !window.is_empty() {
            for r in self.rules.iter().filter(|r| r.kind == Kind::Body) {
                if let Some(re) = &r.regex
                    && let Some(v) = capture(re, window)
                {
                    found = Some((r.agent, v, "body".to_string()));
                    break;
                }
            }
        }
        let Some((agent, mut version, signal)) = found else {
            return Identity {
                signal: "none".to_string(),
                ..Identity::default()
            };
        };
        if version.is_none() {
            // A weaker signal found the agent; any rule of the same agent may still carry the
            // version (e.g. Claude Code's billing line in the system prompt).
            for r in self.rules.iter().filter(|r| r.agent == agent) {
                let Some(re) = &r.regex else { continue };
                let hay: &[u8] = match r.kind {
                    Kind::UserAgent => ua,
                    Kind::Header => match r.header.as_ref().and_then(|h| headers.get(h)) {
                        Some(v) => v.as_bytes(),
                        None => continue,
                    },
                    Kind::Body => window,
                };
                if let Some(Some(v)) = capture(re, hay) {
                    version = Some(v);
                    break;
                }
            }
        }
        let a = &self.agents[agent];
        Identity {
            agent: Some(a.id.clone()),
            name: Some(a.name.clone()),
            version,
            signal,
        }
    }

    /// The agent's session id from its headers, when it sends one.
    pub fn session_id(&self, identity: &Identity, headers: &HeaderMap) -> Option<String> {
        let agent = self.get(identity.agent.as_deref()?)?;
        agent
            .session_headers
            .iter()
            .find_map(|h| headers.get(h.as_str()))
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(128).collect())
    }
}

fn tracing_fallback(e: &PolicyError) {
    eprintln!("error: the embedded agent catalogue is invalid (a build defect): {e}");
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_AGENTS: &str = r#"
schema_version = 1

[[agent]]
id = "x"
name = "X"
vendor = "V"
jetbrains_plugins = ["com.example.x", "x-jetbrains-plugin"]

[[agent]]
id = "y"
name = "Y"
vendor = "V"
"#;

    #[test]
    fn jetbrains_plugins_parse_and_default_to_empty() {
        let cat = Catalogue::from_toml(TWO_AGENTS, "t.toml").unwrap();
        assert_eq!(
            cat.get("x").unwrap().jetbrains_plugins,
            ["com.example.x", "x-jetbrains-plugin"]
        );
        assert!(cat.get("y").unwrap().jetbrains_plugins.is_empty());
        // The key is checked like every other: a misspelling is an error, not ignored.
        let bad = TWO_AGENTS.replace("jetbrains_plugins", "jetbrains_plugin");
        let e = Catalogue::from_toml(&bad, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("jetbrains_plugin"), "{e}");
        // A list of strings, nothing else.
        let bad = TWO_AGENTS.replace(r#"["com.example.x", "x-jetbrains-plugin"]"#, "\"x\"");
        assert!(Catalogue::from_toml(&bad, "t.toml").is_err());
    }

    #[test]
    fn embedded_catalogue_names_jetbrains_plugins() {
        let cat = Catalogue::embedded();
        let ids = |a: &str| cat.get(a).unwrap().jetbrains_plugins.clone();
        assert!(ids("claude-code").contains(&"com.anthropic.code.plugin".to_string()));
        assert!(ids("copilot-cli").contains(&"com.github.copilot".to_string()));
    }
}
