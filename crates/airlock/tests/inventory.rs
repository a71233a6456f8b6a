//! `airlock inventory` as a process: fake machines in temp dirs, real binary, exit codes.

use std::os::unix::fs::symlink;
use std::path::Path;

use assert_cmd::Command;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn pkg(name: &str, version: &str) -> String {
    format!(r#"{{"name": "{name}", "version": "{version}"}}"#)
}

/// A machine with a Claude Code of the given version (npm, system-wide, launcher on PATH), a
/// Qwen Code under nvm, and a Claude Code config routed through Airlock.
fn machine(claude_version: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "/etc/machine-id", "fedcba9876543210fedcba9876543210\n");
    write(r, "/etc/hostname", "build-7\n");
    let cc = "/usr/local/lib/node_modules/@anthropic-ai/claude-code";
    write(
        r,
        &format!("{cc}/package.json"),
        &pkg("@anthropic-ai/claude-code", claude_version),
    );
    write(r, &format!("{cc}/cli.js"), "");
    std::fs::create_dir_all(r.join("usr/local/bin")).unwrap();
    symlink(
        "../lib/node_modules/@anthropic-ai/claude-code/cli.js",
        r.join("usr/local/bin/claude"),
    )
    .unwrap();
    write(
        r,
        "/home/alice/.nvm/versions/node/v20.0.0/lib/node_modules/@qwen-code/qwen-code/package.json",
        &pkg("@qwen-code/qwen-code", "0.24.4"),
    );
    write(
        r,
        "/home/alice/.claude/settings.json",
        r#"{"env": {"ANTHROPIC_BASE_URL": "https://airlock.corp.example"}}"#,
    );
    t
}

fn inventory(root: &Path) -> Command {
    let mut c = Command::cargo_bin("airlock").unwrap();
    c.env_remove("AIRLOCK_CONFIG")
        .env("HOME", "/home/alice")
        .args(["inventory", "--root"])
        .arg(root)
        .args([
            "--path",
            "/usr/local/bin:/usr/bin",
            "--airlock-url",
            "https://airlock.corp.example",
        ]);
    c
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap()
}

#[test]
fn json_report_and_exit_1_for_an_advisory_version() {
    let m = machine("2.1.150");
    let out = inventory(m.path())
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out.stdout);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["machine_id"], "fedcba9876543210fedcba9876543210");
    assert_eq!(v["hostname"], "build-7");
    assert_eq!(v["user"], "alice");
    assert!(v["scanned_at"].as_str().unwrap().ends_with('Z'));
    let got: Vec<(String, String, String, String, bool)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["tool"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
                f["location"].as_str().unwrap().to_string(),
                f["routing"]["via"].as_str().unwrap().to_string(),
                f["verdict"]["allow"].as_bool().unwrap(),
            )
        })
        .collect();
    let row = |t: &str, k: &str, l: &str, via: &str, allow: bool| {
        (
            t.to_string(),
            k.to_string(),
            l.to_string(),
            via.to_string(),
            allow,
        )
    };
    assert_eq!(
        got,
        [
            row(
                "claude-code",
                "npm",
                "/usr/local/lib/node_modules/@anthropic-ai/claude-code",
                "airlock",
                false
            ),
            row(
                "claude-code",
                "binary",
                "/usr/local/bin/claude",
                "airlock",
                false
            ),
            row(
                "claude-code",
                "config",
                "/home/alice/.claude",
                "airlock",
                true
            ),
            row(
                "qwen-code",
                "npm",
                "/home/alice/.nvm/versions/node/v20.0.0/lib/node_modules/@qwen-code/qwen-code",
                "direct",
                true
            ),
        ]
    );
    let first = &v["findings"][0];
    assert_eq!(first["version"], "2.1.150");
    assert_eq!(first["advisories"][0], "AIRLOCK-2026-0001");
    assert_eq!(first["verdict"]["rule"], "AIRLOCK-2026-0001");
    assert_eq!(v["findings"][1]["version"], "2.1.150");
    assert_eq!(v["summary"]["denied"], 2);
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
}

#[test]
fn fixed_version_is_compliant() {
    let m = machine("2.1.332");
    let out = inventory(m.path()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Inventory of build-7"), "{text}");
    assert!(text.contains("TOOL"), "{text}");
    assert!(
        text.contains("/usr/local/lib/node_modules/@anthropic-ai/claude-code [npm]"),
        "{text}"
    );
    assert!(
        text.contains("4 finding(s), 0 denied, 0 error(s)"),
        "{text}"
    );
}

#[test]
fn company_policy_bans_qwen_and_remediate_prints_commands() {
    let m = machine("2.1.332");
    let cfg = m.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        "[[policy.rule]]\nid = \"no-qwen\"\ntools = [\"qwen-code\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let out = inventory(m.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("DENIED (no-qwen)"), "{text}");
    assert!(
        text.contains("denied: Qwen Code 0.24.4 is blocked by company policy."),
        "{text}"
    );

    let out = inventory(m.path())
        .arg("--config")
        .arg(&cfg)
        .arg("--remediate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.starts_with("#!/bin/sh\n"), "{script}");
    assert!(
        script.contains("\nnpm uninstall -g --prefix /home/alice/.nvm/versions/node/v20.0.0 @qwen-code/qwen-code\n"),
        "{script}"
    );
    assert!(!script.contains("claude-code"), "{script}");

    // jsonl: one line per finding, each with the machine fields.
    let out = inventory(m.path())
        .arg("--config")
        .arg(&cfg)
        .args(["--format", "jsonl"])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines.iter().all(
            |l| l["machine_id"] == "fedcba9876543210fedcba9876543210" && l["type"] == "finding"
        )
    );
    assert_eq!(lines[3]["verdict"]["rule"], "no-qwen");
    assert_eq!(lines[3]["user"], "alice");
}

#[test]
fn usage_and_config_errors_exit_2() {
    let m = machine("2.1.332");
    let cfg = m.path().join("bad.toml");
    std::fs::write(&cfg, "[policy]\nunknwon_tools = \"deny\"\n").unwrap();
    let out = inventory(m.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());

    let out = inventory(m.path()).arg("--run-version").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--run-version"));

    let out = inventory(&m.path().join("missing")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = inventory(m.path())
        .args(["--airlock-url", "http://bad host"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unreadable_settings_file_is_an_error_exit_2() {
    let m = machine("2.1.332");
    write(m.path(), "/home/alice/.qwen/settings.json", "{ broken");
    let out = inventory(m.path())
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out.stdout);
    assert_eq!(v["errors"][0]["path"], "/home/alice/.qwen/settings.json");
    let qwen_cfg = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["tool"] == "qwen-code" && f["kind"] == "config")
        .unwrap();
    assert_eq!(qwen_cfg["routing"]["via"], "unknown");
}

/// With the real root, `--run-version` runs a found tool's `--version` (here a shell script
/// standing in for it, in a temp dir given as --path and --home).
#[test]
fn run_version_on_the_system_root() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tool = bin.join("opencode");
    std::fs::write(
        &tool,
        "#!/bin/sh\n[ \"$1\" = --version ] && echo 'opencode 1.18.33' && exit 0\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |extra: &[&str]| {
        Command::cargo_bin("airlock")
            .unwrap()
            .env_remove("AIRLOCK_CONFIG")
            .args([
                "inventory",
                "--root",
                "/",
                "--no-processes",
                "--format",
                "json",
                "--path",
            ])
            .arg(&bin)
            .arg("--home")
            .arg(&home)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--run-version"]);
    let v = json(&out.stdout);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["tool"] == "opencode" && f["kind"] == "binary")
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(f["version"], "1.18.33");
    assert_eq!(f["version_source"], "executed");
    assert_eq!(f["kind"], "binary");
    // Without the flag nothing is run and the version is unknown.
    let v = json(&run(&[]).stdout);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["tool"] == "opencode" && f["kind"] == "binary")
        .cloned()
        .unwrap();
    assert_eq!(f["version"], serde_json::Value::Null);
}
