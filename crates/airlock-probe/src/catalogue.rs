//! The agents probe knows how to drive: the entries of the shared catalogue
//! (`rules/agents.toml`, read by `airlock_policy::Catalogue` as the gateway and inventory read
//! it, so a malformed entry is the same error everywhere) that have an `[agent.probe]` table:
//! how to point the agent at a base URL and make it do one non-interactive turn, its binaries
//! and vendor hosts.

use std::collections::BTreeMap;

use crate::ProbeError;

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
        Ok(Catalogue::from_shared(airlock_policy::Catalogue::embedded()))
    }

    /// A catalogue from the text of an `agents.toml`.
    pub fn parse(text: &str) -> Result<Catalogue, ProbeError> {
        let shared = airlock_policy::Catalogue::from_toml(text, "agents.toml")
            .map_err(|e| ProbeError::Catalogue(e.to_string()))?;
        Ok(Catalogue::from_shared(&shared))
    }

    fn from_shared(shared: &airlock_policy::Catalogue) -> Catalogue {
        let agents = shared
            .agents()
            .iter()
            .filter_map(|a| {
                let p = a.probe.as_ref()?;
                Some(AgentProfile {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    binaries: a.binaries.clone(),
                    vendor_hosts: a.vendor_hosts.clone(),
                    args: p.args.clone(),
                    env: p.env.clone(),
                    telemetry_env_off: a.telemetry_env_off.clone(),
                })
            })
            .collect();
        Catalogue { agents }
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

    /// Probe reads the catalogue as the gateway and inventory do: a misspelt key is an error
    /// naming it, not an entry silently missing its probe arguments.
    #[test]
    fn a_catalogue_entry_is_read_as_everywhere_else() {
        let ok = "schema_version = 1\n[[agent]]\nid = \"x\"\nname = \"X\"\nvendor = \"V\"\n\
                  binaries = [\"x\"]\n[agent.probe]\nargs = [\"-p\", \"{prompt}\"]\n";
        let c = Catalogue::parse(ok).unwrap();
        let a = c.by_program("/usr/bin/x").expect("x");
        assert_eq!((a.name.as_str(), a.args.len()), ("X", 2));
        let typo = ok.replace("args =", "argz =");
        match Catalogue::parse(&typo) {
            Err(ProbeError::Catalogue(m)) => assert!(m.contains("argz"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
