//! The reversible placeholder map.
//!
//! Placeholders are deterministic per scope (a user key or session): the same value always gets
//! the same `[REDACTED_<LABEL>_<n>]`, numbered per label in order of first appearance. Agents
//! resend the whole conversation every turn, so the upstream sees byte-identical prefixes and
//! its prompt cache keeps working. Values live only in memory, are zeroised on drop and never
//! appear in `Debug` output. Scopes expire after a TTL of inactivity; the number of scopes, the
//! entries and bytes per scope, and the bytes of all scopes together are bounded (least recently
//! used goes first: an entry within its scope, a whole scope across the vault).

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use foldhash::quality::RandomState;
use std::hash::BuildHasher;
use zeroize::Zeroize;

use crate::memo::{Memo, MemoKey, MemoMap};
use crate::prefix::{Prefix, Prefixes};

/// Upper bound on a placeholder's length, `[REDACTED_` + label + `_` + number + `]`.
pub const MAX_PLACEHOLDER_LEN: usize = 64;
const MAX_LABEL_LEN: usize = 32;
pub const PLACEHOLDER_PREFIX: &str = "[REDACTED_";

/// A sensitive value: zeroised on drop, redacted in `Debug`.
pub struct SecretValue(Box<str>);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl Drop for SecretValue {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}
impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<{} bytes redacted>)", self.0.len())
    }
}
impl PartialEq for SecretValue {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for SecretValue {}
impl Hash for SecretValue {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h)
    }
}
impl std::borrow::Borrow<str> for SecretValue {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Limits of a [`Vault`].
#[derive(Debug, Clone, Copy)]
pub struct VaultConfig {
    /// A scope unused for this long is forgotten.
    pub ttl: Duration,
    pub max_scopes: usize,
    pub max_entries_per_scope: usize,
    /// Sum of value lengths per scope.
    pub max_bytes_per_scope: usize,
    /// Values and remembered literal outcomes of all scopes together; beyond it, whole scopes
    /// go, least recently used first (the scope in use is kept).
    pub max_total_bytes: usize,
}

pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MAX_SCOPES: usize = 10_000;
pub const DEFAULT_MAX_ENTRIES_PER_SCOPE: usize = 10_000;
pub const DEFAULT_MAX_BYTES_PER_SCOPE: usize = 4 << 20;
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 256 << 20;

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            ttl: DEFAULT_TTL,
            max_scopes: DEFAULT_MAX_SCOPES,
            max_entries_per_scope: DEFAULT_MAX_ENTRIES_PER_SCOPE,
            max_bytes_per_scope: DEFAULT_MAX_BYTES_PER_SCOPE,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

/// All scopes. Cheap to clone (shared).
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Mutex<Scopes>>,
    cfg: VaultConfig,
    /// Bytes held by all scopes (values and remembered outcomes), including scopes already
    /// dropped from the map but still in use by a request.
    total: Arc<AtomicUsize>,
}

struct Scopes {
    map: HashMap<String, Arc<Mutex<ScopeData>>>,
    calls: u64,
}

impl Scopes {
    /// Removes the least recently used scope among those `eligible`; false when there is none.
    fn evict_oldest(&mut self, eligible: impl Fn(&str, &Arc<Mutex<ScopeData>>) -> bool) -> bool {
        let oldest = self
            .map
            .iter()
            .filter(|(k, d)| eligible(k, d))
            .min_by_key(|(_, d)| lock(d).last_used)
            .map(|(k, _)| k.clone());
        oldest.is_some_and(|k| self.map.remove(&k).is_some())
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("scopes", &lock(&self.inner).map.len())
            .field("cfg", &self.cfg)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Vault {
    fn default() -> Self {
        Vault::new(VaultConfig::default())
    }
}

impl Vault {
    pub fn new(cfg: VaultConfig) -> Self {
        Vault {
            inner: Arc::new(Mutex::new(Scopes {
                map: HashMap::new(),
                calls: 0,
            })),
            cfg,
            total: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The scope for `key` (e.g. `user:alice` or a session id), created if needed.
    pub fn scope(&self, key: &str) -> VaultScope {
        let now = Instant::now();
        let mut s = lock(&self.inner);
        s.calls += 1;
        if s.calls.is_multiple_of(1024) || s.map.len() >= self.cfg.max_scopes {
            let ttl = self.cfg.ttl;
            s.map
                .retain(|_, d| now.duration_since(lock(d).last_used) < ttl);
            while s.map.len() >= self.cfg.max_scopes.max(1) && s.evict_oldest(|_, _| true) {}
        }
        // Only scopes no request is using: dropping one frees its bytes now (one in use would
        // keep them until its request ends, and lose its placeholders for nothing).
        while self.total.load(Ordering::Relaxed) > self.cfg.max_total_bytes
            && s.evict_oldest(|k, d| k != key && Arc::strong_count(d) == 1)
        {}
        if let Some(d) = s.map.get(key) {
            let expired = now.duration_since(lock(d).last_used) >= self.cfg.ttl;
            if !expired {
                let d = d.clone();
                lock(&d).last_used = now;
                return VaultScope { data: d };
            }
        }
        let d = Arc::new(Mutex::new(ScopeData::new(
            self.cfg,
            now,
            self.total.clone(),
        )));
        s.map.insert(key.to_owned(), d.clone());
        VaultScope { data: d }
    }

    pub fn scope_count(&self) -> usize {
        lock(&self.inner).map.len()
    }

    /// Bytes held by all scopes (values and remembered literal outcomes).
    pub fn total_bytes(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// Map key: a shared value, looked up by `&str`.
#[derive(PartialEq, Eq, Hash)]
struct VKey(Arc<SecretValue>);
impl std::borrow::Borrow<str> for VKey {
    fn borrow(&self) -> &str {
        self.0.expose()
    }
}

struct Entry {
    placeholder: Arc<str>,
    tick: u64,
}

struct ScopeData {
    /// Outcomes of literals that held something (see `memo.rs`).
    memo: MemoMap,
    memo_keys: (RandomState, RandomState),
    /// The last conversations inspected (see `prefix.rs`).
    prefixes: Prefixes,
    by_value: HashMap<VKey, Entry>,
    by_placeholder: HashMap<Arc<str>, Arc<SecretValue>>,
    counters: HashMap<Box<str>, u64>,
    bytes: usize,
    tick: u64,
    last_used: Instant,
    cfg: VaultConfig,
    /// The vault's byte total, which this scope's values and memo count into.
    total: Arc<AtomicUsize>,
}

impl Drop for ScopeData {
    fn drop(&mut self) {
        self.total.fetch_sub(
            self.bytes + self.memo.bytes() + self.prefixes.bytes(),
            Ordering::Relaxed,
        );
    }
}

impl ScopeData {
    fn new(cfg: VaultConfig, now: Instant, total: Arc<AtomicUsize>) -> Self {
        ScopeData {
            total,
            memo: MemoMap::default(),
            memo_keys: (RandomState::default(), RandomState::default()),
            prefixes: Prefixes::default(),
            by_value: HashMap::new(),
            by_placeholder: HashMap::new(),
            counters: HashMap::new(),
            bytes: 0,
            tick: 0,
            last_used: now,
            cfg,
        }
    }

    fn evict(&mut self) {
        // Drop the least recently used tenth (at least one) of the entries.
        let n = (self.by_value.len() / 10).max(1);
        let mut ticks: Vec<u64> = self.by_value.values().map(|e| e.tick).collect();
        ticks.sort_unstable();
        let Some(&cut) = ticks.get(n - 1) else { return };
        let by_placeholder = &mut self.by_placeholder;
        let mut freed = 0;
        self.by_value.retain(|v, e| {
            if e.tick <= cut {
                by_placeholder.remove(&e.placeholder);
                freed += v.0.expose().len();
                false
            } else {
                true
            }
        });
        let freed = freed.min(self.bytes);
        self.bytes -= freed;
        self.total.fetch_sub(freed, Ordering::Relaxed);
    }
}

/// One scope of the vault. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct VaultScope {
    data: Arc<Mutex<ScopeData>>,
}

impl fmt::Debug for VaultScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultScope")
            .field("entries", &self.len())
            .finish()
    }
}

/// `GITHUB_TOKEN` style: upper-case ASCII letters, digits and single underscores.
pub fn sanitize_label(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
        if out.len() >= MAX_LABEL_LEN {
            break;
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("SECRET");
    }
    out
}

impl VaultScope {
    /// A standalone scope not attached to any vault (tests, one-shot scans).
    pub fn detached() -> Self {
        VaultScope {
            data: Arc::new(Mutex::new(ScopeData::new(
                VaultConfig::default(),
                Instant::now(),
                Arc::new(AtomicUsize::new(0)),
            ))),
        }
    }

    /// The placeholder for `value`, assigning the next number for `label` on first sight.
    pub fn placeholder(&self, label: &str, value: &str) -> Arc<str> {
        let mut d = lock(&self.data);
        d.tick += 1;
        let tick = d.tick;
        if let Some(e) = d.by_value.get_mut(value) {
            e.tick = tick;
            return e.placeholder.clone();
        }
        while !d.by_value.is_empty()
            && (d.by_value.len() >= d.cfg.max_entries_per_scope
                || d.bytes + value.len() > d.cfg.max_bytes_per_scope)
        {
            d.evict();
        }
        let label = sanitize_label(label);
        let n = {
            let c = d
                .counters
                .entry(label.clone().into_boxed_str())
                .or_insert(0);
            *c += 1;
            *c
        };
        let ph: Arc<str> = Arc::from(format!("{PLACEHOLDER_PREFIX}{label}_{n}]"));
        let v = Arc::new(SecretValue(value.into()));
        d.bytes += value.len();
        d.total.fetch_add(value.len(), Ordering::Relaxed);
        d.by_placeholder.insert(ph.clone(), v.clone());
        d.by_value.insert(
            VKey(v),
            Entry {
                placeholder: ph.clone(),
                tick,
            },
        );
        ph
    }

    /// The original value behind a placeholder this scope issued.
    pub fn lookup(&self, placeholder: &str) -> Option<Arc<SecretValue>> {
        let d = lock(&self.data);
        d.by_placeholder.get(placeholder).cloned()
    }

    pub fn len(&self) -> usize {
        lock(&self.data).by_value.len()
    }

    /// The memo key of a raw literal (keyed hashes under this scope's random keys).
    pub(crate) fn memo_key(
        &self,
        raw: &[u8],
        detector: u64,
        policy: u64,
        modifiable: bool,
    ) -> MemoKey {
        let d = lock(&self.data);
        let (a, b) = (&d.memo_keys.0, &d.memo_keys.1);
        (
            detector,
            policy,
            modifiable,
            a.hash_one(raw),
            b.hash_one(raw),
            raw.len(),
        )
    }

    /// A remembered outcome, if every placeholder it uses is still in this scope (they are
    /// refreshed, as looking them up again would).
    pub(crate) fn memo_get(&self, key: &MemoKey) -> Option<Arc<Memo>> {
        let mut d = lock(&self.data);
        let m = d.memo.get(key)?;
        d.tick += 1;
        let tick = d.tick;
        for ph in &m.placeholders {
            let v = d.by_placeholder.get(ph)?.clone();
            d.by_value.get_mut(v.expose())?.tick = tick;
        }
        Some(m)
    }

    pub(crate) fn memo_put(&self, key: MemoKey, memo: Memo) {
        let mut d = lock(&self.data);
        let before = d.memo.bytes();
        d.memo.insert(key, memo);
        let after = d.memo.bytes();
        if after >= before {
            d.total.fetch_add(after - before, Ordering::Relaxed);
        } else {
            d.total.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// The scope's hash keys and its remembered conversations (the caller hashes a body without
    /// holding the scope's lock).
    pub(crate) fn prefixes(&self) -> ((RandomState, RandomState), Vec<Arc<Prefix>>) {
        let d = lock(&self.data);
        (d.memo_keys.clone(), d.prefixes.all())
    }

    /// The scope's hash keys (what remembered conversations are hashed with).
    pub(crate) fn prefix_keys(&self) -> (RandomState, RandomState) {
        lock(&self.data).memo_keys.clone()
    }

    pub(crate) fn prefix_put(&self, p: Prefix) {
        let mut d = lock(&self.data);
        let delta = d.prefixes.put(p);
        if delta >= 0 {
            d.total.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            d.total.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Whether every placeholder is still in this scope (they are refreshed, as looking them up
    /// again would).
    pub(crate) fn placeholders_live(&self, placeholders: &[Arc<str>]) -> bool {
        let mut d = lock(&self.data);
        d.tick += 1;
        let tick = d.tick;
        for ph in placeholders {
            let Some(v) = d.by_placeholder.get(ph).cloned() else {
                return false;
            };
            let Some(e) = d.by_value.get_mut(v.expose()) else {
                return false;
            };
            e.tick = tick;
        }
        true
    }

    /// Conversations remembered by this scope (see `prefix.rs`).
    pub fn prefix_len(&self) -> usize {
        lock(&self.data).prefixes.len()
    }

    /// Literals remembered by this scope.
    pub fn memo_len(&self) -> usize {
        lock(&self.data).memo.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_numbering_and_lookup() {
        let v = Vault::default();
        let s = v.scope("user:a");
        let a = s.placeholder("github token", "ghp_one");
        let b = s.placeholder("GITHUB_TOKEN", "ghp_two");
        let c = s.placeholder("email", "a@b.c");
        assert_eq!(&*a, "[REDACTED_GITHUB_TOKEN_1]");
        assert_eq!(&*b, "[REDACTED_GITHUB_TOKEN_2]");
        assert_eq!(&*c, "[REDACTED_EMAIL_1]");
        assert_eq!(&*v.scope("user:a").placeholder("x", "ghp_one"), &*a);
        assert_eq!(s.lookup(&a).unwrap().expose(), "ghp_one");
        // other scope: independent numbering, no cross-scope lookup
        let o = v.scope("user:b");
        assert!(o.lookup(&a).is_none());
        assert_eq!(
            &*o.placeholder("GITHUB_TOKEN", "ghp_two"),
            "[REDACTED_GITHUB_TOKEN_1]"
        );
        assert!(!format!("{s:?}{v:?}{:?}", s.lookup(&a)).contains("ghp_one"));
    }

    #[test]
    fn bounded() {
        let v = Vault::new(VaultConfig {
            max_entries_per_scope: 10,
            max_scopes: 3,
            ..VaultConfig::default()
        });
        let s = v.scope("k");
        for i in 0..100 {
            s.placeholder("T", &format!("value{i}"));
        }
        assert!(s.len() <= 10);
        assert_eq!(s.lookup("[REDACTED_T_100]").unwrap().expose(), "value99");
        assert!(s.lookup("[REDACTED_T_1]").is_none());
        for i in 0..10 {
            v.scope(&format!("s{i}"));
        }
        assert!(v.scope_count() <= 3);
    }

    #[test]
    fn all_scopes_together_are_bounded() {
        let v = Vault::new(VaultConfig {
            max_total_bytes: 1000,
            ..VaultConfig::default()
        });
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            let s = v.scope(k);
            s.placeholder("T", &format!("{i}{}", "x".repeat(399)));
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(v.total_bytes(), 1200);
        // Over the budget: the next call evicts the least recently used scope ("a").
        let d = v.scope("d");
        assert_eq!(v.total_bytes(), 800);
        assert_eq!(v.scope_count(), 3);
        assert!(
            v.scope("a").is_empty(),
            "a was evicted (and is now a new, empty scope)"
        );
        // A scope in use by a request is not evicted; the others go, oldest first.
        let held = v.scope("b");
        d.placeholder("T", &"y".repeat(600));
        let _ = v.scope("e");
        assert_eq!(v.total_bytes(), 1000, "c went, b (in use) and d stayed");
        assert_eq!(held.len(), 1);
        assert!(v.scope("b").len() == 1, "b kept its placeholder");
        drop(held);
        d.placeholder("T", "z");
        let _ = v.scope("f");
        assert!(v.total_bytes() <= 1000, "{}", v.total_bytes());
    }

    #[test]
    fn ttl_expires_scope() {
        let v = Vault::new(VaultConfig {
            ttl: Duration::from_millis(1),
            ..VaultConfig::default()
        });
        let ph = v.scope("k").placeholder("T", "x");
        std::thread::sleep(Duration::from_millis(5));
        assert!(v.scope("k").lookup(&ph).is_none());
    }
}
