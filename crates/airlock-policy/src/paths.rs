//! Where Airlock keeps its state. The gateway and every `airlock audit`/`keys` command find the
//! data directory the same way, so they work on a stopped gateway's data.

use std::path::PathBuf;

/// Environment variable that overrides the data directory.
pub const DATA_DIR_ENV: &str = "AIRLOCK_DATA_DIR";

/// The data directory when neither `--data-dir` nor `server.data_dir` says otherwise:
/// `$AIRLOCK_DATA_DIR`, else `$XDG_DATA_HOME/airlock`, else `~/.local/share/airlock`, else
/// `./.airlock` when there is no home directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("airlock");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/airlock");
    }
    PathBuf::from(".airlock")
}

/// Expand a leading `~/` against `home`.
pub fn expand_home(path: &str, home: &std::path::Path) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if path == "~" => home.to_path_buf(),
        None => PathBuf::from(path),
    }
}
