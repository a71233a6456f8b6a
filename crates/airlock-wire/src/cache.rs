//! A detection cache: agents resend the whole conversation every turn, so almost every text
//! leaf of a request was already scanned on the previous turn.
//!
//! Two memories, both keyed by a 128-bit hash of the text under two independent random
//! per-process keys (`foldhash`, so hashing a megabyte costs a fraction of a millisecond, where
//! SipHash cost a full one; 128 bits and secret keys, so collisions are neither accidental nor
//! craftable by a client that never sees a hash):
//! - the detections of a decoded text (offsets, labels, redacted previews; never values);
//! - the raw JSON string literals known to hold no detection at all, so the wire layer skips
//!   even decoding them ([`Detector::known_clean`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::quality::RandomState;

use crate::detector::{Coverage, Detection, Detector, Replacement};

/// Texts shorter than this are scanned directly (hashing would cost about as much).
pub const CACHE_MIN_TEXT: usize = 512;
pub const DEFAULT_CACHE_ENTRIES: usize = 8192;
/// Texts with more detections than this are not remembered: the memory holds
/// [`DEFAULT_CACHE_ENTRIES`] texts, and a hostile client sending distinct texts of 100,000
/// covert characters each grew the gateway by about 60 MB per text. Real prompts hold far
/// fewer; such a text is simply scanned again when it comes back.
pub const MAX_CACHED_DETECTIONS: usize = 1024;

type Key = (u64, u64, usize);

/// Wraps a [`Detector`] and remembers what it found in long texts. Bounded: when a memory is
/// full, the older half of its entries is dropped.
pub struct CachedDetector<D> {
    inner: D,
    /// Unique per instance (a rule reload builds a new one): see [`Detector::memo_id`].
    id: u64,
    keys: (RandomState, RandomState),
    max_entries: usize,
    map: Mutex<Cache<Vec<Detection>>>,
    clean: Mutex<Cache<()>>,
}

struct Cache<V> {
    entries: HashMap<Key, (u64, V)>,
    tick: u64,
    hits: u64,
    misses: u64,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            entries: HashMap::new(),
            tick: 0,
            hits: 0,
            misses: 0,
        }
    }
}

impl<V> Cache<V> {
    /// Look up `key`, refreshing its age; counts hits and misses.
    fn get(&mut self, key: &Key) -> Option<&V> {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(key) {
            Some((t, v)) => {
                *t = tick;
                self.hits += 1;
                Some(v)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    fn insert(&mut self, key: Key, v: V, max: usize) {
        if self.entries.len() >= max {
            let mut ticks: Vec<u64> = self.entries.values().map(|(t, _)| *t).collect();
            ticks.sort_unstable();
            let cut = ticks[ticks.len() / 2];
            self.entries.retain(|_, (t, _)| *t > cut);
        }
        let tick = self.tick;
        self.entries.insert(key, (tick, v));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<D: Detector> CachedDetector<D> {
    pub fn new(inner: D) -> Self {
        Self::with_capacity(inner, DEFAULT_CACHE_ENTRIES)
    }

    pub fn with_capacity(inner: D, max_entries: usize) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        CachedDetector {
            inner,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            keys: (RandomState::default(), RandomState::default()),
            max_entries: max_entries.max(2),
            map: Mutex::new(Cache::default()),
            clean: Mutex::new(Cache::default()),
        }
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// (hits, misses) so far of the detection memory.
    pub fn stats(&self) -> (u64, u64) {
        let c = lock(&self.map);
        (c.hits, c.misses)
    }

    /// (hits, misses) so far of the clean-literal memory.
    pub fn clean_stats(&self) -> (u64, u64) {
        let c = lock(&self.clean);
        (c.hits, c.misses)
    }

    fn key(&self, bytes: &[u8]) -> Key {
        (
            self.keys.0.hash_one(bytes),
            self.keys.1.hash_one(bytes),
            bytes.len(),
        )
    }
}

impl<D: Detector> Detector for CachedDetector<D> {
    fn detect(&self, text: &str, out: &mut Vec<Detection>) -> Coverage {
        if text.len() < CACHE_MIN_TEXT {
            return self.inner.detect(text, out);
        }
        let key = self.key(text.as_bytes());
        if let Some(d) = lock(&self.map).get(&key) {
            out.extend(d.iter().cloned());
            return Coverage::Whole;
        }
        // Scan outside the lock. Only whole results are remembered (a partial one would be
        // replayed as if it were whole), and only small ones.
        let start = out.len();
        let coverage = self.inner.detect(text, out);
        let found = &out[start..];
        if coverage == Coverage::Whole && found.len() <= MAX_CACHED_DETECTIONS {
            let found = found.to_vec();
            lock(&self.map).insert(key, found, self.max_entries);
        }
        coverage
    }

    fn normalize(&self, text: &str, out: &mut Vec<Replacement>) {
        self.inner.normalize(text, out)
    }

    fn known_clean(&self, raw: &[u8]) -> bool {
        if raw.len() < CACHE_MIN_TEXT {
            return false;
        }
        let key = self.key(raw);
        lock(&self.clean).get(&key).is_some()
    }

    fn note_clean(&self, raw: &[u8]) {
        if raw.len() < CACHE_MIN_TEXT {
            return;
        }
        let key = self.key(raw);
        lock(&self.clean).insert(key, (), self.max_entries);
    }

    fn memo_id(&self) -> Option<u64> {
        Some(self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::Category;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Finds "SECRET" and counts its calls; a text holding "PARTIAL" is reported as not
    /// scanned whole.
    struct Counting(AtomicUsize);
    impl Detector for Counting {
        fn detect(&self, text: &str, out: &mut Vec<Detection>) -> Coverage {
            self.0.fetch_add(1, Ordering::Relaxed);
            for (i, _) in text.match_indices("SECRET") {
                out.push(Detection {
                    rule_id: "t".into(),
                    category: Category::Secret,
                    severity: "high".into(),
                    start: i,
                    end: i + 6,
                    preview: "S****".into(),
                    label: "T".into(),
                    fingerprint: String::new(),
                });
            }
            match text.contains("PARTIAL") {
                true => Coverage::Partial,
                false => Coverage::Whole,
            }
        }
        fn normalize(&self, _: &str, _: &mut Vec<Replacement>) {}
    }

    /// A partial result is never replayed as a whole one, and a text with very many detections
    /// is not remembered at all: both are scanned again every time.
    #[test]
    fn partial_and_crowded_results_are_not_remembered() {
        let c = CachedDetector::new(Counting(AtomicUsize::new(0)));
        let calls = || c.inner().0.load(Ordering::Relaxed);
        let partial = format!("{} SECRET PARTIAL", "x".repeat(600));
        let crowded = "SECRET ".repeat(MAX_CACHED_DETECTIONS + 1);
        let full = "SECRET ".repeat(MAX_CACHED_DETECTIONS);
        for (text, coverage, n) in [
            (&partial, Coverage::Partial, 1),
            (&crowded, Coverage::Whole, MAX_CACHED_DETECTIONS + 1),
        ] {
            for round in 0..2 {
                let before = calls();
                let mut out = Vec::new();
                assert_eq!(c.detect(text, &mut out), coverage);
                assert_eq!(out.len(), n);
                assert_eq!(calls(), before + 1, "scanned again in round {round}");
            }
        }
        // At the bound, remembered.
        let mut out = Vec::new();
        assert_eq!(c.detect(&full, &mut out), Coverage::Whole);
        let before = calls();
        out.clear();
        assert_eq!(c.detect(&full, &mut out), Coverage::Whole);
        assert_eq!((calls(), out.len()), (before, MAX_CACHED_DETECTIONS));
    }

    #[test]
    fn long_texts_are_scanned_once_and_detections_replayed() {
        let c = CachedDetector::new(Counting(AtomicUsize::new(0)));
        let text = format!("{} SECRET", "x".repeat(600));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(c.detect(&text, &mut a), Coverage::Whole);
        assert_eq!(c.detect(&text, &mut b), Coverage::Whole);
        assert_eq!(c.inner().0.load(Ordering::Relaxed), 1);
        assert_eq!(a.len(), 1);
        assert_eq!((b[0].start, b[0].end), (a[0].start, a[0].end));
        // A different text of the same length is a miss.
        let other = format!("{} SECRFT", "x".repeat(600));
        let mut d = Vec::new();
        let _ = c.detect(&other, &mut d);
        assert!(d.is_empty());
        assert_eq!(c.inner().0.load(Ordering::Relaxed), 2);
        // Short texts are never cached.
        let _ = c.detect("SECRET", &mut d);
        let _ = c.detect("SECRET", &mut d);
        assert_eq!(c.inner().0.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn clean_memory_is_exact_and_bounded() {
        let c = CachedDetector::with_capacity(Counting(AtomicUsize::new(0)), 4);
        let raw = |i: usize| format!("{i:04}{}", "y".repeat(600)).into_bytes();
        assert!(!c.known_clean(&raw(0)));
        c.note_clean(&raw(0));
        assert!(c.known_clean(&raw(0)));
        assert!(!c.known_clean(&raw(1)));
        // Short literals are never remembered.
        c.note_clean(b"short");
        assert!(!c.known_clean(b"short"));
        for i in 1..100 {
            c.note_clean(&raw(i));
        }
        assert!(lock(&c.clean).entries.len() <= 4);
        assert!(c.known_clean(&raw(99)));
        assert!(!c.known_clean(&raw(0)), "oldest entries are evicted");
    }
}
