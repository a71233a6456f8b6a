//! Engine throughput on (a) ordinary source code: the vendored sources of this workspace's
//! dependencies under `$CARGO_HOME/registry/src` (Rust, some C/JS), and (b) large agent prompt
//! JSON: the `body` fields of the real captures in `../shared/fixtures/agents/*.jsonl`.
//!
//! Run: `cargo bench -p airlock-detect --bench scan`

use std::path::PathBuf;

#[path = "support/corpus.rs"]
mod corpus;

use airlock_detect::Engine;
use corpus::source_files;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SOURCE_BYTES: usize = 16 * 1024 * 1024;

fn registry_src() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let dir = home.join("registry").join("src");
    dir.is_dir().then_some(dir)
}

fn agent_bodies() -> Vec<u8> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/agents"
    );
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(body) = v.get("body").and_then(|b| b.as_str())
                && body.len() > 1000
            {
                out.extend_from_slice(body.as_bytes());
                out.push(b'\n');
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let engine = Engine::builtin().expect("built-in rules compile");
    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    if let Some(dir) = registry_src() {
        let files = source_files(&dir, SOURCE_BYTES);
        // All of them as one text, a newline after each.
        let src: Vec<u8> = files
            .iter()
            .flat_map(|f| f.iter().copied().chain([b'\n']))
            .collect();
        if !src.is_empty() {
            g.throughput(Throughput::Bytes(src.len() as u64));
            g.bench_function(format!("source_code_{}MB", src.len() >> 20), |b| {
                b.iter(|| engine.scan_bytes(&src).len())
            });
            // The same files one by one, as `airlock scan` hands them to the engine (and the
            // gateway its text leaves): each stays in the cache through the engine's passes,
            // and fixed costs per scan count.
            g.bench_function(format!("source_files_{}MB", src.len() >> 20), |b| {
                b.iter(|| {
                    files
                        .iter()
                        .map(|f| engine.scan_bytes(f).len())
                        .sum::<usize>()
                })
            });
        }
    }
    let bodies = agent_bodies();
    if !bodies.is_empty() {
        // Repeat to ~4 MB so one iteration is long enough to time reliably.
        let mut big = Vec::new();
        while big.len() < 4 << 20 {
            big.extend_from_slice(&bodies);
        }
        g.throughput(Throughput::Bytes(big.len() as u64));
        g.bench_function("agent_prompt_json", |b| {
            b.iter(|| engine.scan_bytes(&big).len())
        });
    }
    let clean = "The quick brown fox jumps over the lazy dog. ".repeat(1 << 15);
    g.throughput(Throughput::Bytes(clean.len() as u64));
    g.bench_function("ascii_prose_1.4MB", |b| {
        b.iter(|| engine.scan(&clean).len())
    });
    let cjk = "敏捷的棕色狐狸跳过了懒狗。日本語のテキスト。".repeat(1 << 14);
    g.throughput(Throughput::Bytes(cjk.len() as u64));
    g.bench_function("cjk_text", |b| b.iter(|| engine.scan(&cjk).len()));
    // Hostile: a bidi control that does not override and a right-to-left check of its line at
    // every ninth byte (1 MB, one line). Each check read 8 KB of the line: 0.2 MB/s.
    let bidi = "x\u{202E}y\u{202C} ".repeat((1 << 20) / 9);
    g.throughput(Throughput::Bytes(bidi.len() as u64));
    g.bench_function("hostile_bidi_controls_1MB", |b| {
        b.iter(|| engine.scan(&bidi).len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
