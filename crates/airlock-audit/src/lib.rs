//! The hash-chained, signed audit log and its stores.
//!
//! Every exchange through the gateway becomes one [`AuditRecord`]: who, with which tool, to
//! which upstream and model, what Airlock decided and why, a summary of findings (rule ids,
//! counts, locations: never the matched values), usage, status, latencies and sizes, and
//! optionally the redacted request and response bodies (deflate-compressed, size-capped).
//!
//! What it does:
//! - **Chain**: each record holds the hash of the previous one; its own hash is SHA-256 over a
//!   canonical encoding of every field ([`record::canonical_bytes`]).
//! - **Signatures**: checkpoints over the chain head are signed with the data directory's
//!   Ed25519 key (`audit-signing.key`); pruning leaves signed anchors so what remains still
//!   verifies. [`verify()`] names the first broken record.
//! - **Storage** behind the [`Store`] trait; [`SqliteStore`] (WAL, `synchronous=NORMAL`,
//!   versioned migrations) is the embedded default in `<data_dir>/audit.db`.
//! - **Writer**: [`AuditLog`] queues records without blocking the request path and commits
//!   them in batches on its own thread; [`Committed`] resolves once a record is durable.
//!   A full queue is never a silent drop: it is counted, and a marker record saying how many
//!   were lost goes into the chain.
//! - **Queries and export** ([`query`], [`export_jsonl`], [`AuditFilter::from_query_pairs`])
//!   shared by `airlock audit` and the gateway's admin endpoint.
//!
//! What it does not do: decide anything (the gateway fills the record), redact (bodies must
//! arrive already redacted), serve HTTP, or protect against someone who holds the signing
//! key; for that, export checkpoints to a system they cannot write to.

mod chain;
mod error;
pub mod export;
pub mod filter;
pub mod pricing;
pub mod record;
pub mod retention;
pub mod signing;
pub mod sqlite;
pub mod store;
pub mod verify;
mod writer;

pub use chain::decode;
pub use error::AuditError;
pub use export::{CheckpointExport, export_jsonl, query, query_jsonl};
pub use filter::{AuditFilter, parse_age};
pub use pricing::PriceTable;
pub use record::{AuditRecord, BodyCapture, Decision, FindingSummary, RecordKind, Usage};
pub use retention::{PruneOutcome, Retention, prune};
pub use signing::{Anchor, AuditKey, Checkpoint, KEY_FILE};
pub use sqlite::{DB_FILE, SqliteStore};
pub use store::{BodyKind, ChainHead, Store, StoredRow};
pub use verify::{Problem, ProblemKind, VerifyOptions, VerifyReport, verify};
pub use writer::{
    AuditLog, AuditOptions, AuditStats, CommitError, Committed, Overflow, SubmitError,
};

/// Verify the audit log in `dir` with its own key (plus `extra_keys`), as `airlock audit
/// verify` does.
pub fn verify_dir(
    dir: &std::path::Path,
    extra_keys: &[ed25519_dalek::VerifyingKey],
    external: Option<CheckpointExport>,
) -> Result<VerifyReport, AuditError> {
    let store = SqliteStore::open_existing(dir)?;
    let mut trusted = extra_keys.to_vec();
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        trusted.push(AuditKey::load(&key_path)?.verifying_key());
    }
    verify(
        &store,
        &VerifyOptions {
            trusted_keys: trusted,
            external,
        },
    )
}

/// Re-exported so callers can name public keys without depending on ed25519-dalek.
pub use ed25519_dalek::VerifyingKey;
