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
//! Bounded per scope; literals that led to a block are never remembered.

use std::collections::HashMap;
use std::sync::Arc;

use crate::inspect::{Finding, Location};

/// Most remembered literals per scope; the older half goes when full.
pub const MAX_MEMO_ENTRIES: usize = 1024;
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

#[derive(Default)]
pub(crate) struct MemoMap {
    entries: HashMap<MemoKey, (u64, Arc<Memo>)>,
    tick: u64,
}

impl MemoMap {
    pub fn get(&mut self, key: &MemoKey) -> Option<Arc<Memo>> {
        self.tick += 1;
        let tick = self.tick;
        let (t, m) = self.entries.get_mut(key)?;
        *t = tick;
        Some(m.clone())
    }

    pub fn insert(&mut self, key: MemoKey, memo: Memo) {
        if self.entries.len() >= MAX_MEMO_ENTRIES {
            let mut ticks: Vec<u64> = self.entries.values().map(|(t, _)| *t).collect();
            ticks.sort_unstable();
            let cut = ticks[ticks.len() / 2];
            self.entries.retain(|_, (t, _)| *t > cut);
        }
        self.tick += 1;
        self.entries.insert(key, (self.tick, Arc::new(memo)));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
