//! The compiled engine and its builder.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use regex_automata::Input;

use crate::covert;
use crate::gate::DigitGate;
use crate::keywords::{Hit, Keywords};
use crate::rules::{self, Anchor, Rule, RuleDef};
use crate::validate::{self, Verdict};
use crate::{Category, CustomConfig, DetectError, Finding, Scan};

/// Builds an [`Engine`]: built-in packs, extra rule files, custom markers, disabled rules.
#[derive(Debug, Default)]
pub struct EngineBuilder {
    defs: Vec<(RuleDef, Arc<str>)>,
    disabled: Vec<String>,
    only: Option<Vec<Category>>,
    errors: Vec<DetectError>,
    strict_disable: bool,
}

impl EngineBuilder {
    /// Add every built-in pack (`rules/*.toml`, embedded at build time).
    pub fn with_builtin(mut self) -> Self {
        for (origin, text) in rules::BUILTIN_PACKS {
            self = self.add_rules_toml(text, origin);
        }
        self
    }

    /// Add a rule pack. A rule whose id equals an earlier one replaces it.
    pub fn add_rules_toml(mut self, text: &str, origin: &str) -> Self {
        match rules::parse_rule_file(text, origin) {
            Ok(defs) => {
                let origin: Arc<str> = origin.into();
                for d in defs {
                    self.push(d, origin.clone());
                }
            }
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Add already-parsed rule definitions.
    pub fn add_rule_defs(mut self, defs: Vec<RuleDef>, origin: &str) -> Self {
        let origin: Arc<str> = origin.into();
        for d in defs {
            self.push(d, origin.clone());
        }
        self
    }

    fn push(&mut self, d: RuleDef, origin: Arc<str>) {
        if let Some(slot) = self.defs.iter_mut().find(|(x, _)| x.id == d.id) {
            *slot = (d, origin);
        } else {
            self.defs.push((d, origin));
        }
    }

    /// Add the organisation's custom markers.
    pub fn custom(mut self, cfg: &CustomConfig) -> Self {
        match cfg.to_rule_defs() {
            Ok(defs) => {
                let origin: Arc<str> = "config [detection.custom]".into();
                for d in defs {
                    self.push(d, origin.clone());
                }
            }
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Turn rules off by id, tag, category name or id prefix ending in `*`. With
    /// [`EngineBuilder::strict_disable`], an entry that matches nothing is an error.
    pub fn disable<S: AsRef<str>>(mut self, ids: &[S]) -> Self {
        self.disabled
            .extend(ids.iter().map(|s| s.as_ref().trim().to_string()));
        self
    }

    /// Make `disable` entries that match no rule an error (for config validation).
    pub fn strict_disable(mut self, yes: bool) -> Self {
        self.strict_disable = yes;
        self
    }

    /// Keep only rules of these categories.
    pub fn only(mut self, cats: &[Category]) -> Self {
        self.only = Some(cats.to_vec());
        self
    }

    /// Compile everything. Reports the first error found.
    pub fn build(mut self) -> Result<Engine, DetectError> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        let matches_disable = |d: &RuleDef, entry: &str| -> bool {
            if let Some(prefix) = entry.strip_suffix('*') {
                return d.id.starts_with(prefix);
            }
            d.id == entry || d.tags.iter().any(|t| t == entry) || d.category.as_str() == entry
        };
        if self.strict_disable {
            for entry in &self.disabled {
                if !self.defs.iter().any(|(d, _)| matches_disable(d, entry)) {
                    return Err(DetectError::UnknownDisable(entry.clone()));
                }
            }
        }
        let kept: Vec<(RuleDef, Arc<str>)> = self
            .defs
            .into_iter()
            .filter(|(d, _)| !self.disabled.iter().any(|e| matches_disable(d, e)))
            .filter(|(d, _)| self.only.as_ref().is_none_or(|o| o.contains(&d.category)))
            .collect();
        Engine::from_rules(compile_all(kept)?)
    }
}

/// The detection engine. `Send + Sync`; build once, share via `Arc`, scan many.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    prefilter: Option<Keywords>,
    /// Length of the longest keyword.
    keyword_max: usize,
    /// Keyword (pattern) id -> rule indices.
    keyword_rules: Vec<Vec<u32>>,
    digit_rules: Vec<u32>,
    /// Which numeric rules can match in a digit window (see `gate.rs`), and for each of
    /// `digit_rules` its bit in the gate's answer (`None`: not gated, always searched).
    /// The digit gate and each numeric rule's bit in it: built on the first digit window (its
    /// DFAs took most of what was left of the engine's build once the regexes were compiled on
    /// first use), or by [`Engine::warm`].
    gate: OnceLock<(Option<DigitGate>, Vec<Option<u32>>)>,
    /// Off only to compare (`without_shortcut("digit-gate")`).
    gate_on: bool,
    always_rules: Vec<u32>,
    /// Whether ASCII windows go to the rules' ASCII-mode regexes (off only in tests, to
    /// compare).
    ascii_regexes: bool,
    /// Whether windows that are not ASCII are searched stretch by stretch between the bytes no
    /// match holds (`rules::Cuts`; off only in tests, to compare).
    split_windows: bool,
    /// Whether the digit-run pass skips stretches too sparse in digits (off only to compare).
    dense_digits: bool,
    /// Whether the covert pass steps over runs of letters of other scripts (off only to
    /// compare; see `covert::analyze_with`).
    covert_runs: bool,
    /// Whether the covert pass reads only the regions around non-ASCII bytes (off only to
    /// compare: then it reads the whole text when any byte is not ASCII).
    covert_pages: bool,
    /// Detector index -> rule index.
    covert_rules: [Option<u32>; 6],
    covert_enabled: [bool; 6],
}

/// A candidate window for one rule.
#[derive(Clone, Copy)]
struct Window {
    start: usize,
    end: usize,
}

/// Digit runs this long (or IPv4-shaped runs) anchor the numeric rules.
const MIN_DIGITS: usize = 7;
/// Bytes around a digit run searched by numeric rules.
const DIGIT_MARGIN: usize = 40;
/// Bytes whose keyword hits are gathered at once (see `scan_windows`).
const HIT_STRETCH: usize = 64 << 10;
/// Bytes per page of the map of non-ASCII bytes made during the keyword pass (see
/// [`covert_regions`]). A divisor of [`HIT_STRETCH`].
const PAGE: usize = 4 << 10;
/// Upper bound on findings per scan (hostile input must not exhaust memory or time): a scan
/// that reaches it stops looking and says so ([`Scan::truncated`]).
pub const MAX_FINDINGS: usize = 100_000;

impl Engine {
    /// All built-in rule packs.
    pub fn builtin() -> Result<Engine, DetectError> {
        Engine::builder().with_builtin().build()
    }

    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The compiled rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn from_rules(rules: Vec<Rule>) -> Result<Engine, DetectError> {
        let (patterns, keyword_rules) = keyword_patterns(&rules);
        let mut digit_rules = Vec::new();
        let mut always_rules = Vec::new();
        let mut covert_rules = [None; 6];
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            if let Some(d) = r.detector {
                covert_rules[d as usize] = Some(i);
                continue;
            }
            match r.anchor {
                Anchor::Keywords => {}
                Anchor::Digits => digit_rules.push(i),
                Anchor::Always => always_rules.push(i),
            }
        }
        let prefilter = if patterns.is_empty() {
            None
        } else {
            Some(Keywords::new(&patterns)?)
        };

        let covert_enabled = covert_rules.map(|r| r.is_some());
        let keyword_max = patterns.iter().map(String::len).max().unwrap_or(0);
        Ok(Engine {
            rules,
            prefilter,
            keyword_max,
            keyword_rules,
            digit_rules,
            gate: OnceLock::new(),
            gate_on: true,
            always_rules,
            ascii_regexes: true,
            split_windows: true,
            dense_digits: true,
            covert_runs: true,
            covert_pages: true,
            covert_rules,
            covert_enabled,
        })
    }

    /// This engine with one of its shortcuts off (`ascii-regexes`, `split-windows`,
    /// `dense-digits`, `digit-gate`, `covert-runs`), for benchmarks that compare the two in one
    /// process (runs on these shared machines vary more between processes than the shortcuts
    /// do) and for the fuzz target. Findings are the same; an unknown name changes nothing.
    #[doc(hidden)]
    pub fn without_shortcut(mut self, name: &str) -> Engine {
        match name {
            "ascii-regexes" => self.ascii_regexes = false,
            "split-windows" => self.split_windows = false,
            "dense-digits" => self.dense_digits = false,
            "covert-runs" => self.covert_runs = false,
            "covert-pages" => self.covert_pages = false,
            "digit-gate" => self.gate_on = false,
            _ => {}
        }
        self
    }

    /// Compiles now what the engine otherwise compiles on first use for ASCII text, the common
    /// case: every rule's regex in its ASCII form, on up to [`BUILD_THREADS`] threads, and the
    /// digit gate. For a long-running process (the gateway), so that requests do not wait for
    /// those compiles; a one-shot scan is faster without. The Unicode forms stay on first use
    /// (the first window that is not ASCII, per rule): all of them take about 58 MB, against
    /// 11 MB for all the ASCII forms (the gateway's resident size after start-up, measured).
    pub fn warm(&self) {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, BUILD_THREADS);
        let rules = &self.rules;
        std::thread::scope(|s| {
            s.spawn(|| self.digit_gate());
            for t in 0..threads {
                s.spawn(move || {
                    for r in rules.iter().skip(t).step_by(threads) {
                        r.ascii_regex();
                    }
                });
            }
        });
    }

    /// The digit gate (`None` when off or when no numeric rule could be gated) and each numeric
    /// rule's bit in it, in `digit_rules` order.
    fn digit_gate(&self) -> (Option<&DigitGate>, &[Option<u32>]) {
        if !self.gate_on {
            return (None, &[]);
        }
        let (gate, bits) = self.gate.get_or_init(|| {
            let patterns: Vec<&str> = self
                .digit_rules
                .iter()
                .map(|&r| self.rules[r as usize].pattern.as_deref().unwrap_or(""))
                .collect();
            DigitGate::new(&patterns)
        });
        (gate.as_ref(), bits)
    }

    /// Scan text. Findings are sorted by start offset. At most [`MAX_FINDINGS`]: a caller that
    /// acts on every finding (a redactor) must use [`Engine::scan_all`] to learn whether the
    /// scan stopped there.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        self.scan_inner(text.as_bytes(), Some(text)).findings
    }

    /// Scan bytes; invalid UTF-8 is tolerated and offsets are byte offsets into `bytes`. At most
    /// [`MAX_FINDINGS`], as for [`Engine::scan`].
    pub fn scan_bytes(&self, bytes: &[u8]) -> Vec<Finding> {
        self.scan_inner(bytes, None).findings
    }

    /// [`Engine::scan`], and whether it stopped at [`MAX_FINDINGS`] before the end of the text.
    pub fn scan_all(&self, text: &str) -> Scan {
        self.scan_inner(text.as_bytes(), Some(text))
    }

    /// [`Engine::scan_bytes`], and whether it stopped at [`MAX_FINDINGS`].
    pub fn scan_bytes_all(&self, bytes: &[u8]) -> Scan {
        self.scan_inner(bytes, None)
    }

    /// `text` is `bytes` as `str` when the caller already knows it is valid UTF-8.
    fn scan_inner(&self, bytes: &[u8], text: Option<&str>) -> Scan {
        // Candidate windows per rule, in a table reused by this thread: most texts the gateway
        // and the reviewer scan are short and anchor few rules or none, and allocating and
        // walking a fresh table of every rule cost more than the whole scan of such a text
        // (0.6 µs of a 0.75 µs scan). Only the rules touched are walked and cleared.
        SCRATCH.with(|cell| {
            let mut guard = cell.try_borrow_mut();
            let mut local = Windows::default();
            // Re-entered on this thread (not expected): fall back to a table of our own.
            let table: &mut Windows = match guard.as_deref_mut() {
                Ok(t) => t,
                Err(_) => &mut local,
            };
            table.prepare(self.rules.len());
            self.scan_windows(bytes, text, table)
        })
    }

    fn scan_windows(&self, bytes: &[u8], text: Option<&str>, table: &mut Windows) -> Scan {
        // One pass over the text, stretch by stretch: keyword hits, pages that are not ASCII,
        // digit runs, and the digit windows the gate sends on, each while the stretch is in
        // cache. (As separate passes over a text larger than the cache, each read it again
        // from memory: a 16 MB text scanned whole ran 10-20 % slower than in 64 KB pieces.)
        let n = bytes.len();
        let mut hits = std::mem::take(&mut table.hits);
        let mut merged = std::mem::take(&mut table.digit_windows);
        let digits = !self.digit_rules.is_empty();
        let (gate, bits) = match digits {
            true => self.digit_gate(),
            false => (None, &[][..]),
        };
        let mut runs = DigitRuns::default();
        // Digit windows already sent to their rules.
        let mut sent = 0;
        let mut from = 0;
        while from < n {
            let to = (from + HIT_STRETCH).min(n);
            if let Some(kw) = &self.prefilter {
                // Hits come by end, then start, as Aho-Corasick's overlapping search gave them;
                // `Windows::push` merges in that order, so the windows are as they always were.
                // The hits that *start* in the stretch (it is searched a longest keyword
                // further), so the hits held at once stay bounded: a hostile text can hold a
                // hit at every byte, 24 bytes each. Starts only grow from one stretch to the
                // next.
                let reach = (to + self.keyword_max.saturating_sub(1)).min(n);
                kw.find(&bytes[from..reach], &mut hits);
                for h in hits.iter().filter(|h| from + h.start < to) {
                    let (start, end) = (from + h.start, from + h.end);
                    for &r in &self.keyword_rules[h.pattern as usize] {
                        let rule = &self.rules[r as usize];
                        let w = Window {
                            start: start.saturating_sub(rule.window_before),
                            end: end.saturating_add(rule.window_after).min(n),
                        };
                        table.push(r, w);
                    }
                }
            }
            note_non_ascii(bytes, from, to, &mut table.non_ascii);
            if digits {
                // The windows around digit runs, merged as each rule's list would merge them;
                // then each goes to the rules that can match in it. Runs come in order, so
                // only the last window can still grow.
                runs.upto(bytes, to, self.dense_digits, |s, e| {
                    let w = Window {
                        start: s.saturating_sub(DIGIT_MARGIN),
                        end: (e + DIGIT_MARGIN).min(n),
                    };
                    match merged.last_mut() {
                        Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
                        _ => merged.push(w),
                    }
                });
                let done = if to == n {
                    merged.len()
                } else {
                    merged.len().saturating_sub(1)
                };
                self.send_digit_windows(bytes, &merged[sent..done], gate, bits, table);
                sent = done;
            }
            from = to;
        }
        table.hits = hits;
        merged.clear();
        table.digit_windows = merged;
        for &r in &self.always_rules {
            table.whole(r, bytes.len());
        }
        // Rules in index order, as before the table was reused.
        table.touched.sort_unstable();

        let mut raw: Vec<Raw> = Vec::new();
        for ti in 0..table.touched.len() {
            let ri = table.touched[ti] as usize;
            let list = &table.lists[ri];
            let rule = &self.rules[ri];
            if rule.pattern.is_none() {
                continue;
            }
            let mut search = Search {
                engine: self,
                ri,
                rule,
                bytes,
                caps: [None, None],
                last_value_start: usize::MAX,
            };
            for w in list {
                let around = &bytes[w.start.saturating_sub(1)..(w.end + 1).min(bytes.len())];
                match &rule.cuts {
                    // Not ASCII: the stretches between the bytes no match holds, one by one.
                    Some(cuts) if self.split_windows && !around.is_ascii() => {
                        for (s, e) in rules::stretches(bytes, w.start, w.end, |b| !cuts.is_cut(b)) {
                            if e - s >= cuts.min_len {
                                search.span(s, e, &mut raw);
                            }
                        }
                    }
                    _ => search.span(w.start, w.end, &mut raw),
                }
            }
        }
        // `Search::span` stops at the cap: what lies beyond was not looked at.
        let mut truncated = raw.len() >= MAX_FINDINGS;
        if !table.non_ascii.is_empty() && self.covert_enabled.iter().any(|&b| b) {
            let mut hits = Vec::new();
            let regions = match self.covert_pages {
                true => covert_regions(&table.non_ascii, bytes.len()),
                false => vec![(0, bytes.len())],
            };
            for (lo, hi) in regions {
                if hits.len() > MAX_FINDINGS {
                    break;
                }
                let part = &bytes[lo..hi];
                if let Some(t) = text
                    .and_then(|t| t.get(lo..hi))
                    .or_else(|| std::str::from_utf8(part).ok())
                {
                    // Valid UTF-8, the usual case: one pass, no chunking.
                    covert::analyze_with(t, lo, &self.covert_enabled, &mut hits, self.covert_runs);
                    continue;
                }
                let mut off = lo;
                for chunk in part.utf8_chunks() {
                    covert::analyze_with(
                        chunk.valid(),
                        off,
                        &self.covert_enabled,
                        &mut hits,
                        self.covert_runs,
                    );
                    off += chunk.valid().len() + chunk.invalid().len();
                    if hits.len() > MAX_FINDINGS {
                        break;
                    }
                }
            }
            truncated |= hits.len() >= MAX_FINDINGS;
            hits.truncate(MAX_FINDINGS);
            for h in hits {
                let Some(ri) = self.covert_rules[h.detector as usize] else {
                    continue;
                };
                raw.push(Raw {
                    rule: ri as usize,
                    start: h.start,
                    end: h.end,
                    confidence: None,
                    detail: Some(h.detail),
                    preview: Some(format!("{} ({} chars)", h.summary, h.count)),
                });
            }
        }
        table.clear();
        Scan {
            findings: self.finish(bytes, raw),
            truncated,
        }
    }

    /// Sends each digit window to the numeric rules that can match in it (all of them without
    /// a gate, or for a rule the gate does not cover). Not inlined: inside the pass's loop, the
    /// gate's DFA loop ran about 30 % slower on a text of digits.
    #[inline(never)]
    fn send_digit_windows(
        &self,
        bytes: &[u8],
        windows: &[Window],
        gate: Option<&DigitGate>,
        bits: &[Option<u32>],
        table: &mut Windows,
    ) {
        for &w in windows {
            let mask = gate.and_then(|g| g.matches(bytes, w.start, w.end));
            for (i, &r) in self.digit_rules.iter().enumerate() {
                if let (Some(mask), Some(Some(bit))) = (mask, bits.get(i))
                    && mask & (1 << bit) == 0
                {
                    continue;
                }
                table.push(r, w);
            }
        }
    }

    /// Validators and filters for one candidate value.
    fn check(&self, ri: usize, rule: &Rule, bytes: &[u8], start: usize, end: usize) -> Option<Raw> {
        let value = &bytes[start..end];
        if rule.placeholder_check && validate::is_placeholder(value) {
            return None;
        }
        if let Some(min) = rule.min_entropy
            && validate::entropy(value) < min
        {
            return None;
        }
        let (confidence, detail) = match rule.validator {
            Some(v) => match validate::run_in(v, bytes, start, end) {
                Verdict::Reject => return None,
                Verdict::Accept { confidence, detail } => (confidence, detail),
            },
            None => (None, None),
        };
        Some(Raw {
            rule: ri,
            start,
            end,
            confidence,
            detail,
            preview: None,
        })
    }

    fn finish(&self, bytes: &[u8], mut raw: Vec<Raw>) -> Vec<Finding> {
        if raw.is_empty() {
            return Vec::new();
        }
        raw.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end), r.rule));
        raw.dedup_by(|a, b| a.rule == b.rule && a.start == b.start && a.end == b.end);
        // Drop generic findings that overlap a specific finding of the same category, and
        // personal-data findings that overlap a secret (`user:password@host` is not an e-mail).
        // Interval lookups, not pairwise comparison: hostile input may yield many findings.
        let spans = |keep: &dyn Fn(&Rule) -> bool| {
            Intervals::new(
                raw.iter()
                    .filter(|r| keep(&self.rules[r.rule]))
                    .map(|r| (r.start, r.end))
                    .collect(),
            )
        };
        let specific: Vec<(Category, Intervals)> = Category::ALL
            .iter()
            .map(|&c| (c, spans(&|rule| rule.category == c && !rule.generic)))
            .collect();
        let secrets = spans(&|rule| rule.category == Category::Secret);
        raw.retain(|r| {
            let rule = &self.rules[r.rule];
            if rule.generic
                && specific
                    .iter()
                    .any(|(c, iv)| *c == rule.category && iv.overlaps(r.start, r.end))
            {
                return false;
            }
            !(rule.category == Category::Pii && secrets.overlaps(r.start, r.end))
        });
        let mut pos = LinePos::default();
        raw.into_iter()
            .map(|r| {
                let rule = &self.rules[r.rule];
                let value = &bytes[r.start..r.end];
                let (line, column) = pos.advance(bytes, r.start);
                Finding {
                    rule_id: rule.id.clone(),
                    category: rule.category,
                    severity: rule.severity,
                    confidence: r.confidence.unwrap_or(rule.confidence),
                    start: r.start,
                    end: r.end,
                    line,
                    column,
                    preview: r.preview.unwrap_or_else(|| validate::preview(value)),
                    detail: r.detail,
                    fingerprint: validate::fingerprint(&rule.id, value),
                    placeholder_label: rule.label.clone(),
                }
            })
            .collect()
    }
}

/// The searches of one rule's windows: its regexes, their captures (made when first needed),
/// and the value last reported, so a value two windows share is reported once.
struct Search<'a> {
    engine: &'a Engine,
    ri: usize,
    rule: &'a Rule,
    bytes: &'a [u8],
    /// Captures of the Unicode and of the ASCII regex.
    caps: [Option<regex_automata::util::captures::Captures>; 2],
    last_value_start: usize,
}

impl Search<'_> {
    /// Every match in `bytes[start..end]` (look-arounds see the bytes around it), checked, into
    /// `raw`.
    fn span(&mut self, start: usize, end: usize, raw: &mut Vec<Raw>) {
        let (rule, bytes) = (self.rule, self.bytes);
        // An ASCII span (and the byte either side, where look-arounds look) goes to the
        // ASCII-mode regex: same matches, smaller automata (`Rule::ascii_regex`).
        let around = &bytes[start.saturating_sub(1)..(end + 1).min(bytes.len())];
        let ascii = if self.engine.ascii_regexes && around.is_ascii() {
            rule.ascii_regex()
        } else {
            None
        };
        let (re, caps) = match ascii {
            Some(ascii) => (ascii, &mut self.caps[1]),
            // Every rule's pattern compiles (checked when the engine is built, or for the
            // built-in rules by `every_builtin_pattern_compiles`), so this is always `Some`.
            None => match rule.unicode_regex() {
                Some(unicode) => (unicode, &mut self.caps[0]),
                None => return,
            },
        };
        let mut at = start;
        while at <= end && raw.len() < MAX_FINDINGS {
            let input = Input::new(bytes).span(at..end);
            // The value is the match itself: a search without captures finds it.
            let (m, span) = if rule.value_is_match {
                let Some(m) = re.search(&input) else { break };
                (m, m.span())
            } else {
                let caps = caps.get_or_insert_with(|| re.create_captures());
                re.search_captures(&input, caps);
                let Some(m) = caps.get_match() else { break };
                let span = rule
                    .value_group
                    .and_then(|g| caps.get_group(g))
                    .unwrap_or(m.span());
                (m, span)
            };
            at = if m.end() > m.start() {
                m.end()
            } else {
                m.end() + 1
            };
            if span.start == self.last_value_start || span.is_empty() {
                continue;
            }
            if let Some(r) = self
                .engine
                .check(self.ri, rule, bytes, span.start, span.end)
            {
                self.last_value_start = span.start;
                raw.push(r);
            }
        }
    }
}

/// Compiles rules on up to [`BUILD_THREADS`] threads, in order; the first error (in rule order)
/// wins. The built-in rules are only parsed here (their regexes compile on first use, see
/// `Rule::unicode_regex`), a few milliseconds in all; rules from other files and the config
/// compile here, and a large custom set is where the threads help. The rules are independent.
fn compile_all(defs: Vec<(RuleDef, Arc<str>)>) -> Result<Vec<Rule>, DetectError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, BUILD_THREADS);
    if threads == 1 || defs.len() < 16 {
        return defs
            .into_iter()
            .map(|(d, origin)| Rule::compile(d, &origin))
            .collect();
    }
    // Interleaved, so that each thread gets a share of every pack (patterns differ in cost).
    let mut shares: Vec<Vec<(usize, RuleDef, Arc<str>)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (i, (d, origin)) in defs.into_iter().enumerate() {
        shares[i % threads].push((i, d, origin));
    }
    let mut done: Vec<(usize, Result<Rule, DetectError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                s.spawn(move || {
                    share
                        .into_iter()
                        .map(|(i, d, origin)| (i, Rule::compile(d, &origin)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Most threads used to compile rules.
const BUILD_THREADS: usize = 4;

/// The distinct keywords of the keyword-anchored rules (lower case, in rule order) and, for
/// each, the indices of the rules that use it.
pub(crate) fn keyword_patterns(rules: &[Rule]) -> (Vec<String>, Vec<Vec<u32>>) {
    let mut kw_index: HashMap<String, usize> = HashMap::new();
    let mut patterns: Vec<String> = Vec::new();
    let mut keyword_rules: Vec<Vec<u32>> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if r.detector.is_some() || r.anchor != Anchor::Keywords {
            continue;
        }
        let i = i as u32;
        for k in &r.keywords {
            if k.is_empty() {
                continue;
            }
            let key = k.to_ascii_lowercase();
            let idx = *kw_index.entry(key.clone()).or_insert_with(|| {
                patterns.push(key);
                keyword_rules.push(Vec::new());
                patterns.len() - 1
            });
            if !keyword_rules[idx].contains(&i) {
                keyword_rules[idx].push(i);
            }
        }
    }
    (patterns, keyword_rules)
}

/// Byte ranges, answering "does any overlap `s..e`?" in O(log n).
struct Intervals {
    /// Starts, sorted.
    starts: Vec<usize>,
    /// `max_end[i]`: the largest end among the first `i + 1` ranges.
    max_end: Vec<usize>,
}

impl Intervals {
    fn new(mut v: Vec<(usize, usize)>) -> Intervals {
        v.sort_unstable();
        let mut max = 0;
        let max_end = v
            .iter()
            .map(|&(_, e)| {
                max = max.max(e);
                max
            })
            .collect();
        Intervals {
            starts: v.into_iter().map(|(s, _)| s).collect(),
            max_end,
        }
    }

    /// Whether some range `a..b` has `a < e && s < b`.
    fn overlaps(&self, s: usize, e: usize) -> bool {
        let n = self.starts.partition_point(|&a| a < e);
        n > 0 && self.max_end[n - 1] > s
    }
}

struct Raw {
    rule: usize,
    start: usize,
    end: usize,
    confidence: Option<crate::Confidence>,
    detail: Option<String>,
    preview: Option<String>,
}

/// Incremental line/column computation over increasing offsets.
#[derive(Default)]
struct LinePos {
    /// Offset up to which newlines were counted.
    pos: usize,
    line: u32,
    line_start: usize,
    /// Offset and column count already computed on the current line.
    col_pos: usize,
    col: u32,
}

impl LinePos {
    fn advance(&mut self, bytes: &[u8], at: usize) -> (u32, u32) {
        if at < self.pos {
            // Findings are sorted, but be safe: restart.
            *self = LinePos::default();
        }
        // A count the compiler vectorises, and one search back for the line start: source
        // code has a newline every few dozen bytes, and a search per newline cost more.
        let gap = &bytes[self.pos..at];
        if let Some(last) = memchr::memrchr(b'\n', gap) {
            self.line = self.line.saturating_add(count_newlines(gap) as u32);
            self.line_start = self.pos + last + 1;
        }
        self.pos = at;
        if self.col_pos < self.line_start || self.col_pos > at {
            self.col_pos = self.line_start;
            self.col = 0;
        }
        self.col += bytes[self.col_pos..at]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count() as u32;
        self.col_pos = at;
        (self.line.saturating_add(1), self.col.saturating_add(1))
    }
}

/// Newlines in `h`: 32 byte-wide counters the compiler vectorises, summed every 255 rounds
/// (a plain `filter().count()` widens each byte to a 64-bit lane and runs 4 bytes a step).
fn count_newlines(h: &[u8]) -> usize {
    let mut total = 0;
    let mut acc = [0u8; 32];
    let mut rounds = 0;
    let mut chunks = h.chunks_exact(32);
    for c in &mut chunks {
        for (a, &b) in acc.iter_mut().zip(c) {
            *a += u8::from(b == b'\n');
        }
        rounds += 1;
        if rounds == 255 {
            total += acc.iter().map(|&x| usize::from(x)).sum::<usize>();
            acc = [0; 32];
            rounds = 0;
        }
    }
    total += acc.iter().map(|&x| usize::from(x)).sum::<usize>();
    total + chunks.remainder().iter().filter(|&&b| b == b'\n').count()
}

thread_local! {
    /// The per-rule candidate table of [`Engine::scan_inner`], reused across scans.
    static SCRATCH: std::cell::RefCell<Windows> = std::cell::RefCell::new(Windows::default());
}

/// Lists of candidate windows per rule index, and which lists are non-empty.
#[derive(Default)]
struct Windows {
    lists: Vec<Vec<Window>>,
    touched: Vec<u32>,
    /// Keyword hits of the current scan.
    hits: Vec<Hit>,
    /// Merged digit windows of the current scan.
    digit_windows: Vec<Window>,
    /// Pages ([`PAGE`] bytes) of the current text that hold a byte that is not ASCII.
    non_ascii: Vec<u32>,
}

/// A list that grew past this many windows (a hostile input) is not kept between scans.
const KEEP_WINDOWS: usize = 4096;

impl Windows {
    fn prepare(&mut self, n_rules: usize) {
        // Left over only if a scan unwound midway; its windows belong to another text.
        self.clear();
        if self.lists.len() < n_rules {
            self.lists.resize_with(n_rules, Vec::new);
        }
    }

    /// Adds a window for rule `r`, merged into its last one when they overlap.
    #[inline]
    fn push(&mut self, r: u32, w: Window) {
        let list = &mut self.lists[r as usize];
        match list.last_mut() {
            Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
            Some(_) => list.push(w),
            None => {
                self.touched.push(r);
                list.push(w);
            }
        }
    }

    /// Rule `r` searches the whole text.
    fn whole(&mut self, r: u32, len: usize) {
        let list = &mut self.lists[r as usize];
        if list.is_empty() {
            self.touched.push(r);
        }
        list.clear();
        list.push(Window { start: 0, end: len });
    }

    fn clear(&mut self) {
        for &r in &self.touched {
            let list = &mut self.lists[r as usize];
            list.clear();
            if list.capacity() > KEEP_WINDOWS {
                list.shrink_to(64);
            }
        }
        self.touched.clear();
        self.non_ascii.clear();
        if self.touched.capacity() > KEEP_WINDOWS {
            self.touched.shrink_to(64);
        }
        self.hits.clear();
        if self.hits.capacity() > KEEP_WINDOWS {
            self.hits.shrink_to(64);
        }
        self.digit_windows.clear();
        if self.digit_windows.capacity() > KEEP_WINDOWS {
            self.digit_windows.shrink_to(64);
        }
    }
}

/// Position of the first ASCII digit at or after `i`. Skips 32 bytes at a time with a
/// branch-free test the compiler vectorises (about 3× the plain byte loop on source code).
#[cfg(test)]
fn next_digit(bytes: &[u8], i: usize) -> Option<usize> {
    next_run_start(bytes, i, false)
}

/// Position of the first ASCII digit at or after `i`, or with `dense`, of the first digit that
/// can start a qualifying digit run (see [`digit_runs`]).
///
/// Why `dense` is exact: a qualifying run has at least four digits (an IPv4 address) and at most
/// two separators between two digits, so it starts with a *chain* of four digits, each at most
/// three bytes after the one before ([`chain_starts`]). A digit that starts no chain starts a run
/// of fewer than four digits, and that run ends before the next chain start: were a chain start
/// inside it, the run's digits up to there and the chain would make a chain from its own start.
/// So the runs reported are the same; only the non-qualifying runs are no longer walked. Source
/// code is full of lone digits (`u8`, `i32`, `[0]`) and short numbers; each used to cost a trip
/// through the run loop, and counting digits per block cost more than finding the chains.
fn next_run_start(bytes: &[u8], mut i: usize, dense: bool) -> Option<usize> {
    if dense {
        // 64 bytes at a time; a chain starting at one of the first `CHAIN_STEP` is seen whole.
        while let Some(w) = bytes.get(i..).and_then(|r| r.first_chunk::<64>()) {
            if w.iter().fold(0u8, |acc, &b| acc | digit_bit(b)) == 0 {
                i += 64;
                continue;
            }
            let starts = chain_starts(digit_mask(w)) & ((1 << CHAIN_STEP) - 1);
            if starts != 0 {
                return Some(i + starts.trailing_zeros() as usize);
            }
            i += CHAIN_STEP;
        }
        // The last bytes, padded with bytes that are not digits, so every chain is seen whole.
        let rest = bytes.get(i..)?;
        let mut w = [0u8; 64];
        w[..rest.len()].copy_from_slice(rest);
        let starts = chain_starts(digit_mask(&w));
        return (starts != 0).then(|| i + starts.trailing_zeros() as usize);
    }
    loop {
        if let Some(chunk) = bytes.get(i..i + 32)
            && chunk.iter().fold(0u8, |acc, &b| acc | digit_bit(b)) == 0
        {
            i += 32;
            continue;
        }
        break;
    }
    bytes
        .get(i..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|o| i + o)
}

/// Chain starts found in a 64-byte window that are certain: a chain spans at most nine bytes
/// after its start.
const CHAIN_STEP: usize = 64 - 9;

/// Bit `k` set where the digit at `k` starts a chain of four digits, each at most three bits after
/// the one before (bits beyond 63 count as not digits).
#[inline(always)]
fn chain_starts(digits: u64) -> u64 {
    let near = |x: u64| (x >> 1) | (x >> 2) | (x >> 3);
    let two = digits & near(digits);
    let three = digits & near(two);
    digits & near(three)
}

/// Bit `k` set where `w[k]` is an ASCII digit, eight bytes at a time in a `u64` (SWAR): after
/// `^ 0x30` a digit byte is below 10; subtracting 10 from each byte with its top bit set borrows
/// across no byte, so a byte's top bit ends clear exactly where it was below 10, and one
/// multiplication gathers the eight top bits into a byte. (The compiler does not turn the
/// plain loop into a vector compare and mask here.)
#[inline(always)]
fn digit_mask(w: &[u8; 64]) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut mask = 0u64;
    for (k, word) in w.chunks_exact(8).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(word);
        let t = u64::from_le_bytes(b) ^ 0x3030_3030_3030_3030;
        let flags = !((t | HIGH) - 0x0A0A_0A0A_0A0A_0A0A) & !t & HIGH;
        let byte = (flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= byte << (8 * k);
    }
    mask
}

/// 1 for an ASCII digit, else 0 (branch-free, so loops over it vectorise).
#[inline(always)]
fn digit_bit(b: u8) -> u8 {
    u8::from(b.wrapping_sub(b'0') < 10)
}

/// Appends to `pages` the index of each page of `bytes[from..to]` that holds a byte that is not
/// ASCII (`from` is at a page's start).
fn note_non_ascii(bytes: &[u8], from: usize, to: usize, pages: &mut Vec<u32>) {
    debug_assert!(from.is_multiple_of(PAGE));
    for (k, page) in bytes[from..to].chunks(PAGE).enumerate() {
        if !page.is_ascii() {
            pages.push((from / PAGE + k) as u32);
        }
    }
}

/// The stretches of a text of `n` bytes that the covert pass reads, given its `pages` that hold
/// non-ASCII bytes (in order): each such page widened by [`covert::REACH`] on both sides, the
/// overlapping ones merged. The analysis of a character reads and steps no farther than that
/// reach, so it sees in its region what it would see in the whole text, and the stretches
/// between regions (all ASCII, farther than the reach from any other byte) change nothing.
///
/// Each region starts and ends at an end of the text or in a page that is all ASCII (a page
/// with another byte would have been merged in), so on a character boundary.
fn covert_regions(pages: &[u32], n: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &p in pages {
        let start = p as usize * PAGE;
        let lo = start.saturating_sub(covert::REACH);
        let hi = (start + PAGE + covert::REACH).min(n);
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = hi,
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Call `f(start, end)` for each run of digits (with separators) long enough to be a phone,
/// card, id or bank number, or shaped like an IPv4 address. `dense` skips stretches too sparse
/// in digits to start one (see [`next_run_start`]); the runs reported are the same.
#[cfg(test)]
fn digit_runs(bytes: &[u8], dense: bool, f: impl FnMut(usize, usize)) {
    DigitRuns::default().upto(bytes, bytes.len(), dense, f);
}

/// [`digit_runs`] a stretch at a time, so the engine's one pass can do it with the others.
#[derive(Default)]
struct DigitRuns {
    /// Where the search for the next run start goes on.
    from: usize,
    /// A run start found beyond the last stretch, reported with the next.
    pending: Option<usize>,
    /// No run starts at or after `from`.
    done: bool,
}

impl DigitRuns {
    /// Reports the runs that start before `to` and were not reported yet (a run may end past
    /// `to`). Searching again from a start found before gives that start: whether a position
    /// starts a run depends only on the bytes from it on.
    fn upto(&mut self, bytes: &[u8], to: usize, dense: bool, mut f: impl FnMut(usize, usize)) {
        let n = bytes.len();
        while !self.done {
            let start = match self.pending.take() {
                Some(s) => s,
                None => match next_run_start(bytes, self.from, dense) {
                    Some(s) => s,
                    None => {
                        self.done = true;
                        return;
                    }
                },
            };
            if start >= to {
                self.pending = Some(start);
                return;
            }
            let mut j = start;
            let mut digits = 0usize;
            let mut dots = 0usize;
            let mut last_digit = start;
            while j < n {
                let b = bytes[j];
                if b.is_ascii_digit() {
                    digits += 1;
                    last_digit = j;
                } else if matches!(b, b' ' | b'-' | b'.' | b'(' | b')' | b'/')
                    && j - last_digit <= 2
                {
                    if b == b'.' {
                        dots += 1;
                    }
                } else {
                    break;
                }
                j += 1;
            }
            let end = last_digit + 1;
            if digits >= MIN_DIGITS || (dots >= 3 && digits >= 4) {
                f(start, end);
            }
            self.from = j.max(start + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_pattern_compiles() {
        let engine = Engine::builtin().unwrap();
        let regexes = engine.rules.iter().filter(|r| r.is_regex());
        assert!(regexes.clone().count() > 180);
        for r in regexes {
            let re = r.unicode_regex();
            assert!(re.is_some(), "{}", r.id);
            // The `value` group found in the syntax tree is the one the regex numbers.
            let group = re
                .unwrap()
                .group_info()
                .to_index(regex_automata::PatternID::ZERO, "value");
            assert_eq!(r.value_group, group, "{}", r.id);
        }
        // A rule of another origin is compiled when the engine is built: its error is an error
        // of the build, not a window skipped later.
        let toml = r#"
            [[rule]]
            id = "too-big"
            category = "custom"
            description = "an NFA over the size limit"
            severity = "low"
            confidence = "low"
            pattern = '\w{1000}\w{1000}\w{1000}'
            keywords = ["x"]
            examples = ["x"]
            negative_examples = ["y"]
        "#;
        let err = Engine::builder()
            .add_rules_toml(toml, "my.toml")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("too-big"), "{err}");
        let lazy = Engine::builder()
            .add_rules_toml(toml, "rules/pii.toml")
            .build();
        assert!(
            lazy.is_ok(),
            "a built-in pack is trusted to compile (tested above)"
        );
    }

    /// A scan that stops at the cap says so, for rule findings and for covert ones alike; one
    /// below the cap does not. (A redactor that took a capped scan for the whole text forwarded
    /// whatever lay past the cap untouched.)
    #[test]
    fn scan_all_says_when_it_stopped_at_the_cap() {
        let engine = Engine::builtin().unwrap();
        for (unit, rule) in [
            ("a\u{200B}b ", "covert-invisible-characters"),
            ("jo@mail.acme.de ", "email-address"),
        ] {
            let under = unit.repeat(MAX_FINDINGS - 1);
            let scan = engine.scan_all(&under);
            assert_eq!(scan.findings.len(), MAX_FINDINGS - 1, "{rule}");
            assert!(!scan.truncated, "{rule}: under the cap");
            let over = unit.repeat(MAX_FINDINGS + 1);
            let scan = engine.scan_all(&over);
            assert_eq!(scan.findings.len(), MAX_FINDINGS, "{rule}");
            assert!(scan.truncated, "{rule}: over the cap");
            assert!(scan.findings.iter().all(|f| &*f.rule_id == rule), "{rule}");
        }
    }

    #[test]
    fn engine_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
    }

    /// Registry sources (up to `limit` bytes, NUL between files), if this machine has them.
    fn registry_text(limit: usize) -> Vec<u8> {
        fn walk(dir: &std::path::Path, out: &mut Vec<u8>, limit: usize) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            let mut v: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            v.sort();
            for p in v {
                if out.len() >= limit {
                    return;
                }
                if p.is_dir() {
                    walk(&p, out, limit);
                } else if p
                    .extension()
                    .is_some_and(|e| e == "rs" || e == "toml" || e == "md" || e == "js")
                    && let Ok(b) = std::fs::read(&p)
                    && b.len() < 1 << 20
                {
                    out.extend_from_slice(&b);
                    out.push(0);
                }
            }
        }
        let mut out = Vec::new();
        let home = std::env::var_os("CARGO_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo"))
            });
        if let Some(home) = home {
            walk(&home.join("registry").join("src"), &mut out, limit);
        }
        out
    }

    #[test]
    fn findings_are_the_same_with_the_aho_corasick_keyword_pass() {
        let new = Engine::builtin().unwrap();
        let mut old = Engine::builtin().unwrap();
        let (patterns, _) = keyword_patterns(&old.rules);
        old.prefilter = Some(Keywords::new_ac(&patterns).unwrap());
        // Every rule's examples in one text, in upper and lower case, then real source code.
        let mut text = String::new();
        for r in &new.rules {
            for e in r.examples.iter().chain(&r.negative_examples) {
                text.push_str(e);
                text.push('\n');
                text.push_str(&e.to_ascii_uppercase());
                text.push_str(" = ");
            }
        }
        let mut corpus = text.into_bytes();
        let examples = corpus.len();
        corpus.extend(registry_text(3 << 20));
        let chunks: Vec<&[u8]> = corpus.split(|&b| b == 0).collect();
        let mut total = 0;
        for c in chunks.iter().chain([&&corpus[..examples], &&corpus[..]]) {
            let a = new.scan_bytes(c);
            assert_eq!(a, old.scan_bytes(c));
            total += a.len();
        }
        assert!(total > 100, "{total} findings");
    }

    /// Rules compile on several threads; the result keeps rule order, and with several bad
    /// rules the first one (in order) is the one reported, whatever thread finished first.
    #[test]
    fn parallel_compile_keeps_order_and_the_first_error() {
        let rule = |id: &str, pattern: &str| {
            format!(
                "[[rule]]\nid = \"{id}\"\ncategory = \"custom\"\ndescription = \"d\"\n\
                 pattern = '''{pattern}'''\nkeywords = [\"zq\"]\nseverity = \"low\"\n\
                 confidence = \"low\"\nexamples = [\"«zq1»\"]\nnegative_examples = [\"zz\"]\n"
            )
        };
        let mut good = String::new();
        let mut custom = Vec::new();
        for i in 0..40 {
            custom.push(format!("custom-{i:02}"));
            good.push_str(&rule(&custom[i], "zq[0-9]"));
        }
        let e = Engine::builder()
            .with_builtin()
            .add_rules_toml(&good, "good.toml")
            .build()
            .unwrap();
        let ids: Vec<&str> = e.rules().iter().map(|r| &*r.id).collect();
        let builtin = Engine::builtin().unwrap();
        let expected: Vec<&str> = builtin
            .rules()
            .iter()
            .map(|r| &*r.id)
            .chain(custom.iter().map(String::as_str))
            .collect();
        assert_eq!(ids, expected);
        let bad = format!(
            "{good}{}{}",
            rule("bad-first", "zq(["),
            rule("bad-second", "zq)")
        );
        let err = Engine::builder()
            .with_builtin()
            .add_rules_toml(&bad, "bad.toml")
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad-first"), "{err}");
    }

    /// Keyword hits are gathered stretch by stretch: a keyword (and its secret) across a
    /// stretch boundary, at every offset, is still found, once.
    #[test]
    fn keywords_across_hit_stretches() {
        let engine = Engine::builtin().unwrap();
        let random = "Zq8T2vLmW4xR9sKp3NbY7cHd1FgJ6u";
        let token = format!(
            "ghp_{random}{}",
            crate::validate::crc32_base62_suffix(random)
        );
        for back in 0..token.len() + 2 {
            let at = HIT_STRETCH - back;
            let mut text = "x ".repeat(HIT_STRETCH);
            text.replace_range(at - 1..at + token.len() + 1, &format!(" {token} "));
            let found: Vec<_> = engine
                .scan(&text)
                .into_iter()
                .filter(|f| f.rule_id.starts_with("github"))
                .collect();
            assert_eq!(found.len(), 1, "token at {at}: {found:?}");
            assert_eq!(found[0].start, at);
        }
    }

    /// A numeric value across a stretch boundary of the one pass, at every offset, is found
    /// once: its digit run starts in one stretch and ends in the next, and its window is sent
    /// to the rules only when no later run can widen it.
    #[test]
    fn digit_runs_across_stretches() {
        let engine = Engine::builtin().unwrap();
        let card = "4111 1111 1111 1111";
        // Another run of digits before, whose window the card's window widens (its own
        // window ends before the card does).
        let before = format!("order 20240101 {} ", "x".repeat(50));
        for lead in ["", before.as_str()] {
            for back in 0..card.len() + lead.len() + 2 {
                let at = HIT_STRETCH - back;
                let mut text = "x ".repeat(HIT_STRETCH);
                let value = format!("{lead}{card}");
                text.replace_range(at - 1..at + value.len() + 1, &format!(" {value} "));
                let found: Vec<_> = engine
                    .scan(&text)
                    .into_iter()
                    .filter(|f| &*f.rule_id == "credit-card-number")
                    .collect();
                assert_eq!(found.len(), 1, "{value:?} at {at}: {found:?}");
                let start = at + lead.len();
                assert_eq!((found[0].start, found[0].end), (start, start + card.len()));
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// The digit runs reported a stretch at a time, for stretches of any size, are the runs
        /// of the whole text.
        #[test]
        fn digit_runs_by_stretch_are_the_runs(
            text in proptest::collection::vec(
                proptest::sample::select(b"0123456789 .-()/x".to_vec()), 0..300),
            step in 1usize..40,
            dense: bool,
        ) {
            let mut whole = Vec::new();
            digit_runs(&text, dense, |s, e| whole.push((s, e)));
            let mut pieces = Vec::new();
            let mut runs = DigitRuns::default();
            let mut to = 0;
            while to < text.len() {
                to = (to + step).min(text.len());
                let before = pieces.len();
                runs.upto(&text, to, dense, |s, e| pieces.push((s, e)));
                // Only runs that start before `to`, and each once.
                proptest::prop_assert!(pieces[before..].iter().all(|&(s, _)| s < to));
            }
            proptest::prop_assert_eq!(whole, pieces);
        }
    }

    /// The covert pass over the regions around non-ASCII bytes finds what it finds over the
    /// whole text: every covert example and negative example, and right-to-left text, at
    /// distances around a page and around the analysis' reach, between ASCII of every kind
    /// (words, one long line, spaces), as UTF-8 and with an invalid byte.
    #[test]
    fn covert_regions_find_what_the_whole_text_holds() {
        static ENGINES: std::sync::OnceLock<(Engine, Engine)> = std::sync::OnceLock::new();
        let (paged, whole) = with_and_without(&ENGINES, "covert-pages");
        let mut snippets: Vec<String> = Vec::new();
        for r in paged
            .rules
            .iter()
            .filter(|r| r.category == Category::Covert)
        {
            for e in r.examples.iter().chain(&r.negative_examples) {
                snippets.push(e.replace(['«', '»'], ""));
            }
        }
        assert!(snippets.len() > 30, "{}", snippets.len());
        // Right-to-left context near a mark, at the edge of what the analysis reads.
        snippets.extend([
            "שלום עולם".to_string(),
            "a\u{200F}b".to_string(),
            "x\u{202B}y\u{202C}z".to_string(),
            "ok\u{200B}".to_string(),
        ]);
        let gaps = [
            0, 1, 63, 300, 4_000, 4_095, 4_096, 4_200, 4_500, 8_800, 8_900, 9_000, 13_000,
        ];
        let fillers = ["lorem ipsum dolor sit amet\n", "identifier_", "    "];
        let mut total = 0;
        for (k, filler) in fillers.iter().enumerate() {
            let mut text = String::new();
            for (i, snippet) in snippets.iter().enumerate() {
                let gap = gaps[(i * 7 + k) % gaps.len()];
                let pad: String = filler.chars().cycle().take(gap).collect();
                text.push_str(&pad);
                text.push_str(snippet);
            }
            let found = paged.scan(&text);
            assert_eq!(found, whole.scan(&text), "filler {filler:?}");
            assert_eq!(paged.scan_bytes(text.as_bytes()), found);
            total += found.len();
            // An invalid byte in the middle of every third gap.
            let mut bytes = Vec::new();
            for (i, snippet) in snippets.iter().enumerate() {
                let gap = gaps[(i * 5 + k) % gaps.len()];
                let pad: Vec<u8> = filler.bytes().cycle().take(gap).collect();
                bytes.extend_from_slice(&pad[..gap / 2]);
                if i % 3 == 0 {
                    bytes.push(0xFF);
                }
                bytes.extend_from_slice(&pad[gap / 2..]);
                bytes.extend_from_slice(snippet.as_bytes());
            }
            assert_eq!(paged.scan_bytes(&bytes), whole.scan_bytes(&bytes));
        }
        assert!(total > 50, "{total}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Same, on texts made at random of covert characters, other scripts, invalid bytes and
        /// ASCII runs of every length up to several pages.
        #[test]
        fn covert_regions_are_invisible(
            parts in proptest::collection::vec((0usize..12, 0usize..12_000), 1..24),
        ) {
            static ENGINES: std::sync::OnceLock<(Engine, Engine)> = std::sync::OnceLock::new();
            let (paged, whole) = with_and_without(&ENGINES, "covert-pages");
            let pieces: [&[u8]; 12] = [
                "\u{200B}".as_bytes(), "\u{200F}".as_bytes(), "\u{202E}".as_bytes(),
                "שלום".as_bytes(), "раураl".as_bytes(), "it\u{2019}s".as_bytes(),
                "\u{E0041}\u{E0042}".as_bytes(), "👩\u{200D}💻".as_bytes(), "\u{FE0F}\u{FE0E}".as_bytes(),
                b"\xFF", "漢字".as_bytes(), "\u{02BC}".as_bytes(),
            ];
            let mut text = Vec::new();
            for (kind, gap) in parts {
                text.extend(b"word ".iter().cycle().take(gap));
                if gap % 5 == 1 {
                    text.push(b'\n');
                }
                text.extend_from_slice(pieces[kind]);
            }
            proptest::prop_assert_eq!(paged.scan_bytes(&text), whole.scan_bytes(&text));
            if let Ok(t) = std::str::from_utf8(&text) {
                proptest::prop_assert_eq!(paged.scan(t), whole.scan(t));
            }
        }
    }

    /// At every offset across a page boundary: words that mix scripts, marks and look-alikes
    /// inside ASCII words, right-to-left text near a control, next to ASCII that runs on into
    /// the next page.
    #[test]
    fn covert_regions_at_page_edges() {
        static ENGINES: std::sync::OnceLock<(Engine, Engine)> = std::sync::OnceLock::new();
        let (paged, whole) = with_and_without(&ENGINES, "covert-pages");
        let snippets = [
            "paypаl",
            "аdmin_password_reset_token_value",
            "it\u{2019}s don\u{02BC}t",
            "ab\u{200B}cd",
            "x\u{200F}y",
            "\u{202E}abc\u{202C}",
            "עברית \u{200F}",
            "l\u{0430}",
        ];
        let word = "identifier_".repeat(20);
        let mut found_any = 0;
        for snippet in snippets {
            for off in (PAGE - 300..PAGE + 300).step_by(7) {
                for filler in [word.as_str(), "    ", "a b "] {
                    let mut text: String = filler.chars().cycle().take(off).collect();
                    text.push_str(snippet);
                    let tail: String = filler.chars().cycle().take(3 * PAGE).collect();
                    text.push_str(&tail);
                    // A second non-ASCII page far away, so there are two regions.
                    text.push('\u{200B}');
                    text.push_str(&tail);
                    let found = paged.scan(&text);
                    assert_eq!(found, whole.scan(&text), "{snippet:?} at {off}");
                    found_any += found.len();
                }
            }
        }
        assert!(found_any > 1000, "{found_any}");
    }

    #[test]
    fn covert_regions_merge_and_end_on_ascii() {
        // One page: widened on both sides, clipped at the ends.
        assert_eq!(covert_regions(&[0], 10_000), [(0, PAGE + covert::REACH)]);
        assert_eq!(
            covert_regions(&[2], 3 * PAGE),
            [(2 * PAGE - covert::REACH, 3 * PAGE)]
        );
        // Neighbouring pages: one region; farther: two.
        assert_eq!(
            covert_regions(&[1, 2], 1 << 20),
            [(PAGE - covert::REACH, 3 * PAGE + covert::REACH)]
        );
        assert_eq!(covert_regions(&[1, 3], 1 << 20).len(), 2);
        assert_eq!(covert_regions(&[], 1 << 20), []);
        let mut pages = Vec::new();
        let mut text = vec![b'a'; 10 * PAGE + 17];
        text[5 * PAGE + 3] = 0xC3;
        text[10 * PAGE + 1] = 0x80;
        note_non_ascii(&text, 0, text.len(), &mut pages);
        assert_eq!(pages, [5, 10]);
    }

    /// The built-in engine and one with `shortcut` off, built once per `cell`.
    fn with_and_without(
        cell: &'static std::sync::OnceLock<(Engine, Engine)>,
        shortcut: &str,
    ) -> &'static (Engine, Engine) {
        cell.get_or_init(|| {
            let with = Engine::builtin().unwrap();
            (with, Engine::builtin().unwrap().without_shortcut(shortcut))
        })
    }

    /// The built-in engine, and the same without the digit gate (every digit window goes to
    /// every numeric rule's regex, as before the gate).
    fn gated_and_ungated() -> &'static (Engine, Engine) {
        static ENGINES: std::sync::OnceLock<(Engine, Engine)> = std::sync::OnceLock::new();
        let pair = with_and_without(&ENGINES, "digit-gate");
        assert!(pair.0.digit_gate().0.is_some() && pair.1.digit_gate().0.is_none());
        // Every built-in numeric rule is gated.
        let bits = pair.0.digit_gate().1;
        assert!(bits.len() == pair.0.digit_rules.len() && bits.iter().all(Option::is_some));
        pair
    }

    #[test]
    fn numeric_rule_examples_pass_the_gate() {
        let (engine, _) = gated_and_ungated();
        let (gate, bits) = engine.digit_gate();
        let gate = gate.unwrap();
        let mut checked = 0;
        for (&ri, bit) in engine.digit_rules.iter().zip(bits) {
            let rule = &engine.rules[ri as usize];
            let bit = bit.unwrap();
            for e in &rule.examples {
                let text = e.replace(['«', '»'], "");
                let b = text.as_bytes();
                if let Some(mask) = gate.matches(b, 0, b.len()) {
                    assert!(mask & (1 << bit) != 0, "{}: {e}", rule.id);
                    checked += 1;
                }
                // In a longer text, at either end and in the middle.
                let long = format!("x {text} = {text}; {text}");
                let b = long.as_bytes();
                if let Some(mask) = gate.matches(b, 0, b.len()) {
                    assert!(mask & (1 << bit) != 0, "{}: {long}", rule.id);
                }
            }
        }
        assert!(checked >= 15, "{checked}");
    }

    /// Asserts that `a` and `b` find the same in every rule example (as written, upper-cased,
    /// beside a non-ASCII character, and far from one) and in `source` bytes of registry sources, file by
    /// file and all at once. Returns the number of findings.
    fn same_findings_on_examples_and_source(a: &Engine, b: &Engine, source: usize) -> usize {
        let mut text = String::new();
        for r in &a.rules {
            for e in r.examples.iter().chain(&r.negative_examples) {
                let e = e.replace(['«', '»'], "");
                text.push_str(&e);
                text.push('\n');
                text.push_str(&e.to_ascii_uppercase());
                text.push_str(" = é");
            }
        }
        // And each example far from any non-ASCII byte, where windows are ASCII.
        for r in &a.rules {
            for e in r.examples.iter().chain(&r.negative_examples) {
                let e = e.replace(['«', '»'], "");
                if e.is_ascii() {
                    text.push_str(&format!("\n{}\n{e}\n", "/".repeat(64)));
                }
            }
        }
        let mut corpus = text.into_bytes();
        corpus.extend(registry_text(source));
        let mut total = 0;
        for c in corpus.split(|&b| b == 0).chain([&corpus[..]]) {
            let found = a.scan_bytes(c);
            assert_eq!(found, b.scan_bytes(c));
            total += found.len();
        }
        total
    }

    /// The built-in numeric rules' matches are made of few kinds of bytes: code and prose
    /// around a number break their runs.
    #[test]
    fn digit_gate_alphabet_of_the_builtin_rules() {
        let (engine, _) = gated_and_ungated();
        let (alphabet, min_len) = engine.digit_gate().0.unwrap().alphabet();
        assert_eq!(
            alphabet,
            "\t\n\u{b}\u{c}\r ()+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZx"
        );
        assert_eq!(min_len, 4);
    }

    #[test]
    fn digit_gate_changes_no_finding_on_examples_and_source() {
        let (gated, ungated) = gated_and_ungated();
        let total = same_findings_on_examples_and_source(gated, ungated, 2 << 20);
        assert!(total > 20, "{total} findings");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Digit-and-separator soup, with the letters and signs the numeric rules look for, and
        /// now and then a non-ASCII character: the gate never drops a finding.
        #[test]
        fn digit_gate_is_invisible(
            s in "([0-9]{1,6}|[ .()/+-]|[A-Z]{1,3}|[a-z]{1,2}|00|86|\\+1|\n|é|١){0,60}"
        ) {
            let (gated, ungated) = gated_and_ungated();
            proptest::prop_assert_eq!(gated.scan(&s), ungated.scan(&s));
        }
    }

    /// The built-in engine with the rules' ASCII-mode regexes, and the same without them.
    fn ascii_and_unicode() -> &'static (Engine, Engine) {
        static ENGINES: std::sync::OnceLock<(Engine, Engine)> = std::sync::OnceLock::new();
        let pair = with_and_without(&ENGINES, "ascii-regexes");
        assert!(!pair.1.ascii_regexes);
        pair
    }

    #[test]
    fn ascii_regexes_change_no_finding_on_examples_and_source() {
        let (ascii, unicode) = ascii_and_unicode();
        // Every built-in pattern compiles in ASCII mode but the ones with Unicode classes.
        let compiled = ascii.rules.iter().filter(|r| r.ascii_regex().is_some());
        assert!(compiled.count() > 180);
        let total = same_findings_on_examples_and_source(ascii, unicode, 3 << 20);
        assert!(total > 100, "{total} findings");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Keywords, assignments, values and now and then a non-ASCII character (next to a
        /// window, inside it, or as a look-alike of an ASCII letter): the ASCII-mode regexes
        /// find exactly what the Unicode ones find.
        #[test]
        fn ascii_regexes_are_invisible(
            s in "(password|token|secret|api_key|AKIA|ghp_|sk-|://|@|[A-Za-z0-9]{1,12}|[0-9]{3,8}|[ =:\"'._/-]|\n|é|ſ|K|١|\u{a0}){0,50}"
        ) {
            let (ascii, unicode) = ascii_and_unicode();
            proptest::prop_assert_eq!(ascii.scan(&s), unicode.scan(&s));
        }
    }

    fn split_and_whole() -> &'static (Engine, Engine) {
        static ENGINES: std::sync::OnceLock<(Engine, Engine)> = std::sync::OnceLock::new();
        let pair = with_and_without(&ENGINES, "split-windows");
        assert!(!pair.1.split_windows);
        pair
    }

    #[test]
    fn split_windows_change_no_finding_on_examples_source_and_unicode_data() {
        let (split, whole) = split_and_whole();
        // Most rules have cut bytes; numeric rules many (`;`, letters, `#`).
        let cut = split.rules.iter().filter(|r| r.cuts.is_some()).count();
        assert!(cut > 120, "{cut}");
        let ssn = split.rules.iter().find(|r| &*r.id == "us-ssn").unwrap();
        let cuts = ssn.cuts.as_ref().unwrap();
        assert!(cuts.is_cut(b';') && cuts.is_cut(b'a'));
        // Unicode `\d` holds digits of other scripts: no byte of theirs is a cut.
        assert!(!cuts.is_cut(b'7') && !cuts.is_cut(b'-') && !cuts.is_cut(0xD9));
        let email = split
            .rules
            .iter()
            .find(|r| &*r.id == "email-address")
            .unwrap();
        assert!(email.cuts.as_ref().unwrap().is_cut(0xC3));
        let total = same_findings_on_examples_and_source(split, whole, 1 << 20);
        assert!(total > 100, "{total} findings");
        // Lines like Unicode's normalisation test data: code points, digits and letters of
        // many scripts, with phone numbers, SSNs and IBANs among them, all in one window.
        let mut data = String::new();
        for i in 0..400u32 {
            let c = char::from_u32(0xC0 + i * 37 % 0x2F00).unwrap_or('x');
            data.push_str(&format!(
                "{:04X};{:04X} 0301;0020 {i:04} # ({c}; {c}\u{301}; ) LETTER {i}\n",
                0xC0 + i,
                0xC0 + i
            ));
            if i % 37 == 0 {
                data.push_str(
                    "call 0151 234 5678 or ssn 536-22-1234 ÷ DE89 3704 0044 0532 0130 00\n",
                );
            }
        }
        let found = split.scan(&data);
        assert_eq!(found, whole.scan(&data));
        let rules: std::collections::BTreeSet<&str> = found.iter().map(|f| &*f.rule_id).collect();
        assert!(
            rules.contains("us-ssn") && rules.contains("iban"),
            "{rules:?}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Digits, separators, keywords and values next to non-ASCII letters, digits and
        /// spaces (Unicode `\d` and `\s` reach beyond ASCII): searching the stretches between
        /// cut bytes finds exactly what searching the whole window finds.
        #[test]
        fn split_windows_are_invisible(
            s in "(password|token=|api_key|ghp_|@|://|[A-Za-z0-9]{1,12}|[0-9]{3,9}|[ ;#=:\"'._/()+-]|\n|é|÷|×|ſ|K|١|٣|\u{a0}|\u{3000}|中文|\u{301}){0,60}"
        ) {
            let (split, whole) = split_and_whole();
            proptest::prop_assert_eq!(split.scan(&s), whole.scan(&s));
        }
    }

    #[test]
    fn value_spans_of_plain_searches() {
        let engine = Engine::builtin().unwrap();
        let whole = engine.rules.iter().filter(|r| r.value_is_match).count();
        assert!(whole > 60, "{whole}");
        let rule = |id: &str| engine.rules.iter().find(|r| &*r.id == id).unwrap();
        assert!(rule("github-pat").value_is_match);
        assert!(rule("us-ssn").value_is_match);
        // The value is followed by a consuming group, or preceded by a keyword.
        assert!(!rule("gitlab-pat").value_is_match);
        assert!(!rule("generic-token").value_is_match);
        assert!(!rule("phone-cn-mobile").value_is_match);
    }

    #[test]
    fn count_newlines_matches_a_plain_count() {
        let mut v = Vec::new();
        for i in 0..20_000u32 {
            v.push(if i % 7 == 0 || i % 13 == 0 {
                b'\n'
            } else {
                b'a'
            });
            if i % 997 == 0 {
                for off in [0, 1, 31, 32, 33] {
                    let h = &v[off.min(v.len())..];
                    assert_eq!(count_newlines(h), h.iter().filter(|&&b| b == b'\n').count());
                }
            }
        }
        assert_eq!(
            count_newlines(&v),
            v.iter().filter(|&&b| b == b'\n').count()
        );
    }

    #[test]
    fn line_and_column() {
        let mut p = LinePos::default();
        let text = "ab\nc\u{e9}d x\nz".as_bytes();
        assert_eq!(p.advance(text, 0), (1, 1));
        assert_eq!(p.advance(text, 1), (1, 2));
        assert_eq!(p.advance(text, 3), (2, 1));
        // after "cé" (3 bytes) + "d" : 'x' is at byte 3+5=8, column 5
        assert_eq!(p.advance(text, 8), (2, 5));
        assert_eq!(p.advance(text, 10), (3, 1));
    }

    #[test]
    fn interval_overlaps() {
        let iv = Intervals::new(vec![(10, 20), (0, 3), (30, 31)]);
        assert!(iv.overlaps(2, 4));
        assert!(!iv.overlaps(3, 10));
        assert!(iv.overlaps(19, 25));
        assert!(!iv.overlaps(20, 30));
        assert!(iv.overlaps(0, 100));
        assert!(iv.overlaps(30, 31));
        assert!(!iv.overlaps(31, 40));
        assert!(!Intervals::new(Vec::new()).overlaps(0, 10));
    }

    #[test]
    fn next_digit_across_chunks() {
        let mut b = vec![b'x'; 100];
        assert_eq!(next_digit(&b, 0), None);
        for at in [0, 31, 32, 63, 64, 99] {
            b.fill(b'x');
            b[at] = b'7';
            assert_eq!(next_digit(&b, 0), Some(at));
            assert_eq!(next_digit(&b, at), Some(at));
            assert_eq!(next_digit(&b, at + 1), None);
        }
        assert_eq!(next_digit(&b, 200), None);
    }

    #[test]
    fn digit_mask_is_the_digit_test() {
        // Every byte value at every position, beside every other (the borrow of one byte must
        // never reach its neighbour).
        for b in 0..=255u8 {
            for fill in [0u8, b'0', b'9', b'/', b':', 0x80, 0xB9, 0xFF] {
                for at in 0..64 {
                    let mut w = [fill; 64];
                    w[at] = b;
                    let want = w
                        .iter()
                        .enumerate()
                        .fold(0u64, |m, (k, x)| m | u64::from(x.is_ascii_digit()) << k);
                    assert_eq!(digit_mask(&w), want, "byte {b:#x} at {at} among {fill:#x}");
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The chain starts are the digits followed by three more, each within three bytes.
        #[test]
        fn chain_starts_are_chains(dense: u64, thin: u64, sparse: bool) {
            // Half the bits set, or a quarter: chains everywhere, or few.
            let digits = if sparse { dense & thin } else { dense };
            let bit = |k: usize| k < 64 && digits >> k & 1 == 1;
            let mut want = 0u64;
            for k in 0..64 {
                let chained = |k: usize| (1..=3).any(|d| bit(k + d));
                let three = |k: usize| bit(k) && (1..=3).any(|d| bit(k + d) && chained(k + d));
                if bit(k) && (1..=3).any(|d| three(k + d)) {
                    want |= 1 << k;
                }
            }
            proptest::prop_assert_eq!(chain_starts(digits), want);
        }
    }

    /// The widest chain (two separators between digits) at every offset, so that it straddles
    /// every window boundary, ends the text, or has digits after it; before it, chains of
    /// digits that are no run (`x` ends a run).
    #[test]
    fn widest_chain_at_every_offset() {
        for at in 0..200usize {
            for filler in ["7x", "ab", "7abc"] {
                for tail in ["", "x", "..5", " 1 2 3 4 5 6 7"] {
                    // `at` bytes of filler, the last one a letter.
                    let mut text: String =
                        filler.chars().cycle().take(at.saturating_sub(1)).collect();
                    if at > 0 {
                        text.push('x');
                    }
                    text.push_str("1..2..3..4");
                    text.push_str(tail);
                    let (mut plain, mut dense) = (Vec::new(), Vec::new());
                    digit_runs(text.as_bytes(), false, |s, e| plain.push((s, e)));
                    digit_runs(text.as_bytes(), true, |s, e| dense.push((s, e)));
                    let case = format!("{at} {filler:?} {tail:?}");
                    assert!(plain.iter().any(|&(s, _)| s == at), "{case}: {plain:?}");
                    assert_eq!(plain, dense, "{case}");
                }
            }
        }
    }

    #[test]
    fn digit_runs_found() {
        let mut v = Vec::new();
        digit_runs(
            b"call +1 (415) 555-2671 now, ip 10.0.0.1, year 2024",
            true,
            |s, e| v.push((s, e)),
        );
        assert_eq!(v, [(6, 22), (31, 39)]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Skipping stretches sparse in digits reports the same runs, on text made of digits,
        /// separators and letters in every mix (long texts, so the 32-byte steps are exercised).
        #[test]
        fn dense_digit_runs_are_the_same_runs(
            text in proptest::collection::vec(
                proptest::sample::select(b"0123456789 .-()/x_".to_vec()), 0..400),
            sparse in 0usize..6,
        ) {
            // Thin the digits out, so some stretches fall under the threshold and some do not.
            let text: Vec<u8> = text
                .iter()
                .enumerate()
                .map(|(i, &b)| if b.is_ascii_digit() && i % 7 < sparse { b'x' } else { b })
                .collect();
            let (mut plain, mut dense) = (Vec::new(), Vec::new());
            digit_runs(&text, false, |s, e| plain.push((s, e)));
            digit_runs(&text, true, |s, e| dense.push((s, e)));
            proptest::prop_assert_eq!(plain, dense);
        }
    }
}
