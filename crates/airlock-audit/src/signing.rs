//! The gateway's Ed25519 audit key, checkpoints and pruning anchors.
//!
//! The key is 32 random bytes in `<data_dir>/audit-signing.key`, created with mode 0600 on
//! first use. Its public half is what outside verifiers keep: it is exported with the
//! checkpoints (`airlock audit checkpoints --export`).

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::AuditError;

/// File name of the signing key inside the data directory.
pub const KEY_FILE: &str = "audit-signing.key";

const CHECKPOINT_DOMAIN: &[u8] = b"airlock-audit/checkpoint/v1\0";
const ANCHOR_DOMAIN: &[u8] = b"airlock-audit/anchor/v1\0";

/// The signing key of this data directory.
pub struct AuditKey {
    key: SigningKey,
    path: PathBuf,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("path", &self.path)
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// Load `<dir>/audit-signing.key`, creating it (0600) when absent.
    pub fn load_or_create(dir: &Path) -> Result<AuditKey, AuditError> {
        let path = dir.join(KEY_FILE);
        match Self::load(&path) {
            Ok(k) => return Ok(k),
            Err(AuditError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            }
            Err(e) => return Err(e),
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| AuditError::Key {
            path: path.clone(),
            reason: format!("no system randomness: {e}"),
        })?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(&path) {
            Ok(mut f) => {
                f.write_all(hex::encode(seed).as_bytes())
                    .and_then(|()| f.write_all(b"\n"))
                    .and_then(|()| f.sync_all())
                    .map_err(|e| AuditError::io(&path, e))?;
                tracing::info!(path = %path.display(), "created audit signing key");
                Ok(AuditKey {
                    key: SigningKey::from_bytes(&seed),
                    path,
                })
            }
            // Another process created it between our read and our create: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(&path),
            Err(e) => Err(AuditError::io(&path, e)),
        }
    }

    /// Load an existing key file (64 hex digits).
    pub fn load(path: &Path) -> Result<AuditKey, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuditError::io(path, e))?;
        let bad = |reason: &str| AuditError::Key {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let bytes = hex::decode(text.trim()).map_err(|_| bad("not hex"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("expected 32 bytes (64 hex digits)"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path)
                && m.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), "audit signing key is readable by others; chmod 600 it");
            }
        }
        Ok(AuditKey {
            key: SigningKey::from_bytes(&seed),
            path: path.to_path_buf(),
        })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Sign a checkpoint over `(seq, hash)` at `time_ms`.
    pub fn checkpoint(&self, seq: u64, hash: &str, time_ms: i64) -> Checkpoint {
        let msg = checkpoint_message(seq, hash, time_ms);
        Checkpoint {
            seq,
            hash: hash.to_string(),
            time_ms,
            public_key: self.public_key_hex(),
            signature: hex::encode(self.key.sign(&msg).to_bytes()),
        }
    }

    /// Sign a pruning anchor: records up to and including `seq` (whose hash is `hash`) were
    /// deleted; `pruned` of them by this prune.
    pub fn anchor(&self, seq: u64, hash: &str, time_ms: i64, pruned: u64) -> Anchor {
        let msg = anchor_message(seq, hash, time_ms, pruned);
        Anchor {
            seq,
            hash: hash.to_string(),
            time_ms,
            pruned,
            public_key: self.public_key_hex(),
            signature: hex::encode(self.key.sign(&msg).to_bytes()),
        }
    }
}

/// A signed statement "record `seq` has hash `hash`", which fixes every record up to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    pub time_ms: i64,
    /// Hex Ed25519 public key that signed it.
    pub public_key: String,
    /// Hex Ed25519 signature over the checkpoint message.
    pub signature: String,
}

/// A signed statement left by pruning: "records up to `seq` were deleted; the last of them had
/// hash `hash`". The remaining chain verifies from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
    pub time_ms: i64,
    pub pruned: u64,
    pub public_key: String,
    pub signature: String,
}

fn checkpoint_message(seq: u64, hash: &str, time_ms: i64) -> Vec<u8> {
    let mut m = CHECKPOINT_DOMAIN.to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&time_ms.to_be_bytes());
    m.extend_from_slice(hash.as_bytes());
    m
}

fn anchor_message(seq: u64, hash: &str, time_ms: i64, pruned: u64) -> Vec<u8> {
    let mut m = ANCHOR_DOMAIN.to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&time_ms.to_be_bytes());
    m.extend_from_slice(&pruned.to_be_bytes());
    m.extend_from_slice(hash.as_bytes());
    m
}

/// Parse a hex public key.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| "public key is not hex".to_string())?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "public key must be 32 bytes (64 hex digits)".to_string())?;
    VerifyingKey::from_bytes(&arr).map_err(|_| "not a valid Ed25519 public key".to_string())
}

/// Why a signature did not check.
fn check_sig(
    trusted: &[VerifyingKey],
    public_key: &str,
    signature: &str,
    msg: &[u8],
) -> Result<(), String> {
    let key = parse_public_key(public_key)?;
    if !trusted.iter().any(|t| t.as_bytes() == key.as_bytes()) {
        return Err(format!(
            "signed by key {public_key}, which is not a trusted audit key"
        ));
    }
    let sig_bytes = hex::decode(signature).map_err(|_| "signature is not hex".to_string())?;
    let sig = Signature::from_slice(&sig_bytes)
        .map_err(|_| "signature has the wrong length".to_string())?;
    key.verify_strict(msg, &sig)
        .map_err(|_| "bad signature".to_string())
}

impl Checkpoint {
    /// Check the signature against the trusted keys.
    pub fn check(&self, trusted: &[VerifyingKey]) -> Result<(), String> {
        check_sig(
            trusted,
            &self.public_key,
            &self.signature,
            &checkpoint_message(self.seq, &self.hash, self.time_ms),
        )
    }
}

impl Anchor {
    /// Check the signature against the trusted keys.
    pub fn check(&self, trusted: &[VerifyingKey]) -> Result<(), String> {
        check_sig(
            trusted,
            &self.public_key,
            &self.signature,
            &anchor_message(self.seq, &self.hash, self.time_ms, self.pruned),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_0600_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = AuditKey::load_or_create(dir.path()).unwrap();
        let k2 = AuditKey::load_or_create(dir.path()).unwrap();
        assert_eq!(k1.public_key_hex(), k2.public_key_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let cp = k1.checkpoint(7, &"ab".repeat(32), 1000);
        let trusted = [k1.verifying_key()];
        assert!(cp.check(&trusted).is_ok());
        let mut bad = cp.clone();
        bad.seq = 8;
        assert_eq!(bad.check(&trusted), Err("bad signature".to_string()));
        let other = tempfile::tempdir().unwrap();
        let k3 = AuditKey::load_or_create(other.path()).unwrap();
        assert!(cp.check(&[k3.verifying_key()]).is_err());
    }

    #[test]
    fn malformed_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "zz").unwrap();
        let e = AuditKey::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("audit-signing.key") && e.contains("not hex"),
            "{e}"
        );
    }
}
