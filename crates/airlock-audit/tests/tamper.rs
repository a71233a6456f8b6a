//! Tampering with the SQLite file directly is detected by `verify`, which names the first
//! broken record.

mod common;

use airlock_audit::{
    AuditKey, AuditOptions, CheckpointExport, ProblemKind, SqliteStore, VerifyReport, decode,
    verify_dir,
};
use common::{fill, raw};
use rusqlite::params;
use serde_json::Value;
use time::OffsetDateTime;

const N: u64 = 12;
const TARGET: u64 = 7;

fn filled() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), N, AuditOptions::default());
    dir
}

fn check(dir: &std::path::Path) -> VerifyReport {
    verify_dir(dir, &[], None).unwrap()
}

fn assert_first(rep: &VerifyReport, seq: u64, kind: ProblemKind) {
    let p = rep
        .first_problem()
        .unwrap_or_else(|| panic!("tampering not detected: {rep:?}"));
    assert_eq!((p.seq, p.kind), (Some(seq), kind), "{rep:#?}");
    assert!(
        p.message.contains(&seq.to_string()),
        "message names the record: {}",
        p.message
    );
}

#[test]
fn intact_log_verifies_and_is_fully_signed() {
    let dir = filled();
    let rep = check(dir.path());
    assert!(rep.ok(), "{rep:#?}");
    assert_eq!(rep.records, N);
    assert_eq!((rep.first_seq, rep.last_seq), (Some(1), Some(N)));
    assert_eq!(rep.signed_through, N);
    assert_eq!(rep.unsigned_tail, 0);
    assert!(rep.checkpoints >= 1);
}

/// Every JSON pointer to a leaf value of a JSON document.
fn leaves(v: &Value, path: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| leaves(v, format!("{path}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| leaves(v, format!("{path}/{i}"), out)),
        _ => out.push(path),
    }
}

/// A different value of the same type, so the record still parses.
fn mutate(pointer: &str, v: &Value) -> Value {
    match (pointer, v) {
        ("/decision", _) => Value::from("blocked"),
        ("/kind", _) => Value::from("overflow"),
        ("/time", _) => Value::from("2001-02-03T04:05:06.789Z"),
        (_, Value::String(s)) => Value::from(format!("{s}x")),
        (_, Value::Number(n)) => Value::from(n.as_u64().unwrap_or(0) + 1),
        (_, Value::Bool(b)) => Value::from(!b),
        (p, other) => panic!("unexpected leaf {p}: {other}"),
    }
}

#[test]
fn changing_any_field_is_detected() {
    let dir = filled();
    let conn = raw(dir.path());
    let original: String = conn
        .query_row(
            "SELECT record FROM records WHERE seq = ?",
            [TARGET as i64],
            |r| r.get(0),
        )
        .unwrap();
    let doc: Value = serde_json::from_str(&original).unwrap();
    let mut pointers = Vec::new();
    leaves(&doc, String::new(), &mut pointers);
    assert!(
        pointers.len() >= 40,
        "the sample record sets every field: {pointers:?}"
    );
    for ptr in &pointers {
        let mut changed = doc.clone();
        let slot = changed.pointer_mut(ptr).unwrap();
        *slot = mutate(ptr, slot);
        conn.execute(
            "UPDATE records SET record = ? WHERE seq = ?",
            params![changed.to_string(), TARGET as i64],
        )
        .unwrap();
        let rep = check(dir.path());
        assert_first(&rep, TARGET, ProblemKind::ContentChanged);
    }
    conn.execute(
        "UPDATE records SET record = ? WHERE seq = ?",
        params![original, TARGET as i64],
    )
    .unwrap();
    assert!(check(dir.path()).ok(), "restored record verifies again");
}

#[test]
fn adding_an_unknown_field_is_detected() {
    let dir = filled();
    let conn = raw(dir.path());
    conn.execute(
        "UPDATE records SET record = json_set(record, '$.note', 'x') WHERE seq = ?",
        [TARGET as i64],
    )
    .unwrap();
    assert_first(&check(dir.path()), TARGET, ProblemKind::Malformed);
}

#[test]
fn changing_an_indexed_column_is_detected() {
    let dir = filled();
    let conn = raw(dir.path());
    for (col, val) in [
        ("user", "mallory"),
        ("tool", "other"),
        ("decision", "allowed"),
        ("model", "m"),
        ("team", "t"),
    ] {
        let before: Option<String> = conn
            .query_row(
                &format!("SELECT {col} FROM records WHERE seq = ?"),
                [TARGET as i64],
                |r| r.get(0),
            )
            .unwrap();
        let val = if before.as_deref() == Some(val) {
            "zzz"
        } else {
            val
        };
        conn.execute(
            &format!("UPDATE records SET {col} = ? WHERE seq = ?"),
            params![val, TARGET as i64],
        )
        .unwrap();
        assert_first(&check(dir.path()), TARGET, ProblemKind::ColumnMismatch);
        conn.execute(
            &format!("UPDATE records SET {col} = ? WHERE seq = ?"),
            params![before, TARGET as i64],
        )
        .unwrap();
    }
    conn.execute(
        "UPDATE records SET time_ms = time_ms - 1 WHERE seq = ?",
        [TARGET as i64],
    )
    .unwrap();
    assert_first(&check(dir.path()), TARGET, ProblemKind::ColumnMismatch);
}

#[test]
fn changing_the_hash_columns_is_detected() {
    let dir = filled();
    let conn = raw(dir.path());
    conn.execute(
        "UPDATE records SET hash = ? WHERE seq = ?",
        params!["ab".repeat(32), TARGET as i64],
    )
    .unwrap();
    assert_first(&check(dir.path()), TARGET, ProblemKind::ContentChanged);
    let dir = filled();
    let conn = raw(dir.path());
    conn.execute(
        "UPDATE records SET prev_hash = ? WHERE seq = ?",
        params!["ab".repeat(32), TARGET as i64],
    )
    .unwrap();
    assert_first(&check(dir.path()), TARGET, ProblemKind::ContentChanged);
}

#[test]
fn deleting_a_record_is_detected() {
    let dir = filled();
    raw(dir.path())
        .execute("DELETE FROM records WHERE seq = ?", [TARGET as i64])
        .unwrap();
    let rep = check(dir.path());
    assert_first(&rep, TARGET, ProblemKind::Missing);
    assert!(
        rep.problems[0].message.contains("record 7 is missing"),
        "{rep:#?}"
    );
}

#[test]
fn deleting_the_first_record_is_detected() {
    let dir = filled();
    raw(dir.path())
        .execute("DELETE FROM records WHERE seq = 1", [])
        .unwrap();
    assert_first(&check(dir.path()), 1, ProblemKind::Missing);
}

#[test]
fn deleting_the_tail_is_detected_by_the_checkpoint() {
    let dir = filled();
    raw(dir.path())
        .execute("DELETE FROM records WHERE seq > ?", [(N - 3) as i64])
        .unwrap();
    assert_first(&check(dir.path()), N - 2, ProblemKind::Truncated);
}

#[test]
fn reordering_records_is_detected() {
    let dir = filled();
    let conn = raw(dir.path());
    // Swap everything but the sequence numbers of records 7 and 8.
    let cols = "time_ms, user, team, tool, decision, model, prev_hash, hash, record, request_body, response_body";
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE a AS SELECT {cols} FROM records WHERE seq = 7;
         CREATE TEMP TABLE b AS SELECT {cols} FROM records WHERE seq = 8;
         DELETE FROM records WHERE seq IN (7, 8);
         INSERT INTO records (seq, {cols}) SELECT 7, {cols} FROM b;
         INSERT INTO records (seq, {cols}) SELECT 8, {cols} FROM a;"
    ))
    .unwrap();
    assert_first(&check(dir.path()), TARGET, ProblemKind::ContentChanged);
}

#[test]
fn reordering_with_renumbered_json_is_detected() {
    // A careful attacker also fixes the seq inside each record: the hashes then disagree.
    let dir = filled();
    let conn = raw(dir.path());
    conn.execute_batch(
        "UPDATE records SET seq = -1 WHERE seq = 7;
         UPDATE records SET seq = 7, record = json_set(record, '$.seq', 7) WHERE seq = 8;
         UPDATE records SET seq = 8, record = json_set(record, '$.seq', 8) WHERE seq = -1;",
    )
    .unwrap();
    assert_first(&check(dir.path()), TARGET, ProblemKind::ContentChanged);
}

#[test]
fn inserting_a_record_is_detected() {
    let dir = filled();
    let conn = raw(dir.path());
    // Make room at 7 and insert a well-formed record that links to record 6.
    conn.execute_batch("UPDATE records SET seq = -seq WHERE seq >= 7; UPDATE records SET seq = 1 - seq WHERE seq < 0;")
        .unwrap();
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    let prev = airlock_audit::Store::row(&store, 6, false)
        .unwrap()
        .unwrap();
    let mut forged = common::full_record(99, OffsetDateTime::now_utc());
    forged.request_body = None;
    forged.response_body = None;
    forged.normalize();
    forged.seq = 7;
    forged.prev_hash = prev.hash.clone();
    forged.hash = forged.compute_hash();
    conn.execute(
        "INSERT INTO records (seq, time_ms, user, team, tool, decision, model, prev_hash, hash, record)
         VALUES (7, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            forged.time_ms(),
            forged.user,
            forged.team,
            forged.tool,
            forged.decision.map(|d| d.as_str()),
            forged.model,
            forged.prev_hash,
            forged.hash,
            serde_json::to_string(&forged).unwrap()
        ],
    )
    .unwrap();
    // The forged record itself is consistent; the record after it is not.
    assert_first(&check(dir.path()), TARGET + 1, ProblemKind::ContentChanged);
}

/// Rewrite records from `from` on with valid hashes, as an attacker without the key would.
fn rewrite_chain_from(dir: &std::path::Path, from: u64) {
    let store = SqliteStore::open_existing(dir).unwrap();
    let conn = raw(dir);
    let mut prev = airlock_audit::Store::row(&store, from - 1, false)
        .unwrap()
        .unwrap()
        .hash;
    for seq in from..=N {
        let row = airlock_audit::Store::row(&store, seq, false)
            .unwrap()
            .unwrap();
        let mut rec = decode(&row).unwrap();
        if seq == from {
            rec.user = Some("mallory".into());
        }
        rec.prev_hash = prev.clone();
        rec.hash = rec.compute_hash();
        conn.execute(
            "UPDATE records SET user = ?, prev_hash = ?, hash = ?, record = ? WHERE seq = ?",
            params![
                rec.user,
                rec.prev_hash,
                rec.hash,
                serde_json::to_string(&rec).unwrap(),
                seq as i64
            ],
        )
        .unwrap();
        prev = rec.hash;
    }
}

#[test]
fn rewriting_the_chain_is_caught_by_the_signed_checkpoint() {
    let dir = filled();
    rewrite_chain_from(dir.path(), TARGET);
    let rep = check(dir.path());
    let p = rep.first_problem().expect("detected");
    assert_eq!(p.kind, ProblemKind::CheckpointMismatch, "{rep:#?}");
}

#[test]
fn rewriting_the_chain_and_deleting_checkpoints_is_caught_by_the_export() {
    let dir = filled();
    let mut store = SqliteStore::open_existing(dir.path()).unwrap();
    let key = AuditKey::load(&dir.path().join("audit-signing.key")).unwrap();
    let export =
        CheckpointExport::gather(&mut store, Some(&key), OffsetDateTime::now_utc()).unwrap();
    let text = serde_json::to_string(&export).unwrap();
    rewrite_chain_from(dir.path(), TARGET);
    raw(dir.path())
        .execute("DELETE FROM checkpoints", [])
        .unwrap();
    assert!(
        check(dir.path()).ok(),
        "without the export the rewrite is invisible"
    );
    let external = CheckpointExport::parse(&text).unwrap();
    let rep = verify_dir(dir.path(), &[], Some(external)).unwrap();
    assert_eq!(
        rep.first_problem().map(|p| p.kind),
        Some(ProblemKind::CheckpointMismatch),
        "{rep:#?}"
    );
}

#[test]
fn a_bad_checkpoint_signature_is_detected() {
    let dir = filled();
    let conn = raw(dir.path());
    let (seq, sig): (i64, String) = conn
        .query_row(
            "SELECT seq, signature FROM checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let seq = seq as u64;
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    conn.execute(
        "UPDATE checkpoints SET signature = ? WHERE seq = ?",
        params![flipped, seq as i64],
    )
    .unwrap();
    let rep = check(dir.path());
    assert_first(&rep, seq, ProblemKind::BadSignature);
    assert!(rep.problems[0].message.contains("bad signature"));
}

#[test]
fn a_checkpoint_signed_by_another_key_is_detected() {
    let dir = filled();
    let other = tempfile::tempdir().unwrap();
    let foreign = AuditKey::load_or_create(other.path()).unwrap();
    let conn = raw(dir.path());
    let (seq, hash, t): (i64, String, i64) = conn
        .query_row(
            "SELECT seq, hash, time_ms FROM checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let seq = seq as u64;
    let cp = foreign.checkpoint(seq, &hash, t);
    conn.execute(
        "UPDATE checkpoints SET public_key = ?, signature = ? WHERE seq = ?",
        params![cp.public_key, cp.signature, seq as i64],
    )
    .unwrap();
    let rep = check(dir.path());
    assert_first(&rep, seq, ProblemKind::BadSignature);
    assert!(rep.problems[0].message.contains("not a trusted audit key"));
}

#[test]
fn a_changed_checkpoint_hash_is_detected() {
    let dir = filled();
    let conn = raw(dir.path());
    conn.execute(
        "UPDATE checkpoints SET hash = ? WHERE seq = (SELECT max(seq) FROM checkpoints)",
        ["cd".repeat(32)],
    )
    .unwrap();
    let rep = check(dir.path());
    assert_eq!(
        rep.first_problem().map(|p| p.kind),
        Some(ProblemKind::BadSignature),
        "{rep:#?}"
    );
}

#[test]
fn a_changed_body_is_detected() {
    let dir = filled();
    let other = airlock_audit::BodyCapture::new(b"something else", 1 << 16);
    raw(dir.path())
        .execute(
            "UPDATE records SET request_body = ? WHERE seq = ?",
            params![other.compressed, TARGET as i64],
        )
        .unwrap();
    assert_first(&check(dir.path()), TARGET, ProblemKind::BodyMismatch);
    raw(dir.path())
        .execute(
            "UPDATE records SET response_body = NULL WHERE seq = ?",
            [(TARGET + 1) as i64],
        )
        .unwrap();
    let rep = check(dir.path());
    assert_eq!(rep.problems.len(), 2, "{rep:#?}");
}

#[test]
fn a_forged_tail_is_reported_as_unsigned() {
    let dir = filled();
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    let last = airlock_audit::Store::row(&store, N, false)
        .unwrap()
        .unwrap();
    let mut forged = common::full_record(1000, OffsetDateTime::now_utc());
    forged.request_body = None;
    forged.response_body = None;
    forged.normalize();
    forged.seq = N + 1;
    forged.prev_hash = last.hash;
    forged.hash = forged.compute_hash();
    raw(dir.path())
        .execute(
            "INSERT INTO records (seq, time_ms, user, team, tool, decision, model, prev_hash, hash, record)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                (N + 1) as i64,
                forged.time_ms(),
                forged.user,
                forged.team,
                forged.tool,
                forged.decision.map(|d| d.as_str()),
                forged.model,
                forged.prev_hash,
                forged.hash,
                serde_json::to_string(&forged).unwrap()
            ],
        )
        .unwrap();
    let rep = check(dir.path());
    assert!(rep.ok());
    assert_eq!((rep.signed_through, rep.unsigned_tail), (N, 1));
}

#[test]
fn verify_without_any_key_says_so() {
    let dir = filled();
    std::fs::remove_file(dir.path().join("audit-signing.key")).unwrap();
    let rep = check(dir.path());
    assert_eq!(
        rep.first_problem().map(|p| p.kind),
        Some(ProblemKind::NoTrustedKey)
    );
}
