//! The source-code corpus of the `scan` bench and the `throughput` example (which includes this
//! file with `#[path]`), so that both measure the same files.

use std::path::Path;

/// Source files under `dir` (Rust, TOML, Markdown, C, JavaScript; valid UTF-8, under 2 MiB),
/// in path order, until about `limit` bytes.
pub fn source_files(dir: &Path, limit: usize) -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<Vec<u8>>, total: &mut usize, limit: usize) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if *total >= limit {
                return;
            }
            if p.is_dir() {
                walk(&p, out, total, limit);
            } else if p
                .extension()
                .is_some_and(|e| e == "rs" || e == "toml" || e == "md" || e == "c" || e == "js")
                && let Ok(b) = std::fs::read(&p)
                && b.len() < 2 << 20
                && std::str::from_utf8(&b).is_ok()
            {
                *total += b.len() + 1;
                out.push(b);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out, &mut 0, limit);
    out
}
