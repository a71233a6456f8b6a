//! Retention: delete the oldest records by age, by count and by size, leaving signed anchors
//! so the rest still verifies.
//!
//! Pruning first verifies the whole chain and refuses if it is broken: otherwise an anchor
//! would sign over (and so launder) a tampered record. Large prunes go in chunks of
//! [`PRUNE_CHUNK`] records, one transaction and one anchor each, so a running gateway's writer
//! never waits long for the database.

use std::time::Duration;

use time::OffsetDateTime;

use crate::AuditError;
use crate::signing::{Anchor, AuditKey};
use crate::store::Store;
use crate::verify::{VerifyOptions, verify};

/// Records deleted per transaction (and per anchor).
pub const PRUNE_CHUNK: u64 = 10_000;

/// How much to keep. Both limits apply; `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete records older than this.
    pub max_age: Option<Duration>,
    /// Keep at most this many records (the newest).
    pub max_records: Option<u64>,
    /// Keep the newest records whose payload (record JSON plus stored compressed bodies) is at
    /// most this many bytes. SQLite reuses freed pages, so the file stops growing; it does not
    /// shrink without a `VACUUM`.
    pub max_bytes: Option<u64>,
}

impl Retention {
    pub fn is_unlimited(&self) -> bool {
        self.max_age.is_none() && self.max_records.is_none() && self.max_bytes.is_none()
    }
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Records deleted.
    pub pruned: u64,
    /// Anchors written (the last one is where the chain now starts).
    pub anchors: Vec<Anchor>,
}

/// Apply `retention` to `store` now.
pub fn prune(
    store: &mut dyn Store,
    key: &AuditKey,
    retention: &Retention,
    now: OffsetDateTime,
) -> Result<PruneOutcome, AuditError> {
    let (count, min) = store.count()?;
    let Some(min) = min else {
        return Ok(PruneOutcome::default());
    };
    let mut cutoff: Option<u64> = None;
    if let Some(age) = retention.max_age {
        let age = time::Duration::try_from(age).unwrap_or(time::Duration::MAX);
        if let Some(t) = now.checked_sub(age) {
            let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MIN);
            cutoff = store.last_seq_before(ms)?;
        }
    }
    if let Some(max) = retention.max_records
        && count > max
    {
        let by_count = min + (count - max) - 1;
        cutoff = Some(cutoff.map_or(by_count, |c| c.max(by_count)));
    }
    if let Some(max) = retention.max_bytes
        && let Some(by_size) = store.last_seq_over_size(max)?
    {
        cutoff = Some(cutoff.map_or(by_size, |c| c.max(by_size)));
    }
    let Some(cutoff) = cutoff else {
        return Ok(PruneOutcome::default());
    };

    let report = verify(
        store,
        &VerifyOptions {
            trusted_keys: vec![key.verifying_key()],
            external: None,
        },
    )?;
    if let Some(p) = report.first_problem() {
        return Err(AuditError::Prune(format!(
            "the chain does not verify ({}); run `airlock audit verify` and investigate before pruning",
            p.message
        )));
    }

    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let mut out = PruneOutcome::default();
    let mut start = min;
    while start <= cutoff {
        let end = cutoff.min(start.saturating_add(PRUNE_CHUNK - 1));
        let row = store.row(end, false)?.ok_or_else(|| {
            AuditError::Prune(format!(
                "record {end} vanished while pruning (another prune running?)"
            ))
        })?;
        let anchor = key.anchor(end, &row.hash, now_ms, end - start + 1);
        out.pruned += store.prune(&anchor)?;
        out.anchors.push(anchor);
        start = end + 1;
    }
    tracing::info!(
        pruned = out.pruned,
        through = cutoff,
        "audit records pruned; anchor signed"
    );
    Ok(out)
}
