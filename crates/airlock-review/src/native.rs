//! Native executables: find the JavaScript embedded by Bun (`bun build --compile`) and Node
//! single-executable applications; otherwise extract printable strings.
//!
//! Bun's module graph ends with the trailer `\n---- Bun! ----\n`, preceded by an `Offsets`
//! struct and the raw bytes the offsets point into. The sizes of `Offsets` and of each module
//! record changed between Bun versions, so both are derived from the data: every candidate size
//! is tried and the first one under which every record points inside the blob at a plausible
//! module name wins.

use memchr::memmem;
use object::{Object, ObjectSection};

/// The Bun standalone trailer.
pub const BUN_TRAILER: &[u8] = b"\n---- Bun! ----\n";
/// Node SEA blob magic (little-endian u32 0x0143da20).
pub const SEA_MAGIC: [u8; 4] = [0x20, 0xda, 0x43, 0x01];
const SEA_FUSE: &[u8] = b"NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2:1";
/// Printable runs shorter than this are not kept by string extraction.
pub const MIN_STRING_RUN: usize = 6;
/// Cap on text produced by string extraction.
pub const MAX_STRINGS_BYTES: usize = 96 << 20;

/// One module recovered from an executable.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    pub data: Vec<u8>,
}

/// What was found inside an executable.
#[derive(Debug)]
pub struct Extracted {
    /// `bun`, `node-sea` or `strings`.
    pub format: &'static str,
    pub modules: Vec<Module>,
    pub notes: Vec<String>,
}

/// True when the bytes start like an ELF, Mach-O or PE executable.
pub fn is_executable(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
        || data.starts_with(b"MZ")
        || data.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
        || data.starts_with(&[0xce, 0xfa, 0xed, 0xfe])
        || data.starts_with(&[0xca, 0xfe, 0xba, 0xbe])
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The section that holds Bun's graph, when the container format names one.
fn bun_section(data: &[u8]) -> Option<&[u8]> {
    let file = object::File::parse(data).ok()?;
    for s in file.sections() {
        let name = s.name().unwrap_or("");
        let seg = s.segment_name().ok().flatten().unwrap_or("");
        if name == ".bun" || (name == "__bun" && (seg == "__BUN" || seg.is_empty())) {
            return s.data().ok();
        }
    }
    None
}

fn plausible_name(b: &[u8]) -> Option<String> {
    if b.is_empty() || b.len() > 4096 {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    if s.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(s.to_string())
}

/// Parse a Bun module graph from a blob that contains the trailer.
pub fn parse_bun_graph(blob: &[u8]) -> Result<Vec<Module>, String> {
    let t = memmem::rfind(blob, BUN_TRAILER).ok_or("no Bun trailer")?;
    // Offsets { byte_count: u64, modules_ptr: {u32 offset, u32 length}, ... } then trailer.
    for osize in (16..=96).step_by(4) {
        let Some(off) = t.checked_sub(osize) else {
            break;
        };
        let (Some(byte_count), Some(mod_off), Some(mod_len)) = (
            u64_at(blob, off),
            u32_at(blob, off + 8),
            u32_at(blob, off + 12),
        ) else {
            continue;
        };
        let Ok(byte_count) = usize::try_from(byte_count) else {
            continue;
        };
        let Some(base) = off.checked_sub(byte_count) else {
            continue;
        };
        let raw = &blob[base..off];
        let (mod_off, mod_len) = (mod_off as usize, mod_len as usize);
        if mod_len == 0 || mod_off.checked_add(mod_len).is_none_or(|e| e > raw.len()) {
            continue;
        }
        let list = &raw[mod_off..mod_off + mod_len];
        if let Some(mods) = records(raw, list) {
            return Ok(mods);
        }
    }
    Err("found the Bun trailer but no consistent module table".into())
}

/// Try every record size: name and contents pointers must be in bounds, names plausible.
fn records(raw: &[u8], list: &[u8]) -> Option<Vec<Module>> {
    'size: for rsize in (16..=160).step_by(4) {
        if !list.len().is_multiple_of(rsize) {
            continue;
        }
        let n = list.len() / rsize;
        let mut mods = Vec::with_capacity(n);
        for i in 0..n {
            let r = i * rsize;
            let (no, nl, co, cl) = (
                u32_at(list, r)?,
                u32_at(list, r + 4)?,
                u32_at(list, r + 8)?,
                u32_at(list, r + 12)?,
            );
            let (no, nl, co, cl) = (no as usize, nl as usize, co as usize, cl as usize);
            let Some(name) = raw.get(no..no.saturating_add(nl)).and_then(plausible_name) else {
                continue 'size;
            };
            let Some(contents) = raw.get(co..co.saturating_add(cl)) else {
                continue 'size;
            };
            // A real record table has names that look like paths.
            if !(name.contains('/') || name.contains('.')) {
                continue 'size;
            }
            mods.push(Module {
                name,
                data: contents.to_vec(),
            });
        }
        return Some(mods);
    }
    None
}

/// Parse a Node SEA blob at `at` (magic, flags, then length-prefixed strings).
fn parse_sea(data: &[u8], at: usize) -> Option<Module> {
    let flags = u32_at(data, at + 4)?;
    if flags > 0xff {
        return None;
    }
    let mut p = at + 8;
    // Newer Node versions write the entry path before the code.
    let l1 = usize::try_from(u64_at(data, p)?).ok()?;
    let first = data.get(p + 8..(p + 8).checked_add(l1)?)?;
    p = p + 8 + l1;
    if l1 < 4096
        && plausible_name(first).is_some()
        && (first.ends_with(b".js") || first.ends_with(b".cjs") || first.ends_with(b".mjs"))
    {
        let l2 = usize::try_from(u64_at(data, p)?).ok()?;
        let code = data.get(p + 8..(p + 8).checked_add(l2)?)?;
        return Some(Module {
            name: String::from_utf8_lossy(first).into_owned(),
            data: code.to_vec(),
        });
    }
    Some(Module {
        name: "sea-main.js".into(),
        data: first.to_vec(),
    })
}

/// Printable ASCII runs (at least [`MIN_STRING_RUN`] long), one per line, capped.
pub fn strings(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in data.iter().enumerate() {
        let printable = (0x20..0x7f).contains(&b) || b == b'\t';
        match (printable, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= MIN_STRING_RUN {
                    out.extend_from_slice(&data[s..i]);
                    out.push(b'\n');
                    if out.len() >= MAX_STRINGS_BYTES {
                        return out;
                    }
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start
        && data.len() - s >= MIN_STRING_RUN
    {
        out.extend_from_slice(&data[s..]);
    }
    out
}

/// Find the embedded JavaScript of an executable.
pub fn extract(data: &[u8]) -> Extracted {
    let mut notes = Vec::new();
    // 1. Bun: the named section first, else a trailer anywhere (older Bun appended the graph).
    let region = bun_section(data);
    let bun = match region {
        Some(sec) => Some(parse_bun_graph(sec)),
        None if memmem::rfind(data, BUN_TRAILER).is_some() => Some(parse_bun_graph(data)),
        None => None,
    };
    match bun {
        Some(Ok(modules)) if !modules.is_empty() => {
            return Extracted {
                format: "bun",
                modules,
                notes,
            };
        }
        Some(Ok(_)) => notes.push("Bun module graph is empty".into()),
        Some(Err(e)) => notes.push(format!("Bun standalone executable, but: {e}")),
        None => {}
    }
    // 2. Node single-executable application.
    if memmem::find(data, SEA_FUSE).is_some() || memmem::find(data, b"NODE_SEA_BLOB").is_some() {
        for at in memmem::find_iter(data, &SEA_MAGIC) {
            if let Some(m) = parse_sea(data, at)
                && !m.data.is_empty()
            {
                return Extracted {
                    format: "node-sea",
                    modules: vec![m],
                    notes,
                };
            }
        }
        notes.push("Node single-executable fuse found but no readable SEA blob".into());
    }
    if memmem::find(data, b"PAYLOAD_POSITION").is_some()
        || memmem::find(data, b"pkg/prelude").is_some()
    {
        notes
            .push("looks like a pkg executable: its snapshot is not unpacked; strings only".into());
    } else if memmem::find(data, b"nexe~~sentinel").is_some() {
        notes.push("looks like a nexe executable: strings only".into());
    }
    notes.push("no embedded JavaScript format recognised: reviewed printable strings only".into());
    Extracted {
        format: "strings",
        modules: vec![Module {
            name: "strings.txt".into(),
            data: strings(data),
        }],
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a graph the way Bun lays it out, with a given record and Offsets size.
    pub(crate) fn bun_blob(mods: &[(&str, &str)], record: usize, offsets: usize) -> Vec<u8> {
        let mut raw = Vec::new();
        let mut ptrs = Vec::new();
        for (n, c) in mods {
            let no = raw.len();
            raw.extend_from_slice(n.as_bytes());
            let co = raw.len();
            raw.extend_from_slice(c.as_bytes());
            ptrs.push((no, n.len(), co, c.len()));
        }
        let list_off = raw.len();
        for (no, nl, co, cl) in ptrs {
            let mut rec = vec![0u8; record];
            rec[0..4].copy_from_slice(&(no as u32).to_le_bytes());
            rec[4..8].copy_from_slice(&(nl as u32).to_le_bytes());
            rec[8..12].copy_from_slice(&(co as u32).to_le_bytes());
            rec[12..16].copy_from_slice(&(cl as u32).to_le_bytes());
            raw.extend_from_slice(&rec);
        }
        let list_len = raw.len() - list_off;
        let mut out = Vec::new();
        out.extend_from_slice(&(raw.len() as u64).to_le_bytes()); // section length prefix
        let byte_count = raw.len() as u64;
        out.extend_from_slice(&raw);
        let mut off = vec![0u8; offsets];
        off[0..8].copy_from_slice(&byte_count.to_le_bytes());
        off[8..12].copy_from_slice(&(list_off as u32).to_le_bytes());
        off[12..16].copy_from_slice(&(list_len as u32).to_le_bytes());
        out.extend_from_slice(&off);
        out.extend_from_slice(BUN_TRAILER);
        out
    }

    #[test]
    fn bun_graph_any_layout() {
        for (rec, off) in [(36, 24), (52, 32), (64, 40), (40, 28)] {
            let blob = bun_blob(
                &[
                    ("/$bunfs/root/cli.js", "console.log(1)"),
                    ("/$bunfs/root/x.wasm", "\0asm"),
                ],
                rec,
                off,
            );
            let mods = parse_bun_graph(&blob).unwrap();
            assert_eq!(mods.len(), 2, "record {rec} offsets {off}");
            assert_eq!(mods[0].name, "/$bunfs/root/cli.js");
            assert_eq!(mods[0].data, b"console.log(1)");
        }
    }

    #[test]
    fn truncated_or_garbage_graphs_do_not_panic() {
        let blob = bun_blob(&[("/$bunfs/root/cli.js", "x")], 36, 32);
        for cut in 0..blob.len() {
            let _ = parse_bun_graph(&blob[cut..]);
        }
        let mut junk = vec![0xffu8; 200];
        junk.extend_from_slice(BUN_TRAILER);
        assert!(parse_bun_graph(&junk).is_err());
    }

    #[test]
    fn string_runs() {
        let s = strings(b"\x00\x01hello world\x00ab\x00https://x.example.com/a\xff");
        assert_eq!(s, b"hello world\nhttps://x.example.com/a\n");
    }

    #[test]
    fn sea_blob() {
        let mut d = b"ELF....".to_vec();
        d.extend_from_slice(SEA_FUSE);
        d.extend_from_slice(&SEA_MAGIC);
        d.extend_from_slice(&0u32.to_le_bytes());
        d.extend_from_slice(&(7u64).to_le_bytes());
        d.extend_from_slice(b"main.js");
        let code = b"fetch('https://sea.example.net/x')";
        d.extend_from_slice(&(code.len() as u64).to_le_bytes());
        d.extend_from_slice(code);
        let x = extract(&d);
        assert_eq!(x.format, "node-sea");
        assert_eq!(x.modules[0].data, code);
    }
}
