//! The differ: structural JSON diff of model requests across runs, learning of volatile parts
//! from repeated baseline runs, and a character-level diff of differing strings that names
//! every changed code point.
//!
//! Requests are normalised first ([`normalise`]): only model API calls are compared, matched
//! by method, path and order; the run's own temporary directory and recorder port are replaced
//! by placeholders; hop-by-hop and length headers are dropped; credentials are replaced by a
//! short hash so a changing key is still seen but never shown.
//!
//! Volatility is learned, not guessed: every difference between baseline repetitions marks
//! its place as volatile. For strings this is a character range (widened to the surrounding
//! token, e.g. a whole UUID or timestamp) together with the token's *shape* (ASCII letter and
//! digit runs collapsed to `x`); a later difference inside a volatile range is ignored only
//! when the token keeps a shape seen in the baselines, so `2026-11-25` → `11/25/2026` or an
//! ASCII letter swapped for a look-alike inside an id is still reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use similar::{Algorithm, DiffOp, DiffTag};

use crate::recorder::RecordedRequest;

/// Time allowed for one character diff before falling back to a coarser result.
const CHAR_DIFF_TIMEOUT: Duration = Duration::from_millis(1500);
/// Hunks separated by at most this many unchanged characters are shown as one.
const MERGE_GAP: usize = 4;
/// Context characters shown on each side of a hunk.
const CONTEXT: usize = 24;
/// At most this many individual character changes are listed per hunk.
const MAX_CHAR_CHANGES: usize = 16;
/// Nesting depth limit for the structural walk.
const MAX_DEPTH: usize = 96;

/// Headers that say nothing about the agent (transport, lengths, the host it was pointed at).
const IGNORED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "proxy-connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
];

/// Headers and query parameters whose values are credentials.
const SECRET_NAMES: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "key",
    "api_key",
];

/// One segment of a path into a request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
    /// The string here held JSON, which was parsed and compared structurally.
    Json,
}

/// A path into a normalised request: `messages[0].content[0].text`, `headers["user-agent"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JsonPath(pub Vec<Seg>);

impl JsonPath {
    fn push(&self, s: Seg) -> JsonPath {
        let mut v = self.0.clone();
        v.push(s);
        JsonPath(v)
    }

    fn starts_with(&self, other: &JsonPath) -> bool {
        self.0.starts_with(&other.0)
    }
}

fn is_ident(k: &str) -> bool {
    let mut c = k.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

impl fmt::Display for JsonPath {
    /// The `body` root is left out (`messages[0]...`); `headers` and `query` stay.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let segs: &[Seg] = match self.0.first() {
            Some(Seg::Key(k)) if k == "body" => &self.0[1..],
            _ => &self.0,
        };
        if segs.is_empty() {
            return f.write_str(if self.0.is_empty() {
                "(request)"
            } else {
                "(body)"
            });
        }
        let mut first = true;
        for s in segs {
            match s {
                Seg::Key(k) if is_ident(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => write!(f, "[{}]", serde_json::Value::String(k.clone()))?,
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::Json => f.write_str("<json>")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// One model request, normalised for comparison.
#[derive(Debug, Clone)]
pub struct RequestDoc {
    /// `POST /v1/messages #1`
    pub key: String,
    /// `{"query": {...}, "headers": {...}, "body": ...}`
    pub value: Value,
}

/// Replaces every occurrence of run-specific strings so identical runs look identical.
struct Normaliser {
    subs: Vec<(String, String)>,
}

impl Normaliser {
    fn new(run_dir: &str, port: u16) -> Normaliser {
        let mut subs = Vec::new();
        if !run_dir.is_empty() {
            subs.push((run_dir.to_string(), "{run_dir}".to_string()));
            let slug: String = run_dir
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            subs.push((slug, "{run_dir_slug}".to_string()));
        }
        if port != 0 {
            subs.push((format!(":{port}"), ":{port}".to_string()));
        }
        Normaliser { subs }
    }

    fn str(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (from, to) in &self.subs {
            if out.contains(from.as_str()) {
                out = out.replace(from.as_str(), to);
            }
        }
        out
    }

    fn value(&self, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.str(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|x| self.value(x)).collect()),
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, x)| (self.str(&k), self.value(x)))
                    .collect(),
            ),
            other => other,
        }
    }
}

fn redact(v: &str) -> String {
    let h = Sha256::digest(v.as_bytes());
    format!("<redacted sha256:{}>", hex::encode(&h[..4]))
}

/// The model requests of one run, normalised.
pub fn normalise(records: &[RecordedRequest], run_dir: &str, port: u16) -> Vec<RequestDoc> {
    let n = Normaliser::new(run_dir, port);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.api.is_some()) {
        let base = format!("{} {}", r.method, n.str(&r.path));
        let c = counts.entry(base.clone()).or_insert(0);
        *c += 1;
        let key = format!("{base} #{c}");
        let mut headers = Map::new();
        for (k, v) in &r.headers {
            let k = k.to_ascii_lowercase();
            if IGNORED_HEADERS.contains(&k.as_str()) {
                continue;
            }
            let v = if SECRET_NAMES.contains(&k.as_str()) {
                redact(v)
            } else {
                n.str(v)
            };
            match headers.get_mut(&k) {
                Some(Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(&v);
                }
                _ => {
                    headers.insert(k, Value::String(v));
                }
            }
        }
        let mut query = Map::new();
        for kv in r.query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = if SECRET_NAMES.contains(&k.to_ascii_lowercase().as_str()) {
                redact(v)
            } else {
                n.str(v)
            };
            query.insert(k.to_string(), Value::String(v));
        }
        let body = match serde_json::from_str::<Value>(&r.body) {
            Ok(v) => n.value(v),
            Err(_) => Value::String(n.str(&r.body)),
        };
        let mut m = Map::new();
        m.insert("query".into(), Value::Object(query));
        m.insert("headers".into(), Value::Object(headers));
        m.insert("body".into(), body);
        out.push(RequestDoc {
            key,
            value: Value::Object(m),
        });
    }
    out
}

/// A Unicode code point with its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodePoint {
    /// `U+2019`
    pub code: String,
    /// `RIGHT SINGLE QUOTATION MARK` (or `<control>`, `<unnamed>`)
    pub name: String,
}

impl CodePoint {
    pub fn of(c: char) -> CodePoint {
        let name = match unicode_names2::name(c) {
            Some(n) => n.to_string(),
            None if c.is_control() => "<control>".to_string(),
            None => "<unnamed>".to_string(),
        };
        CodePoint {
            code: format!("U+{:04X}", c as u32),
            name,
        }
    }
}

impl fmt::Display for CodePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.name)
    }
}

/// One changed character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CharChange {
    /// Character offset in the baseline string.
    pub at: usize,
    pub old: Option<CodePoint>,
    pub new: Option<CodePoint>,
}

impl fmt::Display for CharChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.old, &self.new) {
            (Some(o), Some(n)) => write!(f, "{o} → {n}"),
            (Some(o), None) => write!(f, "removed {o}"),
            (None, Some(n)) => write!(f, "inserted {n}"),
            (None, None) => f.write_str("(none)"),
        }
    }
}

/// One changed stretch of a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hunk {
    /// Character offset of the change in the baseline string.
    pub at: usize,
    /// Character offset in the other run's string.
    pub new_at: usize,
    pub old: String,
    pub new: String,
    pub before: String,
    pub after: String,
    /// Look-alike or invisible characters, or whitespace-only changes.
    pub covert: bool,
    /// The change sits inside a value that varies between identical runs, but its shape
    /// changed (e.g. a date format).
    pub in_volatile: bool,
    pub chars: Vec<CharChange>,
    /// More character changes than listed.
    pub more_chars: usize,
}

/// What differs at one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Present in the other run only.
    Added { new: Value },
    /// Present in the baseline only.
    Removed { old: Value },
    /// A non-string value or the type changed.
    Value { old: Value, new: Value },
    /// A string changed; the character-level hunks.
    Text { hunks: Vec<Hunk> },
}

/// One difference between a baseline request and another run's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub request: String,
    #[serde(serialize_with = "ser_path")]
    pub path: JsonPath,
    pub change: Change,
    pub covert: bool,
}

fn ser_path<S: serde::Serializer>(p: &JsonPath, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string())
}

/// A raw string diff, kept for volatility learning.
struct RawText {
    old: Vec<char>,
    new: Vec<char>,
    ops: Vec<DiffOp>,
}

enum Raw {
    Added(Value),
    Removed(Value),
    Value(Value, Value),
    Text(RawText),
}

struct RawDiff {
    request: String,
    path: JsonPath,
    raw: Raw,
}

fn canonical(v: &Value) -> String {
    v.to_string()
}

fn diff_values(
    request: &str,
    path: &JsonPath,
    a: &Value,
    b: &Value,
    depth: usize,
    out: &mut Vec<RawDiff>,
) {
    if a == b {
        return;
    }
    let push = |out: &mut Vec<RawDiff>, raw| {
        out.push(RawDiff {
            request: request.to_string(),
            path: path.clone(),
            raw,
        })
    };
    if depth > MAX_DEPTH {
        push(out, Raw::Value(a.clone(), b.clone()));
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = path.push(Seg::Key(k.clone()));
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => diff_values(request, &p, va, vb, depth + 1, out),
                    (Some(va), None) => out.push(RawDiff {
                        request: request.to_string(),
                        path: p,
                        raw: Raw::Removed(va.clone()),
                    }),
                    (None, Some(vb)) => out.push(RawDiff {
                        request: request.to_string(),
                        path: p,
                        raw: Raw::Added(vb.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() == y.len() {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    diff_values(request, &path.push(Seg::Index(i)), va, vb, depth + 1, out);
                }
                return;
            }
            let ka: Vec<String> = x.iter().map(canonical).collect();
            let kb: Vec<String> = y.iter().map(canonical).collect();
            let deadline = Instant::now() + CHAR_DIFF_TIMEOUT;
            let ops =
                similar::capture_diff_slices_deadline(Algorithm::Myers, &ka, &kb, Some(deadline));
            for op in ops {
                let (tag, ro, rn) = op.as_tag_tuple();
                match tag {
                    DiffTag::Equal => {}
                    _ => {
                        let paired = ro.len().min(rn.len());
                        for k in 0..paired {
                            let (i, j) = (ro.start + k, rn.start + k);
                            diff_values(
                                request,
                                &path.push(Seg::Index(i)),
                                &x[i],
                                &y[j],
                                depth + 1,
                                out,
                            );
                        }
                        for (i, item) in x.iter().enumerate().take(ro.end).skip(ro.start + paired) {
                            out.push(RawDiff {
                                request: request.to_string(),
                                path: path.push(Seg::Index(i)),
                                raw: Raw::Removed(item.clone()),
                            });
                        }
                        for (j, item) in y.iter().enumerate().take(rn.end).skip(rn.start + paired) {
                            out.push(RawDiff {
                                request: request.to_string(),
                                path: path.push(Seg::Index(j)),
                                raw: Raw::Added(item.clone()),
                            });
                        }
                    }
                }
            }
        }
        (Value::String(x), Value::String(y)) => {
            let looks_json = |s: &str| {
                let t = s.trim_start();
                t.starts_with('{') || t.starts_with('[')
            };
            if looks_json(x)
                && looks_json(y)
                && let (Ok(jx), Ok(jy)) = (
                    serde_json::from_str::<Value>(x),
                    serde_json::from_str::<Value>(y),
                )
                && (jx.is_object() || jx.is_array())
            {
                diff_values(request, &path.push(Seg::Json), &jx, &jy, depth + 1, out);
                return;
            }
            let old: Vec<char> = x.chars().collect();
            let new: Vec<char> = y.chars().collect();
            let deadline = Instant::now() + CHAR_DIFF_TIMEOUT;
            let ops =
                similar::capture_diff_slices_deadline(Algorithm::Myers, &old, &new, Some(deadline));
            push(out, Raw::Text(RawText { old, new, ops }));
        }
        _ => push(out, Raw::Value(a.clone(), b.clone())),
    }
}

fn diff_docs(base: &[RequestDoc], other: &[RequestDoc]) -> Vec<RawDiff> {
    let mut out = Vec::new();
    let om: BTreeMap<&str, &RequestDoc> = other.iter().map(|d| (d.key.as_str(), d)).collect();
    let bm: BTreeMap<&str, &RequestDoc> = base.iter().map(|d| (d.key.as_str(), d)).collect();
    for b in base {
        match om.get(b.key.as_str()) {
            Some(o) => diff_values(
                &b.key,
                &JsonPath::default(),
                &b.value,
                &o.value,
                0,
                &mut out,
            ),
            None => out.push(RawDiff {
                request: b.key.clone(),
                path: JsonPath::default(),
                raw: Raw::Removed(Value::String("request not sent".into())),
            }),
        }
    }
    for o in other {
        if !bm.contains_key(o.key.as_str()) {
            out.push(RawDiff {
                request: o.key.clone(),
                path: JsonPath::default(),
                raw: Raw::Added(Value::String("request sent".into())),
            });
        }
    }
    out
}

/// Characters that belong to a token (an id, timestamp, number, word).
fn is_token_char(c: char) -> bool {
    c.is_alphanumeric() || "-_:.+".contains(c)
}

/// Widens `r` to the surrounding token.
fn widen(s: &[char], r: Range<usize>) -> Range<usize> {
    let mut a = r.start.min(s.len());
    let mut b = r.end.min(s.len()).max(a);
    while a > 0 && is_token_char(s[a - 1]) {
        a -= 1;
    }
    while b < s.len() && is_token_char(s[b]) {
        b += 1;
    }
    a..b
}

/// The shape of a token: runs of ASCII letters and digits collapse to `x`, everything else is
/// kept, so `2026-11-25` and `11/25/2026` differ while two UUIDs do not.
fn shape(s: &[char]) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for &c in s {
        if c.is_ascii_alphanumeric() {
            if !in_run {
                out.push('x');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// Maps a position in the old string to the new string through the diff ops.
fn map_pos(ops: &[DiffOp], pos: usize, new_len: usize) -> usize {
    for op in ops {
        let (tag, ro, rn) = op.as_tag_tuple();
        if pos >= ro.start && pos < ro.end {
            return if tag == DiffTag::Equal {
                rn.start + (pos - ro.start)
            } else {
                rn.start
            };
        }
        if ro.is_empty() && pos == ro.start && tag == DiffTag::Insert {
            continue;
        }
    }
    new_len
}

/// The non-equal stretches of a string diff: (old range, new range).
fn raw_hunks(ops: &[DiffOp]) -> Vec<(Range<usize>, Range<usize>)> {
    let mut out: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    for op in ops {
        let (tag, ro, rn) = op.as_tag_tuple();
        if tag == DiffTag::Equal {
            continue;
        }
        if let Some(last) = out.last_mut()
            && last.0.end == ro.start
            && last.1.end == rn.start
        {
            last.0.end = ro.end;
            last.1.end = rn.end;
            continue;
        }
        out.push((ro, rn));
    }
    out
}

/// A learned volatile stretch of a string in the first baseline.
#[derive(Debug, Clone)]
struct VolRange {
    range: Range<usize>,
    shapes: BTreeSet<String>,
}

/// What varies between identical runs.
#[derive(Debug, Clone, Default)]
pub struct Volatile {
    /// (request, path) whose whole value (and everything under it) varies.
    whole: BTreeSet<(String, JsonPath)>,
    /// (request, path) of strings with volatile stretches.
    ranges: BTreeMap<(String, JsonPath), Vec<VolRange>>,
}

impl Volatile {
    /// Learns from the first baseline and its repetitions.
    pub fn learn(base: &[RequestDoc], repeats: &[Vec<RequestDoc>]) -> Volatile {
        let mut v = Volatile::default();
        for rep in repeats {
            for d in diff_docs(base, rep) {
                let key = (d.request.clone(), d.path.clone());
                match d.raw {
                    Raw::Text(t) => {
                        let list = v.ranges.entry(key).or_default();
                        for (ro, _rn) in raw_hunks(&t.ops) {
                            let wr = widen(&t.old, ro);
                            let ns = map_pos(&t.ops, wr.start, t.new.len());
                            let ne = map_pos(&t.ops, wr.end, t.new.len()).max(ns);
                            let wn = widen(&t.new, ns..ne);
                            let mut shapes = BTreeSet::new();
                            shapes.insert(shape(&t.old[wr.clone()]));
                            shapes.insert(shape(&t.new[wn]));
                            if let Some(existing) = list
                                .iter_mut()
                                .find(|x| x.range.start <= wr.end && wr.start <= x.range.end)
                            {
                                existing.range = existing.range.start.min(wr.start)
                                    ..existing.range.end.max(wr.end);
                                existing.shapes.extend(shapes);
                            } else {
                                list.push(VolRange { range: wr, shapes });
                            }
                        }
                    }
                    _ => {
                        v.whole.insert(key);
                    }
                }
            }
        }
        v
    }

    fn is_whole(&self, request: &str, path: &JsonPath) -> bool {
        self.whole
            .iter()
            .any(|(r, p)| r == request && path.starts_with(p))
            || self
                .whole
                .iter()
                .any(|(r, p)| r == request && p.0.is_empty())
    }

    /// The volatile paths, for the report.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self.whole.iter().map(|(r, p)| format!("{r} {p}")).collect();
        for ((r, p), ranges) in &self.ranges {
            let spans: Vec<String> = ranges
                .iter()
                .map(|x| {
                    format!(
                        "{}..{} ({})",
                        x.range.start,
                        x.range.end,
                        x.shapes.iter().cloned().collect::<Vec<_>>().join(" | ")
                    )
                })
                .collect();
            out.push(format!("{r} {p}: {}", spans.join(", ")));
        }
        out
    }
}

/// Invisible or space-like characters that hide in text.
pub fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00A0 | 0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x1680 | 0x17B4 | 0x17B5
        | 0x180B..=0x180F | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x206F
        | 0x3000 | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB
        | 0x1D173..=0x1D17A | 0xE0000..=0xE007F | 0xE0100..=0xE01EF)
        || (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

fn skeleton(s: &str) -> String {
    unicode_security::confusable_detection::skeleton(s).collect()
}

/// Whether a change from `old` to `new` is covert: invisible characters, look-alikes of the
/// same skeleton, or whitespace-only changes.
pub fn is_covert(old: &str, new: &str) -> bool {
    if old == new {
        return false;
    }
    if old.chars().chain(new.chars()).any(is_invisible) {
        return true;
    }
    if !old.is_empty() && !new.is_empty() && skeleton(old) == skeleton(new) {
        return true;
    }
    let ws = |s: &str| s.chars().all(char::is_whitespace);
    ws(old) && ws(new)
}

/// A kept raw hunk: old range, new range, inside a volatile stretch.
type KeptHunk = (Range<usize>, Range<usize>, bool);

fn build_hunks(t: &RawText, keep: &[KeptHunk]) -> Vec<Hunk> {
    // Merge hunks separated by short unchanged stretches for display.
    let mut groups: Vec<Vec<KeptHunk>> = Vec::new();
    for h in keep {
        match groups.last_mut() {
            Some(g)
                if g.last().is_some_and(|l: &KeptHunk| {
                    h.0.start.saturating_sub(l.0.end) <= MERGE_GAP
                        && h.1.start.saturating_sub(l.1.end) <= MERGE_GAP
                }) =>
            {
                g.push(h.clone())
            }
            _ => groups.push(vec![h.clone()]),
        }
    }
    let s = |v: &[char], r: Range<usize>| {
        v[r.start.min(v.len())..r.end.min(v.len())]
            .iter()
            .collect::<String>()
    };
    groups
        .into_iter()
        .filter_map(|g| {
            let first = g.first()?;
            let last = g.last()?;
            let ro = first.0.start..last.0.end;
            let rn = first.1.start..last.1.end;
            let mut chars = Vec::new();
            let mut total = 0usize;
            let mut covert = false;
            let mut in_volatile = false;
            for (o, n, vol) in &g {
                in_volatile |= *vol;
                let os = s(&t.old, o.clone());
                let ns = s(&t.new, n.clone());
                covert |= is_covert(&os, &ns);
                let oc: Vec<char> = os.chars().collect();
                let nc: Vec<char> = ns.chars().collect();
                if oc.len() == nc.len() {
                    for (i, (a, b)) in oc.iter().zip(&nc).enumerate() {
                        total += 1;
                        if chars.len() < MAX_CHAR_CHANGES {
                            chars.push(CharChange {
                                at: o.start + i,
                                old: Some(CodePoint::of(*a)),
                                new: Some(CodePoint::of(*b)),
                            });
                        }
                    }
                } else {
                    for (i, a) in oc.iter().enumerate() {
                        total += 1;
                        if chars.len() < MAX_CHAR_CHANGES {
                            chars.push(CharChange {
                                at: o.start + i,
                                old: Some(CodePoint::of(*a)),
                                new: None,
                            });
                        }
                    }
                    for b in &nc {
                        total += 1;
                        if chars.len() < MAX_CHAR_CHANGES {
                            chars.push(CharChange {
                                at: o.end,
                                old: None,
                                new: Some(CodePoint::of(*b)),
                            });
                        }
                    }
                }
            }
            let more_chars = total - chars.len();
            Some(Hunk {
                at: ro.start,
                new_at: rn.start,
                old: s(&t.old, ro.clone()),
                new: s(&t.new, rn.clone()),
                before: s(&t.old, ro.start.saturating_sub(CONTEXT)..ro.start),
                after: s(&t.old, ro.end..ro.end + CONTEXT),
                covert,
                in_volatile,
                chars,
                more_chars,
            })
        })
        .collect()
}

/// Compares another run's requests with the first baseline's, ignoring what is volatile.
pub fn compare(base: &[RequestDoc], other: &[RequestDoc], volatile: &Volatile) -> Vec<Difference> {
    let mut out = Vec::new();
    for d in diff_docs(base, other) {
        if volatile.is_whole(&d.request, &d.path) {
            continue;
        }
        let change = match d.raw {
            Raw::Added(v) => Change::Added { new: v },
            Raw::Removed(v) => Change::Removed { old: v },
            Raw::Value(a, b) => Change::Value { old: a, new: b },
            Raw::Text(t) => {
                let vol = volatile.ranges.get(&(d.request.clone(), d.path.clone()));
                let mut keep = Vec::new();
                for (ro, rn) in raw_hunks(&t.ops) {
                    let hit = vol.and_then(|list| {
                        list.iter()
                            .find(|x| x.range.start <= ro.end && ro.start <= x.range.end)
                    });
                    match hit {
                        None => keep.push((ro, rn, false)),
                        Some(x) => {
                            let ns = map_pos(&t.ops, x.range.start, t.new.len());
                            let ne = map_pos(&t.ops, x.range.end, t.new.len()).max(ns);
                            let wn = widen(&t.new, ns..ne);
                            if !x.shapes.contains(&shape(&t.new[wn])) {
                                keep.push((ro, rn, true));
                            }
                        }
                    }
                }
                if keep.is_empty() {
                    continue;
                }
                Change::Text {
                    hunks: build_hunks(&t, &keep),
                }
            }
        };
        let covert = match &change {
            Change::Text { hunks } => hunks.iter().any(|h| h.covert),
            _ => false,
        };
        out.push(Difference {
            request: d.request,
            path: d.path,
            change,
            covert,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(body: Value) -> Vec<RequestDoc> {
        vec![RequestDoc {
            key: "POST /v1/messages #1".into(),
            value: json!({"query": {}, "headers": {}, "body": body}),
        }]
    }

    #[test]
    fn names_the_code_points_of_a_lookalike_apostrophe() {
        let a = doc(json!({"messages": [{"content": [{"text": "It's fine"}]}]}));
        let b = doc(json!({"messages": [{"content": [{"text": "It\u{2019}s fine"}]}]}));
        let d = compare(&a, &b, &Volatile::default());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path.to_string(), "messages[0].content[0].text");
        assert!(d[0].covert);
        let Change::Text { hunks } = &d[0].change else {
            panic!("{d:?}")
        };
        assert_eq!(hunks[0].at, 2);
        assert_eq!(
            hunks[0].chars[0].to_string(),
            "U+0027 APOSTROPHE → U+2019 RIGHT SINGLE QUOTATION MARK"
        );
    }

    #[test]
    fn a_date_format_change_is_a_plain_string_diff() {
        let a = doc(json!({"system": "Today is 2026-11-25. Be brief."}));
        let b = doc(json!({"system": "Today is 11/25/2026. Be brief."}));
        let d = compare(&a, &b, &Volatile::default());
        assert_eq!(d.len(), 1);
        assert!(!d[0].covert);
        let Change::Text { hunks } = &d[0].change else {
            panic!()
        };
        let joined: String = hunks
            .iter()
            .map(|h| format!("{}→{}", h.old, h.new))
            .collect();
        assert!(joined.contains('/'), "{joined}");
    }

    #[test]
    fn zero_width_insertions_are_covert() {
        assert!(is_covert("", "\u{200B}"));
        assert!(is_covert("a", "\u{0430}"), "Cyrillic a looks like Latin a");
        assert!(!is_covert("UTC", "Asia/Shanghai"));
        assert!(is_covert(" ", "  "));
    }

    #[test]
    fn volatile_ids_are_learned_and_ignored_but_shape_changes_are_not() {
        let mk = |id: &str, date: &str| {
            doc(
                json!({"metadata": {"user_id": format!("{{\"session_id\":\"{id}\"}}")},
                       "system": format!("Session {id} started {date} ok")}),
            )
        };
        let b0 = mk(
            "f02536a2-f132-43ba-8589-6a949199ed0e",
            "2026-11-25T20:39:25.321Z",
        );
        let b1 = mk(
            "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9",
            "2026-11-25T20:39:27.004Z",
        );
        let b2 = mk(
            "99999999-1111-4222-8333-444444444444",
            "2026-11-25T20:39:29.950Z",
        );
        let vol = Volatile::learn(&b0, &[b1, b2]);
        assert!(!vol.describe().is_empty());
        // Another identical-shape run: nothing to report.
        let same = mk(
            "12345678-aaaa-4bbb-8ccc-dddddddddddd",
            "2026-11-25T20:40:01.000Z",
        );
        assert_eq!(compare(&b0, &same, &vol), vec![]);
        // The date inside the volatile timestamp changes format: reported.
        let fmt = mk(
            "12345678-aaaa-4bbb-8ccc-dddddddddddd",
            "11/25/2026 20:40:01",
        );
        let d = compare(&b0, &fmt, &vol);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].path.to_string(), "system");
        let Change::Text { hunks } = &d[0].change else {
            panic!()
        };
        assert!(hunks.iter().all(|h| h.in_volatile));
        // A change outside the volatile stretches is reported as usual.
        let mut other = mk(
            "12345678-aaaa-4bbb-8ccc-dddddddddddd",
            "2026-11-25T20:40:01.000Z",
        );
        other[0].value["body"]["system"] = json!(
            other[0].value["body"]["system"]
                .as_str()
                .unwrap()
                .replace(" ok", " OK")
        );
        assert_eq!(compare(&b0, &other, &vol).len(), 1);
    }

    #[test]
    fn structural_changes_and_missing_requests() {
        let a = doc(json!({"tools": [{"name": "a"}, {"name": "b"}], "x": 1}));
        let b = doc(json!({"tools": [{"name": "a"}, {"name": "z"}, {"name": "b"}], "y": true}));
        let d = compare(&a, &b, &Volatile::default());
        let paths: Vec<String> = d.iter().map(|x| x.path.to_string()).collect();
        assert!(paths.contains(&"tools[1]".to_string()), "{paths:?}");
        assert!(paths.contains(&"x".to_string()));
        assert!(paths.contains(&"y".to_string()));
        let none = compare(&a, &[], &Volatile::default());
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].path.to_string(), "(request)");
    }

    #[test]
    fn normalise_hides_credentials_and_run_specific_paths() {
        let r = RecordedRequest {
            seq: 1,
            ts_ms: 0,
            via: crate::recorder::Via::Direct,
            method: "POST".into(),
            target: "/v1/messages".into(),
            host: "127.0.0.1:4242".into(),
            path: "/v1/messages".into(),
            query: "beta=true&key=AIzaSECRET".into(),
            headers: vec![
                ("x-api-key".into(), "sk-ant-api03-secret".into()),
                ("content-length".into(), "10".into()),
                ("user-agent".into(), "x/1".into()),
            ],
            body: r#"{"cwd":"/tmp/airlock-probe-AbC/proj","url":"http://127.0.0.1:4242/v1","slug":"-tmp-airlock-probe-AbC-proj"}"#.into(),
            body_len: 0,
            body_truncated: false,
            status: 200,
            note: String::new(),
            api: Some(crate::canned::Api::AnthropicMessages),
        };
        let d = normalise(&[r], "/tmp/airlock-probe-AbC", 4242);
        let text = d[0].value.to_string();
        assert!(
            !text.contains("secret") && !text.contains("SECRET"),
            "{text}"
        );
        assert!(text.contains("{run_dir}/proj"), "{text}");
        assert!(text.contains("{run_dir_slug}-proj"), "{text}");
        assert!(text.contains("127.0.0.1:{port}"), "{text}");
        assert!(d[0].value["headers"].get("content-length").is_none());
        assert_eq!(d[0].key, "POST /v1/messages #1");
    }
}
