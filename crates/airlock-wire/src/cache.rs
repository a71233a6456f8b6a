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

use crate::detector::{Detection, Detector, Replacement};

/// Texts shorter than this are scanned directly (hashing would cost about as much).
pub const CACHE_MIN_TEXT: usize = 512;
pub const DEFAULT_CACHE_ENTRIES: usize = 8192;

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
    fn detect(&self, text: &str, out: &mut Vec<Detection>) {
        if text.len() < CACHE_MIN_TEXT {
            return self.inner.detect(text, out);
        }
        let key = self.key(text.as_bytes());
        if let Some(d) = lock(&self.map).get(&key) {
            out.extend(d.iter().cloned());
            return;
        }
        // Scan outside the lock.
        let start = out.len();
        self.inner.detect(text, out);
        let found = out[start..].to_vec();
        lock(&self.map).insert(key, found, self.max_entries);
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

    /// Finds "SECRET" and counts its calls.
    struct Counting(AtomicUsize);
    impl Detector for Counting {
        fn detect(&self, text: &str, out: &mut Vec<Detection>) {
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
        }
        fn normalize(&self, _: &str, _: &mut Vec<Replacement>) {}
    }

    #[test]
    fn long_texts_are_scanned_once_and_detections_replayed() {
        let c = CachedDetector::new(Counting(AtomicUsize::new(0)));
        let text = format!("{} SECRET", "x".repeat(600));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.detect(&text, &mut a);
        c.detect(&text, &mut b);
        assert_eq!(c.inner().0.load(Ordering::Relaxed), 1);
        assert_eq!(a.len(), 1);
        assert_eq!((b[0].start, b[0].end), (a[0].start, a[0].end));
        // A different text of the same length is a miss.
        let other = format!("{} SECRFT", "x".repeat(600));
        let mut d = Vec::new();
        c.detect(&other, &mut d);
        assert!(d.is_empty());
        assert_eq!(c.inner().0.load(Ordering::Relaxed), 2);
        // Short texts are never cached.
        c.detect("SECRET", &mut d);
        c.detect("SECRET", &mut d);
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
