//! inspect() on 100 KB and 1 MB agent requests (the Claude Code capture with a tool_result
//! enlarged with real source code), all rules on; plus restoration of a stream.
//!
//! Run: `cargo bench -p airlock-wire --bench inspect`

use std::hint::black_box;
use std::time::{Duration, Instant};

use airlock_detect::Engine;
use airlock_wire::*;
use criterion::{BenchmarkId, Criterion, Throughput};

const CAPTURE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/agents/claude-code-2.1.332.jsonl"
));
const CODE: &[&str] = &[
    include_str!("../src/inspect.rs"),
    include_str!("../src/sse.rs"),
    include_str!("../src/json.rs"),
    include_str!("../src/vault.rs"),
];

struct Nop;
impl Detector for Nop {
    fn detect(&self, _: &str, _: &mut Vec<Detection>) -> Coverage {
        Coverage::Whole
    }
    fn normalize(&self, _: &str, _: &mut Vec<Replacement>) {}
}

fn base_body() -> String {
    for l in CAPTURE.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("capture line");
        if v["via"] == "direct" {
            return v["body"].as_str().expect("body").to_owned();
        }
    }
    panic!("no direct request in capture")
}

/// The capture with a Read tool_use/tool_result pair whose result is `size` bytes of code
/// (with `secrets` secrets sprinkled in).
fn request(size: usize, secrets: bool) -> Vec<u8> {
    let base = base_body();
    let mut code = String::new();
    let mut i = 0;
    while code.len() < size.saturating_sub(base.len()) {
        code.push_str(CODE[i % CODE.len()]);
        if secrets && i % 8 == 3 {
            code.push_str("\nlet token = \"ghp_Zq8T2vLmW4xR9sKp3NbY7cHd1FgJ6u0Yz2wq\"; // contact jane.doe@payments-corp.com\n");
        }
        i += 1;
    }
    code.truncate(size.saturating_sub(base.len()));
    while !code.is_char_boundary(code.len()) {
        code.pop();
    }
    let lit = serde_json::to_string(&code).expect("json");
    let pre = format!(
        r#"{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_1","name":"Read","input":{{"file_path":"/tmp/proj/src/lib.rs"}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_1","content":{lit}}}]}},"#
    );
    let at = base.find("\"messages\":[").expect("messages") + 12;
    let body = format!("{}{pre}{}", &base[..at], &base[at..]);
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
    body.into_bytes()
}

fn policy() -> Actions {
    Actions {
        pii: Action::Redact,
        custom: Action::Redact,
        ..Actions::default()
    }
}

fn bench(c: &mut Criterion) {
    let engine = Engine::builtin().expect("engine");
    let policy = policy();
    let mut g = c.benchmark_group("inspect");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for (name, size) in [("100KB", 100_000), ("1MB", 1_000_000)] {
        for secrets in [false, true] {
            let body = request(size, secrets);
            g.throughput(Throughput::Bytes(body.len() as u64));
            let id = format!("{name}{}", if secrets { "+secrets" } else { "" });
            g.bench_with_input(BenchmarkId::new("engine", &id), &body, |b, body| {
                let scope = VaultScope::detached();
                b.iter(|| {
                    inspect(
                        Api::AnthropicMessages,
                        black_box(body),
                        &engine,
                        &policy,
                        &scope,
                    )
                    .expect("inspect")
                })
            });
            if !secrets {
                g.bench_with_input(
                    BenchmarkId::new("wire_only_nop_detector", &id),
                    &body,
                    |b, body| {
                        let scope = VaultScope::detached();
                        b.iter(|| {
                            inspect(
                                Api::AnthropicMessages,
                                black_box(body),
                                &Nop,
                                &policy,
                                &scope,
                            )
                            .expect("inspect")
                        })
                    },
                );
                g.bench_with_input(BenchmarkId::new("peek", &id), &body, |b, body| {
                    b.iter(|| peek(Api::AnthropicMessages, black_box(body)).expect("peek"))
                });
            }
        }
    }
    g.finish();

    let body = request(1_000_000, false);
    let text = std::str::from_utf8(&body).expect("utf8");
    let mut g = c.benchmark_group("parts_1MB");
    g.sample_size(20)
        .throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("utf8_check", |b| {
        b.iter(|| std::str::from_utf8(black_box(&body)).is_ok())
    });
    g.bench_function("json_parse", |b| {
        b.iter(|| airlock_wire::json::parse(black_box(text)).is_ok())
    });
    g.bench_function("serde_json_ignored_any", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).is_ok())
    });
    g.bench_function("json_parse_and_decode_all", |b| {
        b.iter(|| {
            fn walk(src: &str, v: &airlock_wire::json::Val) -> usize {
                use airlock_wire::json::Val;
                match v {
                    Val::Str(s) => s.decode(src).text.len(),
                    Val::Arr(a) => a.iter().map(|x| walk(src, x)).sum(),
                    Val::Obj(m) => m.iter().map(|(_, x)| walk(src, x)).sum(),
                    _ => 0,
                }
            }
            let v = airlock_wire::json::parse(text).expect("parse");
            walk(text, &v)
        })
    });
    g.finish();

    // Stream restoration: 2,000 text deltas, a placeholder every 50.
    let scope = VaultScope::detached();
    let ph = scope
        .placeholder("GITHUB_TOKEN", "ghp_Zq8T2vLmW4xR9sKp3NbY7cHd1FgJ6u0Yz2wq")
        .to_string();
    let mut stream = String::new();
    for i in 0..2000 {
        let text = if i % 50 == 0 {
            format!("see {} ", &ph[..8])
        } else if i % 50 == 1 {
            format!("{} now ", &ph[8..])
        } else {
            "some words of text ".to_owned()
        };
        stream.push_str(&format!("event: content_block_delta\ndata: {}\n\n", serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}})));
    }
    let mut g = c.benchmark_group("stream_restore");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("anthropic_2000_deltas", |b| {
        b.iter(|| {
            let mut r = StreamRestorer::new(Api::AnthropicMessages, scope.clone());
            let mut n = 0;
            for c in stream.as_bytes().chunks(1400) {
                n += r.push(c).len();
            }
            n + r.finish().len()
        })
    });
    g.finish();
}

fn pct(mut t: Vec<Duration>) -> String {
    t.sort();
    let n = t.len();
    format!(
        "min {:?} p50 {:?} p99 {:?} max {:?}",
        t[0],
        t[n / 2],
        t[(n * 99 / 100).min(n - 1)],
        t[n - 1]
    )
}

/// Wall-clock min/p50/p99 of single inspect() calls (criterion reports means; the gateway goal
/// is a p99). `cached` is the engine behind a warm [`CachedDetector`]: the agent resending the
/// conversation it sent on the previous turn.
fn percentiles() {
    let engine = Engine::builtin().expect("engine");
    let cached = CachedDetector::new(Engine::builtin().expect("engine"));
    let policy = policy();
    for (name, size, n) in [("100KB", 100_000, 300), ("1MB", 1_000_000, 60)] {
        for secrets in [false, true] {
            let body = request(size, secrets);
            let scope = VaultScope::detached();
            let _ = inspect(Api::AnthropicMessages, &body, &cached, &policy, &scope);
            for (dname, det) in [
                ("engine", &engine as &dyn Detector),
                ("engine, cached (resend)", &cached as &dyn Detector),
                ("wire only, no-op detector", &Nop as &dyn Detector),
            ] {
                let mut wall = Vec::with_capacity(n);
                for _ in 0..n {
                    let s = Instant::now();
                    black_box(
                        inspect(Api::AnthropicMessages, &body, det, &policy, &scope)
                            .expect("inspect"),
                    );
                    wall.push(s.elapsed());
                }
                let r =
                    inspect(Api::AnthropicMessages, &body, det, &policy, &scope).expect("inspect");
                println!(
                    "inspect {name}{} [{dname}] ({} bytes, {} findings): {}",
                    if secrets { "+secrets" } else { "" },
                    body.len(),
                    r.findings.len(),
                    pct(wall),
                );
            }
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    percentiles();
}
