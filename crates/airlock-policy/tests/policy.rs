//! Policy decisions and configuration loading.

use airlock_policy::{Config, Identity, Policy, Subject};

fn ident(agent: &str, name: &str, version: Option<&str>) -> Identity {
    Identity {
        agent: (agent != "unknown").then(|| agent.to_string()),
        name: (agent != "unknown").then(|| name.to_string()),
        version: version.map(str::to_string),
        signal: "user-agent".into(),
    }
}

fn decide(
    p: &Policy,
    id: &Identity,
    model: Option<&str>,
    team: Option<&str>,
) -> airlock_policy::Decision {
    p.decide(&Subject {
        user: Some("alice"),
        team,
        identity: id,
        model,
    })
}

#[test]
fn default_policy_denies_the_fingerprinting_claude_code_releases() {
    let p = Policy::embedded_default();
    let bad = ident("claude-code", "Claude Code", Some("2.1.150"));
    let d = decide(&p, &bad, Some("claude-opus-5-5"), None);
    assert!(!d.allow);
    assert_eq!(d.rule, "AIRLOCK-2026-0001");
    assert_eq!(
        d.message,
        "Claude Code 2.1.150 is blocked by company policy: hidden environment fingerprinting in versions 2.1.91–2.1.197 (AIRLOCK-2026-0001). Update to 2.1.198 or later."
    );
    for ok in ["2.1.90", "2.1.198", "2.1.332"] {
        assert!(
            decide(
                &p,
                &ident("claude-code", "Claude Code", Some(ok)),
                None,
                None
            )
            .allow,
            "{ok}"
        );
    }
    for edge in ["2.1.91", "2.1.197"] {
        assert!(
            !decide(
                &p,
                &ident("claude-code", "Claude Code", Some(edge)),
                None,
                None
            )
            .allow,
            "{edge}"
        );
    }
    // Another tool at the same version number is not affected.
    assert!(
        decide(
            &p,
            &ident("codex", "Codex CLI", Some("2.1.150")),
            None,
            None
        )
        .allow
    );
    // Unknown tools are allowed by default.
    assert!(decide(&p, &ident("unknown", "", None), None, None).allow);
}

#[test]
fn company_rules_on_tools_versions_models_teams() {
    let cfg = Config::from_toml_str(
        r#"
[policy]
unknown_tools = "deny"
approved_alternatives = ["Codex CLI"]

[[policy.rule]]
id = "payments-may-use-old-claude"
tools = ["claude-code"]
versions = ">=2.1.91, <=2.1.197"
teams = ["payments"]
action = "allow"

[[policy.rule]]
id = "ban-qwen"
tools = ["qwen-code"]
action = "deny"
reason = "sends telemetry to unapproved hosts"
alternative = "Claude Code 2.1.198 or later"

[[policy.rule]]
id = "no-preview-models"
models = ["*-preview", "gpt-6*"]
action = "deny"
reason = "preview models are not covered by our data agreement"
"#,
        "airlock.toml",
    )
    .expect("valid config");
    let p = Policy::from_config(&cfg).expect("policy");

    let old = ident("claude-code", "Claude Code", Some("2.1.150"));
    assert!(
        decide(&p, &old, None, Some("payments")).allow,
        "relaxed for payments"
    );
    let d = decide(&p, &old, None, Some("web"));
    assert!(!d.allow);
    assert!(
        d.message
            .ends_with("Update to 2.1.198 or later, or use Codex CLI."),
        "{}",
        d.message
    );

    let d = decide(
        &p,
        &ident("qwen-code", "Qwen Code", Some("0.24.4")),
        Some("qwen3-coder-plus"),
        None,
    );
    assert_eq!(d.rule, "ban-qwen");
    assert_eq!(
        d.message,
        "Qwen Code 0.24.4 is blocked by company policy: sends telemetry to unapproved hosts. Please use Claude Code 2.1.198 or later instead."
    );

    let d = decide(
        &p,
        &ident("codex", "Codex CLI", Some("0.169.0")),
        Some("gpt-6.1-sol"),
        None,
    );
    assert_eq!(d.rule, "no-preview-models");
    assert!(
        d.message.starts_with("Model gpt-6.1-sol is blocked"),
        "{}",
        d.message
    );
    assert!(
        decide(
            &p,
            &ident("codex", "Codex CLI", Some("0.169.0")),
            Some("gpt-5"),
            None
        )
        .allow
    );

    let d = decide(&p, &ident("unknown", "", None), None, None);
    assert_eq!(d.rule, "unknown_tools");
    assert!(!d.allow);
    assert!(
        d.message.contains("Please use Codex CLI instead."),
        "{}",
        d.message
    );
}

#[test]
fn config_errors_name_key_and_line() {
    let err = Config::from_toml_str(
        "[server]\nlisten = \"127.0.0.1:8787\"\n\n[uptream]\nx = 1\n",
        "airlock.toml",
    )
    .expect_err("typo")
    .to_string();
    assert_eq!(
        err,
        "airlock.toml:4: unknown key \"uptream\" (did you mean \"upstream\"?)"
    );

    let err = Config::from_toml_str(
        r#"
[server]
listen = "localhost"

[[upstream]]
name = "a"
api = "openai"
base_url = "http://127.0.0.1:1/v1"

[[upstream]]
name = "b"
api = "openai"
base_url = "ftp://example"

[[policy.rule]]
id = "r"
tools = ["claude-cod"]
versions = "not a range"
action = "deny"
"#,
        "airlock.toml",
    )
    .expect_err("invalid")
    .to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with("airlock.toml:3: server.listen:"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("airlock.toml:13: upstream[1].base_url:"),
        "{err}"
    );
    assert!(
        lines[2].starts_with("airlock.toml:17: policy.rule[0].tools:")
            && lines[2].contains("did you mean \"claude-code\""),
        "{err}"
    );
    assert!(
        lines[3].starts_with("airlock.toml:18: policy.rule[0].versions:"),
        "{err}"
    );
}

#[test]
fn embedded_default_and_layering() {
    let d = Config::embedded_default();
    assert_eq!(d.server.listen, "127.0.0.1:8787");
    assert_eq!(d.server.max_body_bytes, 32 * 1024 * 1024);
    assert_eq!(d.upstreams.len(), 2);
    d.validate().expect("embedded default is valid");

    // A file that only sets [policy] keeps the default upstreams and server.
    let c = Config::from_toml_str("[policy]\nunknown_tools = \"deny\"\n", "a.toml").expect("valid");
    assert_eq!(c.upstreams.len(), 2);
    assert_eq!(c.server.listen, "127.0.0.1:8787");

    let mut c = Config::embedded_default();
    c.apply_cli_upstream("openai=http://127.0.0.1:9999/v1/")
        .expect("ok");
    assert_eq!(
        c.upstream_for(airlock_policy::UpstreamApi::OpenAi, Some("gpt-5"))
            .map(|u| u.base_url.as_str()),
        Some("http://127.0.0.1:9999/v1")
    );
    c.apply_cli_upstream("corp=anthropic:http://127.0.0.1:1")
        .expect("ok");
    assert!(c.apply_cli_upstream("corp2=http://x").is_err());
    assert!(c.apply_cli_upstream("anthropic=ftp://x").is_err());
    assert!(c.apply_cli_upstream("nonsense").is_err());
}

#[test]
fn every_rules_data_file_parses() {
    airlock_policy::Catalogue::from_toml(include_str!("../../../rules/agents.toml"), "agents.toml")
        .expect("agents.toml");
    airlock_policy::Advisories::from_toml(
        include_str!("../../../rules/advisories.toml"),
        "advisories.toml",
    )
    .expect("advisories.toml");
}
