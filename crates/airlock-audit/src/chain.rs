//! Sealing a record into the chain (sequence number, previous hash, hash) and decoding a
//! stored row back.

use crate::record::AuditRecord;
use crate::store::{ChainHead, StoredRow};

/// Give `record` its place after `head` and turn it into a row. Returns the new head.
pub(crate) fn seal(
    mut record: AuditRecord,
    head: &ChainHead,
) -> Result<(StoredRow, ChainHead), serde_json::Error> {
    record.normalize();
    record.seq = head.seq + 1;
    record.prev_hash = head.hash.clone();
    record.hash = record.compute_hash();
    let request_body = record
        .request_body
        .as_mut()
        .map(|b| std::mem::take(&mut b.compressed));
    let response_body = record
        .response_body
        .as_mut()
        .map(|b| std::mem::take(&mut b.compressed));
    let json = serde_json::to_string(&record)?;
    let new_head = ChainHead {
        seq: record.seq,
        hash: record.hash.clone(),
    };
    Ok((
        StoredRow {
            seq: record.seq,
            time_ms: record.time_ms(),
            user: record.user,
            team: record.team,
            tool: record.tool,
            decision: record.decision.map(|d| d.as_str().to_string()),
            model: record.model,
            prev_hash: record.prev_hash,
            hash: record.hash,
            record: json,
            request_body,
            response_body,
        },
        new_head,
    ))
}

/// Decode a row's record JSON (bodies are not attached).
pub fn decode(row: &StoredRow) -> Result<AuditRecord, crate::AuditError> {
    serde_json::from_str(&row.record).map_err(|e| crate::AuditError::Corrupt {
        seq: row.seq,
        reason: format!("record JSON does not parse: {e}"),
    })
}
