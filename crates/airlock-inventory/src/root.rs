//! Read-only access to a scanned tree as if it were `/`.
//!
//! Every path the scanner handles is a *virtual* path: absolute, as it reads on the scanned
//! machine (`/home/alice/.claude`). [`RootFs::resolve`] maps it to a host path under the scan
//! root one component at a time, following symbolic links itself: an absolute link target is
//! taken relative to the scan root and `..` stops at the root, so no path ever leaves the tree
//! (a mounted disk image with `/usr/bin/claude -> /usr/lib/node_modules/...` links resolves
//! inside the image, not on the scanning machine). Link hops, path depth, directory entries and
//! file sizes are bounded.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed while resolving one path.
pub const MAX_SYMLINK_HOPS: usize = 40;
/// Components in a resolved path.
pub const MAX_DEPTH: usize = 64;
/// Entries read from one directory; the rest are ignored (and reported).
pub const MAX_DIR_ENTRIES: usize = 10_000;

/// A path resolved under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Where to read it on this machine.
    pub host: PathBuf,
    /// The path as it reads on the scanned machine, symbolic links resolved.
    pub vpath: PathBuf,
}

/// The scanned tree.
#[derive(Debug, Clone)]
pub struct RootFs {
    host: PathBuf,
    system: bool,
}

impl RootFs {
    /// Open a scan root (must be an existing directory).
    pub fn new(root: &Path) -> io::Result<RootFs> {
        let host = std::fs::canonicalize(root)?;
        if !std::fs::metadata(&host)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        let system = host == Path::new("/");
        Ok(RootFs { host, system })
    }

    /// Whether the root is this machine's own `/`.
    pub fn is_system_root(&self) -> bool {
        self.system
    }

    /// The root's host path.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Resolve a virtual path (relative paths are taken from `/`). Fails with `NotFound` when a
    /// component does not exist.
    pub fn resolve(&self, vpath: &Path) -> io::Result<Resolved> {
        let mut pending = components_rev(vpath);
        let mut cur: Vec<OsString> = Vec::new();
        let mut hops = 0usize;
        while let Some(c) = pending.pop() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let mut host = self.host_of(&cur);
            host.push(&c);
            let md = std::fs::symlink_metadata(&host)?;
            if md.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&host)?;
                if target.is_absolute() {
                    cur.clear();
                }
                pending.extend(components_rev(&target));
            } else {
                cur.push(c);
                if cur.len() > MAX_DEPTH {
                    return Err(io::Error::other("path too deep"));
                }
            }
        }
        let mut v = PathBuf::from("/");
        for c in &cur {
            v.push(c);
        }
        Ok(Resolved {
            host: self.host_of(&cur),
            vpath: v,
        })
    }

    fn host_of(&self, cur: &[OsString]) -> PathBuf {
        let mut h = self.host.clone();
        for c in cur {
            h.push(c);
        }
        h
    }

    /// Metadata of the resolved path (never of a link).
    pub fn metadata(&self, vpath: &Path) -> io::Result<(Resolved, std::fs::Metadata)> {
        let r = self.resolve(vpath)?;
        let md = std::fs::symlink_metadata(&r.host)?;
        Ok((r, md))
    }

    pub fn is_dir(&self, vpath: &Path) -> bool {
        self.metadata(vpath).is_ok_and(|(_, m)| m.is_dir())
    }

    pub fn is_file(&self, vpath: &Path) -> bool {
        self.metadata(vpath).is_ok_and(|(_, m)| m.is_file())
    }

    /// Read a whole file of at most `limit` bytes.
    pub fn read_bounded(&self, vpath: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let (r, md) = self.metadata(vpath)?;
        if !md.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let f = std::fs::File::open(&r.host)?;
        let mut buf = Vec::new();
        f.take(limit + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > limit {
            return Err(io::Error::other(format!("larger than {limit} bytes")));
        }
        Ok(buf)
    }

    /// The names in a directory, sorted; names that are not UTF-8 are skipped. The second value
    /// is true when the listing was cut at [`MAX_DIR_ENTRIES`].
    pub fn list_dir(&self, vpath: &Path) -> io::Result<(Vec<String>, bool)> {
        let r = self.resolve(vpath)?;
        let mut names = Vec::new();
        let mut cut = false;
        for entry in std::fs::read_dir(&r.host)? {
            if names.len() >= MAX_DIR_ENTRIES {
                cut = true;
                break;
            }
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok((names, cut))
    }
}

/// Components of `p` in reverse order (a stack whose top is the first component); `.` and the
/// root are dropped, `..` is kept as `".."`.
fn components_rev(p: &Path) -> Vec<OsString> {
    p.components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_links_stay_under_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("usr/lib/pkg")).unwrap();
        std::fs::write(root.join("usr/lib/pkg/cli.js"), "x").unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/pkg/cli.js", root.join("usr/bin/tool")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc", root.join("usr/bin/esc")).unwrap();
        let fs = RootFs::new(root).unwrap();
        let r = fs.resolve(Path::new("/usr/bin/tool")).unwrap();
        assert_eq!(r.vpath, Path::new("/usr/lib/pkg/cli.js"));
        assert!(r.host.starts_with(fs.host()));
        // `..` stops at the root: /etc inside the tree, which does not exist.
        let e = fs.resolve(Path::new("/usr/bin/esc")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn link_loops_end() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/b", t.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/a", t.path().join("b")).unwrap();
        let fs = RootFs::new(t.path()).unwrap();
        assert!(fs.resolve(Path::new("/a")).is_err());
    }

    #[test]
    fn oversized_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), vec![b'x'; 100]).unwrap();
        let fs = RootFs::new(t.path()).unwrap();
        assert!(fs.read_bounded(Path::new("/f"), 99).is_err());
        assert_eq!(fs.read_bounded(Path::new("/f"), 100).unwrap().len(), 100);
    }
}
