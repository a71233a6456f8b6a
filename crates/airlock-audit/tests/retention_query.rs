//! Retention leaves a verifiable chain; queries and exports filter correctly.

mod common;

use std::time::Duration;

use airlock_audit::{
    AuditFilter, AuditKey, AuditLog, AuditOptions, Decision, ProblemKind, Retention, SqliteStore,
    Store, export_jsonl, prune, query, query_jsonl, verify_dir,
};
use common::{fill, full_record, raw};
use time::OffsetDateTime;

fn key(dir: &std::path::Path) -> AuditKey {
    AuditKey::load(&dir.join("audit-signing.key")).unwrap()
}

#[test]
fn prune_by_count_leaves_a_signed_anchor_and_the_rest_verifies() {
    let dir = tempfile::tempdir().unwrap();
    fill(
        dir.path(),
        30,
        AuditOptions {
            checkpoint_every_records: 10,
            ..Default::default()
        },
    );
    let mut store = SqliteStore::open_existing(dir.path()).unwrap();
    let out = prune(
        &mut store,
        &key(dir.path()),
        &Retention {
            max_age: None,
            max_records: Some(12),
            max_bytes: None,
        },
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(out.pruned, 18);
    assert_eq!(out.anchors.last().map(|a| a.seq), Some(18));
    assert_eq!(store.count().unwrap(), (12, Some(19)));
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(rep.ok(), "{rep:#?}");
    assert_eq!((rep.first_seq, rep.records, rep.anchors), (Some(19), 12, 1));

    // The writer continues after the kept records; still verifies.
    fill(dir.path(), 3, AuditOptions::default());
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(rep.ok() && rep.last_seq == Some(33), "{rep:#?}");
}

#[test]
fn prune_everything_then_continue_from_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5, AuditOptions::default());
    let mut store = SqliteStore::open_existing(dir.path()).unwrap();
    let r = Retention {
        max_age: None,
        max_records: Some(0),
        max_bytes: None,
    };
    assert_eq!(
        prune(&mut store, &key(dir.path()), &r, OffsetDateTime::now_utc())
            .unwrap()
            .pruned,
        5
    );
    assert!(verify_dir(dir.path(), &[], None).unwrap().ok());
    fill(dir.path(), 2, AuditOptions::default());
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(rep.ok(), "{rep:#?}");
    assert_eq!((rep.first_seq, rep.last_seq), (Some(6), Some(7)));
}

#[test]
fn prune_by_age_keeps_recent_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let now = OffsetDateTime::now_utc();
    for (i, days_ago) in [40i64, 35, 31, 10, 1].into_iter().enumerate() {
        log.submit(full_record(i as u64, now - time::Duration::days(days_ago)))
            .unwrap()
            .wait()
            .unwrap();
    }
    log.shutdown();
    let mut store = SqliteStore::open_existing(dir.path()).unwrap();
    let r = Retention {
        max_age: Some(Duration::from_secs(30 * 86_400)),
        max_records: None,
        max_bytes: None,
    };
    assert_eq!(
        prune(&mut store, &key(dir.path()), &r, now).unwrap().pruned,
        3
    );
    assert!(verify_dir(dir.path(), &[], None).unwrap().ok());
    // Nothing more to do.
    assert_eq!(
        prune(&mut store, &key(dir.path()), &r, now).unwrap().pruned,
        0
    );
}

#[test]
fn prune_refuses_a_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10, AuditOptions::default());
    raw(dir.path())
        .execute("UPDATE records SET user = 'x' WHERE seq = 3", [])
        .unwrap();
    let mut store = SqliteStore::open_existing(dir.path()).unwrap();
    let e = prune(
        &mut store,
        &key(dir.path()),
        &Retention {
            max_age: None,
            max_records: Some(2),
            max_bytes: None,
        },
        OffsetDateTime::now_utc(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("does not verify") && e.contains("record 3"),
        "{e}"
    );
    assert_eq!(store.count().unwrap().0, 10);
}

#[test]
fn a_forged_anchor_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10, AuditOptions::default());
    // An attacker deletes old records and leaves an anchor signed with another key.
    let other = tempfile::tempdir().unwrap();
    let foreign = AuditKey::load_or_create(other.path()).unwrap();
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    let h = store.row(4, false).unwrap().unwrap().hash;
    let a = foreign.anchor(4, &h, 0, 4);
    let conn = raw(dir.path());
    conn.execute("DELETE FROM records WHERE seq <= 4", [])
        .unwrap();
    conn.execute(
        "INSERT INTO anchors (seq, hash, time_ms, pruned, public_key, signature) VALUES (4, ?, 0, 4, ?, ?)",
        rusqlite::params![a.hash, a.public_key, a.signature],
    )
    .unwrap();
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert_eq!(
        rep.first_problem().map(|p| (p.seq, p.kind)),
        Some((Some(4), ProblemKind::BadSignature)),
        "{rep:#?}"
    );
}

#[test]
fn retention_thread_prunes_a_running_log() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20, AuditOptions::default());
    let log = AuditLog::open(
        dir.path(),
        AuditOptions {
            retention: Retention {
                max_age: None,
                max_records: Some(5),
                max_bytes: None,
            },
            retention_interval: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .unwrap();
    let reader = log.reader().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reader.count().unwrap().0 > 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(reader.count().unwrap().0, 5);
    log.submit(full_record(99, OffsetDateTime::now_utc()))
        .unwrap()
        .wait()
        .unwrap();
    log.shutdown();
    assert!(verify_dir(dir.path(), &[], None).unwrap().ok());
}

#[test]
fn query_filters_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let now = OffsetDateTime::now_utc();
    for i in 1..=30u64 {
        let t = now - time::Duration::minutes(30 - i as i64);
        log.submit(full_record(i, t)).unwrap().wait().unwrap();
    }
    log.shutdown();
    let store = SqliteStore::open_existing(dir.path()).unwrap();

    let f =
        AuditFilter::from_query_pairs([("user", "alice"), ("decision", "denied")], now).unwrap();
    let got = query(&store, &f).unwrap();
    // Denied: i % 5 == 0; alice: i even -> 10, 20, 30.
    assert_eq!(
        got.iter()
            .map(|r| r.request_id.as_str())
            .collect::<Vec<_>>(),
        ["req-10", "req-20", "req-30"]
    );
    assert!(got.iter().all(|r| r.decision == Some(Decision::Denied)));

    let f = AuditFilter::from_query_pairs([("tool", "codex"), ("limit", "2")], now).unwrap();
    let got = query(&store, &f).unwrap();
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [27, 30],
        "newest two, oldest first"
    );

    let f = AuditFilter::from_query_pairs([("since", "10m")], now).unwrap();
    let got = query(&store, &f).unwrap();
    assert!(
        !got.is_empty()
            && got
                .iter()
                .all(|r| r.time
                    >= now - time::Duration::minutes(10) - time::Duration::milliseconds(1))
    );
    assert!(got.len() <= 11, "{}", got.len());

    let mut buf = Vec::new();
    let n = query_jsonl(
        &store,
        &AuditFilter::from_query_pairs([("user", "bob")], now).unwrap(),
        &mut buf,
    )
    .unwrap();
    assert_eq!(n, 15);
    assert_eq!(String::from_utf8(buf).unwrap().lines().count(), 15);

    let mut buf = Vec::new();
    assert_eq!(
        export_jsonl(&store, &AuditFilter::default(), &mut buf).unwrap(),
        30
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[29]["seq"], 30);
    // Stable field names; no body bytes in the export.
    for k in [
        "time",
        "request_id",
        "user",
        "tool",
        "decision",
        "findings",
        "usage",
        "hash",
        "prev_hash",
    ] {
        assert!(lines[0].get(k).is_some(), "missing {k}");
    }
    assert!(lines[0]["request_body"].get("compressed").is_none());
}

/// Payload of the records left: record JSON plus stored bodies, read straight from SQLite.
fn payload(dir: &std::path::Path) -> u64 {
    raw(dir)
        .query_row(
            "SELECT ifnull(sum(length(CAST(record AS BLOB)) + ifnull(length(request_body),0) + ifnull(length(response_body),0)), 0) FROM records",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64
}

#[test]
fn prune_by_size_keeps_the_newest_that_fit_and_the_rest_verifies() {
    let dir = tempfile::tempdir().unwrap();
    fill(
        dir.path(),
        40,
        AuditOptions {
            checkpoint_every_records: 7,
            ..Default::default()
        },
    );
    let before = payload(dir.path());
    let max = before / 3;
    let mut store = SqliteStore::open_existing(dir.path()).unwrap();
    // The store's answer agrees with the generic two-pass default of the trait.
    let by_sql = store.last_seq_over_size(max).unwrap();
    assert!(by_sql.is_some());
    assert_eq!(store.last_seq_over_size(before).unwrap(), None);
    let out = prune(
        &mut store,
        &key(dir.path()),
        &Retention {
            max_bytes: Some(max),
            ..Retention::default()
        },
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let after = payload(dir.path());
    assert!(after <= max, "{after} > {max}");
    assert_eq!(out.anchors.last().map(|a| a.seq), by_sql);
    // Only as much as needed went: the record just before the cutoff would not have fitted.
    let (count, first) = store.count().unwrap();
    assert!(
        count > 0 && first == by_sql.map(|s| s + 1),
        "{count} {first:?}"
    );
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(rep.ok(), "{rep:#?}");
    assert_eq!(rep.anchors, 1);

    // Under the limit: nothing to do. The writer continues; still verifies.
    let again = prune(
        &mut store,
        &key(dir.path()),
        &Retention {
            max_bytes: Some(max),
            ..Retention::default()
        },
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(again.pruned, 0);
    fill(dir.path(), 3, AuditOptions::default());
    assert!(verify_dir(dir.path(), &[], None).unwrap().ok());
}

/// A store that only implements the required methods, to check the trait's default
/// `last_seq_over_size` against SQLite's query.
#[test]
fn size_cutoff_default_matches_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 25, AuditOptions::default());
    let total = payload(dir.path());
    let sqlite = SqliteStore::open_existing(dir.path()).unwrap();
    let plain = common::Wrapped::plain(SqliteStore::open_existing(dir.path()).unwrap());
    for max in [0, 1, total / 4, total / 2, total - 1, total, total + 1] {
        assert_eq!(
            sqlite.last_seq_over_size(max).unwrap(),
            plain.last_seq_over_size(max).unwrap(),
            "max {max}"
        );
    }
    assert_eq!(sqlite.last_seq_over_size(0).unwrap(), Some(25));
    assert_eq!(sqlite.last_seq_over_size(total).unwrap(), None);
}
