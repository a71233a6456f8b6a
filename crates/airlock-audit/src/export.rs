//! Queries, streaming JSONL export (for SIEM ingestion and the admin HTTP endpoint), and the
//! checkpoint export that an outside system keeps.

use std::io::Write;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AuditError;
use crate::chain::decode;
use crate::filter::AuditFilter;
use crate::record::AuditRecord;
use crate::signing::{Anchor, AuditKey, Checkpoint};
use crate::store::Store;

/// The `format` value of a checkpoint export.
pub const CHECKPOINT_EXPORT_FORMAT: &str = "airlock-audit-checkpoints/1";

/// Largest checkpoint export file read back (a hostile file cannot exhaust memory).
pub const MAX_CHECKPOINT_EXPORT_BYTES: u64 = 64 * 1024 * 1024;

/// The newest `filter.effective_limit()` matching records, oldest first.
pub fn query(store: &dyn Store, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditError> {
    store
        .query_newest(filter, filter.effective_limit())?
        .iter()
        .map(decode)
        .collect()
}

/// [`query`], written as JSON Lines (one record per line). Returns the number of lines.
pub fn query_jsonl(
    store: &dyn Store,
    filter: &AuditFilter,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let rows = store.query_newest(filter, filter.effective_limit())?;
    let mut n = 0;
    for row in &rows {
        write_line(out, &row.record)?;
        n += 1;
    }
    out.flush().map_err(|e| AuditError::io("<output>", e))?;
    Ok(n)
}

/// Stream every matching record, oldest first, as JSON Lines, without holding them in memory
/// (the filter's limit, when set, stops the stream after that many). Returns the number of
/// lines written.
pub fn export_jsonl(
    store: &dyn Store,
    filter: &AuditFilter,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let mut n: u64 = 0;
    let limit = filter.limit.map(|l| l as u64);
    store.scan_filtered(filter, &mut |row| {
        write_line(out, &row.record)?;
        n += 1;
        Ok(if limit.is_some_and(|l| n >= l) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    out.flush().map_err(|e| AuditError::io("<output>", e))?;
    Ok(n)
}

fn write_line(out: &mut dyn Write, json: &str) -> Result<(), AuditError> {
    out.write_all(json.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| AuditError::io("<output>", e))
}

/// Checkpoints and anchors with the public key that verifies them: what an outside system
/// keeps so that a rewrite of the whole database is still detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointExport {
    /// Always [`CHECKPOINT_EXPORT_FORMAT`].
    pub format: String,
    /// Hex Ed25519 public key of the data directory's signing key.
    pub public_key: String,
    /// RFC 3339.
    pub exported_at: String,
    pub checkpoints: Vec<Checkpoint>,
    pub anchors: Vec<Anchor>,
}

impl CheckpointExport {
    /// Gather the export. With the signing key at hand, first sign a checkpoint over the current
    /// head (if it has none yet) so that the export covers every record written so far.
    pub fn gather(
        store: &mut dyn Store,
        key: Option<&AuditKey>,
        now: OffsetDateTime,
    ) -> Result<CheckpointExport, AuditError> {
        let mut checkpoints = store.checkpoints()?;
        if let Some(key) = key {
            let head = store.head()?;
            let anchored = store.anchors()?.iter().any(|a| a.seq == head.seq);
            if head.seq > 0 && !anchored && !checkpoints.iter().any(|c| c.seq == head.seq) {
                let ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
                let cp = key.checkpoint(head.seq, &head.hash, ms);
                store.add_checkpoint(&cp)?;
                checkpoints.push(cp);
            }
        }
        let public_key = match key {
            Some(k) => k.public_key_hex(),
            None => checkpoints
                .last()
                .map(|c| c.public_key.clone())
                .unwrap_or_default(),
        };
        Ok(CheckpointExport {
            format: CHECKPOINT_EXPORT_FORMAT.to_string(),
            public_key,
            exported_at: now.format(&Rfc3339).unwrap_or_default(),
            checkpoints,
            anchors: store.anchors()?,
        })
    }

    /// Parse an export, checking its format tag.
    pub fn parse(json: &str) -> Result<CheckpointExport, AuditError> {
        let e: CheckpointExport =
            serde_json::from_str(json).map_err(|source| AuditError::Json {
                context: "checkpoint export".into(),
                source,
            })?;
        if e.format != CHECKPOINT_EXPORT_FORMAT {
            return Err(AuditError::Json {
                context: format!(
                    "checkpoint export has format {:?}, expected {CHECKPOINT_EXPORT_FORMAT:?}",
                    e.format
                ),
                source: serde::de::Error::custom("wrong format"),
            });
        }
        Ok(e)
    }

    /// Read and parse an export file (bounded size).
    pub fn read(path: &std::path::Path) -> Result<CheckpointExport, AuditError> {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(|e| AuditError::io(path, e))?;
        let mut text = String::new();
        f.take(MAX_CHECKPOINT_EXPORT_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| AuditError::io(path, e))?;
        Self::parse(&text).map_err(|e| match e {
            AuditError::Json { context, source } => AuditError::Json {
                context: format!("{}: {context}", path.display()),
                source,
            },
            other => other,
        })
    }
}
