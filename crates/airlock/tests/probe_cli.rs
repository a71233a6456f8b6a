//! `airlock probe` end to end through the real binary, against the fixture agent
//! (crates/airlock-probe/src/bin/airlock-fixture-agent.rs), which is compiled with `rustc`
//! when cargo has not built it next to the `airlock` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use assert_cmd::prelude::*;

const FIXTURE_SRC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../airlock-probe/src/bin/airlock-fixture-agent.rs"
);

fn fixture_agent() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_airlock"));
        if let Some(dir) = bin.parent() {
            let built = dir.join("airlock-fixture-agent");
            if built.is_file() {
                // Only trust it if it is at least as new as its source.
                let newer = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
                if newer(&built) >= newer(Path::new(FIXTURE_SRC)) {
                    return built;
                }
            }
        }
        // Compile into cargo's scratch directory for integration tests, then rename into
        // place so parallel test processes never see a half-written binary.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("airlock-fixture-agent");
        let partial = dir.join(format!(
            "airlock-fixture-agent.{}.partial",
            std::process::id()
        ));
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let st = Command::new(rustc)
            .args([
                "--edition",
                "2024",
                "--crate-name",
                "airlock_fixture_agent",
                "-o",
            ])
            .arg(&partial)
            .arg(FIXTURE_SRC)
            .status()
            .expect("rustc runs");
        assert!(st.success(), "compiling the fixture agent failed");
        std::fs::rename(&partial, &out).unwrap();
        out
    })
}

fn airlock() -> Command {
    let mut c = Command::cargo_bin("airlock").unwrap();
    c.env_remove("AIRLOCK_CONFIG").env("NO_COLOR", "1");
    c
}

#[test]
fn trick_gives_exit_1_and_attributed_findings_in_json() {
    let out = airlock()
        .args([
            "probe",
            "--agent",
            "claude-code",
            "--only",
            "tz,base_host",
            "--baseline-runs",
            "2",
            "-j",
            "4",
            "--format",
            "json",
            "--",
        ])
        .arg(fixture_agent())
        .arg("--trick")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report on stdout");
    assert_eq!(v["schema"], "airlock-probe/1");
    assert_eq!(v["verdict"], "environment_dependent");
    let findings = v["findings"].as_array().unwrap();
    let dims: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap(),
                f["dimension"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(dims, vec![("covert", "TZ"), ("plain", "base-URL host")]);
    let tz = &findings[0];
    assert_eq!(tz["path"], "system[0].text");
    let first = &tz["flipped_by"][0]["change"]["hunks"][0]["chars"][0];
    assert_eq!(first["old"]["name"], "APOSTROPHE");
    assert_eq!(first["new"]["name"], "RIGHT SINGLE QUOTATION MARK");
    assert_eq!(first["new"]["code"], "U+2019");
    // No key value anywhere in the report.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("sk-ant-api03-airlock-probe-not-a-real-key"));
}

#[test]
fn no_trick_is_clean_with_exit_0_and_html_goes_to_the_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let out = airlock()
        .args([
            "probe",
            "--agent",
            "claude-code",
            "--only",
            "tz,locale",
            "--baseline-runs",
            "2",
            "--format",
            "html",
            "--output",
        ])
        .arg(&html)
        .arg("--")
        .arg(fixture_agent())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("Clean"));
}

#[test]
fn usage_and_matrix_errors_exit_2() {
    // No agent command.
    airlock().args(["probe"]).assert().code(2);
    // A bad matrix names the file and the key.
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.toml");
    std::fs::write(
        &m,
        "[tz]\nbaseline = \"UTC\"\nvalues = [\"../../etc/passwd\"]\n",
    )
    .unwrap();
    let out = airlock()
        .args(["probe", "--matrix"])
        .arg(&m)
        .arg("--")
        .arg(fixture_agent())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("m.toml") && err.contains("tz"), "{err}");
    // A program that does not exist.
    let out = airlock()
        .args(["probe", "--", "/nonexistent/agent-binary"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
