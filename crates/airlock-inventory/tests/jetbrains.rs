//! JetBrains IDE plugins on fake machines: real jars (written with the zip crate) in temp dirs,
//! in the Linux, macOS, Windows and pre-2020.1 layouts.

use std::io::Write;
use std::path::{Path, PathBuf};

use airlock_inventory::{AirlockAddrs, Ide, Kind, Report, ScanOptions, Via, jetbrains, scan};
use airlock_policy::{Catalogue, Config, Policy};

const NOW: &str = "2026-11-25T12:00:00Z";

fn host(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    p
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    std::fs::write(host(root, rel), bytes).unwrap();
}

/// A jar (a zip archive, deflated) with the given entries.
fn jar(root: &Path, rel: &str, entries: &[(&str, &[u8])]) {
    let f = std::fs::File::create(host(root, rel)).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        z.start_file(*name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

fn plugin_xml(id: &str, name: &str, version: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<idea-plugin require-restart="true">
  <id>{id}</id>
  <name>{name}</name>
  <vendor>Someone</vendor>
  <version>{version}</version>
  <description><![CDATA[<p>An <b>AI</b> plugin.</p>]]></description>
  <idea-version since-build="242"/>
  <depends>com.intellij.modules.platform</depends>
</idea-plugin>
"#
    )
    .into_bytes()
}

const CLASS: &[u8] = b"\xCA\xFE\xBA\xBE\x00\x00\x00\x41";

/// alice on Linux, bob on macOS, carol on Windows, dave with a pre-2020.1 IDE.
fn machine() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    // alice, Linux: Claude Code's plugin (its own jar plus a library jar), IdeaVim (not an
    // agent), Copilot whose descriptor is in a jar not named after the directory, and
    // JetBrains' Toolbox directory (not an IDE).
    let ij = "/home/alice/.local/share/JetBrains/IntelliJIdea2024.3";
    jar(
        r,
        &format!(
            "{ij}/claude-code-jetbrains-plugin/lib/claude-code-jetbrains-plugin-0.1.14-beta.jar"
        ),
        &[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
            (
                "META-INF/plugin.xml",
                &plugin_xml(
                    "com.anthropic.code.plugin",
                    "Claude Code [Beta]",
                    "0.1.14-beta",
                ),
            ),
            ("com/anthropic/code/plugin/Main.class", CLASS),
        ],
    );
    jar(
        r,
        &format!("{ij}/claude-code-jetbrains-plugin/lib/kotlin-stdlib-2.1.0.jar"),
        &[("kotlin/Unit.class", CLASS)],
    );
    jar(
        r,
        &format!("{ij}/IdeaVIM/lib/IdeaVIM-2.10.0.jar"),
        &[(
            "META-INF/plugin.xml",
            &plugin_xml("IdeaVIM", "IdeaVim", "2.10.0"),
        )],
    );
    let py = "/home/alice/.local/share/JetBrains/PyCharm2025.1";
    jar(
        r,
        &format!("{py}/github-copilot-intellij/lib/annotations.jar"),
        &[("org/jetbrains/annotations/NotNull.class", CLASS)],
    );
    jar(
        r,
        &format!("{py}/github-copilot-intellij/lib/core.jar"),
        &[(
            "META-INF/plugin.xml",
            &plugin_xml("com.github.copilot", "GitHub Copilot", "1.5.30-242"),
        )],
    );
    std::fs::create_dir_all(host(r, "/home/alice/.local/share/JetBrains/Toolbox/apps/x")).unwrap();
    write(
        r,
        "/home/alice/.claude/settings.json",
        br#"{"env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:8787"}}"#,
    );

    // bob, macOS: Copilot under its usual name, Gemini Code Assist as a single jar, and the
    // Claude Code plugin in a directory with another name (found by its id).
    let gl = "/home/bob/Library/Application Support/JetBrains/GoLand2025.1/plugins";
    jar(
        r,
        &format!("{gl}/github-copilot-intellij/lib/github-copilot-intellij-1.5.31-243.jar"),
        &[(
            "META-INF/plugin.xml",
            &plugin_xml("com.github.copilot", "GitHub Copilot", "1.5.31-243"),
        )],
    );
    jar(
        r,
        &format!("{gl}/gemini-code-assist.jar"),
        &[(
            "META-INF/plugin.xml",
            &plugin_xml(
                "com.google.tools.ij.aiplugin",
                "Gemini Code Assist",
                "1.30.0",
            ),
        )],
    );
    jar(
        r,
        &format!("{gl}/renamed/lib/renamed.jar"),
        &[(
            "META-INF/plugin.xml",
            &plugin_xml(
                "com.anthropic.code.plugin",
                "Claude Code [Beta]",
                "0.1.13-beta",
            ),
        )],
    );
    // A directory named like Copilot's, holding something else: the id decides.
    jar(
        r,
        &format!("{gl}/claude-code-jetbrains-plugin-old/lib/x.jar"),
        &[(
            "META-INF/plugin.xml",
            &plugin_xml("org.example.theme", "A theme", "1.0"),
        )],
    );

    // carol, Windows (home mounted as /home/carol): Android Studio's Gemini plugin.
    jar(
        r,
        "/home/carol/AppData/Roaming/Google/AndroidStudio2024.2/plugins/gemini/lib/aiplugin.jar",
        &[(
            "META-INF/plugin.xml",
            &plugin_xml("com.google.tools.ij.aiplugin", "Gemini", "2024.2.1"),
        )],
    );
    // Not Android Studio: ignored.
    jar(
        r,
        "/home/carol/AppData/Roaming/Google/Chrome2024.1/plugins/x/lib/x.jar",
        &[(
            "META-INF/plugin.xml",
            &plugin_xml("com.google.tools.ij.aiplugin", "Gemini", "1.0.0"),
        )],
    );

    // dave, an IDE from before 2020.1.
    jar(
        r,
        "/home/dave/.IntelliJIdea2019.3/config/plugins/github-copilot-intellij/lib/github-copilot-intellij.jar",
        &[(
            "META-INF/plugin.xml",
            &plugin_xml("com.github.copilot", "GitHub Copilot", "1.0.0"),
        )],
    );
    t
}

fn opts(root: &Path, homes: &[&str]) -> ScanOptions {
    ScanOptions {
        root: root.to_path_buf(),
        homes: homes.iter().map(PathBuf::from).collect(),
        airlock: AirlockAddrs::parse(&["127.0.0.1:8787".to_string()]).unwrap(),
        ..ScanOptions::default()
    }
}

fn default_policy() -> Policy {
    Policy::from_config(&Config::embedded_default()).unwrap()
}

type Row = (
    String,
    Kind,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
);

/// (tool, kind, location, version, package, "product version", allowed) per finding.
fn rows(r: &Report) -> Vec<Row> {
    r.findings
        .iter()
        .map(|f| {
            (
                f.tool.clone(),
                f.kind,
                f.location.clone(),
                f.version.clone(),
                f.package.clone(),
                f.ide
                    .as_ref()
                    .map(|i| format!("{} {}", i.product, i.version)),
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
    package: Option<&str>,
    ide: Option<&str>,
    allow: bool,
) -> Row {
    (
        tool.into(),
        kind,
        loc.into(),
        version.map(Into::into),
        package.map(Into::into),
        ide.map(Into::into),
        allow,
    )
}

#[test]
fn plugins_in_every_layout_exact_inventory() {
    let m = machine();
    let o = opts(
        m.path(),
        &["/home/alice", "/home/bob", "/home/carol", "/home/dave"],
    );
    let r = scan(&o, Catalogue::embedded(), &default_policy(), NOW).unwrap();
    use Kind::*;
    let ij = "/home/alice/.local/share/JetBrains/IntelliJIdea2024.3";
    let py = "/home/alice/.local/share/JetBrains/PyCharm2025.1";
    let gl = "/home/bob/Library/Application Support/JetBrains/GoLand2025.1/plugins";
    assert_eq!(
        rows(&r),
        vec![
            row(
                "claude-code",
                Extension,
                &format!("{ij}/claude-code-jetbrains-plugin"),
                Some("0.1.14-beta"),
                Some("com.anthropic.code.plugin"),
                Some("IntelliJIdea 2024.3"),
                true
            ),
            row(
                "claude-code",
                Extension,
                &format!("{gl}/renamed"),
                Some("0.1.13-beta"),
                Some("com.anthropic.code.plugin"),
                Some("GoLand 2025.1"),
                true
            ),
            row(
                "claude-code",
                Config,
                "/home/alice/.claude",
                None,
                None,
                None,
                true
            ),
            row(
                "copilot-cli",
                Extension,
                "/home/alice/.local/share/JetBrains/PyCharm2025.1/github-copilot-intellij",
                Some("1.5.30-242"),
                Some("com.github.copilot"),
                Some("PyCharm 2025.1"),
                true
            ),
            row(
                "copilot-cli",
                Extension,
                "/home/bob/Library/Application Support/JetBrains/GoLand2025.1/plugins/github-copilot-intellij",
                Some("1.5.31-243"),
                Some("com.github.copilot"),
                Some("GoLand 2025.1"),
                true
            ),
            row(
                "copilot-cli",
                Extension,
                "/home/dave/.IntelliJIdea2019.3/config/plugins/github-copilot-intellij",
                Some("1.0.0"),
                Some("com.github.copilot"),
                Some("IntelliJIdea 2019.3"),
                true
            ),
            row(
                "gemini-cli",
                Extension,
                &format!("{gl}/gemini-code-assist.jar"),
                Some("1.30.0"),
                Some("com.google.tools.ij.aiplugin"),
                Some("GoLand 2025.1"),
                true
            ),
            row(
                "gemini-cli",
                Extension,
                "/home/carol/AppData/Roaming/Google/AndroidStudio2024.2/plugins/gemini",
                Some("2024.2.1"),
                Some("com.google.tools.ij.aiplugin"),
                Some("AndroidStudio 2024.2"),
                true
            ),
        ]
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(!r.has_violations());
    let first = &r.findings[0];
    assert_eq!(first.manager.as_deref(), Some("jetbrains"));
    assert_eq!(first.version_source.as_deref(), Some("plugin.xml"));
    assert_eq!(first.user.as_deref(), Some("alice"));
    assert_eq!(
        first.ide,
        Some(Ide {
            product: "IntelliJIdea".into(),
            version: "2024.3".into()
        })
    );
    // The plugin follows its user's routing for the agent, like an editor extension.
    assert_eq!(first.routing.via, Via::Airlock);
    assert_eq!(r.findings[1].routing.via, Via::Direct);
    // JSON: the IDE is reported; human table names it.
    let json = serde_json::to_value(first).unwrap();
    assert_eq!(json["kind"], "extension");
    assert_eq!(json["ide"]["product"], "IntelliJIdea");
    assert_eq!(json["ide"]["version"], "2024.3");
    let table = airlock_inventory::render::human(&r);
    assert!(
        table.contains("claude-code-jetbrains-plugin [jetbrains IntelliJIdea 2024.3]"),
        "{table}"
    );
    // The py directory is reported once although it has two jars.
    assert_eq!(
        r.findings
            .iter()
            .filter(|f| f.location.starts_with(py))
            .count(),
        1
    );
}

#[test]
fn a_banned_tool_is_denied_with_removal_commands() {
    let m = machine();
    let cfg = Config::from_toml_str(
        r#"
[[policy.rule]]
id = "no-copilot"
tools = ["copilot-cli"]
action = "deny"
reason = "code leaves for an unapproved vendor"
"#,
        "airlock.toml",
    )
    .unwrap();
    let policy = Policy::from_config(&cfg).unwrap();
    let r = scan(
        &opts(m.path(), &["/home/bob"]),
        Catalogue::embedded(),
        &policy,
        NOW,
    )
    .unwrap();
    let denied: Vec<_> = r.findings.iter().filter(|f| !f.verdict.allow).collect();
    assert_eq!(denied.len(), 1, "{:?}", r.findings);
    let f = denied[0];
    assert_eq!(f.tool, "copilot-cli");
    assert_eq!(f.verdict.rule, "no-copilot");
    assert_eq!(
        f.remediation,
        [
            "# quit GoLand 2025.1 first (or remove the plugin in its Settings | Plugins)",
            "rm -rf '/home/bob/Library/Application Support/JetBrains/GoLand2025.1/plugins/github-copilot-intellij'",
        ]
    );
    // A single-jar plugin is one file.
    let cfg = Config::from_toml_str(
        "[[policy.rule]]\nid = \"no-gemini\"\ntools = [\"gemini-cli\"]\naction = \"deny\"\n",
        "airlock.toml",
    )
    .unwrap();
    let r = scan(
        &opts(m.path(), &["/home/bob"]),
        Catalogue::embedded(),
        &Policy::from_config(&cfg).unwrap(),
        NOW,
    )
    .unwrap();
    let g = r.findings.iter().find(|f| f.tool == "gemini-cli").unwrap();
    assert!(!g.verdict.allow);
    assert_eq!(
        g.remediation[1],
        "rm -f '/home/bob/Library/Application Support/JetBrains/GoLand2025.1/plugins/gemini-code-assist.jar'"
    );
}

#[test]
fn a_plugin_version_is_not_judged_as_the_agent_version() {
    // The advisory covers Claude Code 2.1.91–2.1.197 (the CLI). A plugin that happens to carry
    // such a number is a different release line: not denied, no advisory listed.
    let t = tempfile::tempdir().unwrap();
    let r0 = t.path();
    jar(
        r0,
        "/home/erin/.local/share/JetBrains/WebStorm2025.2/claude-code-jetbrains-plugin/lib/claude-code-jetbrains-plugin.jar",
        &[(
            "META-INF/plugin.xml",
            &plugin_xml("com.anthropic.code.plugin", "Claude Code [Beta]", "2.1.150"),
        )],
    );
    let r = scan(
        &opts(r0, &["/home/erin"]),
        Catalogue::embedded(),
        &default_policy(),
        NOW,
    )
    .unwrap();
    assert_eq!(r.findings.len(), 1);
    let f = &r.findings[0];
    assert_eq!(f.version.as_deref(), Some("2.1.150"));
    assert!(f.verdict.allow, "{:?}", f.verdict);
    assert!(f.advisories.is_empty());
}

#[test]
fn corrupt_jars_give_unknown_version_and_an_error() {
    let t = tempfile::tempdir().unwrap();
    let r0 = t.path();
    let ws = "/home/frank/.local/share/JetBrains/WebStorm2024.2";
    // Claude Code's plugin with a jar that is not a zip at all.
    write(
        r0,
        &format!("{ws}/claude-code-jetbrains-plugin/lib/claude-code-jetbrains-plugin.jar"),
        b"PK\x03\x04 this is not really a zip archive",
    );
    // Copilot's plugin whose descriptor is not XML.
    jar(
        r0,
        &format!("{ws}/github-copilot-intellij/lib/github-copilot-intellij.jar"),
        &[(
            "META-INF/plugin.xml",
            b"<idea-plugin><id>com.github.copilot</id>",
        )],
    );
    // A single jar, truncated half-way.
    let mut whole = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut whole));
        z.start_file(
            "META-INF/plugin.xml",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(&plugin_xml("com.github.copilot", "GitHub Copilot", "1.0.0"))
            .unwrap();
        z.finish().unwrap();
    }
    write(
        r0,
        &format!("{ws}/github-copilot-intellij-1.0.0.jar"),
        &whole[..whole.len() / 2],
    );
    // An unrelated plugin with a broken jar: not an agent, not an error.
    write(r0, &format!("{ws}/SomeTheme/lib/SomeTheme.jar"), b"garbage");
    // An agent-named plugin directory whose lib holds no descriptor, in another IDE.
    jar(
        r0,
        "/home/frank/.local/share/JetBrains/RustRover2025.1/claude-code-jetbrains-plugin/lib/dep.jar",
        &[("a/B.class", CLASS)],
    );
    // A directory without lib/ is not a plugin, whatever its name.
    std::fs::create_dir_all(host(
        r0,
        "/home/frank/.local/share/JetBrains/CLion2025.1/github-copilot-intellij/copilot-agent",
    ))
    .unwrap();
    // A descriptor without <id> is known by its <name>.
    jar(
        r0,
        &format!("{ws}/named-only.jar"),
        &[(
            "META-INF/plugin.xml",
            b"<idea-plugin><name>com.github.copilot</name><version>0.9.0</version></idea-plugin>",
        )],
    );

    let r = scan(
        &opts(r0, &["/home/frank"]),
        Catalogue::embedded(),
        &default_policy(),
        NOW,
    )
    .unwrap();
    let got: Vec<_> = r
        .findings
        .iter()
        .map(|f| {
            (
                f.tool.as_str(),
                f.location.rsplit('/').next().unwrap(),
                f.version.as_deref(),
                f.package.as_deref(),
                f.verdict.allow,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "claude-code",
                "claude-code-jetbrains-plugin",
                None,
                Some("claude-code-jetbrains-plugin"),
                true
            ),
            (
                "claude-code",
                "claude-code-jetbrains-plugin",
                None,
                Some("claude-code-jetbrains-plugin"),
                true
            ),
            (
                "copilot-cli",
                "github-copilot-intellij",
                None,
                Some("github-copilot-intellij"),
                true
            ),
            (
                "copilot-cli",
                "github-copilot-intellij-1.0.0.jar",
                None,
                Some("github-copilot-intellij"),
                true
            ),
            (
                "copilot-cli",
                "named-only.jar",
                Some("0.9.0"),
                Some("com.github.copilot"),
                true
            ),
        ]
    );
    assert!(r.findings[0].location.contains("/RustRover2025.1/"));
    assert!(r.findings[1].location.contains("/WebStorm2024.2/"));
    let errors: Vec<_> = r
        .errors
        .iter()
        .map(|e| (e.path.rsplit('/').next().unwrap(), e.message.as_str()))
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(errors[0].0, "claude-code-jetbrains-plugin");
    assert_eq!(
        errors[0].1,
        "JetBrains plugin descriptor not read: no jar with META-INF/plugin.xml; version unknown"
    );
    assert_eq!(errors[1].0, "claude-code-jetbrains-plugin.jar");
    assert!(
        errors[1]
            .1
            .starts_with("JetBrains plugin descriptor not read: not a valid jar")
    );
    assert_eq!(errors[2].0, "github-copilot-intellij-1.0.0.jar");
    assert!(errors[2].1.contains("not a valid jar"), "{}", errors[2].1);
    assert_eq!(errors[3].0, "github-copilot-intellij.jar");
    assert_eq!(
        errors[3].1,
        "JetBrains plugin descriptor not read: invalid META-INF/plugin.xml: unterminated element"
    );
}

#[test]
fn oversized_jars_and_descriptors_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let r0 = t.path();
    // Larger than the limit (sparse: no disk used).
    let big = host(r0, "/big.jar");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(jetbrains::MAX_JAR_BYTES + 1)
        .unwrap();
    assert!(matches!(
        jetbrains::read_jar(&big),
        Err(jetbrains::JarError::TooLarge)
    ));
    // A descriptor that inflates past 1 MiB from a small jar.
    let mut xml = b"<idea-plugin><id>x</id><description>".to_vec();
    xml.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    xml.extend_from_slice(b"</description></idea-plugin>");
    jar(r0, "/bomb.jar", &[("META-INF/plugin.xml", &xml)]);
    assert!(std::fs::metadata(r0.join("bomb.jar")).unwrap().len() < 64 * 1024);
    assert!(matches!(
        jetbrains::read_jar(&r0.join("bomb.jar")),
        Err(jetbrains::JarError::DescriptorTooLarge)
    ));
    // An end-of-central-directory record declaring a huge central directory.
    let mut eocd = b"PK\x05\x06\0\0\0\0".to_vec();
    eocd.extend_from_slice(&10u16.to_le_bytes());
    eocd.extend_from_slice(&10u16.to_le_bytes());
    eocd.extend_from_slice(&(64u32 * 1024 * 1024).to_le_bytes());
    eocd.extend_from_slice(&0u32.to_le_bytes());
    eocd.extend_from_slice(&0u16.to_le_bytes());
    write(r0, "/cd.jar", &eocd);
    assert!(matches!(
        jetbrains::read_jar(&r0.join("cd.jar")),
        Err(jetbrains::JarError::TooManyEntries { .. })
    ));
    // A library jar: valid, no descriptor.
    jar(r0, "/lib.jar", &[("a/B.class", CLASS)]);
    assert!(jetbrains::read_jar(&r0.join("lib.jar")).unwrap().is_none());
}
