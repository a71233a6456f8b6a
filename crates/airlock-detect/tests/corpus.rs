//! Real-text checks: the vendored dependency sources (clean code, near-zero secret findings)
//! and the real agent captures in ../shared/fixtures/agents (hostile-shaped JSON, no panics).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock_detect::{Category, Engine};

/// Cap on bytes scanned from the registry so the test stays fast.
const MAX_BYTES: usize = 48 * 1024 * 1024;
const MAX_TIME: Duration = Duration::from_secs(40);

fn registry_src() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let dir = home.join("registry").join("src");
    dir.is_dir().then_some(dir)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|e| {
            matches!(
                e.to_str(),
                Some(
                    "rs" | "toml"
                        | "md"
                        | "json"
                        | "js"
                        | "c"
                        | "h"
                        | "py"
                        | "txt"
                        | "yml"
                        | "yaml"
                )
            )
        }) {
            files.push(p);
        }
    }
}

/// `name-version` of every registry package in the workspace's Cargo.lock, sorted.
fn locked_packages() -> Vec<String> {
    let lock = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
    let text = std::fs::read_to_string(lock).expect("Cargo.lock");
    let lock: toml::Table = toml::from_str(&text).expect("Cargo.lock is TOML");
    let packages = lock.get("package").and_then(toml::Value::as_array);
    let mut out: Vec<String> = packages
        .into_iter()
        .flatten()
        .filter(|p| {
            p.get("source")
                .and_then(toml::Value::as_str)
                .is_some_and(|s| s.starts_with("registry+"))
        })
        .filter_map(|p| {
            let field = |k| p.get(k).and_then(toml::Value::as_str);
            Some(format!("{}-{}", field("name")?, field("version")?))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn vendored_dependency_sources_have_near_zero_secret_findings() {
    let Some(dir) = registry_src() else {
        eprintln!("no cargo registry sources here; skipping");
        return;
    };
    let engine = Engine::builder()
        .with_builtin()
        .only(&[Category::Secret])
        .build()
        .unwrap();
    // Only the packages this workspace locks: the registry also holds whatever else this
    // machine's cargo fetched (an installed tool's dependencies), which would make the count
    // depend on the machine.
    let mut files = Vec::new();
    let locked = locked_packages();
    assert!(!locked.is_empty(), "no registry packages in Cargo.lock");
    let Ok(indexes) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut indexes: Vec<PathBuf> = indexes.flatten().map(|e| e.path()).collect();
    indexes.sort();
    for index in indexes {
        for package in &locked {
            walk(&index.join(package), &mut files);
        }
    }
    let started = Instant::now();
    let mut bytes = 0usize;
    let mut scanned = 0usize;
    let mut findings = Vec::new();
    for f in files {
        if bytes >= MAX_BYTES || started.elapsed() > MAX_TIME {
            break;
        }
        let Ok(data) = std::fs::read(&f) else {
            continue;
        };
        if data.len() > 4 << 20 {
            continue;
        }
        bytes += data.len();
        scanned += 1;
        for x in engine.scan_bytes(&data) {
            let rel = f.strip_prefix(&dir).unwrap_or(&f).display().to_string();
            findings.push(format!(
                "{rel}:{}:{} {} {} {}",
                x.line, x.column, x.rule_id, x.confidence, x.preview
            ));
        }
    }
    // Cargo built this workspace from these sources, so they are here: a walk that found
    // none would pass while checking nothing.
    assert!(
        scanned > 100,
        "only {scanned} files of the locked packages under {}",
        dir.display()
    );
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "scanned {scanned} files, {mb:.1} MB in {:.1}s: {} secret findings",
        started.elapsed().as_secs_f64(),
        findings.len()
    );
    for f in &findings {
        eprintln!("  {f}");
    }
    // Near zero: at most one secret finding per 4 MB of real dependency source (the number
    // measured for docs/detection.md is printed above; run with --nocapture).
    assert!(
        findings.len() as f64 <= (mb / 4.0).max(3.0),
        "{} secret findings in {mb:.1} MB",
        findings.len()
    );
}

#[test]
fn agent_captures_scan_without_panics_and_find_planted_values() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/agents"
    );
    let Ok(rd) = std::fs::read_dir(dir) else {
        eprintln!("no fixtures at {dir}; skipping");
        return;
    };
    let engine = Engine::builtin().unwrap();
    let mut n = 0;
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(body) = v.get("body").and_then(|b| b.as_str()) else {
                continue;
            };
            let base = engine.scan(body);
            for f in &base {
                assert!(f.start < f.end && f.end <= body.len());
                assert!(body.is_char_boundary(f.start) && body.is_char_boundary(f.end));
            }
            // Plant a secret in the middle of the real prompt: it must be found at its offset.
            if body.len() > 1000 {
                let mid = (0..=body.len() / 2)
                    .rev()
                    .find(|&i| body.is_char_boundary(i))
                    .unwrap();
                let token = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1";
                let token = format!(
                    "{token}{}",
                    airlock_detect::validate::crc32_base62_suffix("aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1")
                );
                let planted = format!("{} {token} {}", &body[..mid], &body[mid..]);
                let found = engine.scan(&planted);
                assert!(
                    found.iter().any(|f| &*f.rule_id == "github-pat"
                        && f.start == mid + 1
                        && f.end == mid + 1 + token.len()),
                    "planted token not found in {}",
                    p.display()
                );
                n += 1;
            }
        }
    }
    assert!(n >= 5, "expected at least 5 large agent bodies, got {n}");
}
