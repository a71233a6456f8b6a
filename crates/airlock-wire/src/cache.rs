//! A detection cache: agents resend the whole conversation every turn, so almost every text
//! leaf of a request was already scanned on the previous turn.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;

use crate::detector::{Detection, Detector, Replacement};

/// Texts shorter than this are scanned directly (hashing would cost about as much).
pub const CACHE_MIN_TEXT: usize = 512;
pub const DEFAULT_CACHE_ENTRIES: usize = 8192;

/// Wraps a [`Detector`] and remembers the detections of long texts, keyed by a keyed SipHash
/// of the text and its length (the key is random per process, so collisions cannot be
/// crafted). Detections hold offsets, labels and redacted previews, never values. Bounded: when
/// full, the older half of the entries is dropped.
pub struct CachedDetector<D> {
    inner: D,
    hasher: RandomState,
    max_entries: usize,
    map: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<(u64, usize), (u64, Vec<Detection>)>,
    tick: u64,
    hits: u64,
    misses: u64,
}

impl<D: Detector> CachedDetector<D> {
    pub fn new(inner: D) -> Self {
        Self::with_capacity(inner, DEFAULT_CACHE_ENTRIES)
    }

    pub fn with_capacity(inner: D, max_entries: usize) -> Self {
        CachedDetector {
            inner,
            hasher: RandomState::new(),
            max_entries: max_entries.max(2),
            map: Mutex::new(Cache::default()),
        }
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        let c = self.map.lock().unwrap_or_else(|e| e.into_inner());
        (c.hits, c.misses)
    }
}

impl<D: Detector> Detector for CachedDetector<D> {
    fn detect(&self, text: &str, out: &mut Vec<Detection>) {
        if text.len() < CACHE_MIN_TEXT {
            return self.inner.detect(text, out);
        }
        let key = (self.hasher.hash_one(text), text.len());
        {
            let mut c = self.map.lock().unwrap_or_else(|e| e.into_inner());
            c.tick += 1;
            let tick = c.tick;
            if let Some((t, d)) = c.entries.get_mut(&key) {
                *t = tick;
                out.extend(d.iter().cloned());
                c.hits += 1;
                return;
            }
            c.misses += 1;
        }
        // Scan outside the lock.
        let start = out.len();
        self.inner.detect(text, out);
        let found = out[start..].to_vec();
        let mut c = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if c.entries.len() >= self.max_entries {
            let mut ticks: Vec<u64> = c.entries.values().map(|(t, _)| *t).collect();
            ticks.sort_unstable();
            let cut = ticks[ticks.len() / 2];
            c.entries.retain(|_, (t, _)| *t > cut);
        }
        let tick = c.tick;
        c.entries.insert(key, (tick, found));
    }

    fn normalize(&self, text: &str, out: &mut Vec<Replacement>) {
        self.inner.normalize(text, out)
    }
}
