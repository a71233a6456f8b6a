//! `airlock review` end to end: the real binary on the in-repo fixture packages.

use std::path::PathBuf;

use assert_cmd::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../airlock-review/tests/fixtures")
        .join(name)
}

fn airlock() -> Command {
    let mut c = Command::cargo_bin("airlock").unwrap();
    c.env_remove("AIRLOCK_CONFIG").env("NO_COLOR", "1");
    c
}

#[test]
fn covert_package_is_banned_with_exit_1() {
    let out = airlock()
        .args(["review", "--format", "json"])
        .arg(fixture("covert-pkg"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"]["decision"], "ban");
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "chain.env_to_lookalike_text")
    );
    assert!(v["decoded"].as_array().unwrap().iter().any(|d| {
        d["text"]
            .as_str()
            .unwrap()
            .contains("collect.tz-metrics.cn")
    }));
}

#[test]
fn human_report_and_exit_codes() {
    let out = airlock()
        .args(["review"])
        .arg(fixture("benign-pkg"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("APPROVE") && text.contains("Capabilities"),
        "{text}"
    );
    assert!(!text.contains("\x1b["), "no colour when piped");
    // --fail-on never keeps 0 even on a ban.
    let out = airlock()
        .args(["review", "--fail-on", "never"])
        .arg(fixture("covert-pkg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("BAN"));
    // Usage and I/O errors exit 2.
    assert_eq!(
        airlock()
            .args(["review", "/nonexistent/airlock-review-x"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        airlock()
            .args(["review", "a", "b"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        airlock()
            .args(["review", "npm:--registry=x"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn html_sarif_output_file_and_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let html = tmp.path().join("r.html");
    let out = airlock()
        .args(["review", "--format", "html", "--output"])
        .arg(&html)
        .arg(fixture("capabilities-pkg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("capability-zoo"));
    let out = airlock()
        .args(["review", "--format", "sarif"])
        .arg(fixture("capabilities-pkg"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert!(!v["runs"][0]["results"].as_array().unwrap().is_empty());
    let out = airlock()
        .args(["review", "--diff"])
        .arg(fixture("benign-pkg"))
        .arg(fixture("covert-pkg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("+ beacon.shadow-telemetry.ru")
            && text.contains("chain.env_to_lookalike_text"),
        "{text}"
    );
    let out = airlock()
        .args(["review", "--diff"])
        .arg(fixture("benign-pkg"))
        .arg(fixture("benign-pkg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn custom_rules_file_changes_the_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("review.toml");
    std::fs::write(
        &rules,
        "schema_version = 1\n[[verdict]]\nid = \"ban-any-network\"\ndecision = \"ban\"\ncapabilities = [\"network.*\"]\nreason = \"no network at all\"\n",
    )
    .unwrap();
    let out = airlock()
        .args(["review", "--format", "json", "--rules"])
        .arg(&rules)
        .arg(fixture("covert-pkg"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"]["decision"], "ban");
    assert!(
        v["verdict"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("ban-any-network")
    );
    std::fs::write(&rules, "schema_version = 1\n[[verdict]]\nid = \"x\"\ndecision = \"maybe\"\nreason = \"r\"\nmin_severity = \"high\"\n").unwrap();
    let out = airlock()
        .args(["review", "--rules"])
        .arg(&rules)
        .arg(fixture("covert-pkg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("review.toml"));
}
