//! `airlock scan` end to end: the real binary on real files in temp dirs.

use std::path::Path;

use assert_cmd::Command;

fn token() -> String {
    let random = "Zq8Lm2Nx4Pv6Rt8Bw0Cy2Dz4Fh6Jk8";
    format!(
        "ghp_{random}{}",
        airlock_detect::validate::crc32_base62_suffix(random)
    )
}

fn airlock() -> Command {
    let mut c = Command::cargo_bin("airlock").unwrap();
    c.env_remove("AIRLOCK_CONFIG").env("NO_COLOR", "1");
    c
}

fn write(p: &Path, body: impl AsRef<[u8]>) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, body).unwrap();
}

#[test]
fn finds_secret_and_never_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("src/config.py"),
        format!("import os\nGITHUB_TOKEN = \"{}\"\n", token()),
    );
    write(&dir.path().join("README.md"), "nothing to see here\n");
    let out = airlock().arg("scan").arg(dir.path()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("config.py:2:17"), "{stdout}");
    assert!(stdout.contains("github-pat"));
    assert!(!stdout.contains(&token()), "the secret was printed");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&token()));
}

#[test]
fn jsonl_fields_and_paths_as_given() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("a/b.env"),
        format!("X=1\nTOKEN={}\n", token()),
    );
    let out = airlock()
        .current_dir(dir.path())
        .args(["scan", "--format", "jsonl", "a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(v["path"], "a/b.env");
    assert_eq!(v["line"], 2);
    assert_eq!(v["column"], 7);
    assert_eq!(v["start"], 10);
    assert_eq!(v["end"], 10 + 40);
    assert_eq!(v["rule"], "github-pat");
    assert_eq!(v["category"], "secret");
    assert_eq!(v["severity"], "critical");
    assert_eq!(v["confidence"], "high");
}

#[test]
fn stdin_clean_and_dirty() {
    airlock()
        .args(["scan", "-"])
        .write_stdin("hello world\n")
        .assert()
        .code(0);
    let out = airlock()
        .args(["scan", "--format", "json", "-"])
        .write_stdin(format!("mail jane.doe@acme-corp.io and {}", token()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), 2);
    assert_eq!(v["findings"][0]["path"], "-");
    assert_eq!(v["summary"]["by_category"]["pii"], 1);
}

#[test]
fn only_and_fail_on() {
    let input = format!("t={}", token());
    airlock()
        .args(["scan", "--only", "pii,covert", "-"])
        .write_stdin(input.clone())
        .assert()
        .code(0);
    // An e-mail is medium: below --fail-on high.
    airlock()
        .args(["scan", "--fail-on", "high", "-"])
        .write_stdin("x jane.doe@acme-corp.io")
        .assert()
        .code(0);
    airlock()
        .args(["scan", "--fail-on", "medium", "-"])
        .write_stdin("x jane.doe@acme-corp.io")
        .assert()
        .code(1);
    airlock()
        .args(["scan", "--fail-on", "bogus", "-"])
        .write_stdin("x")
        .assert()
        .code(2);
    airlock()
        .args(["scan", "--only", "nope", "-"])
        .write_stdin("x")
        .assert()
        .code(2);
}

#[test]
fn baseline_round_trip_never_stores_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("app.js");
    write(&f, format!("const k = '{}';\n", token()));
    let baseline = dir.path().join("baseline.json");
    airlock()
        .arg("scan")
        .arg(&f)
        .arg("--write-baseline")
        .arg(&baseline)
        .assert()
        .code(0);
    let text = std::fs::read_to_string(&baseline).unwrap();
    assert!(!text.contains(&token()));
    assert!(text.contains("github-pat"));
    airlock()
        .arg("scan")
        .arg(&f)
        .arg("--baseline")
        .arg(&baseline)
        .assert()
        .code(0);
    // A new secret is still reported.
    write(
        &f,
        format!(
            "const k = '{}';\nconst j = 'jane.doe@acme-corp.io';\n",
            token()
        ),
    );
    airlock()
        .arg("scan")
        .arg(&f)
        .arg("--baseline")
        .arg(&baseline)
        .assert()
        .code(1);
    write(&baseline, "not json");
    airlock()
        .arg("scan")
        .arg(&f)
        .arg("--baseline")
        .arg(&baseline)
        .assert()
        .code(2);
}

#[test]
fn io_errors_exit_2_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("ok.txt"), format!("{}\n", token()));
    let missing = dir.path().join("does-not-exist");
    let out = airlock()
        .arg("scan")
        .arg(&missing)
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: ") && stderr.contains("does-not-exist"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("github-pat"));
}

#[test]
fn binary_huge_invalid_utf8_and_long_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut bin = vec![0u8, 1, 2, 3];
    bin.extend_from_slice(token().as_bytes());
    write(&dir.path().join("blob.bin"), &bin);
    write(&dir.path().join("huge.txt"), vec![b'a'; 2000]);
    let mut bad = vec![0xff, 0xfe, b'\n'];
    bad.extend_from_slice(format!("key: {}\n", token()).as_bytes());
    bad.extend_from_slice(&[0xc3, 0x28]);
    write(&dir.path().join("bad.txt"), &bad);
    let mut long = "x".repeat(300_000);
    long.push_str(&format!(" {} ", token()));
    long.push_str(&"y".repeat(300_000));
    write(&dir.path().join("long.min.js"), &long);
    let out = airlock()
        .args(["scan", "--format", "jsonl", "--max-file-size", "1000000"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert!(paths.iter().any(|p| p.ends_with("bad.txt")), "{paths:?}");
    assert!(paths.iter().any(|p| p.ends_with("long.min.js")));
    assert!(
        !paths.iter().any(|p| p.ends_with("blob.bin")),
        "binary file was scanned"
    );
    let long_row = rows
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("long.min.js"))
        .unwrap();
    assert_eq!(long_row["column"], 300_002);
    // Over the size limit: a warning naming the file, not an error.
    let out = airlock()
        .args(["scan", "--max-file-size", "1000"])
        .arg(dir.path().join("huge.txt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("huge.txt: skipped"));
}

/// A file with more findings than the engine reports in one scan: the findings it did report,
/// and a warning naming the file, so nobody takes the rest of it for clean.
#[test]
fn a_scan_that_stops_at_the_findings_cap_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cap = airlock_detect::MAX_FINDINGS;
    write(&dir.path().join("under.txt"), "a\u{200B}b ".repeat(cap - 1));
    write(&dir.path().join("over.txt"), "a\u{200B}b ".repeat(cap + 1));
    let out = airlock()
        .args(["scan", "--format", "jsonl"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let stopped: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("scan stopped"))
        .collect();
    assert_eq!(stopped.len(), 1, "{stderr}");
    assert!(stopped[0].contains("over.txt"), "{stderr}");
    assert!(
        stopped[0].contains(&format!("after {cap} findings")),
        "{stderr}"
    );
    let rows = String::from_utf8(out.stdout).unwrap().lines().count();
    assert_eq!(rows, 2 * cap - 1);
}

#[test]
fn gitignore_is_honoured_and_hidden_files_scanned() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join(".gitignore"), "ignored/\n");
    write(&dir.path().join("ignored/x.txt"), token());
    write(&dir.path().join(".env"), format!("GH={}\n", token()));
    let out = airlock()
        .args(["scan", "--format", "jsonl"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains(".env"));
    let out = airlock()
        .args(["scan", "--no-ignore", "--format", "jsonl"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
}

#[test]
fn sarif_is_2_1_0() {
    let out = airlock()
        .args(["scan", "--format", "sarif", "-"])
        .write_stdin(format!("x {}\n", token()))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "airlock");
    assert_eq!(run["tool"]["driver"]["rules"][0]["id"], "github-pat");
    let r = &run["results"][0];
    assert_eq!(r["ruleId"], "github-pat");
    assert_eq!(r["level"], "error");
    assert_eq!(
        r["locations"][0]["physicalLocation"]["region"]["startLine"],
        1
    );
    assert_eq!(
        r["locations"][0]["physicalLocation"]["region"]["startColumn"],
        3
    );
    assert!(r["partialFingerprints"].is_object());
}

#[test]
fn config_custom_markers_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("airlock.toml");
    write(
        &cfg,
        r#"
[gateway]
listen = "127.0.0.1:0"

[detection]
disable = ["email-address"]

[detection.custom]
severity = "critical"
code_names = ["Bluebird"]
domains = ["corp.acme.internal"]
headers = ["CONFIDENTIAL - INTERNAL"]
"#,
    );
    let out = airlock()
        .arg("--config")
        .arg(&cfg)
        .args(["scan", "--format", "jsonl", "-"])
        .write_stdin("CONFIDENTIAL \u{2013} INTERNAL\nProject bluebird ships to db1.corp.acme.internal; mail jane.doe@acme-corp.io\n")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        rules,
        [
            "custom-header",
            "custom-code-name",
            "custom-internal-domain"
        ]
    );
    write(&cfg, "[detection]\nuptream = 1\n");
    let out = airlock()
        .arg("--config")
        .arg(&cfg)
        .args(["scan", "-"])
        .write_stdin("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("uptream"));
    write(&cfg, "[detection]\ndisable = [\"no-such-rule\"]\n");
    airlock()
        .arg("--config")
        .arg(&cfg)
        .args(["scan", "-"])
        .write_stdin("x")
        .assert()
        .code(2);
}

#[test]
fn covert_unicode_is_reported_with_decoded_payload() {
    let hidden: String = "rm -rf"
        .chars()
        .map(|c| char::from_u32(0xE0000 + c as u32).unwrap())
        .collect();
    let out = airlock()
        .args(["scan", "--format", "jsonl", "-"])
        .write_stdin(format!("Please summarise.{hidden}\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["rule"], "covert-tag-characters");
    assert!(v["detail"].as_str().unwrap().contains("rm -rf"));
}
