//! `airlock audit ...` run as a real binary on a temp data directory filled through the library.

use std::path::Path;

use airlock_audit::{
    AuditLog, AuditOptions, AuditRecord, Decision, FindingSummary, RecordKind, Usage,
};
use assert_cmd::Command;
use predicates::prelude::*;
use time::OffsetDateTime;

fn record(i: u64, time: OffsetDateTime) -> AuditRecord {
    let mut r = AuditRecord::new(time, format!("req-{i}"));
    r.user = Some(if i.is_multiple_of(2) { "alice" } else { "bob" }.into());
    r.team = Some("payments".into());
    r.tool = Some(
        if i.is_multiple_of(3) {
            "codex"
        } else {
            "claude-code"
        }
        .into(),
    );
    r.tool_version = Some("2.1.150".into());
    r.model = Some("claude-sonnet-4-5".into());
    r.decision = Some(if i.is_multiple_of(4) {
        Decision::Denied
    } else {
        Decision::Allowed
    });
    r.status = Some(if i.is_multiple_of(4) { 403 } else { 200 });
    r.findings = vec![FindingSummary {
        rule_id: "aws-access-key-id".into(),
        count: 1,
        locations: vec!["messages[0].content".into()],
    }];
    r.usage = Some(Usage {
        input_tokens: Some(10),
        output_tokens: Some(5),
        ..Default::default()
    });
    r.latency_total_us = Some(1500);
    r
}

/// 20 records: the first 10 two hours old, the last 10 recent.
fn filled() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let now = OffsetDateTime::now_utc();
    for i in 1..=20u64 {
        let t = if i <= 10 {
            now - time::Duration::hours(2)
        } else {
            now
        };
        log.submit(record(i, t)).unwrap().wait().unwrap();
    }
    log.shutdown();
    dir
}

fn airlock(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("airlock").unwrap();
    c.env_remove("AIRLOCK_DATA_DIR")
        .env_remove("AIRLOCK_CONFIG")
        .env("NO_COLOR", "1");
    c.arg("audit");
    let _ = dir;
    c
}

fn jsonl(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn query_filters_like_the_issue_says() {
    let dir = filled();
    let out = airlock(dir.path())
        .args(["query", "--data-dir"])
        .arg(dir.path())
        .args([
            "--since",
            "1h",
            "--user",
            "alice",
            "--tool",
            "claude-code",
            "--decision",
            "denied",
            "--format",
            "jsonl",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let recs = jsonl(&out);
    // Recent (11..=20), alice (even), denied (multiple of 4), claude-code (not multiple of 3): 16, 20.
    assert_eq!(
        recs.iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [16, 20]
    );
    assert!(
        recs.iter()
            .all(|r| r["decision"] == "denied" && r["user"] == "alice")
    );
}

#[test]
fn query_table_and_json() {
    let dir = filled();
    airlock(dir.path())
        .args(["query", "--data-dir"])
        .arg(dir.path())
        .args(["--decision", "denied", "--format", "table"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("SEQ")
                .and(predicate::str::contains("claude-code 2.1.150"))
                .and(predicate::str::contains("denied"))
                .and(predicate::str::contains("aws-access-key-id×1")),
        );
    let out = airlock(dir.path())
        .args(["query", "--data-dir"])
        .arg(dir.path())
        .args(["--limit", "3", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v.as_array().map(|a| a
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()),
        Some(vec![18, 19, 20])
    );
}

#[test]
fn export_streams_everything_as_jsonl() {
    let dir = filled();
    let out = airlock(dir.path())
        .args(["export", "--format", "jsonl", "--data-dir"])
        .arg(dir.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let recs = jsonl(&out);
    assert_eq!(recs.len(), 20);
    assert_eq!(recs[0]["seq"], 1);
    let file = dir.path().join("out.jsonl");
    airlock(dir.path())
        .args(["export", "--user", "bob", "--data-dir"])
        .arg(dir.path())
        .arg("--output")
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 10);
}

#[test]
fn verify_passes_then_names_the_first_broken_record() {
    let dir = filled();
    airlock(dir.path())
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("20 records")
                .and(predicate::str::contains("OK: the chain is intact")),
        );
    let conn = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    conn.execute(
        "UPDATE records SET record = replace(record, '\"bob\"', '\"eve\"') WHERE seq = 5",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM records WHERE seq = 12", [])
        .unwrap();
    airlock(dir.path())
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(
                "FAILED: first broken record 5: record 5: content does not match its hash",
            )
            .and(predicate::str::contains("record 12 is missing")),
        );
    let out = airlock(dir.path())
        .args(["verify", "--format", "json", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["problems"][0]["seq"], 5);
    assert_eq!(v["problems"][0]["kind"], "content_changed");
}

#[test]
fn exported_checkpoints_catch_a_rewrite() {
    let dir = filled();
    let export = dir.path().join("checkpoints.json");
    airlock(dir.path())
        .args(["checkpoints", "--data-dir"])
        .arg(dir.path())
        .arg("--export")
        .arg(&export)
        .assert()
        .success();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(doc["format"], "airlock-audit-checkpoints/1");
    let pk = String::from_utf8(
        airlock(dir.path())
            .args(["public-key", "--data-dir"])
            .arg(dir.path())
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert_eq!(doc["public_key"].as_str(), Some(pk.trim()));
    airlock(dir.path())
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .arg("--checkpoints")
        .arg(&export)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("exported checkpoints"));
    // Someone truncates the log and removes the stored checkpoints: the export still knows.
    let conn = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    conn.execute_batch("DELETE FROM records WHERE seq > 15; DELETE FROM checkpoints;")
        .unwrap();
    airlock(dir.path())
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .arg("--checkpoints")
        .arg(&export)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("records 16 to 20 were deleted"));
}

#[test]
fn prune_keeps_a_verifiable_chain() {
    let dir = filled();
    airlock(dir.path())
        .args(["prune", "--max-age", "1h", "--data-dir"])
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains("pruned 10 records"));
    airlock(dir.path())
        .args(["prune", "--max-records", "4", "--data-dir"])
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains("pruned 6 records"));
    airlock(dir.path())
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("4 records (17..20)")
                .and(predicate::str::contains("2 anchors")),
        );
}

#[test]
fn data_dir_comes_from_the_environment_like_the_gateway() {
    let dir = filled();
    airlock(dir.path())
        .env("AIRLOCK_DATA_DIR", dir.path())
        .args(["export"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"seq\":20"));
}

#[test]
fn usage_and_io_errors_exit_2_with_a_clear_message() {
    let empty = tempfile::tempdir().unwrap();
    airlock(empty.path())
        .args(["query", "--data-dir"])
        .arg(empty.path())
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no audit log at").and(predicate::str::contains("audit.db")),
        );
    assert!(
        !empty.path().join("audit.db").exists(),
        "read-only commands never create a store"
    );
    let dir = filled();
    airlock(dir.path())
        .args(["query", "--since", "yesterday", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--since: \"yesterday\""));
    airlock(dir.path())
        .args(["verify", "--public-key", "nothex", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--public-key"));
    airlock(dir.path())
        .args(["prune", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--max-age"));
}

#[test]
fn table_output_neutralises_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let mut r = record(1, OffsetDateTime::now_utc());
    r.tool_version = Some("1.0\u{1b}[2J".into());
    log.submit(r).unwrap().wait().unwrap();
    log.shutdown();
    airlock(dir.path())
        .args(["query", "--data-dir"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("\u{1b}").not());
}

/// A forwarded request has a `request` record and, when it ended, an `exchange` record: the
/// table shows one row per exchange, and a request whose end is not on record (the gateway
/// was killed mid-answer) as its own row.
#[test]
fn table_shows_one_row_per_exchange_and_requests_without_an_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let now = OffsetDateTime::now_utc();
    for (i, kind) in [
        (1, RecordKind::Request),
        (1, RecordKind::Exchange),
        (2, RecordKind::Request),
    ] {
        let mut r = record(i, now);
        r.kind = kind;
        if kind == RecordKind::Request {
            r.status = None;
            r.usage = None;
            r.latency_total_us = None;
        }
        log.submit(r).unwrap().wait().unwrap();
    }
    log.shutdown();
    let out = airlock(dir.path())
        .args(["query", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].trim_start().starts_with("2 ") && rows[0].contains("10/5"),
        "{text}"
    );
    assert!(
        rows[1].trim_start().starts_with("3 ") && rows[1].contains("no end recorded"),
        "{text}"
    );
}

#[test]
fn prune_by_size_keeps_the_newest_that_fit() {
    let dir = filled();
    // Size of one record's JSON (all 20 are alike in size within a few bytes).
    let out = airlock(dir.path())
        .args(["export", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let lines: Vec<usize> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::len)
        .collect();
    assert_eq!(lines.len(), 20);
    let max: usize = lines.iter().rev().take(5).sum::<usize>() + 1;
    airlock(dir.path())
        .args(["prune", "--max-bytes"])
        .arg(max.to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains("pruned 15 records"));
    airlock(dir.path())
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("5 records (16..20)"));
    airlock(dir.path())
        .args(["prune", "--max-bytes", "12x", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a size"));
}
