//! The batching writer: commits, restarts, overflow markers, bodies, concurrency.

mod common;

use std::sync::Arc;
use std::time::Duration;

use airlock_audit::{
    AuditFilter, AuditLog, AuditOptions, BodyCapture, BodyKind, RecordKind, SqliteStore, Store,
    SubmitError, query, verify_dir,
};
use common::{fill, full_record};
use time::OffsetDateTime;

#[test]
fn concurrent_submitters_get_unique_consecutive_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        AuditLog::open(
            dir.path(),
            AuditOptions {
                checkpoint_every_records: 50,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        log.submit(full_record(t * 1000 + i, OffsetDateTime::now_utc()))
                            .unwrap()
                            .wait()
                            .unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    let stats = log.stats();
    assert_eq!(stats.committed, 400);
    assert!(stats.batches <= 400 && stats.batches >= 1);
    assert!(stats.checkpoints >= 400 / 50 - 1, "{stats:?}");
    log.shutdown();
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(
        rep.ok() && rep.records == 400 && rep.unsigned_tail == 0,
        "{rep:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_can_be_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let a = log
        .submit(full_record(1, OffsetDateTime::now_utc()))
        .unwrap();
    let b = log
        .submit(full_record(2, OffsetDateTime::now_utc()))
        .unwrap();
    assert_eq!((a.await, b.await), (Ok(1), Ok(2)));
    // Durable: a second connection sees both rows before shutdown.
    let reader = log.reader().unwrap();
    assert_eq!(reader.count().unwrap().0, 2);
    tokio::task::spawn_blocking(move || log.shutdown())
        .await
        .unwrap();
}

#[test]
fn restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5, AuditOptions::default());
    fill(dir.path(), 5, AuditOptions::default());
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(rep.ok(), "{rep:#?}");
    assert_eq!((rep.records, rep.last_seq), (10, Some(10)));
}

#[test]
fn submit_after_shutdown_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    log.shutdown();
    assert_eq!(
        log.submit(full_record(1, OffsetDateTime::now_utc())).err(),
        Some(SubmitError::Closed)
    );
}

#[test]
fn shutdown_flushes_everything_queued() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        dir.path(),
        AuditOptions {
            max_batch: 7,
            ..Default::default()
        },
    )
    .unwrap();
    let pending: Vec<_> = (0..500)
        .map(|i| {
            log.submit(full_record(i, OffsetDateTime::now_utc()))
                .unwrap()
        })
        .collect();
    log.shutdown();
    for p in pending {
        assert!(p.wait().is_ok());
    }
    assert_eq!(
        SqliteStore::open_existing(dir.path())
            .unwrap()
            .count()
            .unwrap()
            .0,
        500
    );
}

#[test]
fn a_full_queue_is_counted_and_leaves_a_marker_in_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        dir.path(),
        AuditOptions {
            queue_capacity: 4,
            max_batch: 2,
            ..Default::default()
        },
    )
    .unwrap();
    // Hold the database's write lock so the writer stalls inside its first commit.
    let blocker = common::raw(dir.path());
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut accepted = Vec::new();
    let mut refused = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while refused < 10 && std::time::Instant::now() < deadline {
        match log.submit(full_record(
            accepted.len() as u64,
            OffsetDateTime::now_utc(),
        )) {
            Ok(c) => accepted.push(c),
            Err(SubmitError::QueueFull { capacity }) => {
                assert_eq!(capacity, 4);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, 10, "queue never filled");
    assert_eq!(log.stats().overflowed, 10);
    blocker.execute_batch("COMMIT").unwrap();
    let n_accepted = accepted.len() as u64;
    for c in accepted {
        c.wait().unwrap();
    }
    log.shutdown();
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    let all = query(&store, &AuditFilter::default()).unwrap();
    let markers: Vec<_> = all
        .iter()
        .filter(|r| r.kind == RecordKind::Overflow)
        .collect();
    assert_eq!(
        markers
            .iter()
            .map(|m| m.lost_records.unwrap_or(0))
            .sum::<u64>(),
        10
    );
    assert_eq!(all.len() as u64, n_accepted + markers.len() as u64);
    assert!(verify_dir(dir.path(), &[], None).unwrap().ok());
    assert_eq!(log.stats().overflow_pending, 0);
}

#[test]
fn bodies_are_compressed_capped_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let big = "{\"prompt\":\"[REDACTED]\"} ".repeat(10_000);
    let mut r = full_record(1, OffsetDateTime::now_utc());
    r.request_body = Some(BodyCapture::new(big.as_bytes(), 64 * 1024));
    let seq = log.submit(r).unwrap().wait().unwrap();
    log.shutdown();
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    let rec = airlock_audit::decode(&store.row(seq, false).unwrap().unwrap()).unwrap();
    let meta = rec.request_body.unwrap();
    assert!(meta.truncated);
    assert_eq!(
        (meta.original_bytes, meta.captured_bytes),
        (big.len() as u64, 64 * 1024)
    );
    let blob = store.body(seq, BodyKind::Request).unwrap().unwrap();
    assert!(
        blob.len() < 4096,
        "repetitive body compresses: {} bytes",
        blob.len()
    );
    let plain = BodyCapture::decompress(&blob, meta.captured_bytes).unwrap();
    assert_eq!(plain, &big.as_bytes()[..64 * 1024]);
}

#[test]
fn hostile_long_fields_are_cut_before_hashing() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let mut r = full_record(1, OffsetDateTime::now_utc());
    r.tool_version = Some("9".repeat(1_000_000));
    log.submit(r).unwrap().wait().unwrap();
    log.shutdown();
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    let rec = airlock_audit::decode(&store.row(1, false).unwrap().unwrap()).unwrap();
    assert_eq!(
        rec.tool_version.map(|v| v.len()),
        Some(airlock_audit::record::MAX_FIELD_CHARS)
    );
    assert!(verify_dir(dir.path(), &[], None).unwrap().ok());
}

#[test]
fn open_fails_clearly_on_an_unwritable_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let e = AuditLog::open(&file, AuditOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not-a-dir"), "{e}");
}

/// Records nobody waits for are committed in queue order like the others: a held record
/// submitted after them resolves only once they are in, and shutdown drains the rest.
#[test]
fn detached_records_are_committed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let t = OffsetDateTime::now_utc();
    for i in 0..50 {
        log.submit_detached(full_record(i, t)).unwrap();
    }
    let seq = log.submit(full_record(50, t)).unwrap().wait().unwrap();
    assert_eq!(seq, 51);
    assert_eq!(log.stats().committed, 51);
    for i in 51..60 {
        log.submit_detached(full_record(i, t)).unwrap();
    }
    log.shutdown();
    assert_eq!(
        log.submit_detached(full_record(60, t)),
        Err(SubmitError::Closed)
    );
    let store = SqliteStore::open_existing(dir.path()).unwrap();
    let recs = query(&store, &AuditFilter::default()).unwrap();
    let ids: Vec<String> = recs.iter().map(|r| r.request_id.clone()).collect();
    let want: Vec<String> = (0..60).map(|i| full_record(i, t).request_id).collect();
    assert_eq!(ids, want);
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(rep.ok() && rep.records == 60, "{rep:#?}");
}

/// Records nobody waits for wait (without waking the writer) for the next record somebody waits
/// for, and share its transaction; alone, they are committed once the linger is over.
#[test]
fn detached_records_share_the_next_held_records_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        dir.path(),
        AuditOptions {
            detached_linger: Duration::from_secs(3600),
            checkpoint_interval: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .unwrap();
    let t = OffsetDateTime::now_utc();
    for i in 0..5 {
        log.submit_detached(full_record(i, t)).unwrap();
    }
    assert_eq!(log.submit(full_record(5, t)).unwrap().wait().unwrap(), 6);
    let stats = log.stats();
    assert_eq!((stats.committed, stats.batches), (6, 1), "{stats:?}");
    log.shutdown();

    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        dir.path(),
        AuditOptions {
            detached_linger: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .unwrap();
    log.submit_detached(full_record(0, t)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.stats().committed == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(log.stats().committed, 1, "committed without company");
}

/// Submits 30 records one at a time through a writer on SQLite whose 5th, 6th and 20th
/// appends report an error: after committing (`durable`: what SQLite does when a hook that runs
/// after the commit fails), or without writing anything. The results in order.
fn through_flaky_store(dir: &std::path::Path, durable: bool) -> Vec<Result<u64, String>> {
    let mut appends = 0;
    let store = common::Wrapped {
        inner: SqliteStore::create(dir).unwrap(),
        on_append: Box::new(move |s, rows, cp| {
            appends += 1;
            if ![5, 6, 20].contains(&appends) {
                return s.append(rows, cp);
            }
            if durable {
                s.append(rows, cp)?;
            }
            Err(airlock_audit::AuditError::Prune("injected".into()))
        }),
    };
    let key = airlock_audit::AuditKey::load_or_create(dir).unwrap();
    let log = AuditLog::with_store(dir, Box::new(store), key, AuditOptions::default()).unwrap();
    let results = (0..30)
        .map(|i| {
            log.submit(full_record(i, OffsetDateTime::now_utc()))
                .unwrap()
                .wait()
                .map_err(|e| e.to_string())
        })
        .collect();
    log.shutdown();
    results
}

#[test]
fn a_batch_committed_but_reported_failed_is_acknowledged_and_the_chain_goes_on() {
    // Seen under load: SQLite reported the error of a WAL checkpoint run by a hook after the
    // commit as the commit's. The writer kept its old chain head and every later batch failed
    // on `UNIQUE constraint failed: records.seq`, so a fail-closed gateway refused everything.
    let dir = tempfile::tempdir().unwrap();
    let results = through_flaky_store(dir.path(), true);
    let seqs: Vec<u64> = results
        .iter()
        .map(|r| *r.as_ref().expect("every record committed"))
        .collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(rep.ok() && rep.records == 30, "{rep:#?}");
}

#[test]
fn a_batch_that_failed_is_refused_and_the_next_one_commits() {
    let dir = tempfile::tempdir().unwrap();
    let results = through_flaky_store(dir.path(), false);
    let failed: Vec<usize> = (0..30).filter(|&i| results[i].is_err()).collect();
    // Appends 5, 6 and 20 carry records 4, 5 and 19 (one record per batch, one at a time).
    assert_eq!(failed, vec![4, 5, 19], "{results:?}");
    let seqs: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(seqs, (1..=27).collect::<Vec<_>>());
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(rep.ok() && rep.records == 27, "{rep:#?}");
}
