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

/// CRC-32 (IEEE), for the hand-built jar below.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A jar (zip, entries stored) built byte by byte from the zip specification: local headers,
/// central directory, end record. Independent of the zip library the scanner reads it with.
fn stored_jar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let (crc, len, nlen) = (crc32(data), data.len() as u32, name.len() as u16);
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]); // version, flags, stored, time, date
        for v in [crc, len, len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&nlen.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        for v in [crc, len, len] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&nlen.to_le_bytes());
        central.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    let n = entries.len() as u16;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[test]
fn jetbrains_plugins_are_reported_and_judged() {
    let m = machine("2.1.332");
    let r = m.path();
    let plugin = "/home/alice/.local/share/JetBrains/IntelliJIdea2025.2/github-copilot-intellij";
    let xml = "<idea-plugin>\n  <id>com.github.copilot</id>\n  <name>GitHub Copilot</name>\n  \
               <version>1.5.59-243</version>\n</idea-plugin>\n";
    let p = r.join(plugin.trim_start_matches('/')).join("lib");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("github-copilot-intellij-1.5.59-243.jar"),
        stored_jar(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\n"),
            ("META-INF/plugin.xml", xml.as_bytes()),
        ]),
    )
    .unwrap();
    let cfg = m.path().join("airlock.toml");
    std::fs::write(
        &cfg,
        "[[policy.rule]]\nid = \"no-copilot\"\ntools = [\"copilot-cli\"]\naction = \"deny\"\n",
    )
    .unwrap();

    // Allowed by the default policy: exit 0, the plugin in the report with its IDE.
    let out = inventory(r).args(["--format", "json"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out.stdout);
    let found: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["tool"] == "copilot-cli")
        .collect();
    assert_eq!(found.len(), 1, "{v}");
    let f = found[0];
    assert_eq!(f["kind"], "extension");
    assert_eq!(f["location"], plugin);
    assert_eq!(f["version"], "1.5.59-243");
    assert_eq!(f["version_source"], "plugin.xml");
    assert_eq!(f["package"], "com.github.copilot");
    assert_eq!(f["manager"], "jetbrains");
    assert_eq!(f["ide"]["product"], "IntelliJIdea");
    assert_eq!(f["ide"]["version"], "2025.2");
    assert_eq!(f["user"], "alice");
    assert_eq!(f["verdict"]["allow"], true);
    assert_eq!(v["summary"]["findings"], 5);

    // Banned by the company: exit 1, and --remediate prints the removal.
    let out = inventory(r).arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("{plugin} [jetbrains IntelliJIdea 2025.2]")),
        "{text}"
    );
    assert!(text.contains("DENIED (no-copilot)"), "{text}");
    let out = inventory(r)
        .arg("--config")
        .arg(&cfg)
        .arg("--remediate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains(&format!(
            "# quit IntelliJIdea 2025.2 first (or remove the plugin in its Settings | Plugins)\nrm -rf {plugin}\n"
        )),
        "{script}"
    );

    // A corrupt jar: the plugin is still reported (by its directory name), version unknown,
    // and the scan is not compliant (exit 2) because the descriptor could not be read.
    std::fs::write(
        p.join("github-copilot-intellij-1.5.59-243.jar"),
        b"PK\x03\x04 truncated",
    )
    .unwrap();
    let out = inventory(r).args(["--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out.stdout);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["tool"] == "copilot-cli")
        .unwrap();
    assert_eq!(f["version"], serde_json::Value::Null);
    assert_eq!(f["package"], "github-copilot-intellij");
    assert_eq!(
        v["errors"][0]["path"],
        format!("{plugin}/lib/github-copilot-intellij-1.5.59-243.jar")
    );
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("JetBrains plugin descriptor not read: not a valid jar"),
        "{v}"
    );
}
