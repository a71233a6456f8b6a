//! Crash safety: a process writing under load is killed with SIGKILL; every record it had been
//! told was committed is in the store afterwards, and the chain verifies.
//!
//! The writing process is this same test binary, re-run with `AIRLOCK_AUDIT_CRASH_CHILD` set
//! (the `crash_child` test does nothing otherwise). It prints `COMMITTED <seq>` for each
//! record after its `Committed` resolved, which is the moment the gateway answers the agent.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use airlock_audit::{AuditLog, AuditOptions, SqliteStore, Store, verify_dir};
use time::OffsetDateTime;

const CHILD_ENV: &str = "AIRLOCK_AUDIT_CRASH_CHILD";

#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let log = Arc::new(
        AuditLog::open(
            std::path::Path::new(&dir),
            AuditOptions {
                checkpoint_every_records: 500,
                ..Default::default()
            },
        )
        .expect("open"),
    );
    // Four "request handlers" submitting as fast as they can, forever.
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                loop {
                    i += 1;
                    if let Ok(c) = log.submit(common::full_record(
                        t * 1_000_000 + i,
                        OffsetDateTime::now_utc(),
                    )) && let Ok(seq) = c.wait()
                    {
                        println!("COMMITTED {seq}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

#[cfg(unix)]
#[test]
fn sigkill_under_load_loses_no_committed_record() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = BTreeSet::new();
        let mut lines = BufReader::new(stdout).lines();
        // Let it run until a few thousand records are acknowledged, then SIGKILL mid-stream.
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(seq) = line.strip_prefix("COMMITTED ") {
                acked.insert(seq.trim().parse::<u64>().unwrap());
                if acked.len() >= 1000 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        // Acknowledgements already in the pipe count too: they were sent before the kill.
        for line in lines.map_while(Result::ok) {
            if let Some(seq) = line.strip_prefix("COMMITTED ") {
                acked.insert(seq.trim().parse::<u64>().unwrap());
            }
        }
        child.wait().unwrap();

        let store = SqliteStore::open_existing(dir.path()).unwrap();
        for seq in &acked {
            assert!(
                store.row(*seq, false).unwrap().is_some(),
                "round {round}: acknowledged record {seq} lost"
            );
        }
        let rep = verify_dir(dir.path(), &[], None).unwrap();
        assert!(rep.ok(), "round {round}: {rep:#?}");
        assert!(rep.records >= acked.len() as u64);
    }
    // After the crashes, a clean run signs the unsigned tail.
    common::fill(dir.path(), 1, AuditOptions::default());
    let rep = verify_dir(dir.path(), &[], None).unwrap();
    assert!(rep.ok() && rep.unsigned_tail == 0, "{rep:#?}");
}
