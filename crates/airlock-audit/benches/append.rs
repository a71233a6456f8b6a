//! Append throughput (records/s at several batch sizes) and submit→committed latency of one
//! record on an idle log. Real SQLite files in a temp dir.
//!
//! Run: `cargo bench -p airlock-audit --bench append`

use std::hint::black_box;
use std::time::Duration;

use airlock_audit::{AuditLog, AuditOptions, AuditRecord, Decision, FindingSummary, Usage};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;

fn record(i: u64) -> AuditRecord {
    let mut r = AuditRecord::new(OffsetDateTime::now_utc(), format!("req-{i}"));
    r.user = Some("alice".into());
    r.team = Some("payments".into());
    r.key_id = Some("key_01".into());
    r.client_addr = Some("127.0.0.1:50000".into());
    r.tool = Some("claude-code".into());
    r.tool_version = Some("2.1.198".into());
    r.agent_session_id = Some("0f0e0d0c-0b0a-4000-8000-000000000000".into());
    r.api = Some("anthropic_messages".into());
    r.upstream = Some("anthropic".into());
    r.model = Some("claude-sonnet-4-5".into());
    r.decision = Some(Decision::Allowed);
    r.findings = vec![FindingSummary {
        rule_id: "aws-access-key-id".into(),
        count: 1,
        locations: vec!["messages[3].content[0].text:120-160".into()],
    }];
    r.usage = Some(Usage {
        input_tokens: Some(12000),
        output_tokens: Some(300),
        ..Default::default()
    });
    r.status = Some(200);
    r.latency_total_us = Some(850_000);
    r.latency_upstream_us = Some(849_000);
    r.latency_overhead_us = Some(1000);
    r.request_bytes = 100_000;
    r.response_bytes = 3000;
    r
}

fn throughput(c: &mut Criterion) {
    const N: u64 = 2000;
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for max_batch in [1usize, 64, 1024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(
            dir.path(),
            AuditOptions {
                max_batch,
                queue_capacity: 4096,
                ..Default::default()
            },
        )
        .expect("open");
        g.bench_function(format!("submit_{N}_max_batch_{max_batch}"), |b| {
            b.iter(|| {
                let pending: Vec<_> = (0..N)
                    .map(|i| log.submit(record(i)).expect("queue"))
                    .collect();
                for p in pending {
                    black_box(p.wait().expect("commit"));
                }
            })
        });
        log.shutdown();
    }
    g.finish();
}

fn latency(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), AuditOptions::default()).expect("open");
    let mut i = 0;
    c.bench_function("submit_to_committed_idle", |b| {
        b.iter(|| {
            i += 1;
            black_box(
                log.submit(record(i))
                    .expect("queue")
                    .wait()
                    .expect("commit"),
            )
        })
    });
    log.shutdown();
}

criterion_group!(benches, throughput, latency);
criterion_main!(benches);
