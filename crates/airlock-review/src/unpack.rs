//! Reading hostile inputs into memory: npm tarballs, directories, single files. Nothing is ever
//! extracted to disk, so a member path can never escape; suspicious member paths and links are
//! still reported because a package that contains them is hostile.

use std::io::Read;
use std::path::{Component as PathComponent, Path};

use crate::ReviewError;

/// Safety caps for unpacking. Defaults are generous enough for a ~250 MB agent binary.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Total bytes unpacked from one artefact.
    pub max_total_bytes: u64,
    /// One member's size.
    pub max_file_bytes: u64,
    /// Number of members.
    pub max_files: u64,
    /// Unpacked bytes per compressed byte (zip-bomb guard).
    pub max_ratio: u64,
    /// JavaScript files larger than this are not parsed (string extraction instead).
    pub max_parse_bytes: u64,
    /// Time allowed for fetching one npm spec.
    pub fetch_timeout: std::time::Duration,
}

/// Default cap on total unpacked bytes (2 GiB).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 2 << 30;
/// Default cap on one member (1 GiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;
/// Default cap on the number of members.
pub const DEFAULT_MAX_FILES: u64 = 200_000;
/// Default cap on the compression ratio.
pub const DEFAULT_MAX_RATIO: u64 = 200;
/// Default cap on the size of one parsed JavaScript file (64 MiB).
pub const DEFAULT_MAX_PARSE_BYTES: u64 = 64 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_files: DEFAULT_MAX_FILES,
            max_ratio: DEFAULT_MAX_RATIO,
            max_parse_bytes: DEFAULT_MAX_PARSE_BYTES,
            fetch_timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// One member read into memory.
#[derive(Debug)]
pub struct Member {
    /// Normalised relative path (forward slashes, no leading `package/` for npm tarballs).
    pub path: String,
    pub data: Vec<u8>,
}

/// Members plus what was refused along the way.
#[derive(Debug, Default)]
pub struct Unpacked {
    pub members: Vec<Member>,
    /// Member paths that were absolute, escaped with `..`, or were links (kept as evidence).
    pub refused: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub bytes: u64,
}

/// Normalise a member path; `None` when it is absolute or climbs out with `..`.
pub fn safe_relative(path: &str) -> Option<String> {
    if path.starts_with('/') || path.starts_with('\\') || path.contains('\0') {
        return None;
    }
    // Windows drive letters (C:...) are absolute too.
    let b = path.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    let norm = path.replace('\\', "/");
    for c in Path::new(&norm).components() {
        match c {
            PathComponent::Normal(s) => parts.push(s.to_str()?),
            PathComponent::CurDir => {}
            _ => return None,
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// Counts bytes read and enforces the total-size and ratio caps while decompressing.
struct Capped<R> {
    inner: R,
    read: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(std::io::Error::other(format!(
                "unpacked size passed the cap of {} bytes (size or compression-ratio limit)",
                self.cap
            )));
        }
        Ok(n)
    }
}

/// Read a gzip-compressed tar (an npm `.tgz`) entirely in memory.
pub fn read_tgz(origin: &str, compressed: &[u8], limits: &Limits) -> Result<Unpacked, ReviewError> {
    let bad = |message: String| ReviewError::Archive {
        origin: origin.to_string(),
        message,
    };
    if compressed.len() < 2 || compressed[0] != 0x1f || compressed[1] != 0x8b {
        return Err(bad("not a gzip file (an npm package is a .tgz)".into()));
    }
    let cap = limits.max_total_bytes.min(
        (compressed.len() as u64)
            .saturating_mul(limits.max_ratio)
            .max(1 << 20),
    );
    let gz = flate2::read::GzDecoder::new(compressed);
    let mut ar = tar::Archive::new(Capped {
        inner: gz,
        read: 0,
        cap,
    });
    let mut out = Unpacked::default();
    let entries = ar.entries().map_err(|e| bad(format!("reading tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading tar entry: {e}")))?;
        if out.members.len() as u64 + out.refused.len() as u64 >= limits.max_files {
            return Err(bad(format!("more than {} members", limits.max_files)));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            out.refused.push((
                raw,
                format!("link to {target:?} (links are never followed)"),
            ));
            continue;
        }
        if !kind.is_file()
            && kind != tar::EntryType::Continuous
            && kind != tar::EntryType::GNUSparse
        {
            out.refused.push((
                raw,
                format!("special member type {:?}", kind.as_byte() as char),
            ));
            continue;
        }
        let Some(mut path) = safe_relative(&raw) else {
            out.refused
                .push((raw, "absolute path or path traversal".into()));
            continue;
        };
        // npm tarballs put everything under one top folder, usually `package/`.
        if let Some((_, rest)) = path.split_once('/') {
            path = rest.to_string();
        }
        let size = entry.header().size().unwrap_or(0);
        if size > limits.max_file_bytes {
            return Err(bad(format!(
                "member {path} is {size} bytes, over the cap of {}",
                limits.max_file_bytes
            )));
        }
        let mut data = Vec::with_capacity(size.min(64 << 20) as usize);
        (&mut entry)
            .take(limits.max_file_bytes + 1)
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("member {path}: {e}")))?;
        out.bytes += data.len() as u64;
        out.members.push(Member { path, data });
    }
    Ok(out)
}

/// Read a directory tree into memory without following symlinks.
pub fn read_dir(root: &Path, limits: &Limits) -> Result<Unpacked, ReviewError> {
    let mut out = Unpacked::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| ReviewError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let relp = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let md = match std::fs::symlink_metadata(e.path()) {
                Ok(m) => m,
                Err(err) => {
                    out.notes.push(format!("{relp}: {err}"));
                    continue;
                }
            };
            if md.file_type().is_symlink() {
                let target = std::fs::read_link(e.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                out.refused
                    .push((relp, format!("symlink to {target:?} (not followed)")));
            } else if md.is_dir() {
                if name == ".git" {
                    continue;
                }
                stack.push((e.path(), relp));
            } else if md.is_file() {
                if out.members.len() as u64 >= limits.max_files {
                    return Err(ReviewError::Archive {
                        origin: root.display().to_string(),
                        message: format!("more than {} files", limits.max_files),
                    });
                }
                if md.len() > limits.max_file_bytes || out.bytes + md.len() > limits.max_total_bytes
                {
                    out.notes.push(format!(
                        "{relp}: skipped, {} bytes is over the size cap",
                        md.len()
                    ));
                    continue;
                }
                let data = std::fs::read(e.path()).map_err(|err| ReviewError::Io {
                    path: e.path(),
                    source: err,
                })?;
                out.bytes += data.len() as u64;
                out.members.push(Member { path: relp, data });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths() {
        assert_eq!(
            safe_relative("package/a/b.js").as_deref(),
            Some("package/a/b.js")
        );
        assert_eq!(safe_relative("./package/x").as_deref(), Some("package/x"));
        assert_eq!(safe_relative("../etc/passwd"), None);
        assert_eq!(safe_relative("package/../../x"), None);
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative("C:\\x"), None);
        assert_eq!(safe_relative("a\\..\\..\\b"), None);
    }

    #[test]
    fn not_gzip_is_a_clear_error() {
        let e = read_tgz("x.tgz", b"hello", &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a gzip"), "{e}");
    }
}
