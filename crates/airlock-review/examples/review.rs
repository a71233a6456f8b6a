//! Measure a review without building the whole `airlock` binary:
//! `cargo run --release -p airlock-review --example review -- TARGET [REPORT.json]`
//! prints timings and counts to stderr and optionally writes the JSON report.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(target) = args.next() else {
        eprintln!("usage: review TARGET [REPORT.json]");
        std::process::exit(2);
    };
    let out = args.next();
    let t = Instant::now();
    let progress = |m: &str| eprintln!("[{:>7.2}s] {m}", t.elapsed().as_secs_f64());
    let opts = airlock_review::Options {
        progress: Some(&progress),
        ..Default::default()
    };
    match airlock_review::review(&airlock_review::Input::parse(&target), &opts) {
        Ok(r) => {
            eprintln!(
                "total {:.2}s; verdict {}; findings {} (critical {}, high {}, medium {}); capabilities {}; hosts {}; decoded {}; js files {} ({} failed); bytes {}",
                t.elapsed().as_secs_f64(),
                r.verdict.decision.as_str(),
                r.findings.len(),
                r.count_at_least(airlock_review::Severity::Critical),
                r.count_at_least(airlock_review::Severity::High)
                    - r.count_at_least(airlock_review::Severity::Critical),
                r.count_at_least(airlock_review::Severity::Medium)
                    - r.count_at_least(airlock_review::Severity::High),
                r.capabilities.len(),
                r.hosts.len(),
                r.decoded.len(),
                r.stats.js_files_parsed,
                r.stats.js_parse_failures,
                r.stats.bytes_analysed
            );
            if let Some(o) = out {
                let _ = std::fs::write(o, airlock_review::render::json(&r));
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
