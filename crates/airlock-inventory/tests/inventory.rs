//! Inventory of fake machines: real files, directories and symbolic links in temp dirs.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use airlock_inventory::{AirlockAddrs, Kind, Report, ScanOptions, Via, scan};
use airlock_policy::{Catalogue, Config, Policy};

const NOW: &str = "2026-11-25T12:00:00Z";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn mkdir(root: &Path, rel: &str) {
    std::fs::create_dir_all(root.join(rel.trim_start_matches('/'))).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

fn pkg(name: &str, version: &str) -> String {
    format!(r#"{{"name": "{name}", "version": "{version}", "bin": {{"x": "cli.js"}}}}"#)
}

/// A workstation with two users and one of everything.
fn machine() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    write(r, "/etc/hostname", "ws-042\n");
    // System npm install of a Claude Code covered by the advisory, with its launcher on PATH.
    let cc = "/usr/lib/node_modules/@anthropic-ai/claude-code";
    write(
        r,
        &format!("{cc}/package.json"),
        &pkg("@anthropic-ai/claude-code", "2.1.150"),
    );
    write(r, &format!("{cc}/cli.js"), "#!/usr/bin/env node\n");
    link(r, "/usr/bin/claude", &format!("{cc}/cli.js"));
    // /bin -> usr/bin (merged /usr): the launcher must be reported once.
    link(r, "/bin", "usr/bin");
    // alice: nvm, volta, pnpm, a native Claude Code, extensions and configs.
    let a = "/home/alice";
    write(
        r,
        &format!(
            "{a}/.nvm/versions/node/v22.1.0/lib/node_modules/@qwen-code/qwen-code/package.json"
        ),
        &pkg("@qwen-code/qwen-code", "0.24.4"),
    );
    write(
        r,
        &format!(
            "{a}/.volta/tools/image/packages/@openai/codex/lib/node_modules/@openai/codex/package.json"
        ),
        &pkg("@openai/codex", "0.169.0"),
    );
    write(
        r,
        &format!(
            "{a}/.local/share/pnpm/global/5/.pnpm/@google+gemini-cli@0.61.0/node_modules/@google/gemini-cli/package.json"
        ),
        &pkg("@google/gemini-cli", "0.61.0"),
    );
    link(
        r,
        &format!("{a}/.local/share/pnpm/global/5/node_modules/@google/gemini-cli"),
        "../../.pnpm/@google+gemini-cli@0.61.0/node_modules/@google/gemini-cli",
    );
    write(
        r,
        &format!("{a}/.local/share/claude/versions/2.1.332"),
        "ELF",
    );
    link(
        r,
        &format!("{a}/.local/bin/claude"),
        &format!("{a}/.local/share/claude/versions/2.1.332"),
    );
    mkdir(
        r,
        &format!("{a}/.vscode/extensions/anthropic.claude-code-2.1.150-linux-x64"),
    );
    mkdir(r, &format!("{a}/.vscode/extensions/github.copilot-1.0.0"));
    mkdir(
        r,
        &format!("{a}/.vscode/extensions/github.copilot-chat-0.30.1"),
    );
    write(
        r,
        &format!("{a}/.vscode/extensions/.obsolete"),
        r#"{"github.copilot-1.0.0": true}"#,
    );
    write(
        r,
        &format!("{a}/.cursor/extensions/openai.chatgpt-0.5.1/package.json"),
        r#"{"name": "chatgpt", "publisher": "openai", "version": "0.5.1"}"#,
    );
    write(
        r,
        &format!("{a}/.claude/settings.json"),
        r#"{"env": {"ANTHROPIC_BASE_URL": "http://localhost:8787", "DISABLE_TELEMETRY": "1"}}"#,
    );
    write(
        r,
        &format!("{a}/.codex/config.toml"),
        "model_provider = \"corp\"\n[model_providers.corp]\nbase_url = \"https://llm.example.net/v1?key=abc\"\n",
    );
    // ~/.cursor holds Cursor's extensions; only cli-config.json shows the Cursor Agent CLI.
    write(r, "/home/bob/.cursor/cli-config.json", "{}");
    write(
        r,
        &format!("{a}/.qwen/settings.json"),
        r#"{"usageStatisticsEnabled": false}"#,
    );
    write(
        r,
        &format!("{a}/.gemini/settings.json"),
        "{\n  // corporate proxy\n  \"proxy\": \"http://alice:hunter2@proxy.corp:3128\",\n}\n",
    );
    // bob: an old native Claude Code that talks to Anthropic directly.
    let b = "/home/bob";
    write(
        r,
        &format!("{b}/.local/share/claude/versions/2.1.150"),
        "ELF",
    );
    write(
        r,
        &format!("{b}/.claude/settings.json"),
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://api.anthropic.com"}}"#,
    );
    t
}

/// A fake /proc: a native claude (with a prompt on its command line), a node-run claude with
/// a base URL and an API key in its environment, and an unrelated shell.
fn fake_proc() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    write(p, "100/cmdline", "claude\0-p\0secret prompt text\0");
    link(
        p,
        "100/exe",
        "/home/alice/.local/share/claude/versions/2.1.332",
    );
    write(
        p,
        "200/cmdline",
        "node\0/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js\0",
    );
    link(p, "200/exe", "/usr/bin/node");
    write(
        p,
        "200/environ",
        "ANTHROPIC_BASE_URL=http://127.0.0.1:8787\0ANTHROPIC_API_KEY=sk-ant-api03-secretsecret\0",
    );
    write(p, "300/cmdline", "bash\0");
    link(p, "300/exe", "/usr/bin/bash");
    write(p, "self/cmdline", "x\0");
    t
}

fn opts(root: &Path, homes: &[&str]) -> ScanOptions {
    ScanOptions {
        root: root.to_path_buf(),
        homes: homes.iter().map(PathBuf::from).collect(),
        path_dirs: ["/usr/bin", "/bin", "/home/alice/.local/bin"]
            .iter()
            .map(PathBuf::from)
            .collect(),
        airlock: AirlockAddrs::parse(&["127.0.0.1:8787".to_string()]).unwrap(),
        ..ScanOptions::default()
    }
}

fn default_policy() -> Policy {
    Policy::from_config(&Config::embedded_default()).unwrap()
}

fn company_policy() -> Policy {
    let cfg = Config::from_toml_str(
        r#"
[policy]
approved_alternatives = ["Claude Code"]

[[policy.rule]]
id = "ban-qwen"
tools = ["qwen-code"]
action = "deny"
reason = "it sends code to an unapproved vendor"
"#,
        "airlock.toml",
    )
    .unwrap();
    Policy::from_config(&cfg).unwrap()
}

/// (tool, kind, location, version, via, allowed) per finding.
fn rows(r: &Report) -> Vec<(String, Kind, String, Option<String>, Via, bool)> {
    r.findings
        .iter()
        .map(|f| {
            (
                f.tool.clone(),
                f.kind,
                f.location.clone(),
                f.version.clone(),
                f.routing.via,
                f.verdict.allow,
            )
        })
        .collect()
}

fn row(
    tool: &str,
    kind: Kind,
    loc: &str,
    version: Option<&str>,
    via: Via,
    allow: bool,
) -> (String, Kind, String, Option<String>, Via, bool) {
    (
        tool.into(),
        kind,
        loc.into(),
        version.map(Into::into),
        via,
        allow,
    )
}

#[test]
fn one_user_exact_inventory() {
    let m = machine();
    let p = fake_proc();
    let mut o = opts(m.path(), &["/home/alice"]);
    o.proc_dir = Some(p.path().to_path_buf());
    let r = scan(&o, Catalogue::embedded(), &default_policy(), NOW).unwrap();
    use Kind::*;
    use Via::*;
    let a = "/home/alice";
    assert_eq!(
        rows(&r),
        vec![
            row(
                "claude-code",
                Npm,
                "/usr/lib/node_modules/@anthropic-ai/claude-code",
                Some("2.1.150"),
                Airlock,
                false
            ),
            row(
                "claude-code",
                Binary,
                "/usr/bin/claude",
                Some("2.1.150"),
                Airlock,
                false
            ),
            row(
                "claude-code",
                Native,
                &format!("{a}/.local/bin/claude"),
                Some("2.1.332"),
                Airlock,
                true
            ),
            row(
                "claude-code",
                Native,
                &format!("{a}/.local/share/claude/versions/2.1.332"),
                Some("2.1.332"),
                Airlock,
                true
            ),
            row(
                "claude-code",
                Extension,
                &format!("{a}/.vscode/extensions/anthropic.claude-code-2.1.150-linux-x64"),
                Some("2.1.150"),
                Airlock,
                false
            ),
            row(
                "claude-code",
                Config,
                &format!("{a}/.claude"),
                None,
                Airlock,
                true
            ),
            row(
                "claude-code",
                Process,
                "/home/alice/.local/share/claude/versions/2.1.332",
                Some("2.1.332"),
                Airlock,
                true
            ),
            row(
                "claude-code",
                Process,
                "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
                Some("2.1.150"),
                Airlock,
                false
            ),
            row(
                "codex",
                Npm,
                &format!(
                    "{a}/.volta/tools/image/packages/@openai/codex/lib/node_modules/@openai/codex"
                ),
                Some("0.169.0"),
                Other,
                true
            ),
            row(
                "codex",
                Extension,
                &format!("{a}/.cursor/extensions/openai.chatgpt-0.5.1"),
                Some("0.5.1"),
                Other,
                true
            ),
            row("codex", Config, &format!("{a}/.codex"), None, Other, true),
            row(
                "copilot-cli",
                Extension,
                &format!("{a}/.vscode/extensions/github.copilot-chat-0.30.1"),
                Some("0.30.1"),
                Direct,
                true
            ),
            row(
                "gemini-cli",
                Npm,
                &format!("{a}/.local/share/pnpm/global/5/node_modules/@google/gemini-cli"),
                Some("0.61.0"),
                Other,
                true
            ),
            row(
                "gemini-cli",
                Config,
                &format!("{a}/.gemini"),
                None,
                Other,
                true
            ),
            row(
                "qwen-code",
                Npm,
                &format!("{a}/.nvm/versions/node/v22.1.0/lib/node_modules/@qwen-code/qwen-code"),
                Some("0.24.4"),
                Direct,
                true
            ),
            row(
                "qwen-code",
                Config,
                &format!("{a}/.qwen"),
                None,
                Direct,
                true
            ),
        ]
    );
    assert_eq!(r.machine_id, "0123456789abcdef0123456789abcdef");
    assert_eq!(r.hostname, "ws-042");
    assert_eq!(r.user, "alice");
    assert_eq!(r.scanned_at, NOW);
    assert_eq!(r.summary.denied, 4);
    assert!(r.errors.is_empty(), "{:?}", r.errors);

    // The advisory: ids on every covered finding, the message names the fixed version.
    let npm = &r.findings[0];
    assert_eq!(npm.advisories, ["AIRLOCK-2026-0001"]);
    assert_eq!(npm.verdict.rule, "AIRLOCK-2026-0001");
    assert!(
        npm.verdict.message.contains("Update to 2.1.198"),
        "{}",
        npm.verdict.message
    );
    assert_eq!(
        npm.remediation,
        [
            "npm install -g --prefix /usr @anthropic-ai/claude-code@2.1.198",
            "# or: npm uninstall -g --prefix /usr @anthropic-ai/claude-code",
        ]
    );
    let ext = &r.findings[4];
    assert_eq!(ext.manager.as_deref(), Some("vscode"));
    assert_eq!(
        ext.remediation,
        [
            "code --install-extension anthropic.claude-code@2.1.198",
            "# or: code --uninstall-extension anthropic.claude-code",
        ]
    );
    assert!(r.findings[2].advisories.is_empty());

    // Routing details: redacted, with where they were read.
    let claude = &r.findings[5].routing;
    assert_eq!(claude.base_url.as_deref(), Some("http://localhost:8787"));
    assert_eq!(claude.telemetry.as_deref(), Some("off"));
    assert_eq!(
        claude.source.as_deref(),
        Some("/home/alice/.claude/settings.json")
    );
    let codex = &r.findings[10].routing;
    assert_eq!(
        codex.base_url.as_deref(),
        Some("https://llm.example.net:443/v1")
    );
    let gemini = &r.findings[13].routing;
    assert_eq!(gemini.proxy.as_deref(), Some("http://proxy.corp:3128"));
    assert_eq!(r.findings[15].routing.telemetry.as_deref(), Some("off"));
    // The node-run process routes by its environment.
    let proc_routing = &r.findings[7].routing;
    assert_eq!(
        proc_routing.source.as_deref(),
        Some("environment of pid 200")
    );
    assert_eq!(r.findings[7].pid, Some(200));

    // Nothing secret reaches the report.
    let json = serde_json::to_string(&r).unwrap();
    for secret in [
        "secret prompt",
        "sk-ant-api03-secretsecret",
        "hunter2",
        "key=abc",
    ] {
        assert!(!json.contains(secret), "{secret} leaked");
    }
}

#[test]
fn company_policy_bans_qwen_and_prints_removal() {
    let m = machine();
    let o = opts(m.path(), &["/home/alice"]);
    let r = scan(&o, Catalogue::embedded(), &company_policy(), NOW).unwrap();
    let qwen: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.tool == "qwen-code")
        .collect();
    assert_eq!(qwen.len(), 2);
    for f in &qwen {
        assert!(!f.verdict.allow);
        assert_eq!(f.verdict.rule, "ban-qwen");
        let who = match &f.version {
            Some(v) => format!("Qwen Code {v}"),
            None => "Qwen Code".to_string(),
        };
        assert_eq!(
            f.verdict.message,
            format!(
                "{who} is blocked by company policy: it sends code to an unapproved vendor. Please use Claude Code instead."
            )
        );
    }
    assert_eq!(
        qwen[0].remediation,
        ["npm uninstall -g --prefix /home/alice/.nvm/versions/node/v22.1.0 @qwen-code/qwen-code"]
    );
    assert_eq!(qwen[1].remediation[1], "rm -rf /home/alice/.qwen");
    // No processes without a proc dir when the root is not /.
    assert!(r.findings.iter().all(|f| f.kind != Kind::Process));
    // Other tools are untouched by the rule.
    assert!(
        r.findings
            .iter()
            .filter(|f| f.tool == "codex")
            .all(|f| f.verdict.allow)
    );
    let script = airlock_inventory::render::script(&r);
    assert!(script.contains(
        "npm uninstall -g --prefix /home/alice/.nvm/versions/node/v22.1.0 @qwen-code/qwen-code\n"
    ));
    assert!(script.starts_with("#!/bin/sh\n"));
}

#[test]
fn all_users_and_disagreeing_routing() {
    let m = machine();
    let mut o = opts(m.path(), &[]);
    o.all_users = true;
    let r = scan(&o, Catalogue::embedded(), &default_policy(), NOW).unwrap();
    let bob: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.user.as_deref() == Some("bob"))
        .map(|f| (f.kind, f.location.as_str(), f.routing.via, f.verdict.allow))
        .collect();
    assert_eq!(
        bob,
        [
            (
                Kind::Native,
                "/home/bob/.local/share/claude/versions/2.1.150",
                Via::Direct,
                false
            ),
            (Kind::Config, "/home/bob/.claude", Via::Direct, true),
            (Kind::Config, "/home/bob/.cursor", Via::Direct, true),
        ]
    );
    let bob_native = r
        .findings
        .iter()
        .find(|f| f.location == "/home/bob/.local/share/claude/versions/2.1.150")
        .unwrap();
    assert_eq!(
        bob_native.remediation,
        [
            "# update Claude Code to 2.1.198 or later with its own installer",
            "# or: rm -f /home/bob/.local/share/claude/versions/2.1.150",
        ]
    );
    // The system-wide install: alice goes through Airlock, bob does not.
    let sys = r
        .findings
        .iter()
        .find(|f| f.kind == Kind::Npm && f.tool == "claude-code")
        .unwrap();
    assert_eq!(sys.routing.via, Via::Unknown);
    assert_eq!(sys.user, None);
    assert_eq!(r.user, "unknown");
}

#[test]
fn clean_machine_is_compliant() {
    let t = tempfile::tempdir().unwrap();
    let r0 = t.path();
    write(
        r0,
        "/home/carol/.local/share/claude/versions/2.1.332",
        "ELF",
    );
    write(
        r0,
        "/home/carol/.claude/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://airlock.corp.example/"}}"#,
    );
    let mut o = opts(r0, &["/home/carol"]);
    o.airlock = AirlockAddrs::parse(&["https://airlock.corp.example".to_string()]).unwrap();
    let r = scan(&o, Catalogue::embedded(), &default_policy(), NOW).unwrap();
    assert!(!r.has_violations());
    assert_eq!(r.findings.len(), 2);
    assert!(r.findings.iter().all(|f| f.routing.via == Via::Airlock));
    // No /etc/machine-id or hostname: reported as unknown, not invented.
    assert_eq!(r.hostname, "unknown");
    assert_eq!(r.machine_id, "unknown");
}

#[test]
fn links_out_of_the_root_are_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    write(
        outside.path(),
        "/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:8787"}}"#,
    );
    let t = tempfile::tempdir().unwrap();
    let r0 = t.path();
    mkdir(r0, "/home/dave/.claude");
    // An absolute link to the host file: taken relative to the root, where it does not exist.
    link(
        r0,
        "/home/dave/.claude/settings.json",
        outside.path().join("settings.json").to_str().unwrap(),
    );
    // A relative link climbing past the root.
    link(
        r0,
        "/home/dave/.local/bin/claude",
        "../../../../../../../../../../bin/sh",
    );
    let r = scan(
        &opts(r0, &["/home/dave"]),
        Catalogue::embedded(),
        &default_policy(),
        NOW,
    )
    .unwrap();
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    assert_eq!(r.findings[0].kind, Kind::Config);
    assert_eq!(r.findings[0].routing.via, Via::Direct);
}

#[test]
fn hostile_files_are_errors_not_crashes() {
    let t = tempfile::tempdir().unwrap();
    let r0 = t.path();
    write(
        r0,
        "/usr/local/lib/node_modules/@google/gemini-cli/package.json",
        &format!(
            r#"{{"name": "@google/gemini-cli", "version": "1.0.0", "pad": "{}"}}"#,
            "x".repeat(1_100_000)
        ),
    );
    write(
        r0,
        "/usr/local/lib/node_modules/opencode-ai/package.json",
        "{\"name\": \"opencode-ai\", \"version\": \"1.0.0\\u001b[2J\"}",
    );
    write(r0, "/home/erin/.qwen/settings.json", "{ not json");
    let r = scan(
        &opts(r0, &["/home/erin"]),
        Catalogue::embedded(),
        &default_policy(),
        NOW,
    )
    .unwrap();
    let got: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.tool.as_str(), f.kind, f.version.as_deref(), f.routing.via))
        .collect();
    assert_eq!(
        got,
        [
            ("gemini-cli", Kind::Npm, None, Via::Direct),
            ("opencode", Kind::Npm, None, Via::Direct),
            ("qwen-code", Kind::Config, None, Via::Unknown),
        ]
    );
    let paths: Vec<_> = r.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/home/erin/.qwen/settings.json",
            "/usr/local/lib/node_modules/@google/gemini-cli/package.json",
        ]
    );
    assert!(
        r.errors[0].message.starts_with("invalid JSON"),
        "{}",
        r.errors[0].message
    );
}

#[test]
fn run_version_is_refused_outside_the_system_root() {
    let m = machine();
    let mut o = opts(m.path(), &["/home/alice"]);
    o.run_version = true;
    let e = scan(&o, Catalogue::embedded(), &default_policy(), NOW).unwrap_err();
    assert!(e.to_string().contains("--run-version"), "{e}");
}
