//! Errors of the audit log. Every variant says what failed and where.

use std::path::PathBuf;

/// Anything that can go wrong opening, writing, reading or pruning the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The SQLite database could not be opened, read or written.
    #[error("audit store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A file or directory could not be created, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// There is no audit log where one was expected (read-only commands never create one).
    #[error("no audit log at {0} (is the data directory right? pass --data-dir DIR)")]
    NotFound(PathBuf),
    /// The database was written by a newer Airlock.
    #[error(
        "audit store {path} has schema version {found}; this airlock supports up to {supported}"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The signing key file is malformed.
    #[error("signing key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    /// A stored row could not be decoded (the row is named; run `airlock audit verify`).
    #[error("audit record {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    /// A filter was malformed (the key and the problem are named).
    #[error("filter {key}: {reason}")]
    Filter { key: String, reason: String },
    /// A retention request was refused (e.g. the chain does not verify).
    #[error("prune refused: {0}")]
    Prune(String),
    /// A value read from or written to JSON did not fit.
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    /// A pricing table could not be read (the file and the entry are named).
    #[error("pricing table {origin}: {reason}")]
    Pricing { origin: String, reason: String },
    /// The writer thread is gone (the log was shut down or its thread failed).
    #[error("the audit writer has stopped")]
    WriterStopped,
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}
