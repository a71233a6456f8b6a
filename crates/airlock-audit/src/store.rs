//! The storage trait. SQLite ([`crate::SqliteStore`]) is the embedded default; a shared
//! PostgreSQL store for several gateway instances can implement the same trait (it would add
//! a lock on the chain head, e.g. `SELECT ... FOR UPDATE`, so two writers cannot fork it).
//!
//! A store only keeps rows: hashing, signing and verifying live above it, so a store cannot
//! weaken the chain.

use std::ops::ControlFlow;

use crate::AuditError;
use crate::filter::AuditFilter;
use crate::signing::{Anchor, Checkpoint};

/// A row as stored: the indexed columns, the chain columns, the record JSON and, when asked
/// for, the compressed bodies. Verification compares all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub seq: u64,
    pub time_ms: i64,
    pub user: Option<String>,
    pub team: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub model: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// The record as JSON (stable field names).
    pub record: String,
    pub request_body: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
}

/// The end of the chain: where the next record attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the last record (0 for an empty chain).
    pub seq: u64,
    /// Its hash (the genesis hash for an empty chain).
    pub hash: String,
}

/// Which captured body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Request,
    Response,
}

/// Callback for streaming reads: return `ControlFlow::Break(())` to stop early.
pub type RowSink<'a> = dyn FnMut(StoredRow) -> Result<ControlFlow<()>, AuditError> + 'a;

/// Where audit rows live.
pub trait Store: Send {
    /// The last record, or the latest anchor when every record was pruned, or genesis.
    fn head(&self) -> Result<ChainHead, AuditError>;
    /// Append rows (and optionally a checkpoint) in ONE transaction: all or nothing.
    fn append(
        &mut self,
        rows: &[StoredRow],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), AuditError>;
    /// Add a checkpoint on its own.
    fn add_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), AuditError>;
    /// Every row in sequence order starting at `from_seq`, bodies included if asked.
    fn scan(
        &self,
        from_seq: u64,
        with_bodies: bool,
        sink: &mut RowSink<'_>,
    ) -> Result<(), AuditError>;
    /// Rows matching the filter in sequence order (the filter's `limit` is NOT applied here;
    /// see [`Store::query_newest`]).
    fn scan_filtered(&self, filter: &AuditFilter, sink: &mut RowSink<'_>)
    -> Result<(), AuditError>;
    /// The newest `limit` rows matching the filter, oldest first.
    fn query_newest(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<Vec<StoredRow>, AuditError>;
    /// One row by sequence number.
    fn row(&self, seq: u64, with_bodies: bool) -> Result<Option<StoredRow>, AuditError>;
    /// A captured body's compressed bytes.
    fn body(&self, seq: u64, kind: BodyKind) -> Result<Option<Vec<u8>>, AuditError>;
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError>;
    fn anchors(&self) -> Result<Vec<Anchor>, AuditError>;
    /// Number of records and the lowest sequence number kept.
    fn count(&self) -> Result<(u64, Option<u64>), AuditError>;
    /// The highest sequence number whose time is before `time_ms`.
    fn last_seq_before(&self, time_ms: i64) -> Result<Option<u64>, AuditError>;
    /// The highest sequence number to prune through so that the records left hold at most
    /// `max_bytes` of payload (record JSON plus compressed bodies); `None` when all fit.
    /// This default reads the rows twice in order (constant memory); stores may do it in one
    /// query.
    fn last_seq_over_size(&self, max_bytes: u64) -> Result<Option<u64>, AuditError> {
        let size = |r: &StoredRow| {
            (r.record.len()
                + r.request_body.as_ref().map_or(0, Vec::len)
                + r.response_body.as_ref().map_or(0, Vec::len)) as u64
        };
        let mut total: u64 = 0;
        self.scan(0, true, &mut |r| {
            total = total.saturating_add(size(&r));
            Ok(ControlFlow::Continue(()))
        })?;
        if total <= max_bytes {
            return Ok(None);
        }
        let mut cutoff = None;
        self.scan(0, true, &mut |r| {
            total = total.saturating_sub(size(&r));
            cutoff = Some(r.seq);
            Ok(if total <= max_bytes {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        Ok(cutoff)
    }
    /// Delete records up to and including `anchor.seq` and the checkpoints they make
    /// redundant, and store the anchor: ONE transaction. Returns how many records went.
    fn prune(&mut self, anchor: &Anchor) -> Result<u64, AuditError>;
}
