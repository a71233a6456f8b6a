//! What inspecting a string literal that *held something* produced, remembered per vault scope.
//!
//! The clean-literal memory ([`crate::Detector::known_clean`]) makes a resent conversation
//! cheap only while nothing in it matched. Once a secret is in the conversation (the agent read
//! a `.env`, a config file), the literal holding it is usually a whole tool result, resent every
//! turn; it was decoded, scanned (through the detection cache), its placeholders looked up and
//! the result re-escaped and re-spliced each time: several milliseconds for a megabyte.
//!
//! This memory maps the literal's raw bytes to the outcome in raw coordinates (the edits and the
//! findings), so a resend splices it directly. It lives in the [`crate::VaultScope`] because the
//! outcome is only valid with that scope's placeholders. Its key also holds the detector's
//! identity ([`crate::Detector::memo_id`], new with every rule reload), the policy's fingerprint
//! and whether the literal may be modified, so nothing is replayed under other rules or another
//! policy. An entry is used only at the same location (findings carry it) and only while every
//! placeholder it uses is still in the scope (they are refreshed, as a fresh lookup would).
//! Bounded per scope ([`MAX_MEMO_ENTRIES`] literals, about [`MAX_MEMO_BYTES`]); literals that
//! led to a block are never remembered.

use std::collections::HashMap;
use std::sync::Arc;

use crate::inspect::{Finding, Location};

/// Most remembered literals per scope; the older half goes when full.
pub const MAX_MEMO_ENTRIES: usize = 1024;
/// Most bytes (estimated) remembered per scope; the older half goes when full.
pub const MAX_MEMO_BYTES: usize = 512 << 10;
/// Literals with more findings than this are not remembered (hostile input).
pub const MAX_MEMO_FINDINGS: usize = 256;

/// `(detector id, policy fingerprint, modifiable, raw hash, raw hash, raw length)`.
pub(crate) type MemoKey = (u64, u64, bool, u64, u64, usize);

/// The outcome of one literal, relative to the start of its raw content.
#[derive(Debug)]
pub(crate) struct Memo {
    pub loc: Location,
    /// `(start, end, replacement)` relative to the literal's raw content, JSON-escaped.
    pub edits: Vec<(usize, usize, String)>,
    pub findings: Vec<Finding>,
    pub placeholders: Vec<Arc<str>>,
    pub text_leaves: usize,
    pub text_bytes: usize,
}

impl Memo {
    /// Approximate heap bytes held (strings and fixed overheads).
    fn cost(&self) -> usize {
        let f: usize = self.findings.iter().map(crate::prefix::finding_cost).sum();
        let e: usize = self.edits.iter().map(|(_, _, t)| 48 + t.len()).sum();
        let p: usize = self.placeholders.iter().map(|p| 32 + p.len()).sum();
        128 + self.loc.path.len() + f + e + p
    }
}

#[derive(Default)]
pub(crate) struct MemoMap {
    entries: HashMap<MemoKey, (u64, Arc<Memo>, usize)>,
    bytes: usize,
    tick: u64,
}

impl MemoMap {
    pub fn get(&mut self, key: &MemoKey) -> Option<Arc<Memo>> {
        self.tick += 1;
        let tick = self.tick;
        let (t, m, _) = self.entries.get_mut(key)?;
        *t = tick;
        Some(m.clone())
    }

    pub fn insert(&mut self, key: MemoKey, memo: Memo) {
        let cost = memo.cost();
        if cost > MAX_MEMO_BYTES / 4 {
            return;
        }
        if let Some((_, _, old)) = self.entries.remove(&key) {
            self.bytes -= old;
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= MAX_MEMO_ENTRIES || self.bytes + cost > MAX_MEMO_BYTES)
        {
            let mut ticks: Vec<u64> = self.entries.values().map(|(t, _, _)| *t).collect();
            ticks.sort_unstable();
            let cut = ticks[ticks.len() / 2];
            let mut freed = 0;
            self.entries.retain(|_, (t, _, c)| {
                let keep = *t > cut;
                if !keep {
                    freed += *c;
                }
                keep
            });
            self.bytes -= freed;
        }
        self.tick += 1;
        self.bytes += cost;
        self.entries.insert(key, (self.tick, Arc::new(memo), cost));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::Category;
    use crate::inspect::Finding;

    fn memo(findings: usize) -> Memo {
        let f = Finding {
            rule_id: "r".into(),
            category: Category::Secret,
            severity: "high".into(),
            label: "L".into(),
            preview: "p****".into(),
            fingerprint: "f".repeat(16),
            location: Location {
                path: "messages[1].content".into(),
                message: Some(1),
                block: None,
            },
            action: crate::Resolved::Log,
            applied: false,
            modifiable: true,
            placeholder: None,
        };
        Memo {
            loc: f.location.clone(),
            edits: Vec::new(),
            findings: vec![f; findings],
            placeholders: Vec::new(),
            text_leaves: 1,
            text_bytes: 1000,
        }
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let mut m = MemoMap::default();
        for i in 0..5000 {
            m.insert((0, 0, true, i, i, 1000), memo(1));
        }
        assert!(m.len() <= MAX_MEMO_ENTRIES);
        assert!(m.bytes <= MAX_MEMO_BYTES);
        // The newest is kept, the oldest gone.
        assert!(m.get(&(0, 0, true, 4999, 4999, 1000)).is_some());
        assert!(m.get(&(0, 0, true, 0, 0, 1000)).is_none());
        // Heavy entries: the byte bound decides.
        let mut m = MemoMap::default();
        for i in 0..200 {
            m.insert((0, 0, true, i, i, 1000), memo(100));
        }
        assert!(m.bytes <= MAX_MEMO_BYTES, "{}", m.bytes);
        assert!(m.len() < 200);
        let sum: usize = m.entries.values().map(|(_, _, c)| c).sum();
        assert_eq!(sum, m.bytes);
        // One entry over a quarter of the budget is not kept at all.
        m.insert((9, 9, true, 9, 9, 9), memo(2000));
        assert!(m.get(&(9, 9, true, 9, 9, 9)).is_none());
    }
}
