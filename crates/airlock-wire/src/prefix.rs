//! What the last requests of a vault scope held, element by element of their conversation
//! (`messages`, or the Responses `input` array), so that the next request neither parses nor
//! walks the part of the conversation it shares with one of them.
//!
//! Agents resend the whole conversation every turn, plus one new message. The literal memory
//! (`memo.rs`, and the detector's clean-literal cache) already spares re-scanning resent text,
//! but each request was still parsed and walked whole: for a 1 MB conversation that was most of
//! a millisecond of the gateway's time, per request, on content it had inspected a turn before.
//!
//! After each inspection the scope keeps, for each element of the conversation array: its byte
//! span, two keyed hashes (under the scope's random keys, as for the literal memory) of the body
//! bytes from the previous element's end to its own end — so the first one also covers
//! everything before the array — and what inspecting it produced (edits in body coordinates,
//! findings, counts). When the next body's bytes hash the same up to an element's end, that
//! prefix of the document is byte-identical to one already parsed, so the parser steps over
//! those elements ([`crate::json::Val::Known`]) and inspection splices their outcome.
//!
//! An outcome is replayed only under the same detector (a new one on each rule reload), the same
//! policy fingerprint, the same API, and while every placeholder it uses is still in the scope;
//! otherwise the element is parsed from its span and walked as if new. Elements that led to a
//! block are never replayed. No body bytes are kept, only hashes, spans and outcomes (which hold
//! placeholders and redacted previews, never values). Bounded: [`MAX_PREFIXES`] conversations per
//! scope (several sessions can share a key), each at most about [`MAX_PREFIX_BYTES`].

use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::quality::RandomState;

use crate::Api;
use crate::inspect::Finding;
use crate::json::Edit;

/// Conversations remembered per scope (the most recent ones).
pub const MAX_PREFIXES: usize = 4;
/// Largest remembered conversation, in estimated bytes of outcomes (not of the body).
pub const MAX_PREFIX_BYTES: usize = 1 << 20;

/// One element of a remembered conversation.
#[derive(Debug)]
pub(crate) struct Item {
    pub start: usize,
    pub end: usize,
    /// Keyed hashes of the body from the previous item's end (0 for the first) to `end`.
    pub hash: (u64, u64),
    /// What inspecting it produced, when that may be replayed.
    pub outcome: Option<Arc<Outcome>>,
}

#[derive(Debug)]
pub(crate) struct Outcome {
    /// In body coordinates (identical bytes put the element at the same offsets).
    pub edits: Vec<Edit>,
    pub findings: Vec<Finding>,
    pub placeholders: Vec<Arc<str>>,
    pub text_leaves: usize,
    pub text_bytes: usize,
    pub media_parts: usize,
}

/// A remembered conversation: the inspection of one request's conversation array.
#[derive(Debug)]
pub(crate) struct Prefix {
    pub api: Api,
    /// Detector memo id and policy fingerprint the outcomes were produced under.
    pub det: u64,
    pub policy: u64,
    /// Byte offset of the array's `[`.
    pub array: usize,
    pub items: Vec<Item>,
}

impl Prefix {
    /// Approximate heap bytes held.
    pub fn cost(&self) -> usize {
        let outcomes: usize = self
            .items
            .iter()
            .filter_map(|i| i.outcome.as_ref())
            .map(|o| {
                let f: usize = o.findings.iter().map(finding_cost).sum();
                let e: usize = o.edits.iter().map(|e| 48 + e.text.len()).sum();
                let p: usize = o.placeholders.iter().map(|p| 32 + p.len()).sum();
                96 + f + e + p
            })
            .sum();
        128 + self.items.len() * std::mem::size_of::<Item>() + outcomes
    }

    /// How many leading items `body` shares with this conversation, byte for byte (by hash).
    pub fn shared(&self, body: &[u8], keys: &(RandomState, RandomState)) -> usize {
        let mut from = 0;
        for (n, it) in self.items.iter().enumerate() {
            let Some(seg) = body.get(from..it.end) else {
                return n;
            };
            if segment_hash(seg, keys) != it.hash {
                return n;
            }
            from = it.end;
        }
        self.items.len()
    }
}

/// Approximate heap bytes of a remembered finding (here and in the literal memory).
pub(crate) fn finding_cost(f: &Finding) -> usize {
    128 + f.rule_id.len()
        + f.severity.len()
        + f.label.len()
        + f.preview.len()
        + f.fingerprint.len()
        + f.location.path.len()
        + f.placeholder.as_ref().map_or(0, String::len)
}

/// Of `candidates`, the conversation of `api` sharing the most leading elements with `body`, and
/// how many.
pub(crate) fn best(
    candidates: &[Arc<Prefix>],
    api: Api,
    body: &[u8],
    keys: &(RandomState, RandomState),
) -> Option<(Arc<Prefix>, usize)> {
    let mut best: Option<(Arc<Prefix>, usize)> = None;
    for p in candidates {
        if p.api != api {
            continue;
        }
        let n = p.shared(body, keys);
        if n > 0 && best.as_ref().is_none_or(|(_, b)| n > *b) {
            best = Some((p.clone(), n));
        }
    }
    best
}

/// The two keyed hashes of a segment (length included, so no segment extends another).
pub(crate) fn segment_hash(seg: &[u8], keys: &(RandomState, RandomState)) -> (u64, u64) {
    (
        keys.0.hash_one((seg.len(), seg)),
        keys.1.hash_one((seg.len(), seg)),
    )
}

/// The remembered conversations of one scope, most recent first.
#[derive(Default)]
pub(crate) struct Prefixes {
    list: Vec<(Arc<Prefix>, usize)>,
    bytes: usize,
}

impl Prefixes {
    pub fn all(&self) -> Vec<Arc<Prefix>> {
        self.list.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Remember `p`, replacing a conversation it extends (same first element), keeping at most
    /// [`MAX_PREFIXES`]. Returns the change in bytes held.
    pub fn put(&mut self, p: Prefix) -> isize {
        let before = self.bytes as isize;
        let cost = p.cost();
        if cost > MAX_PREFIX_BYTES {
            return 0;
        }
        let first = p.items.first().map(|i| i.hash);
        self.list
            .retain(|(q, _)| !(q.api == p.api && q.items.first().map(|i| i.hash) == first));
        self.list.insert(0, (Arc::new(p), cost));
        self.list.truncate(MAX_PREFIXES);
        self.bytes = self.list.iter().map(|(_, c)| c).sum();
        self.bytes as isize - before
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }
}
