//! The part of `rules/agents.toml` that probe needs: how to point each known agent at a base
//! URL and make it do one non-interactive turn (`[agent.probe]`), its binaries and vendor hosts.
//!
//! This is a small private reader of the shared catalogue (only the keys probe uses; all other
//! keys are ignored), so probe does not wait on the full catalogue model in airlock-policy.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ProbeError;

/// The shared agent catalogue, embedded at build time.
pub const AGENTS_TOML: &str = include_str!("../../../rules/agents.toml");

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    agent: Vec<AgentEntry>,
}

#[derive(Debug, Clone, Deserialize)]
struct AgentEntry {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    binaries: Vec<String>,
    #[serde(default)]
    vendor_hosts: Vec<String>,
    #[serde(default)]
    telemetry_env_off: BTreeMap<String, String>,
    #[serde(default)]
    probe: Option<ProbeEntry>,
}

#[derive(Debug, Clone, Deserialize)]
struct ProbeEntry {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// How to probe one known agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentProfile {
    pub id: String,
    pub name: String,
    pub binaries: Vec<String>,
    /// The agent's own API hosts (the `{vendor}` base-URL hosts).
    pub vendor_hosts: Vec<String>,
    /// Arguments for one non-interactive turn; `{prompt}` is replaced by the prompt.
    pub args: Vec<String>,
    /// Environment; `{base_url}` is replaced by the run's base URL.
    pub env: BTreeMap<String, String>,
    /// Settings the vendor documents to switch telemetry off (not applied by default: probe
    /// wants to see what the agent does out of the box).
    pub telemetry_env_off: BTreeMap<String, String>,
}

/// The agents that have an `[agent.probe]` table.
#[derive(Debug, Clone)]
pub struct Catalogue {
    agents: Vec<AgentProfile>,
}

impl Catalogue {
    /// The catalogue compiled into this build.
    pub fn embedded() -> Result<Catalogue, ProbeError> {
        Catalogue::parse(AGENTS_TOML)
    }

    pub fn parse(text: &str) -> Result<Catalogue, ProbeError> {
        let f: File = toml::from_str(text).map_err(|e| ProbeError::Catalogue(e.to_string()))?;
        let agents = f
            .agent
            .into_iter()
            .filter_map(|a| {
                let p = a.probe?;
                Some(AgentProfile {
                    name: a.name.unwrap_or_else(|| a.id.clone()),
                    id: a.id,
                    binaries: a.binaries,
                    vendor_hosts: a.vendor_hosts,
                    args: p.args,
                    env: p.env,
                    telemetry_env_off: a.telemetry_env_off,
                })
            })
            .collect();
        Ok(Catalogue { agents })
    }

    pub fn agents(&self) -> &[AgentProfile] {
        &self.agents
    }

    pub fn by_id(&self, id: &str) -> Option<&AgentProfile> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The agent whose binary name matches the last path component of `program`
    /// (`/tmp/x/bin/claude` → Claude Code).
    pub fn by_program(&self, program: &str) -> Option<&AgentProfile> {
        let base = program.rsplit(['/', '\\']).next().unwrap_or(program);
        let base = base.strip_suffix(".exe").unwrap_or(base);
        self.agents
            .iter()
            .find(|a| a.binaries.iter().any(|b| b == base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalogue_knows_claude_code() {
        let c = Catalogue::embedded().unwrap();
        let a = c.by_program("/tmp/x/bin/claude").expect("claude");
        assert_eq!(a.id, "claude-code");
        assert!(a.args.iter().any(|x| x.contains("{prompt}")));
        assert!(a.env.values().any(|v| v.contains("{base_url}")));
        assert!(a.vendor_hosts.iter().any(|h| h == "api.anthropic.com"));
        assert!(c.by_id("codex").is_some());
        assert!(c.by_program("definitely-not-an-agent").is_none());
    }
}
