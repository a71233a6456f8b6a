//! Airlock-issued API keys: created once, stored hashed in `<data_dir>/keys.db` (SQLite, WAL).
//!
//! A key is `ak_live_` followed by 43 base62 characters (256 bits from the OS random source).
//! Only its SHA-256 is stored: for a key of that entropy a plain hash is as good as a slow KDF
//! and keeps the per-request check to one hash and one map lookup. The gateway holds an
//! in-memory [`KeySnapshot`] of active keys and reloads it when the database file changes, so
//! `airlock keys revoke` takes effect within about a second without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// File name of the key store inside the data directory.
pub const KEYS_DB_FILE: &str = "keys.db";
/// Every Airlock key starts with this.
pub const KEY_PREFIX: &str = "ak_live_";
const KEY_RANDOM_BYTES: usize = 32;
const SCHEMA_VERSION: i64 = 1;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Longest user or team name accepted.
pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key store {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key store {path} has schema version {found}; this airlock understands up to {SCHEMA_VERSION}"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("no key with id {0:?}")]
    NotFound(String),
}

/// What `keys list` shows about a key (never the key or its hash).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// Stable identifier: `key_` + the first 12 hex digits of the key's SHA-256.
    pub id: String,
    /// The first characters of the key, to recognise it (`ak_live_AbCd`).
    pub prefix: String,
    pub user: String,
    pub team: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
}

/// A freshly created key: the only time its value exists outside the caller.
#[derive(Debug)]
pub struct NewKey {
    pub info: KeyInfo,
    pub key: Secret,
}

/// Who an accepted key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub user: String,
    pub team: Option<String>,
}

/// The key store on disk.
pub struct KeyStore {
    path: PathBuf,
    conn: Connection,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> KeyError + '_ {
    move |source| KeyError::Db {
        path: path.to_path_buf(),
        source,
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// SHA-256 of a presented key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn validate_name(what: &'static str, value: &str) -> Result<(), KeyError> {
    let bad = |reason| {
        Err(KeyError::InvalidName {
            what,
            value: value.chars().take(40).collect(),
            reason,
        })
    };
    if value.is_empty() {
        return bad("must not be empty");
    }
    if value.len() > MAX_NAME_LEN {
        return bad("longer than 128 bytes");
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("must not contain spaces or control characters");
    }
    Ok(())
}

fn generate_key() -> Result<String, KeyError> {
    let mut raw = [0u8; KEY_RANDOM_BYTES];
    getrandom::fill(&mut raw).map_err(|e| KeyError::Random(e.to_string()))?;
    // Base62 by repeated division of the 256-bit number: 43 digits.
    let mut num = raw.to_vec();
    let mut digits = Vec::with_capacity(44);
    while num.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 62) as u8;
            rem = acc % 62;
        }
        digits.push(BASE62[rem as usize]);
    }
    while digits.len() < 43 {
        digits.push(b'0');
    }
    digits.reverse();
    let body = String::from_utf8(digits).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(format!("{KEY_PREFIX}{body}"))
}

impl KeyStore {
    /// Opens (creating if needed) `<data_dir>/keys.db`.
    pub fn open(data_dir: &Path) -> Result<KeyStore, KeyError> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(KEYS_DB_FILE);
        let conn = Connection::open(&path).map_err(db_err(&path))?;
        restrict_file(&path);
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err(&path))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err(&path))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db_err(&path))?;
        if version > SCHEMA_VERSION {
            return Err(KeyError::Schema {
                path,
                found: version,
            });
        }
        if version < 1 {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS keys (
                    id TEXT PRIMARY KEY,
                    hash BLOB NOT NULL UNIQUE,
                    prefix TEXT NOT NULL,
                    user TEXT NOT NULL,
                    team TEXT,
                    created_at INTEGER NOT NULL,
                    revoked_at INTEGER
                );
                PRAGMA user_version = 1;",
            )
            .map_err(db_err(&path))?;
        }
        Ok(KeyStore { path, conn })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a key for `user` (and `team`). The returned value is shown once and never stored.
    pub fn create(&self, user: &str, team: Option<&str>) -> Result<NewKey, KeyError> {
        validate_name("user", user)?;
        if let Some(t) = team {
            validate_name("team", t)?;
        }
        let key = generate_key()?;
        let hash = hash_key(&key);
        let info = KeyInfo {
            id: format!("key_{}", &hex::encode(hash)[..12]),
            prefix: key[..KEY_PREFIX.len() + 4].to_string(),
            user: user.to_string(),
            team: team.map(str::to_string),
            created_at: now_unix(),
            revoked_at: None,
        };
        self.conn
            .execute(
                "INSERT INTO keys (id, hash, prefix, user, team, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![info.id, hash.as_slice(), info.prefix, info.user, info.team, info.created_at],
            )
            .map_err(db_err(&self.path))?;
        Ok(NewKey {
            info,
            key: Secret::new(key),
        })
    }

    /// All keys, oldest first.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, prefix, user, team, created_at, revoked_at FROM keys ORDER BY created_at, id")
            .map_err(db_err(&self.path))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(KeyInfo {
                    id: r.get(0)?,
                    prefix: r.get(1)?,
                    user: r.get(2)?,
                    team: r.get(3)?,
                    created_at: r.get(4)?,
                    revoked_at: r.get(5)?,
                })
            })
            .map_err(db_err(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db_err(&self.path))
    }

    /// Revokes a key by id. Revoking an already revoked key is not an error.
    pub fn revoke(&self, id: &str) -> Result<KeyInfo, KeyError> {
        let found: Option<Option<i64>> = self
            .conn
            .query_row("SELECT revoked_at FROM keys WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err(&self.path))?;
        match found {
            None => return Err(KeyError::NotFound(id.to_string())),
            Some(Some(_)) => {}
            Some(None) => {
                self.conn
                    .execute(
                        "UPDATE keys SET revoked_at = ?1 WHERE id = ?2",
                        params![now_unix(), id],
                    )
                    .map_err(db_err(&self.path))?;
            }
        }
        self.list()?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::NotFound(id.to_string()))
    }

    /// The active keys, for the gateway.
    pub fn snapshot(&self) -> Result<KeySnapshot, KeyError> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash, id, user, team FROM keys WHERE revoked_at IS NULL")
            .map_err(db_err(&self.path))?;
        let rows = stmt
            .query_map([], |r| {
                let hash: Vec<u8> = r.get(0)?;
                Ok((
                    hash,
                    Principal {
                        key_id: r.get(1)?,
                        user: r.get(2)?,
                        team: r.get(3)?,
                    },
                ))
            })
            .map_err(db_err(&self.path))?;
        let mut by_hash = HashMap::new();
        let issued: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM keys", [], |r| r.get(0))
            .map_err(db_err(&self.path))?;
        for row in rows {
            let (hash, p) = row.map_err(db_err(&self.path))?;
            if let Ok(h) = <[u8; 32]>::try_from(hash.as_slice()) {
                by_hash.insert(h, p);
            }
        }
        Ok(KeySnapshot {
            by_hash,
            issued: usize::try_from(issued).unwrap_or(usize::MAX),
        })
    }
}

/// The active keys held in memory by the gateway.
#[derive(Debug, Default, Clone)]
pub struct KeySnapshot {
    by_hash: HashMap<[u8; 32], Principal>,
    /// Keys ever issued, revoked ones included.
    issued: usize,
}

impl KeySnapshot {
    /// True when no key was ever issued: anonymous mode is possible on loopback. Revoking the
    /// last key does not reopen the gateway to anonymous callers.
    pub fn allows_anonymous(&self) -> bool {
        self.issued == 0
    }

    /// Number of active keys.
    pub fn active(&self) -> usize {
        self.by_hash.len()
    }

    /// Looks up a presented key.
    pub fn lookup(&self, presented: &str) -> Option<&Principal> {
        if !presented.starts_with(KEY_PREFIX) {
            return None;
        }
        self.by_hash.get(&hash_key(presented))
    }
}

/// Creates the data directory (mode 0700 on Unix).
pub fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|source| KeyError::DataDir {
        path: dir.to_path_buf(),
        source,
    })
}

fn restrict_file(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The modification time of the key store and its WAL, to notice changes cheaply.
pub fn store_stamp(data_dir: &Path) -> Option<(SystemTime, SystemTime, u64)> {
    let db = std::fs::metadata(data_dir.join(KEYS_DB_FILE)).ok()?;
    let wal = std::fs::metadata(data_dir.join(format!("{KEYS_DB_FILE}-wal"))).ok();
    Some((
        db.modified().ok()?,
        wal.as_ref()
            .and_then(|m| m.modified().ok())
            .unwrap_or(UNIX_EPOCH),
        wal.map(|m| m.len()).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_revoke_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        assert!(store.snapshot().unwrap().allows_anonymous());
        let k = store.create("alice", Some("payments")).unwrap();
        let key = k.key.expose().to_string();
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(key.len(), KEY_PREFIX.len() + 43);
        let snap = store.snapshot().unwrap();
        let p = snap.lookup(&key).unwrap();
        assert_eq!(p.user, "alice");
        assert_eq!(p.team.as_deref(), Some("payments"));
        assert!(snap.lookup("ak_live_wrong").is_none());
        // Stored hashed: the key text is nowhere in the database file.
        drop(snap);
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, k.info.id);
        let revoked = store.revoke(&k.info.id).unwrap();
        assert!(revoked.revoked_at.is_some());
        let after = store.snapshot().unwrap();
        assert!(after.lookup(&key).is_none());
        assert_eq!(after.active(), 0);
        assert!(
            !after.allows_anonymous(),
            "revoking the last key must not reopen anonymous mode"
        );
        assert!(matches!(
            store.revoke("key_nope"),
            Err(KeyError::NotFound(_))
        ));
        drop(store);
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()));
        }
    }

    #[test]
    fn keys_are_distinct_and_names_validated() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let a = store.create("bob", None).unwrap();
        let b = store.create("bob", None).unwrap();
        assert_ne!(a.key.expose(), b.key.expose());
        assert!(store.create("", None).is_err());
        assert!(store.create("a b", None).is_err());
        assert!(store.create("x", Some("t\n")).is_err());
    }
}
