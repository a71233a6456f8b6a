//! Open-loop load on the audit writer, the way the gateway uses it: THREADS "request
//! handlers" each submit at RATE/THREADS records per second and wait for `Committed`, as the
//! gateway does before finishing a response. Prints achieved rate and submit→committed
//! latency percentiles, overflows and batches.
//!
//! Run: `cargo run --release -p airlock-audit --example audit_load -- [RATE] [SECONDS] [THREADS]`
//! (defaults 5000 10 64). Uses a temp dir (or `$AUDIT_LOAD_DIR`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_audit::{AuditLog, AuditOptions, AuditRecord, Decision};
use time::OffsetDateTime;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(5000).max(1);
    let secs = args.get(1).copied().unwrap_or(10).max(1);
    let threads = args.get(2).copied().unwrap_or(64).max(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir =
        std::env::var_os("AUDIT_LOAD_DIR").map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let log = Arc::new(AuditLog::open(&dir, AuditOptions::default()).expect("open"));
    let per_thread = Duration::from_secs_f64(threads as f64 / rate as f64);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut overflow = 0u64;
                let mut next = Instant::now() + per_thread.mul_f64(t as f64 / threads as f64);
                let mut i = 0u64;
                while next < end {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    i += 1;
                    let mut r = AuditRecord::new(OffsetDateTime::now_utc(), format!("req-{t}-{i}"));
                    r.user = Some("alice".into());
                    r.tool = Some("claude-code".into());
                    r.tool_version = Some("2.1.198".into());
                    r.model = Some("claude-sonnet-4-5".into());
                    r.decision = Some(Decision::Allowed);
                    r.status = Some(200);
                    r.request_bytes = 100_000;
                    let t0 = Instant::now();
                    match log.submit(r) {
                        Ok(c) => {
                            if c.wait().is_ok() {
                                lat.push(t0.elapsed());
                            }
                        }
                        Err(_) => overflow += 1,
                    }
                    next += per_thread;
                }
                (lat, overflow)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut overflow = 0;
    for h in handles {
        let (l, o) = h.join().expect("thread");
        lat.extend(l);
        overflow += o;
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let stats = log.stats();
    println!(
        "target {rate}/s for {secs}s with {threads} threads: committed {} in {:.2}s = {:.0} records/s; overflowed {overflow}; batches {} (avg {:.1} records); checkpoints {}",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        stats.batches,
        stats.committed as f64 / stats.batches.max(1) as f64,
        stats.checkpoints
    );
    println!(
        "submit->committed latency: p50 {:?}  p90 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or_default()
    );
    log.shutdown();
    let rep = airlock_audit::verify_dir(&dir, &[], None).expect("verify");
    println!(
        "verify: ok={} records={} unsigned_tail={}",
        rep.ok(),
        rep.records,
        rep.unsigned_tail
    );
}
