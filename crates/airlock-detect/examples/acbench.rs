use std::time::Instant;
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok().and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok())).unwrap_or(0)
}
fn main() {
    let engine = airlock_detect::Engine::builtin().unwrap();
    let mut kws: Vec<String> = engine.rules().iter().flat_map(|r| r.keywords.iter().map(|k| k.to_ascii_lowercase())).collect();
    kws.sort(); kws.dedup();
    println!("{} keywords", kws.len());
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(1 << 15);
    let src: String = std::fs::read_to_string(std::env::args().nth(1).unwrap()).unwrap();
    for (name, kind, mk, ci) in [
        ("dfa overlapping ci", Some(AhoCorasickKind::DFA), MatchKind::Standard, true),
        ("dfa leftmost ci", Some(AhoCorasickKind::DFA), MatchKind::LeftmostFirst, true),
        ("auto leftmost ci", None, MatchKind::LeftmostFirst, true),
        ("auto leftmost cs", None, MatchKind::LeftmostFirst, false),
    ] {
        let ac = AhoCorasick::builder().kind(kind).match_kind(mk).ascii_case_insensitive(ci).build(&kws).unwrap();
        for (tn, t) in [("prose", text.as_bytes()), ("src", src.as_bytes())] {
            let c0 = cpu_ns(); let w = Instant::now();
            let mut n = 0;
            for _ in 0..20 { n += if mk == MatchKind::Standard { ac.find_overlapping_iter(t).count() } else { ac.find_iter(t).count() }; }
            let cpu = (cpu_ns() - c0) as f64 / 1e9;
            println!("{name:<22} {tn:<6} cpu {:>7.0} MB/s wall {:>7.0} MB/s hits {}", (t.len() * 20) as f64 / 1e6 / cpu, (t.len()*20) as f64/1e6/w.elapsed().as_secs_f64(), n / 20);
        }
    }
    let c0 = cpu_ns();
    let mut n = 0; for _ in 0..20 { n += src.bytes().filter(|b| b.is_ascii_digit()).count(); }
    println!("digit count loop src cpu {:.0} MB/s {n}", (src.len()*20) as f64/1e6/((cpu_ns()-c0) as f64/1e9));
}
