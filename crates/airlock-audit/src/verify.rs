//! Checking the chain, the checkpoints and the anchors. The report names the first broken
//! record and what is wrong with it.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AuditError;
use crate::chain::decode;
use crate::export::CheckpointExport;
use crate::record::{BodyCapture, GENESIS_HASH};
use crate::signing::{Checkpoint, parse_public_key};
use crate::store::{Store, StoredRow};

/// Most problems kept in a report (the count goes on).
pub const MAX_PROBLEMS: usize = 1000;

/// What verification trusts.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Public keys whose signatures are accepted on checkpoints and anchors.
    pub trusted_keys: Vec<VerifyingKey>,
    /// Checkpoints exported earlier and held outside (their own key is trusted for them).
    pub external: Option<CheckpointExport>,
}

/// What kind of damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Records missing from the middle of the chain (deleted).
    Missing,
    /// A record's content does not match its hash (a field was changed).
    ContentChanged,
    /// A record does not link to the one before it (inserted, removed or reordered).
    ChainBroken,
    /// A row that cannot be read as a record.
    Malformed,
    /// An indexed column disagrees with the record it indexes.
    ColumnMismatch,
    /// A captured body does not match the digest in its record.
    BodyMismatch,
    /// A checkpoint or anchor signature does not verify.
    BadSignature,
    /// A signed checkpoint names a different hash than the stored record.
    CheckpointMismatch,
    /// Records covered by a checkpoint are gone from the end of the chain.
    Truncated,
    /// Signatures could not be checked for want of a trusted key.
    NoTrustedKey,
}

/// One thing wrong, at one record where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub seq: Option<u64>,
    pub kind: ProblemKind,
    pub message: String,
}

/// The result of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub checkpoints: u64,
    pub anchors: u64,
    pub external_checkpoints: u64,
    /// Highest sequence number fixed by a valid signature (checkpoint or anchor).
    pub signed_through: u64,
    /// Records after the last valid checkpoint: intact as a chain but not yet signed (normal
    /// after a crash; a checkpoint follows within the configured interval).
    pub unsigned_tail: u64,
    /// Problems in sequence order (the first is the first broken record).
    pub problems: Vec<Problem>,
    /// Problems found, including any beyond [`MAX_PROBLEMS`].
    pub problem_count: u64,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }

    /// The first problem (lowest sequence number).
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }

    fn push(&mut self, seq: Option<u64>, kind: ProblemKind, message: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { seq, kind, message });
        }
    }
}

/// Check every record, checkpoint and anchor in `store`.
pub fn verify(store: &dyn Store, opts: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let mut rep = VerifyReport::default();
    let anchors = store.anchors()?;
    let checkpoints = store.checkpoints()?;
    rep.anchors = anchors.len() as u64;
    rep.checkpoints = checkpoints.len() as u64;

    if opts.trusted_keys.is_empty() && (!anchors.is_empty() || !checkpoints.is_empty()) {
        rep.push(
            None,
            ProblemKind::NoTrustedKey,
            "no trusted public key: checkpoint and anchor signatures were not checked (pass --public-key, or keep audit-signing.key in the data directory)".into(),
        );
    }
    let check_sigs = !opts.trusted_keys.is_empty();

    // Anchors: signatures; the latest is where the kept chain starts.
    for a in &anchors {
        if check_sigs && let Err(why) = a.check(&opts.trusted_keys) {
            rep.push(
                Some(a.seq),
                ProblemKind::BadSignature,
                format!("pruning anchor at record {}: {why}", a.seq),
            );
        }
    }
    let latest_anchor = anchors.iter().max_by_key(|a| a.seq);
    let (mut expected_seq, mut expected_prev) = match latest_anchor {
        Some(a) => (a.seq + 1, a.hash.clone()),
        None => (1, GENESIS_HASH.to_string()),
    };
    if let Some(a) = latest_anchor
        && check_sigs
        && a.check(&opts.trusted_keys).is_ok()
    {
        rep.signed_through = a.seq;
    }

    // Checkpoints to compare against while scanning: the store's own, then external ones.
    let mut internal: BTreeMap<u64, &Checkpoint> = BTreeMap::new();
    for cp in &checkpoints {
        if check_sigs && let Err(why) = cp.check(&opts.trusted_keys) {
            rep.push(
                Some(cp.seq),
                ProblemKind::BadSignature,
                format!("checkpoint at record {}: {why}", cp.seq),
            );
            continue;
        }
        internal.insert(cp.seq, cp);
    }
    let mut external: BTreeMap<u64, &Checkpoint> = BTreeMap::new();
    if let Some(ext) = &opts.external {
        rep.external_checkpoints = ext.checkpoints.len() as u64;
        match parse_public_key(&ext.public_key) {
            Err(why) => rep.push(
                None,
                ProblemKind::BadSignature,
                format!("exported checkpoints: {why}"),
            ),
            Ok(k) => {
                if !opts.trusted_keys.is_empty()
                    && !opts
                        .trusted_keys
                        .iter()
                        .any(|t| t.as_bytes() == k.as_bytes())
                {
                    rep.push(
                        None,
                        ProblemKind::BadSignature,
                        format!("exported checkpoints were signed by key {}, not by this data directory's key", ext.public_key),
                    );
                }
                for cp in &ext.checkpoints {
                    if let Err(why) = cp.check(&[k]) {
                        rep.push(
                            Some(cp.seq),
                            ProblemKind::BadSignature,
                            format!("exported checkpoint at record {}: {why}", cp.seq),
                        );
                        continue;
                    }
                    external.insert(cp.seq, cp);
                }
            }
        }
    }
    let anchor_seq = latest_anchor.map_or(0, |a| a.seq);

    store.scan(0, true, &mut |row: StoredRow| {
        let seq = row.seq;
        if seq < expected_seq {
            rep.push(
                Some(seq),
                ProblemKind::Malformed,
                format!("record {seq} lies at or before the pruning anchor at record {anchor_seq}, which says it was deleted"),
            );
            return Ok(ControlFlow::Continue(()));
        }
        let mut linked = true;
        if seq > expected_seq {
            let msg = if seq - 1 == expected_seq {
                format!("record {expected_seq} is missing (deleted)")
            } else {
                format!("records {expected_seq} to {} are missing (deleted)", seq - 1)
            };
            rep.push(Some(expected_seq), ProblemKind::Missing, msg);
            linked = false;
        }
        check_row(&mut rep, &row, linked.then_some(expected_prev.as_str()));
        for (label, map) in [("signed checkpoint", &internal), ("exported checkpoint", &external)] {
            if let Some(cp) = map.get(&seq)
                && cp.hash != row.hash
            {
                rep.push(
                    Some(seq),
                    ProblemKind::CheckpointMismatch,
                    format!("record {seq}: hash differs from the {label} for it (the chain was rewritten)"),
                );
            }
        }
        if rep.first_seq.is_none() {
            rep.first_seq = Some(seq);
        }
        rep.last_seq = Some(seq);
        rep.records += 1;
        expected_seq = seq + 1;
        expected_prev = row.hash;
        Ok(ControlFlow::Continue(()))
    })?;

    let last = rep.last_seq.unwrap_or(anchor_seq);
    for (label, map, verified) in [
        ("signed checkpoint", &internal, check_sigs),
        ("exported checkpoint", &external, true),
    ] {
        for (&seq, cp) in map.iter() {
            if seq > last {
                rep.push(
                    Some(last + 1),
                    ProblemKind::Truncated,
                    format!("a {label} covers record {seq} but the chain ends at record {last}: records {} to {seq} were deleted", last + 1),
                );
            } else if seq == anchor_seq && cp.hash != expected_anchor_hash(latest_anchor) {
                rep.push(
                    Some(seq),
                    ProblemKind::CheckpointMismatch,
                    format!("{label} at record {seq} disagrees with the pruning anchor"),
                );
            }
            if verified && seq <= last && seq > rep.signed_through {
                rep.signed_through = seq;
            }
        }
    }
    rep.unsigned_tail = rep
        .last_seq
        .map_or(0, |l| l.saturating_sub(rep.signed_through.max(anchor_seq)));
    rep.problems.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
    Ok(rep)
}

fn expected_anchor_hash(a: Option<&crate::signing::Anchor>) -> String {
    a.map(|a| a.hash.clone()).unwrap_or_default()
}

fn check_row(rep: &mut VerifyReport, row: &StoredRow, expected_prev: Option<&str>) {
    let seq = row.seq;
    let rec = match decode(row) {
        Ok(r) => r,
        Err(e) => {
            rep.push(Some(seq), ProblemKind::Malformed, e.to_string());
            return;
        }
    };
    if rec.seq != seq || rec.prev_hash != row.prev_hash || rec.hash != row.hash {
        rep.push(
            Some(seq),
            ProblemKind::ContentChanged,
            format!("record {seq}: the stored record disagrees with its row's seq / prev_hash / hash columns"),
        );
        return;
    }
    if rec.compute_hash() != row.hash {
        rep.push(
            Some(seq),
            ProblemKind::ContentChanged,
            format!("record {seq}: content does not match its hash (a field was changed)"),
        );
        return;
    }
    if let Some(prev) = expected_prev
        && row.prev_hash != prev
    {
        rep.push(
            Some(seq),
            ProblemKind::ChainBroken,
            format!(
                "record {seq}: prev_hash does not match the hash of record {} (a record was inserted, replaced or reordered)",
                seq.saturating_sub(1)
            ),
        );
    }
    let cols: [(&str, bool); 6] = [
        ("time_ms", row.time_ms == rec.time_ms()),
        ("user", row.user == rec.user),
        ("team", row.team == rec.team),
        ("tool", row.tool == rec.tool),
        (
            "decision",
            row.decision.as_deref() == rec.decision.map(|d| d.as_str()),
        ),
        ("model", row.model == rec.model),
    ];
    for (name, same) in cols {
        if !same {
            rep.push(
                Some(seq),
                ProblemKind::ColumnMismatch,
                format!("record {seq}: indexed column {name} disagrees with the record (queries would be misled)"),
            );
        }
    }
    for (name, meta, blob) in [
        ("request body", &rec.request_body, &row.request_body),
        ("response body", &rec.response_body, &row.response_body),
    ] {
        match (meta, blob) {
            (None, None) => {}
            (None, Some(_)) => rep.push(
                Some(seq),
                ProblemKind::BodyMismatch,
                format!("record {seq}: a {name} is stored that the record does not mention"),
            ),
            (Some(_), None) => rep.push(
                Some(seq),
                ProblemKind::BodyMismatch,
                format!("record {seq}: the {name} is missing"),
            ),
            (Some(m), Some(b)) => {
                let ok = BodyCapture::decompress(b, m.captured_bytes)
                    .map(|plain| {
                        plain.len() as u64 == m.captured_bytes
                            && hex::encode(Sha256::digest(&plain)) == m.sha256
                    })
                    .unwrap_or(false);
                if !ok {
                    rep.push(
                        Some(seq),
                        ProblemKind::BodyMismatch,
                        format!("record {seq}: the stored {name} does not match its digest"),
                    );
                }
            }
        }
    }
}
