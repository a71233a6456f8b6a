//! Engine throughput in MB per CPU-second (thread CPU time from /proc/thread-self/schedstat),
//! so the figure is meaningful on a loaded machine. Usage:
//! `cargo run --release -p airlock-detect --example throughput [FILES... | DIR]`
//! Without arguments it uses the same corpora as the criterion bench; with one directory, every
//! file `airlock scan` would scan in it, one by one. `WITHOUT=split-windows` (or another name of
//! `Engine::without_shortcut`) with a directory, or with one file scanned whole, compares the
//! engine with and without that shortcut in alternate rounds of one process.

use std::path::PathBuf;
use std::time::Instant;

use airlock_detect::{Anchor, DetectError, Engine};

// The corpus the `scan` bench measures.
#[path = "../benches/support/corpus.rs"]
mod corpus;

// The engine's keyword pass, compiled into this example so it can be timed alone (it is not
// public API).
#[allow(dead_code)]
#[path = "../src/keywords.rs"]
mod keywords;

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}

fn measure(name: &str, engine: &Engine, data: &[u8]) {
    // One scan first, untimed: it compiles what this text needs and `warm` leaves to first use
    // (the Unicode forms of the regexes of windows that are not ASCII).
    engine.scan_bytes(data);
    let iters = (64 << 20) / data.len().max(1) + 1;
    let (w0, c0) = (Instant::now(), cpu_ns());
    let mut n = 0;
    for _ in 0..iters {
        n += engine.scan_bytes(data).len();
    }
    let (wall, cpu) = (w0.elapsed().as_secs_f64(), (cpu_ns() - c0) as f64 / 1e9);
    let mb = (data.len() * iters) as f64 / 1e6;
    println!(
        "{name:<28} {:>7.1} MB  wall {:>7.1} MB/s  cpu {:>7.1} MB/s  ({} findings/iter)",
        data.len() as f64 / 1e6,
        mb / wall,
        mb / cpu.max(1e-9),
        n / iters
    );
}

/// The keyword pass alone over `data`: the engine's matcher, and the Aho-Corasick DFA it replaced.
fn keyword_pass(engine: &Engine, data: &[u8]) {
    let mut patterns: Vec<String> = Vec::new();
    for r in engine.rules() {
        if r.detector_name().is_some() || r.anchor != Anchor::Keywords {
            continue;
        }
        for k in &r.keywords {
            let k = k.to_ascii_lowercase();
            if !k.is_empty() && !patterns.contains(&k) {
                patterns.push(k);
            }
        }
    }
    let t = Instant::now();
    let kw = keywords::Keywords::new(&patterns).expect("keywords");
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let ac = aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(&patterns)
        .expect("aho-corasick");
    let iters = (64 << 20) / data.len().max(1) + 1;
    let mb = (data.len() * iters) as f64 / 1e6;
    // Best of five rounds: the pass is short, and other processes' bursts skew a single one.
    let best = |f: &mut dyn FnMut() -> usize| {
        let mut cpu = f64::MAX;
        let mut n = 0;
        for _ in 0..5 {
            let c0 = cpu_ns();
            n = (0..iters).map(|_| f()).sum::<usize>();
            cpu = cpu.min((cpu_ns() - c0) as f64 / 1e9);
        }
        (cpu, n)
    };
    let mut hits = Vec::new();
    let (cpu, n) = best(&mut || {
        kw.find(data, &mut hits);
        hits.len()
    });
    println!(
        "{:<28} {:>7} kw    build {build_ms:>5.1} ms  cpu {:>7.1} MB/s  ({} hits/iter)",
        "  keyword pass (prefix DFA)",
        patterns.len(),
        mb / cpu.max(1e-9),
        n / iters
    );
    let (cpu, n) = best(&mut || ac.find_overlapping_iter(data).count());
    println!(
        "{:<28} {:>7} kw                   cpu {:>7.1} MB/s  ({} hits/iter)",
        "  keyword pass (aho-corasick)",
        patterns.len(),
        mb / cpu.max(1e-9),
        n / iters
    );
}

/// Every file under `dir` that `airlock scan` would scan (at most 10 MiB, no NUL byte in the
/// first 8 KiB), read first, then scanned one by one on this thread: five rounds, the best
/// one counts (the engine's share of a whole-process `airlock scan`).
fn tree(engine: &Engine, dir: &str) {
    let mut files = Vec::new();
    files_of(std::path::Path::new(dir), &mut files);
    let mb = files.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let (mut best, mut n) = (f64::MAX, 0);
    for _ in 0..5 {
        let c0 = cpu_ns();
        n = files
            .iter()
            .map(|f| engine.scan_bytes(f).len())
            .sum::<usize>();
        best = best.min((cpu_ns() - c0) as f64 / 1e9);
    }
    println!(
        "{dir}: {} files, {mb:.1} MB, best of 5: cpu {:.3} s, {:.1} MB/s ({n} findings)",
        files.len(),
        best,
        mb / best.max(1e-9)
    );
}

/// Every file under `p` that `airlock scan` would scan, in path order.
fn files_of(p: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    if p.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        v.sort();
        v.iter().for_each(|q| files_of(q, out));
    } else if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.len() <= 10 << 20)
        && let Ok(b) = std::fs::read(p)
        && !b[..b.len().min(8192)].contains(&0)
    {
        out.push(b);
    }
}

/// The files of `dir` as [`tree`] reads them, scanned by `a` and `b` in alternate rounds
/// (eight each), so both meet the same machine: CPU seconds per round and the ratio of medians.
fn compare(a: &Engine, b: &Engine, b_name: &str, dir: &str) {
    let mut files = Vec::new();
    match std::path::Path::new(dir).is_file() {
        // One file, scanned whole (binary or not).
        true => files.push(std::fs::read(dir).expect("read")),
        false => files_of(std::path::Path::new(dir), &mut files),
    }
    let mb = files.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let round = |e: &Engine| {
        let c0 = cpu_ns();
        let n = files.iter().map(|f| e.scan_bytes(f).len()).sum::<usize>();
        ((cpu_ns() - c0) as f64 / 1e9, n)
    };
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let (mut na, mut nb) = (0, 0);
    for i in 0..16 {
        if i % 2 == 0 {
            let (t, n) = round(a);
            ta.push(t);
            na = n;
        } else {
            let (t, n) = round(b);
            tb.push(t);
            nb = n;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let (ma, mb_) = (median(&mut ta), median(&mut tb));
    println!(
        "{dir}: {} files, {mb:.1} MB; alternate rounds, CPU s median (min):\n  \
         all shortcuts        {ma:.3} ({:.3})  {:.1} MB/s  {na} findings\n  \
         without {b_name:<12} {mb_:.3} ({:.3})  {:.1} MB/s  {nb} findings\n  \
         ratio {:.2}",
        files.len(),
        ta[0],
        mb / ma,
        tb[0],
        mb / mb_,
        mb_ / ma
    );
}

/// CPU time of the whole process (all threads), from /proc/self/stat (clock ticks, 10 ms).
fn process_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let t: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(t * 10.0)
        })
        .unwrap_or(0.0)
}

fn main() {
    let t = Instant::now();
    let c0 = process_cpu_ms();
    let engine = match std::env::var("ONLY") {
        Ok(o) => {
            let cats: Vec<airlock_detect::Category> =
                o.split(',').map(|c| c.parse().expect("category")).collect();
            Engine::builder()
                .with_builtin()
                .only(&cats)
                .build()
                .expect("rules compile")
        }
        Err(_) => Engine::builtin().expect("rules compile"),
    };
    println!(
        "engine build: wall {:.0} ms, cpu {:.0} ms (all threads, 10 ms ticks), {} rules",
        t.elapsed().as_secs_f64() * 1e3,
        process_cpu_ms() - c0,
        engine.rules().len()
    );
    // What the engine compiles on first use for ASCII text (the ASCII-mode regexes, the digit
    // gate), compiled now: the figures below are steady-state scanning, and `airlock scan` pays
    // this at most once.
    let (w0, c0) = (Instant::now(), process_cpu_ms());
    engine.warm();
    println!(
        "warm: wall {:.0} ms, cpu {:.0} ms (all threads)",
        w0.elapsed().as_secs_f64() * 1e3,
        process_cpu_ms() - c0
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [dir] = &args[..]
        && (std::path::Path::new(dir).is_dir() || std::env::var_os("WITHOUT").is_some())
    {
        match std::env::var("WITHOUT") {
            // `WITHOUT=split-windows`: this engine against one with that shortcut off.
            Ok(name) => {
                let other = Engine::builtin()
                    .expect("rules compile")
                    .without_shortcut(&name);
                other.warm();
                compare(&engine, &other, &name, dir);
            }
            Err(_) => tree(&engine, dir),
        }
        return;
    }
    if !args.is_empty() {
        for a in args {
            let d = std::fs::read(&a).expect("read");
            measure(&a, &engine, &d);
            keyword_pass(&engine, &d);
        }
        return;
    }
    let home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
    let files = corpus::source_files(&PathBuf::from(home).join("registry/src"), 16 << 20);
    // NUL between files (valid UTF-8, not in source text).
    let src: Vec<u8> = files
        .iter()
        .flat_map(|f| f.iter().copied().chain([0]))
        .collect();
    measure("source code (registry)", &engine, &src);
    keyword_pass(&engine, &src);
    // The same files scanned one by one, as `airlock scan` does (per-scan fixed costs count).
    let (w0, c0) = (Instant::now(), cpu_ns());
    let mut n = 0;
    for _ in 0..4 {
        for f in &files {
            n += engine.scan_bytes(f).len();
        }
    }
    let (wall, cpu) = (w0.elapsed().as_secs_f64(), (cpu_ns() - c0) as f64 / 1e9);
    let mb = (src.len() * 4) as f64 / 1e6;
    println!(
        "{:<28} {:>7} files  wall {:>7.1} MB/s  cpu {:>7.1} MB/s  ({} findings/iter)",
        "same, file by file",
        files.len(),
        mb / wall,
        mb / cpu.max(1e-9),
        n / 4
    );
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/agents"
    );
    let mut bodies = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            for line in std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                    && let Some(b) = v.get("body").and_then(|b| b.as_str())
                    && b.len() > 1000
                {
                    bodies.extend_from_slice(b.as_bytes());
                    bodies.push(b'\n');
                }
            }
        }
    }
    measure("agent prompt JSON", &engine, &bodies);
    measure(
        "ascii prose",
        &engine,
        "The quick brown fox jumps over the lazy dog. "
            .repeat(1 << 15)
            .as_bytes(),
    );
    measure(
        "cjk text",
        &engine,
        "敏捷的棕色狐狸跳过了懒狗。日本語のテキスト。"
            .repeat(1 << 14)
            .as_bytes(),
    );
    // The fixed cost of one scan: the gateway scans every short text leaf of a request (user
    // turns, tool names, small arguments) and the reviewer every string literal of a package.
    let short = [
        "Read part 12 of src/lib.rs",
        "You are a coding agent. Follow the user's instructions.",
        "fn main() { println!(\"hello\"); }",
    ];
    let n = 1_000_000;
    let c0 = cpu_ns();
    let mut found = 0;
    for i in 0..n {
        found += engine.scan(short[i % short.len()]).len();
    }
    println!(
        "{:<28} {:>7.0} ns CPU per scan ({found} findings)",
        "short texts (26-55 bytes)",
        (cpu_ns() - c0) as f64 / n as f64
    );
}
